//! An environment's Redis on the local runtime: a server of its own (key `<project>/<environment>/<service>`, files
//! under `<dir>/databases/<id>/` like a PostgreSQL server's), run as a user of its own in a sandbox when the daemon
//! isolates, listening on a port of the runtime's range on the host's loopback, reached by the environment through
//! its service port. Its data is made once by the clone policy — empty, a seed file (commands or an RDB file), or a
//! copy of the source environment's golden snapshot (an RDB file written by `BGSAVE`) — and marked complete by a
//! `ready` file; anything not marked is thrown away and made again. Only removing the resource drops the data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use preview_database::content::{DatabaseContent, ready_mark};
use preview_database::redis::client::{Answer, Client};
use preview_database::redis::commands::parse_commands;
use preview_database::redis::{self as engine, ADMIN, Program, SNAPSHOT, ServerConfig};
use preview_deploy::{EnvironmentAddress, RuntimeError, StepLog};
use preview_plan::Resource;
use preview_secrets::Secret;

use crate::databases::fail;
use crate::faults::{self, When};
use crate::runtime::LocalRuntime;
use crate::supervisor::Supervised;

/// Where a server run in a sandbox sees its directory.
const INSIDE: &str = "/run/preview/redis";

/// How long a server may take to accept commands after it starts (loading its data included).
const READY_TIMEOUT: Duration = Duration::from_secs(600);
/// How long one try to reach a starting server may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// What a Redis server's cgroup allows: its data (`maxmemory`) and room for scripts, clients and a snapshot's
/// child; a server past it is killed and started again, its environment's alone.
const LIMITS: preview_isolation::CgroupLimits = preview_isolation::CgroupLimits {
    cpu_millicores: None,
    memory_bytes: Some((engine::MAX_MEMORY_MB as u64 + 512) * 1024 * 1024),
    tasks: Some(64),
};

/// The server's process id, in its data directory (the one directory it may write).
const PID_FILE: &str = "redis.pid";

/// How long a source's snapshot may take to be written.
const SAVE_TIMEOUT: Duration = Duration::from_secs(600);

/// A Redis server that runs.
pub(crate) struct RunningRedis {
    pub process: Supervised,
    pub port: u16,
}

/// The Redis servers that run, by key.
pub(crate) type RedisServers = tokio::sync::Mutex<BTreeMap<String, Arc<RunningRedis>>>;

/// The key of an environment's Redis server.
fn key_of(env: &EnvironmentAddress, service: &str) -> String {
    format!("{}/{}/{service}", env.project, env.environment)
}

impl LocalRuntime {
    /// The environment's password and the administrator's, derived from the daemon's key: nothing stores them.
    async fn redis_passwords(
        &self,
        env: &EnvironmentAddress,
        service: &str,
    ) -> Result<(Secret, Secret), RuntimeError> {
        let user = self
            .secrets
            .reveal(env, &format!("database:{service}/password"), "derived")
            .await?;
        let admin = self
            .secrets
            .reveal(
                env,
                &format!("database:{service}.admin/password"),
                "derived",
            )
            .await?;
        Ok((user, admin))
    }

    /// Where the server `key` sees its own directory.
    fn redis_inside(&self, key: &str) -> PathBuf {
        match self.isolation {
            Some(_) => PathBuf::from(INSIDE),
            None => self.server_root(key),
        }
    }

    /// The server of the environment's Redis `service`, started (from its files, its configuration written anew)
    /// if it does not run. A server whose persistence is `aof` but that has an RDB file and no append-only file
    /// yet (a change of persistence cut short) starts from the RDB file, as a new one does.
    pub(crate) async fn ensure_redis(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        content: &DatabaseContent,
    ) -> Result<Arc<RunningRedis>, RuntimeError> {
        let key = key_of(env, service);
        let data = self.server_root(&key).join("data");
        if persistence_of(content) == "aof"
            && !data.join("appendonlydir").exists()
            && data.join(SNAPSHOT).exists()
            && !self.databases.redis.lock().await.contains_key(&key)
        {
            return self.start_from_snapshot(env, service, content).await;
        }
        self.start_redis(env, service, content).await
    }

