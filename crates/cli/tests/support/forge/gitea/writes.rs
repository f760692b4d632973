//! Gitea's writes about a pull request: comments and commit statuses, the bodies they take (Go reads them loosely:
//! unknown fields are ignored), Gitea's shapes of them, and its refusals, `{"message", "url"}` as everywhere in it.

use serde_json::{Value, json};

use super::{
    Comment, CommitStatus, Fault, Field, Gitea, Person, Refusal, Response, Shape, Site, Type,
    Wrong, iso, person,
};

pub(super) static COMMENT: Shape = Shape {
    resource: "CreateIssueCommentOption",
    docs: "https://gitea.com/api/swagger#/issue/issueCreateComment",
    fields: &[Field::required("body", Type::Text).nonblank()],
    closed: false,
};

pub(super) static STATUS: Shape = Shape {
    resource: "CreateStatusOption",
    docs: "https://gitea.com/api/swagger#/repository/repoCreateStatus",
    fields: &[
        Field::required(
            "state",
            Type::OneOf(&["pending", "success", "error", "failure", "warning"]),
        ),
        Field::optional("target_url", Type::Text),
        Field::optional("description", Type::Text),
        Field::optional("context", Type::Text),
    ],
    closed: false,
};

pub(super) fn user(site: &Site, user: &Person) -> Value {
    let mut value = person(site, &user.login, user.id);
    for (key, field) in [
        ("created", json!("2024-01-01T00:00:00Z")),
        ("last_login", json!("2024-01-01T00:00:00Z")),
        ("followers_count", json!(0)),
        ("following_count", json!(0)),
        ("starred_repos_count", json!(0)),
    ] {
        value[key] = field;
    }
    value
}

pub(super) fn comment(site: &Site, comment: &Comment) -> Value {
    let pull = format!("{}/{}/pulls/{}", site.url, site.repository, comment.number);
    json!({
        "id": comment.id,
        "html_url": format!("{pull}#issuecomment-{}", comment.id),
        "pull_request_url": pull,
        // Empty on a pull request's comments: `pull_request_url` says where it is.
        "issue_url": "",
        "user": person(site, &comment.author.login, comment.author.id),
        "original_author": "",
        "original_author_id": 0,
        "body": comment.body,
        "assets": [],
        "created_at": iso(comment.created),
        "updated_at": iso(comment.updated),
    })
}

pub(super) fn status(site: &Site, status: &CommitStatus) -> Value {
    let fields = &status.fields;
    json!({
        "id": status.id,
        "status": fields.state,
        "target_url": fields.target_url.clone().unwrap_or_default(),
        "description": fields.description.clone().unwrap_or_default(),
        "url": format!("{}/api/v1/repos/{}/statuses/{}", site.url, site.repository, status.sha),
        "context": fields.context,
        "creator": person(site, &status.creator.login, status.creator.id),
        "created_at": iso(status.created),
        "updated_at": iso(status.created),
    })
}

/// Gitea's refusal of a body: a 422 naming the fields as its form binding does (`[Body]: Required`).
pub(super) fn invalid(site: &Site, faults: &[Fault]) -> Response {
    let message = faults
        .iter()
        .map(|fault| {
            let Some(field) = fault.field.as_deref() else {
                return fault.describe();
            };
            let mut name = field.split('_').map(capitalized).collect::<String>();
            if name == "TargetUrl" {
                name = "TargetURL".into();
            }
            match fault.wrong {
                Wrong::Missing | Wrong::Blank => format!("[{name}]: Required"),
                _ => format!("[{name}]: {}", fault.describe()),
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    Gitea.answer(site, 422, &message, None)
}

pub(super) fn refuse(site: &Site, refusal: &Refusal) -> Option<Response> {
    match refusal {
        Refusal::UnknownCommit(sha) => Some(Gitea.answer(
            site,
            404,
            "The target couldn't be found.",
            Some(vec![format!(
                "object does not exist [id: {sha}, rel_path: ]"
            )]),
        )),
        // A token with write access may edit anyone's comment, and statuses repeat freely.
        Refusal::OthersComment { .. }
        | Refusal::Transition { .. }
        | Refusal::UnknownRef(_)
        | Refusal::Contexts { .. } => None,
    }
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
