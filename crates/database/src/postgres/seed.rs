//! Runs a seed file: its statements one by one in one transaction, over a connection of the environment's own
//! role, each error named by the file and line (`db/seed.sql:3: ERROR:  …`). Nothing of the file is run by a
//! program of the daemon's machine: see `sql_script`.

use bytes::Bytes;
use futures_util::SinkExt;
use tokio_postgres::error::ErrorPosition;

use crate::DatabaseError;
use crate::postgres::connection::Connection;
use crate::sql_script::{Statement, statements};

pub async fn run_seed(login: &Connection, script: &[u8], file: &str) -> Result<(), DatabaseError> {
    let script = std::str::from_utf8(script).map_err(|e| {
        DatabaseError::Sql(format!(
            "{file}: not UTF-8 text (at byte {})",
            e.valid_up_to()
        ))
    })?;
    let statements = statements(script).map_err(|(line, command)| {
        DatabaseError::Sql(format!(
            "{file}:{line}: `{command}` is a psql command; a seed file holds SQL only (write `COPY … FROM stdin;` with its rows and `\\.` instead of `\\copy`)"
        ))
    })?;
    let mut client = login.connect().await?;
    let transaction = client
        .transaction()
        .await
        .map_err(|e| DatabaseError::postgres(&format!("{file}: cannot begin"), &e))?;
    for statement in &statements {
        let result = match statement {
            Statement::Sql { text, .. } => transaction.batch_execute(text).await,
            Statement::CopyIn { text, rows, .. } => copy_in(&transaction, text, rows).await,
        };
        if let Err(error) = result {
            // Dropping the transaction rolls it back.
            return Err(DatabaseError::Sql(describe(file, statement, &error)));
        }
    }
    transaction
        .commit()
        .await
        .map_err(|e| DatabaseError::Sql(format!("{file}: cannot commit: {e}")))
}

async fn copy_in(
    transaction: &tokio_postgres::Transaction<'_>,
    statement: &str,
    rows: &str,
) -> Result<(), tokio_postgres::Error> {
    let sink = transaction.copy_in::<_, Bytes>(statement).await?;
    futures_util::pin_mut!(sink);
    sink.send(Bytes::from(rows.to_owned())).await?;
    sink.finish().await.map(|_| ())
}

/// `file:line: ERROR:  message`, the line that of the error's position when PostgreSQL gives one.
fn describe(file: &str, statement: &Statement, error: &tokio_postgres::Error) -> String {
    let Some(db) = error.as_db_error() else {
        return format!("{file}:{}: {error}", statement.line());
    };
    let text = match statement {
        Statement::Sql { text, .. } | Statement::CopyIn { text, .. } => text,
    };
    let line = match db.position() {
        Some(ErrorPosition::Original(position)) => {
            let before: String = text
                .chars()
                .take((*position as usize).saturating_sub(1))
                .collect();
            statement.line() + before.matches('\n').count()
        }
        _ => statement.line(),
    };
    let mut message = format!("{file}:{line}: {}:  {}", db.severity(), db.message());
    if let Some(detail) = db.detail() {
        message.push_str(&format!("\nDETAIL:  {detail}"));
    }
    if let Some(hint) = db.hint() {
        message.push_str(&format!("\nHINT:  {hint}"));
    }
    message
}
