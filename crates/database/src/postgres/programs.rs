//! `psql` and `pg_dump` of the server's version, run with the connection in their environment (never their
//! arguments), nothing else of the daemon's environment, and no user's `.psqlrc`.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::DatabaseError;
use crate::postgres::binaries::Binaries;
use crate::postgres::connection::Connection;

fn command(binaries: &Binaries, program: &str, connection: &Connection) -> Command {
    let mut command = Command::new(binaries.program(program));
    command
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("PGCONNECT_TIMEOUT", "10")
        .envs(connection.variables())
        .kill_on_drop(true);
    command
}

/// Runs `sql` with `psql` in one transaction, stopping at the first error. `name` is how errors call the input
/// (`db/seed.sql`): psql's own messages say `psql:<name>:<line>: ERROR: …`.
pub async fn run_sql(
    binaries: &Binaries,
    connection: &Connection,
    sql: &[u8],
    name: &str,
    before: Option<&str>,
) -> Result<(), DatabaseError> {
    let mut psql = command(binaries, "psql", connection);
    psql.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction"]);
    if let Some(before) = before {
        psql.arg("-c").arg(before);
    }
    psql.args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = psql
        .spawn()
        .map_err(|e| DatabaseError::Server(format!("cannot run psql: {e}")))?;
    let stderr = child.stderr.take();
    // Only the beginning of what it says is kept: a server (or code in it) can make it say without end.
    let said = tokio::spawn(async move {
        let mut kept = Vec::new();
        if let Some(mut stderr) = stderr {
            let mut chunk = vec![0u8; 8192];
            while let Ok(read) = tokio::io::AsyncReadExt::read(&mut stderr, &mut chunk).await {
                if read == 0 {
                    break;
                }
                let room = STDERR_KEPT.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..read.min(room)]);
            }
        }
        kept
    });
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| DatabaseError::Server("psql has no input".to_owned()))?;
    let sql = sql.to_vec();
    let writer = tokio::spawn(async move {
        // psql stops reading at the first error: the rest of the input is not needed.
        let _ = stdin.write_all(&sql).await;
    });
    let status = child
        .wait()
        .await
        .map_err(|e| DatabaseError::Server(format!("psql failed: {e}")))?;
    let _ = writer.await;
    let stderr = said.await.unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    Err(DatabaseError::Sql(psql_errors(&stderr, name)))
}

/// How much of `psql`'s messages is kept.
const STDERR_KEPT: usize = 64 * 1024;

/// psql's error lines, with its name for standard input replaced by the file's.
fn psql_errors(stderr: &[u8], name: &str) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<String> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .take(12)
        .map(|line| {
            let line = line.replacen("psql:<stdin>:", &format!("{name}:"), 1);
            line.strip_prefix("psql:")
                .map_or(line.clone(), str::to_owned)
        })
        .collect();
    if lines.is_empty() {
        format!("{name}: psql failed without a message")
    } else {
        lines.join("\n")
    }
}

/// `pg_dump` of one section (`pre-data`, `post-data`) of the schema, as seen by the snapshot `snapshot`, without
/// owners or privileges; then `psql` runs it on `target` (as `role`, when given).
pub async fn copy_schema_section(
    binaries: &Binaries,
    source: &Connection,
    snapshot: &str,
    section: &str,
    target: &Connection,
    role: Option<&str>,
) -> Result<(), DatabaseError> {
    let output = command(binaries, "pg_dump", source)
        .args([
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            "--no-publications",
            "--no-subscriptions",
            // A table another session holds exclusively fails the copy instead of holding it.
            "--lock-wait-timeout=60s",
            "--section",
            section,
            "--snapshot",
            snapshot,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .map_err(|e| DatabaseError::Server(format!("cannot run pg_dump: {e}")))?;
    if !output.status.success() {
        return Err(DatabaseError::Server(format!(
            "pg_dump of the {section} schema of {} failed: {}",
            source.describe(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    // `pg_dump` 17 and later write a setting older servers do not have; without it, nothing changes.
    let script: Vec<u8> = output
        .stdout
        .split_inclusive(|b| *b == b'\n')
        .filter(|line| line.trim_ascii() != b"SET transaction_timeout = 0;")
        .flatten()
        .copied()
        .collect();
    run_sql(
        binaries,
        target,
        &script,
        &format!("the {section} schema of {}", source.describe()),
        role.map(|role| {
            format!(
                "SET ROLE {}",
                crate::postgres::connection::quote_identifier(role)
            )
        })
        .as_deref(),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psql_errors_name_the_file_and_line() {
        let stderr = b"psql:<stdin>:3: ERROR:  syntax error at or near \"INSERTT\"\nLINE 1: INSERTT INTO customers\n        ^\n";
        let message = psql_errors(stderr, "db/seed.sql");
        assert!(
            message.starts_with("db/seed.sql:3: ERROR:  syntax error at or near \"INSERTT\""),
            "{message}"
        );
        assert!(
            message.contains("LINE 1: INSERTT INTO customers"),
            "{message}"
        );
        assert_eq!(
            psql_errors(b"", "x.sql"),
            "x.sql: psql failed without a message"
        );
    }
}
