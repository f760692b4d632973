//! The forges' REST APIs as `preview` uses them, pure: which request lists a repository's open pull requests,
//! reads one, or lists the paths it changes; which ones give feedback on a pull request (its comments, a commit
//! status on its head, on GitHub a deployment and its statuses); and how each forge's answer (and its pagination
//! and rate-limit headers) reads. The daemon sends the requests; nothing here does I/O.
//!
//! - GitHub: `{base}/repos/{owner}/{name}/pulls[/{number}[/files]]`, `Authorization: Bearer`, pages by `Link`.
//! - GitLab: `{base}/projects/{url-encoded path}/merge_requests[/{iid}[/diffs]]`, `PRIVATE-TOKEN`, pages by
//!   `X-Next-Page`; a merge request is numbered by its `iid`, and comes from a fork when its source project is not
//!   its target.
//! - Gitea and Forgejo: GitHub's paths and fields, `limit` instead of `per_page`, `Authorization: token`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{Forge, Headers};

/// A pull request (merge request) as the forge shows it now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PullState {
    pub number: u64,
    /// Open (not closed, not merged).
    pub open: bool,
    pub head_sha: String,
    pub head_ref: String,
    pub base_ref: String,
    /// Its head lives in another repository (a fork), or in one that no longer exists.
    pub fork: bool,
    pub labels: Vec<String>,
    pub draft: bool,
    pub author: String,
    pub title: String,
    /// Where people read it on the forge.
    pub url: String,
}

/// One repository's pull requests through its forge's REST API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Api {
    forge: Forge,
    /// The API's root, without a trailing slash.
    base: String,
    /// `owner/name`; on GitLab `group/subgroup/name`.
    repository: String,
}

/// A request to send as it is. The token's header is not among `headers`: the sender adds it
/// (`Api::authorization`), so that a request can be shown without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRequest {
    pub method: &'static str,
    /// The full URL, query included.
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    /// JSON, sent with `Content-Type: application/json` (which the sender adds); reads have none.
    pub body: Option<String>,
}

/// A comment on a pull request (on GitLab, a merge request's note).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    pub id: u64,
    /// Its author's login (GitLab: username).
    pub author: String,
    pub body: String,
}

/// A commit status as `preview` sets it on a pull request's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CommitState {
    Pending,
    /// Only GitLab tells it from `Pending`; GitHub and Gitea show it as pending.
    Running,
    Success,
    Failure,
    /// Given up for a newer head: GitLab's `canceled`, GitHub's and Gitea's `error`.
    Canceled,
}

/// A GitHub deployment's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DeploymentState {
    InProgress,
    Success,
    Failure,
    Inactive,
}

/// GitHub refuses a commit or deployment status whose description is longer.
const GITHUB_DESCRIPTION: usize = 140;

impl Api {
    pub fn new(forge: Forge, base: &str, repository: &str) -> Api {
        Api {
            forge,
            base: base.trim_end_matches('/').to_owned(),
            repository: repository.trim_matches('/').to_owned(),
        }
    }

    /// The API root of a forge whose pages are at `web` (`https://gitlab.com`): GitHub's is
    /// `https://api.github.com` (a GitHub Enterprise server's `<web>/api/v3`), GitLab's `<web>/api/v4`, Gitea's
    /// and Forgejo's `<web>/api/v1`.
    pub fn default_base(forge: Forge, web: &str) -> String {
        let web = web.trim_end_matches('/');
        match forge {
            Forge::Github => {
                let host = web.split_once("://").map_or(web, |(_, host)| host);
                if matches!(host, "" | "github.com" | "www.github.com") {
                    "https://api.github.com".to_owned()
                } else {
                    format!("{web}/api/v3")
                }
            }
            Forge::Gitlab => format!("{web}/api/v4"),
            Forge::Gitea | Forge::Forgejo => format!("{web}/api/v1"),
        }
    }

    pub fn forge(&self) -> Forge {
        self.forge
    }

    /// One page (from 1) of the repository's open pull requests.
    pub fn list_open(&self, page: u32) -> ApiRequest {
        self.request(&match self.forge {
            Forge::Github => format!("pulls?state=open&per_page=100&page={page}"),
            Forge::Gitlab => format!("merge_requests?state=opened&per_page=100&page={page}"),
            Forge::Gitea | Forge::Forgejo => format!("pulls?state=open&page={page}&limit=50"),
        })
    }

