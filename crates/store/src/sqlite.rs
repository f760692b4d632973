//! The embedded driver: one SQLite file in WAL mode, used from a blocking thread per call.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, ToSql};

use crate::driver::{Driver, DriverError, Param, Row, Statement};

pub(crate) struct Sqlite {
    connection: Arc<Mutex<Connection>>,
}

impl Sqlite {
    pub(crate) fn open(path: &Path) -> Result<Self, DriverError> {
        let connection = Connection::open(path).map_err(database)?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
            )
            .map_err(database)?;
        connection
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(database)?;
        Ok(Sqlite {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, DriverError> + Send + 'static,
    ) -> Result<T, DriverError> {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || {
            let mut connection = connection
                .lock()
                .map_err(|_| DriverError::Database("store lock poisoned".into()))?;
            work(&mut connection)
        })
        .await
        .map_err(|e| DriverError::Database(format!("store task failed: {e}")))?
    }
}

fn database(error: rusqlite::Error) -> DriverError {
    DriverError::Database(error.to_string())
}

impl ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Param::Int(i) => ToSqlOutput::Owned(Value::Integer(*i)),
            Param::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
            Param::Null => ToSqlOutput::Owned(Value::Null),
        })
    }
}

fn run_query(
    connection: &Connection,
    sql: &str,
    params: &[Param],
) -> Result<Vec<Row>, DriverError> {
    let mut statement = connection.prepare_cached(sql).map_err(database)?;
    let columns = statement.column_count();
    let mut rows = statement
        .query(rusqlite::params_from_iter(params.iter()))
        .map_err(database)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(database)? {
        let mut values = Vec::with_capacity(columns);
        for i in 0..columns {
            values.push(match row.get_ref(i).map_err(database)? {
                ValueRef::Integer(n) => Param::Int(n),
                ValueRef::Text(t) => Param::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Null => Param::Null,
                other => {
                    return Err(DriverError::Database(format!(
                        "unexpected column type {:?}",
                        other.data_type()
                    )));
                }
            });
        }
        out.push(values);
    }
    Ok(out)
}

#[async_trait]
impl Driver for Sqlite {
    fn now_sql(&self) -> &'static str {
        "CAST((julianday('now') - 2440587.5) * 86400000.0 AS BIGINT)"
    }

    async fn query(&self, sql: &str, params: Vec<Param>) -> Result<Vec<Row>, DriverError> {
        let sql = sql.to_owned();
        self.with(move |connection| run_query(connection, &sql, &params))
            .await
    }

    async fn transaction(&self, statements: Vec<Statement>) -> Result<(), DriverError> {
        self.with(move |connection| {
            let transaction = connection
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(database)?;
            for (index, statement) in statements.iter().enumerate() {
                let changed = transaction
                    .execute(
                        &statement.sql,
                        rusqlite::params_from_iter(statement.params.iter()),
                    )
                    .map_err(database)?;
                if statement.must_change && changed == 0 {
                    return Err(DriverError::Unchanged(index));
                }
            }
            transaction.commit().map_err(database)
        })
        .await
    }
}
