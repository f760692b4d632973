//! `/metrics`: the daemon's series in the Prometheus text format. Counters and histograms are kept as things happen
//! (`preview-metrics`); the counts of environments and previews by state are read from the store at each scrape.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use preview_deploy::EnvironmentAddress;
use preview_metrics::{Metrics, metrics};
use preview_spec::PreviewPolicy;
use preview_store::{DeploymentRecord, DeploymentStatus};

use crate::api::SharedState;
use crate::error::ApiError;

/// What the exposition is, for a scraper's content negotiation.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every state an environment is counted in, each always exported (0 when nothing is in it).
const ENVIRONMENT_STATES: [&str; 5] = ["ready", "deploying", "sleeping", "failed", "attention"];

/// How long the counts by state are reused: scrapes come every few seconds at most, and each count reads every
/// environment from the store.
const COUNTS_FOR: Duration = Duration::from_secs(2);

/// How long counting may take before a scrape answers with the last counts.
const COUNTING_TAKES_AT_MOST: Duration = Duration::from_secs(5);

/// When the counts by state were last made; held while they are made again, so that scrapes at once make them
/// once.
static COUNTED: tokio::sync::Mutex<Option<Instant>> = tokio::sync::Mutex::const_new(None);

#[utoipa::path(
    get,
    operation_id = "metrics_scrape",
    path = "/metrics",
    tag = "daemon",
    summary = "The daemon's metrics in the Prometheus (OpenMetrics) text format",
    description = "With the token on the API's address; `preview serve --metrics-listen` also serves it without the token on an address of its own.",
    responses(
        (status = 200, description = "Every series", content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String),
        (status = 401, description = "A missing or wrong token", body = crate::openapi::answers::ErrorBody)
    )
)]
pub(crate) async fn scrape(State(state): State<SharedState>) -> Response {
    // One scrape counts at a time; the others answer with the last counts. The counters stand without the store:
    // a store that does not answer (in time) leaves the last counts.
    if let Ok(mut counted) = COUNTED.try_lock()
        && counted.is_none_or(|at| at.elapsed() >= COUNTS_FOR)
    {
        match tokio::time::timeout(COUNTING_TAKES_AT_MOST, count_by_state(&state)).await {
            Ok(Ok(())) => *counted = Some(Instant::now()),
            Ok(Err(error)) => {
                tracing::warn!("metrics: cannot count environments by state: {error}")
            }
            Err(_) => tracing::warn!(
                "metrics: counting environments by state took over {} s; the last counts stand",
                COUNTING_TAKES_AT_MOST.as_secs()
            ),
        }
    }
    ([(CONTENT_TYPE, OPENMETRICS)], metrics().encode()).into_response()
}

/// An environment's state: an abandoned deployment's mark first, then its last deployment, then whether it sleeps.
fn environment_state(
    last: Option<&DeploymentRecord>,
    sleeping: bool,
    attention: bool,
) -> &'static str {
    if attention {
        return "attention";
    }
    match last.map(|d| d.status) {
        Some(DeploymentStatus::Running | DeploymentStatus::RollingBack) => "deploying",
        Some(DeploymentStatus::Failed | DeploymentStatus::Abandoned) => "failed",
        _ if sleeping => "sleeping",
        _ => "ready",
    }
}

/// Counts environments, and pull requests' previews, by state: a preview that exists is in its environment's
/// state; an open pull request without one is `waiting` (queued, awaiting approval, or not previewed by policy).
/// An environment still being made (its first deployment under way, or unable to finish) counts too. The counts are
/// the store's: daemons sharing one all report the same.
async fn count_by_state(state: &SharedState) -> Result<(), ApiError> {
    let mut environments: Vec<(String, i64)> = ENVIRONMENT_STATES
        .iter()
        .map(|s| ((*s).to_owned(), 0))
        .collect();
    let mut previews = environments.clone();
    previews.push(("waiting".to_owned(), 0));
    let add = |counts: &mut Vec<(String, i64)>, state: &str| {
        if let Some((_, count)) = counts.iter_mut().find(|(s, _)| s == state) {
            *count += 1;
        }
    };
    let unfinished = state.store.unfinished_deployments().await?;
    for project in state.store.projects().await? {
        let attention = state.store.attention(&project.name).await?;
        let mut states: Vec<(String, &str)> = Vec::new();
        for environment in state.store.environments(&project.name).await? {
            let last = state
                .store
                .deployments(&project.name, &environment.name, 1)
                .await?;
            let address = EnvironmentAddress {
                project: project.name.clone(),
                environment: environment.name.clone(),
            };
            let sleeping = state.runtime.sleeping(&address).await;
            let marked = attention.iter().any(|a| a.environment == environment.name);
            let current = environment_state(last.first(), sleeping, marked);
            add(&mut environments, current);
            states.push((environment.name, current));
        }
        // Not yet made: a first deployment under way or unable to finish, or an abandoned one's leftovers.
        for deployment in unfinished.iter().filter(|d| d.project == project.name) {
            if !states
                .iter()
                .any(|(name, _)| *name == deployment.environment)
            {
                let marked = attention
                    .iter()
                    .any(|a| a.environment == deployment.environment);
                let current = environment_state(Some(deployment), false, marked);
                add(&mut environments, current);
                states.push((deployment.environment.clone(), current));
            }
        }
        for mark in &attention {
            if !states.iter().any(|(name, _)| *name == mark.environment) {
                add(&mut environments, "attention");
                states.push((mark.environment.clone(), "attention"));
            }
        }
        for pull in state.store.pull_requests(&project.name).await? {
            let name = PreviewPolicy::environment_name(u64::try_from(pull.number).unwrap_or(0));
            match states.iter().find(|(environment, _)| *environment == name) {
                Some((_, current)) => add(&mut previews, current),
                None if pull.open => add(&mut previews, "waiting"),
                None => {}
            }
        }
    }
    let metrics = metrics();
    Metrics::set_states(&metrics.environments, &environments);
    Metrics::set_states(&metrics.previews, &previews);
    Ok(())
}
