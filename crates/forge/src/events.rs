//! An authenticated delivery's event, in one shape whatever forge sent it: a ping, a pull request's (merge
//! request's) state after something happened to it, or something `preview` does not act on.
//!
//! GitHub (`X-GitHub-Event: pull_request`): `action` is `opened`, `synchronize` (a push), `closed` (with
//! `pull_request.merged`), `reopened`, `labeled`, `unlabeled`, `edited`, `ready_for_review`, `converted_to_draft`, …;
//! `number`, `pull_request.head.sha`/`.ref`/`.repo.full_name`, `pull_request.base.ref`/`.repo.full_name`,
//! `pull_request.labels[].name`, `pull_request.draft`, `pull_request.state`, `pull_request.user.login`.
//! Gitea and Forgejo send the same shape under `X-Gitea-Event` / `X-Forgejo-Event: pull_request` (the finer
//! `pull_request_sync` and `pull_request_label` are their `…-Event-Type`, also read), with their own actions:
//! `synchronized` for a push, `label_updated` and `label_cleared`.
//! GitLab (`X-Gitlab-Event: Merge Request Hook`): `object_attributes.iid`, `.action` (`open`, `update`, `close`,
//! `merge`, `reopen`, …; an `update` is a push only when `.oldrev` is there), `.last_commit.id`, `.source_branch`,
//! `.target_branch`, `.state`, `.draft`, `.source_project_id`/`.target_project_id`; `labels[].title`;
//! `project.path_with_namespace`; `user.username`.

use serde_json::Value;

use crate::Forge;

/// What happened to a pull request, as far as previews care.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Opened,
    /// New commits: the head moved.
    Pushed,
    Closed,
    Merged,
    Reopened,
    /// Its labels changed.
    Labeled,
    /// Marked ready for review, or back to draft.
    DraftChanged,
    /// Anything else (edited, assigned, reviewed, …): the state is still worth looking at.
    Other(String),
}

impl Action {
    /// How it is written in listings: `opened`, `pushed`, …, or the forge's own word for anything else.
    pub fn name(&self) -> &str {
        match self {
            Action::Opened => "opened",
            Action::Pushed => "pushed",
            Action::Closed => "closed",
            Action::Merged => "merged",
            Action::Reopened => "reopened",
            Action::Labeled => "labeled",
            Action::DraftChanged => "draft_changed",
            Action::Other(action) => action,
        }
    }
}

/// A pull request as the event shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PullRequest {
    pub number: u64,
    pub action: Action,
    /// Still open after the event.
    pub open: bool,
    pub head_sha: String,
    pub head_ref: String,
    pub base_ref: String,
    /// `owner/name` of the repository the pull request targets, and of the one its head lives in.
    pub repository: String,
    pub head_repository: String,
    /// Its head lives in another repository (a fork).
    pub fork: bool,
    pub labels: Vec<String>,
    pub draft: bool,
    pub author: String,
    pub title: String,
    /// Where people read it on the forge.
    pub url: String,
}

