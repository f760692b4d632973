//! The Deployment controller: one ReplicaSet per pod template (`<deployment>-<pod-template-hash>`), scaled to the
//! Deployment's replicas while older ones are scaled to zero, and the Deployment's status from their pods —
//! `Available`, `Progressing` (`NewReplicaSetAvailable` once rolled out, `ProgressDeadlineExceeded` when a rollout
//! does not finish in time) and the ReplicaSet's `ReplicaFailure`.

use serde_json::{Value, json};

use super::events::{Event, record};
use super::{
    CONTROLLER_MANAGER, PROGRESS_DEADLINE_TICKS, condition, create, is_deleting, owned,
    owner_reference, pod_ready, set_status, template_hash, text, with_times,
};
use crate::kubernetes::commit::system_update;
use crate::kubernetes::fields::Scope;
use crate::kubernetes::state::State;
use crate::kubernetes::store::Key;

pub(super) fn reconcile(state: &mut State) {
    for key in state.store.keys("deployments.apps", None) {
        let Some(deployment) = state.store.object(&key).cloned() else {
            continue;
        };
        if !is_deleting(&deployment) {
            roll_out(state, &key, &deployment);
        }
    }
}

fn replicas_of(object: &Value) -> i64 {
    object["spec"]["replicas"].as_i64().unwrap_or(1)
}

fn scaled(state: &mut State, deployment: &Value, set: &str, from: i64, to: i64) {
    let direction = if to > from { "up" } else { "down" };
    record(
        state,
        Event {
            involved: deployment,
            field_path: None,
            warning: false,
            reason: "ScalingReplicaSet",
            message: format!("Scaled {direction} replica set {set} from {from} to {to}"),
            component: "deployment-controller",
        },
        true,
    );
}

fn roll_out(state: &mut State, key: &Key, deployment: &Value) {
    let namespace = key.namespace.clone();
    let uid = text(deployment, "/metadata/uid").to_owned();
    let replicas = replicas_of(deployment);
    let template = &deployment["spec"]["template"];
    let hash = template_hash(template);
    let current = format!("{}-{hash}", key.name);
    let sets = owned(state, "replicasets", &namespace, &uid);

    match sets.iter().find(|(k, _)| k.name == current) {
        None => {
            let revision = sets
                .iter()
                .filter_map(|(_, rs)| {
                    text(
                        rs,
                        "/metadata/annotations/deployment.kubernetes.io~1revision",
                    )
                    .parse::<u64>()
                    .ok()
                })
                .max()
                .unwrap_or(0)
                + 1;
            let set = replica_set(deployment, &current, &hash, revision);
            if create(state, "replicasets", set, CONTROLLER_MANAGER).is_some() {
                scaled(state, deployment, &current, 0, replicas);
            }
        }
        Some((set_key, set)) if replicas_of(set) != replicas => {
            let from = replicas_of(set);
            system_update(state, set_key, Scope::Main, CONTROLLER_MANAGER, |rs| {
                rs["spec"]["replicas"] = json!(replicas);
            });
            scaled(state, deployment, &current, from, replicas);
        }
        Some(_) => {}
    }
    for (set_key, set) in sets.iter().filter(|(k, _)| k.name != current) {
        let from = replicas_of(set);
        if from != 0 {
            system_update(state, set_key, Scope::Main, CONTROLLER_MANAGER, |rs| {
                rs["spec"]["replicas"] = json!(0);
            });
            scaled(state, deployment, &set_key.name, from, 0);
        }
    }

    // The progress deadline counts from the last change of the spec (a new template, or a scale): each is progress.
    let tick = state.memory.tick;
    let generation = deployment["metadata"]["generation"].as_i64().unwrap_or(0);
    let started = *state
        .memory
        .rollouts
        .entry(format!("{uid}/{hash}/{generation}"))
        .or_insert(tick);
    let status = status_of(state, deployment, &current, tick.saturating_sub(started));
    set_status(state, key, status, CONTROLLER_MANAGER);
}

