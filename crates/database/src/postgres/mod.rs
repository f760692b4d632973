//! PostgreSQL: the servers `preview` runs, the administration of per-environment databases and roles, seeding,
//! and consistent (optionally masked) copies.

pub mod admin;
pub mod binaries;
pub mod catalog;
pub mod connection;
pub mod copy;
pub mod programs;
pub mod seed;
pub mod server;
pub mod tls;

pub use binaries::Binaries;
pub use connection::{Connection, Endpoint};
pub use server::Server;
