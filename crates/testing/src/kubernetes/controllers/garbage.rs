//! The garbage collector: an object whose owners are all gone is deleted (in the background); an object deleted in
//! the foreground waits, with its `foregroundDeletion` finalizer, until its dependents are gone.

use std::collections::HashSet;

use serde_json::Value;

use super::{CONTROLLER_MANAGER, is_deleting};
use crate::kubernetes::commit::system_update;
use crate::kubernetes::delete::{Propagation, delete_object, owned_by, remove};
use crate::kubernetes::fields::Scope;
use crate::kubernetes::state::State;
use crate::kubernetes::store::Key;

const FOREGROUND: &str = "foregroundDeletion";

pub(super) fn collect(state: &mut State) {
    let uids: HashSet<String> = state
        .store
        .all()
        .filter_map(|(_, e)| e.object["metadata"]["uid"].as_str().map(str::to_owned))
        .collect();
    let orphans: Vec<Key> = state
        .store
        .all()
        .filter(|(_, e)| {
            let owners = e.object["metadata"]["ownerReferences"].as_array();
            owners.is_some_and(|o| {
                !o.is_empty()
                    && o.iter()
                        .all(|owner| owner["uid"].as_str().is_none_or(|uid| !uids.contains(uid)))
            }) && !is_deleting(&e.object)
        })
        .map(|(k, _)| k.clone())
        .collect();
    for key in orphans {
        delete(state, &key);
    }

    let waiting: Vec<(Key, Value)> = state
        .store
        .all()
        .filter(|(_, e)| has_finalizer(&e.object, FOREGROUND))
        .map(|(k, e)| (k.clone(), e.object.clone()))
        .collect();
    for (key, owner) in waiting {
        let uid = owner["metadata"]["uid"].as_str().unwrap_or_default();
        let dependents: Vec<Key> = state
            .store
            .all()
            .filter(|(_, e)| owned_by(&e.object, uid))
            .map(|(k, _)| k.clone())
            .collect();
        if dependents.is_empty() {
            finish(state, &key);
        } else {
            for dependent in dependents {
                delete(state, &dependent);
            }
        }
    }
}

fn has_finalizer(object: &Value, finalizer: &str) -> bool {
    object["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| f.iter().any(|v| v == finalizer))
}

fn delete(state: &mut State, key: &Key) {
    if let Some(resource) = state.catalog.by_name(&key.resource).cloned() {
        delete_object(state, &resource, key, Propagation::Background);
    }
}

/// Drops the foreground finalizer; the object goes if it was the last.
fn finish(state: &mut State, key: &Key) {
    let updated = system_update(state, key, Scope::Main, CONTROLLER_MANAGER, |object| {
        if let Some(finalizers) = object["metadata"]["finalizers"].as_array_mut() {
            finalizers.retain(|f| f != FOREGROUND);
        }
    });
    let done = updated.is_some_and(|o| {
        o["metadata"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty())
    });
    if done && let Some(resource) = state.catalog.by_name(&key.resource).cloned() {
        remove(state, &resource, key);
    }
}
