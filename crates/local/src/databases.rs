//! An environment's databases on the local runtime: its database and login role on a server of `database_servers`,
//! its data made once by the clone policy (empty, a seed file, or a copy of another environment's database —
//! plain or masked — made from a golden snapshot), and a service port in the environment's network that forwards
//! to the server. A redeploy never touches data that exists; only removing the resource drops it.

use std::net::SocketAddr;
use std::sync::Arc;

use preview_database::masking::Masker;
use preview_database::masking_plan::Rules;
use preview_database::postgres::admin;
use preview_database::postgres::copy::{Masking, copy_database_as};
use preview_database::postgres::{Connection, Endpoint};
use preview_deploy::{EnvironmentAddress, RuntimeError, StepLog};
use preview_plan::Resource;

use crate::database_servers::{RunningServer, server_key};
use crate::faults;
use crate::forward::ServicePort;
use crate::runtime::LocalRuntime;
pub(crate) use preview_database::content::{
    self, DatabaseContent, Engine, READY, READY_FOR, SecretVersion, is_ready, readiness,
};
use preview_database::postgres::Binaries;

/// What the local runtime asks of a database resource's content beyond what every runtime reads.
pub(crate) trait LocalContent {
    /// The key of the server the database lives on.
    fn server_key(&self, env: &EnvironmentAddress, service: &str) -> String;
}

impl LocalContent for DatabaseContent {
    fn server_key(&self, env: &EnvironmentAddress, service: &str) -> String {
        server_key(
            &env.project,
            &env.environment,
            service,
            self.version,
            self.physical(),
        )
    }
}

/// The engines the local runtime runs.
const ENGINES: &[Engine] = &[Engine::Postgres, Engine::Redis, Engine::Mysql];

/// A database resource's content, when the local runtime runs its engine.
pub(crate) fn parse(
    resource_id: &str,
    content: &serde_json::Value,
) -> Result<DatabaseContent, String> {
    DatabaseContent::parse(resource_id, content, "local", ENGINES)
}

/// The mark of an environment's database that is complete.
fn ready_mark(env: &EnvironmentAddress, service: &str) -> String {
    content::ready_mark(&env.project, &env.environment, service)
}

pub(crate) fn fail(service: &str) -> impl Fn(preview_database::DatabaseError) -> RuntimeError + '_ {
    move |e| RuntimeError::new(format!("database `{service}`: {e}"))
}

/// Where an environment's database lives: a server `preview` runs, or an external one.
pub(crate) struct DatabaseHost {
    /// The administrator's login.
    pub admin: Connection,
    /// The programs of the database's version (`psql`, `pg_dump`).
    pub binaries: Binaries,
    /// Where roles log in, as the daemon reaches it.
    pub login_host: String,
    pub login_port: u16,
    /// Held while a golden snapshot there is made.
    pub golden: Arc<tokio::sync::Mutex<()>>,
    /// Shared by whatever works on the server; taken alone to remove it.
    pub in_use: Arc<tokio::sync::RwLock<()>>,
    /// The server, when `preview` runs it: copies are written by the golden owner's own login there.
    pub server: Option<preview_database::postgres::Server>,
}

impl DatabaseHost {
    pub(crate) fn of(running: &RunningServer) -> DatabaseHost {
        DatabaseHost {
            admin: running.server.admin(),
            binaries: running.server.binaries.clone(),
            login_host: "127.0.0.1".to_owned(),
            login_port: running.server.port,
            golden: Arc::clone(&running.golden),
            in_use: Arc::clone(&running.in_use),
            server: Some(running.server.clone()),
        }
    }

    /// Hands the objects of the copy `name` on this host to its role (connected inside it as the administrator).
    pub(crate) async fn take_over(&self, name: &str, service: &str) -> Result<(), RuntimeError> {
        let inside = self
            .admin
            .to_database(name)
            .connect()
            .await
            .map_err(fail(service))?;
        admin::take_over(&inside, name).await.map_err(fail(service))
    }

