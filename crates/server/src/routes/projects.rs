//! Registering a project's spec, and reading projects back.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use preview_store::ProjectRecord;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{Body, SharedState};
use crate::error::ApiError;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Register {
    /// The spec's file name, used in error messages.
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"
    )]
    file: String,
    /// The spec's text.
    source: String,
    /// The spec's directory on this machine (absolute), where the local runtime finds the repository to build
    /// from.
    #[serde(default)]
    directory: Option<String>,
}

fn summary(project: &ProjectRecord) -> Value {
    json!({ "name": project.name, "file": project.file, "directory": project.directory, "updated_at": project.updated_at })
}

#[utoipa::path(
    post,
    operation_id = "projects_register",
    path = "/v1/projects",
    tag = "projects",
    summary = "Register (or replace) a project's spec; an invalid spec changes nothing",
    request_body = Register,
    responses((status = 200, description = "The project as stored", body = crate::openapi::answers::Registered), crate::openapi::Refusals)
)]
/// Validates the spec and stores it under its project name; an invalid spec changes nothing.
pub(crate) async fn register(
    State(state): State<SharedState>,
    Body(body): Body<Register>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let characters = body.file.chars().count();
    if characters == 0 || characters > 255 || body.file.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "file: the spec's file name is 1 to 255 characters, none of them a control character"
                .to_owned(),
        ));
    }
    let spec = preview_spec::parse_spec(&body.file, &body.source)
        .map_err(|d| ApiError::BadRequest(d.to_string()))?;
    if let Some(directory) = &body.directory
        && !(directory.starts_with('/') && std::path::Path::new(directory).is_dir())
    {
        return Err(ApiError::BadRequest(format!(
            "directory: `{directory}` is not an absolute path of a directory on the daemon's machine"
        )));
    }
    let record = ProjectRecord {
        name: spec.project.clone(),
        file: body.file,
        source: body.source,
        directory: body.directory,
        updated_at: now_ms(),
    };
    state.store.put_project(&record).await?;
    let environments: Vec<&String> = spec.environments.keys().collect();
    Ok((
        StatusCode::OK,
        Json(
            json!({ "project": summary(&record), "services": spec.services.len(), "environments": environments }),
        ),
    ))
}

#[utoipa::path(
    get,
    operation_id = "projects_list",
    path = "/v1/projects",
    tag = "projects",
    summary = "The registered projects",
    responses((status = 200, description = "Every project", body = crate::openapi::answers::ProjectList), crate::openapi::Refusals)
)]
pub(crate) async fn list(State(state): State<SharedState>) -> Result<Json<Value>, ApiError> {
    let projects: Vec<Value> = state.store.projects().await?.iter().map(summary).collect();
    Ok(Json(json!({ "projects": projects })))
}

#[utoipa::path(
    get,
    operation_id = "projects_show",
    path = "/v1/projects/{project}",
    tag = "projects",
    summary = "A project, its spec and where its forge sends webhooks",
    params(crate::openapi::params::ProjectPath),
    responses((status = 200, description = "The project", body = crate::openapi::answers::ProjectShown), crate::openapi::Refusals)
)]
pub(crate) async fn show(
    State(state): State<SharedState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let project = super::project_record(&state.store, &name).await?;
    // Where its forge sends webhooks, when its previews come from one that does.
    let forge = preview_spec::parse_spec(&project.file, &project.source)
        .ok()
        .and_then(|spec| spec.previews.and_then(|p| p.forge))
        .filter(|forge| forge.kind != preview_spec::ForgeKind::Local)
        .map(|forge| {
            json!({
                "kind": forge.kind,
                "repository": forge.repository,
                "webhook_secret": forge.webhook_secret,
                "webhook_path": format!("/webhooks/{}", project.name),
            })
        });
    Ok(Json(
        json!({ "project": summary(&project), "source": project.source, "forge": forge }),
    ))
}

#[utoipa::path(
    delete,
    operation_id = "projects_delete",
    path = "/v1/projects/{project}",
    tag = "projects",
    summary = "Remove a project once its environments are gone",
    params(crate::openapi::params::ProjectPath),
    responses((status = 200, description = "Removed", body = crate::openapi::answers::Deleted), crate::openapi::Refusals)
)]
/// Removes a project once its environments are gone (`preview project delete` deletes them first, each in a
/// deployment); refused while any remains or a deployment of it has not finished.
pub(crate) async fn delete(
    State(state): State<SharedState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let project = super::project_record(&state.store, &name).await?;
    if state.store.delete_project(&project.name).await? {
        return Ok(Json(json!({ "deleted": project.name })));
    }
    let environments: Vec<String> = state
        .store
        .environments(&project.name)
        .await?
        .into_iter()
        .map(|e| e.name)
        .collect();
    let attention = state.store.attention(&project.name).await?;
    Err(ApiError::Conflict(if let Some(mark) = attention.first() {
        format!(
            "`{}` of project `{}` needs attention ({}); clean up what it lists, create and delete it again, then delete the project",
            mark.environment, project.name, mark.note
        )
    } else if environments.is_empty() {
        format!(
            "a deployment of project `{}` has not finished; wait for it (or abandon it) and try again",
            project.name
        )
    } else {
        format!(
            "project `{}` still has environments ({}); `preview project delete {}` deletes them first",
            project.name,
            environments.join(", "),
            project.name
        )
    }))
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
