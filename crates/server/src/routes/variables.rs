//! Variables and secrets set through the API, and the effective variables of an environment with provenance.
//! No route returns a secret's value.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use preview_resolve::Scope;
use preview_secrets::Secret;
use preview_store::{ProjectRecord, VariableRecord};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{Body, Params, SharedState};
use crate::error::ApiError;
use crate::routes::project_record;
use crate::routes::projects::now_ms;

/// Checks a scope and a name against the project's spec: the service or environment must exist.
fn check_slot(
    project: &ProjectRecord,
    scope: &str,
    name: &str,
    known_environments: &[String],
) -> Result<Scope, ApiError> {
    let scope = Scope::parse(scope).map_err(ApiError::BadRequest)?;
    if !preview_spec::is_variable_name(name) {
        return Err(ApiError::BadRequest(format!(
            "`{name}` is not a variable name; use letters, digits and `_`, not starting with a digit"
        )));
    }
    let spec = preview_spec::parse_spec(&project.file, &project.source)
        .map_err(|d| ApiError::Internal(d.to_string()))?;
    let (service, environment) = match &scope {
        Scope::Project => (None, None),
        Scope::Environment { environment } => (None, Some(environment)),
        Scope::Service { service } => (Some(service), None),
        Scope::ServiceInEnvironment {
            service,
            environment,
        } => (Some(service), Some(environment)),
    };
    if let Some(service) = service.filter(|s| !spec.services.contains_key(*s)) {
        return Err(ApiError::BadRequest(format!(
            "scope {scope}: project `{}` has no service `{service}`",
            project.name
        )));
    }
    if let Some(environment) = environment
        .filter(|e| !spec.environments.contains_key(*e) && !known_environments.contains(e))
    {
        return Err(ApiError::BadRequest(format!(
            "scope {scope}: project `{}` has no environment `{environment}`",
            project.name
        )));
    }
    Ok(scope)
}

async fn environments_of(state: &SharedState, project: &str) -> Result<Vec<String>, ApiError> {
    Ok(state
        .store
        .environments(project)
        .await?
        .into_iter()
        .map(|e| e.name)
        .collect())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetVariable {
    /// `project`, `environment:ENV`, `service:S` or `service:S@ENV`.
    #[schema(
        pattern = "^(project|environment:[a-z0-9-]{1,63}|service:[a-z0-9-]{1,63}(@[a-z0-9-]{1,63})?)$"
    )]
    scope: String,
    #[schema(pattern = "^[A-Za-z_][A-Za-z0-9_]*$")]
    name: String,
    value: String,
}

/// A secret to set. Read field by field (the value never enters a typed copy that could be logged); described
/// here, with the fields the reading takes and no other.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct NewSecret {
    /// `project`, `environment:ENV`, `service:S` or `service:S@ENV`.
    #[schema(
        pattern = "^(project|environment:[a-z0-9-]{1,63}|service:[a-z0-9-]{1,63}(@[a-z0-9-]{1,63})?)$"
    )]
    scope: String,
    #[schema(pattern = "^[A-Za-z_][A-Za-z0-9_]*$")]
    name: String,
    value: String,
    /// What previews get: `share` (default), `withhold` or `substitute:VARIABLE`.
    #[schema(pattern = "^(share|withhold|substitute:[A-Za-z_][A-Za-z0-9_]*)$")]
    previews: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Slot {
    #[schema(
        pattern = "^(project|environment:[a-z0-9-]{1,63}|service:[a-z0-9-]{1,63}(@[a-z0-9-]{1,63})?)$"
    )]
    scope: String,
    #[schema(pattern = "^[A-Za-z_][A-Za-z0-9_]*$")]
    name: String,
}

#[utoipa::path(
    get,
    operation_id = "variables_list",
    path = "/v1/projects/{project}/variables",
    tag = "variables",
    summary = "The project's variables at every scope",
    params(crate::openapi::params::ProjectPath),
    responses((status = 200, description = "Every variable", body = crate::openapi::answers::VariableList), crate::openapi::Refusals)
)]
pub(crate) async fn list(
    State(state): State<SharedState>,
    Path(project): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let project = project_record(&state.store, &project).await?;
    let variables = state.store.variables(&project.name).await?;
    Ok(Json(json!({ "variables": variables })))
}

