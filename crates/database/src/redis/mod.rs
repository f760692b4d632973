//! Redis, the second engine: a server per environment (Redis has no users' databases to isolate inside one
//! server), listening on the host's loopback only, with the default user off, an administrator for `preview` and an
//! ACL user per environment that may run every command but the server's administration (no `CONFIG`, `DEBUG`,
//! `MODULE`, `REPLICAOF`, `SHUTDOWN`, …) and `MIGRATE` (which would open connections from the server's network to
//! anywhere). Passwords reach the server only as SHA-256 digests in its configuration.
//!
//! `commands` (a seed file's lines) and the configuration here are pure; `client` and [`save_snapshot`] talk to a
//! server; the runtime supervises the server's process itself.

pub mod client;
pub mod commands;

use std::path::{Path, PathBuf};
use std::time::Duration;

use preview_secrets::Secret;

use crate::DatabaseError;
use client::{Answer, Client};

/// The administrator's user name on each server.
pub const ADMIN: &str = "preview-admin";

/// What an environment's user may not run: the server's administration, and `MIGRATE`.
pub const USER_RULES: &str = "~* &* +@all -@admin -migrate";

/// The name of the snapshot file in a server's data directory.
pub const SNAPSHOT: &str = "dump.rdb";

/// The `redis-server` program and its major version.
#[derive(Debug, Clone)]
pub struct Program {
    pub path: PathBuf,
    pub major: u16,
}

impl Program {
    /// The installed `redis-server`, when it is of major version `version`; else an error saying what is here.
    pub fn find(version: u16) -> Result<Program, DatabaseError> {
        let path = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or_else(|| {
                DatabaseError::Missing(format!(
                    "Redis {version} is not installed (no redis-server); install the distribution's `redis-server` package"
                ))
            })?;
        let output = std::process::Command::new(&path)
            .arg("--version")
            .env_clear()
            .output()
            .map_err(|e| DatabaseError::Server(format!("cannot run {}: {e}", path.display())))?;
        let text = String::from_utf8_lossy(&output.stdout);
        let installed = installed_version(&text).ok_or_else(|| {
            DatabaseError::Server(format!(
                "{} --version printed no version: {}",
                path.display(),
                text.trim()
            ))
        })?;
        let major = installed
            .split('.')
            .next()
            .and_then(|m| m.parse::<u16>().ok())
            .unwrap_or_default();
        if major != version {
            return Err(DatabaseError::Missing(format!(
                "Redis {version} is not installed: this machine has Redis {installed}; set `version: {major}` or install Redis {version}"
            )));
        }
        Ok(Program { path, major })
    }
}

/// `7.0.15` out of `Redis server v=7.0.15 sha=… malloc=…`.
fn installed_version(text: &str) -> Option<&str> {
    text.split_whitespace()
        .find_map(|word| word.strip_prefix("v="))
}

/// How a server keeps its data on disk: `rdb`, `aof` or `none`, as the spec says.
pub fn persistence_lines(persistence: &str) -> &'static str {
    match persistence {
        "aof" => "appendonly yes\nappendfsync everysec\nsave \"\"\n",
        "none" => "appendonly no\nsave \"\"\n",
        _ => "appendonly no\nsave 3600 1 300 100 60 10000\n",
    }
}

/// A server's configuration file.
pub struct ServerConfig<'a> {
    pub major: u16,
    pub port: u16,
    /// The data directory, as the server sees it.
    pub dir: &'a Path,
    pub persistence: &'a str,
    /// The environment's user and its password.
    pub user: &'a str,
    pub password: &'a Secret,
    /// The administrator's password.
    pub admin_password: &'a Secret,
}

impl ServerConfig<'_> {
    pub fn text(&self) -> String {
        let mut text = format!(
            "# Written by preview each time this server starts.\n\
             bind 127.0.0.1\nport {}\nprotected-mode yes\ndaemonize no\nlogfile \"\"\n\
             dir {}\ndbfilename {SNAPSHOT}\ndatabases 1\n{}",
            self.port,
            quoted(&self.dir.display().to_string()),
            persistence_lines(self.persistence),
        );
        // The process's title names its configuration, so that a server left by a killed daemon is found as this
        // one and no other.
        text.push_str("proc-title-template \"{title} {config-file}\"\n");
        if self.major >= 7 {
            text.push_str(
                "enable-debug-command no\nenable-module-command no\nenable-protected-configs no\n",
            );
        }
        text.push_str(&format!(
            "user default off\nuser {ADMIN} on #{} ~* &* +@all\nuser {} on #{} {USER_RULES}\n",
            digest(self.admin_password),
            self.user,
            digest(self.password),
        ));
        text
    }
}

