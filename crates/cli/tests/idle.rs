//! Idle previews through the real daemon with the local runtime: a preview nobody asks for sleeps after
//! `previews.idle_stop` (its processes gone, its files kept, the blueprint awake), a request wakes it and is answered
//! by the app, requests at once wake it once, a link-preview bot wakes nothing, a browser that waits longer than the
//! bound gets the waking page, a deployment to a sleeping preview wakes it, and a restarted daemon keeps it asleep.
//! An answer streamed for longer than `idle_stop` keeps it awake; a protected preview wakes for a visitor with its
//! token only.

mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use support::{Daemon, ReleaseAccounts, commit_all, ok, repository, wait_for};

/// Notes each start (its pid) in a file of its home, then — after `SLOW_START` seconds — answers `/starts` with
/// that file, `/stream` with `tick` every half second for five seconds, and anything else with `<GREETING> from
/// <environment>`.
const APP: &str = r#"
import http.server, os, socketserver, time
starts = os.path.join(os.environ["HOME"], "starts")
with open(starts, "a") as f:
    f.write(str(os.getpid()) + "\n")
time.sleep(float(os.environ.get("SLOW_START", "0")))
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/stream":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            for _ in range(10):
                self.wfile.write(b"tick\n")
                self.wfile.flush()
                time.sleep(0.5)
            return
        if self.path == "/starts":
            with open(starts) as f:
                body = f.read().encode()
        else:
            body = (os.environ.get("GREETING", "hello") + " from " + os.environ["PREVIEW_ENVIRONMENT"]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128
Server(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"#;

/// `web` with `previews: { blueprint: staging, idle_stop: 2s }`; `preview_variables` go to previews only.
fn spec(greeting: &str, preview_variables: &str) -> String {
    let overrides = if preview_variables.is_empty() {
        String::new()
    } else {
        format!(
            "  overrides:\n    services:\n      web:\n        variables: {{ {preview_variables} }}\n"
        )
    };
    format!(
        "project: idle
services:
  web:
    run: python3 -u app.py
    ports: [8000]
    public: true
    health: {{ http: /health, interval: 1s }}
    variables:
      GREETING: {greeting}
environments:
  staging: {{}}
previews:
  blueprint: staging
  idle_stop: 2s
{overrides}"
    )
}

/// A daemon on `root/data` with the project registered, `staging` created and its preview `pr-1` cloned.
fn daemon_with_a_preview(
    root: &Path,
    ports: &str,
    preview_variables: &str,
    extra: &[&str],
) -> (Daemon, PathBuf) {
    let repo = repository(
        root,
        &[
            ("app.py", APP),
            ("preview.yaml", &spec("hello", preview_variables)),
        ],
    );
    let daemon = start(root, ports, extra);
    let spec = repo.join("preview.yaml");
    ok(daemon.cli(&["project", "register", "-f", spec.to_str().expect("utf-8")]));
    ok(daemon.cli(&["env", "create", "staging"]));
    ok(daemon.cli(&["env", "clone", "staging", "pr-1"]));
    (daemon, repo)
}

fn start(root: &Path, ports: &str, extra: &[&str]) -> Daemon {
    support::local_daemon(&root.join("data"), ports, extra, None)
}

/// One HTTP/1.1 request through the gateway for `web-<environment>.localhost` with `headers`; the status, the head
/// and the body.
fn get(
    daemon: &Daemon,
    environment: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let mut stream =
        std::net::TcpStream::connect(support::gateway_http(&daemon.data)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut head = format!(
        "GET {path} HTTP/1.1\r\nHost: web-{environment}.localhost\r\nConnection: close\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

fn shown(daemon: &Daemon, environment: &str) -> Value {
    daemon.json(&["env", "show", environment])
}

fn web_pid(shown: &Value) -> Option<u32> {
    shown["services"][0]["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn wait_until_asleep(daemon: &Daemon, environment: &str) -> Value {
    let mut last = Value::Null;
    wait_for(
        &format!("`{environment}` to sleep"),
        Duration::from_secs(30),
        || {
            last = shown(daemon, environment);
            last["sleeping"] == true
        },
    );
    last
}

/// The pids the preview's app noted at each of its starts, as it serves them (which wakes it when it sleeps).
fn starts(daemon: &Daemon) -> Vec<String> {
    let (status, _, body) = get(daemon, "pr-1", "/starts", &[]);
    assert_eq!(status, 200, "{body}");
    body.lines().map(str::to_owned).collect()
}

#[test]
fn an_idle_preview_sleeps_keeps_its_files_and_wakes_on_request() {
    let root = preview_testing::TempDir::new("idle-sleep");
    let _accounts = ReleaseAccounts(root.path().join("data"));
    let (daemon, repo) = daemon_with_a_preview(root.path(), "19000-19199", "", &[]);
    let staging_pid = web_pid(&shown(&daemon, "staging")).expect("staging runs");
    let awake = shown(&daemon, "pr-1");
    assert_eq!(awake["sleeping"], false, "{awake}");
    assert_eq!(awake["last_request_at"], Value::Null, "{awake}");
    let pid = web_pid(&awake).expect("pr-1 runs");
    assert!(alive(pid));
    // What the app wrote in its home (its first start, by the pid of the program the shell started).
    let first = starts(&daemon);
    assert_eq!(first.len(), 1, "{first:?}");
    let app_pid: u32 = first[0].parse().expect("a pid");
    assert!(alive(app_pid));

    // Nobody asks for it: it sleeps, its process is gone, and it says so.
    let asleep = wait_until_asleep(&daemon, "pr-1");
    assert_eq!(asleep["services"][0]["state"], "sleeping", "{asleep}");
    assert_eq!(web_pid(&asleep), None, "{asleep}");
    wait_for("the preview's app to stop", Duration::from_secs(15), || {
        !alive(pid) && !alive(app_pid)
    });
    let listed = daemon.json(&["env", "list"]);
    let sleeping = |name: &str| {
        listed["environments"]
            .as_array()
            .and_then(|all| all.iter().find(|e| e["name"] == name))
            .map(|e| e["sleeping"].clone())
    };
    assert_eq!(sleeping("pr-1"), Some(Value::Bool(true)), "{listed}");
    assert_eq!(sleeping("staging"), Some(Value::Bool(false)), "{listed}");
    let text = ok(daemon.cli(&["env", "show", "pr-1"]));
    assert!(text.contains("sleeping"), "{text}");
    assert!(
        ok(daemon.cli(&["env", "list"]))
            .lines()
            .any(|l| l.starts_with("pr-1") && l.contains("sleeping")),
        "env list says nothing of it"
    );
    // The blueprint, as idle as its preview, keeps running.
    let staging = shown(&daemon, "staging");
    assert_eq!(staging["sleeping"], false, "{staging}");
    assert_eq!(web_pid(&staging), Some(staging_pid), "{staging}");
    assert!(alive(staging_pid));

    // A link preview's bot wakes nothing.
    let (status, head, body) = get(
        &daemon,
        "pr-1",
        "/",
        &[(
            "User-Agent",
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        )],
    );
    assert_eq!(status, 503, "{head}\n{body}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 5"),
        "{head}"
    );
    std::thread::sleep(Duration::from_secs(1));
    let still = shown(&daemon, "pr-1");
    assert_eq!(still["sleeping"], true, "{still}");
    let asked = still["last_request_at"].clone();
    assert!(asked.is_i64(), "{still}");
    assert_eq!(asleep["last_request_at"], asked, "a bot is nobody: {still}");

    // A request wakes it, and the app answers it; what it wrote before it slept is still there.
    let (status, _, body) = get(&daemon, "pr-1", "/", &[]);
    assert_eq!((status, body.as_str()), (200, "hello from pr-1"));
    let noted = starts(&daemon);
    assert_eq!(noted.len(), 2, "{noted:?}");
    assert_eq!(noted[0], first[0], "{noted:?}");
    let woken = shown(&daemon, "pr-1");
    assert_eq!(woken["sleeping"], false, "{woken}");
    assert!(
        woken["last_request_at"].as_i64() > asked.as_i64(),
        "{woken}"
    );
    let log = support::read_log(&daemon.data);
    assert!(log.contains("`pr-1` slept: no request for 2s"), "{log}");
    assert!(log.contains("`pr-1` woke for a request"), "{log}");

    // Twenty requests at once to the sleeping preview: each answered by the app, which started once.
    wait_until_asleep(&daemon, "pr-1");
    let answers: Vec<(u16, String)> = std::thread::scope(|scope| {
        let asking: Vec<_> = (0..20)
            .map(|_| {
                scope.spawn(|| {
                    let (status, _, body) = get(&daemon, "pr-1", "/", &[]);
                    (status, body)
                })
            })
            .collect();
        asking
            .into_iter()
            .map(|a| a.join().expect("joined"))
            .collect()
    });
    for (status, body) in &answers {
        assert_eq!((*status, body.as_str()), (200, "hello from pr-1"));
    }
    assert_eq!(starts(&daemon).len(), 3);

    // A deployment to the sleeping preview wakes it and runs the new version.
    wait_until_asleep(&daemon, "pr-1");
    std::fs::write(repo.join("preview.yaml"), spec("good day", "")).expect("write");
    commit_all(&repo, "a new greeting");
    let spec_file = repo.join("preview.yaml");
    ok(daemon.cli(&[
        "project",
        "register",
        "-f",
        spec_file.to_str().expect("utf-8"),
    ]));
    ok(daemon.cli(&["deploy", "pr-1"]));
    let deployed = shown(&daemon, "pr-1");
    assert_eq!(deployed["sleeping"], false, "{deployed}");
    assert_eq!(deployed["services"][0]["state"], "running", "{deployed}");
    let (status, _, body) = get(&daemon, "pr-1", "/", &[]);
    assert_eq!((status, body.as_str()), (200, "good day from pr-1"));
}

#[test]
fn a_browser_that_waits_longer_than_the_bound_gets_the_waking_page() {
    let root = preview_testing::TempDir::new("idle-slow");
    let _accounts = ReleaseAccounts(root.path().join("data"));
    // The preview takes 4 s to start, the gateway holds requests 1 s.
    let (daemon, _repo) = daemon_with_a_preview(
        root.path(),
        "19200-19399",
        "SLOW_START: \"4\"",
        &["--wake-timeout", "1"],
    );
    wait_until_asleep(&daemon, "pr-1");
    let began = Instant::now();
    let (status, head, body) = get(
        &daemon,
        "pr-1",
        "/",
        &[("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")],
    );
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "held {:?}",
        began.elapsed()
    );
    assert_eq!(status, 503, "{head}\n{body}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 5"),
        "{head}"
    );
    assert!(
        body.contains("waking up") && body.contains("<meta http-equiv=\"refresh\" content=\"5\">"),
        "{body}"
    );
    // Another client meanwhile: a 503 to retry, not a page that reloads.
    let (status, head, body) = get(&daemon, "pr-1", "/", &[("Accept", "application/json")]);
    assert_eq!(status, 503, "{head}\n{body}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 5"),
        "{head}"
    );
    assert!(!body.contains("refresh"), "{body}");
    // The wake went on without them: once up, the app answers, and it started once for all of them.
    let mut answered = (0, String::new());
    wait_for("the preview to answer", Duration::from_secs(30), || {
        let (status, _, body) = get(&daemon, "pr-1", "/", &[("Accept", "text/html")]);
        answered = (status, body);
        answered.0 == 200
    });
    assert_eq!(answered.1, "hello from pr-1");
    assert_eq!(starts(&daemon).len(), 2);
}

#[test]
fn a_sleeping_preview_stays_asleep_when_the_daemon_starts_again() {
    let root = preview_testing::TempDir::new("idle-restart");
    let _accounts = ReleaseAccounts(root.path().join("data"));
    let (daemon, _repo) = daemon_with_a_preview(root.path(), "19400-19599", "", &[]);
    wait_until_asleep(&daemon, "pr-1");
    daemon.stop();
    let daemon = start(root.path(), "19400-19599", &[]);
    let staging = shown(&daemon, "staging");
    assert_eq!(staging["services"][0]["state"], "running", "{staging}");
    // Longer than it takes to start an app: nothing of it was started.
    std::thread::sleep(Duration::from_secs(3));
    let asleep = shown(&daemon, "pr-1");
    assert_eq!(asleep["sleeping"], true, "{asleep}");
    assert_eq!(asleep["services"][0]["state"], "sleeping", "{asleep}");
    assert_eq!(web_pid(&asleep), None, "{asleep}");
    let log = support::read_log(&daemon.data);
    assert!(!log.contains("started app/web of `pr-1` again"), "{log}");
    // A request wakes it.
    let (status, _, body) = get(&daemon, "pr-1", "/", &[]);
    assert_eq!((status, body.as_str()), (200, "hello from pr-1"));
    let woken = shown(&daemon, "pr-1");
    assert_eq!(woken["sleeping"], false, "{woken}");
    assert!(web_pid(&woken).is_some_and(alive), "{woken}");
    assert_eq!(starts(&daemon).len(), 2);
}

#[test]
fn an_answer_streamed_for_longer_than_idle_stop_keeps_the_preview_awake() {
    let root = preview_testing::TempDir::new("idle-stream");
    let _accounts = ReleaseAccounts(root.path().join("data"));
    let (daemon, _repo) = daemon_with_a_preview(root.path(), "19800-19899", "", &[]);
    wait_until_asleep(&daemon, "pr-1");
    let slept = |daemon: &Daemon| {
        support::read_log(&daemon.data)
            .matches("`pr-1` slept")
            .count()
    };
    wait_for("the log to say it slept", Duration::from_secs(15), || {
        slept(&daemon) == 1
    });
    // Five seconds of answer, two of `idle_stop`: it wakes the preview, which stays awake until the answer ends.
    let (status, body) = curl(&daemon, "http", "pr-1", "/stream", &[]);
    let ended = now_ms();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "tick\n".repeat(10), "the whole answer went through");
    assert_eq!(slept(&daemon), 1, "{}", support::read_log(&daemon.data));
    let awake = shown(&daemon, "pr-1");
    assert_eq!(awake["sleeping"], false, "{awake}");
    // Idleness counts from the end of the answer.
    let last = awake["last_request_at"].as_i64().expect("a last request");
    assert!(last >= ended - 1500, "{last} < {ended} - 1500");
    // The app started twice: once created, once woken — never again during the answer.
    assert_eq!(starts(&daemon).len(), 2);
}

#[test]
fn a_protected_preview_wakes_for_a_visitor_with_its_token_only() {
    let root = preview_testing::TempDir::new("idle-protected");
    let _accounts = ReleaseAccounts(root.path().join("data"));
    let protected = spec("hello", "").replace(
        "previews:\n",
        "secrets: [PREVIEW_TOKEN]\n\npreviews:\n  access: { token: PREVIEW_TOKEN }\n",
    );
    let repo = repository(
        root.path(),
        &[("app.py", APP), ("preview.yaml", &protected)],
    );
    let daemon = start(root.path(), "19900-19999", &[]);
    let spec_file = repo.join("preview.yaml");
    ok(daemon.cli(&[
        "project",
        "register",
        "-f",
        spec_file.to_str().expect("utf-8"),
    ]));
    ok(daemon.cli_with_input(
        &["secret", "set", "PREVIEW_TOKEN", "--scope", "project"],
        "let-me-in\n",
    ));
    ok(daemon.cli(&["env", "create", "staging"]));
    ok(daemon.cli(&["env", "clone", "staging", "pr-1"]));
    let ca = root.path().join("ca.pem");
    ok(daemon.cli(&["ca", "export", "-f", ca.to_str().expect("utf-8")]));
    let asleep = wait_until_asleep(&daemon, "pr-1");

    // Without the token, or with a wrong one: refused, and the preview sleeps on.
    let ca = ca.to_str().expect("utf-8");
    for token in [vec![], vec!["-H", "X-Preview-Token: not-it"]] {
        let (status, body) = curl(
            &daemon,
            "https",
            "pr-1",
            "/",
            &[&["--cacert", ca], &token[..]].concat(),
        );
        assert_eq!(status, 401, "{body}");
    }
    std::thread::sleep(Duration::from_secs(1));
    let still = shown(&daemon, "pr-1");
    assert_eq!(still["sleeping"], true, "{still}");
    assert_eq!(
        still["last_request_at"], asleep["last_request_at"],
        "{still}"
    );
    assert!(!support::read_log(&daemon.data).contains("`pr-1` woke"));

    // With it: woken, and answered by the app.
    let (status, body) = curl(
        &daemon,
        "https",
        "pr-1",
        "/",
        &["--cacert", ca, "-H", "X-Preview-Token: let-me-in"],
    );
    assert_eq!((status, body.as_str()), (200, "hello from pr-1"));
    let woken = shown(&daemon, "pr-1");
    assert_eq!(woken["sleeping"], false, "{woken}");
}

/// One request with curl through the gateway's `scheme` listener for `web-<environment>.localhost`, with `extra`
/// arguments; the status and the body.
fn curl(
    daemon: &Daemon,
    scheme: &str,
    environment: &str,
    path: &str,
    extra: &[&str],
) -> (u16, String) {
    let address = if scheme == "https" {
        support::gateway_https(&daemon.data)
    } else {
        support::gateway_http(&daemon.data)
    };
    let port = address.rsplit_once(':').expect("a port").1;
    let host = format!("web-{environment}.localhost");
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "60"])
        .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
        .args(extra)
        .args(["-w", "\n%{http_code}"])
        .arg(format!("{scheme}://{host}:{port}{path}"))
        .output()
        .expect("curl runs");
    assert!(
        output.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.parse().unwrap_or(0), body.to_owned())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The major version of the PostgreSQL server installed from the distribution's packages.