    /// One pull request, by its number (GitLab: its `iid`).
    pub fn get(&self, number: u64) -> ApiRequest {
        self.request(&match self.forge {
            Forge::Gitlab => format!("merge_requests/{number}"),
            _ => format!("pulls/{number}"),
        })
    }

    /// One page (from 1) of the files a pull request changes.
    pub fn files(&self, number: u64, page: u32) -> ApiRequest {
        self.request(&match self.forge {
            Forge::Github => format!("pulls/{number}/files?per_page=100&page={page}"),
            Forge::Gitlab => format!("merge_requests/{number}/diffs?per_page=100&page={page}"),
            Forge::Gitea | Forge::Forgejo => format!("pulls/{number}/files?page={page}&limit=50"),
        })
    }

    /// A read of `rest`, a path under the repository's.
    fn request(&self, rest: &str) -> ApiRequest {
        self.call("GET", &format!("{}/{rest}", self.project()), None)
    }

    /// A write of `body` to `rest`, a path under the repository's.
    fn write(&self, method: &'static str, rest: &str, body: Value) -> ApiRequest {
        self.call(method, &format!("{}/{rest}", self.project()), Some(body))
    }

    /// A request to `path`, under the API's root.
    fn call(&self, method: &'static str, path: &str, body: Option<Value>) -> ApiRequest {
        let headers = match self.forge {
            Forge::Github => vec![
                ("Accept", "application/vnd.github+json".to_owned()),
                ("X-GitHub-Api-Version", "2022-11-28".to_owned()),
            ],
            _ => vec![("Accept", "application/json".to_owned())],
        };
        ApiRequest {
            method,
            url: format!("{}/{path}", self.base),
            headers,
            body: body.map(|body| body.to_string()),
        }
    }

    /// The repository's path under the API's root.
    fn project(&self) -> String {
        match self.forge {
            Forge::Gitlab => format!("projects/{}", percent_encode(&self.repository)),
            _ => format!("repos/{}", self.owner_and_name()),
        }
    }

    fn owner_and_name(&self) -> String {
        let segments: Vec<String> = self.repository.split('/').map(percent_encode).collect();
        segments.join("/")
    }

    /// The header that carries `token`, and its value.
    pub fn authorization(&self, token: &str) -> (&'static str, String) {
        match self.forge {
            Forge::Github => ("Authorization", format!("Bearer {token}")),
            Forge::Gitlab => ("PRIVATE-TOKEN", token.to_owned()),
            Forge::Gitea | Forge::Forgejo => ("Authorization", format!("token {token}")),
        }
    }

    /// Reads an answer to `list_open`.
    pub fn read_list(&self, body: &[u8]) -> Result<Vec<PullState>, String> {
        items(body)?
            .iter()
            .enumerate()
            .map(|(i, item)| {
                self.pull_state(item)
                    .map_err(|e| format!("the answer's item {i} has {e}"))
            })
            .collect()
    }

    /// Reads an answer to `get`.
    pub fn read_one(&self, body: &[u8]) -> Result<PullState, String> {
        let json = one(body)?;
        self.pull_state(&json)
            .map_err(|e| format!("the answer has {e}"))
    }

    /// Reads an answer to `files`: each file's path, and its path before when it was renamed.
    pub fn read_files(&self, body: &[u8]) -> Result<Vec<String>, String> {
        let (path, before) = match self.forge {
            Forge::Gitlab => ("new_path", "old_path"),
            _ => ("filename", "previous_filename"),
        };
        let mut paths = Vec::new();
        for (i, item) in items(body)?.iter().enumerate() {
            let path = item[path]
                .as_str()
                .ok_or_else(|| format!("the answer's item {i} has no `{path}`"))?;
            paths.push(path.to_owned());
            if let Some(before) = item[before].as_str()
                && before != path
            {
                paths.push(before.to_owned());
            }
        }
        Ok(paths)
    }

