//! GitHub's writes about a pull request: the bodies its comment, commit-status and deployment endpoints take (the
//! status and deployment ones checked against a schema, so no field besides the documented ones), the shapes it
//! answers with, and how it words a refusal: `Validation Failed` with an `errors` list, or a conflict.

use serde_json::{Value, json};

use super::{
    Comment, CommitStatus, Deployment, DeploymentStatus, Deployments, Fault, Field, Github, Person,
    Refusal, Response, Shape, Site, Type, Wrong, iso, person,
};

const STATUS_STATES: &[&str] = &["error", "failure", "pending", "success"];
const DEPLOYMENT_STATES: &[&str] = &[
    "error",
    "failure",
    "inactive",
    "in_progress",
    "queued",
    "pending",
    "success",
];

pub(super) static COMMENT: Shape = Shape {
    resource: "IssueComment",
    docs: "https://docs.github.com/rest/issues/comments#create-an-issue-comment",
    fields: &[Field::required("body", Type::Text)
        .nonblank()
        .at_most(65_536)],
    closed: false,
};

pub(super) static STATUS: Shape = Shape {
    resource: "Status",
    docs: "https://docs.github.com/rest/commits/statuses#create-a-commit-status",
    fields: &[
        Field::required("state", Type::OneOf(STATUS_STATES)),
        Field::optional("target_url", Type::TextOrNull),
        Field::optional("description", Type::TextOrNull).at_most(140),
        Field::optional("context", Type::Text),
    ],
    closed: true,
};

static DEPLOYMENT: Shape = Shape {
    resource: "Deployment",
    docs: "https://docs.github.com/rest/deployments/deployments#create-a-deployment",
    fields: &[
        Field::required("ref", Type::Text),
        Field::optional("task", Type::Text),
        Field::optional("auto_merge", Type::Flag),
        Field::optional("required_contexts", Type::Texts),
        Field::optional("payload", Type::Payload),
        Field::optional("environment", Type::Text),
        Field::optional("description", Type::TextOrNull),
        Field::optional("transient_environment", Type::Flag),
        Field::optional("production_environment", Type::Flag),
    ],
    closed: true,
};

static DEPLOYMENT_STATUS: Shape = Shape {
    resource: "DeploymentStatus",
    docs: "https://docs.github.com/rest/deployments/statuses#create-a-deployment-status",
    fields: &[
        Field::required("state", Type::OneOf(DEPLOYMENT_STATES)),
        Field::optional("target_url", Type::Text),
        Field::optional("log_url", Type::Text),
        Field::optional("description", Type::Text).at_most(140),
        Field::optional("environment", Type::Text),
        Field::optional("environment_url", Type::Text),
        Field::optional("auto_inactive", Type::Flag),
    ],
    closed: true,
};

fn api(site: &Site) -> String {
    format!("{}/repos/{}", site.url, site.repository)
}

pub(super) fn user(site: &Site, user: &Person) -> Value {
    let mut value = person(site, &user.login, user.id);
    for (key, field) in [
        ("name", Value::Null),
        ("email", Value::Null),
        ("created_at", json!("2024-01-01T00:00:00Z")),
        ("updated_at", json!("2024-01-01T00:00:00Z")),
    ] {
        value[key] = field;
    }
    value
}

pub(super) fn comment(site: &Site, comment: &Comment) -> Value {
    let (id, number) = (comment.id, comment.number);
    json!({
        "url": format!("{}/issues/comments/{id}", api(site)),
        "html_url": format!("{}/{}/pull/{number}#issuecomment-{id}", site.url, site.repository),
        "issue_url": format!("{}/issues/{number}", api(site)),
        "id": id,
        "node_id": format!("IC_kwDO{id}"),
        "user": person(site, &comment.author.login, comment.author.id),
        "created_at": iso(comment.created),
        "updated_at": iso(comment.updated),
        "author_association": if comment.author.login == site.owner() { "OWNER" } else { "NONE" },
        "body": comment.body,
        "performed_via_github_app": null,
    })
}

pub(super) fn status(site: &Site, status: &CommitStatus) -> Value {
    let fields = &status.fields;
    json!({
        "url": format!("{}/statuses/{}", api(site), status.sha),
        "avatar_url": null,
        "id": status.id,
        "node_id": format!("SC_kwDO{}", status.id),
        "state": fields.state,
        "description": fields.description,
        "target_url": fields.target_url,
        "context": fields.context,
        "created_at": iso(status.created),
        "updated_at": iso(status.created),
        "creator": person(site, &status.creator.login, status.creator.id),
    })
}

