//! The store's operations, written once over a [`Driver`].

use preview_plan::{Plan, Resource};

use crate::driver::{Driver, DriverError, Param, Row, Statement};
use crate::records::*;
use crate::schema::MIGRATIONS;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another deployment holds the environment.
    #[error("environment `{environment}` is busy: deployment {deployment} is running")]
    Busy {
        environment: String,
        deployment: String,
    },
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

type Result<T> = std::result::Result<T, StoreError>;

const UNFINISHED: &str = "('running', 'rolling_back', 'failed')";

pub struct Store {
    driver: Box<dyn Driver>,
}

impl Store {
    /// Opens (creating if needed) the SQLite file at `path` and brings its schema up to date.
    pub async fn open_sqlite(path: &std::path::Path) -> Result<Store> {
        let driver = crate::sqlite::Sqlite::open(path)?;
        Store::with_driver(Box::new(driver)).await
    }

    /// Connects to a PostgreSQL server (`postgres://…`) and brings its schema up to date.
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
                "SELECT project, name, based_on, created_at FROM environments WHERE project = $1 AND name = $2",
                vec![project.into(), name.into()],
            )
            .await?;
        rows.first().map(environment_record).transpose()
    }

    pub async fn environments(&self, project: &str) -> Result<Vec<EnvironmentRecord>> {
        let rows = self
            .driver
            .query(
                "SELECT project, name, based_on, created_at FROM environments WHERE project = $1 ORDER BY name",
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

    // ------------------------------------------------------------------ deployments and leases

    /// Takes the environment's lease and records the deployment as running, in one transaction. Refused with
    /// [`StoreError::Busy`] while another deployment holds an unexpired lease or is left unfinished.
    pub async fn start_deployment(
        &self,
        deployment: &DeploymentRecord,
        lease_expires_at: i64,
        now: i64,
    ) -> Result<()> {
        let take_lease = Statement::new(
            &format!(
                "INSERT INTO leases (project, environment, deployment, holder, expires_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (project, environment) DO UPDATE SET deployment = excluded.deployment,
                 holder = excluded.holder, expires_at = excluded.expires_at
                 WHERE leases.expires_at < $6 AND NOT EXISTS (
                     SELECT 1 FROM deployments d WHERE d.project = $1 AND d.environment = $2 AND d.status IN {UNFINISHED})"
            ),
            vec![
                deployment.project.clone().into(),
                deployment.environment.clone().into(),
                deployment.id.clone().into(),
                deployment.holder.clone().into(),
                lease_expires_at.into(),
                now.into(),
            ],
        )
        .must_change();
        let insert = Statement::new(
            "INSERT INTO deployments (id, project, environment, operation, based_on, status, reason, plan, holder,
             created_at, finished_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            vec![
                deployment.id.clone().into(),
                deployment.project.clone().into(),
                deployment.environment.clone().into(),
                deployment.operation.as_str().into(),
                deployment.based_on.clone().into(),
                deployment.status.as_str().into(),
                deployment.reason.clone().into(),
                to_json(&deployment.plan)?.into(),
                deployment.holder.clone().into(),
                deployment.created_at.into(),
                deployment.finished_at.into(),
            ],
        );
        match self.driver.transaction(vec![take_lease, insert]).await {
            Ok(()) => Ok(()),
            Err(DriverError::Unchanged(0)) => Err(self
                .busy(&deployment.project, &deployment.environment)
                .await?),
            Err(error) => Err(error.into()),
        }
    }

    async fn busy(&self, project: &str, environment: &str) -> Result<StoreError> {
        let rows = self
            .driver
            .query(
                &format!(
                    "SELECT id FROM deployments WHERE project = $1 AND environment = $2 AND status IN {UNFINISHED}
                     UNION ALL SELECT deployment FROM leases WHERE project = $1 AND environment = $2"
                ),
                vec![project.into(), environment.into()],
            )
            .await?;
        let deployment = rows
            .first()
            .map(|row| text(row, 0))
            .transpose()?
            .unwrap_or_default();
        Ok(StoreError::Busy {
            environment: environment.to_owned(),
            deployment,
        })
    }

    /// Extends the lease of a running deployment; `false` if the lease is no longer its own.
    pub async fn renew_lease(
        &self,
        deployment: &str,
        holder: &str,
        expires_at: i64,
    ) -> Result<bool> {
        let renew = Statement::new(
            "UPDATE leases SET expires_at = $1 WHERE deployment = $2 AND holder = $3",
            vec![expires_at.into(), deployment.into(), holder.into()],
        )
        .must_change();
        match self.driver.transaction(vec![renew]).await {
            Ok(()) => Ok(true),
            Err(DriverError::Unchanged(_)) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// Takes over the lease of an unfinished deployment whose holder is `holder` itself (restarted) or has let it
    /// expire (gone). `false` if a live daemon still holds it.
    pub async fn take_over(
        &self,
        deployment: &str,
        holder: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool> {
        let take = Statement::new(
            "UPDATE leases SET holder = $1, expires_at = $2 WHERE deployment = $3 AND (holder = $1 OR expires_at < $4)",
            vec![holder.into(), expires_at.into(), deployment.into(), now.into()],
        )
        .must_change();
        let claim = Statement::new(
            "UPDATE deployments SET holder = $1 WHERE id = $2",
            vec![holder.into(), deployment.into()],
        );
        match self.driver.transaction(vec![take, claim]).await {
            Ok(()) => Ok(true),
            Err(DriverError::Unchanged(_)) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    pub async fn append_journal(&self, entry: &JournalEntry) -> Result<()> {
        self.driver
            .transaction(vec![Statement::new(
                "INSERT INTO journal (deployment, seq, step, phase, event, message, at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                vec![
                    entry.deployment.clone().into(),
                    entry.seq.into(),
                    entry.step.into(),
                    entry.phase.as_str().into(),
                    entry.event.as_str().into(),
                    entry.message.clone().into(),
                    entry.at.into(),
                ],
            )])
            .await
            .map_err(Into::into)
    }

    pub async fn journal(&self, deployment: &str) -> Result<Vec<JournalEntry>> {
        let rows = self
            .driver
            .query(
                "SELECT deployment, seq, step, phase, event, message, at FROM journal WHERE deployment = $1 ORDER BY seq",
                vec![deployment.into()],
            )
            .await?;
        rows.iter().map(journal_entry).collect()
    }

    pub async fn set_status(
        &self,
        deployment: &str,
        status: DeploymentStatus,
        reason: Option<&str>,
    ) -> Result<()> {
        self.driver
            .transaction(vec![Statement::new(
                "UPDATE deployments SET status = $1, reason = COALESCE($2, reason) WHERE id = $3",
                vec![
                    status.as_str().into(),
                    reason.map(str::to_owned).into(),
                    deployment.into(),
                ],
            )])
            .await
            .map_err(Into::into)
    }

    /// Ends a deployment in one transaction: its status; for a commit, the new recorded state and the
    /// environment record (added by a create or clone, removed by a delete); and the lease, released unless the
    /// rollback failed.
    pub async fn finish_deployment(
        &self,
        deployment: &DeploymentRecord,
        outcome: &Outcome,
        now: i64,
    ) -> Result<()> {
        let (status, reason) = match outcome {
            Outcome::Committed { .. } => (DeploymentStatus::Committed, None),
            Outcome::RolledBack { reason } => (DeploymentStatus::RolledBack, Some(reason.clone())),
            Outcome::Failed { reason } => (DeploymentStatus::Failed, Some(reason.clone())),
        };
        let (project, environment) = (&deployment.project, &deployment.environment);
        let mut batch = vec![
            Statement::new(
                &format!("UPDATE deployments SET status = $1, reason = $2, finished_at = $3 WHERE id = $4 AND status IN {UNFINISHED}"),
                vec![status.as_str().into(), reason.into(), now.into(), deployment.id.clone().into()],
            )
            .must_change(),
        ];
        if let Outcome::Committed { state } = outcome {
            batch.push(Statement::new(
                "DELETE FROM resources WHERE project = $1 AND environment = $2",
                vec![project.clone().into(), environment.clone().into()],
            ));
            if deployment.operation == Operation::Delete {
                batch.push(Statement::new(
                    "DELETE FROM environments WHERE project = $1 AND name = $2",
                    vec![project.clone().into(), environment.clone().into()],
                ));
            } else {
                batch.push(Statement::new(
                    "INSERT INTO environments (project, name, based_on, created_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (project, name) DO NOTHING",
                    vec![project.clone().into(), environment.clone().into(), deployment.based_on.clone().into(), now.into()],
                ));
                for resource in state {
                    batch.push(Statement::new(
                        "INSERT INTO resources (project, environment, id, body) VALUES ($1, $2, $3, $4)",
                        vec![
                            project.clone().into(),
                            environment.clone().into(),
                            resource.id.clone().into(),
                            to_json(resource)?.into(),
                        ],
                    ));
                }
            }
        }
        if status != DeploymentStatus::Failed {
            batch.push(Statement::new(
                "DELETE FROM leases WHERE deployment = $1",
                vec![deployment.id.clone().into()],
            ));
        }
        self.driver.transaction(batch).await.map_err(Into::into)
    }

    pub async fn deployment(&self, id: &str) -> Result<Option<DeploymentRecord>> {
        let rows = self
            .driver
            .query(
                &format!("{DEPLOYMENT_COLUMNS} WHERE id = $1"),
                vec![id.into()],
            )
            .await?;
        rows.first().map(deployment_record).transpose()
    }

    /// The environment's deployments, newest first.
    pub async fn deployments(
        &self,
        project: &str,
        environment: &str,
        limit: i64,
    ) -> Result<Vec<DeploymentRecord>> {
        let rows = self
            .driver
            .query(
                &format!("{DEPLOYMENT_COLUMNS} WHERE project = $1 AND environment = $2 ORDER BY created_at DESC, id DESC LIMIT $3"),
                vec![project.into(), environment.into(), limit.into()],
            )
            .await?;
        rows.iter().map(deployment_record).collect()
    }

    /// Deployments that did not finish: running, rolling back, or whose rollback failed.
    pub async fn unfinished_deployments(&self) -> Result<Vec<DeploymentRecord>> {
        let rows = self
            .driver
            .query(
                &format!(
                    "{DEPLOYMENT_COLUMNS} WHERE status IN {UNFINISHED} ORDER BY created_at, id"
                ),
                vec![],
            )
            .await?;
        rows.iter().map(deployment_record).collect()
    }
}

impl Store {
    // ------------------------------------------------------------------ variables

    pub async fn set_variable(&self, variable: &VariableRecord) -> Result<()> {
        self.driver
            .transaction(vec![Statement::new(
                "INSERT INTO variables (project, scope, name, value, updated_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (project, scope, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                vec![
                    variable.project.clone().into(),
                    variable.scope.clone().into(),
                    variable.name.clone().into(),
                    variable.value.clone().into(),
                    variable.updated_at.into(),
                ],
            )])
            .await
            .map_err(Into::into)
    }

    /// `false` if there was no such variable.
    pub async fn unset_variable(&self, project: &str, scope: &str, name: &str) -> Result<bool> {
        self.delete_one(
            "DELETE FROM variables WHERE project = $1 AND scope = $2 AND name = $3",
            project,
            scope,
            name,
        )
        .await
    }

    pub async fn variables(&self, project: &str) -> Result<Vec<VariableRecord>> {
        let rows = self
            .driver
            .query(
                "SELECT project, scope, name, value, updated_at FROM variables WHERE project = $1 ORDER BY scope, name",
                vec![project.into()],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(VariableRecord {
                    project: text(row, 0)?,
                    scope: text(row, 1)?,
                    name: text(row, 2)?,
                    value: text(row, 3)?,
                    updated_at: int(row, 4)?,
                })
            })
            .collect()
    }

    // ------------------------------------------------------------------ secrets

    pub async fn put_secret(&self, secret: &SecretRecord) -> Result<()> {
        self.driver
            .transaction(vec![upsert_secret(secret)])
            .await
            .map_err(Into::into)
    }

    /// `false` if there was no such secret.
    pub async fn delete_secret(&self, project: &str, scope: &str, name: &str) -> Result<bool> {
        self.delete_one(
            "DELETE FROM secrets WHERE project = $1 AND scope = $2 AND name = $3",
            project,
            scope,
            name,
        )
        .await
    }

    /// The project's secrets (every project's with `None`), sealed.
    pub async fn secrets(&self, project: Option<&str>) -> Result<Vec<SecretRecord>> {
        let columns = "SELECT project, scope, name, nonce, ciphertext, fingerprint, previews, updated_at FROM secrets";
        let rows = match project {
            Some(project) => {
                self.driver
                    .query(
                        &format!("{columns} WHERE project = $1 ORDER BY scope, name"),
                        vec![project.into()],
                    )
                    .await?
            }
            None => {
                self.driver
                    .query(&format!("{columns} ORDER BY project, scope, name"), vec![])
                    .await?
            }
        };
        rows.iter().map(secret_record).collect()
    }

    /// Replaces every given secret and the meta value `key` in one transaction: a key rotation either rewrites
    /// everything under the new key or nothing.
    pub async fn rotate_secrets(
        &self,
        secrets: &[SecretRecord],
        key: &str,
        value: &str,
    ) -> Result<()> {
        let mut batch: Vec<Statement> = secrets.iter().map(upsert_secret).collect();
        batch.push(Statement::new(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            vec![key.into(), value.into()],
        ));
        self.driver.transaction(batch).await.map_err(Into::into)
    }

    async fn delete_one(&self, sql: &str, project: &str, scope: &str, name: &str) -> Result<bool> {
        let delete =
            Statement::new(sql, vec![project.into(), scope.into(), name.into()]).must_change();
        match self.driver.transaction(vec![delete]).await {
            Ok(()) => Ok(true),
            Err(DriverError::Unchanged(_)) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }
}

fn upsert_secret(secret: &SecretRecord) -> Statement {
    Statement::new(
        "INSERT INTO secrets (project, scope, name, nonce, ciphertext, fingerprint, previews, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (project, scope, name) DO UPDATE SET nonce = excluded.nonce, ciphertext = excluded.ciphertext,
         fingerprint = excluded.fingerprint, previews = excluded.previews, updated_at = excluded.updated_at",
        vec![
            secret.project.clone().into(),
            secret.scope.clone().into(),
            secret.name.clone().into(),
            hex(&secret.nonce).into(),
            hex(&secret.ciphertext).into(),
            secret.fingerprint.clone().into(),
            secret.previews.clone().into(),
            secret.updated_at.into(),
        ],
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Result<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return Err(StoreError::Corrupt("odd-length hex".to_owned()));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&text[i..i + 2], 16)
                .map_err(|_| StoreError::Corrupt("not hex".to_owned()))
        })
        .collect()
}

fn secret_record(row: &Row) -> Result<SecretRecord> {
    Ok(SecretRecord {
        project: text(row, 0)?,
        scope: text(row, 1)?,
        name: text(row, 2)?,
        nonce: unhex(&text(row, 3)?)?,
        ciphertext: unhex(&text(row, 4)?)?,
        fingerprint: text(row, 5)?,
        previews: text(row, 6)?,
        updated_at: int(row, 7)?,
    })
}

const DEPLOYMENT_COLUMNS: &str = "SELECT id, project, environment, operation, based_on, status, reason, plan, holder, \
                                  created_at, finished_at FROM deployments";

// ---------------------------------------------------------------------- reading rows

fn column(row: &Row, index: usize) -> Result<&Param> {
    row.get(index)
        .ok_or_else(|| StoreError::Corrupt(format!("missing column {index}")))
}

fn text(row: &Row, index: usize) -> Result<String> {
    match column(row, index)? {
        Param::Text(text) => Ok(text.clone()),
        other => Err(StoreError::Corrupt(format!(
            "expected text in column {index}, found {other:?}"
        ))),
    }
}

fn optional_text(row: &Row, index: usize) -> Result<Option<String>> {
    match column(row, index)? {
        Param::Null => Ok(None),
        _ => text(row, index).map(Some),
    }
}

fn int(row: &Row, index: usize) -> Result<i64> {
    match column(row, index)? {
        Param::Int(value) => Ok(*value),
        other => Err(StoreError::Corrupt(format!(
            "expected an integer in column {index}, found {other:?}"
        ))),
    }
}

fn optional_int(row: &Row, index: usize) -> Result<Option<i64>> {
    match column(row, index)? {
        Param::Null => Ok(None),
        _ => int(row, index).map(Some),
    }
}

fn json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn parsed<T>(value: String, parse: impl Fn(&str) -> Option<T>) -> Result<T> {
    parse(&value).ok_or_else(|| StoreError::Corrupt(format!("unknown value `{value}`")))
}

fn project_record(row: &Row) -> Result<ProjectRecord> {
    Ok(ProjectRecord {
        name: text(row, 0)?,
        file: text(row, 1)?,
        source: text(row, 2)?,
        updated_at: int(row, 3)?,
        directory: optional_text(row, 4)?,
    })
}

fn environment_record(row: &Row) -> Result<EnvironmentRecord> {
    Ok(EnvironmentRecord {
        project: text(row, 0)?,
        name: text(row, 1)?,
        based_on: optional_text(row, 2)?,
        created_at: int(row, 3)?,
    })
}

fn deployment_record(row: &Row) -> Result<DeploymentRecord> {
    Ok(DeploymentRecord {
        id: text(row, 0)?,
        project: text(row, 1)?,
        environment: text(row, 2)?,
        operation: parsed(text(row, 3)?, Operation::parse)?,
        based_on: optional_text(row, 4)?,
        status: parsed(text(row, 5)?, DeploymentStatus::parse)?,
        reason: optional_text(row, 6)?,
        plan: json::<Plan>(&text(row, 7)?)?,
        holder: text(row, 8)?,
        created_at: int(row, 9)?,
        finished_at: optional_int(row, 10)?,
    })
}

fn journal_entry(row: &Row) -> Result<JournalEntry> {
    Ok(JournalEntry {
        deployment: text(row, 0)?,
        seq: int(row, 1)?,
        step: int(row, 2)?,
        phase: parsed(text(row, 3)?, Phase::parse)?,
        event: parsed(text(row, 4)?, JournalEvent::parse)?,
        message: text(row, 5)?,
        at: int(row, 6)?,
    })
}
