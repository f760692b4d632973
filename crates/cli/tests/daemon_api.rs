//! The daemon's API as clients meet it: authentication, bad input, concurrency, restarts.

mod support;

use std::os::unix::fs::PermissionsExt;

use serde_json::json;
use support::{Daemon, register_example, wait_until_ended};

/// Registers the example project through the API.
fn registered(name: &str) -> (preview_testing::TempDir, Daemon) {
    let root = preview_testing::TempDir::new(name);
    let daemon = Daemon::start(&root.path().join("data"), &[]);
    register_example(&daemon);
    (root, daemon)
}

/// Everything a client can read, to show that a refused request changed nothing.
fn snapshot(daemon: &Daemon) -> serde_json::Value {
    let get = |path: &str| daemon.http("GET", path, Some(&daemon.token), None, b"").1;
    json!({
        "projects": get("/v1/projects"),
        "project": get("/v1/projects/shop"),
        "environments": get("/v1/projects/shop/environments"),
    })
}

#[test]
fn the_client_config_is_private_and_the_token_is_stored_hashed() {
    let (root, daemon) = registered("token");
    let config = root.path().join("data/client.json");
    let mode = std::fs::metadata(&config)
        .expect("config")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "only the owner may read the client config");
    let database = std::fs::read(root.path().join("data/preview.db")).expect("db");
    let wal = std::fs::read(root.path().join("data/preview.db-wal")).unwrap_or_default();
    for bytes in [database, wal] {
        assert!(
            !bytes
                .windows(daemon.token.len())
                .any(|w| w == daemon.token.as_bytes()),
            "the token is stored only as a hash"
        );
    }
    // A restart keeps the token the CLI already has.
    let token = daemon.token.clone();
    daemon.stop();
    let restarted = Daemon::start(&root.path().join("data"), &[]);
    assert_eq!(restarted.token, token);
}

/// Method, path, token, content type, body; the expected status and a part of the expected message.
type BadRequest<'a> = (
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    &'a [u8],
    u16,
    &'a str,
);

