//! The shared driver: a PostgreSQL server, so that several daemons can work on one state.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls};

use crate::driver::{Driver, DriverError, Param, Row, Statement};

/// Connections kept open to the server; each call uses one at a time.
const CONNECTIONS: usize = 4;
/// How long making a connection may take: an unreachable server fails a call, it does not hang it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A small pool of connections, each made again when it broke (the server restarted or the network failed).
pub(crate) struct Postgres {
    url: String,
    slots: Vec<Mutex<Option<Client>>>,
    next: AtomicUsize,
}

impl Postgres {
    pub(crate) async fn connect(url: &str) -> Result<Self, DriverError> {
        let first = open(url).await?;
        let mut slots: Vec<Mutex<Option<Client>>> = vec![Mutex::new(Some(first))];
        slots.extend((1..CONNECTIONS).map(|_| Mutex::new(None)));
        Ok(Postgres {
            url: url.to_owned(),
            slots,
            next: AtomicUsize::new(0),
        })
    }

    /// A free slot if there is one, else the next in turn; with a connection that is open.
    async fn client(&self) -> Result<MutexGuard<'_, Option<Client>>, DriverError> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let free = (0..self.slots.len())
            .find_map(|i| self.slots[(start + i) % self.slots.len()].try_lock().ok());
        let mut slot = match free {
            Some(slot) => slot,
            None => self.slots[start % self.slots.len()].lock().await,
        };
        if slot.as_ref().is_none_or(Client::is_closed) {
            *slot = None;
            *slot = Some(open(&self.url).await?);
        }
        Ok(slot)
    }
}