fn replica_set(deployment: &Value, name: &str, hash: &str, revision: u64) -> Value {
    let replicas = replicas_of(deployment);
    let mut template = deployment["spec"]["template"].clone();
    if !template["metadata"]["labels"].is_object() {
        template["metadata"]["labels"] = json!({});
    }
    template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
    let mut selector = deployment["spec"]["selector"].clone();
    if !selector["matchLabels"].is_object() {
        selector["matchLabels"] = json!({});
    }
    selector["matchLabels"]["pod-template-hash"] = json!(hash);
    json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": name,
            "namespace": deployment["metadata"]["namespace"],
            "labels": template["metadata"]["labels"],
            "annotations": {
                "deployment.kubernetes.io/desired-replicas": replicas.to_string(),
                "deployment.kubernetes.io/max-replicas": (replicas + max_surge(deployment, replicas)).to_string(),
                "deployment.kubernetes.io/revision": revision.to_string(),
            },
            "ownerReferences": [owner_reference(deployment)],
        },
        "spec": { "replicas": replicas, "selector": selector, "template": template },
    })
}

/// `maxSurge`/`maxUnavailable`: a number, or a percentage of the replicas (surge rounded up, unavailable down).
fn budget(value: &Value, replicas: i64, round_up: bool) -> i64 {
    match value {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => {
            let percent = s.trim_end_matches('%').parse::<i64>().unwrap_or(25);
            let scaled = replicas * percent;
            if round_up {
                (scaled + 99) / 100
            } else {
                scaled / 100
            }
        }
        _ => 0,
    }
}

fn max_surge(deployment: &Value, replicas: i64) -> i64 {
    budget(
        &deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"],
        replicas,
        true,
    )
}

fn status_of(state: &State, deployment: &Value, current: &str, rollout_age: u64) -> Value {
    let namespace = text(deployment, "/metadata/namespace");
    let uid = text(deployment, "/metadata/uid");
    let replicas = replicas_of(deployment);
    let sets = owned(state, "replicasets", namespace, uid);
    let mut all_pods = Vec::new();
    let mut new_pods = Vec::new();
    let mut failure = None;
    for (set_key, set) in &sets {
        let pods = owned(state, "pods", namespace, text(set, "/metadata/uid"));
        if set_key.name == current {
            new_pods = pods.clone();
            failure = set["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "ReplicaFailure")
                .cloned();
        }
        all_pods.extend(pods);
    }
    let count = |pods: &[(Key, Value)]| pods.len() as i64;
    let ready = |pods: &[(Key, Value)]| pods.iter().filter(|(_, p)| pod_ready(p)).count() as i64;
    let available = ready(&all_pods);
    let max_unavailable = budget(
        &deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
        replicas,
        false,
    );
    let complete = count(&new_pods) == replicas
        && ready(&new_pods) == replicas
        && count(&all_pods) == replicas;
    let set_name = format!("ReplicaSet {current:?}");
    let progressing = if complete {
        condition(
            "Progressing",
            true,
            "NewReplicaSetAvailable",
            &format!("{set_name} has successfully progressed."),
        )
    } else if rollout_age > PROGRESS_DEADLINE_TICKS {
        condition(
            "Progressing",
            false,
            "ProgressDeadlineExceeded",
            &format!("{set_name} has timed out progressing."),
        )
    } else {
        condition(
            "Progressing",
            true,
            "ReplicaSetUpdated",
            &format!("{set_name} is progressing."),
        )
    };
    let availability = if available >= replicas - max_unavailable {
        condition(
            "Available",
            true,
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
        )
    } else {
        condition(
            "Available",
            false,
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
        )
    };
    let mut conditions = vec![availability, progressing];
    if let Some(failure) = failure {
        conditions.push(condition(
            "ReplicaFailure",
            failure["status"] == "True",
            failure["reason"].as_str().unwrap_or_default(),
            failure["message"].as_str().unwrap_or_default(),
        ));
    }
    let mut status = json!({
        "observedGeneration": deployment["metadata"]["generation"],
        "conditions": with_times(&deployment["status"]["conditions"], conditions, true),
    });
    // Zero counts are left out, as the server's JSON leaves them out.
    for (field, value) in [
        ("replicas", count(&all_pods)),
        ("updatedReplicas", count(&new_pods)),
        ("readyReplicas", ready(&all_pods)),
        ("availableReplicas", available),
        ("unavailableReplicas", (replicas - available).max(0)),
    ] {
        if value != 0 {
            status[field] = json!(value);
        }
    }
    status
}
