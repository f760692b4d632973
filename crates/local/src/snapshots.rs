//! Golden snapshots and their warm pools. A copy of another environment's database (`clone`, or `masked` once) is
//! kept on the server as a golden snapshot nobody connects to, per source, policy, rules and key, and described in
//! its comment (source, when, tables, rows, key version). New databases are made from it with `CREATE DATABASE …
//! TEMPLATE`; a few made ahead of time — its warm pool — are handed out by a rename, so that a new environment's
//! database is ready at once whatever its size. A golden snapshot older than the spec's `refresh` is built again
//! before it is used; building it again drops its warm pool and the snapshots of the same source it replaces,
//! never an environment's database.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use preview_database::masking::Masker;
use preview_database::masking_plan::Rules;
use preview_database::postgres::admin;
use preview_database::postgres::connection::{quote_identifier, quote_literal};
use preview_deploy::{DatabaseSnapshot, EnvironmentAddress, RuntimeError, StepLog};
use serde::{Deserialize, Serialize};

use crate::databases::{
    DatabaseContent, DatabaseHost, LocalContent, READY_FOR, SecretVersion, copy_logged, fail,
    is_ready, readiness,
};
use crate::faults::{self, When};
use crate::runtime::LocalRuntime;

/// How a golden snapshot's comment begins; the rest is its [`GoldenMark`].
const GOLDEN: &str = "preview: golden ";

/// What a golden snapshot's comment says of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct GoldenMark {
    pub project: String,
    pub service: String,
    pub from: String,
    pub policy: String,
    pub made_at: u64,
    pub tables: u64,
    pub rows: u64,
    pub masking_key: Option<String>,
}

impl GoldenMark {
    /// The description of a golden snapshot of `content`'s source just made, as `report` says.
    pub(crate) fn now(
        env: &EnvironmentAddress,
        service: &str,
        content: &DatabaseContent,
        report: &preview_database::postgres::copy::CopyReport,
        masking: Option<&(Masker, Rules, SecretVersion)>,
    ) -> GoldenMark {
        GoldenMark {
            project: env.project.clone(),
            service: service.to_owned(),
            from: content.clone.from.clone().unwrap_or_default(),
            policy: content.clone.policy.clone(),
            made_at: now(),
            tables: report.tables as u64,
            rows: report.rows,
            masking_key: masking.map(|(_, _, key)| format!("{}@{}", key.name, key.version)),
        }
    }
}

/// A golden snapshot on its server.
pub(crate) struct Golden {
    pub name: String,
    pub id: String,
}

impl Golden {
    /// The golden snapshot of `content`'s source, policy, rules and key; its name depends on nothing else.
    pub(crate) fn of(content: &DatabaseContent) -> Golden {
        let identity = serde_json::json!({
            // A data directory (a physical snapshot) is only good for its own major version.
            "version": content.version,
            "source": content.clone.source,
            "policy": content.clone.policy,
            "tables": content.masking.as_ref().filter(|_| content.clone.policy == "masked").map(|m| &m.tables),
            "key": content.masking.as_ref().filter(|_| content.clone.policy == "masked").map(|m| &m.key),
        });
        let digest = ring::digest::digest(&ring::digest::SHA256, identity.to_string().as_bytes());
        let id: String = digest.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Golden {
            name: format!("preview_golden_{id}"),
            id,
        }
    }

    fn making(&self) -> String {
        format!("preview_making_{}", self.id)
    }

    /// The prefix of its warm pool's databases.
    fn warm_prefix(&self) -> String {
        format!("preview_warm_{}_", self.id)
    }

