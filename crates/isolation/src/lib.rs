//! What keeps environments apart on one machine, in one room so that it can be audited in one sitting: the
//! only crate of the workspace that makes privileged system calls or drives the system's account, network and
//! packet-filter programs.
//!
//! - `accounts`: a system user and group per environment (and per builder), made and removed with the
//!   distribution's `groupadd`, `useradd` and `userdel`.
//! - `cgroups`: control groups (v2 where its controllers are available, else the v1 hierarchies) that bound an
//!   environment's and each process tree's memory, CPU and number of tasks, count out-of-memory kills, and
//!   find and kill every process of a tree, however it detached itself.
//! - `netns`: network namespaces with a veth link to the host; sockets made inside one from the daemon.
//! - `firewall`: the nftables table that keeps environments from reaching each other and the host, and
//!   translates their traffic to the internet.
//! - `sandbox`: what a process goes through between `fork` and `exec`: a session of its own, into its cgroups and
//!   network namespace, a filesystem of its own (`pivot_root`) with the system's programs read-only and only its
//!   own files besides, then down to its user.
//! - `signals`: signals to processes and process groups.
//!
//! This crate knows nothing of environments, resources or the spec: callers say which ids, names, paths and
//! numbers to use.

mod accounts;
mod cgroups;
mod firewall;
mod netns;
mod privileges;
mod programs;
mod sandbox;
pub mod signals;

pub use accounts::{
    Account, account, create_account, delete_account, hand_tree_to, id_is_free, ids_in_use,
};
pub use cgroups::{Cgroup, CgroupLimits, CgroupVersion, Cgroups};
pub use firewall::{Firewall, FirewallRules};
pub use netns::{Link, Netns, enable_forwarding};
pub use privileges::{is_root, raise_open_files_limit, restrict_umask, user_name};
pub use programs::missing_programs;
pub use sandbox::{Bind, Explanation, Sandbox, SystemEntry, detach};

/// What went wrong, with the program, path or call and what the system said.
#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed: {output}")]
    Program { command: String, output: String },
    #[error("{0}")]
    Unavailable(String),
}

impl IsolationError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> IsolationError {
        IsolationError::Io {
            what: what.into(),
            source,
        }
    }
}
