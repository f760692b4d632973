//! What a pull request is told about its preview, through its forge's API: one sticky comment (found again by a
//! hidden marker *and* the bot's own user, edited in place), a commit status on each head, and on GitHub a
//! Deployment per head with its statuses (`inactive` once the preview is gone). The reconciler says, every pass,
//! what each pull request should show (`Report`); a writer per pull request sends only the latest of those, one
//! write at a time, retried with growing pauses when the forge fails — never in the reconciler's way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use preview_forge::api::{CommitState, DeploymentState};
use preview_store::{JournalEntry, JournalEvent, Phase};
use tokio::sync::watch;

use crate::api::SharedState;
use crate::forge_client::{ForgeClient, ForgeError};

use super::observe::{self, ForgeSettings};

/// Where a preview is, as its pull request is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stage {
    /// No preview yet, and why (waiting for an approval, a place in the queue).
    Waiting,
    Deploying,
    Live,
    Failed,
    /// It was destroyed, and why.
    Removed,
}

/// What a pull request should show now. Two reports with the same key show the same thing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Key {
    pub stage: Stage,
    pub head: String,
    /// The deployment the report is about.
    pub deployment: Option<String>,
    /// Why, for `Waiting`, `Failed` and `Removed`.
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    pub key: Key,
    pub project: String,
    pub number: u64,
    pub environment: String,
    /// Each public service and its URL.
    pub urls: Vec<(String, String)>,
    /// Each phase and how long it took (`None`: not known).
    pub phases: Vec<(&'static str, Option<i64>)>,
    pub total_ms: Option<i64>,
    /// For a failed deployment: the step that failed (a resource id of the plan, never its output).
    pub failed_step: Option<String>,
}

/// A pull request: its project and number.
type PullId = (String, u64);

/// A pull request's head: project, number, commit.
type HeadId = (String, u64, String);

/// The writers, one per pull request, and what each forge's API was last told.
#[derive(Default)]
pub(crate) struct Feedback {
    writers: Mutex<HashMap<PullId, watch::Sender<Option<Report>>>>,
    /// The key last handed to each writer, so that a pass that finds nothing new reads nothing more.
    keys: Mutex<HashMap<PullId, Key>>,
    /// When each pull request's work on a head began (ms, the daemon's clock) and how long its fetch took.
    fetches: Mutex<HashMap<HeadId, (i64, i64)>>,
}

impl Feedback {
    /// Whether `key` is new for the pull request: only then is a report made and sent.
    pub(crate) fn is_new(&self, project: &str, number: u64, key: &Key) -> bool {
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(project.to_owned(), number))
            != Some(key)
    }

    /// Notes when the work on a head began and how long fetching it took.
    pub(crate) fn fetched(&self, project: &str, number: u64, head: &str, began: i64, took: i64) {
        self.fetches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((project.to_owned(), number, head.to_owned()), (began, took));
    }

    fn fetch_of(&self, project: &str, number: u64, head: &str) -> Option<(i64, i64)> {
        self.fetches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(project.to_owned(), number, head.to_owned()))
            .copied()
    }

    /// Forgets a pull request whose removal was written: its writer ended.
    fn forget(&self, id: &PullId) {
        self.writers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        // The key stays: the same report (a removal whose destruction is retried) is not written again.
        self.fetches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(project, number, _), _| (project, number) != (&id.0, &id.1));
    }

    /// Hands `report` to the pull request's writer, starting one when there is none.
    pub(crate) fn send(&self, state: &SharedState, report: Report) {
        let id = (report.project.clone(), report.number);
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), report.key.clone());
        let mut writers = self.writers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(writer) = writers.get(&id)
            && writer.send(Some(report.clone())).is_ok()
        {
            return;
        }
        let (sender, receiver) = watch::channel(Some(report));
        writers.insert(id, sender);
        tokio::spawn(write_loop(Arc::clone(state), receiver));
    }
}

