//! An environment's database data on a cluster. Once its server's pod is ready, the data its clone policy asks
//! for — empty, a seed file, or a copy of another environment's database, plain or masked — is made by the same
//! code as on the local runtime (`preview_database`), reaching the servers through tunnels to their pods. The
//! environment's role is its own server's administrator (the image makes it so); a copy is written as the golden
//! owner and handed to it, as on the local runtime. Complete data is marked in the database's comment and kept by
//! every later apply; data cut short (a failed seed leaves none, a copy may leave part) is made again from an
//! empty database.

use std::collections::BTreeMap;

use preview_database::content::{self, DatabaseContent, is_ready, mark_ready, readiness};
use preview_database::masking::Masker;
use preview_database::postgres::copy::{Masking, copy_database};
use preview_database::postgres::{Binaries, Connection, Endpoint, admin};
use preview_deploy::{EnvironmentAddress, RuntimeError, StepLog};
use preview_plan::Resource;
use preview_secrets::Secret;

use crate::runtime::KubernetesRuntime;
use crate::tunnel::Tunnel;

/// The port the server listens on in its pod.
const POSTGRES_PORT: u16 = 5432;

fn fail(service: &str) -> impl Fn(preview_database::DatabaseError) -> RuntimeError + '_ {
    move |e| RuntimeError::new(format!("database `{service}`: {e}"))
}

/// A server in a pod, reached through a tunnel as a login of its administrator.
struct Reached {
    tunnel: Tunnel,
    login: Connection,
}

impl Reached {
    async fn open(
        runtime: &KubernetesRuntime,
        namespace: &str,
        service: &str,
        user: &str,
        password: Secret,
    ) -> Result<Reached, RuntimeError> {
        let tunnel = Tunnel::open(
            &runtime.client,
            namespace,
            &format!("{service}-0"),
            POSTGRES_PORT,
        )
        .await
        .map_err(|e| RuntimeError::new(format!("database `{service}`: {e}")))?;
        let login = Connection {
            host: Endpoint::Tcp("127.0.0.1".to_owned()),
            port: tunnel.port,
            user: user.to_owned(),
            password: Some(password),
            dbname: "postgres".to_owned(),
            ssl: None,
        };
        Ok(Reached { tunnel, login })
    }

    async fn connect(
        &self,
        service: &str,
        database: &str,
    ) -> Result<tokio_postgres::Client, RuntimeError> {
        self.login
            .to_database(database)
            .connect()
            .await
            .map_err(|e| {
                RuntimeError::new(self.tunnel.explain(format!("database `{service}`: {e}")))
            })
    }
}

/// Makes the data of the database `resource` in `namespace`, unless it is there and complete.
pub(crate) async fn fill(
    runtime: &KubernetesRuntime,
    env: &EnvironmentAddress,
    resource: &Resource,
    namespace: &str,
    values: &BTreeMap<String, Secret>,
    log: &StepLog,
) -> Result<(), RuntimeError> {
    let service = resource.id.trim_start_matches("database/");
    let content = DatabaseContent::parse(&resource.id, &resource.content, "kubernetes")?;
    let name = content.name.as_str();
    let password = values
        .get(&preview_manifests::password_name(service))
        .cloned()
        .ok_or_else(|| {
            RuntimeError::new(format!("database `{service}`: its password is not at hand"))
        })?;
    let target = Reached::open(runtime, namespace, service, name, password).await?;
    let admin_client = target.connect(service, "postgres").await?;
    let mark = content::ready_mark(&env.project, &env.environment, service);
    match readiness(&admin_client, name)
        .await
        .map_err(fail(service))?
    {
        Some(found) if found == mark => {
            log.line(format!("database `{service}`: {name} kept with its data"));
            return Ok(());
        }
        Some(found) if found.starts_with(content::READY) => {
            return Err(RuntimeError::new(format!(
                "database `{service}`: the database {name} holds another environment's data ({})",
                found.trim_start_matches("preview: ")
            )));
        }
        _ => {}
    }
    log.check_lease()?;
    // Whatever an earlier attempt left goes: the data is made whole or not at all.
    admin::drop_database(&admin_client, name)
        .await
        .map_err(fail(service))?;
    admin::create_database(&admin_client, name, name, None)
        .await
        .map_err(fail(service))?;
    match content.clone.policy.as_str() {
        "seed" => {
            if let Some(file) = &content.clone.file {
                let sql = content.seed_file(service, file)?;
                log.check_lease()?;
                preview_database::postgres::seed::run_seed(
                    &target.login.to_database(name),
                    &sql,
                    file,
                )
                .await
                .map_err(|e| {
                    RuntimeError::new(format!(
                        "database `{service}`: seeding from {file} failed, nothing was kept:\n{e}"
                    ))
                })?;
                log.line(format!("database `{service}`: {name} seeded from {file}"));
            } else {
                log.line(format!(
                    "database `{service}`: {name} made empty (its seed job fills it)"
                ));
            }
        }
        "clone" | "masked" => {
            copy_from_source(runtime, env, service, &content, &target, &admin_client, log).await?;
        }
        _ => log.line(format!("database `{service}`: {name} made empty")),
    }
    mark_ready(&admin_client, name, &mark)
        .await
        .map_err(fail(service))
}

