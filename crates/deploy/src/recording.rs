//! A runtime for tests: it records resources on disk (so they survive the daemon being killed) or in memory, and
//! can be told to fail, hang, or stop dead at a chosen operation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use preview_plan::{Resource, ResourceKind};

use crate::runtime::{
    EnvironmentAddress, NoSecrets, Observed, Runtime, RuntimeError, SecretSource, StepLog,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The operation returns an error.
    Fail,
    /// This operation and every later one return an error: a runtime that stays broken.
    FailFrom,
    /// The operation never returns (the engine's step timeout or a cancel ends it).
    Hang,
    /// The operation writes `fault-reached` and waits forever *before* changing anything: the moment to kill
    /// the process.
    StopBefore,
    /// Like `StopBefore`, but after the change is made and before the operation returns.
    StopAfter,
    /// Stops dead at the first `observe`: every step is applied and only verification remains.
    StopVerify,
    /// Writes `fault-reached`, waits [`SLOW`], then makes the change: a step long enough to pause the daemon in.
    Slow,
}

/// How long a `slow` operation takes before it acts.
pub const SLOW: std::time::Duration = std::time::Duration::from_secs(3);

/// A fault at the `at`-th mutating operation (apply or remove), counted from 1 since the runtime was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub at: u64,
    pub kind: FaultKind,
}

impl Fault {
    /// `fail@3`, `fail-from@3`, `hang@3`, `stop-before@3`, `stop-after@3`, `stop-verify@1`, `slow@3`.
    pub fn parse(text: &str) -> Result<Fault, String> {
        let (kind, at) = text
            .split_once('@')
            .ok_or_else(|| format!("`{text}` is not a fault; write KIND@N, e.g. fail@3"))?;
        let kind = match kind {
            "fail" => FaultKind::Fail,
            "fail-from" => FaultKind::FailFrom,
            "hang" => FaultKind::Hang,
            "stop-before" => FaultKind::StopBefore,
            "stop-after" => FaultKind::StopAfter,
            "stop-verify" => FaultKind::StopVerify,
            "slow" => FaultKind::Slow,
            other => {
                return Err(format!(
                    "`{other}` is not a fault kind; use fail, fail-from, hang, stop-before, stop-after, stop-verify or slow"
                ));
            }
        };
        let at = at
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("`{at}` is not an operation number (1, 2, …)"))?;
        Ok(Fault { at, kind })
    }
}

pub struct RecordingRuntime {
    /// Where resources are kept; `None` keeps them in memory.
    dir: Option<PathBuf>,
    /// The directory is one that daemons sharing a store share (as they would share a cluster).
    shared: bool,
    memory: Mutex<BTreeMap<(EnvironmentAddress, String), Resource>>,
    operations: AtomicU64,
    fault: Option<Fault>,
    /// A fault fires once; this marks that `StopVerify` has.
    verify_stopped: std::sync::atomic::AtomicBool,
    secrets: std::sync::Arc<dyn SecretSource>,
    /// Environments put to sleep (kept in memory only: nothing runs to stop or start again).
    sleeping: Mutex<std::collections::BTreeSet<EnvironmentAddress>>,
    /// What the pre-flight check refuses with, if anything (as a cluster's admission would).
    preflight_refusal: Mutex<Option<String>>,
    /// The states pre-flight checks were asked about, in order.
    preflights: Mutex<Vec<Vec<Resource>>>,
}

impl RecordingRuntime {
    pub fn in_memory() -> Self {
        RecordingRuntime {
            dir: None,
            shared: false,
            memory: Mutex::new(BTreeMap::new()),
            operations: AtomicU64::new(0),
            fault: None,
            verify_stopped: std::sync::atomic::AtomicBool::new(false),
            secrets: std::sync::Arc::new(NoSecrets),
            sleeping: Mutex::default(),
            preflight_refusal: Mutex::default(),
            preflights: Mutex::default(),
        }
    }

    /// Makes every pre-flight check fail with `reason` (`None`: pass again).
    pub fn refuse_preflight(&self, reason: Option<&str>) {
        if let Ok(mut refusal) = self.preflight_refusal.lock() {
            *refusal = reason.map(str::to_owned);
        }
    }

    /// The states pre-flight checks were asked about, in order.
    pub fn preflights(&self) -> Vec<Vec<Resource>> {
        self.preflights
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default()
    }

    /// Resources kept in `dir`, a directory of this daemon's own: its environments are its machine's.
    pub fn on_disk(dir: &Path) -> Self {
        RecordingRuntime {
            dir: Some(dir.to_path_buf()),
            ..RecordingRuntime::in_memory()
        }
    }

    /// Resources kept in `dir`, which every daemon sharing the store uses: any of them may act on any environment.
    pub fn shared_on_disk(dir: &Path) -> Self {
        RecordingRuntime {
            shared: true,
            ..RecordingRuntime::on_disk(dir)
        }
    }

