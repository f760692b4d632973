//! Environments: list, show, plan, and the changes — create, clone, deploy, delete — each started as one
//! deployment and answered with `202 Accepted` and the deployment's record.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use preview_deploy::DeploymentRequest;
use preview_store::{EnvironmentRecord, Operation, ProjectRecord};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{Body, Params, SharedState};
use crate::desired::{Desired, Purpose, desired_for, running_commit};
use crate::error::ApiError;
use crate::routes::project_record;
use crate::source::describe;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewEnvironment {
    #[schema(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    name: String,
    /// A commit, branch or tag of the project's repository to build from; HEAD when absent.
    #[serde(default)]
    commit: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Redeploy {
    #[serde(default)]
    commit: Option<String>,
}

type Accepted = (StatusCode, Json<Value>);

async fn existing(
    state: &SharedState,
    project: &ProjectRecord,
    name: &str,
) -> Result<EnvironmentRecord, ApiError> {
    state.store.environment(&project.name, name).await?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "project `{}` has no environment `{name}`; `preview env list` shows them, `preview env create {name}` makes a declared one",
            project.name
        ))
    })
}

async fn refuse_existing(
    state: &SharedState,
    project: &ProjectRecord,
    name: &str,
) -> Result<(), ApiError> {
    if state
        .store
        .environment(&project.name, name)
        .await?
        .is_some()
    {
        return Err(ApiError::Conflict(format!(
            "environment `{name}` already exists; `preview deploy {name}` updates it"
        )));
    }
    Ok(())
}

/// Starts `request` and answers with its record, the commit it builds and what that leaves out.
async fn start(
    state: &SharedState,
    request: DeploymentRequest,
    source: Option<Value>,
) -> Result<Accepted, ApiError> {
    let (record, _running) = state.engine.start(request).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "deployment": record, "source": source })),
    ))
}

/// The commit `desired` builds from, described for people, when it has one.
async fn described(project: &ProjectRecord, desired: &Desired) -> Option<Value> {
    match &desired.source {
        Some(source) => Some(describe(source, &project.file, &project.source).await),
        None => None,
    }
}

/// What the environment follows once a deployment asked for `reference` commits: a branch or tag by name, any
/// other reference as the commit it resolved to.
async fn follows_for(
    project: &ProjectRecord,
    reference: Option<String>,
    desired: &Desired,
) -> Option<String> {
    let reference = reference?;
    let commit = desired.source.as_ref().map(|s| s.commit.as_str());
    Some(crate::source::to_follow(project.directory.as_deref(), &reference, commit).await)
}

/// Names a new environment's problems before anything else: a bad name is the request's fault, not the spec's.
fn check_new_name(name: &str) -> Result<(), ApiError> {
    match preview_spec::name_problem(name) {
        Some(problem) => Err(ApiError::BadRequest(format!(
            "name: `{name}` is not a valid environment name: it {problem}"
        ))),
        None => Ok(()),
    }
}

#[utoipa::path(
    get,
    operation_id = "environments_list",
    path = "/v1/projects/{project}/environments",
    tag = "environments",
    summary = "The project's environments",
    params(crate::openapi::params::ProjectPath),
    responses((status = 200, description = "Every environment, and abandoned creations that need attention", body = crate::openapi::answers::EnvironmentList), crate::openapi::Refusals)
)]
pub(crate) async fn list(
    State(state): State<SharedState>,
    Path(project): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let project = project_record(&state.store, &project).await?;
    let attention = state.store.attention(&project.name).await?;
    let note = |name: &str| {
        attention
            .iter()
            .find(|a| a.environment == name)
            .map(|a| a.note.clone())
    };
    let mut environments = Vec::new();
    let existing = state.store.environments(&project.name).await?;
    for environment in &existing {
        let last = state
            .store
            .deployments(&project.name, &environment.name, 1)
            .await?;
        let recorded = state
            .store
            .recorded_state(&project.name, &environment.name)
            .await?;
        let address = preview_deploy::EnvironmentAddress {
            project: project.name.clone(),
            environment: environment.name.clone(),
        };
        let urls = super::runtime::urls(&state, &recorded);
        let last_request_at =
            crate::idle::last_request(&state, &address).map(crate::idle::milliseconds);
        environments.push(json!({
            "name": environment.name,
            "sleeping": state.runtime.sleeping(&address).await,
            "based_on": environment.based_on,
            "created_at": environment.created_at,
            "commit": running_commit(&recorded),
            "follows": environment.follows,
            "urls": urls,
            "last_request_at": last_request_at,
            "last_deployment": last.first().map(|d| json!({ "id": d.id, "operation": d.operation, "status": d.status })),
            "attention": note(&environment.name),
        }));
    }
    // An abandoned create leaves no environment, but may leave what it made.
    for mark in attention
        .iter()
        .filter(|a| !existing.iter().any(|e| e.name == a.environment))
    {
        environments.push(json!({
            "name": mark.environment,
            "sleeping": false,
            "urls": [],
            "last_request_at": null,
            "based_on": null,
            "created_at": null,
            "commit": null,
            "follows": null,
            "last_deployment": { "id": mark.deployment, "operation": "create", "status": "abandoned" },
            "attention": mark.note,
        }));
    }
    Ok(Json(json!({ "environments": environments })))
}