#[utoipa::path(
    post,
    operation_id = "variables_set",
    path = "/v1/projects/{project}/variables",
    tag = "variables",
    summary = "Set a variable at a scope",
    params(crate::openapi::params::ProjectPath),
    request_body = SetVariable,
    responses((status = 200, description = "The variable as stored", body = crate::openapi::answers::VariableSet), crate::openapi::Refusals)
)]
pub(crate) async fn set(
    State(state): State<SharedState>,
    Path(project): Path<String>,
    Body(body): Body<SetVariable>,
) -> Result<Json<Value>, ApiError> {
    let project = project_record(&state.store, &project).await?;
    let scope = check_slot(
        &project,
        &body.scope,
        &body.name,
        &environments_of(&state, &project.name).await?,
    )?;
    let record = VariableRecord {
        project: project.name.clone(),
        scope: scope.to_string(),
        name: body.name,
        value: body.value,
        updated_at: now_ms(),
    };
    state.store.set_variable(&record).await?;
    Ok(Json(json!({ "variable": record })))
}

#[utoipa::path(
    post,
    operation_id = "variables_unset",
    path = "/v1/projects/{project}/variables/unset",
    tag = "variables",
    summary = "Remove a variable from a scope",
    params(crate::openapi::params::ProjectPath),
    request_body = Slot,
    responses((status = 200, description = "Removed", body = crate::openapi::answers::Unset), crate::openapi::Refusals)
)]
pub(crate) async fn unset(
    State(state): State<SharedState>,
    Path(project): Path<String>,
    Body(body): Body<Slot>,
) -> Result<Json<Value>, ApiError> {
    remove(&state, &project, body, Kind::Variable).await
}

enum Kind {
    Variable,
    Secret,
}

/// Removes a variable or a secret from its scope; 404 if there is none.
async fn remove(
    state: &SharedState,
    project: &str,
    slot: Slot,
    kind: Kind,
) -> Result<Json<Value>, ApiError> {
    let project = project_record(&state.store, project).await?;
    let scope = Scope::parse(&slot.scope).map_err(ApiError::BadRequest)?;
    let (project, scope_text) = (&project.name, scope.to_string());
    let (removed, what) = match kind {
        Kind::Variable => (
            state
                .store
                .unset_variable(project, &scope_text, &slot.name)
                .await?,
            "variable",
        ),
        Kind::Secret => (
            state
                .vault
                .unset(project, &scope_text, &slot.name)
                .await
                .map_err(ApiError::Internal)?,
            "secret",
        ),
    };
    if !removed {
        return Err(ApiError::NotFound(format!(
            "no {what} `{}` at {scope}",
            slot.name
        )));
    }
    Ok(Json(
        json!({ "unset": { "scope": scope_text, "name": slot.name } }),
    ))
}

/// The fields of a secret request, read by hand: serde's messages may quote the value they failed on.
fn secret_fields(body: &Value) -> Result<(String, String, Secret, String), ApiError> {
    if !body.is_object() {
        return Err(ApiError::BadRequest(
            "a secret is a JSON object with scope, name, value and previews".to_owned(),
        ));
    }
    let field = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_owned);
    let allowed = ["scope", "name", "value", "previews"];
    if let Some(unknown) = body
        .as_object()
        .and_then(|o| o.keys().find(|k| !allowed.contains(&k.as_str())))
    {
        return Err(ApiError::BadRequest(format!(
            "unknown field `{unknown}`; a secret has scope, name, value and previews"
        )));
    }
    let scope = field("scope")
        .ok_or_else(|| ApiError::BadRequest("`scope` (a string) is required".to_owned()))?;
    let name = field("name")
        .ok_or_else(|| ApiError::BadRequest("`name` (a string) is required".to_owned()))?;
    let value = field("value")
        .ok_or_else(|| ApiError::BadRequest("`value` (a string) is required".to_owned()))?;
    let previews = match body.get("previews") {
        None | Some(Value::Null) => "share".to_owned(),
        Some(Value::String(previews)) => previews.clone(),
        Some(_) => {
            return Err(ApiError::BadRequest(
                "`previews` is a string: `share`, `withhold` or `substitute:VARIABLE`".to_owned(),
            ));
        }
    };
    Ok((scope, name, Secret::new(value), previews))
}

fn check_previews(previews: &str) -> Result<(), ApiError> {
    match previews {
        "share" | "withhold" => Ok(()),
        other => match other.strip_prefix("substitute:") {
            Some(variable) if preview_spec::is_variable_name(variable) => Ok(()),
            _ => Err(ApiError::BadRequest(format!(
                "`{other}` is not a preview policy; use `share`, `withhold` or `substitute:VARIABLE`"
            ))),
        },
    }
}

