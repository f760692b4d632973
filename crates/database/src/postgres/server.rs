//! A PostgreSQL server that `preview` runs: its data directory made by `initdb` as the server's own unprivileged
//! user, its settings (loopback only, SCRAM passwords, its own socket directory, client authentication that lets
//! a login role reach only the database of its own name), and the command its supervisor runs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::DatabaseError;
use crate::postgres::admin::GOLDEN_OWNER;
use crate::postgres::binaries::Binaries;
use crate::postgres::connection::{Connection, Endpoint};

/// The superuser of every server `preview` runs. It logs in only over the server's Unix socket, and only from the
/// daemon's own user (peer authentication): it has no password.
pub const ADMIN: &str = "preview";

/// One server: where it keeps its files, on which port it listens, and as whom it runs.
#[derive(Debug, Clone)]
pub struct Server {
    pub binaries: Binaries,
    /// Holds `data/` and `socket/`.
    pub root: PathBuf,
    pub port: u16,
    /// The user and group it runs as; `None`: the daemon's own.
    pub owner: Option<(u32, u32)>,
    /// The daemon's user name, the one allowed to log in as [`ADMIN`].
    pub daemon_user: String,
    /// Where the server's own processes see `root`, when they run in a sandbox of their own; `None`: at `root`.
    pub inside: Option<PathBuf>,
    /// Where the daemon reaches the socket directory when its own path is too long for a socket's (107 bytes):
    /// a short link to it.
    pub socket_link: Option<PathBuf>,
}

impl Server {
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    pub fn socket_dir(&self) -> PathBuf {
        self.root.join("socket")
    }

    /// Whether `initdb` has made its data directory.
    pub fn is_initialised(&self) -> bool {
        self.data_dir().join("PG_VERSION").is_file()
    }

    /// The first half of making the data directory: a new directory for `initdb`, and the shell command that
    /// runs it (as the server's user, where the server will run). `initdb` writes into a directory of its own and
    /// [`Server::finish_initialising`] renames it into place, so that a daemon killed meanwhile leaves nothing that
    /// looks ready.
    pub fn start_initialising(&self) -> Result<String, DatabaseError> {
        let making = self.root.join("data.making");
        remove_tree(&making)?;
        make_dir(&self.root, self.owner, 0o700)?;
        make_dir(&making, self.owner, 0o700)?;
        Ok(format!(
            "exec '{}' --pgdata '{}' --username {ADMIN} --encoding=UTF8 --locale=C.UTF-8 --auth-local=peer --auth-host=reject --no-instructions",
            self.binaries.program("initdb").display(),
            self.seen(&making).display()
        ))
    }

    /// The second half: the settings, then the rename.
    pub fn finish_initialising(&self) -> Result<(), DatabaseError> {
        let making = self.root.join("data.making");
        write_owned(
            &making.join("pg_hba.conf"),
            &client_authentication(),
            self.owner,
        )?;
        write_owned(
            &making.join("pg_ident.conf"),
            &format!(
                "# The daemon's user is the only one that may log in as {ADMIN} (and as {GOLDEN_OWNER}, which writes copies).\npreview {user} {ADMIN}\npreview {user} {GOLDEN_OWNER}\n",
                user = self.daemon_user
            ),
            self.owner,
        )?;
        let mut settings = std::fs::read_to_string(making.join("postgresql.conf"))
            .map_err(|e| DatabaseError::Server(format!("cannot read postgresql.conf: {e}")))?;
        settings.push_str(SETTINGS);
        write_owned(&making.join("postgresql.conf"), &settings, self.owner)?;
        std::fs::rename(&making, self.data_dir()).map_err(|e| {
            DatabaseError::Server(format!("cannot move {} into place: {e}", making.display()))
        })?;
        self.prepare_socket_dir()
    }

    /// Where the server sees `path` (below its root).
    pub fn seen(&self, path: &Path) -> PathBuf {
        match (&self.inside, path.strip_prefix(&self.root)) {
            (Some(inside), Ok(rest)) => inside.join(rest),
            _ => path.to_path_buf(),
        }
    }

    /// Makes the socket directory (it is not kept with the data), and its short link when it has one.
    pub fn prepare_socket_dir(&self) -> Result<(), DatabaseError> {
        make_dir(&self.socket_dir(), self.owner, 0o700)?;
        if let Some(link) = &self.socket_link {
            let _ = std::fs::remove_file(link);
            std::os::unix::fs::symlink(self.socket_dir(), link).map_err(|e| {
                DatabaseError::Server(format!("cannot link {}: {e}", link.display()))
            })?;
        }
        Ok(())
    }

    /// Whether the daemon needs a short link to reach the socket: a socket's path holds at most 107 bytes.
    pub fn socket_path_too_long(&self) -> bool {
        self.socket_dir().as_os_str().len() + "/.s.PGSQL.65535".len() > 100
    }

    /// The shell command that runs the server in the foreground, for a supervisor. The port and the socket
    /// directory are given here, not in its settings, so that a server keeps working wherever its port moves.
    pub fn command(&self) -> String {
        format!(
            "exec '{}' -D '{}' -p {} -k '{}' -c listen_addresses=127.0.0.1",
            self.binaries.program("postgres").display(),
            self.seen(&self.data_dir()).display(),
            self.port,
            self.seen(&self.socket_dir()).display()
        )
    }

    /// How the daemon logs in as the owner of golden snapshots' objects, to write copies without a superuser's
    /// rights (over the socket, from the daemon's user only).
    pub fn golden_writer(&self, database: &str) -> Connection {
        Connection {
            user: GOLDEN_OWNER.to_owned(),
            ..self.admin().to_database(database)
        }
    }

