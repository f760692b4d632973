//! The web dashboard, served at `/` on the API's address: one page and its script and style, built into the binary
//! (nothing is fetched at run time), and the session endpoints. The page reads and changes everything through the
//! REST API with the session cookie instead of the token (`api::authenticate` takes either), follows deployments,
//! environments and logs through server-sent events, and sends its CSRF token with every change.
//!
//! What a browser gets is bounded: a strict Content-Security-Policy (scripts and styles of this origin only, no
//! inline code, nothing framed), no secret value (a browser's session is refused the one route that answers one,
//! a database's login), and the page builds every element from text, never from HTML.

pub(crate) mod sessions;

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, SET_COOKIE};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use crate::api::{Body, SharedState};
use crate::error::ApiError;

const PAGE: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

/// What a dashboard response may load and do.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub(crate) fn router() -> Router<SharedState> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", PAGE) }),
        )
        .route(
            "/dashboard/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/dashboard/app.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/dashboard/session",
            get(session).post(sign_in).delete(sign_out),
        )
        .layer(axum::middleware::from_fn(guarded))
}

fn asset(content_type: &'static str, text: &'static str) -> Response {
    ([(CONTENT_TYPE, content_type)], text).into_response()
}

/// The headers of every dashboard response: its policy, no sniffing, no framing, no referrer, no caching of
/// anything signed in.
async fn guarded(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", POLICY),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cross-origin-opener-policy", "same-origin"),
    ] {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    /// The API token.
    token: String,
}

/// Exchanges the API token for a session cookie and a CSRF token.
async fn sign_in(
    State(state): State<SharedState>,
    Body(body): Body<SignIn>,
) -> Result<Response, ApiError> {
    if !crate::auth::token_matches(body.token.trim(), &state.token_hash) {
        return Err(ApiError::Unauthorized);
    }
    let (id, csrf) = state.sessions.open();
    let mut response = Json(json!({ "csrf": csrf })).into_response();
    response.headers_mut().insert(
        SET_COOKIE,
        HeaderValue::from_str(&sessions::set_cookie(Some(&id))).expect("plain ASCII"),
    );
    Ok(response)
}

/// The signed-in page's CSRF token (the page keeps it in memory only, so a reload asks again).
async fn session(State(state): State<SharedState>, request: Request) -> Result<Response, ApiError> {
    let signed = sessions::cookie_id(request.headers())
        .and_then(|id| state.sessions.find(&id))
        .ok_or(ApiError::Unauthorized)?;
    Ok(Json(json!({ "csrf": signed.csrf })).into_response())
}

/// Ends the session; a change like any other, so it needs the CSRF token.
async fn sign_out(
    State(state): State<SharedState>,
    request: Request,
) -> Result<Response, ApiError> {
    let id = sessions::cookie_id(request.headers()).ok_or(ApiError::Unauthorized)?;
    let signed = state.sessions.find(&id).ok_or(ApiError::Unauthorized)?;
    let sent = request
        .headers()
        .get(sessions::CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !sessions::same(sent, &signed.csrf) {
        return Err(ApiError::Forbidden(
            "signing out needs the page's CSRF token".to_owned(),
        ));
    }
    state.sessions.close(&id);
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        SET_COOKIE,
        HeaderValue::from_str(&sessions::set_cookie(None)).expect("plain ASCII"),
    );
    Ok(response)
}
