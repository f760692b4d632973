//! The engine over the Kubernetes runtime and the fake API server: a failed rollout rolled back by applying the
//! recorded objects again, and the fault suite — at every write the cluster receives during a create and an update
//! (inventory entries and objects alike), the server failing it, or the daemon stopping dead before or after its
//! effect and another recovering — ending with the old objects or the new ones, never a mix, and nothing on the
//! cluster that no inventory entry names.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use preview_deploy::{DeploymentRequest, Engine, EngineConfig, Runtime};
use preview_plan::Resource;
use preview_store::{DeploymentRecord, DeploymentStatus, Operation, Store};
use preview_testing::TempDir;
use preview_testing::kubernetes::WriteFault;
use support::{Cluster, changed, env, kubernetes_example, resources};

struct Setup {
    cluster: Cluster,
    store: Arc<Store>,
    _dir: TempDir,
}

impl Setup {
    async fn new() -> Setup {
        let dir = TempDir::new("kubernetes-engine");
        let store = Arc::new(
            Store::open_sqlite(&dir.path().join("preview.db"))
                .await
                .expect("store"),
        );
        Setup {
            cluster: Cluster::start().await,
            store,
            _dir: dir,
        }
    }

    fn engine(&self, runtime: Arc<dyn Runtime>) -> Arc<Engine> {
        Engine::new(
            Arc::clone(&self.store),
            runtime,
            "test-daemon",
            EngineConfig {
                step_timeout: Duration::from_secs(30),
                retry_delay: Duration::from_millis(20),
                ..EngineConfig::default()
            },
        )
    }

    /// What the cluster holds for the environment, resource by resource (by the inventory and the live objects),
    /// after checking that every object `preview` made in its namespace is one an entry names.
    async fn cluster_state(&self, environment: &str, ids: &[String]) -> BTreeMap<String, String> {
        let mut state = BTreeMap::new();
        for id in ids {
            if let Some(observed) = self
                .cluster
                .runtime
                .observe(&env(environment), id)
                .await
                .expect("observe")
            {
                state.insert(id.clone(), observed.hash);
            }
        }
        let entries: Vec<serde_json::Value> = self
            .cluster
            .api
            .objects("configmaps", Some("preview-system"))
            .into_iter()
            .filter_map(|c| serde_json::from_str(c["data"]["inventory"].as_str()?).ok())
            .collect();
        let recorded =
            |kind: &str, namespace: &str, name: &str| {
                entries.iter().any(|e| {
                    e["objects"].as_array().into_iter().flatten().any(|o| {
                        o["kind"] == kind && o["namespace"] == namespace && o["name"] == name
                    })
                })
            };
        let spaces: Vec<&str> = entries
            .iter()
            .filter_map(|e| e["namespace"].as_str())
            .collect();
        for namespace in self
            .cluster
            .api
            .namespaces()
            .iter()
            .filter(|n| n.starts_with("shop-"))
        {
            assert!(
                spaces.contains(&namespace.as_str()),
                "Namespace {namespace} is on the cluster but in no inventory entry"
            );
            for (plural, kind) in [
                ("deployments", "Deployment"),
                ("statefulsets", "StatefulSet"),
                ("services", "Service"),
                ("secrets", "Secret"),
                ("jobs", "Job"),
                ("ingresses", "Ingress"),
                ("networkpolicies", "NetworkPolicy"),
                ("resourcequotas", "ResourceQuota"),
                ("limitranges", "LimitRange"),
                ("serviceaccounts", "ServiceAccount"),
                ("persistentvolumeclaims", "PersistentVolumeClaim"),
                ("statefulsets", "StatefulSet"),
            ] {
                for object in self.cluster.api.objects(plural, Some(namespace)) {
                    let name = object["metadata"]["name"].as_str().unwrap_or_default();
                    if object["metadata"]["annotations"]["preview.dev/resource"].is_string() {
                        assert!(
                            recorded(kind, namespace, name),
                            "{kind} {namespace}/{name} is on the cluster but in no inventory entry"
                        );
                    }
                }
            }
        }
        state
    }
}

fn request(environment: &str, operation: Operation, desired: Vec<Resource>) -> DeploymentRequest {
    DeploymentRequest {
        project: "shop".into(),
        environment: environment.into(),
        operation,
        based_on: None,
        source_commit: None,
        follows: None,
        keep_settings: false,
        desired,
    }
}

