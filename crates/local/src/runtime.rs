//! `LocalRuntime`: the engine's runtime interface on this machine. Each environment has a directory (records,
//! logs, homes, certificate), a block of ports and — when the daemon runs as root — a space of its own (users,
//! cgroup, network namespace: `spaces`); apps run as supervised processes built from a checkout of the
//! environment's commit; the gateway's routes and certificates are published from what runs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use preview_deploy::{
    EnvironmentAddress, LogChunk, Observed, Protection, Runtime, RuntimeError, SecretSource,
    ServiceStatus, StepLog,
};
use preview_gateway::{Certificates, Challenges, Routes};
use preview_isolation::{CgroupLimits, Netns};
use preview_plan::{Resource, ResourceKind};
use preview_tls::{AcmeIssuer, LocalCa};

use crate::builds::BuildLocks;
use crate::databases::LocalContent;
use crate::forward::ServicePort;
use crate::layout::Builder;
use crate::leftovers::Leftovers;
use crate::ports::{PortRange, Ports, SERVICE_SLOTS, is_free};
use crate::records::{EnvironmentDir, Record, environments};
use crate::spaces::{Isolation, IsolationConfig, Space};
use crate::supervisor::Supervised;

/// How the local runtime behaves; the defaults suit a workstation.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// Everything the runtime keeps: environments, builds, the port table, the CA.
    pub dir: PathBuf,
    /// Kept between builds (`PREVIEW_BUILD_CACHE`: one directory per project and per preview).
    pub build_cache: PathBuf,
    pub ports: PortRange,
    /// How environments are kept apart; `None` (the daemon is not root): everything runs as the daemon's user.
    pub isolation: Option<IsolationConfig>,
    /// How long a new version may take to become healthy.
    pub health_timeout: Duration,
    /// How long the previous version keeps its open requests after the switch, before it is stopped.
    pub drain: Duration,
    /// How long a stopped process may take to exit after SIGTERM.
    pub grace: Duration,
    /// How long issued certificates are valid, and how long before their end they are renewed.
    pub certificate_validity: Duration,
    pub renew_before: Duration,
    /// Who issues environments' certificates.
    pub issuer: Issuer,
}

/// Who issues environments' certificates.
#[derive(Debug, Clone, Default)]
pub enum Issuer {
    /// The local CA in the runtime's directory (`preview ca export`), wildcards included.
    #[default]
    Local,
    /// An ACME CA, each hostname proven by HTTP-01 through the gateway's plain-HTTP listener.
    Acme(preview_tls::AcmeConfig),
}

impl LocalConfig {
    pub fn new(dir: PathBuf) -> LocalConfig {
        LocalConfig {
            build_cache: dir.join("build-cache"),
            dir,
            ports: PortRange::default(),
            isolation: None,
            health_timeout: Duration::from_secs(60),
            drain: Duration::from_millis(500),
            grace: Duration::from_secs(10),
            certificate_validity: Duration::from_secs(90 * 24 * 3600),
            renew_before: Duration::from_secs(30 * 24 * 3600),
            issuer: Issuer::Local,
        }
    }
}

/// One running version of an app.
pub(crate) struct Version {
    pub supervised: Arc<Supervised>,
    pub port: u16,
    /// The hash of the resource it runs.
    pub hash: String,
    /// The environment's network namespace, where its port is.
    pub network: Option<Arc<Netns>>,
    /// Its health checks while it runs, when its spec has some; they end with it.
    pub checks: Option<Checks>,
}

/// A running version's health checks: a task aborted when the version is dropped.
pub(crate) struct Checks(pub tokio::task::AbortHandle);

