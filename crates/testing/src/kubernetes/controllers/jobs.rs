//! The Job controller: one pod per Job (`<job>-<5 chars>`), then the Job's status from it — `Complete` (with
//! `SuccessCriteriaMet`) once it succeeded, `Failed` with `BackoffLimitExceeded` once it failed. A failed pod is not
//! retried: the fake fails a Job at its first failure, whatever its `backoffLimit`.

use serde_json::{Value, json};

use super::events::{Event, record};
use super::{
    CONTROLLER_MANAGER, condition, create, is_deleting, owned, pod_from_template, pod_ready,
    set_status, text, with_times,
};
use crate::kubernetes::clock;
use crate::kubernetes::quota::pod_refusal;
use crate::kubernetes::state::State;
use crate::kubernetes::store::Key;

const COMPONENT: &str = "job-controller";
const BACKOFF_MESSAGE: &str = "Job has reached the specified backoff limit";

pub(super) fn reconcile(state: &mut State) {
    for key in state.store.keys("jobs.batch", None) {
        let Some(job) = state.store.object(&key).cloned() else {
            continue;
        };
        let finished = job["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True");
        let suspended = job["spec"]["suspend"].as_bool() == Some(true);
        if !is_deleting(&job) && !finished && !suspended {
            run(state, &key, &job);
        }
    }
}

fn event(state: &mut State, job: &Value, warning: bool, reason: &str, message: String) {
    record(
        state,
        Event {
            involved: job,
            field_path: None,
            warning,
            reason,
            message,
            component: COMPONENT,
        },
        false,
    );
}

fn run(state: &mut State, key: &Key, job: &Value) {
    let uid = text(job, "/metadata/uid").to_owned();
    if owned(state, "pods", &key.namespace, &uid).is_empty() && job["status"]["startTime"].is_null()
    {
        let name = format!("{}-{}", key.name, state.store.ids.suffix(5));
        if let Some(why) = pod_refusal(&state.store, &key.namespace) {
            event(
                state,
                job,
                true,
                "FailedCreate",
                format!("Error creating: pods {name:?} is forbidden: {why}"),
            );
            return;
        }
        let pod = pod_from_template(&job["spec"]["template"], job, &name, &json!({}));
        if create(state, "pods", pod, CONTROLLER_MANAGER).is_some() {
            event(
                state,
                job,
                false,
                "SuccessfulCreate",
                format!("Created pod: {name}"),
            );
        }
    }
    let pods = owned(state, "pods", &key.namespace, &uid);
    let phase_count = |phase: &str| {
        pods.iter()
            .filter(|(_, p)| text(p, "/status/phase") == phase)
            .count()
    };
    let succeeded = phase_count("Succeeded");
    let failed = phase_count("Failed");
    let active = pods.len() - succeeded - failed;
    let ready = pods.iter().filter(|(_, p)| pod_ready(p)).count();
    let now = clock::now();
    let mut status = json!({
        "startTime": job["status"]["startTime"].as_str().map_or_else(|| now.clone(), str::to_owned),
        "ready": ready,
        "terminating": 0,
        "uncountedTerminatedPods": {},
    });
    for (field, count) in [
        ("active", active),
        ("succeeded", succeeded),
        ("failed", failed),
    ] {
        if count > 0 {
            status[field] = json!(count);
        }
    }
    let conditions = if succeeded > 0 {
        status["completionTime"] = json!(now);
        event(state, job, false, "Completed", "Job completed".to_owned());
        let reached = "Reached expected number of succeeded pods";
        vec![
            condition("SuccessCriteriaMet", true, "CompletionsReached", reached),
            condition("Complete", true, "CompletionsReached", reached),
        ]
    } else if failed > 0 {
        event(
            state,
            job,
            true,
            "BackoffLimitExceeded",
            BACKOFF_MESSAGE.to_owned(),
        );
        vec![
            condition(
                "FailureTarget",
                true,
                "BackoffLimitExceeded",
                BACKOFF_MESSAGE,
            ),
            condition("Failed", true, "BackoffLimitExceeded", BACKOFF_MESSAGE),
        ]
    } else {
        Vec::new()
    };
    if !conditions.is_empty() {
        let mut timed = with_times(&job["status"]["conditions"], conditions, false);
        for c in timed.as_array_mut().into_iter().flatten() {
            c["lastProbeTime"] = c["lastTransitionTime"].clone();
        }
        status["conditions"] = timed;
    }
    set_status(state, key, status, CONTROLLER_MANAGER);
}
