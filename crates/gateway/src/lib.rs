//! The gateway inside the daemon: it routes each request by its Host to the right environment's app.
//!
//! `routes` is the route table — exact hostnames before wildcards, a wildcard covering exactly one label — and the
//! handle through which a deployment swaps in a new table atomically: a request sees the old table or the new
//! one, never a mix.

mod routes;

pub use routes::{Backend, Route, RouteState, RouteTable, Routes, normalize_host};
