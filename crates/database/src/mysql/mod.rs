//! MySQL, the third engine, served by the distribution's MariaDB: a server `preview` runs (the project's, shared by
//! its environments with a database and a user each, or an environment's own), administered by the daemon's own
//! user through the server's socket (MariaDB's `unix_socket` authentication: no administrator password exists),
//! and reached by environments over TCP on the host's loopback as users that may do anything inside their own
//! database and nothing outside it.
//!
//! Everything goes through MariaDB's own programs — `mariadb` in its sandbox mode (no shell escapes, no files
//! read or written on this machine) with `LOAD DATA LOCAL` off, `mariadb-dump` — with SQL on their standard input
//! and passwords in their environment, never on a command line. `dump` masks a dump on its way from one database
//! into another.

pub mod dump;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use preview_secrets::Secret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::DatabaseError;
use crate::masking::Masker;
use crate::masking_plan::{MaskingPlan, Rules, plan_masking};
use crate::postgres::catalog::{Catalog, Table};

/// MariaDB's programs, of one release series.
#[derive(Debug, Clone)]
pub struct Programs {
    pub server: PathBuf,
    pub install: PathBuf,
    pub client: PathBuf,
    pub dump: PathBuf,
}

impl Programs {
    /// The installed MariaDB, when it is of the release series `major.minor`; else an error saying what is here.
    pub fn find(major: u32, minor: u32) -> Result<Programs, DatabaseError> {
        let missing = || {
            DatabaseError::Missing(format!(
                "MariaDB {major}.{minor} is not installed (no mariadbd); install the distribution's `mariadb-server` package"
            ))
        };
        let server = ["/usr/sbin/mariadbd", "/usr/local/sbin/mariadbd"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or_else(missing)?;
        let bin = |name: &str| {
            ["/usr/bin", "/usr/local/bin"]
                .into_iter()
                .map(|dir| Path::new(dir).join(name))
                .find(|p| p.is_file())
                .ok_or_else(missing)
        };
        let output = std::process::Command::new(&server)
            .arg("--version")
            .env_clear()
            .output()
            .map_err(|e| DatabaseError::Server(format!("cannot run {}: {e}", server.display())))?;
        let text = String::from_utf8_lossy(&output.stdout);
        let Some((installed, series)) = installed_series(&text) else {
            return Err(DatabaseError::Server(format!(
                "{} --version printed no version: {}",
                server.display(),
                text.trim()
            )));
        };
        if series != (major, minor) {
            return Err(DatabaseError::Missing(format!(
                "MariaDB {major}.{minor} is not installed: this machine has MariaDB {installed}; set `version: {}.{}` or install MariaDB {major}.{minor}",
                series.0, series.1
            )));
        }
        Ok(Programs {
            install: bin("mariadb-install-db")?,
            client: bin("mariadb")?,
            dump: bin("mariadb-dump")?,
            server,
        })
    }
}

impl Programs {
    /// MariaDB's client programs alone, for a server that runs elsewhere (they speak to any MySQL-compatible one).
    pub fn clients() -> Result<Programs, DatabaseError> {
        let find = |name: &str| {
            ["/usr/bin", "/usr/local/bin"]
                .into_iter()
                .map(|dir| Path::new(dir).join(name))
                .find(|p| p.is_file())
                .ok_or_else(|| {
                    DatabaseError::Missing(format!(
                        "{name} is not installed; install the distribution's `mariadb-client` package"
                    ))
                })
        };
        Ok(Programs {
            server: PathBuf::new(),
            install: PathBuf::new(),
            client: find("mariadb")?,
            dump: find("mariadb-dump")?,
        })
    }
}

/// An external server's administrator, from its admin URL `mysql://user:password@host:port/` (user and password
/// percent-decoded; port 3306 when none). Errors never show the password.
pub fn admin_from_url(url: &Secret) -> Result<Login, DatabaseError> {
    let invalid = |what: &str| {
        DatabaseError::Invalid(format!(
            "the admin URL is not a MySQL URL (mysql://user:password@host:port/): {what}"
        ))
    };
    let text = url.expose().trim();
    let rest = text
        .strip_prefix("mysql://")
        .or_else(|| text.strip_prefix("mariadb://"))
        .ok_or_else(|| invalid("it does not begin with mysql://"))?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let (credentials, address) = authority
        .rsplit_once('@')
        .ok_or_else(|| invalid("it names no user"))?;
    let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
    let (host, port) = match address.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| invalid("an unclosed `[`"))?;
            (host, after.strip_prefix(':'))
        }
        None => match address.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (address, None),
        },
    };
    if host.is_empty() {
        return Err(invalid("it names no host"));
    }
    let port = match port {
        Some(port) => port
            .parse::<u16>()
            .map_err(|_| invalid("its port is not a number"))?,
        None => 3306,
    };
    let user =
        percent_decode(user).ok_or_else(|| invalid("its user is not percent-encoded UTF-8"))?;
    if user.is_empty() {
        return Err(invalid("it names no user"));
    }
    let password = percent_decode(password)
        .ok_or_else(|| invalid("its password is not percent-encoded UTF-8"))?;
    Ok(Login::User {
        host: host.to_owned(),
        port,
        user,
        password: Secret::new(password),
        database: String::new(),
    })
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `10.11.19` and `(10, 11)` out of `mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for debian-linux-gnu …`.
fn installed_series(text: &str) -> Option<(&str, (u32, u32))> {
    let version = text
        .split_whitespace()
        .skip_while(|word| *word != "Ver")
        .nth(1)?;
    let number = version.split('-').next()?;
    let mut parts = number.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((number, (major, minor)))
}

