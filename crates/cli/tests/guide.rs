//! README's "Your own project in five minutes", run verbatim on a fresh project: the guide cannot rot. The
//! daemon's addresses and data directory come from the environment variables the guide names, so that the test
//! takes free ports and a directory of its own without changing a word of the commands.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{ReleaseAccounts, git, wait_for};

const README: &str = include_str!("../../../README.md");

/// The shell commands between the guide's markers.
fn guide_commands() -> String {
    let start = README
        .find("<!-- guide: the commands")
        .expect("README marks the guide's commands");
    let end = README[start..]
        .find("<!-- guide: end -->")
        .map(|end| start + end)
        .expect("README marks the end of the guide's commands");
    let block = &README[start..end];
    let body = block
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(body, _)| body)
        .expect("the guide's commands are a sh block");
    body.to_owned()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'))
    })
}

#[test]
fn the_readme_guide_runs_verbatim_on_a_fresh_project() {
    let commands = guide_commands();
    assert!(commands.contains("preview init"), "{commands}");
    let root = preview_testing::TempDir::new("guide");
    let data = root.path().join("data");
    let _accounts = ReleaseAccounts(data.clone());
    let home = root.path().join("home");
    let project = home.join("my-app");
    std::fs::create_dir_all(&project).expect("project");
    git(&project, &["init", "--quiet", "--initial-branch", "main"]);
    let binary = Path::new(env!("CARGO_BIN_EXE_preview"));
    let path = format!(
        "{}:{}",
        binary.parent().expect("bin dir").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // The guide's commands, then what the test needs to stop the daemon they started.
    let script = format!("set -euo pipefail\n{commands}\necho $! > ../daemon.pid\n");
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&project)
        .env("PATH", path)
        .env("HOME", &home)
        .env("PREVIEW_HOME", &data)
        .env("PREVIEW_LISTEN", "127.0.0.1:0")
        .env("PREVIEW_HTTP", "127.0.0.1:0")
        .env("PREVIEW_HTTPS", "127.0.0.1:0")
        .env("PREVIEW_PORTS", "28800-28999")
        .env("GIT_AUTHOR_NAME", "A Newcomer")
        .env("GIT_AUTHOR_EMAIL", "newcomer@example.com")
        .env("GIT_COMMITTER_NAME", "A Newcomer")
        .env("GIT_COMMITTER_EMAIL", "newcomer@example.com")
        .output()
        .expect("bash runs");
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    let pid: Option<u32> = std::fs::read_to_string(home.join("daemon.pid"))
        .ok()
        .and_then(|p| p.trim().parse().ok());
    let log = std::fs::read_to_string(home.join("preview-serve.log")).unwrap_or_default();
    let stop = || {
        if let Some(pid) = pid {
            let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
            wait_for("the daemon to stop", Duration::from_secs(60), || !alive(pid));
        }
    };
    if !out.status.success() {
        stop();
        panic!("the guide failed:\n--- stdout\n{printed}\n--- stderr\n{said}\n--- daemon\n{log}");
    }
    // What the guide promises: the URLs at the end of create and clone, the page over HTTPS, both environments.
    assert!(
        printed.contains("https://web-staging.localhost:") && printed.contains("https://web-my-feature.localhost:"),
        "{printed}"
    );
    assert!(printed.contains("Directory listing"), "the app answered over HTTPS:\n{printed}");
    assert!(
        printed.contains("staging") && printed.contains("clone of staging"),
        "{printed}"
    );
    assert!(!said.contains("warning:"), "the guide's commands warn:\n{said}");
    stop();
}
