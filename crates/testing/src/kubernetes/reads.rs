//! Reading: one object, or a list with label and field selectors and `limit`/`continue` paging, as `<Kind>List` with
//! the resource version the list was read at.

use base64::Engine;
use serde_json::{Value, json};

use super::catalog::ResourceType;
use super::request::Request;
use super::route::Target;
use super::selectors::{FieldSelector, LabelSelector};
use super::state::State;
use super::status::ApiError;
use super::store::Key;

/// `GET` of one object (or its status).
pub(crate) fn get(state: &State, target: &Target) -> Result<Value, ApiError> {
    let name = target.name.clone().unwrap_or_default();
    let key = Key::new(
        &target.resource.resource(),
        target.namespace.as_deref(),
        &name,
    );
    state
        .store
        .object(&key)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&target.resource, &name))
}

/// `DeploymentList`.
pub(crate) fn list_kind(resource: &ResourceType) -> String {
    format!("{}List", resource.kind)
}

/// The request's label and field selectors (a path naming one object selects it by name).
pub(crate) fn selection(
    target: &Target,
    request: &Request,
) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(request.param("labelSelector").unwrap_or_default())?;
    let mut fields = FieldSelector::parse(
        request.param("fieldSelector").unwrap_or_default(),
        &target.resource.plural,
    )?;
    if let Some(name) = &target.name {
        fields = fields.and(FieldSelector::name(name));
    }
    Ok((labels, fields))
}

/// A `continue` token: where the next page starts, opaque to clients.
fn continue_token(key: &Key, revision: u64) -> String {
    let token = json!({ "v": "meta.k8s.io/v1", "rv": revision, "start": format!("{}/{}\u{0}", key.namespace, key.name) });
    base64::engine::general_purpose::URL_SAFE.encode(token.to_string())
}

/// The (namespace, name) after which a `continue` token's page starts.
fn continue_after(token: &str) -> Result<(String, String), ApiError> {
    let invalid = || ApiError::bad_request("continue key is not valid: the token cannot be read");
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .map_err(|_| invalid())?;
    let parsed: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    let start = parsed["start"].as_str().ok_or_else(invalid)?;
    let start = start.trim_end_matches('\u{0}');
    let (namespace, name) = start.split_once('/').ok_or_else(invalid)?;
    Ok((namespace.to_owned(), name.to_owned()))
}

/// `GET` of a collection.
pub(crate) fn list(state: &State, target: &Target, request: &Request) -> Result<Value, ApiError> {
    let resource = &target.resource;
    let (labels, fields) = selection(target, request)?;
    let limit = match request.param("limit") {
        None | Some("") => None,
        Some(text) => Some(text.parse::<usize>().map_err(|_| {
            ApiError::bad_request(format!("limit: Invalid value: {text:?}: not a number"))
        })?)
        .filter(|l| *l > 0),
    };
    let after = match request.param("continue") {
        None | Some("") => None,
        Some(token) => Some(continue_after(token)?),
    };
    let revision = state.store.revision();
    let stored_as = resource.resource();
    let selected: Vec<(&Key, Value)> = state
        .store
        .list(&stored_as, target.namespace.as_deref())
        .filter(|(k, _)| {
            after
                .as_ref()
                .is_none_or(|(ns, name)| (&k.namespace, &k.name) > (ns, name))
        })
        .filter(|(_, e)| labels.matches(&e.object) && fields.matches(&e.object))
        .map(|(k, e)| (k, list_item(resource, &e.object)))
        .collect();
    let mut metadata = json!({ "resourceVersion": revision.to_string() });
    let items: Vec<Value> = match limit {
        Some(limit) if selected.len() > limit => {
            let (page, rest) = selected.split_at(limit);
            if let Some((last, _)) = page.last() {
                metadata["continue"] = json!(continue_token(last, revision));
                metadata["remainingItemCount"] = json!(rest.len());
            }
            page.iter().map(|(_, v)| v.clone()).collect()
        }
        _ => selected.into_iter().map(|(_, v)| v).collect(),
    };
    Ok(json!({
        "kind": list_kind(resource),
        "apiVersion": resource.api_version(),
        "metadata": metadata,
        "items": items,
    }))
}

/// An object as a list item: typed lists of built-in kinds leave out each item's `apiVersion` and `kind`.
fn list_item(resource: &ResourceType, object: &Value) -> Value {
    let mut item = object.clone();
    if !resource.custom
        && let Some(fields) = item.as_object_mut()
    {
        fields.remove("apiVersion");
        fields.remove("kind");
    }
    item
}
