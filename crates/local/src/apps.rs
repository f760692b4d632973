//! Builds, jobs and apps: what runs. A new version of an app starts next to the running one on a port of the
//! environment's block, must become healthy, then takes over the service port and the gateway's routes; the
//! previous version drains and stops. A version that never becomes healthy is stopped and the previous one keeps
//! serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use preview_deploy::{EnvironmentAddress, LogChunk, RuntimeError, StepLog};
use preview_isolation::{CgroupLimits, Netns};
use preview_plan::Resource;
use preview_secrets::Secret;
use serde_json::Value;

use crate::builds::BuildRequest;
use crate::health::Probe;
use crate::ports::is_free;
use crate::runtime::{LocalRuntime, Version};
use crate::spaces::{DEFAULT_TASKS, Work, memory};
use crate::strays::MARKER_VARIABLE;
use crate::supervisor::{Place, ProcessSpec, Supervised};

/// Logs rotate past this size; one previous file is kept.
const LOG_LIMIT: u64 = 8 * 1024 * 1024;
/// The most `preview logs` returns at once.
const LOG_CHUNK: u64 = 256 * 1024;

/// The fields of an `app/…` or `job/…` resource the local runtime uses.
struct Workload {
    service: String,
    /// `run` for an app, `command` for a job.
    command: Option<String>,
    health: Option<Health>,
    variables: Vec<(String, Value)>,
    /// The version (fingerprint) of each secret its variables name.
    secret_versions: serde_json::Map<String, Value>,
    source: Option<BuildRequest>,
    /// What its own cgroup allows (`resources` of an app; a job has only the default task limit).
    limits: CgroupLimits,
}

struct Health {
    probe: Probe,
    /// How often a running app is checked.
    interval: Duration,
    timeout: Duration,
    start_timeout: Option<Duration>,
    failures: u32,
}

fn text(value: &Value) -> Option<String> {
    value.as_str().map(str::to_owned)
}

/// A duration in whole milliseconds, as resources hold them.
fn milliseconds(value: &Value) -> Option<Duration> {
    value.as_u64().map(Duration::from_millis)
}

fn service_of(id: &str) -> String {
    id.split_once('/').map_or(id, |(_, name)| name).to_owned()
}

/// The limits in a resource's `resources` (`{"cpu": {"millicores"}, "memory": {"bytes"}, "processes"}`), with
/// the default task limit when it sets none.
fn limits(resources: &Value) -> CgroupLimits {
    CgroupLimits {
        cpu_millicores: resources["cpu"]["millicores"].as_u64(),
        memory_bytes: resources["memory"]["bytes"].as_u64(),
        tasks: Some(resources["processes"].as_u64().unwrap_or(DEFAULT_TASKS)),
    }
}

