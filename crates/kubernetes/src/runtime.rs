//! [`KubernetesRuntime`]: the engine's operations on one cluster.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject};
use preview_deploy::{
    EnvironmentAddress, LogChunk, Observed, Protection, Runtime, RuntimeError, SecretSource,
    ServiceStatus, StepLog,
};
use preview_manifests::{Object, Settings, Target, Values, namespace_name, render};
use preview_plan::{Resource, ResourceKind};
use preview_secrets::Secret;
use tokio::time::Instant;

use crate::apply::{Mode, Owner, apply_object, delete_object, get_object, reference};
use crate::connect::{ClusterConfig, connect, explain};
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
    /// How long a pod may stay unschedulable before its rollout is failed (a cluster autoscaler adds nodes in
    /// that time).
    pub unschedulable_grace: Duration,
}

impl Default for KubernetesOptions {
    fn default() -> Self {
        KubernetesOptions {
            cluster: ClusterConfig::default(),
            settings: Settings::default(),
            inventory_namespace: "preview-system".to_owned(),
            ready_timeout: Duration::from_secs(300),
            namespace_timeout: Duration::from_secs(120),
            unschedulable_grace: Duration::from_secs(90),
        }
    }
}

pub struct KubernetesRuntime {
    pub(crate) client: kube::Client,
    url: String,
    pub(crate) options: KubernetesOptions,
    pub(crate) inventory: Inventory,
    pub(crate) secrets: Arc<dyn SecretSource>,
    issuer: Arc<CertificateIssuer>,
    /// Whether the cluster answered and the runtime's namespace is made.
    reached: AtomicBool,
}

impl KubernetesRuntime {
    /// Connects to the cluster the options name, checks that it answers, and makes the runtime's namespace.
    pub async fn connect(
        options: KubernetesOptions,
        secrets: Arc<dyn SecretSource>,
        issuer: Arc<CertificateIssuer>,
    ) -> Result<KubernetesRuntime, String> {
        let runtime = KubernetesRuntime::open(options, secrets, issuer).await?;
        runtime.reach().await?;
        Ok(runtime)
    }

    /// A client of the cluster the options name, without asking it anything yet: a registered cluster that does
    /// not answer when the daemon starts is still known, and its environments fail with why.
    pub async fn open(
        options: KubernetesOptions,
        secrets: Arc<dyn SecretSource>,
        issuer: Arc<CertificateIssuer>,
    ) -> Result<KubernetesRuntime, String> {
        let (client, url) = connect(&options.cluster).await?;
        Ok(KubernetesRuntime {
            inventory: Inventory::new(client.clone(), options.inventory_namespace.clone()),
            client,
            url,
            options,
            secrets,
            issuer,
            reached: AtomicBool::new(false),
        })
    }