#[utoipa::path(
    get,
    operation_id = "environments_show",
    path = "/v1/projects/{project}/environments/{environment}",
    tag = "environments",
    summary = "An environment: its services, URLs, resources, isolation and recent deployments",
    params(crate::openapi::params::EnvironmentPath),
    responses((status = 200, description = "The environment", body = crate::openapi::answers::EnvironmentShown), crate::openapi::Refusals)
)]
pub(crate) async fn show(
    State(state): State<SharedState>,
    Path((project, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let project = project_record(&state.store, &project).await?;
    let environment = existing(&state, &project, &name).await?;
    let recorded = state.store.recorded_state(&project.name, &name).await?;
    let routes: Vec<Value> = super::runtime::service_urls(&state, &recorded)
        .into_iter()
        .map(|(service, url)| json!({ "service": service, "url": url }))
        .collect();
    let urls: Vec<&Value> = routes.iter().map(|r| &r["url"]).collect();
    let address = preview_deploy::EnvironmentAddress {
        project: project.name.clone(),
        environment: name.clone(),
    };
    let services = state.runtime.status(&address).await;
    let isolation = state.runtime.isolation(&address).await;
    let sleeping = state.runtime.sleeping(&address).await;
    let last_request_at =
        crate::idle::last_request(&state, &address).map(crate::idle::milliseconds);
    let resources: Vec<Value> = recorded
        .iter()
        .map(|r| json!({ "id": r.id, "kind": r.kind, "hash": r.hash }))
        .collect();
    let attention = state
        .store
        .attention(&project.name)
        .await?
        .into_iter()
        .find(|a| a.environment == name)
        .map(|a| a.note);
    let deployments = state.store.deployments(&project.name, &name, 5).await?;
    let recent: Vec<Value> = deployments
        .iter()
        .map(|d| json!({ "id": d.id, "operation": d.operation, "status": d.status, "reason": d.reason, "commit": d.source_commit, "created_at": d.created_at }))
        .collect();
    Ok(Json(
        json!({ "environment": environment, "commit": running_commit(&recorded), "sleeping": sleeping, "last_request_at": last_request_at, "resources": resources, "services": services, "isolation": isolation, "urls": urls, "routes": routes, "deployments": recent, "attention": attention }),
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlanQuery {
    /// A commit, branch or tag to plan for instead of what the environment follows.
    #[serde(default)]
    commit: Option<String>,
}

/// What deploying the environment would make it, for a plan or a render: at the commit asked for, else what the
/// environment follows.
async fn planned(
    state: &SharedState,
    project: &str,
    name: &str,
    query: &PlanQuery,
) -> Result<(ProjectRecord, Option<EnvironmentRecord>, Desired), ApiError> {
    let project = project_record(&state.store, project).await?;
    let environment = state.store.environment(&project.name, name).await?;
    let based_on = environment.as_ref().and_then(|e| e.based_on.clone());
    let reference = query
        .commit
        .clone()
        .or_else(|| environment.as_ref().and_then(|e| e.follows.clone()));
    let desired = desired_for(
        state,
        &project,
        name,
        based_on.as_deref(),
        reference.as_deref(),
        Purpose::Plan,
    )
    .await?;
    Ok((project, environment, desired))
}

#[utoipa::path(
    get,
    operation_id = "environments_plan",
    path = "/v1/projects/{project}/environments/{environment}/plan",
    tag = "environments",
    summary = "What deploying the environment (or creating it) would change",
    params(crate::openapi::params::EnvironmentPath, PlanQuery),
    responses((status = 200, description = "The plan", body = crate::openapi::answers::Planned), crate::openapi::Refusals)
)]
pub(crate) async fn plan(
    State(state): State<SharedState>,
    Path((project, name)): Path<(String, String)>,
    Params(query): Params<PlanQuery>,
) -> Result<Json<Value>, ApiError> {
    let (project, environment, desired) = planned(&state, &project, &name, &query).await?;
    let plan = state
        .engine
        .plan(&project.name, &name, &desired.resources)
        .await?;
    let text = preview_plan::render_plan(&plan);
    let mut source = described(&project, &desired).await;
    let verb = if environment.is_some() {
        "deploy"
    } else {
        "env create"
    };
    let refused: Vec<String> = desired
        .missing_secrets
        .iter()
        .map(|secret| {
            format!("`preview {verb} {name}` would be refused: it needs the secret {secret}")
        })
        .collect();
    let mut warnings: Vec<Value> = source
        .as_mut()
        .and_then(|s| s["warnings"].as_array().cloned())
        .unwrap_or_default();
    warnings.extend(refused.into_iter().map(Value::String));
    // A masked copy's rules against its source as it is now: what the copy would refuse or report.
    let address = preview_deploy::EnvironmentAddress {
        project: project.name.clone(),
        environment: name.clone(),
    };
    for resource in desired
        .resources
        .iter()
        .filter(|r| r.kind == preview_plan::ResourceKind::Database)
    {
        warnings.extend(
            state
                .runtime
                .database_warnings(&address, resource)
                .await
                .into_iter()
                .map(Value::String),
        );
    }
    Ok(Json(
        json!({ "plan": plan, "text": text, "source": source, "warnings": warnings }),
    ))
}

#[utoipa::path(
    post,
    operation_id = "environments_create",
    path = "/v1/projects/{project}/environments",
    tag = "environments",
    summary = "Create a declared environment: one deployment",
    params(crate::openapi::params::ProjectPath),
    request_body = NewEnvironment,
    responses((status = 202, description = "The deployment started", body = crate::openapi::answers::Started), crate::openapi::Refusals)
)]
pub(crate) async fn create(
    State(state): State<SharedState>,
    Path(project): Path<String>,
    Body(body): Body<NewEnvironment>,
) -> Result<Accepted, ApiError> {
    let project = project_record(&state.store, &project).await?;
    check_new_name(&body.name)?;
    refuse_existing(&state, &project, &body.name).await?;
    let desired = desired_for(
        &state,
        &project,
        &body.name,
        None,
        body.commit.as_deref(),
        Purpose::Deploy,
    )
    .await?;
    let source = described(&project, &desired).await;
    let follows = follows_for(&project, body.commit, &desired).await;
    let request = request(
        &project,
        &body.name,
        Operation::Create,
        None,
        desired,
        follows,
    );
    start(&state, request, source).await
}

#[utoipa::path(
    post,
    operation_id = "environments_clone",
    path = "/v1/projects/{project}/environments/{environment}/clone",
    tag = "environments",
    summary = "Clone the environment into a new one: one deployment",
    params(crate::openapi::params::EnvironmentPath),
    request_body = NewEnvironment,
    responses((status = 202, description = "The deployment started", body = crate::openapi::answers::Started), crate::openapi::Refusals)
)]
pub(crate) async fn clone(
    State(state): State<SharedState>,
    Path((project, source)): Path<(String, String)>,
    Body(body): Body<NewEnvironment>,
) -> Result<Accepted, ApiError> {
    let project = project_record(&state.store, &project).await?;
    check_new_name(&body.name)?;
    existing(&state, &project, &source).await?;
    refuse_existing(&state, &project, &body.name).await?;
    let desired = desired_for(
        &state,
        &project,
        &body.name,
        Some(&source),
        body.commit.as_deref(),
        Purpose::Deploy,
    )
    .await?;
    let described = described(&project, &desired).await;
    let follows = follows_for(&project, body.commit, &desired).await;
    let request = request(
        &project,
        &body.name,
        Operation::Clone,
        Some(source),
        desired,
        follows,
    );
    start(&state, request, described).await
}

