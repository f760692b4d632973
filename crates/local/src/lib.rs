//! The local runtime: every app of every environment as a supervised process on this machine.
//!
//! `supervisor` runs one process: in its own process group, with its variables (secrets included) only in its
//! environment, its output captured to a rotated log, restarted with exponential backoff when it exits, and
//! stopped with SIGTERM, a grace period, then SIGKILL of the whole group. `health` decides readiness: an HTTP
//! GET answering 2xx/3xx, or an accepted TCP connection. Neither knows anything of plans or the spec.

mod health;
mod logs;
mod signals;
mod supervisor;

pub use health::{Probe, probe_once, wait_until_healthy};
pub use supervisor::{ProcessSpec, Supervised, SupervisorError};