    /// Hands the copy `name`, its database and its objects, to its role, and closes it to everyone else (the
    /// golden owner that wrote it included).
    pub(crate) async fn hand_over_copy(
        &self,
        admin_client: &tokio_postgres::Client,
        name: &str,
        service: &str,
    ) -> Result<(), RuntimeError> {
        let inside = self
            .admin
            .to_database(name)
            .connect()
            .await
            .map_err(fail(service))?;
        admin::hand_over_copy(admin_client, &inside, name, name)
            .await
            .map_err(fail(service))
    }

    /// The address the environment's service port forwards to.
    async fn address(&self, service: &str) -> Result<SocketAddr, RuntimeError> {
        tokio::net::lookup_host((self.login_host.as_str(), self.login_port))
            .await
            .ok()
            .and_then(|mut found| found.next())
            .ok_or_else(|| {
                RuntimeError::new(format!(
                    "database `{service}`: cannot resolve {}:{}",
                    self.login_host, self.login_port
                ))
            })
    }
}

impl LocalRuntime {
    /// The host of the environment's database: its server, started if needed, or the external server its admin
    /// URL names.
    pub(crate) async fn database_host(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        content: &DatabaseContent,
    ) -> Result<DatabaseHost, RuntimeError> {
        if !content.external() {
            let running = self
                .ensure_server(&content.server_key(env, service), content.version.major())
                .await?;
            return Ok(DatabaseHost::of(&running));
        }
        let Some(url) = &content.admin_url else {
            return Err(RuntimeError::new(format!(
                "database `{service}`: `mode: external` needs `admin_url: <project secret>`"
            )));
        };
        let url = self.secrets.reveal(env, &url.name, &url.version).await?;
        let admin = Connection::from_url(&url).map_err(fail(service))?;
        let binaries = Binaries::find(content.version.major()).map_err(fail(service))?;
        let login_host = match &admin.host {
            Endpoint::Tcp(host) => host.clone(),
            Endpoint::Socket(_) => {
                return Err(RuntimeError::new(format!(
                    "database `{service}`: the admin URL names a socket; environments reach an external server over TCP, so name its host"
                )));
            }
        };
        Ok(DatabaseHost {
            login_port: admin.port,
            login_host,
            golden: self.keyed_lock(&env.project, service),
            in_use: Arc::default(),
            server: None,
            admin,
            binaries,
        })
    }

    /// [`LocalRuntime::database_host`], with the server's use lock shared: a server that was removed meanwhile
    /// (with the project's last other database) is made again.
    async fn database_host_in_use(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        content: &DatabaseContent,
    ) -> Result<(DatabaseHost, tokio::sync::OwnedRwLockReadGuard<()>), RuntimeError> {
        loop {
            let host = self.database_host(env, service, content).await?;
            let using = host.in_use.clone().read_owned().await;
            if content.external()
                || self
                    .server_is_current(&content.server_key(env, service), &host.in_use)
                    .await
            {
                return Ok((host, using));
            }
        }
    }

