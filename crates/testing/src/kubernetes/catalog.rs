//! The kinds the fake serves: the built-in ones a preview runtime uses, and custom ones that appear when their
//! CustomResourceDefinition is stored (by a test's `install_crd` or by a client creating the CRD), as on a real
//! server, where a custom kind's paths answer 404 until its CRD is established.

use serde_json::{Value, json};

/// What a name must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameRule {
    /// RFC 1123 label: namespaces.
    Label,
    /// RFC 1035 label (starts with a letter): services.
    Label1035,
    /// RFC 1123 subdomain: everything else.
    Subdomain,
}

/// One resource type: where it is served and what its objects are called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResourceType {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub kind: String,
    pub namespaced: bool,
    pub names: NameRule,
    /// Defined by a CRD (its list items keep `apiVersion` and `kind`, as unstructured objects do).
    pub custom: bool,
}

impl ResourceType {
    fn builtin(group: &str, plural: &str, kind: &str, namespaced: bool) -> ResourceType {
        ResourceType {
            group: group.to_owned(),
            version: "v1".to_owned(),
            plural: plural.to_owned(),
            kind: kind.to_owned(),
            namespaced,
            names: match plural {
                "namespaces" => NameRule::Label,
                "services" => NameRule::Label1035,
                _ => NameRule::Subdomain,
            },
            custom: false,
        }
    }

    fn custom(group: &str, plural: &str, kind: &str, namespaced: bool) -> ResourceType {
        ResourceType {
            custom: true,
            ..ResourceType::builtin(group, plural, kind, namespaced)
        }
    }

    /// `v1`, `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The resource as errors name it: `configmaps`, `deployments.apps`. Also the store's key.
    pub fn resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The kind as validation errors name it: `Service`, `Deployment.apps`.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }
}

/// The resource types served now.
pub(crate) struct Catalog {
    types: Vec<ResourceType>,
}

impl Catalog {
    pub fn new() -> Catalog {
        let b = ResourceType::builtin;
        Catalog {
            types: vec![
                b("", "namespaces", "Namespace", false),
                b("", "secrets", "Secret", true),
                b("", "configmaps", "ConfigMap", true),
                b("", "services", "Service", true),
                b("", "serviceaccounts", "ServiceAccount", true),
                b("", "resourcequotas", "ResourceQuota", true),
                b("", "limitranges", "LimitRange", true),
                b("", "pods", "Pod", true),
                b("", "events", "Event", true),
                b("", "persistentvolumeclaims", "PersistentVolumeClaim", true),
                b("apps", "deployments", "Deployment", true),
                b("apps", "statefulsets", "StatefulSet", true),
                b("apps", "replicasets", "ReplicaSet", true),
                b("batch", "jobs", "Job", true),
                b(
                    "networking.k8s.io",
                    "networkpolicies",
                    "NetworkPolicy",
                    true,
                ),
                b("networking.k8s.io", "ingresses", "Ingress", true),
                b("networking.k8s.io", "ingressclasses", "IngressClass", false),
                b("storage.k8s.io", "storageclasses", "StorageClass", false),
                b(
                    "apiextensions.k8s.io",
                    "customresourcedefinitions",
                    "CustomResourceDefinition",
                    false,
                ),
            ],
        }
    }

    /// The type served at `/apis/{group}/{version}/{plural}` (`/api/v1/{plural}` for the core group).
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
    }

    /// The type a test names: by plural (`deployments`) or resource (`deployments.apps`).
    pub fn by_name(&self, name: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.plural == name)
            .or_else(|| self.types.iter().find(|t| t.resource() == name))
    }

    /// The type of objects of `api_version` and `kind`.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.api_version() == api_version && t.kind == kind)
    }

    /// Whether `group/version` is served at all.
    pub fn serves_group_version(&self, group: &str, version: &str) -> bool {
        self.types
            .iter()
            .any(|t| t.group == group && t.version == version)
    }

    pub fn types(&self) -> &[ResourceType] {
        &self.types
    }

    /// Serves the kinds a stored CRD defines (again, if it changed).
    pub fn install_from_crd(&mut self, crd: &Value) {
        self.uninstall_crd(crd);
        self.types.extend(types_of_crd(crd));
    }

    /// Stops serving the kinds of a deleted CRD.
    pub fn uninstall_crd(&mut self, crd: &Value) {
        let group = crd["spec"]["group"].as_str().unwrap_or_default();
        let plural = crd["spec"]["names"]["plural"].as_str().unwrap_or_default();
        self.types
            .retain(|t| !(t.custom && t.group == group && t.plural == plural));
    }
}

