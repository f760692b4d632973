//! GitLab's REST API under `/api/v4`: projects named by their URL-encoded path (`group%2Fname`) or numeric id,
//! `PRIVATE-TOKEN` authentication, merge requests and their diffs in GitLab's shapes, and its pagination headers
//! (`X-Page`, `X-Next-Page`, `X-Total`, … and a `Link` whose query carries the route's own parameters, as GitLab's
//! documented example shows). What its writes take and answer (notes, commit statuses) is in `writes`.

mod writes;

use serde_json::{Map, Value, json};

use super::body::{Fault, Field, Shape, Type, Wrong, text};
use super::dialect::Refusal;
use super::feedback::{Comment, CommitStatus, Person, StatusFields};
use super::http::{Request, Response, decode, query_with_page};
use super::{
    Dialect, Endpoint, Entry, Missing, Page, Paging, Routed, Site, State, fake_sha, iso, number,
    stable_id,
};

/// Who merges and closes merge requests (a project's path is no username on GitLab).
const MAINTAINER: &str = "maintainer";

pub(super) struct Gitlab;

impl Dialect for Gitlab {
    fn name(&self) -> &'static str {
        "GitLab"
    }

    fn api_prefix(&self) -> &'static str {
        "/api/v4"
    }

    fn route(&self, site: &Site, method: &str, segments: &[&str]) -> Result<Routed, Missing> {
        let (project, rest) = match segments {
            ["user"] if method == "GET" => return Ok(Routed::new(Endpoint::User)),
            ["projects", project, rest @ ..] => (decode(project), rest),
            _ => return Err(Missing::Endpoint),
        };
        if !project.eq_ignore_ascii_case(&site.repository) && project != site.id.to_string() {
            return Err(Missing::Repository);
        }
        let routed = match (method, rest) {
            ("GET", ["merge_requests"]) => {
                Routed::new(Endpoint::ListPulls).require("state", "opened")
            }
            ("GET", ["merge_requests", iid]) => Routed::new(Endpoint::Pull(number(iid)?)),
            ("GET", ["merge_requests", iid, "diffs"]) => {
                Routed::new(Endpoint::PullFiles(number(iid)?)).echo("merge_request_iid", iid)
            }
            // GitLab lists notes newest first unless asked otherwise.
            ("GET", ["merge_requests", iid, "notes"]) => {
                Routed::new(Endpoint::ListComments(number(iid)?))
                    .require("sort", "asc")
                    .allow("order_by", "created_at")
                    .echo("noteable_id", iid)
            }
            ("POST", ["merge_requests", iid, "notes"]) => {
                Routed::new(Endpoint::CreateComment(number(iid)?))
            }
            ("PUT", ["merge_requests", iid, "notes", note]) => Routed::new(Endpoint::EditComment {
                pull: Some(number(iid)?),
                id: number(note)?,
            }),
            ("POST", ["statuses", sha]) => Routed::new(Endpoint::CreateStatus(sha.to_string())),
            _ => return Err(Missing::Endpoint),
        };
        Ok(routed.echo("id", &project))
    }

    fn check(
        &self,
        site: &Site,
        request: &Request,
        problems: &mut Vec<String>,
    ) -> Option<Response> {
        match request.header("private-token") {
            Some(token) if token == site.token => None,
            found => {
                problems.push(match (found, request.header("authorization")) {
                    (None, Some(_)) => {
                        "an Authorization header where GitLab's PRIVATE-TOKEN is meant (401)".into()
                    }
                    (None, None) => "no PRIVATE-TOKEN header (401)".into(),
                    (Some(_), _) => {
                        "PRIVATE-TOKEN carries another token than the forge's (401)".into()
                    }
                });
                Some(Response::json(401, &json!({"message": "401 Unauthorized"})))
            }
        }
    }

    fn paging(&self) -> Paging {
        Paging {
            size_param: "per_page",
            default: 20,
            max: 100,
        }
    }

    fn listed(&self, _site: &Site, state: Option<&str>) -> Result<&'static [State], Response> {
        match state {
            Some("opened") => Ok(&[State::Open]),
            Some("closed") => Ok(&[State::Closed]),
            Some("merged") => Ok(&[State::Merged]),
            Some("locked") => Ok(&[]),
            None | Some("all") => Ok(&[State::Open, State::Closed, State::Merged]),
            Some(_) => Err(Response::json(
                400,
                &json!({"error": "state does not have a valid value"}),
            )),
        }
    }

    fn pull(&self, site: &Site, entry: &Entry, single: bool) -> Value {
        let pull = &entry.pull;
        let iid = pull.number;
        let merged_at = entry.merged_at();
        let closed_at = entry.closed.filter(|_| pull.state == State::Closed);
        let base_sha = fake_sha(&format!("base {}", pull.base_ref));
        let mut value = json!({
            "id": 10_000 + iid,
            "iid": iid,
            "project_id": site.id,
            "title": pull.title,
            "description": "",
            "state": match pull.state {
                State::Open => "opened",
                State::Closed => "closed",
                State::Merged => "merged",
            },
            "created_at": time(entry.created),
            "updated_at": time(entry.updated),
            "merged_by": merged_at.map(|_| user(site, MAINTAINER)),
            "merge_user": merged_at.map(|_| user(site, MAINTAINER)),
            "merged_at": merged_at.map(time),
            "closed_by": closed_at.map(|_| user(site, MAINTAINER)),
            "closed_at": closed_at.map(time),
            "target_branch": pull.base_ref,
            "source_branch": pull.head_ref,
            "user_notes_count": 0,
            "upvotes": 0,
            "downvotes": 0,
            "author": user(site, &pull.author),
            "assignees": [],
            "assignee": null,
            "reviewers": [],
            "source_project_id": if pull.fork { stable_id(&format!("{}/{}", pull.author, site.name())) } else { site.id },
            "target_project_id": site.id,
            "labels": pull.labels,
            "draft": pull.draft,
            "work_in_progress": pull.draft,
            "milestone": null,
            "merge_when_pipeline_succeeds": false,
            "merge_status": "can_be_merged",
            "detailed_merge_status": if pull.state == State::Open { "mergeable" } else { "not_open" },
            "sha": pull.head_sha,
            "merge_commit_sha": merged_at.map(|_| fake_sha(&format!("merge {iid}"))),
            "squash_commit_sha": null,
            "discussion_locked": null,
            "should_remove_source_branch": null,
            "force_remove_source_branch": false,
            "prepared_at": time(entry.created),
        });
        // In two parts: one `json!` of all of it is past the macro recursion limit.
        let references = json!({
            "reference": format!("!{iid}"),
            "references": {
                "short": format!("!{iid}"),
                "relative": format!("!{iid}"),
                "full": format!("{}!{iid}", site.repository),
            },
            "web_url": format!("{}/{}/-/merge_requests/{iid}", site.url, site.repository),
            "time_stats": {
                "time_estimate": 0,
                "total_time_spent": 0,
                "human_time_estimate": null,
                "human_total_time_spent": null,
            },
            "squash": false,
            "squash_on_merge": false,
            "task_completion_status": {"count": 0, "completed_count": 0},
            "has_conflicts": false,
            "blocking_discussions_resolved": true,
        });
        if let (Some(value), Value::Object(references)) = (value.as_object_mut(), references) {
            value.extend(references);
        }
        if single {
            for (key, field) in [
                ("subscribed", json!(false)),
                // A string in GitLab's answers, as it may read "1000+".
                ("changes_count", json!(entry.files.len().to_string())),
                ("pipeline", Value::Null),
                ("head_pipeline", Value::Null),
                (
                    "diff_refs",
                    json!({"base_sha": base_sha, "head_sha": pull.head_sha, "start_sha": base_sha}),
                ),
                ("merge_error", Value::Null),
                ("first_contribution", json!(pull.fork)),
                ("user", json!({"can_merge": false})),
            ] {
                value[key] = field;
            }
        }
        value
    }

    fn file(&self, _site: &Site, _entry: &Entry, path: &str) -> Value {
        json!({
            "diff": "@@ -1 +1 @@\n-before\n+after\n",
            "new_path": path,
            "old_path": path,
            "a_mode": "100644",
            "b_mode": "100644",
            "new_file": false,
            "renamed_file": false,
            "deleted_file": false,
            "generated_file": false,
        })
    }

    fn page_headers(
        &self,
        site: &Site,
        request: &Request,
        routed: &Routed,
        page: &Page,
    ) -> Vec<(String, String)> {
        // GitLab's links carry the route's parameters (`id`, `merge_request_iid`) besides the ones sent.
        let mut pairs = request.query.clone();
        for (name, value) in &routed.echoed {
            if !pairs.iter().any(|(sent, _)| sent == name) {
                pairs.push((name.to_string(), value.clone()));
            }
        }
        let link = |page: usize, rel: &str| {
            format!(
                "<{}{}?{}>; rel=\"{rel}\"",
                site.url,
                request.path,
                query_with_page(&pairs, page, true)
            )
        };
        let mut links = Vec::new();
        if let Some(previous) = page.previous() {
            links.push(link(previous, "prev"));
        }
        if let Some(next) = page.next() {
            links.push(link(next, "next"));
        }
        links.push(link(1, "first"));
        links.push(link(page.last, "last"));
        let optional = |page: Option<usize>| page.map_or(String::new(), |p| p.to_string());
        vec![
            ("Link".into(), links.join(", ")),
            ("X-Page".into(), page.number.to_string()),
            ("X-Per-Page".into(), page.size.to_string()),
            ("X-Next-Page".into(), optional(page.next())),
            ("X-Prev-Page".into(), optional(page.previous())),
            ("X-Total".into(), page.total.to_string()),
            ("X-Total-Pages".into(), page.last.to_string()),
        ]
    }

    fn not_found(&self, _site: &Site, missing: Missing) -> Response {
        let body = match missing {
            Missing::Endpoint => json!({"error": "404 Not Found"}),
            Missing::Repository => json!({"message": "404 Project Not Found"}),
            Missing::Pull { .. } | Missing::Issue | Missing::Comment => {
                json!({"message": "404 Not found"})
            }
            Missing::Deployment => json!({"error": "404 Not Found"}),
        };
        Response::json(404, &body)
    }

    fn error(&self, _site: &Site, status: u16) -> Response {
        Response::json(
            status,
            &json!({"message": format!("{status} {}", super::http::reason(status))}),
        )
    }

    fn rate_limited(&self, _site: &Site, _reset: u64) -> Response {
        // Rack::Attack's throttle answer, in plain text.
        Response::text(429, "Retry later\n")
            .with("Retry-After", 1)
            .with("RateLimit-Name", "throttle_authenticated_api")
            .with("RateLimit-Limit", 2000)
            .with("RateLimit-Observed", 2001)
            .with("RateLimit-Remaining", 0)
            .with("RateLimit-Reset", 1)
    }

    fn user(&self, site: &Site, user: &Person) -> Value {
        writes::user(site, user)
    }

    fn comment(&self, site: &Site, comment: &Comment) -> Value {
        writes::note(site, comment)
    }

    fn comment_shape(&self) -> &'static Shape {
        &writes::NOTE
    }

    fn status_shape(&self) -> &'static Shape {
        &writes::STATUS
    }

    fn status_fields(&self, body: &Map<String, Value>) -> StatusFields {
        StatusFields {
            state: text(body, "state").unwrap_or_default(),
            // `context` is GitLab's other name for `name`.
            context: text(body, "name")
                .or_else(|| text(body, "context"))
                .unwrap_or_else(|| "default".into()),
            description: text(body, "description"),
            target_url: text(body, "target_url"),
            reference: text(body, "ref"),
        }
    }

    fn status(&self, site: &Site, status: &CommitStatus) -> Value {
        writes::status(site, status)
    }

    fn invalid(&self, _site: &Site, shape: &Shape, faults: &[Fault]) -> Response {
        writes::invalid(shape, faults)
    }

    fn refuse(&self, _site: &Site, refusal: &Refusal) -> Option<Response> {
        writes::refuse(refusal)
    }
}

/// GitLab's times carry milliseconds: `2024-05-01T12:00:00.000Z`.
fn time(seconds: u64) -> String {
    iso(seconds).replace('Z', ".000Z")
}

fn user(site: &Site, username: &str) -> Value {
    person(site, username, stable_id(username))
}

fn person(site: &Site, username: &str, id: u64) -> Value {
    json!({
        "id": id,
        "username": username,
        "name": username,
        "state": "active",
        "locked": false,
        "avatar_url": format!("{}/uploads/-/system/user/avatar/{id}/avatar.png", site.url),
        "web_url": format!("{}/{username}", site.url),
    })
}
