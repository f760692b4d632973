//! A resolved environment → the resources that make it up.

use std::collections::BTreeMap;

use preview_resolve::{Part, ResolvedEnvironment, ResolvedService, SecretRef, database_identity};
use preview_spec::{Access, ClonePolicy, SeedSource, ServiceKind};
use serde_json::json;

use crate::resource::{Resource, ResourceKind};

/// Each secret's keyed fingerprint by name (`project/NAME`, `service:web/NAME`, …); a secret missing here is
/// recorded as `unset`. Fingerprints make a changed secret value change the resources that use it.
pub type SecretVersions = BTreeMap<String, String>;

/// The resources of `environment`, sorted by id.
pub fn desired_state(
    environment: &ResolvedEnvironment,
    versions: &SecretVersions,
) -> Vec<Resource> {
    let mut resources = vec![
        Resource::new(
            "space",
            ResourceKind::Space,
            Vec::new(),
            // The totals of everything the environment runs at once, for the runtime to enforce.
            space_content(environment),
        ),
        Resource::new(
            "secrets",
            ResourceKind::Secrets,
            vec!["space".to_owned()],
            secrets_content(environment, versions),
        ),
    ];
    let mut hostnames: Vec<&str> = Vec::new();
    for service in environment.services.values() {
        resources.extend(build(environment, service));
        resources.push(service_resource(environment, service, versions));
        if !service.hostnames.is_empty() {
            hostnames.extend(service.hostnames.iter().map(String::as_str));
            resources.push(route(environment, service, versions));
        }
    }
    if !hostnames.is_empty() {
        hostnames.sort_unstable();
        hostnames.dedup();
        resources.push(Resource::new(
            "certificate",
            ResourceKind::Certificate,
            vec!["space".to_owned()],
            json!({ "hostnames": hostnames }),
        ));
    }
    resources.sort_by(|a, b| a.id.cmp(&b.id));
    resources
}

