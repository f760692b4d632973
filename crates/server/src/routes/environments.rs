//! Environments: list, show, plan, and the changes — create, clone, deploy, delete — each started as one
//! deployment and answered with `202 Accepted` and the deployment's record.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use preview_deploy::DeploymentRequest;
use preview_store::{EnvironmentRecord, Operation, ProjectRecord};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{Body, SharedState};
use crate::desired::{Purpose, desired_for};
use crate::error::ApiError;
use crate::routes::project_record;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewEnvironment {
    name: String,
    /// A commit, branch or tag of the project's repository to build from; HEAD when absent.
    #[serde(default)]
    commit: Option<String>,
}

#[derive(Deserialize)]
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

async fn start(state: &SharedState, request: DeploymentRequest) -> Result<Accepted, ApiError> {
    let (record, _running) = state.engine.start(request).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "deployment": record }))))
}

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
        environments.push(json!({
            "name": environment.name,
            "based_on": environment.based_on,
            "created_at": environment.created_at,
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
            "based_on": null,
            "created_at": null,
            "last_deployment": { "id": mark.deployment, "operation": "create", "status": "abandoned" },
            "attention": mark.note,
        }));
    }
    Ok(Json(json!({ "environments": environments })))
}

pub(crate) async fn show(
    State(state): State<SharedState>,
    Path((project, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let project = project_record(&state.store, &project).await?;
    let environment = existing(&state, &project, &name).await?;
    let recorded = state.store.recorded_state(&project.name, &name).await?;
    let urls = super::runtime::urls(&state, &recorded);
    let address = preview_deploy::EnvironmentAddress {
        project: project.name.clone(),
        environment: name.clone(),
    };
    let services = state.runtime.status(&address).await;
    let isolation = state.runtime.isolation(&address).await;
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
        .map(|d| json!({ "id": d.id, "operation": d.operation, "status": d.status, "reason": d.reason, "created_at": d.created_at }))
        .collect();
    Ok(Json(
        json!({ "environment": environment, "resources": resources, "services": services, "isolation": isolation, "urls": urls, "deployments": recent, "attention": attention }),
    ))
}

pub(crate) async fn plan(
    State(state): State<SharedState>,
    Path((project, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let project = project_record(&state.store, &project).await?;
    let based_on = state
        .store
        .environment(&project.name, &name)
        .await?
        .and_then(|e| e.based_on);
    let desired = desired_for(
        &state,
        &project,
        &name,
        based_on.as_deref(),
        None,
        Purpose::Plan,
    )
    .await?;
    let plan = state.engine.plan(&project.name, &name, &desired).await?;
    let text = preview_plan::render_plan(&plan);
    Ok(Json(json!({ "plan": plan, "text": text })))
}

pub(crate) async fn create(
    State(state): State<SharedState>,
    Path(project): Path<String>,
    Body(body): Body<NewEnvironment>,
) -> Result<Accepted, ApiError> {
    let project = project_record(&state.store, &project).await?;
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
    start(
        &state,
        request(&project, &body.name, Operation::Create, None, desired),
    )
    .await
}

pub(crate) async fn clone(
    State(state): State<SharedState>,
    Path((project, source)): Path<(String, String)>,
    Body(body): Body<NewEnvironment>,
) -> Result<Accepted, ApiError> {
    let project = project_record(&state.store, &project).await?;
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
    start(
        &state,
        request(
            &project,
            &body.name,
            Operation::Clone,
            Some(source),
            desired,
        ),
    )
    .await
}

pub(crate) async fn deploy(
    State(state): State<SharedState>,
    Path((project, name)): Path<(String, String)>,
    Body(body): Body<Redeploy>,
) -> Result<Accepted, ApiError> {
    let project = project_record(&state.store, &project).await?;
    let environment = existing(&state, &project, &name).await?;
    let desired = desired_for(
        &state,
        &project,
        &name,
        environment.based_on.as_deref(),
        body.commit.as_deref(),
        Purpose::Deploy,
    )
    .await?;
    start(
        &state,
        request(
            &project,
            &name,
            Operation::Update,
            environment.based_on,
            desired,
        ),
    )
    .await
}

pub(crate) async fn delete(
    State(state): State<SharedState>,
    Path((project, name)): Path<(String, String)>,
) -> Result<Accepted, ApiError> {
    let project = project_record(&state.store, &project).await?;
    let environment = existing(&state, &project, &name).await?;
    start(
        &state,
        request(
            &project,
            &name,
            Operation::Delete,
            environment.based_on,
            Vec::new(),
        ),
    )
    .await
}

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
    desired: Vec<preview_plan::Resource>,
) -> DeploymentRequest {
    DeploymentRequest {
        project: project.name.clone(),
        environment: environment.to_owned(),
        operation,
        based_on,
        desired,
    }
}