    /// Checks that the cluster answers and makes the runtime's namespace, once.
    pub async fn reach(&self) -> Result<(), String> {
        if self.reached.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.client
            .apiserver_version()
            .await
            .map_err(|e| explain(&format!("the cluster at {}", self.url), &e))?;
        self.inventory.ensure_namespace().await?;
        self.reached.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Another cluster with this one's settings, secrets and issuer: a registered one (`preview cluster add`).
    pub async fn another(&self, cluster: ClusterConfig) -> Result<KubernetesRuntime, String> {
        let options = KubernetesOptions {
            cluster,
            ..self.options.clone()
        };
        KubernetesRuntime::open(options, Arc::clone(&self.secrets), Arc::clone(&self.issuer)).await
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

    /// Whether the environment lives on this cluster: its space has an inventory entry here.
    pub async fn holds(&self, env: &EnvironmentAddress) -> Result<bool, RuntimeError> {
        Ok(self
            .inventory
            .read(env, "space")
            .await
            .map_err(RuntimeError::new)?
            .is_some())
    }

    /// The environments on this cluster, as `project/environment`.
    pub async fn environments(&self) -> Result<Vec<String>, String> {
        self.inventory.spaces().await
    }

    /// The API server's address.
    pub fn cluster_url(&self) -> &str {
        &self.url
    }

    /// The environment's namespace, as its space's entry says now (read each time: a daemon sharing the cluster may
    /// have made the environment again since).
    pub(crate) async fn namespace_of(
        &self,
        env: &EnvironmentAddress,
    ) -> Result<String, RuntimeError> {
        match self
            .inventory
            .read(env, "space")
            .await
            .map_err(RuntimeError::new)?
        {
            Some(entry) => Ok(entry.namespace),
            None => Err(RuntimeError::new(format!(
                "{}/{} has no namespace on the cluster: its space is not made",
                env.project, env.environment
            ))),
        }
    }

    /// The namespace a space applies to: the one its entry names while that namespace is not being deleted; a new
    /// incarnation's when there is none (or it is going and nothing else of the environment is recorded). A
    /// namespace deleted behind `preview`'s back under an environment that has other resources fails the step: they
    /// would be left behind in it.
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
            let going = live
                .as_ref()
                .is_none_or(|n| n.metadata.deletion_timestamp.is_some());
            if !going {
                return Ok(entry.namespace.clone());
            }
            let others: Vec<String> = self
                .inventory
                .resources(env)
                .await
                .map_err(RuntimeError::new)?
                .into_iter()
                .filter(|id| id != "space")
                .collect();
            if !others.is_empty() {
                return Err(RuntimeError::new(format!(
                    "Namespace {} of {}/{} was deleted outside preview while {} still live in it; delete the environment and create it again",
                    entry.namespace,
                    env.project,
                    env.environment,
                    others.join(", ")
                )));
            }
        }
        Ok(namespace_name(
            &env.project,
            &env.environment,
            &incarnation_suffix()?,
        ))
    }

