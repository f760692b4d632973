//! One suite, run against both drivers: the embedded SQLite file and a throw-away PostgreSQL server.

use std::future::Future;
use std::pin::Pin;

use preview_plan::{Plan, Resource, ResourceKind};
use preview_store::*;
use preview_testing::{TempDir, TestPostgres};

type Case = fn(Store) -> Pin<Box<dyn Future<Output = ()> + Send>>;

macro_rules! cases {
    ($($name:ident),+ $(,)?) => {
        const CASES: &[(&str, Case)] = &[$((stringify!($name), |store| Box::pin($name(store)))),+];
    };
}

cases!(
    migrations_run_once,
    projects_are_stored_and_replaced,
    a_deployment_takes_the_environment_lease,
    commit_records_state_and_environment,
    rollback_leaves_everything_as_it_was,
    delete_commit_removes_environment_and_state,
    journal_keeps_order,
    unfinished_deployment_blocks_until_taken_over,
    failed_rollback_keeps_the_lease,
    leases_are_renewed_by_their_holder_only,
    concurrent_starts_let_exactly_one_through,
    history_is_newest_first,
    meta_values,
    variables_are_set_replaced_and_unset,
    secrets_are_stored_sealed_and_rotated_together,
);

#[tokio::test(flavor = "multi_thread")]
async fn store_suite_on_sqlite() {
    for (name, case) in CASES {
        let dir = TempDir::new("store");
        let store = Store::open_sqlite(&dir.path().join("preview.db"))
            .await
            .expect("open sqlite");
        println!("sqlite: {name}");
        case(store).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn store_suite_on_postgres() {
    let server = TestPostgres::start();
    for (i, (name, case)) in CASES.iter().enumerate() {
        let url = server.create_database(&format!("store_{i}"));
        let store = Store::open_postgres(&url).await.expect("open postgres");
        println!("postgres: {name}");
        case(store).await;
    }
}

// ---------------------------------------------------------------------- helpers

const HOUR: i64 = 3_600_000;

fn resource(id: &str) -> Resource {
    Resource::new(
        id,
        ResourceKind::App,
        vec![],
        serde_json::json!({ "run": id }),
    )
}

fn deployment(id: &str, environment: &str, operation: Operation, holder: &str) -> DeploymentRecord {
    DeploymentRecord {
        id: id.to_owned(),
        project: "shop".to_owned(),
        environment: environment.to_owned(),
        operation,
        based_on: None,
        status: DeploymentStatus::Running,
        reason: None,
        plan: Plan {
            environment: environment.to_owned(),
            steps: vec![],
        },
        holder: holder.to_owned(),
        created_at: 1_000,
        finished_at: None,
    }
}

async fn start(store: &Store, d: &DeploymentRecord, now: i64) -> Result<(), StoreError> {
    store.start_deployment(d, now + HOUR, now).await
}

// ---------------------------------------------------------------------- cases

async fn migrations_run_once(store: Store) {
    // Opening runs the migrations; running them again must be harmless.
    store.set_meta("k", "v").await.expect("meta");
    assert_eq!(store.meta("k").await.expect("meta"), Some("v".to_owned()));
}

async fn projects_are_stored_and_replaced(store: Store) {
    let mut project = ProjectRecord {
        name: "shop".into(),
        file: "preview.yaml".into(),
        source: "project: shop\n".into(),
        directory: None,
        updated_at: 1,
    };
    store.put_project(&project).await.expect("put");
    assert_eq!(
        store.project("shop").await.expect("get"),
        Some(project.clone())
    );
    project.source = "project: shop\n# v2\n".into();
    project.directory = Some("/srv/shop".into());
    store.put_project(&project).await.expect("replace");
    assert_eq!(
        store.project("shop").await.expect("get"),
        Some(project.clone())
    );
    assert_eq!(store.projects().await.expect("list"), vec![project]);
    assert_eq!(store.project("nope").await.expect("get"), None);
}

async fn a_deployment_takes_the_environment_lease(store: Store) {
    let first = deployment("d1", "staging", Operation::Create, "daemon-a");
    start(&store, &first, 10).await.expect("first starts");
    let second = deployment("d2", "staging", Operation::Update, "daemon-a");
    match start(&store, &second, 20).await {
        Err(StoreError::Busy {
            environment,
            deployment,
        }) => {
            assert_eq!(
                (environment.as_str(), deployment.as_str()),
                ("staging", "d1")
            );
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    assert_eq!(
        store.deployment("d2").await.expect("get"),
        None,
        "a refused deployment leaves no record"
    );
    start(
        &store,
        &deployment("d3", "production", Operation::Create, "daemon-a"),
        20,
    )
    .await
    .expect("another environment is free");
}

async fn commit_records_state_and_environment(store: Store) {
    let d = DeploymentRecord {
        based_on: Some("staging".into()),
        ..deployment("d1", "qa", Operation::Clone, "a")
    };
    start(&store, &d, 10).await.expect("start");
    let state = vec![resource("app/a"), resource("app/b")];
    store
        .finish_deployment(
            &d,
            &Outcome::Committed {
                state: state.clone(),
            },
            50,
        )
        .await
        .expect("finish");
    assert_eq!(
        store.recorded_state("shop", "qa").await.expect("state"),
        state
    );
    let environment = store
        .environment("shop", "qa")
        .await
        .expect("env")
        .expect("exists");
    assert_eq!(environment.based_on.as_deref(), Some("staging"));
    let record = store.deployment("d1").await.expect("get").expect("exists");
    assert_eq!(
        (record.status, record.finished_at),
        (DeploymentStatus::Committed, Some(50))
    );
    assert!(
        store
            .finish_deployment(&d, &Outcome::RolledBack { reason: "x".into() }, 60)
            .await
            .is_err(),
        "a deployment finishes once"
    );
    start(&store, &deployment("d2", "qa", Operation::Update, "a"), 70)
        .await
        .expect("the lease was released");
}

async fn rollback_leaves_everything_as_it_was(store: Store) {
    let create = deployment("d1", "staging", Operation::Create, "a");
    start(&store, &create, 10).await.expect("start");
    store
        .finish_deployment(
            &create,
            &Outcome::Committed {
                state: vec![resource("app/a")],
            },
            20,
        )
        .await
        .expect("commit");
    let update = deployment("d2", "staging", Operation::Update, "a");
    start(&store, &update, 30).await.expect("start");
    store
        .finish_deployment(
            &update,
            &Outcome::RolledBack {
                reason: "step 3 failed".into(),
            },
            40,
        )
        .await
        .expect("roll back");
    assert_eq!(
        store
            .recorded_state("shop", "staging")
            .await
            .expect("state"),
        vec![resource("app/a")]
    );
    let record = store.deployment("d2").await.expect("get").expect("exists");
    assert_eq!(record.status, DeploymentStatus::RolledBack);
    assert_eq!(record.reason.as_deref(), Some("step 3 failed"));
}

async fn delete_commit_removes_environment_and_state(store: Store) {
    let create = deployment("d1", "pr-1", Operation::Create, "a");
    start(&store, &create, 10).await.expect("start");
    store
        .finish_deployment(
            &create,
            &Outcome::Committed {
                state: vec![resource("app/a")],
            },
            20,
        )
        .await
        .expect("commit");
    let delete = deployment("d2", "pr-1", Operation::Delete, "a");
    start(&store, &delete, 30).await.expect("start");
    store
        .finish_deployment(&delete, &Outcome::Committed { state: vec![] }, 40)
        .await
        .expect("commit");
    assert_eq!(store.environment("shop", "pr-1").await.expect("env"), None);
    assert!(
        store
            .recorded_state("shop", "pr-1")
            .await
            .expect("state")
            .is_empty()
    );
    assert_eq!(store.environment_count().await.expect("count"), 0);
}

async fn journal_keeps_order(store: Store) {
    let d = deployment("d1", "staging", Operation::Create, "a");
    start(&store, &d, 10).await.expect("start");
    let entries: Vec<JournalEntry> = (0..5)
        .map(|seq| JournalEntry {
            deployment: "d1".into(),
            seq,
            step: seq / 2,
            phase: if seq < 4 {
                Phase::Apply
            } else {
                Phase::Compensate
            },
            event: if seq % 2 == 0 {
                JournalEvent::Intent
            } else {
                JournalEvent::Done
            },
            message: format!("entry {seq}"),
            at: 100 + seq,
        })
        .collect();
    for entry in entries.iter().rev() {
        store.append_journal(entry).await.expect("append");
    }
    assert_eq!(store.journal("d1").await.expect("journal"), entries);
    assert!(
        store.append_journal(&entries[0]).await.is_err(),
        "a sequence number is written once"
    );
}

async fn unfinished_deployment_blocks_until_taken_over(store: Store) {
    let crashed = deployment("d1", "staging", Operation::Create, "daemon-a");
    start(&store, &crashed, 10).await.expect("start");
    // Long after its lease expired, the crashed deployment still blocks new ones: it must be recovered first.
    let later = 10 * HOUR;
    let next = deployment("d2", "staging", Operation::Update, "daemon-b");
    assert!(matches!(
        start(&store, &next, later).await,
        Err(StoreError::Busy { .. })
    ));
    assert_eq!(
        store.unfinished_deployments().await.expect("list")[0].id,
        "d1"
    );
    // A live holder's lease cannot be taken; an expired one can; the holder itself can always take it back.
    assert!(
        !store
            .take_over("d1", "daemon-b", 50 + HOUR, 50)
            .await
            .expect("take over")
    );
    assert!(
        store
            .take_over("d1", "daemon-a", 60 + HOUR, 60)
            .await
            .expect("own lease")
    );
    assert!(
        store
            .take_over("d1", "daemon-b", later + HOUR, later)
            .await
            .expect("expired lease")
    );
    let record = store.deployment("d1").await.expect("get").expect("exists");
    assert_eq!(record.holder, "daemon-b");
    store
        .finish_deployment(
            &record,
            &Outcome::RolledBack {
                reason: "recovered".into(),
            },
            later,
        )
        .await
        .expect("finish");
    start(&store, &next, later).await.expect("free again");
}

async fn failed_rollback_keeps_the_lease(store: Store) {
    let d = deployment("d1", "staging", Operation::Update, "a");
    start(&store, &d, 10).await.expect("start");
    store
        .finish_deployment(
            &d,
            &Outcome::Failed {
                reason: "runtime unreachable".into(),
            },
            20,
        )
        .await
        .expect("finish as failed");
    assert_eq!(
        store.unfinished_deployments().await.expect("list").len(),
        1,
        "a failed rollback is retried"
    );
    assert!(matches!(
        start(
            &store,
            &deployment("d2", "staging", Operation::Update, "a"),
            30
        )
        .await,
        Err(StoreError::Busy { .. })
    ));
}

async fn leases_are_renewed_by_their_holder_only(store: Store) {
    let d = deployment("d1", "staging", Operation::Create, "a");
    start(&store, &d, 10).await.expect("start");
    assert!(
        store
            .renew_lease("d1", "a", 10 * HOUR)
            .await
            .expect("renew")
    );
    assert!(
        !store
            .renew_lease("d1", "b", 10 * HOUR)
            .await
            .expect("renew")
    );
    assert!(
        !store
            .renew_lease("d9", "a", 10 * HOUR)
            .await
            .expect("renew")
    );
}

async fn concurrent_starts_let_exactly_one_through(store: Store) {
    let store = std::sync::Arc::new(store);
    let attempts: Vec<_> = (0..20)
        .map(|i| {
            let store = std::sync::Arc::clone(&store);
            tokio::spawn(async move {
                let d = deployment(&format!("d{i}"), "staging", Operation::Update, "a");
                start(&store, &d, 10).await.is_ok()
            })
        })
        .collect();
    let mut started = 0;
    for attempt in attempts {
        started += usize::from(attempt.await.expect("task"));
    }
    assert_eq!(started, 1);
}

async fn history_is_newest_first(store: Store) {
    for (i, id) in ["d1", "d2", "d3"].iter().enumerate() {
        let d = DeploymentRecord {
            created_at: 100 * i as i64,
            ..deployment(id, "staging", Operation::Update, "a")
        };
        start(&store, &d, 100 * i as i64).await.expect("start");
        store
            .finish_deployment(
                &d,
                &Outcome::RolledBack {
                    reason: "no".into(),
                },
                100 * i as i64 + 1,
            )
            .await
            .expect("finish");
    }
    let ids: Vec<String> = store
        .deployments("shop", "staging", 2)
        .await
        .expect("list")
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, ["d3", "d2"]);
}

async fn meta_values(store: Store) {
    assert_eq!(store.meta("token").await.expect("meta"), None);
    store.set_meta("token", "a").await.expect("set");
    store.set_meta("token", "b").await.expect("replace");
    assert_eq!(
        store.meta("token").await.expect("meta"),
        Some("b".to_owned())
    );
}

async fn variables_are_set_replaced_and_unset(store: Store) {
    let variable = |scope: &str, value: &str| VariableRecord {
        project: "shop".into(),
        scope: scope.into(),
        name: "LOG".into(),
        value: value.into(),
        updated_at: 1,
    };
    store
        .set_variable(&variable("project", "info"))
        .await
        .expect("set");
    store
        .set_variable(&variable("project", "warn"))
        .await
        .expect("replace");
    store
        .set_variable(&variable("service:web@staging", "debug"))
        .await
        .expect("set");
    assert_eq!(
        store.variables("shop").await.expect("list"),
        vec![
            variable("project", "warn"),
            variable("service:web@staging", "debug")
        ]
    );
    assert!(
        store
            .unset_variable("shop", "project", "LOG")
            .await
            .expect("unset")
    );
    assert!(
        !store
            .unset_variable("shop", "project", "LOG")
            .await
            .expect("unset again")
    );
    assert_eq!(store.variables("shop").await.expect("list").len(), 1);
    assert!(
        store
            .variables("blog")
            .await
            .expect("other project")
            .is_empty()
    );
}

async fn secrets_are_stored_sealed_and_rotated_together(store: Store) {
    let secret = |name: &str, byte: u8| SecretRecord {
        project: "shop".into(),
        scope: "project".into(),
        name: name.into(),
        nonce: vec![byte; 24],
        ciphertext: vec![byte, 0, 255],
        fingerprint: format!("fp{byte}"),
        previews: "share".into(),
        updated_at: 1,
    };
    store.put_secret(&secret("A", 1)).await.expect("put");
    store.put_secret(&secret("B", 2)).await.expect("put");
    assert_eq!(
        store.secrets(Some("shop")).await.expect("list"),
        vec![secret("A", 1), secret("B", 2)]
    );
    store
        .rotate_secrets(&[secret("A", 3), secret("B", 4)], "key_check", "new-check")
        .await
        .expect("rotate");
    assert_eq!(
        store.secrets(None).await.expect("all"),
        vec![secret("A", 3), secret("B", 4)]
    );
    assert_eq!(
        store.meta("key_check").await.expect("meta").as_deref(),
        Some("new-check")
    );
    assert!(
        store
            .delete_secret("shop", "project", "A")
            .await
            .expect("delete")
    );
    assert!(
        !store
            .delete_secret("shop", "project", "A")
            .await
            .expect("delete again")
    );
    assert_eq!(store.secrets(Some("shop")).await.expect("list").len(), 1);
}
