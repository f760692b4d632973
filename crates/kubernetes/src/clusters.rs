//! Several clusters behind one runtime: the daemon's own (`default`) and those registered with `preview cluster add`.
//! A new environment is made on the cluster its space names (`cluster:` in the spec; the daemon's own otherwise)
//! and stays pinned to the cluster it was made on: an environment is looked for on every cluster — by its space's
//! inventory entry — before anything is done to it, and a spec that names another cluster for it is refused. Where
//! a cluster cannot be asked, nothing concludes that an environment lives nowhere.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use preview_deploy::{
    EnvironmentAddress, LogChunk, Observed, Protection, Runtime, RuntimeError, ServiceStatus,
    StepLog,
};
use preview_plan::{Resource, ResourceKind};

use crate::KubernetesRuntime;

/// The name of the daemon's own cluster.
pub const DEFAULT_CLUSTER: &str = "default";

pub struct Clusters {
    default: Arc<KubernetesRuntime>,
    registered: RwLock<BTreeMap<String, Arc<KubernetesRuntime>>>,
    /// Registered clusters that cannot be used (their credentials do not make a client), and why.
    broken: RwLock<BTreeMap<String, String>>,
    /// The cluster each environment was found on.
    pins: Mutex<HashMap<EnvironmentAddress, String>>,
}

impl Clusters {
    pub fn new(default: Arc<KubernetesRuntime>) -> Clusters {
        Clusters {
            default,
            registered: RwLock::default(),
            broken: RwLock::default(),
            pins: Mutex::default(),
        }
    }

    pub fn register(&self, name: &str, cluster: Arc<KubernetesRuntime>) {
        if let Ok(mut registered) = self.registered.write() {
            registered.insert(name.to_owned(), cluster);
        }
        if let Ok(mut broken) = self.broken.write() {
            broken.remove(name);
        }
    }

    /// A registered cluster that cannot be used, and why: its environments fail saying so.
    pub fn register_broken(&self, name: &str, reason: &str) {
        if let Ok(mut broken) = self.broken.write() {
            broken.insert(name.to_owned(), reason.to_owned());
        }
    }

    pub fn unregister(&self, name: &str) {
        if let Ok(mut registered) = self.registered.write() {
            registered.remove(name);
        }
        if let Ok(mut broken) = self.broken.write() {
            broken.remove(name);
        }
        if let Ok(mut pins) = self.pins.lock() {
            pins.retain(|_, pinned| pinned != name);
        }
    }

    /// The cluster named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<KubernetesRuntime>> {
        if name == DEFAULT_CLUSTER {
            return Some(Arc::clone(&self.default));
        }
        self.registered.read().ok()?.get(name).cloned()
    }

    /// Every usable cluster, the daemon's own first.
    pub fn all(&self) -> Vec<(String, Arc<KubernetesRuntime>)> {
        let mut all = vec![(DEFAULT_CLUSTER.to_owned(), Arc::clone(&self.default))];
        if let Ok(registered) = self.registered.read() {
            all.extend(registered.iter().map(|(n, c)| (n.clone(), Arc::clone(c))));
        }
        all
    }

    /// The clusters that cannot be used, and why.
    pub fn broken(&self) -> Vec<(String, String)> {
        self.broken
            .read()
            .map(|b| b.iter().map(|(n, w)| (n.clone(), w.clone())).collect())
            .unwrap_or_default()
    }

    /// The cluster the environment lives on, if it lives anywhere; `first` (the cluster a spec names) is asked
    /// first. It is said to live nowhere only once every cluster answered so and none is unusable.
    pub async fn pinned(
        &self,
        env: &EnvironmentAddress,
        first: Option<&str>,
    ) -> Result<Option<(String, Arc<KubernetesRuntime>)>, RuntimeError> {
        let known = self.pins.lock().ok().and_then(|p| p.get(env).cloned());
        if let Some(name) = known
            && let Some(cluster) = self.get(&name)
        {
            return Ok(Some((name, cluster)));
        }
        let mut clusters = self.all();
        if let Some(first) = first {
            clusters.sort_by_key(|(name, _)| name != first);
        }
        let mut unanswered = Vec::new();
        for (name, cluster) in clusters {
            match cluster.holds(env).await {
                Ok(true) => {
                    if let Ok(mut pins) = self.pins.lock() {
                        pins.insert(env.clone(), name.clone());
                    }
                    return Ok(Some((name, cluster)));
                }
                Ok(false) => {}
                Err(e) => unanswered.push(format!("cluster `{name}`: {}", e.message)),
            }
        }
        unanswered.extend(
            self.broken()
                .into_iter()
                .map(|(name, why)| format!("cluster `{name}` cannot be used: {why}")),
        );
        if unanswered.is_empty() {
            Ok(None)
        } else {
            Err(RuntimeError::new(format!(
                "cannot tell where {}/{} lives: {}",
                env.project,
                env.environment,
                unanswered.join("; ")
            )))
        }
    }

    /// Forgets where the environment was found: it may have been made again elsewhere since.
    fn unpin(&self, env: &EnvironmentAddress) {
        if let Ok(mut pins) = self.pins.lock() {
            pins.remove(env);
        }
    }

    /// The cluster to act on for `env`: where it lives, or — for a new one — the one `wanted` names.
    async fn cluster_for(
        &self,
        env: &EnvironmentAddress,
        wanted: Option<&str>,
    ) -> Result<Arc<KubernetesRuntime>, RuntimeError> {
        let mut found = self.pinned(env, wanted).await?;
        if let (Some((name, _)), Some(wanted)) = (&found, wanted)
            && name != wanted
        {
            // A pin may be stale (another daemon made it again elsewhere): look again before refusing.
            self.unpin(env);
            found = self.pinned(env, Some(wanted)).await?;
        }
        if let Some((name, cluster)) = found {
            if let Some(wanted) = wanted.filter(|w| *w != name) {
                return Err(RuntimeError::new(format!(
                    "{}/{} lives on cluster `{name}` and the spec names `{wanted}`: an environment stays on the cluster it was made on; delete it and create it again to move it",
                    env.project, env.environment
                )));
            }
            return Ok(cluster);
        }
        let name = wanted.unwrap_or(DEFAULT_CLUSTER);
        self.get(name).ok_or_else(|| {
            RuntimeError::new(format!(
                "no cluster `{name}` is registered (`preview cluster add {name} --kubeconfig FILE`)"
            ))
        })
    }

    /// The cluster a state names for its space (`None`: the daemon's own).
    fn wanted(resources: &[Resource]) -> Option<&str> {
        resources
            .iter()
            .find(|r| r.kind == ResourceKind::Space)
            .map(|space| space.content["cluster"].as_str().unwrap_or(DEFAULT_CLUSTER))
    }

    /// The objects of `resources` for `env` on the cluster it lives on (or would be made on), Secret values
    /// redacted.
    pub async fn render_environment(
        &self,
        env: &EnvironmentAddress,
        resources: &[Resource],
    ) -> Result<Vec<preview_manifests::Object>, String> {
        let cluster = self
            .cluster_for(env, Self::wanted(resources))
            .await
            .map_err(|e| e.message)?;
        cluster.render_environment(env, resources).await
    }

    /// The environments on `name` (by their space's inventory entries), as `project/environment`.
    pub async fn environments_on(&self, name: &str) -> Result<Vec<String>, String> {
        match self.get(name) {
            Some(cluster) => cluster.environments().await,
            None => Ok(Vec::new()),
        }
    }
}