    /// Starts the server from its files as they are, if it does not run.
    async fn start_redis(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        content: &DatabaseContent,
    ) -> Result<Arc<RunningRedis>, RuntimeError> {
        let key = key_of(env, service);
        // One start at a time per server; other servers start meanwhile.
        let starting = self.keyed_lock("redis-start", &key);
        let _starting = starting.lock().await;
        if let Some(server) = self.databases.redis.lock().await.get(&key) {
            return Ok(Arc::clone(server));
        }
        let version = u16::try_from(content.version.major()).unwrap_or_default();
        let program = Program::find(version).map_err(fail(service))?;
        faults::at("server", When::Before)?;
        let root = self.server_root(&key);
        let port = self.server_port(&key)?;
        let owner = self.server_owner(&key)?;
        self.make_redis_dirs(&key, owner)?;
        let inside = self.redis_inside(&key);
        let (password, admin_password) = self.redis_passwords(env, service).await?;
        let config = ServerConfig {
            major: program.major,
            port,
            dir: &inside.join("data"),
            persistence: persistence_of(content),
            user: &content.name,
            password: &password,
            admin_password: &admin_password,
        }
        .text()
            + &format!(
                "pidfile \"{}\"\n",
                inside.join("data").join(PID_FILE).display()
            );
        // The daemon's file, readable by the server's group only: the server cannot change its own rules.
        let config_path = root.join("redis.conf");
        crate::records::write_atomically(&config_path, config.as_bytes())
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
        crate::database_servers::stop_stale(
            &root.join("data").join(PID_FILE),
            &inside.join("redis.conf").display().to_string(),
            owner.map(|(uid, _)| uid),
            self.config.grace,
        )
        .await;
        let process = self
            .start_own_server(
                &key,
                "redis",
                format!(
                    "exec '{}' '{}'",
                    program.path.display(),
                    inside.join("redis.conf").display()
                ),
                owner,
                Path::new(INSIDE),
                &unit_of(&root),
                &LIMITS,
            )
            .await?;
        if let Err(e) = wait_ready(port, &admin_password, &process).await {
            process.stop().await;
            return Err(RuntimeError::new(format!(
                "database `{service}`: the Redis server did not start: {e}; its log ends with:\n{}",
                process.output_tail(15)
            )));
        }
        let server = Arc::new(RunningRedis { process, port });
        self.databases
            .redis
            .lock()
            .await
            .insert(key, Arc::clone(&server));
        faults::at("server", When::After)?;
        Ok(server)
    }

    /// The server's directory — the daemon's own, which the server may pass through but not change (its
    /// configuration, log and `ready` mark are there) — and its data directory, the server's alone.
    fn make_redis_dirs(&self, key: &str, owner: Option<(u32, u32)>) -> Result<(), RuntimeError> {
        let root = self.server_root(key);
        crate::trees::own_dir(&self.servers_dir(), None, 0o700).map_err(RuntimeError::new)?;
        // Passable by the server in its sandbox, where this directory is its root.
        crate::trees::own_dir(&root, None, 0o711).map_err(RuntimeError::new)?;
        crate::trees::own_dir(&root.join("data"), owner.map(|(uid, _)| uid), 0o700)
            .map_err(RuntimeError::new)
    }

    /// Starts the environment's new server from the RDB file placed in its data directory, as its persistence
    /// keeps data from then on: with `aof` it first runs without the append-only file (a server with it on
    /// starts from that file alone), turns it on — which writes it from what was loaded — and starts again from
    /// it; with `none` the file goes once it is loaded (the data lasts as long as the server's process).
    async fn start_from_snapshot(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        content: &DatabaseContent,
    ) -> Result<Arc<RunningRedis>, RuntimeError> {
        let key = key_of(env, service);
        match persistence_of(content) {
            "aof" => {
                let mut loading = content.clone();
                loading.persistence = Some("rdb".to_owned());
                let server = self.start_redis(env, service, &loading).await?;
                let mut admin = self.redis_admin(env, service, &server).await?;
                engine::turn_on_append_only(&mut admin, SAVE_TIMEOUT)
                    .await
                    .map_err(fail(service))?;
                drop((admin, server));
                self.stop_redis(&key).await;
                self.start_redis(env, service, content).await
            }
            "none" => {
                let server = self.start_redis(env, service, content).await?;
                self.forget_snapshot(&key)?;
                Ok(server)
            }
            _ => self.start_redis(env, service, content).await,
        }
    }

