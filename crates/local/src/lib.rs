//! The local runtime: every app of every environment as a supervised process on this machine.
//!
//! `supervisor` runs one process: in its own process group, with its variables (secrets included) only in its
//! environment, its output captured to a rotated log, restarted with exponential backoff when it exits (or run
//! once), stopped with SIGTERM, a grace period, then SIGKILL of the whole group, and killed at once when it is
//! dropped without a stop. `one_off` runs checkouts and builds to their end, killed at once when dropped.
//! `leftovers` holds what the kills of abandoned steps still have to wait for, until the runtime's `settle`.
//! `health` decides readiness: an HTTP GET answering 2xx/3xx, or an accepted TCP connection. None of them knows
//! anything of plans or the spec.
//!
//! `runtime` implements the engine's runtime interface on top: `spaces` (what keeps environments apart when the
//! daemon is root: a user, a cgroup and a network namespace each, every process in a sandbox; `accounts` keeps
//! the users given out), `layout` (where things are, on the host and inside sandboxes), `builds` (a checkout per
//! commit and builder, build commands; `trees` copies a preview's cache from its project's), `apps` (start a
//! version, wait until healthy, switch, drain the previous one), `ports` (a block of ports per environment),
//! `forward` (stable service ports in front of the running version), `site` (the gateway's routes and
//! certificates, from the local CA or an ACME CA), `sleep` (environments put to sleep when idle, and woken),
//! `records` (what was applied, on disk) and `strays` (what an
//! earlier run left behind). Every privileged system call is made through `preview-isolation`.
//! This crate knows resources and their JSON content, never the spec or the store.

mod accounts;
mod apps;
mod builds;
mod database_servers;
mod databases;
mod faults;
mod forward;
mod health;
mod layout;
mod leftovers;
mod logs;
mod mysql;
mod one_off;
mod physical;
mod ports;
mod presence;
mod records;
mod redis;
mod resolver;
mod runtime;
mod site;
mod sleep;
mod snapshots;
mod sockets;
mod spaces;
mod strays;
mod supervisor;
mod trees;

pub use accounts::IdRange;
pub use health::{Probe, probe_in, probe_once, wait_until_healthy};
pub use leftovers::{EnvironmentLeftovers, Leftovers};
pub use ports::PortRange;
pub use runtime::{Issuer, LocalConfig, LocalRuntime};
pub use spaces::{IsolationConfig, Subnet};
pub use supervisor::{Place, ProcessSpec, Supervised, SupervisorError};
