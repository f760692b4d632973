//! The daemon's secrets: the master key (checked against the store before anything is written), sealing values
//! set through the API, revealing them to a runtime at apply time, and rotating the key.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use preview_deploy::{EnvironmentAddress, RuntimeError, SecretSource};
use preview_plan::SecretVersions;
use preview_secrets::{KeySource, MasterKey, Sealed, Secret, Slot};
use preview_store::{SecretRecord, Store};

const KEY_CHECK: &str = "secrets_key_check";

pub(crate) struct Vault {
    store: Arc<Store>,
    key: RwLock<Arc<MasterKey>>,
    key_file: PathBuf,
}

impl Vault {
    /// Loads the master key (`PREVIEW_MASTER_KEY`, else `<data>/master.key`, created on first use) and checks it
    /// against the store. A wrong key is refused here, before the daemon writes anything.
    pub(crate) async fn open(data_dir: &Path, store: Arc<Store>) -> Result<Vault, String> {
        let key_file = data_dir.join("master.key");
        let check = store.meta(KEY_CHECK).await.map_err(|e| e.to_string())?;
        let key = match &check {
            Some(check) => {
                let check =
                    Sealed::from_text(check).ok_or("the store's key check is unreadable")?;
                let key = recover_rotation(&key_file, &check)?
                    .map_or_else(|| MasterKey::load(&key_file), Ok)
                    .map_err(|e| e.to_string())?;
                key.verify(&check).map_err(|e| e.to_string())?;
                key
            }
            None => {
                let key = MasterKey::load(&key_file).map_err(|e| e.to_string())?;
                let check = key.key_check().map_err(|e| e.to_string())?;
                store
                    .set_meta(KEY_CHECK, &check.to_text())
                    .await
                    .map_err(|e| e.to_string())?;
                key
            }
        };
        Ok(Vault {
            store,
            key: RwLock::new(Arc::new(key)),
            key_file,
        })
    }

    fn key(&self) -> Arc<MasterKey> {
        self.key
            .read()
            .map(|k| Arc::clone(&k))
            .unwrap_or_else(|poisoned| Arc::clone(&poisoned.into_inner()))
    }

    /// Seals `value` for its slot; the record holds no value.
    pub(crate) fn seal(
        &self,
        project: &str,
        scope: &str,
        name: &str,
        value: &Secret,
        previews: &str,
        now: i64,
    ) -> Result<SecretRecord, String> {
        let key = self.key();
        let slot = Slot {
            project,
            scope,
            name,
        };
        let sealed = key.seal(&slot, value).map_err(|e| e.to_string())?;
        Ok(SecretRecord {
            project: project.to_owned(),
            scope: scope.to_owned(),
            name: name.to_owned(),
            nonce: sealed.nonce,
            ciphertext: sealed.ciphertext,
            fingerprint: key.fingerprint(&slot, value),
            previews: previews.to_owned(),
            updated_at: now,
        })
    }

    /// Each secret's fingerprint under the name resources use, for the project.
    pub(crate) async fn versions(&self, project: &str) -> Result<SecretVersions, String> {
        let records = self
            .store
            .secrets(Some(project))
            .await
            .map_err(|e| e.to_string())?;
        Ok(records
            .into_iter()
            .map(|r| (format!("{}/{}", r.scope, r.name), r.fingerprint))
            .collect())
    }

    /// Re-seals every secret under a new key in one store transaction. The new key is written to
    /// `master.key.new` first and moved over `master.key` after the commit; a crash in between is repaired at
    /// the next start by whichever key opens the store's key check.
    pub(crate) async fn rotate(&self) -> Result<usize, String> {
        let old = self.key();
        if *old.source() == KeySource::Environment {
            return Err(format!(
                "the master key comes from {}; rotation writes a key file, so unset it and keep the key in {} instead",
                preview_secrets::KEY_ENV,
                self.key_file.display()
            ));
        }
        let new = MasterKey::generate().map_err(|e| e.to_string())?;
        let mut resealed = Vec::new();
        for record in self.store.secrets(None).await.map_err(|e| e.to_string())? {
            let slot = Slot {
                project: &record.project,
                scope: &record.scope,
                name: &record.name,
            };
            let sealed = Sealed {
                nonce: record.nonce.clone(),
                ciphertext: record.ciphertext.clone(),
            };
            let value = old.open(&slot, &sealed).map_err(|e| e.to_string())?;
            let again = new.seal(&slot, &value).map_err(|e| e.to_string())?;
            // The fingerprint names the value's version; the value did not change, so neither does it.
            resealed.push(SecretRecord {
                nonce: again.nonce,
                ciphertext: again.ciphertext,
                ..record
            });
        }
        let pending = pending_file(&self.key_file);
        new.write(&pending).map_err(|e| e.to_string())?;
        let check = new.key_check().map_err(|e| e.to_string())?;
        if let Err(error) = self
            .store
            .rotate_secrets(&resealed, KEY_CHECK, &check.to_text())
            .await
        {
            let _ = std::fs::remove_file(&pending);
            return Err(error.to_string());
        }
        std::fs::rename(&pending, &self.key_file)
            .map_err(|e| format!("cannot move the new key into place: {e}"))?;
        let loaded = MasterKey::load(&self.key_file).map_err(|e| e.to_string())?;
        if let Ok(mut key) = self.key.write() {
            *key = Arc::new(loaded);
        }
        Ok(resealed.len())
    }
}

fn pending_file(key_file: &Path) -> PathBuf {
    key_file.with_extension("key.new")
}

/// After a crash during a rotation: if the pending key opens the store, the rotation committed — finish it.
fn recover_rotation(key_file: &Path, check: &Sealed) -> Result<Option<MasterKey>, String> {
    let pending = pending_file(key_file);
    if std::env::var_os(preview_secrets::KEY_ENV).is_some() || !pending.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&pending).map_err(|e| e.to_string())?;
    match MasterKey::from_hex(&text) {
        Ok(key) if key.verify(check).is_ok() => {
            std::fs::rename(&pending, key_file).map_err(|e| e.to_string())?;
            MasterKey::load(key_file)
                .map(Some)
                .map_err(|e| e.to_string())
        }
        _ => {
            let _ = std::fs::remove_file(&pending);
            Ok(None)
        }
    }
}

#[async_trait]
impl SecretSource for Vault {
    async fn reveal(&self, env: &EnvironmentAddress, name: &str) -> Result<Secret, RuntimeError> {
        let (scope, secret) = name
            .rsplit_once('/')
            .ok_or_else(|| RuntimeError::new(format!("`{name}` is not a secret name")))?;
        if let Some(database) = scope.strip_prefix("database:") {
            return Ok(self.key().derived_secret(&format!(
                "database-password/{}/{}/{database}",
                env.project, env.environment
            )));
        }
        let records = self
            .store
            .secrets(Some(&env.project))
            .await
            .map_err(|e| RuntimeError::new(e.to_string()))?;
        let record = records.iter().find(|r| r.scope == scope && r.name == secret).ok_or_else(|| {
            RuntimeError::new(format!(
                "secret `{secret}` at {scope} has no value; set it with `preview secret set {secret} --scope {scope}`"
            ))
        })?;
        let slot = Slot {
            project: &env.project,
            scope,
            name: secret,
        };
        let sealed = Sealed {
            nonce: record.nonce.clone(),
            ciphertext: record.ciphertext.clone(),
        };
        self.key()
            .open(&slot, &sealed)
            .map_err(|e| RuntimeError::new(e.to_string()))
    }
}
