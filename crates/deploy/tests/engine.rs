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

/// `text` with `from` replaced by `to`; fails the test if `from` is not there, so that a changed example cannot
/// quietly make a scenario test nothing.
fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the example no longer has `{from}`");
    text.replace(from, to)
}

fn updated() -> Vec<Resource> {
    let source = replaced(
        &replaced(
            EXAMPLE,
            "      SHOP_MODE: staging",
            "      SHOP_MODE: staging\n      FEATURE: on",
        ),
        "    depends_on: [db, migrate]",
        "    replicas: 2\n    depends_on: [db, migrate]",
    );
    desired(&source, "staging")
}

/// The example's staging with one more app, `extra`: a state whose plan from the plain one creates a resource.
fn with_extra_app() -> Vec<Resource> {
    let source = replaced(
        EXAMPLE,
        "\nenvironments:",
        "  extra:\n    type: app\n    run: ./extra\n    image: extra:1\n\nenvironments:",
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
        _version: &str,
    ) -> Result<preview_secrets::Secret, RuntimeError> {
        Ok(preview_secrets::Secret::new("test value".to_owned()))
    }
}

struct Setup {
    _dir: TempDir,
    store: Arc<Store>,
    runtime: Arc<RecordingRuntime>,
    fault: Option<Fault>,
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
            fault,
        }
    }

    fn engine(&self, timeout: Duration) -> Arc<Engine> {
        self.engine_with(EngineConfig {
            step_timeout: timeout,
            retry_delay: Duration::from_millis(20),
            ..EngineConfig::default()
        })
    }

    fn engine_with(&self, config: EngineConfig) -> Arc<Engine> {
        Engine::new(
            Arc::clone(&self.store),
            self.runtime.clone(),
            "test-daemon",
            config,
        )
    }

    fn fault_at(&self) -> u64 {
        self.fault.map_or(0, |f| f.at)
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
async fn an_error_before_the_point_of_no_return_rolls_back_and_after_it_is_retried() {
    let want = desired(EXAMPLE, "staging");
    let create = preview_plan::plan_deployment("staging", &want, &[]);
    // A new environment's jobs act only on what its plan makes: every step of a create can be rolled back.
    assert!(
        create
            .steps
            .iter()
            .any(|s| s.kind == preview_plan::ResourceKind::Job),
        "the example has a job"
    );
    assert_eq!(create.point_of_no_return, None);
    let point = create.steps.len() as u64;
    let mut scenarios = 0;
    for k in 1..=create.steps.len() as u64 {
        let setup = Setup::new(Some(Fault {
            at: k,
            kind: FaultKind::Fail,
        }))
        .await;
        let engine = setup.engine(Duration::from_secs(5));
        let record = deploy(&engine, request("staging", Operation::Create, want.clone())).await;
        if k <= point {
            // Create: nothing may remain.
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
        } else {
            // Past the point the failed step is tried again (the fault fires once) and the deployment completes.
            assert_eq!(
                record.status,
                DeploymentStatus::Committed,
                "create, fault at {k}"
            );
            assert_state(&setup, "staging", &want).await;
            let journal = setup.store.journal(&record.id).await.expect("journal");
            assert!(
                journal.iter().any(|e| e.message.contains("tried again")),
                "fault at {k}: the journal shows the retry"
            );
            assert!(!journal.iter().any(|e| e.phase == Phase::Compensate));
        }
        scenarios += 1;
    }
    let before = want.clone();
    let update = preview_plan::plan_deployment("staging", &updated(), &before);
    assert!(!update.steps.is_empty(), "the update changes something");
    // The steps before the point are exactly the operations before it: the steps after it wait for all of those.
    let point = update
        .point_of_no_return
        .expect("the update runs a job of an environment that exists") as u64;
    assert!(point < update.steps.len() as u64, "{point}");
    for k in 1..=update.steps.len() as u64 {
        // Update: operations 1..=8 built the previous state; the fault hits the update's k-th.
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
        if k <= point {
            assert_eq!(
                record.status,
                DeploymentStatus::RolledBack,
                "update, fault at {k}"
            );
            assert_state(&setup, "staging", &before).await;
        } else {
            assert_eq!(
                record.status,
                DeploymentStatus::Committed,
                "update, fault at {k}"
            );
            assert_state(&setup, "staging", &updated()).await;
        }
        scenarios += 1;
    }
    assert_eq!(scenarios, create.steps.len() + update.steps.len());
}

#[tokio::test]
async fn a_delete_that_fails_after_its_point_of_no_return_rolls_forward() {
    let want = desired(EXAMPLE, "staging");
    let delete = preview_plan::plan_deployment("staging", &[], &want);
    let point = delete
        .point_of_no_return
        .expect("a delete has a point of no return");
    assert!(
        delete.steps[point..].iter().any(|s| s.resource == "space"),
        "removing the space is past the point"
    );
    assert!(
        preview_plan::render_plan(&delete).contains("point of no return"),
        "the plan shows the point"
    );
    // The last operation of the delete — removing the space — fails once.
    let setup = Setup::new(Some(Fault {
        at: (want.len() + delete.steps.len()) as u64,
        kind: FaultKind::Fail,
    }))
    .await;
    let engine = setup.engine(Duration::from_secs(5));
    deploy(&engine, request("staging", Operation::Create, want.clone())).await;
    let record = deploy(&engine, request("staging", Operation::Delete, vec![])).await;
    assert_eq!(
        record.status,
        DeploymentStatus::Committed,
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
    let journal = setup.store.journal(&record.id).await.expect("journal");
    let space = delete
        .steps
        .iter()
        .find(|s| s.resource == "space")
        .expect("space")
        .index as i64;
    let failures = journal
        .iter()
        .filter(|e| e.step == space && e.event == JournalEvent::Failed)
        .count();
    let dones = journal
        .iter()
        .filter(|e| e.step == space && e.event == JournalEvent::Done)
        .count();
    assert_eq!((failures, dones), (1, 1), "removed on the second try");
    assert!(
        !journal.iter().any(|e| e.phase == Phase::Compensate),
        "nothing undone"
    );
}

#[tokio::test]
async fn a_deployment_that_cannot_complete_is_retried_later_and_can_be_abandoned() {
    let want = desired(EXAMPLE, "staging");
    let delete = preview_plan::plan_deployment("staging", &[], &want);
    let point = delete.point_of_no_return.expect("point");
    // From the first step past the point on, every operation fails.
    let setup = Setup::new(Some(Fault {
        at: (want.len() + point + 1) as u64,
        kind: FaultKind::FailFrom,
    }))
    .await;
    let engine = setup.engine_with(EngineConfig {
        step_timeout: Duration::from_secs(5),
        forward_attempts: 2,
        retry_delay: Duration::from_millis(1000),
        ..EngineConfig::default()
    });
    deploy(&engine, request("staging", Operation::Create, want.clone())).await;
    let record = deploy(&engine, request("staging", Operation::Delete, vec![])).await;
    assert_eq!(record.status, DeploymentStatus::Failed);
    let first_reason = record.reason.clone().expect("reason");
    assert!(first_reason.contains("injected failure"), "{first_reason}");
    assert!(
        record
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("past the point of no return")
    );
    assert_eq!(record.attempts, 1);
    // It keeps the environment and is not retried before its delay…
    assert!(matches!(
        engine
            .start(request("staging", Operation::Update, want.clone()))
            .await,
        Err(EngineError::Busy { .. })
    ));
    assert!(
        engine.recover().await.expect("recover").is_empty(),
        "not due yet"
    );
    // …then it is, goes forward (not back), fails again, keeps its first reason and waits longer.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let again = engine.recover().await.expect("recover");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].status, DeploymentStatus::Failed);
    assert_eq!(again[0].reason.as_deref(), Some(first_reason.as_str()));
    assert_eq!(again[0].attempts, 2);
    assert!(
        engine.recover().await.expect("recover").is_empty(),
        "not due yet"
    );
    let journal = setup.store.journal(&record.id).await.expect("journal");
    assert!(
        !journal.iter().any(|e| e.phase == Phase::Compensate),
        "never rolled back"
    );
    // An operator gives up: the environment is free and marked, with what may be left.
    let abandoned = engine.abandon(&record.id).await.expect("abandon");
    assert_eq!(abandoned.status, DeploymentStatus::Abandoned);
    let marks = setup.store.attention("shop").await.expect("attention");
    assert_eq!(marks.len(), 1);
    assert!(
        marks[0].note.contains("delete space) not completed"),
        "{}",
        marks[0].note
    );
    assert!(matches!(
        engine.abandon(&record.id).await,
        Err(EngineError::Conflict(_))
    ));
    let journal = setup.store.journal(&record.id).await.expect("journal");
    assert!(
        journal
            .last()
            .expect("entry")
            .message
            .starts_with("abandoned by an operator")
    );
    assert!(engine.recover().await.expect("recover").is_empty());
}

#[tokio::test]
async fn a_rollback_that_cannot_finish_keeps_its_reason_and_backs_off() {
    let want = desired(EXAMPLE, "staging");
    // The second operation fails, and so does every later one: the rollback of the first cannot finish.
    let setup = Setup::new(Some(Fault {
        at: 2,
        kind: FaultKind::FailFrom,
    }))
    .await;
    let engine = setup.engine_with(EngineConfig {
        step_timeout: Duration::from_secs(5),
        retry_delay: Duration::from_millis(1000),
        ..EngineConfig::default()
    });
    let record = deploy(&engine, request("staging", Operation::Create, want)).await;
    assert_eq!(record.status, DeploymentStatus::Failed);
    let reason = record.reason.clone().expect("reason");
    assert!(
        engine.recover().await.expect("recover").is_empty(),
        "backs off"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let again = engine.recover().await.expect("recover");
    assert_eq!(again.len(), 1);
    assert_eq!(
        again[0].reason.as_deref(),
        Some(reason.as_str()),
        "the reason does not grow"
    );
    assert_eq!(again[0].attempts, 2);
    assert!(
        again[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("the rollback did not finish")
    );
    assert!(
        engine.recover().await.expect("recover").is_empty(),
        "waits longer now"
    );
}

/// A store that holds back the answer of one read of recorded state until the test lets it go: the read is made,
/// and a commit can land before the deployment that made it goes on.
struct HeldRead {
    inner: Box<dyn preview_store::driver::Driver>,
    armed: Arc<std::sync::atomic::AtomicBool>,
    reached: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Notify>,
}

#[async_trait::async_trait]
impl preview_store::driver::Driver for HeldRead {
    fn now_sql(&self) -> &'static str {
        self.inner.now_sql()
    }

    async fn query(
        &self,
        sql: &str,
        params: Vec<preview_store::driver::Param>,
    ) -> Result<Vec<preview_store::driver::Row>, preview_store::driver::DriverError> {
        let rows = self.inner.query(sql, params).await;
        if sql.contains("FROM resources")
            && self.armed.swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            self.reached.notify_one();
            self.release.notified().await;
        }
        rows
    }

    async fn transaction(
        &self,
        statements: Vec<preview_store::driver::Statement>,
    ) -> Result<(), preview_store::driver::DriverError> {
        self.inner.transaction(statements).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_that_commits_while_another_is_planned_makes_the_other_plan_again() {
    let setup = Setup::new(None).await;
    let (plain, extra) = (desired(EXAMPLE, "staging"), with_extra_app());
    let first = setup.engine(Duration::from_secs(30));
    deploy(&first, request("staging", Operation::Create, plain.clone())).await;
    // A second engine on the same store file, one of whose reads of recorded state is held back.
    let (armed, reached, release) = (
        Arc::new(std::sync::atomic::AtomicBool::new(true)),
        Arc::new(tokio::sync::Notify::new()),
        Arc::new(tokio::sync::Notify::new()),
    );
    let held = {
        let (armed, reached, release) = (armed.clone(), reached.clone(), release.clone());
        Store::open_sqlite_wrapped(&setup._dir.path().join("preview.db"), move |inner| {
            Box::new(HeldRead {
                inner,
                armed,
                reached,
                release,
            })
        })
        .await
        .expect("store")
    };
    // The same daemon's id: the in-memory runtime's environments live with it.
    let second = Engine::new(
        Arc::new(held),
        setup.runtime.clone(),
        "test-daemon",
        EngineConfig::default(),
    );
    // The second engine reads `staging` as it is (plain) and wants it plain: nothing to do, it thinks…
    let planning = tokio::spawn({
        let (second, plain) = (Arc::clone(&second), plain.clone());
        async move {
            let (_, handle) = second
                .start(request("staging", Operation::Update, plain))
                .await
                .expect("starts");
            handle.await.expect("runs")
        }
    });
    reached.notified().await;
    // …while the first adds an app and commits.
    let added = deploy(&first, request("staging", Operation::Update, extra.clone())).await;
    assert_eq!(added.status, DeploymentStatus::Committed);
    release.notify_one();
    let late = planning.await.expect("second");
    assert_eq!(late.status, DeploymentStatus::Committed);
    assert!(
        late.plan.steps.iter().any(|s| s.resource == "app/extra"),
        "planned again from the committed state: {:?}",
        late.plan
            .steps
            .iter()
            .map(|s| &s.resource)
            .collect::<Vec<_>>()
    );
    assert_state(&setup, "staging", &plain).await;
}

#[tokio::test]
async fn a_cancel_past_the_point_of_no_return_completes_the_deployment() {
    let want = desired(EXAMPLE, "staging");
    let delete = preview_plan::plan_deployment("staging", &[], &want);
    // The delete's last operation — removing the space, past the point — hangs once; a cancel lands meanwhile.
    let hanging = (want.len() + delete.steps.len()) as u64;
    let setup = Setup::new(Some(Fault {
        at: hanging,
        kind: FaultKind::Hang,
    }))
    .await;
    let engine = setup.engine(Duration::from_secs(1));
    deploy(&engine, request("staging", Operation::Create, want)).await;
    let (record, handle) = engine
        .start(request("staging", Operation::Delete, vec![]))
        .await
        .expect("starts");
    wait_for_operations(&setup, hanging).await;
    assert!(engine.cancel(&record.id), "it runs here");
    let finished = handle.await.expect("runs");
    assert_eq!(
        finished.status,
        DeploymentStatus::Committed,
        "{:?}",
        finished.reason
    );
    assert_state(&setup, "staging", &[]).await;
    let journal = setup.store.journal(&record.id).await.expect("journal");
    assert!(
        journal.iter().any(|e| e
            .message
            .contains("a cancel came past the point of no return")),
        "the journal says why the cancel was not followed"
    );
    assert!(
        !journal.iter().any(|e| e.phase == Phase::Compensate),
        "nothing undone"
    );
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
            Operation::Create,
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
    // Every operation stops for good at the fault: wait until the deployment got there.
    if fault == FaultKind::StopVerify {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !setup.runtime.verify_reached() {
            assert!(
                std::time::Instant::now() < deadline,
                "verification never began"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    } else {
        wait_for_operations(setup, setup.fault_at()).await;
    }
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
    assert_eq!(scenarios, 2 * want.len());
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

#[tokio::test]
async fn a_refused_pre_flight_check_fails_the_deployment_before_anything_changes() {
    let setup = Setup::new(None).await;
    let engine = setup.engine(Duration::from_secs(5));
    setup
        .runtime
        .refuse_preflight(Some("Deployment web: 422 Invalid: spec.template: bad"));
    let want = desired(EXAMPLE, "staging");
    let record = deploy(&engine, request("staging", Operation::Create, want.clone())).await;
    assert_eq!(record.status, DeploymentStatus::RolledBack);
    assert_eq!(
        record.reason.as_deref(),
        Some("the pre-flight check failed: Deployment web: 422 Invalid: spec.template: bad")
    );
    assert_eq!(setup.runtime.operations(), 0, "no step ran");
    assert!(setup.runtime_state("staging").is_empty());
    // It was asked about the whole state the deployment leads to.
    assert_eq!(setup.runtime.preflights(), vec![want.clone()]);

    setup.runtime.refuse_preflight(None);
    let record = deploy(&engine, request("staging", Operation::Create, want.clone())).await;
    assert_eq!(record.status, DeploymentStatus::Committed);
    // An update is checked as the whole state it leads to, the unchanged resources included; a refusal leaves the
    // environment as it was.
    setup.runtime.refuse_preflight(Some("refused"));
    let before = setup.runtime.operations();
    let record = deploy(&engine, request("staging", Operation::Update, updated())).await;
    assert_eq!(record.status, DeploymentStatus::RolledBack);
    assert_eq!(setup.runtime.operations(), before);
    assert_state(&setup, "staging", &want).await;
    assert_eq!(setup.runtime.preflights().last(), Some(&updated()));
    // A deletion leads to nothing to check.
    let record = deploy(&engine, request("staging", Operation::Delete, Vec::new())).await;
    assert_eq!(record.status, DeploymentStatus::Committed);
}
