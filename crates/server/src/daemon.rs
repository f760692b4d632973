//! Starting the daemon: data directory, store, identity, runtime, recovery, token, listener — in that order, so
//! that no request is accepted before every unfinished deployment has been recovered.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use std::os::unix::fs::PermissionsExt;

use preview_deploy::{Engine, EngineConfig, Fault, RecordingRuntime, Runtime};
use preview_gateway::{Certificates, Challenges, Proxy, Routes};
use preview_local::{
    IdRange, IsolationConfig, Issuer, LocalConfig, LocalRuntime, PortRange, Subnet,
};
use preview_store::Store;

use crate::api::{AppState, Gateway, router};
use crate::auth::{
    ClientConfig, client_config_path, new_token, read_client_config, sha256_hex,
    write_client_config,
};

/// Where environments live.
#[derive(Clone)]
pub enum RuntimeChoice {
    /// A namespace per environment on a Kubernetes cluster.
    Kubernetes(Box<preview_kubernetes::KubernetesOptions>),
    /// Records resources as files under the directory and starts nothing; faults can be injected for tests.
    Recording {
        dir: Option<PathBuf>,
        fault: Option<Fault>,
    },
    /// Runs every app as a supervised process on this machine, behind the built-in gateway.
    Local(Box<LocalOptions>),
}

#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Where the gateway listens for plain HTTP and for HTTPS.
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub ports: PortRange,
    /// Kept between builds; `<data dir>/build-cache` when `None`.
    pub build_cache: Option<PathBuf>,
    pub health_timeout: Duration,
    pub drain: Duration,
    /// Who issues environments' certificates: the local CA, or an ACME CA.
    pub issuer: Issuer,
    /// The user ids environments get (when the daemon runs as root).
    pub users: IdRange,
    /// The addresses of environments' links to the host (when the daemon runs as root).
    pub subnet: Subnet,
    /// Private networks environments may reach (when the daemon runs as root).
    pub allowed_networks: Vec<Subnet>,
    /// Directories builds may run tools from though they lie in a private home; `None`: the rustup installation
    /// of the daemon's user, when there is one.
    pub tools: Option<Vec<PathBuf>>,
    /// The gateway's timeouts, limits, trusted proxies and HSTS; the HTTPS port is the `https` listener's.
    pub gateway: preview_gateway::Config,
}

#[derive(Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    /// `postgres://…` to share state between daemons; `None` for the SQLite file in the data directory.
    pub store: Option<String>,
    pub listen: SocketAddr,
    /// Where `/metrics` is served without the API token, apart from the API; `None`: on the API's address only,
    /// with the token.
    pub metrics_listen: Option<SocketAddr>,
    pub runtime: RuntimeChoice,
    pub step_timeout: Duration,
    /// How long a deployment's lease lasts without renewal; another daemon takes over after it expires.
    pub lease_ttl: Duration,
}

const TOKEN_HASH_KEY: &str = "api_token_sha256";

