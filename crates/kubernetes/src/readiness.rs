//! Whether an object is ready, by the kstatus rules: the controller has seen its generation, and its status says
//! the rollout is complete (Deployments and StatefulSets), it completed (Jobs), it is bound (claims), or its
//! `Ready` condition holds (custom resources). A rollout that says it cannot go on is failed, not waited for.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Not yet, and why.
    InProgress(String),
    /// Never, and why.
    Failed(String),
}

use Readiness::{Failed, InProgress, Ready};

fn condition<'a>(object: &'a Value, kind: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

fn holds(object: &Value, kind: &str) -> bool {
    condition(object, kind).is_some_and(|c| c["status"] == "True")
}

fn said(condition: &Value) -> String {
    let reason = condition["reason"].as_str().unwrap_or_default();
    let message = condition["message"].as_str().unwrap_or_default();
    match (reason.is_empty(), message.is_empty()) {
        (false, false) => format!("{reason}: {message}"),
        (false, true) => reason.to_owned(),
        _ => message.to_owned(),
    }
}

fn count(object: &Value, key: &str) -> i64 {
    object["status"][key].as_i64().unwrap_or(0)
}

/// The readiness of `object`, a `kind` as the API server returned it.
pub fn readiness(kind: &str, object: &Value) -> Readiness {
    if !object["metadata"]["deletionTimestamp"].is_null() {
        return Failed("it is being deleted".to_owned());
    }
    let generation = object["metadata"]["generation"].as_i64();
    let observed = object["status"]["observedGeneration"].as_i64();
    // Workload controllers always write `observedGeneration`; other controllers may not, and then it says nothing.
    let workload = matches!(kind, "Deployment" | "StatefulSet");
    let seen = match (generation, observed) {
        (Some(generation), Some(observed)) => observed >= generation,
        (Some(_), None) => !workload,
        (None, _) => true,
    };
    match kind {
        "Deployment" => {
            // Conditions written for an older generation say nothing of this one (kstatus reads them only once the
            // controller has seen it): a fix applied after a failed rollout, or the rollback of one, is waited for.
            if !seen {
                return InProgress(
                    "waiting for the controller to see the new generation".to_owned(),
                );
            }
            if let Some(c) = condition(object, "Progressing")
                && c["status"] == "False"
                && c["reason"] == "ProgressDeadlineExceeded"
            {
                return Failed(said(c));
            }
            if let Some(c) = condition(object, "ReplicaFailure")
                && c["status"] == "True"
            {
                return Failed(said(c));
            }
            let wanted = object["spec"]["replicas"].as_i64().unwrap_or(1);
            let (updated, total, available, ready) = (
                count(object, "updatedReplicas"),
                count(object, "replicas"),
                count(object, "availableReplicas"),
                count(object, "readyReplicas"),
            );
            if updated < wanted {
                InProgress(format!("{updated} of {wanted} replicas updated"))
            } else if total > updated {
                InProgress(format!(
                    "{} old replicas pending termination",
                    total - updated
                ))
            } else if available < wanted || ready < wanted {
                InProgress(format!("{ready} of {wanted} replicas ready"))
            } else {
                Ready
            }
        }
        "StatefulSet" => {
            if !seen {
                return InProgress(
                    "waiting for the controller to see the new generation".to_owned(),
                );
            }
            let wanted = object["spec"]["replicas"].as_i64().unwrap_or(1);
            let (ready, updated) = (
                count(object, "readyReplicas"),
                count(object, "updatedReplicas"),
            );
            let on_delete = object["spec"]["updateStrategy"]["type"] == "OnDelete";
            if ready < wanted {
                InProgress(format!("{ready} of {wanted} replicas ready"))
            } else if !on_delete && updated < wanted {
                InProgress(format!("{updated} of {wanted} replicas updated"))
            } else if !on_delete
                && object["status"]["currentRevision"] != object["status"]["updateRevision"]
            {
                InProgress("the rollout of the new revision is not finished".to_owned())
            } else {
                Ready
            }
        }
        "Job" => {
            if let Some(c) = condition(object, "Failed")
                && c["status"] == "True"
            {
                Failed(said(c))
            } else if holds(object, "Complete") {
                Ready
            } else {
                InProgress("running".to_owned())
            }
        }
        "PersistentVolumeClaim" => match object["status"]["phase"].as_str() {
            Some("Bound") => Ready,
            Some("Lost") => Failed("its volume is lost".to_owned()),
            phase => InProgress(format!("{} (not bound)", phase.unwrap_or("Pending"))),
        },
        "Namespace" => match object["status"]["phase"].as_str() {
            Some("Terminating") => Failed("it is being deleted".to_owned()),
            _ => Ready,
        },
        "Service" if object["spec"]["type"] == "LoadBalancer" => {
            if object["status"]["loadBalancer"]["ingress"]
                .as_array()
                .is_some_and(|i| !i.is_empty())
            {
                Ready
            } else {
                InProgress("waiting for a load balancer address".to_owned())
            }
        }
        "HTTPRoute" => {
            // A route is only as good as each Gateway's acceptance of it, kept per parent.
            let parents = object["status"]["parents"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if parents.is_empty() {
                return InProgress("no Gateway has accepted it yet".to_owned());
            }
            for parent in &parents {
                let conditions = parent["conditions"].as_array().cloned().unwrap_or_default();
                for kind in ["Accepted", "ResolvedRefs"] {
                    let current = |c: &&Value| {
                        c["observedGeneration"]
                            .as_i64()
                            .zip(generation)
                            .is_none_or(|(seen, now)| seen >= now)
                    };
                    match conditions
                        .iter()
                        .find(|c| c["type"] == kind)
                        .filter(current)
                    {
                        Some(c) if c["status"] == "True" => {}
                        Some(c) if c["status"] == "False" => {
                            return Failed(format!("{kind} is false: {}", said(c)));
                        }
                        _ => {
                            return InProgress(format!(
                                "waiting for the Gateway to say whether it is {kind}"
                            ));
                        }
                    }
                }
            }
            Ready
        }
        _ => {
            // Custom resources: the conditions kstatus reads.
            if let Some(c) = condition(object, "Stalled")
                && c["status"] == "True"
            {
                return Failed(said(c));
            }
            if !seen {
                return InProgress(
                    "waiting for the controller to see the new generation".to_owned(),
                );
            }
            if holds(object, "Reconciling") {
                return InProgress("reconciling".to_owned());
            }
            match condition(object, "Ready") {
                // A condition that says which generation it is about (cert-manager's do) counts for that one only.
                Some(c)
                    if c["observedGeneration"]
                        .as_i64()
                        .zip(generation)
                        .is_some_and(|(seen, now)| seen < now) =>
                {
                    InProgress("waiting for the controller to see the new generation".to_owned())
                }
                Some(c) if c["status"] == "True" => Ready,
                Some(c) => InProgress(said(c)),
                // A Certificate without its `Ready` condition yet is not issued yet; other kinds without one have
                // nothing to wait for.
                None if kind == "Certificate" => {
                    InProgress("waiting for its Ready condition".to_owned())
                }
                None => Ready,
            }
        }
    }
}

#[cfg(test)]
mod tests;
