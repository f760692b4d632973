//! Databases as an engine strategy, shared by the runtimes: PostgreSQL servers that `preview` runs itself, one
//! database and login role per environment inside them (or inside an external server), seeding from SQL files,
//! consistent and masked copies of another environment's data, and golden snapshots that previews are made from.
//!
//! `masking` and `copy_text` are pure (no I/O, no connections): the deterministic keyed transforms and the
//! codec of PostgreSQL's `COPY` text format that lets rows be masked in the stream. `postgres` is the I/O edge.
//! `redis` is the second engine: a server per environment, its configuration, a seed file's commands and its
//! snapshots.
//! This crate knows nothing of the engine, the store or the runtimes' processes: a runtime hands it what a server
//! needs (a port, a directory, a user) and supervises the server's process itself.

pub mod content;
pub mod copy_text;
pub mod masking;
pub mod masking_plan;
pub mod mysql;
pub mod postgres;
pub mod redis;
pub mod sql_script;

/// What went wrong with a database or its server; messages name the database, file or rule and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// The requested server version is not installed.
    #[error("{0}")]
    Missing(String),
    /// Bad input: a URL, a masking rule, a source that does not exist.
    #[error("{0}")]
    Invalid(String),
    /// A SQL file or schema that PostgreSQL refused, with the place psql reported.
    #[error("{0}")]
    Sql(String),
    /// The server or one of its programs failed.
    #[error("{0}")]
    Server(String),
}

impl DatabaseError {
    /// `context: PostgreSQL's message`, with its detail and hint when it has them.
    pub fn postgres(context: &str, error: &tokio_postgres::Error) -> DatabaseError {
        let message = match error.as_db_error() {
            Some(db) => {
                let mut message = format!("{context}: {}", db.message());
                if let Some(detail) = db.detail() {
                    message.push_str(&format!(" ({detail})"));
                }
                if let Some(hint) = db.hint() {
                    message.push_str(&format!("; {hint}"));
                }
                message
            }
            None => {
                // What lies under it (a TLS handshake's reason, an I/O error), which its own text leaves out.
                let mut message = format!("{context}: {error}");
                let mut source = std::error::Error::source(error);
                while let Some(cause) = source {
                    let text = cause.to_string();
                    if !message.contains(&text) {
                        message.push_str(&format!(": {text}"));
                    }
                    source = cause.source();
                }
                message
            }
        };
        DatabaseError::Server(message)
    }
}