/// The marker that finds the sticky comment again.
fn marker(project: &str) -> String {
    format!("<!-- preview: the preview of project `{project}` -->")
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// Text from a pull request (a branch name in a reason, say) as one inert line of Markdown: no heading, link, image,
/// table, HTML or mention can come of it.
fn escape(text: &str) -> String {
    let mut escaped = String::new();
    for c in text.chars().filter(|c| !c.is_control()).take(300) {
        // Markdown's punctuation is escaped; a zero-width space after `@`, `#`, `!`, `%`, `$` and `:` keeps `@team`
        // from mentioning anyone, `#12`, `!12`, `%1`, `$1` from referring to anything and `https://` from linking.
        if matches!(
            c,
            '\\' | '`'
                | '*'
                | '_'
                | '{'
                | '}'
                | '['
                | ']'
                | '('
                | ')'
                | '#'
                | '+'
                | '-'
                | '.'
                | '!'
                | '|'
                | '<'
                | '>'
                | '~'
                | '='
                | ':'
                | '&'
        ) {
            escaped.push('\\');
        }
        escaped.push(c);
        if matches!(c, '@' | '#' | '!' | '%' | '$' | ':') {
            escaped.push('\u{200b}');
        }
    }
    escaped
}

/// What a failed report says failed: the step, named by its resource, or that the deployment could not start — never
/// the step's output, which is the pull request's to write.
fn failure(report: &Report) -> String {
    match (&report.failed_step, &report.key.deployment) {
        (Some(step), _) => format!("failed at step {step}"),
        (None, Some(_)) => "the deployment failed".to_owned(),
        (None, None) => {
            "the deployment could not start; `preview previews list` says why".to_owned()
        }
    }
}

fn seconds(ms: i64) -> String {
    format!("{:.2} s", ms as f64 / 1000.0)
}

/// The sticky comment's text.
pub(crate) fn render(report: &Report) -> String {
    let key = &report.key;
    let mut text = marker(&report.project);
    text.push('\n');
    let headline = match key.stage {
        Stage::Waiting => "waiting",
        Stage::Deploying => "deploying",
        Stage::Live => "live",
        Stage::Failed => "failed",
        Stage::Removed => "removed",
    };
    text.push_str(&format!(
        "### Preview `{}`: {headline}\n\nCommit `{}`",
        report.environment,
        short(&key.head)
    ));
    if let Some(deployment) = &key.deployment {
        text.push_str(&format!(" · deployment `{deployment}`"));
    }
    text.push_str("\n\n");
    match key.stage {
        Stage::Waiting => text.push_str(&format!("No preview yet: {}.\n", escape(&key.why))),
        Stage::Deploying => {
            text.push_str("Deploying this commit; this comment changes when it is done.\n")
        }
        Stage::Failed => {
            text.push_str(&format!(
                "This commit's deployment {}.",
                escape(&failure(report))
            ));
            if let Some(deployment) = &key.deployment {
                text.push_str(&format!(
                    " Its log: `preview deployment show {deployment}`."
                ));
            }
            text.push_str(" The preview, if it ran before, still runs its earlier commit.\n");
        }
        Stage::Removed => {
            text.push_str(&format!("The preview was removed: {}.\n", escape(&key.why)))
        }
        Stage::Live => {}
    }
    if key.stage == Stage::Live && !report.urls.is_empty() {
        text.push_str("\n| service | URL |\n|---|---|\n");
        for (service, url) in &report.urls {
            text.push_str(&format!("| {service} | {url} |\n"));
        }
    }
    if matches!(key.stage, Stage::Live | Stage::Failed) && !report.phases.is_empty() {
        text.push_str("\n| phase | time |\n|---|---|\n");
        for (phase, ms) in &report.phases {
            let shown = ms.map_or("–".to_owned(), seconds);
            text.push_str(&format!("| {phase} | {shown} |\n"));
        }
        if let Some(total) = report.total_ms {
            text.push_str(&format!("| **total** | **{}** |\n", seconds(total)));
        }
    }
    text
}

/// Each phase of a deployment and how long it took, from its journal: `queued` from the first delivery that named
/// the head until the work began, `fetch`, then the spans of its build, database (and job) and app steps; and the
/// total from the delivery (else the deployment's start) to its end.
pub(crate) fn phases(
    feedback: &Feedback,
    report: (&str, u64, &str),
    received_at: Option<i64>,
    deployment: &preview_store::DeploymentRecord,
    journal: &[JournalEntry],
) -> (Vec<(&'static str, Option<i64>)>, Option<i64>) {
    let (project, number, head) = report;
    let fetch = feedback.fetch_of(project, number, head);
    let span = |prefixes: &[&str]| -> Option<i64> {
        let steps: Vec<usize> = deployment
            .plan
            .steps
            .iter()
            .filter(|s| prefixes.iter().any(|p| s.resource.starts_with(p)))
            .map(|s| s.index)
            .collect();
        let steps = &steps;
        let of = |event: JournalEvent| {
            journal
                .iter()
                .filter(move |e| {
                    e.phase == Phase::Apply
                        && e.event == event
                        && steps.contains(&(e.step as usize))
                })
                .map(|e| e.at)
        };
        let began = of(JournalEvent::Intent).min()?;
        let ended = of(JournalEvent::Done).max()?;
        Some(ended - began)
    };
    let queued = match (received_at, fetch) {
        (Some(received), Some((began, _))) => Some((began - received).max(0)),
        _ => None,
    };
    let phases = vec![
        ("queued", queued),
        ("fetch", fetch.map(|(_, took)| took)),
        ("build", span(&["build/"])),
        ("database", span(&["database/", "job/"])),
        ("start", span(&["app/"])),
    ];
    let start = received_at.unwrap_or(deployment.created_at);
    let total = deployment.finished_at.map(|end| (end - start).max(0));
    (phases, total)
}

/// Writes the latest report of one pull request until there is nothing more to write: once the preview is removed
/// and that is written, the writer ends and forgets the pull request.
async fn write_loop(state: SharedState, mut receiver: watch::Receiver<Option<Report>>) {
    let mut written: Option<Written> = None;
    let mut pause = Duration::from_secs(1);
    loop {
        let Some(report) = receiver.borrow_and_update().clone() else {
            return;
        };
        let id = (report.project.clone(), report.number);
        let loaded = match written.take() {
            Some(known) => Ok(known),
            None => Written::load(&state, &report).await,
        };
        let (mut now, result) = match loaded {
            Ok(mut now) => {
                let result = write(&state, &report, &mut now).await;
                (Some(now), result)
            }
            Err(error) => (None, Err(error)),
        };
        match result {
            Ok(()) => {
                pause = Duration::from_secs(1);
                if let Some(now) = &now {
                    now.save(&state, &report).await;
                }
                if report.key.stage == Stage::Removed && !receiver.has_changed().unwrap_or(false) {
                    state.previews.feedback.forget(&id);
                    return;
                }
            }
            Err(error) => {
                if let Some(now) = &now {
                    now.save(&state, &report).await;
                }
                tracing::warn!(
                    "previews of `{}`: cannot tell pull request #{} ({error}); trying again in {} s",
                    report.project,
                    report.number,
                    pause.as_secs()
                );
                // A newer report does not wait for the pause to end.
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    changed = receiver.changed() => if changed.is_err() { return },
                }
                pause = (pause * 2).min(Duration::from_secs(300));
                // The latest report is written next, whether or not it changed meanwhile.
                receiver.mark_changed();
            }
        }
        written = now.take();
        if receiver.changed().await.is_err() {
            return;
        }
    }
}

/// What a pull request was told through its forge, kept in the store so that a restarted daemon edits the same
/// comment and retires the deployments it made before.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Written {
    #[serde(skip)]
    bot: Option<String>,
    comment: Option<u64>,
    #[serde(skip)]
    comment_text: Option<String>,
    /// The last commit status sent per head.
    statuses: HashMap<String, CommitState>,
    /// GitHub's deployment per head, and the last state each was given.
    deployments: HashMap<String, (u64, Option<DeploymentState>)>,
}