impl Drop for Checks {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Version {
    pub(crate) fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

/// A service's public hostnames, and what protects them.
pub(crate) struct ServedRoute {
    pub hostnames: Vec<String>,
    pub access: Option<preview_gateway::Access>,
}

/// An environment's certificate as served.
pub(crate) struct ServedCertificate {
    pub hostnames: Vec<String>,
    pub key: Arc<rustls::sign::CertifiedKey>,
    pub not_after: std::time::SystemTime,
}

#[derive(Default)]
pub(crate) struct EnvironmentState {
    /// A preview (it has a builder of its own).
    pub preview: bool,
    /// Its users, cgroup and network, when environments are isolated.
    pub space: Option<Arc<Space>>,
    pub service_ports: BTreeMap<String, ServicePort>,
    pub versions: BTreeMap<String, Version>,
    /// Service → its public hostnames.
    pub routes: BTreeMap<String, ServedRoute>,
    pub certificate: Option<ServedCertificate>,
    /// Ports handed to versions that are starting: two apps starting at once must not get the same one.
    pub starting: std::collections::BTreeSet<u16>,
    /// The connections its service ports may forward at once.
    pub connections: Option<Arc<tokio::sync::Semaphore>>,
    /// Put to sleep: its apps (and its own database servers) do not run, its routes answer as sleeping.
    pub sleeping: bool,
    /// Taken alone to put it to sleep or wake it, shared to apply or remove its resources (`sleep`).
    pub changes: Arc<tokio::sync::RwLock<()>>,
}

pub struct LocalRuntime {
    pub(crate) config: LocalConfig,
    pub(crate) secrets: Arc<dyn SecretSource>,
    pub(crate) routes: Arc<Routes>,
    pub(crate) certificates: Arc<Certificates>,
    /// The answers the gateway gives to ACME HTTP-01 challenges.
    pub(crate) challenges: Arc<Challenges>,
    pub(crate) ca: LocalCa,
    pub(crate) acme: Option<AcmeIssuer>,
    pub(crate) ports: Ports,
    pub(crate) build_locks: BuildLocks,
    /// How environments are kept apart; `None` when the daemon is not root.
    pub(crate) isolation: Option<Isolation>,
    /// Marks every process this runtime starts, so that a later run can find what an earlier one left.
    pub(crate) marker: String,
    pub(crate) state: Mutex<BTreeMap<(String, String), EnvironmentState>>,
    /// What abandoned steps left, until it is gone (`settle`).
    pub(crate) leftovers: Leftovers,
    /// The PostgreSQL servers it runs.
    pub(crate) databases: crate::database_servers::DatabaseServers,
}

impl LocalRuntime {
    /// Opens the runtime's directory; stops processes an earlier run left behind, then starts again every app its
    /// records say should run, and publishes their routes and certificates.
    pub async fn open(
        config: LocalConfig,
        secrets: Arc<dyn SecretSource>,
        routes: Arc<Routes>,
        certificates: Arc<Certificates>,
        challenges: Arc<Challenges>,
        log: &(dyn Fn(&str) + Sync),
    ) -> Result<Arc<LocalRuntime>, String> {
        for dir in [&config.dir, &config.dir.join("environments")] {
            crate::trees::own_dir(dir, None, 0o700)?;
        }
        let ca = LocalCa::load_or_create(&config.dir.join("ca")).map_err(|e| e.to_string())?;
        let acme = match &config.issuer {
            Issuer::Local => None,
            Issuer::Acme(acme) => Some(AcmeIssuer::new(acme.clone(), &config.dir.join("acme"))),
        };
        let ports = Ports::open(config.dir.join("ports.json"), config.ports)?;
        let marker = crate::strays::marker_for(&config.dir)?;
        let isolation = match &config.isolation {
            Some(isolation) => Some(Isolation::open(
                isolation.clone(),
                &config.dir,
                &marker,
                log,
            )?),
            None => None,
        };
        let left = match &isolation {
            Some(isolation) => isolation.stop_strays().await,
            None => 0,
        };
        // Without cgroups, what a killed daemon left is found by the marker in its processes' environment (with
        // cgroups, by their cgroups: a process can fake a marker, not a cgroup).
        let stray = match &isolation {
            Some(isolation) if isolation.tracks_processes() => Vec::new(),
            _ => crate::strays::marked_groups(&marker),
        };
        let stopped = left + crate::strays::stop_groups(&stray, config.grace).await;
        if stopped > 0 {
            log(&format!(
                "stopped {stopped} process(es) or process group(s) left by an earlier run; their apps start again"
            ));
        }
        // Unknown and deleted environments get the gateway's 404 page over HTTPS too, not a TLS alert.
        let fallback_ca =
            LocalCa::load_or_create(&config.dir.join("ca")).map_err(|e| e.to_string())?;
        certificates.set_fallback(crate::site::fallback_certificates(
            fallback_ca,
            Arc::clone(&routes),
        ));
        let runtime = Arc::new(LocalRuntime {
            build_locks: BuildLocks::default(),
            isolation,
            config,
            secrets,
            routes,
            certificates,
            challenges,
            ca,
            acme,
            ports,
            marker,
            state: Mutex::new(BTreeMap::new()),
            leftovers: Leftovers::default(),
            databases: crate::database_servers::DatabaseServers::default(),
        });
        runtime.restore(log).await;
        Ok(runtime)
    }

