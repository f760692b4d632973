//! Where a variable is defined, and how specific that is.

use serde::{Deserialize, Serialize};

/// A scope a variable or secret can be set at, as `preview vars set --scope` names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scope {
    Project,
    Environment {
        environment: String,
    },
    Service {
        service: String,
    },
    /// A service in one environment: the most specific scope.
    ServiceInEnvironment {
        service: String,
        environment: String,
    },
}

impl Scope {
    pub fn level(&self) -> Level {
        match self {
            Scope::Project => Level::Project,
            Scope::Environment { .. } => Level::Environment,
            Scope::Service { .. } => Level::Service,
            Scope::ServiceInEnvironment { .. } => Level::ServiceInEnvironment,
        }
    }

    /// `project`, `environment:staging`, `service:web`, `service:web@staging`: the CLI's `--scope` syntax.
    pub fn parse(text: &str) -> Result<Scope, String> {
        let (kind, rest) = text.split_once(':').unwrap_or((text, ""));
        match (kind, rest) {
            ("project", "") => Ok(Scope::Project),
            ("environment", environment) if !environment.is_empty() => Ok(Scope::Environment {
                environment: environment.to_owned(),
            }),
            ("service", rest) if !rest.is_empty() => match rest.split_once('@') {
                Some((service, environment)) if !service.is_empty() && !environment.is_empty() => {
                    Ok(Scope::ServiceInEnvironment {
                        service: service.to_owned(),
                        environment: environment.to_owned(),
                    })
                }
                Some(_) => Err(format!(
                    "`{text}` is not a scope; write service:NAME@ENVIRONMENT"
                )),
                None => Ok(Scope::Service {
                    service: rest.to_owned(),
                }),
            },
            _ => Err(format!(
                "`{text}` is not a scope; use `project`, `environment:NAME`, `service:NAME` or `service:NAME@ENVIRONMENT`"
            )),
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Project => write!(f, "project"),
            Scope::Environment { environment } => write!(f, "environment:{environment}"),
            Scope::Service { service } => write!(f, "service:{service}"),
            Scope::ServiceInEnvironment {
                service,
                environment,
            } => write!(f, "service:{service}@{environment}"),
        }
    }
}

/// Precedence, least specific first: a definition at a later level shadows earlier ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    BuiltIn,
    Project,
    Environment,
    Service,
    ServiceInEnvironment,
}

/// Where a definition comes from. At one level, the spec file comes first, then values set through the CLI or
/// API, then secrets: a later source wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum Source {
    BuiltIn,
    Spec {
        path: String,
        line: usize,
        column: usize,
    },
    Stored {
        scope: Scope,
    },
    Secret {
        scope: Scope,
    },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::BuiltIn => write!(f, "built-in"),
            Source::Spec { path, line, column } => write!(f, "spec {path} ({line}:{column})"),
            Source::Stored { scope } => write!(f, "set at {scope}"),
            Source::Secret { scope } => write!(f, "secret at {scope}"),
        }
    }
}
