//! Database data on a cluster, through port forwards of the fake API server to a real PostgreSQL server made as
//! the image makes one: staging seeded from the example's seed file at the deployed commit, a preview a masked copy
//! of staging, data kept by later applies, and seeds, copies and forwards that fail named and retried from scratch.

mod support;

use preview_deploy::{Runtime, StepLog};
use preview_plan::Resource;
use serde_json::json;
use support::{
    Cluster, changed, clone_resources, env, find, in_order, kubernetes_example, resources,
};

/// The database name of the environment's `db`.
fn database_name(resources: &[Resource]) -> String {
    find(resources, "database/db").content["name"]
        .as_str()
        .expect("a name")
        .to_owned()
}

/// `query` in `database` of the environment's database server, as its superuser.
fn sql(cluster: &Cluster, environment: &str, database: &str, query: &str) -> String {
    cluster
        .postgres
        .server(&format!("shop-{environment}-"), "db-0")
        .expect("a database pod was reached")
        .sql(database, query)
        .unwrap_or_else(|e| panic!("{query}: {e}"))
}

async fn apply_logged(
    cluster: &Cluster,
    environment: &str,
    resource: &Resource,
) -> (Result<(), preview_deploy::RuntimeError>, String) {
    let log = StepLog::default();
    let result = cluster
        .runtime
        .apply(&env(environment), resource, &log)
        .await;
    (result, log.lines().join("\n"))
}

#[tokio::test]
async fn staging_is_seeded_and_a_preview_is_a_masked_copy_that_joins_like_it() {
    let cluster = Cluster::start().await;
    let example = kubernetes_example();
    let staging = resources(&example, "staging");
    let staging_db = database_name(&staging);
    for resource in in_order(&staging) {
        let (result, log) = apply_logged(&cluster, "staging", &resource).await;
        result.unwrap_or_else(|e| panic!("{}: {e}", resource.id));
        if resource.id == "database/db" {
            assert!(
                log.contains(&format!("{staging_db} seeded from db/seed.sql")),
                "{log}"
            );
        }
    }
    assert_eq!(
        sql(
            &cluster,
            "staging",
            &staging_db,
            "SELECT count(*) FROM customers"
        ),
        "3"
    );
    // Its server asks every login for its password, those arriving on its loopback through a forward included.
    let server = cluster
        .postgres
        .server("shop-staging-", "db-0")
        .expect("staging's server");
    assert!(server.login(&staging_db, None, &staging_db).is_err());
    assert!(
        server
            .login(&staging_db, Some("wrong"), &staging_db)
            .is_err()
    );
    // The environment's role owns its data.
    assert_eq!(
        sql(
            &cluster,
            "staging",
            &staging_db,
            "SELECT tableowner FROM pg_tables WHERE tablename = 'customers'"
        ),
        staging_db
    );

    // A later apply of a changed resource keeps the data, rows added since included.
    sql(
        &cluster,
        "staging",
        &staging_db,
        "INSERT INTO customers (email, full_name) VALUES ('zed@corp.test', 'Zed Quux')",
    );
    let db = find(&staging, "database/db");
    let again = changed(db, |content| content["storage_note"] = json!("more"));
    let (result, log) = apply_logged(&cluster, "staging", &again).await;
    result.expect("applied again");
    assert!(log.contains("kept with its data"), "{log}");
    assert!(!log.contains("seeded"), "{log}");
    assert_eq!(
        sql(
            &cluster,
            "staging",
            &staging_db,
            "SELECT count(*) FROM customers"
        ),
        "4"
    );

    // The preview: a masked copy of staging as it is now, read from staging's pod and written into its own.
    cluster.api.clear_requests();
    let preview = clone_resources(&example, "staging", "pr-1");
    let preview_db = database_name(&preview);
    assert_ne!(preview_db, staging_db);
    for resource in in_order(&preview) {
        let (result, log) = apply_logged(&cluster, "pr-1", &resource).await;
        result.unwrap_or_else(|e| panic!("{}: {e}", resource.id));
        if resource.id == "database/db" {
            assert!(
                log.contains(&format!("{preview_db} masked and copied from `staging`")),
                "{log}"
            );
        }
    }
    assert_eq!(
        sql(
            &cluster,
            "pr-1",
            &preview_db,
            "SELECT count(*) FROM customers"
        ),
        "4"
    );
    let emails = sql(
        &cluster,
        "pr-1",
        &preview_db,
        "SELECT string_agg(email || ' ' || full_name, ',') FROM customers",
    );
    for original in [
        "ada@example.test",
        "Ada Lovelace",
        "zed@corp.test",
        "Zed Quux",
    ] {
        assert!(!emails.contains(original), "{original} in {emails}");
    }
    // Orders still find their customers by the masked e-mail.
    assert_eq!(
        sql(
            &cluster,
            "pr-1",
            &preview_db,
            "SELECT count(*) FROM orders o JOIN customers c ON c.email = o.customer_email"
        ),
        sql(
            &cluster,
            "staging",
            &staging_db,
            "SELECT count(*) FROM orders"
        )
    );
    assert_eq!(
        sql(
            &cluster,
            "pr-1",
            &preview_db,
            "SELECT tableowner FROM pg_tables WHERE tablename = 'customers'"
        ),
        preview_db
    );
    // The role the copy was written as is not left on the preview's server.
    assert_eq!(
        sql(
            &cluster,
            "pr-1",
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolname = 'preview_golden'"
        ),
        "0"
    );
    // The preview's apply reached both pods through the API server's port forwarding.
    let forwards: Vec<String> = cluster
        .api
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/portforward"))
        .map(|r| r.path.clone())
        .collect();
    assert!(
        forwards
            .iter()
            .any(|p| p.contains("/namespaces/shop-staging-")),
        "{forwards:?}"
    );
    assert!(
        forwards
            .iter()
            .any(|p| p.contains("/namespaces/shop-pr-1-")),
        "{forwards:?}"
    );
}

