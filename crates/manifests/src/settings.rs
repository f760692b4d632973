//! How a cluster wants environments rendered: which ingress controller admits traffic, how routes and
//! certificates are made, what an environment may use when its spec sets no total.

/// Rendering settings of one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The namespace the ingress controller (or gateway) runs in: the only one allowed to reach an environment's
    /// pods from outside it.
    pub ingress_namespace: String,
    pub routes: RouteApi,
    pub certificates: Certificates,
    /// What an environment may use in all when its spec sets no `limits` (a ResourceQuota).
    pub default_cpu: String,
    pub default_memory: String,
    pub max_pods: u32,
    /// What a container gets when its service sets no `resources` (a LimitRange).
    pub container_cpu: String,
    pub container_memory: String,
    /// The volume of a database of `mode: container`.
    pub database_storage: String,
    /// Egress is allowed to every address but these: the cloud metadata addresses (169.254.169.254, Azure's
    /// 168.63.129.16), the private and shared ranges where other environments' pods, nodes and the cluster's own
    /// services usually live, NAT64's prefix; a cluster whose pods, services or nodes have public addresses adds
    /// them (`--egress-except`).
    pub egress_except: Vec<String>,
    /// Where the cluster's DNS runs: the namespace environments may reach on port 53.
    pub dns_namespace: String,
    /// Addresses of DNS caches outside any namespace (NodeLocal DNSCache's 169.254.20.10 on the nodes), which
    /// environments may reach on port 53 too.
    pub dns_addresses: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            ingress_namespace: "ingress-nginx".to_owned(),
            routes: RouteApi::Ingress { class: None },
            certificates: Certificates::LocalCa,
            default_cpu: "2".to_owned(),
            default_memory: "4Gi".to_owned(),
            max_pods: 50,
            container_cpu: "500m".to_owned(),
            container_memory: "256Mi".to_owned(),
            database_storage: "1Gi".to_owned(),
            egress_except: [
                "10.0.0.0/8",
                "100.64.0.0/10",
                "168.63.129.16/32",
                "169.254.0.0/16",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "64:ff9b::/96",
                "fc00::/7",
                "fe80::/10",
            ]
            .map(str::to_owned)
            .to_vec(),
            dns_namespace: "kube-system".to_owned(),
            dns_addresses: Vec::new(),
        }
    }
}

/// How an environment's hostnames reach its apps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteApi {
    /// `networking.k8s.io/v1` Ingress, of this class (the cluster's default class when `None`).
    Ingress { class: Option<String> },
    /// Gateway API `HTTPRoute`s attached to this Gateway.
    Gateway { name: String, namespace: String },
}

/// Where an environment's TLS certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Certificates {
    /// A cert-manager `Certificate` from this ClusterIssuer (HTTP-01), and from `wildcard_issuer` (DNS-01) when a
    /// hostname is a wildcard.
    CertManager {
        issuer: String,
        wildcard_issuer: Option<String>,
    },
    /// A TLS Secret the runtime issues from the local CA and applies itself: nothing is rendered for it.
    LocalCa,
}
