//! The PostgreSQL servers the local runtime runs: one per project and major version for databases with logical
//! isolation, one per environment and database for physical isolation. Each keeps its files under
//! `<dir>/databases/<id>/` (its data directory, socket directory, log and `server.json`), listens on a port of the
//! runtime's range on the host's loopback, runs as a user of its own when the daemon is root, and is supervised
//! like an app: restarted with backoff when it exits, stopped with the daemon, started again from its record when
//! the daemon starts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use preview_database::postgres::{Binaries, Server};
use preview_deploy::RuntimeError;
use preview_isolation::signals::{SIGKILL, SIGTERM, group_alive, signal_group};
use preview_secrets::Secret;

use crate::runtime::LocalRuntime;
use crate::supervisor::{Place, ProcessSpec, Supervised};

/// Where a server run in a sandbox sees its directory.
const SERVER_INSIDE: &str = "/run/preview/postgres";

/// How long a server may take to accept connections after it starts (crash recovery included).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A server that runs.
pub(crate) struct RunningServer {
    pub server: Server,
    pub process: Supervised,
    /// Held while a golden snapshot on this server is made, so that two previews made at once build it once.
    pub golden: Arc<tokio::sync::Mutex<()>>,
    /// Shared by whatever works on the server; taken alone to remove it.
    pub in_use: Arc<tokio::sync::RwLock<()>>,
}

#[derive(Default)]
pub(crate) struct DatabaseServers {
    running: tokio::sync::Mutex<BTreeMap<String, Arc<RunningServer>>>,
    /// What a golden snapshot on an external server is made under, by project and database.
    external: std::sync::Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The use of external servers' databases, by project and name.
    external_rw: std::sync::Mutex<BTreeMap<String, Arc<tokio::sync::RwLock<()>>>>,
    /// The Redis servers that run.
    pub redis: crate::redis::RedisServers,
    /// The MariaDB servers that run.
    pub mysql: crate::mysql::MysqlServers,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ServerRecord {
    key: String,
    version: u32,
}

/// `shop/15` (a project's server) or `shop/pr-1/db` (an environment's own): which server a database lives on.
pub(crate) fn server_key(
    project: &str,
    environment: &str,
    service: &str,
    version: preview_database::content::Version,
    physical: bool,
) -> String {
    if physical {
        format!("{project}/{environment}/{service}")
    } else {
        format!("{project}/{version}")
    }
}

impl LocalRuntime {
    pub(crate) fn servers_dir(&self) -> PathBuf {
        self.config.dir.join("databases")
    }

