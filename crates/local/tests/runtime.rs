//! The local runtime through the engine's runtime interface, for what needs no build: spaces, certificates and
//! their renewal, refusals with clear messages, idempotent removal.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use preview_deploy::{EnvironmentAddress, NoSecrets, Runtime, StepLog};
use preview_gateway::{Certificates, Challenges, RouteState, Routes};
use preview_local::{LocalConfig, LocalRuntime, PortRange};
use preview_plan::{Resource, ResourceKind};
use preview_testing::TempDir;
use serde_json::json;

fn staging() -> EnvironmentAddress {
    EnvironmentAddress {
        project: "shop".into(),
        environment: "staging".into(),
    }
}

async fn runtime(dir: &TempDir, validity: Duration, renew_before: Duration) -> Arc<LocalRuntime> {
    let mut config = LocalConfig::new(dir.path().join("local"));
    config.ports = PortRange::parse("23000-23999").expect("range");
    config.certificate_validity = validity;
    config.renew_before = renew_before;
    LocalRuntime::open(
        config,
        Arc::new(NoSecrets),
        Arc::new(Routes::default()),
        Arc::new(Certificates::default()),
        Arc::new(Challenges::default()),
        &|_| {},
    )
    .await
    .expect("the runtime opens")
}

fn space() -> Resource {
    Resource::new(
        "space",
        ResourceKind::Space,
        Vec::new(),
        json!({ "project": "shop" }),
    )
}

fn certificate() -> Resource {
    Resource::new(
        "certificate",
        ResourceKind::Certificate,
        vec!["space".into()],
        json!({ "hostnames": ["storefront-staging.shop.localhost", "*.staging.shop.test"] }),
    )
}

#[tokio::test]
async fn resources_are_recorded_observed_and_removed_idempotently() {
    let dir = TempDir::new("local-runtime-records");
    let runtime = runtime(
        &dir,
        Duration::from_secs(90 * 86_400),
        Duration::from_secs(86_400),
    )
    .await;
    let log = StepLog::default();
    for resource in [space(), certificate()] {
        runtime
            .apply(&staging(), &resource, &log)
            .await
            .expect("apply");
        // Twice: applying what is applied changes nothing.
        runtime
            .apply(&staging(), &resource, &log)
            .await
            .expect("apply again");
        let observed = runtime
            .observe(&staging(), &resource.id)
            .await
            .expect("observe");
        assert_eq!(observed.map(|o| o.hash), Some(resource.hash.clone()));
    }
    let key = dir
        .path()
        .join("local/environments/shop/staging/tls/key.pem");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key)
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the certificate's key is the daemon's only"
    );
    for (id, kind) in [
        ("certificate", ResourceKind::Certificate),
        ("space", ResourceKind::Space),
    ] {
        runtime
            .remove(&staging(), id, kind, &log)
            .await
            .expect("remove");
        runtime
            .remove(&staging(), id, kind, &log)
            .await
            .expect("remove again");
        assert_eq!(
            runtime.observe(&staging(), id).await.expect("observe"),
            None
        );
    }
    assert!(!dir.path().join("local/environments/shop/staging").exists());
}

#[tokio::test]
async fn certificates_near_their_end_are_issued_again_and_others_are_left() {
    let dir = TempDir::new("local-runtime-renewal");
    // Valid for an hour, renewed within two: due at once.
    let due = runtime(&dir, Duration::from_secs(3600), Duration::from_secs(7200)).await;
    due.apply(&staging(), &space(), &StepLog::default())
        .await
        .expect("space");
    due.apply(&staging(), &certificate(), &StepLog::default())
        .await
        .expect("certificate");
    let chain = dir
        .path()
        .join("local/environments/shop/staging/tls/chain.pem");
    let before = std::fs::read_to_string(&chain).expect("chain");
    assert_eq!(due.renew_certificates().await, ["shop/staging"]);
    assert_ne!(
        std::fs::read_to_string(&chain).expect("chain"),
        before,
        "a new certificate"
    );
    drop(due);

    let dir = TempDir::new("local-runtime-no-renewal");
    let fresh = runtime(
        &dir,
        Duration::from_secs(90 * 86_400),
        Duration::from_secs(30 * 86_400),
    )
    .await;
    fresh
        .apply(&staging(), &space(), &StepLog::default())
        .await
        .expect("space");
    fresh
        .apply(&staging(), &certificate(), &StepLog::default())
        .await
        .expect("certificate");
    assert!(fresh.renew_certificates().await.is_empty());
}