    pub(crate) async fn apply_database(
        &self,
        env: &EnvironmentAddress,
        resource: &Resource,
        log: &StepLog,
    ) -> Result<(), RuntimeError> {
        let service = resource.id.trim_start_matches("database/");
        let content = parse(&resource.id, &resource.content)?;
        match content.engine {
            Engine::Redis => return self.apply_redis(env, resource, &content, log).await,
            Engine::Mysql => return self.apply_mysql(env, resource, &content, log).await,
            Engine::Postgres => {}
        }
        log.check_lease()?;
        if content.external() {
            // An external server that cannot be reached (a wrong URL, TLS refused) gets nothing: the step fails
            // before it writes anything that undoing it would have to reach the server for.
            let host = self.database_host(env, service, &content).await?;
            host.admin.connect().await.map_err(fail(service))?;
        }
        // Written first: whatever happens from here on, removing the resource finds what to drop.
        self.dir_of(env)
            .write_intent(&resource.id, &resource.content)
            .map_err(RuntimeError::new)?;
        // An environment's own server that is a copy starts from a copy of the golden snapshot's data directory.
        let key = content.server_key(env, service);
        if content.physical()
            && matches!(content.clone.policy.as_str(), "clone" | "masked")
            && !self.server_exists(&key)
        {
            let golden = self
                .ensure_physical_golden(env, service, &content, log, false)
                .await?;
            log.check_lease()?;
            let started = std::time::Instant::now();
            faults::around("create", self.adopt_data_dir(&key, &golden.data)).await?;
            log.line(format!(
                "database `{service}`: its server's data directory copied from the golden snapshot in {} ms",
                started.elapsed().as_millis()
            ));
        }
        let (host, _using) = self.database_host_in_use(env, service, &content).await?;
        let admin = host.admin.connect().await.map_err(fail(service))?;
        let password = self
            .secrets
            .reveal(env, &format!("database:{service}/password"), "derived")
            .await?;
        let mark = readiness(&admin, &content.name)
            .await
            .map_err(fail(service))?;
        let ready = match mark {
            Some(mark) if mark == ready_mark(env, service) => true,
            Some(mark) if mark.starts_with(READY) => {
                return Err(RuntimeError::new(format!(
                    "database `{service}`: the database name {} is already taken ({}); rename the environment or the service so that their names differ by more than `-` and `_`",
                    content.name,
                    mark.trim_start_matches("preview: ")
                )));
            }
            _ => false,
        };
        log.check_lease()?;
        faults::around("role", async {
            admin::ensure_role(&admin, &content.name, &password)
                .await
                .map_err(fail(service))
        })
        .await?;
        if ready {
            log.line(format!(
                "database `{service}`: {} kept with its data",
                content.name
            ));
        } else {
            let began = std::time::Instant::now();
            let made = self
                .make_data(env, service, &content, &host, &admin, &password, log)
                .await;
            if made.is_ok() {
                preview_metrics::metrics()
                    .database_content_made(&content.clone.policy, began.elapsed());
            }
            if let Err(error) = made {
                // Nothing half-made is left: the next attempt starts from scratch.
                let _ = admin::drop_database(&admin, &content.name).await;
                let _ = admin::drop_role(&admin, &content.name).await;
                return Err(error);
            }
        }
        self.serve_database(env, service, host.address(service).await?)?;
        self.record(env, resource)
    }

