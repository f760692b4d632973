//! Why a workload does not become ready, from its pods and the cluster's events: the reason a pod cannot start
//! (an image that cannot be pulled, a container that keeps crashing, no node to run on) ends a wait at once.

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams};
use serde_json::Value;

/// Reasons after which a pod will not start without a change: the rollout cannot succeed.
const HOPELESS: &[&str] = &[
    "ImagePullBackOff",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

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

/// Why a pod cannot start, when it cannot without a change: `pod web-5d9f-x2k: ImagePullBackOff: …`.
pub(crate) fn hopeless(pods: &[Pod]) -> Option<String> {
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