/// A repository whose one commit holds `seed` as `db/seed.sql`, as a database's source.
fn repository_with_seed(dir: &std::path::Path, seed: &str) -> serde_json::Value {
    let repo = dir.join("repo");
    std::fs::create_dir_all(repo.join("db")).expect("repo");
    std::fs::write(repo.join("db/seed.sql"), seed).expect("seed");
    let git = |args: &[&str]| {
        let status = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.test"])
            .args(args)
            .current_dir(&repo)
            .status()
            .expect("git");
        assert!(status.success(), "git {args:?}");
    };
    git(&["init", "--quiet"]);
    git(&["add", "-A"]);
    git(&["commit", "--quiet", "-m", "seed"]);
    let head = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(&repo)
        .output()
        .expect("git");
    json!({
        "repository": repo.display().to_string(),
        "directory": "",
        "commit": String::from_utf8_lossy(&head.stdout).trim(),
    })
}

#[tokio::test]
async fn a_seed_that_fails_names_its_line_and_keeps_nothing_and_the_next_attempt_starts_afresh() {
    let cluster = Cluster::start().await;
    let staging = resources(&kubernetes_example(), "staging");
    let name = database_name(&staging);
    for resource in in_order(&staging)
        .into_iter()
        .filter(|r| r.id == "space" || r.id == "secrets")
    {
        cluster.apply(&resource).await.expect("applied");
    }
    let db = find(&staging, "database/db");
    let bad = changed(db, |content| {
        content["source"] = repository_with_seed(
            cluster.dir.path(),
            "CREATE TABLE kept (id int);\nINSERT INTO kept VALUES (1);\nINSERT INTO nowhere VALUES (2);\n",
        );
    });
    let error = cluster.apply(&bad).await.expect_err("the seed fails");
    assert!(error.message.contains("db/seed.sql:3"), "{error}");
    assert!(error.message.contains("nowhere"), "{error}");
    assert_eq!(
        sql(
            &cluster,
            "staging",
            &name,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'kept'"
        ),
        "0",
        "nothing of the failed seed is kept"
    );
    // Marked as being made, not complete: the next attempt seeds from an empty database.
    assert_eq!(
        sql(
            &cluster,
            "staging",
            "postgres",
            &format!(
                "SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = '{name}'"
            )
        ),
        "preview: filling for shop/staging/db"
    );
    // A filling attempt that stopped between dropping the database and making it again leaves none: made anew.
    sql(
        &cluster,
        "staging",
        "postgres",
        &format!("DROP DATABASE {name} WITH (FORCE)"),
    );
    cluster
        .apply(db)
        .await
        .expect("made again when it is not there");
    assert_eq!(
        sql(&cluster, "staging", &name, "SELECT count(*) FROM customers"),
        "3"
    );
    sql(
        &cluster,
        "staging",
        "postgres",
        &format!("COMMENT ON DATABASE {name} IS 'preview: filling for shop/staging/db'"),
    );
    sql(&cluster, "staging", &name, "CREATE TABLE leftover (id int)");
    cluster
        .apply(&changed(db, |content| {
            content["storage_note"] = json!("retried")
        }))
        .await
        .expect("the example's seed");
    assert_eq!(
        sql(
            &cluster,
            "staging",
            &name,
            "SELECT count(*) FROM pg_tables WHERE tablename IN ('leftover', 'customers')"
        ),
        "1",
        "the database was made again before the seed"
    );

    // Data no attempt was making — written before databases were marked, or its mark lost — is kept and marked,
    // whatever the clone policy would make.
    sql(
        &cluster,
        "staging",
        "postgres",
        &format!("COMMENT ON DATABASE {name} IS NULL"),
    );
    sql(
        &cluster,
        "staging",
        &name,
        "INSERT INTO customers (email, full_name) VALUES ('kept@corp.test', 'Kept')",
    );
    let log = StepLog::default();
    let again = changed(db, |content| content["storage_note"] = json!("again"));
    cluster
        .runtime
        .apply(&env("staging"), &again, &log)
        .await
        .expect("applied");
    let log = log.lines().join("\n");
    assert!(log.contains("already holds data, kept as it is"), "{log}");
    assert_eq!(
        sql(
            &cluster,
            "staging",
            &name,
            "SELECT count(*) FROM customers WHERE email = 'kept@corp.test'"
        ),
        "1"
    );
    assert_eq!(
        sql(
            &cluster,
            "staging",
            "postgres",
            &format!(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '{name}'"
            )
        ),
        "preview: ready for shop/staging/db"
    );
}

