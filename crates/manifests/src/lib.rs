//! An environment's resources as Kubernetes objects, and nothing else: no client, no I/O, no clock.
//!
//! Each resource of a plan becomes the objects that make it on a cluster — the space a Namespace with its
//! isolation baseline (Pod Security `restricted`, default-deny NetworkPolicies with the allows an environment
//! needs, a ResourceQuota, a LimitRange, a ServiceAccount without a token), the secret set one Secret, an app a
//! Deployment and a Service, a job a Job, a database a StatefulSet with its volume and a headless Service, a
//! route an Ingress or an HTTPRoute, the certificate a cert-manager Certificate. Objects are built as `k8s-openapi`
//! types (or, for custom resources, as the documented JSON) and carried as [`Object`]s, which the runtime applies
//! by server-side apply.
//!
//! Secret values enter only through [`Values::Revealed`], only into Secret objects, and an [`Object`]'s `Debug`
//! and its redacted YAML never print them.

mod apps;
mod databases;
mod jobs;
mod labels;
mod object;
mod pods;
mod routes;
mod secrets;
mod settings;
mod space;

pub use databases::password_name;
pub use object::{Object, to_yaml};
pub use routes::{TLS_CERTIFICATE, TLS_KEY};
pub use settings::{Certificates, RouteApi, Settings};

use preview_plan::{Resource, ResourceKind};
use std::collections::BTreeMap;

/// Where an environment lives on its cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub project: String,
    pub environment: String,
    /// The environment's namespace: unique per incarnation, so that making an environment again never waits for a
    /// namespace that is still terminating.
    pub namespace: String,
}

/// The secret values a Secret object is rendered with.
pub enum Values<'a> {
    /// By the names resources list secrets under (`project/NAME`, `database:db/password`).
    Revealed(&'a BTreeMap<String, preview_secrets::Secret>),
    /// `[redacted]` in place of every value, for review (`preview render`).
    Redacted,
}

impl Values<'_> {
    /// The bytes `make` turns the value of `name` into; `[redacted]` when redacting; an error saying `missing`
    /// when the value is not at hand, so that no object is rendered half-empty.
    pub(crate) fn bytes(
        &self,
        resource: &Resource,
        name: &str,
        missing: &str,
        make: impl FnOnce(&str) -> Vec<u8>,
    ) -> Result<Vec<u8>, RenderError> {
        match self {
            Values::Redacted => Ok(object::REDACTED.as_bytes().to_vec()),
            Values::Revealed(values) => values
                .get(name)
                .map(|secret| make(secret.expose()))
                .ok_or_else(|| RenderError::new(resource, missing)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{resource}: {message}")]
pub struct RenderError {
    /// The resource id (`app/web`).
    pub resource: String,
    pub message: String,
}

impl RenderError {
    pub(crate) fn new(resource: &Resource, message: impl Into<String>) -> RenderError {
        RenderError {
            resource: resource.id.clone(),
            message: message.into(),
        }
    }
}

/// The objects that make `resource` in `target`, in the order they are applied.
pub fn render(
    resource: &Resource,
    target: &Target,
    settings: &Settings,
    values: &Values<'_>,
) -> Result<Vec<Object>, RenderError> {
    match resource.kind {
        ResourceKind::Space => space::render(resource, target, settings),
        ResourceKind::Secrets => secrets::render(resource, target, values).map(|s| vec![s]),
        ResourceKind::App => apps::render(resource, target),
        ResourceKind::Job => jobs::render(resource, target).map(|j| vec![j]),
        ResourceKind::Database => databases::render(resource, target, settings, values),
        ResourceKind::Route => routes::render_route(resource, target, settings, values),
        ResourceKind::Certificate => routes::render_certificate(resource, target, settings, values),
        // Images are built before they are named in the spec: a build has nothing on a cluster.
        ResourceKind::Build => Ok(Vec::new()),
    }
}

/// A namespace name for a new incarnation of an environment: `<project>-<environment>-<suffix>`, cut so that it
/// stays a DNS label (63 characters) with its suffix whole. `suffix` comes from the caller (random per incarnation).
pub fn namespace_name(project: &str, environment: &str, suffix: &str) -> String {
    let base = format!("{project}-{environment}");
    let room = 63 - suffix.len() - 1;
    let base: String = base.chars().take(room).collect();
    format!("{}-{suffix}", base.trim_end_matches('-'))
}
