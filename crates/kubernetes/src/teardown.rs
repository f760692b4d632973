//! Deleting what a resource made, and an environment's namespace: deleted, then waited for until its uid is gone.
//! A namespace that stays is reported with its conditions and the objects whose finalizers hold it; finalizers are
//! never removed, for they stand for work someone else has to finish (a volume to release, a record to delete).

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams, Preconditions, PropagationPolicy};
use tokio::time::Instant;

use crate::apply::{Owner, api_of, delete_object};
use crate::connect::{explain, is_not_found};
use crate::inventory::ObjectRef;

/// Deletes the objects, the last made first.
pub(crate) async fn delete_objects(
    client: &kube::Client,
    objects: &[ObjectRef],
    owner: Owner<'_>,
) -> Result<(), String> {
    for object in objects.iter().rev() {
        delete_object(client, object, owner).await?;
    }
    Ok(())
}

/// Kinds looked through for finalizers when a namespace does not go.
const HOLDERS: &[(&str, &str, &str)] = &[
    ("v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
    ("v1", "Pod", "pods"),
    ("v1", "Secret", "secrets"),
    ("v1", "Service", "services"),
    ("v1", "ConfigMap", "configmaps"),
    ("apps/v1", "Deployment", "deployments"),
    ("apps/v1", "StatefulSet", "statefulsets"),
    ("batch/v1", "Job", "jobs"),
    ("networking.k8s.io/v1", "Ingress", "ingresses"),
];

/// Deletes the namespace `name` if it is the incarnation `uid` — or, when none was recorded, if it carries the
/// environment's marks — and returns once it is gone. Gone already is done.
pub(crate) async fn delete_namespace(
    client: &kube::Client,
    name: &str,
    uid: Option<&str>,
    owner: Owner<'_>,
    patience: std::time::Duration,
) -> Result<(), String> {
    let api: Api<Namespace> = Api::all(client.clone());
    let live = match api.get_opt(name).await {
        Ok(live) => live,
        Err(e) => return Err(explain(&format!("Namespace {name}"), &e)),
    };
    let Some(live) = live else { return Ok(()) };
    let live_uid = live.metadata.uid.clone().unwrap_or_default();
    let ours = match uid {
        Some(uid) => uid == live_uid,
        None => owner.marked(&live.metadata),
    };
    if !ours {
        // Another namespace of that name: the recorded one is gone, or it never was this environment's.
        return Ok(());
    }
    if live.metadata.deletion_timestamp.is_none() {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(live_uid.clone()),
                resource_version: None,
            }),
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(explain(&format!("deleting Namespace {name}"), &e)),
        }
    }
    let deadline = Instant::now() + patience;
    loop {
        match api.get_opt(name).await {
            Ok(None) => return Ok(()),
            Ok(Some(now)) if now.metadata.uid.as_deref() != Some(live_uid.as_str()) => {
                return Ok(());
            }
            Ok(Some(now)) => {
                if Instant::now() >= deadline {
                    return Err(stuck(client, name, &now, patience).await);
                }
            }
            Err(e) => return Err(explain(&format!("Namespace {name}"), &e)),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Why the namespace is still there: its conditions, and the objects in it that have finalizers.
async fn stuck(
    client: &kube::Client,
    name: &str,
    namespace: &Namespace,
    patience: std::time::Duration,
) -> String {
    let conditions: Vec<String> = namespace
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.status == "True")
        .map(|c| format!("{}: {}", c.type_, c.message.clone().unwrap_or_default()))
        .collect();
    let mut holders = Vec::new();
    for (api_version, kind, plural) in HOLDERS {
        let api = api_of(client, api_version, kind, plural, Some(name));
        if let Ok(list) = api.list(&ListParams::default()).await {
            for object in list.items {
                if let Some(finalizers) = object.metadata.finalizers.filter(|f| !f.is_empty()) {
                    holders.push(format!(
                        "{kind} {} ({})",
                        object.metadata.name.unwrap_or_default(),
                        finalizers.join(", ")
                    ));
                }
            }
        }
    }
    format!(
        "Namespace {name} is still terminating after {} s{}{} (its finalizers are left alone: whoever set them has work to finish)",
        patience.as_secs(),
        if conditions.is_empty() {
            String::new()
        } else {
            format!("; conditions: {}", conditions.join("; "))
        },
        if holders.is_empty() {
            String::new()
        } else {
            format!("; held by {}", holders.join(", "))
        }
    )
}
