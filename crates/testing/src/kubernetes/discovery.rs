//! `/version` as a 1.33 server answers it, and discovery (`/api`, `/apis`, `/api/v1`, `/apis/{group}/{version}`)
//! listing exactly the kinds served now — a custom kind appears once its CRD is stored.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::catalog::Catalog;
use super::status::ApiError;

pub(crate) fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "emulationMajor": "1",
        "emulationMinor": "33",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "32",
        "gitVersion": "v1.33.0",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-04-23T00:00:00Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

pub(crate) fn core_versions(address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": address }],
    })
}

pub(crate) fn groups(catalog: &Catalog) -> Value {
    let mut served: BTreeSet<(String, String)> = catalog
        .types()
        .iter()
        .filter(|t| !t.group.is_empty())
        .map(|t| (t.group.clone(), t.version.clone()))
        .collect();
    served.insert(("authorization.k8s.io".to_owned(), "v1".to_owned()));
    let groups: Vec<Value> = served
        .iter()
        .map(|(group, version)| {
            let entry = json!({ "groupVersion": format!("{group}/{version}"), "version": version });
            json!({ "name": group, "versions": [entry.clone()], "preferredVersion": entry })
        })
        .collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

pub(crate) fn resources(catalog: &Catalog, group: &str, version: &str) -> Result<Value, ApiError> {
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    let verbs = json!([
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch"
    ]);
    let mut resources = Vec::new();
    for t in catalog
        .types()
        .iter()
        .filter(|t| t.group == group && t.version == version)
    {
        let entry = |name: String, verbs: Value| {
            json!({
                "name": name,
                "singularName": if name.contains('/') { String::new() } else { t.kind.to_lowercase() },
                "namespaced": t.namespaced,
                "kind": t.kind,
                "verbs": verbs,
            })
        };
        resources.push(entry(t.plural.clone(), verbs.clone()));
        resources.push(entry(
            format!("{}/status", t.plural),
            json!(["get", "patch", "update"]),
        ));
        if t.plural == "pods" {
            resources.push(entry("pods/log".to_owned(), json!(["get"])));
        }
    }
    if group == "authorization.k8s.io" && version == "v1" {
        resources.push(json!({
            "name": "selfsubjectaccessreviews",
            "singularName": "selfsubjectaccessreview",
            "namespaced": false,
            "kind": "SelfSubjectAccessReview",
            "verbs": ["create"],
        }));
    }
    if resources.is_empty() {
        return Err(ApiError::no_such_resource());
    }
    Ok(
        json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources }),
    )
}