pub async fn serve(config: ServeConfig) -> Result<(), String> {
    // Everything the daemon writes is its own: store, keys, logs and records hold secrets.
    preview_isolation::restrict_umask();
    // Every connection forwarded or proxied for any environment holds descriptors of the daemon's.
    preview_isolation::raise_open_files_limit();
    create_private_dir(&config.data_dir)?;
    // One daemon per data directory: a second would stop the first one's apps and take its networks down.
    let _one = hold_data_dir(&config.data_dir)?;
    make_files_private(&config.data_dir)?;
    crate::openapi::check::make_mismatch_file()?;
    let store = Arc::new(open_store(&config).await?);
    let daemon = daemon_identity(&config.data_dir)?;
    // On a store daemons share, the same name in use by a live daemon elsewhere (a copied data directory) stops this
    // one before it acts. (An embedded store lives in the data directory, which one daemon at a time holds: a copy
    // of it is a store of its own.)
    let home = daemon_home(&config.data_dir);
    let presence = config.lease_ttl.saturating_mul(3);
    let shared_store = config.store.is_some();
    if shared_store
        && let Some(elsewhere) = store
            .claim_daemon(&daemon, &home, presence.as_millis() as i64)
            .await
            .map_err(|e| e.to_string())?
    {
        return Err(format!(
            "another daemon named `{daemon}` runs with this store, at {elsewhere}: this data directory is a copy of its own (`daemon-id` holds the name). Give this daemon a data directory of its own and start it again; if that daemon is gone (this directory was moved or restored from a backup), this one may start {} s after that daemon was last seen",
            presence.as_secs()
        ));
    }
    // A wrong master key stops the daemon here, before recovery or any request can write anything.
    let vault = Arc::new(crate::vault::Vault::open(&config.data_dir, Arc::clone(&store)).await?);
    let mut gateway = None;
    let mut local_runtime = None;
    let mut kubernetes = None;
    let runtime: Arc<dyn Runtime> = match &config.runtime {
        RuntimeChoice::Kubernetes(options) => {
            let default = Arc::new(start_kubernetes(&config, options, Arc::clone(&vault)).await?);
            let clusters = Arc::new(preview_kubernetes::Clusters::new(default));
            crate::clusters::load(&vault, &clusters).await?;
            kubernetes = Some(Arc::clone(&clusters));
            clusters
        }
        RuntimeChoice::Local(options) => {
            let (local, addresses) = start_local(&config, options, Arc::clone(&vault)).await?;
            gateway = Some(addresses);
            local_runtime = Some(Arc::clone(&local));
            local
        }
        RuntimeChoice::Recording { dir, fault } => {
            let shared = dir.is_some();
            let dir = dir
                .clone()
                .unwrap_or_else(|| config.data_dir.join("runtime"));
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            tracing::info!(
                "runtime: recording resources under {} (no processes are started)",
                dir.display()
            );
            Arc::new(
                if shared {
                    RecordingRuntime::shared_on_disk(&dir)
                } else {
                    RecordingRuntime::on_disk(&dir)
                }
                .with_fault(*fault)
                .with_secrets(Arc::clone(&vault) as Arc<dyn preview_deploy::SecretSource>),
            )
        }
    };
    let engine = Engine::new(
        Arc::clone(&store),
        Arc::clone(&runtime),
        &daemon,
        EngineConfig {
            step_timeout: config.step_timeout,
            lease_ttl: config.lease_ttl,
            clock: test_clock()?,
            ..EngineConfig::default()
        },
    );
    tracing::info!("daemon `{daemon}`, acting as `{}`", engine.holder());
    let recovered = engine
        .recover()
        .await
        .map_err(|e| format!("recovery failed: {e}"))?;
    for deployment in &recovered {
        tracing::info!(
            "recovered deployment {} of `{}`: {}",
            deployment.id,
            deployment.environment,
            deployment.status
        );
    }

    sweep_orphans(Arc::clone(&engine));
    let name_lost = Arc::new(tokio::sync::Notify::new());
    if shared_store {
        keep_presence(
            Arc::clone(&store),
            daemon.clone(),
            home.clone(),
            config.lease_ttl,
            Arc::clone(&name_lost),
        );
    }
    prune_secret_values(Arc::clone(&store), Arc::clone(&vault));

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let metrics_listener = match config.metrics_listen {
        Some(at) => Some(
            tokio::net::TcpListener::bind(at)
                .await
                .map_err(|e| format!("--metrics-listen: cannot listen on {at}: {e}"))?,
        ),
        None => None,
    };
    let metrics_address = match &metrics_listener {
        Some(listener) => Some(listener.local_addr().map_err(|e| e.to_string())?),
        None => None,
    };
    let token_hash = publish_token(
        &store,
        &config.data_dir,
        &format!("http://{address}"),
        gateway.as_ref(),
        metrics_address,
    )
    .await?;
    if let Some(local) = local_runtime {
        renew_certificates(local);
    }
    let (stopping, stopping_signal) = tokio::sync::watch::channel(false);
    let state = Arc::new(AppState {
        store,
        engine,
        vault,
        token_hash,
        runtime: Arc::clone(&runtime),
        gateway,
        kubernetes,
        previews: Arc::new(crate::previews::Previews::new(
            config.data_dir.join("mirrors"),
        )),
        sessions: Default::default(),
        stopping: stopping_signal.clone(),
        streams: Arc::new(tokio::sync::Semaphore::new(crate::routes::events::AT_ONCE)),
    });
    tracing::info!(
        "listening on http://{address}; client config in {}",
        client_config_path(&config.data_dir).display()
    );
    // Pull requests drive previews from now on; the first pass lists every forge.
    let reconciler = crate::previews::spawn(Arc::clone(&state));
    let idle = crate::idle::spawn(Arc::clone(&state));
    let engine = Arc::clone(&state.engine);
    let state_store = Arc::clone(&state.store);
    if let (Some(listener), Some(at)) = (metrics_listener, metrics_address) {
        tracing::info!("metrics on http://{at}/metrics, without the API token");
        let metrics = crate::api::metrics_router(Arc::clone(&state));
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, metrics).await {
                tracing::warn!("the metrics listener stopped: {error}");
            }
        });
    }
    let (stop_serving, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut serving = tokio::spawn(
        axum::serve(listener, router(state))
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .into_future(),
    );
    // The signal stops deployments at once, whatever API clients do: one that never finishes its request must
    // not keep a starting app running.
    let served = tokio::select! {
        () = shutdown_signal() => None,
        () = name_lost.notified() => None,
        ended = &mut serving => Some(ended),
    };
    // No new connection from now on, and no new deployment for a pull request; requests under way may finish
    // while the deployments halt.
    let _ = stop_serving.send(());
    // Event streams end now: an open dashboard must not hold the stop up.
    let _ = stopping.send(true);
    reconciler.abort();
    // Another daemon sharing the store reconciles from now on, without waiting for the role to expire.
    let _ = state_store
        .release_role(crate::previews::ROLE, engine.holder())
        .await;
    idle.abort();
    // What running deployments' steps started stops with them; each is finished from its journal at the next
    // start.
    for id in engine.shutdown(Duration::from_secs(60)).await {
        tracing::info!(
            "stopped acting for deployment {id}; it is finished from its journal when the daemon starts again"
        );
    }
    // API requests under way get a few seconds to finish; then their connections are dropped.
    let served = match served {
        Some(ended) => ended,
        None => match tokio::time::timeout(Duration::from_secs(5), &mut serving).await {
            Ok(ended) => ended,
            Err(_) => {
                serving.abort();
                Ok(Ok(()))
            }
        },
    };
    // Apps do not outlive the daemon: a restarted daemon starts them again from its records.
    runtime.shutdown().await;
    if shared_store {
        // Stopped cleanly: the name is free for this directory wherever it is started next.
        let _ = state_store.release_daemon(&daemon, &home).await;
    }
    match served {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(error) => Err(format!("the API server failed: {error}")),
    }
}