#[utoipa::path(
    post,
    operation_id = "variables_set_secret",
    path = "/v1/projects/{project}/secrets",
    tag = "variables",
    summary = "Set a secret at a scope; it is sealed, and only its fingerprint is ever answered",
    params(crate::openapi::params::ProjectPath),
    request_body = crate::routes::variables::NewSecret,
    responses((status = 200, description = "The secret, without its value", body = crate::openapi::answers::SecretSet), crate::openapi::Refusals)
)]
pub(crate) async fn set_secret(
    State(state): State<SharedState>,
    Path(project): Path<String>,
    Body(body): Body<Value>,
) -> Result<Json<Value>, ApiError> {
    let project = project_record(&state.store, &project).await?;
    let (scope, name, value, previews) = secret_fields(&body)?;
    drop(body);
    check_previews(&previews)?;
    let scope = check_slot(
        &project,
        &scope,
        &name,
        &environments_of(&state, &project.name).await?,
    )?;
    let record = state
        .vault
        .set(
            &project.name,
            &scope.to_string(),
            &name,
            &value,
            &previews,
            now_ms(),
        )
        .await
        .map_err(ApiError::Conflict)?;
    // Set anyway (a spec may be about to declare it), but said: nothing uses a secret no scope declares.
    let mut warnings = Vec::new();
    if preview_spec::parse_spec(&project.file, &project.source)
        .is_ok_and(|spec| !spec.declares_secret(&record.name))
    {
        warnings.push(format!(
            "`{}` is not declared in {}: no service gets it until a `secrets:` list there names it (and the spec is registered again)",
            record.name, project.file
        ));
    }
    Ok(Json(
        json!({ "secret": secret_summary(&record), "warnings": warnings }),
    ))
}

#[utoipa::path(
    post,
    operation_id = "variables_unset_secret",
    path = "/v1/projects/{project}/secrets/unset",
    tag = "variables",
    summary = "Remove a secret from a scope",
    params(crate::openapi::params::ProjectPath),
    request_body = Slot,
    responses((status = 200, description = "Removed", body = crate::openapi::answers::Unset), crate::openapi::Refusals)
)]
pub(crate) async fn unset_secret(
    State(state): State<SharedState>,
    Path(project): Path<String>,
    Body(body): Body<Slot>,
) -> Result<Json<Value>, ApiError> {
    remove(&state, &project, body, Kind::Secret).await
}

fn secret_summary(record: &preview_store::SecretRecord) -> Value {
    json!({
        "name": record.name,
        "scope": record.scope,
        "fingerprint": record.fingerprint,
        "previews": record.previews,
        "updated_at": record.updated_at,
    })
}

#[utoipa::path(
    get,
    operation_id = "variables_list_secrets",
    path = "/v1/projects/{project}/secrets",
    tag = "variables",
    summary = "The project's secrets: names, scopes and fingerprints, never values",
    params(crate::openapi::params::ProjectPath),
    responses((status = 200, description = "Every secret", body = crate::openapi::answers::SecretList), crate::openapi::Refusals)
)]
pub(crate) async fn list_secrets(
    State(state): State<SharedState>,
    Path(project): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let project = project_record(&state.store, &project).await?;
    let secrets: Vec<Value> = state
        .store
        .secrets(Some(&project.name))
        .await?
        .iter()
        .map(secret_summary)
        .collect();
    Ok(Json(json!({ "secrets": secrets })))
}