impl PullRequest {
    /// Its state after the event, in the shape the forge's API gives.
    pub fn state(&self) -> crate::PullState {
        crate::PullState {
            number: self.number,
            open: self.open,
            head_sha: self.head_sha.clone(),
            head_ref: self.head_ref.clone(),
            base_ref: self.base_ref.clone(),
            fork: self.fork,
            labels: self.labels.clone(),
            draft: self.draft,
            author: self.author.clone(),
            title: self.title.clone(),
            url: self.url.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Event {
    /// The forge checking the hook (GitHub's `ping`, GitLab's test deliveries).
    Ping,
    PullRequest(Box<PullRequest>),
    /// An event `preview` does not act on; acknowledged all the same.
    Ignored {
        event: String,
    },
}

/// Reads an authenticated delivery's body. Refuses a body that is not what its event says, naming the field.
pub fn read_event(forge: Forge, event: &str, body: &[u8]) -> Result<Event, String> {
    let is_pull_request = match forge {
        Forge::Github => event == "pull_request",
        Forge::Gitea | Forge::Forgejo => matches!(
            event,
            "pull_request" | "pull_request_sync" | "pull_request_label"
        ),
        Forge::Gitlab => event == "Merge Request Hook",
    };
    if event == "ping" || (forge == Forge::Gitlab && event == "System Hook") {
        return Ok(Event::Ping);
    }
    if !is_pull_request {
        return Ok(Event::Ignored {
            event: event.to_owned(),
        });
    }
    let json: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let pull_request = match forge {
        Forge::Gitlab => gitlab(&json)?,
        _ => github_or_gitea(forge, &json)?,
    };
    Ok(Event::PullRequest(Box::new(pull_request)))
}

fn text(json: &Value, path: &str) -> Result<String, String> {
    json.pointer(path)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| {
            format!(
                "the event has no `{}`",
                path.trim_start_matches('/').replace('/', ".")
            )
        })
}

fn number(json: &Value, path: &str) -> Result<u64, String> {
    json.pointer(path).and_then(Value::as_u64).ok_or_else(|| {
        format!(
            "the event has no number `{}`",
            path.trim_start_matches('/').replace('/', ".")
        )
    })
}

fn github_or_gitea(forge: Forge, json: &Value) -> Result<PullRequest, String> {
    let action = text(json, "/action")?;
    let merged = json
        .pointer("/pull_request/merged")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let action = match action.as_str() {
        "opened" => Action::Opened,
        "synchronize" if forge == Forge::Github => Action::Pushed,
        "synchronized" if forge != Forge::Github => Action::Pushed,
        "closed" if merged => Action::Merged,
        "closed" => Action::Closed,
        "reopened" => Action::Reopened,
        "labeled" | "unlabeled" | "label_updated" | "label_cleared" => Action::Labeled,
        "ready_for_review" | "converted_to_draft" => Action::DraftChanged,
        other => Action::Other(other.to_owned()),
    };
    let repository = text(json, "/pull_request/base/repo/full_name")
        .or_else(|_| text(json, "/repository/full_name"))?;
    // A head repository that is gone (a deleted fork) is not the base one.
    let head_repository = text(json, "/pull_request/head/repo/full_name").unwrap_or_default();
    let labels = json
        .pointer("/pull_request/labels")
        .and_then(Value::as_array)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|l| l["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Ok(PullRequest {
        number: number(json, "/number").or_else(|_| number(json, "/pull_request/number"))?,
        open: text(json, "/pull_request/state")? == "open",
        head_sha: crate::commit_id(
            text(json, "/pull_request/head/sha")?,
            "pull_request.head.sha",
        )?,
        head_ref: text(json, "/pull_request/head/ref")?,
        base_ref: text(json, "/pull_request/base/ref")?,
        fork: head_repository != repository,
        repository,
        head_repository,
        labels,
        draft: json
            .pointer("/pull_request/draft")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        author: text(json, "/pull_request/user/login").unwrap_or_default(),
        title: text(json, "/pull_request/title").unwrap_or_default(),
        url: text(json, "/pull_request/html_url").unwrap_or_default(),
        action,
    })
}

fn gitlab(json: &Value) -> Result<PullRequest, String> {
    let attributes = json
        .get("object_attributes")
        .ok_or("the event has no `object_attributes`")?;
    let action = attributes["action"].as_str().unwrap_or_default();
    let action = match action {
        "open" => Action::Opened,
        // An update is a push only when it says which commit the head was before.
        "update" if attributes.get("oldrev").is_some_and(|r| !r.is_null()) => Action::Pushed,
        "update" if json.pointer("/changes/labels").is_some() => Action::Labeled,
        "update" if json.pointer("/changes/draft").is_some() => Action::DraftChanged,
        "close" => Action::Closed,
        "merge" => Action::Merged,
        "reopen" => Action::Reopened,
        other => Action::Other(other.to_owned()),
    };
    let repository = text(json, "/project/path_with_namespace")
        .or_else(|_| text(json, "/object_attributes/target/path_with_namespace"))?;
    let head_repository = text(json, "/object_attributes/source/path_with_namespace")
        .unwrap_or_else(|_| repository.clone());
    let fork = match (
        attributes["source_project_id"].as_u64(),
        attributes["target_project_id"].as_u64(),
    ) {
        (Some(source), Some(target)) => source != target,
        _ => head_repository != repository,
    };
    let labels = json
        .get("labels")
        .and_then(Value::as_array)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|l| l["title"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Ok(PullRequest {
        number: number(json, "/object_attributes/iid")?,
        open: text(json, "/object_attributes/state")? == "opened",
        head_sha: crate::commit_id(
            text(json, "/object_attributes/last_commit/id")?,
            "object_attributes.last_commit.id",
        )?,
        head_ref: text(json, "/object_attributes/source_branch")?,
        base_ref: text(json, "/object_attributes/target_branch")?,
        repository,
        head_repository,
        fork,
        labels,
        draft: attributes["draft"]
            .as_bool()
            .or_else(|| attributes["work_in_progress"].as_bool())
            .unwrap_or(false),
        author: text(json, "/user/username").unwrap_or_default(),
        title: text(json, "/object_attributes/title").unwrap_or_default(),
        url: text(json, "/object_attributes/url").unwrap_or_default(),
        action,
    })
}

#[cfg(test)]
mod tests;
