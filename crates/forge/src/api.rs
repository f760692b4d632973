//! The forges' REST APIs as `preview` uses them, pure: which request lists a repository's open pull requests,
//! reads one, or lists the paths it changes, and how each forge's answer (and its pagination and rate-limit
//! headers) reads. The daemon sends the requests; nothing here does I/O.
//!
//! - GitHub: `{base}/repos/{owner}/{name}/pulls[/{number}[/files]]`, `Authorization: Bearer`, pages by `Link`.
//! - GitLab: `{base}/projects/{url-encoded path}/merge_requests[/{iid}[/diffs]]`, `PRIVATE-TOKEN`, pages by
//!   `X-Next-Page`; a merge request is numbered by its `iid`, and comes from a fork when its source project is not
//!   its target.
//! - Gitea and Forgejo: GitHub's paths and fields, `limit` instead of `per_page`, `Authorization: token`.

use std::time::Duration;

use serde_json::Value;

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
}

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

    fn request(&self, rest: &str) -> ApiRequest {
        let (project, headers) = match self.forge {
            Forge::Github => (
                format!("repos/{}", self.owner_and_name()),
                vec![
                    ("Accept", "application/vnd.github+json".to_owned()),
                    ("X-GitHub-Api-Version", "2022-11-28".to_owned()),
                ],
            ),
            Forge::Gitlab => (
                format!("projects/{}", percent_encode(&self.repository)),
                vec![("Accept", "application/json".to_owned())],
            ),
            Forge::Gitea | Forge::Forgejo => (
                format!("repos/{}", self.owner_and_name()),
                vec![("Accept", "application/json".to_owned())],
            ),
        };
        ApiRequest {
            method: "GET",
            url: format!("{}/{project}/{rest}", self.base),
            headers,
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
        let json: Value =
            serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
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
                head_sha: text(json, "/sha")?,
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
            head_sha: text(json, "/head/sha")?,
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

/// How long to wait before asking again, when an answer with `status` says the client is rate limited, given the
/// current unix time: its `Retry-After` seconds (GitHub's secondary limits, GitLab), else until the
/// `X-RateLimit-Reset` (GitHub, Gitea) or `RateLimit-Reset` (GitLab) epoch second when no request is left. A 429
/// that says nothing more waits a minute. Any other answer (a 403 that is a refusal) is not a rate limit.
pub fn rate_limit_wait(status: u16, headers: &dyn Headers, now_unix: u64) -> Option<Duration> {
    if status != 403 && status != 429 {
        return None;
    }
    let header = |name: &str| headers.get(name).map(str::trim);
    let seconds = |name: &str| header(name).and_then(|value| value.parse::<u64>().ok());
    if let Some(after) = seconds("Retry-After") {
        return Some(Duration::from_secs(after));
    }
    let remaining = header("X-RateLimit-Remaining").or_else(|| header("RateLimit-Remaining"));
    if remaining != Some("0") && status != 429 {
        return None;
    }
    let reset = seconds("X-RateLimit-Reset").or_else(|| seconds("RateLimit-Reset"));
    // A reset already past (clocks differ) still waits a moment rather than asking at once.
    Some(Duration::from_secs(
        reset.map_or(60, |reset| reset.saturating_sub(now_unix).max(1)),
    ))
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
