//! The store: opening and migrating it, meta values, projects, environments and their recorded state. Deployments
//! and leases are in `deployments.rs`, variables and secrets in `secrets.rs`; every SQL statement is written once,
//! over a [`Driver`].

use preview_plan::Resource;

use crate::driver::{Driver, DriverError, Statement};
use crate::records::*;
use crate::rows::*;
use crate::schema::MIGRATIONS;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another deployment holds the environment; `stuck` when it could not finish and waits for a retry.
    #[error("environment `{environment}` is busy: deployment {deployment} holds it")]
    Busy {
        environment: String,
        deployment: String,
        stuck: bool,
    },
    /// A deployment committed since the plan was made: plan again.
    #[error("environment `{environment}` changed since its plan was made")]
    Stale { environment: String },
    /// The environment runs on another daemon's machine.
    #[error(
        "environment `{environment}` runs on the machine of daemon `{owner}`; only that daemon can change it — send the request to it"
    )]
    Owned { environment: String, owner: String },
    /// The writer's lease was taken over, or expired: it may no longer act for the deployment.
    #[error(
        "deployment {deployment} is no longer held by this daemon (its lease was taken over or expired)"
    )]
    Fenced { deployment: String },
    /// A secret was sealed with a master key that is no longer the store's: another daemon rotated it.
    #[error("the master key was rotated meanwhile (the store's key is now `{key_id}`)")]
    KeyRotated { key_id: String },
    /// A key rotation read the secrets before one was written: it must read them again.
    #[error("a secret was written while the key rotation read them")]
    SecretsChanged,
    #[error("store: {0}")]
    Database(String),
    /// A stored value could not be read back.
    #[error("store holds an unreadable value: {0}")]
    Corrupt(String),
}

impl From<DriverError> for StoreError {
    fn from(error: DriverError) -> Self {
        StoreError::Database(error.to_string())
    }
}

pub(crate) type Result<T> = std::result::Result<T, StoreError>;

pub struct Store {
    pub(crate) driver: Box<dyn Driver>,
}

impl Store {
    /// Opens (creating if needed) the SQLite file at `path` and brings its schema up to date.
    pub async fn open_sqlite(path: &std::path::Path) -> Result<Store> {
        let driver = crate::sqlite::Sqlite::open(path)?;
        Store::with_driver(Box::new(driver)).await
    }

    /// Like [`Store::open_sqlite`], with every call going through `wrap`'s driver: a store that is slow or fails
    /// on demand, for tests of what uses it.
    pub async fn open_sqlite_wrapped(
        path: &std::path::Path,
        wrap: impl FnOnce(Box<dyn Driver>) -> Box<dyn Driver>,
    ) -> Result<Store> {
        let driver = crate::sqlite::Sqlite::open(path)?;
        Store::with_driver(wrap(Box::new(driver))).await
    }

    /// Connects to a PostgreSQL server (`postgres://…`) and brings its schema up to date. Connections that break
    /// (the server restarted) are made again on the next use.
    pub async fn open_postgres(url: &str) -> Result<Store> {
        let driver = crate::postgres::Postgres::connect(url).await?;
        Store::with_driver(Box::new(driver)).await
    }

