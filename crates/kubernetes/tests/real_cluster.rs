//! The whole story against a real cluster, when `PREVIEW_TEST_KUBECONFIG` names one (its current context): an
//! environment created with every isolation object, updated, cloned, a rollout that cannot succeed rolled back, and
//! deleted with its namespace gone. Apps run `PREVIEW_TEST_IMAGE` (default: an unprivileged nginx listening on
//! 8080). Where the cluster has no node to run pods, readiness waits must fail with that reason and roll back.
//! Without the variable it is skipped, and says so.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::api::{Api, ListParams};
use preview_deploy::{DeploymentRequest, Engine, EngineConfig, Runtime};
use preview_kubernetes::{ClusterConfig, KubernetesOptions};
use preview_plan::{Resource, desired_state};
use preview_store::{DeploymentStatus, Operation, Store};
use preview_testing::TempDir;

fn spec(image: &str, replicas: u32) -> String {
    format!(
        "project: preview-e2e
runtime: kubernetes
domain: {{ base: e2e.example.com }}
secrets: [API_KEY]
services:
  web:
    image: {image}
    ports: [{{ name: http, port: 8080 }}]
    health: {{ http: / }}
    replicas: {replicas}
    public: true
    resources: {{ cpu: 100m, memory: 64Mi }}
    variables: {{ KEY: \"${{{{ secrets.API_KEY }}}}\" }}
  api:
    image: {image}
    ports: [{{ name: http, port: 8080 }}]
    health: {{ http: / }}
environments:
  staging: {{}}
previews:
  blueprint: staging
"
    )
}

fn resources(source: &str, environment: &str) -> Vec<Resource> {
    let spec = preview_spec::parse_spec("e2e.yaml", source).unwrap_or_else(|e| panic!("{e}"));
    let (spec, environment) = if environment == "staging" {
        let staging = spec.environments["staging"].clone();
        (spec, staging)
    } else {
        preview_spec::clone_environment("e2e.yaml", source, "staging", environment)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let resolved = preview_resolve::resolve_environment(&spec, &environment, &Default::default())
        .unwrap_or_else(|e| panic!("{e:?}"));
    desired_state(
        &resolved,
        &BTreeMap::from([("project/API_KEY".to_owned(), "v1".to_owned())]),
    )
}

fn request(environment: &str, operation: Operation, desired: Vec<Resource>) -> DeploymentRequest {
    DeploymentRequest {
        project: "preview-e2e".into(),
        environment: environment.into(),
        operation,
        based_on: None,
        source_commit: None,
        follows: None,
        keep_settings: false,
        desired,
    }
}

#[tokio::test]
async fn the_whole_story_on_a_real_cluster() {
    let Some(kubeconfig) = std::env::var_os("PREVIEW_TEST_KUBECONFIG") else {
        println!("SKIPPED: PREVIEW_TEST_KUBECONFIG is not set; no real cluster to run against");
        return;
    };
    let image = std::env::var("PREVIEW_TEST_IMAGE")
        .unwrap_or_else(|_| "nginxinc/nginx-unprivileged:1.27-alpine".to_owned());
    let options = KubernetesOptions {
        cluster: ClusterConfig {
            kubeconfig: Some(kubeconfig.clone().into()),
            ..ClusterConfig::default()
        },
        inventory_namespace: "preview-e2e-system".into(),
        ready_timeout: Duration::from_secs(180),
        ..KubernetesOptions::default()
    };
    let runtime = Arc::new(
        support::Cluster::connect(&options)
            .await
            .expect("connects to the cluster"),
    );
    let (client, _) = preview_kubernetes::connect(&options.cluster)
        .await
        .expect("client");
    let nodes: Api<Node> = Api::all(client.clone());
    let schedulable = nodes
        .list(&ListParams::default())
        .await
        .expect("nodes")
        .items
        .iter()
        .any(|n| {
            !n.spec
                .as_ref()
                .and_then(|s| s.unschedulable)
                .unwrap_or(false)
        });
    let dir = TempDir::new("real-cluster");
    let store = Arc::new(
        Store::open_sqlite(&dir.path().join("preview.db"))
            .await
            .expect("store"),
    );
    let engine = Engine::new(
        store,
        runtime.clone() as Arc<dyn Runtime>,
        "e2e",
        EngineConfig {
            step_timeout: Duration::from_secs(300),
            ..EngineConfig::default()
        },
    );
    let deploy = |request: DeploymentRequest| {
        let engine = Arc::clone(&engine);
        async move {
            let (_, handle) = engine.start(request).await.expect("starts");
            handle.await.expect("runs")
        }
    };
    let staging = resources(&spec(&image, 1), "staging");
    let created = deploy(request("staging", Operation::Create, staging.clone())).await;
    if !schedulable {
        println!(
            "the cluster has no node to run pods: readiness must fail with that reason and roll back"
        );
        assert_eq!(created.status, DeploymentStatus::RolledBack);
        assert!(
            created
                .reason
                .as_deref()
                .unwrap_or("")
                .contains("Unschedulable"),
            "{:?}",
            created.reason
        );
        return;
    }
    assert_eq!(
        created.status,
        DeploymentStatus::Committed,
        "{:?}",
        created.reason
    );
    let protections = runtime
        .isolation(&support::env_of("preview-e2e", "staging"))
        .await;
    assert!(protections.iter().all(|p| p.in_effect), "{protections:?}");

    let updated = resources(&spec(&image, 2), "staging");
    let record = deploy(request("staging", Operation::Update, updated.clone())).await;
    assert_eq!(
        record.status,
        DeploymentStatus::Committed,
        "{:?}",
        record.reason
    );

    let broken = resources(
        &spec("registry.invalid/preview/does-not-exist:0", 2),
        "staging",
    );
    let record = deploy(request("staging", Operation::Update, broken)).await;
    assert_eq!(record.status, DeploymentStatus::RolledBack);
    let reason = record.reason.unwrap_or_default();
    assert!(
        reason.contains("ImagePullBackOff")
            || reason.contains("ErrImagePull")
            || reason.contains("did not become ready"),
        "{reason}"
    );

    let clone = resources(&spec(&image, 1), "pr-1");
    let record = deploy(request("pr-1", Operation::Create, clone)).await;
    assert_eq!(
        record.status,
        DeploymentStatus::Committed,
        "{:?}",
        record.reason
    );

    let namespaces: Api<Namespace> = Api::all(client);
    for environment in ["pr-1", "staging"] {
        let record = deploy(request(environment, Operation::Delete, Vec::new())).await;
        assert_eq!(
            record.status,
            DeploymentStatus::Committed,
            "{:?}",
            record.reason
        );
    }
    let left: Vec<String> = namespaces
        .list(&ListParams::default().labels("preview.dev/project=preview-e2e"))
        .await
        .expect("namespaces")
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert!(left.is_empty(), "namespaces left: {left:?}");
    println!(
        "second cluster for physical isolation: not exercised (`preview cluster add` is not built yet)"
    );
}