    #[allow(clippy::too_many_arguments)]
    async fn make_data(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        content: &DatabaseContent,
        host: &DatabaseHost,
        admin: &tokio_postgres::Client,
        password: &preview_secrets::Secret,
        log: &StepLog,
    ) -> Result<(), RuntimeError> {
        let name = &content.name;
        // A database left by a step that did not finish.
        admin::drop_database(admin, name)
            .await
            .map_err(fail(service))?;
        log.check_lease()?;
        match content.clone.policy.as_str() {
            "clone" | "masked" if content.physical() => {
                if self.take_golden_copy(host, admin, name, service).await? {
                    log.line(format!(
                        "database `{service}`: {name} is the golden snapshot's copy, handed to its role"
                    ));
                } else {
                    self.copy_physical(env, service, content, host, admin, log)
                        .await?;
                }
            }
            "clone" | "masked" => {
                // Held until the copy is made: a refresh must not replace the golden snapshot meanwhile.
                let held = host.golden.lock().await;
                let golden = self
                    .ensure_golden(env, service, content, host, admin, log, false)
                    .await?;
                log.check_lease()?;
                let started = std::time::Instant::now();
                let made = async {
                    let handed = self.hand_out(admin, &golden, name, service).await?;
                    if !handed {
                        faults::around("create", async {
                            admin::create_database(admin, name, name, Some(&golden.name))
                                .await
                                .map_err(fail(service))
                        })
                        .await?;
                    }
                    host.take_over(name, service).await?;
                    Ok::<bool, RuntimeError>(handed)
                }
                .await;
                drop(held);
                // Whether or not this one was made, the pool is filled again for the next.
                self.refill_warm_pool(host, &golden, content.clone.warm_pool());
                let handed = made?;
                log.line(format!(
                    "database `{service}`: {name} made from the golden snapshot {}{} in {} ms",
                    golden.name,
                    if handed {
                        ", handed out from its warm pool,"
                    } else {
                        ""
                    },
                    started.elapsed().as_millis()
                ));
            }
            policy => {
                faults::around("create", async {
                    admin::create_database(admin, name, name, None)
                        .await
                        .map_err(fail(service))
                })
                .await?;
                if policy == "seed"
                    && let Some(file) = &content.clone.file
                {
                    let sql = content
                        .seed_file(service, file)
                        .map_err(RuntimeError::new)?;
                    let login = Connection {
                        host: Endpoint::Tcp(host.login_host.clone()),
                        port: host.login_port,
                        user: name.clone(),
                        password: Some(password.clone()),
                        dbname: name.clone(),
                        ssl: host.admin.ssl.clone(),
                    };
                    log.check_lease()?;
                    faults::at("seed", faults::When::Before)?;
                    // As the environment's own role, statement by statement over its own connection: a seed file
                    // from a pull request has no more rights than its apps, and no program of this machine runs it.
                    preview_database::postgres::seed::run_seed(&login, &sql, file)
                        .await
                    .map_err(|e| {
                        RuntimeError::new(format!("database `{service}`: seeding from {file} failed, nothing was kept:\n{e}"))
                    })?;
                    faults::at("seed", faults::When::After)?;
                    log.line(format!("database `{service}`: {name} seeded from {file}"));
                } else {
                    log.line(format!("database `{service}`: {name} made empty"));
                }
            }
        }
        faults::around("mark", async {
            admin
                .batch_execute(&format!(
                    "COMMENT ON DATABASE {} IS {}",
                    preview_database::postgres::connection::quote_identifier(name),
                    preview_database::postgres::connection::quote_literal(&ready_mark(
                        env, service
                    ))
                ))
                .await
                .map_err(|e| {
                    fail(service)(preview_database::DatabaseError::postgres(
                        "cannot mark the database ready",
                        &e,
                    ))
                })
        })
        .await
    }

    /// The server of a physical copy's source environment, ready to be read and kept from being removed while
    /// the returned guard is held; never made here (a source never deployed, or deleted, has none).
    pub(crate) async fn physical_source(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        content: &DatabaseContent,
        from: &str,
        source: &str,
    ) -> Result<(Arc<RunningServer>, tokio::sync::OwnedRwLockReadGuard<()>), RuntimeError> {
        let missing = || {
            RuntimeError::new(format!(
                "database `{service}`: environment `{from}` has no database `{service}` to copy; deploy `{from}` first"
            ))
        };
        let key = server_key(&env.project, from, service, content.version, true);
        if !self.server_exists(&key) {
            return Err(missing());
        }
        let server = self.ensure_server(&key, content.version.major()).await?;
        let in_use = Arc::clone(&server.in_use).read_owned().await;
        let admin = server
            .server
            .admin()
            .connect()
            .await
            .map_err(fail(service))?;
        if !is_ready(&admin, source).await.map_err(fail(service))? {
            return Err(missing());
        }
        Ok((server, in_use))
    }

