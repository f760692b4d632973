//! The gateway inside the daemon: it routes each request by its Host to the right environment's app.
//!
//! `routes` is the route table — exact hostnames before wildcards, a wildcard covering exactly one DNS label — and
//! the handle through which a deployment swaps in a new table atomically: a request sees the old table or the new
//! one, never a mix. `server` accepts plain HTTP or TLS with the certificate `certificates` picks by SNI, and
//! HTTP/2 or HTTP/1.1 by ALPN, under a cap on connections, with the timeouts of `config` (`deadlines` for clients
//! that stop writing or reading, `idle_streams` for idle HTTP/2 connections). `proxy` handles one request: the one
//! host it names (`request_host`), the route's access protection (`access`), the headers the app gets
//! (`forwarding_headers`), the connection to the app (`upstream`, admitted by the backend's gate in `gates`; a request
//! without a body is sent and its answer read by the gateway itself in `exchange`), the
//! answer made safe for the client (`answers`) or a WebSocket tunnel (`tunnel`), and the gateway's own pages
//! (`pages`). A request for a sleeping environment asks the daemon's `Waker` to wake it and waits a bounded time
//! (`waking`, one wake per environment whatever the number of requests, and a pause after a failed one), unless a
//! link-preview bot sent it (`link_preview_bots`); `activity` counts the requests under way in each environment and
//! keeps when one last reached it, and is where an environment is marked asleep without a race with requests. `challenges` holds the
//! answers to ACME HTTP-01 challenges while a certificate is issued. A backend may live in another network (an
//! environment's network namespace): the gateway then connects with sockets that network makes (`Network`).

mod access;
mod activity;
mod answers;
mod certificates;
mod challenges;
mod config;
mod deadlines;
mod exchange;
mod forwarding_headers;
mod gates;
mod idle_streams;
mod link_preview_bots;
mod pages;
mod proxy;
mod request_host;
mod routes;
mod server;
mod tunnel;
mod upstream;
mod waking;

pub use access::{Access, basic_credentials, digest};
pub use activity::{Activity, LastRequest};
pub use certificates::{Certificates, Fallback};
pub use challenges::Challenges;
pub use config::{Config, Limits, Timeouts};
pub use forwarding_headers::IpRange;
pub use proxy::Proxy;
pub use routes::{Backend, Network, Route, RouteState, RouteTable, Routes, normalize_host};
pub use server::{serve, tls_config};
pub use waking::{FailedWake, WakeFuture, Waker};
