//! Environments: each one's variables and secrets, and its effective services — the base services with the
//! environment's overrides laid over them, key by key, then read like any service.

use std::collections::BTreeMap;

use crate::diagnostic::Sink;
use crate::limits::Totals;
use crate::model::{Environment, Origin, Variables};
use crate::read::named_entries;
use crate::services::{Names, declared_kind, read_service};
use crate::variables::{read_secrets, read_variables};
use crate::yaml::{Entry, Node, Value};

/// Keys that shape a service rather than configure it, so they cannot differ between environments.
const FIXED_KEYS: &[(&str, &str)] = &[
    ("type", "a service's type is the same in every environment"),
    (
        "depends_on",
        "dependencies are the same in every environment",
    ),
    (
        "secrets",
        "declare secrets under the service itself or under the environment's `secrets`",
    ),
];

/// Builds environment `name` from `layers` (mappings with `variables`, `secrets`, `services`), applied in order:
/// an environment has one layer, a preview has its blueprint's and then the preview overrides. `totals` are its
/// effective limits, layered by the caller because they follow other layers than services do.
pub(crate) fn build_environment(
    name: &str,
    origin: Origin,
    layers: &[&Node],
    base: &BTreeMap<String, &Node>,
    names: &Names<'_>,
    totals: &Totals,
    sink: &mut Sink,
) -> Environment {
    let mut variables = Variables::new();
    let mut secrets = Vec::new();
    let mut cluster = None;
    let mut service_variables: BTreeMap<String, Variables> = BTreeMap::new();
    let mut merged: BTreeMap<String, Node> = base
        .iter()
        .map(|(k, n)| (k.clone(), (*n).clone()))
        .collect();
    let scope = format!("environment:{name}");
    for layer in layers {
        if let Some(node) = layer.get("cluster") {
            cluster = read_cluster(node, sink);
        }
        if let Some(node) = layer.get("variables") {
            variables.extend(read_variables(node, &scope, sink));
        }
        if let Some(node) = layer.get("secrets") {
            secrets.extend(read_secrets(node, &scope, sink));
        }
        let Some(services) = layer.get("services") else {
            continue;
        };
        for entry in named_entries(services, "service overrides", sink) {
            if !names.check_service_at(&entry.key, entry.key_position, &entry.value.path, sink) {
                continue;
            }
            let Some(service_node) = merged.get_mut(&entry.key) else {
                continue;
            };
            check_override(&entry.key, service_node, entry, sink);
            if let Some(node) = entry.value.get("variables") {
                let scope = format!("service:{} --environment {name}", entry.key);
                service_variables
                    .entry(entry.key.clone())
                    .or_default()
                    .extend(read_variables(node, &scope, sink));
            }
            *service_node = overlay(service_node, &entry.value);
        }
    }
    let names = Names {
        current: Some(name),
        totals: Some(totals),
        ..*names
    };
    let services = merged
        .iter()
        .filter_map(|(service, node)| {
            Some((service.clone(), read_service(service, node, &names, sink)?))
        })
        .collect();
    Environment {
        name: name.to_owned(),
        variables,
        secrets,
        services,
        service_variables,
        cluster,
        limits: totals.resources(),
        origin,
    }
}

/// A cluster's name as `preview cluster add` registers it: a DNS label.
pub(crate) fn read_cluster(node: &Node, sink: &mut Sink) -> Option<String> {
    let name = crate::read::text(node, "a cluster name", sink)?;
    if let Some(problem) = crate::names::dns_label_problem(&name) {
        sink.push(
            node.position,
            &node.path,
            format!("`{name}` is not a cluster name: it {problem}"),
        );
        return None;
    }
    Some(name)
}

