//! Refusals as the API server words them: a `Status` object with the HTTP code, the machine-readable `reason`, the
//! message a person reads, and `details` naming the object and, for invalid objects, each field at fault.

use serde_json::{Value, json};

use super::catalog::ResourceType;

/// One field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cause {
    pub reason: String,
    pub message: String,
    pub field: String,
}

impl Cause {
    /// `field: Invalid value: "value": why`.
    pub fn invalid(field: &str, value: &str, why: &str) -> Cause {
        Cause {
            reason: "FieldValueInvalid".to_owned(),
            message: format!("Invalid value: {value}: {why}"),
            field: field.to_owned(),
        }
    }

    /// `field: Required value`, with an optional hint.
    pub fn required(field: &str, hint: &str) -> Cause {
        Cause {
            reason: "FieldValueRequired".to_owned(),
            message: if hint.is_empty() {
                "Required value".to_owned()
            } else {
                format!("Required value: {hint}")
            },
            field: field.to_owned(),
        }
    }

    pub fn forbidden(field: &str, why: &str) -> Cause {
        Cause {
            reason: "FieldValueForbidden".to_owned(),
            message: format!("Forbidden: {why}"),
            field: field.to_owned(),
        }
    }

    pub fn unsupported(field: &str, value: &str, supported: &str) -> Cause {
        Cause {
            reason: "FieldValueNotSupported".to_owned(),
            message: format!("Unsupported value: {value}: supported values: {supported}"),
            field: field.to_owned(),
        }
    }

    fn to_json(&self) -> Value {
        json!({ "reason": self.reason, "message": self.message, "field": self.field })
    }
}

/// A failed request, answered as a `Status`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub code: u16,
    pub reason: String,
    pub message: String,
    pub details: Value,
}

impl ApiError {
    fn new(code: u16, reason: &str, message: String, details: Value) -> ApiError {
        ApiError {
            code,
            reason: reason.to_owned(),
            message,
            details,
        }
    }

    fn object_details(resource: &ResourceType, name: &str) -> Value {
        let mut details = json!({ "name": name, "kind": resource.plural });
        if !resource.group.is_empty() {
            details["group"] = json!(resource.group);
        }
        details
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized".to_owned(), Value::Null)
    }

    /// A path that names no resource the server serves (or a custom kind whose CRD is not installed).
    pub fn no_such_resource() -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource".to_owned(),
            json!({}),
        )
    }

    /// `deployments.apps "web" not found`.
    pub fn not_found(resource: &ResourceType, name: &str) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", resource.resource()),
            ApiError::object_details(resource, name),
        )
    }

    pub fn namespace_not_found(namespace: &str) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("namespaces \"{namespace}\" not found"),
            json!({ "name": namespace, "kind": "namespaces" }),
        )
    }

    pub fn namespace_terminating(resource: &ResourceType, name: &str, namespace: &str) -> ApiError {
        let mut details = ApiError::object_details(resource, name);
        details["causes"] = json!([{
            "reason": "NamespaceTerminating",
            "message": format!("namespace {namespace} is being terminated"),
            "field": "metadata.namespace",
        }]);
        ApiError::new(
            403,
            "Forbidden",
            format!(
                "{} \"{name}\" is forbidden: unable to create new content in namespace {namespace} because it is being terminated",
                resource.resource()
            ),
            details,
        )
    }

    /// `pods "web-x" is forbidden: exceeded quota: …` and other refusals of an object.
    pub fn forbidden(resource: &ResourceType, name: &str, why: &str) -> ApiError {
        ApiError::new(
            403,
            "Forbidden",
            format!("{} \"{name}\" is forbidden: {why}", resource.resource()),
            ApiError::object_details(resource, name),
        )
    }

    pub fn already_exists(resource: &ResourceType, name: &str) -> ApiError {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", resource.resource()),
            ApiError::object_details(resource, name),
        )
    }

    /// `Operation cannot be fulfilled on deployments.apps "web": why` (stale resource versions, preconditions).
    pub fn conflict(resource: &ResourceType, name: &str, why: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                resource.resource()
            ),
            ApiError::object_details(resource, name),
        )
    }

    /// A server-side apply that would take fields other managers own.
    pub fn apply_conflicts(message: String, causes: Vec<Cause>) -> ApiError {
        let causes: Vec<Value> = causes.iter().map(Cause::to_json).collect();
        ApiError::new(409, "Conflict", message, json!({ "causes": causes }))
    }

    /// `Deployment.apps "web" is invalid: field: message` (several causes in brackets).
    pub fn invalid(resource: &ResourceType, name: &str, causes: &[Cause]) -> ApiError {
        let each: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let summary = match each.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        let mut details = json!({
            "name": name,
            "kind": resource.kind,
            "causes": causes.iter().map(Cause::to_json).collect::<Vec<_>>(),
        });
        if !resource.group.is_empty() {
            details["group"] = json!(resource.group);
        }
        ApiError::new(
            422,
            "Invalid",
            format!(
                "{} \"{name}\" is invalid: {summary}",
                resource.qualified_kind()
            ),
            details,
        )
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message.into(), Value::Null)
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource".to_owned(),
            json!({}),
        )
    }

    pub fn unsupported_media_type(content_type: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format ({content_type}) - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml"
            ),
            Value::Null,
        )
    }

    /// A failure a test asked for.
    pub fn injected(code: u16, reason: &str, method: &str, path: &str) -> ApiError {
        ApiError::new(
            code,
            reason,
            format!("{reason}: injected failure of {method} {path}"),
            Value::Null,
        )
    }

    /// The `Status` body.
    pub fn to_json(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if !self.details.is_null() {
            status["details"] = self.details.clone();
        }
        status
    }
}

/// The `Status` a successful delete answers with when the object itself is not returned.
pub(crate) fn deleted(resource: &ResourceType, name: &str, uid: &str) -> Value {
    let mut details = ApiError::object_details(resource, name);
    details["uid"] = json!(uid);
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubernetes::catalog::Catalog;

    #[test]
    fn unauthorized_is_the_servers_own_body() {
        assert_eq!(
            ApiError::unauthorized().to_json(),
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401})
        );
    }

    #[test]
    fn invalid_lists_every_cause() {
        let catalog = Catalog::new();
        let deployments = catalog.by_name("deployments").expect("deployments");
        let error = ApiError::invalid(
            deployments,
            "web",
            &[
                Cause::required("spec.selector", ""),
                Cause::required("spec.template.spec.containers[0].image", ""),
            ],
        );
        assert_eq!(
            error.message,
            "Deployment.apps \"web\" is invalid: [spec.selector: Required value, spec.template.spec.containers[0].image: Required value]"
        );
        assert_eq!(error.to_json()["details"]["group"], "apps");
    }
}
