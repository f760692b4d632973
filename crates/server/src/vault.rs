//! The daemon's secrets: the master key (checked against the store before anything is written), sealing values
//! set through the API, revealing the version a resource names to a runtime at apply time, and rotating the key.
//!
//! Every sealed value carries the id of the key that sealed it, and the store takes a value only under its
//! current key: a rotation and secret writes never interleave into a value sealed under a key that is gone. A
//! daemon sharing the store with one that rotated the key notices it at its next use of a secret, reads its key
//! file again, and says plainly what it needs when the new key is not there.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use preview_deploy::{EnvironmentAddress, RuntimeError, SecretSource};
use preview_plan::SecretVersions;
use preview_secrets::{KeySource, MasterKey, Sealed, Secret, Slot};
use preview_store::{SealedVersion, SecretRecord, Store, StoreError};

const KEY_CHECK: &str = "secrets_key_check";

/// How long a secret's replaced value is kept at least, for deployments planned just before the change.
const VERSION_GRACE_MS: i64 = 10 * 60 * 1000;

pub(crate) struct Vault {
    store: Arc<Store>,
    key: RwLock<Arc<MasterKey>>,
    key_file: PathBuf,
    /// Held while this daemon rotates the key: a second rotation is refused, not queued.
    rotating: tokio::sync::Mutex<()>,
    /// Secret writes and reveals hold it shared; a rotation holds it alone from reading the values until the new
    /// key is in place, so that it is neither starved by writes nor seen half-done (writes queue behind it).
    exclusive: tokio::sync::RwLock<()>,
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
        // Values sealed before keys had ids were sealed with the key that opens the check.
        store
            .adopt_key_id(&key.id())
            .await
            .map_err(|e| e.to_string())?;
        Ok(Vault {
            store,
            key: RwLock::new(Arc::new(key)),
            key_file,
            rotating: tokio::sync::Mutex::new(()),
            exclusive: tokio::sync::RwLock::new(()),
        })
    }

    fn key(&self) -> Arc<MasterKey> {
        self.key
            .read()
            .map(|k| Arc::clone(&k))
            .unwrap_or_else(|poisoned| Arc::clone(&poisoned.into_inner()))
    }

    fn replace_key(&self, key: MasterKey) -> Arc<MasterKey> {
        let key = Arc::new(key);
        if let Ok(mut current) = self.key.write() {
            *current = Arc::clone(&key);
        }
        key
    }

    /// The key with id `key_id`: this daemon's, or — after another daemon rotated it — the one its key file (or
    /// `PREVIEW_MASTER_KEY`) holds now.
    fn key_with_id(&self, key_id: &str) -> Result<Arc<MasterKey>, String> {
        let key = self.key();
        if key.id() == key_id {
            return Ok(key);
        }
        if let Ok(again) = MasterKey::load(&self.key_file)
            && again.id() == key_id
        {
            return Ok(self.replace_key(again));
        }
        // A rotation of this daemon whose commit was not known to have landed left the new key pending: the store
        // now says it did, so finish moving it into place (or find that another caller just did).
        let pending = pending_file(&self.key_file, key_id);
        if std::env::var_os(preview_secrets::KEY_ENV).is_none()
            && let Ok(text) = std::fs::read_to_string(&pending)
            && let Ok(new) = MasterKey::from_hex(&text)
            && new.id() == key_id
        {
            let _ = std::fs::rename(&pending, &self.key_file);
            if let Ok(loaded) = MasterKey::load(&self.key_file)
                && loaded.id() == key_id
            {
                return Ok(self.replace_key(loaded));
            }
        }
        Err(format!(
            "the master key was rotated (the store's secrets are sealed with key `{key_id}`, this daemon has key `{}`); give this daemon the new key — in {} or PREVIEW_MASTER_KEY — and it is used from the next request on",
            key.id(),
            self.key_file.display()
        ))
    }

    /// The store's key, as this daemon has it.
    async fn current_key(&self) -> Result<Arc<MasterKey>, String> {
        match self.store.key_id().await.map_err(|e| e.to_string())? {
            Some(key_id) => self.key_with_id(&key_id),
            None => Ok(self.key()),
        }
    }

    /// Seals `value` for its slot and makes it the secret's current value; earlier values are kept while a
    /// recorded state or an unfinished deployment names them. The record holds no value.
    pub(crate) async fn set(
        &self,
        project: &str,
        scope: &str,
        name: &str,
        value: &Secret,
        previews: &str,
        now: i64,
    ) -> Result<SecretRecord, String> {
        let _shared = self.exclusive.read().await;
        // A rotation committed (by another daemon) between sealing and storing makes the store refuse: seal again
        // with the new key.
        for _ in 0..3 {
            let key = self.current_key().await?;
            let slot = Slot {
                project,
                scope,
                name,
            };
            let sealed = key.seal(&slot, value).map_err(|e| e.to_string())?;
            let record = SecretRecord {
                project: project.to_owned(),
                scope: scope.to_owned(),
                name: name.to_owned(),
                fingerprint: key.fingerprint(&slot, value),
                previews: previews.to_owned(),
                updated_at: now,
            };
            let version = SealedVersion {
                project: project.to_owned(),
                scope: scope.to_owned(),
                name: name.to_owned(),
                fingerprint: record.fingerprint.clone(),
                nonce: sealed.nonce,
                ciphertext: sealed.ciphertext,
                key_id: key.id(),
            };
            match self.store.put_secret(&record, &version).await {
                Ok(()) => {
                    self.prune(project).await;
                    return Ok(record);
                }
                Err(StoreError::KeyRotated { .. }) => continue,
                Err(error) => return Err(error.to_string()),
            }
        }
        Err("the master key kept changing while the secret was written; try again".to_owned())
    }

    /// Unsets a secret; `false` if there was none.
    pub(crate) async fn unset(
        &self,
        project: &str,
        scope: &str,
        name: &str,
    ) -> Result<bool, String> {
        let _shared = self.exclusive.read().await;
        let removed = self
            .store
            .delete_secret(project, scope, name)
            .await
            .map_err(|e| e.to_string())?;
        self.prune(project).await;
        Ok(removed)
    }

    /// Drops the project's old secret values nothing needs any more. A failure only delays it.
    pub(crate) async fn prune(&self, project: &str) {
        if let Err(error) = self
            .store
            .prune_secret_versions(project, VERSION_GRACE_MS)
            .await
        {
            tracing::warn!("cannot prune old secret values of `{project}`: {error}");
        }
    }

    /// The values an environment's output must not show: every current secret of the project, and the passwords
    /// of the environment's databases (`databases`, by service).
    pub(crate) async fn values_to_hide(
        &self,
        env: &EnvironmentAddress,
        databases: &[String],
    ) -> Result<Vec<Secret>, String> {
        let mut values = Vec::new();
        for (name, fingerprint) in self.versions(&env.project).await? {
            if let Ok(value) = self.reveal(env, &name, &fingerprint).await {
                values.push(value);
            }
        }
        for database in databases {
            if let Ok(value) = self
                .reveal(env, &format!("database:{database}/password"), "")
                .await
            {
                values.push(value);
            }
        }
        Ok(values)
    }

    /// Each secret's current fingerprint under the name resources use, for the project.
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

    /// Re-seals every value of every secret under a new key in one store transaction. The new key is written to
    /// `master.key.<id>.new` first and moved over `master.key` after the commit; a crash in between is repaired at
    /// the next start by whichever key opens the store's key check. Refused while another rotation runs, here
    /// or in a daemon sharing the store.
    /// The project secret `name`'s current value and the values it had within the grace period kept for
    /// replaced values, newest first (a webhook signed just before the secret changed still verifies).
    pub(crate) async fn recent_values(
        &self,
        project: &str,
        name: &str,
    ) -> Result<Vec<Secret>, String> {
        let fingerprints = self
            .store
            .recent_secret_versions(project, "project", name, VERSION_GRACE_MS)
            .await
            .map_err(|e| e.to_string())?;
        let address = EnvironmentAddress {
            project: project.to_owned(),
            environment: String::new(),
        };
        let mut values = Vec::new();
        for fingerprint in fingerprints {
            values.push(
                self.reveal(&address, &format!("project/{name}"), &fingerprint)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        Ok(values)
    }

    pub(crate) async fn rotate(&self) -> Result<usize, String> {
        let _rotating = self
            .rotating
            .try_lock()
            .map_err(|_| "a key rotation is already running; wait for it to end".to_owned())?;
        if *self.key().source() == KeySource::Environment {
            return Err(format!(
                "the master key comes from {}; rotation writes a key file, so unset it and keep the key in {} instead",
                preview_secrets::KEY_ENV,
                self.key_file.display()
            ));
        }
        let _alone = self.exclusive.write().await;
        // A secret written while the values were read makes the store refuse: read them again.
        for _ in 0..5 {
            let old = self.current_key().await?;
            let new = MasterKey::generate().map_err(|e| e.to_string())?;
            let mut resealed = Vec::new();
            for version in self
                .store
                .secret_versions()
                .await
                .map_err(|e| e.to_string())?
            {
                let slot = Slot {
                    project: &version.project,
                    scope: &version.scope,
                    name: &version.name,
                };
                let sealed = Sealed {
                    nonce: version.nonce.clone(),
                    ciphertext: version.ciphertext.clone(),
                };
                let value = self
                    .key_with_id(&version.key_id)?
                    .open(&slot, &sealed)
                    .map_err(|e| e.to_string())?;
                let again = new.seal(&slot, &value).map_err(|e| e.to_string())?;
                // The fingerprint names the value's version; the value did not change, so neither does it.
                resealed.push(SealedVersion {
                    nonce: again.nonce,
                    ciphertext: again.ciphertext,
                    key_id: new.id(),
                    ..version
                });
            }
            // Named by its id: a later rotation never writes over a key whose rotation may yet turn out to have
            // been made.
            let pending = pending_file(&self.key_file, &new.id());
            new.write(&pending).map_err(|e| e.to_string())?;
            let check = new.key_check().map_err(|e| e.to_string())?;
            match self
                .store
                .rotate_secrets(
                    &resealed,
                    &old.id(),
                    &new.id(),
                    (KEY_CHECK, &check.to_text()),
                )
                .await
            {
                Ok(()) => {
                    self.take_new_key(&pending)?;
                    return Ok(resealed.len());
                }
                Err(StoreError::SecretsChanged) => {
                    let _ = std::fs::remove_file(&pending);
                }
                Err(StoreError::KeyRotated { .. }) => {
                    let _ = std::fs::remove_file(&pending);
                    return Err(
                        "another daemon sharing the store rotated the key meanwhile; this rotation was not made"
                            .to_owned(),
                    );
                }
                Err(error) => {
                    // The commit may have landed (a connection that broke while committing), or may yet become
                    // visible: the pending key is the only copy of the key its secrets would be sealed with, so it
                    // is kept until the store's key says which happened (the daemon settles that when it next meets
                    // the new key's id, or when it starts).
                    if let Ok(Some(id)) = self.store.key_id().await
                        && id == new.id()
                    {
                        self.take_new_key(&pending)?;
                        return Ok(resealed.len());
                    }
                    return Err(format!(
                        "{error}; whether the rotation was made is not known yet, so the new key is kept in {}",
                        pending.display()
                    ));
                }
            }
        }
        Err("secrets kept changing while the key was rotated; try again".to_owned())
    }

    /// After a rotation's commit: the pending key becomes the key file and this daemon's key.
    fn take_new_key(&self, pending: &Path) -> Result<(), String> {
        std::fs::rename(pending, &self.key_file)
            .map_err(|e| format!("cannot move the new key into place: {e}"))?;
        let loaded = MasterKey::load(&self.key_file).map_err(|e| e.to_string())?;
        self.replace_key(loaded);
        Ok(())
    }
}

/// Where a rotation keeps the new key `id` until its commit is known: `master.key.<id>.new`.
fn pending_file(key_file: &Path, id: &str) -> PathBuf {
    key_file.with_extension(format!("key.{id}.new"))
}

/// The keys rotations left pending next to `key_file`.
fn pending_files(key_file: &Path) -> Vec<PathBuf> {
    let Some(dir) = key_file.parent() else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("master.key.") && n.ends_with(".new"))
        })
        .collect()
}

