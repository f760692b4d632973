//! Creating and changing objects: `POST` (create), `PUT` (replace), `PATCH` as server-side apply
//! (`application/apply-patch+yaml`) or as a merge patch (`application/merge-patch+json`, and the strategic merge patch
//! read the same way), on the object or its `status`.

use serde_json::{Value, json};

use super::apply::{ApplyAs, apply, record_update};
use super::catalog::ResourceType;
use super::clock;
use super::commit::{Write, commit};
use super::fields::Scope;
use super::route::Target;
use super::state::State;
use super::status::{ApiError, Cause};
use super::store::Key;

/// How a `PATCH` body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchKind {
    Apply { force: bool },
    Merge,
}

/// The object in the body must be of the kind the path serves, and name the object the path names.
fn check_body(target: &Target, body: &Value, name: Option<&str>) -> Result<(), ApiError> {
    let resource = &target.resource;
    let text = body.to_string();
    let api_version = body["apiVersion"].as_str().ok_or_else(|| {
        ApiError::bad_request(format!("Object 'apiVersion' is missing in '{text}'"))
    })?;
    let kind = body["kind"]
        .as_str()
        .ok_or_else(|| ApiError::bad_request(format!("Object 'Kind' is missing in '{text}'")))?;
    if api_version != resource.api_version() {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            resource.api_version()
        )));
    }
    if kind != resource.kind {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            resource.kind
        )));
    }
    if let (Some(url_name), Some(body_name)) = (name, body["metadata"]["name"].as_str())
        && url_name != body_name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({url_name})"
        )));
    }
    if let (Some(namespace), Some(body_namespace)) = (
        target.namespace.as_deref(),
        body["metadata"]["namespace"].as_str(),
    ) && resource.namespaced
        && namespace != body_namespace
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(())
}

fn scope_of(target: &Target) -> Result<Scope, ApiError> {
    match target.subresource.as_deref() {
        None => Ok(Scope::Main),
        Some("status") => Ok(Scope::Status),
        Some(_) => Err(ApiError::method_not_allowed()),
    }
}

fn key_of(target: &Target, name: &str) -> Key {
    Key::new(
        &target.resource.resource(),
        target.namespace.as_deref(),
        name,
    )
}

/// `object` with `status` taken from `from` (main-resource writes never change status; status writes change only it).
fn keep_part(object: &mut Value, from: Option<&Value>, scope: Scope) {
    match scope {
        Scope::Main => match from.map(|f| f["status"].clone()).filter(|s| !s.is_null()) {
            Some(status) => object["status"] = status,
            None => {
                if let Some(fields) = object.as_object_mut() {
                    fields.remove("status");
                }
            }
        },
        Scope::Status => {
            let status = object["status"].clone();
            if let Some(from) = from {
                *object = from.clone();
            }
            object["status"] = status;
        }
    }
}

/// `POST` to a collection.
pub(crate) fn create(
    state: &mut State,
    target: &Target,
    mut body: Value,
    manager: &str,
    dry_run: bool,
) -> Result<(u16, Value), ApiError> {
    check_body(target, &body, None)?;
    let name = match (
        body["metadata"]["name"].as_str(),
        body["metadata"]["generateName"].as_str(),
    ) {
        (Some(name), _) if !name.is_empty() => name.to_owned(),
        (_, Some(prefix)) if !prefix.is_empty() => {
            format!("{prefix}{}", state.store.ids.suffix(5))
        }
        _ => {
            return Err(ApiError::invalid(
                &target.resource,
                "",
                &[Cause::required(
                    "metadata.name",
                    "name or generateName is required",
                )],
            ));
        }
    };
    let key = key_of(target, &name);
    if state.store.get(&key).is_some() {
        return Err(ApiError::already_exists(&target.resource, &name));
    }
    keep_part(&mut body, None, Scope::Main);
    let mut managers = Vec::new();
    record_update(
        &mut managers,
        manager,
        &target.resource.api_version(),
        Scope::Main,
        None,
        &body,
        &clock::now(),
    );
    let (object, _) = commit(
        state,
        &target.resource,
        Write {
            key,
            object: body,
            managers,
            dry_run,
        },
    )?;
    Ok((201, object))
}

