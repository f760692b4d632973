//! Deleting: `DELETE` of an object (with `DeleteOptions` from the body or the query: preconditions, propagation
//! policy, dry run) and of a collection. An object with finalizers, a namespace, and an object deleted in the
//! foreground are only marked (`deletionTimestamp`) and go later; others go at once, their dependents left to the
//! garbage collector (or orphaned, if asked).

use serde_json::{Value, json};

use super::catalog::ResourceType;
use super::clock;
use super::commit::system_update;
use super::fields::Scope;
use super::reads::{list_kind, selection};
use super::request::Request;
use super::route::Target;
use super::state::State;
use super::status::{self, ApiError};
use super::store::Key;

/// What happens to an object's dependents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Propagation {
    Background,
    Foreground,
    Orphan,
}

/// What a delete did.
pub(crate) enum Deletion {
    /// Gone; its last state.
    Removed(Value),
    /// Marked for deletion, waiting for finalizers (or a namespace's content); its state now.
    Pending(Value),
}

/// The options of a delete: the body's `DeleteOptions`, then the query's.
struct Options {
    propagation: Propagation,
    uid: Option<String>,
    resource_version: Option<String>,
    dry_run: bool,
}

fn options(request: &Request) -> Result<Options, ApiError> {
    let body: Value = if request.body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&request.body)
            .map_err(|e| ApiError::bad_request(format!("the DeleteOptions are not JSON: {e}")))?
    };
    let policy = request
        .param("propagationPolicy")
        .or_else(|| body["propagationPolicy"].as_str());
    let propagation = match policy {
        None | Some("Background") => Propagation::Background,
        Some("Foreground") => Propagation::Foreground,
        Some("Orphan") => Propagation::Orphan,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
            )));
        }
    };
    let dry_run = request.dry_run()?
        || body["dryRun"]
            .as_array()
            .is_some_and(|d| d.iter().any(|v| v == "All"));
    Ok(Options {
        propagation,
        uid: body["preconditions"]["uid"].as_str().map(str::to_owned),
        resource_version: body["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_owned),
        dry_run,
    })
}

/// `DELETE` of one object.
pub(crate) fn delete(
    state: &mut State,
    target: &Target,
    request: &Request,
) -> Result<(u16, Value), ApiError> {
    let resource = &target.resource;
    let name = target.name.clone().unwrap_or_default();
    let options = options(request)?;
    let key = Key::new(&resource.resource(), target.namespace.as_deref(), &name);
    let live = state
        .store
        .object(&key)
        .cloned()
        .ok_or_else(|| ApiError::not_found(resource, &name))?;
    let meta = &live["metadata"];
    for (what, wanted, actual) in [
        ("UID", &options.uid, &meta["uid"]),
        (
            "ResourceVersion",
            &options.resource_version,
            &meta["resourceVersion"],
        ),
    ] {
        if let Some(wanted) = wanted
            && Some(wanted.as_str()) != actual.as_str()
        {
            return Err(ApiError::conflict(
                resource,
                &name,
                &format!(
                    "Precondition failed: {what} in precondition: {wanted}, {what} in object meta: {}",
                    actual.as_str().unwrap_or_default()
                ),
            ));
        }
    }
    if options.dry_run {
        return Ok((200, answer(resource, &name, &Deletion::Removed(live))));
    }
    let deletion = delete_object(state, resource, &key, options.propagation)
        .ok_or_else(|| ApiError::not_found(resource, &name))?;
    Ok((200, answer(resource, &name, &deletion)))
}

/// The body of a delete's answer: the object while it waits, and once gone the object for pods and services (whose
/// registries return it) or a `Success` status for others.
fn answer(resource: &ResourceType, name: &str, deletion: &Deletion) -> Value {
    match deletion {
        Deletion::Pending(object) => object.clone(),
        Deletion::Removed(object) if matches!(resource.plural.as_str(), "pods" | "services") => {
            object.clone()
        }
        Deletion::Removed(object) => status::deleted(
            resource,
            name,
            object["metadata"]["uid"].as_str().unwrap_or_default(),
        ),
    }
}

