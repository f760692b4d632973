//! Pull requests drive previews: a level-triggered reconciler. The desired set is "every open pull request that
//! passes the preview policy, at its head commit" (`decide`); what is known of pull requests comes from their
//! source of truth (`observe`: the forge's API, or local branches), webhooks only say where to look and wake the
//! reconciler. Each pass compares the desired set with the environments and deployments in the store and moves one
//! step toward it per pull request: it starts a preview's clone or update, cancels a deployment of an older head
//! (the latest head wins) or of a pull request that should have no preview (a close beats anything in flight), and
//! destroys previews nobody wants any more, saying why in the log. A pass runs when woken (a webhook, a finished
//! deployment, `previews sync`) and every few seconds; the forge's open pull requests are listed at start, every
//! `forge.resync` and on `previews sync`, so a missed event, a failed teardown or a daemon that was down never leave
//! a preview behind.

pub(crate) mod decide;
pub(crate) mod feedback;
pub(crate) mod mirror;
pub(crate) mod observe;
mod own_spec;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use preview_deploy::{DeploymentRequest, EnvironmentAddress};
use preview_forge::PullState;
use preview_resolve::{PreviewContext, SourceCommit};
use preview_spec::{ForgeKind, PreviewPolicy};
use preview_store::{
    DeploymentRecord, DeploymentStatus, EnvironmentRecord, Operation, ProjectRecord,
    PullRequestRecord,
};
use tokio::sync::Notify;

use crate::api::SharedState;
use decide::{Seen, Verdict, Want, decide};
use observe::ForgeSettings;

/// How often a pass runs when nothing wakes the reconciler (time-to-live, local branches, deployments ending).
const TICK: Duration = Duration::from_secs(2);

/// The role, in the store, of the daemon that reconciles (one of those sharing a store), and how long it is held
/// after the last pass renewed it.
pub(crate) const ROLE: &str = "previews";
const ROLE_TTL: Duration = Duration::from_secs(10);

/// How often a forge's open pull requests are listed when the spec does not say.
const DEFAULT_RESYNC: Duration = Duration::from_secs(300);

/// How long the reconciler leaves a forge alone after it failed to answer.
const FORGE_PAUSE: Duration = Duration::from_secs(30);

/// How long what only webhooks said waits for the forge before it is acted on.
const UNCONFIRMED_PATIENCE: Duration = Duration::from_secs(60);

/// How long a closed pull request without a preview is remembered.
const FORGET_CLOSED_MS: i64 = 30 * 24 * 3600 * 1000;

