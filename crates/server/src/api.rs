//! The router, its shared state, authentication, and the JSON body extractor with clear rejections.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use preview_deploy::Engine;
use preview_store::Store;
use serde_json::json;
use tracing::Instrument;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::routes::{
    clusters, deployments, environments, events, metrics, previews, projects, runtime, variables,
    webhooks,
};

/// Request bodies larger than this are refused: a spec is a few kilobytes.
pub(crate) const BODY_LIMIT: usize = 1024 * 1024;

pub(crate) struct AppState {
    pub store: Arc<Store>,
    pub engine: Arc<Engine>,
    pub vault: Arc<crate::vault::Vault>,
    pub token_hash: String,
    /// The runtime, for what it knows beyond resources (addresses, status, logs).
    pub runtime: Arc<dyn preview_deploy::Runtime>,
    /// The gateway, when the runtime serves routes.
    pub gateway: Option<Gateway>,
    /// The cluster, when environments live on Kubernetes: what `preview render` renders for.
    pub kubernetes: Option<Arc<preview_kubernetes::Clusters>>,
    /// The reconciler of pull requests and previews.
    pub previews: Arc<crate::previews::Previews>,
    /// The dashboard's signed-in browsers.
    pub sessions: crate::dashboard::sessions::Sessions,
    /// Set when the daemon stops: event streams end at once rather than hold the stop up.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// Event streams open at once, across every client.
    pub streams: Arc<tokio::sync::Semaphore>,
}

/// Where the gateway listens, the CA its certificates come from, and when requests last reached each environment.
pub(crate) struct Gateway {
    pub http: std::net::SocketAddr,
    pub https: std::net::SocketAddr,
    pub ca_pem: String,
    pub activity: Arc<preview_gateway::Activity>,
}

pub(crate) type SharedState = Arc<AppState>;

pub(crate) fn router(state: SharedState) -> Router {
    let (api, described) = OpenApiRouter::new()
        .routes(routes!(projects::list, projects::register))
        .routes(routes!(projects::show, projects::delete))
        .routes(routes!(environments::list, environments::create))
        .routes(routes!(environments::show, environments::delete))
        .routes(routes!(environments::plan))
        .routes(routes!(environments::manifests))
        .routes(routes!(environments::deploy))
        .routes(routes!(environments::clone))
        .routes(routes!(environments::cancel))
        .routes(routes!(environments::wake))
        .routes(routes!(events::deployment))
        .routes(routes!(events::environment_list))
        .routes(routes!(events::logs))
        .routes(routes!(deployments::list))
        .routes(routes!(variables::show))
        .routes(routes!(variables::list, variables::set))
        .routes(routes!(variables::unset))
        .routes(routes!(variables::list_secrets, variables::set_secret))
        .routes(routes!(variables::unset_secret))
        .routes(routes!(runtime::logs))
        .routes(routes!(runtime::databases))
        .routes(routes!(runtime::database_login))
        .routes(routes!(runtime::refresh_database))
        .routes(routes!(runtime::reset_database))
        .routes(routes!(runtime::database_snapshot))
        .routes(routes!(runtime::database_snapshots))
        .routes(routes!(webhooks::list))
        .routes(routes!(previews::list))
        .routes(routes!(previews::sync))
        .routes(routes!(previews::approve))
        .routes(routes!(runtime::gateway))
        .routes(routes!(runtime::ca))
        .routes(routes!(clusters::list, clusters::add))
        .routes(routes!(clusters::remove))
        .routes(routes!(clusters::check))
        .routes(routes!(variables::rotate_key))
        .routes(routes!(deployments::show))
        .routes(routes!(deployments::logs))
        .routes(routes!(deployments::cancel))
        .routes(routes!(deployments::abandon))
        // With the token here; without it only on an address of its own (`--metrics-listen`).
        .routes(routes!(metrics::scrape))
        .split_for_parts();
    let (public, public_described) = OpenApiRouter::new()
        .routes(routes!(health))
        // Forges authenticate by the delivery's signature, not the API token.
        .routes(routes!(webhooks::receive))
        .routes(routes!(openapi_document))
        .split_for_parts();
    let mut described = described;
    described.merge(public_described);
    let document = crate::openapi::document(described);
    let public = public.route_layer(axum::middleware::from_fn(check_path_names));
    let api = api.route_layer(axum::middleware::from_fn(check_path_names));
    // Outside the path check, so that its refusals are checked too.
    let (public, api) = match answer_check(&document) {
        Some(check) => {
            let layer = axum::middleware::from_fn(move |request, next| {
                crate::openapi::check::check_answer(Arc::clone(&check), request, next)
            });
            (public.route_layer(layer.clone()), api.route_layer(layer))
        }
        None => (public, api),
    };
    let document = bytes::Bytes::from(document);
    let api = api
        .fallback(|| async {
            ApiError::NotFound("no such API route; the routes start with /v1/".to_owned())
        })
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            authenticate,
        ));
    public
        .merge(crate::dashboard::router())
        .merge(api)
        .layer(axum::Extension(OpenApiDocument(document)))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(trace_request))
        .with_state(state)
}

