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
    the_store_has_a_clock_of_its_own,
    a_deployment_takes_the_environment_lease,
    a_plan_made_before_a_commit_is_refused_as_stale,
    commit_records_state_and_environment,
    rollback_leaves_everything_as_it_was,
    delete_commit_removes_environment_and_state,
    journal_keeps_order_and_writers,
    a_taken_over_lease_fences_its_old_holder,
    an_expired_lease_fences_its_holder_before_anyone_takes_it,
    unfinished_deployment_blocks_new_ones,
    an_environment_on_one_machine_belongs_to_its_daemon,
    a_deployment_that_cannot_finish_keeps_its_lease_and_first_reason,
    an_abandoned_deployment_frees_its_environment_and_marks_it,
    leases_are_renewed_by_their_holder_only,
    concurrent_starts_let_exactly_one_through,
    history_is_newest_first,
    meta_values,
    a_daemon_name_runs_in_one_place_at_a_time,
    variables_are_set_replaced_and_unset,
    secrets_are_kept_by_version_and_sealed_under_the_current_key,
    webhook_deliveries_are_stored_once_and_the_latest_kept,
    pull_requests_keep_the_newest_observation_and_the_reconcilers_marks,
    a_role_is_held_by_one_daemon_until_it_expires,
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
        source_commit: None,
        follows: None,
        keep_settings: false,
        status: DeploymentStatus::Running,
        reason: None,
        plan: Plan {
            environment: environment.to_owned(),
            steps: vec![],
            point_of_no_return: None,
        },
        holder: holder.to_owned(),
        owner: None,
        attempts: 0,
        last_error: None,
        retry_at: None,
        created_at: 0,
        finished_at: None,
    }
}

/// The daemon id of a holder (`daemon-a/1` → `daemon-a`).
fn daemon_of(holder: &str) -> String {
    holder.split('/').next().unwrap_or(holder).to_owned()
}

/// Starts `d` on the environment's current revision with a lease of `ttl_ms`.
async fn start_for(store: &Store, d: &DeploymentRecord, ttl_ms: i64) -> Result<Lease, StoreError> {
    let revision = store
        .planning_base(&d.project, &d.environment)
        .await
        .expect("base")
        .revision;
    let terms = StartTerms {
        revision,
        lease_ttl_ms: ttl_ms,
        daemon: daemon_of(&d.holder),
    };
    store.start_deployment(d, &terms).await
}

async fn start(store: &Store, d: &DeploymentRecord) -> Result<Lease, StoreError> {
    start_for(store, d, HOUR).await
}

async fn commit(store: &Store, d: &DeploymentRecord, state: Vec<Resource>) -> Lease {
    let lease = start(store, d).await.expect("start");
    store
        .finish_deployment(&lease, d, &Outcome::Committed { state })
        .await
        .expect("commit");
    lease
}

fn take_over_terms(holder: &str, others: bool, ttl_ms: i64) -> TakeOverTerms {
    TakeOverTerms {
        holder: holder.to_owned(),
        daemon: daemon_of(holder),
        others,
        lease_ttl_ms: ttl_ms,
    }
}

