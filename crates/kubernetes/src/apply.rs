//! Writing and deleting objects: server-side apply under the field manager `preview` (as a dry run, or for real),
//! deletion of an object by its uid.

use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
    Preconditions, PropagationPolicy,
};
use preview_manifests::Object;

use crate::FIELD_MANAGER;
use crate::connect::{explain, is_not_found};
use crate::inventory::ObjectRef;

/// The API of objects of this type, in `namespace` (or cluster-wide).
pub(crate) fn api_of(
    client: &kube::Client,
    api_version: &str,
    kind: &str,
    plural: &str,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let resource =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    match namespace {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

pub(crate) fn api_for(client: &kube::Client, object: &Object) -> Api<DynamicObject> {
    api_of(
        client,
        &object.api_version,
        &object.kind,
        &object.plural,
        object.namespace.as_deref(),
    )
}

pub(crate) fn api_for_ref(client: &kube::Client, object: &ObjectRef) -> Api<DynamicObject> {
    api_of(
        client,
        &object.api_version,
        &object.kind,
        &object.plural,
        object.namespace.as_deref(),
    )
}

/// How an object is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Checked by the API server — admission, validation, conflicts — and nothing stored.
    DryRun,
    Real,
}

/// Server-side applies `object`; `force` takes over fields other managers own, which `preview` does only on objects
/// it made. The object as stored (or as it would be, in a dry run).
pub(crate) async fn apply_object(
    client: &kube::Client,
    object: &Object,
    force: bool,
    mode: Mode,
) -> Result<DynamicObject, String> {
    let mut params = PatchParams::apply(FIELD_MANAGER);
    params.force = force;
    params.dry_run = mode == Mode::DryRun;
    api_for(client, object)
        .patch(&object.name, &params, &Patch::Apply(&object.body))
        .await
        .map_err(|e| {
            let what = if mode == Mode::DryRun {
                format!("{} (dry run)", object.describe())
            } else {
                object.describe()
            };
            explain(&what, &e)
        })
}

/// The object as stored now, if it exists.
pub(crate) async fn get_object(
    client: &kube::Client,
    object: &ObjectRef,
) -> Result<Option<DynamicObject>, String> {
    api_for_ref(client, object)
        .get_opt(&object.name)
        .await
        .map_err(|e| explain(&object.describe(), &e))
}

/// Who an object belongs to: the resource that made it, in which environment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Owner<'a> {
    pub project: &'a str,
    pub environment: &'a str,
    pub resource: &'a str,
}

impl Owner<'_> {
    /// Whether an object with this metadata carries this owner's marks: the resource's annotation and the
    /// environment's labels.
    pub fn marked(
        &self,
        metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    ) -> bool {
        let annotation = metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("preview.dev/resource"))
            .is_some_and(|r| r == self.resource);
        let label = |key: &str, value: &str| {
            metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(key))
                .is_some_and(|v| v == value)
        };
        annotation
            && label("preview.dev/project", self.project)
            && label("preview.dev/environment", self.environment)
    }
}

/// Deletes the object if it is the one recorded: by its uid, or — for one recorded before it was made — when it
/// carries the owner's marks. Absent is deleted. Its dependents go in the background.
pub(crate) async fn delete_object(
    client: &kube::Client,
    object: &ObjectRef,
    owner: Owner<'_>,
) -> Result<(), String> {
    let uid = match &object.uid {
        Some(uid) => uid.clone(),
        None => match get_object(client, object).await? {
            None => return Ok(()),
            Some(live) => match (owner.marked(&live.metadata), live.metadata.uid) {
                (true, Some(uid)) => uid,
                // Someone else's object of the same name: not ours to delete.
                _ => return Ok(()),
            },
        },
    };
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    match api_for_ref(client, object)
        .delete(&object.name, &params)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        // Another object of the same name now: the recorded one is gone.
        Err(kube::Error::Api(status))
            if status.code == 409 && status.message.contains("Precondition failed") =>
        {
            Ok(())
        }
        Err(e) => Err(explain(&format!("deleting {}", object.describe()), &e)),
    }
}

/// What the inventory records of an applied object.
pub(crate) fn reference(object: &Object, stored: Option<&DynamicObject>) -> ObjectRef {
    ObjectRef {
        api_version: object.api_version.clone(),
        kind: object.kind.clone(),
        plural: object.plural.clone(),
        namespace: object.namespace.clone(),
        name: object.name.clone(),
        uid: stored.and_then(|s| s.metadata.uid.clone()),
        generation: stored.and_then(|s| s.metadata.generation),
    }
}
