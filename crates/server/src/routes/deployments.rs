//! Deployment history: records, per-step timing, journal lines, and cancelling.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use preview_store::{
    DeploymentRecord, DeploymentStatus, JournalEntry, JournalEvent, Operation, Phase,
};
use serde_json::{Value, json};

use crate::api::SharedState;
use crate::error::ApiError;
use crate::routes::project_record;

async fn record(state: &SharedState, id: &str) -> Result<DeploymentRecord, ApiError> {
    state.store.deployment(id).await?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "no deployment `{id}`; `preview deployments ENV` lists them"
        ))
    })
}

#[utoipa::path(
    get,
    operation_id = "deployments_list",
    path = "/v1/projects/{project}/environments/{environment}/deployments",
    tag = "deployments",
    summary = "The environment's latest deployments, newest first",
    params(crate::openapi::params::EnvironmentPath),
    responses((status = 200, description = "Up to 50 deployments", body = crate::openapi::answers::DeploymentList), crate::openapi::Refusals)
)]
pub(crate) async fn list(
    State(state): State<SharedState>,
    Path((project, environment)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let project = project_record(&state.store, &project).await?;
    let records = state
        .store
        .deployments(&project.name, &environment, 50)
        .await?;
    // A deleted environment keeps its history; a name that never had a deployment is a mistake worth saying.
    if records.is_empty()
        && state
            .store
            .environment(&project.name, &environment)
            .await?
            .is_none()
    {
        return Err(ApiError::NotFound(format!(
            "project `{}` has no environment `{environment}` and never had one; `preview env list` shows them",
            project.name
        )));
    }
    let deployments: Vec<Value> = records
        .iter()
        .map(|d| {
            json!({
                "id": d.id, "operation": d.operation, "status": d.status, "reason": d.reason,
                "steps": d.plan.steps.len(), "commit": d.source_commit, "created_at": d.created_at,
                "finished_at": d.finished_at,
            })
        })
        .collect();
    Ok(Json(json!({ "deployments": deployments })))
}

/// Each plan step with what happened to it, from the journal: applied, failed, undone, or never started.
fn step_report(record: &DeploymentRecord, journal: &[JournalEntry]) -> Vec<Value> {
    record
        .plan
        .steps
        .iter()
        .map(|step| {
            let entries: Vec<&JournalEntry> = journal
                .iter()
                .filter(|e| e.step as usize == step.index)
                .collect();
            let at = |phase: Phase, event: JournalEvent| {
                entries
                    .iter()
                    .find(|e| e.phase == phase && e.event == event)
                    .map(|e| e.at)
            };
            let started = at(Phase::Apply, JournalEvent::Intent);
            let applied = at(Phase::Apply, JournalEvent::Done);
            let failed = entries
                .iter()
                .find(|e| e.phase == Phase::Apply && e.event == JournalEvent::Failed);
            let undone = at(Phase::Compensate, JournalEvent::Done);
            let state = match (started, applied, failed, undone) {
                (_, _, _, Some(_)) => "undone",
                (_, _, Some(_), None) => "failed",
                (_, Some(_), None, None) => "applied",
                (Some(_), None, None, None) => "interrupted",
                (None, ..) => "not started",
            };
            json!({
                "index": step.index + 1,
                "action": step.action,
                "resource": step.resource,
                "state": state,
                "started_at": started,
                "duration_ms": started.zip(applied.or(failed.map(|f| f.at))).map(|(s, e)| e - s),
                "error": failed.map(|f| f.message.clone()),
            })
        })
        .collect()
}

#[utoipa::path(
    get,
    operation_id = "deployments_show",
    path = "/v1/deployments/{id}",
    tag = "deployments",
    summary = "A deployment with each step's state and timing",
    params(crate::openapi::params::DeploymentPath),
    responses((status = 200, description = "The deployment", body = crate::openapi::answers::DeploymentShown), crate::openapi::Refusals)
)]
pub(crate) async fn show(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let record = record(&state, &id).await?;
    let journal = state.store.journal(&id).await?;
    let steps = step_report(&record, &journal);
    // Once a change is committed, where its environment answers (`null` without a gateway).
    let urls = if state.gateway.is_none() {
        None
    } else if record.status == DeploymentStatus::Committed && record.operation != Operation::Delete
    {
        let recorded = state
            .store
            .recorded_state(&record.project, &record.environment)
            .await?;
        Some(super::runtime::urls(&state, &recorded))
    } else {
        Some(Vec::new())
    };
    Ok(Json(json!({
        "deployment": {
            "id": record.id, "project": record.project, "environment": record.environment,
            "operation": record.operation, "based_on": record.based_on, "status": record.status,
            "commit": record.source_commit, "follows": record.follows,
            "reason": record.reason, "created_at": record.created_at, "finished_at": record.finished_at,
            "holder": record.holder, "attempts": record.attempts, "last_error": record.last_error,
            "retry_at": record.retry_at,
            "point_of_no_return": record.plan.point_of_no_return.map(|p| p + 1),
        },
        "steps": steps,
        "urls": urls,
    })))
}

#[utoipa::path(
    get,
    operation_id = "deployments_logs",
    path = "/v1/deployments/{id}/logs",
    tag = "deployments",
    summary = "A deployment's journal",
    params(crate::openapi::params::DeploymentPath),
    responses((status = 200, description = "Its entries in order", body = crate::openapi::answers::Journal), crate::openapi::Refusals)
)]
pub(crate) async fn logs(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    record(&state, &id).await?;
    let entries = state.store.journal(&id).await?;
    Ok(Json(json!({ "entries": entries })))
}

#[utoipa::path(
    post,
    operation_id = "deployments_cancel",
    path = "/v1/deployments/{id}/cancel",
    tag = "deployments",
    summary = "Cancel a running deployment",
    params(crate::openapi::params::DeploymentPath),
    responses((status = 202, description = "Told to stop", body = crate::openapi::answers::Cancelling), crate::openapi::Refusals)
)]
pub(crate) async fn cancel(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let record = record(&state, &id).await?;
    if record.status.is_finished() {
        return Err(ApiError::Conflict(format!(
            "deployment {id} has already ended ({})",
            record.status
        )));
    }
    cancel_running(&state, &record)
}

#[utoipa::path(
    post,
    operation_id = "deployments_abandon",
    path = "/v1/deployments/{id}/abandon",
    tag = "deployments",
    summary = "Give up on a deployment that cannot finish; its environment is marked as needing attention",
    params(crate::openapi::params::DeploymentPath),
    responses((status = 200, description = "Abandoned", body = crate::openapi::answers::Abandoned), crate::openapi::Refusals)
)]
/// Gives up on a deployment that cannot finish; its environment is marked as needing attention.
pub(crate) async fn abandon(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let record = state.engine.abandon(&id).await?;
    let attention = state
        .store
        .attention(&record.project)
        .await?
        .into_iter()
        .find(|a| a.environment == record.environment && a.deployment == record.id);
    Ok(Json(
        json!({ "deployment": record, "attention": attention }),
    ))
}

pub(crate) fn cancel_running(
    state: &SharedState,
    record: &DeploymentRecord,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if !state.engine.cancel(&record.id) {
        return Err(ApiError::Conflict(format!(
            "deployment {} is not running in this daemon (it is held by `{}`)",
            record.id, record.holder
        )));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "cancelling": record.id })),
    ))
}
