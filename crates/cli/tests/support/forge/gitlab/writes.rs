//! GitLab's writes about a merge request: notes and commit statuses, the bodies they take (Grape reads them loosely:
//! unknown fields are ignored), GitLab's shapes of them, and how it refuses: Grape's `{"error"}` for parameters, the
//! model's `{"message"}` for what it will not store, and the state machine's for a status it cannot move to.

use serde_json::{Value, json};

use super::{
    Comment, CommitStatus, Fault, Field, Person, Refusal, Response, Shape, Site, Type, Wrong,
    person, stable_id, time,
};

pub(super) static NOTE: Shape = Shape {
    resource: "Note",
    docs: "https://docs.gitlab.com/ee/api/notes.html#create-new-merge-request-note",
    fields: &[Field::required("body", Type::Text)
        .nonblank()
        .at_most(1_000_000)],
    closed: false,
};

pub(super) static STATUS: Shape = Shape {
    resource: "CommitStatus",
    docs: "https://docs.gitlab.com/ee/api/commits.html#set-the-pipeline-status-of-a-commit",
    fields: &[
        Field::required(
            "state",
            Type::OneOf(&["pending", "running", "success", "failed", "canceled"]),
        ),
        Field::optional("ref", Type::Text),
        Field::optional("name", Type::Text),
        Field::optional("context", Type::Text),
        Field::optional("target_url", Type::Text),
        Field::optional("description", Type::Text),
        Field::optional("pipeline_id", Type::Integer),
    ],
    closed: false,
};

pub(super) fn user(site: &Site, user: &Person) -> Value {
    let mut value = person(site, &user.login, user.id);
    for (key, field) in [
        ("created_at", json!("2024-01-01T00:00:00.000Z")),
        ("bio", json!("")),
        ("public_email", Value::Null),
        // Project and group access tokens act as bot users named `project_{id}_bot_{hash}`.
        ("bot", json!(user.login.contains("_bot"))),
        ("is_admin", json!(false)),
    ] {
        value[key] = field;
    }
    value
}

pub(super) fn note(site: &Site, comment: &Comment) -> Value {
    json!({
        "id": comment.id,
        "type": null,
        "body": comment.body,
        "attachment": null,
        "author": person(site, &comment.author.login, comment.author.id),
        "created_at": time(comment.created),
        "updated_at": time(comment.updated),
        "system": false,
        "noteable_id": 10_000 + comment.number,
        "noteable_type": "MergeRequest",
        "project_id": site.id,
        "resolvable": false,
        "confidential": false,
        "internal": false,
        "noteable_iid": comment.number,
        "commands_changes": {},
    })
}

pub(super) fn status(site: &Site, status: &CommitStatus) -> Value {
    let fields = &status.fields;
    let at = time(status.created);
    let started = fields.state != "pending";
    let finished = matches!(fields.state.as_str(), "success" | "failed" | "canceled");
    json!({
        "id": status.id,
        "sha": status.sha,
        "ref": fields.reference,
        "status": fields.state,
        "name": fields.context,
        "target_url": fields.target_url,
        "description": fields.description,
        "created_at": at,
        "started_at": started.then(|| at.clone()),
        "finished_at": finished.then(|| at.clone()),
        "allow_failure": false,
        "coverage": null,
        "pipeline_id": stable_id(&format!("pipeline {}", status.sha)),
        "author": person(site, &status.creator.login, status.creator.id),
    })
}

/// GitLab's refusal of a body, always a 400.
pub(super) fn invalid(shape: &Shape, faults: &[Fault]) -> Response {
    // A length the model refuses comes as the model's errors, in Ruby's notation.
    if let Some((field, max)) = faults.iter().find_map(|fault| match fault.wrong {
        Wrong::TooLong { max, .. } => Some((fault.field.as_deref().unwrap_or_default(), max)),
        _ => None,
    }) {
        let attribute = if field == "body" { "note" } else { field };
        let message = format!(
            "400 Bad request - {} {{:{attribute}=>[\"is too long (maximum is {max} characters)\"]}}",
            shape.resource
        );
        return Response::json(400, &json!({ "message": message }));
    }
    let errors: Vec<String> = faults
        .iter()
        .map(|fault| {
            let field = fault.field.as_deref().unwrap_or_default();
            match &fault.wrong {
                // Sent as anything else than JSON, the body is read as a form, where no field is found.
                Wrong::ContentType(_) => shape
                    .fields
                    .iter()
                    .filter(|field| field.required)
                    .map(|field| format!("{} is missing", field.name))
                    .collect::<Vec<_>>()
                    .join(", "),
                Wrong::NotJson(_) | Wrong::NotObject => {
                    "The request body is not a valid JSON object".into()
                }
                Wrong::Missing => format!("{field} is missing"),
                Wrong::Blank => format!("{field} is empty"),
                Wrong::Type(Type::OneOf(_)) => format!("{field} does not have a valid value"),
                _ => format!("{field} is invalid"),
            }
        })
        .collect();
    Response::json(400, &json!({"error": errors.join(", ")}))
}

pub(super) fn refuse(refusal: &Refusal) -> Option<Response> {
    let message =
        |status: u16, message: String| Some(Response::json(status, &json!({ "message": message })));
    match refusal {
        Refusal::UnknownCommit(_) => message(404, "404 Commit Not Found".into()),
        // Only its author may edit a note, whatever the token's role.
        Refusal::OthersComment { .. } => message(403, "403 Forbidden".into()),
        // A pending or running status is updated in place through the state machine, which has no transition to
        // the state it is in; a finished one is followed by a new status, so any state may come after it.
        Refusal::Transition {
            from: Some(from),
            to,
        } if from == to => {
            let event = match *to {
                "pending" => "enqueue",
                "running" => "run",
                _ => return None,
            };
            message(
                400,
                format!(
                    "Cannot transition status via :{event} from :{from} (Reason(s): Status cannot transition via \"{event}\".)"
                ),
            )
        }
        Refusal::Transition { .. } | Refusal::UnknownRef(_) | Refusal::Contexts { .. } => None,
    }
}
