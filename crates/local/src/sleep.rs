//! Sleeping environments: what runs for an environment nobody uses is stopped — its app versions, and the
//! PostgreSQL servers that are its alone (physical isolation) — while everything it keeps stays: records, port
//! block, space and users, checkouts, homes and data. Its routes answer as sleeping until it is woken (by a request
//! through the gateway's waker, or by a change a deployment makes), which starts its servers, then its recorded app
//! versions, and serves its routes again.
//!
//! A sleeping environment is marked by a `sleeping` file in its directory, written before anything stops: a daemon
//! started again, however the last one ended, starts nothing of it. Sleeping and waking take the environment's
//! change lock alone; applying and removing resources take it shared, so neither ever sees the other half done.
//!
//! Whoever decides that an environment is idle does it a moment before the sleep: a request may reach it in
//! between. So the sleep asks the gateway's activity again once it holds the change lock, before anything stops
//! (`Activity::fall_asleep`): an environment with a request under way, or one since the cut-off, stays awake, and a
//! request from then on finds it asleep and asks for a wake, which waits for the sleep to end.

use std::sync::Arc;
use std::time::SystemTime;

use preview_deploy::{EnvironmentAddress, RuntimeError, ServiceStatus, StepLog};
use preview_plan::ResourceKind;
use tokio::sync::OwnedRwLockReadGuard;

use crate::databases::LocalContent;
use crate::records::{EnvironmentDir, Record};
use crate::runtime::LocalRuntime;

/// Whether a database record's server is the environment's own (physical isolation), which sleeps with it.
fn has_own_server(record: &Record) -> bool {
    record.kind == ResourceKind::Database
        && crate::databases::parse(&record.id, &record.content).is_ok_and(|c| c.physical())
}

impl EnvironmentDir {
    fn sleeping_mark(&self) -> std::path::PathBuf {
        self.path.join("sleeping")
    }

    /// Whether the environment was put to sleep (and not woken since), whichever daemon did it.
    pub(crate) fn is_sleeping(&self) -> bool {
        self.sleeping_mark().exists()
    }

    fn mark_sleeping(&self, sleeping: bool) -> Result<(), RuntimeError> {
        let mark = self.sleeping_mark();
        let done = if sleeping {
            crate::records::write_atomically(&mark, b"")
        } else {
            match std::fs::remove_file(&mark) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(format!("cannot remove {}: {e}", mark.display())),
            }
        };
        done.map_err(RuntimeError::new)
    }
}

impl LocalRuntime {
    fn change_lock(&self, env: &EnvironmentAddress) -> Arc<tokio::sync::RwLock<()>> {
        self.with_state(env, |s| Arc::clone(&s.changes))
    }

    pub(crate) fn is_sleeping(&self, env: &EnvironmentAddress) -> bool {
        self.with_state(env, |s| s.sleeping)
    }

    /// Holds the environment's change lock shared while a resource is applied or removed; with `wake`, a sleeping
    /// environment is woken first (a deployment changes it as it runs).
    pub(crate) async fn changing(
        &self,
        env: &EnvironmentAddress,
        wake: bool,
        log: &StepLog,
    ) -> Result<OwnedRwLockReadGuard<()>, RuntimeError> {
        loop {
            let changing = self.change_lock(env).read_owned().await;
            if !wake || !self.is_sleeping(env) {
                return Ok(changing);
            }
            drop(changing);
            let failed = self.wake_environment(env).await?;
            log.line(format!("woke `{}` first: it was asleep", env.environment));
            for failure in failed {
                log.line(format!("while waking: {failure}"));
            }
        }
    }

