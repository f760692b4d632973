//! The ReplicaSet controller: as many pods as the set's replicas, made from its template (`<set>-<5 chars>`), extra
//! ones deleted; a pod the namespace's quota refuses leaves the set a `ReplicaFailure` condition and a `FailedCreate`
//! event.

use serde_json::{Value, json};

use super::events::{Event, record};
use super::{
    CONTROLLER_MANAGER, condition, create, is_deleting, owned, pod_from_template, pod_ready,
    resource, set_status, text, with_times,
};
use crate::kubernetes::delete::{Propagation, delete_object};
use crate::kubernetes::quota::pod_refusal;
use crate::kubernetes::state::State;
use crate::kubernetes::store::Key;

const COMPONENT: &str = "replicaset-controller";

pub(super) fn reconcile(state: &mut State) {
    for key in state.store.keys("replicasets.apps", None) {
        let Some(set) = state.store.object(&key).cloned() else {
            continue;
        };
        if !is_deleting(&set) {
            scale(state, &key, &set);
        }
    }
}

fn scale(state: &mut State, key: &Key, set: &Value) {
    let uid = text(set, "/metadata/uid").to_owned();
    let desired = set["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
    let pods = owned(state, "pods", &key.namespace, &uid);
    let had_failure = set["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "ReplicaFailure")
        .cloned();
    let mut failure = None;
    if pods.len() < desired {
        for _ in pods.len()..desired {
            let name = format!("{}-{}", key.name, state.store.ids.suffix(5));
            if let Some(why) = pod_refusal(&state.store, &key.namespace) {
                let message = format!("pods {name:?} is forbidden: {why}");
                // The first refusal is reported; later ones, for other pod names, say the same.
                failure = Some(had_failure.clone().unwrap_or_else(|| {
                    condition("ReplicaFailure", true, "FailedCreate", &message)
                }));
                if had_failure.is_none() {
                    record(
                        state,
                        Event {
                            involved: set,
                            field_path: None,
                            warning: true,
                            reason: "FailedCreate",
                            message: format!("Error creating: {message}"),
                            component: COMPONENT,
                        },
                        false,
                    );
                }
                break;
            }
            let pod = pod_from_template(&set["spec"]["template"], set, &name, &json!({}));
            if create(state, "pods", pod, CONTROLLER_MANAGER).is_some() {
                record(
                    state,
                    Event {
                        involved: set,
                        field_path: None,
                        warning: false,
                        reason: "SuccessfulCreate",
                        message: format!("Created pod: {name}"),
                        component: COMPONENT,
                    },
                    false,
                );
            }
        }
    } else if pods.len() > desired
        && let Some(pods_resource) = resource(state, "pods")
    {
        for (pod_key, _) in pods.iter().rev().take(pods.len() - desired) {
            delete_object(state, &pods_resource, pod_key, Propagation::Background);
            record(
                state,
                Event {
                    involved: set,
                    field_path: None,
                    warning: false,
                    reason: "SuccessfulDelete",
                    message: format!("Deleted pod: {}", pod_key.name),
                    component: COMPONENT,
                },
                false,
            );
        }
    }

    let pods = owned(state, "pods", &key.namespace, &uid);
    let ready = pods.iter().filter(|(_, p)| pod_ready(p)).count();
    let mut status = json!({
        "replicas": pods.len(),
        "fullyLabeledReplicas": pods.len(),
        "observedGeneration": set["metadata"]["generation"],
    });
    if ready > 0 {
        status["readyReplicas"] = json!(ready);
        status["availableReplicas"] = json!(ready);
    }
    if let Some(failure) = failure {
        status["conditions"] = with_times(&set["status"]["conditions"], vec![failure], false);
    }
    set_status(state, key, status, CONTROLLER_MANAGER);
}