async fn deploy(engine: &Arc<Engine>, request: DeploymentRequest) -> DeploymentRecord {
    let (_, handle) = engine.start(request).await.expect("starts");
    handle.await.expect("runs")
}

fn hashes(resources: &[Resource]) -> BTreeMap<String, String> {
    resources
        .iter()
        .map(|r| (r.id.clone(), r.hash.clone()))
        .collect()
}

fn ids(a: &[Resource], b: &[Resource]) -> Vec<String> {
    let mut ids: Vec<String> = a.iter().chain(b).map(|r| r.id.clone()).collect();
    ids.sort();
    ids.dedup();
    ids
}

/// The update the suite makes: a new secret value, more replicas, a new job run, a route gone.
fn updated(example: &[Resource]) -> Vec<Resource> {
    example
        .iter()
        .filter(|r| r.id != "route/storefront")
        .map(|r| match r.id.as_str() {
            "app/catalog" => changed(r, |c| c["replicas"] = 2.into()),
            "job/migrate" => changed(r, |c| {
                c["command"] = "bin/shop-catalog migrate --twice".into()
            }),
            "secrets" => changed(r, |c| {
                c["names"]["service:storefront/SESSION_KEY"] = "v2".into()
            }),
            _ => r.clone(),
        })
        .collect()
}

#[tokio::test]
async fn a_rollout_that_cannot_succeed_is_rolled_back_to_the_recorded_objects() {
    let setup = Setup::new().await;
    let runtime: Arc<dyn Runtime> = setup.cluster.runtime.clone();
    let engine = setup.engine(runtime);
    let example = resources(&kubernetes_example(), "staging");
    let created = deploy(
        &engine,
        request("staging", Operation::Create, example.clone()),
    )
    .await;
    assert_eq!(
        created.status,
        DeploymentStatus::Committed,
        "{:?}",
        created.reason
    );
    let namespace = setup.cluster.namespace("staging");
    let before = setup
        .cluster
        .api
        .object("deployments", Some(&namespace), "storefront")
        .expect("deployment");

    let broken: Vec<Resource> = example
        .iter()
        .map(|r| {
            if r.id == "app/storefront" {
                changed(r, |c| c["image"] = "registry.example/unpullable:2".into())
            } else {
                r.clone()
            }
        })
        .collect();
    let record = deploy(&engine, request("staging", Operation::Update, broken)).await;
    assert_eq!(record.status, DeploymentStatus::RolledBack);
    let reason = record.reason.clone().unwrap_or_default();
    assert!(reason.contains("ImagePullBackOff"), "{reason}");
    let after = setup
        .cluster
        .api
        .object("deployments", Some(&namespace), "storefront")
        .expect("deployment");
    assert_eq!(
        after["spec"]["template"]["spec"]["containers"][0]["image"],
        before["spec"]["template"]["spec"]["containers"][0]["image"],
        "the recorded objects are applied again"
    );
    assert_eq!(
        setup.cluster_state("staging", &ids(&example, &[])).await,
        hashes(&example)
    );
    // And the environment goes whole: its namespace included.
    let deleted = deploy(&engine, request("staging", Operation::Delete, Vec::new())).await;
    assert_eq!(
        deleted.status,
        DeploymentStatus::Committed,
        "{:?}",
        deleted.reason
    );
    assert!(!setup.cluster.api.namespaces().contains(&namespace));
}

/// The writes a deployment of `operation` sends when nothing goes wrong.
async fn writes_of(operation: Operation, old: &[Resource], new: &[Resource]) -> u64 {
    let setup = Setup::new().await;
    let plain: Arc<dyn Runtime> = setup.cluster.runtime.clone();
    if operation != Operation::Create {
        let record = deploy(
            &setup.engine(plain.clone()),
            request("staging", Operation::Create, old.to_vec()),
        )
        .await;
        assert_eq!(record.status, DeploymentStatus::Committed);
    }
    let before = setup.cluster.api.writes();
    let record = deploy(
        &setup.engine(plain),
        request("staging", operation, new.to_vec()),
    )
    .await;
    assert_eq!(
        record.status,
        DeploymentStatus::Committed,
        "{:?}",
        record.reason
    );
    setup.cluster.api.writes() - before
}