fn log(project: &str, message: &str) {
    tracing::info!(project, "previews: {message}");
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// The last failed destruction of a preview, how many failed in a row, and when to try again.
type DestroyFailures = (String, u32, Instant);

/// The reconciler's handle: wake it, or ask it to list a forge now.
pub(crate) struct Previews {
    wake: Notify,
    /// Where the mirrors of projects' repositories live.
    mirrors: PathBuf,
    /// Projects whose next pass lists the forge's pull requests and tries failed heads again.
    syncs: Mutex<HashSet<String>>,
    /// When each project's forge was last listed.
    listed: Mutex<HashMap<String, Instant>>,
    /// Forges that failed to answer, until when they are left alone, and the last error (logged once).
    paused: Mutex<HashMap<String, (Instant, String)>>,
    /// What pull requests are told.
    feedback: feedback::Feedback,
    /// Since when each pull request is known only from webhooks (forges whose API answers).
    unconfirmed: Mutex<HashMap<(String, i64), Instant>>,
    /// The deployments the reconciler cancelled (a newer head, a close): not failures of their head.
    cancelled: Mutex<HashSet<String>>,
    /// Destructions that failed, per pull request (project, number): the deployment that failed last, how many
    /// failed in a row and when to try again.
    destroy_failures: Mutex<HashMap<(String, i64), DestroyFailures>>,
}

impl Previews {
    pub(crate) fn new(mirrors: PathBuf) -> Previews {
        Previews {
            wake: Notify::new(),
            mirrors,
            syncs: Mutex::new(HashSet::new()),
            listed: Mutex::new(HashMap::new()),
            paused: Mutex::new(HashMap::new()),
            feedback: feedback::Feedback::default(),
            cancelled: Mutex::new(HashSet::new()),
            unconfirmed: Mutex::new(HashMap::new()),
            destroy_failures: Mutex::new(HashMap::new()),
        }
    }

    /// Runs a pass as soon as the current one ends.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Lists the project's forge (or branches) in the next pass and tries heads that failed again.
    pub(crate) fn sync(&self, project: &str) {
        self.syncs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(project.to_owned());
        self.wake();
    }

    /// Cancels a deployment for the reconciler's own reasons, so that it is not taken for a failure of its head.
    fn cancel(&self, engine: &preview_deploy::Engine, deployment: &str) -> bool {
        self.cancelled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(deployment.to_owned());
        engine.cancel(deployment)
    }

    /// Whether a pull request known only from webhooks has waited long enough for the forge to confirm it: one whose
    /// events keep coming faster than the forge is read is acted on after a minute.
    fn waited_long(&self, project: &str, record: &PullRequestRecord) -> bool {
        let mut unconfirmed = self.unconfirmed.lock().unwrap_or_else(|e| e.into_inner());
        let key = (project.to_owned(), record.number);
        if record.confirmed {
            unconfirmed.remove(&key);
            return true;
        }
        unconfirmed
            .entry(key)
            .or_insert_with(Instant::now)
            .elapsed()
            >= UNCONFIRMED_PATIENCE
    }

    fn was_cancelled(&self, deployment: &str) -> bool {
        self.cancelled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(deployment)
    }

    fn take_sync(&self, project: &str) -> bool {
        self.syncs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(project)
    }
}

/// Runs the reconciler until the daemon stops (the task is aborted then).
pub(crate) fn spawn(state: SharedState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut leading = false;
        loop {
            // Of daemons sharing a store, one reconciles at a time: the one holding the role.
            let holder = state.engine.holder().to_owned();
            let held = state
                .store
                .hold_role(ROLE, &holder, ROLE_TTL.as_millis() as i64)
                .await
                .unwrap_or(false);
            if held != leading {
                leading = held;
                tracing::info!(
                    "previews: {}",
                    if held {
                        "this daemon reconciles pull requests"
                    } else {
                        "another daemon sharing the store reconciles pull requests"
                    }
                );
            }
            if !held {
                tokio::time::sleep(TICK).await;
                continue;
            }
            match state.store.projects().await {
                Ok(projects) => {
                    for project in projects {
                        // A long pass (a slow forge) renews the role before each project, and stops once lost.
                        if !state
                            .store
                            .hold_role(ROLE, &holder, ROLE_TTL.as_millis() as i64)
                            .await
                            .unwrap_or(false)
                        {
                            break;
                        }
                        if let Err(error) = reconcile(&state, &project).await {
                            log(&project.name, &error);
                        }
                    }
                }
                Err(error) => tracing::warn!("previews: cannot read projects: {error}"),
            }
            tokio::select! {
                () = state.previews.wake.notified() => {}
                () = tokio::time::sleep(TICK) => {}
            }
        }
    })
}

/// What a pass knows of a project while it acts.
struct Pass<'a> {
    state: &'a SharedState,
    project: &'a ProjectRecord,
    policy: Option<&'a PreviewPolicy>,
    forge: Option<ForgeSettings>,
    /// The spec's directory inside its repository, where build and run commands run.
    prefix: String,
    retry: bool,
}