/// The environment's resources applied in order up to the first that fails: its id and error.
async fn first_failure(
    cluster: &Cluster,
    environment: &str,
    resources: &[Resource],
) -> (String, preview_deploy::RuntimeError) {
    for resource in in_order(resources) {
        if let Err(error) = cluster
            .runtime
            .apply(&env(environment), &resource, &StepLog::default())
            .await
        {
            return (resource.id.clone(), error);
        }
    }
    panic!("every resource of {environment} was applied");
}

#[tokio::test]
async fn a_pod_that_cannot_be_reached_a_missing_or_incomplete_source_and_credentials_in_it_fail_the_step_by_name()
 {
    let cluster = Cluster::start().await;
    let example = kubernetes_example();
    // A preview of an environment that is not on this cluster at all.
    let (id, error) = first_failure(
        &cluster,
        "pr-1",
        &clone_resources(&example, "staging", "pr-1"),
    )
    .await;
    assert_eq!(id, "database/db");
    assert!(
        error
            .message
            .contains("environment `staging` has no database `db` on this cluster"),
        "{error}"
    );

    // A pod the API server does not forward to.
    let staging = resources(&example, "staging");
    for resource in in_order(&staging)
        .into_iter()
        .filter(|r| r.id == "space" || r.id == "secrets")
    {
        cluster.apply(&resource).await.expect("applied");
    }
    cluster
        .api
        .fail_next("GET", "/pods/db-0/portforward", 403, "Forbidden");
    let error = cluster
        .apply(find(&staging, "database/db"))
        .await
        .expect_err("no forwarding");
    assert!(error.message.contains("database `db`"), "{error}");
    assert!(error.message.contains("db-0"), "{error}");
    assert!(error.message.contains("port 5432"), "{error}");

    // Staging's database exists, but its data was never made: not copied.
    let (id, error) = first_failure(
        &cluster,
        "pr-2",
        &clone_resources(&example, "staging", "pr-2"),
    )
    .await;
    assert_eq!(id, "database/db");
    assert!(
        error
            .message
            .contains("the database of `staging` is not complete"),
        "{error}"
    );

    // Complete, but holding another system's credentials in a user mapping: not copied, the password not quoted.
    cluster
        .apply(find(&staging, "database/db"))
        .await
        .expect("seeded");
    let staging_db = database_name(&staging);
    sql(
        &cluster,
        "staging",
        &staging_db,
        "CREATE EXTENSION postgres_fdw; CREATE SERVER billing FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'billing.example.test'); CREATE USER MAPPING FOR PUBLIC SERVER billing OPTIONS (user 'shop', password 'billing-password-9d1e')",
    );
    let (id, error) = first_failure(
        &cluster,
        "pr-3",
        &clone_resources(&example, "staging", "pr-3"),
    )
    .await;
    assert_eq!(id, "database/db");
    assert!(
        error
            .message
            .contains("user mappings for foreign servers (billing for public)"),
        "{error}"
    );
    assert!(!error.message.contains("billing-password-9d1e"), "{error}");

    // Complete, but for another environment (a restored volume, say): not taken for staging's.
    sql(
        &cluster,
        "staging",
        &staging_db,
        "DROP USER MAPPING FOR PUBLIC SERVER billing",
    );
    sql(
        &cluster,
        "staging",
        "postgres",
        &format!("COMMENT ON DATABASE {staging_db} IS 'preview: ready for shop/qa/db'"),
    );
    let (id, error) = first_failure(
        &cluster,
        "pr-4",
        &clone_resources(&example, "staging", "pr-4"),
    )
    .await;
    assert_eq!(id, "database/db");
    assert!(
        error
            .message
            .contains("the database of `staging` is not complete"),
        "{error}"
    );
}

