//! What tests need from the machine, made and cleaned up by the tests themselves: temporary directories,
//! throw-away PostgreSQL servers on loopback ports of their own, and an in-process fake of the Kubernetes API server
//! ([`kubernetes::ApiServer`]).
//!
//! Only dev-dependencies use this crate; nothing in the product links it.

pub mod kubernetes;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A directory removed when dropped.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "preview-{label}-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|e| panic!("cannot find a free port: {e}"))
}

/// True when this process runs as root (uid 0), read from /proc so that no unsafe call is needed.
pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Uid:"))?;
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`: next to `pg_ctl` on the PATH, or the newest
/// `/usr/lib/postgresql/<version>/bin`.
pub fn postgres_bin_dir() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("pg_ctl"))
            .find(|candidate| candidate.is_file())
            .and_then(|pg_ctl| std::fs::canonicalize(pg_ctl).ok())
            .and_then(|pg_ctl| pg_ctl.parent().map(Path::to_path_buf))
    });
    on_path
        .filter(|dir| dir.join("initdb").is_file())
        .or_else(|| {
            let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
                .ok()?
                .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
                .filter(|bin| bin.join("initdb").is_file())
                .collect();
            versions.sort_by_key(|bin| {
                bin.parent()
                    .and_then(|v| v.file_name())
                    .and_then(|v| v.to_str())
                    .and_then(|v| v.parse::<u32>().ok())
                    .unwrap_or(0)
            });
            versions.pop()
        })
}

/// A PostgreSQL server of a test's own, in a temporary directory, on a loopback port, with trust
/// authentication for the `postgres` user. Stopped and removed when dropped.
pub struct TestPostgres {
    dir: TempDir,
    bin: PathBuf,
    port: u16,
}

/// `program` of the server's `bin` directory, run as the `postgres` user when the test runs as root (PostgreSQL
/// refuses to run as root).
fn as_postgres(bin: &Path, program: &str) -> Command {
    let mut command = if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(program));
        c
    } else {
        Command::new(bin.join(program))
    };
    command.env("LC_ALL", "C");
    command
}

/// Starts the cluster in `dir/data` on `port`; the server's log if it does not start.
fn pg_ctl_start(bin: &Path, dir: &Path, port: u16) -> Result<(), String> {
    let options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
        dir.display()
    );
    let output = as_postgres(bin, "pg_ctl")
        .args(["-w", "-t", "60", "-D"])
        .arg(dir.join("data"))
        .args(["-o", &options, "-l"])
        .arg(dir.join("server.log"))
        .arg("start")
        .output()
        .unwrap_or_else(|e| panic!("cannot run pg_ctl: {e}"));
    if output.status.success() {
        Ok(())
    } else {
        Err(std::fs::read_to_string(dir.join("server.log")).unwrap_or_default())
    }
}

impl TestPostgres {
    /// Starts a server; panics with what to install if PostgreSQL's server programs are missing.
    pub fn start() -> TestPostgres {
        let bin = postgres_bin_dir().unwrap_or_else(|| {
            panic!("PostgreSQL server programs (initdb, pg_ctl) not found; scripts/test installs them (apt-get install postgresql)")
        });
        let dir = TempDir::new("postgres");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", data.display()));
        if running_as_root() {
            // PostgreSQL refuses to run as root: the cluster belongs to the `postgres` user.
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path()));
        }
        run(as_postgres(&bin, "initdb")
            .args([
                "--auth=trust",
                "--username=postgres",
                "--encoding=UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data));
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            match pg_ctl_start(&bin, dir.path(), port) {
                Ok(()) => return TestPostgres { dir, bin, port },
                Err(error) => last_error = error,
            }
        }
        panic!("PostgreSQL did not start:\n{last_error}");
    }

    /// Stops the server (fast shutdown: open connections are closed), as an outage or a restart does.
    pub fn stop(&self) {
        let _ = as_postgres(&self.bin, "pg_ctl")
            .args(["-D"])
            .arg(self.dir.path().join("data"))
            .args(["-m", "fast", "-w", "stop"])
            .output();
    }

    /// Starts the stopped server again, on the same port with the same data.
    pub fn start_again(&self) {
        pg_ctl_start(&self.bin, self.dir.path(), self.port)
            .unwrap_or_else(|log| panic!("PostgreSQL did not start again:\n{log}"));
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `name` (see [`TestPostgres::create_database`]).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates an empty database and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        run(Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-q",
                "-c",
            ])
            .arg(format!("CREATE DATABASE \"{name}\"")));
        self.url(name)
    }
}

impl TestPostgres {
    /// Runs `statement` in `database` as the `postgres` user and returns what it printed (unaligned, tuples only).
    pub fn sql(&self, database: &str, statement: &str) -> Result<String, String> {
        let output = Command::new(self.bin.join("psql"))
            .args(["-X", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1"])
            .args(["-q", "-t", "-A", "-c", statement])
            .env("LC_ALL", "C")
            .output()
            .map_err(|e| format!("cannot run psql: {e}"))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
        }
    }

    /// Logs in as `user` with `password` (none: without one) over TCP, and returns the user the server says it is.
    pub fn login(
        &self,
        user: &str,
        password: Option<&str>,
        database: &str,
    ) -> Result<String, String> {
        let mut psql = Command::new(self.bin.join("psql"));
        psql.args(["-X", "-w", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args([
                "-U",
                user,
                "-d",
                database,
                "-q",
                "-t",
                "-A",
                "-c",
                "SELECT current_user",
            ])
            .env("LC_ALL", "C")
            .env_remove("PGPASSWORD");
        if let Some(password) = password {
            psql.env("PGPASSWORD", password);
        }
        let output = psql.output().map_err(|e| format!("cannot run psql: {e}"))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
        }
    }

    /// From now on, every login over TCP but the test's own `postgres` needs its password.
    pub fn require_passwords(&self) -> Result<(), String> {
        std::fs::write(
            self.dir.path().join("data/pg_hba.conf"),
            "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\nhost all all ::1/128 scram-sha-256\n",
        )
        .map_err(|e| format!("cannot write pg_hba.conf: {e}"))?;
        self.sql("postgres", "SELECT pg_reload_conf()").map(drop)
    }

    /// Makes the server take connections over TLS only, with `chain_pem` and `key_pem` as its certificate and key
    /// (restarting it).
    pub fn require_tls(&self, chain_pem: &str, key_pem: &str) {
        let data = self.dir.path().join("data");
        std::fs::write(data.join("server.crt"), chain_pem).expect("certificate");
        std::fs::write(data.join("server.key"), key_pem).expect("key");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                data.join("server.key"),
                std::fs::Permissions::from_mode(0o600),
            )
            .expect("key mode");
        }
        let settings = std::fs::read_to_string(data.join("postgresql.conf")).expect("settings");
        std::fs::write(
            data.join("postgresql.conf"),
            format!(
                "{settings}\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
            ),
        )
        .expect("settings");
        let rules = std::fs::read_to_string(data.join("pg_hba.conf")).expect("pg_hba.conf");
        std::fs::write(
            data.join("pg_hba.conf"),
            format!("hostnossl all all all reject\n{rules}"),
        )
        .expect("pg_hba.conf");
        if running_as_root() {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&data));
        }
        self.stop();
        self.start_again();
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin, "pg_ctl")
            .args(["-D"])
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    if !output.status.success() {
        panic!(
            "{command:?} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// How many connections to `port` the process `pid` accepted: established, with a socket among its descriptors
/// (those still waiting in the listen backlog have none, and other processes' sockets are not counted).
pub fn accepted_connections(pid: u32, port: u16) -> usize {
    let inodes: std::collections::BTreeSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the process's descriptors")
        .flatten()
        .filter_map(|entry| std::fs::read_link(entry.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            local_port == Some(port) && fields[3] == "01" && inodes.contains(fields[9])
        })
        .count()
}

/// `examples/shop/preview.yaml` as the Kubernetes runtime runs it: `runtime: kubernetes`, and without its Redis
/// `cache` (that runtime runs PostgreSQL databases only; the storefront has no cart there). Panics when the example
/// no longer has the shape this expects, so that a change to it is seen here.
pub fn example_on_kubernetes() -> String {
    let example = include_str!("../../../examples/shop/preview.yaml");
    let mut kept = Vec::new();
    let mut lines = example.lines().peekable();
    let mut removed = 0;
    while let Some(line) = lines.next() {
        // The service (up to the blank line after it) and each environment's override of it.
        if line.starts_with("  cache:") {
            while lines.next_if(|l| !l.trim().is_empty()).is_some() {}
            removed += 1;
            continue;
        }
        if line.starts_with("      cache:") {
            while lines.next_if(|l| l.starts_with("        ")).is_some() {}
            removed += 1;
            continue;
        }
        if line.contains("[catalog, db, cache]") {
            kept.push("    depends_on: [catalog, db]".to_owned());
            removed += 1;
            continue;
        }
        kept.push(line.to_owned());
    }
    let text = kept.join("\n") + "\n";
    assert!(
        removed == 4
            && !text.contains("redis")
            && !text.contains("REDIS")
            && text.contains("runtime: local"),
        "examples/shop/preview.yaml changed shape: its Redis `cache` is not where this expects it"
    );
    text.replace("runtime: local", "runtime: kubernetes")
}
