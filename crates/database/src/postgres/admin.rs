//! What the daemon does on a server as its administrator: per-environment login roles and databases with no
//! privilege beyond their own database, copies made from templates, and their removal.

use preview_secrets::Secret;
use tokio_postgres::Client;

use crate::DatabaseError;
use crate::postgres::connection::{quote_identifier as ident, quote_literal as literal};

/// How many connections one environment's role may hold at once, so that no environment takes a shared server's
/// connections from the others.
pub const CONNECTION_LIMIT: u32 = 32;

/// The role that owns the objects of golden snapshots: a copy made from one hands them to its environment's role.
pub const GOLDEN_OWNER: &str = "preview_golden";

pub async fn role_exists(client: &Client, role: &str) -> Result<bool, DatabaseError> {
    let row = client
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
        .await
        .map_err(|e| DatabaseError::postgres(&format!("cannot look for role `{role}`"), &e))?;
    Ok(row.is_some())
}

pub async fn database_exists(client: &Client, database: &str) -> Result<bool, DatabaseError> {
    let row = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
        .await
        .map_err(|e| {
            DatabaseError::postgres(&format!("cannot look for database `{database}`"), &e)
        })?;
    Ok(row.is_some())
}

/// The environment's login role, made or given its password again: no superuser, no databases or roles of its
/// own making, no replication, a connection limit. The password reaches the server only as a SCRAM verifier, so
/// it is in no statement a server could log.
pub async fn ensure_role(
    client: &Client,
    role: &str,
    password: &Secret,
) -> Result<(), DatabaseError> {
    let verifier = postgres_protocol::password::scram_sha_256(password.expose().as_bytes());
    let attributes = format!(
        "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS CONNECTION LIMIT {CONNECTION_LIMIT} PASSWORD {}",
        literal(&verifier)
    );
    let statement = if role_exists(client, role).await? {
        format!("ALTER ROLE {} {attributes}", ident(role))
    } else {
        format!("CREATE ROLE {} {attributes}", ident(role))
    };
    client
        .batch_execute(&statement)
        .await
        .map_err(|e| DatabaseError::postgres(&format!("cannot make role `{role}`"), &e))
}

/// The owner of golden snapshots' objects. On servers `preview` runs it logs in (`login`), over the socket from the
/// daemon's user only, to write copies; elsewhere it cannot log in.
pub async fn ensure_golden_owner(client: &Client, login: bool) -> Result<(), DatabaseError> {
    let fail = |e| DatabaseError::postgres("cannot make the golden snapshots' owner", &e);
    if role_exists(client, GOLDEN_OWNER).await? {
        if login {
            client
                .batch_execute(&format!("ALTER ROLE {} LOGIN", ident(GOLDEN_OWNER)))
                .await
                .map_err(fail)?;
        }
        return Ok(());
    }
    let statement = format!(
        "CREATE ROLE {} {}",
        ident(GOLDEN_OWNER),
        if login { "LOGIN" } else { "NOLOGIN" }
    );
    match client.batch_execute(&statement).await {
        Ok(()) => Ok(()),
        // Made meanwhile by another deployment on the same server.
        Err(_) if role_exists(client, GOLDEN_OWNER).await? => Ok(()),
        Err(e) => Err(fail(e)),
    }
}

/// A new database owned by `owner`, empty or a copy of `template`, that no other role may connect to or make
/// temporary tables in.
pub async fn create_database(
    client: &Client,
    database: &str,
    owner: &str,
    template: Option<&str>,
) -> Result<(), DatabaseError> {
    // A large template is copied file by file (PostgreSQL 15 and later write every block of the default strategy
    // through the WAL, about twice the time); a small one through the WAL, which forces no checkpoint.
    let file_copy = match template {
        Some(template) => client
            .query_one(
                "SELECT current_setting('server_version_num')::int >= 150000
                        AND pg_database_size($1) > 64 * 1024 * 1024",
                &[&template],
            )
            .await
            .map(|row| row.get::<_, bool>(0))
            .unwrap_or(false),
        None => false,
    };
    client
        .batch_execute(&format!(
            "CREATE DATABASE {} OWNER {} TEMPLATE {}{}",
            ident(database),
            ident(owner),
            ident(template.unwrap_or("template0")),
            if file_copy { " STRATEGY FILE_COPY" } else { "" }
        ))
        .await
        .map_err(|e| {
            DatabaseError::postgres(&format!("cannot create database `{database}`"), &e)
        })?;
    client
        .batch_execute(&format!(
            "REVOKE ALL ON DATABASE {} FROM PUBLIC",
            ident(database)
        ))
        .await
        .map_err(|e| {
            DatabaseError::postgres(&format!("cannot close database `{database}` to others"), &e)
        })
}