    /// Where secrets come from when a resource that needs them is applied.
    pub fn with_secrets(mut self, secrets: std::sync::Arc<dyn SecretSource>) -> Self {
        self.secrets = secrets;
        self
    }

    /// Reveals every secret the resource names, as a real runtime would to hand them to a process, and keeps
    /// none of them: only the resource (which holds fingerprints, never values) is recorded.
    async fn reveal_secrets(
        &self,
        env: &EnvironmentAddress,
        resource: &Resource,
        log: &StepLog,
    ) -> Result<(), RuntimeError> {
        let names = resource
            .content
            .get("secrets")
            .or_else(|| resource.content.get("names"));
        let Some(names) = names.and_then(|n| n.as_object()) else {
            return Ok(());
        };
        for (name, version) in names {
            let secret = self
                .secrets
                .reveal(env, name, version.as_str().unwrap_or_default())
                .await?;
            drop(secret);
        }
        if !names.is_empty() {
            log.line(format!(
                "{} secrets available to {}",
                names.len(),
                resource.id
            ));
        }
        Ok(())
    }

    pub fn with_fault(mut self, fault: Option<Fault>) -> Self {
        self.fault = fault;
        self
    }

    /// Whether a `stop-verify` fault stopped an observation.
    pub fn verify_reached(&self) -> bool {
        self.verify_stopped.load(Ordering::SeqCst)
    }

    /// How many mutating operations (apply, remove) have begun.
    pub fn operations(&self) -> u64 {
        self.operations.load(Ordering::SeqCst)
    }

    /// Every resource of an environment, by id.
    pub fn state(&self, env: &EnvironmentAddress) -> BTreeMap<String, Resource> {
        match &self.dir {
            Some(dir) => read_state(dir, env),
            None => self
                .memory
                .lock()
                .map(|memory| {
                    memory
                        .iter()
                        .filter(|((address, _), _)| address == env)
                        .map(|((_, id), resource)| (id.clone(), resource.clone()))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Marks the environment asleep or awake.
    fn set_sleeping(&self, env: &EnvironmentAddress, sleeping: bool) {
        if let Ok(mut asleep) = self.sleeping.lock() {
            if sleeping {
                asleep.insert(env.clone());
            } else {
                asleep.remove(env);
            }
        }
    }

    /// Counts a mutating operation and plays the fault if it is this one. `Ok(true)` means "stop after the effect".
    async fn count(&self) -> Result<bool, RuntimeError> {
        let n = self.operations.fetch_add(1, Ordering::SeqCst) + 1;
        let Some(fault) = self.fault.filter(|f| {
            (f.at == n && f.kind != FaultKind::StopVerify)
                || (f.kind == FaultKind::FailFrom && n >= f.at)
        }) else {
            return Ok(false);
        };
        match fault.kind {
            FaultKind::Fail | FaultKind::FailFrom => Err(RuntimeError::new(format!(
                "injected failure at operation {n}"
            ))),
            FaultKind::Hang => std::future::pending().await,
            FaultKind::StopBefore => {
                self.mark_reached(n);
                std::future::pending().await
            }
            FaultKind::StopAfter => Ok(true),
            FaultKind::StopVerify => Ok(false),
            FaultKind::Slow => {
                self.mark_reached(n);
                tokio::time::sleep(SLOW).await;
                Ok(false)
            }
        }
    }

    fn mark_reached(&self, n: u64) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::write(dir.join("fault-reached"), n.to_string());
        }
    }

    fn path(dir: &Path, env: &EnvironmentAddress, id: &str) -> PathBuf {
        environment_dir(dir, env).join(format!("{}.json", id.replace('/', "~")))
    }
}

fn environment_dir(dir: &Path, env: &EnvironmentAddress) -> PathBuf {
    dir.join(&env.project).join(&env.environment)
}

/// The resources a recording runtime keeps on disk under `dir` for `env` (readable after its process died).
pub fn read_state(dir: &Path, env: &EnvironmentAddress) -> BTreeMap<String, Resource> {
    let Ok(entries) = std::fs::read_dir(environment_dir(dir, env)) else {
        return BTreeMap::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| entry.path().extension().is_some_and(|e| e == "json"))
        .filter_map(|entry| std::fs::read(entry.path()).ok())
        .filter_map(|bytes| serde_json::from_slice::<Resource>(&bytes).ok())
        .map(|resource| (resource.id.clone(), resource))
        .collect()
}

fn io(error: std::io::Error) -> RuntimeError {
    RuntimeError::new(format!("recording runtime: {error}"))
}

#[async_trait]
impl Runtime for RecordingRuntime {
    /// A directory named for it (`recording:DIR`) is one that several daemons share; the default one, in the
    /// data directory, is this daemon's alone.
    fn shared(&self) -> bool {
        self.shared
    }

    async fn preflight(
        &self,
        _env: &EnvironmentAddress,
        resources: &[Resource],
    ) -> Result<(), RuntimeError> {
        if let Ok(mut asked) = self.preflights.lock() {
            asked.push(resources.to_vec());
        }
        match self.preflight_refusal.lock().ok().and_then(|r| r.clone()) {
            Some(reason) => Err(RuntimeError::new(reason)),
            None => Ok(()),
        }
    }

    async fn apply(
        &self,
        env: &EnvironmentAddress,
        resource: &Resource,
        log: &StepLog,
    ) -> Result<(), RuntimeError> {
        let stop_after = self.count().await?;
        // A change wakes a sleeping environment first.
        self.set_sleeping(env, false);
        self.reveal_secrets(env, resource, log).await?;
        // A daemon that lost its lease while this operation waited changes nothing.
        log.check_lease()?;
        match &self.dir {
            Some(dir) => {
                let path = RecordingRuntime::path(dir, env, &resource.id);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io)?;
                }
                let body =
                    serde_json::to_vec(resource).map_err(|e| RuntimeError::new(e.to_string()))?;
                // Write then rename: a kill leaves the old file or the new one, never half of one.
                let temporary = path.with_extension("tmp");
                std::fs::write(&temporary, body).map_err(io)?;
                std::fs::rename(&temporary, &path).map_err(io)?;
            }
            None => {
                if let Ok(mut memory) = self.memory.lock() {
                    memory.insert((env.clone(), resource.id.clone()), resource.clone());
                }
            }
        }
        log.line(format!(
            "recorded {} ({})",
            resource.id,
            &resource.hash[..12]
        ));
        if stop_after {
            self.mark_reached(self.operations.load(Ordering::SeqCst));
            std::future::pending::<()>().await;
        }
        Ok(())
    }