impl Workload {
    fn parse(resource: &Resource, command_key: &str) -> Workload {
        let c = &resource.content;
        let service = service_of(&resource.id);
        let health = c["health"].as_object().map(|health| {
            let probe = match health.get("probe").and_then(|p| p["http"].as_str()) {
                Some(path) => Probe::Http {
                    path: path.to_owned(),
                },
                None => Probe::Tcp,
            };
            Health {
                probe,
                interval: milliseconds(&health["interval_ms"]).unwrap_or(Duration::from_secs(2)),
                timeout: milliseconds(&health["timeout_ms"]).unwrap_or(Duration::from_secs(1)),
                start_timeout: milliseconds(&health["start_timeout_ms"]),
                failures: health["failures"]
                    .as_u64()
                    .and_then(|f| u32::try_from(f).ok())
                    .unwrap_or(3)
                    .max(1),
            }
        });
        let with_secrets = c["with_secrets"].as_object();
        let variables = c["variables"]
            .as_object()
            .map(|variables| {
                variables
                    .iter()
                    .map(|(name, value)| {
                        let value = with_secrets
                            .and_then(|w| w.get(name))
                            .cloned()
                            .unwrap_or_else(|| value.clone());
                        (name.clone(), value)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let source = c["source"].as_object().map(|source| BuildRequest {
            service: service.clone(),
            command: None,
            repository: text(&source["repository"]).unwrap_or_default(),
            directory: text(&source["directory"]).unwrap_or_default(),
            commit: text(&source["commit"]).unwrap_or_default(),
        });
        Workload {
            service,
            command: text(&c[command_key]),
            health,
            variables,
            secret_versions: c["secrets"].as_object().cloned().unwrap_or_default(),
            source,
            limits: limits(&c["resources"]),
        }
    }
}

/// Where a job or app version runs, and the `HOME` it sees there.
struct Running {
    place: Place,
    home: PathBuf,
    network: Option<Arc<Netns>>,
    /// Its memory limits as people read them, for the message when the kernel kills it.
    memory_limit: Option<String>,
}

impl LocalRuntime {
    pub(crate) async fn apply_build(
        &self,
        env: &EnvironmentAddress,
        resource: &Resource,
        log: &StepLog,
    ) -> Result<(), RuntimeError> {
        let c = &resource.content;
        let request = BuildRequest {
            service: text(&c["service"]).unwrap_or_else(|| service_of(&resource.id)),
            command: text(&c["command"]),
            repository: text(&c["repository"]).unwrap_or_default(),
            directory: text(&c["directory"]).unwrap_or_default(),
            commit: text(&c["commit"]).unwrap_or_default(),
        };
        let done = self
            .build(env, &request, log)
            .await
            .map_err(RuntimeError::new)?;
        log.line(done);
        self.record(env, resource)
    }

    /// Where a workload runs: in the spec's directory of its builder's checkout of its commit; in a sandbox of the
    /// environment's space (in a cgroup `unit` of the environment's) when environments are isolated.
    async fn running(
        &self,
        env: &EnvironmentAddress,
        workload: &Workload,
        unit: String,
        log: &StepLog,
    ) -> Result<Running, RuntimeError> {
        let Some(source) = &workload.source else {
            return Err(RuntimeError::new(format!(
                "`{}` has no commit to run from: the project's spec is not inside a git repository; commit it to one and register it again",
                workload.service
            )));
        };
        let builder = self.builder(env);
        let tree = self
            .checkout(env, &builder, &source.repository, &source.commit, log)
            .await
            .map_err(RuntimeError::new)?;
        let dir = self.dir_of(env);
        let home = dir.home(&workload.service);
        let space = self.with_state(env, |s| s.space.clone());
        let owner = space.as_ref().map(|s| s.user);
        for path in [dir.path.join("home"), home.clone()] {
            crate::trees::own_dir(&path, None, 0o700).map_err(RuntimeError::new)?;
        }
        crate::trees::own_dir(&home, owner, 0o700).map_err(RuntimeError::new)?;
        let memory_limit = {
            let own = workload.limits.memory_bytes.map(memory);
            let total = space
                .as_ref()
                .and_then(|s| s.limits.memory_bytes)
                .map(|b| format!("environment total {}", memory(b)));
            match (own, total) {
                (Some(own), Some(total)) => Some(format!("{own}; {total}")),
                (own, total) => own.or(total),
            }
        };
        match (&self.isolation, space) {
            (Some(isolation), Some(space)) => {
                let (sandbox, home) = isolation
                    .sandbox(
                        env,
                        &space,
                        Work::Run {
                            tree: &tree,
                            directory: &source.directory,
                            home: &home,
                            tmp: &dir.tmp(),
                            unit,
                            limits: workload.limits,
                        },
                    )
                    .map_err(RuntimeError::new)?;
                Ok(Running {
                    place: Place::Sandbox(Arc::new(sandbox)),
                    home,
                    network: space.netns.clone(),
                    memory_limit,
                })
            }
            _ => Ok(Running {
                place: Place::Host(tree.join(&source.directory)),
                home,
                network: None,
                memory_limit: None,
            }),
        }
    }

    /// The workload's variables with secrets filled in, plus the runtime's own. Each value is a [`Secret`], so
    /// nothing here can print one.
    async fn environment(
        &self,
        env: &EnvironmentAddress,
        workload: &Workload,
        home: &Path,
        port: Option<u16>,
    ) -> Result<Vec<(String, Secret)>, RuntimeError> {
        let mut assembled = Vec::new();
        for (name, value) in &workload.variables {
            let value = match value {
                Value::Array(parts) => {
                    let mut text = String::new();
                    for part in parts {
                        if let Some(plain) = part["text"].as_str() {
                            text.push_str(plain);
                        } else if let Some(secret) = part["secret"].as_str() {
                            let version = workload
                                .secret_versions
                                .get(secret)
                                .and_then(Value::as_str)
                                .unwrap_or_default();
                            text.push_str(
                                self.secrets.reveal(env, secret, version).await?.expose(),
                            );
                        }
                    }
                    Secret::new(text)
                }
                other => Secret::new(other.as_str().unwrap_or_default().to_owned()),
            };
            assembled.push((name.clone(), value));
        }
        if let Some(port) = port {
            // The service port belongs to the environment; this version listens on its own.
            assembled.retain(|(name, _)| name != "PORT");
            assembled.push(("PORT".to_owned(), Secret::new(port.to_string())));
        }
        assembled.push(("HOME".to_owned(), Secret::new(home.display().to_string())));
        assembled.push((MARKER_VARIABLE.to_owned(), Secret::new(self.marker.clone())));
        Ok(assembled)
    }

    /// A job by its hook: `migrate` (and a job without a hook) runs whenever its resource changes — a new commit
    /// runs the new migrations; `on-create` and `seed` run once, when the environment gets them (a redeploy keeps
    /// what they made); `on-delete` runs when it is removed — when the environment is deleted.
    pub(crate) async fn apply_job(
        &self,
        env: &EnvironmentAddress,
        resource: &Resource,
        log: &StepLog,
    ) -> Result<(), RuntimeError> {
        let hook = resource.content["hook"].as_str().unwrap_or_default();
        let ran_before = self
            .dir_of(env)
            .read(&resource.id)
            .map_err(RuntimeError::new)?
            .is_some();
        let service = resource.id.trim_start_matches("job/");
        match hook {
            "on-create" | "seed" if ran_before => {
                log.line(format!(
                    "job `{service}` ({hook}) ran when the environment got it; not again"
                ));
                return self.record(env, resource);
            }
            "on-delete" => {
                log.line(format!(
                    "job `{service}` (on-delete) runs when the environment is deleted"
                ));
                return self.record(env, resource);
            }
            // A seed job seeds a database whose policy names it; an environment whose database is a copy (a
            // preview) has its data already.
            "seed" if !self.seeds_a_database(env, service) => {
                log.line(format!(
                    "job `{service}` (seed) not run: no database of `{}` is seeded by it (its clone policy says otherwise)",
                    env.environment
                ));
                return self.record(env, resource);
            }
            _ => {}
        }
        self.run_job(env, resource, log).await
    }

    /// Whether a database of the environment, as recorded, has `clone: { policy: seed, job: <job> }`.
    fn seeds_a_database(&self, env: &EnvironmentAddress, job: &str) -> bool {
        self.dir_of(env).all().iter().any(|record| {
            record.kind == preview_plan::ResourceKind::Database
                && record.content["clone"]["policy"] == "seed"
                && record.content["clone"]["job"] == job
        })
    }

    /// Runs an `on-delete` job before forgetting it; its failure is logged, not fatal: a delete must finish.
    pub(crate) async fn remove_job(
        &self,
        env: &EnvironmentAddress,
        id: &str,
        log: &StepLog,
    ) -> Result<(), RuntimeError> {
        let record = self.dir_of(env).read(id).map_err(RuntimeError::new)?;
        if let Some(record) = record
            && record.content["hook"].as_str() == Some("on-delete")
            && let Err(error) = self.run_job(env, &record.resource(), log).await
        {
            log.line(format!(
                "{}: the on-delete job failed, the removal goes on: {}",
                record.id, error.message
            ));
        }
        self.forget(env, id)
    }

    pub(crate) async fn run_job(
        &self,
        env: &EnvironmentAddress,
        resource: &Resource,
        log: &StepLog,
    ) -> Result<(), RuntimeError> {
        let workload = Workload::parse(resource, "command");
        let Some(command) = workload.command.clone() else {
            return Err(RuntimeError::new(format!(
                "job `{}` has no command for the local runtime",
                workload.service
            )));
        };
        let running = self
            .running(env, &workload, format!("job-{}", workload.service), log)
            .await?;
        let variables = self
            .environment(env, &workload, &running.home, None)
            .await?;
        let secrets = secret_values(&workload, &variables);
        let log_path = self.dir_of(env).log_path(&workload.service);
        let mut spec = self.process_spec(
            env,
            &workload.service,
            command,
            running,
            variables,
            log_path.clone(),
        );
        // A job runs once: its first exit is its result. Abandoned, it is killed (and never runs again).
        spec.restart = false;
        log.check_lease()?;
        let process = Supervised::start(spec)
            .await
            .map_err(|e| RuntimeError::new(e.to_string()))?;
        process.ended().await;
        let exit = process
            .last_exit()
            .unwrap_or_else(|| "no exit status".to_owned());
        process.stop().await;
        // This run's own output (the log file also holds earlier runs'), secret values replaced.
        let output = redact(&process.output_tail(20), &secrets);
        if exit != "exit status: 0" {
            return Err(RuntimeError::new(format!(
                "job `{}` failed ({exit}); its output ends with:\n{output}",
                workload.service,
            )));
        }
        for line in output.lines() {
            log.line(format!("job `{}`: {line}", workload.service));
        }
        log.line(format!("job `{}` finished", workload.service));
        self.record(env, resource)
    }

    fn process_spec(
        &self,
        env: &EnvironmentAddress,
        name: &str,
        command: String,
        running: Running,
        variables: Vec<(String, Secret)>,
        log: PathBuf,
    ) -> ProcessSpec {
        ProcessSpec {
            name: name.to_owned(),
            command,
            place: running.place,
            env: variables,
            log,
            log_limit: LOG_LIMIT,
            grace: self.config.grace,
            backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            memory_limit: running.memory_limit,
            restart: true,
            leftovers: Some(self.leftovers.of(env)),
        }
    }

    pub(crate) async fn apply_app(
        &self,
        env: &EnvironmentAddress,
        resource: &Resource,
        log: &StepLog,
    ) -> Result<(), RuntimeError> {
        let workload = Workload::parse(resource, "run");
        let service = workload.service.clone();
        let current = self.with_state(env, |s| s.versions.get(&service).map(|v| v.hash.clone()));
        if current.as_deref() == Some(resource.hash.as_str()) {
            return self.record(env, resource);
        }
        self.ensure_service_port(env, &service)?;
        let reserved = self.version_port(env)?;
        let port = reserved.port;
        // Until it is switched in, the version goes (killed) with this step if the step is abandoned.
        let version = self
            .start_version(env, &workload, port, &resource.hash, log)
            .await?;
        log.check_lease()?;
        let previous = self.switch(env, &service, Some(version));
        // The port is the running version's now.
        drop(reserved);
        self.publish();
        log.line(format!("`{service}` now answers from port {port}"));
        let recorded = self.record(env, resource);
        if let Some(mut previous) = previous {
            // Its health checks end now: a version that drains is not restarted for failing them.
            previous.checks = None;
            // Abandoned during the drain, the previous version is killed with this step (`Supervised`'s drop).
            tokio::time::sleep(self.config.drain).await;
            previous.supervised.stop().await;
            log.line(format!("stopped the previous version of `{service}`"));
        }
        recorded
    }

    /// Makes `version` the one the service port and routes lead to; returns the one it replaces.
    fn switch(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        version: Option<Version>,
    ) -> Option<Version> {
        self.with_state(env, |s| {
            if let Some(port) = s.service_ports.get(service) {
                port.set_target(version.as_ref().map(Version::address));
            }
            match version {
                Some(version) => s.versions.insert(service.to_owned(), version),
                None => s.versions.remove(service),
            }
        })
    }

    pub(crate) async fn remove_app(
        &self,
        env: &EnvironmentAddress,
        id: &str,
        log: &StepLog,
    ) -> Result<(), RuntimeError> {
        let service = service_of(id);
        if let Some(mut previous) = self.switch(env, &service, None) {
            previous.checks = None;
            self.publish();
            previous.supervised.stop().await;
            log.line(format!("stopped `{service}`"));
        }
        self.forget(env, id)
    }

    /// Starts a version on a free port of the environment's block and waits until it is healthy; stops it again
    /// when it is not.
    async fn start_version(
        &self,
        env: &EnvironmentAddress,
        workload: &Workload,
        port: u16,
        hash: &str,
        log: &StepLog,
    ) -> Result<Version, RuntimeError> {
        let service = &workload.service;
        let Some(command) = workload.command.clone() else {
            return Err(RuntimeError::new(format!(
                "app `{service}` has no `run` command for the local runtime"
            )));
        };
        let running = self
            .running(env, workload, format!("app-{service}-{port}"), log)
            .await?;
        let network = running.network.clone();
        let variables = self
            .environment(env, workload, &running.home, Some(port))
            .await?;
        let secrets = secret_values(workload, &variables);
        let log_path = self.dir_of(env).log_path(service);
        log.check_lease()?;
        let supervised = Arc::new(
            Supervised::start(self.process_spec(
                env,
                service,
                command,
                running,
                variables,
                log_path.clone(),
            ))
            .await
            .map_err(|e| RuntimeError::new(e.to_string()))?,
        );
        log.line(format!(
            "started `{service}` (pid {}) on port {port}",
            supervised.pid().map_or("?".to_owned(), |p| p.to_string())
        ));
        let mut version = Version {
            supervised,
            port,
            hash: hash.to_owned(),
            network,
            checks: None,
        };
        if let Err(reason) = self.wait_until_healthy(&version, workload).await {
            version.supervised.stop().await;
            // This version's own lines: the log file also holds the running version's and earlier ones'.
            let output = redact(&version.supervised.output_tail(15), &secrets);
            return Err(RuntimeError::new(format!(
                "`{service}` did not become healthy: {reason}; the previous version keeps serving. Its output ends with:\n{output}"
            )));
        }
        log.line(format!("`{service}` is healthy"));
        // From now on it is checked every `interval`, and restarted when it keeps failing.
        if let Some(health) = &workload.health {
            let liveness = crate::health::Liveness {
                probe: health.probe.clone(),
                interval: health.interval,
                timeout: health.timeout,
                failures: health.failures,
                start_timeout: self.start_timeout(workload),
            };
            let task = tokio::spawn(crate::health::watch(
                liveness,
                version.network.clone(),
                version.address(),
                Arc::clone(&version.supervised),
            ));
            version.checks = Some(crate::runtime::Checks(task.abort_handle()));
        }
        Ok(version)
    }

    /// How long a starting version of the workload may take to become healthy.
    fn start_timeout(&self, workload: &Workload) -> Duration {
        workload
            .health
            .as_ref()
            .and_then(|h| h.start_timeout)
            .unwrap_or(self.config.health_timeout)
    }

    /// Waits for the version's health check; a version that exits first fails at once.
    async fn wait_until_healthy(
        &self,
        version: &Version,
        workload: &Workload,
    ) -> Result<(), String> {
        // A starting version is asked every 100 ms (or every `interval`, when shorter), so that a deployment waits
        // no longer than it must; `interval` paces the checks of the running one.
        let quickly = Duration::from_millis(100);
        let (probe, interval, timeout) = match &workload.health {
            Some(health) => (
                health.probe.clone(),
                health.interval.min(quickly),
                health.timeout,
            ),
            None => (Probe::Tcp, quickly, Duration::from_secs(1)),
        };
        let started = Instant::now();
        let exited = || {
            version
                .supervised
                .last_exit()
                .map(|exit| format!("it exited ({exit}) before it was healthy"))
        };
        // An app that listens, but on another port than the one it was given, will not become healthy by waiting.
        let elsewhere = || {
            // Apps open debug or metrics ports first: only one still not on `$PORT` after a while is told.
            if started.elapsed() < Duration::from_secs(5) {
                return None;
            }
            let ports = crate::sockets::listening_ports(&version.supervised.processes());
            if ports.is_empty() || ports.contains(&version.port) {
                return None;
            }
            let listed: Vec<String> = ports.iter().map(u16::to_string).collect();
            Some(format!(
                "`{}` listens on {}, not on `$PORT` ({}): have it listen on the port the PORT environment variable gives it",
                workload.service,
                listed.join(", "),
                version.port
            ))
        };
        let gave_up = || exited().or_else(elsewhere);
        crate::health::wait_until_healthy(
            version.network.as_deref(),
            &probe,
            version.address(),
            interval,
            timeout,
            Instant::now() + self.start_timeout(workload),
            &gave_up,
        )
        .await
    }

    /// A port of the environment's block that no version of it uses or is starting on and nothing else listens
    /// on; reserved until the reservation is dropped (the version runs, failed to, or its step was abandoned).
    fn version_port<'a>(
        &'a self,
        env: &'a EnvironmentAddress,
    ) -> Result<Reserved<'a>, RuntimeError> {
        let key = format!("{}/{}", env.project, env.environment);
        let block = match self.ports.get(&key) {
            Some(block) => block,
            None => self.assign_block(env, &[])?,
        };
        let network = self.network_of(env);
        self.with_state(env, |s| {
            let port = block.version_ports().find(|port| {
                !s.starting.contains(port)
                    && !s.versions.values().any(|v| v.port == *port)
                    && is_free(*port, network.as_deref())
            })?;
            s.starting.insert(port);
            Some(port)
        })
        .map(|port| Reserved {
            runtime: self,
            env,
            port,
        })
        .ok_or_else(|| {
            RuntimeError::new(format!(
                "no free port left in `{}`'s block {}-{}",
                env.environment,
                block.base,
                block.base + crate::ports::BLOCK - 1
            ))
        })
    }
}

/// A port handed to a version that is starting, given back when dropped.
struct Reserved<'a> {
    runtime: &'a LocalRuntime,
    env: &'a EnvironmentAddress,
    port: u16,
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        self.runtime
            .with_state(self.env, |s| s.starting.remove(&self.port));
    }
}

