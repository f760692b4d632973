//! Waiting for objects to be ready, against the fake API server: rollouts that cannot succeed fail at once with the
//! pod's reason and the last events, a wait that runs out of time says what it waited for, jobs' output reaches the
//! step's log without the secrets they were given.

mod support;

use std::time::Duration;

use preview_deploy::{Runtime, StepLog};
use support::{CANARY, Cluster, changed, env, find, kubernetes_example, resources};

/// The space, secrets and database of the example, then `app` — the catalog with its image replaced.
async fn apply_catalog_with_image(cluster: &Cluster, image: &str) -> Result<(), String> {
    let example = resources(&kubernetes_example(), "staging");
    for id in ["space", "secrets", "database/db"] {
        cluster
            .apply(find(&example, id))
            .await
            .map_err(|e| e.message)?;
    }
    let app = changed(find(&example, "app/catalog"), |c| c["image"] = image.into());
    cluster.apply(&app).await.map_err(|e| e.message)
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_fails_with_the_pods_reason_and_the_events() {
    let cluster = Cluster::start().await;
    let error = apply_catalog_with_image(&cluster, "registry.example/unpullable:1")
        .await
        .expect_err("fails");
    let namespace = cluster.namespace("staging");
    assert!(
        error.starts_with(&format!(
            "Deployment {namespace}/catalog cannot become ready: pod catalog-"
        )),
        "{error}"
    );
    assert!(
        error
            .contains("ImagePullBackOff: Back-off pulling image \"registry.example/unpullable:1\""),
        "{error}"
    );
    assert!(
        error.contains("; last events: Pod catalog-")
            && error.contains("Failed: Failed to pull image"),
        "{error}"
    );
}

#[tokio::test]
async fn a_crashing_container_a_full_quota_and_no_node_each_fail_with_their_reason() {
    let cluster = Cluster::start().await;
    let error = apply_catalog_with_image(&cluster, "registry.example/crashloop:1")
        .await
        .expect_err("fails");
    assert!(error.contains("CrashLoopBackOff"), "{error}");

    let cluster = Cluster::start_with(|o| o.settings.max_pods = 0).await;
    let error = apply_catalog_with_image(&cluster, "registry.example/catalog:1")
        .await
        .expect_err("fails");
    assert!(error.contains("cannot become ready"), "{error}");
    assert!(
        error.contains("exceeded quota") && error.contains("FailedCreate"),
        "{error}"
    );

    // A pod no node can take fails the rollout once it has waited the grace a cluster autoscaler needs…
    let cluster = Cluster::start_with(|o| o.unschedulable_grace = Duration::from_millis(400)).await;
    cluster.api.set_schedulable(false);
    let started = std::time::Instant::now();
    let error = apply_catalog_with_image(&cluster, "registry.example/catalog:1")
        .await
        .expect_err("fails");
    assert!(
        error.contains("Unschedulable: 0/1 nodes are available"),
        "{error}"
    );
    assert!(started.elapsed() >= Duration::from_millis(400));
    // …and not before: within it, the rollout is waited for.
    let cluster = Cluster::start_with(|o| {
        o.unschedulable_grace = Duration::from_secs(60);
        o.ready_timeout = Duration::from_secs(2);
    })
    .await;
    cluster.api.set_schedulable(false);
    let error = apply_catalog_with_image(&cluster, "registry.example/catalog:1")
        .await
        .expect_err("times out");
    assert!(error.contains("did not become ready in time"), "{error}");
}

#[tokio::test]
async fn a_wait_that_runs_out_of_time_says_what_it_waited_for() {
    let cluster = Cluster::start_with(|o| o.ready_timeout = Duration::from_millis(1500)).await;
    let example = resources(&kubernetes_example(), "staging");
    cluster.apply(find(&example, "space")).await.expect("space");
    cluster
        .apply(find(&example, "secrets"))
        .await
        .expect("secrets");
    cluster.api.pause_controllers(true);
    let started = std::time::Instant::now();
    let error = cluster
        .apply(find(&example, "app/storefront"))
        .await
        .expect_err("times out");
    let namespace = cluster.namespace("staging");
    assert_eq!(
        error.message,
        format!(
            "Deployment {namespace}/storefront did not become ready in time: waiting for the controller to see the new generation"
        )
    );
    assert!(started.elapsed() >= Duration::from_millis(1500));
    // The wait watched the object rather than polling it.
    let watches = cluster
        .api
        .requests()
        .into_iter()
        .filter(|r| {
            r.param("watch").is_some()
                && r.param("fieldSelector") == Some("metadata.name=storefront")
        })
        .count();
    assert!(watches >= 1);
}

#[tokio::test]
async fn a_jobs_output_reaches_the_log_without_its_secrets_and_a_failed_job_fails_the_step() {
    let cluster = Cluster::start().await;
    let example = resources(&kubernetes_example(), "staging");
    for id in ["space", "secrets", "database/db"] {
        cluster.apply(find(&example, id)).await.expect(id);
    }
    cluster.api.set_logs(
        "migrate-",
        &format!("migrating with {CANARY}:project/MASKING_KEY\ndone\n"),
    );
    let log = StepLog::default();
    cluster
        .runtime
        .apply(&env("staging"), find(&example, "job/migrate"), &log)
        .await
        .expect("job");
    let lines = log.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with(": migrating with [secret]")),
        "{lines:?}"
    );
    assert!(!lines.iter().any(|l| l.contains(CANARY)), "{lines:?}");

    let failing = changed(find(&example, "job/migrate"), |c| {
        c["command"] = "bin/shop-catalog fail".into()
    });
    let failing_job = format!("migrate-{}", &failing.hash[..8]);
    cluster.api.set_logs(&failing_job, "fail output: boom\n");
    let log = StepLog::default();
    let error = cluster
        .runtime
        .apply(&env("staging"), &failing, &log)
        .await
        .expect_err("fails");
    assert!(
        error
            .message
            .contains("BackoffLimitExceeded: Job has reached the specified backoff limit"),
        "{}",
        error.message
    );
    assert!(
        log.lines()
            .iter()
            .any(|l| l.starts_with(&failing_job) && l.ends_with(": fail output: boom")),
        "the failed run's output is in the log too: {:?}",
        log.lines()
    );
}
