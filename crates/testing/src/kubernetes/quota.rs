//! ResourceQuota's admission of pods: a pod that would take a namespace past a quota's `pods` (or `count/pods`) is
//! refused, as the quota admission plugin refuses it.

use serde_json::Value;

use super::store::Store;

/// Why one more pod may not be made in `namespace`: `exceeded quota: q, requested: pods=1, used: pods=0, limited: pods=0`.
pub(crate) fn pod_refusal(store: &Store, namespace: &str) -> Option<String> {
    let used = pods_counted(store, namespace);
    for (key, entry) in store.list("resourcequotas", Some(namespace)) {
        let hard = &entry.object["spec"]["hard"];
        for name in ["pods", "count/pods"] {
            if let Some(limit) = quantity(&hard[name])
                && used + 1 > limit
            {
                return Some(format!(
                    "exceeded quota: {}, requested: {name}=1, used: {name}={used}, limited: {name}={limit}",
                    key.name
                ));
            }
        }
    }
    None
}

/// The pods a quota counts: those not finished.
pub(crate) fn pods_counted(store: &Store, namespace: &str) -> u64 {
    store
        .list("pods", Some(namespace))
        .filter(|(_, e)| {
            !matches!(
                e.object["status"]["phase"].as_str(),
                Some("Succeeded" | "Failed")
            )
        })
        .count() as u64
}

/// A count written as a quantity (`"10"`, `10`).
fn quantity(value: &Value) -> Option<u64> {
    match value {
        Value::String(text) => text.trim().parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}