#[utoipa::path(
    post,
    operation_id = "environments_deploy",
    path = "/v1/projects/{project}/environments/{environment}/deploy",
    tag = "environments",
    summary = "Deploy the environment again, at a commit or what it follows: one deployment",
    params(crate::openapi::params::EnvironmentPath),
    request_body = Redeploy,
    responses((status = 202, description = "The deployment started", body = crate::openapi::answers::Started), crate::openapi::Refusals)
)]
pub(crate) async fn deploy(
    State(state): State<SharedState>,
    Path((project, name)): Path<(String, String)>,
    Body(body): Body<Redeploy>,
) -> Result<Accepted, ApiError> {
    let project = project_record(&state.store, &project).await?;
    let environment = existing(&state, &project, &name).await?;
    // Without a reference, the environment builds the head of what it follows (HEAD when it follows nothing).
    let reference = body.commit.clone().or(environment.follows.clone());
    let desired = desired_for(
        &state,
        &project,
        &name,
        environment.based_on.as_deref(),
        reference.as_deref(),
        Purpose::Deploy,
    )
    .await
    .map_err(|error| match (&body.commit, &environment.follows, error) {
        // What it follows is gone (a deleted branch): say so, and how to follow something else.
        (None, Some(follows), ApiError::BadRequest(message)) if message.starts_with("commit:") => {
            ApiError::BadRequest(format!(
                "`{name}` follows `{follows}`, which {}; deploy it with `preview deploy {name} --commit REF` to follow another branch",
                message
                    .split_once(" is not a commit")
                    .map_or("cannot be found".to_owned(), |_| "is no longer a commit of the repository".to_owned())
            ))
        }
        (_, _, error) => error,
    })?;
    let source = described(&project, &desired).await;
    let follows = follows_for(&project, body.commit, &desired).await;
    let request = request(
        &project,
        &name,
        Operation::Update,
        environment.based_on,
        desired,
        follows,
    );
    start(&state, request, source).await
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeleteQuery {
    /// Keep the variables and secrets scoped to the environment instead of removing them with it.
    #[serde(default)]
    keep_settings: bool,
}

#[utoipa::path(
    delete,
    operation_id = "environments_delete",
    path = "/v1/projects/{project}/environments/{environment}",
    tag = "environments",
    summary = "Delete the environment: one deployment",
    params(crate::openapi::params::EnvironmentPath, DeleteQuery),
    responses((status = 202, description = "The deployment started", body = crate::openapi::answers::DeletionStarted), crate::openapi::Refusals)
)]
pub(crate) async fn delete(
    State(state): State<SharedState>,
    Path((project, name)): Path<(String, String)>,
    Params(query): Params<DeleteQuery>,
) -> Result<Accepted, ApiError> {
    let project = project_record(&state.store, &project).await?;
    let environment = existing(&state, &project, &name).await?;
    let desired = Desired {
        resources: Vec::new(),
        source: None,
        missing_secrets: Vec::new(),
    };
    let mut request = request(
        &project,
        &name,
        Operation::Delete,
        environment.based_on,
        desired,
        None,
    );
    // Clones of it read what was set for it too: while one exists, that stays.
    let clones: Vec<String> = state
        .store
        .environments(&project.name)
        .await?
        .into_iter()
        .filter(|e| e.based_on.as_deref() == Some(name.as_str()))
        .map(|e| e.name)
        .collect();
    let keep = query.keep_settings || !clones.is_empty();
    request.keep_settings = keep;
    // What is scoped to the environment, and whether it goes with it: said before it happens.
    let scoped = |scope: &str| {
        scope == format!("environment:{name}") || scope.ends_with(&format!("@{name}"))
    };
    let variables: Vec<String> = state
        .store
        .variables(&project.name)
        .await?
        .into_iter()
        .filter(|v| scoped(&v.scope))
        .map(|v| format!("{} ({})", v.name, v.scope))
        .collect();
    let secrets: Vec<String> = state
        .store
        .secrets(Some(&project.name))
        .await?
        .into_iter()
        .filter(|s| scoped(&s.scope))
        .map(|s| format!("{} ({})", s.name, s.scope))
        .collect();
    let (status, Json(mut answer)) = start(&state, request, None).await?;
    answer["settings"] = json!({
        "variables": variables, "secrets": secrets, "kept": keep,
        "kept_for": (!query.keep_settings && !clones.is_empty()).then_some(clones),
    });
    Ok((status, Json(answer)))
}

