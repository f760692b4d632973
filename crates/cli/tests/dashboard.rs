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

    let said = browser(
        "browser.mjs",
        &[
            ("DASHBOARD", format!("http://{}/", daemon.address).into()),
            ("TOKEN", daemon.token.clone().into()),
            ("GATEWAY", support::gateway_http(&data).into()),
            ("CANARY", CANARY.into()),
            ("CONTROL", CONTROL.into()),
            ("REPO", repo.clone().into()),
        ],
        || support::read_log(&data),
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
        let file = screenshots().join(format!("{shot}.png"));
        assert!(
            std::fs::metadata(&file).is_ok_and(|m| m.len() > 1000),
            "{} was not saved",
            file.display()
        );
    }
    daemon.stop();
}

/// The demo as a newcomer leaves it with `--keep`, opened in the browser: `dashboard/demo.mjs` sees `staging` and the
/// preview `pr-1` with their commits, URLs and the snapshot the preview's database came from, and the pull
/// request's deliveries, and deletes the preview from the page. Then `staging` is deleted and the daemon stopped, as
/// the demo does without `--keep`: nothing is left running.
#[test]
fn the_demos_environments_in_a_browser() {
    let dir = preview_testing::TempDir::new("dashboard-demo");
    let run = support::demo(dir.path(), &["--keep"]);
    let text = ok(run.output);
    let kept = Kept::from_output(&text);
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(kept.data.join("client.json")).expect("the kept daemon's client.json"),
    )
    .expect("client.json");
    let address = config["address"].as_str().expect("address");
    let token = config["token"].as_str().expect("token");
    assert!(
        text.contains(&format!("dashboard: {address}/")),
        "the demo names its dashboard: {text}"
    );
    let said = browser(
        "demo.mjs",
        &[
            ("DASHBOARD", format!("{address}/").into()),
            ("TOKEN", token.into()),
        ],
        || support::read_log(&kept.data),
    );
    assert!(said.contains("demo: every check passed"), "{said}");
    for shot in ["demo-environments", "demo-preview"] {
        let file = screenshots().join(format!("{shot}.png"));
        assert!(
            std::fs::metadata(&file).is_ok_and(|m| m.len() > 1000),
            "{} was not saved",
            file.display()
        );
    }
    let data = kept.data.clone();
    let remaining = support::preview()
        .arg("--data-dir")
        .arg(&data)
        .args(["env", "list", "--output", "json"])
        .output()
        .expect("env list");
    let remaining: serde_json::Value = serde_json::from_slice(&remaining.stdout).expect("json");
    let names: Vec<_> = remaining["environments"]
        .as_array()
        .expect("environments")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["staging"],
        "the preview deleted from the page is gone"
    );
    drop(kept);
    assert_eq!(
        support::processes_under(dir.path()),
        0,
        "processes of the demo are still running"
    );
}

/// The daemon `preview demo --keep` left running; dropped, it deletes the demo's environments and stops the
/// daemon (and, with it, the project's database server), as the demo does without `--keep`.
struct Kept {
    pid: i32,
    data: PathBuf,
}

impl Kept {
    /// From the demo's last lines: "left running: daemon pid PID, data directory DIR".
    fn from_output(text: &str) -> Kept {
        let line = text
            .lines()
            .find_map(|line| line.strip_prefix("left running: daemon pid "))
            .unwrap_or_else(|| panic!("the demo says what it left running: {text}"));
        let (pid, data) = line
            .split_once(", data directory ")
            .expect("pid and data directory");
        Kept {
            pid: pid.parse().expect("pid"),
            data: PathBuf::from(data),
        }
    }

    /// Whether the process `pid` is still this demo's daemon (and not another that took its number).
    fn is_running(&self) -> bool {
        std::fs::read(format!("/proc/{}/cmdline", self.pid)).is_ok_and(|cmdline| {
            String::from_utf8_lossy(&cmdline).contains(&*self.data.to_string_lossy())
        })
    }

    fn signal(&self, signal: &str) {
        if self.is_running() {
            let _ = Command::new("kill")
                .args([signal, &self.pid.to_string()])
                .status();
        }
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        for environment in ["pr-1", "staging"] {
            // A daemon that does not answer does not hold the test up for ever.
            let _ = Command::new("timeout")
                .arg("180")
                .arg(env!("CARGO_BIN_EXE_preview"))
                .arg("--data-dir")
                .arg(&self.data)
                .args(["env", "delete", environment])
                .output();
        }
        // SIGTERM: the daemon stops its apps and servers, then itself.
        self.signal("-TERM");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while self.is_running() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.signal("-KILL");
        // The accounts of environments a failed deletion left.
        drop(ReleaseAccounts(self.data.clone()));
    }
}

/// Where the browser tests save their screenshots.
fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots/dashboard")
}

/// Runs `dashboard/<script>` in node with headless Chromium and playwright-core (and SCREENSHOTS) besides `env`;
/// fails with what it printed and `log()` unless it ran to its end. Returns what it printed.
fn browser(
    script: &str,
    env: &[(&str, std::ffi::OsString)],
    log: impl FnOnce() -> String,
) -> String {
    let playwright = support::test_tool(
        "node/node_modules/playwright-core",
        "playwright-core from the npm registry (`node`)",
    );
    let chromium = PathBuf::from("/usr/bin/chromium");
    assert!(
        chromium.exists(),
        "Debian's chromium is missing: `scripts/test` installs it"
    );
    std::fs::create_dir_all(screenshots()).expect("screenshots");
    let out = Command::new("node")
        .arg(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/dashboard")
                .join(script),
        )
        .env("PLAYWRIGHT_CORE", &playwright)
        .env("CHROMIUM", &chromium)
        .env("SCREENSHOTS", screenshots())
        .envs(env.iter().map(|(name, value)| (name, value)))
        .output()
        .expect("node");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the browser test {script} failed:\n{said}\n{}",
        log()
    );
    said
}