fn installed_postgres() -> u32 {
    std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (scripts/test installs it)")
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|v| Path::new(&format!("/usr/lib/postgresql/{v}/bin/postgres")).is_file())
        .max()
        .expect("a PostgreSQL server under /usr/lib/postgresql")
}

/// The PostgreSQL servers of the daemon on `data` that run (their `postmaster.pid` names a live process).
fn running_servers(data: &Path) -> usize {
    std::fs::read_dir(data.join("local/databases"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|server| {
            std::fs::read_to_string(server.path().join("data/postmaster.pid")).ok()
        })
        .filter_map(|pid| {
            pid.lines()
                .next()
                .and_then(|p| p.trim().parse::<u32>().ok())
        })
        .filter(|pid| alive(*pid))
        .count()
}

/// `psql -At -c query` on the environment's database `db`, as its own role.
fn sql(daemon: &Daemon, environment: &str, query: &str) -> String {
    ok(daemon.cli(&[
        "db",
        "psql",
        environment,
        "db",
        "--",
        "-X",
        "-q",
        "-At",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        query,
    ]))
    .trim()
    .to_owned()
}

#[test]
fn a_sleeping_preview_stops_its_own_database_server_and_keeps_its_data() {
    let root = preview_testing::TempDir::new("idle-database");
    let data = root.path().join("data");
    let _accounts = ReleaseAccounts(data.clone());
    let spec = format!(
        "project: idle
isolation: physical
services:
  web:
    run: python3 -u app.py
    ports: [8000]
    public: true
  db:
    type: database
    engine: postgres
    version: {}
environments:
  staging: {{}}
previews:
  blueprint: staging
  idle_stop: 2s
",
        installed_postgres()
    );
    let repo = repository(root.path(), &[("app.py", APP), ("preview.yaml", &spec)]);
    let daemon = start(root.path(), "19600-19799", &[]);
    let spec_file = repo.join("preview.yaml");
    ok(daemon.cli(&[
        "project",
        "register",
        "-f",
        spec_file.to_str().expect("utf-8"),
    ]));
    ok(daemon.cli(&["env", "create", "staging"]));
    ok(daemon.cli(&["env", "clone", "staging", "pr-1"]));
    assert_eq!(running_servers(&data), 2, "staging's and pr-1's own");
    sql(
        &daemon,
        "pr-1",
        "CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)",
    );

    wait_until_asleep(&daemon, "pr-1");
    // Its server stops after its app; staging's keeps running.
    wait_for("pr-1's server to stop", Duration::from_secs(15), || {
        running_servers(&data) == 1
    });
    // A request wakes its server first, then its app.
    let (status, _, body) = get(&daemon, "pr-1", "/", &[]);
    assert_eq!((status, body.as_str()), (200, "hello from pr-1"));
    assert_eq!(running_servers(&data), 2);
    assert_eq!(sql(&daemon, "pr-1", "SELECT n FROM kept"), "42");
}

#[test]
fn a_sleeping_preview_wakes_when_asked_through_the_api() {
    let root = preview_testing::TempDir::new("idle-wake-api");
    let _accounts = ReleaseAccounts(root.path().join("data"));
    let (daemon, _repo) = daemon_with_a_preview(root.path(), "20500-20599", "", &[]);
    let asleep = wait_until_asleep(&daemon, "pr-1");
    assert_eq!(web_pid(&asleep), None, "{asleep}");
    let (status, answer) = daemon.http(
        "POST",
        "/v1/projects/idle/environments/pr-1/wake",
        Some(&daemon.token),
        None,
        b"",
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["sleeping"], false, "{answer}");
    let awake = shown(&daemon, "pr-1");
    assert_eq!(awake["sleeping"], false, "{awake}");
    let pid = web_pid(&awake).expect("the preview's app runs again");
    assert!(alive(pid));
    // Waking one that is awake does nothing, and says so.
    let (status, answer) = daemon.http(
        "POST",
        "/v1/projects/idle/environments/staging/wake",
        Some(&daemon.token),
        None,
        b"",
    );
    assert_eq!(
        (status, &answer["sleeping"]),
        (200, &Value::Bool(false)),
        "{answer}"
    );
    let (status, _) = daemon.http(
        "POST",
        "/v1/projects/idle/environments/nowhere/wake",
        Some(&daemon.token),
        None,
        b"",
    );
    assert_eq!(status, 404);
}
