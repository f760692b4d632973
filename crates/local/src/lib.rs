//! The local runtime: every app of every environment as a supervised process on this machine.
//!
//! `supervisor` runs one process: in its own process group, with its variables (secrets included) only in its
//! environment, its output captured to a rotated log, restarted with exponential backoff when it exits, and
//! stopped with SIGTERM, a grace period, then SIGKILL of the whole group. It knows nothing of plans or the spec.

mod logs;
mod signals;
mod supervisor;

pub use supervisor::{ProcessSpec, Supervised, SupervisorError};