/// A server's configuration file, its paths as the server sees its directory (`root`): data in `data/`, its socket
/// and process id in `run/`, temporary files in `tmp/`; listening on the host's loopback only.
pub fn server_config(root: &Path, port: u16) -> String {
    let at = |name: &str| root.join(name).display().to_string();
    format!(
        "[mariadbd]
datadir={data}
socket={socket}
pid-file={pid}
tmpdir={tmp}
port={port}
bind-address=127.0.0.1
skip-name-resolve
# No file of this machine is read or written by SQL, nor followed through a link.
local-infile=0
secure-file-priv={files}
skip-symbolic-links
character-set-server=utf8mb4
collation-server=utf8mb4_unicode_ci
# Room for a copy's indexes: masked values arrive in no order, and an index that does not fit is read from disk
# for every row.
innodb-buffer-pool-size=256M
innodb-log-file-size=96M
max-connections=1000
performance-schema=OFF
lc-messages-dir=/usr/share/mariadb
",
        data = at("data"),
        socket = at(SOCKET),
        pid = at(PID_FILE),
        tmp = at("tmp"),
        files = at("files"),
    )
}

/// The server's socket, under its directory.
pub const SOCKET: &str = "run/mysqld.sock";

/// The server's process id, under its directory.
pub const PID_FILE: &str = "run/mariadbd.pid";

/// The shell command that makes a new server's data directory, its administrator being the daemon's user
/// `admin_user` through the socket (`root` through it too, and no password for anyone).
pub fn install_command(programs: &Programs, config: &Path, admin_user: &str) -> String {
    format!(
        "exec '{}' --defaults-file='{}' --auth-root-authentication-method=socket --auth-root-socket-user='{}' --skip-test-db",
        programs.install.display(),
        config.display(),
        admin_user.replace('\'', "")
    )
}

/// The shell command that runs the server.
pub fn server_command(programs: &Programs, config: &Path) -> String {
    format!(
        "exec '{}' --defaults-file='{}'",
        programs.server.display(),
        config.display()
    )
}

/// How SQL reaches a server: as its administrator through its socket, or as a user over TCP.
#[derive(Debug, Clone)]
pub enum Login {
    Admin {
        socket: PathBuf,
        user: String,
    },
    User {
        host: String,
        port: u16,
        user: String,
        password: Secret,
        database: String,
    },
}

impl Login {
    /// The arguments and environment that make `mariadb` or `mariadb-dump` log in this way.
    fn apply(&self, command: &mut tokio::process::Command) {
        command.arg("--no-defaults");
        match self {
            Login::Admin { socket, user } => {
                command
                    .arg("--protocol=socket")
                    .arg(format!("--socket={}", socket.display()))
                    .arg(format!("--user={user}"));
            }
            Login::User {
                host,
                port,
                user,
                password,
                ..
            } => {
                command
                    .arg("--protocol=tcp")
                    .arg(format!("--host={host}"))
                    .arg(format!("--port={port}"))
                    .arg(format!("--user={user}"))
                    .env("MYSQL_PWD", password.expose());
            }
        }
    }

    pub fn database(&self) -> Option<&str> {
        match self {
            Login::Admin { .. } => None,
            Login::User { database, .. } => Some(database.as_str()).filter(|d| !d.is_empty()),
        }
    }
}

/// A `mariadb` client of `login`, in its sandbox, reading SQL from its standard input.
fn client(programs: &Programs, login: &Login, batch: bool) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(&programs.client);
    // No editor, pager or shell for the client to start: its `\\e` would run one as the daemon's user.
    command
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("EDITOR", "/bin/false")
        .env("VISUAL", "/bin/false");
    login.apply(&mut command);
    // `--sandbox` refuses the client's commands that reach files (`\\!`, `source`, `tee`, …) and `--binary-mode`
    // all the others (`\\e`, `connect`, …): input is SQL and nothing else.
    command
        .arg("--sandbox")
        .arg("--binary-mode")
        .arg("--local-infile=0")
        .arg("--default-character-set=utf8mb4");
    if batch {
        command.arg("--batch").arg("--skip-column-names");
    }
    if let Some(database) = login.database() {
        command.arg(format!("--database={database}"));
    }
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs `sql` as `login` and returns its rows (tab-separated fields, as `mariadb --batch` writes them).
pub async fn query(
    programs: &Programs,
    login: &Login,
    sql: &str,
) -> Result<Vec<Vec<String>>, DatabaseError> {
    let mut child = client(programs, login, true).spawn().map_err(|e| {
        DatabaseError::Server(format!("cannot run {}: {e}", programs.client.display()))
    })?;
    let mut stdin = child.stdin.take().expect("piped");
    let input = sql.to_owned();
    let writing = tokio::spawn(async move {
        let _ = stdin.write_all(input.as_bytes()).await;
    });
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| DatabaseError::Server(format!("mariadb: {e}")))?;
    let _ = writing.await;
    if !output.status.success() {
        return Err(DatabaseError::Sql(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| line.split('\t').map(str::to_owned).collect())
        .collect())
}

