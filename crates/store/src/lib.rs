//! The control-plane store: projects and their specs, environments, the recorded state of each environment,
//! deployments with their journal, and the per-environment lease that allows one deployment at a time.
//!
//! [`Store`] holds all the logic and SQL once; a [`driver::Driver`] only runs statements, on an embedded SQLite
//! file ([`Store::open_sqlite`]) or a PostgreSQL server ([`Store::open_postgres`]) that several daemons can share.
//! Migrations are embedded and run on open. This crate knows nothing of HTTP, runtimes or how deployments run.

mod deployments;
pub mod driver;
mod postgres;
mod pull_requests;
mod records;
mod rows;
mod schema;
mod secrets;
mod sqlite;
mod store;
mod webhooks;

pub use deployments::{StartTerms, TakeOverTerms};
pub use pull_requests::Observation;
pub use records::*;
pub use store::{Store, StoreError};
pub use webhooks::{KEPT_DELIVERIES, KEPT_REFUSED};
