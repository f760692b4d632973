//! An environment's MySQL database on the local runtime, served by MariaDB: a database and a user of its own on a
//! server `preview` runs — the project's, one per release series (`<project>/10.11`), or the environment's own
//! (`<project>/<environment>/<service>`) when it is isolated physically or `mode: container` asks — reached by the
//! environment through its service port. The server runs as a user of its own in a sandbox and a cgroup when the
//! daemon isolates, listens on the host's loopback only, and is administered through its socket by the daemon's
//! own user (no administrator password exists). The data is made once by the clone policy — empty, a SQL seed file
//! run as the environment's user, or a copy of the source environment's database through a golden database
//! (masked on the way when the policy says so) — and marked complete in the database's comment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use preview_database::content::{DatabaseContent, READY, ready_mark};
use preview_database::masking::Masker;
use preview_database::mysql::{self as engine, Login, Programs};
use preview_deploy::{EnvironmentAddress, RuntimeError, StepLog};
use preview_plan::Resource;
use preview_secrets::Secret;

use crate::databases::{LocalContent, fail};
use crate::faults::{self, When};
use crate::physical::{DEFINITIONS, GOLDEN_DATABASE};
use crate::runtime::LocalRuntime;
use crate::supervisor::{Place, Supervised};

/// Where a server run in a sandbox sees its directory.
const INSIDE: &str = "/run/preview/mysql";

/// How long a server may take to accept connections after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(300);

/// What a MariaDB server's cgroup allows: its buffer pool, its connections' memory, and no more processes than a
/// server needs; a server past it is killed and started again, its own alone.
const LIMITS: preview_isolation::CgroupLimits = preview_isolation::CgroupLimits {
    cpu_millicores: None,
    memory_bytes: Some(1024 * 1024 * 1024),
    tasks: Some(256),
};

/// How many times a server whose port another socket holds is started again before that is an error.
const PORT_TAKEN_TRIES: u32 = 5;

/// How long a golden snapshot's server may take to write its changed pages out before it is stopped.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(600);

/// The daemon's mark that a server's data directory was made whole (by `mariadb-install-db` or as a copy).
const INSTALLED: &str = "installed";

/// The server's key, in its directory.
const KEY_FILE: &str = "mysql.key";

/// The golden databases' prefix on a server (`preview`'s own, never an environment's).
const GOLDEN_PREFIX: &str = "preview_golden_";

/// The login golden databases are written by: allowed inside golden databases only.
/// How the names of `preview`'s own databases and users on a server begin: golden databases and their writers.
const GOLDEN_USER: &str = "preview_golden";

/// A MariaDB server that runs: one `preview` runs, or an external one its admin URL names.
pub(crate) struct RunningMysql {
    /// None for an external server.
    pub process: Option<Supervised>,
    /// Where logins reach it, as the daemon sees it.
    pub host: String,
    pub port: u16,
    pub admin: Login,
    pub programs: Programs,
    /// Shared by whatever works on the server; taken alone to remove it.
    pub in_use: Arc<tokio::sync::RwLock<()>>,
}

/// The MariaDB servers that run, by key.
pub(crate) type MysqlServers = tokio::sync::Mutex<BTreeMap<String, Arc<RunningMysql>>>;

impl LocalRuntime {
    /// Where the server `key` sees its own directory.
    fn mysql_inside(&self, key: &str) -> PathBuf {
        match self.isolation {
            Some(_) => PathBuf::from(INSIDE),
            None => self.server_root(key),
        }
    }

