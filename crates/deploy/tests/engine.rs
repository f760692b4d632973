//! The engine against the recording runtime and a SQLite store: commits, rollbacks at every step, timeouts,
//! cancels, the one-deployment-per-environment rule, and recovery after a crash at every step.

use std::sync::Arc;
use std::time::Duration;

use preview_deploy::*;
use preview_plan::{Resource, desired_state};
use preview_store::{DeploymentRecord, DeploymentStatus, JournalEvent, Operation, Phase, Store};
use preview_testing::TempDir;

const EXAMPLE: &str = include_str!("../../../examples/shop/preview.yaml");

fn desired(source: &str, environment: &str) -> Vec<Resource> {
    let spec = preview_spec::parse_spec("shop.yaml", source).unwrap_or_else(|e| panic!("{e}"));
    desired_state(
        &preview_resolve::resolve_environment(
            &spec,
            &spec.environments[environment],
            &preview_resolve::Context::default(),
        )
        .unwrap_or_else(|e| panic!("{e:?}")),
        &Default::default(),
    )
}

fn updated() -> Vec<Resource> {
    let source = EXAMPLE
        .replace(
            "      SHOP_MODE: staging",
            "      SHOP_MODE: staging\n      FEATURE: on",
        )
        .replace(
            "    depends_on: [db, migrate]",
            "    replicas: 2\n    depends_on: [db, migrate]",
        );
    desired(&source, "staging")
}

/// Every secret has a value here; the engine tests are about transactions, not secrets.
struct TestSecrets;

#[async_trait::async_trait]
impl SecretSource for TestSecrets {
    async fn reveal(
        &self,
        _env: &EnvironmentAddress,
        _name: &str,
    ) -> Result<preview_secrets::Secret, RuntimeError> {
        Ok(preview_secrets::Secret::new("test value".to_owned()))
    }
}

struct Setup {
    _dir: TempDir,
    store: Arc<Store>,
    runtime: Arc<RecordingRuntime>,
}

impl Setup {
    async fn new(fault: Option<Fault>) -> Setup {
        let dir = TempDir::new("engine");
        let store = Arc::new(
            Store::open_sqlite(&dir.path().join("preview.db"))
                .await
                .expect("store"),
        );
        let runtime = Arc::new(
            RecordingRuntime::in_memory()
                .with_fault(fault)
                .with_secrets(Arc::new(TestSecrets)),
        );
        Setup {
            _dir: dir,
            store,
            runtime,
        }
    }

    fn engine(&self, timeout: Duration) -> Arc<Engine> {
        let config = EngineConfig {
            step_timeout: timeout,
            ..EngineConfig::default()
        };
        Engine::new(
            Arc::clone(&self.store),
            self.runtime.clone(),
            "test-daemon",
            config,
        )
    }

    fn runtime_state(&self, environment: &str) -> Vec<Resource> {
        let address = EnvironmentAddress {
            project: "shop".into(),
            environment: environment.into(),
        };
        self.runtime.state(&address).into_values().collect()
    }
}

