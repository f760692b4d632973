//! How to reach a server: as a `tokio_postgres` configuration for the daemon's own connections, and as
//! `PG*` variables for the programs it runs (`psql`, `pg_dump`), so that a password never appears in a process's
//! arguments.

use std::path::PathBuf;

use preview_secrets::Secret;
use tokio_postgres::config::Host;

use crate::DatabaseError;

/// A server and a login on it.
#[derive(Debug, Clone)]
pub struct Connection {
    /// A Unix socket directory, or a host name or address.
    pub host: Endpoint,
    pub port: u16,
    pub user: String,
    pub password: Option<Secret>,
    pub dbname: String,
    /// `disable`, `prefer`, `require`, … as libpq spells it (external servers).
    pub ssl_mode: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Socket(PathBuf),
    Tcp(String),
}

impl Connection {
    /// The same login, to another database.
    pub fn to_database(&self, dbname: &str) -> Connection {
        Connection {
            dbname: dbname.to_owned(),
            ..self.clone()
        }
    }

    /// Reads an admin URL (`postgres://user:password@host:port/dbname?sslmode=require`).
    pub fn from_url(url: &Secret) -> Result<Connection, DatabaseError> {
        let config: tokio_postgres::Config = url.expose().parse().map_err(|_| {
            DatabaseError::Invalid(
                "the admin URL is not a PostgreSQL URL (postgres://user:password@host:port/database)"
                    .to_owned(),
            )
        })?;
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(name)) => Endpoint::Tcp(name.clone()),
            Some(Host::Unix(path)) => Endpoint::Socket(path.clone()),
            None => {
                return Err(DatabaseError::Invalid(
                    "the admin URL names no host".to_owned(),
                ));
            }
        };
        let user = config
            .get_user()
            .ok_or_else(|| DatabaseError::Invalid("the admin URL names no user".to_owned()))?
            .to_owned();
        let password = config
            .get_password()
            .map(|p| Secret::new(String::from_utf8_lossy(p).into_owned()));
        let ssl_mode = url
            .expose()
            .split_once('?')
            .and_then(|(_, query)| {
                query
                    .split('&')
                    .find_map(|pair| pair.strip_prefix("sslmode="))
            })
            .map(str::to_owned);
        Ok(Connection {
            host,
            port: config.get_ports().first().copied().unwrap_or(5432),
            user,
            password,
            dbname: config.get_dbname().unwrap_or("postgres").to_owned(),
            ssl_mode,
        })
    }

    pub fn config(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        match &self.host {
            Endpoint::Socket(dir) => config.host_path(dir),
            Endpoint::Tcp(name) => config.host(name),
        };
        config
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name("preview")
            .connect_timeout(std::time::Duration::from_secs(10));
        if let Some(password) = &self.password {
            config.password(password.expose());
        }
        config
    }

    /// Connects; the connection's task ends with the client.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, DatabaseError> {
        let (client, connection) =
            self.config()
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|e| {
                    DatabaseError::postgres(&format!("cannot connect to {}", self.describe()), &e)
                })?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// `PGHOST`, `PGPORT`, … for `psql` and `pg_dump`.
    pub fn variables(&self) -> Vec<(String, String)> {
        let mut variables = vec![
            (
                "PGHOST".to_owned(),
                match &self.host {
                    Endpoint::Socket(dir) => dir.display().to_string(),
                    Endpoint::Tcp(name) => name.clone(),
                },
            ),
            ("PGPORT".to_owned(), self.port.to_string()),
            ("PGUSER".to_owned(), self.user.clone()),
            ("PGDATABASE".to_owned(), self.dbname.clone()),
            ("PGAPPNAME".to_owned(), "preview".to_owned()),
            ("PGCONNECT_TIMEOUT".to_owned(), "10".to_owned()),
        ];
        if let Some(password) = &self.password {
            variables.push(("PGPASSWORD".to_owned(), password.expose().to_owned()));
        }
        if let Some(mode) = &self.ssl_mode {
            variables.push(("PGSSLMODE".to_owned(), mode.clone()));
        }
        variables
    }

    /// Where it connects, without credentials: `database shop_pr_1_db on 127.0.0.1:5432`.
    pub fn describe(&self) -> String {
        let host = match &self.host {
            Endpoint::Socket(dir) => dir.display().to_string(),
            Endpoint::Tcp(name) => name.clone(),
        };
        format!("database `{}` on {host}:{}", self.dbname, self.port)
    }
}

/// `name` as a quoted SQL identifier.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` as a quoted SQL literal.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_admin_url_becomes_variables_without_arguments() {
        let url = Secret::new(
            "postgres://admin:s%40cret@db.internal:6543/postgres?sslmode=require".to_owned(),
        );
        let connection = Connection::from_url(&url).expect("a URL");
        assert_eq!(connection.host, Endpoint::Tcp("db.internal".to_owned()));
        assert_eq!(connection.port, 6543);
        assert_eq!(connection.user, "admin");
        assert_eq!(
            connection.password.as_ref().expect("a password").expose(),
            "s@cret"
        );
        assert_eq!(connection.ssl_mode.as_deref(), Some("require"));
        let variables = connection.variables();
        assert!(variables.contains(&("PGPASSWORD".to_owned(), "s@cret".to_owned())));
        assert!(!connection.describe().contains("s@cret"));
        assert!(!format!("{connection:?}").contains("s@cret"));
        for bad in ["mysql://x@y/z", "postgres:///postgres"] {
            assert!(
                Connection::from_url(&Secret::new(bad.to_owned())).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(quote_identifier("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
