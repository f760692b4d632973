//! Namespaces: each active one gets its `default` ServiceAccount and `kube-root-ca.crt` ConfigMap, as on a real
//! cluster; a terminating one has its content deleted and goes once nothing is left — while objects with finalizers
//! remain, it stays `Terminating` with the conditions the namespace controller reports.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{CONTROLLER_MANAGER, condition, create, is_deleting, set_status, with_times};
use crate::kubernetes::delete::{Propagation, delete_object, remove};
use crate::kubernetes::state::State;
use crate::kubernetes::store::Key;

/// A certificate authority bundle that says what it is.
const ROOT_CA: &str =
    "-----BEGIN CERTIFICATE-----\nZmFrZSBjbHVzdGVyIENB\n-----END CERTIFICATE-----\n";

pub(super) fn set_up(state: &mut State) {
    for key in state.store.keys("namespaces", None) {
        let Some(namespace) = state.store.object(&key).cloned() else {
            continue;
        };
        if is_deleting(&namespace) {
            continue;
        }
        let name = key.name.as_str();
        if state
            .store
            .get(&Key::new("serviceaccounts", Some(name), "default"))
            .is_none()
        {
            let account = json!({
                "apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": { "name": "default", "namespace": name },
            });
            create(state, "serviceaccounts", account, CONTROLLER_MANAGER);
        }
        if state
            .store
            .get(&Key::new("configmaps", Some(name), "kube-root-ca.crt"))
            .is_none()
        {
            let bundle = json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {
                    "name": "kube-root-ca.crt",
                    "namespace": name,
                    "annotations": { "kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters." },
                },
                "data": { "ca.crt": ROOT_CA },
            });
            create(state, "configmaps", bundle, CONTROLLER_MANAGER);
        }
    }
}

pub(super) fn tear_down(state: &mut State) {
    for key in state.store.keys("namespaces", None) {
        let Some(namespace) = state.store.object(&key).cloned() else {
            continue;
        };
        if is_deleting(&namespace) {
            empty(state, &key, &namespace);
        }
    }
}

fn empty(state: &mut State, key: &Key, namespace: &Value) {
    for (object_key, object) in state.store.in_namespace(&key.name) {
        if is_deleting(&object) {
            continue;
        }
        match state.catalog.by_name(&object_key.resource).cloned() {
            Some(resource) => {
                delete_object(state, &resource, &object_key, Propagation::Background);
            }
            None => {
                state.store.remove(&object_key);
            }
        }
    }
    let remaining = state.store.in_namespace(&key.name);
    if remaining.is_empty() {
        let held = namespace["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if !held && let Some(resource) = state.catalog.by_name("namespaces").cloned() {
            remove(state, &resource, key);
        }
        return;
    }
    let mut per_resource: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_finalizer: BTreeMap<String, usize> = BTreeMap::new();
    for (object_key, object) in &remaining {
        *per_resource.entry(object_key.resource.clone()).or_default() += 1;
        for finalizer in object["metadata"]["finalizers"]
            .as_array()
            .into_iter()
            .flatten()
        {
            *per_finalizer
                .entry(finalizer.as_str().unwrap_or_default().to_owned())
                .or_default() += 1;
        }
    }
    let listed = |counts: &BTreeMap<String, usize>, joiner: &str| {
        counts
            .iter()
            .map(|(what, n)| format!("{what} {joiner} {n} resource instances"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut conditions = vec![
        condition(
            "NamespaceDeletionDiscoveryFailure",
            false,
            "ResourcesDiscovered",
            "All resources successfully discovered",
        ),
        condition(
            "NamespaceDeletionGroupVersionParsingFailure",
            false,
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed",
        ),
        condition(
            "NamespaceDeletionContentFailure",
            false,
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization",
        ),
        condition(
            "NamespaceContentRemaining",
            true,
            "SomeResourcesRemain",
            &format!(
                "Some resources are remaining: {}",
                listed(&per_resource, "has")
            ),
        ),
    ];
    conditions.push(if per_finalizer.is_empty() {
        condition(
            "NamespaceFinalizersRemaining",
            false,
            "ContentHasNoFinalizers",
            "All content-preserving finalizers finished",
        )
    } else {
        condition(
            "NamespaceFinalizersRemaining",
            true,
            "SomeFinalizersRemain",
            &format!(
                "Some content in the namespace has finalizers remaining: {}",
                listed(&per_finalizer, "in")
            ),
        )
    });
    let status = json!({
        "phase": "Terminating",
        "conditions": with_times(&namespace["status"]["conditions"], conditions, false),
    });
    set_status(state, key, status, CONTROLLER_MANAGER);
}