    /// A physical copy: the source environment's own server, read directly into this environment's.
    async fn copy_physical(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        content: &DatabaseContent,
        host: &DatabaseHost,
        admin_client: &tokio_postgres::Client,
        log: &StepLog,
    ) -> Result<(), RuntimeError> {
        let (from, source) = content.copied_from(service)?;
        let masking = self.masking_for(env, service, content).await?;
        let (source_server, _source_in_use) = self
            .physical_source(env, service, content, from, source)
            .await?;
        let name = &content.name;
        faults::around("create", async {
            admin::create_database(
                admin_client,
                name,
                preview_database::postgres::server::ADMIN,
                None,
            )
            .await
            .map_err(fail(service))
        })
        .await?;
        let copied = copy_logged(
            service,
            host,
            &source_server.server.admin().to_database(source),
            name,
            masking.as_ref(),
            content.masking.as_ref().is_some_and(|m| m.strict),
            log,
        )
        .await;
        let report = copied.map_err(fail(service))?;
        host.hand_over_copy(admin_client, name, service).await?;
        log.line(format!(
            "database `{service}`: {name} copied from `{from}` ({} tables, {} rows)",
            report.tables, report.rows
        ));
        Ok(())
    }

    /// The database's service port in the environment's network, forwarding to its server.
    pub(crate) fn serve_database(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        target: SocketAddr,
    ) -> Result<(), RuntimeError> {
        let block = self.assign_block(env, &[service.to_owned()])?;
        let Some(port) = block.service_port(service) else {
            return Ok(());
        };
        let bound = self.with_state(env, |s| {
            s.service_ports
                .get(service)
                .map(|p| p.set_target(Some(target)))
                .is_some()
        });
        if bound {
            return Ok(());
        }
        let permits = self.connection_permits(env);
        let listener = ServicePort::bind_reaching(port, self.network_of(env), None, permits)
            .map_err(|e| {
                RuntimeError::new(format!(
                    "cannot listen on 127.0.0.1:{port} for `{service}` of `{}`: {e}",
                    env.environment
                ))
            })?;
        listener.set_target(Some(target));
        self.with_state(env, |s| {
            s.service_ports.insert(service.to_owned(), listener);
        });
        Ok(())
    }

    pub(crate) async fn remove_database(
        &self,
        env: &EnvironmentAddress,
        id: &str,
        log: &StepLog,
    ) -> Result<(), RuntimeError> {
        let service = id.trim_start_matches("database/");
        let dir = self.dir_of(env);
        let recorded = match dir.read(id).map_err(RuntimeError::new)? {
            Some(record) => Some(record.content),
            None => dir.read_intent(id).map_err(RuntimeError::new)?,
        };
        let Some(recorded) = recorded else {
            return Ok(());
        };
        let content = parse(id, &recorded)?;
        match content.engine {
            Engine::Redis => return self.remove_redis(env, id, log).await,
            Engine::Mysql => return self.remove_mysql(env, id, &content, log).await,
            Engine::Postgres => {}
        }
        log.check_lease()?;
        self.with_state(env, |s| s.service_ports.remove(service));
        let key = content.server_key(env, service);
        if content.physical() {
            // Nobody reads it (a copy from it, as a source) while it is removed.
            let running = self.running_server(&key).await;
            let exclusive = match &running {
                Some(running) => Some(Arc::clone(&running.in_use).write_owned().await),
                None => None,
            };
            faults::around("drop", self.remove_server(&key)).await?;
            // Let go first: a golden snapshot being built of this server's database, whose lock the next call
            // waits for, waits for it.
            drop(exclusive);
            self.remove_unused_physical_goldens(&env.project, service)
                .await?;
        } else if !content.external() && !self.server_exists(&key) {
            // Its server was never made (the step failed before, e.g. the version is not installed): there is
            // nothing to drop, and nothing to start for it.
        } else {
            let host = self.database_host(env, service, &content).await?;
            // No environment of the server makes or refreshes a database while its last one is removed with it.
            let _exclusive = host.in_use.clone().write_owned().await;
            let admin = host.admin.connect().await.map_err(fail(service))?;
            faults::around("drop", async {
                admin::drop_database(&admin, &content.name)
                    .await
                    .map_err(fail(service))
            })
            .await?;
            faults::around("drop-role", async {
                admin::drop_role(&admin, &content.name)
                    .await
                    .map_err(fail(service))
            })
            .await?;
            // A golden snapshot left half-made (its step was abandoned or its daemon killed): nobody is making
            // one while the golden lock is held.
            {
                let _golden = host.golden.lock().await;
                self.drop_unused_goldens(&admin, &env.project, service, log)
                    .await?;
                for making in admin::databases_named(&admin, "preview_making_")
                    .await
                    .map_err(fail(service))?
                {
                    admin::drop_database(&admin, &making)
                        .await
                        .map_err(fail(service))?;
                    log.line(format!(
                        "database `{service}`: the half-made {making} dropped"
                    ));
                }
            }
            // The project's server goes with its last environment's database (its golden snapshots are copies
            // of environments that are gone, or will be made again).
            if !content.external()
                && admin::environment_databases_and_roles(&admin)
                    .await
                    .map_err(fail(service))?
                    == 0
            {
                drop(admin);
                self.remove_server(&key).await?;
                log.line(format!(
                    "database `{service}`: the project's PostgreSQL server was its last environment's; removed"
                ));
            }
        }
        log.line(format!("database `{service}`: {} dropped", content.name));
        self.forget_database(env, id)
    }

