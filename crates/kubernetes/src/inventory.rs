//! What each resource of an environment made on the cluster, kept on the cluster: one ConfigMap per resource in the
//! runtime's own namespace, holding the namespace of the environment, the resource's hash and its objects (API
//! version, kind, namespace, name, uid).
//!
//! An entry is written as `applying` — listing the objects the resource had and those it is about to make — before
//! any object is written, and as `applied` once they are ready and the objects that left were deleted. A daemon that
//! stops in between finds every object the resource may have made in the entry, so that the next apply (or the undo)
//! deletes what no longer belongs, by uid.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use preview_deploy::EnvironmentAddress;
use serde::{Deserialize, Serialize};

use crate::FIELD_MANAGER;
use crate::connect::{explain, is_not_found};

/// One object a resource made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    pub plural: String,
    pub namespace: Option<String>,
    pub name: String,
    /// `None` for an object about to be made (or made by a controller for it, as a StatefulSet's volume claims):
    /// it is ours if it carries the resource's annotation and the environment's labels.
    pub uid: Option<String>,
    /// Its `metadata.generation` as applied, where it has one: a change of its spec by anyone else shows as another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
}

impl ObjectRef {
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(namespace) => format!("{} {namespace}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }

    /// The same object, whatever its uid.
    pub fn same_place(&self, other: &ObjectRef) -> bool {
        (&self.api_version, &self.kind, &self.namespace, &self.name)
            == (
                &other.api_version,
                &other.kind,
                &other.namespace,
                &other.name,
            )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum State {
    Applying,
    Applied,
}

/// A resource's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub hash: String,
    pub state: State,
    /// The environment's namespace (for the space: the one it made).
    pub namespace: String,
    pub objects: Vec<ObjectRef>,
}

/// The inventory of every environment on one cluster.
#[derive(Clone)]
pub(crate) struct Inventory {
    client: kube::Client,
    namespace: String,
}

const KEY: &str = "inventory";

impl Inventory {
    pub fn new(client: kube::Client, namespace: String) -> Inventory {
        Inventory { client, namespace }
    }

    fn api(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// `shop.pr-1.app.web`: a DNS subdomain, as project, environment and service names are DNS labels.
    fn name(env: &EnvironmentAddress, id: &str) -> String {
        format!(
            "{}.{}.{}",
            env.project,
            env.environment,
            id.replace('/', ".")
        )
    }

    fn labels(env: &EnvironmentAddress) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                "app.kubernetes.io/managed-by".to_owned(),
                "preview".to_owned(),
            ),
            ("preview.dev/project".to_owned(), env.project.clone()),
            (
                "preview.dev/environment".to_owned(),
                env.environment.clone(),
            ),
        ])
    }

    /// Makes the runtime's own namespace, where the inventory lives, if it is not there.
    pub async fn ensure_namespace(&self) -> Result<(), String> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let body = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": self.namespace,
                // The level environments' namespaces have: a new environment's objects are checked here by a dry
                // run before its namespace exists.
                "labels": {
                    "app.kubernetes.io/managed-by": "preview",
                    "pod-security.kubernetes.io/enforce": "restricted",
                },
            },
        });
        namespaces
            .patch(
                &self.namespace,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Apply(&body),
            )
            .await
            .map(|_| ())
            .map_err(|e| {
                explain(
                    &format!("Namespace {} (the runtime's inventory)", self.namespace),
                    &e,
                )
            })
    }

    pub async fn read(&self, env: &EnvironmentAddress, id: &str) -> Result<Option<Entry>, String> {
        let name = Self::name(env, id);
        match self.api().get_opt(&name).await {
            Ok(None) => Ok(None),
            Ok(Some(map)) => {
                let text = map
                    .data
                    .as_ref()
                    .and_then(|d| d.get(KEY))
                    .cloned()
                    .unwrap_or_default();
                serde_json::from_str(&text).map(Some).map_err(|e| {
                    format!(
                        "the inventory ConfigMap {}/{name} is damaged: {e}",
                        self.namespace
                    )
                })
            }
            Err(e) => Err(explain(
                &format!("ConfigMap {}/{name} (inventory)", self.namespace),
                &e,
            )),
        }
    }

    pub async fn write(
        &self,
        env: &EnvironmentAddress,
        id: &str,
        entry: &Entry,
    ) -> Result<(), String> {
        let name = Self::name(env, id);
        let text = serde_json::to_string(entry).map_err(|e| e.to_string())?;
        let body = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": Self::labels(env),
                "annotations": { "preview.dev/resource": id },
            },
            "data": { KEY: text },
        });
        self.api()
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
            .map(|_| ())
            .map_err(|e| {
                explain(
                    &format!("ConfigMap {}/{name} (inventory)", self.namespace),
                    &e,
                )
            })
    }

    pub async fn remove(&self, env: &EnvironmentAddress, id: &str) -> Result<(), String> {
        let name = Self::name(env, id);
        match self.api().delete(&name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(explain(
                &format!("ConfigMap {}/{name} (inventory)", self.namespace),
                &e,
            )),
        }
    }

    /// Every environment with a space entry, as `project/environment`.
    pub async fn spaces(&self) -> Result<Vec<String>, String> {
        let list = self
            .api()
            .list(&ListParams::default().labels("app.kubernetes.io/managed-by=preview"))
            .await
            .map_err(|e| explain(&format!("ConfigMaps of {} (inventory)", self.namespace), &e))?;
        let mut spaces: Vec<String> = list
            .items
            .iter()
            .filter(|map| {
                map.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("preview.dev/resource"))
                    .is_some_and(|r| r == "space")
            })
            .filter_map(|map| {
                let labels = map.metadata.labels.as_ref()?;
                Some(format!(
                    "{}/{}",
                    labels.get("preview.dev/project")?,
                    labels.get("preview.dev/environment")?
                ))
            })
            .collect();
        spaces.sort();
        Ok(spaces)
    }

    /// The ids of the resources the environment has entries for.
    pub async fn resources(&self, env: &EnvironmentAddress) -> Result<Vec<String>, String> {
        let selector = Self::labels(env)
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let list = self
            .api()
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| explain(&format!("ConfigMaps of {} (inventory)", self.namespace), &e))?;
        Ok(list
            .items
            .iter()
            .filter_map(|map| {
                map.metadata
                    .annotations
                    .as_ref()?
                    .get("preview.dev/resource")
                    .cloned()
            })
            .collect())
    }
}
