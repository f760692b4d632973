//! The whole story against a real cluster, when `PREVIEW_TEST_KUBECONFIG` names one (its current context): an
//! environment created with every isolation object and its database seeded, updated, cloned (its database a masked
//! copy, through port forwards), a rollout that cannot succeed rolled back, and deleted with its namespace gone;
//! with `PREVIEW_TEST_KUBECONFIG_2` naming a second cluster, an environment made there and not on the first. Apps
//! run `PREVIEW_TEST_IMAGE` (default: an unprivileged nginx listening on 8080); the database, the official
//! `postgres` image of the version installed on this machine (whose `pg_dump` makes the copy). Where the cluster has
//! no node to run pods, readiness waits must fail with that reason and roll back. Without the variable it is
//! skipped, and says so.

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
    let version = installed_postgres();
    format!(
        "project: preview-e2e
runtime: kubernetes
domain: {{ base: e2e.example.com }}
secrets: [API_KEY, MASKING_KEY]
services:
  db:
    type: database
    engine: postgres
    version: {version}
    mode: container
    clone: {{ policy: seed, file: seed.sql }}
    masking:
      key: MASKING_KEY
      tables:
        customers: {{ email: email }}
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
  production: {{}}
previews:
  blueprint: staging
  overrides:
    services:
      db:
        clone: {{ policy: masked, from: staging }}
"
    )
}

/// The newest PostgreSQL major version installed here.
fn installed_postgres() -> u32 {
    std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL installed (scripts/test installs it)")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .max()
        .expect("a PostgreSQL version")
}

const SEED: &str = "CREATE TABLE customers (id serial PRIMARY KEY, email text NOT NULL UNIQUE);
INSERT INTO customers (email) VALUES ('ada@example.test'), ('grace@example.test');
";

/// A repository holding the seed file, as the resources' source.
fn source(dir: &std::path::Path) -> preview_resolve::SourceCommit {
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).expect("repo");
    std::fs::write(repo.join("seed.sql"), SEED).expect("seed");
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.test"])
            .args(args)
            .current_dir(&repo)
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    git(&["init", "--quiet"]);
    git(&["add", "-A"]);
    git(&["commit", "--quiet", "-m", "seed"]);
    preview_resolve::SourceCommit {
        repository: repo.display().to_string(),
        directory: String::new(),
        commit: git(&["rev-parse", "HEAD"]),
    }
}

fn resources(
    text: &str,
    environment: &str,
    commit: &preview_resolve::SourceCommit,
) -> Vec<Resource> {
    let spec = preview_spec::parse_spec("e2e.yaml", text).unwrap_or_else(|e| panic!("{e}"));
    let (spec, env, based_on) = match spec.environments.get(environment).cloned() {
        Some(named) => (spec, named, None),
        None => {
            let (spec, env) =
                preview_spec::clone_environment("e2e.yaml", text, "staging", environment)
                    .unwrap_or_else(|e| panic!("{e}"));
            (spec, env, Some("staging".to_owned()))
        }
    };
    let context = preview_resolve::Context {
        source: Some(commit.clone()),
        based_on,
        ..Default::default()
    };
    let resolved = preview_resolve::resolve_environment(&spec, &env, &context)
        .unwrap_or_else(|e| panic!("{e:?}"));
    desired_state(
        &resolved,
        &BTreeMap::from([
            ("project/API_KEY".to_owned(), "v1".to_owned()),
            ("project/MASKING_KEY".to_owned(), "v1".to_owned()),
        ]),
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
    let commit = source(dir.path());
    let store = Arc::new(
        Store::open_sqlite(&dir.path().join("preview.db"))
            .await
            .expect("store"),
    );
    let journal = |id: String| {
        let store = Arc::clone(&store);
        async move {
            store
                .journal(&id)
                .await
                .expect("journal")
                .into_iter()
                .map(|entry| entry.message)
                .collect::<Vec<_>>()
                .join("\n")
        }
    };
    let engine = Engine::new(
        Arc::clone(&store),
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
    let staging = resources(&spec(&image, 1), "staging", &commit);
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
    let log = journal(created.id.clone()).await;
    assert!(log.contains("seeded from seed.sql"), "{log}");
    let protections = runtime
        .isolation(&support::env_of("preview-e2e", "staging"))
        .await;
    assert!(protections.iter().all(|p| p.in_effect), "{protections:?}");

    let updated = resources(&spec(&image, 2), "staging", &commit);
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
        &commit,
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

    let clone = resources(&spec(&image, 1), "pr-1", &commit);
    let record = deploy(request("pr-1", Operation::Create, clone)).await;
    assert_eq!(
        record.status,
        DeploymentStatus::Committed,
        "{:?}",
        record.reason
    );
    let log = journal(record.id.clone()).await;
    assert!(log.contains("masked and copied from `staging`"), "{log}");

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
    second_cluster(
        &options,
        &image,
        &commit,
        &client_namespaces_of(&options).await,
    )
    .await;
}

async fn client_namespaces_of(options: &KubernetesOptions) -> Api<Namespace> {
    let (client, _) = preview_kubernetes::connect(&options.cluster)
        .await
        .expect("client");
    Api::all(client)
}

/// With `PREVIEW_TEST_KUBECONFIG_2`: `production` made on that cluster, present there and absent from the first
/// (`first`), then deleted.
async fn second_cluster(
    first_options: &KubernetesOptions,
    image: &str,
    commit: &preview_resolve::SourceCommit,
    first: &Api<Namespace>,
) {
    let Some(kubeconfig) = std::env::var_os("PREVIEW_TEST_KUBECONFIG_2") else {
        println!(
            "SKIPPED (second cluster): PREVIEW_TEST_KUBECONFIG_2 is not set; no second cluster for physical isolation"
        );
        return;
    };
    let options = KubernetesOptions {
        cluster: ClusterConfig {
            kubeconfig: Some(kubeconfig.into()),
            ..ClusterConfig::default()
        },
        ..first_options.clone()
    };
    let runtime = Arc::new(
        support::Cluster::connect(&options)
            .await
            .expect("connects to the second cluster"),
    );
    let dir = TempDir::new("real-cluster-2");
    let store = Arc::new(
        Store::open_sqlite(&dir.path().join("preview.db"))
            .await
            .expect("store"),
    );
    let engine = Engine::new(
        store,
        runtime as Arc<dyn Runtime>,
        "e2e-2",
        EngineConfig {
            step_timeout: Duration::from_secs(300),
            ..EngineConfig::default()
        },
    );
    let production = resources(&spec(image, 1), "production", commit);
    let (_, handle) = engine
        .start(request("production", Operation::Create, production))
        .await
        .expect("starts");
    let record = handle.await.expect("runs");
    assert_eq!(
        record.status,
        DeploymentStatus::Committed,
        "{:?}",
        record.reason
    );
    let there = client_namespaces_of(&options).await;
    let selector = "preview.dev/project=preview-e2e,preview.dev/environment=production";
    let count = |api: &Api<Namespace>| {
        let api = api.clone();
        async move {
            api.list(&ListParams::default().labels(selector))
                .await
                .expect("namespaces")
                .items
                .len()
        }
    };
    assert_eq!(
        count(&there).await,
        1,
        "production is on the second cluster"
    );
    assert_eq!(count(first).await, 0, "and not on the first");
    let (_, handle) = engine
        .start(request("production", Operation::Delete, Vec::new()))
        .await
        .expect("starts");
    let record = handle.await.expect("runs");
    assert_eq!(
        record.status,
        DeploymentStatus::Committed,
        "{:?}",
        record.reason
    );
}
