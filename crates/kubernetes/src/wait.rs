//! Waiting for an applied object to be ready: its readiness read again on every change the API server reports
//! (a watch of that one object), under a deadline that bounds every request too; workloads also fail as soon as a pod
//! of their newest revision cannot start.

use futures_util::StreamExt;
use kube::api::{DynamicObject, WatchEvent, WatchParams};
use preview_manifests::Object;
use serde_json::Value;
use tokio::time::Instant;

use crate::KubernetesRuntime;
use crate::apply::api_for;
use crate::connect::explain;
use crate::diagnose::{current_pods, hopeless, last_events, unschedulable};
use crate::readiness::{Readiness, readiness};

/// How long one watch runs before the object and its pods are looked at again.
const LOOK_AGAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Returns once `object` (as applied: `stored`) is ready; an error naming it and why, once it cannot be or the
/// deadline passed.
pub(crate) async fn wait_ready(
    runtime: &KubernetesRuntime,
    object: &Object,
    stored: DynamicObject,
    deadline: Instant,
) -> Result<(), String> {
    let client = &runtime.client;
    let api = api_for(client, object);
    let mut current = stored;
    let mut waiting_for_node: Option<Instant> = None;
    loop {
        let body = serde_json::to_value(&current).unwrap_or(Value::Null);
        let why = match readiness(&object.kind, &body) {
            Readiness::Ready => return Ok(()),
            Readiness::Failed(reason) => {
                let events = events_of(client, object, &body).await;
                return Err(format!(
                    "{} cannot become ready: {reason}{events}",
                    object.describe()
                ));
            }
            Readiness::InProgress(why) => why,
        };
        let namespace = object.namespace.clone().unwrap_or_default();
        // Until the controller has seen the new generation, its newest revision is still the old one: its pods say
        // nothing of this rollout.
        let generation_seen = body["metadata"]["generation"].as_i64()
            <= body["status"]["observedGeneration"].as_i64()
            || object.kind == "Job";
        if generation_seen && matches!(object.kind.as_str(), "Deployment" | "StatefulSet" | "Job") {
            let pods = current_pods(client, &namespace, &body).await;
            if unschedulable(&pods) {
                waiting_for_node.get_or_insert_with(Instant::now);
            } else {
                waiting_for_node = None;
            }
            let waited = waiting_for_node.map(|since| since.elapsed());
            if let Some(reason) = hopeless(&pods, waited, runtime.options.unschedulable_grace) {
                let events = events_of(client, object, &body).await;
                return Err(format!(
                    "{} cannot become ready: {reason}{events}",
                    object.describe()
                ));
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let events = events_of(client, object, &body).await;
            return Err(format!(
                "{} did not become ready in time: {why}{events}",
                object.describe()
            ));
        }
        // A change to the object ends the watch early; its end (or the deadline) looks again either way.
        let seconds = left.min(LOOK_AGAIN).as_secs().max(1);
        let version = current
            .metadata
            .resource_version
            .clone()
            .unwrap_or_default();
        let params = WatchParams::default()
            .fields(&format!("metadata.name={}", object.name))
            .timeout(u32::try_from(seconds).unwrap_or(2));
        // The watch as a whole — its request and its stream — is bounded: a server that holds it does not hold the
        // wait past the deadline.
        let bound = left.min(LOOK_AGAIN) + std::time::Duration::from_millis(500);
        let watched = tokio::time::timeout(bound, async {
            let mut stream = match api.watch(&params, &version).await {
                Ok(stream) => stream.boxed(),
                Err(_) => {
                    // A watch refused is not the object failing: it is read again, after a pause.
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    return None;
                }
            };
            while let Some(event) = stream.next().await {
                match event {
                    Ok(WatchEvent::Added(changed) | WatchEvent::Modified(changed)) => {
                        return Some(changed);
                    }
                    Ok(WatchEvent::Deleted(_)) | Ok(WatchEvent::Error(_)) | Err(_) => return None,
                    Ok(WatchEvent::Bookmark(_)) => {}
                }
            }
            None
        });
        if let Ok(Some(changed)) = watched.await {
            current = changed;
            continue;
        }
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(std::time::Duration::from_secs(1));
        current = match tokio::time::timeout(left, api.get_opt(&object.name)).await {
            Ok(Ok(Some(fresh))) => fresh,
            Ok(Ok(None)) => {
                return Err(format!(
                    "{} disappeared while it was waited for",
                    object.describe()
                ));
            }
            Ok(Err(e)) => return Err(explain(&object.describe(), &e)),
            Err(_) => {
                return Err(format!(
                    "{} did not become ready in time: the cluster stopped answering",
                    object.describe()
                ));
            }
        };
    }
}

async fn events_of(client: &kube::Client, object: &Object, body: &Value) -> String {
    let Some(namespace) = &object.namespace else {
        return String::new();
    };
    let mut names = vec![object.name.clone()];
    if matches!(object.kind.as_str(), "Deployment" | "StatefulSet" | "Job") {
        names.extend(
            current_pods(client, namespace, body)
                .await
                .into_iter()
                .filter_map(|p| p.metadata.name),
        );
    }
    // Bounded like every wait: events are a courtesy, not worth hanging for.
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        last_events(client, namespace, &names),
    )
    .await
    .unwrap_or_default()
}
