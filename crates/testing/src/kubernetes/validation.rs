//! What the server refuses as invalid (422), with its own wording: names that are not DNS labels or subdomains, label
//! keys and values, workloads whose selector does not select their template, containers without a name or image,
//! Job templates that restart, fields that may not change once set, and the refusals a test asked for.

use std::collections::BTreeMap;

use serde_json::Value;

use super::catalog::{NameRule, ResourceType};
use super::selectors::LabelSelector;
use super::status::Cause;

/// A refusal a test asked for: any write of `plural`/`name` fails on `field` with `message`.
#[derive(Debug, Clone)]
pub(crate) struct Rejection {
    pub plural: String,
    pub name: String,
    pub field: String,
    pub message: String,
}

/// Everything wrong with `object` (after `existing`, for an update).
pub(crate) fn validate(
    resource: &ResourceType,
    object: &Value,
    existing: Option<&Value>,
    rejections: &[Rejection],
) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    if name.is_empty() {
        causes.push(Cause::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        for why in name_problems(name, resource.names) {
            causes.push(Cause::invalid("metadata.name", &quote(name), &why));
        }
    }
    check_labels(
        &object["metadata"]["labels"],
        "metadata.labels",
        &mut causes,
    );
    match resource.resource().as_str() {
        "deployments.apps" | "replicasets.apps" | "statefulsets.apps" => {
            check_workload(object, existing, &mut causes);
        }
        "jobs.batch" => check_job(object, existing, &mut causes),
        "pods" => check_containers(&object["spec"], "spec", &mut causes),
        "services" => check_service(object, &mut causes),
        "configmaps" | "secrets" => check_data_keys(object, &mut causes),
        "persistentvolumeclaims" => check_claim(object, &mut causes),
        _ => {}
    }
    for rejection in rejections
        .iter()
        .filter(|r| r.plural == resource.plural && r.name == name)
    {
        causes.push(Cause {
            reason: "FieldValueInvalid".to_owned(),
            message: rejection.message.clone(),
            field: rejection.field.clone(),
        });
    }
    causes
}

fn quote(text: &str) -> String {
    format!("{text:?}")
}

const LABEL_RULE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const LABEL_1035_RULE: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const SUBDOMAIN_RULE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_VALUE_RULE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const QUALIFIED_NAME_RULE: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

fn is_label(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// Why `name` is not a valid name under `rule`: each reason a cause of its own, as the server reports them.
pub(crate) fn name_problems(name: &str, rule: NameRule) -> Vec<String> {
    let (limit, valid, wording) = match rule {
        NameRule::Label => (63, is_label(name), LABEL_RULE),
        NameRule::Label1035 => (
            63,
            is_label(name) && name.starts_with(|c: char| c.is_ascii_lowercase()),
            LABEL_1035_RULE,
        ),
        NameRule::Subdomain => (253, name.split('.').all(is_label), SUBDOMAIN_RULE),
    };
    let mut problems = Vec::new();
    if name.len() > limit {
        problems.push(format!("must be no more than {limit} characters"));
    }
    if !valid {
        problems.push(wording.to_owned());
    }
    problems
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, the shape of label values and of a qualified name's name part.
fn is_label_text(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b))
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

fn check_labels(labels: &Value, field: &str, causes: &mut Vec<Cause>) {
    for (key, value) in labels.as_object().into_iter().flatten() {
        let name_part = key.rsplit_once('/').map_or(key.as_str(), |(prefix, name)| {
            for why in name_problems(prefix, NameRule::Subdomain) {
                causes.push(Cause::invalid(
                    field,
                    &quote(key),
                    &format!("prefix part {why}"),
                ));
            }
            name
        });
        if name_part.len() > 63 || !is_label_text(name_part) {
            let why = if name_part.len() > 63 {
                "name part must be no more than 63 characters"
            } else {
                QUALIFIED_NAME_RULE
            };
            causes.push(Cause::invalid(field, &quote(key), why));
        }
        let value = value.as_str().unwrap_or_default();
        if value.len() > 63 {
            causes.push(Cause::invalid(
                field,
                &quote(value),
                "must be no more than 63 characters",
            ));
        } else if !value.is_empty() && !is_label_text(value) {
            causes.push(Cause::invalid(field, &quote(value), LABEL_VALUE_RULE));
        }
    }
}

/// Go's `%#v` of a `map[string]string`, as the server prints template labels.
fn go_map(labels: &Value) -> String {
    let pairs: BTreeMap<&String, &str> = labels
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k, v.as_str().unwrap_or_default()))
        .collect();
    let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("{k:?}:{v:?}")).collect();
    format!("map[string]string{{{}}}", inner.join(", "))
}

