//! `preview.yaml` → a typed, validated [`Spec`], or every problem at once.
//!
//! This crate owns the spec format: its parsing, its error messages (file, line, column, key path, and what would
//! be right) and the checks that need only the file itself — names, references, cycles, hostnames, domains,
//! clone policies. It does no I/O: callers hand it the text. It knows nothing of stored variables, plans,
//! runtimes or the network.

mod databases;
mod dependencies;
mod diagnostic;
mod environments;
mod glob;
mod levels;
mod limits;
pub mod model;
mod names;
mod previews;
mod quantities;
mod read;
pub mod references;
mod routes;
mod services;
pub mod suggest;
mod variables;
mod yaml;

use std::collections::BTreeMap;

pub use diagnostic::{Diagnostic, Diagnostics, Position};
pub use glob::glob_matches;
pub use model::*;
pub use variables::is_variable_name;

/// Why `name` cannot be a project, service or environment name (a DNS label: lowercase letters, digits and `-`,
/// at most 63 characters), if it cannot.
pub fn name_problem(name: &str) -> Option<String> {
    names::dns_label_problem(name)
}

use diagnostic::Sink;
use limits::Totals;
use read::{Fields, choice, named_entries, text};
use services::{Names, declared_kind, read_service};
use yaml::{Node, Value};

pub(crate) const TOP_KEYS: &[&str] = &[
    "project",
    "domain",
    "isolation",
    "runtime",
    "limits",
    "variables",
    "secrets",
    "services",
    "environments",
    "previews",
];

pub(crate) const ENVIRONMENT_KEYS: &[&str] =
    &["variables", "secrets", "services", "limits", "cluster"];

/// Parses and validates the spec in `source`; `file` is the name used in messages.
pub fn parse_spec(file: &str, source: &str) -> Result<Spec, Diagnostics> {
    parse(file, source, None).map(|(spec, _)| spec)
}

/// The environment `name` as a clone of environment `from`: `from`'s overrides, then the preview overrides; its
/// limits are those of previews. A preview of a pull request is the clone of the blueprint named `pr-<number>`.
pub fn clone_environment(
    file: &str,
    source: &str,
    from: &str,
    name: &str,
) -> Result<(Spec, Environment), Diagnostics> {
    let (spec, clone) = parse(file, source, Some(CloneRequest { from, name }))?;
    match clone {
        Some(environment) => Ok((spec, environment)),
        None => Err(Diagnostics::new(file, Vec::new())),
    }
}

#[derive(Clone, Copy)]
struct CloneRequest<'a> {
    from: &'a str,
    name: &'a str,
}

fn parse(
    file: &str,
    source: &str,
    clone: Option<CloneRequest<'_>>,
) -> Result<(Spec, Option<Environment>), Diagnostics> {
    let mut sink = Sink::default();
    let spec =
        yaml::parse_document(source, &mut sink).and_then(|root| read_spec(&root, clone, &mut sink));
    match spec {
        Some(spec) if sink.is_empty() => Ok(spec),
        _ => Err(Diagnostics::new(file, sink.into_errors())),
    }
}