    /// Removes the RDB file of a server whose persistence is `none`: it would be loaded at its next start.
    fn forget_snapshot(&self, key: &str) -> Result<(), RuntimeError> {
        let path = self.server_root(key).join("data").join(SNAPSHOT);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(RuntimeError::new(format!(
                "cannot remove {}: {e}",
                path.display()
            ))),
        }
    }

    /// Moves an environment's data, kept, from the persistence `before` had to the one `content` has: the server
    /// (running as before, its writes paused) writes all it holds to an RDB file, stops, and starts from that file
    /// as [`LocalRuntime::start_from_snapshot`] does.
    async fn change_persistence(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        before: &DatabaseContent,
        content: &DatabaseContent,
    ) -> Result<(), RuntimeError> {
        let key = key_of(env, service);
        let server = self.ensure_redis(env, service, before).await?;
        let mut admin = self.redis_admin(env, service, &server).await?;
        // No write is taken from here on (clients wait, then lose their connection as the server stops), so none
        // is acknowledged and then lost.
        admin
            .expect(
                &[b"CLIENT", b"PAUSE", b"600000", b"WRITE"],
                "pausing its writes",
            )
            .await
            .map_err(fail(service))?;
        if persistence_of(before) == "aof" {
            admin
                .expect(
                    &[b"CONFIG", b"SET", b"appendonly", b"no"],
                    "turning the append-only file off",
                )
                .await
                .map_err(fail(service))?;
        }
        engine::persist(&mut admin, "rdb", SAVE_TIMEOUT)
            .await
            .map_err(fail(service))?;
        drop((admin, server));
        self.stop_redis(&key).await;
        // An append-only file of before stays until the server goes: should the daemon die before the new
        // persistence is recorded, the server starts again from it as it was.
        self.start_from_snapshot(env, service, content)
            .await
            .map(drop)
    }

    /// Whether the environment's Redis data is complete: its server's directory holds its mark.
    fn redis_is_ready(&self, env: &EnvironmentAddress, service: &str) -> bool {
        let mark = ready_mark(&env.project, &env.environment, service);
        std::fs::read_to_string(self.server_root(&key_of(env, service)).join("ready"))
            .is_ok_and(|m| m == mark)
    }

    /// An administrator's connection to the environment's Redis.
    async fn redis_admin(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        server: &RunningRedis,
    ) -> Result<Client, RuntimeError> {
        let (_, admin_password) = self.redis_passwords(env, service).await?;
        Client::connect("127.0.0.1", server.port, ADMIN, &admin_password)
            .await
            .map_err(fail(service))
    }

    /// Stops the Redis server `key` if it runs (its environment sleeps, or the daemon stops).
    pub(crate) async fn stop_redis(&self, key: &str) {
        let running = self.databases.redis.lock().await.remove(key);
        if let Some(running) = running {
            running.process.stop().await;
        }
    }

    /// Stops the environment's Redis server and removes its files, its port and its user.
    async fn remove_redis_server(&self, key: &str) -> Result<(), RuntimeError> {
        self.stop_redis(key).await;
        let root = self.server_root(key);
        self.remove_own_server(
            key,
            &root.join("data").join(PID_FILE),
            &self
                .redis_inside(key)
                .join("redis.conf")
                .display()
                .to_string(),
            &unit_of(&root),
        )
        .await
    }

    pub(crate) async fn apply_redis(
        &self,
        env: &EnvironmentAddress,
        resource: &Resource,
        content: &DatabaseContent,
        log: &StepLog,
    ) -> Result<(), RuntimeError> {
        let service = resource.id.trim_start_matches("database/");
        // Written first: whatever happens from here on, removing the resource finds what to drop.
        self.dir_of(env)
            .write_intent(&resource.id, &resource.content)
            .map_err(RuntimeError::new)?;
        let key = key_of(env, service);
        let ready = self.redis_is_ready(env, service);
        log.check_lease()?;
        if ready {
            let before = self
                .dir_of(env)
                .read(&resource.id)
                .map_err(RuntimeError::new)?
                .and_then(|record| crate::databases::parse(&record.id, &record.content).ok());
            match before.filter(|before| before.persistence != content.persistence) {
                Some(before) => {
                    self.change_persistence(env, service, &before, content)
                        .await?;
                    log.line(format!(
                        "database `{service}`: its Redis server kept with its data, its persistence now `{}`",
                        persistence_of(content)
                    ));
                }
                None => {
                    self.ensure_redis(env, service, content).await?;
                    log.line(format!(
                        "database `{service}`: its Redis server kept with its data"
                    ));
                }
            }
        } else {
            let began = std::time::Instant::now();
            let made = self.make_redis_data(env, service, content, log).await;
            if let Err(error) = made {
                // Nothing half-made is left: the next attempt starts from scratch.
                let _ = self.remove_redis_server(&key).await;
                return Err(error);
            }
            preview_metrics::metrics()
                .database_content_made(&content.clone.policy, began.elapsed());
        }
        self.serve_redis(env, service, content).await?;
        self.record(env, resource)
    }

    /// Makes the environment's Redis data by its clone policy, from nothing: whatever a step that did not finish
    /// left is thrown away first.
    async fn make_redis_data(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        content: &DatabaseContent,
        log: &StepLog,
    ) -> Result<(), RuntimeError> {
        let key = key_of(env, service);
        log.check_lease()?;
        let root = self.server_root(&key);
        // What the server starts from: the golden snapshot's file, or the RDB seed file's bytes.
        let snapshot = match content.clone.policy.as_str() {
            "clone" => Some(Start::Golden(
                self.redis_golden(env, service, content, log, false).await?,
            )),
            "seed" => match &content.clone.file {
                Some(file) if file.ends_with(".rdb") => {
                    let bytes = content
                        .seed_file(service, file)
                        .map_err(RuntimeError::new)?;
                    if !engine::is_rdb(&bytes) {
                        return Err(RuntimeError::new(format!(
                            "database `{service}`: {file} is not an RDB file (it does not begin with `REDIS`); a seed file of commands has another name than *.rdb"
                        )));
                    }
                    Some(Start::Seed(bytes))
                }
                _ => None,
            },
            _ => None,
        };
        // Nothing copies from this server, nor removes it, while it is made (copies check its `ready` mark).
        let lock = self.keyed_lock(&env.project, &format!("redis:{key}"));
        let _held = lock.lock().await;
        self.remove_redis_server(&key).await?;
        faults::at("create", When::Before)?;
        if let Some(start) = &snapshot {
            let owner = self.server_owner(&key)?;
            self.make_redis_dirs(&key, owner)?;
            let path = root.join("data").join(SNAPSHOT);
            match start {
                Start::Seed(bytes) => {
                    crate::records::write_atomically(&path, bytes).map_err(RuntimeError::new)?
                }
                Start::Golden(golden) => copy_file(golden, &path)?,
            }
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid)).map_err(|e| {
                    RuntimeError::new(format!("cannot hand {} to its server: {e}", path.display()))
                })?;
            }
        }
        let server = if snapshot.is_some() {
            self.start_from_snapshot(env, service, content).await?
        } else {
            self.ensure_redis(env, service, content).await?
        };
        faults::at("create", When::After)?;
        match (content.clone.policy.as_str(), &content.clone.file) {
            ("clone", _) => log.line(format!(
                "database `{service}`: its Redis server made from the golden snapshot of `{}`",
                content.clone.from.as_deref().unwrap_or_default()
            )),
            ("seed", Some(file)) if file.ends_with(".rdb") => log.line(format!(
                "database `{service}`: its Redis server started from {file}"
            )),
            ("seed", Some(file)) => {
                let text = content
                    .seed_file(service, file)
                    .map_err(RuntimeError::new)?;
                let commands = parse_commands(&text, file).map_err(|e| {
                    RuntimeError::new(format!(
                        "database `{service}`: seeding from {file} failed, nothing was kept:\n{e}"
                    ))
                })?;
                let (password, _) = self.redis_passwords(env, service).await?;
                faults::at("seed", When::Before)?;
                // As the environment's own user: a seed file from a pull request has no more rights than its apps.
                let mut client =
                    Client::connect("127.0.0.1", server.port, &content.name, &password)
                        .await
                        .map_err(fail(service))?;
                let failed = |line: String, message: String| {
                    RuntimeError::new(format!(
                        "database `{service}`: seeding from {file} failed, nothing was kept:\n{file}:{line}: {message}"
                    ))
                };
                for command in &commands {
                    log.check_lease()?;
                    let args: Vec<&[u8]> = command.args.iter().map(Vec::as_slice).collect();
                    match client.command(&args).await {
                        Ok(Answer::Error(message)) => {
                            return Err(failed(command.line.to_string(), message));
                        }
                        Ok(_) => {}
                        Err(e) => return Err(failed(command.line.to_string(), e.to_string())),
                    }
                }
                // A transaction the file opened and never ended applied nothing: its commands are only queued.
                if let Ok(Answer::Status(status)) = client.command(&[b"PING"]).await
                    && status == "QUEUED"
                {
                    let opened = commands
                        .iter()
                        .rev()
                        .find(|c| {
                            c.args
                                .first()
                                .is_some_and(|a| a.eq_ignore_ascii_case(b"MULTI"))
                        })
                        .map_or(0, |c| c.line);
                    return Err(failed(
                        opened.to_string(),
                        "this MULTI is not ended by EXEC, so none of the commands after it were applied".to_owned(),
                    ));
                }
                faults::at("seed", When::After)?;
                log.line(format!(
                    "database `{service}`: seeded from {file} ({} commands)",
                    commands.len()
                ));
            }
            _ => log.line(format!("database `{service}`: its Redis server made empty")),
        }
        // On disk before it is marked complete: a server that crashes from here on comes back with it.
        let mut admin = self.redis_admin(env, service, &server).await?;
        engine::persist(&mut admin, persistence_of(content), SAVE_TIMEOUT)
            .await
            .map_err(fail(service))?;
        faults::at("mark", When::Before)?;
        crate::records::write_atomically(
            &root.join("ready"),
            ready_mark(&env.project, &env.environment, service).as_bytes(),
        )
        .map_err(RuntimeError::new)?;
        faults::at("mark", When::After)
    }

    /// The golden snapshot of the source environment's Redis: an RDB file written by its server, made again when
    /// it is older than the policy's `refresh` (or `rebuild` says so).
    async fn redis_golden(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        content: &DatabaseContent,
        log: &StepLog,
        rebuild: bool,
    ) -> Result<PathBuf, RuntimeError> {
        let (from, _) = content.copied_from(service).map_err(RuntimeError::new)?;
        let source = EnvironmentAddress {
            project: env.project.clone(),
            environment: from.to_owned(),
        };
        let source_key = key_of(&source, service);
        let lock = self.keyed_lock(&env.project, &format!("redis:{source_key}"));
        let _held = lock.lock().await;
        let path = self.redis_golden_path(&source_key);
        let fresh = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|made| made.elapsed().ok())
            .is_some_and(|age| {
                content
                    .clone
                    .refresh_seconds
                    .is_none_or(|refresh| age.as_secs() < refresh)
            });
        if fresh && !rebuild {
            return Ok(path);
        }
        let recorded = self
            .dir_of(&source)
            .read(&format!("database/{service}"))
            .map_err(RuntimeError::new)?
            .ok_or_else(|| {
                RuntimeError::new(format!(
                    "database `{service}`: environment `{from}` has no database `{service}` to copy; deploy `{from}` first"
                ))
            })?;
        let source_content =
            crate::databases::parse(&recorded.id, &recorded.content).map_err(RuntimeError::new)?;
        if !self.redis_is_ready(&source, service) {
            return Err(RuntimeError::new(format!(
                "database `{service}`: `{from}`'s `{service}` is being made again; deploy once it is done"
            )));
        }
        if source_content.engine != content.engine {
            return Err(RuntimeError::new(format!(
                "database `{service}`: `{from}`'s `{service}` is a {} database, not Redis; a copy needs the same engine",
                source_content.engine.name()
            )));
        }
        faults::at("golden", When::Before)?;
        let started = std::time::Instant::now();
        // A sleeping source's server is started for the copy and stopped again after it.
        let was_running = self.databases.redis.lock().await.contains_key(&source_key);
        let server = self.ensure_redis(&source, service, &source_content).await?;
        let mut admin = self.redis_admin(&source, service, &server).await?;
        let saved = engine::save_snapshot(&mut admin, SAVE_TIMEOUT)
            .await
            .map_err(fail(service));
        drop((admin, server));
        let written = self.server_root(&source_key).join("data").join(SNAPSHOT);
        let copied = saved.and_then(|()| {
            crate::trees::own_dir(&self.redis_goldens_dir(), None, 0o700)
                .map_err(RuntimeError::new)?;
            copy_file(&written, &path)
        });
        // A source whose persistence is `none` keeps no file its next start would load.
        let forgotten = if persistence_of(&source_content) == "none" {
            self.forget_snapshot(&source_key)
        } else {
            Ok(())
        };
        if !was_running && self.dir_of(&source).is_sleeping() {
            self.stop_redis(&source_key).await;
        }
        copied.and(forgotten)?;
        faults::at("golden", When::After)?;
        log.line(format!(
            "database `{service}`: golden snapshot of `{from}` written by its Redis server ({} bytes) in {} ms",
            std::fs::metadata(&path).map(|m| m.len()).unwrap_or_default(),
            started.elapsed().as_millis()
        ));
        Ok(path)
    }

    fn redis_goldens_dir(&self) -> PathBuf {
        self.servers_dir().join("redis-goldens")
    }

    /// Where the golden snapshot of the Redis server `source_key` is kept.
    fn redis_golden_path(&self, source_key: &str) -> PathBuf {
        let digest = ring::digest::digest(&ring::digest::SHA256, source_key.as_bytes());
        let id: String = digest.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.redis_goldens_dir().join(format!("{id}.rdb"))
    }

    /// Removes the environment's Redis: its server, its files, its port and user, its golden snapshot (as a
    /// source) and its record, all under the lock copies from it are made under, so that a copy never starts
    /// the server of a source that is gone.
    pub(crate) async fn remove_redis(
        &self,
        env: &EnvironmentAddress,
        id: &str,
        log: &StepLog,
    ) -> Result<(), RuntimeError> {
        let service = id.trim_start_matches("database/");
        let key = key_of(env, service);
        log.check_lease()?;
        let lock = self.keyed_lock(&env.project, &format!("redis:{key}"));
        let _held = lock.lock().await;
        self.with_state(env, |s| s.service_ports.remove(service));
        faults::around("drop", self.remove_redis_server(&key)).await?;
        // Its golden snapshot goes with it: previews made from it keep their own copies. (A copy a killed daemon
        // left half-written goes too.)
        let golden = self.redis_golden_path(&key);
        let _ = std::fs::remove_file(golden.with_extension("partial"));
        match std::fs::remove_file(&golden) {
            Ok(()) => log.line(format!("database `{service}`: its golden snapshot removed")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(RuntimeError::new(format!(
                    "cannot remove {}: {e}",
                    golden.display()
                )));
            }
        }
        log.line(format!(
            "database `{service}`: its Redis server and data removed"
        ));
        self.forget_database(env, id)
    }

    /// Starts the environment's Redis server again and serves its port (when the daemon starts or it wakes).
    pub(crate) async fn restore_redis(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        content: &DatabaseContent,
    ) -> Result<(), RuntimeError> {
        if !self.redis_is_ready(env, service) {
            // Made again by `db reset` when the daemon stopped: half of it is not served.
            return Err(RuntimeError::new(format!(
                "database `{service}` of `{}` was being made again when the daemon stopped; run `preview db reset {} {service}`",
                env.environment, env.environment
            )));
        }
        self.serve_redis(env, service, content).await
    }

    /// The environment's Redis server, started if it does not run, behind its service port.
    async fn serve_redis(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        content: &DatabaseContent,
    ) -> Result<(), RuntimeError> {
        let server = self.ensure_redis(env, service, content).await?;
        self.serve_database(
            env,
            service,
            std::net::SocketAddr::from(([127, 0, 0, 1], server.port)),
        )
    }

    /// A login to the environment's Redis on its server's host address, for a person on this machine.
    pub(crate) async fn redis_login(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        content: &DatabaseContent,
    ) -> Result<preview_deploy::DatabaseLogin, RuntimeError> {
        if !self.redis_is_ready(env, service) {
            return Err(RuntimeError::new(format!(
                "database `{service}` of `{}` is being made; log in once its deployment or reset is done",
                env.environment
            )));
        }
        let server = self.ensure_redis(env, service, content).await?;
        let (password, _) = self.redis_passwords(env, service).await?;
        Ok(preview_deploy::DatabaseLogin {
            host: "127.0.0.1".to_owned(),
            port: server.port,
            user: content.name.clone(),
            database: "0".to_owned(),
            password,
        })
    }

    /// Makes the environment's Redis data again by its clone policy, for `preview db reset`.
    pub(crate) async fn reset_redis(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        content: &DatabaseContent,
        log: &StepLog,
    ) -> Result<(), RuntimeError> {
        self.make_redis_data(env, service, content, log)
            .await
            .map_err(|e| {
                RuntimeError::new(format!(
                    "{}; the environment has no database `{service}` now: run `preview db reset` again",
                    e.message
                ))
            })?;
        self.serve_redis(env, service, content).await
    }

    /// Writes the golden snapshot of the source again, for `preview db refresh`.
    pub(crate) async fn refresh_redis_snapshot(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        content: &DatabaseContent,
    ) -> Result<Vec<String>, RuntimeError> {
        let log = StepLog::default();
        self.redis_golden(env, service, content, &log, true).await?;
        Ok(log.lines())
    }

    /// The golden snapshot the environment's Redis was made from, as it is now.
    pub(crate) fn redis_snapshot_of(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        content: &DatabaseContent,
    ) -> Option<preview_deploy::DatabaseSnapshot> {
        let (from, _) = content.copied_from(service).ok()?;
        let source_key = format!("{}/{from}/{service}", env.project);
        let path = self.redis_golden_path(&source_key);
        let metadata = std::fs::metadata(&path).ok()?;
        let made_at = metadata
            .modified()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs();
        Some(preview_deploy::DatabaseSnapshot {
            name: path.file_name()?.to_string_lossy().into_owned(),
            from: from.to_owned(),
            policy: content.clone.policy.clone(),
            made_at,
            size_bytes: metadata.len(),
            tables: 0,
            rows: 0,
            masking_key: None,
            warm: 0,
            warm_pool: 0,
            refresh_seconds: content.clone.refresh_seconds,
        })
    }
}

