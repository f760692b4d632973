//! The web dashboard in a real browser: Debian's Chromium, driven by playwright-core (from the npm registry;
//! `scripts/test` installs both), against a daemon with the local runtime running a small project — a web app that
//! prints a line per request, a secret, variables at several scopes, `staging`, and `qa` whose last deployment
//! rolled back. `dashboard/browser.mjs` signs in, watches a deployment's steps change live, cancels one, clones and
//! deletes an environment through the confirmations, reads a live log and the variables with their provenance, and
//! checks that no secret value reaches the page and that a change without the cookie or the CSRF token is
//! refused. Screenshots are saved in `target/screenshots/dashboard/`.

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::{ReleaseAccounts, commit_all, git, ok, repository};

/// A secret's value, looked for everywhere the browser got.
const CANARY: &str = "canary-session-key-5d1e07f3";
/// A plain variable's value: found by the same scan, or the scan proves nothing.
const CONTROL: &str = "control-greeting-8b2c";

const APP: &str = r#"
import http.server, os, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        print("served " + self.path, flush=True)
        body = (os.environ.get("GREETING", "") + " from " + os.environ["PREVIEW_ENVIRONMENT"]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
print("listening; session key: " + os.environ.get("SESSION_KEY", "none"), flush=True)
http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"#;

const SPEC: &str = "project: board
domain:
  base: board.localhost
secrets: [SESSION_KEY]
variables:
  GREETING: hello
services:
  web:
    build: sleep 2
    run: python3 -u app.py
    ports: [8000]
    health: { http: /, interval: 1s }
    public: true
    variables:
      LOG_LEVEL: debug
environments:
  staging:
    variables:
      GREETING: control-greeting-8b2c
";

#[test]
fn the_dashboard_in_a_browser() {
    let playwright = support::test_tool(
        "node/node_modules/playwright-core",
        "playwright-core from the npm registry (`node`)",
    );
    let chromium = PathBuf::from("/usr/bin/chromium");
    assert!(
        chromium.exists(),
        "Debian's chromium is missing: `scripts/test` installs it"
    );
    let root = preview_testing::TempDir::new("dashboard");
    let data = root.path().join("data");
    let _accounts = ReleaseAccounts(data.clone());
    let repo = repository(root.path(), &[("app.py", APP), ("preview.yaml", SPEC)]);
    // A commit whose app does not start: deploying it rolls back.
    let trunk = git(&repo, &["rev-parse", "--abbrev-ref", "HEAD"]);
    git(&repo, &["checkout", "--quiet", "-b", "broken"]);
    std::fs::write(repo.join("app.py"), "raise SystemExit(3)\n").expect("app");
    commit_all(&repo, "an app that exits");
    git(&repo, &["checkout", "--quiet", trunk.trim()]);
    let _ = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(root.path())
        .status();

    let daemon = support::local_daemon(&data, "20300-20499", &["--health-timeout", "5"], None);
    ok(daemon.cli(&[
        "project",
        "register",
        "-f",
        repo.join("preview.yaml").to_str().expect("path"),
    ]));
    ok(daemon.cli_with_input(
        &["secret", "set", "SESSION_KEY", "--scope", "service:web"],
        &format!("{CANARY}\n"),
    ));
    ok(daemon.cli(&["env", "create", "staging"]));
    ok(daemon.cli(&["env", "clone", "staging", "qa"]));
    let broken = daemon.json(&["deploy", "qa", "--commit", "broken"]);
    assert_eq!(broken["deployment"]["status"], "rolled_back", "{broken}");

    let screenshots =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots/dashboard");
    std::fs::create_dir_all(&screenshots).expect("screenshots");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/dashboard/browser.mjs");
    let out = Command::new("node")
        .arg(&script)
        .env("DASHBOARD", format!("http://{}/", daemon.address))
        .env("TOKEN", &daemon.token)
        .env("GATEWAY", support::gateway_http(&data))
        .env("PLAYWRIGHT_CORE", &playwright)
        .env("CHROMIUM", &chromium)
        .env("SCREENSHOTS", &screenshots)
        .env("CANARY", CANARY)
        .env("CONTROL", CONTROL)
        .env("REPO", &repo)
        .output()
        .expect("node");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the browser test failed:\n{said}\n{}",
        support::read_log(&data)
    );
    assert!(said.contains("dashboard: every check passed"), "{said}");
    for shot in [
        "sign-in",
        "environments",
        "deployment-live",
        "rollback",
        "log",
        "variables",
    ] {
        let file = screenshots.join(format!("{shot}.png"));
        assert!(
            std::fs::metadata(&file).is_ok_and(|m| m.len() > 1000),
            "{} was not saved",
            file.display()
        );
    }
    daemon.stop();
}
