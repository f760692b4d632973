//! What the reconciler knows of a project's pull requests, brought up to date from their source of truth: the
//! forge's API (a listing of the open ones at start, every `forge.resync` and on `previews sync`; a read of each one
//! a webhook told of since), or for `forge.kind: local` the branches of a repository on this machine. A webhook's
//! word is only a hint until the forge confirms it; when the forge cannot be asked, the hint is acted on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use preview_forge::PullState;
use preview_forge::api::Api;
use preview_resolve::PreviewContext;
use preview_spec::{Forge as ForgeSpec, ForgeKind};
use preview_store::{Observation, PullRequestRecord};

use crate::api::SharedState;
use crate::forge_client::ForgeClient;

/// Where a project's forge is and how it is reached.
pub(crate) struct ForgeSettings {
    pub kind: ForgeKind,
    pub repository: String,
    /// The API's base URL (remote forges).
    pub api_base: String,
    /// Where the repository is fetched from (remote forges).
    pub clone_url: String,
    /// The project secret holding the API token.
    pub token: Option<String>,
    /// How often the open pull requests are listed, when the spec says.
    pub resync: Option<Duration>,
}

impl ForgeSettings {
    pub(crate) fn of(forge: &ForgeSpec) -> ForgeSettings {
        let web = forge.url.clone().unwrap_or_else(|| {
            match forge.kind {
                ForgeKind::Gitlab => "https://gitlab.com",
                _ => "https://github.com",
            }
            .to_owned()
        });
        let api_base = match (forge.api_url.clone(), remote(forge.kind)) {
            (Some(url), _) => url,
            (None, Some(kind)) if forge.url.is_none() && kind == preview_forge::Forge::Github => {
                "https://api.github.com".to_owned()
            }
            (None, Some(kind)) => Api::default_base(kind, &web),
            (None, None) => String::new(),
        };
        ForgeSettings {
            kind: forge.kind,
            repository: forge.repository.clone(),
            api_base,
            clone_url: forge
                .clone_url
                .clone()
                .unwrap_or_else(|| format!("{web}/{}.git", forge.repository)),
            token: forge.token.clone(),
            resync: forge.resync,
        }
    }

    /// What a preview of pull request `number`, on `branch` at `commit`, knows of it (its built-ins).
    pub(crate) fn preview_context(
        &self,
        number: u64,
        branch: &str,
        commit: &str,
    ) -> PreviewContext {
        PreviewContext {
            forge: forge_name(self.kind).to_owned(),
            repository: self.repository.clone(),
            number,
            branch: branch.to_owned(),
            commit: commit.to_owned(),
        }
    }

    /// The forge's reference of a pull request's head.
    pub(crate) fn head_reference(&self, number: i64) -> String {
        match self.kind {
            ForgeKind::Gitlab => format!("refs/merge-requests/{number}/head"),
            _ => format!("refs/pull/{number}/head"),
        }
    }

    /// The user name a token is sent under when fetching.
    pub(crate) fn token_user(&self) -> &'static str {
        match self.kind {
            ForgeKind::Gitlab => "oauth2",
            _ => "x-access-token",
        }
    }
}

/// How the spec names the forge (`PREVIEW_FORGE` in a preview's variables).
pub(crate) fn forge_name(kind: ForgeKind) -> &'static str {
    match kind {
        ForgeKind::Github => "github",
        ForgeKind::Gitlab => "gitlab",
        ForgeKind::Gitea => "gitea",
        ForgeKind::Forgejo => "forgejo",
        ForgeKind::Local => "local",
    }
}

/// The forge crate's name for a remote forge; `None` for local branches.
pub(crate) fn remote(kind: ForgeKind) -> Option<preview_forge::Forge> {
    match kind {
        ForgeKind::Github => Some(preview_forge::Forge::Github),
        ForgeKind::Gitlab => Some(preview_forge::Forge::Gitlab),
        ForgeKind::Gitea => Some(preview_forge::Forge::Gitea),
        ForgeKind::Forgejo => Some(preview_forge::Forge::Forgejo),
        ForgeKind::Local => None,
    }
}

