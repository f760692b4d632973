//! A cluster for the runtime's tests: the fake API server, a runtime connected to it through a kubeconfig, and the
//! example shop's resources for Kubernetes.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use preview_deploy::{EnvironmentAddress, Runtime, RuntimeError, SecretSource, StepLog};
use preview_kubernetes::{ClusterConfig, KubernetesOptions, KubernetesRuntime};
use preview_plan::{Resource, desired_state};
use preview_testing::TempDir;
use preview_testing::kubernetes::{ApiServer, PostgresPods};

/// Values no object but a Secret may hold.
pub const CANARY: &str = "CANARY-k8s-3f9a1c";

/// Every secret's value is the canary and its name, so that each is told apart and found anywhere it leaks.
pub struct TestSecrets;

#[async_trait::async_trait]
impl SecretSource for TestSecrets {
    async fn reveal(
        &self,
        _env: &EnvironmentAddress,
        name: &str,
        _version: &str,
    ) -> Result<preview_secrets::Secret, RuntimeError> {
        Ok(preview_secrets::Secret::new(format!("{CANARY}:{name}")))
    }
}

pub struct Cluster {
    pub api: ApiServer,
    /// The servers of database pods (one PostgreSQL server, started when a database pod is first reached).
    pub postgres: Arc<PostgresPods>,
    pub runtime: Arc<KubernetesRuntime>,
    pub options: KubernetesOptions,
    pub dir: TempDir,
}

pub fn env_of(project: &str, name: &str) -> EnvironmentAddress {
    EnvironmentAddress {
        project: project.into(),
        environment: name.into(),
    }
}

pub fn env(name: &str) -> EnvironmentAddress {
    EnvironmentAddress {
        project: "shop".into(),
        environment: name.into(),
    }
}

impl Cluster {
    pub async fn start() -> Cluster {
        Cluster::start_with(|_| {}).await
    }

    pub async fn start_with(change: impl FnOnce(&mut KubernetesOptions)) -> Cluster {
        let api = ApiServer::start().await;
        let postgres = api.serve_postgres_pods();
        let dir = TempDir::new("kubernetes");
        let kubeconfig = dir.path().join("kubeconfig");
        api.kubeconfig(&kubeconfig).expect("kubeconfig");
        let mut options = KubernetesOptions {
            cluster: ClusterConfig {
                kubeconfig: Some(kubeconfig),
                ..ClusterConfig::default()
            },
            ready_timeout: Duration::from_secs(10),
            namespace_timeout: Duration::from_secs(5),
            ..KubernetesOptions::default()
        };
        change(&mut options);
        let runtime = Arc::new(Cluster::connect(&options).await.expect("connects"));
        Cluster {
            api,
            postgres,
            runtime,
            options,
            dir,
        }
    }

    pub async fn connect(options: &KubernetesOptions) -> Result<KubernetesRuntime, String> {
        let issuer = |hostnames: &[String]| {
            Ok((
                format!("-----BEGIN CERTIFICATE----- for {}", hostnames.join(",")),
                preview_secrets::Secret::new(format!("{CANARY}:tls-key")),
            ))
        };
        KubernetesRuntime::connect(options.clone(), Arc::new(TestSecrets), Arc::new(issuer)).await
    }

    /// The namespace the environment lives in, from the inventory.
    pub fn namespace(&self, environment: &str) -> String {
        let inventory = self
            .api
            .object(
                "configmaps",
                Some("preview-system"),
                &format!("shop.{environment}.space"),
            )
            .expect("the space's inventory");
        let entry: serde_json::Value =
            serde_json::from_str(inventory["data"]["inventory"].as_str().expect("entry"))
                .expect("json");
        entry["namespace"].as_str().expect("namespace").to_owned()
    }

    /// `resource` applied to `staging`.
    pub async fn apply(&self, resource: &Resource) -> Result<(), RuntimeError> {
        self.runtime
            .apply(&env("staging"), resource, &StepLog::default())
            .await
    }

    /// The resource `id` of `staging` removed.
    pub async fn remove(
        &self,
        id: &str,
        kind: preview_plan::ResourceKind,
    ) -> Result<(), RuntimeError> {
        self.runtime
            .remove(&env("staging"), id, kind, &StepLog::default())
            .await
    }