/// GitHub's refusal of a body: unreadable JSON is a 400, fields not as documented a 422 listing each.
pub(super) fn invalid(shape: &Shape, faults: &[Fault]) -> Response {
    if let Some(fault) = faults.iter().find(|fault| fault.field.is_none()) {
        let message = match fault.wrong {
            Wrong::NotObject => "Body should be a JSON object",
            _ => "Problems parsing JSON",
        };
        return Github.answer(400, message, shape.docs);
    }
    let errors: Vec<Value> = faults
        .iter()
        .map(|fault| {
            let field = fault.field.as_deref().unwrap_or_default();
            let mut error = json!({"resource": shape.resource, "field": field, "code": "invalid"});
            match &fault.wrong {
                Wrong::Missing => error["code"] = json!("missing_field"),
                Wrong::Blank => {
                    error["code"] = json!("custom");
                    error["message"] = json!(format!("{field} cannot be blank"));
                }
                Wrong::TooLong { max, .. } => {
                    error["code"] = json!("custom");
                    error["message"] =
                        json!(format!("{field} is too long (maximum is {max} characters)"));
                }
                _ => {}
            }
            error
        })
        .collect();
    Response::json(
        422,
        &json!({
            "message": "Validation Failed",
            "errors": errors,
            "documentation_url": shape.docs,
            "status": "422",
        }),
    )
}

pub(super) fn refuse(refusal: &Refusal) -> Option<Response> {
    match refusal {
        Refusal::UnknownCommit(sha) => {
            Some(Github.answer(422, &format!("No commit found for SHA: {sha}"), STATUS.docs))
        }
        Refusal::UnknownRef(reference) => Some(Github.answer(
            422,
            &format!("No ref found for: {reference}"),
            DEPLOYMENT.docs,
        )),
        Refusal::Contexts { reference, checked } => {
            let contexts: Vec<Value> = checked
                .iter()
                .map(|(context, state)| json!({"context": context, "state": state}))
                .collect();
            Some(Response::json(
                409,
                &json!({
                    "message": format!("Conflict: Commit status checks failed for {reference}."),
                    "errors": [{
                        "contexts": contexts,
                        "resource": "Deployment",
                        "field": "required_contexts",
                        "code": "invalid",
                    }],
                    "documentation_url": DEPLOYMENT.docs,
                    "status": "409",
                }),
            ))
        }
        // A token with write access may edit anyone's comment, and statuses repeat freely.
        Refusal::OthersComment { .. } | Refusal::Transition { .. } => None,
    }
}

impl Deployments for Github {
    fn deployment_shape(&self) -> &'static Shape {
        &DEPLOYMENT
    }

    fn status_shape(&self) -> &'static Shape {
        &DEPLOYMENT_STATUS
    }

    fn deployment(&self, site: &Site, deployment: &Deployment) -> Value {
        let (api, id) = (api(site), deployment.id);
        json!({
            "url": format!("{api}/deployments/{id}"),
            "id": id,
            "node_id": format!("DE_kwDO{id}"),
            "sha": deployment.sha,
            "ref": deployment.reference,
            "task": deployment.task,
            "payload": deployment.payload,
            "original_environment": deployment.original_environment,
            "environment": deployment.environment,
            "description": deployment.description,
            "creator": person(site, &deployment.creator.login, deployment.creator.id),
            "created_at": iso(deployment.created),
            "updated_at": iso(deployment.created),
            "statuses_url": format!("{api}/deployments/{id}/statuses"),
            "repository_url": api,
            "transient_environment": deployment.transient,
            "production_environment": deployment.production,
            "performed_via_github_app": null,
        })
    }

    fn status(&self, site: &Site, deployment: &Deployment, status: &DeploymentStatus) -> Value {
        let (api, id) = (api(site), status.id);
        let deployment_url = format!("{api}/deployments/{}", deployment.id);
        let log_url = status.log_url.clone().unwrap_or_default();
        json!({
            "url": format!("{deployment_url}/statuses/{id}"),
            "id": id,
            "node_id": format!("DES_kwDO{id}"),
            "state": status.state,
            "creator": person(site, &status.creator.login, status.creator.id),
            "description": status.description,
            "environment": status.environment,
            "target_url": log_url,
            "created_at": iso(status.created),
            "updated_at": iso(status.created),
            "deployment_url": deployment_url,
            "repository_url": api,
            "environment_url": status.environment_url.clone().unwrap_or_default(),
            "log_url": log_url,
            "performed_via_github_app": null,
        })
    }
}