/// The served versions of a CRD object as resource types.
fn types_of_crd(crd: &Value) -> Vec<ResourceType> {
    let spec = &crd["spec"];
    let (Some(group), Some(plural), Some(kind)) = (
        spec["group"].as_str(),
        spec["names"]["plural"].as_str(),
        spec["names"]["kind"].as_str(),
    ) else {
        return Vec::new();
    };
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["served"].as_bool().unwrap_or(true))
        .filter_map(|v| v["name"].as_str())
        .map(|version| ResourceType {
            version: version.to_owned(),
            ..ResourceType::custom(group, plural, kind, namespaced)
        })
        .collect()
}

/// The custom kinds a test can install by group, as their projects' CRDs define them.
fn known_custom_kinds(group: &str) -> Vec<ResourceType> {
    let c = ResourceType::custom;
    match group {
        "cert-manager.io" => vec![
            c(group, "certificates", "Certificate", true),
            c(group, "issuers", "Issuer", true),
            c(group, "clusterissuers", "ClusterIssuer", false),
        ],
        "gateway.networking.k8s.io" => vec![
            c(group, "httproutes", "HTTPRoute", true),
            c(group, "gateways", "Gateway", true),
            c(group, "gatewayclasses", "GatewayClass", false),
        ],
        "snapshot.storage.k8s.io" => vec![
            c(group, "volumesnapshotclasses", "VolumeSnapshotClass", false),
            c(group, "volumesnapshots", "VolumeSnapshot", true),
        ],
        _ => Vec::new(),
    }
}

/// The CRD objects that define `group`'s known kinds; empty for a group the fake does not know.
pub(crate) fn crds_of_group(group: &str) -> Vec<Value> {
    known_custom_kinds(group)
        .iter()
        .map(|t| {
            json!({
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": { "name": format!("{}.{}", t.plural, t.group) },
                "spec": {
                    "group": t.group,
                    "names": {
                        "plural": t.plural,
                        "singular": t.kind.to_lowercase(),
                        "kind": t.kind,
                        "listKind": format!("{}List", t.kind),
                    },
                    "scope": if t.namespaced { "Namespaced" } else { "Cluster" },
                    "versions": [{
                        "name": t.version,
                        "served": true,
                        "storage": true,
                        "subresources": { "status": {} },
                        "schema": { "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": true,
                        } },
                    }],
                },
            })
        })
        .collect()
}

/// The status of a CRD whose kinds are served.
pub(crate) fn established() -> Value {
    json!({ "conditions": [
        { "type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found" },
        { "type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted" },
    ] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_kinds_are_served_once_their_crd_is_stored() {
        let mut catalog = Catalog::new();
        assert!(
            catalog
                .find("cert-manager.io", "v1", "certificates")
                .is_none()
        );
        for crd in crds_of_group("cert-manager.io") {
            catalog.install_from_crd(&crd);
        }
        let certificates = catalog.find("cert-manager.io", "v1", "certificates");
        assert_eq!(
            certificates.map(ResourceType::resource).as_deref(),
            Some("certificates.cert-manager.io")
        );
        assert!(crds_of_group("example.com").is_empty());
    }

    #[test]
    fn names_of_core_and_grouped_kinds() {
        let catalog = Catalog::new();
        let service = catalog.by_name("services").expect("services");
        assert_eq!(
            (service.resource(), service.qualified_kind()),
            ("services".to_owned(), "Service".to_owned())
        );
        let deployment = catalog
            .by_kind("apps/v1", "Deployment")
            .expect("deployments");
        assert_eq!(deployment.qualified_kind(), "Deployment.apps");
    }
}