#[tokio::test]
async fn what_the_runtime_cannot_do_is_refused_with_the_reason() {
    let dir = TempDir::new("local-runtime-refusals");
    let runtime = runtime(&dir, Duration::from_secs(3600), Duration::from_secs(60)).await;
    runtime
        .apply(&staging(), &space(), &StepLog::default())
        .await
        .expect("space");
    let database = Resource::new(
        "database/db",
        ResourceKind::Database,
        vec!["space".into()],
        json!({ "engine": "mongodb", "version": 8 }),
    );
    let error = runtime
        .apply(&staging(), &database, &StepLog::default())
        .await
        .expect_err("other engines are refused");
    assert!(
        error
            .message
            .contains("database/db: engine `mongodb` is not supported by the local runtime"),
        "{error}"
    );
    let app = Resource::new(
        "app/web",
        ResourceKind::App,
        vec!["space".into()],
        json!({ "run": "./web", "variables": {}, "source": null }),
    );
    let error = runtime
        .apply(&staging(), &app, &StepLog::default())
        .await
        .expect_err("an app without a commit is refused");
    assert!(
        error.message.contains("`web` has no commit to run from"),
        "{error}"
    );
    assert_eq!(
        runtime
            .observe(&staging(), "app/web")
            .await
            .expect("observe"),
        None
    );
    let logs = runtime.logs(&staging(), "web", 0).await;
    assert!(logs.is_err(), "no log for an app that never ran");
}

#[tokio::test]
async fn a_sleeping_environment_routes_as_sleeping_until_it_is_woken_even_across_a_restart() {
    let dir = TempDir::new("local-runtime-sleep");
    let open = |routes: Arc<Routes>| {
        let mut config = LocalConfig::new(dir.path().join("local"));
        config.ports = PortRange::parse("23000-23999").expect("range");
        LocalRuntime::open(
            config,
            Arc::new(NoSecrets),
            routes,
            Arc::new(Certificates::default()),
            Arc::new(Challenges::default()),
            &|_| {},
        )
    };
    let host = "web-staging.shop.localhost";
    let state = |routes: &Routes| routes.snapshot().lookup(host).map(|route| route.state);
    let routes = Arc::new(Routes::default());
    let runtime = open(Arc::clone(&routes)).await.expect("the runtime opens");
    let route = Resource::new(
        "route/web",
        ResourceKind::Route,
        vec!["space".into()],
        json!({ "service": "web", "hostnames": [host] }),
    );
    let log = StepLog::default();
    for resource in [space(), route.clone()] {
        runtime
            .apply(&staging(), &resource, &log)
            .await
            .expect("apply");
    }
    assert_eq!(state(&routes), Some(RouteState::Stopped), "no app runs");
    assert!(!runtime.sleeping(&staging()).await);
    assert!(
        runtime
            .sleep(&staging(), SystemTime::now())
            .await
            .expect("sleep")
    );
    assert!(
        runtime
            .sleep(&staging(), SystemTime::now())
            .await
            .expect("sleep again")
    );
    assert!(runtime.sleeping(&staging()).await);
    assert_eq!(state(&routes), Some(RouteState::Sleeping));

    // A daemon started again finds it asleep.
    runtime.shutdown().await;
    drop(runtime);
    let routes = Arc::new(Routes::default());
    let runtime = open(Arc::clone(&routes))
        .await
        .expect("the runtime opens again");
    assert!(runtime.sleeping(&staging()).await);
    assert_eq!(state(&routes), Some(RouteState::Sleeping));
    runtime.wake(&staging()).await.expect("wake");
    runtime.wake(&staging()).await.expect("wake again");
    assert!(!runtime.sleeping(&staging()).await);
    assert_eq!(state(&routes), Some(RouteState::Stopped));

    // A change to a sleeping environment wakes it first.
    assert!(
        runtime
            .sleep(&staging(), SystemTime::now())
            .await
            .expect("sleep")
    );
    runtime
        .apply(&staging(), &certificate(), &log)
        .await
        .expect("apply");
    assert!(!runtime.sleeping(&staging()).await);
    assert!(
        log.lines()
            .iter()
            .any(|l| l.contains("woke `staging` first")),
        "{:?}",
        log.lines()
    );
    runtime.shutdown().await;
}
