//! The local runtime and the gateway with real builds, processes, sockets and TLS: the example shop (without its
//! database) built from commits of a throw-away clone of this repository, deployed by the real daemon, reached
//! through its gateway with curl and the exported CA.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use preview_testing::TempDir;
use serde_json::Value;
use support::{Daemon, WORKSPACE, git, ok, shop_repository};

/// Replaces `from` with `to` in `file` of the repository and commits; returns the new commit.
fn change(repo: &Path, file: &str, from: &str, to: &str) -> String {
    let path = repo.join(file);
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.contains(from), "{file} has no `{from}`");
    std::fs::write(&path, text.replace(from, to)).expect("write");
    git(
        repo,
        &["commit", "--quiet", "-am", &format!("change {file}")],
    );
    git(repo, &["rev-parse", "HEAD"])
}

/// A daemon with the local runtime, its own port range, gateway ports from the kernel, and the workspace's build
/// cache (so that the example's dependencies are compiled once for every test and run).
fn local_daemon(data: &Path, ports: &str) -> Daemon {
    let cache = Path::new(WORKSPACE).join("target/preview-build-cache");
    let cache = cache.to_str().expect("utf-8 path");
    support::local_daemon(
        data,
        ports,
        &[
            "--health-timeout",
            "15",
            // A first build compiles the example's dependencies, which takes minutes on a cold cache.
            "--step-timeout",
            "900",
            "--build-cache",
            cache,
        ],
        None,
    )
}

fn gateway(data: &Path, scheme: &str) -> String {
    let config: Value =
        serde_json::from_slice(&std::fs::read(data.join("client.json")).expect("client.json"))
            .expect("json");
    config[format!("gateway_{scheme}")]
        .as_str()
        .expect("the daemon publishes its gateway")
        .to_owned()
}

fn register_shop(daemon: &Daemon, repo: &Path) {
    let spec = repo.join("examples/shop/demo.yaml");
    register(daemon, &spec);
}

fn register(daemon: &Daemon, spec: &Path) {
    ok(daemon.cli(&["project", "register", "-f", spec.to_str().expect("path")]));
    ok(daemon.cli_with_input(
        &[
            "secret",
            "set",
            "SESSION_KEY",
            "--scope",
            "service:storefront",
            "--previews",
            "substitute:PREVIEW_SESSION_KEY",
        ],
        "staging-session-key-value\n",
    ));
}

/// `curl --cacert CA --resolve host:port:127.0.0.1 https://host:port/path`: status line, HTTP version and body.
fn curl(daemon: &Daemon, ca: &Path, host: &str, path: &str, extra: &[&str]) -> (String, Value) {
    let https = gateway(&daemon.data, "https");
    let port = https.rsplit_once(':').expect("port").1;
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(ca)
        .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
        .args(extra)
        .args(["-w", "\n%{http_code} %{http_version}"])
        .arg(format!("https://{host}:{port}{path}"))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    assert!(
        output.status.success(),
        "curl {host}{path}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (
        status.to_owned(),
        serde_json::from_str(body).unwrap_or(Value::String(body.to_owned())),
    )
}