    /// Where a server keeps its files: short, because its socket's path must fit in 107 bytes.
    pub(crate) fn server_root(&self, key: &str) -> PathBuf {
        let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
        let id: String = digest.as_ref()[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.servers_dir().join(id)
    }

    pub(crate) fn port_key(key: &str) -> String {
        format!("database-server:{key}")
    }

    pub(crate) fn account_key(key: &str) -> String {
        format!("database-server:{key}")
    }

    /// The server `key` of `version`, started (and made, the first time) if it does not run.
    pub(crate) async fn ensure_server(
        &self,
        key: &str,
        version: u32,
    ) -> Result<Arc<RunningServer>, RuntimeError> {
        let mut running = self.databases.running.lock().await;
        if let Some(server) = running.get(key) {
            return Ok(Arc::clone(server));
        }
        let binaries = Binaries::find(version).map_err(|e| RuntimeError::new(e.to_string()))?;
        crate::faults::at("server", crate::faults::When::Before)?;
        let root = self.server_root(key);
        let port = self.server_port(key)?;
        let owner = self.server_owner(key)?;
        crate::trees::own_dir(&self.servers_dir(), None, 0o700).map_err(RuntimeError::new)?;
        let mut server = Server {
            binaries,
            root: root.clone(),
            port,
            owner,
            daemon_user: preview_isolation::user_name(),
            inside: owner.map(|_| PathBuf::from(SERVER_INSIDE)),
            socket_link: None,
        };
        if server.socket_path_too_long() {
            server.socket_link = Some(self.socket_link(key)?);
        }
        // Its processes run in a sandbox of its own when the daemon is root: the server's user cannot reach its
        // directory through the daemon's, and sees nothing else of it.
        let place = match (owner, &self.isolation) {
            (Some((uid, _)), Some(isolation)) => Place::Sandbox(Arc::new(
                isolation.server_sandbox(uid, &root, std::path::Path::new(SERVER_INSIDE)),
            )),
            _ => Place::Host(root.clone()),
        };
        // Recorded before anything else is made, so that whatever a kill leaves is found by its key.
        crate::trees::own_dir(&root, None, 0o700).map_err(RuntimeError::new)?;
        crate::records::write_atomically(
            &root.join("server.json"),
            &serde_json::to_vec(&ServerRecord {
                key: key.to_owned(),
                version,
            })
            .map_err(|e| RuntimeError::new(e.to_string()))?,
        )
        .map_err(RuntimeError::new)?;
        if !server.is_initialised() {
            let command = server
                .start_initialising()
                .map_err(|e| RuntimeError::new(e.to_string()))?;
            let initdb = Supervised::start(self.making_spec(
                format!("initdb {key}"),
                command,
                place.clone(),
                root.join("initdb.log"),
            ))
            .await
            .map_err(|e| RuntimeError::new(e.to_string()))?;
            initdb.ended().await;
            let exit = initdb.last_exit().unwrap_or_default();
            if exit != "exit status: 0" {
                return Err(RuntimeError::new(format!(
                    "initdb for the PostgreSQL server {key} failed ({exit}):\n{}",
                    initdb.output_tail(15)
                )));
            }
            server
                .finish_initialising()
                .map_err(|e| RuntimeError::new(e.to_string()))?;
        }
        server
            .prepare_socket_dir()
            .map_err(|e| RuntimeError::new(e.to_string()))?;
        stop_stale(
            &server.data_dir().join("postmaster.pid"),
            &server.seen(&server.data_dir()).display().to_string(),
            owner.map(|(uid, _)| uid),
            self.config.grace,
        )
        .await;
        let process = Supervised::start(self.server_spec(
            format!("postgres {key}"),
            server.command(),
            place,
            &root,
        ))
        .await
        .map_err(|e| RuntimeError::new(e.to_string()))?;
        server
            .wait_ready(READY_TIMEOUT, || process.pid().is_some())
            .await
            .map_err(|e| {
                RuntimeError::new(format!(
                    "{e}; its log ends with:\n{}",
                    process.output_tail(15)
                ))
            })?;
        let admin = server
            .admin()
            .connect()
            .await
            .map_err(|e| RuntimeError::new(e.to_string()))?;
        preview_database::postgres::admin::ensure_golden_owner(&admin, true)
            .await
            .map_err(|e| RuntimeError::new(e.to_string()))?;
        let running_server = Arc::new(RunningServer {
            server,
            process,
            golden: Arc::default(),
            in_use: Arc::default(),
        });
        running.insert(key.to_owned(), Arc::clone(&running_server));
        crate::faults::at("server", crate::faults::When::After)?;
        Ok(running_server)
    }

    /// The user (and group) the server `key` runs as: a user of its own when the daemon isolates, else the
    /// daemon's (which must not be root).
    pub(crate) fn server_owner(&self, key: &str) -> Result<Option<(u32, u32)>, RuntimeError> {
        match &self.isolation {
            Some(isolation) => {
                let uid = isolation
                    .accounts
                    .assign(&Self::account_key(key))
                    .map_err(RuntimeError::new)?;
                Ok(Some((uid, uid)))
            }
            None if preview_isolation::user_name() == "root" => Err(RuntimeError::new(
                "a database server does not run as root, and this daemon runs as root without isolation; start it with isolation on, or as another user",
            )),
            None => Ok(None),
        }
    }

    /// Gives the server `key`, which was never made, a copy of the stopped data directory `from` (a physical
    /// golden snapshot) instead of a new one from `initdb`; it starts from it.
    pub(crate) async fn adopt_data_dir(
        &self,
        key: &str,
        from: &std::path::Path,
    ) -> Result<(), RuntimeError> {
        let owner = self.server_owner(key)?;
        crate::trees::own_dir(&self.servers_dir(), None, 0o700).map_err(RuntimeError::new)?;
        let root = self.server_root(key);
        let from = from.to_path_buf();
        copy_off_thread(move || {
            preview_database::postgres::server::copy_data_dir(&from, &root, owner, &hand_over)
        })
        .await
    }

    /// Stops the server `key` and returns its data directory, kept (a physical golden snapshot's, once built).
    pub(crate) async fn stop_server(&self, key: &str) -> PathBuf {
        let running = self.databases.running.lock().await.remove(key);
        if let Some(running) = running {
            running.process.stop().await;
            if let Some(link) = &running.server.socket_link {
                let _ = std::fs::remove_file(link);
            }
        }
        self.server_root(key).join("data")
    }

    /// The keys of every server that has files, as their records say.
    pub(crate) fn recorded_server_keys(&self) -> Vec<String> {
        std::fs::read_dir(self.servers_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| std::fs::read(entry.path().join("server.json")).ok())
            .filter_map(|bytes| serde_json::from_slice::<ServerRecord>(&bytes).ok())
            .map(|record| record.key)
            .collect()
    }

    /// A short path for a link to the server's socket directory, in a directory only the daemon's user may use:
    /// `/run/preview-sockets` as root, else one of the user's own in the temporary directory.
    fn socket_link(&self, key: &str) -> Result<PathBuf, RuntimeError> {
        let dir = if preview_isolation::user_name() == "root" {
            PathBuf::from("/run/preview-sockets")
        } else {
            std::env::temp_dir().join(format!(
                "preview-sockets-{}",
                preview_isolation::user_name()
            ))
        };
        crate::trees::own_dir(&dir, None, 0o700).map_err(RuntimeError::new)?;
        let id = self.server_root(key).display().to_string();
        let digest = ring::digest::digest(&ring::digest::SHA256, id.as_bytes());
        let name: String = digest.as_ref()[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(dir.join(name))
    }

    /// Whether the server `key` that runs is the one whose use lock is `in_use` (it was not removed since).
    pub(crate) async fn server_is_current(
        &self,
        key: &str,
        in_use: &Arc<tokio::sync::RwLock<()>>,
    ) -> bool {
        self.databases
            .running
            .lock()
            .await
            .get(key)
            .is_some_and(|running| Arc::ptr_eq(&running.in_use, in_use))
    }

    /// The server `key` if it runs; nothing is started.
    pub(crate) async fn running_server(&self, key: &str) -> Option<Arc<RunningServer>> {
        self.databases.running.lock().await.get(key).cloned()
    }

    /// Whether the server `key` was ever made (its data directory exists).
    pub(crate) fn server_exists(&self, key: &str) -> bool {
        self.server_root(key).join("data").is_dir()
    }

    /// A lock by name within a project: golden snapshots of a database on an external server are made under one,
    /// and a Redis or MySQL server starts and is made under one.
    pub(crate) fn keyed_lock(&self, project: &str, service: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = match self.databases.external.lock() {
            Ok(locks) => locks,
            Err(poisoned) => poisoned.into_inner(),
        };
        Arc::clone(locks.entry(format!("{project}/{service}")).or_default())
    }

    /// The port of the server `key` on the host's loopback, from the runtime's range (the same one each time).
    pub(crate) fn server_port(&self, key: &str) -> Result<u16, RuntimeError> {
        self.ports
            .assign(&Self::port_key(key), &["server".to_owned()], &mut |base| {
                crate::ports::is_free(base, None)
            })
            .map_err(RuntimeError::new)?
            .service_port("server")
            .ok_or_else(|| RuntimeError::new(format!("no port for the database server {key}")))
    }

    /// Forgets a database resource that is gone: its record and the intent written before it was made.
    pub(crate) fn forget_database(
        &self,
        env: &preview_deploy::EnvironmentAddress,
        id: &str,
    ) -> Result<(), RuntimeError> {
        self.forget(env, id)?;
        self.dir_of(env)
            .remove_intent(id)
            .map_err(RuntimeError::new)
    }

    /// A database server's process in `place`: marked as the runtime's, logged to `server.log` in its directory
    /// `root`, started again with backoff whenever it ends.
    fn server_spec(&self, name: String, command: String, place: Place, root: &Path) -> ProcessSpec {
        ProcessSpec {
            name,
            command,
            place,
            env: vec![(
                crate::strays::MARKER_VARIABLE.to_owned(),
                Secret::new(self.marker.clone()),
            )],
            log: root.join("server.log"),
            log_limit: 8 * 1024 * 1024,
            grace: self.config.grace,
            backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            memory_limit: None,
            restart: true,
            leftovers: None,
        }
    }

    /// The process that makes a server's data directory (`initdb`, `mariadb-install-db`): run once, logged to `log`.
    pub(crate) fn making_spec(
        &self,
        name: String,
        command: String,
        place: Place,
        log: PathBuf,
    ) -> ProcessSpec {
        ProcessSpec {
            name,
            command,
            place,
            env: Vec::new(),
            log,
            log_limit: 1024 * 1024,
            grace: self.config.grace,
            backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(1),
            memory_limit: None,
            restart: false,
            leftovers: None,
        }
    }

    /// Starts the process of a server of a single process that `preview` runs (Redis, MariaDB) for `key`: as its
    /// user `owner` in the server sandbox, its directory seen at `inside`, in its cgroup `unit` bounded by `limits`
    /// (when the daemon isolates), restarted when it ends, its output in `server.log`, carrying the runtime's
    /// marker so that one a killed daemon left is found.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn start_own_server(
        &self,
        key: &str,
        name: &str,
        command: String,
        owner: Option<(u32, u32)>,
        inside: &std::path::Path,
        unit: &str,
        limits: &preview_isolation::CgroupLimits,
    ) -> Result<Supervised, RuntimeError> {
        let root = self.server_root(key);
        let place = match (owner, &self.isolation) {
            (Some((uid, _)), Some(isolation)) => Place::Sandbox(Arc::new(
                isolation
                    .limited_server_sandbox(uid, &root, inside, unit, limits)
                    .map_err(RuntimeError::new)?,
            )),
            _ => Place::Host(root.clone()),
        };
        Supervised::start(self.server_spec(format!("{name} {key}"), command, place, &root))
            .await
            .map_err(|e| RuntimeError::new(e.to_string()))
    }

    /// Removes what a server of a single process that `preview` runs (Redis, MariaDB) leaves once it stopped: a
    /// process a killed daemon left (found by its `pid_file` and the configuration `seen` on its command line), its
    /// cgroup `unit`, its files, its port and its user.
    pub(crate) async fn remove_own_server(
        &self,
        key: &str,
        pid_file: &std::path::Path,
        seen: &str,
        unit: &str,
    ) -> Result<(), RuntimeError> {
        let owner = self
            .isolation
            .as_ref()
            .and_then(|isolation| isolation.accounts.get(&Self::account_key(key)));
        stop_stale(pid_file, seen, owner, self.config.grace).await;
        if let Some(isolation) = &self.isolation {
            isolation
                .remove_server_cgroup(unit)
                .await
                .map_err(RuntimeError::new)?;
        }
        self.ports
            .release(&Self::port_key(key))
            .map_err(RuntimeError::new)?;
        if let Some(isolation) = &self.isolation {
            isolation
                .accounts
                .release(&Self::account_key(key))
                .map_err(RuntimeError::new)?;
        }
        // Last: while its files are there, a removal cut short is found and done again.
        preview_database::postgres::server::remove_tree(&self.server_root(key))
            .map_err(|e| RuntimeError::new(e.to_string()))
    }

    /// A read-write lock by name within a project: what an external server's databases share, as a server's
    /// `in_use`.
    pub(crate) fn keyed_lock_rw(&self, project: &str, name: &str) -> Arc<tokio::sync::RwLock<()>> {
        let mut locks = match self.databases.external_rw.lock() {
            Ok(locks) => locks,
            Err(poisoned) => poisoned.into_inner(),
        };
        Arc::clone(locks.entry(format!("{project}/{name}")).or_default())
    }

    /// Stops the server `key` and removes its files, its port and its user (an environment's own server, when the
    /// environment goes).
    pub(crate) async fn remove_server(&self, key: &str) -> Result<(), RuntimeError> {
        let running = self.databases.running.lock().await.remove(key);
        if let Some(running) = running {
            running.process.stop().await;
        }
        let root = self.server_root(key);
        let owner = self
            .isolation
            .as_ref()
            .and_then(|isolation| isolation.accounts.get(&Self::account_key(key)));
        let seen = match owner {
            Some(_) => PathBuf::from(SERVER_INSIDE).join("data"),
            None => root.join("data"),
        };
        stop_stale(
            &root.join("data").join("postmaster.pid"),
            &seen.display().to_string(),
            owner,
            self.config.grace,
        )
        .await;
        preview_database::postgres::server::remove_tree(&root)
            .map_err(|e| RuntimeError::new(e.to_string()))?;
        if let Ok(link) = self.socket_link(key) {
            let _ = std::fs::remove_file(link);
        }
        self.ports
            .release(&Self::port_key(key))
            .map_err(RuntimeError::new)?;
        if let Some(isolation) = &self.isolation {
            isolation
                .accounts
                .release(&Self::account_key(key))
                .map_err(RuntimeError::new)?;
        }
        Ok(())
    }

    /// A server's log, for `preview logs` of a database service.
    pub(crate) fn server_log(&self, key: &str) -> PathBuf {
        self.server_root(key).join("server.log")
    }

    /// Stops every server (when the daemon stops).
    pub(crate) async fn stop_servers(&self) {
        let servers: Vec<Arc<RunningServer>> =
            std::mem::take(&mut *self.databases.running.lock().await)
                .into_values()
                .collect();
        let redis: Vec<Arc<crate::redis::RunningRedis>> =
            std::mem::take(&mut *self.databases.redis.lock().await)
                .into_values()
                .collect();
        for server in redis {
            server.process.stop().await;
        }
        let mysql: Vec<Arc<crate::mysql::RunningMysql>> =
            std::mem::take(&mut *self.databases.mysql.lock().await)
                .into_values()
                .collect();
        for process in mysql.iter().filter_map(|server| server.process.as_ref()) {
            process.stop().await;
        }
        for server in servers {
            server.process.stop().await;
            // Made again when the server starts again; nothing in /run outlives the daemon meanwhile.
            if let Some(link) = &server.server.socket_link {
                let _ = std::fs::remove_file(link);
            }
        }
    }
}

/// Ends a server left running by an earlier daemon that was killed (it runs in a session of its own, so it
/// outlived it): SIGTERM, then SIGKILL after `grace`. `pid_file` is where the daemon sees the file holding its
/// process id, `seen` what its command line names (its data directory or configuration, as the server sees it),
/// `owner` its user.
pub(crate) async fn stop_stale(
    pid_file: &std::path::Path,
    seen: &str,
    owner: Option<u32>,
    grace: Duration,
) {
    let Ok(text) = std::fs::read_to_string(pid_file) else {
        return;
    };
    let Some(pid) = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<u32>().ok())
    else {
        return;
    };
    // Only a process that is this server: its command line names its data directory, and it runs as its user.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if !String::from_utf8_lossy(&cmdline).contains(seen) {
        return;
    }
    if let Some(owner) = owner {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let uid = status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().next())
            .and_then(|uid| uid.parse::<u32>().ok());
        if uid != Some(owner) {
            return;
        }
    }
    signal_group(pid, SIGTERM);
    let deadline = std::time::Instant::now() + grace;
    while group_alive(pid) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if group_alive(pid) {
        signal_group(pid, SIGKILL);
        while group_alive(pid) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Runs `copy` (of a stopped server's data directory, file by file) on a thread where blocking is allowed.
pub(crate) async fn copy_off_thread(
    copy: impl FnOnce() -> Result<(), preview_database::DatabaseError> + Send + 'static,
) -> Result<(), RuntimeError> {
    tokio::task::spawn_blocking(copy)
        .await
        .map_err(|e| {
            RuntimeError::new(format!(
                "the copy of a data directory ended abnormally: {e}"
            ))
        })?
        .map_err(|e| RuntimeError::new(e.to_string()))
}

/// Gives a copied tree to a server's user.
pub(crate) fn hand_over(path: &std::path::Path, uid: u32, gid: u32) -> Result<(), String> {
    preview_isolation::hand_tree_to(path, uid, gid).map_err(|e| e.to_string())
}
