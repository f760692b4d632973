//! `SelfSubjectAccessReview`: may the client do this? Yes, unless a test denied that verb on that resource.

use serde_json::{Value, json};

use super::request::Request;
use super::state::State;
use super::status::ApiError;

/// A verb on a resource the credentials may not use (`*` matches any).
#[derive(Debug, Clone)]
pub(crate) struct Denial {
    pub verb: String,
    pub group: String,
    pub resource: String,
}

impl Denial {
    fn covers(&self, verb: &str, group: &str, resource: &str) -> bool {
        let matches = |rule: &str, asked: &str| rule == "*" || rule == asked;
        matches(&self.verb, verb)
            && matches(&self.group, group)
            && matches(&self.resource, resource)
    }
}

/// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`.
pub(crate) fn review(state: &State, request: &Request) -> Result<(u16, Value), ApiError> {
    if request.method != "POST" {
        return Err(ApiError::method_not_allowed());
    }
    let body = request.object()?;
    let spec = body["spec"].clone();
    let attributes = &spec["resourceAttributes"];
    let field = |name: &str| attributes[name].as_str().unwrap_or_default().to_owned();
    let (verb, group, resource) = (field("verb"), field("group"), field("resource"));
    let denied = state
        .denials
        .iter()
        .any(|d| d.covers(&verb, &group, &resource));
    let status = if denied {
        let what = if group.is_empty() {
            resource.clone()
        } else {
            format!("{resource}.{group}")
        };
        json!({ "allowed": false, "reason": format!("no RBAC policy matched: {verb} on {what} is not allowed") })
    } else {
        json!({ "allowed": true })
    };
    Ok((
        201,
        json!({
            "kind": "SelfSubjectAccessReview",
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": { "creationTimestamp": null },
            "spec": spec,
            "status": status,
        }),
    ))
}