async fn open(url: &str) -> Result<Client, DriverError> {
    let unreachable =
        |e: String| DriverError::Database(format!("cannot connect to the PostgreSQL store: {e}"));
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| unreachable(e.to_string()))?;
    // A connection cut off without a reset (a partition, a host gone) is noticed within seconds, and no statement
    // holds a connection of the pool for long: calls fail — and are retried on a new connection — instead of
    // hanging with their slot.
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(10))
        .keepalives_interval(Duration::from_secs(5))
        .keepalives_retries(3)
        .tcp_user_timeout(Duration::from_secs(30));
    let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, config.connect(NoTls))
        .await
        .map_err(|_| unreachable(format!("no answer within {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| unreachable(e.to_string()))?;
    tokio::spawn(async move {
        // The client reports a closed connection on its next use; the pool then makes a new one.
        let _ = connection.await;
    });
    // Set once the session exists (connection poolers refuse them as startup options), unless the URL's
    // `options` already set them.
    let given = config.get_options().unwrap_or_default();
    let mut settings = String::new();
    if !given.contains("statement_timeout") {
        settings.push_str("SET statement_timeout = 60000; ");
    }
    if !given.contains("lock_timeout") {
        settings.push_str("SET lock_timeout = 30000; ");
    }
    if !settings.is_empty() {
        client
            .batch_execute(&settings)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
    }
    Ok(client)
}

/// Whether a call failed because its connection broke, so that it may be made again on a new one.
fn broken(error: &tokio_postgres::Error, client: &Client) -> bool {
    error.is_closed()
        || client.is_closed()
        || error.as_db_error().is_none_or(|db| {
            // The server is shutting down or restarting: the next connection may reach it again.
            db.code().code().starts_with("57P")
        })
}

fn database(error: tokio_postgres::Error) -> DriverError {
    DriverError::Database(match error.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => error.to_string(),
    })
}

/// PostgreSQL needs typed parameters, a NULL included: each takes the type the server inferred for its slot.
fn bind(params: &[Param], types: &[Type]) -> Vec<Box<dyn ToSql + Sync + Send>> {
    params
        .iter()
        .zip(types)
        .map(|(p, ty)| -> Box<dyn ToSql + Sync + Send> {
            match (p, ty) {
                (Param::Int(i), &Type::INT4) => Box::new(i32::try_from(*i).unwrap_or(i32::MAX)),
                (Param::Int(i), _) => Box::new(*i),
                (Param::Text(t), _) => Box::new(t.clone()),
                (Param::Null, &Type::INT8) => Box::new(Option::<i64>::None),
                (Param::Null, &Type::INT4) => Box::new(Option::<i32>::None),
                (Param::Null, _) => Box::new(Option::<String>::None),
            }
        })
        .collect()
}

fn refs(params: &[Box<dyn ToSql + Sync + Send>]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

fn read_row(row: &tokio_postgres::Row) -> Result<Row, DriverError> {
    (0..row.len())
        .map(|i| {
            let column = &row.columns()[i];
            Ok(match *column.type_() {
                Type::INT8 | Type::INT4 => row
                    .try_get::<_, Option<i64>>(i)
                    .map(Param::from)
                    .or_else(|_| {
                        row.try_get::<_, Option<i32>>(i)
                            .map(|v| Param::from(v.map(i64::from)))
                    })
                    .map_err(database)?,
                _ => row
                    .try_get::<_, Option<String>>(i)
                    .map(Param::from)
                    .map_err(database)?,
            })
        })
        .collect()
}

/// How a transaction failed: before its commit (nothing was written) or during it (it may have been).
enum Failure {
    Before(tokio_postgres::Error),
    Unchanged(usize),
    AtCommit(tokio_postgres::Error),
}

async fn query_on(
    client: &Client,
    sql: &str,
    params: &[Param],
) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    let statement = client.prepare(sql).await?;
    let bound = bind(params, statement.params());
    client.query(&statement, &refs(&bound)).await
}

async fn transaction_on(client: &mut Client, statements: &[Statement]) -> Result<(), Failure> {
    let transaction = client.transaction().await.map_err(Failure::Before)?;
    for (index, statement) in statements.iter().enumerate() {
        let prepared = transaction
            .prepare(&statement.sql)
            .await
            .map_err(Failure::Before)?;
        let bound = bind(&statement.params, prepared.params());
        let changed = transaction
            .execute(&prepared, &refs(&bound))
            .await
            .map_err(Failure::Before)?;
        if statement.must_change && changed == 0 {
            // Dropping the transaction rolls it back.
            return Err(Failure::Unchanged(index));
        }
    }
    transaction.commit().await.map_err(Failure::AtCommit)
}

#[async_trait]
impl Driver for Postgres {
    fn now_sql(&self) -> &'static str {
        "CAST(floor(extract(epoch FROM clock_timestamp()) * 1000) AS BIGINT)"
    }

    async fn query(&self, sql: &str, params: Vec<Param>) -> Result<Vec<Row>, DriverError> {
        // A read is made again, once, on a new connection when its connection broke.
        for attempt in 0..2 {
            let mut slot = self.client().await?;
            let Some(client) = slot.as_ref() else {
                continue;
            };
            match query_on(client, sql, &params).await {
                Ok(rows) => return rows.iter().map(read_row).collect(),
                Err(error) if attempt == 0 && broken(&error, client) => *slot = None,
                Err(error) => return Err(database(error)),
            }
        }
        Err(DriverError::Database(
            "the PostgreSQL store is unreachable".to_owned(),
        ))
    }

    async fn transaction(&self, statements: Vec<Statement>) -> Result<(), DriverError> {
        // Made again, once, when the connection broke before the commit: then nothing of it was written.
        for attempt in 0..2 {
            let mut slot = self.client().await?;
            let Some(client) = slot.as_mut() else {
                continue;
            };
            match transaction_on(client, &statements).await {
                Ok(()) => return Ok(()),
                Err(Failure::Unchanged(index)) => return Err(DriverError::Unchanged(index)),
                Err(Failure::Before(error)) if attempt == 0 && broken(&error, client) => {
                    *slot = None;
                }
                Err(Failure::Before(error)) => return Err(database(error)),
                Err(Failure::AtCommit(error)) => {
                    if client.is_closed() {
                        *slot = None;
                    }
                    return Err(DriverError::Database(format!(
                        "the connection to the PostgreSQL store broke while committing; the change may or may not be stored: {}",
                        database(error)
                    )));
                }
            }
        }
        Err(DriverError::Database(
            "the PostgreSQL store is unreachable".to_owned(),
        ))
    }
}