    /// The environment's database `service` as recorded, or why there is none.
    pub(crate) fn recorded_database(
        &self,
        env: &EnvironmentAddress,
        service: &str,
    ) -> Result<DatabaseContent, RuntimeError> {
        let id = format!("database/{service}");
        let record = self
            .dir_of(env)
            .read(&id)
            .map_err(RuntimeError::new)?
            .ok_or_else(|| {
                RuntimeError::new(format!(
                    "environment `{}` has no database `{service}`",
                    env.environment
                ))
            })?;
        parse(&id, &record.content).map_err(RuntimeError::new)
    }

    /// Builds the golden snapshot the environment's database was copied from again, from its source's data as it
    /// is now; environments already made keep theirs. Returns what was done, for people.
    pub(crate) async fn refresh_snapshot(
        &self,
        env: &EnvironmentAddress,
        service: &str,
    ) -> Result<Vec<String>, RuntimeError> {
        let content = self.recorded_database(env, service)?;
        if !matches!(content.clone.policy.as_str(), "clone" | "masked") {
            return Err(RuntimeError::new(format!(
                "database `{service}` of `{}` is not made from a golden snapshot (its policy is `{}`); nothing to refresh",
                env.environment, content.clone.policy,
            )));
        }
        match content.engine {
            Engine::Redis => return self.refresh_redis_snapshot(env, service, &content).await,
            Engine::Mysql => return self.refresh_mysql_snapshot(env, service, &content).await,
            Engine::Postgres => {}
        }
        if content.physical() {
            let log = StepLog::default();
            self.ensure_physical_golden(env, service, &content, &log, true)
                .await?;
            return Ok(log.lines());
        }
        let (host, _using) = self.database_host_in_use(env, service, &content).await?;
        let admin = host.admin.connect().await.map_err(fail(service))?;
        let log = StepLog::default();
        let held = host.golden.lock().await;
        let golden = self
            .ensure_golden(env, service, &content, &host, &admin, &log, true)
            .await?;
        drop(held);
        self.refill_warm_pool(&host, &golden, content.clone.warm_pool());
        Ok(log.lines())
    }

