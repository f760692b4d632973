//! Gitea's REST API under `/api/v1`: `Authorization: token …`, pull requests and changed files in Gitea's shapes,
//! `page`/`limit` pagination (at most 50 a page, Gitea's default `MAX_RESPONSE_ITEMS`) answered with `X-Total-Count`
//! and a `Link` joined by bare commas, as Gitea writes it. What its writes take and answer (comments, commit
//! statuses) is in `writes`.

mod writes;

use serde_json::{Map, Value, json};

use super::body::{Fault, Field, Shape, Type, Wrong, text};
use super::dialect::Refusal;
use super::feedback::{Comment, CommitStatus, Person, StatusFields};
use super::http::{Request, Response, query_with_page};
use super::{
    Dialect, Endpoint, Entry, Missing, Page, Paging, Routed, Site, State, fake_sha, iso, number,
    stable_id,
};

pub(super) struct Gitea;

impl Dialect for Gitea {
    fn name(&self) -> &'static str {
        "Gitea"
    }

    fn api_prefix(&self) -> &'static str {
        "/api/v1"
    }

    fn route(&self, site: &Site, method: &str, segments: &[&str]) -> Result<Routed, Missing> {
        let rest = match segments {
            ["user"] if method == "GET" => return Ok(Routed::new(Endpoint::User)),
            ["repos", owner, name, rest @ ..] if site.is(owner, name) => rest,
            ["repos", _, _, ..] => return Err(Missing::Repository),
            _ => return Err(Missing::Endpoint),
        };
        match (method, rest) {
            ("GET", ["pulls"]) => Ok(Routed::new(Endpoint::ListPulls).require("state", "open")),
            ("GET", ["pulls", index]) => Ok(Routed::new(Endpoint::Pull(number(index)?))),
            ("GET", ["pulls", index, "files"]) => {
                Ok(Routed::new(Endpoint::PullFiles(number(index)?)))
            }
            ("GET", ["issues", index, "comments"]) => {
                Ok(Routed::new(Endpoint::ListComments(number(index)?)))
            }
            ("POST", ["issues", index, "comments"]) => {
                Ok(Routed::new(Endpoint::CreateComment(number(index)?)))
            }
            ("PATCH", ["issues", "comments", comment]) => Ok(Routed::new(Endpoint::EditComment {
                pull: None,
                id: number(comment)?,
            })),
            ("POST", ["statuses", sha]) => Ok(Routed::new(Endpoint::CreateStatus(sha.to_string()))),
            _ => Err(Missing::Endpoint),
        }
    }

    fn check(
        &self,
        site: &Site,
        request: &Request,
        problems: &mut Vec<String>,
    ) -> Option<Response> {
        match request
            .header("authorization")
            .map(|value| value.split_once(' ').unwrap_or((value, "")))
        {
            Some((scheme, token))
                if scheme.eq_ignore_ascii_case("token") && token == site.token =>
            {
                None
            }
            found => {
                problems.push(match found {
                    None => "no Authorization header (Gitea's is `token <token>`)".into(),
                    Some((scheme, _)) if !scheme.eq_ignore_ascii_case("token") => {
                        format!(
                            "Authorization uses the scheme {scheme:?}, where `token` is meant (401)"
                        )
                    }
                    Some(_) => "Authorization carries another token than the forge's (401)".into(),
                });
                Some(self.answer(site, 401, "token is required", None))
            }
        }
    }

    fn paging(&self) -> Paging {
        Paging {
            size_param: "limit",
            default: 30,
            max: 50,
        }
    }

    fn listed(&self, site: &Site, state: Option<&str>) -> Result<&'static [State], Response> {
        match state {
            None | Some("open") => Ok(&[State::Open]),
            Some("closed") => Ok(&[State::Closed, State::Merged]),
            Some("all") => Ok(&[State::Open, State::Closed, State::Merged]),
            Some(other) => Err(self.answer(site, 422, &format!("invalid state: {other}"), None)),
        }
    }

    fn pull(&self, site: &Site, entry: &Entry, _single: bool) -> Value {
        let pull = &entry.pull;
        let n = pull.number;
        let html = format!("{}/{}/pulls/{n}", site.url, site.repository);
        let merged_at = entry.merged_at();
        let base_sha = fake_sha(&format!("base {}", pull.base_ref));
        let fork_name = format!("{}/{}", pull.author, site.name());
        let (head_repo_id, head_repo) = match (pull.fork, entry.fork_gone) {
            (false, _) => (site.id, repository(site, &site.repository, site.id, false)),
            (true, false) => (
                stable_id(&fork_name),
                repository(site, &fork_name, stable_id(&fork_name), true),
            ),
            (true, true) => (0, Value::Null),
        };
        let labels: Vec<Value> = pull
            .labels
            .iter()
            .map(|name| {
                json!({
                    "id": stable_id(name),
                    "name": name,
                    "exclusive": false,
                    "is_archived": false,
                    "color": "ededed",
                    "description": "",
                    "url": format!("{}/api/v1/repos/{}/labels/{}", site.url, site.repository, stable_id(name)),
                })
            })
            .collect();
        let changed = entry.files.len();
        json!({
            "id": 20_000 + n,
            "url": html,
            "number": n,
            "user": user(site, &pull.author),
            "title": pull.title,
            "body": "",
            "labels": labels,
            "milestone": null,
            "assignee": null,
            "assignees": null,
            "requested_reviewers": null,
            "requested_reviewers_teams": null,
            "state": if pull.state == State::Open { "open" } else { "closed" },
            "draft": pull.draft,
            "is_locked": false,
            "comments": 0,
            "review_comments": 0,
            "additions": changed,
            "deletions": changed,
            "changed_files": changed,
            "html_url": html,
            "diff_url": format!("{html}.diff"),
            "patch_url": format!("{html}.patch"),
            "mergeable": pull.state == State::Open,
            "merged": merged_at.is_some(),
            "merged_at": merged_at.map(iso),
            "merge_commit_sha": merged_at.map(|_| fake_sha(&format!("merge {n}"))),
            "merged_by": merged_at.map(|_| user(site, site.owner())),
            "allow_maintainer_edit": false,
            "base": {
                "label": pull.base_ref,
                "ref": pull.base_ref,
                "sha": base_sha,
                "repo_id": site.id,
                "repo": repository(site, &site.repository, site.id, false),
            },
            "head": {
                "label": pull.head_ref,
                "ref": pull.head_ref,
                "sha": pull.head_sha,
                "repo_id": head_repo_id,
                "repo": head_repo,
            },
            "merge_base": base_sha,
            "due_date": null,
            "created_at": iso(entry.created),
            "updated_at": iso(entry.updated),
            "closed_at": entry.closed.map(iso),
            "pin_order": 0,
        })
    }

    fn file(&self, site: &Site, entry: &Entry, path: &str) -> Value {
        let (repository, sha) = (&site.repository, &entry.pull.head_sha);
        json!({
            "filename": path,
            "previous_filename": "",
            "status": "changed",
            "additions": 1,
            "deletions": 1,
            "changes": 2,
            "html_url": format!("{}/{repository}/src/commit/{sha}/{path}", site.url),
            "contents_url": format!("{}/api/v1/repos/{repository}/contents/{path}?ref={sha}", site.url),
            "raw_url": format!("{}/{repository}/raw/commit/{sha}/{path}", site.url),
        })
    }

    fn page_headers(
        &self,
        site: &Site,
        request: &Request,
        _routed: &Routed,
        page: &Page,
    ) -> Vec<(String, String)> {
        let link = |page: usize, rel: &str| {
            format!(
                "<{}{}?{}>; rel=\"{rel}\"",
                site.url,
                request.path,
                query_with_page(&request.query, page, true)
            )
        };
        let mut links = Vec::new();
        if let Some(next) = page.next() {
            links.push(link(next, "next"));
            links.push(link(page.last, "last"));
        }
        if let Some(previous) = page.previous() {
            links.push(link(1, "first"));
            links.push(link(previous, "prev"));
        }
        let mut headers = vec![
            ("X-Total-Count".to_string(), page.total.to_string()),
            (
                "Access-Control-Expose-Headers".to_string(),
                "X-Total-Count, Link".to_string(),
            ),
        ];
        if !links.is_empty() {
            headers.push(("Link".into(), links.join(",")));
        }
        headers
    }

    fn not_found(&self, site: &Site, missing: Missing) -> Response {
        // Gitea looks an issue up by its index without telling "none" from a failure: an internal error, whose
        // message it keeps to itself in production.
        if missing == Missing::Issue {
            return self.answer(site, 500, "", None);
        }
        let errors = match missing {
            Missing::Pull { .. } => vec![format!(
                "pull request does not exist [id: 0, issue_id: 0, head_repo_id: 0, base_repo_id: {}, head_branch: , base_branch: ]",
                site.id
            )],
            Missing::Comment => vec!["comment does not exist".into()],
            Missing::Endpoint | Missing::Repository | Missing::Issue | Missing::Deployment => {
                Vec::new()
            }
        };
        self.answer(site, 404, "The target couldn't be found.", Some(errors))
    }

    fn error(&self, site: &Site, status: u16) -> Response {
        self.answer(site, status, super::http::reason(status), None)
    }

    fn rate_limited(&self, site: &Site, _reset: u64) -> Response {
        self.answer(site, 429, "Too Many Requests", None)
            .with("Retry-After", 1)
    }

    fn user(&self, site: &Site, user: &Person) -> Value {
        writes::user(site, user)
    }

    fn comment(&self, site: &Site, comment: &Comment) -> Value {
        writes::comment(site, comment)
    }

    fn pages_comments(&self) -> bool {
        false
    }

    fn comment_shape(&self) -> &'static Shape {
        &writes::COMMENT
    }

    fn status_shape(&self) -> &'static Shape {
        &writes::STATUS
    }

    fn status_fields(&self, body: &Map<String, Value>) -> StatusFields {
        StatusFields {
            state: text(body, "state").unwrap_or_default(),
            context: text(body, "context").unwrap_or_default(),
            description: text(body, "description"),
            target_url: text(body, "target_url"),
            reference: None,
        }
    }

    fn status(&self, site: &Site, status: &CommitStatus) -> Value {
        writes::status(site, status)
    }

    fn invalid(&self, site: &Site, _shape: &Shape, faults: &[Fault]) -> Response {
        writes::invalid(site, faults)
    }

    fn refuse(&self, site: &Site, refusal: &Refusal) -> Option<Response> {
        writes::refuse(site, refusal)
    }
}

