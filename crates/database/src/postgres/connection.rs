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
    /// TLS, as the URL of an external server asks for it.
    pub ssl: Option<Ssl>,
}

/// libpq's `sslmode` (`disable`, `allow`, `prefer`, `require`, `verify-ca`, `verify-full`) and `sslrootcert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ssl {
    pub mode: String,
    pub root_cert: Option<PathBuf>,
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

    /// Reads an admin URL (`postgres://user:password@host:port/dbname?sslmode=verify-full&sslrootcert=/ca.pem`).
    pub fn from_url(url: &Secret) -> Result<Connection, DatabaseError> {
        // TLS is set up here, not by `tokio_postgres` (which knows neither `verify-*` nor `sslrootcert`).
        let (base, query) = url.expose().split_once('?').unwrap_or((url.expose(), ""));
        let mut mode = None;
        let mut root_cert = None;
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            match pair.split_once('=') {
                Some(("sslmode", value)) => mode = Some(value.to_owned()),
                Some(("sslrootcert", value)) => root_cert = Some(PathBuf::from(value)),
                _ => rest.push(pair),
            }
        }
        if let Some(mode) = &mode
            && !crate::postgres::tls::MODES.contains(&mode.as_str())
        {
            return Err(DatabaseError::Invalid(format!(
                "the admin URL's sslmode `{mode}` is not one of {}",
                crate::postgres::tls::MODES.join(", ")
            )));
        }
        let unparsed = if rest.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        let config: tokio_postgres::Config = unparsed.parse().map_err(|e: tokio_postgres::Error| {
            DatabaseError::Invalid(format!(
                "the admin URL is not a PostgreSQL URL (postgres://user:password@host:port/database): {e}"
            ))
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
        let ssl = Some(Ssl {
            // As libpq: TLS when the server offers it, unless the URL says otherwise; with a root certificate
            // and no mode, the certificate is checked.
            mode: mode.unwrap_or_else(|| {
                if root_cert.is_some() {
                    "verify-full"
                } else {
                    "prefer"
                }
                .to_owned()
            }),
            root_cert,
        });
        Ok(Connection {
            host,
            port: config.get_ports().first().copied().unwrap_or(5432),
            user,
            password,
            dbname: config.get_dbname().unwrap_or("postgres").to_owned(),
            ssl,
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

    /// Connects (over TLS when its URL asked for it); the connection's task ends with the client.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, DatabaseError> {
        self.connect_with(self.config()).await
    }

    /// Connects with `pg_catalog` alone as the search path, whatever the database's settings say: for the
    /// administrator reading a database whose owner is not trusted (`ALTER DATABASE … SET search_path` would
    /// otherwise put the owner's functions before the catalog's in the administrator's session).
    pub async fn connect_pinned(&self) -> Result<tokio_postgres::Client, DatabaseError> {
        let mut config = self.config();
        config.options("-c search_path=pg_catalog");
        self.connect_with(config).await
    }

    async fn connect_with(
        &self,
        mut config: tokio_postgres::Config,
    ) -> Result<tokio_postgres::Client, DatabaseError> {
        let fail =
            |e| DatabaseError::postgres(&format!("cannot connect to {}", self.describe()), &e);
        let client = match &self.ssl {
            Some(ssl) if ssl.mode != "disable" => {
                let tls = crate::postgres::tls::Tls::new(&ssl.mode, ssl.root_cert.as_deref())?;
                config.ssl_mode(match ssl.mode.as_str() {
                    "allow" | "prefer" => tokio_postgres::config::SslMode::Prefer,
                    _ => tokio_postgres::config::SslMode::Require,
                });
                let (client, connection) = config.connect(tls).await.map_err(fail)?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                client
            }
            _ => {
                let (client, connection) =
                    config.connect(tokio_postgres::NoTls).await.map_err(fail)?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                client
            }
        };
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
        if let Some(ssl) = &self.ssl {
            variables.push(("PGSSLMODE".to_owned(), ssl.mode.clone()));
            // The programs trust what the daemon's own connections do: the file named, else the system's.
            let root_cert = match &ssl.root_cert {
                Some(file) if file != std::path::Path::new("system") => file.display().to_string(),
                _ => crate::postgres::tls::SYSTEM_BUNDLE.to_owned(),
            };
            if ssl.root_cert.is_some() || ssl.mode.starts_with("verify") {
                variables.push(("PGSSLROOTCERT".to_owned(), root_cert));
            }
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
        assert_eq!(
            connection.ssl,
            Some(Ssl {
                mode: "require".to_owned(),
                root_cert: None
            })
        );
        let variables = connection.variables();
        assert!(variables.contains(&("PGPASSWORD".to_owned(), "s@cret".to_owned())));
        assert!(!connection.describe().contains("s@cret"));
        assert!(!format!("{connection:?}").contains("s@cret"));
        let verified = Connection::from_url(&Secret::new(
            "postgres://admin@db.internal/postgres?application_name=x&sslrootcert=/etc/ca.pem"
                .to_owned(),
        ))
        .expect("a URL");
        let ssl = verified.ssl.clone().expect("TLS");
        assert_eq!(
            (ssl.mode.as_str(), ssl.root_cert),
            ("verify-full", Some(PathBuf::from("/etc/ca.pem")))
        );
        assert!(
            verified
                .variables()
                .contains(&("PGSSLROOTCERT".to_owned(), "/etc/ca.pem".to_owned()))
        );
        for bad in [
            "mysql://x@y/z",
            "postgres:///postgres",
            "postgres://a@b/c?sslmode=verify",
        ] {
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
