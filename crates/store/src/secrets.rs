//! Variables and secrets set through the CLI or API, per project, scope and name. Secrets are stored sealed: nonce,
//! ciphertext and keyed fingerprint, never a value; each value a secret had is kept as a version while anything
//! may still need it. Every write of a sealed value is guarded by the id of the key that sealed it, so that a key
//! rotation and secret writes never interleave into a value sealed under a key the store no longer has.

use crate::driver::{DriverError, Row, Statement};
use crate::records::*;
use crate::rows::*;
use crate::store::{Result, Store, StoreError};

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

    async fn delete_one(&self, sql: &str, project: &str, scope: &str, name: &str) -> Result<bool> {
        let delete =
            Statement::new(sql, vec![project.into(), scope.into(), name.into()]).must_change();
        self.changed(vec![delete]).await
    }

    // ------------------------------------------------------------------ secrets

    /// The statement that fails a transaction with [`StoreError::KeyRotated`] unless `key_id` is the store's key.
    fn sealed_under(&self, key_id: &str) -> Statement {
        Statement::new(
            "UPDATE meta SET value = value WHERE key = $1 AND value = $2",
            vec![KEY_ID.into(), key_id.into()],
        )
        .must_change()
    }

    async fn rotated(&self) -> StoreError {
        StoreError::KeyRotated {
            key_id: self.meta(KEY_ID).await.ok().flatten().unwrap_or_default(),
        }
    }

    /// The id of the key the store's secrets are sealed with; `None` before the first key was adopted.
    pub async fn key_id(&self) -> Result<Option<String>> {
        self.meta(KEY_ID).await
    }

    /// Records `key_id` as the store's key if it has none yet, and as the key of values sealed before keys had
    /// ids.
    pub async fn adopt_key_id(&self, key_id: &str) -> Result<()> {
        self.driver
            .transaction(vec![
                Statement::new(
                    "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                    vec![KEY_ID.into(), key_id.into()],
                ),
                Statement::new(
                    "UPDATE secret_versions SET key_id = $1 WHERE key_id = ''",
                    vec![key_id.into()],
                ),
            ])
            .await
            .map_err(Into::into)
    }

    /// Makes `version` the secret's current value (keeping earlier versions until they are pruned), if
    /// `version.key_id` is still the store's key.
    pub async fn put_secret(&self, secret: &SecretRecord, version: &SealedVersion) -> Result<()> {
        let slot = || -> Vec<crate::driver::Param> {
            vec![
                secret.project.clone().into(),
                secret.scope.clone().into(),
                secret.name.clone().into(),
            ]
        };
        let mut retire = slot();
        retire.push(secret.fingerprint.clone().into());
        let batch = vec![
            self.sealed_under(&version.key_id),
            Statement::new(
                &self.sql(
                    "UPDATE secret_versions SET retired_at = {now}
                     WHERE project = $1 AND scope = $2 AND name = $3 AND fingerprint <> $4 AND retired_at IS NULL",
                ),
                retire,
            ),
            Statement::new(
                &self.sql(
                    "INSERT INTO secret_versions (project, scope, name, fingerprint, nonce, ciphertext, key_id, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, {now})
                     ON CONFLICT (project, scope, name, fingerprint) DO UPDATE SET nonce = excluded.nonce,
                     ciphertext = excluded.ciphertext, key_id = excluded.key_id, retired_at = NULL",
                ),
                vec![
                    version.project.clone().into(),
                    version.scope.clone().into(),
                    version.name.clone().into(),
                    version.fingerprint.clone().into(),
                    hex(&version.nonce).into(),
                    hex(&version.ciphertext).into(),
                    version.key_id.clone().into(),
                ],
            ),
            Statement::new(
                "INSERT INTO secrets (project, scope, name, fingerprint, previews, updated_at) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (project, scope, name) DO UPDATE SET fingerprint = excluded.fingerprint,
                 previews = excluded.previews, updated_at = excluded.updated_at",
                vec![
                    secret.project.clone().into(),
                    secret.scope.clone().into(),
                    secret.name.clone().into(),
                    secret.fingerprint.clone().into(),
                    secret.previews.clone().into(),
                    secret.updated_at.into(),
                ],
            ),
        ];
        match self.driver.transaction(batch).await {
            Err(DriverError::Unchanged(0)) => Err(self.rotated().await),
            other => other.map_err(Into::into),
        }
    }

    /// Unsets a secret; its versions stay while anything may need them. `false` if there was no such secret.
    pub async fn delete_secret(&self, project: &str, scope: &str, name: &str) -> Result<bool> {
        let slot =
            || -> Vec<crate::driver::Param> { vec![project.into(), scope.into(), name.into()] };
        let batch = vec![
            Statement::new(
                "DELETE FROM secrets WHERE project = $1 AND scope = $2 AND name = $3",
                slot(),
            )
            .must_change(),
            Statement::new(
                &self.sql(
                    "UPDATE secret_versions SET retired_at = {now}
                     WHERE project = $1 AND scope = $2 AND name = $3 AND retired_at IS NULL",
                ),
                slot(),
            ),
        ];
        self.changed(batch).await
    }

    /// The project's secrets (every project's with `None`) as they are now.
    pub async fn secrets(&self, project: Option<&str>) -> Result<Vec<SecretRecord>> {
        let columns = "SELECT project, scope, name, fingerprint, previews, updated_at FROM secrets";
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
        rows.iter()
            .map(|row| {
                Ok(SecretRecord {
                    project: text(row, 0)?,
                    scope: text(row, 1)?,
                    name: text(row, 2)?,
                    fingerprint: text(row, 3)?,
                    previews: text(row, 4)?,
                    updated_at: int(row, 5)?,
                })
            })
            .collect()
    }

    /// One version of a secret, by its fingerprint.
    pub async fn secret_version(
        &self,
        project: &str,
        scope: &str,
        name: &str,
        fingerprint: &str,
    ) -> Result<Option<SealedVersion>> {
        let rows = self
            .driver
            .query(
                &format!("{VERSION_COLUMNS} WHERE project = $1 AND scope = $2 AND name = $3 AND fingerprint = $4"),
                vec![project.into(), scope.into(), name.into(), fingerprint.into()],
            )
            .await?;
        rows.first().map(sealed_version).transpose()
    }

    /// The fingerprints of a secret's current value and of the values it had within the last `within_ms`, newest
    /// first: what a forge may still sign with while its secret is being changed.
    pub async fn recent_secret_versions(
        &self,
        project: &str,
        scope: &str,
        name: &str,
        within_ms: i64,
    ) -> Result<Vec<String>> {
        let rows = self
            .driver
            .query(
                &self.sql(
                    "SELECT fingerprint FROM secret_versions
                     WHERE project = $1 AND scope = $2 AND name = $3
                       AND (retired_at IS NULL OR retired_at > {now} - $4)
                     ORDER BY retired_at IS NOT NULL, retired_at DESC",
                ),
                vec![project.into(), scope.into(), name.into(), within_ms.into()],
            )
            .await?;
        rows.iter().map(|row| crate::rows::text(row, 0)).collect()
    }

    /// Every version of every secret, for a key rotation.
    pub async fn secret_versions(&self) -> Result<Vec<SealedVersion>> {
        let rows = self
            .driver
            .query(
                &format!("{VERSION_COLUMNS} ORDER BY project, scope, name, fingerprint"),
                vec![],
            )
            .await?;
        rows.iter().map(sealed_version).collect()
    }

    /// Replaces every version with its resealed one and the key check with `check`, and makes `new_key_id` the
    /// store's key — in one transaction, and only if `old_key_id` is still the store's key
    /// ([`StoreError::KeyRotated`]) and no version sealed under it was written since they were read
    /// ([`StoreError::SecretsChanged`]).
    pub async fn rotate_secrets(
        &self,
        resealed: &[SealedVersion],
        old_key_id: &str,
        new_key_id: &str,
        check: (&str, &str),
    ) -> Result<()> {
        let mut batch = vec![
            Statement::new(
                "UPDATE meta SET value = $1 WHERE key = $2 AND value = $3",
                vec![new_key_id.into(), KEY_ID.into(), old_key_id.into()],
            )
            .must_change(),
        ];
        batch.extend(resealed.iter().map(|version| {
            Statement::new(
                "UPDATE secret_versions SET nonce = $1, ciphertext = $2, key_id = $3
                 WHERE project = $4 AND scope = $5 AND name = $6 AND fingerprint = $7",
                vec![
                    hex(&version.nonce).into(),
                    hex(&version.ciphertext).into(),
                    version.key_id.clone().into(),
                    version.project.clone().into(),
                    version.scope.clone().into(),
                    version.name.clone().into(),
                    version.fingerprint.clone().into(),
                ],
            )
        }));
        let index_of_check = batch.len();
        batch.push(
            Statement::new(
                "UPDATE meta SET value = value WHERE key = $1 AND NOT EXISTS (
                     SELECT 1 FROM secret_versions WHERE key_id <> $2)",
                vec![KEY_ID.into(), new_key_id.into()],
            )
            .must_change(),
        );
        batch.push(Statement::new(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            vec![check.0.into(), check.1.into()],
        ));
        match self.driver.transaction(batch).await {
            Ok(()) => Ok(()),
            Err(DriverError::Unchanged(0)) => Err(self.rotated().await),
            Err(DriverError::Unchanged(index)) if index == index_of_check => {
                Err(StoreError::SecretsChanged)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Removes the project's secret versions that are no longer current (for longer than `grace_ms`, so that a
    /// deployment planned just before a change still finds the value it planned with) and that no recorded state
    /// and no unfinished deployment names. Returns how many went.
    pub async fn prune_secret_versions(&self, project: &str, grace_ms: i64) -> Result<usize> {
        let mut needed = std::collections::BTreeSet::new();
        // Unfinished deployments first, recorded states after: a deployment that commits between the two reads
        // is then in one of them (read the other way round, it would be in neither).
        for deployment in self.unfinished_deployments().await? {
            if deployment.project != project {
                continue;
            }
            for step in &deployment.plan.steps {
                for resource in step.before.iter().chain(&step.after) {
                    needed.extend(preview_plan::secret_versions_of(resource));
                }
            }
        }
        for environment in self.environments(project).await? {
            for resource in self.recorded_state(project, &environment.name).await? {
                needed.extend(preview_plan::secret_versions_of(&resource));
            }
        }
        let rows = self
            .driver
            .query(
                &self.sql(
                    "SELECT scope, name, fingerprint FROM secret_versions
                     WHERE project = $1 AND retired_at IS NOT NULL AND retired_at < {now} - $2",
                ),
                vec![project.into(), grace_ms.into()],
            )
            .await?;
        let mut batch = Vec::new();
        for row in &rows {
            let (scope, name, fingerprint) = (text(row, 0)?, text(row, 1)?, text(row, 2)?);
            if needed.contains(&(format!("{scope}/{name}"), fingerprint.clone())) {
                continue;
            }
            batch.push(Statement::new(
                "DELETE FROM secret_versions WHERE project = $1 AND scope = $2 AND name = $3 AND fingerprint = $4 AND retired_at IS NOT NULL",
                vec![project.into(), scope.into(), name.into(), fingerprint.into()],
            ));
        }
        let pruned = batch.len();
        if pruned > 0 {
            self.driver.transaction(batch).await?;
        }
        Ok(pruned)
    }
}

const KEY_ID: &str = "secrets_key_id";

const VERSION_COLUMNS: &str =
    "SELECT project, scope, name, fingerprint, nonce, ciphertext, key_id FROM secret_versions";

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

fn sealed_version(row: &Row) -> Result<SealedVersion> {
    Ok(SealedVersion {
        project: text(row, 0)?,
        scope: text(row, 1)?,
        name: text(row, 2)?,
        fingerprint: text(row, 3)?,
        nonce: unhex(&text(row, 4)?)?,
        ciphertext: unhex(&text(row, 5)?)?,
        key_id: text(row, 6)?,
    })
}
