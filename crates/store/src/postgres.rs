//! The shared driver: a PostgreSQL server, so that several daemons can work on one state.

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls};

use crate::driver::{Driver, DriverError, Param, Row, Statement};

pub(crate) struct Postgres {
    client: Mutex<Client>,
}

impl Postgres {
    pub(crate) async fn connect(url: &str) -> Result<Self, DriverError> {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await.map_err(|e| {
            DriverError::Database(format!("cannot connect to the PostgreSQL store: {e}"))
        })?;
        tokio::spawn(async move {
            // The client reports a closed connection on its next use; nothing to do here.
            let _ = connection.await;
        });
        Ok(Postgres {
            client: Mutex::new(client),
        })
    }
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

#[async_trait]
impl Driver for Postgres {
    async fn query(&self, sql: &str, params: Vec<Param>) -> Result<Vec<Row>, DriverError> {
        let client = self.client.lock().await;
        let statement = client.prepare(sql).await.map_err(database)?;
        let bound = bind(&params, statement.params());
        let rows = client
            .query(&statement, &refs(&bound))
            .await
            .map_err(database)?;
        rows.iter().map(read_row).collect()
    }

    async fn transaction(&self, statements: Vec<Statement>) -> Result<(), DriverError> {
        let mut client = self.client.lock().await;
        let transaction = client.transaction().await.map_err(database)?;
        for (index, statement) in statements.iter().enumerate() {
            let prepared = transaction
                .prepare(&statement.sql)
                .await
                .map_err(database)?;
            let bound = bind(&statement.params, prepared.params());
            let changed = transaction
                .execute(&prepared, &refs(&bound))
                .await
                .map_err(database)?;
            if statement.must_change && changed == 0 {
                // Dropping the transaction rolls it back.
                return Err(DriverError::Unchanged(index));
            }
        }
        transaction.commit().await.map_err(database)
    }
}
