//! GitHub's REST API, served at the root as `api.github.com` serves it: the headers it requires (`User-Agent`,
//! a Bearer token) and recommends (its media type and API version), its pull-request and file shapes, `Link`
//! pagination through `/repositories/{id}` as GitHub writes it, `x-ratelimit-*` on every answer, and its secondary
//! rate limit. What its writes take and answer (comments, statuses, deployments) is in `writes`.

mod writes;

use serde_json::{Map, Value, json};

use super::body::{Fault, Field, Shape, Type, Wrong, text};
use super::dialect::{Deployments, Refusal};
use super::feedback::{Comment, CommitStatus, Deployment, DeploymentStatus, Person, StatusFields};
use super::http::{Request, Response, query_with_page};
use super::{
    Dialect, Endpoint, Entry, Missing, Page, Paging, Routed, Site, State, fake_sha, iso, number,
    stable_id,
};

const MEDIA_TYPE: &str = "application/vnd.github+json";
const API_VERSION: &str = "2022-11-28";
const HOURLY_LIMIT: u64 = 5000;
const DOCS: &str = "https://docs.github.com/rest";
const USER_AGENT_REFUSAL: &str = "Request forbidden by administrative rules. Please make sure your request has a \
    User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required). \
    Check https://developer.github.com for other possible causes.\n";

pub(super) struct Github;