async fn reconcile(state: &SharedState, project: &ProjectRecord) -> Result<(), String> {
    let Ok(spec) = preview_spec::parse_spec(&project.file, &project.source) else {
        // A registered spec parsed when it was registered; one that does not now is left alone.
        return Ok(());
    };
    let store_error = |e: preview_store::StoreError| e.to_string();
    let records = state
        .store
        .pull_requests(&project.name)
        .await
        .map_err(store_error)?;
    let policy = spec.previews.as_ref();
    if policy.is_none() && !records.iter().any(|r| r.claimed) {
        return Ok(());
    }
    let retry = state.previews.take_sync(&project.name);
    let forge = policy.and_then(|p| p.forge.as_ref()).map(ForgeSettings::of);
    if let Some(settings) = &forge {
        observe_project(state, project, settings, &records, retry).await;
    }
    let records = state
        .store
        .pull_requests(&project.name)
        .await
        .map_err(store_error)?;
    let pass = Pass {
        state,
        project,
        policy,
        prefix: spec_prefix(project.directory.as_deref()).await,
        forge,
        retry,
    };
    if let Some(policy) = policy
        && !policy.paths.is_empty()
    {
        read_changed_paths(&pass, &records).await;
    }
    let records = state
        .store
        .pull_requests(&project.name)
        .await
        .map_err(store_error)?;
    let seen = decide::seen(&records);
    let now = state.store.now().await.map_err(store_error)?;
    let verdicts = decide(policy, &seen, now);
    // What only a webhook said waits for the forge to confirm it, when the forge can be asked: acting on it could
    // deploy a head an older event named after a newer one.
    let can_ask = pass.forge.as_ref().is_some_and(|f| {
        f.kind != ForgeKind::Local
            && f.token.is_some()
            && state
                .previews
                .paused
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&project.name)
                .is_none_or(|(until, _)| Instant::now() >= *until)
    });
    let environments: HashMap<String, EnvironmentRecord> = state
        .store
        .environments(&project.name)
        .await
        .map_err(store_error)?
        .into_iter()
        .map(|e| (e.name.clone(), e))
        .collect();
    let running: HashMap<String, DeploymentRecord> = state
        .store
        .unfinished_deployments()
        .await
        .map_err(store_error)?
        .into_iter()
        .filter(|d| d.project == project.name)
        .map(|d| (d.environment.clone(), d))
        .collect();
    for (pr, verdict) in seen.iter().zip(&verdicts) {
        if can_ask && !state.previews.waited_long(&project.name, pr.record) {
            // The forge is asked next pass (the webhook woke the reconciler).
            continue;
        }
        let name = PreviewPolicy::environment_name(pr.record.number as u64);
        if let Err(error) = act(
            &pass,
            pr,
            verdict,
            environments.get(&name),
            running.get(&name),
        )
        .await
        {
            log(
                &project.name,
                &format!("pull request #{}: {error}", pr.record.number),
            );
        }
    }
    state
        .store
        .forget_closed_pull_requests(&project.name, FORGET_CLOSED_MS)
        .await
        .map_err(store_error)
}

/// Asks the project's source of truth about its pull requests, when due.
async fn observe_project(
    state: &SharedState,
    project: &ProjectRecord,
    settings: &ForgeSettings,
    records: &[PullRequestRecord],
    sync: bool,
) {
    let previews = &state.previews;
    let result = if settings.kind == ForgeKind::Local {
        let repository =
            observe::local_repository(project.directory.as_deref(), &settings.repository);
        observe::from_branches(state, &project.name, &repository, records).await
    } else if settings.token.is_none() {
        // Without a token the forge is not asked at all: webhooks alone say what pull requests are.
        Ok(())
    } else {
        let resync = settings.resync.unwrap_or(DEFAULT_RESYNC);
        let due = sync
            || previews
                .listed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&project.name)
                .is_none_or(|at| at.elapsed() >= resync);
        let paused = previews
            .paused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&project.name)
            .is_some_and(|(until, _)| Instant::now() < *until);
        if (!due && !records.iter().any(|r| !r.confirmed)) || (paused && !sync) {
            return;
        }
        let listed = async {
            let client = observe::client(state, &project.name, settings).await?;
            observe::from_forge(state, &project.name, &client, records, due).await
        }
        .await;
        if listed.is_ok() && due {
            previews
                .listed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(project.name.clone(), Instant::now());
            log(&project.name, "listed the forge's open pull requests");
        }
        listed
    };
    let mut paused = previews.paused.lock().unwrap_or_else(|e| e.into_inner());
    match result {
        Ok(()) => {
            paused.remove(&project.name);
        }
        Err(error) => {
            let again = paused
                .get(&project.name)
                .is_none_or(|(_, last)| *last != error);
            if again {
                log(
                    &project.name,
                    &format!(
                        "cannot ask the forge ({error}); acting on what webhooks said, asking again in {} s",
                        FORGE_PAUSE.as_secs()
                    ),
                );
            }
            paused.insert(project.name.clone(), (Instant::now() + FORGE_PAUSE, error));
        }
    }
}

/// The spec's directory relative to its repository's top (`""` at the top or outside any repository).
async fn spec_prefix(directory: Option<&str>) -> String {
    let Some(directory) = directory else {
        return String::new();
    };
    let output = tokio::process::Command::new("git")
        .args(["-C", directory, "rev-parse", "--show-prefix"])
        .stdin(std::process::Stdio::null())
        .output()
        .await;
    match output {
        Ok(output) if output.status.success() => String::from_utf8_lossy(&output.stdout)
            .trim()
            .trim_end_matches('/')
            .to_owned(),
        _ => String::new(),
    }
}

