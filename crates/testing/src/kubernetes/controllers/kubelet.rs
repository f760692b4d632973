//! The scheduler and the kubelet of the one node, `fake-node`: a pod is bound when the cluster is schedulable
//! (`Unschedulable` and a `FailedScheduling` event when not), its containers are created on the next tick and run on
//! the one after. Images say how a container fares: one containing `unpullable` stays in `ImagePullBackOff`, one
//! containing `crashloop` keeps restarting in `CrashLoopBackOff`; a pod that does not restart (a Job's) finishes after
//! running a tick — failed when its image or command contains `fail`.

use serde_json::{Value, json};

use super::events::{Event, record};
use super::{is_deleting, set_status, text};
use crate::kubernetes::clock;
use crate::kubernetes::commit::system_update;
use crate::kubernetes::fields::Scope;
use crate::kubernetes::state::State;
use crate::kubernetes::store::Key;

const NODE: &str = "fake-node";
const NODE_IP: &str = "10.0.0.10";
/// Ticks between restarts of a crashing container.
const RESTART_TICKS: u64 = 8;

/// What the kubelet remembers of a pod it runs.
#[derive(Debug, Clone)]
pub(crate) struct PodMemory {
    bound_at: u64,
    started_at: String,
    ip: String,
}

pub(super) fn reconcile(state: &mut State) {
    for key in state.store.keys("pods", None) {
        let Some(pod) = state.store.object(&key).cloned() else {
            continue;
        };
        let phase = text(&pod, "/status/phase");
        if is_deleting(&pod) || phase == "Succeeded" || phase == "Failed" {
            continue;
        }
        if text(&pod, "/spec/nodeName").is_empty() {
            schedule(state, &key, &pod);
        } else {
            run(state, &key, &pod);
        }
    }
}

fn schedule(state: &mut State, key: &Key, pod: &Value) {
    if !state.schedulable {
        let message = "0/1 nodes are available: 1 node(s) were unschedulable. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.";
        let since = pod["metadata"]["creationTimestamp"].clone();
        let status = json!({
            "phase": "Pending",
            "qosClass": "BestEffort",
            "conditions": [{
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": message,
                "lastProbeTime": null,
                "lastTransitionTime": since,
            }],
        });
        set_status(state, key, status, "kube-scheduler");
        record(
            state,
            Event {
                involved: pod,
                field_path: None,
                warning: true,
                reason: "FailedScheduling",
                message: message.to_owned(),
                component: "default-scheduler",
            },
            false,
        );
        return;
    }
    system_update(state, key, Scope::Main, "kube-scheduler", |p| {
        p["spec"]["nodeName"] = json!(NODE);
    });
    let memory = PodMemory {
        bound_at: state.memory.tick,
        started_at: clock::now(),
        ip: state.store.ids.pod_ip(),
    };
    state
        .memory
        .pods
        .insert(text(pod, "/metadata/uid").to_owned(), memory);
}

/// How one container is doing.
enum Container {
    Creating,
    PullBackOff,
    CrashLoop { restarts: u64 },
    Running,
    Exited { code: i64 },
}

fn run(state: &mut State, key: &Key, pod: &Value) {
    let uid = text(pod, "/metadata/uid").to_owned();
    let tick = state.memory.tick;
    let memory = match state.memory.pods.get(&uid) {
        Some(memory) => memory.clone(),
        None => {
            let memory = PodMemory {
                bound_at: tick,
                started_at: clock::now(),
                ip: state.store.ids.pod_ip(),
            };
            state.memory.pods.insert(uid.clone(), memory.clone());
            memory
        }
    };
    let age = tick.saturating_sub(memory.bound_at);
    let restarts = text(pod, "/spec/restartPolicy") != "Never"
        && text(pod, "/spec/restartPolicy") != "OnFailure";
    let containers: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let states: Vec<Container> = containers
        .iter()
        .map(|c| {
            let image = c["image"].as_str().unwrap_or_default();
            let command: Vec<&str> = ["command", "args"]
                .iter()
                .flat_map(|f| c[*f].as_array().into_iter().flatten())
                .filter_map(Value::as_str)
                .collect();
            if age == 0 {
                Container::Creating
            } else if image.contains("unpullable") {
                Container::PullBackOff
            } else if image.contains("crashloop") {
                Container::CrashLoop {
                    restarts: 1 + (age - 1) / RESTART_TICKS,
                }
            } else if !restarts && age >= 2 {
                let failed = image.contains("fail") || command.iter().any(|w| w.contains("fail"));
                Container::Exited {
                    code: if failed { 1 } else { 0 },
                }
            } else {
                Container::Running
            }
        })
        .collect();

    for (container, container_state) in containers.iter().zip(&states) {
        let name = container["name"].as_str().unwrap_or_default();
        let image = container["image"].as_str().unwrap_or_default();
        let (reason, message, again) = match container_state {
            Container::PullBackOff => (
                "Failed",
                format!("Failed to pull image {image:?}: not found"),
                false,
            ),
            Container::CrashLoop { .. } => (
                "BackOff",
                format!(
                    "Back-off restarting failed container {name} in pod {}_{}({uid})",
                    key.name, key.namespace
                ),
                true,
            ),
            _ => continue,
        };
        record(
            state,
            Event {
                involved: pod,
                field_path: Some(format!("spec.containers{{{name}}}")),
                warning: true,
                reason,
                message,
                component: "kubelet",
            },
            again && (age - 1) % RESTART_TICKS == 0,
        );
    }

    let status = pod_status(pod, &containers, &states, &memory, &key.namespace);
    set_status(state, key, status, "kubelet");
}