#[utoipa::path(
    post,
    operation_id = "environments_cancel",
    path = "/v1/projects/{project}/environments/{environment}/cancel",
    tag = "environments",
    summary = "Cancel the environment's running deployment (past its point of no return it completes)",
    params(crate::openapi::params::EnvironmentPath),
    responses((status = 202, description = "Told to stop", body = crate::openapi::answers::Cancelling), crate::openapi::Refusals)
)]
pub(crate) async fn cancel(
    State(state): State<SharedState>,
    Path((project, name)): Path<(String, String)>,
) -> Result<Accepted, ApiError> {
    let project = project_record(&state.store, &project).await?;
    let running = state
        .store
        .unfinished_deployments()
        .await?
        .into_iter()
        .find(|d| d.project == project.name && d.environment == name)
        .ok_or_else(|| ApiError::NotFound(format!("no deployment of `{name}` is running")))?;
    super::deployments::cancel_running(&state, &running)
}

fn request(
    project: &ProjectRecord,
    environment: &str,
    operation: Operation,
    based_on: Option<String>,
    desired: Desired,
    follows: Option<String>,
) -> DeploymentRequest {
    DeploymentRequest {
        project: project.name.clone(),
        environment: environment.to_owned(),
        operation,
        based_on,
        source_commit: desired.source.map(|s| s.commit),
        follows,
        keep_settings: false,
        desired: desired.resources,
    }
}

