//! The API token: made on first start, kept only as a hash in the store, and handed to the CLI through a client
//! config file that only its owner can read.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What the CLI needs to reach the daemon.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientConfig {
    /// `http://127.0.0.1:PORT`
    pub address: String,
    pub token: String,
    /// Where the gateway listens (`127.0.0.1:8443`), when the daemon runs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_https: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_http: Option<String>,
    /// Where `/metrics` is served without the token (`http://127.0.0.1:PORT/metrics`), with `--metrics-listen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
}

pub fn client_config_path(data_dir: &Path) -> PathBuf {
    data_dir.join("client.json")
}

pub(crate) fn sha256_hex(text: &str) -> String {
    preview_secrets::hex::encode(
        ring::digest::digest(&ring::digest::SHA256, text.as_bytes()).as_ref(),
    )
}

pub(crate) fn new_token() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| "the system's random source failed".to_owned())?;
    Ok(preview_secrets::hex::encode(&bytes))
}

/// True when `presented` is the token whose hash is stored; compares hashes in constant time.
pub(crate) fn token_matches(presented: &str, stored_hash: &str) -> bool {
    constant_time_eq(&sha256_hex(presented), stored_hash)
}

/// Whether two strings are equal, in a time that depends on their lengths only.
pub(crate) fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

pub(crate) fn read_client_config(path: &Path) -> Option<ClientConfig> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Writes the file with mode 0600 from the start (never readable by others, even briefly), by rename.
pub(crate) fn write_client_config(path: &Path, config: &ClientConfig) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension("json.tmp");
    let _ = std::fs::remove_file(&temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(&serde_json::to_vec_pretty(config).map_err(std::io::Error::other)?)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}
