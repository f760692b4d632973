//! Events (`v1` Event) about an object, as the controllers and the kubelet record them: one per object, reason and
//! message, its `count` raised when the same thing happens again.

use serde_json::{Value, json};

use super::{create, text};
use crate::kubernetes::clock;
use crate::kubernetes::commit::system_update;
use crate::kubernetes::fields::Scope;
use crate::kubernetes::state::State;

/// What happened, to what, said by whom.
pub(super) struct Event<'a> {
    pub involved: &'a Value,
    /// `spec.containers{web}` for an event about one container.
    pub field_path: Option<String>,
    pub warning: bool,
    pub reason: &'a str,
    pub message: String,
    pub component: &'a str,
}

/// Records the event; when one like it exists, raises its count if `again`, else leaves it.
pub(super) fn record(state: &mut State, event: Event, again: bool) {
    let namespace = match text(event.involved, "/metadata/namespace") {
        "" => "default".to_owned(),
        ns => ns.to_owned(),
    };
    let uid = text(event.involved, "/metadata/uid").to_owned();
    let existing = state
        .store
        .list("events", Some(&namespace))
        .find(|(_, e)| {
            e.object["involvedObject"]["uid"] == uid.as_str()
                && e.object["reason"] == event.reason
                && e.object["message"] == event.message.as_str()
        })
        .map(|(k, _)| k.clone());
    let now = clock::now();
    if let Some(key) = existing {
        if again {
            system_update(state, &key, Scope::Main, event.component, |e| {
                e["count"] = json!(e["count"].as_i64().unwrap_or(1) + 1);
                e["lastTimestamp"] = json!(now);
            });
        }
        return;
    }
    let name = format!(
        "{}.{}",
        text(event.involved, "/metadata/name"),
        state.store.ids.hex()
    );
    let mut involved = json!({
        "kind": event.involved["kind"],
        "namespace": event.involved["metadata"]["namespace"],
        "name": event.involved["metadata"]["name"],
        "uid": uid,
        "apiVersion": event.involved["apiVersion"],
        "resourceVersion": event.involved["metadata"]["resourceVersion"],
    });
    if let Some(path) = &event.field_path {
        involved["fieldPath"] = json!(path);
    }
    let object = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": { "name": name, "namespace": namespace },
        "involvedObject": involved,
        "reason": event.reason,
        "message": event.message,
        "type": if event.warning { "Warning" } else { "Normal" },
        "count": 1,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "source": { "component": event.component },
        "reportingComponent": event.component,
        "reportingInstance": "",
    });
    create(state, "events", object, event.component);
}
