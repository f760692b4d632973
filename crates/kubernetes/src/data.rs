//! An environment's database data on a cluster. Once its server's pod is ready, the data its clone policy asks
//! for — empty, a seed file, or a copy of another environment's database, plain or masked — is made by the same
//! code as on the local runtime (`preview_database`), reaching the servers through tunnels to their pods. The
//! environment's role is its own server's administrator (the image makes it so); a copy is written as the golden
//! owner and handed to it, as on the local runtime. Complete data is marked in the database's comment and kept by
//! every later apply; data cut short (a failed seed leaves none, a copy may leave part) is made again from an
//! empty database.

use std::collections::BTreeMap;

use preview_database::content::{self, DatabaseContent, mark_ready, readiness};
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

/// How long connecting and logging in to a server through its tunnel may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

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
            host: Endpoint::Socket(tunnel.dir().to_path_buf()),
            port: POSTGRES_PORT,
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
        // Bounded as a whole: through a forward, a pod that never answers stalls the login, not the connect.
        match tokio::time::timeout(CONNECT_TIMEOUT, self.login.to_database(database).connect())
            .await
        {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(RuntimeError::new(
                self.tunnel.explain(format!("database `{service}`: {e}")),
            )),
            Err(_) => Err(RuntimeError::new(self.tunnel.explain(format!(
                "database `{service}`: no answer from its server in {} s",
                CONNECT_TIMEOUT.as_secs()
            )))),
        }
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
    let content = DatabaseContent::parse(
        &resource.id,
        &resource.content,
        "kubernetes",
        &[content::Engine::Postgres],
    )?;
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
    let filling = format!("{FILLING_FOR}{}/{}/{service}", env.project, env.environment);
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
        // Cut short by an earlier attempt: made again from nothing below.
        Some(found) if found == filling => {}
        Some(found) if found.starts_with(FILLING) => {
            return Err(RuntimeError::new(format!(
                "database `{service}`: the database {name} is another environment's, half made ({})",
                found.trim_start_matches("preview: ")
            )));
        }
        // Data no attempt of this environment's was making — data written before databases were marked, or whose
        // mark was lost — is never dropped: holding anything of its own, it is the environment's data. (A database
        // that is not there at all — dropped by an attempt cut short before it was made again — holds nothing.)
        _ if holds_data(&admin_client, &target, service, name).await? => {
            log.check_lease()?;
            mark_ready(&admin_client, name, &mark)
                .await
                .map_err(fail(service))?;
            log.line(format!(
                "database `{service}`: {name} already holds data, kept as it is (its clone policy applies to new databases only)"
            ));
            return Ok(());
        }
        _ => {}
    }
    log.check_lease()?;
    // The data is made whole or not at all: from an empty database, marked as being made until it is complete.
    admin::drop_database(&admin_client, name)
        .await
        .map_err(fail(service))?;
    admin::create_database(&admin_client, name, name, None)
        .await
        .map_err(fail(service))?;
    let made = database_oid(&admin_client, service, name).await?;
    mark_ready(&admin_client, name, &filling)
        .await
        .map_err(fail(service))?;
    let began = std::time::Instant::now();
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
    preview_metrics::metrics().database_content_made(&content.clone.policy, began.elapsed());
    mark_complete(&admin_client, service, name, &mark, made, log).await
}

/// Marks the database complete — only this attempt's database (the one whose oid is `made`), and only while this
/// daemon still holds the deployment: a daemon paused past its lease must not mark the database another is making.
/// The mark comes first, in a transaction: it locks the database, so that a drop by another attempt waits for the
/// checks after it, and the mark is committed only when both still hold.
async fn mark_complete(
    admin_client: &tokio_postgres::Client,
    service: &str,
    name: &str,
    mark: &str,
    made: Option<u32>,
    log: &StepLog,
) -> Result<(), RuntimeError> {
    let postgres = |context: &'static str| {
        move |e: tokio_postgres::Error| {
            fail(service)(preview_database::DatabaseError::postgres(context, &e))
        }
    };
    admin_client
        .batch_execute("BEGIN")
        .await
        .map_err(postgres("cannot mark the database ready"))?;
    let checked = async {
        mark_ready(admin_client, name, mark)
            .await
            .map_err(fail(service))?;
        if database_oid(admin_client, service, name).await? != made {
            return Err(RuntimeError::new(format!(
                "database `{service}`: {name} was made again by another attempt meanwhile; not marked"
            )));
        }
        log.check_lease()
    }
    .await;
    let end = if checked.is_ok() {
        "COMMIT"
    } else {
        "ROLLBACK"
    };
    admin_client
        .batch_execute(end)
        .await
        .map_err(postgres("cannot mark the database ready"))?;
    checked
}

/// How the comment of a database being made begins.
const FILLING: &str = "preview: filling";

/// How the comment of a database being made begins, before `<project>/<environment>/<service>`.
const FILLING_FOR: &str = "preview: filling for ";

