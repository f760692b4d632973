//! The daemon behind `preview serve`: it opens the store, recovers every deployment left unfinished, and only
//! then serves the REST API through which the CLI (and anything else holding the token) works.
//!
//! This crate owns HTTP and JSON: routes, authentication, error responses, the client config file. It turns API
//! requests into engine calls and knows nothing of how a runtime does its work.

mod api;
mod auth;
mod clusters;
mod daemon;
mod dashboard;
mod desired;
mod error;
mod forge_client;
mod idle;
mod logging;
mod openapi;
mod previews;
mod routes;
mod source;
mod vault;

pub use auth::{ClientConfig, client_config_path};
pub use daemon::{LocalOptions, RuntimeChoice, ServeConfig, serve};
pub use logging::{LogFormat, init_logging};
pub use preview_gateway::{Config as GatewayConfig, IpRange};
pub use preview_local::{IdRange, Issuer, PortRange, Subnet};
pub use preview_tls::{AcmeConfig, LETS_ENCRYPT};