    /// What keeps environments apart on this daemon, protection by protection, for its report when it starts.
    pub fn protections(&self) -> Vec<Protection> {
        match &self.isolation {
            Some(isolation) => isolation.protections(),
            None => crate::spaces::unprotected(&preview_isolation::user_name()),
        }
    }

    /// The CA certificate clients should trust, PEM.
    pub fn ca_certificate(&self) -> String {
        self.ca.certificate_pem().to_owned()
    }

    pub(crate) fn environment_dir(&self, project: &str, environment: &str) -> EnvironmentDir {
        EnvironmentDir::new(&self.config.dir.join("environments"), project, environment)
    }

    pub(crate) fn dir_of(&self, env: &EnvironmentAddress) -> EnvironmentDir {
        self.environment_dir(&env.project, &env.environment)
    }

    pub(crate) fn with_state<T>(
        &self,
        env: &EnvironmentAddress,
        f: impl FnOnce(&mut EnvironmentState) -> T,
    ) -> T {
        let mut state = match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(state
            .entry((env.project.clone(), env.environment.clone()))
            .or_default())
    }

    /// Spaces, apps, routes and certificates from the records.
    async fn restore(self: &Arc<Self>, log: &(dyn Fn(&str) + Sync)) {
        let mut starts = tokio::task::JoinSet::new();
        for (project, environment) in environments(&self.config.dir.join("environments")) {
            let env = address(&project, &environment);
            let dir = self.environment_dir(&project, &environment);
            let records = dir.all();
            // A sleeping environment keeps sleeping: none of its apps, nor its own servers, start until it is woken.
            let sleeping = dir.is_sleeping();
            if sleeping {
                self.with_state(&env, |s| s.sleeping = true);
                log(&format!(
                    "`{environment}` sleeps; it starts again with its next request"
                ));
            }
            if let Some(space) = records.iter().find(|r| r.kind == ResourceKind::Space)
                && let Err(error) = self.establish(&env, &space.content)
            {
                log(&format!(
                    "cannot give `{environment}` its space again: {error}"
                ));
                continue;
            }
            // Databases first: apps connect to them as they start.
            for record in records.iter().filter(|r| {
                r.kind == ResourceKind::Database
                    && !(sleeping && LocalRuntime::sleeps_with_environment(r))
            }) {
                match self
                    .restore_database(&env, &record.id, &record.content)
                    .await
                {
                    Ok(()) => log(&format!("serving {} of `{environment}` again", record.id)),
                    Err(error) => log(&format!(
                        "cannot serve {} of `{environment}` again: {error}",
                        record.id
                    )),
                }
            }
            for record in records {
                match record.kind {
                    ResourceKind::Route => {
                        if let Err(error) = self.serve_route(&env, &record).await {
                            log(&format!(
                                "cannot serve {} of `{}` again: {error}",
                                record.id, env.environment
                            ));
                        }
                    }
                    ResourceKind::Certificate => {
                        if let Err(error) = self.load_certificate(&env, &record).await {
                            log(&error);
                        }
                    }
                    ResourceKind::App if !sleeping => {
                        let runtime = Arc::clone(self);
                        let env = env.clone();
                        starts.spawn(async move {
                            let resource = record.resource();
                            let result = runtime
                                .apply_app(&env, &resource, &StepLog::default())
                                .await;
                            (env, record.id, result)
                        });
                    }
                    _ => {}
                }
            }
        }
        while let Some(started) = starts.join_next().await {
            match started {
                Ok((env, id, Ok(()))) => {
                    log(&format!("started {id} of `{}` again", env.environment))
                }
                Ok((env, id, Err(error))) => log(&format!(
                    "cannot start {id} of `{}` again: {error}",
                    env.environment
                )),
                Err(error) => log(&format!("a start failed: {error}")),
            }
        }
        self.publish();
    }