impl Dialect for Github {
    fn name(&self) -> &'static str {
        "GitHub"
    }

    fn api_prefix(&self) -> &'static str {
        ""
    }

    fn route(&self, site: &Site, method: &str, segments: &[&str]) -> Result<Routed, Missing> {
        let id = site.id.to_string();
        let rest = match segments {
            ["user"] if method == "GET" => return Ok(Routed::new(Endpoint::User)),
            ["repos", owner, name, rest @ ..] if site.is(owner, name) => rest,
            // Where GitHub's own pagination links point.
            ["repositories", repository, rest @ ..] if *repository == id => rest,
            ["repos", _, _, ..] | ["repositories", _, ..] => return Err(Missing::Repository),
            _ => return Err(Missing::Endpoint),
        };
        match (method, rest) {
            ("GET", ["pulls"]) => Ok(Routed::new(Endpoint::ListPulls).require("state", "open")),
            ("GET", ["pulls", n]) => Ok(Routed::new(Endpoint::Pull(number(n)?))),
            ("GET", ["pulls", n, "files"]) => Ok(Routed::new(Endpoint::PullFiles(number(n)?))),
            ("GET", ["issues", n, "comments"]) => {
                Ok(Routed::new(Endpoint::ListComments(number(n)?)))
            }
            ("POST", ["issues", n, "comments"]) => {
                Ok(Routed::new(Endpoint::CreateComment(number(n)?)))
            }
            ("PATCH", ["issues", "comments", comment]) => Ok(Routed::new(Endpoint::EditComment {
                pull: None,
                id: number(comment)?,
            })),
            ("POST", ["statuses", sha]) => Ok(Routed::new(Endpoint::CreateStatus(sha.to_string()))),
            ("POST", ["deployments"]) => Ok(Routed::new(Endpoint::CreateDeployment)),
            ("POST", ["deployments", deployment, "statuses"]) => Ok(Routed::new(
                Endpoint::CreateDeploymentStatus(number(deployment)?),
            )),
            _ => Err(Missing::Endpoint),
        }
    }

    fn check(
        &self,
        site: &Site,
        request: &Request,
        problems: &mut Vec<String>,
    ) -> Option<Response> {
        let mut refusal = None;
        if request.header("user-agent").is_none_or(str::is_empty) {
            problems.push("no User-Agent header, which GitHub refuses (403)".into());
            refusal = Some(Response::text(403, USER_AGENT_REFUSAL));
        }
        match request
            .header("authorization")
            .map(|value| value.split_once(' ').unwrap_or((value, "")))
        {
            Some((scheme, token))
                if scheme.eq_ignore_ascii_case("bearer") && token == site.token => {}
            found => {
                problems.push(match found {
                    None => "no Authorization header (GitHub's is `Bearer <token>`)".into(),
                    Some((scheme, _)) if !scheme.eq_ignore_ascii_case("bearer") => {
                        format!(
                            "Authorization uses the scheme {scheme:?}, where `Bearer` is documented"
                        )
                    }
                    Some(_) => "Authorization carries another token than the forge's (401)".into(),
                });
                refusal = refusal.or_else(|| Some(self.answer(401, "Bad credentials", DOCS)));
            }
        }
        match request.header("x-github-api-version") {
            Some(API_VERSION) => {}
            None => problems.push(format!("no X-GitHub-Api-Version: {API_VERSION}")),
            Some(other) => {
                problems.push(format!(
                    "X-GitHub-Api-Version: {other} where {API_VERSION} is meant (400)"
                ));
                refusal = refusal.or_else(|| {
                    let message = format!(
                        "Unsupported 'X-GitHub-Api-Version' header. The requested version `{other}` is not supported."
                    );
                    Some(self.answer(400, &message, "https://docs.github.com/rest/overview/api-versions"))
                });
            }
        }
        let accept = request.header("accept").unwrap_or("");
        if !accept.split(',').any(|media| {
            media
                .split(';')
                .next()
                .is_some_and(|m| m.trim() == MEDIA_TYPE)
        }) {
            problems.push(format!("Accept: {accept:?} does not name {MEDIA_TYPE}"));
        }
        refusal
    }

    fn paging(&self) -> Paging {
        Paging {
            size_param: "per_page",
            default: 30,
            max: 100,
        }
    }

    fn listed(&self, _site: &Site, state: Option<&str>) -> Result<&'static [State], Response> {
        match state {
            None | Some("open") => Ok(&[State::Open]),
            Some("closed") => Ok(&[State::Closed, State::Merged]),
            Some("all") => Ok(&[State::Open, State::Closed, State::Merged]),
            Some(_) => Err(self.answer(
                422,
                "Validation Failed",
                "https://docs.github.com/rest/pulls/pulls#list-pull-requests",
            )),
        }
    }

    fn pull(&self, site: &Site, entry: &Entry, single: bool) -> Value {
        let pull = &entry.pull;
        let n = pull.number;
        let api = format!("{}/repos/{}", site.url, site.repository);
        let html = format!("{}/{}/pull/{n}", site.url, site.repository);
        let base_repo = repository(site, &site.repository, false);
        let head_owner = if pull.fork {
            pull.author.as_str()
        } else {
            site.owner()
        };
        let head_repo = match (pull.fork, entry.fork_gone) {
            (false, _) => base_repo.clone(),
            (true, false) => repository(site, &format!("{}/{}", pull.author, site.name()), true),
            (true, true) => Value::Null,
        };
        let labels: Vec<Value> = pull
            .labels
            .iter()
            .map(|name| {
                json!({
                    "id": stable_id(name),
                    "node_id": format!("LA_kwDO{}", stable_id(name)),
                    "url": format!("{api}/labels/{}", super::http::encode(name)),
                    "name": name,
                    "color": "ededed",
                    "default": false,
                    "description": null,
                })
            })
            .collect();
        let merged_at = entry.merged_at();
        let mut value = json!({
            "url": format!("{api}/pulls/{n}"),
            "id": 1_000_000 + n,
            "node_id": format!("PR_kwDO{n}"),
            "html_url": html,
            "diff_url": format!("{html}.diff"),
            "patch_url": format!("{html}.patch"),
            "issue_url": format!("{api}/issues/{n}"),
            "commits_url": format!("{api}/pulls/{n}/commits"),
            "review_comments_url": format!("{api}/pulls/{n}/comments"),
            "comments_url": format!("{api}/issues/{n}/comments"),
            "statuses_url": format!("{api}/statuses/{}", pull.head_sha),
            "number": n,
            "state": if pull.state == State::Open { "open" } else { "closed" },
            "locked": false,
            "title": pull.title,
            "user": user(site, &pull.author),
            "body": null,
            "labels": labels,
            "milestone": null,
            "active_lock_reason": null,
            "created_at": iso(entry.created),
            "updated_at": iso(entry.updated),
            "closed_at": entry.closed.map(iso),
            "merged_at": merged_at.map(iso),
            "merge_commit_sha": merged_at.map(|_| fake_sha(&format!("merge {n}"))),
            "assignee": null,
            "assignees": [],
            "requested_reviewers": [],
            "requested_teams": [],
            "head": {
                "label": format!("{head_owner}:{}", pull.head_ref),
                "ref": pull.head_ref,
                "sha": pull.head_sha,
                "user": user(site, head_owner),
                "repo": head_repo,
            },
            "base": {
                "label": format!("{}:{}", site.owner(), pull.base_ref),
                "ref": pull.base_ref,
                "sha": fake_sha(&format!("base {}", pull.base_ref)),
                "user": user(site, site.owner()),
                "repo": base_repo,
            },
            "author_association": if pull.fork { "CONTRIBUTOR" } else { "MEMBER" },
            "auto_merge": null,
            "draft": pull.draft,
        });
        if single {
            let changed = entry.files.len();
            let merged = merged_at.is_some();
            for (key, field) in [
                ("merged", json!(merged)),
                (
                    "mergeable",
                    if pull.state == State::Open {
                        json!(true)
                    } else {
                        Value::Null
                    },
                ),
                (
                    "rebaseable",
                    if pull.state == State::Open {
                        json!(true)
                    } else {
                        Value::Null
                    },
                ),
                (
                    "mergeable_state",
                    json!(if pull.state == State::Open {
                        "clean"
                    } else {
                        "unknown"
                    }),
                ),
                (
                    "merged_by",
                    if merged {
                        user(site, site.owner())
                    } else {
                        Value::Null
                    },
                ),
                ("comments", json!(0)),
                ("review_comments", json!(0)),
                ("maintainer_can_modify", json!(false)),
                ("commits", json!(1)),
                ("additions", json!(changed)),
                ("deletions", json!(changed)),
                ("changed_files", json!(changed)),
            ] {
                value[key] = field;
            }
        }
        value
    }

    fn file(&self, site: &Site, entry: &Entry, path: &str) -> Value {
        let sha = &entry.pull.head_sha;
        let encoded = super::http::encode(path).replace("%2F", "/");
        json!({
            "sha": fake_sha(&format!("{sha}:{path}")),
            "filename": path,
            "status": "modified",
            "additions": 1,
            "deletions": 1,
            "changes": 2,
            "blob_url": format!("{}/{}/blob/{sha}/{encoded}", site.url, site.repository),
            "raw_url": format!("{}/{}/raw/{sha}/{encoded}", site.url, site.repository),
            "contents_url": format!("{}/repos/{}/contents/{encoded}?ref={sha}", site.url, site.repository),
            "patch": "@@ -1 +1 @@\n-before\n+after",
        })
    }

    fn page_headers(
        &self,
        site: &Site,
        request: &Request,
        routed: &Routed,
        page: &Page,
    ) -> Vec<(String, String)> {
        let path = match &routed.endpoint {
            Endpoint::PullFiles(n) => format!("/repositories/{}/pulls/{n}/files", site.id),
            Endpoint::ListComments(n) => format!("/repositories/{}/issues/{n}/comments", site.id),
            _ => format!("/repositories/{}/pulls", site.id),
        };
        let link = |page: usize, rel: &str| {
            format!(
                "<{}{path}?{}>; rel=\"{rel}\"",
                site.url,
                query_with_page(&request.query, page, false)
            )
        };
        let mut links = Vec::new();
        if let Some(previous) = page.previous() {
            links.push(link(previous, "prev"));
        }
        if let Some(next) = page.next() {
            links.push(link(next, "next"));
            links.push(link(page.last, "last"));
        }
        if page.number > 1 {
            links.push(link(1, "first"));
        }
        if links.is_empty() {
            Vec::new()
        } else {
            vec![("Link".into(), links.join(", "))]
        }
    }

    fn not_found(&self, _site: &Site, missing: Missing) -> Response {
        let docs = match missing {
            Missing::Pull { files: false } => {
                "https://docs.github.com/rest/pulls/pulls#get-a-pull-request"
            }
            Missing::Pull { files: true } => {
                "https://docs.github.com/rest/pulls/pulls#list-pull-requests-files"
            }
            Missing::Issue => "https://docs.github.com/rest/issues/comments#list-issue-comments",
            Missing::Comment => {
                "https://docs.github.com/rest/issues/comments#update-an-issue-comment"
            }
            Missing::Deployment => {
                "https://docs.github.com/rest/deployments/statuses#create-a-deployment-status"
            }
            Missing::Endpoint | Missing::Repository => DOCS,
        };
        self.answer(404, "Not Found", docs)
    }

    fn error(&self, _site: &Site, status: u16) -> Response {
        self.answer(status, super::http::reason(status), DOCS)
    }

    fn rate_limited(&self, _site: &Site, reset: u64) -> Response {
        self.answer(
            403,
            "API rate limit exceeded for user ID 1.",
            "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
        )
        .with("x-ratelimit-limit", HOURLY_LIMIT)
        .with("x-ratelimit-remaining", 0)
        .with("x-ratelimit-reset", reset)
        .with("x-ratelimit-used", HOURLY_LIMIT)
        .with("x-ratelimit-resource", "core")
    }

    fn secondary_rate_limited(&self, _site: &Site, _reset: u64) -> Response {
        self.answer(
            403,
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you \
             reach out to GitHub Support for help, please include the request ID 0000:1111:2222:3333:4444.",
            "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
        )
        .with("Retry-After", 1)
    }

    fn finish(&self, _site: &Site, served: u64, started: u64, response: &mut Response) {
        if !response.has("x-ratelimit-remaining") {
            let used = served.min(HOURLY_LIMIT);
            for (name, value) in [
                ("x-ratelimit-limit", HOURLY_LIMIT),
                ("x-ratelimit-remaining", HOURLY_LIMIT - used),
                ("x-ratelimit-reset", started + 3600),
                ("x-ratelimit-used", used),
            ] {
                response.headers.push((name.into(), value.to_string()));
            }
            response
                .headers
                .push(("x-ratelimit-resource".into(), "core".into()));
        }
        response
            .headers
            .push(("x-github-api-version-selected".into(), API_VERSION.into()));
        response.headers.push((
            "x-github-media-type".into(),
            "github.v3; format=json".into(),
        ));
    }

    fn user(&self, site: &Site, user: &Person) -> Value {
        writes::user(site, user)
    }

    fn comment(&self, site: &Site, comment: &Comment) -> Value {
        writes::comment(site, comment)
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
            context: text(body, "context").unwrap_or_else(|| "default".into()),
            description: text(body, "description"),
            target_url: text(body, "target_url"),
            reference: None,
        }
    }

    fn status(&self, site: &Site, status: &CommitStatus) -> Value {
        writes::status(site, status)
    }

    fn deployments(&self) -> Option<&dyn Deployments> {
        Some(self)
    }

    fn invalid(&self, _site: &Site, shape: &Shape, faults: &[Fault]) -> Response {
        writes::invalid(shape, faults)
    }

    fn refuse(&self, _site: &Site, refusal: &Refusal) -> Option<Response> {
        writes::refuse(refusal)
    }
}

