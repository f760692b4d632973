//! From a registered spec, the stored variables and the secrets' names to an environment's resolved variables
//! and desired resources.

use std::collections::BTreeMap;

use preview_deploy::EnvironmentAddress;
use preview_plan::{Resource, desired_state};
use preview_resolve::{
    Context, Endpoint, PreviewContext, ResolvedEnvironment, Scope, SecretRef, StoredSecret,
    StoredVariable,
};
use preview_spec::{Access, SecretInPreviews, ServiceKind};
use preview_store::ProjectRecord;

use crate::api::SharedState;
use crate::error::ApiError;

fn previews_policy(text: &str) -> SecretInPreviews {
    match text {
        "withhold" => SecretInPreviews::Withheld,
        other => match other.strip_prefix("substitute:") {
            Some(variable) => SecretInPreviews::Substitute(variable.to_owned()),
            None => SecretInPreviews::Shared,
        },
    }
}

/// Resolves `environment`: a declared environment of the spec, or (with `based_on`) a clone of one with the
/// preview overrides applied, with everything set through the CLI or API.
pub(crate) async fn resolve(
    state: &SharedState,
    project: &ProjectRecord,
    environment: &str,
    based_on: Option<&str>,
    commit: Option<&str>,
) -> Result<ResolvedEnvironment, ApiError> {
    let source = crate::source::source_commit(project.directory.as_deref(), commit).await?;
    resolve_with(state, project, environment, based_on, source, None).await
}

/// Resolves `environment` built from `source`; a pull request's preview also knows its pull request.
pub(crate) async fn resolve_with(
    state: &SharedState,
    project: &ProjectRecord,
    environment: &str,
    based_on: Option<&str>,
    source: Option<preview_resolve::SourceCommit>,
    preview: Option<PreviewContext>,
) -> Result<ResolvedEnvironment, ApiError> {
    let invalid =
        |diagnostics: preview_spec::Diagnostics| ApiError::BadRequest(diagnostics.to_string());
    let (spec, env) = match based_on {
        Some(source) => {
            preview_spec::clone_environment(&project.file, &project.source, source, environment)
                .map_err(invalid)?
        }
        None => {
            let spec = preview_spec::parse_spec(&project.file, &project.source).map_err(invalid)?;
            let Some(env) = spec.environments.get(environment).cloned() else {
                let declared: Vec<&str> = spec.environments.keys().map(String::as_str).collect();
                return Err(ApiError::NotFound(format!(
                    "`{environment}` is not an environment of project `{}` (declared: {}); to make a new one from an existing one, use `preview env clone SOURCE {environment}`",
                    project.name,
                    declared.join(", ")
                )));
            };
            (spec, env)
        }
    };
    let stored = state
        .store
        .variables(&project.name)
        .await?
        .into_iter()
        .filter_map(|v| {
            Some(StoredVariable {
                scope: Scope::parse(&v.scope).ok()?,
                name: v.name,
                value: v.value,
            })
        })
        .collect();
    let secrets = state
        .store
        .secrets(Some(&project.name))
        .await?
        .into_iter()
        .filter_map(|s| {
            Some(StoredSecret {
                scope: Scope::parse(&s.scope).ok()?,
                previews: previews_policy(&s.previews),
                name: s.name,
            })
        })
        .collect();
    let context = Context {
        stored,
        secrets,
        preview,
        based_on: based_on.map(str::to_owned),
        endpoints: endpoints(state, project, &env).await?,
        source,
        public_port: state.gateway.as_ref().map(|g| g.https.port()),
    };
    preview_resolve::resolve_environment(&spec, &env, &context).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        ApiError::BadRequest(format!(
            "`{environment}` cannot be resolved:\n{}",
            lines.join("\n")
        ))
    })
}

/// Where the runtime has the environment's apps and databases listen, for their addresses in other apps' variables.
async fn endpoints(
    state: &SharedState,
    project: &ProjectRecord,
    environment: &preview_spec::Environment,
) -> Result<BTreeMap<String, Endpoint>, ApiError> {
    let apps: Vec<String> = environment
        .services
        .values()
        .filter(|s| match &s.kind {
            ServiceKind::App(app) => !app.ports.is_empty(),
            ServiceKind::Database(_) => true,
            ServiceKind::Job(_) => false,
        })
        .map(|s| s.name.clone())
        .collect();
    let address = EnvironmentAddress {
        project: project.name.clone(),
        environment: environment.name.clone(),
    };
    let assigned = state
        .runtime
        .endpoints(&address, &apps)
        .await
        .map_err(|e| ApiError::Conflict(e.to_string()))?;
    Ok(assigned
        .into_iter()
        .map(|(service, (host, port))| (service, Endpoint { host, port }))
        .collect())
}

/// What `desired_for` is for: a plan may show secrets that have no value yet; a deployment may not start
/// without them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    Plan,
    Deploy,
}

