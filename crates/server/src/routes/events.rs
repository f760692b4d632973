//! Server-sent events for pages that follow something as it changes: a deployment (its record, steps and journal),
//! a project's environments, a service's log. Each stream reads what the matching GET answers every moment and sends
//! it when it changed; a deployment's ends once the deployment has. A stream lasts an hour at most (a browser's
//! `EventSource` connects again; a log's picks up where it was, by `Last-Event-ID`), ends when the daemon stops,
//! and at most [`AT_ONCE`] are open at once.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, KeepAliveStream, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde_json::{Value, json};

use crate::api::{Params, SharedState};
use crate::error::ApiError;
use crate::routes::{deployments, environments, runtime};

/// How often a stream looks again.
const POLL_EVERY: Duration = Duration::from_millis(300);
/// How long a stream lasts.
const LASTS: Duration = Duration::from_secs(3600);
/// Streams open at once, across every client: each reads the store every moment.
pub(crate) const AT_ONCE: usize = 64;

/// What one look found: the event's data, its id (for a stream that picks up where it was), and whether the stream
/// ends after it.
struct Found {
    data: Value,
    id: Option<String>,
    last: bool,
}

/// A stream of `name` events, each `look`'s answer when it differs from the last one sent; an error ends it with a
/// `failure` event. It holds `permit` (its place among the streams open at once) while it runs.
fn follow<F, Fut>(
    stopping: tokio::sync::watch::Receiver<bool>,
    permit: tokio::sync::OwnedSemaphorePermit,
    name: &'static str,
    look: F,
) -> Sse<KeepAliveStream<impl Stream<Item = Result<Event, Infallible>>>>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<Found, ApiError>> + Send,
{
    let until = Instant::now() + LASTS;
    let stream = futures_util::stream::unfold(
        (look, None::<String>, false, true, stopping, permit),
        move |(mut look, mut last, ended, mut first, mut stopping, permit)| async move {
            if ended {
                return None;
            }
            loop {
                if *stopping.borrow() || Instant::now() >= until {
                    return None;
                }
                if !first {
                    tokio::select! {
                        () = tokio::time::sleep(POLL_EVERY) => {}
                        _ = stopping.changed() => return None,
                    }
                }
                first = false;
                match look().await {
                    Ok(found) => {
                        let text = found.data.to_string();
                        if last.as_deref() != Some(text.as_str()) || found.last {
                            let mut event = Event::default().event(name).data(text.clone());
                            if let Some(id) = found.id {
                                event = event.id(id);
                            }
                            last = Some(text);
                            return Some((
                                Ok(event),
                                (look, last, found.last, false, stopping, permit),
                            ));
                        }
                    }
                    Err(error) => {
                        let event = Event::default()
                            .event("failure")
                            .data(json!({ "message": error.public_message() }).to_string());
                        return Some((Ok(event), (look, last, true, false, stopping, permit)));
                    }
                }
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// A place among the streams open at once.
fn place(state: &SharedState) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    std::sync::Arc::clone(&state.streams)
        .try_acquire_owned()
        .map_err(|_| {
            ApiError::TooMany(format!(
                "{AT_ONCE} event streams are open already; close some dashboard pages and try again"
            ))
        })
}

fn finished(shown: &Value) -> bool {
    shown["deployment"]["status"]
        .as_str()
        .and_then(preview_store::DeploymentStatus::parse)
        .is_some_and(preview_store::DeploymentStatus::is_finished)
}

#[utoipa::path(
    get,
    operation_id = "events_deployment",
    path = "/v1/deployments/{id}/events",
    tag = "deployments",
    summary = "The deployment as it changes: `deployment` events with what GET /v1/deployments/{id} answers and its journal (`entries`), until it has ended",
    params(crate::openapi::params::DeploymentPath),
    responses(
        (status = 200, description = "A stream of server-sent events", content_type = "text/event-stream", body = String),
        (status = 204, description = "The deployment has ended: nothing more to follow"),
        (status = 429, description = "Too many event streams are open", body = crate::openapi::answers::ErrorBody),
        crate::openapi::Refusals
    )
)]
pub(crate) async fn deployment(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    // A deployment that does not exist is a 404; one that has ended has nothing more to send (and a browser's
    // `EventSource` does not connect again after a 204).
    let Json(shown) = deployments::show(State(state.clone()), Path(id.clone())).await?;
    if finished(&shown) {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let permit = place(&state)?;
    let looked = state.clone();
    Ok(
        follow(state.stopping.clone(), permit, "deployment", move || {
            let (state, id) = (looked.clone(), id.clone());
            async move {
                let Json(mut shown) =
                    deployments::show(State(state.clone()), Path(id.clone())).await?;
                let Json(journal) = deployments::logs(State(state), Path(id)).await?;
                let last = finished(&shown);
                shown["entries"] = journal["entries"].clone();
                Ok(Found {
                    data: shown,
                    id: None,
                    last,
                })
            }
        })
        .into_response(),
    )
}

#[utoipa::path(
    get,
    operation_id = "events_environments",
    path = "/v1/projects/{project}/events",
    tag = "environments",
    summary = "The project's environments as they change: `environments` events with what GET …/environments answers",
    params(crate::openapi::params::ProjectPath),
    responses(
        (status = 200, description = "A stream of server-sent events", content_type = "text/event-stream", body = String),
        (status = 429, description = "Too many event streams are open", body = crate::openapi::answers::ErrorBody),
        crate::openapi::Refusals
    )
)]
pub(crate) async fn environment_list(
    State(state): State<SharedState>,
    Path(project): Path<String>,
) -> Result<Response, ApiError> {
    let _ = environments::list(State(state.clone()), Path(project.clone())).await?;
    let permit = place(&state)?;
    let looked = state.clone();
    Ok(
        follow(state.stopping.clone(), permit, "environments", move || {
            let (state, project) = (looked.clone(), project.clone());
            async move {
                let Json(listed) = environments::list(State(state), Path(project)).await?;
                Ok(Found {
                    data: listed,
                    id: None,
                    last: false,
                })
            }
        })
        .into_response(),
    )
}

