//! The web dashboard, served at `/` on the API's address: one page and its script and style, built into the binary
//! (nothing is fetched at run time), and the session endpoints. The page reads and changes everything through the
//! REST API with the session cookie instead of the token (`api::authenticate` takes either), follows deployments,
//! environments and logs through server-sent events, and sends its CSRF token with every change.
//!
//! What a browser gets is bounded: a strict Content-Security-Policy on every answer (`api::protect`: scripts and
//! styles of this origin only, no inline code, nothing framed), no secret value (a browser's session is refused the
//! one route that answers one, a database's login, and logs show `[secret]`), and the page builds every element
//! from text, never from HTML. Signing in needs a loopback address or HTTPS (a `Secure` cookie is dropped by
//! browsers otherwise, and the token would cross the network in clear).

pub(crate) mod sessions;

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_TYPE, SET_COOKIE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use crate::api::{Body, SharedState};
use crate::error::ApiError;

const PAGE: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

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
}

fn asset(content_type: &'static str, text: &'static str) -> Response {
    ([(CONTENT_TYPE, content_type)], text).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    /// The API token.
    token: String,
}

/// Whether the page was reached in a way a `Secure` cookie survives: a loopback name or address, or HTTPS (as a
/// proxy in front says with `X-Forwarded-Proto`).
fn secure_enough(headers: &axum::http::HeaderMap) -> bool {
    let forwarded_https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|proto| proto.eq_ignore_ascii_case("https"));
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let loopback = name == "localhost"
        || name.ends_with(".localhost")
        || name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    forwarded_https || loopback
}

/// Exchanges the API token for a session cookie and a CSRF token; a session the browser already had ends.
async fn sign_in(
    State(state): State<SharedState>,
    headers: axum::http::HeaderMap,
    Body(body): Body<SignIn>,
) -> Result<Response, ApiError> {
    if !secure_enough(&headers) {
        return Err(ApiError::BadRequest(
            "the dashboard signs in over a loopback address (http://127.0.0.1:PORT/) or HTTPS only: browsers drop its Secure cookie on plain HTTP elsewhere, and the token would cross the network in clear; put the API behind an HTTPS proxy that sets X-Forwarded-Proto".to_owned(),
        ));
    }
    if !crate::auth::token_matches(body.token.trim(), &state.token_hash) {
        return Err(ApiError::Unauthorized);
    }
    if let Some(previous) = state.sessions.id_in(&headers) {
        state.sessions.close(&previous);
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
    let signed = state
        .sessions
        .find_in(request.headers())
        .ok_or(ApiError::Unauthorized)?;
    Ok(Json(json!({ "csrf": signed.csrf })).into_response())
}

/// Ends the session; a change like any other, so it needs the CSRF token.
async fn sign_out(
    State(state): State<SharedState>,
    request: Request,
) -> Result<Response, ApiError> {
    let id = state
        .sessions
        .id_in(request.headers())
        .ok_or(ApiError::Unauthorized)?;
    let signed = state.sessions.find(&id).ok_or(ApiError::Unauthorized)?;
    let sent = request
        .headers()
        .get(sessions::CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !crate::auth::constant_time_eq(sent, &signed.csrf) {
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