fn services(daemon: &Daemon, environment: &str) -> Vec<Value> {
    daemon.json(&["env", "show", environment])["services"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn pid_of(daemon: &Daemon, environment: &str, service: &str) -> u32 {
    services(daemon, environment)
        .iter()
        .find(|s| s["service"] == service)
        .and_then(|s| s["pid"].as_u64())
        .unwrap_or_else(|| panic!("{service} of {environment} runs")) as u32
}

/// The process ids of every app of both environments.
fn app_pids(daemon: &Daemon) -> Vec<u32> {
    ["staging", "pr-1"]
        .iter()
        .flat_map(|e| {
            services(daemon, e)
                .into_iter()
                .filter_map(|s| s["pid"].as_u64())
        })
        .map(|p| p as u32)
        .collect()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[test]
fn two_environments_serve_their_own_apps_survive_crashes_and_daemon_restarts() {
    let dir = TempDir::new("local-two-environments");
    let repo = shop_repository(dir.path());
    let data = dir.path().join("data");
    let _accounts = support::ReleaseAccounts(data.clone());
    let daemon = local_daemon(&data, "21000-21999");
    // Previews are protected by a shared token; staging is not.
    let spec = repo.join("examples/shop/demo.yaml");
    let text = std::fs::read_to_string(&spec).expect("spec");
    let protected = text.replace(
        "previews:\n",
        "secrets: [PREVIEW_TOKEN]\n\npreviews:\n  access: { token: PREVIEW_TOKEN }\n",
    );
    assert_ne!(text, protected);
    std::fs::write(&spec, protected).expect("write");
    register_shop(&daemon, &repo);
    ok(daemon.cli_with_input(
        &["secret", "set", "PREVIEW_TOKEN", "--scope", "project"],
        "let-me-in\n",
    ));
    ok(daemon.cli(&["env", "create", "staging"]));
    ok(daemon.cli(&["env", "clone", "staging", "pr-1"]));
    let ca = dir.path().join("ca.pem");
    ok(daemon.cli(&["ca", "export", "-f", ca.to_str().expect("path")]));

    let expect_own = |daemon: &Daemon, environment: &str, hosts: &[&str]| {
        for host in hosts {
            let (status, summary) = curl(
                daemon,
                &ca,
                host,
                "/api/summary",
                &["-H", "X-Preview-Token: let-me-in"],
            );
            assert!(status.starts_with("200"), "{host}: {status} {summary}");
            assert_eq!(summary["environment"], environment, "{host}: {summary}");
            // The storefront reached the catalog through its resolved internal address: its own environment's.
            assert_eq!(
                summary["catalog"]["environment"], environment,
                "{host}: {summary}"
            );
            assert_eq!(summary["products"].as_array().map(Vec::len), Some(3));
        }
    };
    let staging = ["storefront-staging.shop.localhost", "staging.shop.test"];
    let preview = ["storefront-pr-1.shop.localhost", "pr-1.preview.shop.test"];
    expect_own(&daemon, "staging", &staging);
    expect_own(&daemon, "pr-1", &preview);
    // The preview got the substitute, not staging's session key, and every URL is listed.
    let shown = daemon.json(&["env", "show", "pr-1"]);
    let urls = shown["urls"].to_string();
    assert!(
        urls.contains("https://storefront-pr-1.shop.localhost:"),
        "{urls}"
    );

    // Without the token a preview answers 401; staging needs none.
    let (status, _) = curl(&daemon, &ca, preview[0], "/api/summary", &[]);
    assert!(status.starts_with("401"), "{status}");
    let (status, _) = curl(&daemon, &ca, staging[0], "/api/summary", &[]);
    assert!(status.starts_with("200"), "{status}");
    // Nor can the preview be reached behind the gateway's check: its ports are in its own network (as root).
    if preview_testing::running_as_root() {
        for service in services(&daemon, "pr-1") {
            let address = service["address"].as_str().expect("address");
            assert!(
                std::net::TcpStream::connect(address).is_err(),
                "{address} of pr-1 answers on the host's loopback"
            );
        }
    }

    // HTTP/2, negotiated by ALPN over TLS.
    let (status, _) = curl(&daemon, &ca, staging[0], "/api/summary", &["--http2"]);
    assert_eq!(status, "200 2", "HTTP/2 status and version");
    // Plain HTTP is routed the same way; an unknown host gets the gateway's 404 page.
    let http = gateway(&data, "http");
    assert_eq!(
        get(&http, staging[1], "/api/summary").expect("answers")["environment"],
        "staging"
    );
    assert!(head(&http, "nothing.shop.localhost").starts_with("HTTP/1.1 404"));

    // A crashed app comes back, and `env show` counts the restart.
    let catalog = pid_of(&daemon, "staging", "catalog");
    let killed = Command::new("kill")
        .args(["-KILL", &catalog.to_string()])
        .status();
    assert!(killed.expect("kill").success());
    support::wait_for(
        "the catalog to be restarted",
        Duration::from_secs(30),
        || {
            services(&daemon, "staging")
                .iter()
                .any(|s| s["service"] == "catalog" && s["restarts"] == 1 && s["pid"].is_u64())
        },
    );
    let text = ok(daemon.cli(&["env", "show", "staging"]));
    assert!(text.contains("restarts 1"), "{text}");
    support::wait_for(
        "the restarted catalog to answer",
        Duration::from_secs(30),
        || {
            curl(&daemon, &ca, staging[0], "/api/summary", &[])
                .0
                .starts_with("200")
        },
    );
    let log = ok(daemon.cli(&["logs", "staging", "catalog"]));
    assert!(log.contains("listening on 127.0.0.1:"), "{log}");
    assert!(log.contains("restarted after"), "{log}");
    let error = daemon.cli(&["logs", "staging", "nothing"]);
    assert!(!error.status.success());

    // A clean stop stops every app; a start brings every environment back.
    let pids = app_pids(&daemon);
    assert_eq!(pids.len(), 4);
    daemon.stop();
    for pid in &pids {
        assert!(!alive(*pid), "app process {pid} outlived the daemon");
    }
    let daemon = local_daemon(&data, "21000-21999");
    expect_own(&daemon, "staging", &staging);
    expect_own(&daemon, "pr-1", &preview);

    // SIGKILL leaves the apps behind; the next start stops them and starts its own.
    let left = app_pids(&daemon);
    assert_eq!(left.len(), 4, "every app runs again before the crash");
    daemon.kill();
    assert!(
        left.iter().all(|pid| alive(*pid)),
        "apps run on after a crash"
    );
    let daemon = local_daemon(&data, "21000-21999");
    for pid in &left {
        assert!(!alive(*pid), "stray app process {pid} was not cleaned up");
    }
    expect_own(&daemon, "staging", &staging);
    expect_own(&daemon, "pr-1", &preview);

    // Deleting an environment stops its apps and frees its hostnames.
    let pr = pid_of(&daemon, "pr-1", "storefront");
    ok(daemon.cli(&["env", "delete", "pr-1"]));
    assert!(!alive(pr));
    let http = gateway(&data, "http");
    let answer = head(&http, preview[0]);
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    expect_own(&daemon, "staging", &staging);
    daemon.stop();
}

/// Requests through the gateway (plain HTTP, one connection per request) until told to stop; counts answers
/// that are not 200 and remembers each commit that answered.
struct Load {
    stop: Arc<AtomicBool>,
    failures: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<Vec<String>>,
}

impl Load {
    fn start(http: String, host: &'static str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (s, f, r) = (
            Arc::clone(&stop),
            Arc::clone(&failures),
            Arc::clone(&requests),
        );
        let thread = std::thread::spawn(move || {
            let mut commits = Vec::new();
            while !s.load(Ordering::SeqCst) {
                r.fetch_add(1, Ordering::SeqCst);
                match get(&http, host, "/api/summary") {
                    Some(summary) => {
                        let commit = summary["commit"].as_str().unwrap_or_default().to_owned();
                        if commits.last() != Some(&commit) {
                            commits.push(commit);
                        }
                    }
                    None => {
                        f.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
            commits
        });
        Load {
            stop,
            failures,
            requests,
            thread,
        }
    }

    fn finish(self) -> (usize, usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let commits = self.thread.join().expect("load thread");
        (
            self.requests.load(Ordering::SeqCst),
            self.failures.load(Ordering::SeqCst),
            commits,
        )
    }
}

/// The status line of `GET /` for `host`.
fn head(address: &str, host: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.lines().next().unwrap_or_default().to_owned()
}

/// One GET over a new connection; the JSON body of a 200, else `None`.
fn get(address: &str, host: &str, path: &str) -> Option<Value> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    // The storefront answers with a content length; no chunked decoding needed.
    serde_json::from_str(body).ok()
}

#[test]
fn redeploys_drop_no_request_and_an_unhealthy_version_is_rolled_back() {
    let dir = TempDir::new("local-redeploy");
    let repo = shop_repository(dir.path());
    let first = git(&repo, &["rev-parse", "HEAD"]);
    let data = dir.path().join("data");
    let _accounts = support::ReleaseAccounts(data.clone());
    let daemon = local_daemon(&data, "22000-22999");
    register_shop(&daemon, &repo);
    ok(daemon.cli(&["env", "create", "staging"]));
    let http = gateway(&data, "http");
    let host = "storefront-staging.shop.localhost";
    assert_eq!(
        get(&http, host, "/api/summary").expect("answers")["commit"],
        first.as_str()
    );

    // A new commit, deployed while a client keeps asking.
    let second = change(
        &repo,
        "examples/shop/apps/storefront/src/main.rs",
        "shop-storefront: listening on",
        "shop-storefront (second): listening on",
    );
    let load = Load::start(http.clone(), host);
    std::thread::sleep(Duration::from_millis(300));
    ok(daemon.cli(&["deploy", "staging", "--commit", &second]));
    std::thread::sleep(Duration::from_millis(300));
    let (requests, failures, commits) = load.finish();
    assert_eq!(
        failures, 0,
        "{failures} of {requests} requests failed during the redeploy"
    );
    assert_eq!(
        commits,
        [first.clone(), second.clone()],
        "answered by the old, then the new version"
    );
    assert!(requests > 20, "only {requests} requests were sent");

    // A commit whose storefront never becomes healthy: rolled back, and the second commit keeps answering.
    let broken = change(
        &repo,
        "examples/shop/apps/storefront/src/main.rs",
        r#".route("/healthz", get(|| async { "ok" }))"#,
        r#".route("/healthz", get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "broken") }))"#,
    );
    let load = Load::start(http.clone(), host);
    let output = daemon.cli(&["deploy", "staging", "--commit", &broken]);
    let (requests, failures, commits) = load.finish();
    assert!(
        !output.status.success(),
        "the broken commit must not deploy"
    );
    assert_eq!(
        failures, 0,
        "{failures} of {requests} requests failed during the failed deploy"
    );
    assert_eq!(commits, std::slice::from_ref(&second));
    let shown = daemon.json(&["env", "show", "staging"]);
    let last = &shown["deployments"][0];
    assert_eq!(last["status"], "rolled_back", "{shown}");
    let reason = last["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("did not become healthy") && reason.contains("500"),
        "the record says why: {reason}"
    );
    assert_eq!(
        get(&http, host, "/api/summary").expect("answers")["commit"],
        second.as_str()
    );
    daemon.stop();
}

#[test]
fn the_demo_runs_the_example_and_leaves_nothing_behind() {
    let dir = TempDir::new("local-demo");
    let run = support::demo(dir.path(), &[]);
    let text = ok(run.output);
    for expected in [
        "https://storefront-staging.shop.localhost:",
        "https://pr-1.preview.example.test:",
        // staging's database seeded from the file, the preview's masked from it, orders still joined.
        "customer 1 in staging  ada@example.test",
        "(3 orders join their customers)",
        "environment staging, mode staging, 3 products from the catalog of `staging`, 3 orders",
        // An order added in the preview only: each storefront counts its own database's.
        "environment pr-1, mode preview, 3 products from the catalog of `pr-1`, 4 orders",
        "curl --cacert ",
        // A pull request through signed webhooks: its preview appears at the head, moves to the pushed commit, goes.
        "pull request #2 opened at ",
        "pull request #2 synchronize at ",
        "→ accepted",
        "environment pr-2, mode preview",
        "pull request #2 closed: `pr-2` is destroyed",
        "nothing is left running",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    let preview = text
        .lines()
        .find(|line| line.contains("customer 1 in pr-1"))
        .expect("the preview's customer");
    assert!(
        preview.contains("@example.com")
            && !preview.contains("ada@")
            && !preview.contains("Lovelace"),
        "{preview}"
    );
    // No data directory, and no process that carries the demo's marker.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("preview-demo-"))
        .collect();
    assert!(left.is_empty(), "the demo left {left:?}");
    assert_eq!(
        support::processes_under(dir.path()),
        0,
        "processes of the demo are still running"
    );
}