/// The check of every answer against `document`, when `PREVIEW_CHECK_ANSWERS` names a file for its mismatches.
fn answer_check(document: &str) -> Option<Arc<crate::openapi::check::AnswerCheck>> {
    let file = crate::openapi::check::mismatch_file()?;
    match crate::openapi::check::AnswerCheck::open(document, &file) {
        Ok(check) => {
            tracing::warn!(
                "every answer is checked against the OpenAPI document (PREVIEW_CHECK_ANSWERS), each JSON body read \
                 whole first; mismatches go to {}",
                file.display()
            );
            Some(Arc::new(check))
        }
        Err(error) => {
            tracing::error!("cannot check answers: {}: {error}", file.display());
            None
        }
    }
}

/// The OpenAPI document, made once when the router is.
#[derive(Clone)]
struct OpenApiDocument(bytes::Bytes);

/// Whether the daemon answers.
#[utoipa::path(
    get,
    operation_id = "health",
    path = "/health",
    tag = "daemon",
    summary = "Whether the daemon answers",
    security(()),
    responses((status = 200, description = "It answers", body = crate::openapi::answers::Health))
)]
async fn health() -> Json<serde_json::Value> {
    Json(json!({ "ok": true }))
}

/// This document.
#[utoipa::path(
    get,
    operation_id = "openapi_document",
    path = "/api/openapi.json",
    tag = "daemon",
    summary = "The OpenAPI 3.1 document of this API",
    security(()),
    responses((status = 200, description = "The document", content_type = "application/json", body = Object))
)]
async fn openapi_document(
    axum::Extension(OpenApiDocument(document)): axum::Extension<OpenApiDocument>,
) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        document,
    )
        .into_response()
}

/// The header that names a request in the daemon's log: the client's own id when it sends a plain one (so a
/// request can be followed through a proxy), else one made here; the response carries it back.
pub(crate) const REQUEST_ID: &str = "x-request-id";

/// Runs each request in a span of its own (its id, method and path; never its query or body) and answers with
/// its id.
async fn trace_request(mut request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .map(str::to_owned);
    let id = given.unwrap_or_else(new_request_id);
    let value = axum::http::HeaderValue::from_str(&id).expect("the id is plain ASCII");
    request.headers_mut().insert(REQUEST_ID, value.clone());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path()
    );
    let began = std::time::Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::debug!(
            status = response.status().as_u16(),
            ms = began.elapsed().as_millis() as u64,
            "answered"
        )
    });
    response.headers_mut().insert(REQUEST_ID, value);
    protect(response.headers_mut());
    response
}

/// What every answer may be used for, the dashboard's page and the API's JSON alike: this origin's scripts and
/// styles only, nothing inline, nothing framed, read only as its Content-Type says, never cached, no referrer.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn protect(headers: &mut axum::http::HeaderMap) {
    use axum::http::{HeaderName, HeaderValue};
    for (name, value) in [
        ("content-security-policy", POLICY),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cache-control", "no-store"),
    ] {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
}

