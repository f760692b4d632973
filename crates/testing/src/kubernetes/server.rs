//! The HTTP side: the accept loop (each connection a task of its own, all ended with the loop), reading a request,
//! recording it, holding it for a test's delay, checking the bearer token, answering a test's injected failure,
//! then routing it to the handler of its verb and path and writing the answer — JSON, text, or a watch's stream.
//! Port forwarding upgrades the connection (see `forward`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::faults::{Recorded, WriteFault};
use super::request::{Request, parse_query};
use super::route::{Route, Target, route};
use super::state::{Shared, State};
use super::status::ApiError;
use super::watch::Watch;
use super::writes::PatchKind;
use super::{access, delete, discovery, forward, logs, reads, writes};

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// An answer, before it is written.
enum Reply {
    Json(u16, Value),
    Text(u16, String),
    Watch(Watch),
}

/// Serves connections from `listener` until the task running this is aborted, which ends every connection with it.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let address = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // Out of descriptors, most likely: let connections finish rather than spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let shared = shared.clone();
                let address = address.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request| {
                        handle(shared.clone(), address.clone(), request)
                    });
                    // A client going away mid-request is no concern of the server's.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn handle(
    shared: Arc<Shared>,
    address: String,
    request: hyper::Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if forward::is_portforward(&request) {
        return Ok(forward::upgrade(shared, request).await);
    }
    let (parts, body) = request.into_parts();
    // A body cut short is read as what arrived; the handler then refuses it as malformed.
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let header = |name: header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let request = Request {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parse_query(parts.uri.query()),
        content_type: header(header::CONTENT_TYPE),
        user_agent: header(header::USER_AGENT),
        body,
    };
    let authorization = header(header::AUTHORIZATION);
    let (delay, write_fault) = {
        let mut state = shared.lock();
        state.records.push(Recorded::of(&request));
        (
            state.faults.delay_for(&request),
            state.faults.count_write(&request),
        )
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let injected = || ApiError::injected(500, "InternalError", &request.method, &request.path);
    let reply = match write_fault {
        Some(WriteFault::HoldBefore) => std::future::pending().await,
        Some(WriteFault::FailBefore) => Err(injected()),
        _ => {
            let mut state = shared.lock();
            answer(&mut state, &request, authorization.as_deref(), &address)
        }
    };
    let reply = match write_fault {
        Some(WriteFault::HoldAfter) => std::future::pending().await,
        Some(WriteFault::FailAfter) => Err(injected()),
        _ => reply,
    };
    Ok(match reply {
        Ok(Reply::Json(code, value)) => full(code, "application/json", value.to_string()),
        Ok(Reply::Text(code, text)) => full(code, "text/plain", text),
        Ok(Reply::Watch(watch)) => {
            let events = super::watch::stream(shared, watch).map(|line| Ok(Frame::data(line)));
            with_status(
                200,
                "application/json",
                StreamBody::new(events).boxed_unsync(),
            )
        }
        Err(error) => full(error.code, "application/json", error.to_json().to_string()),
    })
}

pub(super) fn full(code: u16, content_type: &'static str, text: String) -> Response<Body> {
    with_status(
        code,
        content_type,
        Full::new(Bytes::from(text)).boxed_unsync(),
    )
}

fn with_status(code: u16, content_type: &'static str, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() =
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A request with the bearer token, unless a test injected a failure for it: the API server's first checks.
pub(super) fn admit(
    state: &mut State,
    request: &Request,
    authorization: Option<&str>,
) -> Result<(), ApiError> {
    let expected = format!("Bearer {}", state.token);
    if authorization != Some(expected.as_str()) {
        return Err(ApiError::unauthorized());
    }
    match state.faults.take_failure(request) {
        Some((code, reason)) => Err(ApiError::injected(
            code,
            &reason,
            &request.method,
            &request.path,
        )),
        None => Ok(()),
    }
}

fn answer(
    state: &mut State,
    request: &Request,
    authorization: Option<&str>,
    address: &str,
) -> Result<Reply, ApiError> {
    admit(state, request, authorization)?;
    let json = |value: Value| Ok(Reply::Json(200, value));
    match route(&state.catalog, &request.path) {
        Route::Version => json(discovery::version()),
        Route::Health => Ok(Reply::Text(200, "ok".to_owned())),
        Route::CoreVersions => json(discovery::core_versions(address)),
        Route::Groups => json(discovery::groups(&state.catalog)),
        Route::Resources { group, version } => {
            json(discovery::resources(&state.catalog, &group, &version)?)
        }
        Route::AccessReview => {
            let (code, value) = access::review(state, request)?;
            Ok(Reply::Json(code, value))
        }
        Route::NotFound => Err(ApiError::no_such_resource()),
        Route::Resource(target) => resource(state, &target, request),
    }
}

fn resource(state: &mut State, target: &Target, request: &Request) -> Result<Reply, ApiError> {
    let subresource = target.subresource.as_deref();
    let is_pods = target.resource.plural == "pods";
    match subresource {
        None | Some("status") => {}
        Some("log") if is_pods => {
            return if request.method == "GET" && target.name.is_some() {
                Ok(Reply::Text(200, logs::pod_log(state, target, request)?))
            } else {
                Err(ApiError::method_not_allowed())
            };
        }
        Some(_) => return Err(ApiError::no_such_resource()),
    }
    let replied = |(code, value): (u16, Value)| Reply::Json(code, value);
    let writable =
        target.name.is_some() || !target.resource.namespaced || target.namespace.is_some();
    let dry_run = request.dry_run()?;
    match (request.method.as_str(), target.name.is_some()) {
        ("GET", _) if request.flag("watch")? => Ok(Reply::Watch(Watch::parse(target, request)?)),
        ("GET", true) => Ok(Reply::Json(200, reads::get(state, target)?)),
        ("GET", false) => Ok(Reply::Json(200, reads::list(state, target, request)?)),
        ("POST", false) if writable && subresource.is_none() => {
            let manager = request.manager();
            writes::create(state, target, request.object()?, &manager, dry_run).map(replied)
        }
        ("DELETE", false) if writable && subresource.is_none() => {
            delete::delete_collection(state, target, request).map(replied)
        }
        ("PUT", true) => {
            let manager = request.manager();
            writes::replace(state, target, request.object()?, &manager, dry_run).map(replied)
        }
        ("PATCH", true) => {
            let kind = patch_kind(request)?;
            let manager = match kind {
                PatchKind::Apply { .. } => request
                    .param("fieldManager")
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        ApiError::bad_request("fieldManager is required for apply requests")
                    })?,
                PatchKind::Merge => request.manager(),
            };
            writes::patch(state, target, request.object()?, kind, &manager, dry_run).map(replied)
        }
        ("DELETE", true) if subresource.is_none() => {
            delete::delete(state, target, request).map(replied)
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn patch_kind(request: &Request) -> Result<PatchKind, ApiError> {
    let force = request.flag("force")?;
    match request.media_type() {
        "application/apply-patch+yaml" => Ok(PatchKind::Apply { force }),
        "application/merge-patch+json" | "application/strategic-merge-patch+json" if force => {
            Err(ApiError::bad_request(
                "force may only be set for apply patches (application/apply-patch+yaml)",
            ))
        }
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            Ok(PatchKind::Merge)
        }
        other => Err(ApiError::unsupported_media_type(other)),
    }
}