    /// Makes the environment's database again by its clone policy (from the current golden snapshot), for `preview
    /// db reset`: its data is dropped — its apps' connections with it — and made as for a new environment.
    pub(crate) async fn reset_database(
        &self,
        env: &EnvironmentAddress,
        service: &str,
    ) -> Result<Vec<String>, RuntimeError> {
        let content = self.recorded_database(env, service)?;
        let log = StepLog::default();
        if content.engine == Engine::Redis {
            self.reset_redis(env, service, &content, &log).await?;
        } else if content.engine == Engine::Mysql {
            self.reset_mysql(env, service, &content, &log).await?;
        } else {
            let (host, using) = self.database_host_in_use(env, service, &content).await?;
            let admin = host.admin.connect().await.map_err(fail(service))?;
            let password = self
                .secrets
                .reveal(env, &format!("database:{service}/password"), "derived")
                .await?;
            admin::ensure_role(&admin, &content.name, &password)
                .await
                .map_err(fail(service))?;
            self.make_data(env, service, &content, &host, &admin, &password, &log)
                .await
                .map_err(|e| {
                    RuntimeError::new(format!(
                        "{}; the environment has no database `{service}` now: run `preview db reset` again",
                        e.message
                    ))
                })?;
            drop(using);
        }
        // A database seeded by a job is seeded again by it.
        if let Some(job) = content
            .clone
            .job
            .as_deref()
            .filter(|_| content.clone.policy == "seed")
        {
            let record = self
                .dir_of(env)
                .read(&format!("job/{job}"))
                .map_err(RuntimeError::new)?
                .ok_or_else(|| {
                    RuntimeError::new(format!(
                        "database `{service}` is seeded by job `{job}`, which `{}` does not have",
                        env.environment
                    ))
                })?;
            self.run_job(env, &record.resource(), &log)
                .await
                .map_err(|e| {
                    RuntimeError::new(format!(
                        "database `{service}` was made again, but its seed job `{job}` failed: {}",
                        e.message
                    ))
                })?;
        }
        Ok(log.lines())
    }

    /// A login to the environment's database on its server's host address, for a person on this machine.
    pub(crate) async fn login(
        &self,
        env: &EnvironmentAddress,
        service: &str,
    ) -> Result<preview_deploy::DatabaseLogin, RuntimeError> {
        let content = self.recorded_database(env, service)?;
        match content.engine {
            Engine::Redis => return self.redis_login(env, service, &content).await,
            Engine::Mysql => return self.mysql_person_login(env, service, &content).await,
            Engine::Postgres => {}
        }
        let host = self.database_host(env, service, &content).await?;
        let password = self
            .secrets
            .reveal(env, &format!("database:{service}/password"), "derived")
            .await?;
        Ok(preview_deploy::DatabaseLogin {
            host: host.login_host,
            port: host.login_port,
            user: content.name.clone(),
            database: content.name,
            password,
        })
    }

    /// Starts the servers of the environment's databases again and serves their ports (when the daemon starts).
    pub(crate) async fn restore_database(
        &self,
        env: &EnvironmentAddress,
        id: &str,
        content: &serde_json::Value,
    ) -> Result<(), RuntimeError> {
        let service = id.trim_start_matches("database/");
        let content = parse(id, content)?;
        match content.engine {
            Engine::Redis => return self.restore_redis(env, service, &content).await,
            Engine::Mysql => return self.restore_mysql(env, service, &content).await,
            Engine::Postgres => {}
        }
        let host = self.database_host(env, service, &content).await?;
        self.serve_database(env, service, host.address(service).await?)
    }
}

/// A copy of `source` into the database `target` of `host`, written by the golden owner's own login where `preview`
/// runs the server, its lines in the step's log.
pub(crate) async fn copy_logged(
    service: &str,
    host: &DatabaseHost,
    source: &Connection,
    target: &str,
    masking: Option<&(Masker, Rules, SecretVersion)>,
    strict: bool,
    log: &StepLog,
) -> Result<preview_database::postgres::copy::CopyReport, preview_database::DatabaseError> {
    let writer = host
        .server
        .as_ref()
        .map(|server| server.golden_writer(target));
    copy_database_as(
        &host.binaries,
        source,
        &host.admin.to_database(target),
        writer.as_ref(),
        masking.map(|(masker, rules, _)| Masking {
            masker,
            rules,
            strict,
        }),
        &|line| log.line(format!("database `{service}`: {line}")),
    )
    .await
}
