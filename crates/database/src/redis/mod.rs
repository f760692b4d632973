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

/// How much memory an environment's Redis may hold, in MiB.
pub const MAX_MEMORY_MB: u32 = 512;

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
        // The process keeps its command line (which names its configuration) and its environment (which carries
        // the runtime's marker): rewriting its title would overwrite both, and a server left by a killed daemon
        // would not be found as its own.
        text.push_str("set-proc-title no\n");
        // What an environment's data may take of the machine's memory (and so of its disk); writes past it are
        // refused, nothing is evicted. Payloads (RESTORE, RDB files) are checked whole before they are loaded.
        text.push_str(&format!(
            "maxmemory {MAX_MEMORY_MB}mb\nmaxmemory-policy noeviction\nclient-output-buffer-limit normal 64mb 32mb 60\n"
        ));
        if self.major >= 7 {
            text.push_str(
                "enable-debug-command no\nenable-module-command no\nenable-protected-configs no\nsanitize-dump-payload yes\n",
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

/// Has the server write a snapshot of its data now and waits until it is written: after this, its data
/// directory's [`SNAPSHOT`] holds its data as of this call. `BGSAVE SCHEDULE` waits for a child process the server
/// already runs (its own snapshot, or a rewrite of its append-only file); the count of snapshots written says when
/// one that began after this call has ended.
pub async fn save_snapshot(admin: &mut Client, timeout: Duration) -> Result<(), DatabaseError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let before = loop {
        let before = saves(&info(admin, "persistence").await?)?;
        match admin.command(&[b"BGSAVE", b"SCHEDULE"]).await? {
            // One the server began itself: it may hold data older than this call; wait for it, then ask again.
            Answer::Error(message) if message.contains("already in progress") => {
                wait_until(admin, deadline, "snapshot", |info| {
                    info.get("rdb_bgsave_in_progress").map(String::as_str) == Some("0")
                })
                .await?;
            }
            Answer::Error(message) => {
                return Err(DatabaseError::Server(format!(
                    "Redis refused to write a snapshot: {message}"
                )));
            }
            _ => break before,
        }
    };
    let info = wait_until(admin, deadline, "snapshot", |info| {
        saves(info).is_ok_and(|n| n > before)
            && info.get("rdb_bgsave_in_progress").map(String::as_str) == Some("0")
    })
    .await?;
    match info.get("rdb_last_bgsave_status").map(String::as_str) {
        Some("ok") => Ok(()),
        status => Err(DatabaseError::Server(format!(
            "Redis could not write its snapshot (rdb_last_bgsave_status: {}); its log says why",
            status.unwrap_or("unknown")
        ))),
    }
}

/// Polls `INFO persistence` until `done` says so; what it said last.
async fn wait_until(
    admin: &mut Client,
    deadline: tokio::time::Instant,
    what: &str,
    done: impl Fn(&std::collections::BTreeMap<String, String>) -> bool,
) -> Result<std::collections::BTreeMap<String, String>, DatabaseError> {
    loop {
        let info = info(admin, "persistence").await?;
        if done(&info) {
            return Ok(info);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(DatabaseError::Server(format!(
                "Redis's {what} did not finish in time"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many snapshots the server wrote since it started.
fn saves(info: &std::collections::BTreeMap<String, String>) -> Result<u64, DatabaseError> {
    info.get("rdb_saves")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            DatabaseError::Server(
                "Redis's INFO has no rdb_saves (Redis 7 or later has it)".to_owned(),
            )
        })
}

/// Writes what the server holds to disk as its persistence keeps it (`SAVE` for `rdb`, a rewrite of the
/// append-only file for `aof`, nothing for `none`), so that a crash of the server right after loses nothing.
pub async fn persist(
    admin: &mut Client,
    persistence: &str,
    timeout: Duration,
) -> Result<(), DatabaseError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let command: &[&[u8]] = match persistence {
        "none" => return Ok(()),
        "aof" => &[b"BGREWRITEAOF"],
        _ => &[b"SAVE"],
    };
    loop {
        match admin.command(command).await? {
            // A snapshot or rewrite the server runs on its own (its save points, its rewrite rule) comes first.
            Answer::Error(message) if message.contains("in progress") => {
                wait_until(admin, deadline, "snapshot", |info| {
                    info.get("rdb_bgsave_in_progress").map(String::as_str) == Some("0")
                        && info.get("aof_rewrite_in_progress").map(String::as_str) == Some("0")
                })
                .await?;
            }
            Answer::Error(message) => {
                return Err(DatabaseError::Server(format!(
                    "Redis could not write its data to disk: {message}"
                )));
            }
            _ if persistence == "aof" => return wait_rewritten(admin, timeout).await,
            _ => return Ok(()),
        }
    }
}

/// Turns the append-only file on for a server that runs without it, and waits until the file holds all its data.
pub async fn turn_on_append_only(
    admin: &mut Client,
    timeout: Duration,
) -> Result<(), DatabaseError> {
    admin
        .expect(
            &[b"CONFIG", b"SET", b"appendonly", b"yes"],
            "Redis could not turn its append-only file on",
        )
        .await?;
    wait_rewritten(admin, timeout).await
}

/// Waits until no rewrite of the append-only file runs or is scheduled, and says whether the last one went well.
async fn wait_rewritten(admin: &mut Client, timeout: Duration) -> Result<(), DatabaseError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let info = wait_until(admin, deadline, "append-only file", |info| {
        let value = |key: &str| info.get(key).map(String::as_str);
        value("aof_enabled") == Some("1")
            && value("aof_rewrite_in_progress") == Some("0")
            && value("aof_rewrite_scheduled") == Some("0")
    })
    .await?;
    match info.get("aof_last_bgrewrite_status").map(String::as_str) {
        Some("ok") => Ok(()),
        status => Err(DatabaseError::Server(format!(
            "Redis could not write its append-only file (aof_last_bgrewrite_status: {}); its log says why",
            status.unwrap_or("unknown")
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
        // SHA-256 of `env-password`, as `sha256sum` gives it.
        assert!(text.contains(
            "user shop_pr_1_cache on #b7c8db593f965dc9a2cd382d39e3d80ef764f577549a207610d958b7384e8e14 ~* &* +@all -@admin -migrate\n"
        ));
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
