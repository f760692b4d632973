//! Database pods served by real PostgreSQL servers, one per pod. The first time a pod of a `postgres` image is
//! reached on port 5432, a throw-away server is started for it and made as the image's entrypoint makes one on a new
//! volume: `POSTGRES_USER` a superuser with the password `POSTGRES_PASSWORD`, and an empty `POSTGRES_DB` owned by
//! it. As with the image, logins over the pod's loopback — where a port forward arrives — are trusted, unless
//! `POSTGRES_INITDB_ARGS` asks for passwords there (`--auth-local=scram-sha-256 --auth-host=scram-sha-256`); the
//! test's own `postgres` user stays trusted, for its checks. The server's major version is the machine's, whatever
//! the image's tag says. Servers stop when this is dropped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use super::forward::PodPort;
use crate::TestPostgres;

#[derive(Default)]
pub struct PostgresPods {
    /// By namespace and pod.
    servers: Mutex<BTreeMap<(String, String), Arc<TestPostgres>>>,
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl PostgresPods {
    /// The address of the pod's server, started and made the first time.
    pub(crate) fn serve(&self, port: &PodPort) -> Result<SocketAddr, String> {
        let image = port.image.split(':').next().unwrap_or_default();
        if image != "postgres" {
            return Err(format!("{} is not a PostgreSQL image", port.image));
        }
        if port.port != 5432 {
            return Err(format!(
                "nothing listens on port {} of {}",
                port.port, port.pod
            ));
        }
        let mut servers = self.servers.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (port.namespace.clone(), port.pod.clone());
        if let Some(server) = servers.get(&key) {
            return Ok(SocketAddr::from(([127, 0, 0, 1], server.port())));
        }
        let password = port.env.get("POSTGRES_PASSWORD").ok_or_else(|| {
            "the container exited: POSTGRES_PASSWORD is not set, and the image starts no server without it"
                .to_owned()
        })?;
        let user = port
            .env
            .get("POSTGRES_USER")
            .cloned()
            .unwrap_or_else(|| "postgres".to_owned());
        let database = port
            .env
            .get("POSTGRES_DB")
            .cloned()
            .unwrap_or_else(|| user.clone());
        let initdb = port
            .env
            .get("POSTGRES_INITDB_ARGS")
            .cloned()
            .unwrap_or_default();
        let server = TestPostgres::start();
        let role = if user == "postgres" {
            format!("ALTER ROLE postgres PASSWORD {}", literal(password))
        } else {
            format!(
                "CREATE ROLE {} SUPERUSER LOGIN PASSWORD {}",
                ident(&user),
                literal(password)
            )
        };
        server.sql("postgres", &role)?;
        if database != "postgres" {
            server.sql(
                "postgres",
                &format!(
                    "CREATE DATABASE {} OWNER {}",
                    ident(&database),
                    ident(&user)
                ),
            )?;
        }
        let asks = |option: &str| initdb.split_whitespace().any(|word| word == option);
        if asks("--auth-local=scram-sha-256") && asks("--auth-host=scram-sha-256") {
            server.require_passwords()?;
        }
        let address = SocketAddr::from(([127, 0, 0, 1], server.port()));
        servers.insert(key, Arc::new(server));
        Ok(address)
    }

    /// The server of the pod `pod` in the namespace whose name starts with `namespace_prefix`, once it was reached.
    pub fn server(&self, namespace_prefix: &str, pod: &str) -> Option<Arc<TestPostgres>> {
        self.servers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|((namespace, name), _)| namespace.starts_with(namespace_prefix) && name == pod)
            .map(|(_, server)| Arc::clone(server))
    }

    /// How many pods were reached (each has a server of its own).
    pub fn pods(&self) -> usize {
        self.servers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}
