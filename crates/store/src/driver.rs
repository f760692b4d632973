//! What a database driver must do for the store: run a query, and run statements as one transaction.

use async_trait::async_trait;

#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Int(i64),
    Text(String),
    Null,
}

impl From<i64> for Param {
    fn from(value: i64) -> Self {
        Param::Int(value)
    }
}

impl From<&str> for Param {
    fn from(value: &str) -> Self {
        Param::Text(value.to_owned())
    }
}

impl From<String> for Param {
    fn from(value: String) -> Self {
        Param::Text(value)
    }
}

impl From<Option<String>> for Param {
    fn from(value: Option<String>) -> Self {
        value.map_or(Param::Null, Param::Text)
    }
}

impl From<Option<i64>> for Param {
    fn from(value: Option<i64>) -> Self {
        value.map_or(Param::Null, Param::Int)
    }
}

/// One row; columns are integers, text or null (the only types the schema uses).
pub type Row = Vec<Param>;

/// A statement of a transaction. With `must_change`, the transaction is rolled back unless it changes a row.
#[derive(Debug, Clone)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<Param>,
    pub must_change: bool,
}

impl Statement {
    pub fn new(sql: &str, params: Vec<Param>) -> Self {
        Statement {
            sql: sql.to_owned(),
            params,
            must_change: false,
        }
    }

    pub fn must_change(mut self) -> Self {
        self.must_change = true;
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// A `must_change` statement (by index) changed nothing; the transaction was rolled back.
    #[error("statement {0} changed nothing")]
    Unchanged(usize),
    #[error("{0}")]
    Database(String),
}

/// Statements use `$1`, `$2`, … placeholders, numbered in order of first use, which both SQLite and PostgreSQL read.
#[async_trait]
pub trait Driver: Send + Sync {
    /// An SQL expression for the store's own clock, in milliseconds since the Unix epoch: leases expire by it,
    /// so that daemons whose clocks disagree still agree on who holds one.
    fn now_sql(&self) -> &'static str;
    async fn query(&self, sql: &str, params: Vec<Param>) -> Result<Vec<Row>, DriverError>;
    async fn transaction(&self, statements: Vec<Statement>) -> Result<(), DriverError>;
}