/// `DELETE` of a collection: every object the selectors pick; the list of what was deleted.
pub(crate) fn delete_collection(
    state: &mut State,
    target: &Target,
    request: &Request,
) -> Result<(u16, Value), ApiError> {
    let resource = &target.resource;
    let options = options(request)?;
    let (labels, fields) = selection(target, request)?;
    let keys: Vec<Key> = state
        .store
        .list(&resource.resource(), target.namespace.as_deref())
        .filter(|(_, e)| labels.matches(&e.object) && fields.matches(&e.object))
        .map(|(k, _)| k.clone())
        .collect();
    let mut items = Vec::new();
    for key in keys {
        if options.dry_run {
            items.extend(state.store.object(&key).cloned());
            continue;
        }
        match delete_object(state, resource, &key, options.propagation) {
            Some(Deletion::Removed(object) | Deletion::Pending(object)) => items.push(object),
            None => {}
        }
    }
    Ok((
        200,
        json!({
            "kind": list_kind(resource),
            "apiVersion": resource.api_version(),
            "metadata": { "resourceVersion": state.store.revision().to_string() },
            "items": items,
        }),
    ))
}

/// Deletes the object at `key` (see the module's doc); `None` if there is none.
pub(crate) fn delete_object(
    state: &mut State,
    resource: &ResourceType,
    key: &Key,
    propagation: Propagation,
) -> Option<Deletion> {
    let live = state.store.object(key)?.clone();
    let uid = live["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if !live["metadata"]["deletionTimestamp"].is_null() {
        return Some(Deletion::Pending(live));
    }
    if propagation == Propagation::Orphan {
        orphan_dependents(state, &uid);
    }
    let has_finalizers = live["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    let is_namespace = resource.plural == "namespaces";
    if has_finalizers || is_namespace || propagation == Propagation::Foreground {
        let now = clock::now();
        let marked = system_update(state, key, Scope::Main, "kube-apiserver", |object| {
            let generation = object["metadata"]["generation"].as_i64().unwrap_or(0);
            object["metadata"]["deletionTimestamp"] = json!(now);
            object["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            object["metadata"]["generation"] = json!(generation + 1);
            if propagation == Propagation::Foreground && !is_namespace {
                let mut finalizers = object["metadata"]["finalizers"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                finalizers.push(json!("foregroundDeletion"));
                object["metadata"]["finalizers"] = Value::Array(finalizers);
            }
            if is_namespace {
                object["status"]["phase"] = json!("Terminating");
            }
        });
        return Some(Deletion::Pending(marked.unwrap_or(live)));
    }
    remove(state, resource, key).map(Deletion::Removed)
}

/// Takes the object out of the store; a CRD takes its kinds and their objects with it.
pub(crate) fn remove(state: &mut State, resource: &ResourceType, key: &Key) -> Option<Value> {
    let removed = state.store.remove(key)?;
    if resource.plural == "customresourcedefinitions" {
        let group = removed["spec"]["group"].as_str().unwrap_or_default();
        let plural = removed["spec"]["names"]["plural"]
            .as_str()
            .unwrap_or_default();
        let served = format!("{plural}.{group}");
        for key in state.store.keys(&served, None) {
            state.store.remove(&key);
        }
        state.catalog.uninstall_crd(&removed);
    }
    Some(removed)
}

/// Removes the owner `uid` from the owner references of everything that has it.
fn orphan_dependents(state: &mut State, uid: &str) {
    let dependents: Vec<Key> = state
        .store
        .all()
        .filter(|(_, e)| owned_by(&e.object, uid))
        .map(|(k, _)| k.clone())
        .collect();
    for key in dependents {
        system_update(
            state,
            &key,
            Scope::Main,
            "kube-controller-manager",
            |object| {
                if let Some(owners) = object["metadata"]["ownerReferences"].as_array_mut() {
                    owners.retain(|o| o["uid"] != uid);
                }
                let none_left = object["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|o| o.is_empty());
                if none_left && let Some(metadata) = object["metadata"].as_object_mut() {
                    metadata.remove("ownerReferences");
                }
            },
        );
    }
}

/// Whether `object` names `uid` among its owners.
pub(crate) fn owned_by(object: &Value, uid: &str) -> bool {
    object["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|owners| owners.iter().any(|o| o["uid"] == uid))
}
