//! `preview cluster check`: what a cluster offers and whether `preview`'s credentials may do what it needs — each
//! verb on each kind asked of the API server itself (SelfSubjectAccessReview), the ingress, storage and snapshot
//! classes there are, and which of the custom resources it can use (cert-manager, Gateway API, volume snapshots)
//! are installed.

use kube::api::{Api, DynamicObject, ListParams, PostParams};
use serde::Serialize;
use serde_json::json;

use crate::apply::api_of;
use crate::connect::{explain, is_not_found};
use preview_manifests::{Certificates, RouteApi, Settings};

/// What the check found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClusterReport {
    pub server: String,
    pub version: String,
    /// `verb group/resource`, for each permission the credentials lack.
    pub denied: Vec<String>,
    pub permissions_checked: usize,
    /// Names, the default marked `(default)`.
    pub ingress_classes: Vec<String>,
    pub storage_classes: Vec<String>,
    pub snapshot_classes: Vec<String>,
    /// `cert-manager`, `gateway-api`, `volume-snapshots` where installed.
    pub extensions: Vec<String>,
    /// What `preview` needs and the cluster lacks, said as what to do.
    pub missing: Vec<String>,
}

/// The verbs on the kinds the runtime writes, reads and deletes; `(group, resource)`.
const WRITES: &[(&str, &str)] = &[
    ("", "namespaces"),
    ("", "secrets"),
    ("", "configmaps"),
    ("", "services"),
    ("", "serviceaccounts"),
    ("", "resourcequotas"),
    ("", "limitranges"),
    ("apps", "deployments"),
    ("apps", "statefulsets"),
    ("batch", "jobs"),
    ("networking.k8s.io", "networkpolicies"),
    ("networking.k8s.io", "ingresses"),
];
const WRITE_VERBS: &[&str] = &["get", "list", "watch", "create", "patch", "delete"];
const READS: &[(&str, &str, &str)] = &[
    ("", "persistentvolumeclaims", "get"),
    ("", "persistentvolumeclaims", "delete"),
    ("apps", "replicasets", "list"),
    ("networking.k8s.io", "ingressclasses", "get"),
    ("", "pods", "list"),
    ("", "pods", "watch"),
    ("", "pods/log", "get"),
    // Databases are filled through port forwards: a WebSocket upgrade is a `get`, the older SPDY one a `create`.
    ("", "pods/portforward", "get"),
    ("", "pods/portforward", "create"),
    ("", "events", "list"),
    ("", "persistentvolumeclaims", "list"),
];

