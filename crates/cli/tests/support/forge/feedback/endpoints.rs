//! The answers to the endpoints about what is written back: the token's user, a pull request's comments, commit
//! statuses and GitHub's deployments. Each checks the body against the forge's shape for it, then the forge's
//! state, and records as a problem whatever the forge refused.

use serde_json::{Map, Value, json};

use super::super::body::{self, Shape, flag, text};
use super::super::dialect::{Missing, Refusal, Routed};
use super::super::http::{Request, Response};
use super::super::query::Page;
use super::super::{ForgeState, Shared};
use super::{Comment, CommitStatus, Deployment, DeploymentStatus};

impl ForgeState {
    /// The commit a deployment's `ref` names: a known commit, a branch of the repository that heads a pull request,
    /// or a pull request's `refs/pull/N/head`.
    fn resolve(&self, reference: &str) -> Option<String> {
        if self.feedback.commits.contains(reference) {
            return Some(reference.to_string());
        }
        let pull_head = reference
            .trim_start_matches("refs/")
            .strip_prefix("pull/")
            .and_then(|rest| rest.strip_suffix("/head"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(number) = pull_head {
            return self.entries.get(&number).map(|e| e.pull.head_sha.clone());
        }
        let branch = reference.strip_prefix("refs/heads/").unwrap_or(reference);
        self.entries
            .values()
            .find(|entry| !entry.pull.fork && entry.pull.head_ref == branch)
            .map(|entry| entry.pull.head_sha.clone())
    }
}

impl Shared {
    pub(in super::super) fn user(&self, state: &ForgeState) -> Response {
        Response::json(200, &self.dialect.user(&self.site, &state.feedback.bot()))
    }

    pub(in super::super) fn list_comments(
        &self,
        state: &ForgeState,
        request: &Request,
        routed: &Routed,
        number: u64,
        problems: &mut Vec<String>,
    ) -> Response {
        let (site, dialect) = (&self.site, self.dialect);
        if !state.entries.contains_key(&number) {
            return dialect.not_found(site, Missing::Issue);
        }
        let comments: Vec<&Comment> = state
            .feedback
            .comments
            .values()
            .filter(|comment| comment.number == number)
            .collect();
        let page = if dialect.pages_comments() {
            Page::of(
                dialect.paging(),
                request,
                state.page_size,
                comments.len(),
                problems,
            )
        } else {
            if let Some(page) = request.param("page").filter(|page| *page != "1") {
                problems.push(format!(
                    "page={page}, but {} answers every comment whatever the page: they come again",
                    dialect.name()
                ));
            }
            Page::whole(comments.len())
        };
        let items = comments[page.range()]
            .iter()
            .map(|comment| dialect.comment(site, comment))
            .collect();
        Response::json(200, &Value::Array(items))
            .with_all(dialect.page_headers(site, request, routed, &page))
    }

    pub(in super::super) fn create_comment(
        &self,
        state: &mut ForgeState,
        request: &Request,
        number: u64,
        problems: &mut Vec<String>,
    ) -> Response {
        let body = match self.read(self.dialect.comment_shape(), request, problems) {
            Ok(body) => body,
            Err(refusal) => return refusal,
        };
        if !state.entries.contains_key(&number) {
            return self.dialect.not_found(&self.site, Missing::Issue);
        }
        let now = state.tick();
        let author = state.feedback.bot();
        let text = text(&body, "body").unwrap_or_default();
        let comment = state.feedback.add_comment(number, author, text, now);
        Response::json(201, &self.dialect.comment(&self.site, comment))
    }

    pub(in super::super) fn edit_comment(
        &self,
        state: &mut ForgeState,
        request: &Request,
        (pull, id): (Option<u64>, u64),
        problems: &mut Vec<String>,
    ) -> Response {
        let (site, dialect) = (&self.site, self.dialect);
        let body = match self.read(dialect.comment_shape(), request, problems) {
            Ok(body) => body,
            Err(refusal) => return refusal,
        };
        if pull.is_some_and(|number| !state.entries.contains_key(&number)) {
            return dialect.not_found(site, Missing::Pull { files: false });
        }
        let now = state.tick();
        let bot = state.feedback.bot.clone();
        let Some(comment) = state
            .feedback
            .comments
            .get_mut(&id)
            .filter(|comment| pull.is_none_or(|number| comment.number == number))
        else {
            return dialect.not_found(site, Missing::Comment);
        };
        if comment.author.login != bot {
            // A problem wherever the forge lets it through: `preview` must never rewrite someone else's words.
            let refusal = Refusal::OthersComment {
                author: &comment.author.login,
            };
            problems.push(refusal.describe(dialect.name()));
            if let Some(answer) = dialect.refuse(site, &refusal) {
                return answer;
            }
        }
        comment.body = text(&body, "body").unwrap_or_default();
        comment.edits += 1;
        comment.updated = now;
        Response::json(200, &dialect.comment(site, comment))
    }

    pub(in super::super) fn create_status(
        &self,
        state: &mut ForgeState,
        request: &Request,
        sha: &str,
        problems: &mut Vec<String>,
    ) -> Response {
        let (site, dialect) = (&self.site, self.dialect);
        let fields = match self.read(dialect.status_shape(), request, problems) {
            Ok(body) => dialect.status_fields(&body),
            Err(refusal) => return refusal,
        };
        if !state.feedback.commits.contains(sha)
            && let Some(answer) = self.refused(&Refusal::UnknownCommit(sha), problems)
        {
            return answer;
        }
        let previous = state
            .feedback
            .statuses
            .iter()
            .rev()
            .find(|status| status.sha == sha && status.fields.context == fields.context)
            .map(|status| status.fields.state.as_str());
        let transition = Refusal::Transition {
            from: previous,
            to: &fields.state,
        };
        if let Some(answer) = self.refused(&transition, problems) {
            return answer;
        }
        let status = CommitStatus {
            id: state.feedback.next_id(),
            sha: sha.to_string(),
            creator: state.feedback.bot(),
            created: state.tick(),
            fields,
        };
        let answer = Response::json(201, &dialect.status(site, &status));
        state.feedback.statuses.push(status);
        answer
    }

    pub(in super::super) fn create_deployment(
        &self,
        state: &mut ForgeState,
        request: &Request,
        problems: &mut Vec<String>,
    ) -> Response {
        let site = &self.site;
        let Some(deployments) = self.dialect.deployments() else {
            return self.dialect.not_found(site, Missing::Endpoint);
        };
        let body = match self.read(deployments.deployment_shape(), request, problems) {
            Ok(body) => body,
            Err(refusal) => return refusal,
        };
        let reference = text(&body, "ref").unwrap_or_default();
        let Some(sha) = state.resolve(&reference) else {
            return self
                .refused(&Refusal::UnknownRef(&reference), problems)
                .unwrap_or_else(|| self.dialect.error(site, 422));
        };
        let required: Option<Vec<String>> = body
            .get("required_contexts")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            });
        let checked = state.feedback.required_states(&sha, required.as_deref());
        if checked.iter().any(|(_, state)| state != "success") {
            let refusal = Refusal::Contexts {
                reference: &reference,
                checked: &checked,
            };
            if let Some(answer) = self.refused(&refusal, problems) {
                return answer;
            }
        }
        let environment = text(&body, "environment").unwrap_or_else(|| "production".into());
        let deployment = Deployment {
            id: state.feedback.next_id(),
            sha,
            task: text(&body, "task").unwrap_or_else(|| "deploy".into()),
            payload: body.get("payload").cloned().unwrap_or_else(|| json!({})),
            original_environment: environment.clone(),
            description: text(&body, "description"),
            transient: flag(&body, "transient_environment", false),
            production: flag(&body, "production_environment", environment == "production"),
            auto_merge: flag(&body, "auto_merge", true),
            required_contexts: required,
            creator: state.feedback.bot(),
            created: state.tick(),
            statuses: Vec::new(),
            environment,
            reference,
        };
        let answer = Response::json(201, &deployments.deployment(site, &deployment));
        state.feedback.deployments.push(deployment);
        answer
    }

