//! What tests turn on the fake server: custom kinds to serve, writes as other field managers, refusals of writes,
//! denials of access reviews, pod logs, schedulability, paused controllers, finalizers, and failures and delays of
//! requests.

use std::time::Duration;

use serde_json::{Value, json};

use super::ApiServer;
use super::access::Denial;
use super::catalog;
use super::commit::{system_create, system_update};
use super::delete;
use super::faults::Matcher;
use super::fields::Scope;
use super::route::Target;
use super::state::State;
use super::status::ApiError;
use super::store::Key;
use super::validation::Rejection;
use super::writes::{self, PatchKind};

impl ApiServer {
    /// Serves the custom kinds of `group` (`cert-manager.io`, `gateway.networking.k8s.io`,
    /// `snapshot.storage.k8s.io`) by storing their CRDs. Panics for a group the fake does not know.
    pub fn install_crd(&self, group: &str) {
        let crds = catalog::crds_of_group(group);
        assert!(
            !crds.is_empty(),
            "the fake API server knows no CRDs of the group {group}"
        );
        let mut state = self.shared.lock();
        let Some(resource) = state.catalog.by_name("customresourcedefinitions").cloned() else {
            return;
        };
        for mut crd in crds {
            let name = crd["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if state
                .store
                .get(&Key::new(&resource.resource(), None, &name))
                .is_some()
            {
                continue;
            }
            crd["status"] = catalog::established();
            let stored = system_create(&mut state, &resource, crd, "kube-apiserver");
            state.catalog.install_from_crd(&stored);
        }
    }

    /// The target of a test's write of `object`, by its `apiVersion`, `kind`, namespace and name.
    fn target_of(state: &State, object: &Value) -> Result<Target, Value> {
        let refuse = |message: String| ApiError::bad_request(message).to_json();
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let kind = object["kind"].as_str().unwrap_or_default();
        let resource = state
            .catalog
            .by_kind(api_version, kind)
            .cloned()
            .ok_or_else(|| refuse(format!("no kind {kind} is served in {api_version}")))?;
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let namespace = object["metadata"]["namespace"].as_str().map(str::to_owned);
        Ok(Target {
            namespace: if resource.namespaced { namespace } else { None },
            resource,
            name: Some(name),
            subresource: None,
        })
    }

    /// Applies `object` as field manager `manager`, taking over any fields others own (as `kubectl apply
    /// --server-side --force-conflicts` would). The stored object, or the refusal's `Status`.
    pub fn apply_as(&self, manager: &str, object: Value) -> Result<Value, Value> {
        let mut state = self.shared.lock();
        let target = Self::target_of(&state, &object)?;
        writes::patch(
            &mut state,
            &target,
            object,
            PatchKind::Apply { force: true },
            manager,
            false,
        )
        .map(|(_, stored)| stored)
        .map_err(|e| e.to_json())
    }

    /// Merge-patches the object `plural`/`namespace`/`name` as `manager` with an update (as `kubectl edit` or
    /// `kubectl patch` would): the manager owns what it changed, and later applies of those fields conflict with it.
    pub fn edit_as(
        &self,
        manager: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
        patch: Value,
    ) -> Result<Value, Value> {
        let mut state = self.shared.lock();
        let resource = state
            .catalog
            .by_name(plural)
            .cloned()
            .ok_or_else(|| ApiError::no_such_resource().to_json())?;
        let target = Target {
            namespace: namespace.filter(|_| resource.namespaced).map(str::to_owned),
            resource,
            name: Some(name.to_owned()),
            subresource: None,
        };
        writes::patch(&mut state, &target, patch, PatchKind::Merge, manager, false)
            .map(|(_, stored)| stored)
            .map_err(|e| e.to_json())
    }

    /// Makes every write of `plural`/`name` fail with 422 `Invalid`, the cause being `field` and `message` (as an
    /// admission policy would refuse it).
    pub fn reject(&self, plural: &str, name: &str, field: &str, message: &str) {
        self.shared.lock().rejections.push(Rejection {
            plural: plural.to_owned(),
            name: name.to_owned(),
            field: field.to_owned(),
            message: message.to_owned(),
        });
    }

    /// Makes access reviews of `verb` on `group`/`resource` answer `allowed: false` (`*` matches any).
    pub fn deny(&self, verb: &str, group: &str, resource: &str) {
        self.shared.lock().denials.push(Denial {
            verb: verb.to_owned(),
            group: group.to_owned(),
            resource: resource.to_owned(),
        });
    }

    /// The log of pods whose name starts with `pod_prefix` (the latest call wins over earlier ones).
    pub fn set_logs(&self, pod_prefix: &str, text: &str) {
        self.shared
            .lock()
            .logs
            .insert(0, (pod_prefix.to_owned(), text.to_owned()));
    }

    /// What serves pods' forwarded ports from now on (see [`super::PostgresPods`] for database servers).
    pub fn serve_pods(&self, backend: super::PodBackend) {
        self.shared.lock().pod_backend = Some(backend);
    }

    /// Pods of PostgreSQL images served by real PostgreSQL servers, one per pod, made as the image makes its
    /// server (see [`super::PostgresPods`]).
    pub fn serve_postgres_pods(&self) -> std::sync::Arc<super::PostgresPods> {
        let pods = std::sync::Arc::new(super::PostgresPods::default());
        let serving = std::sync::Arc::clone(&pods);
        self.serve_pods(std::sync::Arc::new(move |port: &super::PodPort| {
            serving.serve(port)
        }));
        pods
    }

    /// Whether pods can be scheduled; while not, new pods stay `Pending` as `Unschedulable`.
    pub fn set_schedulable(&self, schedulable: bool) {
        self.shared.lock().schedulable = schedulable;
    }

    /// Holds (or releases) every controller: nothing becomes ready, nothing is collected, no namespace goes.
    pub fn pause_controllers(&self, paused: bool) {
        self.shared.lock().paused = paused;
    }

    fn change(
        &self,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
        change: impl FnOnce(&mut Value),
    ) -> bool {
        let mut state = self.shared.lock();
        let Some(resource) = state.catalog.by_name(plural).cloned() else {
            return false;
        };
        let key = Key::new(
            &resource.resource(),
            namespace.filter(|_| resource.namespaced),
            name,
        );
        let Some(updated) = system_update(&mut state, &key, Scope::Main, "test", change) else {
            return state.store.get(&key).is_some();
        };
        let done = updated["metadata"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty());
        if done
            && !updated["metadata"]["deletionTimestamp"].is_null()
            && resource.plural != "namespaces"
        {
            delete::remove(&mut state, &resource, &key);
        }
        true
    }

    /// Adds `finalizer` to the object; false if there is no such object.
    pub fn add_finalizer(
        &self,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
        finalizer: &str,
    ) -> bool {
        self.change(plural, namespace, name, |object| {
            let mut finalizers = object["metadata"]["finalizers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if !finalizers.iter().any(|f| f == finalizer) {
                finalizers.push(json!(finalizer));
            }
            object["metadata"]["finalizers"] = Value::Array(finalizers);
        })
    }

    /// Removes the object's finalizers (an object being deleted then goes); false if there is no such object.
    pub fn remove_finalizers(&self, plural: &str, namespace: Option<&str>, name: &str) -> bool {
        self.change(plural, namespace, name, |object| {
            if let Some(metadata) = object["metadata"].as_object_mut() {
                metadata.remove("finalizers");
            }
        })
    }

    /// Answers the next `method` request whose path (with its query) contains `path_contains` with a `Status` of
    /// `status_code` and `reason` (`InternalError`, `ServiceUnavailable`, `Conflict`, …).
    pub fn fail_next(&self, method: &str, path_contains: &str, status_code: u16, reason: &str) {
        let matcher = Matcher {
            method: method.to_owned(),
            path_contains: path_contains.to_owned(),
        };
        self.shared
            .lock()
            .faults
            .fail_next(matcher, status_code, reason);
    }

    /// Holds every `method` request whose path (with its query) contains `path_contains` for `duration`.
    pub fn delay(&self, method: &str, path_contains: &str, duration: Duration) {
        let matcher = Matcher {
            method: method.to_owned(),
            path_contains: path_contains.to_owned(),
        };
        self.shared.lock().faults.delay(matcher, duration);
    }

    /// Makes the `n`-th write from now on (counted from 1; reads, dry runs and access reviews do not count) fail or
    /// hang, before or after its effect.
    pub fn fault_write(&self, n: u64, fault: super::WriteFault) {
        let mut state = self.shared.lock();
        let at = state.faults.writes + n;
        state.faults.write_fault = Some((at, fault));
    }

    /// How many writes the server has received.
    pub fn writes(&self) -> u64 {
        self.shared.lock().faults.writes
    }

    /// Forgets the failures not yet used and the delays.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }
}