/// A copy of the source environment's database, read from its pod on this cluster, masked in the stream when the
/// policy says so, written as the golden owner and handed to the environment's role.
async fn copy_from_source(
    runtime: &KubernetesRuntime,
    env: &EnvironmentAddress,
    service: &str,
    content: &DatabaseContent,
    target: &Reached,
    admin_client: &tokio_postgres::Client,
    log: &StepLog,
) -> Result<(), RuntimeError> {
    let (from, source_name) = content.copied_from(service)?;
    let name = content.name.as_str();
    let source_env = EnvironmentAddress {
        project: env.project.clone(),
        environment: from.to_owned(),
    };
    let missing = || {
        RuntimeError::new(format!(
            "database `{service}`: environment `{from}` has no database `{service}` on this cluster to copy ({}); deploy `{from}` first — copies between clusters are not made",
            runtime.cluster_url()
        ))
    };
    let source_namespace = runtime
        .namespace_of(&source_env)
        .await
        .map_err(|_| missing())?;
    let source_password = runtime
        .secrets
        .reveal(
            &source_env,
            &preview_manifests::password_name(service),
            "derived",
        )
        .await?;
    let source = Reached::open(
        runtime,
        &source_namespace,
        service,
        source_name,
        source_password,
    )
    .await?;
    if !is_ready(&source.connect(service, "postgres").await?, source_name)
        .await
        .map_err(fail(service))?
    {
        return Err(missing());
    }
    let masker = match content.clone.policy.as_str() {
        "masked" => {
            let masking = content.masking.as_ref().ok_or_else(|| {
                RuntimeError::new(format!(
                    "database `{service}`: `policy: masked` needs `masking` rules"
                ))
            })?;
            let key = masking.key.as_ref().ok_or_else(|| {
                RuntimeError::new(format!(
                    "database `{service}`: masking needs `key: <project secret>`, the key of its transforms"
                ))
            })?;
            let secret = runtime.secrets.reveal(env, &key.name, &key.version).await?;
            Some((
                Masker::new(secret.expose()),
                &masking.tables,
                masking.strict,
            ))
        }
        _ => None,
    };
    let binaries = Binaries::client_for(content.version).map_err(fail(service))?;
    admin::ensure_golden_owner(admin_client, false)
        .await
        .map_err(fail(service))?;
    log.check_lease()?;
    let started = std::time::Instant::now();
    let lines = std::sync::Mutex::new(Vec::new());
    let copied = copy_database(
        &binaries,
        &source.login.to_database(source_name),
        &target.login.to_database(name),
        masker.as_ref().map(|(masker, rules, strict)| Masking {
            masker,
            rules,
            strict: *strict,
        }),
        &|line| {
            if let Ok(mut lines) = lines.lock() {
                lines.push(line);
            }
        },
    )
    .await;
    for line in lines.into_inner().unwrap_or_default() {
        log.line(format!("database `{service}`: {line}"));
    }
    let report = copied.map_err(|e| {
        RuntimeError::new(
            source
                .tunnel
                .explain(target.tunnel.explain(format!("database `{service}`: {e}"))),
        )
    })?;
    // The copy's objects go to the environment's role; the golden owner keeps nothing here.
    admin::take_over(&target.connect(service, name).await?, name)
        .await
        .map_err(fail(service))?;
    let ident = preview_database::postgres::connection::quote_identifier;
    admin_client
        .batch_execute(&format!(
            "REVOKE ALL ON DATABASE {0} FROM {1}; DROP ROLE {1}",
            ident(name),
            ident(admin::GOLDEN_OWNER)
        ))
        .await
        .map_err(|e| {
            fail(service)(preview_database::DatabaseError::postgres(
                "cannot hand the copy over",
                &e,
            ))
        })?;
    log.line(format!(
        "database `{service}`: {name} {} from `{from}` in {} ms ({} tables, {} rows)",
        if masker.is_some() {
            "masked and copied"
        } else {
            "copied"
        },
        started.elapsed().as_millis(),
        report.tables,
        report.rows
    ));
    Ok(())
}
