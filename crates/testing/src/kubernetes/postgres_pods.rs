//! Database pods served by a real PostgreSQL server. The first time a pod of a `postgres` image is reached on port
//! 5432, it is made as the image's entrypoint makes its server on a new volume: `POSTGRES_USER` a superuser with
//! the password `POSTGRES_PASSWORD`, and an empty `POSTGRES_DB` owned by it. Logins over TCP need their passwords
//! (the test's own `postgres` user excepted, for its checks). To keep tests quick, every pod is served by one
//! throw-away server, started when the first pod is reached: pods are told apart by their users and databases,
//! which differ per environment, and nothing here separates them further. The server's major version is the
//! machine's, whatever the image's tag says. It stops when this is dropped.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use super::forward::PodPort;
use crate::TestPostgres;

#[derive(Default)]
pub struct PostgresPods {
    served: Mutex<Served>,
}

#[derive(Default)]
struct Served {
    server: Option<Arc<TestPostgres>>,
    /// The pods made, by namespace and name.
    pods: BTreeSet<(String, String)>,
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
        let mut served = self.served.lock().unwrap_or_else(PoisonError::into_inner);
        let server = match &served.server {
            Some(server) => Arc::clone(server),
            None => {
                let server = Arc::new(TestPostgres::start());
                server.require_passwords()?;
                served.server = Some(Arc::clone(&server));
                server
            }
        };
        let address = SocketAddr::from(([127, 0, 0, 1], server.port()));
        let key = (port.namespace.clone(), port.pod.clone());
        if served.pods.contains(&key) {
            return Ok(address);
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
        if database == "postgres" || user == "postgres" {
            return Err("a pod's user and database here are its own, never `postgres`".to_owned());
        }
        // A new volume: whatever an earlier pod of the same names left is gone.
        server.sql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(&database)),
        )?;
        let exists = server.sql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_roles WHERE rolname = {}",
                literal(&user)
            ),
        )? == "1";
        server.sql(
            "postgres",
            &format!(
                "{} ROLE {} SUPERUSER LOGIN PASSWORD {}",
                if exists { "ALTER" } else { "CREATE" },
                ident(&user),
                literal(password)
            ),
        )?;
        server.sql(
            "postgres",
            &format!(
                "CREATE DATABASE {} OWNER {}",
                ident(&database),
                ident(&user)
            ),
        )?;
        served.pods.insert(key);
        Ok(address)
    }

    /// The server of the pod `pod` in the namespace whose name starts with `namespace_prefix`, once it was reached.
    pub fn server(&self, namespace_prefix: &str, pod: &str) -> Option<Arc<TestPostgres>> {
        let served = self.served.lock().unwrap_or_else(PoisonError::into_inner);
        served
            .pods
            .iter()
            .any(|(namespace, name)| namespace.starts_with(namespace_prefix) && name == pod)
            .then(|| served.server.clone())
            .flatten()
    }

    /// How many pods were made.
    pub fn pods(&self) -> usize {
        self.served
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pods
            .len()
    }
}