/// `name` quoted as an identifier.
pub fn quote_identifier(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `text` quoted as a string literal.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A database's name as a `GRANT … ON` pattern matches it alone: `_` and `%` are wildcards there.
fn grant_pattern(name: &str) -> String {
    quote_identifier(&name.replace('_', "\\_").replace('%', "\\%"))
}

/// The environment's user `name` with `password`, allowed everything inside its database `name` and nothing
/// outside it (made, or its password set again).
pub async fn ensure_user(
    programs: &Programs,
    admin: &Login,
    name: &str,
    password: &Secret,
) -> Result<(), DatabaseError> {
    let user = format!("{}@'%'", quote_literal(name));
    let password = quote_literal(password.expose());
    query(
        programs,
        admin,
        &format!(
            "CREATE USER IF NOT EXISTS {user} IDENTIFIED BY {password};
             ALTER USER {user} IDENTIFIED BY {password} WITH MAX_USER_CONNECTIONS 100 ACCOUNT UNLOCK;
             GRANT ALL PRIVILEGES ON {}.* TO {user};",
            grant_pattern(name)
        ),
    )
    .await
    .map(drop)
    .map_err(|e| DatabaseError::Sql(format!("cannot make the user {name}: {}", hide(&e))))
}

/// An error's text with nothing of a password that a statement carried (MariaDB quotes statements rarely, but a
/// message is never trusted with one).
fn hide(error: &DatabaseError) -> String {
    let text = error.to_string();
    match text.find("IDENTIFIED") {
        Some(at) => format!("{}…", &text[..at]),
        None => text,
    }
}

pub async fn create_database(
    programs: &Programs,
    admin: &Login,
    name: &str,
) -> Result<(), DatabaseError> {
    query(
        programs,
        admin,
        &format!(
            "CREATE DATABASE {} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
            quote_identifier(name)
        ),
    )
    .await
    .map(drop)
}

pub async fn drop_database(
    programs: &Programs,
    admin: &Login,
    name: &str,
) -> Result<(), DatabaseError> {
    query(
        programs,
        admin,
        &format!(
            "SET SESSION lock_wait_timeout = 60; DROP DATABASE IF EXISTS {}",
            quote_identifier(name)
        ),
    )
    .await
    .map(drop)
}

/// Locks the user `name` out (no new connection is taken), or lets it in again.
pub async fn lock_user(
    programs: &Programs,
    admin: &Login,
    name: &str,
    locked: bool,
) -> Result<(), DatabaseError> {
    query(
        programs,
        admin,
        &format!(
            "ALTER USER IF EXISTS {}@'%' ACCOUNT {}",
            quote_literal(name),
            if locked { "LOCK" } else { "UNLOCK" }
        ),
    )
    .await
    .map(drop)
}

/// Drops the user `name`, then ends its connections (none can log in meanwhile).
pub async fn drop_user(
    programs: &Programs,
    admin: &Login,
    name: &str,
) -> Result<(), DatabaseError> {
    query(
        programs,
        admin,
        &format!("DROP USER IF EXISTS {}@'%'", quote_literal(name)),
    )
    .await?;
    end_connections(programs, admin, name).await
}

/// Ends the connections of the user `name` (before its database is dropped or made again, so that no transaction
/// of its keeps the server waiting).
pub async fn end_connections(
    programs: &Programs,
    admin: &Login,
    name: &str,
) -> Result<(), DatabaseError> {
    let ids = query(
        programs,
        admin,
        &format!(
            "SELECT id FROM information_schema.processlist WHERE user = {}",
            quote_literal(name)
        ),
    )
    .await?;
    for id in ids.iter().filter_map(|row| row.first()) {
        if !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()) {
            // A connection that ended meanwhile is not an error.
            match query(programs, admin, &format!("KILL CONNECTION {id}")).await {
                Err(e) if !e.to_string().contains("Unknown thread id") => return Err(e),
                _ => {}
            }
        }
    }
    Ok(())
}

/// The database's comment, where its mark is; `None` when there is no such database.
pub async fn readiness(
    programs: &Programs,
    admin: &Login,
    name: &str,
) -> Result<Option<String>, DatabaseError> {
    let rows = query(
        programs,
        admin,
        &format!(
            "SELECT schema_comment FROM information_schema.schemata WHERE schema_name = {}",
            quote_literal(name)
        ),
    )
    .await?;
    Ok(rows.into_iter().next().map(|row| row.join("\t")))
}

/// Marks the database complete, as `mark` says.
pub async fn mark_ready(
    programs: &Programs,
    admin: &Login,
    name: &str,
    mark: &str,
) -> Result<(), DatabaseError> {
    query(
        programs,
        admin,
        &format!(
            "ALTER DATABASE {} COMMENT {}",
            quote_identifier(name),
            quote_literal(mark)
        ),
    )
    .await
    .map(drop)
}

