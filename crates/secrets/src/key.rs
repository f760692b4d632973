//! The master key: from `PREVIEW_MASTER_KEY`, or from a key file created with mode 0600 on first use.

use std::io::Write;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::sealed::SecretError;

pub const KEY_ENV: &str = "PREVIEW_MASTER_KEY";

/// 32 random bytes; zeroed on drop, never printed.
pub struct MasterKey {
    bytes: Zeroizing<[u8; 32]>,
    source: KeySource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Environment,
    File(PathBuf),
    /// Made in memory (tests, or a rotation not yet written).
    Generated,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey([redacted], {:?})", self.source)
    }
}

impl MasterKey {
    pub fn generate() -> Result<MasterKey, SecretError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), bytes.as_mut())
            .map_err(|_| SecretError::Random)?;
        Ok(MasterKey {
            bytes,
            source: KeySource::Generated,
        })
    }

    /// 64 hex digits.
    pub fn from_hex(text: &str) -> Result<MasterKey, SecretError> {
        let invalid =
            || SecretError::Key("a master key is 64 hexadecimal digits (32 bytes)".to_owned());
        let decoded = Zeroizing::new(crate::hex::decode(text.trim()).ok_or_else(invalid)?);
        let mut bytes = Zeroizing::new([0u8; 32]);
        if decoded.len() != bytes.len() {
            return Err(invalid());
        }
        bytes.copy_from_slice(&decoded);
        Ok(MasterKey {
            bytes,
            source: KeySource::Generated,
        })
    }

    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(crate::hex::encode(self.bytes.as_ref()))
    }

    pub fn source(&self) -> &KeySource {
        &self.source
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// `PREVIEW_MASTER_KEY` if set, else `file`, created with mode 0600 if it does not exist.
    pub fn load(file: &Path) -> Result<MasterKey, SecretError> {
        if let Some(value) = std::env::var_os(KEY_ENV) {
            let text = Zeroizing::new(value.to_string_lossy().into_owned());
            let mut key = MasterKey::from_hex(&text)
                .map_err(|e| SecretError::Key(format!("{KEY_ENV}: {e}")))?;
            key.source = KeySource::Environment;
            return Ok(key);
        }
        match std::fs::read_to_string(file) {
            Ok(text) => {
                let text = Zeroizing::new(text);
                let mut key = MasterKey::from_hex(&text)
                    .map_err(|e| SecretError::Key(format!("{}: {e}", file.display())))?;
                key.source = KeySource::File(file.to_path_buf());
                Ok(key)
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let mut key = MasterKey::generate()?;
                key.write(file)?;
                key.source = KeySource::File(file.to_path_buf());
                Ok(key)
            }
            Err(error) => Err(SecretError::Key(format!(
                "cannot read {}: {error}",
                file.display()
            ))),
        }
    }

    /// Writes the key to `file` with mode 0600 from creation, replacing it atomically.
    pub fn write(&self, file: &Path) -> Result<(), SecretError> {
        use std::os::unix::fs::OpenOptionsExt;
        let fail =
            |e: std::io::Error| SecretError::Key(format!("cannot write {}: {e}", file.display()));
        let temporary = file.with_extension("tmp");
        let _ = std::fs::remove_file(&temporary);
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(fail)?;
        out.write_all(self.to_hex().as_bytes()).map_err(fail)?;
        out.sync_all().map_err(fail)?;
        std::fs::rename(&temporary, file).map_err(fail)
    }
}
