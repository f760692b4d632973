//! The one interface between the engine and wherever environments live. Operations are declarative and
//! addressed by resource id, so that a process supervisor and Kubernetes server-side apply both fit.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use preview_plan::{Resource, ResourceKind};

/// Which environment a resource belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EnvironmentAddress {
    pub project: String,
    pub environment: String,
}

/// What a runtime reports about a resource it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub id: String,
    /// The content hash of the resource as applied.
    pub hash: String,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct RuntimeError {
    pub message: String,
}

impl From<String> for RuntimeError {
    fn from(message: String) -> Self {
        RuntimeError::new(message)
    }
}

impl RuntimeError {
    /// An error with `message`, cut to 16 KiB: it goes into the journal and the deployment's record, whatever a
    /// runtime quotes of a process's output.
    pub fn new(message: impl Into<String>) -> Self {
        const MOST: usize = 16 * 1024;
        let mut message: String = message.into();
        if message.len() > MOST {
            let mut cut = MOST;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str(" […]");
        }
        RuntimeError { message }
    }
}

/// Lines a runtime reports while it works on a step; the engine writes them to the deployment's journal. It also
/// says whether the daemon may still act for the deployment ([`StepLog::check_lease`]).
#[derive(Clone, Default)]
pub struct StepLog {
    lines: Arc<Mutex<Vec<String>>>,
    fence: Option<Arc<crate::lease::Fence>>,
}

impl StepLog {
    pub(crate) fn fenced(fence: Arc<crate::lease::Fence>) -> StepLog {
        StepLog {
            lines: Arc::default(),
            fence: Some(fence),
        }
    }

    /// An error once this daemon may no longer act for the deployment: another daemon took its lease over, or it
    /// could not renew the lease in time (the store was unreachable, or the daemon was paused). A runtime calls
    /// it right before each change it makes, so that a step resumed after a pause changes nothing.
    pub fn check_lease(&self) -> Result<(), RuntimeError> {
        match &self.fence {
            Some(fence) => fence.check().map_err(RuntimeError::new),
            None => Ok(()),
        }
    }

    pub fn line(&self, line: impl Into<String>) {
        if let Ok(mut lines) = self.lines.lock() {
            lines.push(line.into());
        }
    }

    /// The lines so far (for tests of a runtime).
    pub fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .map(|lines| lines.clone())
            .unwrap_or_default()
    }

    pub(crate) fn take(&self) -> Vec<String> {
        self.lines
            .lock()
            .map(|mut lines| std::mem::take(&mut *lines))
            .unwrap_or_default()
    }
}

/// Every operation must be idempotent: applying a resource that is already applied with the same hash, or
/// removing one that is absent, succeeds without doing anything. The engine relies on this to roll back and to
/// recover after a crash without knowing how far an operation got.
#[async_trait]
pub trait Runtime: Send + Sync {
    /// Makes the resource exist exactly as given (create or update).
    async fn apply(
        &self,
        env: &EnvironmentAddress,
        resource: &Resource,
        log: &StepLog,
    ) -> Result<(), RuntimeError>;

    /// Checks `resources` — the whole state a deployment leads to — before its first step changes anything, so that
    /// what the runtime would refuse (an object its admission or validation rejects) fails the deployment while
    /// nothing has changed. Nothing to check by default.
    async fn preflight(
        &self,
        _env: &EnvironmentAddress,
        _resources: &[Resource],
    ) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// Makes the resource not exist.
    async fn remove(
        &self,
        env: &EnvironmentAddress,
        id: &str,
        kind: ResourceKind,
        log: &StepLog,
    ) -> Result<(), RuntimeError>;

    /// What the runtime holds under this id, if anything.
    async fn observe(
        &self,
        env: &EnvironmentAddress,
        id: &str,
    ) -> Result<Option<Observed>, RuntimeError>;

    /// The addresses (host, port) at which the environment's apps reach the named services, as this runtime
    /// assigns them; empty when services reach each other by name and declared port (as in a Kubernetes namespace).
    async fn endpoints(
        &self,
        _env: &EnvironmentAddress,
        _services: &[String],
    ) -> Result<BTreeMap<String, (String, u16)>, RuntimeError> {
        Ok(BTreeMap::new())
    }