/// The databases whose names begin with `prefix`.
pub async fn databases_named(
    programs: &Programs,
    admin: &Login,
    prefix: &str,
) -> Result<Vec<String>, DatabaseError> {
    let rows = query(
        programs,
        admin,
        "SELECT schema_name FROM information_schema.schemata",
    )
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| row.into_iter().next())
        .filter(|name| name.starts_with(prefix))
        .collect())
}

/// How many databases and users environments have on the server: those whose names begin with `own` are
/// `preview`'s (its golden databases and their writer).
pub async fn environment_databases_and_users(
    programs: &Programs,
    admin: &Login,
    own: &str,
) -> Result<usize, DatabaseError> {
    let rows = query(
        programs,
        admin,
        "SELECT schema_name FROM information_schema.schemata
           WHERE schema_name NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')
         UNION ALL
         SELECT user FROM mysql.user WHERE host = '%'",
    )
    .await?;
    Ok(rows
        .iter()
        .filter(|row| row.first().is_some_and(|n| !n.starts_with(own)))
        .count())
}

/// Runs the SQL file `file` (its text `sql`) as `login`, statement after statement. MariaDB commits DDL as it
/// runs it, so a failure leaves what came before: the caller drops the database. The error names `file:line`.
pub async fn run_sql_file(
    programs: &Programs,
    login: &Login,
    sql: &[u8],
    file: &str,
) -> Result<(), DatabaseError> {
    let mut child = client(programs, login, true).spawn().map_err(|e| {
        DatabaseError::Server(format!("cannot run {}: {e}", programs.client.display()))
    })?;
    let mut stdin = child.stdin.take().expect("piped");
    let input = sql.to_vec();
    let writing = tokio::spawn(async move {
        let _ = stdin.write_all(&input).await;
    });
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| DatabaseError::Server(format!("mariadb: {e}")))?;
    let _ = writing.await;
    if output.status.success() {
        return Ok(());
    }
    Err(DatabaseError::Sql(located(
        &String::from_utf8_lossy(&output.stderr),
        file,
    )))
}

/// `file:3: Table 'x' doesn't exist (ERROR 1146)` out of `ERROR 1146 (42S02) at line 3: Table 'x' doesn't exist`.
fn located(stderr: &str, file: &str) -> String {
    // The client's own error lines; the statement it echoes before one (between lines of dashes) is left out.
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("ERROR")).collect();
    let shown: Vec<&str> = if errors.is_empty() {
        stderr.lines().filter(|l| !l.trim().is_empty()).collect()
    } else {
        errors
    };
    let mut lines = Vec::new();
    for line in shown {
        let placed = line.strip_prefix("ERROR").and_then(|rest| {
            let (head, message) = rest.split_once(": ")?;
            let (code, at) = head.split_once("at line ")?;
            let code = code.split_whitespace().next().unwrap_or_default();
            let number: u64 = at.trim().parse().ok()?;
            Some(if code.is_empty() {
                format!("{file}:{number}: {message}")
            } else {
                format!("{file}:{number}: {message} (error {code})")
            })
        });
        lines.push(placed.unwrap_or_else(|| format!("{file}: {line}")));
    }
    if lines.is_empty() {
        format!("{file}: the mariadb client failed without a message")
    } else {
        lines.join("\n")
    }
}

/// What a copy needs of the source's tables for its masking, keyed as PostgreSQL's default schema's
/// (`public.<table>`: a MySQL database has one namespace), so that the spec's rules read the same for both engines.
pub async fn catalog(
    programs: &Programs,
    admin: &Login,
    database: &str,
) -> Result<Catalog, DatabaseError> {
    let schema = quote_literal(database);
    let mut catalog = Catalog::default();
    let columns = query(
        programs,
        admin,
        &format!(
            "SELECT c.table_name, c.column_name, c.is_nullable, t.table_rows
               FROM information_schema.columns c JOIN information_schema.tables t
                 ON t.table_schema = c.table_schema AND t.table_name = c.table_name
              WHERE c.table_schema = {schema} AND t.table_type = 'BASE TABLE' AND c.extra NOT LIKE '%GENERATED%'
              ORDER BY c.table_name, c.ordinal_position"
        ),
    )
    .await?;
    for row in columns {
        let [table, column, nullable, rows] = row.as_slice() else {
            continue;
        };
        let entry: &mut Table = catalog.tables.entry(format!("public.{table}")).or_default();
        entry.columns.push(column.clone());
        if nullable == "NO" {
            entry.not_null.insert(column.clone());
        }
        entry.estimated_rows = rows.parse().unwrap_or_default();
    }
    let unique = query(
        programs,
        admin,
        &format!(
            "SELECT table_name, column_name FROM information_schema.statistics
              WHERE table_schema = {schema} AND non_unique = 0"
        ),
    )
    .await?;
    for row in unique {
        if let [table, column] = row.as_slice()
            && let Some(entry) = catalog.tables.get_mut(&format!("public.{table}"))
        {
            entry.unique.insert(column.clone());
        }
    }
    let references = query(
        programs,
        admin,
        &format!(
            "SELECT table_name, column_name, referenced_table_name, referenced_column_name
               FROM information_schema.key_column_usage
              WHERE table_schema = {schema} AND referenced_table_schema = {schema}"
        ),
    )
    .await?;
    for row in references {
        if let [table, column, to_table, to_column] = row.as_slice() {
            catalog.references.push((
                (format!("public.{table}"), column.clone()),
                (format!("public.{to_table}"), to_column.clone()),
            ));
        }
    }
    Ok(catalog)
}

