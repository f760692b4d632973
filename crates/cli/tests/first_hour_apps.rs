//! A newcomer's apps on the local runtime: what a failed start says (the app's own output, the port it listens on
//! instead of `$PORT`, a health path that answers 404), health checks that read the whole answer, and apps that
//! stop answering their checks while running, which are restarted.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::{Daemon, ReleaseAccounts, commit_all, ok, repository, wait_for};

/// One app whose behaviour its variables choose (see each test's spec):
/// - `GREETING` is printed at start; `FAIL_AT_START` makes it print that and exit 1;
/// - `LISTEN` overrides the port it listens on (default `$PORT`);
/// - `/health` answers 200 with `HEALTH_BYTES` bytes, or 404 when `HEALTH_404` is set, or stops answering
///   (500) once `HEALTHY_CHECKS` checks were answered;
/// - every request is logged with its outcome, and a write to a closed connection is logged as `WRITE FAILED`.
const APP: &str = r#"
import http.server, os, sys
print(os.environ.get("GREETING", "hello"), flush=True)
if os.environ.get("FAIL_AT_START"):
    print(os.environ["FAIL_AT_START"], flush=True)
    sys.exit(1)
port = int(os.environ.get("LISTEN") or os.environ["PORT"])
body_size = int(os.environ.get("HEALTH_BYTES", "2"))
healthy_checks = int(os.environ.get("HEALTHY_CHECKS", "1000000"))
checks = 0
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global checks
        checks += 1
        if os.environ.get("HEALTH_404"):
            status, body = 404, b"no such page"
        elif checks > healthy_checks:
            status, body = 500, b"stuck"
        else:
            status, body = 200, b"o" * body_size
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except OSError as error:
            print("WRITE FAILED", repr(error), flush=True)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("0.0.0.0", port), Handler).serve_forever()
"#;

fn spec(variables: &str, health: &str) -> String {
    format!(
        "project: apps
services:
  web:
    run: python3 -u app.py
    ports: [8000]
    health: {health}
    variables:
{variables}
environments:
  staging: {{}}
"
    )
}

fn daemon(root: &Path, ports: &str, files: &[(&str, &str)]) -> (Daemon, std::path::PathBuf) {
    let repo = repository(root, files);
    let data = root.join("data");
    let daemon = support::local_daemon(&data, ports, &["--health-timeout", "60"], None);
    let spec = repo.join("preview.yaml");
    ok(daemon.cli(&["project", "register", "-f", spec.to_str().expect("utf-8")]));
    (daemon, repo)
}

fn deploy_failure(daemon: &Daemon, args: &[&str]) -> String {
    let out = daemon.cli(args);
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{printed}");
    assert!(printed.contains("rolled back"), "{printed}");
    printed
}

fn update(repo: &Path, daemon: &Daemon, variables: &str, health: &str) {
    std::fs::write(repo.join("preview.yaml"), spec(variables, health)).expect("write");
    commit_all(repo, "change the spec");
    let spec = repo.join("preview.yaml");
    ok(daemon.cli(&["project", "register", "-f", spec.to_str().expect("utf-8")]));
}