    /// The prefix of a warm pool's database while it is made, before it is whole and joins the pool by a rename.
    fn filling_prefix(&self) -> String {
        format!("preview_filling_{}_", self.id)
    }
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

async fn golden_mark(
    client: &tokio_postgres::Client,
    name: &str,
) -> Result<Option<GoldenMark>, preview_database::DatabaseError> {
    Ok(readiness(client, name).await?.and_then(|text| {
        text.strip_prefix(GOLDEN)
            .and_then(|json| serde_json::from_str(json).ok())
    }))
}

/// Whether a golden snapshot there is, described by `mark`, is to be built again: `None` when it is kept, else
/// whether it may still be used should building it again fail (it is only older than `refresh`, not undescribed).
pub(crate) fn stale(
    content: &DatabaseContent,
    mark: Option<&GoldenMark>,
    service: &str,
    from: &str,
    log: &StepLog,
) -> Option<bool> {
    match (content.clone.refresh_seconds, mark) {
        (_, None) => {
            log.line(format!(
                "database `{service}`: the golden snapshot of `{from}` does not say when it was made; building it again"
            ));
            Some(false)
        }
        (Some(refresh), Some(mark)) if now().saturating_sub(mark.made_at) > refresh => {
            log.line(format!(
                "database `{service}`: the golden snapshot of `{from}` is {} s old, older than `refresh` ({refresh} s); building it again",
                now().saturating_sub(mark.made_at)
            ));
            Some(true)
        }
        _ => None,
    }
}

/// A golden snapshot built again, or — when that failed and `fallback` allows — the older one, with a warning.
pub(crate) fn or_older(
    built: Result<(), RuntimeError>,
    fallback: bool,
    service: &str,
    from: &str,
    log: &StepLog,
) -> Result<(), RuntimeError> {
    match built {
        Err(error) if fallback => {
            log.line(format!(
                "database `{service}`: warning: the golden snapshot of `{from}` could not be built again, so the older one is used: {}",
                error.message
            ));
            Ok(())
        }
        built => built,
    }
}

/// The golden snapshots on a server that say what they are.
async fn described_goldens(
    admin_client: &tokio_postgres::Client,
    service: &str,
) -> Result<Vec<(Golden, GoldenMark)>, RuntimeError> {
    let mut described = Vec::new();
    for name in admin::databases_named(admin_client, "preview_golden_")
        .await
        .map_err(fail(service))?
    {
        if let Some(mark) = golden_mark(admin_client, &name)
            .await
            .map_err(fail(service))?
        {
            let id = name.trim_start_matches("preview_golden_").to_owned();
            described.push((Golden { name, id }, mark));
        }
    }
    Ok(described)
}

async fn execute(
    client: &tokio_postgres::Client,
    what: &str,
    statement: &str,
) -> Result<(), preview_database::DatabaseError> {
    client
        .batch_execute(statement)
        .await
        .map_err(|e| preview_database::DatabaseError::postgres(what, &e))
}

impl LocalRuntime {
    /// The golden snapshot a copy is made from: made once per source, rules and key, and again when `rebuild`
    /// says so or it is older than the spec's `refresh`. The caller holds the host's golden lock.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn ensure_golden(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        content: &DatabaseContent,
        host: &DatabaseHost,
        admin_client: &tokio_postgres::Client,
        log: &StepLog,
        rebuild: bool,
    ) -> Result<Golden, RuntimeError> {
        let (from, _) = content.copied_from(service)?;
        let golden = Golden::of(content);
        let exists = admin::database_exists(admin_client, &golden.name)
            .await
            .map_err(fail(service))?;
        let mut fallback = false;
        if !rebuild && exists {
            let mark = golden_mark(admin_client, &golden.name)
                .await
                .map_err(fail(service))?;
            match stale(content, mark.as_ref(), service, from, log) {
                Some(may_fall_back) => fallback = may_fall_back,
                None => return Ok(golden),
            }
        }
        let began = std::time::Instant::now();
        let built = self
            .build_golden(env, service, content, host, admin_client, log, &golden)
            .await;
        preview_metrics::metrics().snapshot_built(&built, began);
        or_older(built, fallback, service, from, log).map(|()| golden)
    }