/// The masking of a copy: its rules checked against the source's tables, as the dump masker reads them.
pub async fn masking_plan(
    programs: &Programs,
    admin: &Login,
    database: &str,
    rules: &Rules,
    strict: bool,
) -> Result<(MaskingPlan, dump::DumpRules), DatabaseError> {
    if let Some(table) = rules.keys().find(|t| t.contains('.')) {
        return Err(DatabaseError::Invalid(format!(
            "masking.tables.{table}: a MySQL database has no schemas; name the table alone"
        )));
    }
    let catalog = catalog(programs, admin, database).await?;
    let plan = plan_masking(&catalog, rules, strict)?;
    let by_table = plan
        .columns
        .iter()
        .map(|(table, columns)| {
            (
                table.trim_start_matches("public.").to_owned(),
                columns.clone(),
            )
        })
        .collect::<BTreeMap<_, _>>();
    Ok((plan, by_table))
}

/// What a copy did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CopyReport {
    pub bytes: u64,
    /// Rows masked, by table.
    pub masked: BTreeMap<String, u64>,
}

/// A consistent copy of the database `source` (read by its server's administrator in one transaction:
/// `--single-transaction`) into the database `target` logs in to, as that login (so nothing of the source's
/// definitions runs with more rights than the target's own user has), masked on the way when `masking` says so.
/// Three reads of the source, one after the other: its routines (which views may call), then its tables, views and
/// rows — the one stream that is masked —, then its triggers; no body of statements is ever in the stream the
/// masker reads. Definers are dropped from views, routines and triggers: the copy's own user defines them.
pub async fn copy(
    programs: &Programs,
    source: &Login,
    source_database: &str,
    target: &Login,
    masking: Option<(&Masker, &dump::DumpRules)>,
) -> Result<CopyReport, DatabaseError> {
    let (routines, _) = stream(
        programs,
        source,
        source_database,
        &[&DEFINITIONS[..], &["--skip-triggers", "--routines"]].concat(),
        target,
        None,
    )
    .await?;
    let (bytes, masked) = stream(
        programs,
        source,
        source_database,
        &[
            "--single-transaction",
            "--complete-insert",
            "--hex-blob",
            "--skip-triggers",
            "--skip-add-locks",
        ],
        target,
        masking,
    )
    .await?;
    let (triggers, _) = stream(
        programs,
        source,
        source_database,
        &[&DEFINITIONS[..], &["--triggers"]].concat(),
        target,
        None,
    )
    .await?;
    Ok(CopyReport {
        bytes: routines + bytes + triggers,
        masked,
    })
}

/// What `mariadb-dump` is told to read of a database's definitions alone: no table, no row.
const DEFINITIONS: [&str; 5] = [
    "--single-transaction",
    "--no-data",
    "--no-create-info",
    "--no-create-db",
    "--skip-opt",
];

/// The definitions of `database`'s routines, views and triggers — no table and no row — as SQL that makes them
/// again in the database a login is in, defined by that login (`DEFINER` clauses dropped): routines first (views
/// may call them), then views, then triggers. Kept beside a physical golden snapshot's tables, which move into
/// each copy's own database where views and triggers cannot follow them.
pub async fn definitions(
    programs: &Programs,
    login: &Login,
    database: &str,
) -> Result<Vec<u8>, DatabaseError> {
    let mut sql = dumped(
        programs,
        login,
        database,
        &[&DEFINITIONS[..], &["--skip-triggers", "--routines"]].concat(),
        &[],
    )
    .await?;
    let views = names(
        programs,
        login,
        &format!(
            "SELECT HEX(table_name) FROM information_schema.views WHERE table_schema = {} ORDER BY table_name",
            quote_literal(database)
        ),
    )
    .await?;
    if !views.is_empty() {
        sql.extend(
            dumped(
                programs,
                login,
                database,
                &[
                    "--single-transaction",
                    "--no-data",
                    "--skip-triggers",
                    "--skip-add-locks",
                    "--no-create-db",
                ],
                &views,
            )
            .await?,
        );
    }
    sql.extend(
        dumped(
            programs,
            login,
            database,
            &[&DEFINITIONS[..], &["--triggers"]].concat(),
            &[],
        )
        .await?,
    );
    Ok(sql)
}

/// Drops `database`'s triggers, views and routines, leaving its tables alone.
pub async fn drop_definitions(
    programs: &Programs,
    admin: &Login,
    database: &str,
) -> Result<(), DatabaseError> {
    let (quoted, literal) = (quote_identifier(database), quote_literal(database));
    let mut statements = Vec::new();
    for (kind, select) in [
        (
            "TRIGGER",
            format!(
                "SELECT HEX(trigger_name) FROM information_schema.triggers WHERE trigger_schema = {literal}"
            ),
        ),
        (
            "VIEW",
            format!(
                "SELECT HEX(table_name) FROM information_schema.views WHERE table_schema = {literal}"
            ),
        ),
        (
            "FUNCTION",
            format!(
                "SELECT HEX(routine_name) FROM information_schema.routines WHERE routine_schema = {literal} AND routine_type = 'FUNCTION'"
            ),
        ),
        (
            "PROCEDURE",
            format!(
                "SELECT HEX(routine_name) FROM information_schema.routines WHERE routine_schema = {literal} AND routine_type = 'PROCEDURE'"
            ),
        ),
    ] {
        for name in names(programs, admin, &select).await? {
            statements.push(format!("DROP {kind} {quoted}.{}", quote_identifier(&name)));
        }
    }
    if statements.is_empty() {
        return Ok(());
    }
    query(programs, admin, &statements.join(";\n"))
        .await
        .map(drop)
}