/// The name of a server's cgroup: its directory's.
fn unit_of(root: &Path) -> String {
    format!(
        "redis-{}",
        root.file_name().unwrap_or_default().to_string_lossy()
    )
}

/// A database's persistence, `rdb` when the record names none.
fn persistence_of(content: &DatabaseContent) -> &str {
    content.persistence.as_deref().unwrap_or("rdb")
}

/// Where a new server's data comes from.
enum Start {
    /// A golden snapshot's file, copied.
    Golden(PathBuf),
    /// An RDB seed file's bytes.
    Seed(Vec<u8>),
}

/// Copies `from` to `to` as a whole or not at all (a copy beside it, renamed), without holding it in memory.
/// `from` may be in a server's data directory, which its user can change: only a regular file is read, never
/// what a link points to, and nothing blocks on a pipe.
fn copy_file(from: &Path, to: &Path) -> Result<(), RuntimeError> {
    use std::os::unix::fs::OpenOptionsExt;
    let partial = to.with_extension("partial");
    let failed = |e: std::io::Error| {
        let _ = std::fs::remove_file(&partial);
        RuntimeError::new(format!(
            "cannot copy {} to {}: {e}",
            from.display(),
            to.display()
        ))
    };
    let mut source = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(from)
        .map_err(failed)?;
    if !source.metadata().map_err(failed)?.is_file() {
        return Err(failed(std::io::Error::other("it is not a regular file")));
    }
    let _ = std::fs::remove_file(&partial);
    // A new file, never one a link already at that name points to.
    let mut target = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .map_err(failed)?;
    std::io::copy(&mut source, &mut target)
        .and_then(|_| target.sync_all())
        .and_then(|()| std::fs::rename(&partial, to))
        .map_err(failed)
}

/// Waits until the server answers the administrator's PING (it has loaded its data), or its process ended.
async fn wait_ready(
    port: u16,
    admin_password: &Secret,
    process: &Supervised,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(exit) = process.last_exit() {
            return Err(format!("it ended ({exit})"));
        }
        // Each try is bounded: what listens on the port may not be the server (a port of the runtime's range taken
        // by another program), and may never answer.
        let answered = tokio::time::timeout(ATTEMPT_TIMEOUT, async {
            match Client::connect("127.0.0.1", port, ADMIN, admin_password).await {
                Ok(mut client) => match client.command(&[b"PING"]).await {
                    Ok(Answer::Status(_)) => None,
                    Ok(other) => Some(other.text()),
                    Err(e) => Some(e.to_string()),
                },
                Err(e) => Some(e.to_string()),
            }
        })
        .await;
        let last = match answered {
            Ok(None) => return Ok(()),
            Ok(Some(problem)) => problem,
            Err(_) => format!("no answer to PING within {} s", ATTEMPT_TIMEOUT.as_secs()),
        };
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "no answer in {} s ({last})",
                READY_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
