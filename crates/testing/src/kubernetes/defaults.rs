//! What the server fills in on every write, as its defaulting and registry strategies do: a namespace's name label
//! and finalizer, a Service's cluster IP, a Secret's `stringData` folded into `data`, a Job's generated selector and
//! labels, the usual defaults of workloads and pods.

use base64::Engine;
use serde_json::{Map, Value, json};

use super::catalog::ResourceType;
use super::identity::Identities;

/// Fills defaults into `object` (of `resource`), keeping what `existing` was given (a Service's cluster IP).
pub(crate) fn fill(
    resource: &ResourceType,
    object: &mut Value,
    existing: Option<&Value>,
    ids: &mut Identities,
) {
    match resource.resource().as_str() {
        "namespaces" => namespace(object),
        "services" => service(object, existing, ids),
        "secrets" => secret(object),
        "deployments.apps" => {
            let Some(spec) = spec_of(object) else { return };
            set(spec, "replicas", json!(1));
            set(spec, "revisionHistoryLimit", json!(10));
            set(spec, "progressDeadlineSeconds", json!(600));
            set(
                spec,
                "strategy",
                json!({ "type": "RollingUpdate", "rollingUpdate": { "maxSurge": "25%", "maxUnavailable": "25%" } }),
            );
            pod_template(spec);
        }
        "statefulsets.apps" => {
            let Some(spec) = spec_of(object) else { return };
            set(spec, "replicas", json!(1));
            set(spec, "revisionHistoryLimit", json!(10));
            set(spec, "podManagementPolicy", json!("OrderedReady"));
            set(
                spec,
                "updateStrategy",
                json!({ "type": "RollingUpdate", "rollingUpdate": { "partition": 0 } }),
            );
            set(
                spec,
                "persistentVolumeClaimRetentionPolicy",
                json!({ "whenDeleted": "Retain", "whenScaled": "Retain" }),
            );
            pod_template(spec);
        }
        "replicasets.apps" => {
            if let Some(spec) = spec_of(object) {
                set(spec, "replicas", json!(1));
            }
        }
        "jobs.batch" => job(object, existing),
        "pods" => {
            if let Some(spec) = spec_of(object) {
                pod_spec(spec);
            }
            if existing.is_none() {
                object["status"] = json!({ "phase": "Pending", "qosClass": "BestEffort" });
            }
        }
        _ => {}
    }
}

/// The object's `spec`, made an empty map if it is missing.
fn spec_of(object: &mut Value) -> Option<&mut Map<String, Value>> {
    if !object["spec"].is_object() {
        object["spec"] = json!({});
    }
    object["spec"].as_object_mut()
}

fn set(map: &mut Map<String, Value>, field: &str, value: Value) {
    if map.get(field).is_none_or(Value::is_null) {
        map.insert(field.to_owned(), value);
    }
}

fn pod_template(spec: &mut Map<String, Value>) {
    if let Some(Value::Object(pod)) = spec.get_mut("template").and_then(|t| t.get_mut("spec")) {
        pod_spec(pod);
    }
}

fn pod_spec(spec: &mut Map<String, Value>) {
    set(spec, "restartPolicy", json!("Always"));
    set(spec, "dnsPolicy", json!("ClusterFirst"));
    set(spec, "schedulerName", json!("default-scheduler"));
    set(spec, "terminationGracePeriodSeconds", json!(30));
    set(spec, "securityContext", json!({}));
    for container in spec
        .get_mut("containers")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        let Some(container) = container.as_object_mut() else {
            continue;
        };
        let image = container
            .get("image")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let tag = image
            .rsplit('/')
            .next()
            .and_then(|last| last.split_once(':'));
        let policy = match tag {
            Some((_, "latest")) | None => "Always",
            Some(_) => "IfNotPresent",
        };
        set(container, "imagePullPolicy", json!(policy));
        set(
            container,
            "terminationMessagePath",
            json!("/dev/termination-log"),
        );
        set(container, "terminationMessagePolicy", json!("File"));
        set(container, "resources", json!({}));
        for port in container
            .get_mut("ports")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object_mut)
        {
            set(port, "protocol", json!("TCP"));
        }
    }
}

fn namespace(object: &mut Value) {
    let name = object["metadata"]["name"].clone();
    if !object["metadata"]["labels"].is_object() {
        object["metadata"]["labels"] = json!({});
    }
    object["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
    if let Some(spec) = spec_of(object) {
        set(spec, "finalizers", json!(["kubernetes"]));
    }
    if object["status"]["phase"].is_null() {
        object["status"] = json!({ "phase": "Active" });
    }
}

fn service(object: &mut Value, existing: Option<&Value>, ids: &mut Identities) {
    let kept = existing.map(|e| e["spec"]["clusterIP"].clone());
    let Some(spec) = spec_of(object) else { return };
    set(spec, "type", json!("ClusterIP"));
    set(spec, "sessionAffinity", json!("None"));
    set(spec, "internalTrafficPolicy", json!("Cluster"));
    let external = spec.get("type").and_then(Value::as_str) == Some("ExternalName");
    if !external {
        let ip = match (spec.get("clusterIP").and_then(Value::as_str), kept) {
            (Some(given), _) if !given.is_empty() => json!(given),
            (_, Some(kept)) if kept.is_string() => kept,
            _ => json!(ids.cluster_ip()),
        };
        spec.insert("clusterIPs".to_owned(), json!([ip.clone()]));
        spec.insert("clusterIP".to_owned(), ip);
        set(spec, "ipFamilies", json!(["IPv4"]));
        set(spec, "ipFamilyPolicy", json!("SingleStack"));
    }
    for port in spec
        .get_mut("ports")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
    {
        set(port, "protocol", json!("TCP"));
        if let Some(number) = port.get("port").cloned() {
            set(port, "targetPort", number);
        }
    }
    if object["status"].is_null() {
        object["status"] = json!({ "loadBalancer": {} });
    }
}

fn secret(object: &mut Value) {
    if object["type"].is_null() {
        object["type"] = json!("Opaque");
    }
    let Some(Value::Object(plain)) = object.as_object_mut().and_then(|o| o.remove("stringData"))
    else {
        return;
    };
    if !object["data"].is_object() {
        object["data"] = json!({});
    }
    for (key, value) in plain {
        let text = value.as_str().unwrap_or_default();
        object["data"][key] = json!(base64::engine::general_purpose::STANDARD.encode(text));
    }
}

fn job(object: &mut Value, existing: Option<&Value>) {
    let uid = object["metadata"]["uid"].clone();
    let name = object["metadata"]["name"].clone();
    let manual = object["spec"]["manualSelector"].as_bool() == Some(true);
    let Some(spec) = spec_of(object) else { return };
    set(spec, "backoffLimit", json!(6));
    set(spec, "completions", json!(1));
    set(spec, "parallelism", json!(1));
    set(spec, "completionMode", json!("NonIndexed"));
    set(spec, "suspend", json!(false));
    set(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    if manual {
        return;
    }
    if let Some(kept) = existing.map(|e| e["spec"]["selector"].clone()) {
        spec.insert("selector".to_owned(), kept);
    } else {
        spec.insert(
            "selector".to_owned(),
            json!({ "matchLabels": { "batch.kubernetes.io/controller-uid": uid } }),
        );
    }
    let generated = json!({
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "job-name": name,
    });
    if !object["spec"]["template"]["metadata"]["labels"].is_object() {
        object["spec"]["template"]["metadata"]["labels"] = json!({});
    }
    for (key, value) in generated.as_object().into_iter().flatten() {
        object["spec"]["template"]["metadata"]["labels"][key] = value.clone();
    }
}
