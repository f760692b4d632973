//! What tests read of the fake server: the requests it received and the objects it stores.

use serde_json::Value;

use super::ApiServer;
use super::faults::Recorded;
use super::store::Key;

impl ApiServer {
    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().records.clone()
    }

    pub fn clear_requests(&self) {
        self.shared.lock().records.clear();
    }

    /// The stored object (`plural` as `deployments` or `deployments.apps`); `namespace` is ignored for
    /// cluster-scoped kinds.
    pub fn object(&self, plural: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let state = self.shared.lock();
        let resource = state.catalog.by_name(plural)?;
        let key = Key::new(
            &resource.resource(),
            namespace.filter(|_| resource.namespaced),
            name,
        );
        state.store.object(&key).cloned()
    }

    /// The stored objects of `plural`, in `namespace` or (`None`) everywhere, by namespace and name.
    pub fn objects(&self, plural: &str, namespace: Option<&str>) -> Vec<Value> {
        let state = self.shared.lock();
        let Some(resource) = state.catalog.by_name(plural) else {
            return Vec::new();
        };
        let resource = resource.resource();
        state
            .store
            .list(&resource, namespace)
            .map(|(_, e)| e.object.clone())
            .collect()
    }

    /// The names of the namespaces that exist (terminating ones included).
    pub fn namespaces(&self) -> Vec<String> {
        let state = self.shared.lock();
        state
            .store
            .keys("namespaces", None)
            .into_iter()
            .map(|k| k.name)
            .collect()
    }
}