#[test]
fn bad_requests_get_a_clear_4xx_and_change_nothing() {
    let (_root, daemon) = registered("bad-input");
    assert!(daemon.cli(&["env", "create", "staging"]).status.success());
    let before = snapshot(&daemon);
    let token = Some(daemon.token.as_str());
    let json_type = Some("application/json");
    let big = vec![b'x'; 2 * 1024 * 1024];
    let big_json = format!(
        "{{\"file\": \"preview.yaml\", \"source\": \"{}\"}}",
        "y".repeat(2 * 1024 * 1024)
    );
    let cases: Vec<BadRequest> = vec![
        (
            "GET",
            "/v1/projects/shop/environments/nope",
            token,
            None,
            b"",
            404,
            "has no environment `nope`",
        ),
        (
            "POST",
            "/v1/projects/shop/environments/nope/deploy",
            token,
            json_type,
            b"{}",
            404,
            "has no environment `nope`",
        ),
        (
            "DELETE",
            "/v1/projects/shop/environments/nope",
            token,
            None,
            b"",
            404,
            "has no environment `nope`",
        ),
        (
            "GET",
            "/v1/projects/nope/environments",
            token,
            None,
            b"",
            404,
            "no project `nope`",
        ),
        (
            "GET",
            "/v1/deployments/0000000000",
            token,
            None,
            b"",
            404,
            "no deployment `0000000000`",
        ),
        (
            "POST",
            "/v1/projects/shop/environments",
            token,
            json_type,
            b"{\"name\": ",
            400,
            "malformed JSON",
        ),
        (
            "POST",
            "/v1/projects/shop/environments",
            token,
            json_type,
            b"{\"nom\": \"qa\"}",
            400,
            "unexpected JSON",
        ),
        (
            "POST",
            "/v1/projects/shop/environments",
            token,
            None,
            b"{\"name\": \"qa\"}",
            400,
            "Content-Type: application/json",
        ),
        (
            "POST",
            "/v1/projects/shop/environments",
            token,
            json_type,
            b"{\"name\": \"qa\"}",
            404,
            "`qa` is not an environment of project `shop`",
        ),
        (
            "POST",
            "/v1/projects/shop/environments",
            token,
            json_type,
            b"{\"name\": \"staging\"}",
            409,
            "already exists",
        ),
        (
            "POST",
            "/v1/projects/shop/environments/staging/clone",
            token,
            json_type,
            b"{\"name\": \"Bad_Name\"}",
            400,
            "not a valid environment name",
        ),
        (
            "POST",
            "/v1/projects",
            token,
            json_type,
            b"{\"file\": \"p.yaml\", \"source\": \"project: Bad\"}",
            400,
            "p.yaml:1:10 project: `Bad` is not a valid project name",
        ),
        (
            "POST",
            "/v1/projects",
            token,
            json_type,
            &big,
            413,
            "request body too large",
        ),
        (
            "POST",
            "/v1/projects",
            token,
            json_type,
            big_json.as_bytes(),
            413,
            "request body too large",
        ),
        (
            "GET",
            "/v1/projects",
            None,
            None,
            b"",
            401,
            "missing or wrong token",
        ),
        (
            "GET",
            "/v1/projects",
            Some("wrong"),
            None,
            b"",
            401,
            "missing or wrong token",
        ),
        (
            "POST",
            "/v1/projects/shop/environments",
            Some("wrong"),
            json_type,
            b"{\"name\": \"qa\"}",
            401,
            "missing or wrong token",
        ),
        (
            "GET",
            "/v1/nothing-here",
            token,
            None,
            b"",
            404,
            "no such API route",
        ),
        // Names from the path are checked before anything uses them: no way out of a directory.
        (
            "GET",
            "/v1/projects/shop/environments/staging/services/..%2F..%2F..%2Fdaemon/logs",
            token,
            None,
            b"",
            400,
            "the path's service \"../../../daemon\" is not a valid name",
        ),
        (
            "GET",
            "/v1/projects/shop/environments/..%2Fstaging/services/storefront/logs",
            token,
            None,
            b"",
            400,
            "the path's environment \"../staging\" is not a valid name",
        ),
        (
            "GET",
            "/v1/projects/%2e%2e/environments",
            token,
            None,
            b"",
            400,
            "the path's project \"..\" is not a valid name",
        ),
        (
            "GET",
            "/v1/deployments/..%2F..%2Fetc",
            token,
            None,
            b"",
            400,
            "the path's id \"../../etc\" is not a valid name",
        ),
        // A spec's file name with a control character, a secret's `previews` that is not a string, a secret body
        // with a field it does not have.
        (
            "POST",
            "/v1/projects",
            token,
            json_type,
            b"{\"file\": \"shop\\u001b[2J.yaml\", \"source\": \"project: shop\"}",
            400,
            "file: the spec's file name is 1 to 255 characters, none of them a control character",
        ),
        (
            "POST",
            "/v1/projects/shop/secrets",
            token,
            json_type,
            b"{\"scope\": \"project\", \"name\": \"MASKING_KEY\", \"value\": \"v\", \"previews\": {}}",
            400,
            "`previews` is a string",
        ),
        (
            "POST",
            "/v1/projects/shop/secrets",
            token,
            json_type,
            b"{\"scope\": \"project\", \"name\": \"MASKING_KEY\", \"value\": \"v\", \"note\": \"x\"}",
            400,
            "unknown field `note`",
        ),
        (
            "POST",
            "/webhooks/%FF",
            None,
            json_type,
            b"{}",
            400,
            "the path: Invalid UTF-8 in `project`",
        ),
        // A name that is not UTF-8, and query parameters the route does not take: JSON errors too.
        (
            "GET",
            "/v1/projects/%FF/environments",
            token,
            None,
            b"",
            400,
            "the path: Invalid UTF-8 in `project`",
        ),
        (
            "GET",
            "/v1/projects/shop/environments/staging/plan?branch=main",
            token,
            None,
            b"",
            400,
            "the query string: branch: unknown field `branch`, expected `commit`",
        ),
        (
            "GET",
            "/v1/projects/shop/environments/staging/services/storefront/logs?from=x",
            token,
            None,
            b"",
            400,
            "the query string: from: invalid digit",
        ),
        // A service that is not the environment's has no log.
        (
            "GET",
            "/v1/projects/shop/environments/staging/services/nobody/logs",
            token,
            None,
            b"",
            404,
            "has no app, job or database `nobody`",
        ),
    ];
    for (method, path, token, content_type, body, status, message) in cases {
        let (got, answer) = daemon.http(method, path, token, content_type, body);
        let text = answer["error"]["message"].as_str().unwrap_or("");
        assert_eq!(got, status, "{method} {path}: {answer}");
        assert!(
            text.contains(message),
            "{method} {path}: {text:?} lacks {message:?}"
        );
    }
    assert_eq!(
        snapshot(&daemon),
        before,
        "refused requests changed nothing"
    );
}