/// The daemon's wall clock, moved by `PREVIEW_TEST_CLOCK_OFFSET_MS` — for tests that run a daemon whose clock is
/// wrong; leases never depend on it.
fn test_clock() -> Result<preview_deploy::Clock, String> {
    let offset_ms = match std::env::var("PREVIEW_TEST_CLOCK_OFFSET_MS") {
        Ok(text) => text.trim().parse().map_err(|_| {
            format!("PREVIEW_TEST_CLOCK_OFFSET_MS: `{text}` is not a number of milliseconds")
        })?,
        Err(_) => 0,
    };
    if offset_ms != 0 {
        tracing::info!(
            "this daemon's clock is moved by {offset_ms} ms (PREVIEW_TEST_CLOCK_OFFSET_MS)"
        );
    }
    Ok(preview_deploy::Clock { offset_ms })
}

/// Opens the local runtime (stopping what an earlier run left, starting recorded apps again) and the gateway in
/// front of it.
/// Connects to the cluster; its certificates, when no cert-manager issues them, come from the local CA in the data
/// directory.
async fn start_kubernetes(
    config: &ServeConfig,
    options: &preview_kubernetes::KubernetesOptions,
    vault: Arc<crate::vault::Vault>,
) -> Result<preview_kubernetes::KubernetesRuntime, String> {
    let ca = Arc::new(
        preview_tls::LocalCa::load_or_create(&config.data_dir.join("ca"))
            .map_err(|e| e.to_string())?,
    );
    let issuer = move |hostnames: &[String]| {
        ca.issue(hostnames, Duration::from_secs(90 * 24 * 3600))
            .map(|issued| (issued.chain_pem, issued.key_pem))
            .map_err(|e| e.to_string())
    };
    let runtime = preview_kubernetes::KubernetesRuntime::connect(
        options.clone(),
        vault as Arc<dyn preview_deploy::SecretSource>,
        Arc::new(issuer),
    )
    .await?;
    tracing::info!(
        "runtime: kubernetes, environments in namespaces of {} (inventory in namespace {})",
        runtime.cluster_url(),
        options.inventory_namespace
    );
    Ok(runtime)
}