fn check_workload(object: &Value, existing: Option<&Value>, causes: &mut Vec<Cause>) {
    let spec = &object["spec"];
    let template_labels = &spec["template"]["metadata"]["labels"];
    check_labels(template_labels, "spec.template.metadata.labels", causes);
    let selector = &spec["selector"];
    if selector.is_null() {
        causes.push(Cause::required("spec.selector", ""));
    } else {
        let empty = selector["matchLabels"]
            .as_object()
            .is_none_or(|m| m.is_empty())
            && selector["matchExpressions"]
                .as_array()
                .is_none_or(|m| m.is_empty());
        if empty {
            causes.push(Cause::invalid(
                "spec.selector",
                "v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}",
                "empty selector is invalid for deployment",
            ));
        } else if !LabelSelector::from_spec(selector).matches_labels(template_labels) {
            causes.push(Cause::invalid(
                "spec.template.metadata.labels",
                &go_map(template_labels),
                "`selector` does not match template `labels`",
            ));
        }
    }
    check_containers(&spec["template"]["spec"], "spec.template.spec", causes);
    let Some(existing) = existing else { return };
    if existing["spec"]["selector"] != *selector {
        causes.push(Cause::invalid(
            "spec.selector",
            &selector.to_string(),
            "field is immutable",
        ));
    }
    if object["kind"] == "StatefulSet" {
        let mutable = [
            "replicas",
            "ordinals",
            "template",
            "updateStrategy",
            "persistentVolumeClaimRetentionPolicy",
            "minReadySeconds",
        ];
        let rest = |spec: &Value| {
            let mut rest = spec.clone();
            if let Some(fields) = rest.as_object_mut() {
                fields.retain(|k, _| !mutable.contains(&k.as_str()));
            }
            rest
        };
        if rest(spec) != rest(&existing["spec"]) {
            causes.push(Cause::forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ));
        }
    }
}

fn check_job(object: &Value, existing: Option<&Value>, causes: &mut Vec<Cause>) {
    let template = &object["spec"]["template"];
    check_labels(
        &template["metadata"]["labels"],
        "spec.template.metadata.labels",
        causes,
    );
    check_containers(&template["spec"], "spec.template.spec", causes);
    let field = "spec.template.spec.restartPolicy";
    match template["spec"]["restartPolicy"].as_str() {
        Some("Never" | "OnFailure") => {}
        None => causes.push(Cause::required(
            field,
            "valid values: \"OnFailure\", \"Never\"",
        )),
        Some(other) => causes.push(Cause::unsupported(
            field,
            &quote(other),
            "\"OnFailure\", \"Never\"",
        )),
    }
    if let Some(existing) = existing
        && existing["spec"]["template"] != *template
    {
        causes.push(Cause::invalid(
            "spec.template",
            &template.to_string(),
            "field is immutable",
        ));
    }
}