    /// What each running service of the environment is doing.
    async fn status(&self, _env: &EnvironmentAddress) -> Vec<ServiceStatus> {
        Vec::new()
    }

    /// How the environment is kept apart from the others, protection by protection, for `preview env show`;
    /// empty when the runtime says nothing about it.
    async fn isolation(&self, _env: &EnvironmentAddress) -> Vec<Protection> {
        Vec::new()
    }

    /// A service's captured output from byte `from` on.
    async fn logs(
        &self,
        _env: &EnvironmentAddress,
        service: &str,
        _from: u64,
    ) -> Result<LogChunk, RuntimeError> {
        Err(RuntimeError::new(format!(
            "this runtime keeps no logs (asked for `{service}`)"
        )))
    }

    /// How a person logs in to the environment's database `service` from the daemon's machine, for `preview db
    /// psql`: the address, the database's own login and its password.
    async fn database_login(
        &self,
        _env: &EnvironmentAddress,
        service: &str,
    ) -> Result<DatabaseLogin, RuntimeError> {
        Err(RuntimeError::new(format!(
            "this runtime offers no login to `{service}`"
        )))
    }

    /// Builds the golden snapshot the environment's database `service` is copied from again, from its source's
    /// data as it is now, for `preview db refresh`; what was done, line by line.
    async fn refresh_database_snapshot(
        &self,
        _env: &EnvironmentAddress,
        service: &str,
    ) -> Result<Vec<String>, RuntimeError> {
        Err(RuntimeError::new(format!(
            "this runtime keeps no snapshot of `{service}`"
        )))
    }

    /// The golden snapshot the environment's database `service` is made from, for `preview db snapshot(s)`; none
    /// when its data is not made from one (an empty or seeded database, a physical copy).
    async fn database_snapshot(
        &self,
        _env: &EnvironmentAddress,
        _service: &str,
    ) -> Result<Option<DatabaseSnapshot>, RuntimeError> {
        Ok(None)
    }

    /// What copying the data of the database `resource` would warn about or fail on, checked against its source
    /// as it is now (masking rules naming what the source lacks, columns that look personal and have no rule), for
    /// `preview plan`; nothing when the runtime cannot tell without starting something.
    async fn database_warnings(
        &self,
        _env: &EnvironmentAddress,
        _resource: &Resource,
    ) -> Vec<String> {
        Vec::new()
    }

    /// Makes the environment's database `service` again by its clone policy, for `preview db reset`; what was
    /// done, line by line.
    async fn reset_database(
        &self,
        _env: &EnvironmentAddress,
        service: &str,
    ) -> Result<Vec<String>, RuntimeError> {
        Err(RuntimeError::new(format!(
            "this runtime cannot reset `{service}`"
        )))
    }

    /// Puts the environment to sleep: what runs for it stops, everything it keeps (records, addresses, data,
    /// checkouts) stays, and its routes answer as sleeping until [`Runtime::wake`]. A runtime level state, not a
    /// deployment: the recorded state does not change. Idempotent; a sleeping environment keeps sleeping when the
    /// daemon starts again. A runtime that cannot sleep does nothing.
    ///
    /// `idle_since` is when the caller found the environment idle from: one used since — a request through the
    /// gateway under way or made after it, looked at once nothing else can change the environment and before
    /// anything stops — stays awake, and `Ok(false)` says so. Whether it sleeps now otherwise.
    async fn sleep(
        &self,
        _env: &EnvironmentAddress,
        _idle_since: std::time::SystemTime,
    ) -> Result<bool, RuntimeError> {
        Ok(false)
    }

    /// Starts what the sleeping environment runs again, as recorded, and returns once it serves; nothing when it
    /// does not sleep. Concurrent calls wake it once, the others waiting for that wake. A change to a sleeping
    /// environment (`apply`) wakes it first.
    async fn wake(&self, _env: &EnvironmentAddress) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// Whether the environment sleeps ([`Runtime::sleep`]).
    async fn sleeping(&self, _env: &EnvironmentAddress) -> bool {
        false
    }