impl Github {
    /// GitHub's error body: `{"message", "documentation_url", "status"}`.
    fn answer(&self, status: u16, message: &str, docs: &str) -> Response {
        Response::json(
            status,
            &json!({"message": message, "documentation_url": docs, "status": status.to_string()}),
        )
    }
}

fn user(site: &Site, login: &str) -> Value {
    person(site, login, stable_id(login))
}

/// A user object; GitHub Apps' bot accounts (`name[bot]`) are of type `Bot`.
fn person(site: &Site, login: &str, id: u64) -> Value {
    json!({
        "login": login,
        "id": id,
        "node_id": format!("U_kgDO{id}"),
        "avatar_url": format!("{}/avatars/{login}", site.url),
        "url": format!("{}/users/{login}", site.url),
        "html_url": format!("{}/{login}", site.url),
        "type": if login.ends_with("[bot]") { "Bot" } else { "User" },
        "site_admin": false,
    })
}

fn repository(site: &Site, full_name: &str, fork: bool) -> Value {
    let (owner, name) = full_name.rsplit_once('/').unwrap_or(("", full_name));
    json!({
        "id": if fork { stable_id(full_name) } else { site.id },
        "node_id": format!("R_kgDO{}", stable_id(full_name)),
        "name": name,
        "full_name": full_name,
        "private": false,
        "owner": user(site, owner),
        "html_url": format!("{}/{full_name}", site.url),
        "description": null,
        "fork": fork,
        "url": format!("{}/repos/{full_name}", site.url),
        "clone_url": format!("{}/{full_name}.git", site.url),
        "ssh_url": format!("git@127.0.0.1:{full_name}.git"),
        "default_branch": "main",
        "visibility": "public",
    })
}