async fn start_local(
    config: &ServeConfig,
    options: &LocalOptions,
    vault: Arc<crate::vault::Vault>,
) -> Result<(Arc<LocalRuntime>, Gateway), String> {
    let mut local = LocalConfig::new(config.data_dir.join("local"));
    local.ports = options.ports;
    local.build_cache = options
        .build_cache
        .clone()
        .unwrap_or_else(|| config.data_dir.join("build-cache"));
    // Only root can give environments users, cgroups and networks of their own.
    local.isolation = preview_isolation::is_root().then(|| IsolationConfig {
        users: options.users,
        subnet: options.subnet,
        gateway_ports: vec![options.http.port(), options.https.port()],
        allowed_networks: options.allowed_networks.clone(),
        tools: options.tools.clone().unwrap_or_else(default_tools),
        ..IsolationConfig::new(Vec::new())
    });
    local.health_timeout = options.health_timeout;
    local.drain = options.drain;
    local.issuer = options.issuer.clone();
    let bind = |address: SocketAddr| async move {
        tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| format!("the gateway cannot listen on {address}: {e}"))
    };
    let (http, https) = (bind(options.http).await?, bind(options.https).await?);
    let routes = Arc::new(Routes::default());
    let certificates = Arc::new(Certificates::default());
    let challenges = Arc::new(Challenges::default());
    let (http_address, https_address) = (
        http.local_addr().map_err(|e| e.to_string())?,
        https.local_addr().map_err(|e| e.to_string())?,
    );
    // The gateway serves before the runtime opens: an ACME CA validates the certificates the runtime issues again
    // through it.
    let resolver: Arc<Certificates> = Arc::clone(&certificates);
    let tls = preview_gateway::tls_config(resolver).map_err(|e| e.to_string())?;
    // Protected routes asked for over plain HTTP are sent to the HTTPS listener; sleeping environments are woken
    // by the runtime, once it is open.
    let opened = Arc::new(std::sync::OnceLock::new());
    let gateway = preview_gateway::Config {
        https_port: https_address.port(),
        waker: Some(crate::idle::waker(Arc::clone(&opened))),
        ..options.gateway.clone()
    };
    let proxy = Arc::new(
        Proxy::with_config(Arc::clone(&routes), gateway).with_challenges(Arc::clone(&challenges)),
    );
    tokio::spawn(preview_gateway::serve(http, Arc::clone(&proxy), None));
    tokio::spawn(preview_gateway::serve(https, proxy, Some(tls)));
    // The gateway's ports are known once it listens (tests ask for any free port).
    if let Some(isolation) = &mut local.isolation {
        isolation.gateway_ports = vec![http_address.port(), https_address.port()];
    }
    let activity = Arc::clone(routes.activity());
    let log = |message: &str| tracing::info!("{message}");
    let runtime = LocalRuntime::open(local, vault, routes, certificates, challenges, &log).await?;
    let _ = opened.set(Arc::clone(&runtime) as Arc<dyn Runtime>);
    report_protections(&runtime);
    let addresses = Gateway {
        http: http_address,
        https: https_address,
        ca_pem: runtime.ca_certificate(),
        activity,
    };
    tracing::info!(
        "runtime: local processes; gateway on http://{} and https://{}",
        addresses.http,
        addresses.https
    );
    Ok((runtime, addresses))
}

