//! The quota controller: a ResourceQuota's status says its limits and what the namespace uses of them (pods are
//! counted; other resources are reported as unused).

use serde_json::{Map, Value, json};

use super::{CONTROLLER_MANAGER, is_deleting, set_status};
use crate::kubernetes::quota::pods_counted;
use crate::kubernetes::state::State;

pub(super) fn reconcile(state: &mut State) {
    for key in state.store.keys("resourcequotas", None) {
        let Some(quota) = state.store.object(&key).cloned() else {
            continue;
        };
        if is_deleting(&quota) {
            continue;
        }
        let pods = pods_counted(&state.store, &key.namespace);
        let hard = quota["spec"]["hard"].clone();
        let used: Map<String, Value> = hard
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, _)| {
                let value = match name.as_str() {
                    "pods" | "count/pods" => pods.to_string(),
                    _ => "0".to_owned(),
                };
                (name.clone(), json!(value))
            })
            .collect();
        set_status(
            state,
            &key,
            json!({ "hard": hard, "used": used }),
            CONTROLLER_MANAGER,
        );
    }
}
