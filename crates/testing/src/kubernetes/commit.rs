//! The last steps of every write, whichever verb made it: the namespace must exist and not be terminating for a new
//! object; the server's own metadata (uid, creation time, generation) is set or kept; defaults are filled in; the
//! object is validated; an unchanged object is not written again; a dry run stops before storing. And the writes the
//! server itself makes (controllers), which skip admission.

use serde_json::{Value, json};

use super::apply::record_update;
use super::catalog::ResourceType;
use super::clock;
use super::defaults;
use super::fields::{Manager, Scope};
use super::quota;
use super::state::State;
use super::status::ApiError;
use super::store::{Entry, Key};
use super::validation::validate;

/// A write about to be checked and stored.
pub(crate) struct Write {
    pub key: Key,
    pub object: Value,
    pub managers: Vec<Manager>,
    pub dry_run: bool,
}

/// Checks and stores the write; the object as stored (or as it would be) and whether it was created.
pub(crate) fn commit(
    state: &mut State,
    resource: &ResourceType,
    write: Write,
) -> Result<(Value, bool), ApiError> {
    let Write {
        key,
        mut object,
        managers,
        dry_run,
    } = write;
    let existing = state.store.get(&key).cloned();
    if existing.is_none() && resource.namespaced {
        check_namespace(state, resource, &key)?;
    }
    stamp(
        state,
        resource,
        &key,
        &mut object,
        existing.as_ref().map(|e| &e.object),
    );
    defaults::fill(
        resource,
        &mut object,
        existing.as_ref().map(|e| &e.object),
        &mut state.store.ids,
    );
    if let Some(existing) = &existing
        && spec_part(&object) != spec_part(&existing.object)
    {
        let generation = existing.object["metadata"]["generation"]
            .as_i64()
            .unwrap_or(0);
        object["metadata"]["generation"] = json!(generation + 1);
    }
    let causes = validate(
        resource,
        &object,
        existing.as_ref().map(|e| &e.object),
        &state.rejections,
    );
    if !causes.is_empty() {
        return Err(ApiError::invalid(resource, &key.name, &causes));
    }
    if existing.is_none()
        && resource.plural == "pods"
        && let Some(why) = quota::pod_refusal(&state.store, &key.namespace)
    {
        return Err(ApiError::forbidden(resource, &key.name, &why));
    }
    if let Some(existing) = &existing
        && comparable(&existing.object) == comparable(&object)
        && existing.managers == managers
    {
        return Ok((existing.object.clone(), false));
    }
    let created = existing.is_none();
    if dry_run {
        object["metadata"]["managedFields"] = super::fields::render(&managers);
        return Ok((object, created));
    }
    let stored = state.store.put(key.clone(), Entry { object, managers });
    after_write(state, resource, &key, &stored);
    Ok((stored, created))
}

/// A namespace must exist, and not be on its way out, for something new to be made in it.
fn check_namespace(state: &State, resource: &ResourceType, key: &Key) -> Result<(), ApiError> {
    match state
        .store
        .object(&Key::new("namespaces", None, &key.namespace))
    {
        None => Err(ApiError::namespace_not_found(&key.namespace)),
        Some(namespace) if !namespace["metadata"]["deletionTimestamp"].is_null() => Err(
            ApiError::namespace_terminating(resource, &key.name, &key.namespace),
        ),
        Some(_) => Ok(()),
    }
}

/// The fields only the server sets: given on create, kept on update whatever the client sent.
fn stamp(
    state: &mut State,
    resource: &ResourceType,
    key: &Key,
    object: &mut Value,
    existing: Option<&Value>,
) {
    object["apiVersion"] = json!(resource.api_version());
    object["kind"] = json!(resource.kind);
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    let metadata = &mut object["metadata"];
    metadata["name"] = json!(key.name);
    if resource.namespaced {
        metadata["namespace"] = json!(key.namespace);
    } else if let Some(fields) = metadata.as_object_mut() {
        fields.remove("namespace");
    }
    const SYSTEM: &[&str] = &[
        "uid",
        "creationTimestamp",
        "generation",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "resourceVersion",
    ];
    if let Some(fields) = metadata.as_object_mut() {
        fields.retain(|k, _| !SYSTEM.contains(&k.as_str()));
        fields.remove("managedFields");
    }
    match existing {
        None => {
            metadata["uid"] = json!(state.store.ids.uid());
            metadata["creationTimestamp"] = json!(clock::now());
            metadata["generation"] = json!(1);
        }
        Some(existing) => {
            for field in SYSTEM {
                let kept = &existing["metadata"][field];
                if !kept.is_null() {
                    metadata[*field] = kept.clone();
                }
            }
        }
    }
}

/// What `generation` counts changes of: everything but metadata and status.
fn spec_part(object: &Value) -> Value {
    let mut part = object.clone();
    if let Some(fields) = part.as_object_mut() {
        fields.remove("metadata");
        fields.remove("status");
    }
    part
}

/// The object without what every write changes anyway.
fn comparable(object: &Value) -> Value {
    let mut part = object.clone();
    if let Some(metadata) = part["metadata"].as_object_mut() {
        metadata.remove("resourceVersion");
        metadata.remove("managedFields");
    }
    part
}

/// What a stored write sets off: a CRD's kinds are served; an object being deleted whose last finalizer was just
/// removed goes.
fn after_write(state: &mut State, resource: &ResourceType, key: &Key, stored: &Value) {
    if resource.plural == "customresourcedefinitions" {
        state.catalog.install_from_crd(stored);
        if stored["status"]["conditions"].is_null() {
            system_update(state, key, Scope::Status, "kube-apiserver", |crd| {
                crd["status"] = super::catalog::established();
            });
        }
    }
    let finalized = stored["metadata"]["finalizers"]
        .as_array()
        .is_none_or(|f| f.is_empty());
    // A namespace goes when its content is gone, which the namespace controller sees to.
    if !stored["metadata"]["deletionTimestamp"].is_null()
        && finalized
        && resource.plural != "namespaces"
    {
        super::delete::remove(state, resource, key);
    }
}

/// An object the server makes itself (a controller's ReplicaSet, pod, event), as `manager`: no admission, no
/// validation. The object as stored.
pub(crate) fn system_create(
    state: &mut State,
    resource: &ResourceType,
    mut object: Value,
    manager: &str,
) -> Value {
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let namespace = object["metadata"]["namespace"].as_str().map(str::to_owned);
    let key = Key::new(&resource.resource(), namespace.as_deref(), &name);
    stamp(state, resource, &key, &mut object, None);
    defaults::fill(resource, &mut object, None, &mut state.store.ids);
    let mut managers = Vec::new();
    let now = clock::now();
    record_update(
        &mut managers,
        manager,
        &resource.api_version(),
        Scope::Main,
        None,
        &object,
        &now,
    );
    state.store.put(key, Entry { object, managers })
}

/// Changes a stored object as `manager` (its status, for `Scope::Status`); stored only if something changed.
pub(crate) fn system_update(
    state: &mut State,
    key: &Key,
    scope: Scope,
    manager: &str,
    change: impl FnOnce(&mut Value),
) -> Option<Value> {
    let entry = state.store.get(key)?;
    let mut object = entry.object.clone();
    change(&mut object);
    if object == entry.object {
        return None;
    }
    let mut managers = entry.managers.clone();
    let api_version = object["apiVersion"].as_str().unwrap_or_default().to_owned();
    record_update(
        &mut managers,
        manager,
        &api_version,
        scope,
        Some(&entry.object),
        &object,
        &clock::now(),
    );
    Some(state.store.put(key.clone(), Entry { object, managers }))
}