    /// Builds the golden snapshot of `content`'s source again: a copy into `preview_making_<id>`, described and
    /// closed to connections before it is renamed over the old one (so a snapshot is always whole and
    /// described). The caller holds the host's golden lock.
    #[allow(clippy::too_many_arguments)]
    async fn build_golden(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        content: &DatabaseContent,
        host: &DatabaseHost,
        admin_client: &tokio_postgres::Client,
        log: &StepLog,
        golden: &Golden,
    ) -> Result<(), RuntimeError> {
        let (from, source) = content.copied_from(service)?;
        if !is_ready(admin_client, source)
            .await
            .map_err(fail(service))?
        {
            return Err(RuntimeError::new(format!(
                "database `{service}`: environment `{from}` has no database `{service}` to copy ({source} does not exist on the server); deploy `{from}` first"
            )));
        }
        let masked = content.clone.policy == "masked";
        let masking = self.masking_for(env, service, content).await?;
        // An external server has no owner of golden snapshots' objects until the first one is made.
        admin::ensure_golden_owner(admin_client, false)
            .await
            .map_err(fail(service))?;
        let making = golden.making();
        admin::drop_database(admin_client, &making)
            .await
            .map_err(fail(service))?;
        log.check_lease()?;
        faults::at("golden", When::Before)?;
        admin::create_database(admin_client, &making, &host.admin.user, None)
            .await
            .map_err(fail(service))?;
        let started = std::time::Instant::now();
        let copied = copy_logged(
            service,
            host,
            &host.admin.to_database(source),
            &making,
            masking.as_ref(),
            content.masking.as_ref().is_some_and(|m| m.strict),
            log,
        )
        .await;
        let report = match copied {
            Ok(report) => report,
            Err(error) => {
                let _ = admin::drop_database(admin_client, &making).await;
                return Err(fail(service)(error));
            }
        };
        let mark = GoldenMark::now(env, service, content, &report, masking.as_ref());
        // Described and closed (to its writer too) before it takes the golden snapshot's name: whatever has that
        // name is whole.
        admin::allow_connections(admin_client, &making, false)
            .await
            .map_err(fail(service))?;
        execute(
            admin_client,
            "cannot close the golden snapshot to its writer",
            &format!(
                "REVOKE ALL ON DATABASE {} FROM {}",
                quote_identifier(&making),
                quote_identifier(admin::GOLDEN_OWNER)
            ),
        )
        .await
        .map_err(fail(service))?;
        execute(
            admin_client,
            "cannot describe the golden snapshot",
            &format!(
                "COMMENT ON DATABASE {} IS {}",
                quote_identifier(&making),
                quote_literal(&format!(
                    "{GOLDEN}{}",
                    serde_json::to_string(&mark).unwrap_or_default()
                ))
            ),
        )
        .await
        .map_err(fail(service))?;
        // Environments already made from the one it replaces, or from its warm pool, are copies: they keep their
        // data. The pool's databases are of the old data, and go with it.
        self.drop_golden(admin_client, golden, service).await?;
        admin::rename_database(admin_client, &making, &golden.name)
            .await
            .map_err(fail(service))?;
        faults::at("golden", When::After)?;
        self.drop_replaced_goldens(admin_client, golden, &mark, service, log)
            .await?;
        log.line(format!(
            "database `{service}`: golden snapshot {} of `{from}` made{} in {} ms ({} tables, {} rows)",
            golden.name,
            if masked { ", masked," } else { "" },
            started.elapsed().as_millis(),
            report.tables,
            report.rows
        ));
        Ok(())
    }

    /// Golden snapshots of the same project, service, source and policy under another name (other rules or
    /// another key): nothing will be made from them again.
    async fn drop_replaced_goldens(
        &self,
        admin_client: &tokio_postgres::Client,
        golden: &Golden,
        mark: &GoldenMark,
        service: &str,
        log: &StepLog,
    ) -> Result<(), RuntimeError> {
        let same_source = |theirs: &GoldenMark| {
            (
                &theirs.project,
                &theirs.service,
                &theirs.from,
                &theirs.policy,
            ) == (&mark.project, &mark.service, &mark.from, &mark.policy)
        };
        for (other, theirs) in described_goldens(admin_client, service).await? {
            if other.name != golden.name && same_source(&theirs) {
                self.drop_golden(admin_client, &other, service).await?;
                log.line(format!(
                    "database `{service}`: the golden snapshot {}, made under other rules or another key, dropped",
                    other.name
                ));
            }
        }
        Ok(())
    }

