//! An in-process Kubernetes API server for tests of code that talks to a cluster through the `kube` client: it answers
//! the requests a preview runtime makes — server-side apply with field ownership and conflicts, create, replace,
//! merge patch, get, list, watch, delete with preconditions and finalizers, pod logs, port forwarding, access reviews,
//! discovery — with
//! the paths, status codes and `Status` bodies of the real API (1.33), and runs fake controllers on a tick so that
//! workloads become ready, fail as their images ask, and namespaces terminate.
//!
//! Tests reach into it too: they see every request, inject failures and delays, refuse writes as admission would,
//! deny access reviews, choose pod logs, make the cluster unschedulable, pause the controllers, and read the stored
//! objects directly.
//!
//! It speaks plain HTTP on 127.0.0.1 (the `kube` client accepts an `http://` cluster URL).
//!
//! What it leaves out: TLS, authentication other than one bearer token, RBAC beyond the access review, admission webhooks,
//! JSON patch (`application/json-patch+json`, answered 415), strategic merge patch semantics (read as a merge patch),
//! protobuf and CBOR, server-side field validation and OpenAPI schemas, `resourceVersionMatch`, watch bookmarks other
//! than the initial-events one, more than one node, retries of failed Job pods (`backoffLimit`), graceful pod
//! termination, ControllerRevisions, Endpoints and EndpointSlices, and the history limits of ReplicaSets.

mod access;
mod apply;
mod catalog;
mod clock;
mod commit;
mod controllers;
mod controls;
mod defaults;
mod delete;
mod discovery;
mod faults;
mod fields;
mod forward;
mod identity;
mod inspect;
mod logs;
mod postgres_pods;
mod quota;
mod reads;
mod request;
mod route;
mod selectors;
mod server;
mod state;
mod status;
mod store;
mod validation;
mod watch;
mod writes;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinHandle;

pub use faults::{Recorded, RecordedBody, WriteFault};
pub use forward::{PodBackend, PodPort};
pub use postgres_pods::PostgresPods;

use commit::system_create;
use state::{Shared, State};

/// How often the fake controllers act.
pub const TICK: Duration = controllers::TICK;

/// A fake API server on a loopback port of its own, serving until dropped or stopped.
pub struct ApiServer {
    shared: Arc<Shared>,
    address: SocketAddr,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl ApiServer {
    /// Starts a server with the usual namespaces (`default`, `kube-system`, `kube-public`, `kube-node-lease`) and
    /// its controllers running. Must be called within a Tokio runtime.
    pub async fn start() -> ApiServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("the fake API server cannot listen on 127.0.0.1: {e}"));
        let address = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("the fake API server has no address: {e}"));
        let mut state = State::new("preview-fake-token");
        if let Some(namespaces) = state.catalog.by_name("namespaces").cloned() {
            for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
                let namespace = json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name } });
                system_create(&mut state, &namespaces, namespace, "kube-apiserver");
            }
        }
        let shared = Arc::new(Shared::new(state));
        let tasks = vec![
            tokio::spawn(server::serve(listener, shared.clone())),
            tokio::spawn(controllers::run(shared.clone())),
        ];
        ApiServer {
            shared,
            address,
            tasks: Mutex::new(tasks),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The bearer token requests must carry.
    pub fn token(&self) -> String {
        self.shared.lock().token.clone()
    }

    /// Accepts only `token` from now on (as when credentials expire or are rotated).
    pub fn set_token(&self, token: &str) {
        self.shared.lock().token = token.to_owned();
    }

    /// Writes a kubeconfig for this server: cluster, user (with the token) and context all named `fake`, the current
    /// context, namespace `default`.
    pub fn kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        // JSON strings are YAML scalars: whatever a test sets as the token is written as it is.
        let quoted = |text: String| Value::String(text).to_string();
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\nusers:\n- name: fake\n  user:\n    token: {token}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\n",
            url = quoted(self.url()),
            token = quoted(self.token()),
        );
        std::fs::write(path, text)
    }

    /// Stops serving and the controllers; connections are closed and the port refuses new ones. What was stored can
    /// still be inspected.
    pub async fn stop(&self) {
        let tasks: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            // Aborted on purpose: the cancellation is the expected outcome.
            let _ = task.await;
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            task.abort();
        }
    }
}