impl Gitea {
    /// Gitea's error body: `{"message", "url"}` (the API's swagger page), with `errors` on a 404.
    fn answer(
        &self,
        site: &Site,
        status: u16,
        message: &str,
        errors: Option<Vec<String>>,
    ) -> Response {
        let mut body = json!({"message": message, "url": format!("{}/api/swagger", site.url)});
        if let Some(errors) = errors {
            body["errors"] = json!(errors);
        }
        Response::json(status, &body)
    }
}

fn user(site: &Site, login: &str) -> Value {
    person(site, login, stable_id(login))
}

fn person(site: &Site, login: &str, id: u64) -> Value {
    json!({
        "id": id,
        "login": login,
        "login_name": "",
        "source_id": 0,
        "full_name": "",
        "email": format!("{login}@noreply.localhost"),
        "avatar_url": format!("{}/avatars/{login}", site.url),
        "html_url": format!("{}/{login}", site.url),
        "language": "",
        "is_admin": false,
        "restricted": false,
        "active": true,
        "prohibit_login": false,
        "visibility": "public",
        "username": login,
    })
}

fn repository(site: &Site, full_name: &str, id: u64, fork: bool) -> Value {
    let (owner, name) = full_name.rsplit_once('/').unwrap_or(("", full_name));
    json!({
        "id": id,
        "owner": user(site, owner),
        "name": name,
        "full_name": full_name,
        "description": "",
        "empty": false,
        "private": false,
        "fork": fork,
        "template": false,
        "mirror": false,
        "html_url": format!("{}/{full_name}", site.url),
        "url": format!("{}/api/v1/repos/{full_name}", site.url),
        "clone_url": format!("{}/{full_name}.git", site.url),
        "ssh_url": format!("git@127.0.0.1:{full_name}.git"),
        "default_branch": "main",
        "archived": false,
    })
}