fn check_containers(pod_spec: &Value, field: &str, causes: &mut Vec<Cause>) {
    let containers = pod_spec["containers"].as_array();
    if containers.is_none_or(|c| c.is_empty()) {
        causes.push(Cause::required(&format!("{field}.containers"), ""));
        return;
    }
    for (i, container) in containers.into_iter().flatten().enumerate() {
        let at = format!("{field}.containers[{i}]");
        match container["name"].as_str() {
            None | Some("") => causes.push(Cause::required(&format!("{at}.name"), "")),
            Some(name) => {
                for why in name_problems(name, NameRule::Label) {
                    causes.push(Cause::invalid(&format!("{at}.name"), &quote(name), &why));
                }
            }
        }
        if container["image"].as_str().is_none_or(str::is_empty) {
            causes.push(Cause::required(&format!("{at}.image"), ""));
        }
        for (j, port) in container["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let number = port["containerPort"].as_i64().unwrap_or(0);
            if !(1..=65535).contains(&number) {
                causes.push(Cause::invalid(
                    &format!("{at}.ports[{j}].containerPort"),
                    &number.to_string(),
                    "must be between 1 and 65535, inclusive",
                ));
            }
        }
    }
}

fn check_service(object: &Value, causes: &mut Vec<Cause>) {
    let spec = &object["spec"];
    let headless = spec["clusterIP"] == "None";
    let ports = spec["ports"].as_array();
    if ports.is_none_or(|p| p.is_empty()) && !headless && spec["type"] != "ExternalName" {
        causes.push(Cause::required("spec.ports", ""));
    }
    for (i, port) in ports.into_iter().flatten().enumerate() {
        let number = port["port"].as_i64().unwrap_or(0);
        if !(1..=65535).contains(&number) {
            causes.push(Cause::invalid(
                &format!("spec.ports[{i}].port"),
                &number.to_string(),
                "must be between 1 and 65535, inclusive",
            ));
        }
    }
}

fn check_data_keys(object: &Value, causes: &mut Vec<Cause>) {
    for section in ["data", "binaryData", "stringData"] {
        for key in object[section]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
        {
            let valid = !key.is_empty()
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
            if !valid {
                causes.push(Cause::invalid(
                    &format!("{section}[{key}]"),
                    &quote(key),
                    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                ));
            }
        }
    }
}

fn check_claim(object: &Value, causes: &mut Vec<Cause>) {
    let spec = &object["spec"];
    if spec["accessModes"].as_array().is_none_or(|m| m.is_empty()) {
        causes.push(Cause::required(
            "spec.accessModes",
            "at least 1 access mode is required",
        ));
    }
    if spec["resources"]["requests"]["storage"].is_null() {
        causes.push(Cause::required("spec.resources[storage]", ""));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::kubernetes::catalog::Catalog;

    fn causes_of(plural: &str, object: Value) -> Vec<String> {
        let catalog = Catalog::new();
        let resource = catalog.by_name(plural).expect("a known kind");
        validate(resource, &object, None, &[])
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn names() {
        assert!(name_problems("web-1", NameRule::Label).is_empty());
        assert!(name_problems("a.b", NameRule::Subdomain).is_empty());
        assert_eq!(name_problems("Web", NameRule::Subdomain).len(), 1);
        assert_eq!(name_problems("1web", NameRule::Label1035).len(), 1);
        assert_eq!(
            name_problems(&"a".repeat(64), NameRule::Label),
            ["must be no more than 63 characters"]
        );
    }

    #[test]
    fn workloads_must_select_their_template_and_name_an_image() {
        let causes = causes_of(
            "deployments",
            json!({
                "kind": "Deployment",
                "metadata": { "name": "web" },
                "spec": {
                    "selector": { "matchLabels": { "app": "web" } },
                    "template": {
                        "metadata": { "labels": { "app": "other" } },
                        "spec": { "containers": [{ "name": "web" }] },
                    },
                },
            }),
        );
        assert_eq!(
            causes,
            [
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"other\"}: `selector` does not match template `labels`",
                "spec.template.spec.containers[0].image: Required value",
            ]
        );
    }

    #[test]
    fn label_values() {
        let causes = causes_of(
            "configmaps",
            json!({ "metadata": { "name": "c", "labels": { "a": "-x", "b": "y".repeat(64) } } }),
        );
        assert_eq!(causes.len(), 2);
        assert!(causes[0].starts_with("metadata.labels: Invalid value: \"-x\": a valid label"));
    }
}