/// A state as the store keeps it.
pub(crate) fn observation(state: &PullState, confirmed: bool) -> Observation {
    Observation {
        number: state.number as i64,
        state: serde_json::to_string(state).unwrap_or_default(),
        open: state.open,
        head: state.head_sha.clone(),
        confirmed,
    }
}

/// Writes what the source of truth says of a pull request, unless the store already says exactly that.
async fn confirm(
    state: &SharedState,
    project: &str,
    known: Option<&PullRequestRecord>,
    seen: &PullState,
) -> Result<(), String> {
    let seen = observation(seen, true);
    if let Some(known) = known
        && known.confirmed
        && known.state == seen.state
    {
        return Ok(());
    }
    state
        .store
        .confirm_pull_request(project, &seen, known.map(|k| k.version))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The state of a pull request the forge no longer has open, when it cannot say more.
fn closed(known: &PullRequestRecord) -> Option<PullState> {
    let mut state: PullState = serde_json::from_str(&known.state).ok()?;
    state.open = false;
    Some(state)
}

/// The API client of a project's forge, with its token revealed from the vault.
pub(crate) async fn client(
    state: &SharedState,
    project: &str,
    settings: &ForgeSettings,
) -> Result<ForgeClient, String> {
    let kind = remote(settings.kind).ok_or("branches of a local repository have no API")?;
    let token = match &settings.token {
        Some(name) => Some(
            state
                .vault
                .recent_values(project, name)
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| {
                    format!(
                        "the forge token `{name}` has no value; set it with `preview secret set {name} --scope project`"
                    )
                })?,
        ),
        None => None,
    };
    ForgeClient::new(
        Api::new(kind, &settings.api_base, &settings.repository),
        token,
    )
}