    /// The server `key` of `content`'s release series, started (made first if it never was) if it does not run.
    pub(crate) async fn ensure_mysql(
        &self,
        key: &str,
        content: &DatabaseContent,
        service: &str,
    ) -> Result<Arc<RunningMysql>, RuntimeError> {
        let starting = self.keyed_lock("mysql-start", key);
        let _starting = starting.lock().await;
        if let Some(server) = self.databases.mysql.lock().await.get(key) {
            return Ok(Arc::clone(server));
        }
        let (major, minor) = match content.version {
            preview_database::content::Version::Series(major, minor) => (major, minor),
            other => (other.major(), 0),
        };
        let programs = Programs::find(major, minor).map_err(fail(service))?;
        faults::at("server", When::Before)?;
        let root = self.server_root(key);
        let socket = root.join(engine::SOCKET);
        if socket.as_os_str().len() > 107 {
            return Err(RuntimeError::new(format!(
                "database `{service}`: the MariaDB server's socket {} is longer than a socket's path may be (107 bytes); start the daemon with a shorter --dir",
                socket.display()
            )));
        }
        // The server's directory is the daemon's (its configuration and log are there), made before its port and
        // user so that whatever a kill leaves is found; what the server writes is in directories of its own.
        self.make_mysql_root(key, &root)?;
        let port = self.server_port(key)?;
        let owner = self.server_owner(key)?;
        for dir in ["data", "run", "tmp", "files"] {
            crate::trees::own_dir(&root.join(dir), owner.map(|(uid, _)| uid), 0o700)
                .map_err(RuntimeError::new)?;
        }
        let inside = self.mysql_inside(key);
        let config_path = root.join("my.cnf");
        crate::records::write_atomically(
            &config_path,
            engine::server_config(&inside, port).as_bytes(),
        )
        .map_err(RuntimeError::new)?;
        if let Some((_, gid)) = owner {
            use std::os::unix::fs::PermissionsExt;
            std::os::unix::fs::chown(&config_path, None, Some(gid))
                .and_then(|()| {
                    std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o640))
                })
                .map_err(|e| {
                    RuntimeError::new(format!(
                        "cannot hand {} to its server: {e}",
                        config_path.display()
                    ))
                })?;
        }
        let config_inside = inside.join("my.cnf");
        let admin_user = preview_isolation::user_name();
        // A data directory is only good once its making finished (a kill during it leaves one that does not start):
        // the daemon's mark says so.
        let installed = root.join(INSTALLED);
        if !installed.exists() {
            preview_database::postgres::server::remove_tree(&root.join("data"))
                .map_err(|e| RuntimeError::new(e.to_string()))?;
            crate::trees::own_dir(&root.join("data"), owner.map(|(uid, _)| uid), 0o700)
                .map_err(RuntimeError::new)?;
            // In the server's sandbox, outside its cgroup (which goes with the process that ends).
            let place = match (owner, &self.isolation) {
                (Some((uid, _)), Some(isolation)) => Place::Sandbox(Arc::new(
                    isolation.server_sandbox(uid, &root, Path::new(INSIDE)),
                )),
                _ => Place::Host(root.clone()),
            };
            faults::at("install", When::Before)?;
            let install = Supervised::start(self.making_spec(
                format!("mariadb-install-db {key}"),
                engine::install_command(&programs, &config_inside, &admin_user),
                place,
                root.join("install.log"),
            ))
            .await
            .map_err(|e| RuntimeError::new(e.to_string()))?;
            install.ended().await;
            let exit = install.last_exit().unwrap_or_default();
            if exit != "exit status: 0" || !root.join("data").join("mysql").is_dir() {
                let tail = install.output_tail(15);
                // Made from scratch next time.
                let _ = preview_database::postgres::server::remove_tree(&root.join("data"));
                return Err(RuntimeError::new(format!(
                    "database `{service}`: making the MariaDB server {key} failed ({exit}):\n{tail}"
                )));
            }
            faults::at("install", When::After)?;
            crate::records::write_atomically(&installed, b"").map_err(RuntimeError::new)?;
        }
        crate::database_servers::stop_stale(
            &root.join(engine::PID_FILE),
            &config_inside.display().to_string(),
            owner.map(|(uid, _)| uid),
            self.config.grace,
        )
        .await;
        let admin = Login::Admin {
            socket,
            user: admin_user,
        };
        let mut tries = 0;
        let process = loop {
            let process = self
                .start_own_server(
                    key,
                    "mariadb",
                    engine::server_command(&programs, &config_inside),
                    owner,
                    Path::new(INSIDE),
                    &unit_of(&root),
                    &LIMITS,
                )
                .await?;
            let Err(e) = wait_ready(&programs, &admin, &process).await else {
                break process;
            };
            process.stop().await;
            // Its port held for a moment by a connection's own end (the host's ephemeral ports may overlap the
            // runtime's range): started again, a few times.
            tries += 1;
            if tries < PORT_TAKEN_TRIES
                && process.output_tail(15).contains("Address already in use")
            {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            return Err(RuntimeError::new(format!(
                "database `{service}`: the MariaDB server did not start: {e}; its log ends with:\n{}",
                process.output_tail(15)
            )));
        };
        let server = Arc::new(RunningMysql {
            process: Some(process),
            host: "127.0.0.1".to_owned(),
            port,
            admin,
            programs,
            in_use: Arc::default(),
        });
        self.databases
            .mysql
            .lock()
            .await
            .insert(key.to_owned(), Arc::clone(&server));
        faults::at("server", When::After)?;
        Ok(server)
    }

    /// The server of the environment's database: the external one its admin URL names, or one `preview` runs,
    /// started if needed.
    async fn mysql_host(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        content: &DatabaseContent,
    ) -> Result<Arc<RunningMysql>, RuntimeError> {
        if !content.external() {
            return self
                .ensure_mysql(&content.server_key(env, service), content, service)
                .await;
        }
        let Some(url) = &content.admin_url else {
            return Err(RuntimeError::new(format!(
                "database `{service}`: `mode: external` needs `admin_url: <project secret>`"
            )));
        };
        let url = self.secrets.reveal(env, &url.name, &url.version).await?;
        let admin = engine::admin_from_url(&url).map_err(fail(service))?;
        let (host, port) = match &admin {
            Login::User { host, port, .. } => (host.clone(), *port),
            Login::Admin { .. } => unreachable!("an admin URL is a login over TCP"),
        };
        Ok(Arc::new(RunningMysql {
            process: None,
            // One per external server, whichever projects and services use it.
            in_use: self.keyed_lock_rw("", &format!("mysql-external:{host}:{port}")),
            host,
            port,
            programs: Programs::clients().map_err(fail(service))?,
            admin,
        }))
    }

    /// The server of the environment's database, started if needed, with its use shared: a server that was
    /// removed meanwhile (with the project's last other database) is made again.
    async fn mysql_in_use(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        content: &DatabaseContent,
    ) -> Result<(Arc<RunningMysql>, tokio::sync::OwnedRwLockReadGuard<()>), RuntimeError> {
        if content.external() {
            let server = self.mysql_host(env, service, content).await?;
            let using = Arc::clone(&server.in_use).read_owned().await;
            return Ok((server, using));
        }
        let key = content.server_key(env, service);
        loop {
            let server = self.ensure_mysql(&key, content, service).await?;
            let using = Arc::clone(&server.in_use).read_owned().await;
            let current = self
                .databases
                .mysql
                .lock()
                .await
                .get(&key)
                .is_some_and(|s| Arc::ptr_eq(s, &server));
            if current {
                return Ok((server, using));
            }
        }
    }

    /// Stops the MariaDB server `key` if it runs, once nothing reads it (a copy from it, as a source), when its
    /// environment sleeps.
    pub(crate) async fn sleep_mysql(&self, key: &str) {
        let running = self.databases.mysql.lock().await.get(key).cloned();
        if let Some(running) = running {
            let _alone = Arc::clone(&running.in_use).write_owned().await;
            self.stop_mysql(key).await;
        }
    }

    /// Stops the MariaDB server `key` if it runs (its environment sleeps, or the daemon stops).
    pub(crate) async fn stop_mysql(&self, key: &str) {
        let running = self.databases.mysql.lock().await.remove(key);
        if let Some(process) = running.as_ref().and_then(|r| r.process.as_ref()) {
            process.stop().await;
        }
    }

    /// The server `key`'s directory, the daemon's, saying whose it is (so that a golden snapshot's builder a
    /// killed daemon left is found).
    fn make_mysql_root(&self, key: &str, root: &Path) -> Result<(), RuntimeError> {
        crate::trees::own_dir(&self.servers_dir(), None, 0o700).map_err(RuntimeError::new)?;
        crate::trees::own_dir(root, None, 0o711).map_err(RuntimeError::new)?;
        let named = root.join(KEY_FILE);
        if std::fs::read(&named).ok().as_deref() != Some(key.as_bytes()) {
            crate::records::write_atomically(&named, key.as_bytes()).map_err(RuntimeError::new)?;
        }
        Ok(())
    }

    /// The keys of the MariaDB servers that have files.
    pub(crate) fn mysql_server_keys(&self) -> Vec<String> {
        std::fs::read_dir(self.servers_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| std::fs::read_to_string(entry.path().join(KEY_FILE)).ok())
            .collect()
    }

    /// Stops the server `key` and removes its files, its port and its user.
    pub(crate) async fn remove_mysql_server(&self, key: &str) -> Result<(), RuntimeError> {
        // Nothing starts it again while it goes.
        let starting = self.keyed_lock("mysql-start", key);
        let _starting = starting.lock().await;
        self.remove_started_mysql_server(key).await
    }

    /// [`LocalRuntime::remove_mysql_server`], its start lock held by the caller.
    async fn remove_started_mysql_server(&self, key: &str) -> Result<(), RuntimeError> {
        self.stop_mysql(key).await;
        // The mark goes first: a removal cut short is taken up again without starting what is left of it.
        let installed = self.server_root(key).join(INSTALLED);
        match std::fs::remove_file(&installed) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(RuntimeError::new(format!(
                    "cannot remove {}: {e}",
                    installed.display()
                )));
            }
        }
        let root = self.server_root(key);
        self.remove_own_server(
            key,
            &root.join(engine::PID_FILE),
            &self.mysql_inside(key).join("my.cnf").display().to_string(),
            &unit_of(&root),
        )
        .await
    }

    /// Removes the server `key` if its making never finished (no `installed` mark): no environment has data
    /// there, and it is not started for the removal. Whether it was such a server, or none at all.
    async fn remove_unmade_mysql_server(&self, key: &str) -> Result<bool, RuntimeError> {
        if !self.server_exists(key) {
            return Ok(true);
        }
        let starting = self.keyed_lock("mysql-start", key);
        let _starting = starting.lock().await;
        if self.server_root(key).join(INSTALLED).exists() {
            return Ok(false);
        }
        self.remove_started_mysql_server(key).await?;
        Ok(true)
    }

    async fn mysql_password(
        &self,
        env: &EnvironmentAddress,
        service: &str,
    ) -> Result<Secret, RuntimeError> {
        self.secrets
            .reveal(env, &format!("database:{service}/password"), "derived")
            .await
    }

    pub(crate) async fn apply_mysql(
        &self,
        env: &EnvironmentAddress,
        resource: &Resource,
        content: &DatabaseContent,
        log: &StepLog,
    ) -> Result<(), RuntimeError> {
        let service = resource.id.trim_start_matches("database/");
        log.check_lease()?;
        if content.external() {
            // An external server that cannot be reached gets nothing: the step fails before it writes anything
            // that undoing it would have to reach the server for.
            let server = self.mysql_host(env, service, content).await?;
            engine::query(&server.programs, &server.admin, "SELECT 1")
                .await
                .map_err(|e| {
                    RuntimeError::new(format!(
                        "database `{service}`: the external server {}:{} does not take its admin URL's login: {e}",
                        server.host, server.port
                    ))
                })?;
        }
        // Written first: whatever happens from here on, removing the resource finds what to drop.
        self.dir_of(env)
            .write_intent(&resource.id, &resource.content)
            .map_err(RuntimeError::new)?;
        // An environment's own server that is a copy starts from a copy of the golden snapshot's data directory.
        let key = content.server_key(env, service);
        if content.physical()
            && matches!(content.clone.policy.as_str(), "clone" | "masked")
            && !self.holds_whole_data(&key)
        {
            let golden = self
                .ensure_physical_golden(env, service, content, log, false)
                .await?;
            log.check_lease()?;
            let started = std::time::Instant::now();
            faults::around("create", self.adopt_mysql_golden(&key, &golden.data)).await?;
            log.line(format!(
                "database `{service}`: its server's data directory copied from the golden snapshot in {} ms",
                started.elapsed().as_millis()
            ));
        }
        let (server, _using) = self.mysql_in_use(env, service, content).await?;
        let (programs, admin) = (&server.programs, &server.admin);
        let name = &content.name;
        let mark = engine::readiness(programs, admin, name)
            .await
            .map_err(fail(service))?;
        let ready = match mark {
            Some(mark) if mark == ready_mark(&env.project, &env.environment, service) => true,
            Some(mark) if mark.starts_with(READY) => {
                return Err(RuntimeError::new(format!(
                    "database `{service}`: the database name {name} is already taken ({}); rename the environment or the service so that their names differ by more than `-` and `_`",
                    mark.trim_start_matches("preview: ")
                )));
            }
            _ => false,
        };
        let password = self.mysql_password(env, service).await?;
        log.check_lease()?;
        faults::around("role", async {
            engine::ensure_user(programs, admin, name, &password)
                .await
                .map_err(fail(service))
        })
        .await?;
        if ready {
            log.line(format!("database `{service}`: {name} kept with its data"));
        } else {
            let began = std::time::Instant::now();
            let made = self
                .make_mysql_data(env, service, content, &server, &password, log)
                .await;
            if let Err(error) = made {
                // Nothing half-made is left: the next attempt starts from scratch — a server of its own that is a
                // copy from the golden snapshot again.
                let _ = engine::drop_user(programs, admin, name).await;
                let _ = engine::drop_database(programs, admin, name).await;
                if content.physical() && matches!(content.clone.policy.as_str(), "clone" | "masked")
                {
                    let _ = std::fs::remove_file(self.server_root(&key).join(INSTALLED));
                }
                return Err(error);
            }
            preview_metrics::metrics()
                .database_content_made(&content.clone.policy, began.elapsed());
        }
        self.serve_database(env, service, address_of(&server, service).await?)?;
        self.record(env, resource)
    }

    /// The environment's login to its own database.
    fn mysql_login(server: &RunningMysql, name: &str, password: &Secret) -> Login {
        Login::User {
            host: server.host.clone(),
            port: server.port,
            user: name.to_owned(),
            password: password.clone(),
            database: name.to_owned(),
        }
    }

    /// Makes the environment's data by its clone policy, from nothing, and marks it complete.
    async fn make_mysql_data(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        content: &DatabaseContent,
        server: &RunningMysql,
        password: &Secret,
        log: &StepLog,
    ) -> Result<(), RuntimeError> {
        let (programs, admin) = (&server.programs, &server.admin);
        let name = &content.name;
        // A database left by a step that did not finish, or the one `db reset` makes again: its user is locked out
        // and its connections end first, so that none keeps the drop waiting or writes into the new one.
        engine::lock_user(programs, admin, name, true)
            .await
            .map_err(fail(service))?;
        engine::end_connections(programs, admin, name)
            .await
            .map_err(fail(service))?;
        engine::drop_database(programs, admin, name)
            .await
            .map_err(fail(service))?;
        log.check_lease()?;
        faults::around("create", async {
            engine::create_database(programs, admin, name)
                .await
                .map_err(fail(service))
        })
        .await?;
        engine::lock_user(programs, admin, name, false)
            .await
            .map_err(fail(service))?;
        let login = Self::mysql_login(server, name, password);
        match (content.clone.policy.as_str(), &content.clone.file) {
            ("clone" | "masked", _)
                if content.physical()
                    && engine::readiness(programs, admin, GOLDEN_DATABASE)
                        .await
                        .map_err(fail(service))?
                        .is_some() =>
            {
                let started = std::time::Instant::now();
                let tables = faults::around(
                    "copy",
                    self.take_mysql_golden_copy(
                        &content.server_key(env, service),
                        server,
                        &login,
                        service,
                    ),
                )
                .await?;
                log.line(format!(
                    "database `{service}`: {name} is the golden snapshot's copy ({tables} tables moved in, its routines, views and triggers made again by its user) in {} ms",
                    started.elapsed().as_millis()
                ));
            }
            ("clone" | "masked", _) => {
                let started = std::time::Instant::now();
                let (golden_server, golden, _held) =
                    self.mysql_golden(env, service, content, log, false).await?;
                log.check_lease()?;
                let copied = faults::around("copy", async {
                    engine::copy(
                        &golden_server.programs,
                        &golden_server.admin,
                        &golden,
                        &login,
                        None,
                    )
                    .await
                    .map_err(fail(service))
                })
                .await?;
                log.line(format!(
                    "database `{service}`: {name} made from the golden database {golden} ({} bytes) in {} ms",
                    copied.bytes,
                    started.elapsed().as_millis()
                ));
            }
            ("seed", Some(file)) => {
                let sql = content
                    .seed_file(service, file)
                    .map_err(RuntimeError::new)?;
                log.check_lease()?;
                faults::at("seed", When::Before)?;
                // As the environment's own user, in the client's sandbox: a seed file from a pull request has no
                // more rights than its apps, and reaches no file of this machine.
                engine::run_sql_file(programs, &login, &sql, file)
                    .await
                    .map_err(|e| {
                        RuntimeError::new(format!(
                            "database `{service}`: seeding from {file} failed, nothing was kept (MariaDB commits each statement that changes a table's definition as it runs it, so the whole database was dropped instead):\n{e}"
                        ))
                    })?;
                faults::at("seed", When::After)?;
                log.line(format!("database `{service}`: {name} seeded from {file}"));
            }
            _ => log.line(format!("database `{service}`: {name} made empty")),
        }
        faults::around("mark", async {
            engine::mark_ready(
                programs,
                admin,
                name,
                &ready_mark(&env.project, &env.environment, service),
            )
            .await
            .map_err(fail(service))
        })
        .await
    }

    /// The source environment's database, as recorded, and its server (started if it sleeps), kept from being
    /// removed or put to sleep while the returned guard is held (none when it is `target`, the server the caller
    /// already uses); an error naming the source when it has none that is complete.
    async fn mysql_source(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        content: &DatabaseContent,
        target: &str,
    ) -> Result<
        (
            Arc<RunningMysql>,
            String,
            Option<tokio::sync::OwnedRwLockReadGuard<()>>,
        ),
        RuntimeError,
    > {
        let (from, source_name) = content.copied_from(service).map_err(RuntimeError::new)?;
        let source = EnvironmentAddress {
            project: env.project.clone(),
            environment: from.to_owned(),
        };
        let missing = || {
            RuntimeError::new(format!(
                "database `{service}`: environment `{from}` has no database `{service}` to copy; deploy `{from}` first"
            ))
        };
        let recorded = self
            .dir_of(&source)
            .read(&format!("database/{service}"))
            .map_err(RuntimeError::new)?
            .ok_or_else(missing)?;
        let source_content =
            crate::databases::parse(&recorded.id, &recorded.content).map_err(RuntimeError::new)?;
        if source_content.engine != content.engine {
            return Err(RuntimeError::new(format!(
                "database `{service}`: `{from}`'s `{service}` is a {} database, not MySQL; a copy needs the same engine",
                source_content.engine.name()
            )));
        }
        let key = source_content.server_key(&source, service);
        if source_content.external() {
            let server = self.mysql_host(&source, service, &source_content).await?;
            let mark = engine::readiness(&server.programs, &server.admin, source_name)
                .await
                .map_err(fail(service))?;
            if mark != Some(ready_mark(&env.project, from, service)) {
                return Err(missing());
            }
            return Ok((server, source_name.to_owned(), None));
        }
        if !self.server_exists(&key) {
            return Err(missing());
        }
        let server = self.ensure_mysql(&key, &source_content, service).await?;
        let in_use = if key == target && !content.external() {
            None
        } else {
            let guard = Arc::clone(&server.in_use).read_owned().await;
            // Removed meanwhile (its environment went): nothing to copy.
            let current = self
                .databases
                .mysql
                .lock()
                .await
                .get(&key)
                .is_some_and(|s| Arc::ptr_eq(s, &server));
            if !current {
                return Err(missing());
            }
            Some(guard)
        };
        let mark = engine::readiness(&server.programs, &server.admin, source_name)
            .await
            .map_err(fail(service))?;
        if mark != Some(ready_mark(&env.project, from, service)) {
            return Err(RuntimeError::new(format!(
                "database `{service}`: the database of `{from}` is not complete (it is being made, or its making was cut short); deploy `{from}` again, then this"
            )));
        }
        Ok((server, source_name.to_owned(), in_use))
    }

    /// The golden database the environment's copy is made from — on the server the environment's database lives
    /// on — built (masked, when the policy says so) from the source environment's database when it is missing,
    /// older than the policy's `refresh`, or `rebuild` says so. Returned with the lock that keeps it from being
    /// built again while it is read.
    async fn mysql_golden(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        content: &DatabaseContent,
        log: &StepLog,
        rebuild: bool,
    ) -> Result<(Arc<RunningMysql>, String, tokio::sync::OwnedMutexGuard<()>), RuntimeError> {
        let golden = crate::snapshots::Golden::of(content).name;
        let key = content.server_key(env, service);
        let server = self.mysql_host(env, service, content).await?;
        let held = self
            .keyed_lock(
                "",
                &format!("mysql-golden:{}:{}:{golden}", server.host, server.port),
            )
            .lock_owned()
            .await;
        let (programs, admin) = (&server.programs, &server.admin);
        let mark = engine::readiness(programs, admin, &golden)
            .await
            .map_err(fail(service))?;
        let fresh = mark
            .as_deref()
            .and_then(golden_made_at)
            .and_then(|made| now().checked_sub(made))
            .is_some_and(|age| content.clone.refresh_seconds.is_none_or(|r| age < r));
        let (from, _) = content.copied_from(service).map_err(RuntimeError::new)?;
        // A golden database outlives its source only on another server than the source's: a source that is gone
        // is not copied from, however fresh its golden database.
        let source_recorded = self
            .dir_of(&EnvironmentAddress {
                project: env.project.clone(),
                environment: from.to_owned(),
            })
            .read(&format!("database/{service}"))
            .map_err(RuntimeError::new)?
            .is_some();
        if fresh && !rebuild && source_recorded {
            return Ok((server, golden, held));
        }
        let (source_server, source_name, _source_in_use) =
            self.mysql_source(env, service, content, &key).await?;
        let masking = self
            .mysql_masking(env, service, content, &source_server, &source_name, log)
            .await?;
        log.check_lease()?;
        faults::at("golden", When::Before)?;
        let started = std::time::Instant::now();
        engine::drop_database(programs, admin, &golden)
            .await
            .map_err(fail(service))?;
        engine::create_database(programs, admin, &golden)
            .await
            .map_err(fail(service))?;
        // Written by a login of its own that reaches this golden database alone.
        let copied = copy_as_writer(
            &server,
            &golden,
            &golden,
            (&source_server, &source_name),
            masking.as_ref(),
            service,
        )
        .await;
        // Locked out once it is written (its password was of the moment): it stays, as the definer of the golden
        // database's views, until the golden database goes.
        let locked = engine::lock_user(programs, admin, &golden, true).await;
        let copied = match copied.and_then(|c| locked.map(|()| c).map_err(fail(service))) {
            Ok(copied) => copied,
            Err(e) => {
                let _ = engine::drop_user(programs, admin, &golden).await;
                let _ = engine::drop_database(programs, admin, &golden).await;
                return Err(e);
            }
        };
        faults::at("golden", When::After)?;
        engine::mark_ready(
            programs,
            admin,
            &golden,
            &format!("{READY}: golden of {source_name} made at {}", now()),
        )
        .await
        .map_err(fail(service))?;
        log.line(format!(
            "database `{service}`: golden database {golden} copied from `{from}` ({}) in {} ms",
            copied_summary(&copied, masking.is_some()),
            started.elapsed().as_millis()
        ));
        Ok((server, golden, held))
    }

    /// Whether the server `key`'s data directory is whole and its own: made (the `installed` mark) and not a
    /// golden snapshot's copy whose taking over has not finished (its `definitions.sql` still there: the step that
    /// took it over was cut short, perhaps after moving its tables).
    fn holds_whole_data(&self, key: &str) -> bool {
        let root = self.server_root(key);
        root.join(INSTALLED).exists() && !root.join(DEFINITIONS).exists()
    }

    /// Gives the server `key`, which was never made whole, a copy of the stopped data directory `golden` (a physical
    /// golden snapshot's) and its definitions instead of a new one from `mariadb-install-db`; it starts from it.
    async fn adopt_mysql_golden(&self, key: &str, golden: &Path) -> Result<(), RuntimeError> {
        let starting = self.keyed_lock("mysql-start", key);
        let _starting = starting.lock().await;
        if self.holds_whole_data(key) {
            return Ok(());
        }
        // One that ran from an earlier copy (taking it over failed) stops first.
        self.stop_mysql(key).await;
        let root = self.server_root(key);
        self.make_mysql_root(key, &root)?;
        let owner = self.server_owner(key)?;
        let definitions = std::fs::read(golden.with_file_name(DEFINITIONS)).map_err(|e| {
            RuntimeError::new(format!(
                "the golden snapshot {} has no definitions: {e}",
                golden.display()
            ))
        })?;
        let data = root.join("data");
        preview_database::postgres::server::remove_tree(&data)
            .map_err(|e| RuntimeError::new(e.to_string()))?;
        let (from, to) = (golden.to_path_buf(), data.clone());
        crate::database_servers::copy_off_thread(move || {
            preview_database::postgres::server::copy_dir(
                &from,
                &to,
                owner,
                &crate::database_servers::hand_over,
                &[],
            )
        })
        .await?;
        crate::records::write_atomically(&root.join(DEFINITIONS), &definitions)
            .map_err(RuntimeError::new)?;
        crate::records::write_atomically(&root.join(INSTALLED), b"").map_err(RuntimeError::new)
    }

    /// Makes the golden snapshot's copy on the server `key` the environment's: its tables moved into the
    /// environment's database (the one `login` uses), its routines, views and triggers made again there by the
    /// environment's user, `preview_golden` dropped. How many tables moved. Cut short, the server is made again
    /// from the snapshot next time.
    async fn take_mysql_golden_copy(
        &self,
        key: &str,
        server: &RunningMysql,
        login: &Login,
        service: &str,
    ) -> Result<usize, RuntimeError> {
        let (programs, admin) = (&server.programs, &server.admin);
        let root = self.server_root(key);
        let Some(name) = login.database() else {
            return Err(RuntimeError::new(format!(
                "database `{service}`: a login without a database"
            )));
        };
        let taken = async {
            let definitions = std::fs::read(root.join(DEFINITIONS)).map_err(|e| {
                RuntimeError::new(format!(
                    "database `{service}`: the golden snapshot's definitions are missing from its copy: {e}"
                ))
            })?;
            let tables = engine::move_tables(programs, admin, GOLDEN_DATABASE, name)
                .await
                .map_err(fail(service))?;
            engine::drop_database(programs, admin, GOLDEN_DATABASE)
                .await
                .map_err(fail(service))?;
            engine::run_sql_file(programs, login, &definitions, "the golden snapshot's definitions")
                .await
                .map_err(fail(service))?;
            Ok(tables)
        }
        .await;
        // Taken over: the server's data is its own, which its definitions' going says (before the database is
        // marked ready: a ready database beside them would be taken for a copy cut short and made again). Cut short
        // (an error here; a kill leaves `definitions.sql`), it is made again from the snapshot.
        match taken {
            Ok(tables) => crate::records::remove_durably(&root.join(DEFINITIONS))
                .map(|()| tables)
                .map_err(|e| RuntimeError::new(format!("database `{service}`: {e}"))),
            Err(error) => {
                let _ = std::fs::remove_file(root.join(INSTALLED));
                Err(error)
            }
        }
    }

    /// Builds the physical golden snapshot of a MySQL database into `dir`, replacing the one there, on a server of
    /// its own: started, filled by the same copy as a golden database (masked in the stream), its definitions
    /// kept beside it and dropped from it (only tables can move into a copy's database), its writer dropped, and
    /// stopped; its data directory is kept. The caller holds the snapshot's lock.
    pub(crate) async fn build_mysql_physical_golden(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        content: &DatabaseContent,
        golden: &crate::snapshots::Golden,
        dir: &Path,
        log: &StepLog,
    ) -> Result<(), RuntimeError> {
        let builder_key = Self::golden_builder_key(&env.project, golden, service);
        let (from, _) = content.copied_from(service).map_err(RuntimeError::new)?;
        let (source_server, source_name, _source_in_use) = self
            .mysql_source(env, service, content, &builder_key)
            .await?;
        let masking = self
            .mysql_masking(env, service, content, &source_server, &source_name, log)
            .await?;
        log.check_lease()?;
        faults::at("golden", When::Before)?;
        // A builder a killed daemon left goes first.
        self.remove_mysql_server(&builder_key).await?;
        let started = std::time::Instant::now();
        let built = async {
            let builder = self.ensure_mysql(&builder_key, content, service).await?;
            let (programs, admin) = (&builder.programs, &builder.admin);
            engine::create_database(programs, admin, GOLDEN_DATABASE)
                .await
                .map_err(fail(service))?;
            let copied = copy_as_writer(
                &builder,
                GOLDEN_USER,
                GOLDEN_DATABASE,
                (&source_server, &source_name),
                masking.as_ref(),
                service,
            )
            .await?;
            let definitions = engine::definitions(programs, admin, GOLDEN_DATABASE)
                .await
                .map_err(fail(service))?;
            engine::drop_definitions(programs, admin, GOLDEN_DATABASE)
                .await
                .map_err(fail(service))?;
            engine::drop_user(programs, admin, GOLDEN_USER)
                .await
                .map_err(fail(service))?;
            let counted = engine::query(
                programs,
                admin,
                &format!(
                    "SELECT COUNT(*), COALESCE(SUM(table_rows), 0) FROM information_schema.tables
                       WHERE table_schema = {} AND table_type <> 'VIEW'",
                    engine::quote_literal(GOLDEN_DATABASE)
                ),
            )
            .await
            .map_err(fail(service))?;
            let number = |i: usize| {
                counted
                    .first()
                    .and_then(|row| row.get(i))
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or_default()
            };
            // Written out now, with time for it: the stop that follows then ends well within its grace period.
            engine::flush_pages(programs, admin, FLUSH_TIMEOUT)
                .await
                .map_err(fail(service))?;
            Ok::<_, RuntimeError>((copied, definitions, number(0), number(1)))
        }
        .await;
        // Stopped cleanly, or not kept: a data directory is copied only whole.
        let builder = self.databases.mysql.lock().await.remove(&builder_key);
        let stopped = match builder {
            Some(running) => match &running.process {
                Some(process) => {
                    process.stop().await;
                    process.stop_exit()
                }
                None => None,
            },
            None => None,
        };
        let (copied, definitions, tables, rows) = match built {
            Ok(built) if stopped.as_deref() == Some("exit status: 0") => built,
            Ok(_) => {
                let _ = self.remove_mysql_server(&builder_key).await;
                return Err(RuntimeError::new(format!(
                    "database `{service}`: the golden snapshot's server did not stop cleanly ({}); nothing was kept",
                    stopped.as_deref().unwrap_or("it was not running")
                )));
            }
            Err(error) => {
                let _ = self.remove_mysql_server(&builder_key).await;
                return Err(error);
            }
        };
        let mark = crate::snapshots::GoldenMark {
            project: env.project.clone(),
            service: service.to_owned(),
            from: from.to_owned(),
            policy: content.clone.policy.clone(),
            made_at: now(),
            tables,
            // InnoDB's estimate, as `db snapshots` shows it for a golden database.
            rows,
            masking_key: masking_key_of(content),
        };
        let placed = crate::physical::place(
            dir,
            &self.server_root(&builder_key).join("data"),
            &mark,
            Some(&definitions),
        );
        self.remove_mysql_server(&builder_key).await?;
        placed?;
        faults::at("golden", When::After)?;
        self.drop_replaced_physical_goldens(golden, &mark, service, log);
        log.line(format!(
            "database `{service}`: golden snapshot of `{from}` made ({}) in {} ms, kept as a stopped data directory",
            copied_summary(&copied, masking.is_some()),
            started.elapsed().as_millis()
        ));
        Ok(())
    }

    /// The masker and its rules when the policy masks, checked against the source's catalog (its warnings logged).
    async fn mysql_masking(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        content: &DatabaseContent,
        source_server: &RunningMysql,
        source_name: &str,
        log: &StepLog,
    ) -> Result<Option<(Masker, engine::dump::DumpRules)>, RuntimeError> {
        let Some((masking, key)) = content.masking_of(service).map_err(RuntimeError::new)? else {
            return Ok(None);
        };
        let secret = self.secrets.reveal(env, &key.name, &key.version).await?;
        let (plan, rules) = engine::masking_plan(
            &source_server.programs,
            &source_server.admin,
            source_name,
            &masking.tables,
            masking.strict,
        )
        .await
        .map_err(fail(service))?;
        for warning in &plan.warnings {
            log.line(format!("database `{service}`: {warning}"));
        }
        Ok(Some((Masker::from_secret(&secret), rules)))
    }

    pub(crate) async fn remove_mysql(
        &self,
        env: &EnvironmentAddress,
        id: &str,
        content: &DatabaseContent,
        log: &StepLog,
    ) -> Result<(), RuntimeError> {
        let service = id.trim_start_matches("database/");
        log.check_lease()?;
        self.with_state(env, |s| s.service_ports.remove(service));
        let key = content.server_key(env, service);
        if content.physical() {
            let running = self.databases.mysql.lock().await.get(&key).cloned();
            let alone = match &running {
                Some(running) => Some(Arc::clone(&running.in_use).write_owned().await),
                None => None,
            };
            faults::around("drop", self.remove_mysql_server(&key)).await?;
            log.line(format!(
                "database `{service}`: its MariaDB server and data removed"
            ));
            // Let go first: a golden snapshot being built of this server's database, whose lock the next call
            // waits for, waits for it.
            drop(alone);
            self.remove_unused_physical_goldens(&env.project, service)
                .await?;
        } else if !content.external() && self.remove_unmade_mysql_server(&key).await? {
            // Its server was never made whole: no environment has data there.
        } else if content.external() || self.server_exists(&key) {
            let server = self.mysql_host(env, service, content).await?;
            // No environment of the server makes a database while its last one is removed with it.
            let _alone = Arc::clone(&server.in_use).write_owned().await;
            let (programs, admin) = (&server.programs, &server.admin);
            // A database of the same name that another environment made (names that differ only by `-` and `_`)
            // is that environment's: left alone.
            let mark = engine::readiness(programs, admin, &content.name)
                .await
                .map_err(fail(service))?
                .unwrap_or_default();
            if mark.starts_with(READY)
                && mark != ready_mark(&env.project, &env.environment, service)
            {
                log.line(format!(
                    "database `{service}`: {} is not this environment's ({}); left alone",
                    content.name,
                    mark.trim_start_matches("preview: ")
                ));
                return self.forget_database(env, id);
            }
            // The user and its connections first: no transaction of its keeps the drop waiting.
            faults::around("drop-role", async {
                engine::drop_user(programs, admin, &content.name)
                    .await
                    .map_err(fail(service))
            })
            .await?;
            faults::around("drop", async {
                engine::drop_database(programs, admin, &content.name)
                    .await
                    .map_err(fail(service))
            })
            .await?;
            // Golden databases copied from it go with it; previews made from them keep their own copies.
            let source_mark = format!("{READY}: golden of {} made at ", content.name);
            for golden in engine::databases_named(programs, admin, GOLDEN_PREFIX)
                .await
                .map_err(fail(service))?
            {
                let mark = engine::readiness(programs, admin, &golden)
                    .await
                    .map_err(fail(service))?
                    .unwrap_or_default();
                // On a server of the project's, a half-made golden database too (nobody builds one while the
                // server is held alone); an external server's may be another project's build under way.
                if mark.starts_with(&source_mark) || !content.external() && !mark.starts_with(READY)
                {
                    engine::drop_user(programs, admin, &golden)
                        .await
                        .map_err(fail(service))?;
                    engine::drop_database(programs, admin, &golden)
                        .await
                        .map_err(fail(service))?;
                    log.line(format!(
                        "database `{service}`: golden database {golden} dropped"
                    ));
                }
            }
            log.line(format!("database `{service}`: {} dropped", content.name));
            if !content.external()
                && engine::environment_databases_and_users(programs, admin, GOLDEN_USER)
                    .await
                    .map_err(fail(service))?
                    == 0
            {
                // Still held: no deployment makes a database on it while it goes.
                self.remove_mysql_server(&key).await?;
                log.line(format!(
                    "database `{service}`: the project's MariaDB server was its last environment's; removed"
                ));
            }
        }
        self.forget_database(env, id)
    }

    /// Starts the environment's server again if needed and serves its port (when the daemon starts or it wakes).
    pub(crate) async fn restore_mysql(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        content: &DatabaseContent,
    ) -> Result<(), RuntimeError> {
        let server = self.mysql_host(env, service, content).await?;
        self.serve_database(env, service, address_of(&server, service).await?)
    }

    /// A login to the environment's database on its server's host address, for a person on this machine.
    pub(crate) async fn mysql_person_login(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        content: &DatabaseContent,
    ) -> Result<preview_deploy::DatabaseLogin, RuntimeError> {
        let server = self.mysql_host(env, service, content).await?;
        Ok(preview_deploy::DatabaseLogin {
            host: server.host.clone(),
            port: server.port,
            user: content.name.clone(),
            database: content.name.clone(),
            password: self.mysql_password(env, service).await?,
        })
    }

    /// Makes the environment's data again by its clone policy, for `preview db reset`.
    pub(crate) async fn reset_mysql(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        content: &DatabaseContent,
        log: &StepLog,
    ) -> Result<(), RuntimeError> {
        let (server, _using) = self.mysql_in_use(env, service, content).await?;
        let password = self.mysql_password(env, service).await?;
        engine::ensure_user(&server.programs, &server.admin, &content.name, &password)
            .await
            .map_err(fail(service))?;
        self.make_mysql_data(env, service, content, &server, &password, log)
            .await
            .map_err(|e| {
                RuntimeError::new(format!(
                    "{}; the environment has no database `{service}` now: run `preview db reset` again",
                    e.message
                ))
            })
    }

    /// Builds the golden database again from the source as it is now, for `preview db refresh`.
    pub(crate) async fn refresh_mysql_snapshot(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        content: &DatabaseContent,
    ) -> Result<Vec<String>, RuntimeError> {
        let log = StepLog::default();
        if content.physical() {
            self.ensure_physical_golden(env, service, content, &log, true)
                .await?;
            return Ok(log.lines());
        }
        let (_using_server, _using) = self.mysql_in_use(env, service, content).await?;
        self.mysql_golden(env, service, content, &log, true).await?;
        Ok(log.lines())
    }
}