/// The values of the workload's variables that hold a secret, to keep out of what is shown of its output.
fn secret_values(
    workload: &Workload,
    variables: &[(String, preview_secrets::Secret)],
) -> Vec<String> {
    variables
        .iter()
        .filter(|(name, _)| {
            workload
                .variables
                .iter()
                .any(|(n, v)| n == name && v.is_array())
        })
        .map(|(_, value)| value.expose().to_owned())
        .collect()
}

fn redact(text: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|s| s.len() >= 4)
        .fold(text.to_owned(), |text, secret| {
            text.replace(secret.as_str(), "[secret]")
        })
}

/// The log from byte `from` (from the start if the log rotated since), at most [`LOG_CHUNK`] bytes.
pub(crate) fn read_log(path: &Path, service: &str, from: u64) -> Result<LogChunk, String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "`{service}` has no log here: it has not run in this environment"
            ));
        }
        Err(e) => return Err(format!("cannot read the log of `{service}`: {e}")),
    };
    let length = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = if from > length { 0 } else { from };
    file.seek(SeekFrom::Start(start))
        .map_err(|e| format!("cannot read the log of `{service}`: {e}"))?;
    let mut bytes = Vec::new();
    file.take(LOG_CHUNK)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the log of `{service}`: {e}"))?;
    Ok(LogChunk {
        next: start + bytes.len() as u64,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    })
}
