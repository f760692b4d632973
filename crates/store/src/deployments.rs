//! Deployments, their leases and journals. A lease is taken with the deployment in one transaction and every
//! later write of its holder — journal entries, status, the end — is guarded by it: by deployment, holder and
//! epoch, unexpired by the store's clock. A daemon that lost its lease (taken over after it expired) can no longer
//! write anything for the deployment.

use crate::driver::{DriverError, Statement};
use crate::records::*;
use crate::rows::*;
use crate::store::{Result, Store, StoreError};

const UNFINISHED: &str = "('running', 'rolling_back', 'failed')";

/// What a deployment's start is checked against.
#[derive(Debug, Clone)]
pub struct StartTerms {
    /// The environment's revision its plan was made from ([`PlanningBase::revision`]).
    pub revision: i64,
    pub lease_ttl_ms: i64,
    /// The starting daemon's id: an environment owned by another daemon is refused.
    pub daemon: String,
}

/// Whose leases a daemon may take over in recovery.
#[derive(Debug, Clone)]
pub struct TakeOverTerms {
    /// The new holder (`daemon/nonce`).
    pub holder: String,
    /// The taking daemon's id: leases of its own earlier runs (or of this run) are taken at once.
    pub daemon: String,
    /// Whether leases of other daemons are taken once they expired (runtimes shared between daemons); a
    /// machine-local runtime never acts on another machine's environments.
    pub others: bool,
    pub lease_ttl_ms: i64,
}

impl Store {
    /// The statement that makes a transaction fail with [`StoreError::Fenced`] unless `lease` still holds.
    fn held(&self, lease: &Lease) -> Statement {
        Statement::new(
            &self.sql(
                "UPDATE leases SET epoch = epoch WHERE deployment = $1 AND holder = $2 AND epoch = $3 AND expires_at > {now}",
            ),
            vec![
                lease.deployment.clone().into(),
                lease.holder.clone().into(),
                lease.epoch.into(),
            ],
        )
        .must_change()
    }

    fn fenced(lease: &Lease) -> StoreError {
        StoreError::Fenced {
            deployment: lease.deployment.clone(),
        }
    }