/// Checks the cluster `client` talks to, for the runtime's `settings`.
pub async fn check_cluster(
    client: &kube::Client,
    server: &str,
    settings: &Settings,
) -> Result<ClusterReport, String> {
    let version = client
        .apiserver_version()
        .await
        .map_err(|e| explain(&format!("the cluster at {server}"), &e))?;
    let mut report = ClusterReport {
        server: server.to_owned(),
        version: version.git_version.clone(),
        ..ClusterReport::default()
    };
    let reviews: Api<DynamicObject> = api_of(
        client,
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        None,
    );
    // What the check itself lists is asked about first, so that a credential that may not list it is named rather
    // than failed on.
    let mut listable = |group: &str, resource: &str| {
        let reviews = reviews.clone();
        let (group, resource) = (group.to_owned(), resource.to_owned());
        report.permissions_checked += 1;
        async move {
            let allowed = allowed(&reviews, &group, &resource, "list").await?;
            Ok::<_, String>((allowed, format!("list {resource}.{group}")))
        }
    };
    let mut denied = Vec::new();
    let (may, what) = listable("apiextensions.k8s.io", "customresourcedefinitions").await?;
    let crds = if may {
        names(
            client,
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
        )
        .await?
    } else {
        denied.push(what);
        Vec::new()
    };
    let (may_ingress, what_ingress) = listable("networking.k8s.io", "ingressclasses").await?;
    let (may_storage, what_storage) = listable("storage.k8s.io", "storageclasses").await?;
    let (may_snapshots, what_snapshots) =
        listable("snapshot.storage.k8s.io", "volumesnapshotclasses").await?;
    let has = |crd: &str| crds.iter().any(|c| c == crd);
    let cert_manager = has("certificates.cert-manager.io");
    let gateway_api = has("httproutes.gateway.networking.k8s.io");
    let snapshots = has("volumesnapshots.snapshot.storage.k8s.io");
    for (name, present) in [
        ("cert-manager", cert_manager),
        ("gateway-api", gateway_api),
        ("volume-snapshots", snapshots),
    ] {
        if present {
            report.extensions.push(name.to_owned());
        }
    }
    let mut wanted: Vec<(String, String, String)> = Vec::new();
    for (group, resource) in WRITES {
        for verb in WRITE_VERBS {
            wanted.push((
                (*group).to_owned(),
                (*resource).to_owned(),
                (*verb).to_owned(),
            ));
        }
    }
    for (group, resource, verb) in READS {
        wanted.push((
            (*group).to_owned(),
            (*resource).to_owned(),
            (*verb).to_owned(),
        ));
    }
    if matches!(settings.certificates, Certificates::CertManager { .. }) {
        for verb in WRITE_VERBS {
            wanted.push((
                "cert-manager.io".to_owned(),
                "certificates".to_owned(),
                (*verb).to_owned(),
            ));
        }
    }
    if matches!(settings.routes, RouteApi::Gateway { .. }) {
        for verb in WRITE_VERBS {
            wanted.push((
                "gateway.networking.k8s.io".to_owned(),
                "httproutes".to_owned(),
                (*verb).to_owned(),
            ));
        }
    }
    report.permissions_checked += wanted.len();
    for (group, resource, verb) in &wanted {
        if !allowed(&reviews, group, resource, verb).await? {
            let (resource, subresource) =
                resource.split_once('/').unwrap_or((resource.as_str(), ""));
            let kind = match (group.is_empty(), subresource.is_empty()) {
                (true, true) => resource.to_owned(),
                (true, false) => format!("{resource}/{subresource}"),
                (false, true) => format!("{resource}.{group}"),
                (false, false) => format!("{resource}.{group}/{subresource}"),
            };
            report.denied.push(format!("{verb} {kind}"));
        }
    }
    if may_ingress {
        report.ingress_classes = defaults(
            client,
            ("networking.k8s.io/v1", "IngressClass", "ingressclasses"),
            "ingressclass.kubernetes.io/is-default-class",
        )
        .await?;
    } else {
        denied.push(what_ingress);
    }
    if may_storage {
        report.storage_classes = defaults(
            client,
            ("storage.k8s.io/v1", "StorageClass", "storageclasses"),
            "storageclass.kubernetes.io/is-default-class",
        )
        .await?;
    } else {
        denied.push(what_storage);
    }
    if snapshots && may_snapshots {
        report.snapshot_classes = defaults(
            client,
            (
                "snapshot.storage.k8s.io/v1",
                "VolumeSnapshotClass",
                "volumesnapshotclasses",
            ),
            "snapshot.storage.kubernetes.io/is-default-class",
        )
        .await?;
    } else if snapshots {
        denied.push(what_snapshots);
    }
    report.denied.extend(denied);
    if !report.denied.is_empty() {
        report.missing.push(format!(
            "permissions: the credentials may not {} (grant them in a ClusterRole bound to preview's user or service account)",
            report.denied.join(", ")
        ));
    }
    match &settings.routes {
        RouteApi::Ingress { class: Some(class) }
            if may_ingress
                && !report
                    .ingress_classes
                    .iter()
                    .any(|c| c.split(' ').next() == Some(class)) =>
        {
            report.missing.push(format!(
                "ingress class `{class}` (--ingress-class) does not exist"
            ));
        }
        RouteApi::Ingress { class: None }
            if may_ingress
                && !report
                    .ingress_classes
                    .iter()
                    .any(|c| c.ends_with("(default)")) =>
        {
            report.missing.push("a default IngressClass (or --ingress-class NAME): environments' Ingresses would have no controller".to_owned());
        }
        RouteApi::Gateway { .. } if !gateway_api => {
            report.missing.push(
                "the Gateway API CRDs (HTTPRoute), which --routes gateway:… needs".to_owned(),
            );
        }
        _ => {}
    }
    if matches!(settings.certificates, Certificates::CertManager { .. }) && !cert_manager {
        report.missing.push(
            "cert-manager (its Certificate CRD), which --cert-manager-issuer needs".to_owned(),
        );
    }
    if may_storage
        && !report
            .storage_classes
            .iter()
            .any(|c| c.ends_with("(default)"))
    {
        report
            .missing
            .push("a default StorageClass: databases need volumes".to_owned());
    }
    Ok(report)
}

/// Whether the API server says the credentials may do `verb` on `group/resource` (a SelfSubjectAccessReview).
async fn allowed(
    reviews: &Api<DynamicObject>,
    group: &str,
    resource: &str,
    verb: &str,
) -> Result<bool, String> {
    let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
    let review: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "metadata": {},
        "spec": { "resourceAttributes": {
            "group": group, "resource": resource, "subresource": subresource, "verb": verb,
        } },
    }))
    .map_err(|e| e.to_string())?;
    let answer = reviews
        .create(&PostParams::default(), &review)
        .await
        .map_err(|e| explain("a SelfSubjectAccessReview", &e))?;
    Ok(answer.data["status"]["allowed"] == true)
}

async fn names(
    client: &kube::Client,
    api_version: &str,
    kind: &str,
    plural: &str,
) -> Result<Vec<String>, String> {
    let api = api_of(client, api_version, kind, plural, None);
    match api.list(&ListParams::default()).await {
        Ok(list) => Ok(list
            .items
            .into_iter()
            .filter_map(|o| o.metadata.name)
            .collect()),
        Err(e) if is_not_found(&e) => Ok(Vec::new()),
        Err(e) => Err(explain(&format!("the cluster's {plural}"), &e)),
    }
}

/// The names of the objects, the one annotated as default marked `(default)`.
async fn defaults(
    client: &kube::Client,
    (api_version, kind, plural): (&str, &str, &str),
    annotation: &str,
) -> Result<Vec<String>, String> {
    let api = api_of(client, api_version, kind, plural, None);
    let list = match api.list(&ListParams::default()).await {
        Ok(list) => list,
        Err(e) if is_not_found(&e) => return Ok(Vec::new()),
        Err(e) => return Err(explain(&format!("the cluster's {plural}"), &e)),
    };
    Ok(list
        .items
        .into_iter()
        .filter_map(|object| {
            let default = object
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(annotation))
                .is_some_and(|v| v == "true");
            let name = object.metadata.name?;
            Some(if default {
                format!("{name} (default)")
            } else {
                name
            })
        })
        .collect())
}
