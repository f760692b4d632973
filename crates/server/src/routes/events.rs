//! Server-sent events for pages that follow something as it changes: a deployment (its record and steps), a
//! project's environments, a service's log. Each stream reads what the matching GET answers, every moment, and
//! sends it when it changed; a deployment's ends once the deployment has. A stream lasts an hour at most (a
//! browser's `EventSource` connects again).

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, KeepAliveStream, Sse};
use futures_util::Stream;
use serde_json::Value;

use crate::api::SharedState;
use crate::error::ApiError;
use crate::routes::{deployments, environments, runtime};

/// How often a stream looks again.
const EVERY: Duration = Duration::from_millis(300);
/// How long a stream lasts.
const AT_MOST: Duration = Duration::from_secs(3600);

/// What one look found: the event's data, and whether the stream ends after it.
type Look = Result<(Value, bool), ApiError>;

/// A stream of `name` events, each `look`'s answer when it differs from the last one sent; an error ends it with an
/// `error` event.
fn follow<F, Fut>(name: &'static str, look: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Look> + Send,
{
    let began = Instant::now();
    futures_util::stream::unfold(
        (look, None::<String>, false, true),
        move |(mut look, mut last, ended, first)| async move {
            if ended || began.elapsed() > AT_MOST {
                return None;
            }
            let mut first = first;
            loop {
                if !first {
                    tokio::time::sleep(EVERY).await;
                }
                first = false;
                match look().await {
                    Ok((data, end)) => {
                        let text = data.to_string();
                        if last.as_deref() != Some(text.as_str()) || end {
                            let event = Event::default().event(name).data(text.clone());
                            last = Some(text);
                            return Some((Ok(event), (look, last, end, false)));
                        }
                    }
                    Err(error) => {
                        let event = Event::default()
                            .event("error")
                            .data(serde_json::json!({ "message": error.to_string() }).to_string());
                        return Some((Ok(event), (look, last, true, false)));
                    }
                }
            }
        },
    )
}

fn sse<S>(stream: S) -> Sse<KeepAliveStream<S>>
where
    S: Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[utoipa::path(
    get,
    operation_id = "events_deployment",
    path = "/v1/deployments/{id}/events",
    tag = "deployments",
    summary = "The deployment as it changes: `deployment` events with what GET /v1/deployments/{id} answers, until it has ended",
    params(crate::openapi::params::DeploymentPath),
    responses(
        (status = 200, description = "A stream of server-sent events", content_type = "text/event-stream", body = String),
        crate::openapi::Refusals
    )
)]
pub(crate) async fn deployment(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Sse<KeepAliveStream<impl Stream<Item = Result<Event, Infallible>>>>, ApiError> {
    // A deployment that does not exist is a 404, not a stream.
    let _ = deployments::show(State(state.clone()), Path(id.clone())).await?;
    Ok(sse(follow("deployment", move || {
        let (state, id) = (state.clone(), id.clone());
        async move {
            let Json(shown) = deployments::show(State(state), Path(id)).await?;
            let status = shown["deployment"]["status"].as_str().unwrap_or_default();
            let ended = matches!(status, "committed" | "rolled_back" | "abandoned");
            Ok((shown, ended))
        }
    })))
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
        crate::openapi::Refusals
    )
)]
pub(crate) async fn environments(
    State(state): State<SharedState>,
    Path(project): Path<String>,
) -> Result<Sse<KeepAliveStream<impl Stream<Item = Result<Event, Infallible>>>>, ApiError> {
    let _ = environments::list(State(state.clone()), Path(project.clone())).await?;
    Ok(sse(follow("environments", move || {
        let (state, project) = (state.clone(), project.clone());
        async move {
            let Json(listed) = environments::list(State(state), Path(project)).await?;
            Ok((listed, false))
        }
    })))
}

#[utoipa::path(
    get,
    operation_id = "events_logs",
    path = "/v1/projects/{project}/environments/{environment}/services/{service}/logs/events",
    tag = "environments",
    summary = "A service's log as it grows: `log` events with each new chunk (`text`, `next`), from the start",
    params(crate::openapi::params::ServicePath),
    responses(
        (status = 200, description = "A stream of server-sent events", content_type = "text/event-stream", body = String),
        crate::openapi::Refusals
    )
)]
pub(crate) async fn logs(
    State(state): State<SharedState>,
    Path((project, environment, service)): Path<(String, String, String)>,
) -> Result<Sse<KeepAliveStream<impl Stream<Item = Result<Event, Infallible>>>>, ApiError> {
    let read = move |state: SharedState, from: u64| {
        let path = Path((project.clone(), environment.clone(), service.clone()));
        async move {
            runtime::logs(
                State(state),
                path,
                crate::api::Params(runtime::LogQuery { from }),
            )
            .await
        }
    };
    let _ = read(state.clone(), 0).await?;
    let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    Ok(sse(follow("log", move || {
        let (state, next, read) = (state.clone(), next.clone(), read.clone());
        async move {
            let from = next.load(std::sync::atomic::Ordering::Relaxed);
            let Json(chunk) = read(state, from).await?;
            if let Some(after) = chunk["next"].as_u64() {
                next.store(after, std::sync::atomic::Ordering::Relaxed);
            }
            // An empty chunk repeats the last one sent's `next` only: nothing new is sent.
            let data = if chunk["text"].as_str().is_some_and(|t| !t.is_empty()) {
                chunk
            } else {
                serde_json::json!({ "text": "", "next": from })
            };
            Ok((data, false))
        }
    })))
}
