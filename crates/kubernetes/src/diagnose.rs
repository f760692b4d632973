//! Why a workload does not become ready, from its pods and the cluster's events: the reason a pod cannot start
//! (an image that cannot be pulled, a container that keeps crashing, no node to run on) ends a wait at once.

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams};
use serde_json::Value;

/// Whether a pod of these waits for a node.
pub(crate) fn unschedulable(pods: &[Pod]) -> bool {
    pods.iter().any(|pod| {
        pod.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
            })
    })
}

/// Reasons after which a pod will not start without a change: the rollout cannot succeed.
const HOPELESS: &[&str] = &[
    "ImagePullBackOff",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// The pods of a workload's newest revision: a Deployment's newest ReplicaSet's (by `pod-template-hash`), a
/// StatefulSet's `updateRevision`'s (by `controller-revision-hash`), a Job's own (by owner, as every run of a job has
/// the same labels). Pods of older revisions are on their way out and say nothing of the rollout.
pub(crate) async fn current_pods(
    client: &kube::Client,
    namespace: &str,
    workload: &Value,
) -> Vec<Pod> {
    let pods = pods_of(client, namespace, workload).await;
    match workload["kind"].as_str() {
        Some("Deployment") => match newest_template_hash(client, namespace, workload).await {
            Some(hash) => pods
                .into_iter()
                .filter(|p| label(p, "pod-template-hash") == Some(hash.as_str()))
                .collect(),
            None => pods,
        },
        Some("StatefulSet") => match workload["status"]["updateRevision"].as_str() {
            Some(revision) => pods
                .into_iter()
                .filter(|p| label(p, "controller-revision-hash") == Some(revision))
                .collect(),
            None => pods,
        },
        _ => pods,
    }
}

fn label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// The `pod-template-hash` of the Deployment's ReplicaSet with the highest revision.
async fn newest_template_hash(
    client: &kube::Client,
    namespace: &str,
    deployment: &Value,
) -> Option<String> {
    let uid = deployment["metadata"]["uid"].as_str()?;
    let api = crate::apply::api_of(
        client,
        "apps/v1",
        "ReplicaSet",
        "replicasets",
        Some(namespace),
    );
    let sets = api.list(&ListParams::default()).await.ok()?;
    sets.items
        .into_iter()
        .filter(|set| {
            set.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.uid == uid)
        })
        .filter_map(|set| {
            let revision: u64 = set
                .metadata
                .annotations
                .as_ref()?
                .get("deployment.kubernetes.io/revision")?
                .parse()
                .ok()?;
            let hash = set
                .metadata
                .labels
                .as_ref()?
                .get("pod-template-hash")?
                .clone();
            Some((revision, hash))
        })
        .max()
        .map(|(_, hash)| hash)
}

/// The pods of a workload (by its selector; a Job's by owner as well, as every run of a job has the same labels).
pub(crate) async fn pods_of(client: &kube::Client, namespace: &str, workload: &Value) -> Vec<Pod> {
    let labels = workload["spec"]["selector"]["matchLabels"]
        .as_object()
        .or_else(|| workload["spec"]["template"]["metadata"]["labels"].as_object());
    let Some(labels) = labels else {
        return Vec::new();
    };
    let selector = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join(",");
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let Ok(list) = api.list(&ListParams::default().labels(&selector)).await else {
        return Vec::new();
    };
    let uid = workload["metadata"]["uid"].as_str();
    let is_job = workload["kind"] == "Job";
    list.items
        .into_iter()
        .filter(|pod| {
            !is_job
                || pod
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|owner| Some(owner.uid.as_str()) == uid)
        })
        .collect()
}

/// Why a pod cannot start, when it cannot without a change: `pod web-5d9f-x2k: ImagePullBackOff: …`; a pod
/// that no node can take counts once it has waited `unschedulable_for` (a cluster autoscaler may add one).
pub(crate) fn hopeless(
    pods: &[Pod],
    unschedulable_since: Option<std::time::Duration>,
    grace: std::time::Duration,
) -> Option<String> {
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Some(status) = &pod.status else { continue };
        for container in status.container_statuses.iter().flatten() {
            if let Some(waiting) = container.state.as_ref().and_then(|s| s.waiting.as_ref()) {
                let reason = waiting.reason.clone().unwrap_or_default();
                if HOPELESS.contains(&reason.as_str()) {
                    let message = waiting.message.clone().unwrap_or_default();
                    let restarts = if container.restart_count > 0 {
                        format!(" (restarted {} times)", container.restart_count)
                    } else {
                        String::new()
                    };
                    return Some(
                        format!("pod {name}: {reason}{restarts}: {message}")
                            .trim_end_matches(": ")
                            .to_owned(),
                    );
                }
            }
        }
        for condition in status.conditions.iter().flatten() {
            if condition.type_ == "PodScheduled"
                && condition.status == "False"
                && condition.reason.as_deref() == Some("Unschedulable")
                && unschedulable_since.is_some_and(|waited| waited >= grace)
            {
                return Some(format!(
                    "pod {name}: Unschedulable: {}",
                    condition.message.clone().unwrap_or_default()
                ));
            }
        }
    }
    None
}

/// The last warning events about the object and its pods, newest last: `; last events: Pod web-x: Failed: …`.
pub(crate) async fn last_events(
    client: &kube::Client,
    namespace: &str,
    names: &[String],
) -> String {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    let Ok(list) = api.list(&ListParams::default()).await else {
        return String::new();
    };
    let mut events: Vec<&Event> = list
        .items
        .iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .filter(|e| {
            e.involved_object
                .name
                .as_ref()
                .is_some_and(|n| names.contains(n))
        })
        .collect();
    events.sort_by_key(|e| {
        e.metadata
            .resource_version
            .as_deref()
            .and_then(|v| v.parse::<u64>().ok())
    });
    let lines: Vec<String> = events
        .iter()
        .rev()
        .take(5)
        .rev()
        .map(|e| {
            format!(
                "{} {}: {}: {}",
                e.involved_object.kind.clone().unwrap_or_default(),
                e.involved_object.name.clone().unwrap_or_default(),
                e.reason.clone().unwrap_or_default(),
                e.message.clone().unwrap_or_default().trim_end()
            )
        })
        .collect();
    if lines.is_empty() {
        String::new()
    } else {
        format!("; last events: {}", lines.join(" | "))
    }
}