fn entry(deployment: &str, seq: i64) -> JournalEntry {
    JournalEntry {
        deployment: deployment.into(),
        seq,
        step: seq / 2,
        holder: String::new(),
        epoch: 0,
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
    }
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

async fn the_store_has_a_clock_of_its_own(store: Store) {
    let ours = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_millis() as i64;
    let theirs = store.now().await.expect("now");
    // Same machine here: the clocks agree to within a few seconds.
    assert!((theirs - ours).abs() < 5_000, "store {theirs}, here {ours}");
}

async fn a_deployment_takes_the_environment_lease(store: Store) {
    let first = deployment("d1", "staging", Operation::Create, "daemon-a/1");
    let lease = start(&store, &first).await.expect("first starts");
    assert_eq!(
        lease,
        Lease {
            deployment: "d1".into(),
            holder: "daemon-a/1".into(),
            epoch: 1
        }
    );
    let second = deployment("d2", "staging", Operation::Update, "daemon-a/1");
    match start(&store, &second).await {
        Err(StoreError::Busy {
            environment,
            deployment,
            stuck: false,
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
        &deployment("d3", "production", Operation::Create, "daemon-a/1"),
    )
    .await
    .expect("another environment is free");
}

async fn a_plan_made_before_a_commit_is_refused_as_stale(store: Store) {
    let old = store.planning_base("shop", "staging").await.expect("base");
    assert_eq!((old.revision, old.environment.clone()), (0, None));
    commit(
        &store,
        &deployment("d1", "staging", Operation::Create, "daemon-a/1"),
        vec![resource("app/a")],
    )
    .await;
    let fresh = store.planning_base("shop", "staging").await.expect("base");
    assert_eq!(fresh.revision, 1);
    assert_eq!(fresh.recorded, vec![resource("app/a")]);
    assert!(fresh.environment.is_some());
    let late = deployment("d2", "staging", Operation::Update, "daemon-b/1");
    let terms = |revision| StartTerms {
        revision,
        lease_ttl_ms: HOUR,
        daemon: "daemon-b".into(),
    };
    assert!(matches!(
        store.start_deployment(&late, &terms(old.revision)).await,
        Err(StoreError::Stale { .. })
    ));
    assert_eq!(store.deployment("d2").await.expect("get"), None);
    store
        .start_deployment(&late, &terms(fresh.revision))
        .await
        .expect("planned on the committed state");
}

async fn commit_records_state_and_environment(store: Store) {
    let d = DeploymentRecord {
        based_on: Some("staging".into()),
        source_commit: None,
        follows: None,
        keep_settings: false,
        owner: Some("daemon-a".into()),
        ..deployment("d1", "qa", Operation::Clone, "daemon-a/1")
    };
    let state = vec![resource("app/a"), resource("app/b")];
    let lease = commit(&store, &d, state.clone()).await;
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
    assert_eq!(environment.owner.as_deref(), Some("daemon-a"));
    let record = store.deployment("d1").await.expect("get").expect("exists");
    assert_eq!(record.status, DeploymentStatus::Committed);
    assert!(record.finished_at.is_some() && record.created_at > 0);
    assert!(
        matches!(
            store
                .finish_deployment(&lease, &d, &Outcome::RolledBack { reason: "x".into() })
                .await,
            Err(StoreError::Fenced { .. })
        ),
        "a deployment finishes once: its lease is gone"
    );
    start(
        &store,
        &deployment("d2", "qa", Operation::Update, "daemon-a/1"),
    )
    .await
    .expect("the lease was released");
}

async fn rollback_leaves_everything_as_it_was(store: Store) {
    commit(
        &store,
        &deployment("d1", "staging", Operation::Create, "a/1"),
        vec![resource("app/a")],
    )
    .await;
    let update = deployment("d2", "staging", Operation::Update, "a/1");
    let lease = start(&store, &update).await.expect("start");
    store
        .finish_deployment(
            &lease,
            &update,
            &Outcome::RolledBack {
                reason: "step 3 failed".into(),
            },
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
    assert_eq!(
        store
            .planning_base("shop", "staging")
            .await
            .expect("base")
            .revision,
        1,
        "a rollback changes nothing a plan is made from"
    );
}

async fn delete_commit_removes_environment_and_state(store: Store) {
    commit(
        &store,
        &deployment("d1", "pr-1", Operation::Create, "a/1"),
        vec![resource("app/a")],
    )
    .await;
    commit(
        &store,
        &deployment("d2", "pr-1", Operation::Delete, "a/1"),
        vec![],
    )
    .await;
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

async fn journal_keeps_order_and_writers(store: Store) {
    let d = deployment("d1", "staging", Operation::Create, "a/1");
    let lease = start(&store, &d).await.expect("start");
    let entries: Vec<JournalEntry> = (0..5).map(|seq| entry("d1", seq)).collect();
    for entry in entries.iter().rev() {
        store.append_journal(&lease, entry).await.expect("append");
    }
    let written = store.journal("d1").await.expect("journal");
    let stamped: Vec<JournalEntry> = entries
        .iter()
        .map(|e| JournalEntry {
            holder: "a/1".into(),
            epoch: 1,
            ..e.clone()
        })
        .collect();
    assert_eq!(written, stamped, "in order, each with who wrote it");
    assert!(
        store.append_journal(&lease, &entries[0]).await.is_err(),
        "a sequence number is written once"
    );
}

async fn an_expired_lease_fences_its_holder_before_anyone_takes_it(store: Store) {
    let d = deployment("d1", "staging", Operation::Create, "daemon-a/1");
    let lease = start_for(&store, &d, 200).await.expect("start");
    store
        .append_journal(&lease, &entry("d1", 0))
        .await
        .expect("writes while the lease holds");
    // Past its expiry by the store's clock, nobody has taken it over, and still every write is refused: a holder
    // that slept through its lease cannot tell whether another daemon acted meanwhile.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(matches!(
        store.append_journal(&lease, &entry("d1", 1)).await,
        Err(StoreError::Fenced { .. })
    ));
    assert!(matches!(
        store
            .set_status(&lease, DeploymentStatus::RollingBack, Some("x"))
            .await,
        Err(StoreError::Fenced { .. })
    ));
    assert!(matches!(
        store
            .finish_deployment(&lease, &d, &Outcome::RolledBack { reason: "x".into() })
            .await,
        Err(StoreError::Fenced { .. })
    ));
    assert!(!store.renew_lease(&lease, HOUR).await.expect("renew"));
}

async fn a_taken_over_lease_fences_its_old_holder(store: Store) {
    let d = deployment("d1", "staging", Operation::Create, "daemon-a/1");
    let old = start_for(&store, &d, 300).await.expect("start");
    store
        .append_journal(&old, &entry("d1", 0))
        .await
        .expect("writes");
    // A live lease of another daemon is not taken, whatever that daemon's clock says.
    assert_eq!(
        store
            .take_over("d1", 1, &take_over_terms("daemon-b/1", true, HOUR))
            .await
            .expect("take over"),
        None
    );
    // The same daemon, started again, takes its own lease at once.
    let again = store
        .take_over("d1", 1, &take_over_terms("daemon-a/2", false, 300))
        .await
        .expect("take over")
        .expect("its own");
    assert_eq!(again.epoch, 2);
    assert!(matches!(
        store.append_journal(&old, &entry("d1", 1)).await,
        Err(StoreError::Fenced { .. })
    ));
    assert!(matches!(
        store
            .set_status(&old, DeploymentStatus::RollingBack, Some("x"))
            .await,
        Err(StoreError::Fenced { .. })
    ));
    assert!(!store.renew_lease(&old, HOUR).await.expect("renew"));
    assert!(matches!(
        store
            .finish_deployment(&old, &d, &Outcome::RolledBack { reason: "x".into() })
            .await,
        Err(StoreError::Fenced { .. })
    ));
    // A seen epoch that is no longer current takes nothing.
    assert_eq!(
        store
            .take_over("d1", 1, &take_over_terms("daemon-a/3", false, HOUR))
            .await
            .expect("take over"),
        None
    );
    // Once expired by the store's clock, another daemon takes it — if its runtime is shared.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(
        !store.renew_lease(&again, HOUR).await.expect("renew"),
        "expired"
    );
    assert_eq!(
        store
            .take_over("d1", 2, &take_over_terms("daemon-b/1", false, HOUR))
            .await
            .expect("take over"),
        None,
        "a machine-local runtime never takes another daemon's deployment"
    );
    let taken = store
        .take_over("d1", 2, &take_over_terms("daemon-b/1", true, HOUR))
        .await
        .expect("take over")
        .expect("expired");
    assert_eq!(taken.epoch, 3);
    let record = store.deployment("d1").await.expect("get").expect("exists");
    assert_eq!(record.holder, "daemon-b/1");
    store
        .append_journal(&taken, &entry("d1", 1))
        .await
        .expect("writes");
    assert_eq!(
        store
            .lease_state("d1")
            .await
            .expect("lease")
            .map(|l| (l.holder, l.epoch, l.expired)),
        Some(("daemon-b/1".to_owned(), 3, false))
    );
    store
        .finish_deployment(
            &taken,
            &record,
            &Outcome::RolledBack {
                reason: "recovered".into(),
            },
        )
        .await
        .expect("finish");
    start(
        &store,
        &deployment("d2", "staging", Operation::Create, "daemon-b/1"),
    )
    .await
    .expect("free again");
}

async fn unfinished_deployment_blocks_new_ones(store: Store) {
    let crashed = deployment("d1", "staging", Operation::Create, "daemon-a/1");
    start_for(&store, &crashed, 1).await.expect("start");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    // Long after its lease expired, the crashed deployment still blocks new ones: it must be recovered first.
    let next = deployment("d2", "staging", Operation::Update, "daemon-b/1");
    assert!(matches!(
        start(&store, &next).await,
        Err(StoreError::Busy { .. })
    ));
    assert_eq!(
        store.unfinished_deployments().await.expect("list")[0].id,
        "d1"
    );
}

async fn an_environment_on_one_machine_belongs_to_its_daemon(store: Store) {
    let d = DeploymentRecord {
        owner: Some("daemon-a".into()),
        ..deployment("d1", "staging", Operation::Create, "daemon-a/1")
    };
    commit(&store, &d, vec![resource("app/a")]).await;
    let other = deployment("d2", "staging", Operation::Update, "daemon-b/1");
    match start(&store, &other).await {
        Err(StoreError::Owned { environment, owner }) => {
            assert_eq!(
                (environment.as_str(), owner.as_str()),
                ("staging", "daemon-a")
            );
        }
        other => panic!("expected Owned, got {other:?}"),
    }
    // Its own daemon's deployments go on, and another daemon never takes one over, even expired.
    let own = DeploymentRecord {
        owner: Some("daemon-a".into()),
        ..deployment("d3", "staging", Operation::Update, "daemon-a/2")
    };
    start_for(&store, &own, 1).await.expect("its own daemon");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(
        store
            .take_over("d3", 1, &take_over_terms("daemon-b/1", true, HOUR))
            .await
            .expect("take over"),
        None
    );
}

async fn a_deployment_that_cannot_finish_keeps_its_lease_and_first_reason(store: Store) {
    let d = deployment("d1", "staging", Operation::Update, "a/1");
    let first = start(&store, &d).await.expect("start");
    let failed = |error: &str, retry_in_ms: i64| Outcome::Failed {
        reason: format!("first: {error}"),
        error: error.into(),
        retry_in_ms,
    };
    store
        .finish_deployment(&first, &d, &failed("runtime unreachable", 0))
        .await
        .expect("finish as failed");
    // Its retry is due at once: its daemon takes it again, with a new epoch, and fails again.
    let second = store
        .take_over("d1", 1, &take_over_terms("a/2", false, HOUR))
        .await
        .expect("take")
        .expect("due");
    store
        .finish_deployment(&second, &d, &failed("still unreachable", HOUR))
        .await
        .expect("finish as failed again");
    let record = store.deployment("d1").await.expect("get").expect("exists");
    assert_eq!(record.status, DeploymentStatus::Failed);
    assert_eq!(record.reason.as_deref(), Some("first: runtime unreachable"));
    assert_eq!(record.last_error.as_deref(), Some("still unreachable"));
    assert_eq!(record.attempts, 2);
    assert!(record.retry_at.is_some());
    assert_eq!(
        store
            .take_over("d1", 2, &take_over_terms("a/3", false, HOUR))
            .await
            .expect("take"),
        None,
        "not before its next retry is due"
    );
    assert!(matches!(
        start(
            &store,
            &deployment("d2", "staging", Operation::Update, "a/1")
        )
        .await,
        Err(StoreError::Busy { .. })
    ));
}

async fn an_abandoned_deployment_frees_its_environment_and_marks_it(store: Store) {
    let d = deployment("d1", "staging", Operation::Create, "daemon-a/1");
    let lease = start(&store, &d).await.expect("start");
    store
        .finish_deployment(
            &lease,
            &d,
            &Outcome::Failed {
                reason: "broken".into(),
                error: "undo failed".into(),
                retry_in_ms: HOUR,
            },
        )
        .await
        .expect("failed");
    let note = "may be left: app/a";
    let abandon = |daemon: &'static str, epoch: i64| {
        let store = &store;
        let d = d.clone();
        async move {
            let entry = JournalEntry {
                holder: format!("{daemon}/9"),
                epoch,
                ..entry("d1", 7)
            };
            store
                .abandon_deployment(&d, epoch, daemon, &entry, note)
                .await
                .expect("abandon")
        }
    };
    assert!(
        !abandon("daemon-b", 1).await,
        "another daemon's live lease is kept"
    );
    assert!(!abandon("daemon-a", 5).await, "a stale epoch takes nothing");
    assert!(abandon("daemon-a", 1).await);
    let record = store.deployment("d1").await.expect("get").expect("exists");
    assert_eq!(record.status, DeploymentStatus::Abandoned);
    assert!(record.status.is_finished() && record.finished_at.is_some());
    assert_eq!(store.lease_state("d1").await.expect("lease"), None);
    let marks = store.attention("shop").await.expect("attention");
    assert_eq!(
        marks
            .iter()
            .map(|a| (
                a.environment.as_str(),
                a.deployment.as_str(),
                a.note.as_str()
            ))
            .collect::<Vec<_>>(),
        [("staging", "d1", note)]
    );
    assert_eq!(store.journal("d1").await.expect("journal").len(), 1);
    // A later commit clears the mark.
    commit(
        &store,
        &deployment("d2", "staging", Operation::Create, "daemon-a/1"),
        vec![],
    )
    .await;
    assert!(store.attention("shop").await.expect("attention").is_empty());
}

async fn leases_are_renewed_by_their_holder_only(store: Store) {
    let d = deployment("d1", "staging", Operation::Create, "a/1");
    let lease = start_for(&store, &d, 300).await.expect("start");
    assert!(store.renew_lease(&lease, HOUR).await.expect("renew"));
    let other = |holder: &str, epoch: i64| Lease {
        holder: holder.into(),
        epoch,
        ..lease.clone()
    };
    assert!(
        !store
            .renew_lease(&other("b/1", 1), HOUR)
            .await
            .expect("renew")
    );
    assert!(
        !store
            .renew_lease(&other("a/1", 2), HOUR)
            .await
            .expect("renew")
    );
    assert!(
        !store
            .renew_lease(
                &Lease {
                    deployment: "d9".into(),
                    ..lease.clone()
                },
                HOUR
            )
            .await
            .expect("renew")
    );
    // The renewal lasted past the first lease's end: the holder still writes.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    store
        .append_journal(&lease, &entry("d1", 0))
        .await
        .expect("still held");
}

async fn concurrent_starts_let_exactly_one_through(store: Store) {
    let store = std::sync::Arc::new(store);
    let attempts: Vec<_> = (0..20)
        .map(|i| {
            let store = std::sync::Arc::clone(&store);
            tokio::spawn(async move {
                let d = deployment(&format!("d{i}"), "staging", Operation::Update, "a/1");
                start(&store, &d).await.is_ok()
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
    for id in ["d1", "d2", "d3"] {
        let d = deployment(id, "staging", Operation::Update, "a/1");
        let lease = start(&store, &d).await.expect("start");
        store
            .finish_deployment(
                &lease,
                &d,
                &Outcome::RolledBack {
                    reason: "no".into(),
                },
            )
            .await
            .expect("finish");
        // Creation times come from the store's clock, in milliseconds.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
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

async fn a_daemon_name_runs_in_one_place_at_a_time(store: Store) {
    assert_eq!(
        store
            .claim_daemon("daemon-a", "m1:/data", 300)
            .await
            .expect("claim"),
        None
    );
    // Started again where it runs: granted at once.
    assert_eq!(
        store
            .claim_daemon("daemon-a", "m1:/data", 300)
            .await
            .expect("claim"),
        None
    );
    // A copy elsewhere is refused while the first is seen, and says where the name runs.
    assert_eq!(
        store
            .claim_daemon("daemon-a", "m2:/copy", 300)
            .await
            .expect("claim"),
        Some("m1:/data".to_owned())
    );
    assert!(
        store
            .daemon_seen("daemon-a", "m1:/data")
            .await
            .expect("seen")
    );
    // Unseen for longer than allowed, the name may be used elsewhere; the first then learns it lost it.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(
        store
            .claim_daemon("daemon-a", "m2:/copy", 300)
            .await
            .expect("claim"),
        None
    );
    assert!(
        !store
            .daemon_seen("daemon-a", "m1:/data")
            .await
            .expect("seen")
    );
    // Released on a clean stop, the name is free at once.
    store
        .release_daemon("daemon-a", "m2:/copy")
        .await
        .expect("release");
    assert_eq!(
        store
            .claim_daemon("daemon-a", "m1:/data", 300)
            .await
            .expect("claim"),
        None
    );
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

async fn secrets_are_kept_by_version_and_sealed_under_the_current_key(store: Store) {
    store.adopt_key_id("k1").await.expect("adopt");
    store
        .adopt_key_id("k0")
        .await
        .expect("adopting again changes nothing");
    assert_eq!(store.key_id().await.expect("key").as_deref(), Some("k1"));
    let secret = |name: &str, fingerprint: &str| SecretRecord {
        project: "shop".into(),
        scope: "project".into(),
        name: name.into(),
        fingerprint: fingerprint.into(),
        previews: "share".into(),
        updated_at: 1,
    };
    let version = |name: &str, fingerprint: &str, byte: u8, key: &str| SealedVersion {
        project: "shop".into(),
        scope: "project".into(),
        name: name.into(),
        fingerprint: fingerprint.into(),
        nonce: vec![byte; 24],
        ciphertext: vec![byte, 0, 255],
        key_id: key.into(),
    };
    store
        .put_secret(&secret("A", "fa1"), &version("A", "fa1", 1, "k1"))
        .await
        .expect("put");
    store
        .put_secret(&secret("A", "fa2"), &version("A", "fa2", 2, "k1"))
        .await
        .expect("put");
    store
        .put_secret(&secret("B", "fb1"), &version("B", "fb1", 3, "k1"))
        .await
        .expect("put");
    assert_eq!(
        store.secrets(Some("shop")).await.expect("list"),
        vec![secret("A", "fa2"), secret("B", "fb1")]
    );
    assert_eq!(
        store
            .secret_version("shop", "project", "A", "fa1")
            .await
            .expect("version"),
        Some(version("A", "fa1", 1, "k1")),
        "the earlier value is kept"
    );
    assert!(matches!(
        store
            .put_secret(&secret("A", "fa3"), &version("A", "fa3", 4, "k0"))
            .await,
        Err(StoreError::KeyRotated { key_id }) if key_id == "k1"
    ));
    // A rotation that read the versions before one was written is refused; one that read them all is made.
    let all = store.secret_versions().await.expect("versions");
    assert_eq!(all.len(), 3);
    let resealed = |versions: &[SealedVersion]| -> Vec<SealedVersion> {
        versions
            .iter()
            .map(|v| SealedVersion {
                ciphertext: vec![9, 9],
                key_id: "k2".into(),
                ..v.clone()
            })
            .collect()
    };
    store
        .put_secret(&secret("C", "fc1"), &version("C", "fc1", 5, "k1"))
        .await
        .expect("put");
    assert!(matches!(
        store
            .rotate_secrets(&resealed(&all), "k1", "k2", ("key_check", "new-check"))
            .await,
        Err(StoreError::SecretsChanged)
    ));
    assert_eq!(store.key_id().await.expect("key").as_deref(), Some("k1"));
    let all = store.secret_versions().await.expect("versions");
    assert!(matches!(
        store
            .rotate_secrets(&resealed(&all), "k0", "k2", ("key_check", "new-check"))
            .await,
        Err(StoreError::KeyRotated { .. })
    ));
    store
        .rotate_secrets(&resealed(&all), "k1", "k2", ("key_check", "new-check"))
        .await
        .expect("rotate");
    assert_eq!(store.key_id().await.expect("key").as_deref(), Some("k2"));
    assert!(
        store
            .secret_versions()
            .await
            .expect("versions")
            .iter()
            .all(|v| v.key_id == "k2" && v.ciphertext == [9, 9])
    );
    assert_eq!(
        store.meta("key_check").await.expect("meta").as_deref(),
        Some("new-check")
    );
    // Unset: no current value, the versions stay until nothing needs them.
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
            .expect("again")
    );
    assert_eq!(store.secrets(Some("shop")).await.expect("list").len(), 2);
    // A recorded state names A's first value: it is kept; its second goes, and so do no current values.
    let uses = Resource::new(
        "app/web",
        ResourceKind::App,
        vec![],
        serde_json::json!({ "secrets": { "project/A": "fa1" } }),
    );
    commit(
        &store,
        &deployment("d1", "staging", Operation::Create, "a/1"),
        vec![uses],
    )
    .await;
    assert_eq!(
        store
            .prune_secret_versions("shop", HOUR)
            .await
            .expect("prune"),
        0,
        "not before the grace"
    );
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert_eq!(
        store.prune_secret_versions("shop", 0).await.expect("prune"),
        1
    );
    let left: Vec<String> = store
        .secret_versions()
        .await
        .expect("versions")
        .into_iter()
        .map(|v| v.fingerprint)
        .collect();
    assert_eq!(left, ["fa1", "fb1", "fc1"]);
}

fn delivery(id: &str, at: i64) -> DeliveryRecord {
    DeliveryRecord {
        project: "shop".into(),
        delivery: id.into(),
        forge: "github".into(),
        event: "pull_request".into(),
        action: Some("opened".into()),
        pull_request: Some(7),
        head: Some("6dcb09b5b57875f334f61aebed695e2e4193db5e".into()),
        verdict: "accepted".into(),
        detail: "pull request #7 opened".into(),
        event_json: Some("{}".into()),
        body_digest: Some(format!("digest-of-{id}")),
        received_at: at,
    }
}

fn refusal(id: &str, at: i64) -> DeliveryRecord {
    DeliveryRecord {
        verdict: "refused".into(),
        body_digest: None,
        action: None,
        pull_request: None,
        head: None,
        event_json: None,
        ..delivery(id, at)
    }
}

async fn webhook_deliveries_are_stored_once_and_the_latest_kept(store: Store) {
    assert!(
        store
            .record_delivery(&delivery("d1", 1), None)
            .await
            .expect("first")
    );
    // A redelivery (the same id) changes nothing, whatever it says; nor does the same body under another id.
    let mut replayed = delivery("d1", 2);
    replayed.action = Some("closed".into());
    replayed.body_digest = Some("another body".into());
    assert!(!store.record_delivery(&replayed, None).await.expect("again"));
    let mut relabelled = delivery("d1-under-another-id", 3);
    relabelled.body_digest = Some("digest-of-d1".into());
    assert!(
        !store
            .record_delivery(&relabelled, None)
            .await
            .expect("another id")
    );
    let listed = store.deliveries("shop", 10).await.expect("list");
    assert_eq!(listed, vec![delivery("d1", 1)]);
    // Another project's deliveries are its own.
    let mut elsewhere = delivery("d1", 3);
    elsewhere.project = "blog".into();
    assert!(
        store
            .record_delivery(&elsewhere, None)
            .await
            .expect("other project")
    );
    // Refusals, however many, keep only the latest of their own and push out nothing the forge sent.
    for i in 0..KEPT_REFUSED + 20 {
        assert!(
            store
                .record_delivery(&refusal(&format!("r{i}"), 5 + i), None)
                .await
                .expect("refused")
        );
    }
    let kept = store.deliveries("shop", 10_000).await.expect("list");
    assert_eq!(
        kept.iter().filter(|d| d.verdict == "refused").count() as i64,
        KEPT_REFUSED
    );
    assert!(kept.iter().any(|d| d.delivery == "d1"), "{kept:?}");
    // The latest authenticated ones are kept, newest first.
    for i in 0..KEPT_DELIVERIES + 5 {
        assert!(
            store
                .record_delivery(&delivery(&format!("n{i}"), 1000 + i), None)
                .await
                .expect("many")
        );
    }
    let kept = store.deliveries("shop", 10_000).await.expect("list");
    let accepted: Vec<&DeliveryRecord> = kept.iter().filter(|d| d.verdict != "refused").collect();
    assert_eq!(accepted.len() as i64, KEPT_DELIVERIES);
    assert_eq!(accepted[0].delivery, format!("n{}", KEPT_DELIVERIES + 4));
    assert!(kept.iter().all(|d| d.delivery != "d1"));
    assert_eq!(
        kept.iter().filter(|d| d.verdict == "refused").count() as i64,
        KEPT_REFUSED
    );
    assert_eq!(store.deliveries("blog", 10).await.expect("blog").len(), 1);
}

fn observation(number: i64, head: &str, open: bool, confirmed: bool) -> Observation {
    Observation {
        number,
        state: format!("{{\"head_sha\":\"{head}\"}}"),
        open,
        head: head.into(),
        confirmed,
    }
}

async fn pull_requests_keep_the_newest_observation_and_the_reconcilers_marks(store: Store) {
    // A delivery and what it says of its pull request are stored together, once.
    assert!(
        store
            .record_delivery(&delivery("e1", 1), Some(&observation(7, "a1", true, false)))
            .await
            .expect("delivery")
    );
    assert!(
        !store
            .record_delivery(
                &delivery("e1", 2),
                Some(&observation(7, "zz", false, false))
            )
            .await
            .expect("replay")
    );
    let seen = store.pull_requests("shop").await.expect("list");
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].head.as_str(), seen[0].open, seen[0].confirmed),
        ("a1", true, false)
    );
    // The reconciler's marks stay whatever is observed later.
    let mut marks = seen[0].clone();
    marks.claimed = true;
    marks.claimed_at = Some(5);
    marks.outcome = "deploying a1".into();
    assert!(store.mark_pull_request(&marks, None).await.expect("mark"));
    // A claim read before another reconciler's is not written over it.
    let mut stale = marks.clone();
    stale.claimed = false;
    stale.claimed_at = None;
    assert!(!store.mark_pull_request(&stale, None).await.expect("stale"));
    // A confirmation read before a newer event is not written over it.
    let read_at = seen[0].version;
    assert!(
        store
            .record_delivery(&delivery("e2", 3), Some(&observation(7, "a2", true, false)))
            .await
            .expect("newer event")
    );
    assert!(
        !store
            .confirm_pull_request("shop", &observation(7, "a1", true, true), Some(read_at))
            .await
            .expect("stale confirmation")
    );
    let seen = store.pull_requests("shop").await.expect("list");
    assert_eq!(seen[0].head, "a2");
    assert!(seen[0].claimed);
    assert_eq!(seen[0].claimed_at, Some(5));
    // What the pull request was told is kept apart, whatever is observed or marked.
    store
        .set_pull_request_feedback("shop", 7, "{\"comment\":42}")
        .await
        .expect("feedback");
    assert_eq!(seen[0].outcome, "deploying a1");
    assert!(
        store
            .confirm_pull_request(
                "shop",
                &observation(7, "a2", false, true),
                Some(seen[0].version)
            )
            .await
            .expect("confirmation")
    );
    let seen = store.pull_requests("shop").await.expect("list");
    assert_eq!(
        (seen[0].open, seen[0].confirmed, seen[0].claimed),
        (false, true, true)
    );
    assert_eq!(seen[0].feedback.as_deref(), Some("{\"comment\":42}"));
    // An approval is of one head; a pull request nobody knows cannot be approved.
    assert!(
        store
            .approve_pull_request("shop", 7, "a2")
            .await
            .expect("approve")
    );
    assert!(
        !store
            .approve_pull_request("shop", 8, "a2")
            .await
            .expect("unknown")
    );
    // A closed pull request with its preview still claimed is never forgotten; without it, it is after the age.
    store
        .forget_closed_pull_requests("shop", 0)
        .await
        .expect("forget");
    assert_eq!(store.pull_requests("shop").await.expect("list").len(), 1);
    let mut released = store.pull_requests("shop").await.expect("list")[0].clone();
    let held = released.claimed_at;
    released.claimed = false;
    released.claimed_at = None;
    assert!(
        store
            .mark_pull_request(&released, held)
            .await
            .expect("release")
    );
    store
        .forget_closed_pull_requests("shop", HOUR)
        .await
        .expect("young");
    assert_eq!(store.pull_requests("shop").await.expect("list").len(), 1);
    store
        .forget_closed_pull_requests("shop", -1)
        .await
        .expect("forget");
    assert!(store.pull_requests("shop").await.expect("list").is_empty());
}

async fn a_role_is_held_by_one_daemon_until_it_expires(store: Store) {
    assert!(
        store
            .hold_role("previews", "a/1", 60_000)
            .await
            .expect("take")
    );
    assert!(
        store
            .hold_role("previews", "a/1", 60_000)
            .await
            .expect("keep")
    );
    assert!(
        !store
            .hold_role("previews", "b/1", 60_000)
            .await
            .expect("refused")
    );
    // Another role is another matter.
    assert!(
        store
            .hold_role("other", "b/1", 60_000)
            .await
            .expect("other")
    );
    // Expired, it is anyone's.
    assert!(
        store
            .hold_role("previews", "a/1", -1)
            .await
            .expect("shorten")
    );
    assert!(
        store
            .hold_role("previews", "b/1", 60_000)
            .await
            .expect("taken over")
    );
    assert!(
        !store
            .hold_role("previews", "a/1", 60_000)
            .await
            .expect("lost")
    );
    // Given up by its holder only.
    store
        .release_role("previews", "a/1")
        .await
        .expect("not a's");
    assert!(
        !store
            .hold_role("previews", "a/1", 60_000)
            .await
            .expect("still b's")
    );
    store
        .release_role("previews", "b/1")
        .await
        .expect("release");
    assert!(
        store
            .hold_role("previews", "a/1", 60_000)
            .await
            .expect("free")
    );
}
