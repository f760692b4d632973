//! Abandoned steps stop their work. A deployment cancelled, or whose step timed out, or whose daemon was stopped,
//! while a step of the local runtime ran leaves no process of that step: a job is killed and never runs again, a
//! version waiting for its health check is killed and its port given back, the previous version being drained is
//! stopped, a checkout's `git` and `tar` are killed and the next checkout of the commit is whole. The real daemon
//! runs small apps built from commits of a throw-away repository (`tests/cancel/`); processes are found by what
//! the daemon puts in their environment (its marker, the commit), never by name.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use preview_testing::TempDir;
use serde_json::Value;
use support::{Daemon, OrdinaryUser, ReleaseAccounts, git, ok, request, wait_for};

const FILES: [(&str, &str); 3] = [
    ("preview.yaml", include_str!("cancel/preview.yaml")),
    ("jobs.yaml", include_str!("cancel/jobs.yaml")),
    ("web.py", include_str!("cancel/web.py")),
];

/// A repository of the test projects, with a file naming the test: no two tests' commits are the same, so a
/// commit in a process's environment says which test it belongs to.
fn repository(dir: &Path, test: &str) -> PathBuf {
    let mut files = FILES.to_vec();
    files.push(("test", test));
    support::repository(dir, &files)
}

/// Adds (`Some`) or removes (`None`) files and commits; the new commit.
fn change(repo: &Path, files: &[(&str, Option<&str>)]) -> String {
    for (name, text) in files {
        match text {
            Some(text) => std::fs::write(repo.join(name), text).expect("write"),
            None => std::fs::remove_file(repo.join(name)).expect("remove"),
        }
    }
    support::commit_all(repo, "a change")
}

fn start(data: &Path, ports: &str, extra: &[&str]) -> Daemon {
    support::local_daemon(data, ports, extra, None)
}

fn register(daemon: &Daemon, spec: &Path) {
    ok(daemon.cli(&["project", "register", "-f", spec.to_str().expect("path")]));
}

/// `PREVIEW_SUPERVISOR=<marker>`: what every process the daemon on `data` starts carries.
fn marked(data: &Path) -> String {
    let marker = std::fs::read_to_string(data.join("local/marker")).expect("the daemon's marker");
    format!("PREVIEW_SUPERVISOR={}", marker.trim())
}

/// Live processes (zombies have ended) whose environment holds every one of `entries` (`NAME=value`).
fn processes_with(entries: &[&str]) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let variables: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
        if entries
            .iter()
            .all(|wanted| variables.contains(&wanted.as_bytes()))
            && alive(pid)
        {
            found.push(pid);
        }
    }
    found
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rsplit_once(") ").map(|(_, rest)| rest).unwrap_or("");
        !state.starts_with('Z')
    })
}