/// Has the server write every changed page of its buffer pool to its files, waiting up to `timeout`: a server
/// stopped afterwards stops at once, its files whole.
pub async fn flush_pages(
    programs: &Programs,
    admin: &Login,
    timeout: std::time::Duration,
) -> Result<(), DatabaseError> {
    query(
        programs,
        admin,
        "SET GLOBAL innodb_max_dirty_pages_pct_lwm = 0; SET GLOBAL innodb_max_dirty_pages_pct = 0; FLUSH TABLES",
    )
    .await?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let dirty = query(
            programs,
            admin,
            "SELECT variable_value FROM information_schema.global_status WHERE variable_name = 'INNODB_BUFFER_POOL_PAGES_DIRTY'",
        )
        .await?;
        let left = dirty
            .first()
            .and_then(|row| row.first())
            .and_then(|n| n.parse::<u64>().ok());
        match left {
            Some(0) => return Ok(()),
            _ if tokio::time::Instant::now() > deadline => {
                return Err(DatabaseError::Server(format!(
                    "the server did not write its changed pages out in {} s ({} left)",
                    timeout.as_secs(),
                    left.map_or_else(|| "unknown".to_owned(), |n| n.to_string())
                )));
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
}

/// Moves every table of the database `from` (its views stay) into the database `to`, in one statement: the rows
/// are not read, InnoDB renames its files. How many there were.
pub async fn move_tables(
    programs: &Programs,
    admin: &Login,
    from: &str,
    to: &str,
) -> Result<usize, DatabaseError> {
    let tables = names(
        programs,
        admin,
        &format!(
            "SELECT HEX(table_name) FROM information_schema.tables WHERE table_schema = {} AND table_type <> 'VIEW'",
            quote_literal(from)
        ),
    )
    .await?;
    if tables.is_empty() {
        return Ok(0);
    }
    let (from, to) = (quote_identifier(from), quote_identifier(to));
    let moves: Vec<String> = tables
        .iter()
        .map(|table| {
            let table = quote_identifier(table);
            format!("{from}.{table} TO {to}.{table}")
        })
        .collect();
    query(
        programs,
        admin,
        &format!(
            "SET SESSION lock_wait_timeout = 60; RENAME TABLE {}",
            moves.join(", ")
        ),
    )
    .await?;
    Ok(tables.len())
}

/// The names a query of one hexadecimal column gives (`HEX(name)`: a name may hold any character, the client's
/// batch output escapes some).
async fn names(
    programs: &Programs,
    login: &Login,
    select: &str,
) -> Result<Vec<String>, DatabaseError> {
    query(programs, login, select)
        .await?
        .iter()
        .filter_map(|row| row.first())
        .map(|hex| {
            unhex(hex)
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| DatabaseError::Server(format!("not a name in hexadecimal: {hex}")))
        })
        .collect()
}

fn unhex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `mariadb-dump ARGS database TABLES` (no table: all of them) read whole, its definers dropped.
async fn dumped(
    programs: &Programs,
    source: &Login,
    database: &str,
    args: &[&str],
    tables: &[String],
) -> Result<Vec<u8>, DatabaseError> {
    let mut dumper = tokio::process::Command::new(&programs.dump);
    dumper.env_clear().env("PATH", "/usr/bin:/bin");
    source.apply(&mut dumper);
    let output = dumper
        .args(args)
        .args([
            "--default-character-set=utf8mb4",
            "--max-allowed-packet=64M",
        ])
        // Names are never read as options.
        .arg("--")
        .arg(database)
        .args(tables)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| {
            DatabaseError::Server(format!("cannot run {}: {e}", programs.dump.display()))
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("mariadb-dump:"))
            .map(|l| &l[..l.floor_char_boundary(500)])
            .collect();
        return Err(DatabaseError::Server(format!(
            "mariadb-dump failed reading the definitions of {database}: {}",
            errors.join("\n")
        )));
    }
    let mut sql = Vec::with_capacity(output.stdout.len());
    let mut definers = Definers::default();
    definers.push(&output.stdout, &mut sql);
    definers.finish(&mut sql);
    Ok(sql)
}