    /// The environment's network namespace, when it has one.
    pub(crate) fn network_of(&self, env: &EnvironmentAddress) -> Option<Arc<Netns>> {
        self.with_state(env, |s| {
            s.space.as_ref().and_then(|space| space.netns.clone())
        })
    }

    /// The environment's block of ports (with a slot for each of `services`); in a network namespace of its own any
    /// block will do, on the host's network only one whose service ports nothing else listens on.
    pub(crate) fn assign_block(
        &self,
        env: &EnvironmentAddress,
        services: &[String],
    ) -> Result<crate::ports::Block, RuntimeError> {
        let key = format!("{}/{}", env.project, env.environment);
        self.ports
            .assign(&key, services, &mut self.usable_block())
            .map_err(RuntimeError::new)
    }

    /// Whether a block starting at a port may be an environment's.
    fn usable_block(&self) -> impl FnMut(u16) -> bool + use<> {
        let namespaced = self
            .isolation
            .as_ref()
            .is_some_and(crate::spaces::Isolation::isolates_network);
        move |base| namespaced || (0..SERVICE_SLOTS).all(|slot| is_free(base + slot, None))
    }

    /// Listens on the service's port (in the environment's network), if nothing of this runtime does yet.
    pub(crate) fn ensure_service_port(
        &self,
        env: &EnvironmentAddress,
        service: &str,
    ) -> Result<(), RuntimeError> {
        let block = self.assign_block(env, &[service.to_owned()])?;
        self.bind_service_port(env, service, &block)
            .map_err(RuntimeError::new)
    }

    fn bind_service_port(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        block: &crate::ports::Block,
    ) -> Result<(), String> {
        let Some(port) = block.service_port(service) else {
            return Ok(());
        };
        let bound = self.with_state(env, |s| s.service_ports.contains_key(service));
        if bound {
            return Ok(());
        }
        let listener = ServicePort::bind(port, self.network_of(env), self.connection_permits(env))
            .map_err(|e| {
                format!(
                    "cannot listen on 127.0.0.1:{port} for `{service}` of `{}`: {e}",
                    env.environment
                )
            })?;
        self.with_state(env, |s| {
            // The target is set when a version runs (now, after a restart that already started it).
            if let Some(version) = s.versions.get(service) {
                listener.set_target(Some(version.address()));
            }
            s.service_ports.insert(service.to_owned(), listener);
        });
        Ok(())
    }

    /// The connections the environment's service ports may forward at once, shared by all of them.
    pub(crate) fn connection_permits(
        &self,
        env: &EnvironmentAddress,
    ) -> Arc<tokio::sync::Semaphore> {
        self.with_state(env, |s| {
            Arc::clone(s.connections.get_or_insert_with(|| {
                Arc::new(tokio::sync::Semaphore::new(
                    crate::forward::CONNECTIONS_PER_ENVIRONMENT,
                ))
            }))
        })
    }

    /// Issues again every certificate within `renew_before` of its end; returns the environments renewed.
    pub async fn renew_certificates(&self) -> Vec<String> {
        let now = std::time::SystemTime::now();
        let due: Vec<EnvironmentAddress> = {
            let state = match self.state.lock() {
                Ok(state) => state,
                Err(poisoned) => poisoned.into_inner(),
            };
            state
                .iter()
                .filter(|(_, s)| {
                    s.certificate.as_ref().is_some_and(|c| {
                        preview_tls::needs_renewal(c.not_after, now, self.config.renew_before)
                    })
                })
                .map(|((p, e), _)| address(p, e))
                .collect()
        };
        let mut renewed = Vec::new();
        for env in due {
            let hostnames = self.with_state(&env, |s| {
                s.certificate.as_ref().map(|c| c.hostnames.clone())
            });
            if let Some(hostnames) = hostnames
                && self.issue_certificate(&env, &hostnames).await.is_ok()
            {
                renewed.push(format!("{}/{}", env.project, env.environment));
            }
        }
        self.publish();
        renewed
    }
}

fn remove_dir(path: &std::path::Path) -> Result<(), RuntimeError> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RuntimeError::new(format!(
            "cannot remove {}: {e}",
            path.display()
        ))),
    }
}

pub(crate) fn address(project: &str, environment: &str) -> EnvironmentAddress {
    EnvironmentAddress {
        project: project.to_owned(),
        environment: environment.to_owned(),
    }
}

