//! [`KubernetesRuntime`]: the engine's operations on a cluster.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams, LogParams};
use preview_deploy::{
    EnvironmentAddress, LogChunk, Observed, Protection, Runtime, RuntimeError, SecretSource,
    ServiceStatus, StepLog,
};
use preview_manifests::{Object, Settings, Target, Values, namespace_name, render};
use preview_plan::{Resource, ResourceKind};
use preview_secrets::Secret;
use tokio::time::Instant;

use crate::apply::{Mode, apply_object, delete_object, get_object, reference};
use crate::connect::{ClusterConfig, connect, explain};
use crate::diagnose::pods_of;
use crate::inventory::{Entry, Inventory, ObjectRef, State};
use crate::teardown::{delete_namespace, delete_objects};
use crate::values::values_of;
use crate::wait::wait_ready;

/// Issues a certificate for hostnames from the local CA: the chain in PEM and its key.
pub type CertificateIssuer = dyn Fn(&[String]) -> Result<(String, Secret), String> + Send + Sync;

#[derive(Clone)]
pub struct KubernetesOptions {
    pub cluster: ClusterConfig,
    pub settings: Settings,
    /// The runtime's own namespace: where the inventory lives.
    pub inventory_namespace: String,
    /// How long a resource's objects may take to be ready.
    pub ready_timeout: Duration,
    /// How long a deleted namespace may take to go.
    pub namespace_timeout: Duration,
}

impl Default for KubernetesOptions {
    fn default() -> Self {
        KubernetesOptions {
            cluster: ClusterConfig::default(),
            settings: Settings::default(),
            inventory_namespace: "preview-system".to_owned(),
            ready_timeout: Duration::from_secs(300),
            namespace_timeout: Duration::from_secs(120),
        }
    }
}

pub struct KubernetesRuntime {
    client: kube::Client,
    url: String,
    options: KubernetesOptions,
    inventory: Inventory,
    secrets: Arc<dyn SecretSource>,
    issuer: Arc<CertificateIssuer>,
    /// The namespace of each environment, as its space's inventory entry says.
    namespaces: Mutex<HashMap<EnvironmentAddress, String>>,
}

/// The lines of a job's output kept in the deployment's log.
const JOB_LOG_LINES: i64 = 200;

impl KubernetesRuntime {
    /// Connects to the cluster the options name, checks that it answers, and makes the runtime's namespace.
    pub async fn connect(
        options: KubernetesOptions,
        secrets: Arc<dyn SecretSource>,
        issuer: Arc<CertificateIssuer>,
    ) -> Result<KubernetesRuntime, String> {
        let (client, url) = connect(&options.cluster).await?;
        client
            .apiserver_version()
            .await
            .map_err(|e| explain(&format!("the cluster at {url}"), &e))?;
        let runtime = KubernetesRuntime {
            inventory: Inventory::new(client.clone(), options.inventory_namespace.clone()),
            client,
            url,
            options,
            secrets,
            issuer,
            namespaces: Mutex::default(),
        };
        runtime.inventory.ensure_namespace().await?;
        Ok(runtime)
    }

    /// The objects of `resources` in `env` as they would be applied, Secret values redacted: for review.
    pub async fn render_environment(
        &self,
        env: &EnvironmentAddress,
        resources: &[Resource],
    ) -> Result<Vec<Object>, String> {
        let namespace = self.namespace_of(env).await.ok();
        render_redacted(env, namespace.as_deref(), resources, &self.options.settings)
    }

    /// What the cluster offers and whether the credentials may do what the runtime needs.
    pub async fn check(&self) -> Result<crate::ClusterReport, String> {
        crate::check_cluster(&self.client, &self.url, &self.options.settings).await
    }

    /// The API server's address.
    pub fn cluster_url(&self) -> &str {
        &self.url
    }