fn pod_status(
    pod: &Value,
    containers: &[Value],
    states: &[Container],
    memory: &PodMemory,
    namespace: &str,
) -> Value {
    let pod_name = text(pod, "/metadata/name");
    let uid = text(pod, "/metadata/uid");
    let since = &memory.started_at;
    let statuses: Vec<Value> = containers
        .iter()
        .zip(states)
        .map(|(c, s)| {
            let name = c["name"].as_str().unwrap_or_default();
            let image = c["image"].as_str().unwrap_or_default();
            let (state, ready, restarts, last) = match s {
                Container::Creating => (json!({ "waiting": { "reason": "ContainerCreating" } }), false, 0, json!({})),
                Container::PullBackOff => (
                    json!({ "waiting": { "reason": "ImagePullBackOff", "message": format!("Back-off pulling image {image:?}") } }),
                    false,
                    0,
                    json!({}),
                ),
                Container::CrashLoop { restarts } => (
                    json!({ "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": format!("back-off 10s restarting failed container={name} pod={pod_name}_{namespace}({uid})"),
                    } }),
                    false,
                    *restarts,
                    json!({ "terminated": { "exitCode": 1, "reason": "Error", "startedAt": since, "finishedAt": since } }),
                ),
                Container::Running => (json!({ "running": { "startedAt": since } }), true, 0, json!({})),
                Container::Exited { code } => (
                    json!({ "terminated": {
                        "exitCode": code,
                        "reason": if *code == 0 { "Completed" } else { "Error" },
                        "startedAt": since,
                        "finishedAt": since,
                    } }),
                    false,
                    0,
                    json!({}),
                ),
            };
            json!({
                "name": name,
                "image": image,
                "imageID": if matches!(s, Container::Creating | Container::PullBackOff) { String::new() } else { format!("{image}@sha256:{}", "0".repeat(64)) },
                "containerID": "",
                "ready": ready,
                "started": matches!(s, Container::Running),
                "restartCount": restarts,
                "state": state,
                "lastState": last,
            })
        })
        .collect();
    let all = |f: fn(&Container) -> bool| states.iter().all(f);
    let phase = if states
        .iter()
        .any(|s| matches!(s, Container::Creating | Container::PullBackOff))
    {
        "Pending"
    } else if all(|s| matches!(s, Container::Exited { .. })) {
        if all(|s| matches!(s, Container::Exited { code: 0 })) {
            "Succeeded"
        } else {
            "Failed"
        }
    } else {
        "Running"
    };
    let ready = all(|s| matches!(s, Container::Running));
    let finished = matches!(phase, "Succeeded" | "Failed");
    let unready: Vec<&str> = containers
        .iter()
        .zip(states)
        .filter(|(_, s)| !matches!(s, Container::Running))
        .filter_map(|(c, _)| c["name"].as_str())
        .collect();
    let readiness = |kind: &str| {
        if ready {
            json!({ "type": kind, "status": "True", "lastProbeTime": null, "lastTransitionTime": since })
        } else if finished {
            json!({ "type": kind, "status": "False", "reason": "PodCompleted", "lastProbeTime": null, "lastTransitionTime": since })
        } else {
            json!({
                "type": kind,
                "status": "False",
                "reason": "ContainersNotReady",
                "message": format!("containers with unready status: [{}]", unready.join(" ")),
                "lastProbeTime": null,
                "lastTransitionTime": since,
            })
        }
    };
    let plain = |kind: &str, status: bool| json!({ "type": kind, "status": if status { "True" } else { "False" }, "lastProbeTime": null, "lastTransitionTime": since });
    json!({
        "phase": phase,
        "conditions": [
            plain("PodReadyToStartContainers", !matches!(states.first(), Some(Container::Creating))),
            plain("Initialized", true),
            readiness("Ready"),
            readiness("ContainersReady"),
            plain("PodScheduled", true),
        ],
        "hostIP": NODE_IP,
        "hostIPs": [{ "ip": NODE_IP }],
        "podIP": memory.ip,
        "podIPs": [{ "ip": memory.ip }],
        "startTime": since,
        "containerStatuses": statuses,
        "qosClass": "BestEffort",
    })
}
