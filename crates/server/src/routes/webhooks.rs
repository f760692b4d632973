//! The webhook receiver, `POST /webhooks/<project>`: the one route a forge reaches without the API token. A
//! delivery is authenticated over its raw body with the project's `webhook_secret` before anything of it is read,
//! stored once by its forge's delivery id, and answered at once: an authenticated event `preview` does not act on is
//! acknowledged (2xx) all the same, since forges give up on, or disable, a hook that keeps failing. A refusal is
//! logged and recorded without the body, at most once a second per project. A request without any signature header
//! is refused before anything is looked up, and a body must arrive within seconds. Pull requests are acted on from
//! what is stored.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use preview_forge::{Event, Forge, Headers, SIGNATURE_HEADERS, authenticate, read_event};
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

/// How long a delivery's body may take to arrive: forges send it at once (and give up after 5–10 s).
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[utoipa::path(
    post,
    operation_id = "webhooks_receive",
    path = "/webhooks/{project}",
    tag = "previews",
    summary = "A forge's webhook delivery (GitHub, GitLab, Gitea, Forgejo), authenticated by its signature or token",
    security(()),
    params(crate::openapi::params::ProjectPath),
    request_body(content = Object, description = "The forge's event, as it sends it", content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted: a pull-request event for the reconciler", body = crate::openapi::answers::Delivered),
        (status = 200, description = "Acknowledged: ignored, or a duplicate", body = crate::openapi::answers::Delivered),
        (status = 400, description = "A body that did not arrive in time", body = crate::openapi::answers::ErrorBody),
        (status = 401, description = "Not signed, or signed with another secret", body = crate::openapi::answers::ErrorBody),
        (status = 404, description = "The project takes no webhooks", body = crate::openapi::answers::ErrorBody),
        (status = 413, description = "A body over the limit", body = crate::openapi::answers::ErrorBody),
        (status = 503, description = "The project's webhook secret has no value yet", body = crate::openapi::answers::ErrorBody),
        (status = 500, description = "A failure of the daemon's own (its store, say); its log has the details", body = crate::openapi::answers::ErrorBody)
    )
)]
pub(crate) async fn receive(
    State(state): State<SharedState>,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    // One answer for every project that takes no webhooks, whether or not it exists.
    let not_here = || ApiError::NotFound(format!("no webhooks are received for `{project}`"));
    if preview_spec::name_problem(&project).is_some() {
        return Err(not_here());
    }
    // Nothing is looked up for a request that cannot be a forge's: it carries no signature header at all.
    if !SIGNATURE_HEADERS
        .iter()
        .any(|name| headers.contains_key(*name))
    {
        let detail = "no signature or token header: the delivery is not signed".to_owned();
        note_refusal(&state, &project, None, &detail).await?;
        return Ok(refused(StatusCode::UNAUTHORIZED, &detail));
    }
    let too_large = || {
        ApiError::TooLarge(format!(
            "a webhook delivery holds at most {} KiB",
            BODY_LIMIT / 1024
        ))
    };
    if headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|length| length > BODY_LIMIT)
    {
        return Err(too_large());
    }
    let body =
        match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, BODY_LIMIT)).await {
            Ok(Ok(body)) => body,
            Ok(Err(_)) => return Err(too_large()),
            Err(_) => {
                return Err(ApiError::BadRequest(format!(
                    "the delivery's body did not arrive within {} s",
                    BODY_TIMEOUT.as_secs()
                )));
            }
        };
    let record = state.store.project(&project).await?.ok_or_else(not_here)?;
    let spec = preview_spec::parse_spec(&record.file, &record.source).map_err(|_| not_here())?;
    let forge_spec = spec
        .previews
        .as_ref()
        .and_then(|p| p.forge.as_ref())
        .ok_or_else(not_here)?;
    // Branches of a local repository send no webhooks.
    let forge = crate::previews::observe::remote(forge_spec.kind).ok_or_else(not_here)?;
    let secrets =
        match webhook_secrets(&state, &project, forge_spec.webhook_secret.as_deref()).await {
            Ok(secrets) => secrets,
            Err(detail) => {
                // The details are the operator's (the listing, the log); the caller learns only that it is refused.
                note_refusal(&state, &project, Some(forge), &detail).await?;
                return Ok(refused(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "this project's webhook is not set up to verify deliveries yet",
                ));
            }
        };
    // The current secret, else one it had moments ago; the refusal is the current one's.
    let mut tried = secrets
        .iter()
        .map(|secret| authenticate(forge, &HttpHeaders(&headers), &body, secret));
    let first = tried
        .next()
        .unwrap_or(Err(preview_forge::Refusal::Unsigned("signature")));
    let authenticated = match first.or_else(|refusal| tried.find_map(Result::ok).ok_or(refusal)) {
        Ok(authenticated) => authenticated,
        Err(refusal) => {
            let detail = refusal.to_string();
            note_refusal(&state, &project, Some(forge), &detail).await?;
            return Ok(refused(StatusCode::UNAUTHORIZED, &detail));
        }
    };
    let digest =
        preview_secrets::hex::encode(ring::digest::digest(&ring::digest::SHA256, &body).as_ref());
    let mut delivery = DeliveryRecord {
        project: project.clone(),
        // A forge that names no delivery: the body names it (a redelivery is the same body).
        delivery: authenticated
            .delivery
            .clone()
            .unwrap_or_else(|| format!("body-{}", &digest[..32])),
        forge: forge.name().to_owned(),
        event: authenticated.event.clone(),
        action: None,
        pull_request: None,
        head: None,
        verdict: "ignored".to_owned(),
        detail: String::new(),
        event_json: None,
        body_digest: Some(digest),
        received_at: state.store.now().await?,
    };
    let mut observation = None;
    match read_event(forge, &authenticated.event, &body) {
        Ok(Event::Ping) => delivery.detail = "the forge checking the hook".to_owned(),
        Ok(Event::Ignored { event }) => {
            delivery.detail = format!("`{event}` events are not acted on")
        }
        Ok(Event::PullRequest(pull_request))
            if !pull_request
                .repository
                .eq_ignore_ascii_case(&forge_spec.repository) =>
        {
            // A hook shared by several repositories: another repository's pull request #7 is not this one's.
            delivery.detail = format!(
                "a pull request of `{}`, not of `{}`",
                pull_request.repository, forge_spec.repository
            );
        }
        Ok(Event::PullRequest(pull_request)) => {
            let action = pull_request.action.name().to_owned();
            delivery.verdict = "accepted".to_owned();
            delivery.detail = format!(
                "pull request #{} {action} at {}",
                pull_request.number,
                pull_request.head_sha.chars().take(12).collect::<String>()
            );
            delivery.action = Some(action);
            delivery.pull_request = i64::try_from(pull_request.number).ok();
            delivery.head = Some(pull_request.head_sha.clone());
            delivery.event_json = serde_json::to_string(&pull_request).ok();
            // A hint until the forge's API confirms it.
            observation = Some(crate::previews::observe::observation(
                &pull_request.state(),
                false,
            ));
        }
        // Signed by the forge but not what its event says: acknowledged, so that the hook is not disabled.
        Err(problem) => delivery.detail = format!("unreadable: {problem}"),
    }
    let recorded = state
        .store
        .record_delivery(&delivery, observation.as_ref())
        .await?;
    count_delivery(
        &delivery.forge,
        match delivery.verdict.as_str() {
            _ if !recorded => "duplicate",
            "accepted" => "accepted",
            _ => "ignored",
        },
    );
    if !recorded {
        return Ok((
            StatusCode::OK,
            Json(json!({
                "verdict": "duplicate",
                "delivery": delivery.delivery,
                "detail": "received before; applied once",
            })),
        )
            .into_response());
    }
    let status = if delivery.verdict == "accepted" {
        state.previews.wake();
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

/// Counts a delivery by forge and verdict (`accepted`, `ignored`, `duplicate`, `refused`): every one, also those
/// whose record the once-a-second limit leaves out.
fn count_delivery(forge: &str, verdict: &'static str) {
    preview_metrics::metrics()
        .webhook_deliveries
        .get_or_create(&preview_metrics::WebhookLabels {
            forge: forge.to_owned(),
            verdict,
        })
        .inc();
}

/// When a project's refusals were last recorded, and how many were left out since: anyone can send refused
/// deliveries, so at most one a second per project reaches the log and the store.
static REFUSALS: std::sync::Mutex<Option<std::collections::HashMap<String, (i64, u64)>>> =
    std::sync::Mutex::new(None);

/// Logs and records a refusal, at most once a second per project, saying how many were left out since.
async fn note_refusal(
    state: &SharedState,
    project: &str,
    forge: Option<Forge>,
    detail: &str,
) -> Result<(), ApiError> {
    count_delivery(forge.map(Forge::name).unwrap_or("unknown"), "refused");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default();
    let left_out = {
        let mut refusals = match REFUSALS.lock() {
            Ok(refusals) => refusals,
            Err(poisoned) => poisoned.into_inner(),
        };
        let refusals = refusals.get_or_insert_with(Default::default);
        if refusals.len() > 10_000 {
            refusals.clear();
        }
        let entry = refusals.entry(project.to_owned()).or_insert((0, 0));
        if now - entry.0 < 1000 {
            entry.1 += 1;
            return Ok(());
        }
        let left_out = entry.1;
        *entry = (now, 0);
        left_out
    };
    let detail = if left_out > 0 {
        format!("{detail} (and {left_out} more refused since the last one recorded)")
    } else {
        detail.to_owned()
    };
    tracing::info!("webhook for `{project}` refused: {detail}");
    // Only a project that exists keeps a record of refusals.
    if state.store.project(project).await?.is_none() {
        return Ok(());
    }
    let received_at = state.store.now().await?;
    state
        .store
        .record_delivery(
            &DeliveryRecord {
                project: project.to_owned(),
                // A refused delivery's id cannot be trusted: it is the receiver's own.
                delivery: format!("refused-{received_at}-{}", short_random()),
                forge: forge.map(Forge::name).unwrap_or_default().to_owned(),
                event: String::new(),
                action: None,
                pull_request: None,
                head: None,
                verdict: "refused".to_owned(),
                detail,
                event_json: None,
                body_digest: None,
                received_at,
            },
            None,
        )
        .await?;
    Ok(())
}

/// The values of the project secret the spec names as `webhook_secret`: the current one first, then those it had
/// within the grace period (a delivery signed just before the secret changed).
async fn webhook_secrets(
    state: &SharedState,
    project: &str,
    name: Option<&str>,
) -> Result<Vec<preview_secrets::Secret>, String> {
    let Some(name) = name else {
        return Err(
            "the spec's `previews.forge` names no `webhook_secret`, so no delivery can be verified"
                .to_owned(),
        );
    };
    let values = state.vault.recent_values(project, name).await?;
    if values.is_empty() {
        return Err(format!(
            "the webhook secret `{name}` has no value; set it with `preview secret set {name} --scope project`"
        ));
    }
    Ok(values)
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

#[utoipa::path(
    get,
    operation_id = "webhooks_list",
    path = "/v1/projects/{project}/webhooks",
    tag = "previews",
    summary = "The project's latest webhook deliveries with their verdicts",
    params(crate::openapi::params::ProjectPath),
    responses((status = 200, description = "Up to 100 deliveries, newest first", body = crate::openapi::answers::Deliveries), crate::openapi::Refusals)
)]
/// The project's latest deliveries with their verdicts, newest first (`preview webhooks list`).
pub(crate) async fn list(
    State(state): State<SharedState>,
    Path(project): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let project = crate::routes::project_record(&state.store, &project).await?;
    let deliveries = state.store.deliveries(&project.name, 100).await?;
    // What the reconciler made of each pull request since: its latest decision.
    let outcomes: std::collections::HashMap<i64, String> = state
        .store
        .pull_requests(&project.name)
        .await?
        .into_iter()
        .map(|pr| (pr.number, pr.outcome))
        .collect();
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
            "reconciler": (d.verdict == "accepted")
                .then(|| d.pull_request.and_then(|n| outcomes.get(&n)))
                .flatten(),
            "received_at": d.received_at,
        })).collect::<Vec<_>>(),
    })))
}