    /// Drops a golden snapshot and its warm pool.
    async fn drop_golden(
        &self,
        admin_client: &tokio_postgres::Client,
        golden: &Golden,
        service: &str,
    ) -> Result<(), RuntimeError> {
        self.drop_warm_pool(admin_client, golden, service).await?;
        admin::drop_database(admin_client, &golden.name)
            .await
            .map_err(fail(service))
    }

    async fn drop_warm_pool(
        &self,
        admin_client: &tokio_postgres::Client,
        golden: &Golden,
        service: &str,
    ) -> Result<(), RuntimeError> {
        for prefix in [golden.warm_prefix(), golden.filling_prefix()] {
            for warm in admin::databases_named(admin_client, &prefix)
                .await
                .map_err(fail(service))?
            {
                admin::drop_database(admin_client, &warm)
                    .await
                    .map_err(fail(service))?;
            }
        }
        Ok(())
    }

    /// Drops the project's golden snapshots of `service` on this server, with their pools, once no environment's
    /// database of it is left there (an external server is not removed with its last database). The caller holds
    /// the host's golden lock.
    pub(crate) async fn drop_unused_goldens(
        &self,
        admin_client: &tokio_postgres::Client,
        project: &str,
        service: &str,
        log: &StepLog,
    ) -> Result<(), RuntimeError> {
        let left: i64 = admin_client
            .query_one(
                "SELECT count(*) FROM pg_database, LATERAL (SELECT shobj_description(oid, 'pg_database') AS mark) m
                 WHERE starts_with(m.mark, $1) AND right(m.mark, length($2)) = $2",
                &[&format!("{READY_FOR}{project}/"), &format!("/{service}")],
            )
            .await
            .map(|row| row.get(0))
            .map_err(|e| fail(service)(preview_database::DatabaseError::postgres("cannot count the environments' databases", &e)))?;
        if left > 0 {
            return Ok(());
        }
        for (golden, mark) in described_goldens(admin_client, service).await? {
            if mark.project == project && mark.service == service {
                self.drop_golden(admin_client, &golden, service).await?;
                log.line(format!(
                    "database `{service}`: the golden snapshot {} dropped with the project's last database of it",
                    golden.name
                ));
            }
        }
        Ok(())
    }

    /// A whole database of the golden snapshot's warm pool, renamed to `name` and handed to its role; false when
    /// the pool has none. A pool database that cannot be handed out is dropped and the next one tried. The caller
    /// holds the host's golden lock.
    pub(crate) async fn hand_out(
        &self,
        admin_client: &tokio_postgres::Client,
        golden: &Golden,
        name: &str,
        service: &str,
    ) -> Result<bool, RuntimeError> {
        // Whole: the administrator's, closed to connections, granted to no one else.
        let pool = admin_client
            .query(
                "SELECT datname FROM pg_database d
                 WHERE starts_with(datname, $1) AND NOT datallowconn AND datacl IS NOT NULL
                   AND datdba = (SELECT oid FROM pg_roles WHERE rolname = current_user)
                   AND NOT EXISTS (SELECT 1 FROM aclexplode(d.datacl) a WHERE a.grantee <> d.datdba)
                 ORDER BY datname",
                &[&golden.warm_prefix()],
            )
            .await
            .map_err(|e| {
                fail(service)(preview_database::DatabaseError::postgres(
                    "cannot look at the warm pool",
                    &e,
                ))
            })?;
        for warm in pool.iter().map(|row| row.get::<_, String>(0)) {
            faults::at("handout", When::Before)?;
            let handed = async {
                admin::rename_database(admin_client, &warm, name).await?;
                execute(
                    admin_client,
                    "cannot hand the database over",
                    &format!(
                        "ALTER DATABASE {0} OWNER TO {0}; REVOKE ALL ON DATABASE {0} FROM PUBLIC; ALTER DATABASE {0} WITH ALLOW_CONNECTIONS true",
                        quote_identifier(name)
                    ),
                )
                .await
            }
            .await;
            match handed {
                Ok(()) => {
                    faults::at("handout", When::After)?;
                    return Ok(true);
                }
                Err(error) => {
                    tracing::warn!(
                        "database `{service}`: {warm} of the warm pool could not be handed out, so it is dropped: {error}"
                    );
                    let _ = admin::drop_database(admin_client, &warm).await;
                    let _ = admin::drop_database(admin_client, name).await;
                }
            }
        }
        Ok(false)
    }

