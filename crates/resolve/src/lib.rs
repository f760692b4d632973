//! Spec + stored variables + one environment (+ a pull request's context) → a [`ResolvedEnvironment`]: every
//! service with the effective value of each variable it sees and where that value came from.
//!
//! Precedence, least specific first: built-in < project < environment < service < service in the environment.
//! At one level, values from the spec file come first, then values set through the CLI or API, then secrets;
//! the last one wins. A clone (a preview) sees its source environment's scopes before its own. Aliases and
//! `${{ … }}` references are expanded in dependency order; a cycle or a missing reference is an error naming the
//! chain. Secret values never pass through this crate: a value that needs one holds a [`SecretRef`] that a
//! runtime resolves at the moment it applies the resource. No I/O.

mod definitions;
mod expand;
mod outputs;
mod scope;
mod value;

use std::collections::BTreeMap;

use preview_spec::{
    DomainSettings, Environment, Isolation, Resources, RuntimeKind, SecretInPreviews, ServiceKind,
    Spec,
};
use serde::{Deserialize, Serialize};

pub use outputs::{Endpoint, database_identity};
pub use scope::{Level, Scope, Source};
pub use value::{Part, SecretRef, Value};

use definitions::Raw;

/// A variable set through the CLI or API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredVariable {
    pub name: String,
    pub scope: Scope,
    pub value: String,
}

/// A secret that has a value in the store: only its name, scope and preview policy reach the resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSecret {
    pub name: String,
    pub scope: Scope,
    pub previews: SecretInPreviews,
}

/// What a preview of a pull request knows about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviewContext {
    pub forge: String,
    pub repository: String,
    pub number: u64,
    pub branch: String,
    pub commit: String,
}

/// Everything besides the spec that resolution takes into account.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub stored: Vec<StoredVariable>,
    pub secrets: Vec<StoredSecret>,
    pub preview: Option<PreviewContext>,
    /// For a clone: the environment it was made from.
    pub based_on: Option<String>,
    /// Where each service listens, as the runtime assigns it; services missing here get their name and
    /// declared port.
    pub endpoints: BTreeMap<String, Endpoint>,
    /// The commit the environment's apps are built from, when the project's spec lives in a git repository.
    pub source: Option<SourceCommit>,
    /// The port public URLs are served on (the gateway's HTTPS port); `None` or 443: none in the URL.
    pub public_port: Option<u16>,
}

/// Where an environment's code comes from: a commit of a repository on the daemon's machine, and the directory
/// of the spec inside it (where build and run commands run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceCommit {
    /// The repository's top-level directory.
    pub repository: String,
    /// The spec's directory, relative to the repository (`""` at the top).
    pub directory: String,
    /// The full commit id.
    pub commit: String,
}

impl Context {
    /// Previews of pull requests and other clones follow the secrets' preview policies.
    pub fn is_preview(&self) -> bool {
        self.preview.is_some() || self.based_on.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResolvedEnvironment {
    pub project: String,
    pub name: String,
    pub isolation: Isolation,
    pub runtime: RuntimeKind,
    pub domain: DomainSettings,
    pub services: BTreeMap<String, ResolvedService>,
    pub source: Option<SourceCommit>,
    /// For previews: who may open their URLs, as the preview policy says.
    pub access: Option<preview_spec::Access>,
    /// A preview of a pull request or another clone: it runs code nobody reviewed yet.
    pub preview: bool,
    /// The totals of everything the environment runs at once, as the spec layers them (previews always have
    /// them); a key that is `None` has no total.
    pub limits: Resources,
    /// Where the runtime has each app listen (the context's endpoints): the runtime reserves exactly these when it
    /// makes the environment's space, so that the addresses in variables are the ones that are served.
    pub endpoints: BTreeMap<String, Endpoint>,
    /// The registered cluster the environment is made on (Kubernetes); `None`: the daemon's own.
    pub cluster: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResolvedService {
    pub name: String,
    pub kind: ServiceKind,
    pub depends_on: Vec<String>,
    pub variables: BTreeMap<String, EffectiveVariable>,
    /// Public hostnames (generated first, then custom domains), empty for internal services.
    pub hostnames: Vec<String>,
}

/// A variable's effective value and its provenance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EffectiveVariable {
    pub name: String,
    pub value: Value,
    pub level: Level,
    pub source: Source,
    /// The definitions it won over, least specific first, as people may see them (secrets as `[secret]`).
    pub shadowed: Vec<Shadowed>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shadowed {
    pub level: Level,
    pub source: Source,
    pub value: String,
}

/// A variable that cannot be resolved, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ResolveError {
    pub service: String,
    pub variable: String,
    pub message: String,
}

impl std::fmt::Display for ResolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "service `{}`, variable `{}`: {}",
            self.service, self.variable, self.message
        )
    }
}