/// Brings a remote forge's pull requests up to date: every open one when `list`, else those a webhook told of.
pub(crate) async fn from_forge(
    state: &SharedState,
    project: &str,
    client: &ForgeClient,
    records: &[PullRequestRecord],
    list: bool,
) -> Result<(), String> {
    let by_number = |n: u64| records.iter().find(|r| r.number == n as i64);
    if list {
        let open = client.open_pulls().await.map_err(|e| e.to_string())?;
        for pull in &open {
            let known = by_number(pull.number);
            // A close a webhook told of that the listing does not show yet: the pull request itself says.
            let pull = match known {
                Some(known) if !known.open && !known.confirmed => {
                    match client.pull(pull.number).await {
                        Ok(Some(read)) => read,
                        Ok(None) => continue,
                        Err(error) => return Err(error.to_string()),
                    }
                }
                _ => pull.clone(),
            };
            confirm(state, project, known, &pull).await?;
        }
        for known in records.iter().filter(|r| r.open) {
            if open.iter().any(|p| p.number as i64 == known.number) {
                continue;
            }
            // Listed as open no more: read it, to know whether it was merged or closed (or slipped between two
            // pages of the listing, and is open after all).
            let now = match client.pull(known.number as u64).await {
                Ok(Some(pull)) => Some(pull),
                Ok(None) => closed(known),
                Err(error) => return Err(error.to_string()),
            };
            if let Some(now) = now {
                confirm(state, project, Some(known), &now).await?;
            }
        }
        return Ok(());
    }
    // One pull request the forge cannot answer for keeps none of the others from being confirmed.
    let mut first_error = None;
    for known in records.iter().filter(|r| !r.confirmed) {
        let now = match client.pull(known.number as u64).await {
            Ok(Some(pull)) => Some(pull),
            Ok(None) => closed(known),
            Err(error) => {
                first_error.get_or_insert(format!("pull request #{}: {error}", known.number));
                continue;
            }
        };
        if let Some(now) = now {
            confirm(state, project, Some(known), &now).await?;
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Reads a local repository the operator named, whoever owns it, without running anything its configuration names.
async fn git(directory: &Path, args: &[&str]) -> Result<String, String> {
    let mut all = vec!["-c", "safe.directory=*", "-c", "core.fsmonitor=false"];
    all.extend_from_slice(args);
    crate::source::run_git(
        directory,
        &all,
        &[
            ("GIT_CONFIG_NOSYSTEM", "1"),
            ("GIT_CONFIG_GLOBAL", "/dev/null"),
        ],
        crate::source::GIT_PATIENCE,
    )
    .await
}

/// The repository whose branches act as pull requests: `forge.repository`, relative to the spec's directory.
pub(crate) fn local_repository(directory: Option<&str>, repository: &str) -> PathBuf {
    let path = Path::new(repository);
    match directory {
        Some(dir) if path.is_relative() => Path::new(dir).join(path),
        _ => path.to_path_buf(),
    }
}

/// The default branch of a local repository: where its HEAD points.
pub(crate) async fn default_branch(repository: &Path) -> Result<String, String> {
    git(repository, &["symbolic-ref", "--quiet", "--short", "HEAD"])
        .await
        .map_err(|e| format!("{} has no default branch: {e}", repository.display()))
}

/// Brings the pull requests of a local repository up to date: every branch but the default one is an open pull
/// request at its tip; a branch that is gone is a closed one. A branch keeps its number while it exists, and gets it
/// back when it comes back.
pub(crate) async fn from_branches(
    state: &SharedState,
    project: &str,
    repository: &Path,
    records: &[PullRequestRecord],
) -> Result<(), String> {
    let default = default_branch(repository).await?;
    let listing = git(
        repository,
        &[
            "for-each-ref",
            "--format=%(refname:short)%00%(objectname)%00%(subject)%00%(authorname)",
            "refs/heads",
        ],
    )
    .await
    .map_err(|e| format!("cannot list the branches of {}: {e}", repository.display()))?;
    let states: Vec<(PullRequestRecord, PullState)> = records
        .iter()
        .filter_map(|r| Some((r.clone(), serde_json::from_str(&r.state).ok()?)))
        .collect();
    let mut next = records.iter().map(|r| r.number).max().unwrap_or(0) + 1;
    let mut present = Vec::new();
    for line in listing.lines() {
        let mut parts = line.split('\0');
        let (Some(branch), Some(head)) = (parts.next(), parts.next()) else {
            continue;
        };
        if branch == default {
            continue;
        }
        let subject = parts.next().unwrap_or_default();
        let author = parts.next().unwrap_or_default();
        let known = states
            .iter()
            .filter(|(_, s)| s.head_ref == branch)
            .max_by_key(|(r, _)| (r.open, r.number))
            .map(|(r, _)| r);
        let number = match known {
            Some(record) => record.number,
            None => {
                next += 1;
                next - 1
            }
        };
        present.push(number);
        let now = PullState {
            number: number as u64,
            open: true,
            head_sha: head.to_owned(),
            head_ref: branch.to_owned(),
            base_ref: default.clone(),
            fork: false,
            labels: Vec::new(),
            draft: false,
            author: author.to_owned(),
            title: subject.to_owned(),
            url: String::new(),
        };
        confirm(state, project, known, &now).await?;
    }
    for (record, pull) in &states {
        if record.open && !present.contains(&record.number) {
            let mut gone = pull.clone();
            gone.open = false;
            confirm(state, project, Some(record), &gone).await?;
        }
    }
    Ok(())
}

/// The paths a local branch changes against the default branch (since they parted).
pub(crate) async fn changed_paths_local(
    repository: &Path,
    base: &str,
    head: &str,
) -> Result<Vec<String>, String> {
    let listing = git(
        repository,
        &[
            "diff",
            "--name-only",
            "--no-renames",
            &format!("{base}...{head}"),
        ],
    )
    .await?;
    Ok(listing.lines().map(str::to_owned).collect())
}