    async fn remove(
        &self,
        env: &EnvironmentAddress,
        id: &str,
        _kind: ResourceKind,
        log: &StepLog,
    ) -> Result<(), RuntimeError> {
        let stop_after = self.count().await?;
        log.check_lease()?;
        match &self.dir {
            Some(dir) => match std::fs::remove_file(RecordingRuntime::path(dir, env, id)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(e)),
            },
            None => {
                if let Ok(mut memory) = self.memory.lock() {
                    memory.remove(&(env.clone(), id.to_owned()));
                }
            }
        }
        log.line(format!("removed {id}"));
        if stop_after {
            self.mark_reached(self.operations.load(Ordering::SeqCst));
            std::future::pending::<()>().await;
        }
        Ok(())
    }

    async fn sleep(
        &self,
        env: &EnvironmentAddress,
        _idle_since: std::time::SystemTime,
    ) -> Result<bool, RuntimeError> {
        self.set_sleeping(env, true);
        Ok(true)
    }

    async fn wake(&self, env: &EnvironmentAddress) -> Result<(), RuntimeError> {
        self.set_sleeping(env, false);
        Ok(())
    }

    async fn sleeping(&self, env: &EnvironmentAddress) -> bool {
        self.sleeping
            .lock()
            .is_ok_and(|asleep| asleep.contains(env))
    }

    async fn observe(
        &self,
        env: &EnvironmentAddress,
        id: &str,
    ) -> Result<Option<Observed>, RuntimeError> {
        if self.fault.is_some_and(|f| f.kind == FaultKind::StopVerify)
            && !self.verify_stopped.swap(true, Ordering::SeqCst)
        {
            self.mark_reached(self.operations.load(Ordering::SeqCst));
            std::future::pending::<()>().await;
        }
        Ok(self.state(env).get(id).map(|resource| Observed {
            id: id.to_owned(),
            hash: resource.hash.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_environment_sleeps_until_woken_or_changed() {
        let runtime = RecordingRuntime::in_memory();
        let env = EnvironmentAddress {
            project: "shop".into(),
            environment: "pr-1".into(),
        };
        assert!(!runtime.sleeping(&env).await);
        runtime
            .sleep(&env, std::time::SystemTime::now())
            .await
            .expect("sleep");
        assert!(runtime.sleeping(&env).await);
        runtime.wake(&env).await.expect("wake");
        assert!(!runtime.sleeping(&env).await);
        runtime
            .sleep(&env, std::time::SystemTime::now())
            .await
            .expect("sleep");
        let space = Resource::new(
            "space",
            ResourceKind::Space,
            Vec::new(),
            serde_json::json!({}),
        );
        runtime
            .apply(&env, &space, &StepLog::default())
            .await
            .expect("apply");
        assert!(!runtime.sleeping(&env).await, "a change wakes it");
        assert_eq!(
            runtime.operations(),
            1,
            "sleeping and waking are no operations"
        );
    }
}