    async fn namespace_of(&self, env: &EnvironmentAddress) -> Result<String, RuntimeError> {
        if let Some(namespace) = self
            .namespaces
            .lock()
            .ok()
            .and_then(|n| n.get(env).cloned())
        {
            return Ok(namespace);
        }
        match self
            .inventory
            .read(env, "space")
            .await
            .map_err(RuntimeError::new)?
        {
            Some(entry) => {
                self.remember(env, &entry.namespace);
                Ok(entry.namespace)
            }
            None => Err(RuntimeError::new(format!(
                "{}/{} has no namespace on the cluster: its space is not made",
                env.project, env.environment
            ))),
        }
    }

    fn remember(&self, env: &EnvironmentAddress, namespace: &str) {
        if let Ok(mut namespaces) = self.namespaces.lock() {
            namespaces.insert(env.clone(), namespace.to_owned());
        }
    }

    fn forget(&self, env: &EnvironmentAddress) {
        if let Ok(mut namespaces) = self.namespaces.lock() {
            namespaces.remove(env);
        }
    }

    /// The namespace a space applies to: the one its entry names while that namespace is not being deleted, else
    /// a new incarnation's.
    async fn space_namespace(
        &self,
        env: &EnvironmentAddress,
        old: Option<&Entry>,
    ) -> Result<String, RuntimeError> {
        if let Some(entry) = old {
            let api: Api<Namespace> = Api::all(self.client.clone());
            let live = api.get_opt(&entry.namespace).await.map_err(|e| {
                RuntimeError::new(explain(&format!("Namespace {}", entry.namespace), &e))
            })?;
            let terminating = live
                .as_ref()
                .is_some_and(|n| n.metadata.deletion_timestamp.is_some());
            if !terminating {
                return Ok(entry.namespace.clone());
            }
        }
        Ok(namespace_name(
            &env.project,
            &env.environment,
            &incarnation_suffix(),
        ))
    }

