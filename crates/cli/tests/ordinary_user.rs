//! The daemon run as an ordinary user, where none of the isolation is possible: it says so plainly when it starts
//! and in `env show`, and everything else works as before — environments built and served, a redeploy that drops
//! no request, a deployment killed with the daemon rolled back at the next start, re-adoption after a restart.
//! As root the test runs the daemon as an account of its own; as anybody else, as that user.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use preview_testing::TempDir;
use support::{Daemon, OrdinaryUser, git, ok, request};

const PLAIN: [(&str, &str); 2] = [
    ("preview.yaml", include_str!("plain/preview.yaml")),
    ("web.py", include_str!("plain/web.py")),
];

fn start(data: &Path, user: &OrdinaryUser) -> Daemon {
    support::local_daemon(data, "25000-25999", &[], user.0)
}

fn answer(gateway: &str, host: &str) -> serde_json::Value {
    let (status, body) = request(gateway, "GET", host, "/", "");
    assert_eq!(status, 200, "{host}: {body}");
    body
}

#[test]
fn a_daemon_that_is_not_root_says_environments_are_not_isolated_and_works_as_before() {
    let dir = TempDir::new("ordinary-user");
    let user = OrdinaryUser::new();
    let repo = support::repository(dir.path(), &PLAIN);
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data");
    let first = git(&repo, &["rev-parse", "HEAD"]);
    user.give(dir.path());
    let daemon = start(&data, &user);
    let log = support::read_log(&data);
    assert!(
        log.contains("environments are NOT isolated from each other"),
        "{log}"
    );
    for off in ["users OFF", "files OFF", "network OFF", "limits OFF"] {
        assert!(log.contains(&format!("isolation: {off}")), "{log}");
    }
    ok(daemon.cli(&[
        "project",
        "register",
        "-f",
        repo.join("preview.yaml").to_str().expect("path"),
    ]));
    ok(daemon.cli(&["env", "create", "staging"]));
    ok(daemon.cli(&["env", "clone", "staging", "pr-1"]));
    let gateway = support::gateway_http(&data);
    let (staging, preview) = ("web-staging.plain.localhost", "web-pr-1.plain.localhost");
    let served = answer(&gateway, staging);
    assert_eq!(served["environment"], "staging");
    assert_eq!(served["commit"], first.as_str());
    // As root the daemon runs as the test's account; otherwise as the test's own user.
    let daemon_uid = user.0.map_or_else(own_uid, u64::from);
    assert_eq!(
        served["uid"].as_u64(),
        Some(daemon_uid),
        "apps run as the daemon's user"
    );
    assert_eq!(answer(&gateway, preview)["environment"], "pr-1");
    // `env show` says what is in effect: nothing.
    let shown = daemon.json(&["env", "show", "pr-1"]);
    let isolation = shown["isolation"].as_array().cloned().unwrap_or_default();
    assert_eq!(isolation.len(), 4, "{shown}");
    assert!(isolation.iter().all(|p| p["in_effect"] == false), "{shown}");
    let text = ok(daemon.cli(&["env", "show", "pr-1"]));
    assert!(
        text.contains("users    OFF  apps, jobs and builds of every environment run as"),
        "{text}"
    );
    support::assert_private_files(&data, daemon_uid as u32);

    // A redeploy under a request loop drops nothing.
    std::fs::write(
        repo.join("web.py"),
        PLAIN[1]
            .1
            .replace("which environment", "which environment (second)"),
    )
    .expect("change");
    let second = support::commit_all(&repo, "second");
    user.give(&repo);
    let stop = Arc::new(AtomicBool::new(false));
    let loader = {
        let (stop, gateway) = (Arc::clone(&stop), gateway.clone());
        std::thread::spawn(move || {
            let (mut failures, mut commits) = (0, Vec::<String>::new());
            while !stop.load(Ordering::SeqCst) {
                let (status, body) = request(&gateway, "GET", staging, "/", "");
                if status != 200 {
                    failures += 1;
                    continue;
                }
                let commit = body["commit"].as_str().unwrap_or_default().to_owned();
                if commits.last() != Some(&commit) {
                    commits.push(commit);
                }
            }
            (failures, commits)
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    ok(daemon.cli(&["deploy", "staging", "--commit", &second]));
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let (failures, commits) = loader.join().expect("loader");
    assert_eq!(failures, 0, "requests failed during the redeploy");
    assert_eq!(commits, [first.clone(), second.clone()]);

    // A deployment whose daemon is killed mid-way is rolled back when it starts again; what ran keeps running.
    std::fs::write(repo.join("slow"), "").expect("slow");
    let slow = support::commit_all(&repo, "a slow build");
    user.give(&repo);
    let mut deploying = support::preview()
        .arg("--data-dir")
        .arg(&data)
        .args(["deploy", "staging", "--commit", &slow])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("deploy");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let shown = daemon.json(&["env", "show", "staging"]);
        if shown["deployments"][0]["status"] == "running" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slow deployment did not start: {shown}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    daemon.kill();
    let _ = deploying.wait();
    let daemon = start(&data, &user);
    let shown = daemon.json(&["env", "show", "staging"]);
    assert_eq!(shown["deployments"][0]["status"], "rolled_back", "{shown}");
    assert_eq!(
        answer(&gateway_of(&data), staging)["commit"],
        second.as_str()
    );
    assert_eq!(answer(&gateway_of(&data), preview)["environment"], "pr-1");

    // A clean restart stops the apps and starts them again.
    daemon.stop();
    let daemon = start(&data, &user);
    assert_eq!(
        answer(&gateway_of(&data), staging)["commit"],
        second.as_str()
    );
    ok(daemon.cli(&["env", "delete", "pr-1"]));
    let (status, _) = request(&gateway_of(&data), "GET", preview, "/", "");
    assert_eq!(status, 404);
    daemon.stop();
}

/// The gateway's address changes with every start (the tests take free ports).
fn gateway_of(data: &Path) -> String {
    support::gateway_http(data)
}

/// This process's effective user id, from /proc.
fn own_uid() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))?
                .split_whitespace()
                .nth(2)?
                .parse()
                .ok()
        })
        .expect("a user id")
}