    /// Fills the golden snapshot's warm pool up to `size` (and no further) in the background, one database at a
    /// time under the host's golden lock, so that handouts and clones go between them. Each is made under a
    /// name of its own, closed, and only then renamed into the pool.
    pub(crate) fn refill_warm_pool(&self, host: &DatabaseHost, golden: &Golden, size: u32) {
        let admin_login = host.admin.clone();
        let golden_lock = Arc::clone(&host.golden);
        let in_use = Arc::clone(&host.in_use);
        let golden_name = golden.name.clone();
        let (warm_prefix, filling_prefix) = (golden.warm_prefix(), golden.filling_prefix());
        tokio::spawn(async move {
            let _using = in_use.read_owned().await;
            let Ok(client) = admin_login.connect().await else {
                return;
            };
            loop {
                let _golden = golden_lock.lock().await;
                let filled = async {
                    // The golden snapshot may be gone meanwhile (its server removed with the project's last
                    // database, or dropped with its last environment's).
                    if !admin::database_exists(&client, &golden_name).await? {
                        return Ok(true);
                    }
                    for cut_short in admin::databases_named(&client, &filling_prefix).await? {
                        admin::drop_database(&client, &cut_short).await?;
                    }
                    let pool = admin::databases_named(&client, &warm_prefix).await?;
                    for extra in pool.iter().skip(size as usize) {
                        admin::drop_database(&client, extra).await?;
                    }
                    if pool.len() >= size as usize {
                        return Ok(true);
                    }
                    let suffix = format!("{:08x}", u32::from_be_bytes(rand_bytes()));
                    let filling = format!("{filling_prefix}{suffix}");
                    admin::create_database(
                        &client,
                        &filling,
                        &admin_login.user,
                        Some(&golden_name),
                    )
                    .await?;
                    admin::allow_connections(&client, &filling, false).await?;
                    if let Err(e) = faults::at("warm", When::Before) {
                        return Err(preview_database::DatabaseError::Invalid(e.message));
                    }
                    admin::rename_database(&client, &filling, &format!("{warm_prefix}{suffix}"))
                        .await?;
                    Ok::<bool, preview_database::DatabaseError>(false)
                }
                .await;
                match filled {
                    Ok(true) => return,
                    Ok(false) => continue,
                    Err(error) => {
                        tracing::warn!(
                            "the warm pool of {golden_name} could not be filled: {error}"
                        );
                        return;
                    }
                }
            }
        });
    }

    /// The masking of a `masked` copy: its transforms keyed by the project's secret, its rules, and the key's
    /// name and version (which name the golden snapshot, never the key).
    pub(crate) async fn masking_for(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        content: &DatabaseContent,
    ) -> Result<Option<(Masker, Rules, SecretVersion)>, RuntimeError> {
        let Some((masking, key)) = content.masking_of(service)? else {
            return Ok(None);
        };
        let secret = self.secrets.reveal(env, &key.name, &key.version).await?;
        Ok(Some((
            Masker::new(secret.expose()),
            masking.tables.clone(),
            key.clone(),
        )))
    }