#[utoipa::path(
    get,
    operation_id = "events_logs",
    path = "/v1/projects/{project}/environments/{environment}/services/{service}/logs/events",
    tag = "environments",
    summary = "A service's log as it grows: `log` events with each new chunk (`text`, `next`), from the start or from the `Last-Event-ID` a reconnecting client sends",
    params(crate::openapi::params::ServicePath),
    responses(
        (status = 200, description = "A stream of server-sent events", content_type = "text/event-stream", body = String),
        (status = 429, description = "Too many event streams are open", body = crate::openapi::answers::ErrorBody),
        crate::openapi::Refusals
    )
)]
pub(crate) async fn logs(
    State(state): State<SharedState>,
    Path((project, environment, service)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let read = move |state: SharedState, from: u64| {
        let path = Path((project.clone(), environment.clone(), service.clone()));
        async move { runtime::logs(State(state), path, Params(runtime::LogQuery { from })).await }
    };
    let resumed = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let _ = read(state.clone(), resumed).await?;
    let permit = place(&state)?;
    let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(resumed));
    let looked = state.clone();
    Ok(follow(state.stopping.clone(), permit, "log", move || {
        let (state, next, read) = (looked.clone(), next.clone(), read.clone());
        async move {
            let from = next.load(std::sync::atomic::Ordering::Relaxed);
            let Json(chunk) = read(state, from).await?;
            let after = chunk["next"].as_u64().unwrap_or(from);
            next.store(after, std::sync::atomic::Ordering::Relaxed);
            // An empty chunk repeats the last one's `next` only: nothing new is sent.
            let data = if chunk["text"].as_str().is_some_and(|t| !t.is_empty()) {
                chunk
            } else {
                json!({ "text": "", "next": from })
            };
            Ok(Found {
                data,
                id: Some(after.to_string()),
                last: false,
            })
        }
    })
    .into_response())
}