impl Written {
    /// What the store keeps of the pull request's feedback; an error when it cannot be read, so that nothing is
    /// written over it (a comment made again, deployments never retired).
    async fn load(state: &SharedState, report: &Report) -> Result<Written, String> {
        let records = state
            .store
            .pull_requests(&report.project)
            .await
            .map_err(|e| format!("cannot read what it was told: {e}"))?;
        match records
            .into_iter()
            .find(|r| r.number == report.number as i64)
            .and_then(|r| r.feedback)
        {
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| format!("what it was told cannot be read back: {e}")),
            None => Ok(Written::default()),
        }
    }

    async fn save(&self, state: &SharedState, report: &Report) {
        let Ok(text) = serde_json::to_string(self) else {
            return;
        };
        if let Err(error) = state
            .store
            .set_pull_request_feedback(&report.project, report.number as i64, &text)
            .await
        {
            tracing::warn!(
                "previews of `{}`: cannot keep what pull request #{} was told: {error}",
                report.project,
                report.number
            );
        }
    }
}

async fn client(state: &SharedState, project: &str) -> Result<Option<ForgeClient>, String> {
    let record = state
        .store
        .project(project)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the project is gone")?;
    let spec = preview_spec::parse_spec(&record.file, &record.source).map_err(|e| e.to_string())?;
    let Some(forge) = spec.previews.and_then(|p| p.forge) else {
        return Ok(None);
    };
    let settings = ForgeSettings::of(&forge);
    if settings.token.is_none() || observe::remote(settings.kind).is_none() {
        return Ok(None);
    }
    observe::client(state, project, &settings).await.map(Some)
}