/// A password as Redis's ACL stores it: its SHA-256, in hex.
fn digest(password: &Secret) -> String {
    ring::digest::digest(&ring::digest::SHA256, password.expose().as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Whether `bytes` begin as an RDB file does.
pub fn is_rdb(bytes: &[u8]) -> bool {
    bytes.starts_with(b"REDIS")
}

/// Has the server write a snapshot of its data now (`BGSAVE`) and waits until it is written: after this, its
/// data directory's [`SNAPSHOT`] holds its data as of this call.
pub async fn save_snapshot(admin: &mut Client, timeout: Duration) -> Result<(), DatabaseError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let before = last_save(admin).await?;
    loop {
        match admin.command(&[b"BGSAVE"]).await? {
            Answer::Error(message) if message.contains("in progress") => {
                // One the server began itself: wait for it, then ask for one that starts after this call.
                wait_saved(admin, deadline).await?;
            }
            Answer::Error(message) => {
                return Err(DatabaseError::Server(format!(
                    "Redis refused to write a snapshot: {message}"
                )));
            }
            _ => break,
        }
    }
    wait_saved(admin, deadline).await?;
    let info = info(admin, "persistence").await?;
    if info.get("rdb_last_bgsave_status").map(String::as_str) != Some("ok") {
        return Err(DatabaseError::Server(format!(
            "Redis could not write its snapshot (rdb_last_bgsave_status: {}); its log says why",
            info.get("rdb_last_bgsave_status")
                .map_or("unknown", String::as_str)
        )));
    }
    if last_save(admin).await? < before {
        return Err(DatabaseError::Server(
            "Redis's last snapshot is older than the one asked for".to_owned(),
        ));
    }
    Ok(())
}

/// Turns the append-only file on for a server that runs without it, and waits until the file holds all its data.
pub async fn turn_on_append_only(
    admin: &mut Client,
    timeout: Duration,
) -> Result<(), DatabaseError> {
    let deadline = tokio::time::Instant::now() + timeout;
    admin
        .expect(
            &[b"CONFIG", b"SET", b"appendonly", b"yes"],
            "Redis could not turn its append-only file on",
        )
        .await?;
    loop {
        let info = info(admin, "persistence").await?;
        let value = |key: &str| info.get(key).map(String::as_str);
        if value("aof_enabled") == Some("1")
            && value("aof_rewrite_in_progress") == Some("0")
            && value("aof_rewrite_scheduled") == Some("0")
        {
            return match value("aof_last_bgrewrite_status") {
                Some("ok") => Ok(()),
                status => Err(DatabaseError::Server(format!(
                    "Redis could not write its append-only file (aof_last_bgrewrite_status: {}); its log says why",
                    status.unwrap_or("unknown")
                ))),
            };
        }
        if tokio::time::Instant::now() > deadline {
            return Err(DatabaseError::Server(
                "Redis's append-only file was not written in time".to_owned(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_saved(
    admin: &mut Client,
    deadline: tokio::time::Instant,
) -> Result<(), DatabaseError> {
    loop {
        let info = info(admin, "persistence").await?;
        if info.get("rdb_bgsave_in_progress").map(String::as_str) == Some("0") {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(DatabaseError::Server(
                "Redis's snapshot did not finish in time".to_owned(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn last_save(admin: &mut Client) -> Result<i64, DatabaseError> {
    match admin.expect(&[b"LASTSAVE"], "LASTSAVE").await? {
        Answer::Integer(at) => Ok(at),
        other => Err(DatabaseError::Server(format!(
            "LASTSAVE answered {}",
            other.text()
        ))),
    }
}

/// A section of `INFO`, as key → value.
pub async fn info(
    admin: &mut Client,
    section: &str,
) -> Result<std::collections::BTreeMap<String, String>, DatabaseError> {
    let answer = admin
        .expect(&[b"INFO", section.as_bytes()], "INFO")
        .await?
        .text();
    Ok(answer
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_holds_digests_not_passwords() {
        let password = Secret::new("env-password".to_owned());
        let admin = Secret::new("admin-password".to_owned());
        let text = ServerConfig {
            major: 7,
            port: 40001,
            dir: Path::new("/run/preview/redis/data"),
            persistence: "aof",
            user: "shop_pr_1_cache",
            password: &password,
            admin_password: &admin,
        }
        .text();
        assert!(!text.contains("env-password") && !text.contains("admin-password"));
        assert!(text.contains("\nbind 127.0.0.1\nport 40001\n"));
        assert!(text.contains("dir \"/run/preview/redis/data\"\n"));
        assert!(text.contains("appendonly yes\n"));
        assert!(text.contains("user default off\n"));
        // sha256("env-password")
        let env_digest = digest(&password);
        assert_eq!(env_digest.len(), 64);
        assert!(text.contains(&format!(
            "user shop_pr_1_cache on #{env_digest} {USER_RULES}\n"
        )));
        assert!(text.contains("enable-debug-command no\n"));
    }

    #[test]
    fn persistence_is_as_the_spec_says() {
        assert!(persistence_lines("rdb").contains("save 3600"));
        assert!(
            persistence_lines("none").contains("save \"\"")
                && persistence_lines("none").contains("appendonly no")
        );
        assert!(persistence_lines("aof").contains("appendonly yes"));
    }

    #[test]
    fn the_installed_version_is_read_from_redis_servers_words() {
        assert_eq!(
            installed_version("Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64"),
            Some("7.0.15")
        );
        assert_eq!(installed_version("nothing"), None);
    }
}
