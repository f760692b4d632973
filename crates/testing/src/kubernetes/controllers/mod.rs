//! The cluster's behaviour on a fixed tick: what kube-controller-manager, the scheduler, the kubelet and cert-manager
//! would do to the stored objects — rolling Deployments out through ReplicaSets, running StatefulSets and Jobs,
//! scheduling and "running" pods (failing them as their images ask), issuing certificates, collecting garbage and
//! tearing namespaces down. Each tick takes the lock once and runs every controller in turn; a paused cluster does
//! nothing.
//!
//! Controllers write as the server does for them (no admission), only when something changed, so that watches see
//! real transitions and resource versions do not churn.

mod certificates;
mod deployments;
mod events;
mod garbage;
mod jobs;
mod kubelet;
mod namespaces;
mod quotas;
mod replicasets;
mod statefulsets;
mod volumes;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::catalog::ResourceType;
use super::clock;
use super::commit::{system_create, system_update};
use super::delete::owned_by;
use super::fields::Scope;
use super::identity::{hash_text, safe_encode};
use super::state::{Shared, State};
use super::store::Key;

/// How often the controllers run.
pub(crate) const TICK: Duration = Duration::from_millis(25);

/// Ticks a rollout may take before its Deployment reports `ProgressDeadlineExceeded` (about 300 ms).
const PROGRESS_DEADLINE_TICKS: u64 = 12;

const CONTROLLER_MANAGER: &str = "kube-controller-manager";

/// What controllers remember between ticks (kept out of the objects, as real controllers keep it in memory).
#[derive(Debug, Default)]
pub(crate) struct Memory {
    tick: u64,
    /// The tick each rollout (`<deployment uid>/<template hash>`) began.
    rollouts: HashMap<String, u64>,
    /// Per pod uid: when it was bound to the node and started.
    pods: HashMap<String, kubelet::PodMemory>,
}

/// Runs the controllers every tick, forever (the server aborts the task).
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let mut state = shared.lock();
        if !state.paused {
            reconcile(&mut state);
        }
    }
}

fn reconcile(state: &mut State) {
    state.memory.tick += 1;
    namespaces::set_up(state);
    deployments::reconcile(state);
    replicasets::reconcile(state);
    statefulsets::reconcile(state);
    volumes::reconcile(state);
    jobs::reconcile(state);
    kubelet::reconcile(state);
    certificates::reconcile(state);
    quotas::reconcile(state);
    garbage::collect(state);
    namespaces::tear_down(state);
}

fn resource(state: &State, name: &str) -> Option<ResourceType> {
    state.catalog.by_name(name).cloned()
}

fn is_deleting(object: &Value) -> bool {
    !object["metadata"]["deletionTimestamp"].is_null()
}

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Whether new objects may be made in `namespace`: it exists and is not terminating.
fn namespace_open(state: &State, namespace: &str) -> bool {
    state
        .store
        .object(&Key::new("namespaces", None, namespace))
        .is_some_and(|ns| !is_deleting(ns))
}

/// Makes an object as a controller; nothing when its namespace is closed (as the server would refuse it).
fn create(state: &mut State, plural: &str, object: Value, manager: &str) -> Option<Value> {
    let resource = resource(state, plural)?;
    let namespace = text(&object, "/metadata/namespace").to_owned();
    if resource.namespaced && !namespace_open(state, &namespace) {
        return None;
    }
    Some(system_create(state, &resource, object, manager))
}

/// Sets an object's status as `manager`, if it changed.
fn set_status(state: &mut State, key: &Key, status: Value, manager: &str) -> Option<Value> {
    system_update(state, key, Scope::Status, manager, |object| {
        object["status"] = status;
    })
}