/// Reads the paths each open pull request changes at its head, where not read yet.
async fn read_changed_paths(pass: &Pass<'_>, records: &[PullRequestRecord]) {
    let Some(settings) = &pass.forge else {
        return;
    };
    let project = &pass.project.name;
    let client = match settings.kind {
        ForgeKind::Local => None,
        _ if settings.token.is_none() => return,
        _ => match observe::client(pass.state, project, settings).await {
            Ok(client) => Some(client),
            Err(_) => return,
        },
    };
    for record in records
        .iter()
        .filter(|r| r.open && r.paths_head.as_deref() != Some(r.head.as_str()))
    {
        let Ok(state) = serde_json::from_str::<PullState>(&record.state) else {
            continue;
        };
        let paths = match &client {
            Some(client) => client
                .changed_paths(record.number as u64)
                .await
                .map_err(|e| e.to_string()),
            None => {
                let repository = observe::local_repository(
                    pass.project.directory.as_deref(),
                    &settings.repository,
                );
                observe::changed_paths_local(&repository, &state.base_ref, &record.head).await
            }
        };
        // Paths that cannot be read count as passing (an unneeded preview rather than a missing one), and are not
        // asked for again at this head.
        let paths = match paths {
            Ok(paths) => serde_json::to_string(&paths).ok(),
            Err(error) => {
                log(
                    project,
                    &format!(
                        "cannot read the paths pull request #{} changes ({error}); it passes `previews.paths` at this head",
                        record.number
                    ),
                );
                None
            }
        };
        let mut marks = record.clone();
        marks.paths_head = Some(record.head.clone());
        marks.paths = paths;
        if let Err(error) = pass
            .state
            .store
            .mark_pull_request(&marks, record.claimed_at)
            .await
        {
            log(project, &error.to_string());
        }
    }
}