#[async_trait]
impl Runtime for Clusters {
    async fn preflight(
        &self,
        env: &EnvironmentAddress,
        resources: &[Resource],
    ) -> Result<(), RuntimeError> {
        self.cluster_for(env, Self::wanted(resources))
            .await?
            .preflight(env, resources)
            .await
    }

    async fn apply(
        &self,
        env: &EnvironmentAddress,
        resource: &Resource,
        log: &StepLog,
    ) -> Result<(), RuntimeError> {
        let wanted = (resource.kind == ResourceKind::Space).then(|| {
            resource.content["cluster"]
                .as_str()
                .unwrap_or(DEFAULT_CLUSTER)
        });
        let cluster = self.cluster_for(env, wanted).await?;
        cluster.apply(env, resource, log).await?;
        if resource.kind == ResourceKind::Space {
            // Made (or found): pinned from now on, whatever the spec says later.
            self.pinned(env, wanted).await?;
        }
        Ok(())
    }

    async fn remove(
        &self,
        env: &EnvironmentAddress,
        id: &str,
        kind: ResourceKind,
        log: &StepLog,
    ) -> Result<(), RuntimeError> {
        // Found nowhere — every cluster answered — is removed already.
        let Some((_, cluster)) = self.pinned(env, None).await? else {
            return Ok(());
        };
        cluster.remove(env, id, kind, log).await?;
        if kind == ResourceKind::Space {
            self.unpin(env);
        }
        Ok(())
    }

    async fn observe(
        &self,
        env: &EnvironmentAddress,
        id: &str,
    ) -> Result<Option<Observed>, RuntimeError> {
        match self.pinned(env, None).await? {
            Some((_, cluster)) => cluster.observe(env, id).await,
            None => Ok(None),
        }
    }

    async fn status(&self, env: &EnvironmentAddress) -> Vec<ServiceStatus> {
        match self.pinned(env, None).await {
            Ok(Some((_, cluster))) => cluster.status(env).await,
            _ => Vec::new(),
        }
    }

    async fn isolation(&self, env: &EnvironmentAddress) -> Vec<Protection> {
        match self.pinned(env, None).await {
            Ok(Some((name, cluster))) => {
                let mut protections = cluster.isolation(env).await;
                protections.push(Protection {
                    name: "cluster".to_owned(),
                    in_effect: true,
                    detail: format!("on cluster `{name}` ({})", cluster.cluster_url()),
                });
                protections
            }
            _ => Vec::new(),
        }
    }

    async fn logs(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        from: u64,
    ) -> Result<LogChunk, RuntimeError> {
        match self.pinned(env, None).await? {
            Some((_, cluster)) => cluster.logs(env, service, from).await,
            None => Err(RuntimeError::new(format!(
                "{}/{} is on no cluster",
                env.project, env.environment
            ))),
        }
    }

    fn shared(&self) -> bool {
        true
    }
}