/// Whether the database exists and holds anything of its own: relations (temporary ones aside), large objects,
/// functions, types, schemas or extensions beyond what a new database has.
async fn holds_data(
    admin_client: &tokio_postgres::Client,
    target: &Reached,
    service: &str,
    name: &str,
) -> Result<bool, RuntimeError> {
    if database_oid(admin_client, service, name).await?.is_none() {
        return Ok(false);
    }
    let inside = target.connect(service, name).await?;
    let row = inside
        .query_one(
            "WITH own AS (
                 SELECT oid FROM pg_namespace
                 WHERE nspname NOT IN ('pg_catalog', 'information_schema')
                   AND nspname NOT LIKE 'pg_toast%' AND nspname NOT LIKE 'pg_temp%'
             )
             SELECT EXISTS (SELECT 1 FROM pg_class WHERE relnamespace IN (SELECT oid FROM own)
                                                     AND relkind IN ('r', 'p', 'v', 'm', 'S', 'f'))
                 OR EXISTS (SELECT 1 FROM pg_largeobject_metadata)
                 OR EXISTS (SELECT 1 FROM pg_proc WHERE pronamespace IN (SELECT oid FROM own))
                 OR EXISTS (SELECT 1 FROM pg_type WHERE typnamespace IN (SELECT oid FROM own))
                 OR EXISTS (SELECT 1 FROM pg_extension WHERE extname <> 'plpgsql')
                 OR EXISTS (SELECT 1 FROM own WHERE oid <> 'public'::regnamespace)",
            &[],
        )
        .await
        .map_err(|e| {
            fail(service)(preview_database::DatabaseError::postgres(
                "cannot look into the database",
                &e,
            ))
        })?;
    Ok(row.get::<_, bool>(0))
}

/// The database's oid: which incarnation of it this is.
async fn database_oid(
    client: &tokio_postgres::Client,
    service: &str,
    name: &str,
) -> Result<Option<u32>, RuntimeError> {
    let row = client
        .query_opt("SELECT oid FROM pg_database WHERE datname = $1", &[&name])
        .await
        .map_err(|e| {
            fail(service)(preview_database::DatabaseError::postgres(
                "cannot look for the database",
                &e,
            ))
        })?;
    Ok(row.map(|row| row.get::<_, u32>(0)))
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
    let source_admin = source.connect(service, "postgres").await?;
    let source_mark = readiness(&source_admin, source_name)
        .await
        .map_err(fail(service))?;
    let source_version = source_admin
        .query_one(
            "SELECT current_setting('server_version_num')::int / 10000",
            &[],
        )
        .await
        .map(|row| row.get::<_, i32>(0))
        .map_err(|e| {
            fail(service)(preview_database::DatabaseError::postgres(
                "cannot read the source server's version",
                &e,
            ))
        })?;
    drop(source_admin);
    // A newer server's schema may use what an older one does not know.
    if u32::try_from(source_version).unwrap_or(u32::MAX) > content.version.major() {
        return Err(RuntimeError::new(format!(
            "database `{service}`: `{from}` runs PostgreSQL {source_version}, newer than this environment's {}; a copy goes to the same version or a newer one",
            content.version
        )));
    }
    if source_mark != Some(content::ready_mark(&env.project, from, service)) {
        return Err(RuntimeError::new(format!(
            "database `{service}`: the database of `{from}` is not complete (it is being made, or its making was cut short); deploy `{from}` again, then this"
        )));
    }
    let masker = match content.masking_of(service)? {
        Some((masking, key)) => {
            let secret = runtime.secrets.reveal(env, &key.name, &key.version).await?;
            Some((
                Masker::new(secret.expose()),
                &masking.tables,
                masking.strict,
            ))
        }
        None => None,
    };
    let binaries = Binaries::client_for(content.version.major()).map_err(fail(service))?;
    admin::ensure_golden_owner(admin_client, false)
        .await
        .map_err(fail(service))?;
    log.check_lease()?;
    let started = std::time::Instant::now();
    let copied = copy_database(
        &binaries,
        &source.login.to_database(source_name),
        &target.login.to_database(name),
        masker.as_ref().map(|(masker, rules, strict)| Masking {
            masker,
            rules,
            strict: *strict,
        }),
        &|line| log.line(format!("database `{service}`: {line}")),
    )
    .await;
    let report = copied.map_err(|e| {
        RuntimeError::new(
            source
                .tunnel
                .explain(target.tunnel.explain(format!("database `{service}`: {e}"))),
        )
    })?;
    // The copy and its objects go to the environment's role; the golden owner is not left on its server.
    admin::hand_over_copy(
        admin_client,
        &target.connect(service, name).await?,
        name,
        name,
    )
    .await
    .map_err(fail(service))?;
    admin::drop_role(admin_client, admin::GOLDEN_OWNER)
        .await
        .map_err(fail(service))?;
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