/// Moves one pull request one step toward what it should have.
async fn act(
    pass: &Pass<'_>,
    pr: &Seen<'_>,
    verdict: &Verdict,
    environment: Option<&EnvironmentRecord>,
    running: Option<&DeploymentRecord>,
) -> Result<(), String> {
    let state = pass.state;
    let project = &pass.project.name;
    let record = pr.record;
    let name = PreviewPolicy::environment_name(record.number as u64);
    let mut marks = record.clone();
    if verdict.expired {
        marks.expired_head = Some(pr.state.head_sha.clone());
    }
    // What the pull request should show, where the forge is told.
    let mut told: Option<feedback::Key> = None;
    let tell = |stage: feedback::Stage, head: &str, deployment: Option<&str>, why: &str| {
        Some(feedback::Key {
            stage,
            head: head.to_owned(),
            deployment: deployment.map(str::to_owned),
            why: why.to_owned(),
        })
    };
    let outcome = match &verdict.want {
        Want::Preview { head } => {
            if environment.is_some() && !record.claimed {
                format!(
                    "environment `{name}` exists and was not made for this pull request; delete it (`preview env delete {name}`) to let the pull request have its preview"
                )
            } else if let Some(deployment) = running {
                if deployment.operation == Operation::Delete {
                    format!(
                        "waiting for deployment {} to delete the old preview",
                        deployment.id
                    )
                } else if deployment.source_commit.as_deref() != Some(head.as_str()) {
                    if state.previews.cancel(&state.engine, &deployment.id) {
                        log(
                            project,
                            &format!(
                                "cancelling deployment {} of `{name}` at {}: pull request #{} moved on to {}",
                                deployment.id,
                                deployment
                                    .source_commit
                                    .as_deref()
                                    .map(short)
                                    .unwrap_or("?"),
                                record.number,
                                short(head)
                            ),
                        );
                    }
                    told = tell(feedback::Stage::Deploying, head, None, "");
                    format!(
                        "superseding deployment {} with commit {}",
                        deployment.id,
                        short(head)
                    )
                } else {
                    told = tell(feedback::Stage::Deploying, head, Some(&deployment.id), "");
                    format!("deploying {} (deployment {})", short(head), deployment.id)
                }
            } else {
                let history = state
                    .store
                    .deployments(project, &name, 10)
                    .await
                    .map_err(|e| e.to_string())?;
                let last = history.first().cloned();
                let at_head =
                    |d: &DeploymentRecord| d.source_commit.as_deref() == Some(head.as_str());
                match last {
                    Some(last)
                        if environment.is_some()
                            && last.status == DeploymentStatus::Committed
                            && at_head(&last) =>
                    {
                        told = tell(feedback::Stage::Live, head, Some(&last.id), "");
                        format!("live at {}", short(head))
                    }
                    Some(last)
                        if !pass.retry
                            && last.operation != Operation::Delete
                            && at_head(&last)
                            && last.status != DeploymentStatus::Committed
                            && !gave_up(state, &last, &history) =>
                    {
                        let reason = last
                            .reason
                            .as_deref()
                            .unwrap_or("see `preview deployment show`");
                        told = tell(feedback::Stage::Failed, head, Some(&last.id), "");
                        format!(
                            "deployment {} of {} failed: {reason}; push again or run `preview previews sync` to try again",
                            last.id,
                            short(head),
                        )
                    }
                    _ if !pass.retry && marks.failed_head.as_deref() == Some(head.as_str()) => {
                        told = tell(feedback::Stage::Failed, head, None, "");
                        record.outcome.clone()
                    }
                    _ => match deploy(pass, pr, head, environment, &mut marks).await {
                        Ok(id) => {
                            marks.failed_head = None;
                            log(
                                project,
                                &format!(
                                    "{} `{name}` at {} for pull request #{} (deployment {id})",
                                    if environment.is_some() {
                                        "updating"
                                    } else {
                                        "creating"
                                    },
                                    short(head),
                                    record.number
                                ),
                            );
                            told = tell(feedback::Stage::Deploying, head, Some(&id), "");
                            format!("deploying {} (deployment {id})", short(head))
                        }
                        Err(error) => {
                            marks.failed_head = Some(head.clone());
                            told = tell(feedback::Stage::Failed, head, None, "");
                            log(
                                project,
                                &format!("cannot deploy `{name}` at {}: {error}", short(head)),
                            );
                            format!("cannot deploy {}: {error}", short(head))
                        }
                    },
                }
            }
        }
        Want::Queued { .. } | Want::Nothing => {
            let head = pr.state.head_sha.as_str();
            if record.claimed || verdict.expired {
                told = tell(feedback::Stage::Removed, head, None, &verdict.why);
            } else if record.open && (matches!(verdict.want, Want::Queued { .. }) || pr.state.fork)
            {
                told = tell(feedback::Stage::Waiting, head, None, &verdict.why);
            }
            if !record.claimed {
                verdict.why.clone()
            } else if let Some(deployment) = running {
                if deployment.operation != Operation::Delete
                    && state.previews.cancel(&state.engine, &deployment.id)
                {
                    log(
                        project,
                        &format!(
                            "cancelling deployment {} of `{name}`: pull request #{} is {}",
                            deployment.id, record.number, verdict.why
                        ),
                    );
                }
                format!("removing the preview: {}", verdict.why)
            } else if environment.is_some() {
                match destroy_pause(pass, record.number, &name).await? {
                    Some(pause) => pause,
                    None => {
                        let id = destroy(pass, &name).await?;
                        log(
                            project,
                            &format!(
                                "destroying `{name}` (deployment {id}): pull request #{} is {}",
                                record.number, verdict.why
                            ),
                        );
                        format!("removing the preview: {}", verdict.why)
                    }
                }
            } else {
                marks.claimed = false;
                marks.claimed_at = None;
                mirror::forget(&state.previews.mirrors, project, record.number).await;
                verdict.why.clone()
            }
        }
    };
    marks.outcome = outcome;
    if let Some(key) = told {
        report(pass, pr, key).await;
    }
    // The claim as it is now: the one read, or the one this pass made.
    let claim = if marks.claimed && !record.claimed {
        marks.claimed_at
    } else {
        record.claimed_at
    };
    if marks != *record
        && !state
            .store
            .mark_pull_request(&marks, claim)
            .await
            .map_err(|e| e.to_string())?
    {
        log(
            project,
            &format!(
                "pull request #{} was claimed or released elsewhere meanwhile; looked at again next pass",
                record.number
            ),
        );
    }
    Ok(())
}