    /// Whether every recorded object is on the cluster as applied: the same uid, not being deleted, and — where it
    /// has a generation — no change of its spec since.
    async fn intact(&self, entry: &Entry) -> Result<bool, RuntimeError> {
        for object in entry.objects.iter().filter(|o| o.uid.is_some()) {
            let live = get_object(&self.client, object)
                .await
                .map_err(RuntimeError::new)?;
            let same = live.is_some_and(|live| {
                live.metadata.uid == object.uid
                    && live.metadata.deletion_timestamp.is_none()
                    && (object.generation.is_none()
                        || live.metadata.generation == object.generation)
            });
            if !same {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether `object` may be written, and with force: forced when it is the very object recorded (same uid);
    /// written without force when it does not exist, or carries this resource's marks but is not recorded (a field
    /// another manager owns then fails the step, naming both); refused when it is someone else's.
    async fn placement(
        &self,
        object: &Object,
        before: &[ObjectRef],
        owner: Owner<'_>,
    ) -> Result<bool, RuntimeError> {
        let place = reference(object, None);
        let Some(live) = get_object(&self.client, &place)
            .await
            .map_err(RuntimeError::new)?
        else {
            return Ok(false);
        };
        let recorded = before
            .iter()
            .any(|o| o.same_place(&place) && o.uid.is_some() && o.uid == live.metadata.uid);
        if recorded {
            return Ok(true);
        }
        if owner.marked(&live.metadata) {
            return Ok(false);
        }
        let managers: Vec<String> = live
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .filter_map(|m| m.manager.clone())
            .collect();
        Err(RuntimeError::new(format!(
            "{} exists and was not made by preview for {}/{} (managed by {}): it is left as it is",
            object.describe(),
            owner.project,
            owner.environment,
            if managers.is_empty() {
                "no one recorded".to_owned()
            } else {
                managers.join(", ")
            }
        )))
    }

    async fn write_entry(
        &self,
        env: &EnvironmentAddress,
        resource: &Resource,
        state: State,
        namespace: &str,
        objects: Vec<ObjectRef>,
        log: &StepLog,
    ) -> Result<(), RuntimeError> {
        log.check_lease()?;
        let entry = Entry {
            hash: resource.hash.clone(),
            state,
            namespace: namespace.to_owned(),
            objects,
        };
        self.inventory
            .write(env, &resource.id, &entry)
            .await
            .map_err(RuntimeError::new)
    }

    async fn apply_resource(
        &self,
        env: &EnvironmentAddress,
        resource: &Resource,
        log: &StepLog,
    ) -> Result<(), RuntimeError> {
        self.reach().await.map_err(RuntimeError::new)?;
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
        let owner = Owner {
            project: &env.project,
            environment: &env.environment,
            resource: &resource.id,
        };
        let settings = if resource.kind == ResourceKind::Route {
            crate::access::settings_for(&self.client, &self.options.settings, resource).await?
        } else {
            self.options.settings.clone()
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
        let objects = render(resource, &target, &settings, &Values::Revealed(&values))
            .map_err(|e| RuntimeError::new(e.to_string()))?;
        let before: Vec<ObjectRef> = old.as_ref().map(|e| e.objects.clone()).unwrap_or_default();
        // What may exist once this apply stops, wherever it stops — the objects it writes and the volume claims
        // their controllers make — recorded before anything is written.
        let mut wanted: Vec<ObjectRef> = objects.iter().map(|o| reference(o, None)).collect();
        wanted.extend(objects.iter().flat_map(claims_of));
        let mut intended = before.clone();
        for place in &wanted {
            if !intended.iter().any(|o| o.same_place(place)) {
                intended.push(place.clone());
            }
        }
        self.write_entry(
            env,
            resource,
            State::Applying,
            &namespace,
            intended.clone(),
            log,
        )
        .await?;
        let started = Instant::now();
        let deadline = started + self.options.ready_timeout;
        let mut made: Vec<ObjectRef> = Vec::new();
        let mut stored_objects = Vec::new();
        for object in &objects {
            let force = self.placement(object, &before, owner).await?;
            log.check_lease()?;
            let stored = apply_object(&self.client, object, force, Mode::Real)
                .await
                .map_err(RuntimeError::new)?;
            made.push(reference(object, Some(&stored)));
            log.line(format!("applied {}", object.describe()));
            stored_objects.push(stored);
        }
        let written = Instant::now();
        log.line(format!(
            "{} objects written in {} ms",
            objects.len(),
            written.duration_since(started).as_millis()
        ));
        for (object, stored) in objects.iter().zip(stored_objects) {
            let waited = wait_ready(self, object, stored.clone(), deadline).await;
            if object.kind == "Job" {
                crate::job_output::copy_to_log(self, env, object, &stored, resource, &values, log)
                    .await;
            }
            waited.map_err(RuntimeError::new)?;
        }
        if !objects.is_empty() {
            log.line(format!("ready in {} ms", written.elapsed().as_millis()));
        }
        if resource.kind == ResourceKind::Database {
            crate::data::fill(self, env, resource, &namespace, &values, log).await?;
        }
        // The claims the StatefulSets made, by their uids now.
        for claim in objects.iter().flat_map(claims_of) {
            let live = get_object(&self.client, &claim)
                .await
                .map_err(RuntimeError::new)?;
            let uid = live
                .filter(|l| owner.marked(&l.metadata))
                .and_then(|l| l.metadata.uid);
            made.push(ObjectRef { uid, ..claim });
        }
        // Objects the resource no longer has go, each by the uid it was recorded with.
        let left: Vec<ObjectRef> = intended
            .iter()
            .filter(|o| !made.iter().any(|m| m.same_place(o)))
            .cloned()
            .collect();
        for object in &left {
            log.check_lease()?;
            delete_object(&self.client, object, owner)
                .await
                .map_err(RuntimeError::new)?;
            log.line(format!("deleted {} (no longer wanted)", object.describe()));
        }
        self.write_entry(env, resource, State::Applied, &namespace, made, log)
            .await
    }

    /// Every object of `resources` applied with `dryRun=All`: validation, admission webhooks and field conflicts are
    /// found while nothing has changed. An environment with a namespace is checked in it; a new one — whose namespace
    /// does not exist yet, and a dry run cannot make one to check objects in — in the runtime's own namespace. Pod
    /// Security applies to pods, which a dry run of their workloads does not make: it is enforced at the rollout.
    async fn dry_run(
        &self,
        env: &EnvironmentAddress,
        resources: &[Resource],
    ) -> Result<(), RuntimeError> {
        self.reach().await.map_err(RuntimeError::new)?;
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
            let settings = if resource.kind == ResourceKind::Route {
                crate::access::settings_for(&self.client, &self.options.settings, resource).await?
            } else {
                self.options.settings.clone()
            };
            let rendered = render(resource, &target, &settings, &Values::Redacted)
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
                if object.kind == "Namespace" && live_namespace.is_none() {
                    let mut namespace = object.clone();
                    namespace.name =
                        namespace_name(&env.project, &env.environment, &incarnation_suffix()?);
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
        let owner = Owner {
            project: &env.project,
            environment: &env.environment,
            resource: id,
        };
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
                    owner,
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
            return self
                .inventory
                .remove(env, id)
                .await
                .map_err(RuntimeError::new);
        }
        let Some(entry) = entry else { return Ok(()) };
        delete_objects(&self.client, &entry.objects, owner)
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

/// The volume claims a StatefulSet's controller makes for it (`<claim>-<name>-<ordinal>`): they outlive it
/// unless deleted with it, so they are the resource's too.
fn claims_of(object: &Object) -> Vec<ObjectRef> {
    if object.kind != "StatefulSet" {
        return Vec::new();
    }
    let replicas = object.body["spec"]["replicas"].as_u64().unwrap_or(1);
    let templates = object.body["spec"]["volumeClaimTemplates"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    templates
        .iter()
        .filter_map(|t| t["metadata"]["name"].as_str().map(str::to_owned))
        .flat_map(|claim| {
            (0..replicas).map(move |ordinal| ObjectRef {
                api_version: "v1".to_owned(),
                kind: "PersistentVolumeClaim".to_owned(),
                plural: "persistentvolumeclaims".to_owned(),
                namespace: object.namespace.clone(),
                name: format!("{claim}-{}-{ordinal}", object.name),
                uid: None,
                generation: None,
            })
        })
        .collect()
}

/// Five characters from the system's random source: a new namespace name each time an environment is made.
fn incarnation_suffix() -> Result<String, RuntimeError> {
    use ring::rand::SecureRandom;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut bytes = [0u8; 5];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| RuntimeError::new("the system's random source failed"))?;
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect())
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

/// An object as stored, read back as JSON.
pub(crate) fn body_of(stored: &DynamicObject) -> serde_json::Value {
    serde_json::to_value(stored).unwrap_or_default()
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
        // A cluster that stops answering does not hold the deployment (and its lease) for longer than a rollout may
        // take.
        match tokio::time::timeout(self.options.ready_timeout, self.dry_run(env, resources)).await {
            Ok(result) => result,
            Err(_) => Err(RuntimeError::new(format!(
                "the dry run of {}/{} took longer than {} s",
                env.project,
                env.environment,
                self.options.ready_timeout.as_secs()
            ))),
        }
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
        // An apply that stopped half-way, or objects deleted, replaced or changed behind preview's back, are not
        // the recorded resource: the engine sees them as different.
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
        self.pods_status(env).await
    }

    async fn isolation(&self, env: &EnvironmentAddress) -> Vec<Protection> {
        self.protections(env).await
    }

    async fn logs(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        from: u64,
    ) -> Result<LogChunk, RuntimeError> {
        self.service_log(env, service, from).await
    }

    fn shared(&self) -> bool {
        true
    }
}

/// The secret values revealed for a resource, as the texts to keep out of logs.
pub(crate) fn secret_texts(values: &BTreeMap<String, Secret>) -> Vec<String> {
    values.values().map(|v| v.expose().to_owned()).collect()
}
