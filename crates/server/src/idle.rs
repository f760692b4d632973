//! Idle previews sleep, and wake on request. Every few seconds, for each project whose spec sets
//! `previews.idle_stop`, each preview (a clone of another environment) that nobody used for that long — no request
//! through the gateway, no deployment, and none under way — is put to sleep by the runtime (`Runtime::sleep`): its
//! processes stop, everything it keeps stays, its routes answer as sleeping. The gateway wakes it on the next
//! request through the [`waker`] the daemon gives it; a deployment to it wakes it in the runtime, as it applies its
//! first change.
//!
//! Idleness is counted from the latest of: the last request the gateway let through (link-preview bots and
//! refused visitors do not count; one under way — a long upload, a streamed answer, a WebSocket — is a request now,
//! and one that ended counts from its end), the end of its last deployment (or its start, while none ended), its
//! creation, and this daemon's start — requests before it are not known. The runtime is given the cut-off the
//! preview was found idle from, and leaves it awake if a request came in the meantime, while the store was asked.
//!
//! A wake that fails is logged once, with the pause before the gateway tries again.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use preview_deploy::{EnvironmentAddress, Runtime};
use preview_gateway::{WakeFuture, Waker};
use preview_store::{EnvironmentRecord, ProjectRecord};

use crate::api::SharedState;

/// How often previews are looked at.
const EVERY: Duration = Duration::from_secs(2);

fn log(message: &str) {
    tracing::info!("{message}");
}

/// Starts the idle checker.
pub(crate) fn spawn(state: SharedState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let started = milliseconds(SystemTime::now());
        loop {
            tokio::time::sleep(EVERY).await;
            match state.store.projects().await {
                Ok(projects) => {
                    for project in projects {
                        if let Err(error) =
                            put_idle_previews_to_sleep(&state, &project, started).await
                        {
                            log(&format!(
                                "cannot tell which previews of `{}` are idle: {error}",
                                project.name
                            ));
                        }
                    }
                }
                Err(error) => log(&format!("idle previews: cannot read projects: {error}")),
            }
        }
    })
}

async fn put_idle_previews_to_sleep(
    state: &SharedState,
    project: &ProjectRecord,
    started: i64,
) -> Result<(), String> {
    let Ok(spec) = preview_spec::parse_spec(&project.file, &project.source) else {
        return Ok(());
    };
    let Some(idle_stop) = spec.previews.as_ref().and_then(|p| p.idle_stop) else {
        return Ok(());
    };
    let idle_ms = i64::try_from(idle_stop.as_millis()).unwrap_or(i64::MAX);
    let environments = state
        .store
        .environments(&project.name)
        .await
        .map_err(|e| e.to_string())?;
    let this_daemon = state
        .engine
        .holder()
        .split_once('/')
        .map_or(state.engine.holder(), |(daemon, _)| daemon);
    for environment in environments.iter().filter(|e| {
        e.based_on.is_some() && e.owner.as_deref().is_none_or(|owner| owner == this_daemon)
    }) {
        let address = EnvironmentAddress {
            project: project.name.clone(),
            environment: environment.name.clone(),
        };
        let now = milliseconds(SystemTime::now());
        let requested = last_request(state, &address).map_or(0, milliseconds);
        let quiet_since = requested.max(environment.created_at).max(started);
        if now - quiet_since < idle_ms || state.runtime.sleeping(&address).await {
            continue;
        }
        // The store is asked only about previews nobody requested lately.
        if !idle_since_its_deployments(state, environment, now - idle_ms).await? {
            continue;
        }
        let idle_since =
            UNIX_EPOCH + Duration::from_millis(u64::try_from(now - idle_ms).unwrap_or(0));
        match state.runtime.sleep(&address, idle_since).await {
            Ok(true) => log(&format!(
                "`{}` slept: no request for {} (project `{}`)",
                environment.name,
                human(idle_stop),
                project.name
            )),
            // A request came as it was about to sleep; the next look counts from it.
            Ok(false) => {}
            Err(error) => log(&format!(
                "`{}` stays awake: {error} (project `{}`)",
                environment.name, project.name
            )),
        }
    }
    Ok(())
}

/// Whether no deployment of the environment is under way and its last one ended (or, unended, began) before `cut`.
async fn idle_since_its_deployments(
    state: &SharedState,
    environment: &EnvironmentRecord,
    cut: i64,
) -> Result<bool, String> {
    let last = state
        .store
        .deployments(&environment.project, &environment.name, 1)
        .await
        .map_err(|e| e.to_string())?;
    let Some(last) = last.first() else {
        return Ok(true);
    };
    let unfinished = state
        .store
        .unfinished_deployments()
        .await
        .map_err(|e| e.to_string())?;
    if unfinished
        .iter()
        .any(|d| d.project == environment.project && d.environment == environment.name)
    {
        return Ok(false);
    }
    Ok(last.finished_at.unwrap_or(last.created_at) < cut)
}

/// When a request last reached the environment through the gateway, if one did since the daemon started.
pub(crate) fn last_request(state: &SharedState, env: &EnvironmentAddress) -> Option<SystemTime> {
    state.gateway.as_ref().and_then(|gateway| {
        gateway
            .activity
            .last_request(&env.project, &env.environment)
    })
}

/// Milliseconds since the Unix epoch, as the store keeps times.
pub(crate) fn milliseconds(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `10m`, `2s`, `1h`: the duration in its largest whole unit, as a spec writes it.
fn human(duration: Duration) -> String {
    let ms = duration.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// What the gateway calls to wake a sleeping environment: the runtime's `wake` — once it is open (the gateway
/// serves before it) — run as a task of the daemon's own, so that it goes on whatever the request that asked does.
/// A wake that leaves the environment asleep fails; one that leaves some of its apps stopped does not (its routes
/// say the rest).
pub(crate) fn waker(runtime: Arc<OnceLock<Arc<dyn Runtime>>>) -> Waker {
    let tasks = tokio::runtime::Handle::current();
    Waker::new(move |project, environment| -> WakeFuture {
        let runtime = runtime.get().cloned();
        let env = EnvironmentAddress {
            project: project.to_owned(),
            environment: environment.to_owned(),
        };
        let tasks = tasks.clone();
        Box::pin(async move {
            let Some(runtime) = runtime else {
                return Err("the daemon is still starting".to_owned());
            };
            let began = Instant::now();
            let name = env.environment.clone();
            let (woken, asleep) = tasks
                .spawn(async move {
                    let woken = runtime.wake(&env).await;
                    (woken, runtime.sleeping(&env).await)
                })
                .await
                .map_err(|e| format!("the wake ended abnormally: {e}"))?;
            match woken {
                Ok(()) => {
                    log(&format!(
                        "`{name}` woke for a request ({:.1} s)",
                        began.elapsed().as_secs_f64()
                    ));
                    Ok(())
                }
                Err(error) if !asleep => {
                    log(&format!("`{name}` woke for a request, not whole: {error}"));
                    Ok(())
                }
                Err(error) => Err(error.message),
            }
        })
    })
    .reporting(|failed| {
        log(&format!(
            "`{}` did not wake for a request: {} (project `{}`); requests for it get 503 for {} before it is tried again",
            failed.environment,
            failed.error,
            failed.project,
            human(failed.pause)
        ));
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_a_spec_writes_them() {
        for (ms, text) in [
            (600_000, "10m"),
            (2_000, "2s"),
            (90_000, "90s"),
            (3_600_000, "1h"),
            (172_800_000, "2d"),
            (1_500, "1500ms"),
        ] {
            assert_eq!(human(Duration::from_millis(ms)), text);
        }
    }
}