/// Says which protections keep environments apart, and plainly which are off.
fn report_protections(runtime: &LocalRuntime) {
    let protections = runtime.protections();
    if protections.iter().all(|p| !p.in_effect) {
        tracing::warn!(
            "environments are NOT isolated from each other: the daemon runs as {}, not root, so none of the protections below is possible; do not run untrusted code (pull requests from forks) this way",
            preview_isolation::user_name()
        );
    }
    for protection in protections {
        tracing::info!(
            "isolation: {} {}: {}",
            protection.name,
            if protection.in_effect { "on" } else { "OFF" },
            protection.detail
        );
    }
}

/// The rustup installation of the daemon's user (`~/.cargo/bin` and `~/.rustup`, or where `CARGO_HOME` and
/// `RUSTUP_HOME` say), so that Rust projects build out of the box when that home is private.
fn default_tools() -> Vec<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".cargo")))
        .map(|cargo| cargo.join("bin"));
    let rustup = std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".rustup")));
    [cargo_bin, rustup]
        .into_iter()
        .flatten()
        .filter(|dir| dir.is_dir())
        .collect()
}

/// Data directories made by earlier versions had readable files: the daemon's own are made private again.
fn make_files_private(data_dir: &Path) -> Result<(), String> {
    let private = |path: &Path, mode: u32| match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Ok(()),
        Ok(_) => std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("cannot restrict {}: {e}", path.display())),
        Err(_) => Ok(()),
    };
    for name in [
        "preview.db",
        "preview.db-wal",
        "preview.db-shm",
        "master.key",
        "client.json",
        "daemon-id",
        "local/ca/ca.key",
        "local/ports.json",
        "local/accounts.json",
    ] {
        private(&data_dir.join(name), 0o600)?;
    }
    for name in ["local", "local/ca", "local/environments", "local/builds"] {
        private(&data_dir.join(name), 0o700)?;
    }
    Ok(())
}

/// Checks every few hours for certificates near their end and issues them again.
fn renew_certificates(runtime: Arc<LocalRuntime>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(6 * 3600)).await;
            for environment in runtime.renew_certificates().await {
                tracing::info!("renewed the certificate of `{environment}`");
            }
        }
    });
}

/// Drops, every hour, secret values that nothing needs any more (secret writes prune their own project too).
fn prune_secret_values(store: Arc<Store>, vault: Arc<crate::vault::Vault>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            for project in store.projects().await.unwrap_or_default() {
                vault.prune(&project.name).await;
            }
        }
    });
}

/// Tells the store, every lease period, that this daemon still runs where it does (a daemon not seen for three
/// lease periods gives its name up to one elsewhere). A daemon whose name was taken meanwhile (it was paused that
/// long, and a copy of its directory started) stops: two may not act under one name.
fn keep_presence(
    store: Arc<Store>,
    daemon: String,
    home: String,
    every: Duration,
    lost: Arc<tokio::sync::Notify>,
) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            match store.daemon_seen(&daemon, &home).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(
                        "the name `{daemon}` was taken by a daemon elsewhere while this one went unseen; stopping"
                    );
                    lost.notify_one();
                    return;
                }
                Err(error) => tracing::warn!("cannot tell the store this daemon runs: {error}"),
            }
        }
    });
}