/// The space: the environment's totals, for the runtime to enforce, and — for runtimes that assign them — the
/// port each service listens on, which the runtime reserves when it makes the space.
fn space_content(environment: &ResolvedEnvironment) -> serde_json::Value {
    let mut content = json!({
        "project": environment.project,
        "environment": environment.name,
        "isolation": environment.isolation,
        "runtime": environment.runtime,
        "preview": environment.preview,
        "limits": environment.limits,
    });
    if let Some(cluster) = &environment.cluster {
        // Where a new environment is made; one that exists stays where it was made.
        content["cluster"] = cluster.clone().into();
    }
    if !environment.endpoints.is_empty() {
        content["endpoints"] = environment
            .endpoints
            .iter()
            .map(|(service, endpoint)| (service.clone(), json!(endpoint.port)))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    content
}

/// Every secret version a resource names, as (name, fingerprint): what must be kept while the resource is
/// recorded or planned, so that applying it again gets exactly the values it had.
pub fn secret_versions_of(resource: &Resource) -> Vec<(String, String)> {
    let content = &resource.content;
    let mut found: Vec<(String, String)> = ["secrets", "names"]
        .iter()
        .filter_map(|key| content[*key].as_object())
        .flat_map(|map| {
            map.iter()
                .filter_map(|(name, version)| Some((name.clone(), version.as_str()?.to_owned())))
        })
        .collect();
    for credential in [
        &content["access"]["token"],
        &content["access"]["basic_auth"]["password"],
        &content["masking"]["key"],
        &content["admin_url"],
    ] {
        if let (Some(name), Some(version)) =
            (credential["name"].as_str(), credential["version"].as_str())
        {
            found.push((name.to_owned(), version.to_owned()));
        }
    }
    found
}

/// `project/NAME`, `service:web/NAME`, `database:db/password`: how a secret is named in resources and plans.
pub fn secret_name(secret: &SecretRef) -> String {
    match secret {
        SecretRef::Stored { name, scope } => format!("{scope}/{name}"),
        SecretRef::DatabasePassword { database } => format!("database:{database}/password"),
    }
}

/// The secrets a service's variables need, named, sorted, once each.
fn service_secrets(service: &ResolvedService) -> Vec<String> {
    let mut names: Vec<String> = service
        .variables
        .values()
        .flat_map(|v| v.value.secrets().map(secret_name))
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

fn secret_names(environment: &ResolvedEnvironment) -> Vec<String> {
    let mut names: Vec<String> = environment
        .services
        .values()
        .flat_map(service_secrets)
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// The environment's secrets by name and version; on Kubernetes also each value that holds a secret, by service
/// and variable, as parts: the runtime assembles them in the environment's Secret, which pods read them from.
fn secrets_content(
    environment: &ResolvedEnvironment,
    versions: &SecretVersions,
) -> serde_json::Value {
    let mut content = json!({ "names": with_versions(secret_names(environment), versions) });
    if environment.runtime == preview_spec::RuntimeKind::Kubernetes {
        content["variables"] = secret_variables(environment);
    }
    content
}

fn secret_variables(environment: &ResolvedEnvironment) -> serde_json::Value {
    environment
        .services
        .values()
        .filter_map(|service| {
            let variables: serde_json::Map<String, serde_json::Value> = service
                .variables
                .iter()
                .filter(|(_, variable)| variable.value.is_secret())
                .map(|(name, variable)| (name.clone(), parts(&variable.value)))
                .collect();
            (!variables.is_empty()).then(|| (service.name.clone(), variables.into()))
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// The resource id of a service, by kind: `app/web`, `database/db`, `job/migrate`.
pub(crate) fn service_resource_id(kind: &ServiceKind, name: &str) -> String {
    format!("{}/{name}", kind.name())
}

/// `{ name: fingerprint }` for the given secret names.
fn with_versions(
    names: Vec<String>,
    versions: &SecretVersions,
) -> serde_json::Map<String, serde_json::Value> {
    names
        .into_iter()
        .map(|name| {
            let version = versions
                .get(&name)
                .cloned()
                .unwrap_or_else(|| "unset".to_owned());
            (name, json!(version))
        })
        .collect()
}

fn service_resource(
    environment: &ResolvedEnvironment,
    service: &ResolvedService,
    versions: &SecretVersions,
) -> Resource {
    let id = service_resource_id(&service.kind, &service.name);
    let mut depends_on: Vec<String> = vec!["space".to_owned()];
    if !matches!(service.kind, ServiceKind::Database(_)) {
        depends_on.push("secrets".to_owned());
    }
    if environment.source.is_some() {
        match &service.kind {
            ServiceKind::App(app) if app.build.is_some() => {
                depends_on.push(build_id(&service.name));
            }
            // A job runs in the checkout where the environment's apps were built.
            ServiceKind::Job(_) => depends_on.extend(
                environment
                    .services
                    .values()
                    .filter(|s| matches!(&s.kind, ServiceKind::App(app) if app.build.is_some()))
                    .map(|s| build_id(&s.name)),
            ),
            _ => {}
        }
    }
    depends_on.extend(service.depends_on.iter().filter_map(|dependency| {
        let target = environment.services.get(dependency)?;
        Some(service_resource_id(&target.kind, dependency))
    }));
    // Secret parts appear as `[secret]`: resources never hold a secret value.
    let variables: serde_json::Map<String, serde_json::Value> = service
        .variables
        .iter()
        .map(|(name, variable)| (name.clone(), json!(variable.value.redacted())))
        .collect();
    // Where the secrets go in values that hold them, by name: what a runtime needs to assemble the value.
    let with_secrets: serde_json::Map<String, serde_json::Value> = service
        .variables
        .iter()
        .filter(|(_, variable)| variable.value.is_secret())
        .map(|(name, variable)| (name.clone(), parts(&variable.value)))
        .collect();
    let secrets = with_versions(service_secrets(service), versions);
    let source = environment.source.as_ref().map(|source| {
        json!({ "repository": source.repository, "directory": source.directory, "commit": source.commit })
    });
    let content = match &service.kind {
        ServiceKind::App(app) => json!({
            "build": app.build,
            "run": app.run,
            "image": app.image,
            "ports": app.ports.iter().map(|p| json!({ "name": p.name, "port": p.number })).collect::<Vec<_>>(),
            "health": app.health,
            "replicas": app.replicas,
            "resources": app.resources,
            "variables": variables,
            "with_secrets": with_secrets,
            "secrets": secrets,
            "source": source,
        }),
        ServiceKind::Database(database) => with_persistence(
            database,
            json!({
                "engine": database.engine,
                "version": database.version,
                "mode": database.mode,
                "isolation": environment.isolation,
                // The database's and its login role's name on the server.
                "name": database_identity(&environment.project, &environment.name, &service.name),
                "clone": clone_policy(environment, &service.name, &database.clone),
                "masking": database.masking.as_ref().map(|m| json!({
                    "key": m.key_secret.as_ref().map(|name| {
                        let name = format!("project/{name}");
                        let version = versions.get(&name).cloned().unwrap_or_else(|| "unset".to_owned());
                        json!({ "name": name, "version": version })
                    }),
                    "tables": m.tables,
                    "strict": m.strict,
                })),
                // An external server's admin URL: a project secret, by name and version.
                "admin_url": database.admin_url.as_ref().map(|name| {
                    let name = format!("project/{name}");
                    let version = versions.get(&name).cloned().unwrap_or_else(|| "unset".to_owned());
                    json!({ "name": name, "version": version })
                }),
                // Where a seed file is read from: the deployed commit (a new commit changes nothing else: the data of
                // a database that exists is kept).
                "source": match &database.clone {
                    ClonePolicy::Seed { source: SeedSource::File { .. } } => source.clone(),
                    _ => None,
                },
            }),
        ),
        ServiceKind::Job(job) => json!({
            "hook": job.hook,
            "command": job.command,
            "image": job.image,
            "variables": variables,
            "with_secrets": with_secrets,
            "secrets": secrets,
            "source": source,
        }),
    };
    let kind = match service.kind {
        ServiceKind::App(_) => ResourceKind::App,
        ServiceKind::Database(_) => ResourceKind::Database,
        ServiceKind::Job(_) => ResourceKind::Job,
    };
    Resource::new(id, kind, depends_on, content)
}

/// `[{"text": "postgres://u:"}, {"secret": "database:db/password"}, …]`: names, never values.
fn parts(value: &preview_resolve::Value) -> serde_json::Value {
    value
        .0
        .iter()
        .map(|part| match part {
            Part::Text(text) => json!({ "text": text }),
            Part::Secret(secret) => json!({ "secret": secret_name(secret) }),
        })
        .collect()
}

fn build_id(service: &str) -> String {
    format!("build/{service}")
}

/// An app's build, when the environment has a source commit and the app a build command. Environments at the same
/// commit share the runtime's checkout and build output.
fn build(environment: &ResolvedEnvironment, service: &ResolvedService) -> Option<Resource> {
    let source = environment.source.as_ref()?;
    let ServiceKind::App(app) = &service.kind else {
        return None;
    };
    let command = app.build.as_ref()?;
    Some(Resource::new(
        build_id(&service.name),
        ResourceKind::Build,
        vec!["space".to_owned()],
        json!({
            "service": service.name,
            "command": command,
            "repository": source.repository,
            "directory": source.directory,
            "commit": source.commit,
        }),
    ))
}

/// The clone policy without its place in the spec file: moving a line must not look like a change. A copy names
/// the source environment's database as the server knows it.
fn clone_policy(
    environment: &ResolvedEnvironment,
    database: &str,
    policy: &ClonePolicy,
) -> serde_json::Value {
    let source = |from: &str| database_identity(&environment.project, from, database);
    match policy {
        ClonePolicy::Empty => json!({ "policy": "empty" }),
        ClonePolicy::Seed {
            source: SeedSource::File { path, .. },
        } => json!({ "policy": "seed", "file": path }),
        ClonePolicy::Seed {
            source: SeedSource::Job(job),
        } => json!({ "policy": "seed", "job": job }),
        ClonePolicy::Clone { from, snapshots } | ClonePolicy::Masked { from, snapshots } => {
            json!({
                "policy": policy.name(),
                "from": from,
                "source": source(from),
                "refresh_seconds": snapshots.refresh.map(|d| d.as_secs()),
                "warm_pool": snapshots.warm_pool,
            })
        }
    }
}

/// The protection of a preview's routes: the kind, and the secret by name with its fingerprint (a new value
/// re-applies the routes), never the value.
fn access(environment: &ResolvedEnvironment, versions: &SecretVersions) -> serde_json::Value {
    let secret = |name: &str| {
        let name = format!("project/{name}");
        let version = versions
            .get(&name)
            .cloned()
            .unwrap_or_else(|| "unset".to_owned());
        json!({ "name": name, "version": version })
    };
    match &environment.access {
        None => serde_json::Value::Null,
        Some(Access::Token { secret: name }) => json!({ "token": secret(name) }),
        Some(Access::BasicAuth { user, secret: name }) => {
            json!({ "basic_auth": { "user": user, "password": secret(name) } })
        }
    }
}

fn route(
    environment: &ResolvedEnvironment,
    service: &ResolvedService,
    versions: &SecretVersions,
) -> Resource {
    let port = match &service.kind {
        ServiceKind::App(app) => app.ports.first(),
        _ => None,
    };
    Resource::new(
        format!("route/{}", service.name),
        ResourceKind::Route,
        vec![
            service_resource_id(&service.kind, &service.name),
            "certificate".to_owned(),
        ],
        json!({
            "service": service.name,
            "port": port.map(|p| &p.name),
            "port_number": port.map(|p| p.number),
            "hostnames": service.hostnames,
            "access": access(environment, versions),
        }),
    )
}

/// A Redis database's content names its persistence; a PostgreSQL database's has no such key, so that its
/// resource hash stays what it always was.
fn with_persistence(
    database: &preview_spec::Database,
    mut content: serde_json::Value,
) -> serde_json::Value {
    if let Some(persistence) = database.persistence {
        content["persistence"] = json!(persistence);
    }
    content
}