#[async_trait]
impl Runtime for LocalRuntime {
    async fn apply(
        &self,
        env: &EnvironmentAddress,
        resource: &Resource,
        log: &StepLog,
    ) -> Result<(), RuntimeError> {
        let _changing = self.changing(env, true, log).await?;
        match resource.kind {
            ResourceKind::Space => self.apply_space(env, resource),
            ResourceKind::Secrets => self.record(env, resource),
            ResourceKind::Database => self.apply_database(env, resource, log).await,
            ResourceKind::Build => self.apply_build(env, resource, log).await,
            ResourceKind::Job => self.apply_job(env, resource, log).await,
            ResourceKind::App => self.apply_app(env, resource, log).await,
            ResourceKind::Certificate => self.apply_certificate(env, resource, log).await,
            ResourceKind::Route => self.apply_route(env, resource).await,
        }
    }

    async fn remove(
        &self,
        env: &EnvironmentAddress,
        id: &str,
        kind: ResourceKind,
        log: &StepLog,
    ) -> Result<(), RuntimeError> {
        // Removing what does not run needs nothing awake; an `on-delete` job may need the environment's services.
        let _changing = self.changing(env, kind == ResourceKind::Job, log).await?;
        match kind {
            ResourceKind::Space => self.remove_space(env).await,
            ResourceKind::App => self.remove_app(env, id, log).await,
            ResourceKind::Certificate => self.remove_certificate(env, id),
            ResourceKind::Route => self.remove_route(env, id),
            ResourceKind::Database => self.remove_database(env, id, log).await,
            ResourceKind::Job => self.remove_job(env, id, log).await,
            ResourceKind::Secrets | ResourceKind::Build => self.forget(env, id),
        }
    }

    async fn observe(
        &self,
        env: &EnvironmentAddress,
        id: &str,
    ) -> Result<Option<Observed>, RuntimeError> {
        let record = self.dir_of(env).read(id).map_err(RuntimeError::new)?;
        Ok(record.map(|r| Observed {
            id: r.id,
            hash: r.hash,
        }))
    }

    async fn endpoints(
        &self,
        env: &EnvironmentAddress,
        services: &[String],
    ) -> Result<BTreeMap<String, (String, u16)>, RuntimeError> {
        // Only the numbers, and nothing kept: the environment's space step reserves them (plans, shown variables
        // and refused requests reserve no ports). A service's port is listened on when its app starts.
        let key = format!("{}/{}", env.project, env.environment);
        let block = self
            .ports
            .peek(&key, services, &mut self.usable_block())
            .map_err(RuntimeError::new)?;
        let mut endpoints = BTreeMap::new();
        for service in services {
            if let Some(port) = block.service_port(service) {
                endpoints.insert(service.clone(), ("127.0.0.1".to_owned(), port));
            }
        }
        Ok(endpoints)
    }

    async fn status(&self, env: &EnvironmentAddress) -> Vec<ServiceStatus> {
        let sleeping = self.sleeping_services(env);
        let mut services = self.with_state(env, |s| {
            s.versions
                .iter()
                .map(|(service, version)| {
                    let pid = version.supervised.pid();
                    ServiceStatus {
                        service: service.clone(),
                        state: if pid.is_some() {
                            "running"
                        } else {
                            "restarting"
                        }
                        .to_owned(),
                        pid,
                        restarts: version.supervised.restarts(),
                        last_exit: version.supervised.last_exit(),
                        address: Some(version.address().to_string()),
                    }
                })
                .collect::<Vec<_>>()
        });
        services.extend(sleeping);
        services.sort_by(|a, b| a.service.cmp(&b.service));
        services
    }

    async fn sleep(
        &self,
        env: &EnvironmentAddress,
        idle_since: std::time::SystemTime,
    ) -> Result<bool, RuntimeError> {
        self.sleep_environment(env, idle_since).await
    }

    async fn wake(&self, env: &EnvironmentAddress) -> Result<(), RuntimeError> {
        let failed = self.wake_environment(env).await?;
        if failed.is_empty() {
            Ok(())
        } else {
            Err(RuntimeError::new(failed.join("; ")))
        }
    }