/// Whether a deployment that did not commit was given up rather than failed: cancelled (by the reconciler for a
/// newer head or a close — it knows its own by id —, or by anyone: the engine's reason is then exactly
/// `cancelled`), or rolled back because the daemon stopped during it. Such a head is deployed again; a failed one is
/// not. A step's own failure never reads like these: its reason is the runtime's message.
fn gave_up(
    state: &SharedState,
    deployment: &DeploymentRecord,
    history: &[DeploymentRecord],
) -> bool {
    let reason = deployment.reason.as_deref().unwrap_or("");
    let stopped = |reason: &str| {
        reason.starts_with("the daemon stopped during step ")
            || reason.starts_with("the daemon stopped before the first step")
    };
    // A head during whose deployment the daemon stopped twice is taken for the cause (it may bring the daemon down)
    // and not tried again by itself.
    let stops_at_head = history
        .iter()
        .filter(|d| {
            d.source_commit == deployment.source_commit
                && stopped(d.reason.as_deref().unwrap_or(""))
        })
        .count();
    state.previews.was_cancelled(&deployment.id)
        || reason == "cancelled"
        || (stopped(reason) && stops_at_head < 2)
}

/// Tells the pull request what `key` says, when its forge can be told and it says something new.
async fn report(pass: &Pass<'_>, pr: &Seen<'_>, key: feedback::Key) {
    let Some(settings) = &pass.forge else {
        return;
    };
    if settings.token.is_none() || observe::remote(settings.kind).is_none() {
        return;
    }
    let state = pass.state;
    let project = &pass.project.name;
    let number = pr.record.number as u64;
    let feedback = &state.previews.feedback;
    if !feedback.is_new(project, number, &key) {
        return;
    }
    let environment = PreviewPolicy::environment_name(number);
    let mut report = feedback::Report {
        project: project.clone(),
        number,
        environment: environment.clone(),
        urls: Vec::new(),
        phases: Vec::new(),
        total_ms: None,
        failed_step: None,
        key,
    };
    if let (Some(id), feedback::Stage::Live | feedback::Stage::Failed) =
        (report.key.deployment.clone(), &report.key.stage)
        && let (Ok(Some(deployment)), Ok(journal)) = (
            state.store.deployment(&id).await,
            state.store.journal(&id).await,
        )
    {
        let received_at = state
            .store
            .deliveries(project, preview_store::KEPT_DELIVERIES)
            .await
            .unwrap_or_default()
            .iter()
            .filter(|d| {
                d.pull_request == Some(pr.record.number)
                    && d.head.as_deref() == Some(report.key.head.as_str())
            })
            .map(|d| d.received_at)
            .min();
        let (phases, total) = feedback::phases(
            feedback,
            (project, number, &report.key.head),
            received_at,
            &deployment,
            &journal,
        );
        report.phases = phases;
        report.total_ms = total;
        // The step that failed, by its resource: the first whose application failed other than by a cancel.
        report.failed_step = journal
            .iter()
            .find(|e| {
                e.phase == preview_store::Phase::Apply
                    && e.event == preview_store::JournalEvent::Failed
                    && !e.message.ends_with(": cancelled")
            })
            .and_then(|e| {
                deployment
                    .plan
                    .steps
                    .iter()
                    .find(|s| s.index as i64 == e.step)
            })
            .map(|s| s.resource.clone());
        if report.key.stage == feedback::Stage::Live
            && let Ok(recorded) = state.store.recorded_state(project, &environment).await
        {
            report.urls = crate::routes::runtime::service_urls(state, &recorded);
        }
    }
    feedback.send(state, report);
}