    /// Whether every object of the entry is on the cluster as recorded.
    async fn intact(&self, entry: &Entry) -> Result<bool, RuntimeError> {
        for object in &entry.objects {
            let live = get_object(&self.client, object)
                .await
                .map_err(RuntimeError::new)?;
            let same = live.is_some_and(|live| {
                live.metadata.uid == object.uid && live.metadata.deletion_timestamp.is_none()
            });
            if !same {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Fails when an object about to be made exists already and is not one `preview` made for this resource: it is
    /// someone else's, and applying would take it over.
    async fn refuse_foreign(&self, object: &Object, resource: &str) -> Result<(), RuntimeError> {
        let place = reference(object, None);
        let Some(live) = get_object(&self.client, &place)
            .await
            .map_err(RuntimeError::new)?
        else {
            return Ok(());
        };
        let ours = live
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("preview.dev/resource"))
            .is_some_and(|r| r == resource);
        if ours {
            return Ok(());
        }
        let managers: Vec<String> = live
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .filter_map(|m| m.manager.clone())
            .collect();
        Err(RuntimeError::new(format!(
            "{} exists and was not made by preview (managed by {}): it is left as it is",
            object.describe(),
            if managers.is_empty() {
                "no one recorded".to_owned()
            } else {
                managers.join(", ")
            }
        )))
    }

    async fn apply_resource(
        &self,
        env: &EnvironmentAddress,
        resource: &Resource,
        log: &StepLog,
    ) -> Result<(), RuntimeError> {
        let old = self
            .inventory
            .read(env, &resource.id)
            .await
            .map_err(RuntimeError::new)?;
        if let Some(entry) = &old
            && entry.state == State::Applied
            && entry.hash == resource.hash
            && self.intact(entry).await?
        {
            return Ok(());
        }
        let namespace = if resource.kind == ResourceKind::Space {
            self.space_namespace(env, old.as_ref()).await?
        } else {
            self.namespace_of(env).await?
        };
        let target = Target {
            project: env.project.clone(),
            environment: env.environment.clone(),
            namespace: namespace.clone(),
        };
        let local_ca =
            self.options.settings.certificates == preview_manifests::Certificates::LocalCa;
        let values = values_of(
            self.secrets.as_ref(),
            env,
            resource,
            self.issuer.as_ref(),
            local_ca,
        )
        .await?;
        let objects = render(
            resource,
            &target,
            &self.options.settings,
            &Values::Revealed(&values),
        )
        .map_err(|e| RuntimeError::new(e.to_string()))?;
        let before: Vec<ObjectRef> = old.as_ref().map(|e| e.objects.clone()).unwrap_or_default();
        // What may exist once this apply stops, wherever it stops: recorded before anything is written.
        let mut intended = before.clone();
        for object in &objects {
            let place = reference(object, None);
            if !intended.iter().any(|o| o.same_place(&place)) {
                intended.push(place);
            }
        }
        log.check_lease()?;
        self.inventory
            .write(
                env,
                &resource.id,
                &Entry {
                    hash: resource.hash.clone(),
                    state: State::Applying,
                    namespace: namespace.clone(),
                    objects: intended.clone(),
                },
            )
            .await
            .map_err(RuntimeError::new)?;
        if resource.kind == ResourceKind::Space {
            self.remember(env, &namespace);
        }
        let deadline = Instant::now() + self.options.ready_timeout;
        let mut made = Vec::new();
        let mut stored_objects = Vec::new();
        for object in &objects {
            let ours = before
                .iter()
                .any(|o| o.uid.is_some() && o.same_place(&reference(object, None)));
            if !ours {
                self.refuse_foreign(object, &resource.id).await?;
            }
            log.check_lease()?;
            let stored = apply_object(&self.client, object, ours, Mode::Real)
                .await
                .map_err(RuntimeError::new)?;
            made.push(reference(object, Some(&stored)));
            log.line(format!("applied {}", object.describe()));
            stored_objects.push(stored);
            // The made objects' uids, as soon as they are known: a stop from here on deletes exactly them.
            let mut recorded = intended.clone();
            for reference in &made {
                if let Some(slot) = recorded.iter_mut().find(|o| o.same_place(reference)) {
                    *slot = reference.clone();
                }
            }
            self.inventory
                .write(
                    env,
                    &resource.id,
                    &Entry {
                        hash: resource.hash.clone(),
                        state: State::Applying,
                        namespace: namespace.clone(),
                        objects: recorded,
                    },
                )
                .await
                .map_err(RuntimeError::new)?;
        }
        for (object, stored) in objects.iter().zip(stored_objects) {
            let waited = wait_ready(&self.client, object, stored.clone(), deadline).await;
            if object.kind == "Job" {
                self.job_output(object, &stored, resource, &values, log)
                    .await;
            }
            waited.map_err(RuntimeError::new)?;
        }
        // Objects the resource no longer has go, each by the uid it was recorded with.
        let left: Vec<ObjectRef> = intended
            .iter()
            .filter(|o| !made.iter().any(|m| m.same_place(o)))
            .cloned()
            .collect();
        for object in &left {
            log.check_lease()?;
            delete_object(&self.client, object, &resource.id)
                .await
                .map_err(RuntimeError::new)?;
            log.line(format!("deleted {} (no longer wanted)", object.describe()));
        }
        log.check_lease()?;
        self.inventory
            .write(
                env,
                &resource.id,
                &Entry {
                    hash: resource.hash.clone(),
                    state: State::Applied,
                    namespace,
                    objects: made,
                },
            )
            .await
            .map_err(RuntimeError::new)
    }

    /// A job's output in the deployment's log, the secrets it was given replaced by `[secret]`.
    async fn job_output(
        &self,
        object: &Object,
        stored: &kube::api::DynamicObject,
        resource: &Resource,
        values: &BTreeMap<String, Secret>,
        log: &StepLog,
    ) {
        let Some(namespace) = &object.namespace else {
            return;
        };
        let body = serde_json::to_value(stored).unwrap_or_default();
        let mut revealed: Vec<String> = values.values().map(|v| v.expose().to_owned()).collect();
        for (name, version) in resource.content["secrets"]
            .as_object()
            .into_iter()
            .flatten()
        {
            let env = EnvironmentAddress {
                project: object.body["metadata"]["labels"]["preview.dev/project"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                environment: object.body["metadata"]["labels"]["preview.dev/environment"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            };
            if let Ok(value) = self
                .secrets
                .reveal(&env, name, version.as_str().unwrap_or("unset"))
                .await
            {
                revealed.push(value.expose().to_owned());
            }
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        for pod in pods_of(&self.client, namespace, &body).await {
            let Some(name) = pod.metadata.name else {
                continue;
            };
            let params = LogParams {
                tail_lines: Some(JOB_LOG_LINES),
                ..LogParams::default()
            };
            if let Ok(text) = api.logs(&name, &params).await {
                for line in text.lines() {
                    let line = revealed
                        .iter()
                        .filter(|s| s.len() >= 4)
                        .fold(line.to_owned(), |line, secret| {
                            line.replace(secret.as_str(), "[secret]")
                        });
                    log.line(format!("{name}: {line}"));
                }
            }
        }
    }

    /// Every object of `resources` applied with `dryRun=All`: admission, validation and field conflicts are found
    /// while nothing has changed. An environment with a namespace is checked in it; a new one — whose namespace
    /// does not exist yet, and a dry run cannot make one to check objects in — in the runtime's own namespace,
    /// which is under the same Pod Security level.
    async fn dry_run(
        &self,
        env: &EnvironmentAddress,
        resources: &[Resource],
    ) -> Result<(), RuntimeError> {
        let space = self
            .inventory
            .read(env, "space")
            .await
            .map_err(RuntimeError::new)?;
        let live_namespace = match &space {
            Some(entry) => {
                let api: Api<Namespace> = Api::all(self.client.clone());
                let live = api.get_opt(&entry.namespace).await.map_err(|e| {
                    RuntimeError::new(explain(&format!("Namespace {}", entry.namespace), &e))
                })?;
                live.filter(|n| n.metadata.deletion_timestamp.is_none())
                    .map(|_| entry.namespace.clone())
            }
            None => None,
        };
        let namespace = live_namespace
            .clone()
            .unwrap_or_else(|| self.options.inventory_namespace.clone());
        let target = Target {
            project: env.project.clone(),
            environment: env.environment.clone(),
            namespace,
        };
        let mut objects = Vec::new();
        for resource in resources {
            let rendered = render(resource, &target, &self.options.settings, &Values::Redacted)
                .map_err(|e| RuntimeError::new(e.to_string()))?;
            let made: Vec<ObjectRef> = match live_namespace {
                Some(_) => self
                    .inventory
                    .read(env, &resource.id)
                    .await
                    .map_err(RuntimeError::new)?
                    .map(|e| e.objects)
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            for object in rendered {
                // Without its namespace, only the Namespace itself and the namespaced objects are checked as new.
                if object.kind == "Namespace" && live_namespace.is_none() {
                    let mut namespace = object.clone();
                    namespace.name =
                        namespace_name(&env.project, &env.environment, &incarnation_suffix());
                    namespace.body["metadata"]["name"] = namespace.name.clone().into();
                    objects.push((namespace, false));
                    continue;
                }
                let ours = made
                    .iter()
                    .any(|o| o.uid.is_some() && o.same_place(&reference(&object, None)));
                objects.push((object, ours));
            }
        }
        let checks = objects
            .iter()
            .map(|(object, ours)| apply_object(&self.client, object, *ours, Mode::DryRun));
        let results = futures_util::future::join_all(checks).await;
        let refused: Vec<String> = results.into_iter().filter_map(Result::err).collect();
        if refused.is_empty() {
            Ok(())
        } else {
            Err(RuntimeError::new(refused.join("; ")))
        }
    }

    async fn remove_resource(
        &self,
        env: &EnvironmentAddress,
        id: &str,
        kind: ResourceKind,
        log: &StepLog,
    ) -> Result<(), RuntimeError> {
        let entry = self
            .inventory
            .read(env, id)
            .await
            .map_err(RuntimeError::new)?;
        log.check_lease()?;
        if kind == ResourceKind::Space {
            if let Some(entry) = &entry {
                let uid = entry
                    .objects
                    .iter()
                    .find(|o| o.kind == "Namespace" && o.name == entry.namespace)
                    .and_then(|o| o.uid.clone());
                log.line(format!("deleting Namespace {}", entry.namespace));
                delete_namespace(
                    &self.client,
                    &entry.namespace,
                    uid.as_deref(),
                    self.options.namespace_timeout,
                )
                .await
                .map_err(RuntimeError::new)?;
                log.line(format!("Namespace {} is gone", entry.namespace));
            }
            for other in self
                .inventory
                .resources(env)
                .await
                .map_err(RuntimeError::new)?
            {
                self.inventory
                    .remove(env, &other)
                    .await
                    .map_err(RuntimeError::new)?;
            }
            self.inventory
                .remove(env, id)
                .await
                .map_err(RuntimeError::new)?;
            self.forget(env);
            return Ok(());
        }
        let Some(entry) = entry else { return Ok(()) };
        delete_objects(&self.client, &entry.objects, id)
            .await
            .map_err(RuntimeError::new)?;
        for object in &entry.objects {
            log.line(format!("deleted {}", object.describe()));
        }
        self.inventory
            .remove(env, id)
            .await
            .map_err(RuntimeError::new)
    }
}

/// Five characters from the clock and the process: a new namespace name each time an environment is made.
fn incarnation_suffix() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let seed = format!("{nanos}-{}-{:p}", std::process::id(), &nanos);
    let digest = ring::digest::digest(&ring::digest::SHA256, seed.as_bytes());
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    digest.as_ref()[..5]
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// Every resource's objects in `namespace`, Secret values redacted, in the order they are applied. Without a
/// namespace (an environment not made yet), the name a new incarnation gets, its suffix shown as `xxxxx`.
pub fn render_redacted(
    env: &EnvironmentAddress,
    namespace: Option<&str>,
    resources: &[Resource],
    settings: &Settings,
) -> Result<Vec<Object>, String> {
    let target = Target {
        project: env.project.clone(),
        environment: env.environment.clone(),
        namespace: namespace
            .map(str::to_owned)
            .unwrap_or_else(|| namespace_name(&env.project, &env.environment, "xxxxx")),
    };
    let mut ordered: Vec<&Resource> = resources.iter().collect();
    ordered.sort_by_key(|r| (r.kind.level(), r.id.clone()));
    let mut objects = Vec::new();
    for resource in ordered {
        objects.extend(
            render(resource, &target, settings, &Values::Redacted).map_err(|e| e.to_string())?,
        );
    }
    Ok(objects)
}

#[async_trait]
impl Runtime for KubernetesRuntime {
    async fn apply(
        &self,
        env: &EnvironmentAddress,
        resource: &Resource,
        log: &StepLog,
    ) -> Result<(), RuntimeError> {
        self.apply_resource(env, resource, log).await
    }

    async fn preflight(
        &self,
        env: &EnvironmentAddress,
        resources: &[Resource],
    ) -> Result<(), RuntimeError> {
        self.dry_run(env, resources).await
    }

    async fn remove(
        &self,
        env: &EnvironmentAddress,
        id: &str,
        kind: ResourceKind,
        log: &StepLog,
    ) -> Result<(), RuntimeError> {
        self.remove_resource(env, id, kind, log).await
    }

    async fn observe(
        &self,
        env: &EnvironmentAddress,
        id: &str,
    ) -> Result<Option<Observed>, RuntimeError> {
        let Some(entry) = self
            .inventory
            .read(env, id)
            .await
            .map_err(RuntimeError::new)?
        else {
            return Ok(None);
        };
        // An apply that stopped half-way, or objects changed or deleted behind preview's back, are not the recorded
        // resource: the engine sees them as different.
        let hash = if entry.state == State::Applied && self.intact(&entry).await? {
            entry.hash
        } else {
            format!("{} (changed on the cluster)", entry.hash)
        };
        Ok(Some(Observed {
            id: id.to_owned(),
            hash,
        }))
    }

    async fn status(&self, env: &EnvironmentAddress) -> Vec<ServiceStatus> {
        let Ok(namespace) = self.namespace_of(env).await else {
            return Vec::new();
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let Ok(pods) = api
            .list(&ListParams::default().labels("app.kubernetes.io/managed-by=preview"))
            .await
        else {
            return Vec::new();
        };
        let mut statuses: Vec<ServiceStatus> = pods
            .items
            .iter()
            .map(|pod| {
                let service = pod
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("app.kubernetes.io/name").cloned())
                    .unwrap_or_default();
                let status = pod.status.clone().unwrap_or_default();
                let containers = status.container_statuses.clone().unwrap_or_default();
                let ready = !containers.is_empty() && containers.iter().all(|c| c.ready);
                let waiting = containers
                    .iter()
                    .find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone());
                let state = match (ready, waiting, status.phase.as_deref()) {
                    (true, _, _) => "running".to_owned(),
                    (false, Some(reason), _) => format!("waiting ({reason})"),
                    (false, None, Some("Succeeded")) => "completed".to_owned(),
                    (false, None, phase) => phase.unwrap_or("pending").to_ascii_lowercase(),
                };
                let last_exit = containers.iter().find_map(|c| {
                    let terminated = c.last_state.as_ref()?.terminated.as_ref()?;
                    Some(format!(
                        "exit status: {}{}",
                        terminated.exit_code,
                        terminated
                            .reason
                            .as_ref()
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default()
                    ))
                });
                ServiceStatus {
                    service: format!(
                        "{service} (pod {})",
                        pod.metadata.name.clone().unwrap_or_default()
                    ),
                    state,
                    pid: None,
                    restarts: containers
                        .iter()
                        .map(|c| c.restart_count.max(0) as u32)
                        .sum(),
                    last_exit,
                    address: status.pod_ip.clone(),
                }
            })
            .collect();
        statuses.sort_by(|a, b| a.service.cmp(&b.service));
        statuses
    }

    async fn isolation(&self, env: &EnvironmentAddress) -> Vec<Protection> {
        let Ok(Some(space)) = self.inventory.read(env, "space").await else {
            return Vec::new();
        };
        let has = |kind: &str, name: &str| {
            space
                .objects
                .iter()
                .any(|o| o.kind == kind && o.name == name && o.uid.is_some())
        };
        vec![
            Protection {
                name: "users".to_owned(),
                in_effect: has("Namespace", &space.namespace),
                detail: format!(
                    "namespace {} under Pod Security `restricted`: non-root, no privilege escalation, no capabilities, ServiceAccount without a token",
                    space.namespace
                ),
            },
            Protection {
                name: "network".to_owned(),
                in_effect: has("NetworkPolicy", "default-deny")
                    && has("NetworkPolicy", "allow-environment"),
                detail: format!(
                    "default-deny NetworkPolicy; in from the namespace and from {}; out to the namespace, DNS and the internet but private and metadata addresses (enforced where the cluster's network plugin enforces NetworkPolicy)",
                    self.options.settings.ingress_namespace
                ),
            },
            Protection {
                name: "limits".to_owned(),
                in_effect: has("ResourceQuota", "environment") && has("LimitRange", "containers"),
                detail: "ResourceQuota for the environment, LimitRange defaults for containers"
                    .to_owned(),
            },
        ]
    }

    async fn logs(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        from: u64,
    ) -> Result<LogChunk, RuntimeError> {
        let namespace = self.namespace_of(env).await?;
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let selector =
            format!("app.kubernetes.io/name={service},app.kubernetes.io/managed-by=preview");
        let pods = api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| RuntimeError::new(explain(&format!("pods of `{service}`"), &e)))?;
        let Some(pod) = pods
            .items
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .max()
        else {
            return Err(RuntimeError::new(format!(
                "`{service}` has no pod in {namespace}"
            )));
        };
        let text = api.logs(&pod, &LogParams::default()).await.map_err(|e| {
            RuntimeError::new(explain(&format!("the log of pod {namespace}/{pod}"), &e))
        })?;
        let start = usize::try_from(from).unwrap_or(usize::MAX).min(text.len());
        let start = (start..=text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(text.len());
        Ok(LogChunk {
            text: text[start..].to_owned(),
            next: text.len() as u64,
        })
    }

    fn shared(&self) -> bool {
        true
    }
}