/// `mariadb-dump ARGS source` piped through the masker (when given) and the definers' filter into `mariadb` as
/// `target`; the bytes loaded and the rows masked per table.
async fn stream(
    programs: &Programs,
    source: &Login,
    source_database: &str,
    args: &[&str],
    target: &Login,
    masking: Option<(&Masker, &dump::DumpRules)>,
) -> Result<(u64, BTreeMap<String, u64>), DatabaseError> {
    let mut dumper = tokio::process::Command::new(&programs.dump);
    dumper.env_clear().env("PATH", "/usr/bin:/bin");
    source.apply(&mut dumper);
    dumper
        .args(args)
        .args([
            "--default-character-set=utf8mb4",
            "--max-allowed-packet=64M",
            "--net-buffer-length=1M",
        ])
        .arg(source_database)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut dumping = dumper.spawn().map_err(|e| {
        DatabaseError::Server(format!("cannot run {}: {e}", programs.dump.display()))
    })?;
    let mut loader = client(programs, target, false);
    loader.arg("--max-allowed-packet=64M");
    let mut loading = loader.spawn().map_err(|e| {
        DatabaseError::Server(format!("cannot run {}: {e}", programs.client.display()))
    })?;
    let mut from = dumping.stdout.take().expect("piped");
    let mut into = loading.stdin.take().expect("piped");
    let mut dump_errors = dumping.stderr.take().expect("piped");
    let mut load_errors = loading.stderr.take().expect("piped");
    let errors = tokio::spawn(async move {
        let (mut a, mut b) = (String::new(), String::new());
        let _ = tokio::join!(
            dump_errors.read_to_string(&mut a),
            load_errors.read_to_string(&mut b)
        );
        (a, b)
    });
    let streamed = async {
        let mut masker = masking.map(|(masker, rules)| dump::DumpMasker::new(masker, rules));
        let mut definers = Definers::default();
        let mut chunk = vec![0u8; 256 * 1024];
        let mut masked = Vec::with_capacity(512 * 1024);
        let mut out = Vec::with_capacity(512 * 1024);
        let mut bytes = 0u64;
        loop {
            let read = from
                .read(&mut chunk)
                .await
                .map_err(|e| DatabaseError::Server(format!("reading the dump: {e}")))?;
            masked.clear();
            out.clear();
            let input: &[u8] = if read == 0 {
                match masker.as_mut() {
                    Some(m) => {
                        let counts = m.finish(&mut masked).map_err(|e| {
                            DatabaseError::Invalid(format!("masking the copy: {e}"))
                        })?;
                        definers.push(&masked, &mut out);
                        definers.finish(&mut out);
                        into.write_all(&out)
                            .await
                            .map_err(|e| DatabaseError::Server(format!("writing the copy: {e}")))?;
                        bytes += out.len() as u64;
                        return Ok::<_, DatabaseError>((bytes, counts));
                    }
                    None => {
                        definers.finish(&mut out);
                        into.write_all(&out)
                            .await
                            .map_err(|e| DatabaseError::Server(format!("writing the copy: {e}")))?;
                        bytes += out.len() as u64;
                        return Ok((bytes, BTreeMap::new()));
                    }
                }
            } else {
                &chunk[..read]
            };
            match masker.as_mut() {
                Some(m) => {
                    m.push(input, &mut masked)
                        .map_err(|e| DatabaseError::Invalid(format!("masking the copy: {e}")))?;
                    definers.push(&masked, &mut out);
                }
                None => definers.push(input, &mut out),
            }
            into.write_all(&out)
                .await
                .map_err(|e| DatabaseError::Server(format!("writing the copy: {e}")))?;
            bytes += out.len() as u64;
        }
    }
    .await;
    drop(into);
    if streamed.is_err() {
        let _ = dumping.start_kill();
        let _ = loading.start_kill();
    }
    let dumped = dumping.wait().await;
    let loaded = loading.wait().await;
    let (dump_stderr, load_stderr) = errors.await.unwrap_or_default();
    // The client's and the dump's own error lines only: the client echoes a failed statement, rows and all.
    let failed = |what: &str, stderr: &str| {
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("ERROR") || l.starts_with("mariadb-dump:"))
            .map(|l| &l[..l.floor_char_boundary(500)])
            .collect();
        DatabaseError::Server(format!("{what}: {}", errors.join("\n")))
    };
    // The stream's own failure (the masker's) first: it killed both programs.
    let streamed = streamed?;
    // A load that failed first ends the dump with a broken pipe: its own error is the one to tell.
    if !loaded.as_ref().is_ok_and(|s| s.success()) {
        return Err(failed("loading the copy failed", &load_stderr));
    }
    if !dumped.as_ref().is_ok_and(|s| s.success()) {
        return Err(failed(
            "mariadb-dump failed reading the source",
            &dump_stderr,
        ));
    }
    Ok(streamed)
}

/// Drops `DEFINER=…` clauses from a dump's statements as they pass (a copy's objects are defined by its own
/// user), leaving rows alone: only lines that are not rows of an `INSERT` are looked at.
#[derive(Default)]
struct Definers {
    partial: Vec<u8>,
    in_rows: bool,
}

impl Definers {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            let (line, after) = rest.split_at(end + 1);
            if self.partial.is_empty() {
                self.line(line, out);
            } else {
                let mut whole = std::mem::take(&mut self.partial);
                whole.extend_from_slice(line);
                self.line(&whole, out);
            }
            rest = after;
        }
        self.partial.extend_from_slice(rest);
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        let last = std::mem::take(&mut self.partial);
        self.line(&last, out);
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<u8>) {
        let rows = self.in_rows || line.starts_with(b"INSERT INTO ");
        // An INSERT's rows go on over the lines that follow until one ends the statement.
        self.in_rows = rows && !line.trim_ascii_end().ends_with(b";");
        if rows {
            out.extend_from_slice(line);
            return;
        }
        strip_definers(line, out);
    }
}