/// Starts the deployment that makes (or updates) a pull request's preview at `head`; its id.
async fn deploy(
    pass: &Pass<'_>,
    pr: &Seen<'_>,
    head: &str,
    environment: Option<&EnvironmentRecord>,
    marks: &mut PullRequestRecord,
) -> Result<String, String> {
    let state = pass.state;
    let project = pass.project;
    let (Some(policy), Some(settings)) = (pass.policy, &pass.forge) else {
        return Err("the project's spec has no `previews.forge`".to_owned());
    };
    let number = pr.record.number;
    let name = PreviewPolicy::environment_name(number as u64);
    let blueprint = environment
        .and_then(|e| e.based_on.clone())
        .unwrap_or_else(|| policy.blueprint.clone());
    if environment.is_none()
        && state
            .store
            .environment(&project.name, &blueprint)
            .await
            .map_err(|e| e.to_string())?
            .is_none()
    {
        return Err(format!(
            "previews are cloned from `{blueprint}`, which does not exist yet; create it with `preview env create {blueprint}`"
        ));
    }
    if settings.kind != ForgeKind::Local {
        // A pull request's code runs only where environments are kept apart.
        let address = EnvironmentAddress {
            project: project.name.clone(),
            environment: name.clone(),
        };
        let protections = state.runtime.isolation(&address).await;
        if let Some(users) = protections.iter().find(|p| p.name == "users")
            && !users.in_effect
        {
            return Err(format!(
                "pull requests' code runs only in isolated environments, and this daemon cannot isolate them ({}); run it as root",
                users.detail
            ));
        }
    }
    let repository = match settings.kind {
        ForgeKind::Local => {
            let repository =
                observe::local_repository(project.directory.as_deref(), &settings.repository);
            if !mirror::has_commit(&repository, head).await {
                return Err(format!("commit {head} is not in {}", repository.display()));
            }
            std::fs::canonicalize(&repository)
                .map_err(|e| format!("{}: {e}", repository.display()))?
        }
        _ => {
            let began = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            let fetching = Instant::now();
            let token = match &settings.token {
                Some(secret) => state
                    .vault
                    .recent_values(&project.name, secret)
                    .await?
                    .into_iter()
                    .next(),
                None => None,
            };
            let fetched = mirror::fetch(
                &state.previews.mirrors,
                &project.name,
                number,
                head,
                &mirror::Remote {
                    clone_url: &settings.clone_url,
                    reference: settings.head_reference(number),
                    token: token.as_ref(),
                    token_user: settings.token_user(),
                },
            )
            .await?;
            state.previews.feedback.fetched(
                &project.name,
                number as u64,
                head,
                began,
                fetching.elapsed().as_millis() as i64,
            );
            fetched
        }
    };
    let source = SourceCommit {
        repository: repository.to_string_lossy().into_owned(),
        directory: pass.prefix.clone(),
        commit: head.to_owned(),
    };
    // The spec that applies: the registered one, or (when the project says so, and never for a fork) the one at the
    // pull request's head — which must be valid and name the same project.
    let from_pull_request = policy.spec_from_pull_request && !pr.state.fork;
    let mut project = project.clone();
    if from_pull_request {
        let (path, text) = crate::source::spec_at(&source, &project.file).await;
        let text = text.map_err(|e| format!("the pull request has no {path}: {e}"))?;
        let spec = preview_spec::parse_spec(&path, &text)
            .map_err(|problems| format!("the pull request's {path} is not valid:\n{problems}"))?;
        let registered = preview_spec::parse_spec(&project.file, &project.source)
            .map_err(|problems| format!("the registered spec is not valid:\n{problems}"))?;
        if let Some(place) = own_spec::beyond_its_own(&registered, &spec) {
            return Err(format!(
                "the pull request's {path} changes `{place}`; a pull request's spec may change only its apps' `build` and `run`, its jobs' `command` and `variables` (the rest comes from the registered spec)"
            ));
        }
        project.source = text;
    }
    let project = &project;
    let context = settings.preview_context(number as u64, &pr.state.head_ref, head);
    let resolved = crate::desired::resolve_with(
        state,
        project,
        &name,
        Some(&blueprint),
        Some(source),
        Some(context),
    )
    .await
    .map_err(|e| e.to_string())?;
    let desired = crate::desired::desired_of(
        state,
        project,
        &name,
        resolved,
        crate::desired::Purpose::Deploy,
    )
    .await
    .map_err(|e| e.to_string())?;
    // Claimed before it starts: a crash in between leaves a claim on nothing, which the next pass settles.
    if !marks.claimed {
        let read = marks.claimed_at;
        marks.claimed = true;
        marks.claimed_at = Some(state.store.now().await.map_err(|e| e.to_string())?);
        if !state
            .store
            .mark_pull_request(marks, read)
            .await
            .map_err(|e| e.to_string())?
        {
            return Err("another daemon's reconciler claimed this preview meanwhile".to_owned());
        }
    }
    let request = DeploymentRequest {
        project: project.name.clone(),
        environment: name,
        operation: if environment.is_some() {
            Operation::Update
        } else {
            Operation::Clone
        },
        based_on: Some(blueprint),
        source_commit: desired.source.map(|s| s.commit),
        follows: None,
        keep_settings: false,
        desired: desired.resources,
    };
    start(state, request).await
}