#[test]
fn a_failed_start_says_what_went_wrong_with_that_version_only() {
    let root = preview_testing::TempDir::new("first-hour-start");
    let _accounts = ReleaseAccounts(root.path().join("data"));
    let health = "{ http: /health, start_timeout: 5m }";
    let (daemon, repo) = daemon(
        root.path(),
        "28000-28199",
        &[
            ("app.py", APP),
            (
                "preview.yaml",
                &spec("      GREETING: first version says hello", health),
            ),
        ],
    );
    ok(daemon.cli(&["env", "create", "staging"]));

    // A version that fails at start: its message quotes its own output, not the running version's.
    update(
        &repo,
        &daemon,
        "      GREETING: second version starting\n      FAIL_AT_START: second version gives up",
        health,
    );
    let printed = deploy_failure(&daemon, &["deploy", "staging"]);
    assert!(
        printed.contains("second version gives up") && printed.contains("second version starting"),
        "{printed}"
    );
    assert!(!printed.contains("first version says hello"), "{printed}");

    // An app that listens on a port of its own choosing is told so, without waiting out the start timeout.
    update(&repo, &daemon, "      LISTEN: \"39170\"", health);
    let printed = deploy_failure(&daemon, &["deploy", "staging"]);
    assert!(
        printed.contains("`web` listens on 39170, not on `$PORT` ("),
        "{printed}"
    );

    // A health path the app does not serve: the same 404 again and again ends the wait.
    update(&repo, &daemon, "      HEALTH_404: \"yes\"", health);
    let printed = deploy_failure(&daemon, &["deploy", "staging"]);
    assert!(
        printed.contains("answered 404 3 times in a row") && printed.contains("check `health`"),
        "{printed}"
    );
    // The spec's start timeout, not the daemon's (60 s here), bounds the wait for a version that never answers.
    update(
        &repo,
        &daemon,
        "      LISTEN: \"39171\"",
        "{ http: /health, start_timeout: 2s }",
    );
    let printed = deploy_failure(&daemon, &["deploy", "staging"]);
    assert!(printed.contains("not healthy in time"), "{printed}");
    // Through all of it the first version kept serving.
    let shown = daemon.json(&["env", "show", "staging"]);
    assert_eq!(shown["services"][0]["state"], "running", "{shown}");
}

#[test]
fn health_checks_read_the_whole_answer() {
    let root = preview_testing::TempDir::new("first-hour-probe");
    let _accounts = ReleaseAccounts(root.path().join("data"));
    // An answer bigger than the socket buffers: a probe that closes after the status line makes the app's write fail.
    let (daemon, _repo) = daemon(
        root.path(),
        "28200-28399",
        &[
            ("app.py", APP),
            (
                "preview.yaml",
                &spec(
                    "      HEALTH_BYTES: \"8388608\"",
                    "{ http: /health, interval: 200ms, timeout: 5s }",
                ),
            ),
        ],
    );
    ok(daemon.cli(&["env", "create", "staging"]));
    // The running app is checked every 200 ms: wait for a few checks.
    std::thread::sleep(Duration::from_secs(2));
    let log = ok(daemon.cli(&["logs", "staging", "web"]));
    assert!(!log.contains("WRITE FAILED"), "{log}");
}

#[test]
fn a_running_app_that_fails_its_checks_is_restarted() {
    let root = preview_testing::TempDir::new("first-hour-liveness");
    let _accounts = ReleaseAccounts(root.path().join("data"));
    // Healthy for its first checks, then answering 500 for good.
    let (daemon, _repo) = daemon(
        root.path(),
        "28400-28599",
        &[
            ("app.py", APP),
            (
                "preview.yaml",
                &spec(
                    "      HEALTHY_CHECKS: \"4\"",
                    "{ http: /health, interval: 200ms, failures: 2 }",
                ),
            ),
        ],
    );
    ok(daemon.cli(&["env", "create", "staging"]));
    let first_pid = daemon.json(&["env", "show", "staging"])["services"][0]["pid"].clone();
    let mut shown = Value::Null;
    wait_for(
        "a restart after failed checks",
        Duration::from_secs(30),
        || {
            shown = daemon.json(&["env", "show", "staging"]);
            shown["services"][0]["restarts"].as_u64().unwrap_or(0) >= 1
        },
    );
    let service = &shown["services"][0];
    assert!(
        service["last_exit"].as_str().is_some_and(|e| e
            .contains("failed 2 health checks in a row")
            && e.contains("answered 500")),
        "{shown}"
    );
    assert_ne!(service["pid"], first_pid, "{shown}");
    let log = ok(daemon.cli(&["logs", "staging", "web"]));
    assert!(
        log.contains("failed 2 health checks in a row") && log.contains("restarting it"),
        "{log}"
    );
    let text = ok(daemon.cli(&["env", "show", "staging"]));
    assert!(text.contains("failed 2 health checks in a row"), "{text}");
}