    async fn sleeping(&self, env: &EnvironmentAddress) -> bool {
        // Asleep once its apps were taken down, not from the moment the sleep began: until then `status` still
        // shows them running, and a reader of both would see a sleeping environment with running apps.
        self.with_state(env, |s| s.sleeping && s.versions.is_empty())
    }

    async fn isolation(&self, env: &EnvironmentAddress) -> Vec<Protection> {
        match &self.isolation {
            Some(isolation) => match self.with_state(env, |s| s.space.clone()) {
                Some(space) => isolation.space_protections(&space),
                None => Vec::new(),
            },
            None => crate::spaces::unprotected(&preview_isolation::user_name()),
        }
    }

    async fn logs(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        from: u64,
    ) -> Result<LogChunk, RuntimeError> {
        let id = format!("database/{service}");
        let path = match self.dir_of(env).read(&id).ok().flatten() {
            Some(record) => {
                let content = crate::databases::parse(&id, &record.content)?;
                self.server_log(&content.server_key(env, service))
            }
            None => self.dir_of(env).log_path(service),
        };
        crate::apps::read_log(&path, service, from).map_err(RuntimeError::new)
    }

    async fn database_login(
        &self,
        env: &EnvironmentAddress,
        service: &str,
    ) -> Result<preview_deploy::DatabaseLogin, RuntimeError> {
        self.login(env, service).await
    }

    async fn refresh_database_snapshot(
        &self,
        env: &EnvironmentAddress,
        service: &str,
    ) -> Result<Vec<String>, RuntimeError> {
        self.refresh_snapshot(env, service).await
    }

    async fn reset_database(
        &self,
        env: &EnvironmentAddress,
        service: &str,
    ) -> Result<Vec<String>, RuntimeError> {
        LocalRuntime::reset_database(self, env, service).await
    }

    async fn database_warnings(
        &self,
        env: &EnvironmentAddress,
        resource: &preview_plan::Resource,
    ) -> Vec<String> {
        self.masking_warnings(env, resource).await
    }

    async fn database_snapshot(
        &self,
        env: &EnvironmentAddress,
        service: &str,
    ) -> Result<Option<preview_deploy::DatabaseSnapshot>, RuntimeError> {
        self.snapshot_of(env, service).await
    }

    /// What an abandoned step started was killed when the step was dropped; this waits until none of it is left
    /// (its processes reaped, their cgroups removed, half-made checkouts removed, their locks let go).
    async fn settle(&self, env: &EnvironmentAddress) {
        self.leftovers.settle(env).await;
    }

    async fn shutdown(&self) {
        let versions: Vec<Version> = {
            let mut state = match self.state.lock() {
                Ok(state) => state,
                Err(poisoned) => poisoned.into_inner(),
            };
            state
                .values_mut()
                .flat_map(|s| {
                    s.service_ports.clear();
                    std::mem::take(&mut s.versions).into_values()
                })
                .collect()
        };
        let mut stops = tokio::task::JoinSet::new();
        for mut version in versions {
            // No health check restarts what is being stopped.
            version.checks = None;
            stops.spawn(async move { version.supervised.stop().await });
        }
        while stops.join_next().await.is_some() {}
        self.stop_servers().await;
        self.leftovers.settle_all().await;
        // Networks and cgroups are made again from the records at the next start: none is left meanwhile.
        if let Some(isolation) = &self.isolation {
            let spaces: Vec<EnvironmentAddress> = {
                let mut state = match self.state.lock() {
                    Ok(state) => state,
                    Err(poisoned) => poisoned.into_inner(),
                };
                state
                    .iter_mut()
                    .filter_map(|((p, e), s)| s.space.take().map(|_| address(p, e)))
                    .collect()
            };
            for env in spaces {
                let _ = isolation.take_down(&env).await;
            }
            isolation.shut_down();
        }
    }
}

impl LocalRuntime {
    fn apply_space(
        &self,
        env: &EnvironmentAddress,
        resource: &Resource,
    ) -> Result<(), RuntimeError> {
        self.establish(env, &resource.content)
            .map_err(RuntimeError::new)?;
        self.record(env, resource)
    }

