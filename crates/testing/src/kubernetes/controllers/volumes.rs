//! The volume binder: every PersistentVolumeClaim is `Bound`, with the capacity it asked for.

use serde_json::json;

use super::{CONTROLLER_MANAGER, is_deleting, set_status, text};
use crate::kubernetes::state::State;

pub(super) fn reconcile(state: &mut State) {
    for key in state.store.keys("persistentvolumeclaims", None) {
        let Some(claim) = state.store.object(&key).cloned() else {
            continue;
        };
        if is_deleting(&claim) || text(&claim, "/status/phase") == "Bound" {
            continue;
        }
        let status = json!({
            "phase": "Bound",
            "accessModes": claim["spec"]["accessModes"],
            "capacity": { "storage": claim["spec"]["resources"]["requests"]["storage"] },
        });
        set_status(state, &key, status, CONTROLLER_MANAGER);
    }
}