/// `line` without its `DEFINER=`user`@`host`` clauses.
fn strip_definers(line: &[u8], out: &mut Vec<u8>) {
    const CLAUSE: &[u8] = b"DEFINER=`";
    let mut rest = line;
    while let Some(at) = rest.windows(CLAUSE.len()).position(|w| w == CLAUSE) {
        out.extend_from_slice(&rest[..at]);
        // Past `user`@`host`: two quoted names (a doubled backquote is part of a name).
        let mut i = at + CLAUSE.len() - 1;
        for _ in 0..2 {
            i += 1;
            while i < rest.len() {
                if rest[i] == b'`' {
                    if rest.get(i + 1) == Some(&b'`') {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i += 1;
            if rest.get(i) == Some(&b'@') {
                i += 1;
            }
        }
        rest = &rest[i.min(rest.len())..];
    }
    out.extend_from_slice(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_series_is_read_from_the_servers_version() {
        assert_eq!(
            installed_series(
                "/usr/sbin/mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64 (Debian 12)"
            ),
            Some(("10.11.19", (10, 11)))
        );
        assert_eq!(installed_series("something else"), None);
    }

    #[test]
    fn an_admin_url_names_the_server_and_its_administrator() {
        let login = admin_from_url(&Secret::new(
            "mysql://ad%40min:p%3Ass@db.example.com:3307/".to_owned(),
        ))
        .expect("a URL");
        let Login::User {
            host,
            port,
            user,
            password,
            database,
        } = login
        else {
            panic!("a login over TCP");
        };
        assert_eq!(
            (
                host.as_str(),
                port,
                user.as_str(),
                password.expose(),
                database.as_str()
            ),
            ("db.example.com", 3307, "ad@min", "p:ss", "")
        );
        let Ok(Login::User { port, .. }) = admin_from_url(&Secret::new("mysql://a:b@h".to_owned()))
        else {
            panic!("a login");
        };
        assert_eq!(port, 3306);
        for (url, problem) in [
            (
                "postgres://a:secret-pw@h/",
                "it does not begin with mysql://",
            ),
            ("mysql://h:3306/", "it names no user"),
            ("mysql://a:secret-pw@h:x/", "its port is not a number"),
            ("mysql://a:secret-pw@:3306/", "it names no host"),
        ] {
            let error = admin_from_url(&Secret::new(url.to_owned()))
                .expect_err(url)
                .to_string();
            assert!(error.ends_with(problem), "{url}: {error}");
            assert!(!error.contains("secret-pw"), "{error}");
        }
    }

    #[test]
    fn grants_match_their_database_alone() {
        // `_` would match any character in a GRANT's database name.
        assert_eq!(grant_pattern("shop_pr_1_db"), "`shop\\_pr\\_1\\_db`");
        assert_eq!(quote_identifier("a`b"), "`a``b`");
        assert_eq!(quote_literal("it's \\"), "'it\\'s \\\\'");
    }

    #[test]
    fn seed_errors_name_the_file_and_line() {
        assert_eq!(
            located(
                "ERROR 1146 (42S02) at line 3: Table 'a_b.nope' doesn't exist\n",
                "seed.sql"
            ),
            "seed.sql:3: Table 'a_b.nope' doesn't exist (error 1146)"
        );
        assert_eq!(
            located(
                "ERROR at line 2: Not allowed in the sandbox mode\n",
                "seed.sql"
            ),
            "seed.sql:2: Not allowed in the sandbox mode"
        );
        assert_eq!(
            located("", "s.sql"),
            "s.sql: the mariadb client failed without a message"
        );
    }

    #[test]
    fn definers_are_dropped_from_definitions_but_not_from_rows() {
        let dump = b"/*!50013 DEFINER=`shop_prod``x`@`%` SQL SECURITY DEFINER */\nCREATE DEFINER=`a`@`localhost` TRIGGER t\nINSERT INTO `t` (`a`) VALUES ('DEFINER=`x`@`%`'),\n('DEFINER=`y`@`%`');\nCREATE DEFINER=`b`@`%` PROCEDURE p()";
        let mut out = Vec::new();
        let mut definers = Definers::default();
        for chunk in dump.chunks(7) {
            definers.push(chunk, &mut out);
        }
        definers.finish(&mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "/*!50013  SQL SECURITY DEFINER */\nCREATE  TRIGGER t\nINSERT INTO `t` (`a`) VALUES ('DEFINER=`x`@`%`'),\n('DEFINER=`y`@`%`');\nCREATE  PROCEDURE p()"
        );
    }

    #[test]
    fn the_configuration_keeps_the_server_to_loopback_and_its_own_files() {
        let text = server_config(Path::new("/run/preview/mysql"), 3407);
        assert!(text.contains("bind-address=127.0.0.1\n"));
        assert!(text.contains("port=3407\n"));
        assert!(text.contains("local-infile=0\n"));
        assert!(text.contains("secure-file-priv=/run/preview/mysql/files\n"));
        assert!(text.contains("socket=/run/preview/mysql/run/mysqld.sock\n"));
    }
}
