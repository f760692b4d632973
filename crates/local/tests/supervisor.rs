//! The supervisor with real processes: environment-only secrets, logs, restarts with backoff, stopping whole
//! process groups — including processes that ignore SIGTERM —, processes run once, and processes dropped without a
//! stop killed at once and never restarted.

use std::path::Path;
use std::time::{Duration, Instant};

use preview_deploy::EnvironmentAddress;
use preview_local::{Leftovers, Place, ProcessSpec, Supervised};
use preview_secrets::Secret;
use preview_testing::TempDir;

fn spec(dir: &Path, command: &str) -> ProcessSpec {
    ProcessSpec {
        name: "test-app".into(),
        command: command.into(),
        place: Place::Host(dir.to_path_buf()),
        env: vec![("GREETING".into(), Secret::new("hello".into()))],
        log: dir.join("logs/app.log"),
        log_limit: 1024 * 1024,
        grace: Duration::from_millis(500),
        backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(400),
        memory_limit: None,
        restart: true,
        leftovers: None,
    }
}

fn alive(pid: u32) -> bool {
    // A zombie has exited; only a live process counts.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.split_whitespace()
                .nth(2)
                .is_none_or(|state| state != "Z")
        })
        .unwrap_or(false)
}

/// Every live process whose process group is `group`.
fn members(group: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                // Fields after the command name (which may contain spaces): state ppid pgrp …
                let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
                let fields: Vec<&str> = rest.split_whitespace().collect();
                fields.first() != Some(&"Z") && fields.get(2) == Some(&group.to_string().as_str())
            })
        })
        .collect()
}

async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("logs/app.log")).unwrap_or_default()
}

#[tokio::test]
async fn variables_reach_the_environment_and_never_the_command_line() {
    let dir = TempDir::new("supervisor-env");
    // The shell stays (no `exec`): its command line is the one the process was started with.
    let mut spec = spec(dir.path(), "echo \"greeting=$GREETING\"; sleep 30");
    spec.env
        .push(("API_KEY".into(), Secret::new("very-secret-value".into())));
    let process = Supervised::start(spec).await.expect("starts");
    let pid = process.pid().expect("pid");
    wait_for("the greeting", || log(dir.path()).contains("greeting=")).await;
    assert!(log(dir.path()).contains("greeting=hello"));
    let cmdline =
        String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline"))
            .into_owned();
    assert!(
        cmdline.contains("greeting="),
        "the command as started: {cmdline:?}"
    );
    assert!(!cmdline.contains("very-secret-value"));
    let environ =
        String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/environ")).expect("environ"))
            .into_owned();
    assert!(environ.contains("API_KEY=very-secret-value"));
    // Nothing of this process's own environment (the daemon's, in production) is inherited but PATH.
    let own: Vec<String> = std::env::vars()
        .map(|(name, _)| name)
        .filter(|name| name != "PATH")
        .collect();
    assert!(!own.is_empty(), "the test runs with variables of its own");
    for name in own {
        assert!(
            !environ
                .split('\0')
                .any(|entry| entry.starts_with(&format!("{name}="))),
            "{name} was inherited"
        );
    }
    process.stop().await;
    assert!(!alive(pid));
}

#[tokio::test]
async fn stop_ends_the_whole_group_even_when_sigterm_is_ignored() {
    let dir = TempDir::new("supervisor-stop");
    // The shell ignores SIGTERM and has a child that ignores it too.
    let process = Supervised::start(spec(
        dir.path(),
        "trap '' TERM; sh -c \"trap '' TERM; sleep 60\" & sleep 60; wait",
    ))
    .await
    .expect("starts");
    let group = process.pid().expect("pid");
    wait_for("the child process", || members(group).len() >= 3).await;
    let began = Instant::now();
    process.stop().await;
    assert!(
        members(group).is_empty(),
        "nothing of the group survives: {:?}",
        members(group)
    );
    assert!(
        began.elapsed() >= Duration::from_millis(500),
        "SIGKILL came only after the grace period"
    );
    let written = log(dir.path());
    assert!(written.contains("[preview] test-app stopped"), "{written}");
    assert!(
        written.starts_with(&format!("[preview] test-app started (pid {group})\n")),
        "{written}"
    );
    // Killed, and said so: a server whose files are kept only when it ended well asks.
    assert_eq!(process.stop_exit().as_deref(), Some("signal: 9 (SIGKILL)"));
}

#[tokio::test]
async fn a_process_that_ends_well_when_stopped_says_so() {
    let dir = TempDir::new("supervisor-stop-well");
    let process = Supervised::start(spec(dir.path(), "trap 'exit 0' TERM; sleep 60 & wait"))
        .await
        .expect("starts");
    let group = process.pid().expect("pid");
    wait_for("the child process", || members(group).len() >= 2).await;
    assert_eq!(process.stop_exit(), None, "still running");
    process.stop().await;
    assert_eq!(process.stop_exit().as_deref(), Some("exit status: 0"));
}