/// The reference a controller puts on what it makes.
fn owner_reference(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// The live objects of `plural` in `namespace` that `uid` owns, ordered by name.
fn owned(state: &State, plural: &str, namespace: &str, uid: &str) -> Vec<(Key, Value)> {
    let Some(resource) = state.catalog.by_name(plural) else {
        return Vec::new();
    };
    state
        .store
        .list(&resource.resource(), Some(namespace))
        .filter(|(_, e)| owned_by(&e.object, uid) && !is_deleting(&e.object))
        .map(|(k, e)| (k.clone(), e.object.clone()))
        .collect()
}

fn pod_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// A condition without its times (see [`with_times`]).
fn condition(kind: &str, status: bool, reason: &str, message: &str) -> Value {
    json!({
        "type": kind,
        "status": if status { "True" } else { "False" },
        "reason": reason,
        "message": message,
    })
}

/// `conditions` with their times: a condition keeps its `lastTransitionTime` while its status stays, and (when
/// `update_times`) its `lastUpdateTime` while nothing about it changes.
fn with_times(old: &Value, conditions: Vec<Value>, update_times: bool) -> Value {
    let now = clock::now();
    let updated: Vec<Value> = conditions
        .into_iter()
        .map(|mut c| {
            let previous = old
                .as_array()
                .into_iter()
                .flatten()
                .find(|o| o["type"] == c["type"]);
            let same_status = previous.is_some_and(|p| p["status"] == c["status"]);
            let unchanged = previous.is_some_and(|p| {
                same_status && p["reason"] == c["reason"] && p["message"] == c["message"]
            });
            let kept = |field: &str| {
                previous
                    .map(|p| p[field].clone())
                    .filter(|v| !v.is_null())
                    .unwrap_or_else(|| json!(now))
            };
            if update_times {
                c["lastUpdateTime"] = if unchanged {
                    kept("lastUpdateTime")
                } else {
                    json!(now)
                };
            }
            c["lastTransitionTime"] = if same_status {
                kept("lastTransitionTime")
            } else {
                json!(now)
            };
            c
        })
        .collect();
    Value::Array(updated)
}

/// The `pod-template-hash` of a template: 10 safe characters of a hash of its canonical JSON.
fn template_hash(template: &Value) -> String {
    safe_encode(hash_text(&canonical(template)), 10)
}

/// JSON with object keys sorted, whatever order the map keeps them in.
fn canonical(value: &Value) -> String {
    match value {
        Value::Object(fields) => {
            let mut keys: Vec<&String> = fields.keys().collect();
            keys.sort();
            let inner: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&fields[k])))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

/// The pod a workload's template makes: its labels and annotations, its spec, and the owner reference.
fn pod_from_template(template: &Value, owner: &Value, name: &str, extra_labels: &Value) -> Value {
    let mut labels = template["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    for (key, value) in extra_labels.as_object().into_iter().flatten() {
        labels[key] = value.clone();
    }
    let mut metadata = json!({
        "name": name,
        "namespace": owner["metadata"]["namespace"],
        "labels": labels,
        "ownerReferences": [owner_reference(owner)],
    });
    if template["metadata"]["annotations"].is_object() {
        metadata["annotations"] = template["metadata"]["annotations"].clone();
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": template["spec"],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_hashes_ignore_key_order() {
        let a: Value = serde_json::from_str(r#"{"a":1,"b":{"c":2,"d":3}}"#).expect("json");
        let b: Value = serde_json::from_str(r#"{"b":{"d":3,"c":2},"a":1}"#).expect("json");
        assert_eq!(template_hash(&a), template_hash(&b));
        assert_ne!(template_hash(&a), template_hash(&json!({"a": 2})));
    }

    #[test]
    fn conditions_keep_their_times_while_unchanged() {
        let old = json!([{ "type": "Ready", "status": "True", "reason": "A", "message": "",
            "lastTransitionTime": "then", "lastUpdateTime": "then" }]);
        let same = with_times(&old, vec![condition("Ready", true, "B", "")], true);
        assert_eq!(same[0]["lastTransitionTime"], "then");
        assert_ne!(same[0]["lastUpdateTime"], "then");
        let flipped = with_times(&old, vec![condition("Ready", false, "A", "")], false);
        assert_ne!(flipped[0]["lastTransitionTime"], "then");
    }
}
