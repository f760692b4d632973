//! The StatefulSet controller: pods `<set>-0`, `<set>-1`, … made in order (each once the one before is ready,
//! unless the policy is `Parallel`), a PersistentVolumeClaim `<claim>-<set>-<ordinal>` per claim template, pods of an
//! older revision replaced, and the status with `currentRevision` becoming `updateRevision` once every pod is updated
//! and ready.

use serde_json::{Value, json};

use super::events::{Event, record};
use super::{
    CONTROLLER_MANAGER, create, is_deleting, owned, pod_from_template, pod_ready, resource,
    set_status, template_hash, text,
};
use crate::kubernetes::delete::{Propagation, delete_object};
use crate::kubernetes::state::State;
use crate::kubernetes::store::Key;

const COMPONENT: &str = "statefulset-controller";

pub(super) fn reconcile(state: &mut State) {
    for key in state.store.keys("statefulsets.apps", None) {
        let Some(set) = state.store.object(&key).cloned() else {
            continue;
        };
        if !is_deleting(&set) {
            run(state, &key, &set);
        }
    }
}

fn ordinal(set: &str, pod: &str) -> Option<i64> {
    pod.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

fn run(state: &mut State, key: &Key, set: &Value) {
    let name = key.name.clone();
    let uid = text(set, "/metadata/uid").to_owned();
    let desired = set["spec"]["replicas"].as_i64().unwrap_or(1).max(0);
    let revision = format!("{name}-{}", template_hash(&set["spec"]["template"]));
    let ordered = text(set, "/spec/podManagementPolicy") != "Parallel";

    let Some(pods_resource) = resource(state, "pods") else {
        return;
    };
    for (pod_key, pod) in owned(state, "pods", &key.namespace, &uid) {
        let stale = text(&pod, "/metadata/labels/controller-revision-hash") != revision;
        if ordinal(&name, &pod_key.name).is_none_or(|i| i >= desired) || stale {
            delete_object(state, &pods_resource, &pod_key, Propagation::Background);
        }
    }
    for index in 0..desired {
        let pod_name = format!("{name}-{index}");
        let existing = state
            .store
            .object(&Key::new("pods", Some(&key.namespace), &pod_name))
            .cloned();
        if let Some(pod) = existing {
            if ordered && !pod_ready(&pod) {
                break;
            }
            continue;
        }
        let claims = make_claims(state, set, index);
        let mut pod = pod_from_template(
            &set["spec"]["template"],
            set,
            &pod_name,
            &json!({
                "controller-revision-hash": revision,
                "statefulset.kubernetes.io/pod-name": pod_name,
                "apps.kubernetes.io/pod-index": index.to_string(),
            }),
        );
        pod["spec"]["hostname"] = json!(pod_name);
        if let Some(service) = set["spec"]["serviceName"].as_str() {
            pod["spec"]["subdomain"] = json!(service);
        }
        let mut volumes = pod["spec"]["volumes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        volumes.extend(claims);
        if !volumes.is_empty() {
            pod["spec"]["volumes"] = Value::Array(volumes);
        }
        if create(state, "pods", pod, CONTROLLER_MANAGER).is_some() {
            record(
                state,
                Event {
                    involved: set,
                    field_path: None,
                    warning: false,
                    reason: "SuccessfulCreate",
                    message: format!("create Pod {pod_name} in StatefulSet {name} successful"),
                    component: COMPONENT,
                },
                false,
            );
        }
        if ordered {
            break;
        }
    }

    let pods = owned(state, "pods", &key.namespace, &uid);
    let ready = pods.iter().filter(|(_, p)| pod_ready(p)).count() as i64;
    let updated = pods
        .iter()
        .filter(|(_, p)| text(p, "/metadata/labels/controller-revision-hash") == revision)
        .count() as i64;
    let current_revision = match text(set, "/status/currentRevision") {
        "" => revision.clone(),
        _ if updated == desired && ready == desired => revision.clone(),
        previous => previous.to_owned(),
    };
    let current = pods
        .iter()
        .filter(|(_, p)| text(p, "/metadata/labels/controller-revision-hash") == current_revision)
        .count() as i64;
    let status = json!({
        "observedGeneration": set["metadata"]["generation"],
        "replicas": pods.len(),
        "readyReplicas": ready,
        "currentReplicas": current,
        "updatedReplicas": updated,
        "availableReplicas": ready,
        "currentRevision": current_revision,
        "updateRevision": revision,
        "collisionCount": 0,
    });
    set_status(state, key, status, CONTROLLER_MANAGER);
}

/// Makes the claims of pod `index` that do not exist yet; the pod's volumes that use them.
fn make_claims(state: &mut State, set: &Value, index: i64) -> Vec<Value> {
    let name = text(set, "/metadata/name");
    let namespace = text(set, "/metadata/namespace");
    let mut volumes = Vec::new();
    for template in set["spec"]["volumeClaimTemplates"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let claim = text(template, "/metadata/name");
        let claim_name = format!("{claim}-{name}-{index}");
        volumes
            .push(json!({ "name": claim, "persistentVolumeClaim": { "claimName": claim_name } }));
        let key = Key::new("persistentvolumeclaims", Some(namespace), &claim_name);
        if state.store.get(&key).is_some() {
            continue;
        }
        let mut spec = template["spec"].clone();
        if spec["volumeMode"].is_null() {
            spec["volumeMode"] = json!("Filesystem");
        }
        let object = json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {
                "name": claim_name,
                "namespace": namespace,
                "labels": set["spec"]["selector"]["matchLabels"],
            },
            "spec": spec,
        });
        create(state, "persistentvolumeclaims", object, CONTROLLER_MANAGER);
    }
    volumes
}