fn read_spec(
    root: &Node,
    clone: Option<CloneRequest<'_>>,
    sink: &mut Sink,
) -> Option<(Spec, Option<Environment>)> {
    let fields = Fields::open(root, "a project spec", TOP_KEYS, sink)?;
    let project = fields
        .require("project", "the project's name, e.g. `project: shop`", sink)
        .and_then(|n| {
            text(n, "a project name", sink)
                .filter(|name| names::check_name(name, "project name", n, sink))
        });
    let domain = match fields.get("domain") {
        Some(n) => read_domain(n, sink),
        None => Some(DomainSettings {
            base: "localhost".to_owned(),
            hostname: DomainSettings::DEFAULT_HOSTNAME.to_owned(),
        }),
    };
    let isolation = match fields.get("isolation") {
        Some(n) => choice(n, "an isolation", &["logical", "physical"], sink).map(|i| match i {
            "physical" => Isolation::Physical,
            _ => Isolation::Logical,
        }),
        None => Some(Isolation::Logical),
    };
    let runtime = match fields.get("runtime") {
        Some(n) => choice(n, "a runtime", &["local", "kubernetes"], sink).map(|r| match r {
            "kubernetes" => RuntimeKind::Kubernetes,
            _ => RuntimeKind::Local,
        }),
        None => Some(RuntimeKind::Local),
    };
    let variables = fields
        .get("variables")
        .map(|n| variables::read_variables(n, "project", sink))
        .unwrap_or_default();
    let secrets = fields
        .get("secrets")
        .map(|n| variables::read_secrets(n, "project", sink))
        .unwrap_or_default();

    let service_nodes = declared_services(fields.get("services"), sink);
    let kinds: BTreeMap<String, &'static str> = service_nodes
        .iter()
        .map(|(name, node)| (name.clone(), declared_kind(node)))
        .collect();
    let job_hooks: BTreeMap<String, String> = service_nodes
        .iter()
        .filter(|(_, node)| declared_kind(node) == "job")
        .filter_map(|(name, node)| match &node.get("hook")?.value {
            Value::Scalar { text, .. } => Some((name.clone(), text.clone())),
            _ => None,
        })
        .collect();
    let environment_nodes = declared_environments(&fields, sink);
    let environment_names: Vec<String> = environment_nodes.keys().cloned().collect();
    let names = Names {
        services: &kinds,
        job_hooks: &job_hooks,
        environments: &environment_names,
        runtime: runtime.unwrap_or(RuntimeKind::Local),
        current: None,
        totals: None,
    };
    // Limits layer key by key: an environment's own over the project's; for previews and other clones
    // `previews.limits` over the project's, then the built-in preview defaults (they run untrusted code).
    let project_totals = Totals::read(fields.get("limits"), sink);
    let preview_totals = project_totals
        .overlaid(&Totals::read(
            fields.get("previews").and_then(|p| p.get("limits")),
            sink,
        ))
        .with_preview_defaults();

    let services: BTreeMap<String, Service> = service_nodes
        .iter()
        .filter_map(|(name, node)| Some((name.clone(), read_service(name, node, &names, sink)?)))
        .collect();
    dependencies::check_cycles(&services, sink);

    let environments: BTreeMap<String, Environment> = environment_nodes
        .iter()
        .map(|(name, node)| {
            let totals = project_totals.overlaid(&Totals::read(node.get("limits"), sink));
            let environment = environments::build_environment(
                name,
                node.origin(),
                &[node],
                &service_nodes,
                &names,
                &totals,
                sink,
            );
            (name.clone(), environment)
        })
        .collect();
    let previews = fields.get("previews").and_then(|n| {
        previews::read_previews(
            n,
            &environment_nodes,
            &service_nodes,
            &names,
            &secrets,
            &preview_totals,
            sink,
        )
    });

    check_all_references(
        &variables,
        &services,
        &environments,
        previews.as_ref(),
        sink,
    );
    let cloned = clone.and_then(|request| {
        build_clone(
            root,
            request,
            &environment_nodes,
            &service_nodes,
            &names,
            &preview_totals,
            sink,
        )
    });
    let mut checked: Vec<(&Environment, bool)> =
        environments.values().map(|e| (e, false)).collect();
    if let Some(previews) = &previews {
        checked.push((&previews.template, true));
    }
    if let Some(cloned) = &cloned {
        checked.push((cloned, false));
    }
    databases::check_masking_use(&checked.iter().map(|(e, _)| *e).collect::<Vec<_>>(), sink);
    if runtime == Some(RuntimeKind::Kubernetes) && isolation == Some(Isolation::Physical) {
        environments::check_physical_clusters(&checked, sink);
    }
    if runtime == Some(RuntimeKind::Local) {
        environments::check_no_clusters(&checked, sink);
    }
    check_masking_keys(&checked, &secrets, sink);
    let (project, domain) = (project?, domain?);
    routes::RouteCheck { project: &project }.check(&checked, sink);

    let spec = Spec {
        project,
        domain,
        isolation: isolation?,
        runtime: runtime?,
        variables,
        secrets,
        services,
        environments,
        previews,
    };
    Some((spec, cloned))
}

/// Builds the clone of `request.from` named `request.name`, reporting an unknown source or a bad name at 1:1
/// (the request does not come from the file).
fn build_clone(
    root: &Node,
    request: CloneRequest<'_>,
    environment_nodes: &BTreeMap<String, &Node>,
    service_nodes: &BTreeMap<String, &Node>,
    names: &Names<'_>,
    totals: &Totals,
    sink: &mut Sink,
) -> Option<Environment> {
    let start = Position { line: 1, column: 1 };
    let Some(source) = environment_nodes.get(request.from) else {
        sink.push(
            start,
            "environments",
            format!(
                "cannot clone `{}`: it is not an environment of this spec{}",
                request.from,
                suggest::did_you_mean(request.from, environment_nodes.keys().map(String::as_str))
            ),
        );
        return None;
    };
    if let Some(problem) = names::dns_label_problem(request.name) {
        sink.push(
            start,
            "",
            format!(
                "`{}` is not a valid environment name: it {problem}",
                request.name
            ),
        );
        return None;
    }
    let mut layers = vec![*source];
    if let Some(overrides) = root.get("previews").and_then(|p| p.get("overrides")) {
        layers.push(overrides);
    }
    let mut clone = environments::build_environment(
        request.name,
        source.origin(),
        &layers,
        service_nodes,
        names,
        totals,
        sink,
    );
    if let Some(cluster) = root
        .get("previews")
        .and_then(|p| p.get("cluster"))
        .and_then(|n| environments::read_cluster(n, sink))
    {
        clone.cluster = Some(cluster);
    }
    Some(clone)
}