/// At start, after a crash or an unknown outcome during a rotation: a pending key that opens the store's key check
/// is the store's key — the rotation was made, so it becomes the key file. Pending keys that do not open it belong
/// to rotations that were not made, and go.
fn recover_rotation(key_file: &Path, check: &Sealed) -> Result<Option<MasterKey>, String> {
    if std::env::var_os(preview_secrets::KEY_ENV).is_some() {
        return Ok(None);
    }
    let pending = pending_files(key_file);
    let made = pending.iter().find(|path| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| MasterKey::from_hex(&text).ok())
            .is_some_and(|key| key.verify(check).is_ok())
    });
    let recovered = match made {
        Some(path) => {
            std::fs::rename(path, key_file).map_err(|e| e.to_string())?;
            Some(MasterKey::load(key_file).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    for path in pending.iter().filter(|path| Some(*path) != made) {
        let _ = std::fs::remove_file(path);
    }
    Ok(recovered)
}

#[async_trait]
impl SecretSource for Vault {
    async fn reveal(
        &self,
        env: &EnvironmentAddress,
        name: &str,
        version: &str,
    ) -> Result<Secret, RuntimeError> {
        let (scope, secret) = name
            .rsplit_once('/')
            .ok_or_else(|| RuntimeError::new(format!("`{name}` is not a secret name")))?;
        let _shared = self.exclusive.read().await;
        if let Some(database) = scope.strip_prefix("database:") {
            return Ok(self.key().derived_secret(&format!(
                "database-password/{}/{}/{database}",
                env.project, env.environment
            )));
        }
        let sealed = self
            .store
            .secret_version(&env.project, scope, secret, version)
            .await
            .map_err(|e| RuntimeError::new(e.to_string()))?
            .ok_or_else(|| {
                RuntimeError::new(format!(
                    "secret `{secret}` at {scope} has no value with version {version} (it was unset or replaced, and that value was dropped); set it with `preview secret set {secret} --scope {scope}` and deploy again"
                ))
            })?;
        let slot = Slot {
            project: &env.project,
            scope,
            name: secret,
        };
        self.key_with_id(&sealed.key_id)
            .map_err(RuntimeError::new)?
            .open(
                &slot,
                &Sealed {
                    nonce: sealed.nonce,
                    ciphertext: sealed.ciphertext,
                },
            )
            .map_err(|e| RuntimeError::new(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rotation whose commit was not known to have landed leaves its key pending under its own id; at the next
    /// start the one that opens the store's key check becomes the key, and the others go.
    #[test]
    fn the_pending_key_that_opens_the_store_is_kept_and_the_others_go() {
        let dir = preview_testing::TempDir::new("vault-pending");
        let key_file = dir.path().join("master.key");
        let old = MasterKey::generate().expect("old key");
        old.write(&key_file).expect("write");
        let made = MasterKey::generate().expect("key of a rotation that was made");
        let not_made = MasterKey::generate().expect("key of a rotation that was not");
        made.write(&pending_file(&key_file, &made.id()))
            .expect("pending");
        not_made
            .write(&pending_file(&key_file, &not_made.id()))
            .expect("pending");
        // The store's check was sealed with the rotation that was made.
        let check = made.key_check().expect("check");
        let recovered = recover_rotation(&key_file, &check)
            .expect("recovery")
            .expect("a key");
        assert_eq!(recovered.id(), made.id());
        assert_eq!(
            MasterKey::load(&key_file).expect("key file").id(),
            made.id()
        );
        assert!(pending_files(&key_file).is_empty(), "nothing left pending");
        // Nothing pending that opens the check: the key file stays as it was.
        not_made
            .write(&pending_file(&key_file, &not_made.id()))
            .expect("pending");
        assert!(
            recover_rotation(&key_file, &check)
                .expect("recovery")
                .is_none()
        );
        assert_eq!(
            MasterKey::load(&key_file).expect("key file").id(),
            made.id()
        );
        assert!(pending_files(&key_file).is_empty());
    }
}
