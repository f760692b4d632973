use serde_json::json;

use super::*;

fn check(kind: &str, object: serde_json::Value, expected: Readiness) {
    assert_eq!(readiness(kind, &object), expected, "{kind} {object}");
}

fn deployment(status: serde_json::Value) -> serde_json::Value {
    json!({ "metadata": { "generation": 2 }, "spec": { "replicas": 2 }, "status": status })
}

#[test]
fn deployments() {
    let ready = json!({ "observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2 });
    check("Deployment", deployment(ready.clone()), Ready);
    let mut old_generation = ready.clone();
    old_generation["observedGeneration"] = json!(1);
    check(
        "Deployment",
        deployment(old_generation),
        InProgress("waiting for the controller to see the new generation".into()),
    );
    check(
        "Deployment",
        deployment(
            json!({ "observedGeneration": 2, "replicas": 2, "updatedReplicas": 1, "readyReplicas": 2, "availableReplicas": 2 }),
        ),
        InProgress("1 of 2 replicas updated".into()),
    );
    check(
        "Deployment",
        deployment(
            json!({ "observedGeneration": 2, "replicas": 3, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2 }),
        ),
        InProgress("1 old replicas pending termination".into()),
    );
    check(
        "Deployment",
        deployment(
            json!({ "observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 1, "availableReplicas": 1 }),
        ),
        InProgress("1 of 2 replicas ready".into()),
    );
    check(
        "Deployment",
        deployment(json!({ "observedGeneration": 2, "conditions": [
            { "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet \"web-1\" has timed out progressing." }
        ] })),
        Failed("ProgressDeadlineExceeded: ReplicaSet \"web-1\" has timed out progressing.".into()),
    );
    check(
        "Deployment",
        deployment(json!({ "observedGeneration": 2, "conditions": [
            { "type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": "exceeded quota" }
        ] })),
        Failed("FailedCreate: exceeded quota".into()),
    );
    // A failure of the previous generation says nothing of this one: a fix applied after a failed rollout (or the
    // rollback of one) is waited for, not failed at once.
    check(
        "Deployment",
        deployment(json!({ "observedGeneration": 1, "conditions": [
            { "type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": "exceeded quota" },
            { "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "old" }
        ] })),
        InProgress("waiting for the controller to see the new generation".into()),
    );
    // One replica unless the spec says otherwise; a Deployment being deleted never becomes ready.
    check(
        "Deployment",
        json!({ "metadata": { "generation": 1 }, "spec": {}, "status": { "observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1 } }),
        Ready,
    );
    check(
        "Deployment",
        json!({ "metadata": { "deletionTimestamp": "2026-01-01T00:00:00Z" } }),
        Failed("it is being deleted".into()),
    );
}

#[test]
fn statefulsets_jobs_claims_and_the_rest() {
    let sts = |status: serde_json::Value| json!({ "metadata": { "generation": 1 }, "spec": { "replicas": 1 }, "status": status });
    check(
        "StatefulSet",
        sts(
            json!({ "observedGeneration": 1, "readyReplicas": 1, "updatedReplicas": 1, "currentRevision": "a", "updateRevision": "a" }),
        ),
        Ready,
    );
    check(
        "StatefulSet",
        sts(
            json!({ "observedGeneration": 1, "readyReplicas": 1, "updatedReplicas": 1, "currentRevision": "a", "updateRevision": "b" }),
        ),
        InProgress("the rollout of the new revision is not finished".into()),
    );
    check(
        "StatefulSet",
        sts(json!({ "observedGeneration": 1 })),
        InProgress("0 of 1 replicas ready".into()),
    );
    check(
        "Job",
        json!({ "status": { "conditions": [{ "type": "Complete", "status": "True" }] } }),
        Ready,
    );
    check(
        "Job",
        json!({ "status": { "conditions": [{ "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit" }] } }),
        Failed("BackoffLimitExceeded: Job has reached the specified backoff limit".into()),
    );
    check(
        "Job",
        json!({ "status": { "active": 1 } }),
        InProgress("running".into()),
    );
    check(
        "PersistentVolumeClaim",
        json!({ "status": { "phase": "Bound" } }),
        Ready,
    );
    check(
        "PersistentVolumeClaim",
        json!({ "status": { "phase": "Pending" } }),
        InProgress("Pending (not bound)".into()),
    );
    check(
        "Namespace",
        json!({ "status": { "phase": "Active" } }),
        Ready,
    );
    check(
        "Namespace",
        json!({ "status": { "phase": "Terminating" } }),
        Failed("it is being deleted".into()),
    );
    check("Service", json!({ "spec": { "type": "ClusterIP" } }), Ready);
    check(
        "Service",
        json!({ "spec": { "type": "LoadBalancer" }, "status": {} }),
        InProgress("waiting for a load balancer address".into()),
    );
    check("Secret", json!({ "data": {} }), Ready);
    check(
        "Certificate",
        json!({ "metadata": { "generation": 1 }, "status": { "observedGeneration": 1, "conditions": [{ "type": "Ready", "status": "False", "reason": "Issuing", "message": "waiting for the order" }] } }),
        InProgress("Issuing: waiting for the order".into()),
    );
    check(
        "Certificate",
        json!({ "metadata": { "generation": 1 }, "status": { "observedGeneration": 1, "conditions": [{ "type": "Ready", "status": "True" }] } }),
        Ready,
    );
    let route = |conditions: serde_json::Value| json!({ "status": { "parents": [{ "parentRef": { "name": "public" }, "conditions": conditions }] } });
    check(
        "HTTPRoute",
        route(
            json!([{ "type": "Accepted", "status": "True" }, { "type": "ResolvedRefs", "status": "True" }]),
        ),
        Ready,
    );
    check(
        "HTTPRoute",
        route(
            json!([{ "type": "Accepted", "status": "False", "reason": "NotAllowedByListeners", "message": "hostname not allowed" }]),
        ),
        Failed("Accepted is false: NotAllowedByListeners: hostname not allowed".into()),
    );
    check(
        "HTTPRoute",
        json!({ "status": { "parents": [] } }),
        InProgress("no Gateway has accepted it yet".into()),
    );
    check(
        "Widget",
        json!({ "status": { "conditions": [{ "type": "Stalled", "status": "True", "reason": "Invalid", "message": "no parent" }] } }),
        Failed("Invalid: no parent".into()),
    );
    // A Certificate without its Ready condition yet, or with one of an older generation, is not ready.
    check(
        "Certificate",
        json!({ "metadata": { "generation": 1 }, "status": {} }),
        InProgress("waiting for its Ready condition".into()),
    );
    check(
        "Certificate",
        json!({ "metadata": { "generation": 2 }, "status": { "conditions": [{ "type": "Ready", "status": "True", "observedGeneration": 1 }] } }),
        InProgress("waiting for the controller to see the new generation".into()),
    );
}

#[test]
fn an_observed_generation_counts_only_where_a_controller_writes_one() {
    // cert-manager keeps `observedGeneration` on its conditions: its Certificates are ready by `Ready` alone.
    check(
        "Certificate",
        json!({ "metadata": { "generation": 3 }, "status": { "conditions": [{ "type": "Ready", "status": "True", "observedGeneration": 3 }] } }),
        Ready,
    );
    check(
        "Deployment",
        json!({ "metadata": { "generation": 1 }, "spec": { "replicas": 0 }, "status": {} }),
        InProgress("waiting for the controller to see the new generation".into()),
    );
}
