//! `LocalRuntime`: the engine's runtime interface on this machine. Each environment has a directory (records,
//! logs, homes, certificate) and a block of ports; apps run as supervised processes built from a checkout of the
//! environment's commit; the gateway's routes and certificates are published from what runs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use preview_deploy::{
    EnvironmentAddress, LogChunk, Observed, Runtime, RuntimeError, SecretSource, ServiceStatus,
    StepLog,
};
use preview_gateway::{Certificates, Challenges, Routes};
use preview_plan::{Resource, ResourceKind};
use preview_tls::{AcmeIssuer, LocalCa};

use crate::builds::Builds;
use crate::forward::ServicePort;
use crate::ports::{PortRange, Ports, SERVICE_SLOTS, is_free};
use crate::records::{EnvironmentDir, Record, environments};
use crate::supervisor::Supervised;

/// How the local runtime behaves; the defaults suit a workstation.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// Everything the runtime keeps: environments, builds, the port table, the CA.
    pub dir: PathBuf,
    /// Kept between builds (`PREVIEW_BUILD_CACHE`, one directory per project).
    pub build_cache: PathBuf,
    pub ports: PortRange,
    /// User and group ids apps run as, when the daemon runs as root.
    pub run_as: Option<(u32, u32)>,
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
            run_as: None,
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
    pub service_ports: BTreeMap<String, ServicePort>,
    pub versions: BTreeMap<String, Version>,
    /// Service → its public hostnames.
    pub routes: BTreeMap<String, ServedRoute>,
    pub certificate: Option<ServedCertificate>,
    /// Ports handed to versions that are starting: two apps starting at once must not get the same one.
    pub starting: std::collections::BTreeSet<u16>,
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
    pub(crate) builds: Builds,
    /// Marks every process this runtime starts, so that a later run can find what an earlier one left.
    pub(crate) marker: String,
    pub(crate) state: Mutex<BTreeMap<(String, String), EnvironmentState>>,
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
            create_passable_dir(dir)?;
        }
        let ca = LocalCa::load_or_create(&config.dir.join("ca")).map_err(|e| e.to_string())?;
        let acme = match &config.issuer {
            Issuer::Local => None,
            Issuer::Acme(acme) => Some(AcmeIssuer::new(acme.clone(), &config.dir.join("acme"))),
        };
        let ports = Ports::open(config.dir.join("ports.json"), config.ports)?;
        let builds_dir = config.dir.join("builds");
        create_passable_dir(&builds_dir)?;
        let marker = crate::strays::marker_for(&config.dir);
        let stray = crate::strays::marked_groups(&marker);
        if !stray.is_empty() {
            let stopped = crate::strays::stop_groups(&stray, config.grace).await;
            log(&format!(
                "stopped {stopped} process group(s) left by an earlier run; their apps start again"
            ));
        }
        let runtime = Arc::new(LocalRuntime {
            builds: Builds::new(builds_dir, config.build_cache.clone()),
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
        });
        runtime.restore(log).await;
        Ok(runtime)
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

    /// Service ports of every allocated block, apps, routes and certificates from the records.
    async fn restore(self: &Arc<Self>, log: &(dyn Fn(&str) + Sync)) {
        for (key, block) in self.ports.all() {
            let Some((project, environment)) = key.split_once('/') else {
                continue;
            };
            let env = address(project, environment);
            for (service, _) in block.services.iter() {
                if let Err(error) = self.bind_service_port(&env, service, &block) {
                    log(&error);
                }
            }
        }
        let mut starts = tokio::task::JoinSet::new();
        for (project, environment) in environments(&self.config.dir.join("environments")) {
            let env = address(&project, &environment);
            for record in self.environment_dir(&project, &environment).all() {
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
                    ResourceKind::App => {
                        let runtime = Arc::clone(self);
                        let env = env.clone();
                        starts.spawn(async move {
                            let resource = Resource {
                                id: record.id.clone(),
                                kind: record.kind,
                                depends_on: Vec::new(),
                                content: record.content.clone(),
                                hash: record.hash.clone(),
                            };
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

    pub(crate) fn bind_service_port(
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
        let listener = ServicePort::bind(port).map_err(|e| {
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

pub(crate) fn address(project: &str, environment: &str) -> EnvironmentAddress {
    EnvironmentAddress {
        project: project.to_owned(),
        environment: environment.to_owned(),
    }
}

/// A directory others may pass through but not list: apps run as another user must reach their checkout and
/// home inside the daemon's data directory.
pub(crate) fn create_passable_dir(dir: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
        .map_err(|e| format!("cannot set the mode of {}: {e}", dir.display()))
}

#[async_trait]
impl Runtime for LocalRuntime {
    async fn apply(
        &self,
        env: &EnvironmentAddress,
        resource: &Resource,
        log: &StepLog,
    ) -> Result<(), RuntimeError> {
        match resource.kind {
            ResourceKind::Space => self.apply_space(env, resource),
            ResourceKind::Secrets => self.record(env, resource),
            ResourceKind::Database => Err(RuntimeError::new(format!(
                "{}: database resources are not supported by this runtime yet; the local runtime does not manage PostgreSQL servers yet, so deploy this environment without its databases",
                resource.id
            ))),
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
        match kind {
            ResourceKind::Space => self.remove_space(env).await,
            ResourceKind::App => self.remove_app(env, id, log).await,
            ResourceKind::Certificate => self.remove_certificate(env, id),
            ResourceKind::Route => self.remove_route(env, id),
            ResourceKind::Secrets
            | ResourceKind::Database
            | ResourceKind::Build
            | ResourceKind::Job => self.forget(env, id),
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
        let key = format!("{}/{}", env.project, env.environment);
        let block = self
            .ports
            .assign(&key, services, &mut |base| {
                (0..SERVICE_SLOTS).all(|slot| is_free(base + slot))
            })
            .map_err(RuntimeError::new)?;
        let mut endpoints = BTreeMap::new();
        for service in services {
            self.bind_service_port(env, service, &block)
                .map_err(RuntimeError::new)?;
            if let Some(port) = block.service_port(service) {
                endpoints.insert(service.clone(), ("127.0.0.1".to_owned(), port));
            }
        }
        Ok(endpoints)
    }

    async fn status(&self, env: &EnvironmentAddress) -> Vec<ServiceStatus> {
        self.with_state(env, |s| {
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
                .collect()
        })
    }

    async fn logs(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        from: u64,
    ) -> Result<LogChunk, RuntimeError> {
        crate::apps::read_log(&self.dir_of(env).log_path(service), service, from)
            .map_err(RuntimeError::new)
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
        for version in versions {
            stops.spawn(async move { version.supervised.stop().await });
        }
        while stops.join_next().await.is_some() {}
    }
}

impl LocalRuntime {
    fn apply_space(
        &self,
        env: &EnvironmentAddress,
        resource: &Resource,
    ) -> Result<(), RuntimeError> {
        let dir = self.dir_of(env);
        for path in [dir.path.parent(), Some(dir.path.as_path())]
            .into_iter()
            .flatten()
        {
            create_passable_dir(path).map_err(RuntimeError::new)?;
        }
        self.record(env, resource)
    }

    async fn remove_space(&self, env: &EnvironmentAddress) -> Result<(), RuntimeError> {
        let versions: Vec<Version> = {
            let mut state = match self.state.lock() {
                Ok(state) => state,
                Err(poisoned) => poisoned.into_inner(),
            };
            state
                .remove(&(env.project.clone(), env.environment.clone()))
                .map(|s| s.versions.into_values().collect())
                .unwrap_or_default()
        };
        self.publish();
        for version in versions {
            version.supervised.stop().await;
        }
        self.ports
            .release(&format!("{}/{}", env.project, env.environment))
            .map_err(RuntimeError::new)?;
        let dir = self.dir_of(env);
        match std::fs::remove_dir_all(&dir.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(RuntimeError::new(format!(
                "cannot remove {}: {e}",
                dir.path.display()
            ))),
        }
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