#[tokio::test]
async fn what_a_process_writes_on_its_way_out_is_logged_before_stop_returns() {
    let dir = TempDir::new("supervisor-last-words");
    // On SIGTERM it writes far more than a pipe holds, then its last line, and exits: the log has all of it
    // before `stop` returns, and nothing is written after (its directory may be removed next).
    let mut spec = spec(
        dir.path(),
        "trap 'head -c 500000 /dev/zero | tr \\\\0 x; echo; echo last-words; exit 0' TERM; echo trapping; while :; do sleep 0.05; done",
    );
    // Time enough to write it all however busy the machine is: it is not killed half-way.
    spec.grace = Duration::from_secs(30);
    let process = Supervised::start(spec).await.expect("starts");
    // Its trap is set once it says so (a SIGTERM before would end it at once).
    wait_for("the trap", || log(dir.path()).contains("trapping")).await;
    process.stop().await;
    let written = log(dir.path());
    let last_words = written.find("last-words").unwrap_or_else(|| {
        panic!(
            "its last line is not logged: {}",
            &written[written.len().saturating_sub(300)..]
        )
    });
    let stopped = written
        .find("[preview] test-app stopped")
        .expect("the stop is logged");
    assert!(last_words < stopped, "the stop is the last line");
    std::fs::remove_dir_all(dir.path().join("logs")).expect("the logs are removed");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !dir.path().join("logs").exists(),
        "nothing is written once stopped"
    );
}

#[tokio::test]
async fn a_process_that_exits_is_restarted_with_growing_delays() {
    let dir = TempDir::new("supervisor-restart");
    let process = Supervised::start(spec(dir.path(), "echo run; exit 3"))
        .await
        .expect("starts");
    wait_for("four restarts", || process.restarts() >= 4).await;
    assert_eq!(process.last_exit().as_deref(), Some("exit status: 3"));
    let times = process.restarted_at();
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    // 50, 100, 200, 400 ms: each wait at least as long as the one before (within scheduling noise).
    for pair in gaps.windows(2) {
        assert!(
            pair[1] + Duration::from_millis(20) >= pair[0],
            "backoff shrank: {gaps:?}"
        );
    }
    assert!(
        gaps.last().copied().unwrap_or_default() >= Duration::from_millis(150),
        "backoff grows: {gaps:?}"
    );
    process.stop().await;
    assert!(log(dir.path()).matches("exited (exit status: 3)").count() >= 4);
}

#[tokio::test]
async fn a_killed_process_comes_back() {
    let dir = TempDir::new("supervisor-kill");
    let process = Supervised::start(spec(dir.path(), "exec sleep 60"))
        .await
        .expect("starts");
    let first = process.pid().expect("pid");
    std::process::Command::new("kill")
        .args(["-KILL", &first.to_string()])
        .status()
        .expect("kill");
    wait_for("a new process", || {
        process.pid().is_some_and(|pid| pid != first)
    })
    .await;
    assert_eq!(process.restarts(), 1);
    assert!(
        process
            .last_exit()
            .unwrap_or_default()
            .contains("signal: 9"),
        "{:?}",
        process.last_exit()
    );
    process.stop().await;
}

#[tokio::test]
async fn logs_rotate_at_their_limit() {
    let dir = TempDir::new("supervisor-logs");
    let mut spec = spec(
        dir.path(),
        "i=0; while [ $i -lt 200 ]; do echo \"line $i of a long enough log\"; i=$((i+1)); done; exec sleep 30",
    );
    spec.log_limit = 2048;
    let process = Supervised::start(spec).await.expect("starts");
    wait_for("the last line", || log(dir.path()).contains("line 199")).await;
    let current = std::fs::metadata(dir.path().join("logs/app.log"))
        .expect("log")
        .len();
    let previous = std::fs::metadata(dir.path().join("logs/app.log.1"))
        .expect("rotated")
        .len();
    assert!(current <= 2048 && previous <= 2048, "{current} {previous}");
    process.stop().await;
}

#[tokio::test]
async fn a_command_that_cannot_start_is_an_error() {
    let dir = TempDir::new("supervisor-missing");
    let mut spec = spec(dir.path(), "true");
    spec.place = Place::Host(dir.path().join("does-not-exist"));
    let error = Supervised::start(spec)
        .await
        .map(|_| ())
        .expect_err("no such directory");
    assert!(
        error.to_string().starts_with("cannot start `test-app`"),
        "{error}"
    );
}

#[tokio::test]
async fn a_process_dropped_without_a_stop_is_killed_at_once_and_never_restarted() {
    let dir = TempDir::new("supervisor-dropped");
    let leftovers = Leftovers::default();
    let env = EnvironmentAddress {
        project: "shop".into(),
        environment: "staging".into(),
    };
    let mut spec = spec(
        dir.path(),
        "echo started >> starts; sh -c 'sleep 60' & sleep 60; wait",
    );
    spec.leftovers = Some(leftovers.of(&env));
    let process = Supervised::start(spec).await.expect("starts");
    let group = process.pid().expect("pid");
    wait_for("the child process", || members(group).len() >= 3).await;
    drop(process);
    // Without yielding to the runtime, the supervisor's task cannot act: only the drop itself can have killed them.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        members(group).is_empty(),
        "the drop killed the group: {:?}",
        members(group)
    );
    leftovers.settle(&env).await;
    // Longer than the restart backoff: a process that comes back would have by now.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let starts = std::fs::read_to_string(dir.path().join("starts")).expect("starts");
    assert_eq!(starts, "started\n", "it never ran again");
    assert!(
        !log(dir.path()).contains("restarted"),
        "{}",
        log(dir.path())
    );
}

#[tokio::test]
async fn a_process_that_is_not_restarted_runs_once() {
    let dir = TempDir::new("supervisor-once");
    let mut spec = spec(dir.path(), "echo run >> runs; exit 3");
    spec.restart = false;
    let process = Supervised::start(spec).await.expect("starts");
    process.ended().await;
    assert_eq!(process.last_exit().as_deref(), Some("exit status: 3"));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(process.restarts(), 0);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("runs")).expect("runs"),
        "run\n"
    );
    process.stop().await;
}
