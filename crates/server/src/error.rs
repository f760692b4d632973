//! API errors: the client gets a status and a safe message as JSON; details go to the daemon's log only.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use preview_deploy::EngineError;
use preview_store::StoreError;
use serde_json::json;

#[derive(Debug)]
pub enum ApiError {
    BadRequest(String),
    Unauthorized,
    /// Signed in, but not allowed: a change without its CSRF token, or a secret asked for from a browser.
    Forbidden(String),
    NotFound(String),
    Conflict(String),
    TooLarge(String),
    /// Too many of something at once (event streams): try again later.
    TooMany(String),
    /// The detail is logged, never sent.
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong token: send `Authorization: Bearer <token>` with the token from the client config file the daemon wrote".to_owned(),
            ),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m),
            ApiError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", m),
            ApiError::TooMany(m) => (StatusCode::TOO_MANY_REQUESTS, "too_many", m),
            ApiError::Internal(detail) => {
                tracing::error!("internal error: {detail}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; the daemon's log has the details".to_owned(),
                )
            }
        };
        (
            status,
            Json(json!({ "error": { "code": code, "message": message } })),
        )
            .into_response()
    }
}

impl std::fmt::Display for ApiError {
    /// The message as the daemon itself reports it (its own log, a pull request's outcome).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::BadRequest(m)
            | ApiError::Forbidden(m)
            | ApiError::NotFound(m)
            | ApiError::Conflict(m)
            | ApiError::TooLarge(m)
            | ApiError::TooMany(m)
            | ApiError::Internal(m) => f.write_str(m),
            ApiError::Unauthorized => f.write_str("unauthorized"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        ApiError::Internal(error.to_string())
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        match error {
            conflict @ (EngineError::Busy { .. }
            | EngineError::Exists { .. }
            | EngineError::Owned { .. }
            | EngineError::Conflict(_)) => ApiError::Conflict(conflict.to_string()),
            missing @ (EngineError::Missing { .. } | EngineError::NotFound(_)) => {
                ApiError::NotFound(missing.to_string())
            }
            EngineError::Store(error) => error.into(),
        }
    }
}

impl ApiError {
    /// What a client may be told: an internal error's detail is logged and replaced.
    pub(crate) fn public_message(&self) -> String {
        match self {
            ApiError::Internal(detail) => {
                tracing::error!("internal error: {detail}");
                "internal error; the daemon's log has the details".to_owned()
            }
            other => other.to_string(),
        }
    }
}
