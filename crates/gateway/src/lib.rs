//! The gateway inside the daemon: it routes each request by its Host to the right environment's app.
//!
//! `routes` is the route table — exact hostnames before wildcards, a wildcard covering exactly one label — and the
//! handle through which a deployment swaps in a new table atomically: a request sees the old table or the new
//! one, never a mix. `proxy` forwards a request to the route's app (with `X-Forwarded-For/-Proto/-Host`, WebSocket
//! upgrades tunnelled through) or answers with a page naming the environment; `server` accepts plain HTTP or TLS
//! with the certificate `certificates` picks by SNI, and HTTP/2 or HTTP/1.1 by ALPN. `challenges` holds the answers
//! to ACME HTTP-01 challenges while a certificate is issued. A backend may live in another network (an
//! environment's network namespace): the gateway then connects with sockets that network makes (`Network`).

mod access;
mod certificates;
mod challenges;
mod proxy;
mod routes;
mod server;

pub use access::{Access, basic_credentials, digest};
pub use certificates::Certificates;
pub use challenges::Challenges;
pub use proxy::Proxy;
pub use routes::{Backend, Network, Route, RouteState, RouteTable, Routes, normalize_host};
pub use server::{Timeouts, serve, serve_with, tls_config};