fn read_domain(node: &Node, sink: &mut Sink) -> Option<DomainSettings> {
    let fields = Fields::open(node, "domain settings", &["base", "hostname"], sink)?;
    let base = match fields.get("base") {
        Some(n) => {
            let base = text(n, "a base domain", sink)?;
            let problem = names::hostname_problem(&base).or_else(|| {
                base.starts_with("*.")
                    .then(|| "is a wildcard; the base domain is a plain domain such as `preview.example.com`".to_owned())
            });
            if let Some(problem) = problem.filter(|_| base != "localhost") {
                sink.push(
                    n.position,
                    &n.path,
                    format!("`{base}` is not a base domain: it {problem}"),
                );
                return None;
            }
            base
        }
        None => "localhost".to_owned(),
    };
    let hostname = match fields.get("hostname") {
        Some(n) => routes::read_hostname_template(n, sink)?,
        None => DomainSettings::DEFAULT_HOSTNAME.to_owned(),
    };
    Some(DomainSettings { base, hostname })
}

/// Service names and their nodes, with invalid names reported and left out.
fn declared_services<'n>(node: Option<&'n Node>, sink: &mut Sink) -> BTreeMap<String, &'n Node> {
    let Some(node) = node else {
        return BTreeMap::new();
    };
    named_entries(node, "services", sink)
        .iter()
        .filter(|entry| {
            !levels::misplaced_service(entry, sink)
                && names::check_name(&entry.key, "service name", &key_node(entry), sink)
        })
        .map(|entry| (entry.key.clone(), &entry.value))
        .collect()
}

fn declared_environments<'n>(fields: &Fields<'n>, sink: &mut Sink) -> BTreeMap<String, &'n Node> {
    let Some(node) = fields.require(
        "environments",
        "at least one environment, e.g. `environments: { production: {}, staging: {} }`",
        sink,
    ) else {
        return BTreeMap::new();
    };
    let entries = named_entries(node, "environments", sink);
    if entries.is_empty() && !matches!(node.value, Value::Seq(_)) {
        sink.push(
            node.position,
            &node.path,
            "declare at least one environment, e.g. `production: {}`",
        );
    }
    entries
        .iter()
        .filter(|entry| {
            let at = key_node(entry);
            !levels::misplaced_environment(entry, sink)
                && names::check_name(&entry.key, "environment name", &at, sink)
                && !is_reserved(&entry.key, &at, sink)
                && Fields::open(
                    &entry.value,
                    &format!("environment `{}`", entry.key),
                    ENVIRONMENT_KEYS,
                    sink,
                )
                .is_some()
        })
        .map(|entry| (entry.key.clone(), &entry.value))
        .collect()
}

/// `pr-<number>` names belong to previews.
fn is_reserved(name: &str, at: &Node, sink: &mut Sink) -> bool {
    let reserved = name
        .strip_prefix("pr-")
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    if reserved {
        sink.push(
            at.position,
            &at.path,
            format!("`{name}` is reserved: previews are named `pr-<number>`; choose another environment name"),
        );
    }
    reserved
}

/// A node standing for a mapping key, so that name errors point at the key rather than its value.
fn key_node(entry: &yaml::Entry) -> Node {
    Node {
        position: entry.key_position,
        path: entry.value.path.clone(),
        value: Value::Scalar {
            text: entry.key.clone(),
            plain: false,
        },
    }
}

/// Variable values at every scope, checked for `${{ … }}` references to services that do not exist.
fn check_all_references(
    project: &Variables,
    services: &BTreeMap<String, Service>,
    environments: &BTreeMap<String, Environment>,
    previews: Option<&PreviewPolicy>,
    sink: &mut Sink,
) {
    let mut scopes: Vec<&Variables> = vec![project];
    scopes.extend(services.values().map(|s| &s.variables));
    for environment in environments.values().chain(previews.map(|p| &p.template)) {
        scopes.push(&environment.variables);
        scopes.extend(environment.service_variables.values());
    }
    for scope in scopes {
        references::check_references(scope, services, sink);
    }
}

/// The masking key must be a declared project secret.
fn check_masking_keys(
    environments: &[(&Environment, bool)],
    secrets: &[SecretDeclaration],
    sink: &mut Sink,
) {
    for (environment, _) in environments {
        for service in environment.services.values() {
            let ServiceKind::Database(Database {
                masking: Some(masking),
                ..
            }) = &service.kind
            else {
                continue;
            };
            let Some(key) = &masking.key_secret else {
                continue;
            };
            if !secrets.iter().any(|s| &s.name == key) {
                sink.push(
                    masking.origin.position,
                    &format!("{}.key", masking.origin.path),
                    format!(
                        "`{key}` is not a declared project secret{}; add it under the top-level `secrets:`",
                        suggest::did_you_mean(key, secrets.iter().map(|s| s.name.as_str()))
                    ),
                );
            }
        }
    }
}