fn new_request_id() -> String {
    let mut bytes = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("the system's random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The router of `--metrics-listen`: `/metrics` alone, without the token (a scraper's address is for scrapers).
pub(crate) fn metrics_router(state: SharedState) -> Router {
    Router::new()
        .route("/metrics", get(metrics::scrape))
        .fallback(|| async { ApiError::NotFound("only /metrics is served here".to_owned()) })
        .layer(axum::middleware::from_fn(trace_request))
        .with_state(state)
}

/// Refuses a request whose path names something with a name no project, environment, service or deployment can
/// have — `..%2F` included — before any handler uses it.
async fn check_path_names(
    params: Result<axum::extract::RawPathParams, axum::extract::rejection::RawPathParamsRejection>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let params = params.map_err(|rejection| {
        ApiError::BadRequest(format!("the path: {}", rejection.body_text()))
    })?;
    for (key, value) in &params {
        let problem = match key {
            "id" => (value.is_empty()
                || value.len() > 64
                || !value
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
            .then(|| "a deployment id is lowercase letters and digits".to_owned()),
            "number" => {
                (value.is_empty() || value.len() > 18 || !value.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| "a pull request number is digits".to_owned())
            }
            _ => preview_spec::name_problem(value),
        };
        if let Some(problem) = problem {
            return Err(ApiError::BadRequest(format!(
                "the path's {key} {value:?} is not a valid name: it {problem}",
                problem = problem.trim_start_matches("is ")
            )));
        }
    }
    Ok(next.run(request).await)
}

/// The one route whose answer holds a secret value.
const DATABASE_LOGIN: &str =
    "/v1/projects/{project}/environments/{environment}/databases/{service}/login";

/// Lets through a request with the API token, or from a signed-in dashboard: with its session cookie, the CSRF
/// token on every change, and never to a route that answers a secret value.
async fn authenticate(
    State(state): State<SharedState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.strip_prefix("Bearer ").unwrap_or_default().to_owned());
    if let Some(token) = presented {
        return match crate::auth::token_matches(token.trim(), &state.token_hash) {
            true => Ok(next.run(request).await),
            false => Err(ApiError::Unauthorized),
        };
    }
    let signed = state
        .sessions
        .find_in(request.headers())
        .ok_or(ApiError::Unauthorized)?;
    let changes = !matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    if changes {
        let sent = request
            .headers()
            .get(crate::dashboard::sessions::CSRF_HEADER)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        if !crate::auth::constant_time_eq(sent, &signed.csrf) {
            return Err(ApiError::Forbidden(
                "a change from the dashboard needs the page's CSRF token (`X-CSRF-Token`); reload the page".to_owned(),
            ));
        }
    }
    // A database's login holds its password: for `preview db psql` with the token, never for a browser.
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|matched| matched.as_str().to_owned());
    if route.as_deref() == Some(DATABASE_LOGIN) {
        return Err(ApiError::Forbidden(
            "a database's login is not given to the dashboard; use `preview db psql`".to_owned(),
        ));
    }
    Ok(next.run(request).await)
}

/// A JSON body whose rejections (bad JSON, wrong fields, too large, wrong content type) are clear API errors.
pub(crate) struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(match rejection {
                JsonRejection::BytesRejection(_) if is_too_large(&rejection) => {
                    ApiError::TooLarge(format!(
                        "request body too large: the limit is {} KiB",
                        BODY_LIMIT / 1024
                    ))
                }
                JsonRejection::MissingJsonContentType(_) => ApiError::BadRequest(
                    "send the body as JSON with `Content-Type: application/json`".to_owned(),
                ),
                JsonRejection::JsonSyntaxError(e) => {
                    ApiError::BadRequest(format!("malformed JSON: {}", e.body_text()))
                }
                JsonRejection::JsonDataError(e) => {
                    ApiError::BadRequest(format!("unexpected JSON: {}", e.body_text()))
                }
                other => ApiError::BadRequest(other.body_text()),
            }),
        }
    }
}

/// Query parameters whose rejections (unknown parameters, values of the wrong type) are clear API errors.
pub(crate) struct Params<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S>
    for Params<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Params(value)),
            Err(rejection) => Err(ApiError::BadRequest(format!(
                "the query string: {}",
                rejection
                    .body_text()
                    .trim_start_matches("Failed to deserialize query string: ")
            ))),
        }
    }
}

fn is_too_large(rejection: &JsonRejection) -> bool {
    rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE
}
