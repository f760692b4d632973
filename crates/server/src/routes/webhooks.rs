//! The webhook receiver, `POST /webhooks/<project>`: the one route a forge reaches without the API token. A
//! delivery is authenticated over its raw body with the project's `webhook_secret` before anything of it is read,
//! stored once by its forge's delivery id, and answered at once: an authenticated event `preview` does not act on is
//! acknowledged (2xx) all the same, since forges give up on, or disable, a hook that keeps failing. A refusal is
//! logged and recorded without the body. Pull requests are acted on from what is stored.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use preview_deploy::{EnvironmentAddress, SecretSource};
use preview_forge::{Event, Forge, Headers, authenticate, read_event};
use preview_store::DeliveryRecord;
use serde_json::{Value, json};

use crate::api::{BODY_LIMIT, SharedState};
use crate::error::ApiError;

/// A request's headers, as the forge crate reads them.
struct HttpHeaders<'a>(&'a HeaderMap);

impl Headers for HttpHeaders<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.to_str().ok())
    }
}

pub(crate) async fn receive(
    State(state): State<SharedState>,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|rejection| match rejection {
        BytesRejection::FailedToBufferBody(_) => ApiError::TooLarge(format!(
            "a webhook delivery holds at most {} KiB",
            BODY_LIMIT / 1024
        )),
        other => ApiError::BadRequest(other.body_text()),
    })?;
    // One answer for every project that takes no webhooks, whether or not it exists.
    let not_here = || ApiError::NotFound(format!("no webhooks are received for `{project}`"));
    if preview_spec::name_problem(&project).is_some() {
        return Err(not_here());
    }
    let record = state.store.project(&project).await?.ok_or_else(not_here)?;
    let spec = preview_spec::parse_spec(&record.file, &record.source).map_err(|_| not_here())?;
    let forge_spec = spec
        .previews
        .as_ref()
        .and_then(|p| p.forge.as_ref())
        .ok_or_else(not_here)?;
    let forge = serde_json::to_value(forge_spec.kind)
        .ok()
        .and_then(|kind| kind.as_str().and_then(Forge::parse))
        .ok_or_else(not_here)?;
    let received_at = state.store.now().await?;
    let refuse = |detail: String| DeliveryRecord {
        project: project.clone(),
        // A refused delivery's id cannot be trusted: it is the receiver's own.
        delivery: format!("refused-{received_at}-{}", short_random()),
        forge: forge.name().to_owned(),
        event: String::new(),
        action: None,
        pull_request: None,
        head: None,
        verdict: "refused".to_owned(),
        detail,
        event_json: None,
        received_at,
    };
    let secret = match webhook_secret(&state, &project, forge_spec.webhook_secret.as_deref()).await
    {
        Ok(secret) => secret,
        Err(detail) => {
            eprintln!("preview daemon: webhook for `{project}` refused: {detail}");
            state.store.record_delivery(&refuse(detail.clone())).await?;
            return Ok(refused(StatusCode::SERVICE_UNAVAILABLE, &detail));
        }
    };
    let authenticated = match authenticate(forge, &HttpHeaders(&headers), &body, &secret) {
        Ok(authenticated) => authenticated,
        Err(refusal) => {
            let detail = refusal.to_string();
            eprintln!("preview daemon: webhook for `{project}` refused: {detail}");
            state.store.record_delivery(&refuse(detail.clone())).await?;
            return Ok(refused(StatusCode::UNAUTHORIZED, &detail));
        }
    };
    let mut delivery = DeliveryRecord {
        project: project.clone(),
        delivery: authenticated.delivery.clone(),
        forge: forge.name().to_owned(),
        event: authenticated.event.clone(),
        action: None,
        pull_request: None,
        head: None,
        verdict: "ignored".to_owned(),
        detail: String::new(),
        event_json: None,
        received_at,
    };
    match read_event(forge, &authenticated.event, &body) {
        Ok(Event::Ping) => delivery.detail = "the forge checking the hook".to_owned(),
        Ok(Event::Ignored { event }) => {
            delivery.detail = format!("`{event}` events are not acted on")
        }
        Ok(Event::PullRequest(pull_request)) => {
            let action = serde_json::to_value(&pull_request.action)
                .ok()
                .map(|a| match a {
                    Value::String(name) => name,
                    other => other["other"].as_str().unwrap_or("other").to_owned(),
                })
                .unwrap_or_default();
            delivery.verdict = "accepted".to_owned();
            delivery.detail = format!(
                "pull request #{} {action} at {}",
                pull_request.number,
                &pull_request.head_sha[..pull_request.head_sha.len().min(12)]
            );
            delivery.action = Some(action);
            delivery.pull_request = i64::try_from(pull_request.number).ok();
            delivery.head = Some(pull_request.head_sha.clone());
            delivery.event_json = serde_json::to_string(&pull_request).ok();
        }
        // Signed by the forge but not what its event says: acknowledged, so that the hook is not disabled.
        Err(problem) => delivery.detail = format!("unreadable: {problem}"),
    }
    if !state.store.record_delivery(&delivery).await? {
        return Ok((
            StatusCode::OK,
            Json(json!({ "verdict": "duplicate", "delivery": delivery.delivery })),
        )
            .into_response());
    }
    let status = if delivery.verdict == "accepted" {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({ "verdict": delivery.verdict, "delivery": delivery.delivery, "detail": delivery.detail })),
    )
        .into_response())
}

/// The value of the project secret the spec names as `webhook_secret`.
async fn webhook_secret(
    state: &SharedState,
    project: &str,
    name: Option<&str>,
) -> Result<preview_secrets::Secret, String> {
    let Some(name) = name else {
        return Err(
            "the spec's `previews.forge` names no `webhook_secret`, so no delivery can be verified"
                .to_owned(),
        );
    };
    let key = format!("project/{name}");
    let versions = state.vault.versions(project).await?;
    let Some(version) = versions.get(&key) else {
        return Err(format!(
            "the webhook secret `{name}` has no value; set it with `preview secret set {name} --scope project`"
        ));
    };
    let address = EnvironmentAddress {
        project: project.to_owned(),
        environment: String::new(),
    };
    state
        .vault
        .reveal(&address, &key, version)
        .await
        .map_err(|e| e.to_string())
}

fn refused(status: StatusCode, detail: &str) -> Response {
    (
        status,
        Json(json!({ "error": { "code": "refused", "message": detail } })),
    )
        .into_response()
}

fn short_random() -> String {
    let mut bytes = [0u8; 4];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    preview_secrets::hex::encode(&bytes)
}

/// The project's latest deliveries with their verdicts, newest first (`preview webhooks list`).
pub(crate) async fn list(
    State(state): State<SharedState>,
    Path(project): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let project = crate::routes::project_record(&state.store, &project).await?;
    let deliveries = state.store.deliveries(&project.name, 100).await?;
    let url = format!("/webhooks/{}", project.name);
    Ok(Json(json!({
        "url": url,
        "deliveries": deliveries.iter().map(|d| json!({
            "delivery": d.delivery,
            "forge": d.forge,
            "event": d.event,
            "action": d.action,
            "pull_request": d.pull_request,
            "head": d.head,
            "verdict": d.verdict,
            "detail": d.detail,
            "received_at": d.received_at,
        })).collect::<Vec<_>>(),
    })))
}