/// A client's `metadata.resourceVersion` must be the stored one (optimistic concurrency).
fn check_version(
    resource: &ResourceType,
    name: &str,
    sent: &Value,
    live: &Value,
) -> Result<(), ApiError> {
    match sent.as_str() {
        Some(version) if !version.is_empty() && Some(version) != live.as_str() => {
            Err(ApiError::conflict(
                resource,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ))
        }
        _ => Ok(()),
    }
}

/// `PUT` of an object or its status.
pub(crate) fn replace(
    state: &mut State,
    target: &Target,
    mut body: Value,
    manager: &str,
    dry_run: bool,
) -> Result<(u16, Value), ApiError> {
    let name = target.name.clone().unwrap_or_default();
    check_body(target, &body, Some(&name))?;
    let scope = scope_of(target)?;
    let key = key_of(target, &name);
    let existing = state
        .store
        .get(&key)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&target.resource, &name))?;
    let sent_version = body["metadata"]["resourceVersion"].clone();
    // Built-in kinds allow unconditional updates; custom resources insist on a resource version.
    if target.resource.custom && sent_version.as_str().is_none_or(str::is_empty) {
        return Err(ApiError::invalid(
            &target.resource,
            &name,
            &[Cause::invalid(
                "metadata.resourceVersion",
                "0x0",
                "must be specified for an update",
            )],
        ));
    }
    check_version(
        &target.resource,
        &name,
        &sent_version,
        &existing.object["metadata"]["resourceVersion"],
    )?;
    keep_part(&mut body, Some(&existing.object), scope);
    let mut managers = existing.managers.clone();
    record_update(
        &mut managers,
        manager,
        &target.resource.api_version(),
        scope,
        Some(&existing.object),
        &body,
        &clock::now(),
    );
    let (object, _) = commit(
        state,
        &target.resource,
        Write {
            key,
            object: body,
            managers,
            dry_run,
        },
    )?;
    Ok((200, object))
}

/// `PATCH` of an object or its status.
pub(crate) fn patch(
    state: &mut State,
    target: &Target,
    body: Value,
    kind: PatchKind,
    manager: &str,
    dry_run: bool,
) -> Result<(u16, Value), ApiError> {
    let name = target.name.clone().unwrap_or_default();
    let scope = scope_of(target)?;
    let key = key_of(target, &name);
    let existing = state.store.get(&key).cloned();
    let (object, managers) = match kind {
        PatchKind::Apply { force } => {
            check_body(target, &body, Some(&name))?;
            let empty = json!({});
            let who = ApplyAs {
                manager,
                force,
                api_version: &target.resource.api_version(),
                scope,
                now: &clock::now(),
            };
            let (live, live_managers) = existing
                .as_ref()
                .map_or((&empty, &[][..]), |e| (&e.object, e.managers.as_slice()));
            if existing.is_none() && scope == Scope::Status {
                return Err(ApiError::not_found(&target.resource, &name));
            }
            apply(live, live_managers, &body, &who)?
        }
        PatchKind::Merge => {
            let existing = existing
                .as_ref()
                .ok_or_else(|| ApiError::not_found(&target.resource, &name))?;
            check_version(
                &target.resource,
                &name,
                &body["metadata"]["resourceVersion"],
                &existing.object["metadata"]["resourceVersion"],
            )?;
            let mut patched = existing.object.clone();
            merge_patch(&mut patched, &body);
            keep_part(&mut patched, Some(&existing.object), scope);
            let mut managers = existing.managers.clone();
            record_update(
                &mut managers,
                manager,
                &target.resource.api_version(),
                scope,
                Some(&existing.object),
                &patched,
                &clock::now(),
            );
            (patched, managers)
        }
    };
    let (object, created) = commit(
        state,
        &target.resource,
        Write {
            key,
            object,
            managers,
            dry_run,
        },
    )?;
    Ok((if created { 201 } else { 200 }, object))
}

/// RFC 7386: maps merged, `null` removes, anything else replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let Some(fields) = target.as_object_mut() else {
        return;
    };
    for (name, value) in patch {
        if value.is_null() {
            fields.remove(name);
        } else {
            merge_patch(fields.entry(name.clone()).or_insert(Value::Null), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patches_remove_with_null() {
        let mut object = json!({ "a": { "b": 1, "c": 2 }, "d": [1] });
        merge_patch(
            &mut object,
            &json!({ "a": { "b": null, "e": 3 }, "d": [2] }),
        );
        assert_eq!(object, json!({ "a": { "c": 2, "e": 3 }, "d": [2] }));
    }
}
