//! One Kubernetes object as the runtime applies it: its type, its place, its body.

use serde_json::Value;

/// A rendered object. Its body is the whole object (`apiVersion`, `kind`, `metadata`, …) as JSON.
#[derive(Clone, PartialEq)]
pub struct Object {
    pub api_version: String,
    pub kind: String,
    /// The resource's plural name in API paths (`deployments`).
    pub plural: String,
    /// `None` for cluster-scoped objects (the Namespace).
    pub namespace: Option<String>,
    pub name: String,
    pub body: Value,
}

impl Object {
    /// From a typed `k8s-openapi` object.
    pub(crate) fn typed<K>(object: &K, namespaced: bool) -> Object
    where
        K: k8s_openapi::Resource
            + k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>
            + serde::Serialize,
    {
        let metadata = object.metadata();
        Object {
            api_version: K::API_VERSION.to_owned(),
            kind: K::KIND.to_owned(),
            plural: K::URL_PATH_SEGMENT.to_owned(),
            namespace: if namespaced {
                metadata.namespace.clone()
            } else {
                None
            },
            name: metadata.name.clone().unwrap_or_default(),
            // Serializing a typed object cannot fail: its maps have string keys.
            body: serde_json::to_value(object).unwrap_or(Value::Null),
        }
    }

    /// A custom resource (cert-manager, Gateway API), built as its documented JSON.
    pub(crate) fn custom(api_version: &str, kind: &str, plural: &str, body: Value) -> Object {
        Object {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            plural: plural.to_owned(),
            namespace: body["metadata"]["namespace"].as_str().map(str::to_owned),
            name: body["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            body,
        }
    }

    /// `Deployment shop-pr-1-x7k2p/web`: how logs and errors name it.
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(namespace) => format!("{} {namespace}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }

    /// Whether its body may hold secret values.
    pub fn is_secret(&self) -> bool {
        self.kind == "Secret" && self.api_version == "v1"
    }

    /// The body with every value of a Secret replaced by `[redacted]`.
    pub fn redacted(&self) -> Value {
        let mut body = self.body.clone();
        if self.is_secret() {
            for field in ["data", "stringData"] {
                if let Some(values) = body.get_mut(field).and_then(Value::as_object_mut) {
                    for value in values.values_mut() {
                        *value = Value::String(REDACTED.to_owned());
                    }
                }
            }
        }
        body
    }
}

pub(crate) const REDACTED: &str = "[redacted]";

impl std::fmt::Debug for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Object")
            .field("object", &self.describe())
            .field("body", &self.redacted())
            .finish()
    }
}

/// The objects as one YAML stream (`---` between them), Secret values redacted.
pub fn to_yaml(objects: &[Object]) -> String {
    objects
        .iter()
        .map(|object| {
            serde_saphyr::to_string(&object.redacted()).unwrap_or_else(|e| {
                format!("# {} cannot be written as YAML: {e}\n", object.describe())
            })
        })
        .collect::<Vec<_>>()
        .join("---\n")
}