    /// Takes the environment's lease and records the deployment as running, in one transaction. Refused with
    /// [`StoreError::Stale`] when a deployment committed since the plan's base was read, [`StoreError::Owned`]
    /// when the environment belongs to another daemon's machine, and [`StoreError::Busy`] while another
    /// deployment holds an unexpired lease or is left unfinished.
    pub async fn start_deployment(
        &self,
        deployment: &DeploymentRecord,
        terms: &StartTerms,
    ) -> Result<Lease> {
        let (project, environment) = (&deployment.project, &deployment.environment);
        // Rows are locked in the order every transaction of the store takes them — lease, deployment, revision —
        // so that a start and an end of the same environment on PostgreSQL wait for each other, never deadlock.
        let batch = vec![
            // A lease row exists exactly while a deployment of the environment is unfinished (its end, or an
            // operator abandoning it, removes it): a start takes the environment only where there is none. Taking it
            // first also makes concurrent starts on PostgreSQL wait on the row, then find it.
            Statement::new(
                &self.sql(
                    "INSERT INTO leases (project, environment, deployment, holder, expires_at, epoch)
                     VALUES ($1, $2, $3, $4, {now} + $5, 1)
                     ON CONFLICT (project, environment) DO NOTHING",
                ),
                vec![
                    project.clone().into(),
                    environment.clone().into(),
                    deployment.id.clone().into(),
                    deployment.holder.clone().into(),
                    terms.lease_ttl_ms.into(),
                ],
            )
            .must_change(),
            Statement::new(
                "INSERT INTO revisions (project, environment, revision) VALUES ($1, $2, 0) ON CONFLICT (project, environment) DO NOTHING",
                vec![project.clone().into(), environment.clone().into()],
            ),
            // A no-op update: it fails the transaction (and, on PostgreSQL, locks the row against a concurrent
            // start) unless the revision is still the one planned from.
            Statement::new(
                "UPDATE revisions SET revision = revision WHERE project = $1 AND environment = $2 AND revision = $3",
                vec![project.clone().into(), environment.clone().into(), terms.revision.into()],
            )
            .must_change(),
            Statement::new(
                "UPDATE revisions SET revision = revision WHERE project = $1 AND environment = $2 AND NOT EXISTS (
                     SELECT 1 FROM environments e WHERE e.project = $1 AND e.name = $2 AND e.owner IS NOT NULL AND e.owner <> $3)",
                vec![project.clone().into(), environment.clone().into(), terms.daemon.clone().into()],
            )
            .must_change(),
            Statement::new(
                &self.sql(
                    "INSERT INTO deployments (id, project, environment, operation, based_on, status, reason, plan, holder,
                     created_at, finished_at, owner, attempts, source_commit, follows, keep_settings)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, {now}, NULL, $10, 0, $11, $12, $13)",
                ),
                vec![
                    deployment.id.clone().into(),
                    project.clone().into(),
                    environment.clone().into(),
                    deployment.operation.as_str().into(),
                    deployment.based_on.clone().into(),
                    DeploymentStatus::Running.as_str().into(),
                    deployment.reason.clone().into(),
                    to_json(&deployment.plan)?.into(),
                    deployment.holder.clone().into(),
                    deployment.owner.clone().into(),
                    deployment.source_commit.clone().into(),
                    deployment.follows.clone().into(),
                    i64::from(deployment.keep_settings).into(),
                ],
            ),
        ];
        match self.driver.transaction(batch).await {
            Ok(()) => Ok(Lease {
                deployment: deployment.id.clone(),
                holder: deployment.holder.clone(),
                epoch: 1,
            }),
            Err(DriverError::Unchanged(0)) => Err(self.busy(project, environment).await?),
            Err(DriverError::Unchanged(2)) => Err(StoreError::Stale {
                environment: environment.clone(),
            }),
            Err(DriverError::Unchanged(3)) => {
                let owner = self
                    .environment(project, environment)
                    .await?
                    .and_then(|e| e.owner)
                    .unwrap_or_default();
                Err(StoreError::Owned {
                    environment: environment.clone(),
                    owner,
                })
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn busy(&self, project: &str, environment: &str) -> Result<StoreError> {
        let rows = self
            .driver
            .query(
                &format!(
                    "SELECT id, status FROM deployments WHERE project = $1 AND environment = $2 AND status IN {UNFINISHED}
                     UNION ALL SELECT deployment, 'running' FROM leases WHERE project = $1 AND environment = $2"
                ),
                vec![project.into(), environment.into()],
            )
            .await?;
        let (deployment, status) = match rows.first() {
            Some(row) => (text(row, 0)?, text(row, 1)?),
            None => (String::new(), String::new()),
        };
        Ok(StoreError::Busy {
            environment: environment.to_owned(),
            deployment,
            stuck: status == DeploymentStatus::Failed.as_str(),
        })
    }

    /// Extends the lease by `ttl_ms` from now (store clock); `false` if it is no longer the holder's, or expired.
    pub async fn renew_lease(&self, lease: &Lease, ttl_ms: i64) -> Result<bool> {
        let renew = Statement::new(
            &self.sql(
                "UPDATE leases SET expires_at = {now} + $1 WHERE deployment = $2 AND holder = $3 AND epoch = $4 AND expires_at > {now}",
            ),
            vec![
                ttl_ms.into(),
                lease.deployment.clone().into(),
                lease.holder.clone().into(),
                lease.epoch.into(),
            ],
        )
        .must_change();
        self.changed(vec![renew]).await
    }

    /// Who holds the deployment's lease, if it has one.
    pub async fn lease_state(&self, deployment: &str) -> Result<Option<LeaseState>> {
        let rows = self
            .driver
            .query(
                &self.sql("SELECT holder, epoch, CASE WHEN expires_at < {now} THEN 1 ELSE 0 END FROM leases WHERE deployment = $1"),
                vec![deployment.into()],
            )
            .await?;
        rows.first()
            .map(|row| {
                Ok(LeaseState {
                    holder: text(row, 0)?,
                    epoch: int(row, 1)?,
                    expired: int(row, 2)? == 1,
                })
            })
            .transpose()
    }

    /// Takes over the lease of an unfinished deployment at epoch `seen_epoch`, raising the epoch: at once if it is
    /// the taking daemon's own (an earlier run of it, or a deployment this run stopped acting for), else once it
    /// expired if `terms.others`. Not if the deployment belongs to another daemon's machine, if it waits for
    /// its next retry, or if someone else took it first. The new lease, or `None`.
    pub async fn take_over(
        &self,
        deployment: &str,
        seen_epoch: i64,
        terms: &TakeOverTerms,
    ) -> Result<Option<Lease>> {
        let prefix = format!("{}/", terms.daemon);
        let take = Statement::new(
            &self.sql(
                "UPDATE leases SET holder = $1, epoch = $2 + 1, expires_at = {now} + $3
                 WHERE deployment = $4 AND epoch = $2
                 AND (holder = $5 OR substr(holder, 1, $6) = $7 OR (expires_at < {now} AND $8 = 1))",
            ),
            vec![
                terms.holder.clone().into(),
                seen_epoch.into(),
                terms.lease_ttl_ms.into(),
                deployment.into(),
                terms.daemon.clone().into(),
                (prefix.len() as i64).into(),
                prefix.into(),
                i64::from(terms.others).into(),
            ],
        )
        .must_change();
        let claim = Statement::new(
            &self.sql(
                "UPDATE deployments SET holder = $1 WHERE id = $2 AND (owner IS NULL OR owner = $3)
                 AND (retry_at IS NULL OR retry_at <= {now})",
            ),
            vec![
                terms.holder.clone().into(),
                deployment.into(),
                terms.daemon.clone().into(),
            ],
        )
        .must_change();
        match self.driver.transaction(vec![take, claim]).await {
            Ok(()) => Ok(Some(Lease {
                deployment: deployment.to_owned(),
                holder: terms.holder.clone(),
                epoch: seen_epoch + 1,
            })),
            Err(DriverError::Unchanged(_)) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Gives an unfinished deployment that has no lease (one written by an earlier version, or left by a fault)
    /// a lease held by `terms.holder`, if its environment has none and the deployment is this daemon's to take:
    /// then it can be recovered like any other.
    pub async fn adopt_unleased(
        &self,
        deployment: &DeploymentRecord,
        terms: &TakeOverTerms,
    ) -> Result<Option<Lease>> {
        let take = Statement::new(
            &self.sql(
                "INSERT INTO leases (project, environment, deployment, holder, expires_at, epoch)
                 VALUES ($1, $2, $3, $4, {now} + $5, 1) ON CONFLICT (project, environment) DO NOTHING",
            ),
            vec![
                deployment.project.clone().into(),
                deployment.environment.clone().into(),
                deployment.id.clone().into(),
                terms.holder.clone().into(),
                terms.lease_ttl_ms.into(),
            ],
        )
        .must_change();
        let prefix = format!("{}/", terms.daemon);
        let claim = Statement::new(
            &self.sql(&format!(
                "UPDATE deployments SET holder = $1 WHERE id = $2 AND status IN {UNFINISHED}
                 AND (owner IS NULL OR owner = $3)
                 AND (holder = $3 OR substr(holder, 1, $4) = $5 OR $6 = 1)
                 AND (retry_at IS NULL OR retry_at <= {{now}})"
            )),
            vec![
                terms.holder.clone().into(),
                deployment.id.clone().into(),
                terms.daemon.clone().into(),
                (prefix.len() as i64).into(),
                prefix.into(),
                i64::from(terms.others).into(),
            ],
        )
        .must_change();
        match self.driver.transaction(vec![take, claim]).await {
            Ok(()) => Ok(Some(Lease {
                deployment: deployment.id.clone(),
                holder: terms.holder.clone(),
                epoch: 1,
            })),
            Err(DriverError::Unchanged(_)) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Appends an entry, written as the lease's holder and epoch; [`StoreError::Fenced`] if the lease no longer
    /// holds.
    pub async fn append_journal(&self, lease: &Lease, entry: &JournalEntry) -> Result<()> {
        let insert = Statement::new(
            "INSERT INTO journal (deployment, seq, step, phase, event, message, at, holder, epoch) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            vec![
                entry.deployment.clone().into(),
                entry.seq.into(),
                entry.step.into(),
                entry.phase.as_str().into(),
                entry.event.as_str().into(),
                entry.message.clone().into(),
                entry.at.into(),
                lease.holder.clone().into(),
                lease.epoch.into(),
            ],
        );
        match self
            .driver
            .transaction(vec![self.held(lease), insert])
            .await
        {
            Err(DriverError::Unchanged(0)) => Err(Store::fenced(lease)),
            other => other.map_err(Into::into),
        }
    }

    pub async fn journal(&self, deployment: &str) -> Result<Vec<JournalEntry>> {
        let rows = self
            .driver
            .query(
                &format!("{JOURNAL_COLUMNS} WHERE deployment = $1 ORDER BY seq"),
                vec![deployment.into()],
            )
            .await?;
        rows.iter().map(journal_entry).collect()
    }

    /// Sets the status; `reason` is kept only if the deployment has none yet (the first failure is the reason).
    pub async fn set_status(
        &self,
        lease: &Lease,
        status: DeploymentStatus,
        reason: Option<&str>,
    ) -> Result<()> {
        let update = Statement::new(
            "UPDATE deployments SET status = $1, reason = COALESCE(reason, $2) WHERE id = $3",
            vec![
                status.as_str().into(),
                reason.map(str::to_owned).into(),
                lease.deployment.clone().into(),
            ],
        );
        match self
            .driver
            .transaction(vec![self.held(lease), update])
            .await
        {
            Err(DriverError::Unchanged(0)) => Err(Store::fenced(lease)),
            other => other.map_err(Into::into),
        }
    }

    /// Ends a deployment in one transaction, if `lease` still holds: its status; for a commit, the new recorded
    /// state, the environment record (added by a create or clone, removed by a delete), a new revision, and the
    /// environment's attention mark cleared; and the lease, released unless the deployment could not finish.
    pub async fn finish_deployment(
        &self,
        lease: &Lease,
        deployment: &DeploymentRecord,
        outcome: &Outcome,
    ) -> Result<()> {
        let (project, environment) = (&deployment.project, &deployment.environment);
        let id = deployment.id.clone();
        let end = match outcome {
            Outcome::Committed { .. } => Statement::new(
                &self.sql(&format!(
                    "UPDATE deployments SET status = 'committed', finished_at = {{now}}, retry_at = NULL WHERE id = $1 AND status IN {UNFINISHED}"
                )),
                vec![id.clone().into()],
            ),
            Outcome::RolledBack { reason } => Statement::new(
                &self.sql(&format!(
                    "UPDATE deployments SET status = 'rolled_back', reason = COALESCE(reason, $1), finished_at = {{now}}, retry_at = NULL
                     WHERE id = $2 AND status IN {UNFINISHED}"
                )),
                vec![reason.clone().into(), id.clone().into()],
            ),
            Outcome::Failed {
                reason,
                error,
                retry_in_ms,
            } => Statement::new(
                &self.sql(&format!(
                    "UPDATE deployments SET status = 'failed', reason = COALESCE(reason, $1), last_error = $2,
                     attempts = attempts + 1, retry_at = {{now}} + $3 WHERE id = $4 AND status IN {UNFINISHED}"
                )),
                vec![
                    reason.clone().into(),
                    error.clone().into(),
                    (*retry_in_ms).into(),
                    id.clone().into(),
                ],
            ),
        };
        let mut batch = vec![self.held(lease), end.must_change()];
        if let Outcome::Committed { state } = outcome {
            let place = || -> Vec<crate::driver::Param> {
                vec![project.clone().into(), environment.clone().into()]
            };
            batch.push(Statement::new(
                "DELETE FROM resources WHERE project = $1 AND environment = $2",
                place(),
            ));
            batch.push(Statement::new(
                "UPDATE revisions SET revision = revision + 1 WHERE project = $1 AND environment = $2",
                place(),
            ));
            batch.push(Statement::new(
                "DELETE FROM attention WHERE project = $1 AND environment = $2",
                place(),
            ));
            if deployment.operation == Operation::Delete {
                batch.push(Statement::new(
                    "DELETE FROM environments WHERE project = $1 AND name = $2",
                    place(),
                ));
                if !deployment.keep_settings {
                    // What was set for this environment goes with it, so that a new environment of the same name
                    // starts clean; secrets' versions are retired (pruned later), like an unset's.
                    let scoped = "(scope = 'environment:' || CAST($2 AS TEXT) OR scope LIKE 'service:%@' || CAST($2 AS TEXT))";
                    batch.push(Statement::new(
                        &format!("DELETE FROM variables WHERE project = $1 AND {scoped}"),
                        place(),
                    ));
                    batch.push(Statement::new(
                        &format!("DELETE FROM secrets WHERE project = $1 AND {scoped}"),
                        place(),
                    ));
                    batch.push(Statement::new(
                        &self.sql(&format!(
                            "UPDATE secret_versions SET retired_at = {{now}} WHERE project = $1 AND {scoped} AND retired_at IS NULL"
                        )),
                        place(),
                    ));
                }
            } else {
                batch.push(Statement::new(
                    &self.sql(
                        "INSERT INTO environments (project, name, based_on, created_at, owner, follows)
                         VALUES ($1, $2, $3, {now}, $4, $5)
                         ON CONFLICT (project, name) DO UPDATE SET owner = COALESCE(environments.owner, excluded.owner),
                             follows = COALESCE(excluded.follows, environments.follows)",
                    ),
                    vec![
                        project.clone().into(),
                        environment.clone().into(),
                        deployment.based_on.clone().into(),
                        deployment.owner.clone().into(),
                        deployment.follows.clone().into(),
                    ],
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
        if !matches!(outcome, Outcome::Failed { .. }) {
            batch.push(Statement::new(
                "DELETE FROM leases WHERE deployment = $1",
                vec![id.into()],
            ));
        }
        match self.driver.transaction(batch).await {
            Err(DriverError::Unchanged(0)) => Err(Store::fenced(lease)),
            other => other.map_err(Into::into),
        }
    }

    /// Gives up on an unfinished deployment whose lease (at `seen_epoch`) expired or is `daemon`'s own: ends it
    /// as abandoned, releases the lease, writes `entry` to its journal and marks the environment as needing
    /// attention with `note`. `false` if someone is working on it.
    pub async fn abandon_deployment(
        &self,
        deployment: &DeploymentRecord,
        seen_epoch: i64,
        daemon: &str,
        entry: &JournalEntry,
        note: &str,
    ) -> Result<bool> {
        let prefix = format!("{daemon}/");
        let release = if seen_epoch == 0 {
            // It holds no lease (it was never taken over after its daemon let it go): nobody may have taken one since.
            Statement::new(
                "UPDATE deployments SET status = status WHERE id = $1
                 AND NOT EXISTS (SELECT 1 FROM leases WHERE deployment = $1)",
                vec![deployment.id.clone().into()],
            )
        } else {
            Statement::new(
                &self.sql(
                    "DELETE FROM leases WHERE deployment = $1 AND epoch = $2
                     AND (expires_at < {now} OR holder = $3 OR substr(holder, 1, $4) = $5)",
                ),
                vec![
                    deployment.id.clone().into(),
                    seen_epoch.into(),
                    daemon.into(),
                    (prefix.len() as i64).into(),
                    prefix.into(),
                ],
            )
        };
        let batch = vec![
            release.must_change(),
            Statement::new(
                &self.sql(&format!(
                    "UPDATE deployments SET status = 'abandoned', finished_at = {{now}}, retry_at = NULL WHERE id = $1 AND status IN {UNFINISHED}"
                )),
                vec![deployment.id.clone().into()],
            )
            .must_change(),
            Statement::new(
                "INSERT INTO journal (deployment, seq, step, phase, event, message, at, holder, epoch) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                vec![
                    entry.deployment.clone().into(),
                    entry.seq.into(),
                    entry.step.into(),
                    entry.phase.as_str().into(),
                    entry.event.as_str().into(),
                    entry.message.clone().into(),
                    entry.at.into(),
                    entry.holder.clone().into(),
                    entry.epoch.into(),
                ],
            ),
            Statement::new(
                &self.sql(
                    "INSERT INTO attention (project, environment, deployment, note, at) VALUES ($1, $2, $3, $4, {now})
                     ON CONFLICT (project, environment) DO UPDATE SET deployment = excluded.deployment,
                     note = excluded.note, at = excluded.at",
                ),
                vec![
                    deployment.project.clone().into(),
                    deployment.environment.clone().into(),
                    deployment.id.clone().into(),
                    note.into(),
                ],
            ),
        ];
        self.changed(batch).await
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

    /// Deployments that did not finish: running, rolling back, or that could not finish and are retried.
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
