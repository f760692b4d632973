//! What a service offers to others: its internal address, its public URL, a database's connection details.

use preview_spec::{Engine, Environment, Service, ServiceKind, Spec};

use crate::Context;
use crate::value::{SecretRef, Value};

/// Where a service listens inside its environment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

/// `shop-web` → `SHOP_WEB`, for built-in variable names.
pub(crate) fn env_name(service: &str) -> String {
    service.to_ascii_uppercase().replace('-', "_")
}

/// The database and role name of `database` in `environment`: `<project>_<environment>_<database>`, as a
/// PostgreSQL identifier (lowercase, `_` for `-`, at most 63 bytes), never starting with `preview_` (the
/// runtime's own names): project `preview` gets `p_preview_…`.
pub fn database_identity(project: &str, environment: &str, database: &str) -> String {
    let name = format!("{project}_{environment}_{database}")
        .to_ascii_lowercase()
        .replace('-', "_");
    // Names starting with `preview_` are the runtime's own (golden snapshots, their pools and the golden owner).
    let name = if name.starts_with("preview_") {
        format!("p_{name}")
    } else {
        name
    };
    name.chars().take(63).collect()
}

fn endpoint(context: &Context, service: &Service) -> Option<Endpoint> {
    if let Some(endpoint) = context.endpoints.get(&service.name) {
        return Some(endpoint.clone());
    }
    // Without a runtime's addresses, the service's name and declared port, as inside a Kubernetes namespace.
    let port = match &service.kind {
        ServiceKind::App(app) => app.ports.first()?.number,
        ServiceKind::Database(database) => match database.engine {
            Engine::Postgres => 5432,
            Engine::Redis => 6379,
            Engine::Mysql => 3306,
        },
        ServiceKind::Job(_) => return None,
    };
    Some(Endpoint {
        host: service.name.clone(),
        port,
    })
}

/// `service`'s output `name` (`host`, `port`, `url`, `public_url`; for databases also `user`, `name`,
/// `password`), or why it has none.
pub(crate) fn output(
    spec: &Spec,
    environment: &Environment,
    context: &Context,
    service: &Service,
    name: &str,
) -> Result<Value, String> {
    let endpoint = endpoint(context, service)
        .ok_or_else(|| format!("`{}` is a job and has no address", service.name));
    match (&service.kind, name) {
        (_, "host") => Ok(Value::text(endpoint?.host)),
        (_, "port") => Ok(Value::text(endpoint?.port.to_string())),
        (ServiceKind::App(_), "url") => {
            let endpoint = endpoint?;
            Ok(Value::text(format!(
                "http://{}:{}",
                endpoint.host, endpoint.port
            )))
        }
        (ServiceKind::App(app), "public_url") if app.public => Ok(Value::text(format!(
            "https://{}{}",
            spec.domain
                .hostname_for(&spec.project, &service.name, &environment.name),
            match context.public_port {
                Some(port) if port != 443 => format!(":{port}"),
                _ => String::new(),
            }
        ))),
        (ServiceKind::App(_), "public_url") => Err(format!(
            "`{}` is not public, so it has no public URL",
            service.name
        )),
        (ServiceKind::Database(database), "name") if database.engine == Engine::Redis => {
            Err(format!(
                "`{}` is a Redis database, which has no name (its data is the server's database 0); it offers host, port, url, user and password",
                service.name
            ))
        }
        (ServiceKind::Database(_), "user" | "name") => Ok(Value::text(database_identity(
            &spec.project,
            &environment.name,
            &service.name,
        ))),
        (ServiceKind::Database(_), "password") => Ok(Value::secret(SecretRef::DatabasePassword {
            database: service.name.clone(),
        })),
        (ServiceKind::Database(database), "url") => {
            let endpoint = endpoint?;
            let identity = database_identity(&spec.project, &environment.name, &service.name);
            let scheme = database.engine.name();
            let mut url = Value::text(format!("{scheme}://{identity}:"));
            url.append(&Value::secret(SecretRef::DatabasePassword {
                database: service.name.clone(),
            }));
            url.push_text(&match database.engine {
                Engine::Postgres | Engine::Mysql => {
                    format!("@{}:{}/{identity}", endpoint.host, endpoint.port)
                }
                Engine::Redis => format!("@{}:{}/0", endpoint.host, endpoint.port),
            });
            Ok(url)
        }
        (kind, other) => Err(format!(
            "`{}` ({}) has no output `{other}`; {}",
            service.name,
            kind.name(),
            match kind {
                ServiceKind::App(_) => "apps offer host, port, url and public_url",
                ServiceKind::Database(_) =>
                    "databases offer host, port, url, user, name and password",
                ServiceKind::Job(_) => "jobs offer none",
            }
        )),
    }
}

#[cfg(test)]
mod identity_tests {
    use super::database_identity;

    #[test]
    fn database_names_never_take_the_runtimes_own_prefix() {
        assert_eq!(database_identity("shop", "pr-1", "db"), "shop_pr_1_db");
        assert_eq!(
            database_identity("preview", "warm-1", "db"),
            "p_preview_warm_1_db"
        );
    }
}