/// When the last deployment that destroyed the preview failed: the pause before the next try (doubling from
/// 5 s up to 10 minutes), as the pull request's outcome, or `None` to try now.
async fn destroy_pause(pass: &Pass<'_>, number: i64, name: &str) -> Result<Option<String>, String> {
    let project = &pass.project.name;
    let last = pass
        .state
        .store
        .deployments(project, name, 1)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .next();
    let Some(last) = last
        .filter(|d| d.operation == Operation::Delete && d.status != DeploymentStatus::Committed)
    else {
        return Ok(None);
    };
    let mut failures = pass
        .state
        .previews
        .destroy_failures
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let key = (project.clone(), number);
    let (count, next) = match failures.get(&key) {
        Some((id, count, next)) if *id == last.id => (*count, *next),
        known => {
            let count = known.map_or(1, |(_, count, _)| count + 1);
            let pause =
                Duration::from_secs(5 * (1u64 << count.min(7))).min(Duration::from_secs(600));
            let next = Instant::now() + pause;
            failures.insert(key, (last.id.clone(), count, next));
            log(
                project,
                &format!(
                    "destroying `{name}` failed ({}); trying again in {} s",
                    last.reason.as_deref().unwrap_or("see its deployment"),
                    pause.as_secs()
                ),
            );
            (count, next)
        }
    };
    let now = Instant::now();
    Ok((now < next).then(|| {
        format!(
            "destroying the preview failed {count} time(s) (deployment {}: {}); trying again in {} s",
            last.id,
            last.reason.as_deref().unwrap_or("see its deployment"),
            (next - now).as_secs()
        )
    }))
}

/// The project as a preview of a pull request was deployed — with the spec at its commit when the project takes
/// previews' specs from their pull requests (and it is not a fork's) — and its pull request, for its built-ins. Any
/// other environment: the project as registered, and no pull request.
pub(crate) async fn as_deployed(
    state: &SharedState,
    project: &ProjectRecord,
    environment: &str,
    source: &SourceCommit,
) -> (ProjectRecord, Option<PreviewContext>) {
    let registered = (project.clone(), None);
    let Some(number) = environment
        .strip_prefix("pr-")
        .and_then(|n| n.parse::<i64>().ok())
    else {
        return registered;
    };
    let Ok(spec) = preview_spec::parse_spec(&project.file, &project.source) else {
        return registered;
    };
    let (Some(policy), Ok(records)) = (
        spec.previews,
        state.store.pull_requests(&project.name).await,
    ) else {
        return registered;
    };
    let Some(record) = records
        .into_iter()
        .find(|r| r.number == number && r.claimed)
    else {
        return registered;
    };
    let Ok(pull) = serde_json::from_str::<PullState>(&record.state) else {
        return registered;
    };
    let settings = policy.forge.as_ref().map(ForgeSettings::of);
    let preview = settings
        .as_ref()
        .map(|settings| settings.preview_context(number as u64, &pull.head_ref, &source.commit));
    let mut deployed = project.clone();
    if policy.spec_from_pull_request
        && !pull.fork
        && let (_, Ok(text)) = crate::source::spec_at(source, &project.file).await
        && preview_spec::parse_spec(&project.file, &text).is_ok()
    {
        deployed.source = text;
    }
    (deployed, preview)
}

/// Starts the deployment that destroys a preview; its id.
async fn destroy(pass: &Pass<'_>, name: &str) -> Result<String, String> {
    let state = pass.state;
    let environment = state
        .store
        .environment(&pass.project.name, name)
        .await
        .map_err(|e| e.to_string())?;
    let request = DeploymentRequest {
        project: pass.project.name.clone(),
        environment: name.to_owned(),
        operation: Operation::Delete,
        based_on: environment.and_then(|e| e.based_on),
        source_commit: None,
        follows: None,
        keep_settings: false,
        desired: Vec::new(),
    };
    start(state, request).await
}

/// Starts a deployment and runs a pass once it ends, so that the next step follows at once; its id.
async fn start(state: &SharedState, request: DeploymentRequest) -> Result<String, String> {
    let (record, handle) = state
        .engine
        .start(request)
        .await
        .map_err(|e| e.to_string())?;
    let state = std::sync::Arc::clone(state);
    tokio::spawn(async move {
        let _ = handle.await;
        state.previews.wake();
    });
    Ok(record.id)
}
