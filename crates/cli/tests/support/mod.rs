//! Driving the real `preview` binary: a daemon as a child process, CLI calls against it, raw HTTP requests.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const EXAMPLE: &str = include_str!("../../../../examples/shop/preview.yaml");

/// The secrets `examples/shop/preview.yaml` declares, with their scopes.
pub const EXAMPLE_SECRETS: [(&str, &str); 3] = [
    ("MASKING_KEY", "project"),
    ("FORGE_WEBHOOK_SECRET", "project"),
    ("SESSION_KEY", "service:storefront"),
];

pub fn preview() -> Command {
    Command::new(env!("CARGO_BIN_EXE_preview"))
}

/// A daemon started as a child of the test, with its own data directory and a loopback port of its own.
pub struct Daemon {
    child: Option<Child>,
    pub data: PathBuf,
    pub address: String,
    pub token: String,
}

impl Daemon {
    pub fn start(data: &Path, extra: &[&str]) -> Daemon {
        Daemon::start_with_env(data, extra, &[])
    }

    pub fn start_with_env(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        use std::os::unix::fs::MetadataExt;
        let config = data.join("client.json");
        // The daemon rewrites the file by rename once it listens: a new inode means this daemon wrote it.
        let previous = std::fs::metadata(&config).map(|m| m.ino()).ok();
        std::fs::create_dir_all(data).expect("data dir");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data.join("daemon.log"))
            .expect("daemon log");
        let child = preview()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args(defaults(extra))
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("the daemon starts");
        // The daemon writes its client config only after recovery, once it listens.
        let deadline = Instant::now() + Duration::from_secs(30);
        let parsed = loop {
            let rewritten = std::fs::metadata(&config).is_ok_and(|m| Some(m.ino()) != previous);
            if let Some(parsed) = std::fs::read(&config)
                .ok()
                .filter(|_| rewritten)
                .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            {
                break parsed;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not start:\n{}",
                read_log(data)
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        Daemon {
            child: Some(child),
            data: data.to_path_buf(),
            address: parsed["address"]
                .as_str()
                .expect("address")
                .trim_start_matches("http://")
                .to_owned(),
            token: parsed["token"].as_str().expect("token").to_owned(),
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// SIGKILL: no chance to clean up, as in a crash.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait: a clean stop.
    pub fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Runs a CLI command against this daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        preview()
            .arg("--data-dir")
            .arg(&self.data)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("the CLI runs")
    }

    /// Runs a CLI command with `input` on its standard input.
    pub fn cli_with_input(&self, args: &[&str], input: &str) -> Output {
        let mut child = preview()
            .arg("--data-dir")
            .arg(&self.data)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the CLI runs");
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input.as_bytes()).expect("write stdin");
        }
        child.wait_with_output().expect("the CLI ends")
    }

    /// Sets the secrets the example project declares, so that its environments can deploy.
    pub fn set_example_secrets(&self) {
        for (name, scope) in EXAMPLE_SECRETS {
            let out = self.cli_with_input(
                &["secret", "set", name, "--scope", scope],
                &format!("value-of-{name}\n"),
            );
            assert!(
                out.status.success(),
                "secret set {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Runs a CLI command with `-o json` and parses its output.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["-o", "json"];
        all.extend_from_slice(args);
        let out = self.cli(&all);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!(
                "{args:?} printed no JSON:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// A raw HTTP/1.1 request; returns the status and the parsed JSON body.
    pub fn http(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: &[u8],
    ) -> (u16, serde_json::Value) {
        let mut stream = std::net::TcpStream::connect(&self.address).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.address,
            body.len()
        );
        if let Some(token) = token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        if let Some(content_type) = content_type {
            head.push_str(&format!("Content-Type: {content_type}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).expect("write head");
        // A server may refuse an oversized body before reading it all; that is not the test's concern.
        let _ = stream.write_all(body);
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let text = String::from_utf8_lossy(&response);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        (
            status,
            serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
        )
    }
}

/// A daemon a test did not stop (it failed first) is stopped cleanly, so that it stops the apps it runs; SIGKILL
/// only if it does not exit within ten seconds.
impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn read_log(data: &Path) -> String {
    std::fs::read_to_string(data.join("daemon.log")).unwrap_or_default()
}

/// Copies a directory tree (a stopped daemon's data) so that each scenario starts from the same state.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// Polls `deployment show` until the deployment has ended; returns its JSON.
pub fn wait_until_ended(daemon: &Daemon, id: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let shown = daemon.json(&["deployment", "show", id]);
        if matches!(
            shown["deployment"]["status"].as_str(),
            Some("committed" | "rolled_back" | "failed")
        ) {
            return shown;
        }
        assert!(
            Instant::now() < deadline,
            "deployment {id} did not end: {shown}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a test does not choose itself: the recording runtime (most daemon tests are about the engine and the
/// API, and it lets them inject faults at every operation) and a 30-second step timeout.
fn defaults(extra: &[&str]) -> Vec<&'static str> {
    let mut defaults = Vec::new();
    if !extra.contains(&"--runtime") {
        defaults.extend(["--runtime", "recording"]);
    }
    if !extra.contains(&"--step-timeout") {
        defaults.extend(["--step-timeout", "30"]);
    }
    defaults
}

/// Runs `preview serve` where it is expected to refuse to start; returns its output once it exits.
pub fn serve_refused(data: &Path, env: &[(&str, &str)]) -> Output {
    let mut child = preview()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--runtime",
            "recording",
            "--data-dir",
        ])
        .arg(data)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the daemon starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the daemon kept running although it should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// Removes, when dropped, the system accounts a daemon on `data` made for its environments and builders (as root
/// it makes one per environment and builder, and environments a test leaves standing keep theirs). Declare it after
/// the test's temporary directory and before its daemons, so that it goes after the daemons and before the
/// directory.
pub struct ReleaseAccounts(pub PathBuf);

impl Drop for ReleaseAccounts {
    fn drop(&mut self) {
        let Ok(bytes) = std::fs::read(self.0.join("local/accounts.json")) else {
            return;
        };
        let ids: std::collections::BTreeMap<String, u32> =
            serde_json::from_slice(&bytes).unwrap_or_default();
        for id in ids.values() {
            let _ = preview_isolation::delete_account(*id);
        }
    }
}