#[utoipa::path(
    post,
    operation_id = "variables_rotate_key",
    path = "/v1/secrets/rotate-key",
    tag = "daemon",
    summary = "Seal every secret again under a new master key, in one transaction",
    responses((status = 200, description = "Rotated", body = crate::openapi::answers::Rotated), crate::openapi::Refusals)
)]
pub(crate) async fn rotate_key(
    State(state): State<SharedState>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let rotated = state.vault.rotate().await.map_err(ApiError::Conflict)?;
    Ok((StatusCode::OK, Json(json!({ "rotated": rotated }))))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ShowQuery {
    /// Only this service's variables.
    service: Option<String>,
}

/// What `PORT` means for an app: the service's stable port here, and the port its running version was given.
fn port_note(service: &str, version_port: Option<&str>) -> String {
    let name = service.to_ascii_uppercase().replace('-', "_");
    match version_port {
        Some(port) => format!(
            "the service's port (others reach `{service}` as {name}_PORT); each version of `{service}` is started with a port of its own in PORT — the running one has {port}"
        ),
        None => format!(
            "the service's port (others reach `{service}` as {name}_PORT); each version of `{service}` is started with a port of its own in PORT"
        ),
    }
}

/// The effective values (as shown: secrets redacted) of `environment`'s services, by (service, name), as it runs;
/// `None` when it cannot be resolved (it was deleted, say).
async fn source_values(
    state: &SharedState,
    project: &ProjectRecord,
    environment: &str,
) -> Option<std::collections::BTreeMap<(String, String), String>> {
    let record = state
        .store
        .environment(&project.name, environment)
        .await
        .ok()??;
    let recorded = state
        .store
        .recorded_state(&project.name, environment)
        .await
        .ok()?;
    let commit = crate::desired::running_commit(&recorded).or(record.follows.clone());
    let resolved = crate::desired::resolve_running(
        state,
        project,
        environment,
        record.based_on.as_deref(),
        &recorded,
        commit.as_deref(),
    )
    .await
    .ok()?;
    Some(
        resolved
            .services
            .values()
            .flat_map(|service| {
                service
                    .variables
                    .values()
                    .map(|v| ((service.name.clone(), v.name.clone()), v.value.redacted()))
            })
            .collect(),
    )
}

#[utoipa::path(
    get,
    operation_id = "variables_show",
    path = "/v1/projects/{project}/environments/{environment}/variables",
    tag = "variables",
    summary = "Every effective variable of the environment's services with its provenance; secrets as [secret]",
    params(crate::openapi::params::EnvironmentPath, ShowQuery),
    responses((status = 200, description = "The variables", body = crate::openapi::answers::EffectiveVariables), crate::openapi::Refusals)
)]
/// Every effective variable of the environment's services with where it came from; secrets as `[secret]`.
pub(crate) async fn show(
    State(state): State<SharedState>,
    Path((project, environment)): Path<(String, String)>,
    Params(query): Params<ShowQuery>,
) -> Result<Json<Value>, ApiError> {
    let project = project_record(&state.store, &project).await?;
    let record = state.store.environment(&project.name, &environment).await?;
    let based_on = record.as_ref().and_then(|e| e.based_on.clone());
    // An environment that exists shows the values it runs with: those of the commit it runs, else of what it
    // follows; one that does not yet, those its creation would have.
    let recorded = state
        .store
        .recorded_state(&project.name, &environment)
        .await?;
    let commit = crate::desired::running_commit(&recorded)
        .or_else(|| record.as_ref().and_then(|e| e.follows.clone()));
    let resolved = crate::desired::resolve_running(
        &state,
        &project,
        &environment,
        based_on.as_deref(),
        &recorded,
        commit.as_deref(),
    )
    .await?;
    if let Some(service) = &query.service
        && !resolved.services.contains_key(service)
    {
        return Err(ApiError::NotFound(format!(
            "`{environment}` has no service `{service}`"
        )));
    }
    // A clone's values beside those of the environment it was made from, as that one runs now.
    let source = match &based_on {
        Some(source) => source_values(&state, &project, source).await,
        None => None,
    };
    // The port each app's running version was given, for what `PORT` means.
    let address = preview_deploy::EnvironmentAddress {
        project: project.name.clone(),
        environment: environment.clone(),
    };
    let running = state.runtime.status(&address).await;
    let services: Vec<Value> = resolved
        .services
        .values()
        .filter(|s| query.service.as_ref().is_none_or(|wanted| wanted == &s.name))
        .map(|service| {
            let version_port = running
                .iter()
                .find(|r| r.service == service.name)
                .and_then(|r| r.address.as_deref())
                .and_then(|a| a.rsplit_once(':'))
                .map(|(_, port)| port.to_owned());
            let variables: Vec<Value> = service
                .variables
                .values()
                .map(|v| {
                    let mut shadowed: Vec<Value> = v.shadowed.iter().map(|s| json!({ "level": s.level, "source": s.source.to_string(), "value": s.value })).collect();
                    if let (Some(source_name), Some(values)) = (&based_on, &source)
                        && let Some(there) = values.get(&(service.name.clone(), v.name.clone()))
                        && *there != v.value.redacted()
                    {
                        shadowed.push(json!({
                            "level": "source environment",
                            "source": format!("environment `{source_name}`, which this is a clone of"),
                            "value": there,
                        }));
                    }
                    let note = (v.name == "PORT").then(|| port_note(&service.name, version_port.as_deref()));
                    json!({
                        "name": v.name,
                        "value": v.value.redacted(),
                        "secret": v.value.is_secret(),
                        "level": v.level,
                        "source": v.source.to_string(),
                        "shadowed": shadowed,
                        "note": note,
                    })
                })
                .collect();
            json!({ "service": service.name, "variables": variables })
        })
        .collect();
    Ok(Json(
        json!({ "environment": environment, "services": services }),
    ))
}