    /// A client of the fake cluster, as another tool (or a person with `kubectl`) would use it.
    pub async fn kube_client(&self) -> kube::Client {
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(self.dir.path().join("kubeconfig")).expect("read"),
            &Default::default(),
        )
        .await
        .expect("config");
        kube::Client::try_from(config).expect("client")
    }

    /// Every resource applied in build order, as the engine would for a new environment.
    pub async fn create(&self, environment: &str, resources: &[Resource]) {
        for resource in in_order(resources) {
            self.runtime
                .apply(&env(environment), &resource, &StepLog::default())
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", resource.id));
        }
    }

    /// Non-dry-run writes (PATCH, POST, PUT, DELETE) made since the requests were last cleared, as `METHOD path`.
    pub fn writes(&self) -> Vec<String> {
        self.api
            .requests()
            .iter()
            .filter(|r| r.method != "GET" && r.param("dryRun").is_none())
            .filter(|r| !r.path.contains("selfsubjectaccessreviews"))
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }
}

pub fn in_order(resources: &[Resource]) -> Vec<Resource> {
    let mut ordered = resources.to_vec();
    ordered.sort_by_key(|r| (r.kind.level(), r.id.clone()));
    ordered
}

/// The example on Kubernetes (without its Redis cache), its database a server in the namespace.
pub fn kubernetes_example() -> String {
    preview_testing::example_on_kubernetes()
}

/// The commit of this repository the example is read from (its seed file, `examples/shop/db/seed.sql`, is in it).
pub fn example_source() -> preview_resolve::SourceCommit {
    let repository = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let head = std::process::Command::new("git")
        .args(["-c", "safe.directory=*", "rev-parse", "HEAD"])
        .current_dir(&repository)
        .output()
        .expect("git");
    assert!(head.status.success(), "the tests run in a git checkout");
    preview_resolve::SourceCommit {
        repository: repository.display().to_string(),
        directory: "examples/shop".into(),
        commit: String::from_utf8_lossy(&head.stdout).trim().to_owned(),
    }
}

pub fn resources(source: &str, environment: &str) -> Vec<Resource> {
    let spec = preview_spec::parse_spec("shop.yaml", source).unwrap_or_else(|e| panic!("{e}"));
    let env = spec.environments[environment].clone();
    desired(&spec, &env, None)
}

/// The resources of `name`, a new environment made from `from` (a preview of the example, when `name` is `pr-N`).
pub fn clone_resources(source: &str, from: &str, name: &str) -> Vec<Resource> {
    let (spec, env) = preview_spec::clone_environment("shop.yaml", source, from, name)
        .unwrap_or_else(|e| panic!("{e}"));
    desired(&spec, &env, Some(from))
}

fn desired(
    spec: &preview_spec::Spec,
    env: &preview_spec::Environment,
    based_on: Option<&str>,
) -> Vec<Resource> {
    let context = preview_resolve::Context {
        source: Some(example_source()),
        based_on: based_on.map(str::to_owned),
        ..Default::default()
    };
    let resolved = preview_resolve::resolve_environment(spec, env, &context)
        .unwrap_or_else(|e| panic!("{e:?}"));
    let versions = BTreeMap::from([
        ("service:storefront/SESSION_KEY".to_owned(), "v1".to_owned()),
        ("project/MASKING_KEY".to_owned(), "v1".to_owned()),
        ("project/FORGE_WEBHOOK_SECRET".to_owned(), "v1".to_owned()),
    ]);
    desired_state(&resolved, &versions)
}

pub fn find<'a>(resources: &'a [Resource], id: &str) -> &'a Resource {
    resources
        .iter()
        .find(|r| r.id == id)
        .unwrap_or_else(|| panic!("no {id}"))
}

/// `resource` with a changed content, hashed again.
pub fn changed(resource: &Resource, change: impl FnOnce(&mut serde_json::Value)) -> Resource {
    let mut content = resource.content.clone();
    change(&mut content);
    Resource::new(
        resource.id.clone(),
        resource.kind,
        resource.depends_on.clone(),
        content,
    )
}