    fn pull_state(&self, json: &Value) -> Result<PullState, String> {
        // GitHub and Gitea give labels as objects, GitLab as their names.
        let labels = json["labels"]
            .as_array()
            .map(|labels| {
                labels
                    .iter()
                    .filter_map(|l| l.as_str().or_else(|| l["name"].as_str()))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let optional = |path| text(json, path).unwrap_or_default();
        if self.forge == Forge::Gitlab {
            return Ok(PullState {
                number: number(json, "/iid")?,
                open: text(json, "/state")? == "opened",
                head_sha: crate::commit_id(text(json, "/sha")?, "sha")?,
                head_ref: text(json, "/source_branch")?,
                base_ref: text(json, "/target_branch")?,
                fork: number(json, "/source_project_id")? != number(json, "/target_project_id")?,
                labels,
                draft: json["draft"]
                    .as_bool()
                    .or_else(|| json["work_in_progress"].as_bool())
                    .unwrap_or(false),
                author: optional("/author/username"),
                title: optional("/title"),
                url: optional("/web_url"),
            });
        }
        // A head repository that is gone (a deleted fork) is `null`.
        let head_repository = text(json, "/head/repo/full_name").ok();
        let base_repository = text(json, "/base/repo/full_name")?;
        Ok(PullState {
            number: number(json, "/number")?,
            open: text(json, "/state")? == "open" && json["merged_at"].is_null(),
            head_sha: crate::commit_id(text(json, "/head/sha")?, "head.sha")?,
            head_ref: text(json, "/head/ref")?,
            base_ref: text(json, "/base/ref")?,
            fork: head_repository.as_deref() != Some(base_repository.as_str()),
            labels,
            draft: json["draft"].as_bool().unwrap_or(false),
            author: optional("/user/login"),
            title: optional("/title"),
            url: optional("/html_url"),
        })
    }

    /// The page after `page`, from an answer's headers; `None` when `page` was the last. GitLab says it in
    /// `X-Next-Page` (empty on the last page), GitHub and Gitea in a `Link` with `rel="next"`.
    pub fn next_page(&self, headers: &dyn Headers, page: u32) -> Option<u32> {
        let next = match headers.get("X-Next-Page") {
            Some(next) if self.forge == Forge::Gitlab => next.trim().parse().ok(),
            _ => {
                let url = next_link(headers.get("Link")?)?;
                query_page(url).or(page.checked_add(1))
            }
        };
        // A "next" page that does not come after this one would be read again and again.
        next.filter(|&next| next > page)
    }
}

/// Feedback on a pull request: its comments, a commit status on its head, and on GitHub a deployment.
impl Api {
    /// The user the token belongs to (`preview`'s own, to tell its comments from others').
    pub fn current_user(&self) -> ApiRequest {
        self.call("GET", "user", None)
    }

    /// Reads an answer to `current_user`: its login (GitLab: username).
    pub fn read_user(&self, body: &[u8]) -> Result<String, String> {
        let field = match self.forge {
            Forge::Gitlab => "/username",
            _ => "/login",
        };
        text(&one(body)?, field).map_err(|e| format!("the answer has {e}"))
    }

    /// One page (from 1) of a pull request's comments, oldest first (GitLab: its notes).
    pub fn comments(&self, number: u64, page: u32) -> ApiRequest {
        self.request(&match self.forge {
            Forge::Github => format!("issues/{number}/comments?per_page=100&page={page}"),
            Forge::Gitlab => format!(
                "merge_requests/{number}/notes?per_page=100&page={page}&sort=asc&order_by=created_at"
            ),
            Forge::Gitea | Forge::Forgejo => {
                format!("issues/{number}/comments?page={page}&limit=50")
            }
        })
    }

    /// Reads an answer to `comments`. GitLab's system notes ("added 1 commit") are no one's comments, and left
    /// out.
    pub fn read_comments(&self, body: &[u8]) -> Result<Vec<Comment>, String> {
        let mut comments = Vec::new();
        for (i, item) in items(body)?.iter().enumerate() {
            if self.forge == Forge::Gitlab && item["system"].as_bool() == Some(true) {
                continue;
            }
            comments.push(
                self.comment(item)
                    .map_err(|e| format!("the answer's item {i} has {e}"))?,
            );
        }
        Ok(comments)
    }

    /// Reads an answer to `create_comment` or `edit_comment`.
    pub fn read_comment(&self, body: &[u8]) -> Result<Comment, String> {
        self.comment(&one(body)?)
            .map_err(|e| format!("the answer has {e}"))
    }

    pub fn create_comment(&self, number: u64, text: &str) -> ApiRequest {
        let rest = match self.forge {
            Forge::Gitlab => format!("merge_requests/{number}/notes"),
            _ => format!("issues/{number}/comments"),
        };
        self.write("POST", &rest, json!({ "body": text }))
    }

    /// Replaces the text of comment `id` on pull request `number` (GitHub and Gitea name a comment by its id
    /// alone).
    pub fn edit_comment(&self, number: u64, id: u64, text: &str) -> ApiRequest {
        let body = json!({ "body": text });
        match self.forge {
            Forge::Gitlab => {
                self.write("PUT", &format!("merge_requests/{number}/notes/{id}"), body)
            }
            _ => self.write("PATCH", &format!("issues/comments/{id}"), body),
        }
    }

    /// Sets the status named `context` on commit `sha`.
    pub fn commit_status(
        &self,
        sha: &str,
        state: CommitState,
        context: &str,
        description: &str,
        target_url: Option<&str>,
    ) -> ApiRequest {
        let mut body = match self.forge {
            Forge::Github => json!({
                "state": github_state(state),
                "description": cut(description, GITHUB_DESCRIPTION),
                "context": context,
            }),
            Forge::Gitlab => json!({
                "state": match state {
                    CommitState::Pending => "pending",
                    CommitState::Running => "running",
                    CommitState::Success => "success",
                    CommitState::Failure => "failed",
                    CommitState::Canceled => "canceled",
                },
                "name": context,
                "description": description,
            }),
            Forge::Gitea | Forge::Forgejo => json!({
                "state": github_state(state),
                "context": context,
                "description": description,
            }),
        };
        if let Some(url) = target_url {
            body["target_url"] = json!(url);
        }
        self.write("POST", &format!("statuses/{sha}"), body)
    }

    /// A deployment of commit `sha` to `environment`, which GitHub shows on the pull request; `None` on forges
    /// without deployments. The environment is transient (it goes with the preview) and not production; GitHub
    /// neither merges the default branch into `sha` nor waits for its checks.
    pub fn create_deployment(
        &self,
        sha: &str,
        environment: &str,
        description: &str,
    ) -> Option<ApiRequest> {
        (self.forge == Forge::Github).then(|| {
            let body = json!({
                "ref": sha,
                "environment": environment,
                "description": description,
                "transient_environment": true,
                "production_environment": false,
                "auto_merge": false,
                "required_contexts": [],
            });
            self.write("POST", "deployments", body)
        })
    }

    /// Reads an answer to `create_deployment`: the deployment's id.
    pub fn read_deployment(&self, body: &[u8]) -> Result<u64, String> {
        number(&one(body)?, "/id").map_err(|e| format!("the answer has {e}"))
    }

    /// A new status of deployment `id`; `None` on forges without deployments. Earlier deployments of the
    /// environment are left as they are (`auto_inactive: false`): `preview` says itself which one is gone.
    pub fn deployment_status(
        &self,
        id: u64,
        state: DeploymentState,
        environment_url: Option<&str>,
        log_url: Option<&str>,
        description: &str,
    ) -> Option<ApiRequest> {
        (self.forge == Forge::Github).then(|| {
            let mut body = json!({
                "state": match state {
                    DeploymentState::InProgress => "in_progress",
                    DeploymentState::Success => "success",
                    DeploymentState::Failure => "failure",
                    DeploymentState::Inactive => "inactive",
                },
                "description": cut(description, GITHUB_DESCRIPTION),
                "auto_inactive": false,
            });
            if let Some(url) = environment_url {
                body["environment_url"] = json!(url);
            }
            if let Some(url) = log_url {
                body["log_url"] = json!(url);
            }
            self.write("POST", &format!("deployments/{id}/statuses"), body)
        })
    }

    fn comment(&self, json: &Value) -> Result<Comment, String> {
        let author = match self.forge {
            Forge::Gitlab => "/author/username",
            _ => "/user/login",
        };
        Ok(Comment {
            id: number(json, "/id")?,
            // A comment whose author is gone is nobody's, and so not `preview`'s.
            author: text(json, author).unwrap_or_default(),
            body: text(json, "/body")?,
        })
    }
}

/// GitHub's and Gitea's name for a state; they have no "running".
fn github_state(state: CommitState) -> &'static str {
    match state {
        CommitState::Pending | CommitState::Running => "pending",
        CommitState::Success => "success",
        CommitState::Failure => "failure",
        CommitState::Canceled => "error",
    }
}

/// `text`'s first `most` characters.
fn cut(text: &str, most: usize) -> String {
    text.chars().take(most).collect()
}

/// How long to wait before asking again, when an answer with `status`, `headers` and `body` says the client is
/// rate limited, given the current unix time: its `Retry-After` seconds (GitHub's secondary limits, GitLab), else
/// until the `X-RateLimit-Reset` (GitHub, Gitea) or `RateLimit-Reset` (GitLab) epoch second when no request is
/// left. A 429 that says nothing more waits a minute, and so does a 403 whose message says it is GitHub's
/// secondary rate limit, as GitHub asks. Any other answer (a 403 that is a refusal) is not a rate limit.
pub fn rate_limit_wait(
    status: u16,
    headers: &dyn Headers,
    body: &[u8],
    now_unix: u64,
) -> Option<Duration> {
    if status != 403 && status != 429 {
        return None;
    }
    let header = |name: &str| headers.get(name).map(str::trim);
    let seconds = |name: &str| header(name).and_then(|value| value.parse::<u64>().ok());
    if let Some(after) = seconds("Retry-After") {
        return Some(Duration::from_secs(after));
    }
    let remaining = header("X-RateLimit-Remaining").or_else(|| header("RateLimit-Remaining"));
    if remaining == Some("0") || status == 429 {
        let reset = seconds("X-RateLimit-Reset").or_else(|| seconds("RateLimit-Reset"));
        // A reset already past (clocks differ) still waits a moment rather than asking at once.
        return Some(Duration::from_secs(
            reset.map_or(60, |reset| reset.saturating_sub(now_unix).max(1)),
        ));
    }
    // The primary limit's reset says nothing of when a secondary one lifts.
    secondary_rate_limit(body).then_some(Duration::from_secs(60))
}

/// Whether GitHub's message says a secondary rate limit was hit (an older GitHub Enterprise server's, that an
/// abuse detection mechanism was triggered).
fn secondary_rate_limit(body: &[u8]) -> bool {
    let Ok(json) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    json["message"].as_str().is_some_and(|message| {
        let message = message.to_lowercase();
        message.contains("secondary rate limit") || message.contains("abuse detection")
    })
}

fn one(body: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON: {e}"))
}

fn items(body: &[u8]) -> Result<Vec<Value>, String> {
    match serde_json::from_slice(body) {
        Ok(Value::Array(items)) => Ok(items),
        Ok(_) => Err("the answer is not a list".to_owned()),
        Err(e) => Err(format!("the answer is not JSON: {e}")),
    }
}

fn field(path: &str) -> String {
    path.trim_start_matches('/').replace('/', ".")
}

fn text(json: &Value, path: &str) -> Result<String, String> {
    json.pointer(path)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("no `{}`", field(path)))
}

fn number(json: &Value, path: &str) -> Result<u64, String> {
    json.pointer(path)
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("no number `{}`", field(path)))
}

/// The URL of a `Link` header's `rel="next"` entry (RFC 8288).
fn next_link(link: &str) -> Option<&str> {
    link.split(',').find_map(|entry| {
        let (url, parameters) = entry.trim().strip_prefix('<')?.split_once('>')?;
        let next = parameters.split(';').any(|parameter| {
            parameter.split_once('=').is_some_and(|(name, value)| {
                name.trim().eq_ignore_ascii_case("rel")
                    && value
                        .trim()
                        .trim_matches('"')
                        .split_whitespace()
                        .any(|rel| rel.eq_ignore_ascii_case("next"))
            })
        });
        next.then_some(url)
    })
}

fn query_page(url: &str) -> Option<u32> {
    let query = url.split_once('?')?.1.split('#').next()?;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("page=")?.parse().ok())
}

/// A path segment with everything but RFC 3986's unreserved characters percent-encoded (`/` too).
fn percent_encode(segment: &str) -> String {
    let mut encoded = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests;
