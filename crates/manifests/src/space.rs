//! The space: a Namespace per incarnation with its isolation baseline.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota, ResourceQuotaSpec,
    ServiceAccount,
};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use preview_plan::Resource;

use crate::labels::{labels, metadata};
use crate::{Object, RenderError, Settings, Target};

/// The ServiceAccount every pod of an environment runs as: no token is mounted, no role is bound.
pub(crate) const SERVICE_ACCOUNT: &str = "workload";

pub(crate) fn render(
    resource: &Resource,
    target: &Target,
    settings: &Settings,
) -> Result<Vec<Object>, RenderError> {
    let mut namespace_labels = labels(target, "space");
    for mode in ["enforce", "audit", "warn"] {
        namespace_labels.insert(
            format!("pod-security.kubernetes.io/{mode}"),
            "restricted".to_owned(),
        );
    }
    // Selected by name in other namespaces' policies: the label the API server sets itself, which no one can forge.
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(target.namespace.clone()),
            labels: Some(namespace_labels),
            annotations: Some(BTreeMap::from([(
                crate::labels::RESOURCE.to_owned(),
                resource.id.clone(),
            )])),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    let meta = |name: &str| metadata(target, &resource.id, name, "space");
    let all_pods = LabelSelector::default();
    let deny = NetworkPolicy {
        metadata: meta("default-deny"),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(all_pods.clone()),
            policy_types: Some(vec!["Ingress".to_owned(), "Egress".to_owned()]),
            ..NetworkPolicySpec::default()
        }),
    };
    let namespace_named = |name: &str| NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_owned(),
                name.to_owned(),
            )])),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    };
    let same_namespace = NetworkPolicyPeer {
        pod_selector: Some(all_pods.clone()),
        ..NetworkPolicyPeer::default()
    };
    let dns_port = |protocol: &str| NetworkPolicyPort {
        port: Some(IntOrString::Int(53)),
        protocol: Some(protocol.to_owned()),
        ..NetworkPolicyPort::default()
    };
    let internet = |cidr: &str, except: Vec<String>| NetworkPolicyPeer {
        ip_block: Some(IPBlock {
            cidr: cidr.to_owned(),
            except: Some(except),
        }),
        ..NetworkPolicyPeer::default()
    };
    let (v4, v6): (Vec<String>, Vec<String>) = settings
        .egress_except
        .iter()
        .cloned()
        .partition(|cidr| !cidr.contains(':'));
    let mut egress = vec![
        NetworkPolicyEgressRule {
            to: Some(vec![same_namespace.clone()]),
            ..NetworkPolicyEgressRule::default()
        },
        NetworkPolicyEgressRule {
            to: Some(vec![namespace_named(&settings.dns_namespace)]),
            ports: Some(vec![dns_port("UDP"), dns_port("TCP")]),
        },
        NetworkPolicyEgressRule {
            to: Some(vec![internet("0.0.0.0/0", v4), internet("::/0", v6)]),
            ..NetworkPolicyEgressRule::default()
        },
    ];
    // DNS caches outside any namespace (NodeLocal DNSCache): a rule of their own, only when named — a rule with no
    // peers would allow port 53 everywhere.
    if !settings.dns_addresses.is_empty() {
        egress.push(NetworkPolicyEgressRule {
            to: Some(
                settings
                    .dns_addresses
                    .iter()
                    .map(|cidr| NetworkPolicyPeer {
                        ip_block: Some(IPBlock {
                            cidr: cidr.clone(),
                            except: None,
                        }),
                        ..NetworkPolicyPeer::default()
                    })
                    .collect(),
            ),
            ports: Some(vec![dns_port("UDP"), dns_port("TCP")]),
        });
    }
    let allow = NetworkPolicy {
        metadata: meta("allow-environment"),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(all_pods),
            policy_types: Some(vec!["Ingress".to_owned(), "Egress".to_owned()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![
                    same_namespace.clone(),
                    namespace_named(&settings.ingress_namespace),
                ]),
                ..NetworkPolicyIngressRule::default()
            }]),
            egress: Some(egress),
        }),
    };
    let limits = &resource.content["limits"];
    let total = |key: &str, default: &str| {
        Quantity(
            limits[key]["quantity"]
                .as_str()
                .unwrap_or(default)
                .to_owned(),
        )
    };
    let (cpu, memory) = (
        total("cpu", &settings.default_cpu),
        total("memory", &settings.default_memory),
    );
    let quota = ResourceQuota {
        metadata: meta("environment"),
        spec: Some(ResourceQuotaSpec {
            hard: Some(BTreeMap::from([
                ("limits.cpu".to_owned(), cpu.clone()),
                ("limits.memory".to_owned(), memory.clone()),
                ("requests.cpu".to_owned(), cpu),
                ("requests.memory".to_owned(), memory),
                ("pods".to_owned(), Quantity(settings.max_pods.to_string())),
            ])),
            ..ResourceQuotaSpec::default()
        }),
        ..ResourceQuota::default()
    };
    let container_defaults = BTreeMap::from([
        ("cpu".to_owned(), Quantity(settings.container_cpu.clone())),
        (
            "memory".to_owned(),
            Quantity(settings.container_memory.clone()),
        ),
    ]);
    let limit_range = LimitRange {
        metadata: meta("containers"),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".to_owned(),
                default: Some(container_defaults.clone()),
                default_request: Some(container_defaults),
                ..LimitRangeItem::default()
            }],
        }),
    };
    let account = ServiceAccount {
        metadata: meta(SERVICE_ACCOUNT),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    };
    Ok(vec![
        Object::typed(&namespace, false),
        Object::typed(&deny, true),
        Object::typed(&allow, true),
        Object::typed(&quota, true),
        Object::typed(&limit_range, true),
        Object::typed(&account, true),
    ])
}