/// With `isolation: physical` on Kubernetes every environment runs on a cluster of its own: each must name one
/// (previews through `previews.cluster`).
pub(crate) fn check_physical_clusters(environments: &[(&Environment, bool)], sink: &mut Sink) {
    // Previews run code nobody reviewed yet: with physical isolation they never share a cluster with an environment.
    let named: Vec<&str> = environments
        .iter()
        .filter(|(_, preview)| !preview)
        .filter_map(|(e, _)| e.cluster.as_deref())
        .collect();
    for (environment, preview) in environments {
        if *preview
            && let Some(cluster) = environment.cluster.as_deref().filter(|c| named.contains(c))
        {
            sink.push(
                environment.origin.position,
                &environment.origin.path,
                format!(
                    "`isolation: physical` on Kubernetes keeps previews off the clusters of environments, and previews would run on `{cluster}`: name a cluster of their own with `previews.cluster:`"
                ),
            );
            continue;
        }
        if environment.cluster.is_none() {
            let (key, what) = if *preview {
                ("previews.cluster", "previews".to_owned())
            } else {
                ("cluster", format!("environment `{}`", environment.name))
            };
            sink.push(
                environment.origin.position,
                &environment.origin.path,
                format!(
                    "`isolation: physical` on Kubernetes puts {what} on a cluster of its own: name a registered cluster with `{key}:` (`preview cluster add NAME --kubeconfig FILE`)"
                ),
            );
        }
    }
}

/// `cluster:` names a Kubernetes cluster: on the local runtime it would be silently ignored.
pub(crate) fn check_no_clusters(environments: &[(&Environment, bool)], sink: &mut Sink) {
    for (environment, preview) in environments {
        if let Some(cluster) = &environment.cluster {
            let what = if *preview {
                "previews".to_owned()
            } else {
                format!("environment `{}`", environment.name)
            };
            sink.push(
                environment.origin.position,
                &environment.origin.path,
                format!(
                    "{what} names the cluster `{cluster}`, but the project's runtime is `local`: `cluster:` is for `runtime: kubernetes`"
                ),
            );
        }
    }
}

fn check_override(service: &str, base: &Node, entry: &Entry, sink: &mut Sink) {
    let Some(entries) = entry.value.entries() else {
        if !entry.value.is_null() {
            sink.push(
                entry.value.position,
                &entry.value.path,
                format!(
                    "expected overrides of `{service}` (a mapping of `key: value`), found {}",
                    entry.value.kind_name()
                ),
            );
        }
        return;
    };
    let kind = declared_kind(base);
    let allowed = crate::services::keys_of(kind);
    for field in entries {
        if let Some((_, why)) = FIXED_KEYS.iter().find(|(key, _)| *key == field.key) {
            sink.push(
                field.key_position,
                &field.value.path,
                format!(
                    "`{}` cannot be overridden per environment: {why}",
                    field.key
                ),
            );
        } else if !allowed.contains(&field.key.as_str()) {
            let suggestion = crate::suggest::did_you_mean(&field.key, allowed.iter().copied());
            sink.push(
                field.key_position,
                &field.value.path,
                format!(
                    "unknown key `{}` in overrides of {kind} `{service}`{suggestion}",
                    field.key
                ),
            );
        }
    }
}

/// `base` with each key that `over` sets replaced by `over`'s value. Variables are not merged here: they stay in
/// their own scope so that provenance can name it. Fixed keys keep their base value.
fn overlay(base: &Node, over: &Node) -> Node {
    let (Value::Map(base_entries), Some(over_entries)) = (&base.value, over.entries()) else {
        return base.clone();
    };
    let replaces = |entry: &Entry| {
        entry.key != "variables"
            && !FIXED_KEYS.iter().any(|(key, _)| *key == entry.key)
            && crate::services::keys_of(declared_kind(base)).contains(&entry.key.as_str())
    };
    let mut entries: Vec<Entry> = base_entries
        .iter()
        .filter(|b| !over_entries.iter().any(|o| o.key == b.key && replaces(o)))
        .cloned()
        .collect();
    entries.extend(over_entries.iter().filter(|o| replaces(o)).cloned());
    Node {
        position: base.position,
        path: base.path.clone(),
        value: Value::Map(entries),
    }
}