async fn wait_for_operations(setup: &Setup, count: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while setup.runtime.operations() < count {
        assert!(
            std::time::Instant::now() < deadline,
            "the runtime never reached operation {count}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn request(environment: &str, operation: Operation, desired: Vec<Resource>) -> DeploymentRequest {
    DeploymentRequest {
        project: "shop".into(),
        environment: environment.into(),
        operation,
        based_on: None,
        desired,
    }
}

async fn deploy(engine: &Arc<Engine>, request: DeploymentRequest) -> DeploymentRecord {
    let (_, handle) = engine.start(request).await.expect("starts");
    handle.await.expect("runs")
}

/// The runtime and the store agree, and hold exactly `expected`.
async fn assert_state(setup: &Setup, environment: &str, expected: &[Resource]) {
    assert_eq!(
        setup.runtime_state(environment),
        expected,
        "runtime state of {environment}"
    );
    assert_eq!(
        setup
            .store
            .recorded_state("shop", environment)
            .await
            .expect("recorded"),
        expected,
        "recorded state of {environment}"
    );
}

#[tokio::test]
async fn create_commits_and_journals_every_step() {
    let setup = Setup::new(None).await;
    let engine = setup.engine(Duration::from_secs(5));
    let want = desired(EXAMPLE, "staging");
    let record = deploy(&engine, request("staging", Operation::Create, want.clone())).await;
    assert_eq!(record.status, DeploymentStatus::Committed);
    assert!(record.plan.steps.len() >= 8);
    assert_state(&setup, "staging", &want).await;
    let journal = setup.store.journal(&record.id).await.expect("journal");
    for step in &record.plan.steps {
        let position = |event| {
            journal
                .iter()
                .position(|e| e.step as usize == step.index && e.event == event)
        };
        let (intent, done) = (position(JournalEvent::Intent), position(JournalEvent::Done));
        assert!(
            intent.is_some() && intent < done,
            "step {} journaled intent before result",
            step.index
        );
    }
    assert!(
        setup
            .store
            .environment("shop", "staging")
            .await
            .expect("env")
            .is_some()
    );
    // Re-deploying the same state is an empty plan that commits without touching anything.
    let again = deploy(&engine, request("staging", Operation::Update, want.clone())).await;
    assert_eq!(
        (again.status, again.plan.steps.len()),
        (DeploymentStatus::Committed, 0)
    );
}

#[tokio::test]
async fn an_error_at_any_step_rolls_everything_back() {
    let steps = desired(EXAMPLE, "staging").len() as u64;
    let mut scenarios = 0;
    for k in 1..=steps {
        // Create: nothing may remain.
        let setup = Setup::new(Some(Fault {
            at: k,
            kind: FaultKind::Fail,
        }))
        .await;
        let engine = setup.engine(Duration::from_secs(5));
        let record = deploy(
            &engine,
            request("staging", Operation::Create, desired(EXAMPLE, "staging")),
        )
        .await;
        assert_eq!(
            record.status,
            DeploymentStatus::RolledBack,
            "create, fault at {k}"
        );
        assert!(
            record
                .reason
                .as_deref()
                .unwrap_or("")
                .contains("injected failure"),
            "{:?}",
            record.reason
        );
        assert_state(&setup, "staging", &[]).await;
        assert!(
            setup
                .store
                .environment("shop", "staging")
                .await
                .expect("env")
                .is_none()
        );
        scenarios += 1;
    }
    let before = desired(EXAMPLE, "staging");
    let update_steps = preview_plan::plan_deployment("staging", &updated(), &before)
        .steps
        .len() as u64;
    for k in 1..=update_steps {
        // Update: the previous state must be back. Operations 1..=8 built it; the fault hits the update's k-th.
        let setup = Setup::new(Some(Fault {
            at: before.len() as u64 + k,
            kind: FaultKind::Fail,
        }))
        .await;
        let engine = setup.engine(Duration::from_secs(5));
        deploy(
            &engine,
            request("staging", Operation::Create, before.clone()),
        )
        .await;
        let record = deploy(&engine, request("staging", Operation::Update, updated())).await;
        assert_eq!(
            record.status,
            DeploymentStatus::RolledBack,
            "update, fault at {k}"
        );
        assert_state(&setup, "staging", &before).await;
        scenarios += 1;
    }
    println!("{scenarios} error scenarios");
}

#[tokio::test]
async fn a_hanging_step_times_out_and_rolls_back() {
    let setup = Setup::new(Some(Fault {
        at: 4,
        kind: FaultKind::Hang,
    }))
    .await;
    let engine = setup.engine(Duration::from_millis(200));
    let record = deploy(
        &engine,
        request("staging", Operation::Create, desired(EXAMPLE, "staging")),
    )
    .await;
    assert_eq!(record.status, DeploymentStatus::RolledBack);
    assert!(
        record.reason.as_deref().unwrap_or("").contains("timed out"),
        "{:?}",
        record.reason
    );
    assert_state(&setup, "staging", &[]).await;
}

#[tokio::test]
async fn cancel_rolls_back() {
    let setup = Setup::new(Some(Fault {
        at: 3,
        kind: FaultKind::Hang,
    }))
    .await;
    let engine = setup.engine(Duration::from_secs(60));
    let (record, handle) = engine
        .start(request(
            "staging",
            Operation::Create,
            desired(EXAMPLE, "staging"),
        ))
        .await
        .expect("starts");
    wait_for_operations(&setup, 3).await;
    assert!(engine.cancel(&record.id));
    let finished = handle.await.expect("runs");
    assert_eq!(finished.status, DeploymentStatus::RolledBack);
    assert_eq!(finished.reason.as_deref(), Some("cancelled"));
    assert_state(&setup, "staging", &[]).await;
    assert!(
        !engine.cancel(&record.id),
        "a finished deployment cannot be cancelled"
    );
}

#[tokio::test]
async fn a_second_deployment_to_the_same_environment_is_refused_by_name() {
    // The very first operation hangs, so the cancel below always lands while it runs.
    let setup = Setup::new(Some(Fault {
        at: 1,
        kind: FaultKind::Hang,
    }))
    .await;
    let engine = setup.engine(Duration::from_secs(60));
    let (first, handle) = engine
        .start(request(
            "staging",
            Operation::Create,
            desired(EXAMPLE, "staging"),
        ))
        .await
        .expect("starts");
    let refused = engine
        .start(request(
            "staging",
            Operation::Update,
            desired(EXAMPLE, "staging"),
        ))
        .await
        .map(|(record, _)| record.id)
        .expect_err("busy");
    assert_eq!(
        refused.to_string(),
        format!(
            "environment `staging` is busy: deployment {} is running; wait for it, or cancel it with `preview deploy cancel staging`",
            first.id
        )
    );
    // Cancel only once the hanging operation is under way, so that it is the one the cancel ends.
    wait_for_operations(&setup, 1).await;
    assert!(engine.cancel(&first.id), "the first deployment runs here");
    let finished = handle.await.expect("runs");
    assert_eq!(finished.status, DeploymentStatus::RolledBack);
    assert_state(&setup, "staging", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_environments_at_once_all_commit() {
    let setup = Setup::new(None).await;
    let engine = setup.engine(Duration::from_secs(30));
    let want = desired(EXAMPLE, "staging");
    let mut handles = Vec::new();
    for i in 0..50 {
        let (_, handle) = engine
            .start(request(&format!("pr-{i}"), Operation::Create, want.clone()))
            .await
            .expect("starts");
        handles.push(handle);
    }
    for handle in handles {
        assert_eq!(
            handle.await.expect("runs").status,
            DeploymentStatus::Committed
        );
    }
    assert_eq!(setup.store.environment_count().await.expect("count"), 50);
    assert_state(&setup, "pr-49", &want).await;
}

/// Stops the deployment dead at operation `at` (before or after its effect), as a crash would, then recovers
/// with a new engine over the same store and runtime.
async fn crash_and_recover(
    setup: &Setup,
    request: DeploymentRequest,
    fault: FaultKind,
) -> DeploymentRecord {
    let engine = setup.engine(Duration::from_secs(60));
    let (record, handle) = engine.start(request).await.expect("starts");
    // Every operation stops for good at the fault; give the steps before it time to run.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        !handle.is_finished(),
        "{fault:?}: the deployment is stopped dead at the fault, not finished"
    );
    handle.abort();
    let _ = handle.await;
    let restarted = setup.engine(Duration::from_secs(60));
    let recovered = restarted.recover().await.expect("recovers");
    assert_eq!(recovered.len(), 1, "the crashed deployment is recovered");
    assert_eq!(recovered[0].id, record.id);
    recovered[0].clone()
}

#[tokio::test]
async fn recovery_after_a_crash_at_any_step_leaves_the_old_or_the_new_state() {
    let want = desired(EXAMPLE, "staging");
    let mut scenarios = 0;
    for kind in [FaultKind::StopBefore, FaultKind::StopAfter] {
        for k in 1..=want.len() as u64 {
            let setup = Setup::new(Some(Fault { at: k, kind })).await;
            let record = crash_and_recover(
                &setup,
                request("staging", Operation::Create, want.clone()),
                kind,
            )
            .await;
            match record.status {
                DeploymentStatus::RolledBack => assert_state(&setup, "staging", &[]).await,
                DeploymentStatus::Committed => assert_state(&setup, "staging", &want).await,
                other => panic!("{kind:?}@{k}: ended {other}"),
            }
            let journal = setup.store.journal(&record.id).await.expect("journal");
            if record.status == DeploymentStatus::RolledBack {
                assert!(
                    journal.iter().any(|e| e.phase == Phase::Compensate)
                        || k == 1 && kind == FaultKind::StopBefore
                );
                assert!(
                    record
                        .reason
                        .as_deref()
                        .unwrap_or("")
                        .contains("the daemon stopped"),
                    "{:?}",
                    record.reason
                );
            }
            scenarios += 1;
        }
    }
    println!("{scenarios} crash scenarios");
}

#[tokio::test]
async fn a_crash_when_only_verification_remained_commits_on_recovery() {
    let want = desired(EXAMPLE, "staging");
    let setup = Setup::new(Some(Fault {
        at: 1,
        kind: FaultKind::StopVerify,
    }))
    .await;
    let record = crash_and_recover(
        &setup,
        request("staging", Operation::Create, want.clone()),
        FaultKind::StopVerify,
    )
    .await;
    assert_eq!(record.status, DeploymentStatus::Committed);
    assert_state(&setup, "staging", &want).await;
    assert!(
        setup
            .store
            .environment("shop", "staging")
            .await
            .expect("env")
            .is_some()
    );
}
