//! Pull requests and their previews: the listing (`preview previews list`), a resync now (`previews sync`), and a
//! maintainer's approval of a fork's head commit (`previews approve`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use preview_forge::PullState;
use preview_spec::PreviewPolicy;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{Body, SharedState};
use crate::desired::running_commit;
use crate::error::ApiError;
use crate::previews::decide::{self, Want, decide};
use crate::routes::project_record;

#[utoipa::path(
    get,
    operation_id = "previews_list",
    path = "/v1/projects/{project}/previews",
    tag = "previews",
    summary = "Pull requests and their previews, with the reconciler's decisions",
    params(crate::openapi::params::ProjectPath),
    responses((status = 200, description = "Every pull request seen", body = crate::openapi::answers::PreviewList), crate::openapi::Refusals)
)]
pub(crate) async fn list(
    State(state): State<SharedState>,
    Path(project): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let project = project_record(&state.store, &project).await?;
    let policy = preview_spec::parse_spec(&project.file, &project.source)
        .ok()
        .and_then(|s| s.previews);
    let records = state.store.pull_requests(&project.name).await?;
    let seen = decide::seen(&records);
    let now = state.store.now().await?;
    let verdicts = decide(policy.as_ref(), &seen, now);
    let mut previews = Vec::new();
    for (pr, verdict) in seen.iter().zip(&verdicts) {
        let pull: &PullState = &pr.state;
        let name = PreviewPolicy::environment_name(pull.number);
        let environment = state.store.environment(&project.name, &name).await?;
        let address = preview_deploy::EnvironmentAddress {
            project: project.name.clone(),
            environment: name.clone(),
        };
        let (sleeping, last_request_at) = match &environment {
            Some(_) => (
                state.runtime.sleeping(&address).await,
                crate::idle::last_request(&state, &address).map(crate::idle::milliseconds),
            ),
            None => (false, None),
        };
        let (commit, urls, last) = match &environment {
            Some(_) => {
                let recorded = state.store.recorded_state(&project.name, &name).await?;
                let urls: Vec<String> = super::runtime::service_urls(&state, &recorded)
                    .into_iter()
                    .map(|(_, url)| url)
                    .collect();
                let last = state.store.deployments(&project.name, &name, 1).await?;
                (running_commit(&recorded), urls, last.into_iter().next())
            }
            None => (None, Vec::new(), None),
        };
        let queue_position = match verdict.want {
            Want::Queued { position } => Some(position),
            _ => None,
        };
        let wanted = match &verdict.want {
            Want::Preview { head } => Some(head.clone()),
            _ => None,
        };
        previews.push(json!({
            "number": pull.number,
            "title": pull.title,
            "url": pull.url,
            "author": pull.author,
            "branch": pull.head_ref,
            "target_branch": pull.base_ref,
            "head": pull.head_sha,
            "open": pr.record.open,
            "draft": pull.draft,
            "fork": pull.fork,
            "labels": pull.labels,
            "approved_head": pr.record.approved_head,
            "confirmed": pr.record.confirmed,
            "environment": environment.as_ref().map(|e| &e.name),
            "made_by_reconciler": pr.record.claimed,
            "created_at": pr.record.claimed_at.or(environment.as_ref().map(|e| e.created_at)),
            "commit": commit,
            "wanted_commit": wanted,
            "queue_position": queue_position,
            "urls": urls,
            "sleeping": sleeping,
            "last_request_at": last_request_at,
            "last_deployment": last.map(|d| json!({ "id": d.id, "operation": d.operation, "status": d.status, "commit": d.source_commit, "reason": d.reason })),
            "decision": verdict.why,
            "outcome": pr.record.outcome,
        }));
    }
    Ok(Json(json!({
        "now": now,
        "forge": policy.as_ref().and_then(|p| p.forge.as_ref()).map(|f| json!({ "kind": f.kind, "repository": f.repository })),
        "max_live": policy.as_ref().and_then(|p| p.max_live),
        "previews": previews,
    })))
}

#[utoipa::path(
    post,
    operation_id = "previews_sync",
    path = "/v1/projects/{project}/previews/sync",
    tag = "previews",
    summary = "Ask the forge for the pull requests now",
    params(crate::openapi::params::ProjectPath),
    responses((status = 202, description = "Started", body = crate::openapi::answers::SyncStarted), crate::openapi::Refusals)
)]
pub(crate) async fn sync(
    State(state): State<SharedState>,
    Path(project): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let project = project_record(&state.store, &project).await?;
    let has_forge = preview_spec::parse_spec(&project.file, &project.source)
        .ok()
        .and_then(|s| s.previews?.forge)
        .is_some();
    if !has_forge {
        return Err(ApiError::BadRequest(format!(
            "project `{}` has no `previews.forge` in its spec, so there are no pull requests to sync",
            project.name
        )));
    }
    state.previews.sync(&project.name);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "sync": "started", "project": project.name })),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Approval {
    /// The head commit the maintainer reviewed, its whole id. Required, and whole: an approval of "whatever the head
    /// is now" would take a push that came after the review, and a short prefix can be matched by a forged commit.
    #[schema(pattern = "^\\s*[0-9a-fA-F]{40}([0-9a-fA-F]{24})?\\s*$")]
    commit: String,
}

#[utoipa::path(
    post,
    operation_id = "previews_approve",
    path = "/v1/projects/{project}/previews/{number}/approve",
    tag = "previews",
    summary = "Approve a fork pull request's head commit for a preview",
    params(crate::openapi::params::PullRequestPath),
    request_body = Approval,
    responses((status = 200, description = "Approved", body = crate::openapi::answers::Approved), crate::openapi::Refusals)
)]
pub(crate) async fn approve(
    State(state): State<SharedState>,
    Path((project, number)): Path<(String, String)>,
    Body(body): Body<Approval>,
) -> Result<Json<Value>, ApiError> {
    let project = project_record(&state.store, &project).await?;
    let number: i64 =
        number.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
            ApiError::BadRequest(format!("`{number}` is not a pull request number"))
        })?;
    let records = state.store.pull_requests(&project.name).await?;
    let record = records.iter().find(|r| r.number == number).ok_or_else(|| {
        ApiError::NotFound(format!(
            "project `{}` knows no pull request #{number}; `preview previews list` shows them, `preview previews sync` asks the forge",
            project.name
        ))
    })?;
    if !record.open {
        return Err(ApiError::Conflict(format!(
            "pull request #{number} is closed"
        )));
    }
    let given = body.commit.trim().to_ascii_lowercase();
    if !preview_forge::is_commit_id(&given) {
        return Err(ApiError::BadRequest(format!(
            "commit: `{}` is not a whole commit id (40 hexadecimal digits, or 64); pull request #{number} is at {}",
            body.commit, record.head
        )));
    }
    if record.head != given {
        return Err(ApiError::Conflict(format!(
            "pull request #{number} is at {} now, not {given}: review that commit and approve it (a push needs a new approval)",
            record.head
        )));
    }
    let commit = record.head.clone();
    if !state
        .store
        .approve_pull_request(&project.name, number, &commit)
        .await?
    {
        return Err(ApiError::NotFound(format!(
            "pull request #{number} is gone"
        )));
    }
    tracing::info!(
        "previews of `{}`: pull request #{number} approved at {commit}",
        project.name
    );
    state.previews.wake();
    Ok(Json(json!({ "number": number, "approved_head": commit })))
}