/// `curl` over HTTPS to `host` on the daemon's gateway (resolved to loopback), trusting `ca` unless `insecure`;
/// the exit status and what it printed.
fn curl_https(daemon: &Daemon, ca: &Path, host: &str, insecure: bool) -> (bool, String) {
    let https = support::gateway_https(&daemon.data);
    let port = https.rsplit_once(':').map(|(_, p)| p).expect("port");
    let mut command = std::process::Command::new("curl");
    command
        .args(["--silent", "--show-error", "--max-time", "10"])
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg(format!("https://{host}:{port}/"));
    if insecure {
        command.arg("--insecure");
    } else {
        command.arg("--cacert").arg(ca);
    }
    let out = command.output().expect("curl runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn https_for_an_unknown_or_deleted_environment_gets_the_404_page() {
    let root = preview_testing::TempDir::new("first-hour-tls");
    let _accounts = ReleaseAccounts(root.path().join("data"));
    let public = "project: apps
services:
  web:
    run: python3 -u app.py
    ports: [8000]
    public: true
environments:
  staging: {}
";
    let (daemon, _repo) = daemon(
        root.path(),
        "28600-28799",
        &[("app.py", APP), ("preview.yaml", public)],
    );
    ok(daemon.cli(&["env", "create", "staging"]));
    ok(daemon.cli(&["env", "clone", "staging", "gone"]));
    // What `vars show` tells about the clone: its public URL with the gateway's port, what `PORT` is, and what
    // its values replaced in the environment it was cloned from.
    let https_port = support::gateway_https(&daemon.data)
        .rsplit_once(':')
        .map(|(_, p)| p.to_owned())
        .expect("port");
    let shown = daemon.json(&["vars", "show", "gone", "--service", "web"]);
    let variable = |name: &str| -> Value {
        shown["services"][0]["variables"]
            .as_array()
            .expect("variables")
            .iter()
            .find(|v| v["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(
        variable("WEB_PUBLIC_URL")["value"],
        format!("https://web-gone.localhost:{https_port}"),
        "{shown}"
    );
    let note = variable("PORT")["note"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        note.contains("WEB_PORT") && note.contains("the running one has"),
        "{note}"
    );
    let environment = variable("PREVIEW_ENVIRONMENT");
    assert!(
        environment["shadowed"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["value"] == "staging"
                && s["source"]
                    .as_str()
                    .is_some_and(|t| t.contains("environment `staging`")))),
        "{environment}"
    );
    let text = ok(daemon.cli(&["vars", "show", "gone", "--service", "web"]));
    assert!(text.contains("note: the service's port"), "{text}");
    ok(daemon.cli(&["env", "delete", "gone"]));
    let ca = root.path().join("ca.pem");
    ok(daemon.cli(&["ca", "export", "-f", ca.to_str().expect("utf-8")]));
    let (served, page) = curl_https(&daemon, &ca, "web-staging.localhost", false);
    assert!(served, "{page}");
    // A deleted environment's name, under the domain the gateway serves: a certificate the CA vouches for, and
    // the gateway's page saying there is no such environment.
    let (answered, page) = curl_https(&daemon, &ca, "web-gone.localhost", false);
    assert!(answered, "{page}");
    assert!(page.contains("No such environment"), "{page}");
    // A name outside the gateway's domains gets no certificate the CA vouches for it, but no TLS alert either.
    let (trusted, said) = curl_https(&daemon, &ca, "bank.example", false);
    assert!(!trusted, "{said}");
    let (answered, page) = curl_https(&daemon, &ca, "bank.example", true);
    assert!(answered && page.contains("No such environment"), "{page}");
}