/// What deploying an environment would make it: its resources, the commit they build from, and the secrets it
/// needs that have no value yet (each with the command that sets it).
pub(crate) struct Desired {
    pub resources: Vec<Resource>,
    pub source: Option<preview_resolve::SourceCommit>,
    pub missing_secrets: Vec<String>,
}

pub(crate) async fn desired_for(
    state: &SharedState,
    project: &ProjectRecord,
    environment: &str,
    based_on: Option<&str>,
    commit: Option<&str>,
    purpose: Purpose,
) -> Result<Desired, ApiError> {
    let resolved = resolve(state, project, environment, based_on, commit).await?;
    desired_of(state, project, environment, resolved, purpose).await
}

/// What deploying a resolved environment would make it.
pub(crate) async fn desired_of(
    state: &SharedState,
    project: &ProjectRecord,
    environment: &str,
    resolved: ResolvedEnvironment,
    purpose: Purpose,
) -> Result<Desired, ApiError> {
    let versions = state
        .vault
        .versions(&project.name)
        .await
        .map_err(ApiError::Internal)?;
    let missing_secrets = {
        let mut missing: Vec<String> = resolved
            .services
            .values()
            .flat_map(|s| s.variables.values().flat_map(|v| v.value.secrets()))
            .filter_map(|secret| match secret {
                SecretRef::Stored { name, scope }
                    if !versions.contains_key(&format!("{scope}/{name}")) =>
                {
                    Some(format!(
                        "`{name}` (set it with `preview secret set {name} --scope {scope}`)"
                    ))
                }
                _ => None,
            })
            .collect();
        if let Some(Access::Token { secret } | Access::BasicAuth { secret, .. }) = &resolved.access
            && !versions.contains_key(&format!("project/{secret}"))
        {
            missing.push(format!(
                "`{secret}` (protects the preview's URLs; set it with `preview secret set {secret} --scope project`)"
            ));
        }
        for service in resolved.services.values() {
            if let ServiceKind::Database(database) = &service.kind
                && let Some(url) = &database.admin_url
                && !versions.contains_key(&format!("project/{url}"))
            {
                missing.push(format!(
                    "`{url}` (the admin URL of the server of `{}`; set it with `preview secret set {url} --scope project`)",
                    service.name
                ));
            }
            if let ServiceKind::Database(database) = &service.kind
                && matches!(database.clone, preview_spec::ClonePolicy::Masked { .. })
                && let Some(key) = database
                    .masking
                    .as_ref()
                    .and_then(|m| m.key_secret.as_ref())
                && !versions.contains_key(&format!("project/{key}"))
            {
                missing.push(format!(
                    "`{key}` (keys the masking of `{}`; set it with `preview secret set {key} --scope project`)",
                    service.name
                ));
            }
        }
        missing.sort();
        missing.dedup();
        missing
    };
    if purpose == Purpose::Deploy && !missing_secrets.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "`{environment}` needs secrets that have no value yet: {}",
            missing_secrets.join(", ")
        )));
    }
    Ok(Desired {
        resources: desired_state(&resolved, &versions),
        source: resolved.source.clone(),
        missing_secrets,
    })
}

/// The commit an environment's recorded resources were built from, if they were built from one.
pub(crate) fn running_commit(recorded: &[Resource]) -> Option<String> {
    recorded.iter().find_map(|resource| {
        resource.content["source"]["commit"]
            .as_str()
            .or_else(|| resource.content["commit"].as_str())
            .map(str::to_owned)
    })
}

/// Where an environment's recorded apps were built from — the repository (the daemon's mirror, for a pull request's
/// preview), the spec's directory in it and the commit — when they were built from a commit.
pub(crate) fn running_source(recorded: &[Resource]) -> Option<preview_resolve::SourceCommit> {
    recorded.iter().find_map(|resource| {
        let source = &resource.content["source"];
        Some(preview_resolve::SourceCommit {
            repository: source["repository"].as_str()?.to_owned(),
            directory: source["directory"].as_str()?.to_owned(),
            commit: source["commit"].as_str()?.to_owned(),
        })
    })
}

/// Resolves an environment as it runs: from the commit its apps were built from, in the repository they were built
/// from (for a pull request's preview, the mirror, with its pull request and — with `previews.spec: pull_request` —
/// the spec at that commit); else as `resolve` does with `commit`.
pub(crate) async fn resolve_running(
    state: &SharedState,
    project: &ProjectRecord,
    environment: &str,
    based_on: Option<&str>,
    recorded: &[Resource],
    commit: Option<&str>,
) -> Result<ResolvedEnvironment, ApiError> {
    let Some(source) = running_source(recorded) else {
        return resolve(state, project, environment, based_on, commit).await;
    };
    let (project, preview) =
        crate::previews::as_deployed(state, project, environment, &source).await;
    resolve_with(
        state,
        &project,
        environment,
        based_on,
        Some(source),
        preview,
    )
    .await
}