/// Takes over, now and then, the deployments of daemons that died while sharing this store.
fn sweep_orphans(engine: Arc<Engine>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(engine.lease_ttl()).await;
            match engine.recover().await {
                Ok(recovered) => {
                    for deployment in recovered {
                        tracing::info!(
                            "recovered deployment {} of `{}`: {}",
                            deployment.id,
                            deployment.environment,
                            deployment.status
                        );
                    }
                }
                Err(error) => tracing::warn!("recovery sweep failed: {error}"),
            }
        }
    });
}

async fn open_store(config: &ServeConfig) -> Result<Store, String> {
    match &config.store {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Store::open_postgres(url).await.map_err(|e| e.to_string())
        }
        Some(other) => Err(format!(
            "`{other}` is not a store URL; use postgres://… or leave --store out for SQLite"
        )),
        None => {
            let path = config.data_dir.join("preview.db");
            Store::open_sqlite(&path)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))
        }
    }
}

/// An exclusive lock on the data directory, held by the returned file while the daemon runs.
fn hold_data_dir(data_dir: &Path) -> Result<std::fs::File, String> {
    let path = data_dir.join("daemon.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    file.try_lock().map_err(|_| {
        format!(
            "another daemon is using the data directory {}; stop it first (its address is in {})",
            data_dir.display(),
            client_config_path(data_dir).display()
        )
    })?;
    Ok(file)
}

fn create_private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create the data directory {}: {e}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("cannot restrict {}: {e}", dir.display()))
}

/// This daemon's name in leases: kept in the data directory, so a restarted daemon recognises its own leases (and
/// takes them over at once).
fn daemon_identity(data_dir: &Path) -> Result<String, String> {
    let path = data_dir.join("daemon-id");
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Some(id) = text
            .lines()
            .next()
            .map(str::trim)
            .filter(|id| !id.is_empty())
    {
        return Ok(id.to_owned());
    }
    let id = format!("daemon-{}", &new_token()?[..12]);
    std::fs::write(&path, &id).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(id)
}

/// Where this daemon runs: the machine (its machine id, else its host name) and the data directory's canonical path.
/// Two live daemons with one name would take each other's deployments over at once, which happens when a data
/// directory is copied to set up a second daemon sharing a store; the store refuses a name that a daemon elsewhere
/// uses (see [`preview_store::Store::claim_daemon`]).
fn daemon_home(data_dir: &Path) -> String {
    let machine = std::fs::read_to_string("/etc/machine-id")
        .ok()
        .map(|id| id.trim().to_owned())
        .filter(|id| !id.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_default();
    let place = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    format!("{machine}:{}", place.display())
}

/// Keeps the token of the existing client config if it is still the one whose hash is stored; otherwise makes a
/// new one. Writes the client config with this daemon's address. Returns the stored hash.
async fn publish_token(
    store: &Store,
    data_dir: &Path,
    address: &str,
    gateway: Option<&Gateway>,
    metrics: Option<SocketAddr>,
) -> Result<String, String> {
    let path = client_config_path(data_dir);
    let stored = store
        .meta(TOKEN_HASH_KEY)
        .await
        .map_err(|e| e.to_string())?;
    let token = match (read_client_config(&path), &stored) {
        (Some(existing), Some(hash)) if sha256_hex(&existing.token) == *hash => existing.token,
        _ => {
            let token = new_token()?;
            store
                .set_meta(TOKEN_HASH_KEY, &sha256_hex(&token))
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!("generated a new API token");
            token
        }
    };
    write_client_config(
        &path,
        &ClientConfig {
            address: address.to_owned(),
            token: token.clone(),
            gateway_https: gateway.map(|g| g.https.to_string()),
            gateway_http: gateway.map(|g| g.http.to_string()),
            metrics: metrics.map(|m| format!("http://{m}/metrics")),
        },
    )
    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(sha256_hex(&token))
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = terminate => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("stopping");
}