#[test]
fn a_second_deployment_is_refused_with_the_running_ones_id() {
    let root = preview_testing::TempDir::new("busy");
    let daemon = Daemon::start(&root.path().join("data"), &["--fault", "hang@1"]);
    register_example(&daemon);
    let first = daemon.json(&["env", "create", "staging", "--no-wait"]);
    let id = first["deployment"]["id"].as_str().expect("id").to_owned();
    let second = daemon.cli(&["env", "create", "staging"]);
    assert_eq!(second.status.code(), Some(1));
    let message = String::from_utf8_lossy(&second.stderr);
    assert!(
        message.contains(&format!(
            "environment `staging` is busy: deployment {id} is running"
        )),
        "{message}"
    );
    // Cancelling rolls the first one back.
    let cancel = daemon.cli(&["deploy", "cancel", "staging"]);
    assert!(
        cancel.status.success(),
        "{}",
        String::from_utf8_lossy(&cancel.stderr)
    );
    let ended = wait_until_ended(&daemon, &id);
    assert_eq!(ended["deployment"]["status"], "rolled_back");
    assert_eq!(ended["deployment"]["reason"], "cancelled");
}

#[test]
fn fifty_environments_at_once_all_complete() {
    let (_root, daemon) = registered("fifty");
    assert!(daemon.cli(&["env", "create", "staging"]).status.success());
    let ids: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..50)
            .map(|i| {
                let daemon = &daemon;
                scope.spawn(move || {
                    let (status, answer) = daemon.http(
                        "POST",
                        "/v1/projects/shop/environments/staging/clone",
                        Some(&daemon.token),
                        Some("application/json"),
                        json!({ "name": format!("pr-{i}") }).to_string().as_bytes(),
                    );
                    assert_eq!(status, 202, "{answer}");
                    answer["deployment"]["id"].as_str().expect("id").to_owned()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    for id in &ids {
        assert_eq!(
            wait_until_ended(&daemon, id)["deployment"]["status"],
            "committed"
        );
    }
    let listed = daemon.json(&["env", "list"]);
    assert_eq!(listed["environments"].as_array().map(Vec::len), Some(51));
}

#[test]
fn plan_shows_changes_and_hides_secrets() {
    let (_root, daemon) = registered("plan");
    let out = daemon.cli(&["plan", "staging"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("Plan for `staging`: 9 steps (9 to create)"),
        "{text}"
    );
    assert!(text.contains("SESSION_KEY=[secret]"), "{text}");
    assert!(daemon.cli(&["env", "create", "staging"]).status.success());
    let out = daemon.cli(&["plan", "staging"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "No changes: `staging` is up to date.\n"
    );
    let plan = daemon.json(&["plan", "staging"]);
    assert_eq!(plan["plan"]["steps"].as_array().map(Vec::len), Some(0));
}

#[test]
fn a_daemon_sharing_a_postgres_store_takes_over_when_the_other_dies() {
    let server = preview_testing::TestPostgres::start();
    let url = server.create_database("shared");
    let root = preview_testing::TempDir::new("shared-store");
    // Both daemons record into one runtime directory, as two daemons would drive one cluster.
    let runtime = format!("recording:{}", root.path().join("runtime").display());
    let common = [
        "--store",
        url.as_str(),
        "--runtime",
        runtime.as_str(),
        "--lease-ttl",
        "1",
    ];
    let mut with_fault = common.to_vec();
    with_fault.extend(["--fault", "stop-after@3"]);
    let first = Daemon::start(&root.path().join("a"), &with_fault);
    register_example(&first);
    let started = first.json(&["env", "create", "staging", "--no-wait"]);
    let id = started["deployment"]["id"].as_str().expect("id").to_owned();
    let marker = root.path().join("runtime/fault-reached");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !marker.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the fault was not reached"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    first.kill();
    // Daemons sharing a store share its master key.
    std::fs::create_dir_all(root.path().join("b")).expect("data dir");
    std::fs::copy(
        root.path().join("a/master.key"),
        root.path().join("b/master.key"),
    )
    .expect("copy key");
    // The second daemon starts while the first one's lease may still be valid; its sweep takes over later.
    let second = Daemon::start(&root.path().join("b"), &common);
    let ended = wait_until_ended(&second, &id);
    assert_eq!(ended["deployment"]["status"], "rolled_back", "{ended}");
    let address = preview_deploy::EnvironmentAddress {
        project: "shop".into(),
        environment: "staging".into(),
    };
    assert!(preview_deploy::read_state(&root.path().join("runtime"), &address).is_empty());
    // The environment is free again for the surviving daemon.
    let created = second.cli(&["env", "create", "staging"]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
}

#[test]
fn a_deployment_that_cannot_finish_is_retried_later_and_an_operator_can_abandon_it() {
    let root = preview_testing::TempDir::new("abandon");
    let data = root.path().join("data");
    // Creating staging takes nine operations; from the tenth on the runtime fails every time.
    let daemon = Daemon::start(&data, &["--fault", "fail-from@10"]);
    register_example(&daemon);
    assert!(daemon.cli(&["env", "create", "staging"]).status.success());
    let failed = daemon.cli(&["env", "delete", "staging"]);
    assert!(!failed.status.success());
    let history = daemon.json(&["deployments", "staging"]);
    let last = &history["deployments"][0];
    assert_eq!(last["status"], "failed", "{history}");
    let id = last["id"].as_str().expect("id").to_owned();
    let shown = daemon.cli(&["deployment", "show", &id]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("tried    1 time(s) to finish it"), "{text}");
    assert!(
        text.contains(&format!("preview deployment abandon {id}")),
        "{text}"
    );
    // It holds the environment until then.
    let busy = daemon.cli(&["deploy", "staging"]);
    assert!(!busy.status.success());
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains(&format!(
            "deployment {id} could not finish and is tried again later"
        )),
        "{}",
        String::from_utf8_lossy(&busy.stderr)
    );
    let abandoned = daemon.cli(&["deployment", "abandon", &id]);
    assert!(
        abandoned.status.success(),
        "{}",
        String::from_utf8_lossy(&abandoned.stderr)
    );
    let said = String::from_utf8_lossy(&abandoned.stdout);
    assert!(said.contains("`staging` needs attention"), "{said}");
    assert!(
        said.contains("not undone"),
        "what may be left is listed: {said}"
    );
    let listed = daemon.cli(&["env", "list"]);
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("NEEDS ATTENTION"),
        "{}",
        String::from_utf8_lossy(&listed.stdout)
    );
    let again = daemon.cli(&["deployment", "abandon", &id]);
    assert!(!again.status.success(), "abandoned once");
}

/// A copy of a data directory used to set up a second daemon sharing a store carries the first daemon's name; two
/// live daemons with one name would take each other's deployments over at once. The copy is refused while the
/// first runs; the first, started again where it was, keeps its name and its deployments.
#[test]
fn a_copied_data_directory_cannot_run_beside_its_original() {
    let server = preview_testing::TestPostgres::start();
    let url = server.create_database("copied");
    let root = preview_testing::TempDir::new("copied-id");
    let (original, copy) = (root.path().join("data"), root.path().join("copy"));
    let flags = ["--store", url.as_str(), "--lease-ttl", "1"];
    let daemon = Daemon::start(&original, &flags);
    daemon.stop();
    support::copy_dir(&original, &copy);
    let daemon = Daemon::start(&original, &flags);
    let refused = support::serve_refused_with(&copy, &flags);
    let said = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(
        said.contains("another daemon named `daemon-")
            && said.contains(&original.display().to_string()),
        "{said}"
    );
    // Started again at once where it runs (after a crash, say), a daemon is not kept out by its own last start.
    daemon.kill();
    Daemon::start(&original, &flags).stop();
    // Once the original has been gone for three lease periods, the name may be used elsewhere (a directory moved
    // or restored from a backup).
    std::thread::sleep(std::time::Duration::from_secs(4));
    Daemon::start(&copy, &flags).stop();
}