    /// Returns once nothing that a step for the environment started is still running after the step was
    /// abandoned (cancelled, timed out, or its daemon stopped acting): the engine calls it before it undoes the
    /// step, so that an undo never races a process the step left.
    async fn settle(&self, _env: &EnvironmentAddress) {}

    /// Whether the environments of this runtime are reachable from every daemon sharing the store (a shared
    /// directory, a cluster), so that one daemon may finish another's deployments; `false` when they live on the
    /// machine of the daemon that made them.
    fn shared(&self) -> bool {
        false
    }

    /// Stops what the runtime runs on behalf of the daemon, when the daemon stops.
    async fn shutdown(&self) {}
}

/// One service as a runtime sees it, for `preview env show`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServiceStatus {
    pub service: String,
    /// `running`, `restarting` (exited, waiting to start again), `stopped` or `sleeping` (its environment sleeps).
    pub state: String,
    pub pid: Option<u32>,
    /// How often the process was restarted after it exited.
    pub restarts: u32,
    /// How it last exited, e.g. `exit status: 1`.
    pub last_exit: Option<String>,
    /// Where it listens, e.g. `127.0.0.1:20016`.
    pub address: Option<String>,
}

/// A login to an environment's database.
#[derive(Debug, Clone)]
pub struct DatabaseLogin {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub database: String,
    pub password: preview_secrets::Secret,
}

/// A golden snapshot: a copy of an environment's database, masked or not, that new databases are made from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DatabaseSnapshot {
    /// Its name on the server.
    pub name: String,
    /// The environment it is a copy of, and how (`clone` or `masked`).
    pub from: String,
    pub policy: String,
    /// When it was made, in seconds since the Unix epoch.
    pub made_at: u64,
    pub size_bytes: u64,
    pub tables: u64,
    pub rows: u64,
    /// The masking key's secret and its version, for a masked copy; never its value.
    pub masking_key: Option<String>,
    /// Databases made from it, ready to be handed out, and how many are wanted.
    pub warm: u32,
    pub warm_pool: u32,
    /// How old it may get before it is built again, when the spec says.
    pub refresh_seconds: Option<u64>,
}

/// One way an environment is kept apart from the others, as a runtime enforces it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Protection {
    /// `users`, `files`, `network` or `limits`.
    pub name: String,
    pub in_effect: bool,
    /// What it amounts to for this environment, or why it is off.
    pub detail: String,
}

/// Part of a service's log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogChunk {
    pub text: String,
    /// Where the next read continues.
    pub next: u64,
}

/// Where a runtime gets a secret's value, by the name resources list it under (`project/NAME`,
/// `service:web/NAME`, `database:db/password`) and the version (fingerprint) the resource names, at the moment it
/// applies the resource: applying a resource again — a rollback — gets exactly the value it had.
#[async_trait]
pub trait SecretSource: Send + Sync {
    async fn reveal(
        &self,
        env: &EnvironmentAddress,
        name: &str,
        version: &str,
    ) -> Result<preview_secrets::Secret, RuntimeError>;
}

/// For runtimes and tests without secrets: every request is refused.
pub struct NoSecrets;

#[async_trait]
impl SecretSource for NoSecrets {
    async fn reveal(
        &self,
        _env: &EnvironmentAddress,
        name: &str,
        _version: &str,
    ) -> Result<preview_secrets::Secret, RuntimeError> {
        Err(RuntimeError::new(format!(
            "secret `{name}` is not available to this runtime"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_are_cut_to_what_a_journal_holds() {
        let long = format!("é{}", "x".repeat(100_000));
        let error = RuntimeError::new(long);
        assert!(
            error.message.len() <= 16 * 1024 + 8,
            "{}",
            error.message.len()
        );
        assert!(error.message.starts_with('é') && error.message.ends_with(" […]"));
        assert_eq!(RuntimeError::new("short").message, "short");
    }
}