#[utoipa::path(
    get,
    operation_id = "environments_manifests",
    path = "/v1/projects/{project}/environments/{environment}/manifests",
    tag = "environments",
    summary = "The Kubernetes objects the environment is rendered to (secret values redacted)",
    params(crate::openapi::params::EnvironmentPath, PlanQuery),
    responses((status = 200, description = "The objects", body = crate::openapi::answers::Manifests), crate::openapi::Refusals)
)]
/// The Kubernetes objects deploying the environment would apply, Secret values redacted: `preview render`. On a
/// daemon running environments elsewhere, they are rendered with the default cluster settings, for review.
pub(crate) async fn manifests(
    State(state): State<SharedState>,
    Path((project, name)): Path<(String, String)>,
    Params(query): Params<PlanQuery>,
) -> Result<Json<Value>, ApiError> {
    let (project, _, desired) = planned(&state, &project, &name, &query).await?;
    let address = preview_deploy::EnvironmentAddress {
        project: project.name.clone(),
        environment: name.clone(),
    };
    let objects = match &state.kubernetes {
        Some(cluster) => {
            cluster
                .render_environment(&address, &desired.resources)
                .await
        }
        None => preview_kubernetes::render_redacted(
            &address,
            None,
            &desired.resources,
            &preview_manifests::Settings::default(),
        ),
    }
    .map_err(|e| {
        ApiError::BadRequest(format!(
            "{project}/{name} cannot be rendered: {e}",
            project = project.name
        ))
    })?;
    let listed: Vec<Value> = objects
        .iter()
        .map(|object| {
            json!({
                "api_version": object.api_version,
                "kind": object.kind,
                "namespace": object.namespace,
                "name": object.name,
                "yaml": preview_manifests::to_yaml(std::slice::from_ref(object)),
            })
        })
        .collect();
    Ok(Json(json!({
        "objects": listed,
        "yaml": preview_manifests::to_yaml(&objects),
    })))
}

#[utoipa::path(
    post,
    operation_id = "environments_wake",
    path = "/v1/projects/{project}/environments/{environment}/wake",
    tag = "environments",
    summary = "Wake a sleeping environment (a preview stopped by `idle_stop`); nothing happens to one awake",
    params(crate::openapi::params::EnvironmentPath),
    responses(
        (status = 200, description = "Whether it still sleeps", body = crate::openapi::answers::Woken),
        crate::openapi::Refusals
    )
)]
pub(crate) async fn wake(
    State(state): State<SharedState>,
    Path((project, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let project = project_record(&state.store, &project).await?;
    existing(&state, &project, &name).await?;
    let address = preview_deploy::EnvironmentAddress {
        project: project.name.clone(),
        environment: name.clone(),
    };
    let was_sleeping = state.runtime.sleeping(&address).await;
    // The daemon's own task: the wake goes on whatever the client does.
    let runtime = std::sync::Arc::clone(&state.runtime);
    let (woken, sleeping) = tokio::spawn(async move {
        let woken = runtime.wake(&address).await;
        (woken, runtime.sleeping(&address).await)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("the wake ended abnormally: {e}")))?;
    match woken {
        Err(error) if sleeping => Err(ApiError::Conflict(format!(
            "`{name}` did not wake: {}",
            error.message
        ))),
        _ => {
            if was_sleeping {
                tracing::info!("`{name}` woke (asked through the API)");
            }
            Ok(Json(json!({ "environment": name, "sleeping": sleeping })))
        }
    }
}