    pub(in super::super) fn create_deployment_status(
        &self,
        state: &mut ForgeState,
        request: &Request,
        id: u64,
        problems: &mut Vec<String>,
    ) -> Response {
        let site = &self.site;
        let Some(deployments) = self.dialect.deployments() else {
            return self.dialect.not_found(site, Missing::Endpoint);
        };
        let body = match self.read(deployments.status_shape(), request, problems) {
            Ok(body) => body,
            Err(refusal) => return refusal,
        };
        let Some(index) = state.feedback.deployments.iter().position(|d| d.id == id) else {
            return self.dialect.not_found(site, Missing::Deployment);
        };
        let now = state.tick();
        let feedback = &mut state.feedback;
        let creator = feedback.bot();
        let status_id = feedback.next_id();
        let deployment = &mut feedback.deployments[index];
        if let Some(environment) = text(&body, "environment") {
            deployment.environment = environment;
        }
        let status = DeploymentStatus {
            id: status_id,
            state: text(&body, "state").unwrap_or_default(),
            description: text(&body, "description").unwrap_or_default(),
            environment: deployment.environment.clone(),
            environment_url: text(&body, "environment_url"),
            log_url: text(&body, "log_url").or_else(|| text(&body, "target_url")),
            creator,
            created: now,
        };
        let answer = Response::json(201, &deployments.status(site, deployment, &status));
        let succeeded = status.state == "success";
        deployment.statuses.push(status);
        if succeeded && flag(&body, "auto_inactive", true) {
            feedback.deactivate_before(index, now);
        }
        answer
    }

    /// The body as `shape` takes it, or the forge's refusal, with what was wrong in `problems`.
    fn read(
        &self,
        shape: &Shape,
        request: &Request,
        problems: &mut Vec<String>,
    ) -> Result<Map<String, Value>, Response> {
        body::check(shape, request).map_err(|faults| {
            problems.extend(faults.iter().map(body::Fault::describe));
            self.dialect.invalid(&self.site, shape, &faults)
        })
    }

    /// The forge's answer to a refused write, recorded as a problem; `None` where this forge lets it through.
    fn refused(&self, refusal: &Refusal, problems: &mut Vec<String>) -> Option<Response> {
        let answer = self.dialect.refuse(&self.site, refusal)?;
        problems.push(refusal.describe(self.dialect.name()));
        Some(answer)
    }
}