/// Resolves `environment` (a declared environment of `spec`, or a clone built by `preview_spec`).
pub fn resolve_environment(
    spec: &Spec,
    environment: &Environment,
    context: &Context,
) -> Result<ResolvedEnvironment, Vec<ResolveError>> {
    let mut services = BTreeMap::new();
    let mut errors: Vec<ResolveError> = Vec::new();
    for service in environment.services.values() {
        let definitions = definitions::collect(spec, environment, service, context);
        let mut expander = expand::Expander::new(spec, environment, context, &definitions);
        let mut variables = BTreeMap::new();
        for (name, candidates) in &definitions {
            let Some(winner) = candidates.last() else {
                continue;
            };
            match expander.variable(name) {
                Ok(value) => {
                    let shadowed = candidates[..candidates.len() - 1]
                        .iter()
                        .map(|d| Shadowed {
                            level: d.level,
                            source: d.source.clone(),
                            value: shown(&d.raw),
                        })
                        .collect();
                    let variable = EffectiveVariable {
                        name: name.clone(),
                        value,
                        level: winner.level,
                        source: winner.source.clone(),
                        shadowed,
                    };
                    variables.insert(name.clone(), variable);
                }
                // One cause is reported once, at the first variable that meets it.
                Err(message)
                    if !errors
                        .iter()
                        .any(|e| e.service == service.name && e.message == message) =>
                {
                    errors.push(ResolveError {
                        service: service.name.clone(),
                        variable: name.clone(),
                        message,
                    });
                }
                Err(_) => {}
            }
        }
        let resolved = ResolvedService {
            name: service.name.clone(),
            kind: service.kind.clone(),
            depends_on: service
                .depends_on
                .iter()
                .map(|d| d.service.clone())
                .collect(),
            variables,
            hostnames: hostnames(spec, &environment.name, service),
        };
        services.insert(service.name.clone(), resolved);
    }
    if !errors.is_empty() {
        errors.sort();
        return Err(errors);
    }
    Ok(ResolvedEnvironment {
        project: spec.project.clone(),
        name: environment.name.clone(),
        isolation: spec.isolation,
        runtime: spec.runtime,
        domain: spec.domain.clone(),
        services,
        source: context.source.clone(),
        access: spec
            .previews
            .as_ref()
            .filter(|_| context.is_preview())
            .and_then(|policy| policy.access.clone()),
        preview: context.is_preview(),
        limits: environment.limits.clone(),
        endpoints: context.endpoints.clone(),
        cluster: environment.cluster.clone(),
    })
}

fn shown(raw: &Raw) -> String {
    match raw {
        Raw::Text(text) => text.clone(),
        Raw::Alias(target) => format!("alias of {target}"),
        Raw::Value(value) => value.redacted(),
    }
}

fn hostnames(spec: &Spec, environment: &str, service: &preview_spec::Service) -> Vec<String> {
    let ServiceKind::App(app) = &service.kind else {
        return Vec::new();
    };
    if !app.public {
        return Vec::new();
    }
    let generated = spec
        .domain
        .hostname_for(&spec.project, &service.name, environment);
    let custom = app.domains.iter().map(|d| {
        preview_spec::fill_placeholders(&d.name, &spec.project, &service.name, environment)
    });
    std::iter::once(generated).chain(custom).collect()
}