/// GitLab refuses a status its commit already has ("Cannot transition status via :run from :running"): that one
/// was written before.
fn already_set(error: &ForgeError) -> bool {
    matches!(error, ForgeError::Refused { status: 400, message: Some(message), .. }
        if message.contains("Cannot transition status"))
}

/// The commit status's description: the forges' shortest limit (GitHub's 140 characters) for all.
fn description(text: &str) -> String {
    text.chars().take(140).collect()
}

async fn write(state: &SharedState, report: &Report, written: &mut Written) -> Result<(), String> {
    let Some(client) = client(state, &report.project).await? else {
        return Ok(());
    };
    let key = &report.key;
    // The sticky comment: edited in place, made once.
    let text = render(report);
    if written.comment_text.as_deref() != Some(text.as_str()) {
        let mut edited = false;
        if let Some(id) = written.comment {
            edited = client
                .edit_comment(report.number, id, &text)
                .await
                .map_err(|e| e.to_string())?
                .is_some();
        }
        if !edited {
            // The bot's user, when the token may say who it is (an installation token may not): its comment with
            // the marker is found again; without it, a comment is made and its id kept.
            if written.bot.is_none() {
                written.bot = client.current_user().await.ok();
            }
            let marker = marker(&report.project);
            let found = match &written.bot {
                Some(bot) => client
                    .comments(report.number)
                    .await
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .find(|c| c.author == *bot && c.body.contains(&marker)),
                None => None,
            };
            let id = match found {
                Some(comment) => {
                    client
                        .edit_comment(report.number, comment.id, &text)
                        .await
                        .map_err(|e| e.to_string())?;
                    comment.id
                }
                None => {
                    client
                        .create_comment(report.number, &text)
                        .await
                        .map_err(|e| e.to_string())?
                        .id
                }
            };
            written.comment = Some(id);
        }
        written.comment_text = Some(text);
    }
    // Heads given up for this one: a status still running ends as canceled, a deployment in progress as inactive.
    let superseded: Vec<String> = written
        .statuses
        .iter()
        .filter(|(head, state)| **head != key.head && **state == CommitState::Running)
        .map(|(head, _)| head.clone())
        .collect();
    let context = format!("preview/{}", report.project);
    for head in superseded {
        let described = description(&format!("superseded by commit {}", short(&key.head)));
        match client
            .set_status(&head, CommitState::Canceled, &context, &described, None)
            .await
        {
            Ok(()) => {}
            Err(error) if already_set(&error) => {}
            Err(error) => return Err(error.to_string()),
        }
        written.statuses.insert(head, CommitState::Canceled);
    }
    // The head's commit status.
    let url = report.urls.first().map(|(_, url)| url.as_str());
    let (status, described) = match key.stage {
        Stage::Waiting | Stage::Removed => (None, String::new()),
        Stage::Deploying => (
            Some(CommitState::Running),
            "deploying the preview".to_owned(),
        ),
        Stage::Live => (
            Some(CommitState::Success),
            description(&format!("live: {}", url.unwrap_or("no public URL"))),
        ),
        Stage::Failed => (Some(CommitState::Failure), description(&failure(report))),
    };
    if let Some(status) = status
        && written.statuses.get(&key.head) != Some(&status)
    {
        let target = if key.stage == Stage::Live { url } else { None };
        match client
            .set_status(&key.head, status, &context, &described, target)
            .await
        {
            Ok(()) => {}
            Err(error) if already_set(&error) => {}
            Err(error) => return Err(error.to_string()),
        }
        written.statuses.insert(key.head.clone(), status);
    }
    // GitHub's deployments: one per head, retired when the preview goes.
    let wanted = match key.stage {
        Stage::Deploying => Some(DeploymentState::InProgress),
        Stage::Live => Some(DeploymentState::Success),
        Stage::Failed => Some(DeploymentState::Failure),
        Stage::Waiting | Stage::Removed => None,
    };
    if let Some(wanted) = wanted {
        let id = match written.deployments.get(&key.head) {
            Some((id, _)) => Some(*id),
            None => client
                .create_deployment(
                    &key.head,
                    &report.environment,
                    "a preview of the pull request",
                )
                .await
                .map_err(|e| e.to_string())?,
        };
        if let Some(id) = id {
            let entry = written
                .deployments
                .entry(key.head.clone())
                .or_insert((id, None));
            if entry.1 != Some(wanted) {
                let environment_url = if key.stage == Stage::Live { url } else { None };
                client
                    .set_deployment_status(id, wanted, environment_url, None, &described)
                    .await
                    .map_err(|e| e.to_string())?;
                entry.1 = Some(wanted);
            }
        }
    }
    // Retired: every deployment once the preview is gone; those of other heads once a newer one is live, and a
    // deployment of another head that never became live as soon as it is given up.
    let retire: Vec<(String, u64)> = written
        .deployments
        .iter()
        .filter(|(head, (_, last))| {
            let other = **head != key.head;
            (key.stage == Stage::Removed
                || (other && key.stage == Stage::Live)
                || (other && *last == Some(DeploymentState::InProgress)))
                && *last != Some(DeploymentState::Inactive)
        })
        .map(|(head, (id, _))| (head.clone(), *id))
        .collect();
    for (head, id) in retire {
        client
            .set_deployment_status(
                id,
                DeploymentState::Inactive,
                None,
                None,
                "the preview moved on or was removed",
            )
            .await
            .map_err(|e| e.to_string())?;
        if let Some(entry) = written.deployments.get_mut(&head) {
            entry.1 = Some(DeploymentState::Inactive);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn text_from_a_pull_request_is_one_inert_line() {
        let hostile = "fix\n### Preview: live\n| web | https://evil.example |\n![x](https://evil.example/a.png) <b>hi</b> @org/team #12 !7";
        let escaped = escape(hostile);
        assert!(!escaped.contains('\n'));
        for raw in [
            "###", "| web |", "https://", "![x](", "<b>", "@org", "#12", "!7",
        ] {
            assert!(!escaped.contains(raw), "{raw} in {escaped}");
        }
        // What it says is still there, for people.
        assert!(escaped.contains("evil\\.example") && escaped.contains("org/team"));
        assert_eq!(escape(&"x".repeat(1000)).len(), 300);
    }
}