    async fn with_driver(driver: Box<dyn Driver>) -> Result<Store> {
        let store = Store { driver };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        self.driver
            .transaction(vec![Statement::new(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)",
                vec![],
            )])
            .await?;
        for (version, statements) in MIGRATIONS.iter().enumerate() {
            let version = version as i64 + 1;
            // Claiming the version inside the migration's transaction makes concurrent daemons apply it once.
            let mut batch = vec![
                Statement::new(
                    "INSERT INTO schema_migrations (version) VALUES ($1) ON CONFLICT (version) DO NOTHING",
                    vec![version.into()],
                )
                .must_change(),
            ];
            batch.extend(statements.iter().map(|sql| Statement::new(sql, vec![])));
            match self.driver.transaction(batch).await {
                Ok(()) | Err(DriverError::Unchanged(0)) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    /// `sql` with `{now}` replaced by the store's clock.
    /// Runs `batch`; `false` when a `must_change` statement changed nothing (so nothing was written).
    pub(crate) async fn changed(&self, batch: Vec<Statement>) -> Result<bool> {
        match self.driver.transaction(batch).await {
            Ok(()) => Ok(true),
            Err(DriverError::Unchanged(_)) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    pub(crate) fn sql(&self, sql: &str) -> String {
        sql.replace("{now}", self.driver.now_sql())
    }

    /// The store's clock, in milliseconds since the Unix epoch.
    pub async fn now(&self) -> Result<i64> {
        let rows = self.driver.query(&self.sql("SELECT {now}"), vec![]).await?;
        rows.first()
            .map(|row| int(row, 0))
            .unwrap_or_else(|| Err(StoreError::Corrupt("no time".to_owned())))
    }

    // ------------------------------------------------------------------ meta

    pub async fn meta(&self, key: &str) -> Result<Option<String>> {
        let rows = self
            .driver
            .query("SELECT value FROM meta WHERE key = $1", vec![key.into()])
            .await?;
        rows.first().map(|row| text(row, 0)).transpose()
    }

    pub async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.driver
            .transaction(vec![Statement::new(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                vec![key.into(), value.into()],
            )])
            .await
            .map_err(Into::into)
    }

    // ------------------------------------------------------------------ projects

    pub async fn put_project(&self, project: &ProjectRecord) -> Result<()> {
        self.driver
            .transaction(vec![Statement::new(
                "INSERT INTO projects (name, file, source, updated_at, directory) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (name) DO UPDATE SET file = excluded.file, source = excluded.source,
                 updated_at = excluded.updated_at, directory = excluded.directory",
                vec![
                    project.name.clone().into(),
                    project.file.clone().into(),
                    project.source.clone().into(),
                    project.updated_at.into(),
                    project.directory.clone().into(),
                ],
            )])
            .await
            .map_err(Into::into)
    }

    /// Removes a project and everything kept for it — variables, secrets and their versions, its deployments'
    /// history — once it has no environment and no unfinished deployment; `false` (and nothing changed) otherwise.
    pub async fn delete_project(&self, name: &str) -> Result<bool> {
        let of = |table: &str| {
            Statement::new(
                &format!("DELETE FROM {table} WHERE project = $1"),
                vec![name.into()],
            )
        };
        let batch = vec![
            Statement::new(
                "DELETE FROM projects WHERE name = $1
                 AND NOT EXISTS (SELECT 1 FROM environments WHERE project = $1)
                 AND NOT EXISTS (SELECT 1 FROM leases WHERE project = $1)
                 AND NOT EXISTS (SELECT 1 FROM attention WHERE project = $1)
                 AND NOT EXISTS (SELECT 1 FROM deployments WHERE project = $1 AND status IN ('running', 'rolling_back', 'failed'))",
                vec![name.into()],
            )
            .must_change(),
            Statement::new(
                "DELETE FROM journal WHERE deployment IN (SELECT id FROM deployments WHERE project = $1)",
                vec![name.into()],
            ),
            of("deployments"),
            of("variables"),
            of("secrets"),
            of("secret_versions"),
            of("attention"),
            of("webhook_deliveries"),
            of("pull_requests"),
            of("revisions"),
            of("resources"),
        ];
        self.changed(batch).await
    }

    // ------------------------------------------------------------------ daemons

    /// Takes the name `id` for a daemon running at `home`: granted when no daemon has it, when the one that had it
    /// ran at the same home (that is this daemon, started again), or when that one was last seen more than
    /// `absent_ms` ago. Otherwise `Some(its home)`, and nothing changes.
    pub async fn claim_daemon(
        &self,
        id: &str,
        home: &str,
        absent_ms: i64,
    ) -> Result<Option<String>> {
        let claim = Statement::new(
            &self.sql(
                "INSERT INTO daemons (id, home, seen_at) VALUES ($1, $2, {now})
                 ON CONFLICT (id) DO UPDATE SET home = excluded.home, seen_at = excluded.seen_at
                 WHERE daemons.home = excluded.home OR daemons.seen_at < {now} - $3",
            ),
            vec![id.into(), home.into(), absent_ms.into()],
        )
        .must_change();
        match self.driver.transaction(vec![claim]).await {
            Ok(()) => Ok(None),
            Err(DriverError::Unchanged(_)) => {
                let rows = self
                    .driver
                    .query("SELECT home FROM daemons WHERE id = $1", vec![id.into()])
                    .await?;
                Ok(Some(
                    rows.first()
                        .map(|row| text(row, 0))
                        .transpose()?
                        .unwrap_or_default(),
                ))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The daemon `id` at `home` still runs; `false` if the name is no longer its own (a daemon elsewhere took
    /// it after this one went unseen too long).
    pub async fn daemon_seen(&self, id: &str, home: &str) -> Result<bool> {
        self.changed(vec![
            Statement::new(
                &self.sql("UPDATE daemons SET seen_at = {now} WHERE id = $1 AND home = $2"),
                vec![id.into(), home.into()],
            )
            .must_change(),
        ])
        .await
    }

    /// The daemon `id` at `home` stopped: its name is free at once.
    pub async fn release_daemon(&self, id: &str, home: &str) -> Result<()> {
        self.driver
            .transaction(vec![Statement::new(
                "DELETE FROM daemons WHERE id = $1 AND home = $2",
                vec![id.into(), home.into()],
            )])
            .await
            .map_err(Into::into)
    }

    pub async fn project(&self, name: &str) -> Result<Option<ProjectRecord>> {
        let rows = self
            .driver
            .query(
                "SELECT name, file, source, updated_at, directory FROM projects WHERE name = $1",
                vec![name.into()],
            )
            .await?;
        rows.first().map(project_record).transpose()
    }

    pub async fn projects(&self) -> Result<Vec<ProjectRecord>> {
        let rows = self
            .driver
            .query(
                "SELECT name, file, source, updated_at, directory FROM projects ORDER BY name",
                vec![],
            )
            .await?;
        rows.iter().map(project_record).collect()
    }

    // ------------------------------------------------------------------ environments and recorded state

    pub async fn environment(
        &self,
        project: &str,
        name: &str,
    ) -> Result<Option<EnvironmentRecord>> {
        let rows = self
            .driver
            .query(
                &format!("{ENVIRONMENT_COLUMNS} WHERE project = $1 AND name = $2"),
                vec![project.into(), name.into()],
            )
            .await?;
        rows.first().map(environment_record).transpose()
    }

    pub async fn environments(&self, project: &str) -> Result<Vec<EnvironmentRecord>> {
        let rows = self
            .driver
            .query(
                &format!("{ENVIRONMENT_COLUMNS} WHERE project = $1 ORDER BY name"),
                vec![project.into()],
            )
            .await?;
        rows.iter().map(environment_record).collect()
    }

    pub async fn environment_count(&self) -> Result<i64> {
        let rows = self
            .driver
            .query("SELECT count(*) FROM environments", vec![])
            .await?;
        rows.first().map(|row| int(row, 0)).unwrap_or(Ok(0))
    }

    /// What the last committed deployment of the environment applied, sorted by id.
    pub async fn recorded_state(&self, project: &str, environment: &str) -> Result<Vec<Resource>> {
        let rows = self
            .driver
            .query(
                "SELECT body FROM resources WHERE project = $1 AND environment = $2 ORDER BY id",
                vec![project.into(), environment.into()],
            )
            .await?;
        rows.iter().map(|row| json(&text(row, 0)?)).collect()
    }

    /// What a deployment's plan is made from. The revision is read first: a commit after it makes the
    /// deployment's start fail with [`StoreError::Stale`] however the later reads fell.
    pub async fn planning_base(&self, project: &str, environment: &str) -> Result<PlanningBase> {
        let rows = self
            .driver
            .query(
                "SELECT revision FROM revisions WHERE project = $1 AND environment = $2",
                vec![project.into(), environment.into()],
            )
            .await?;
        let revision = rows
            .first()
            .map(|row| int(row, 0))
            .transpose()?
            .unwrap_or(0);
        Ok(PlanningBase {
            revision,
            environment: self.environment(project, environment).await?,
            recorded: self.recorded_state(project, environment).await?,
        })
    }

    /// Environments of the project that need an operator's attention, by name.
    pub async fn attention(&self, project: &str) -> Result<Vec<AttentionRecord>> {
        let rows = self
            .driver
            .query(
                "SELECT project, environment, deployment, note, at FROM attention WHERE project = $1 ORDER BY environment",
                vec![project.into()],
            )
            .await?;
        rows.iter().map(attention_record).collect()
    }
}