    /// What a masked copy of the database `resource` would report, checked against its source's catalog as it is
    /// now (for `preview plan`). Only a server that runs is asked: a plan starts nothing.
    pub(crate) async fn masking_warnings(
        &self,
        env: &EnvironmentAddress,
        resource: &preview_plan::Resource,
    ) -> Vec<String> {
        let service = resource.id.trim_start_matches("database/");
        let Ok(content) = crate::databases::parse(&resource.id, &resource.content) else {
            return Vec::new();
        };
        let (Some(masking), Some(from), Some(source)) = (
            content
                .masking
                .as_ref()
                .filter(|_| content.clone.policy == "masked"),
            &content.clone.from,
            &content.clone.source,
        ) else {
            return Vec::new();
        };
        let admin = if content.external() {
            match self.database_host(env, service, &content).await {
                Ok(host) => host.admin,
                Err(e) => return vec![format!("database `{service}`: {}", e.message)],
            }
        } else {
            let key = crate::database_servers::server_key(
                &env.project,
                from,
                service,
                content.version,
                content.physical(),
            );
            match self.running_server(&key).await {
                Some(running) => running.server.admin(),
                None => {
                    return vec![format!(
                        "database `{service}`: the masking rules were not checked: `{from}` has no database server running"
                    )];
                }
            }
        };
        let checked = async {
            let client = admin.to_database(source).connect_pinned().await?;
            let catalog = preview_database::postgres::catalog::read(&client).await?;
            preview_database::masking_plan::plan_masking(&catalog, &masking.tables, masking.strict)
        };
        match checked.await {
            Ok(plan) => plan
                .warnings
                .into_iter()
                .map(|warning| format!("database `{service}`: {warning}"))
                .collect(),
            Err(e) => vec![format!(
                "database `{service}`: a masked copy of `{from}` would fail: {e}"
            )],
        }
    }

    /// The golden snapshot the environment's database is made from, as its server describes it.
    pub(crate) async fn snapshot_of(
        &self,
        env: &EnvironmentAddress,
        service: &str,
    ) -> Result<Option<DatabaseSnapshot>, RuntimeError> {
        let content = self.recorded_database(env, service)?;
        if !matches!(content.clone.policy.as_str(), "clone" | "masked") {
            return Ok(None);
        }
        match content.engine {
            crate::databases::Engine::Redis => {
                return Ok(self.redis_snapshot_of(env, service, &content));
            }
            crate::databases::Engine::Mysql => {
                return self.mysql_snapshot_of(env, service, &content).await;
            }
            crate::databases::Engine::Postgres => {}
        }
        if content.physical() {
            return Ok(self.physical_snapshot_of(env, service, &content));
        }
        // Read where it runs: a listing starts no server (one being removed must stay removed).
        let host = if content.external() {
            self.database_host(env, service, &content).await?
        } else {
            match self.running_server(&content.server_key(env, service)).await {
                Some(running) => DatabaseHost::of(&running),
                None => return Ok(None),
            }
        };
        let client = host.admin.connect().await.map_err(fail(service))?;
        let golden = Golden::of(&content);
        let Some(mark) = golden_mark(&client, &golden.name)
            .await
            .map_err(fail(service))?
        else {
            return Ok(None);
        };
        let size: i64 = client
            .query_one("SELECT pg_database_size($1::text)", &[&golden.name])
            .await
            .map(|row| row.get(0))
            .unwrap_or_default();
        let warm = admin::databases_named(&client, &golden.warm_prefix())
            .await
            .map_err(fail(service))?
            .len();
        Ok(Some(DatabaseSnapshot {
            name: golden.name,
            from: mark.from,
            policy: mark.policy,
            made_at: mark.made_at,
            size_bytes: u64::try_from(size).unwrap_or_default(),
            tables: mark.tables,
            rows: mark.rows,
            masking_key: mark.masking_key,
            warm: u32::try_from(warm).unwrap_or(u32::MAX),
            warm_pool: content.clone.warm_pool(),
            refresh_seconds: content.clone.refresh_seconds,
        }))
    }
}

fn rand_bytes() -> [u8; 4] {
    let mut bytes = [0u8; 4];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    bytes
}