    /// Stops the environment's app versions and its own database servers; keeps everything else. Refused while a
    /// change to the environment is under way, and — `Ok(false)` — when a request through the gateway is under way
    /// or came after `idle_since` (it is not idle).
    pub(crate) async fn sleep_environment(
        &self,
        env: &EnvironmentAddress,
        idle_since: SystemTime,
    ) -> Result<bool, RuntimeError> {
        let dir = self.dir_of(env);
        if !dir.path.is_dir() {
            return Ok(false);
        }
        let Ok(_alone) = self.change_lock(env).try_write_owned() else {
            return Err(RuntimeError::new(format!(
                "`{}` is being changed; it is not put to sleep",
                env.environment
            )));
        };
        if self.is_sleeping(env) {
            return Ok(true);
        }
        // Sleeping before the gateway is asked: a request that finds the environment asleep from then on asks for
        // a wake, and the wake waits for this sleep to end rather than finding the environment awake.
        self.with_state(env, |s| s.sleeping = true);
        let activity = self.routes.activity();
        if !activity.fall_asleep(&env.project, &env.environment, idle_since) {
            self.stay_awake(env);
            return Ok(false);
        }
        // Marked before anything stops: a daemon killed from here on starts none of it again.
        if let Err(error) = dir.mark_sleeping(true) {
            self.stay_awake(env);
            return Err(error);
        }
        let versions = self.with_state(env, |s| {
            for service in s.versions.keys() {
                if let Some(port) = s.service_ports.get(service) {
                    port.set_target(None);
                }
            }
            std::mem::take(&mut s.versions)
        });
        self.publish();
        let stops = versions.into_values().map(|mut version| async move {
            // No health check restarts what is being stopped.
            drop(version.checks.take());
            version.supervised.stop().await;
        });
        futures_util::future::join_all(stops).await;
        for record in dir.all().iter().filter(|r| has_own_server(r)) {
            let service = record.id.trim_start_matches("database/");
            let content = crate::databases::parse(&record.id, &record.content)?;
            let key = content.server_key(env, service);
            match content.engine {
                crate::databases::Engine::Redis => {
                    self.stop_redis(&key).await;
                    continue;
                }
                crate::databases::Engine::Mysql => {
                    self.sleep_mysql(&key).await;
                    continue;
                }
                crate::databases::Engine::Postgres => {}
            }
            if let Some(running) = self.running_server(&key).await {
                // Nothing reads it (a copy from it, as a source) while it stops.
                let _alone = Arc::clone(&running.in_use).write_owned().await;
                self.stop_server(&key).await;
            }
        }
        Ok(true)
    }

    /// Gives up a sleep that stopped nothing yet: routes published meanwhile (for another environment's change)
    /// said it sleeps.
    fn stay_awake(&self, env: &EnvironmentAddress) {
        self.with_state(env, |s| s.sleeping = false);
        self.routes.activity().woke(&env.project, &env.environment);
        self.publish();
    }

    /// Starts the sleeping environment's own database servers (waiting until they accept connections), then its
    /// recorded app versions at once, and serves its routes again. An app that does not start is left stopped, as
    /// at a daemon's start, and named in what is returned; a server that does not start leaves the environment
    /// asleep.
    pub(crate) async fn wake_environment(
        &self,
        env: &EnvironmentAddress,
    ) -> Result<Vec<String>, RuntimeError> {
        // Awake already: no need to wait for a change under way (a deployment that woke it) to end.
        if !self.is_sleeping(env) {
            return Ok(Vec::new());
        }
        let _alone = self.change_lock(env).write_owned().await;
        if !self.is_sleeping(env) {
            return Ok(Vec::new());
        }
        let dir = self.dir_of(env);
        let records = dir.all();
        for record in records.iter().filter(|r| has_own_server(r)) {
            self.restore_database(env, &record.id, &record.content)
                .await?;
        }
        let starts =
            records
                .iter()
                .filter(|r| r.kind == ResourceKind::App)
                .map(|record| async move {
                    let resource = record.resource();
                    let started = self.apply_app(env, &resource, &StepLog::default()).await;
                    started
                        .err()
                        .map(|error| format!("{} did not start: {error}", record.id))
                });
        let failed: Vec<String> = futures_util::future::join_all(starts)
            .await
            .into_iter()
            .flatten()
            .collect();
        dir.mark_sleeping(false)?;
        self.with_state(env, |s| s.sleeping = false);
        self.routes.activity().woke(&env.project, &env.environment);
        self.publish();
        Ok(failed)
    }

    /// The apps of a sleeping environment that do not run, as `sleeping`, for `env show`.
    pub(crate) fn sleeping_services(&self, env: &EnvironmentAddress) -> Vec<ServiceStatus> {
        if !self.is_sleeping(env) {
            return Vec::new();
        }
        let running: Vec<String> = self.with_state(env, |s| s.versions.keys().cloned().collect());
        self.dir_of(env)
            .all()
            .into_iter()
            .filter(|r| r.kind == ResourceKind::App)
            .map(|r| r.id.trim_start_matches("app/").to_owned())
            .filter(|service| !running.contains(service))
            .map(|service| ServiceStatus {
                service,
                state: "sleeping".to_owned(),
                pid: None,
                restarts: 0,
                last_exit: None,
                address: None,
            })
            .collect()
    }

    /// Whether a database record's server sleeps with its environment (for the start of a daemon).
    pub(crate) fn sleeps_with_environment(record: &Record) -> bool {
        has_own_server(record)
    }
}
