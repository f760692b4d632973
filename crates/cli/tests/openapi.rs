//! The REST API against its own OpenAPI document, served at `/api/openapi.json`: the document validates as
//! OpenAPI 3.1 (`openapi-spec-validator`), and Schemathesis — a property-based checker driven by the document —
//! sends thousands of generated requests to a live daemon (the example project registered, `staging` made) and
//! fails on any 5xx, any answer off its documented status, content type, headers or body schema, any request that
//! breaks the schema yet is accepted, and any operation that answers without the token.
//!
//! The checker and the validator come from PyPI; `scripts/test` installs them into `target/test-tools/venv`.

mod support;

use std::process::Command;

use support::{Daemon, register_example};

#[test]
fn the_api_keeps_to_its_openapi_document() {
    let installs = "Schemathesis and openapi-spec-validator from PyPI (`venv`)";
    let (st, validator) = (
        support::test_tool("venv/bin/st", installs),
        support::test_tool("venv/bin/openapi-spec-validator", installs),
    );
    let root = preview_testing::TempDir::new("openapi");
    let daemon = Daemon::start(&root.path().join("data"), &[]);
    register_example(&daemon);
    let created = daemon.json(&["env", "create", "staging"]);
    let deployment = created["deployment"]["id"].as_str().expect("id").to_owned();

    // The document is public, JSON, and OpenAPI 3.1.
    let (status, head, document) = daemon.http_full("GET", "/api/openapi.json", &[], b"");
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(
        document["components"]["securitySchemes"]["token"]["scheme"],
        "bearer"
    );
    let file = root.path().join("openapi.json");
    std::fs::write(&file, document.to_string()).expect("document");
    let validated = Command::new(&validator)
        .arg(&file)
        .output()
        .expect("openapi-spec-validator");
    assert!(
        validated.status.success(),
        "the document is not valid OpenAPI 3.1:\n{}{}",
        String::from_utf8_lossy(&validated.stdout),
        String::from_utf8_lossy(&validated.stderr)
    );

    // Names that exist, so that the generated requests reach more than 404s.
    let config = root.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            "[parameters]\n\"path.project\" = \"shop\"\n\"path.environment\" = \"staging\"\n\"path.service\" = \"db\"\n\"path.id\" = \"{deployment}\"\n"
        ),
    )
    .expect("config");
    let seed =
        std::env::var("PREVIEW_TEST_SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261130".to_owned());
    let checked = Command::new(&st)
        .current_dir(root.path())
        .arg("--config-file")
        .arg(&config)
        .args([
            "run",
            &format!("http://{}/api/openapi.json", daemon.address),
        ])
        .args([
            "--header",
            &format!("Authorization: Bearer {}", daemon.token),
        ])
        // Every check but two: whether a request the schema allows is accepted (a spec, a scope or a commit is
        // checked against the project, which no schema says), and whether a resource one operation made is found
        // by another (its guesses link unrelated names, such as a project's and a variable's).
        .args(["--checks", "all"])
        .args([
            "--exclude-checks",
            "positive_data_acceptance,ensure_resource_availability",
        ])
        // Server-sent event streams end only with what they follow (or after an hour): not for a checker that
        // waits for whole answers.
        .args(["--exclude-path-regex", "/events$"])
        // One worker: with two threads, Debian 12's Python 3.11 (before 3.11.5) shares the AST recursion counter
        // between them, and Hypothesis reading a lambda's source in both at once fails with "AST constructor
        // recursion depth mismatch" — a crash of the checker, not a finding about the API.
        .args(["--max-examples", "60", "--workers", "1", "--seed", &seed])
        .args(["--generation-database", "none", "--no-color"])
        .output()
        .expect("schemathesis");
    let report = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success(),
        "the API left its document (seed {seed}):\n{report}\n{}\n{}",
        String::from_utf8_lossy(&checked.stderr),
        support::read_log(&daemon.data)
    );
    // It really ran: thousands of cases over every operation.
    let generated: u64 = report
        .lines()
        .find_map(|line| line.trim().split_once(" generated, "))
        .and_then(|(count, _)| count.parse().ok())
        .unwrap_or(0);
    assert!(generated >= 1000, "too few cases were generated:\n{report}");
    // Every operation it loaded was tested (it may leave out the one that serves the document itself).
    let operations = document["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|item| item.as_object().map_or(0, |methods| methods.len()))
        .sum::<usize>();
    let field = |name: &str| {
        report
            .lines()
            .find_map(|line| line.trim().strip_prefix(name))
            .map(str::trim)
            .unwrap_or_default()
            .to_owned()
    };
    let (selected, tested) = (field("Selected:"), field("Tested:"));
    let loaded: usize = tested.parse().unwrap_or(0);
    let streams = document["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .filter(|path| path.ends_with("/events"))
        .count();
    assert!(
        selected.ends_with(&format!("/{}", loaded + streams)) && loaded + streams + 1 >= operations,
        "not every operation was tested ({selected} selected, {tested} tested, {operations} documented):\n{report}"
    );
}

/// Every operation the document says needs the token answers 401 without it (the checker can miss a route that
/// 404s before its authentication would show); those it says are public answer something else.
#[test]
fn every_operation_that_needs_the_token_refuses_a_request_without_it() {
    let root = preview_testing::TempDir::new("openapi-auth");
    let daemon = Daemon::start(&root.path().join("data"), &[]);
    register_example(&daemon);
    let (_, _, document) = daemon.http_full("GET", "/api/openapi.json", &[], b"");
    let mut checked = 0;
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("methods") {
            let public = operation["security"].as_array().is_some_and(|s| {
                s.iter()
                    .all(|r| r.as_object().is_some_and(|r| r.is_empty()))
            });
            // Names the API takes, so that a refusal is about the token, not the path.
            let concrete = path
                .replace("{number}", "1")
                .replace("{id}", "abc123")
                .split('/')
                .map(|part| if part.starts_with('{') { "shop" } else { part })
                .collect::<Vec<_>>()
                .join("/");
            let (status, body) = daemon.http_with(
                &method.to_ascii_uppercase(),
                &concrete,
                &[("Content-Type", "application/json")],
                b"{}",
            );
            if public {
                // (A webhook delivery is refused for its missing signature, not for a token.)
                assert_ne!(
                    body["error"]["code"], "unauthorized",
                    "{method} {path} is public: {status} {body}"
                );
            } else {
                assert_eq!(
                    status, 401,
                    "{method} {path} answered without the token: {body}"
                );
                assert_eq!(body["error"]["code"], "unauthorized", "{method} {path}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 45, "only {checked} operations need the token");
}