    /// Makes the environment's directory and, when environments are isolated, its space (again, after a restart);
    /// `content` is its `space` resource's.
    fn establish(
        &self,
        env: &EnvironmentAddress,
        content: &serde_json::Value,
    ) -> Result<(), String> {
        let preview = content["preview"].as_bool().unwrap_or(false);
        // The service ports the environment's variables were planned with.
        let endpoints: BTreeMap<String, u16> = content["endpoints"]
            .as_object()
            .map(|endpoints| {
                endpoints
                    .iter()
                    .filter_map(|(service, port)| {
                        Some((service.clone(), u16::try_from(port.as_u64()?).ok()?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        if !endpoints.is_empty() {
            let key = format!("{}/{}", env.project, env.environment);
            self.ports
                .claim(&key, &endpoints, &mut self.usable_block())?;
        }
        let dir = self.dir_of(env);
        for path in [dir.path.parent(), Some(dir.path.as_path())]
            .into_iter()
            .flatten()
        {
            crate::trees::own_dir(path, None, 0o700)?;
        }
        self.with_state(env, |s| s.preview = preview);
        let Some(isolation) = &self.isolation else {
            return crate::trees::own_dir(&dir.tmp(), None, 0o700);
        };
        let limits = &content["limits"];
        let limits = CgroupLimits {
            cpu_millicores: limits["cpu"]["millicores"].as_u64(),
            memory_bytes: limits["memory"]["bytes"].as_u64(),
            tasks: limits["processes"].as_u64(),
        };
        let space = isolation.establish(env, preview, limits, &self.builder(env))?;
        crate::trees::own_dir(&dir.tmp(), Some(space.user), 0o700)?;
        self.with_state(env, |s| s.space = Some(Arc::new(space)));
        Ok(())
    }

    async fn remove_space(&self, env: &EnvironmentAddress) -> Result<(), RuntimeError> {
        let (versions, preview) = {
            let mut state = match self.state.lock() {
                Ok(state) => state,
                Err(poisoned) => poisoned.into_inner(),
            };
            state
                .remove(&(env.project.clone(), env.environment.clone()))
                .map(|s| (s.versions.into_values().collect::<Vec<_>>(), s.preview))
                .unwrap_or_default()
        };
        self.publish();
        for mut version in versions {
            version.checks = None;
            version.supervised.stop().await;
        }
        if let Some(isolation) = &self.isolation {
            isolation.take_down(env).await.map_err(RuntimeError::new)?;
        }
        self.ports
            .release(&format!("{}/{}", env.project, env.environment))
            .map_err(RuntimeError::new)?;
        let dir = self.dir_of(env);
        remove_dir(&dir.path)?;
        // A preview's builder goes with it; the project's builder when its last environment goes (its cache is
        // kept, handed back to the daemon's user).
        let preview_builder = Builder::of(
            &self.config.dir,
            &self.config.build_cache,
            &env.project,
            Some(&env.environment),
        );
        remove_dir(&preview_builder.checkouts)?;
        let preview = preview
            || self
                .isolation
                .as_ref()
                .is_some_and(|i| i.accounts.get(&preview_builder.key).is_some());
        let builder = if preview {
            preview_builder
        } else {
            Builder::of(
                &self.config.dir,
                &self.config.build_cache,
                &env.project,
                None,
            )
        };
        if let Some(isolation) = &self.isolation {
            if !preview && !isolation.builder_in_use(env, &builder) {
                crate::trees::hand_over(&builder.checkouts, 0, 0).map_err(RuntimeError::new)?;
                if builder.cache.exists() {
                    // Under the cache's lock: another daemon sharing the cache may be building in it.
                    let _lock = crate::builds::lock_file(crate::builds::cache_lock(&builder.cache))
                        .await
                        .map_err(RuntimeError::new)?;
                    crate::trees::hand_over(&builder.cache, 0, 0).map_err(RuntimeError::new)?;
                }
            }
            isolation
                .release(env, &builder)
                .map_err(RuntimeError::new)?;
        }
        Ok(())
    }

    pub(crate) fn record(
        &self,
        env: &EnvironmentAddress,
        resource: &Resource,
    ) -> Result<(), RuntimeError> {
        self.dir_of(env)
            .write(&Record::of(resource))
            .map_err(RuntimeError::new)
    }

    pub(crate) fn forget(&self, env: &EnvironmentAddress, id: &str) -> Result<(), RuntimeError> {
        self.dir_of(env).remove(id).map_err(RuntimeError::new)
    }
}