impl LocalRuntime {
    /// The golden database the environment's database is made from, as its server describes it (a server that
    /// does not run is not started for a listing).
    pub(crate) async fn mysql_snapshot_of(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        content: &DatabaseContent,
    ) -> Result<Option<preview_deploy::DatabaseSnapshot>, RuntimeError> {
        if content.physical() {
            return Ok(self.physical_snapshot_of(env, service, content));
        }
        let key = content.server_key(env, service);
        let server = if content.external() {
            self.mysql_host(env, service, content).await?
        } else {
            match self.databases.mysql.lock().await.get(&key).cloned() {
                Some(server) => server,
                None => return Ok(None),
            }
        };
        let golden = crate::snapshots::Golden::of(content).name;
        let (programs, admin) = (&server.programs, &server.admin);
        let Some(made_at) = engine::readiness(programs, admin, &golden)
            .await
            .map_err(fail(service))?
            .as_deref()
            .and_then(golden_made_at)
        else {
            return Ok(None);
        };
        let rows = engine::query(
            programs,
            admin,
            &format!(
                "SELECT COUNT(*), COALESCE(SUM(data_length + index_length), 0), COALESCE(SUM(table_rows), 0)
                   FROM information_schema.tables WHERE table_schema = {} AND table_type = 'BASE TABLE'",
                engine::quote_literal(&golden)
            ),
        )
        .await
        .map_err(fail(service))?;
        let number = |i: usize| {
            rows.first()
                .and_then(|row| row.get(i))
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or_default()
        };
        let (from, _) = content.copied_from(service).map_err(RuntimeError::new)?;
        Ok(Some(preview_deploy::DatabaseSnapshot {
            name: golden,
            from: from.to_owned(),
            policy: content.clone.policy.clone(),
            made_at,
            size_bytes: number(1),
            tables: number(0),
            // InnoDB's estimate: counting every row of a large golden database for a listing would read all of it.
            rows: number(2),
            masking_key: masking_key_of(content),
            warm: 0,
            warm_pool: 0,
            refresh_seconds: content.clone.refresh_seconds,
        }))
    }
}