/// Starts a deployment of `commit` to staging without following it; its id.
fn deploy(daemon: &Daemon, commit: &str) -> String {
    let started = daemon.json(&["deploy", "staging", "--no-wait", "--commit", commit]);
    started["deployment"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no deployment: {started}"))
        .to_owned()
}

/// Cancels staging's deployment `id` and waits for its end, which must be a rollback.
fn cancel(daemon: &Daemon, id: &str) -> Value {
    ok(daemon.cli(&["deploy", "cancel", "staging"]));
    let ended = support::wait_until_ended(daemon, id);
    assert_eq!(ended["deployment"]["status"], "rolled_back", "{ended}");
    ended
}

/// The commit the gateway's staging answers from.
fn serving(data: &Path) -> Value {
    let (status, body) = request(
        &support::gateway_http(data),
        "GET",
        "web-staging.cancel.localhost",
        "/",
        "",
    );
    assert_eq!(status, 200, "{body}");
    body["commit"].clone()
}

#[test]
fn a_job_that_times_out_is_killed_and_never_runs_again() {
    let dir = TempDir::new("cancel-job");
    let data = dir.path().join("data");
    let _accounts = ReleaseAccounts(data.clone());
    let repo = repository(dir.path(), "job");
    let first = git(&repo, &["rev-parse", "HEAD"]);
    let slow = change(&repo, &[("slow", Some(""))]);
    // Each run of the job takes five seconds, longer than a step may; no recovery sweep comes during the test.
    let daemon = start(
        &data,
        "27000-27099",
        &["--step-timeout", "4", "--lease-ttl", "600"],
    );
    register(&daemon, &repo.join("jobs.yaml"));
    ok(daemon.cli(&["env", "create", "staging", "--commit", &first]));
    let marker = marked(&data);

    let id = deploy(&daemon, &slow);
    let ended = support::wait_until_ended(&daemon, &id);
    // Past the point of no return a step that fails is tried again, then left for a later retry.
    assert_eq!(ended["deployment"]["status"], "failed", "{ended}");
    let step = ended["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["resource"] == "job/tidy"))
        .and_then(|s| s["index"].as_i64())
        .expect("the job's step")
        - 1;
    let journal = daemon.json(&["deployment", "logs", &id]);
    let attempts = journal["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["step"] == step && e["phase"] == "apply" && e["event"] == "intent")
        .count();
    assert!(attempts >= 2, "the job was tried again: {journal}");
    assert_eq!(
        processes_with(&[&marker]),
        Vec::<u32>::new(),
        "no run of the job is left once its deployment has ended"
    );
    let starts = data.join("local/environments/chores/staging/home/tidy/starts");
    let started = || {
        std::fs::read_to_string(&starts)
            .expect("the job's notes")
            .lines()
            .count()
    };
    let runs = started();
    assert!(
        (1..=attempts).contains(&runs),
        "each attempt started the job at most once: {runs} runs for {attempts} attempts"
    );
    ok(daemon.cli(&["deployment", "abandon", &id]));
    // Longer than the supervisor's restart delay: a job that was restarted on its exit has run again by now.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(started(), runs, "the job never ran again");
    assert_eq!(processes_with(&[&marker]), Vec::<u32>::new());
    ok(daemon.cli(&["env", "delete", "staging"]));
    daemon.stop();
}

#[test]
fn a_version_cancelled_in_its_health_wait_is_killed_and_gives_its_port_back() {
    let dir = TempDir::new("cancel-health");
    let data = dir.path().join("data");
    let _accounts = ReleaseAccounts(data.clone());
    let repo = repository(dir.path(), "health");
    let first = git(&repo, &["rev-parse", "HEAD"]);
    let unhealthy = change(&repo, &[("unhealthy", Some(""))]);
    let healthy = change(&repo, &[("unhealthy", None), ("healthy", Some(""))]);
    let daemon = start(&data, "27100-27199", &[]);
    register(&daemon, &repo.join("preview.yaml"));
    ok(daemon.cli(&["env", "create", "staging", "--commit", &first]));
    let marker = marked(&data);
    let of_unhealthy = format!("PREVIEW_COMMIT={unhealthy}");

    // More cancels than the environment's block has ports for versions (16, one of them taken by the version
    // that serves): a port kept by a cancelled start would leave none for the last deployment.
    for _ in 0..16 {
        let id = deploy(&daemon, &unhealthy);
        wait_for("the new version to start", Duration::from_secs(60), || {
            !processes_with(&[&marker, &of_unhealthy]).is_empty()
        });
        cancel(&daemon, &id);
        assert_eq!(
            processes_with(&[&marker, &of_unhealthy]),
            Vec::<u32>::new(),
            "nothing of the cancelled version is left once its deployment has ended"
        );
    }
    ok(daemon.cli(&["deploy", "staging", "--commit", &healthy]));
    assert_eq!(serving(&data), healthy.as_str());
    ok(daemon.cli(&["env", "delete", "staging"]));
    daemon.stop();
}

#[test]
fn a_deployment_cancelled_during_the_drain_stops_the_previous_version() {
    let dir = TempDir::new("cancel-drain");
    let data = dir.path().join("data");
    let _accounts = ReleaseAccounts(data.clone());
    let repo = repository(dir.path(), "drain");
    let first = git(&repo, &["rev-parse", "HEAD"]);
    let second = change(&repo, &[("second", Some(""))]);
    let daemon = start(&data, "27200-27299", &["--drain", "6"]);
    register(&daemon, &repo.join("preview.yaml"));
    ok(daemon.cli(&["env", "create", "staging", "--commit", &first]));
    let marker = marked(&data);
    let (of_first, of_second) = (
        format!("PREVIEW_COMMIT={first}"),
        format!("PREVIEW_COMMIT={second}"),
    );
    let previous = processes_with(&[&marker, &of_first]);
    assert!(!previous.is_empty(), "the first version runs");

    let id = deploy(&daemon, &second);
    wait_for(
        "the switch to the second version",
        Duration::from_secs(60),
        || serving(&data) == second.as_str(),
    );
    assert!(
        previous.iter().all(|pid| alive(*pid)),
        "the previous version drains"
    );
    cancel(&daemon, &id);
    let left: Vec<u32> = previous.iter().copied().filter(|pid| alive(*pid)).collect();
    assert_eq!(left, Vec::<u32>::new(), "the drained version was stopped");
    assert_eq!(processes_with(&[&marker, &of_second]), Vec::<u32>::new());
    // The rollback started the first commit again, in a version of its own.
    let running = processes_with(&[&marker, &of_first]);
    assert!(
        !running.is_empty() && running.iter().all(|pid| !previous.contains(pid)),
        "{running:?} {previous:?}"
    );
    assert_eq!(serving(&data), first.as_str());
    ok(daemon.cli(&["env", "delete", "staging"]));
    daemon.stop();
}

#[test]
fn a_checkout_cancelled_midway_leaves_nothing_and_the_next_one_is_whole() {
    let dir = TempDir::new("cancel-checkout");
    let data = dir.path().join("data");
    let _accounts = ReleaseAccounts(data.clone());
    let repo = repository(dir.path(), "checkout");
    let first = git(&repo, &["rev-parse", "HEAD"]);
    // `git archive` runs the filter the repository's own configuration names: it holds the export up for as
    // long as the configuration says so.
    let filtered = change(
        &repo,
        &[
            (".gitattributes", Some("held.txt filter=hold\n")),
            ("held.txt", Some("the whole file\n")),
        ],
    );
    git(&repo, &["config", "filter.hold.smudge", "sleep 600; cat"]);
    let daemon = start(&data, "27300-27399", &[]);
    register(&daemon, &repo.join("preview.yaml"));
    ok(daemon.cli(&["env", "create", "staging", "--commit", &first]));
    let marker = marked(&data);
    // Checkouts alone run git with no configuration of anybody's.
    let exporting = || processes_with(&[&marker, "GIT_CONFIG_GLOBAL=/dev/null"]);

    let id = deploy(&daemon, &filtered);
    wait_for("the export to be held up", Duration::from_secs(60), || {
        exporting().len() >= 3
    });
    cancel(&daemon, &id);
    assert_eq!(
        exporting(),
        Vec::<u32>::new(),
        "nothing of the checkout runs once its deployment has ended"
    );
    let commit_dir = data.join("local/builds/cancel/project").join(&filtered);
    for half_made in ["tree", "tree.partial", "scratch"] {
        assert!(
            !commit_dir.join(half_made).exists(),
            "{half_made} of the cancelled checkout is gone"
        );
    }

    git(&repo, &["config", "--unset", "filter.hold.smudge"]);
    ok(daemon.cli(&["deploy", "staging", "--commit", &filtered]));
    assert_eq!(serving(&data), filtered.as_str());
    let tree = commit_dir.join("tree");
    let files = git(&repo, &["ls-tree", "-r", "--name-only", &filtered]);
    let mut expected: Vec<&str> = files.lines().collect();
    expected.sort_unstable();
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&tree).expect("the tree").flatten() {
        found.push(entry.file_name().to_string_lossy().into_owned());
    }
    found.sort_unstable();
    assert_eq!(found, expected, "the tree holds the commit's files");
    for file in expected {
        let committed = std::process::Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(["show", &format!("{filtered}:{file}")])
            .output()
            .expect("git show");
        assert_eq!(
            std::fs::read(tree.join(file)).expect("file"),
            committed.stdout,
            "{file} is whole"
        );
    }
    ok(daemon.cli(&["env", "delete", "staging"]));
    daemon.stop();
}

#[test]
fn a_daemon_stopped_during_a_health_wait_leaves_no_process_of_the_version() {
    // Without root, and so without cgroups, nothing but the daemon can find the version's processes again.
    let dir = TempDir::new("cancel-stop");
    let user = OrdinaryUser::new();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data");
    let repo = repository(dir.path(), "stop");
    let first = git(&repo, &["rev-parse", "HEAD"]);
    let unhealthy = change(&repo, &[("unhealthy", Some(""))]);
    user.give(dir.path());
    let daemon = support::local_daemon(&data, "27400-27499", &[], user.0);
    register(&daemon, &repo.join("preview.yaml"));
    ok(daemon.cli(&["env", "create", "staging", "--commit", &first]));
    let marker = marked(&data);
    let of_unhealthy = format!("PREVIEW_COMMIT={unhealthy}");

    deploy(&daemon, &unhealthy);
    wait_for("the new version to start", Duration::from_secs(60), || {
        !processes_with(&[&marker, &of_unhealthy]).is_empty()
    });
    let starting = processes_with(&[&marker, &of_unhealthy]);
    // An API client that never finishes its request does not hold the stop up.
    let mut stalled = std::net::TcpStream::connect(&daemon.address).expect("connect to the API");
    std::io::Write::write_all(&mut stalled, b"GET /v1/projects HTTP/1.1\r\nHost: x\r\n")
        .expect("a partial request head");
    let pid = daemon.pid();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill")
            .success()
    );
    wait_for(
        "the daemon to stop while the client stalls",
        Duration::from_secs(30),
        || !alive(pid),
    );
    drop(stalled);
    daemon.stop();
    let left: Vec<u32> = starting.iter().copied().filter(|pid| alive(*pid)).collect();
    assert_eq!(
        left,
        Vec::<u32>::new(),
        "the starting version went with the daemon"
    );
    assert_eq!(
        processes_with(&[&marker]),
        Vec::<u32>::new(),
        "nothing the daemon started outlives it"
    );
}