    /// How the daemon logs in as the server's superuser.
    pub fn admin(&self) -> Connection {
        Connection {
            host: Endpoint::Socket(
                self.socket_link
                    .clone()
                    .unwrap_or_else(|| self.socket_dir()),
            ),
            port: self.port,
            user: ADMIN.to_owned(),
            password: None,
            dbname: "postgres".to_owned(),
            ssl: None,
        }
    }

    /// Waits until the server accepts the daemon's connections, for at most `timeout`; `alive` says whether its
    /// process still runs (a server that exited will not come up).
    pub async fn wait_ready(
        &self,
        timeout: Duration,
        alive: impl Fn() -> bool,
    ) -> Result<(), DatabaseError> {
        let started = Instant::now();
        let admin = self.admin();
        loop {
            let error = match admin.connect().await {
                Ok(_) => return Ok(()),
                Err(error) => error,
            };
            if started.elapsed() > timeout || !alive() {
                return Err(DatabaseError::Server(format!(
                    "the PostgreSQL server in {} did not accept connections within {} s: {error}",
                    self.root.display(),
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Appended to the settings `initdb` wrote. Small memory, because a machine runs many; every connection and
/// statement in the log of the server's service, never their parameters.
const SETTINGS: &str = "
# Set by preview.
password_encryption = 'scram-sha-256'
max_connections = 200
shared_buffers = 32MB
logging_collector = off
log_destination = 'stderr'
log_line_prefix = '%m [%p] %q%u@%d '
log_connections = off
log_min_error_statement = panic
";

/// The server's superuser only over its socket from the daemon's user; every other role only over loopback with
/// its SCRAM password, and only into the database that bears its name (`sameuser`). Nothing else matches, so
/// everything else is refused.
fn client_authentication() -> String {
    format!(
        "# Set by preview.\n\
         local all {ADMIN} peer map=preview\n\
         local all {GOLDEN_OWNER} peer map=preview\n\
         host sameuser all 127.0.0.1/32 scram-sha-256\n"
    )
}

fn make_dir(path: &Path, owner: Option<(u32, u32)>, mode: u32) -> Result<(), DatabaseError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path)
        .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)))
        .and_then(|()| match owner {
            Some((uid, gid)) => std::os::unix::fs::chown(path, Some(uid), Some(gid)),
            None => Ok(()),
        })
        .map_err(|e| DatabaseError::Server(format!("cannot make {}: {e}", path.display())))
}

fn write_owned(path: &Path, text: &str, owner: Option<(u32, u32)>) -> Result<(), DatabaseError> {
    std::fs::write(path, text)
        .and_then(|()| match owner {
            Some((uid, gid)) => std::os::unix::fs::chown(path, Some(uid), Some(gid)),
            None => Ok(()),
        })
        .map_err(|e| DatabaseError::Server(format!("cannot write {}: {e}", path.display())))
}

/// Makes `root/data` a copy of the stopped server data directory `from` (a physical golden snapshot), as
/// [`copy_dir`] makes it.
pub fn copy_data_dir(
    from: &Path,
    root: &Path,
    owner: Option<(u32, u32)>,
    hand_over: &dyn Fn(&Path, u32, u32) -> Result<(), String>,
) -> Result<(), DatabaseError> {
    make_dir(root, owner, 0o700)?;
    copy_dir(
        from,
        &root.join("data"),
        owner,
        hand_over,
        &["postmaster.pid"],
    )
}

/// Makes `to` a copy of the stopped server's data directory `from`: a reflink where the file system has them
/// (`cp --reflink=auto`), else a byte copy, into `<to>.making`, which `hand_over` gives to the server's user and
/// which is then renamed into place without the files `stale` names (the copy is of a stopped server, but a stale
/// pid file must never keep the new one from starting), so that a copy cut short never looks like a data
/// directory.
pub fn copy_dir(
    from: &Path,
    to: &Path,
    owner: Option<(u32, u32)>,
    hand_over: &dyn Fn(&Path, u32, u32) -> Result<(), String>,
    stale: &[&str],
) -> Result<(), DatabaseError> {
    let mut making = to.as_os_str().to_owned();
    making.push(".making");
    let making = PathBuf::from(making);
    remove_tree(&making)?;
    let copied = std::process::Command::new("cp")
        .args(["-a", "--reflink=auto", "--"])
        .arg(from)
        .arg(&making)
        .output()
        .map_err(|e| DatabaseError::Server(format!("cannot run cp: {e}")))?;
    if !copied.status.success() {
        let _ = remove_tree(&making);
        return Err(DatabaseError::Server(format!(
            "cannot copy {} to {}: {}",
            from.display(),
            making.display(),
            String::from_utf8_lossy(&copied.stderr).trim()
        )));
    }
    if let Some((uid, gid)) = owner {
        hand_over(&making, uid, gid).map_err(DatabaseError::Server)?;
    }
    for file in stale {
        let _ = std::fs::remove_file(making.join(file));
    }
    std::fs::rename(&making, to).map_err(|e| {
        DatabaseError::Server(format!("cannot move {} into place: {e}", making.display()))
    })
}

/// Removes a directory tree; nothing to do when it is absent.
pub fn remove_tree(path: &Path) -> Result<(), DatabaseError> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(DatabaseError::Server(format!(
            "cannot remove {}: {e}",
            path.display()
        ))),
    }
}