/// Runs `request` with `fault` at the cluster's `at`-th write from now on — the server failing it, or the daemon
/// stopping dead before or after its effect and a new one recovering — and returns how it ended; `None` when the
/// deployment sent fewer writes.
async fn run_with_fault(
    setup: &Setup,
    request: DeploymentRequest,
    at: u64,
    fault: WriteFault,
) -> Option<DeploymentRecord> {
    let plain: Arc<dyn Runtime> = setup.cluster.runtime.clone();
    let api = &setup.cluster.api;
    let base = api.writes();
    api.fault_write(at, fault);
    let engine = setup.engine(plain.clone());
    let (_, handle) = engine.start(request).await.expect("starts");
    if matches!(fault, WriteFault::FailBefore | WriteFault::FailAfter) {
        let record = handle.await.expect("runs");
        api.clear_faults();
        return (api.writes() >= base + at).then_some(record);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while api.writes() < base + at {
        if handle.is_finished() {
            api.clear_faults();
            return None;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "write {at} never came"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The daemon stops dead here: its deployment is dropped mid-request; another recovers it.
    handle.abort();
    let _ = handle.await;
    drop(engine);
    api.clear_faults();
    let recovered = setup.engine(plain).recover().await.expect("recovers");
    assert_eq!(recovered.len(), 1, "the stopped deployment is recovered");
    Some(recovered[0].clone())
}

async fn suite(operation: Operation, faults: &[WriteFault]) {
    let example = resources(&kubernetes_example(), "staging");
    let (old, new) = match operation {
        Operation::Create => (Vec::new(), example.clone()),
        _ => (example.clone(), updated(&example)),
    };
    let writes = writes_of(operation, &old, &new).await;
    assert!(writes > new.len() as u64, "{writes} writes");
    let mut ended = BTreeMap::<String, usize>::new();
    for fault in faults {
        for at in 1..=writes {
            let setup = Setup::new().await;
            if operation != Operation::Create {
                let plain: Arc<dyn Runtime> = setup.cluster.runtime.clone();
                let record = deploy(
                    &setup.engine(plain),
                    request("staging", Operation::Create, old.clone()),
                )
                .await;
                assert_eq!(record.status, DeploymentStatus::Committed);
            }
            let Some(record) = run_with_fault(
                &setup,
                request("staging", operation, new.clone()),
                at,
                *fault,
            )
            .await
            else {
                break;
            };
            let state = setup.cluster_state("staging", &ids(&old, &new)).await;
            let recorded = setup
                .store
                .recorded_state("shop", "staging")
                .await
                .expect("recorded");
            match record.status {
                DeploymentStatus::Committed => {
                    assert_eq!(
                        state,
                        hashes(&new),
                        "{fault:?}@{at}: committed with the new objects"
                    );
                    assert_eq!(recorded, new);
                }
                DeploymentStatus::RolledBack => {
                    assert_eq!(
                        state,
                        hashes(&old),
                        "{fault:?}@{at}: rolled back to the old objects"
                    );
                    assert_eq!(recorded, old);
                    if old.is_empty() {
                        assert!(
                            setup
                                .cluster
                                .api
                                .namespaces()
                                .iter()
                                .all(|n| !n.starts_with("shop-")),
                            "{fault:?}@{at}: a namespace left"
                        );
                    }
                }
                other => panic!("{fault:?}@{at}: ended {other}: {:?}", record.reason),
            }
            *ended.entry(format!("{:?}", record.status)).or_default() += 1;
        }
    }
    println!("{operation:?}: {writes} writes, each faulted as {faults:?}: {ended:?}");
    // Faults before the point of no return roll back; past it (an update's new job run) the deployment completes.
    assert!(ended.contains_key("RolledBack"), "{ended:?}");
    if operation == Operation::Update {
        assert!(ended.contains_key("Committed"), "{ended:?}");
    }
}

#[tokio::test]
async fn a_failed_write_anywhere_in_a_create_leaves_no_object_behind() {
    suite(Operation::Create, &[WriteFault::FailAfter]).await;
}

#[tokio::test]
async fn a_daemon_stopping_at_any_write_of_a_create_leaves_no_object_behind() {
    suite(
        Operation::Create,
        &[WriteFault::HoldBefore, WriteFault::HoldAfter],
    )
    .await;
}

#[tokio::test]
async fn a_failed_write_or_a_stop_anywhere_in_an_update_leaves_the_old_or_the_new_objects() {
    suite(
        Operation::Update,
        &[
            WriteFault::FailAfter,
            WriteFault::HoldBefore,
            WriteFault::HoldAfter,
        ],
    )
    .await;
}