#[tokio::test]
async fn a_database_made_again_by_another_attempt_meanwhile_is_not_marked_complete() {
    let cluster = Cluster::start().await;
    let example = kubernetes_example();
    cluster
        .create("staging", &resources(&example, "staging"))
        .await;
    let preview = clone_resources(&example, "staging", "pr-1");
    let preview_db = database_name(&preview);
    let staging_namespace = cluster.namespace("staging");
    // The copy's first connection to staging is held, long enough for another attempt to make the preview's
    // database again meanwhile.
    cluster.api.delay(
        "GET",
        &format!("/namespaces/{staging_namespace}/pods/db-0/portforward"),
        std::time::Duration::from_secs(3),
    );
    let runtime = std::sync::Arc::clone(&cluster.runtime);
    let applying = tokio::spawn(async move {
        let log = StepLog::default();
        for resource in in_order(&preview) {
            let applied = runtime.apply(&env("pr-1"), &resource, &log).await;
            if resource.id == "database/db" {
                return applied;
            }
            applied.unwrap_or_else(|e| panic!("{}: {e}", resource.id));
        }
        panic!("no database");
    });
    let filling = "preview: filling for shop/pr-1/db";
    let comment = format!(
        "SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = '{preview_db}'"
    );
    let mut seen = false;
    for _ in 0..100 {
        let server = cluster.postgres.server("shop-pr-1-", "db-0");
        if server.is_some_and(|s| s.sql("postgres", &comment).as_deref() == Ok(filling)) {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(seen, "the preview's database is being made");
    // Another attempt: the database dropped and made again, marked as being made.
    for statement in [
        format!("DROP DATABASE {preview_db} WITH (FORCE)"),
        format!("CREATE DATABASE {preview_db} OWNER {preview_db}"),
        format!("COMMENT ON DATABASE {preview_db} IS '{filling}'"),
    ] {
        sql(&cluster, "pr-1", "postgres", &statement);
    }
    cluster.api.clear_faults();
    let error = applying
        .await
        .expect("the apply ends")
        .expect_err("not marked");
    assert!(
        error
            .message
            .contains("was made again by another attempt meanwhile; not marked"),
        "{error}"
    );
    assert_eq!(sql(&cluster, "pr-1", "postgres", &comment), filling);
}