/// Whether anyone may connect to `database` (golden snapshots allow no one, so that they can serve as templates).
pub async fn allow_connections(
    client: &Client,
    database: &str,
    allowed: bool,
) -> Result<(), DatabaseError> {
    client
        .batch_execute(&format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS {allowed}",
            ident(database)
        ))
        .await
        .map_err(|e| DatabaseError::postgres(&format!("cannot change database `{database}`"), &e))
}

pub async fn rename_database(client: &Client, from: &str, to: &str) -> Result<(), DatabaseError> {
    client
        .batch_execute(&format!(
            "ALTER DATABASE {} RENAME TO {}",
            ident(from),
            ident(to)
        ))
        .await
        .map_err(|e| {
            DatabaseError::postgres(&format!("cannot rename database `{from}` to `{to}`"), &e)
        })
}

/// Drops the database, ending its sessions; nothing to do when it is absent.
pub async fn drop_database(client: &Client, database: &str) -> Result<(), DatabaseError> {
    client
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            ident(database)
        ))
        .await
        .map_err(|e| DatabaseError::postgres(&format!("cannot drop database `{database}`"), &e))
}

/// Drops the role; nothing to do when it is absent. Its database goes first.
pub async fn drop_role(client: &Client, role: &str) -> Result<(), DatabaseError> {
    client
        .batch_execute(&format!("DROP ROLE IF EXISTS {}", ident(role)))
        .await
        .map_err(|e| DatabaseError::postgres(&format!("cannot drop role `{role}`"), &e))
}

/// Hands every object of the golden owner in the database `client` is connected to over to `role`, and takes
/// the golden owner's rights there away. Golden databases themselves belong to the administrator, so that this
/// hands over no database but the copy's contents.
pub async fn take_over(client: &Client, role: &str) -> Result<(), DatabaseError> {
    client
        .batch_execute(&format!(
            "REASSIGN OWNED BY {0} TO {1}; REVOKE ALL ON SCHEMA public FROM {0}",
            ident(GOLDEN_OWNER),
            ident(role)
        ))
        .await
        .map_err(|e| {
            DatabaseError::postgres(&format!("cannot hand the copy's objects to `{role}`"), &e)
        })
}

/// Hands a copy the golden owner wrote to `role`: the database `database` itself and, through `inside` (a client
/// connected to it), every object in it; the database is closed to everyone else, the golden owner included.
pub async fn hand_over_copy(
    client: &Client,
    inside: &Client,
    database: &str,
    role: &str,
) -> Result<(), DatabaseError> {
    client
        .batch_execute(&format!(
            "ALTER DATABASE {0} OWNER TO {1}; REVOKE ALL ON DATABASE {0} FROM PUBLIC, {2}",
            ident(database),
            ident(role),
            ident(GOLDEN_OWNER)
        ))
        .await
        .map_err(|e| DatabaseError::postgres("cannot hand the copy over", &e))?;
    take_over(inside, role).await
}

/// The databases whose names start with `prefix`.
pub async fn databases_named(client: &Client, prefix: &str) -> Result<Vec<String>, DatabaseError> {
    let rows = client
        .query(
            "SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY datname",
            &[&prefix],
        )
        .await
        .map_err(|e| DatabaseError::postgres("cannot list databases", &e))?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// How many databases and login roles of environments the server holds: every database but its own, templates
/// golden snapshots (and their making) and their warm pools, every role but its own and the system's. A role without its database
/// is an environment's database being made.
pub async fn environment_databases_and_roles(client: &Client) -> Result<i64, DatabaseError> {
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM pg_database
                     WHERE datname NOT IN ('postgres', 'template0', 'template1')
                       AND NOT starts_with(datname, 'preview_golden_')
                       AND NOT starts_with(datname, 'preview_making_')
                       AND NOT starts_with(datname, 'preview_warm_')
                       AND NOT starts_with(datname, 'preview_filling_'))
                  + (SELECT count(*) FROM pg_roles
                     WHERE NOT starts_with(rolname, 'pg_') AND rolname NOT IN ('preview', 'preview_golden'))",
            &[],
        )
        .await
        .map_err(|e| DatabaseError::postgres("cannot count the server's databases", &e))?;
    Ok(row.get(0))
}
