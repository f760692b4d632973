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

/// Stops, when dropped, every process started with `PREVIEW_HOME` set to this data directory (the daemon the guide
/// starts in the background), whether or not the guide got as far as saying its pid.
struct StopDaemons(std::path::PathBuf);

impl Drop for StopDaemons {
    fn drop(&mut self) {
        let wanted = format!("PREVIEW_HOME={}", self.0.display());
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        let pids: Vec<u32> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == wanted.as_bytes()))
            })
            .collect();
        for pid in &pids {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        for pid in pids {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while alive(pid) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
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
    let _daemons = StopDaemons(data.clone());
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
    let script = format!("set -euo pipefail\n{commands}");
    // Output to files, not pipes: the daemon the guide starts in the background keeps what it inherited open.
    let (stdout_path, stderr_path) = (root.path().join("stdout"), root.path().join("stderr"));
    let status = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&project)
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
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
        .status()
        .expect("bash runs");
    let printed = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    let said = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    // The daemon the guide started says its pid when it is up.
    let pid: Option<u32> = printed
        .split_once("started in the background (pid ")
        .and_then(|(_, rest)| rest.split_once(')'))
        .and_then(|(pid, _)| pid.parse().ok());
    let log = std::fs::read_to_string(data.join("daemon.log")).unwrap_or_default();
    let stop = || {
        if let Some(pid) = pid {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            wait_for("the daemon to stop", Duration::from_secs(60), || {
                !alive(pid)
            });
        }
    };
    if !status.success() {
        stop();
        panic!("the guide failed:\n--- stdout\n{printed}\n--- stderr\n{said}\n--- daemon\n{log}");
    }
    // What the guide promises: the URLs at the end of create and clone, the page over HTTPS, both environments.
    assert!(
        printed.contains("https://web-staging.localhost:")
            && printed.contains("https://web-my-feature.localhost:"),
        "{printed}"
    );
    assert!(
        printed.contains("Directory listing"),
        "the app answered over HTTPS:\n{printed}"
    );
    assert!(
        printed.contains("staging") && printed.contains("clone of staging"),
        "{printed}"
    );
    assert!(
        !said.contains("warning:"),
        "the guide's commands warn:\n{said}"
    );
    stop();
}