/// Copies the source database (its server and name) into `database` on `target`, masked on the way when `masking`
/// says so, as a writer `user` made (or its password set again) for it with a password of the moment; the caller
/// locks the writer out or drops it.
async fn copy_as_writer(
    target: &RunningMysql,
    user: &str,
    database: &str,
    (source, source_name): (&RunningMysql, &str),
    masking: Option<&(Masker, engine::dump::DumpRules)>,
    service: &str,
) -> Result<engine::CopyReport, RuntimeError> {
    let password = Secret::new(random_password());
    engine::ensure_user(&target.programs, &target.admin, user, &password)
        .await
        .map_err(fail(service))?;
    let writer = Login::User {
        host: target.host.clone(),
        port: target.port,
        user: user.to_owned(),
        password,
        database: database.to_owned(),
    };
    engine::copy(
        &source.programs,
        &source.admin,
        source_name,
        &writer,
        masking.map(|(masker, rules)| (masker, rules)),
    )
    .await
    .map_err(fail(service))
}

/// What a copy wrote, for its log line: its bytes and, masked, its rows masked.
fn copied_summary(copied: &engine::CopyReport, masked: bool) -> String {
    match masked {
        true => format!(
            "{} bytes, {} rows masked",
            copied.bytes,
            copied.masked.values().sum::<u64>()
        ),
        false => format!("{} bytes", copied.bytes),
    }
}

