//! What operators see of a running daemon: its log (`RUST_LOG`, `--log-format json`, the ids of deployments,
//! steps and requests).

mod support;

use serde_json::Value;
use support::{Daemon, register_example};

/// Every line of the daemon's log, each parsed as JSON (the test fails on a line that is not).
fn json_lines(daemon: &Daemon) -> Vec<Value> {
    support::read_log(&daemon.data)
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"))
        })
        .collect()
}

/// The value of `field` in the span named `span` a line was written in.
fn span_field<'a>(line: &'a Value, span: &str, field: &str) -> Option<&'a Value> {
    line["spans"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == span)
        .and_then(|s| s.get(field))
}

/// The lines written while working for deployment `id`.
fn lines_of<'a>(lines: &'a [Value], id: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| span_field(l, "deployment", "deployment").and_then(Value::as_str) == Some(id))
        .collect()
}

#[test]
fn json_logs_name_the_deployment_step_and_request_of_each_line() {
    let root = preview_testing::TempDir::new("json-log");
    let data = root.path().join("data");
    let debug = [("RUST_LOG", "debug")];
    let daemon = Daemon::start_with_env(&data, &["--log-format", "json"], &debug);
    register_example(&daemon);
    let created = daemon.json(&["env", "create", "staging"]);
    let id = created["deployment"]["id"].as_str().expect("id").to_owned();
    let steps = created["steps"].as_array().expect("steps").len();
    assert!(steps >= 4, "{created}");
    let journal = daemon.json(&["deployment", "logs", &id]);

    // A request names itself: the client's id is kept, a missing one is made.
    let token = format!("Bearer {}", daemon.token);
    let (status, head, _) = daemon.http_full(
        "GET",
        "/v1/projects/shop/environments/staging",
        &[("Authorization", &token), ("X-Request-Id", "ops-check-42")],
        b"",
    );
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("\r\nx-request-id: ops-check-42"),
        "{head}"
    );
    let (_, head, _) = daemon.http_full("GET", "/v1/projects", &[("X-Request-Id", "a b")], b"");
    let made = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-request-id: ")
                .map(str::to_owned)
        })
        .expect("an id is made for a request without a usable one");
    assert!(
        made.len() == 16 && made.bytes().all(|b| b.is_ascii_hexdigit()),
        "{made}"
    );

    let lines = json_lines(&daemon);
    for line in &lines {
        for field in ["timestamp", "level", "target"] {
            assert!(line.get(field).is_some(), "no {field}: {line}");
        }
    }
    let answered = |request_id: &str| {
        lines.iter().any(|l| {
            l["message"] == "answered"
                && span_field(l, "request", "request_id").and_then(Value::as_str)
                    == Some(request_id)
        })
    };
    assert!(answered("ops-check-42") && answered(&made));
    assert!(
        lines.iter().any(|l| {
            span_field(l, "request", "request_id") == Some(&Value::from("ops-check-42"))
                && span_field(l, "request", "path")
                    == Some(&Value::from("/v1/projects/shop/environments/staging"))
                && l["status"] == 200
        }),
        "the request's line has its path and status"
    );

    // Every step's work is in the log with the deployment's id and the step's number, and every journal entry
    // is a line of its step.
    let of_deployment = lines_of(&lines, &id);
    for step in 1..=steps {
        assert!(
            of_deployment
                .iter()
                .any(|l| span_field(l, "step", "step") == Some(&Value::from(step))),
            "no line of step {step} of {id}"
        );
    }
    for entry in journal["entries"].as_array().expect("entries") {
        let step = entry["step"].as_u64().expect("step") + 1;
        assert!(
            of_deployment
                .iter()
                .any(|l| l["message"] == entry["message"]
                    && l["step"] == step
                    && l["event"] == entry["event"]
                    && l["phase"] == entry["phase"]),
            "journal entry {entry} is not a line of deployment {id}"
        );
    }
    assert!(
        of_deployment
            .iter()
            .any(|l| l["message"] == "committed" && l["level"] == "INFO")
    );
    daemon.stop();

    // A rollback: the failing step and each undone one are lines of their own.
    let daemon = Daemon::start_with_env(
        &data,
        &["--log-format", "json", "--fault", "fail@2"],
        &debug,
    );
    let cloned = daemon.json(&["env", "clone", "staging", "qa"]);
    let id = cloned["deployment"]["id"].as_str().expect("id").to_owned();
    assert_eq!(cloned["deployment"]["status"], "rolled_back", "{cloned}");
    let lines = json_lines(&daemon);
    let of_rollback = lines_of(&lines, &id);
    assert!(
        of_rollback.iter().any(|l| l["level"] == "INFO"
            && l["event"] == "failed"
            && l["phase"] == "apply"
            && l["step"].as_u64().is_some()),
        "the failed step is an INFO line"
    );
    assert!(
        of_rollback.iter().any(|l| span_field(l, "step", "phase")
            == Some(&Value::from("compensate"))
            && l["event"] == "done"),
        "an undone step is a line of its step"
    );
    assert!(of_rollback.iter().any(|l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("rolled back: "))
    }));
}

#[test]
fn the_log_is_text_at_info_unless_asked_and_a_bad_filter_stops_the_daemon() {
    let root = preview_testing::TempDir::new("text-log");
    let data = root.path().join("data");
    let daemon = Daemon::start_with_env(&data, &[], &[("RUST_LOG", "")]);
    register_example(&daemon);
    support::ok(daemon.cli(&["env", "create", "staging"]));
    daemon.stop();
    let log = support::read_log(&data);
    assert!(log.contains(" INFO ") && log.contains("committed"), "{log}");
    assert!(!log.contains("DEBUG") && !log.contains("TRACE"), "{log}");
    assert!(!log.trim_start().starts_with('{'), "{log}");

    // One crate at debug: its lines, and nothing below info from the rest.
    let root = preview_testing::TempDir::new("text-log-debug");
    let data = root.path().join("data");
    let daemon = Daemon::start_with_env(&data, &[], &[("RUST_LOG", "preview_deploy=debug")]);
    register_example(&daemon);
    support::ok(daemon.cli(&["env", "create", "staging"]));
    daemon.stop();
    let log = support::read_log(&data);
    let debug: Vec<&str> = log.lines().filter(|l| l.contains("DEBUG")).collect();
    assert!(!debug.is_empty(), "{log}");
    assert!(
        debug.iter().all(|l| l.contains("preview_deploy")),
        "{debug:#?}"
    );

    for (env, flag, expected) in [
        (
            "preview=loud",
            "text",
            "RUST_LOG: `preview=loud` is not a log filter",
        ),
        (
            "info",
            "yaml",
            "--log-format: `yaml` is not a log format; use `text` or `json`",
        ),
    ] {
        let out = support::preview()
            .args(["serve", "--listen", "127.0.0.1:0", "--runtime", "recording"])
            .arg("--data-dir")
            .arg(root.path().join("refused"))
            .args(["--log-format", flag])
            .env("RUST_LOG", env)
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
    }
}