/// The masking key a masked copy's golden snapshot is made with, as `<name>@<version>`.
fn masking_key_of(content: &DatabaseContent) -> Option<String> {
    content
        .masking
        .as_ref()
        .filter(|_| content.clone.policy == "masked")
        .and_then(|m| m.key.as_ref())
        .map(|key| format!("{}@{}", key.name, key.version))
}

/// The address the environment's service port forwards to.
async fn address_of(
    server: &RunningMysql,
    service: &str,
) -> Result<std::net::SocketAddr, RuntimeError> {
    tokio::net::lookup_host((server.host.as_str(), server.port))
        .await
        .ok()
        .and_then(|mut found| found.next())
        .ok_or_else(|| {
            RuntimeError::new(format!(
                "database `{service}`: cannot resolve {}:{}",
                server.host, server.port
            ))
        })
}

/// The name of a server's cgroup: its directory's.
fn unit_of(root: &Path) -> String {
    format!(
        "mariadb-{}",
        root.file_name().unwrap_or_default().to_string_lossy()
    )
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// When a golden database was made, from its mark.
fn golden_made_at(mark: &str) -> Option<u64> {
    mark.strip_prefix(READY)?
        .rsplit_once(" made at ")?
        .1
        .trim()
        .parse()
        .ok()
}

/// 32 random hexadecimal digits.
fn random_password() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Waits until the administrator can log in through the server's socket, or its process ended.
async fn wait_ready(
    programs: &Programs,
    admin: &Login,
    process: &Supervised,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(exit) = process.last_exit() {
            return Err(format!("it ended ({exit})"));
        }
        let last = match engine::query(programs, admin, "SELECT 1").await {
            Ok(_) => return Ok(()),
            Err(e) => e.to_string(),
        };
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "no answer in {} s ({last})",
                READY_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
