//! Driving the real `preview` binary: a daemon as a child process, CLI calls against it, raw HTTP requests.

#![allow(dead_code)]

pub mod faulty;
pub mod forge;

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
        Daemon::start_as(data, extra, env, None)
    }

    /// A daemon run as the user `uid` (with its group of the same id), for the tests of a daemon that is not root.
    pub fn start_as(data: &Path, extra: &[&str], env: &[(&str, &str)], uid: Option<u32>) -> Daemon {
        Daemon::start_full(data, extra, env, uid, None)
    }

    /// A daemon that inherits a descriptor (9) open on `holding`, as a daemon started by a careless parent does.
    pub fn start_full(
        data: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        uid: Option<u32>,
        holding: Option<&Path>,
    ) -> Daemon {
        let command = match holding {
            Some(file) => {
                let mut shell = Command::new("/bin/sh");
                shell
                    .args(["-c", "exec 9<\"$0\"; exec \"$@\""])
                    .arg(file)
                    .arg(env!("CARGO_BIN_EXE_preview"));
                shell
            }
            None => preview(),
        };
        Daemon::start_command(command, data, extra, env, uid)
    }

    /// A daemon run by `command` (the `preview` binary, or a program that runs it in the end).
    fn start_command(
        mut command: Command,
        data: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        uid: Option<u32>,
    ) -> Daemon {
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
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args(defaults(extra))
            .args(extra)
            // Every answer is checked against the OpenAPI document; a mismatch fails the test when the daemon is
            // dropped.
            .env("PREVIEW_CHECK_ANSWERS", data.join(ANSWER_MISMATCHES))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        if let Some(uid) = uid {
            use std::os::unix::process::CommandExt;
            command.uid(uid).gid(uid);
        }
        let child = command.spawn().expect("the daemon starts");
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

    /// Waits for the daemon to die by SIGKILL of its own (a fault the test asked for); fails when it does not, or
    /// ends otherwise.
    pub fn wait_killed(mut self) {
        use std::os::unix::process::ExitStatusExt;
        let mut child = self.child.take().expect("a daemon child");
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                assert_eq!(
                    status.signal(),
                    Some(9),
                    "the daemon ended with {status}, not SIGKILL:\n{}",
                    read_log(&self.data)
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon was not killed: the fault was never reached\n{}",
                read_log(&self.data)
            );
            std::thread::sleep(Duration::from_millis(20));
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
        let authorization = token.map(|token| format!("Bearer {token}"));
        let mut headers = Vec::new();
        if let Some(authorization) = &authorization {
            headers.push(("Authorization", authorization.as_str()));
        }
        if let Some(content_type) = content_type {
            headers.push(("Content-Type", content_type));
        }
        self.http_with(method, path, &headers, body)
    }

    /// A raw HTTP/1.1 request with these headers; returns the status and the parsed JSON body.
    pub fn http_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, serde_json::Value) {
        let (status, _, body) = self.http_full(method, path, headers, body);
        (status, body)
    }

    /// A raw HTTP/1.1 request with these headers; returns the status, the response's head and its parsed JSON body.
    pub fn http_full(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String, serde_json::Value) {
        let mut stream = std::net::TcpStream::connect(&self.address).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.address,
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
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
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        (
            status,
            head.to_owned(),
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
        // After the daemon stopped: a failed check must not leave it running. (A test that removed the data
        // directory itself has nothing left to read.)
        if !std::thread::panicking() && self.data.exists() {
            let file = self.data.join(ANSWER_MISMATCHES);
            let mismatches = std::fs::read_to_string(&file).unwrap_or_else(|e| {
                panic!(
                    "the daemon did not check its answers ({}: {e})",
                    file.display()
                )
            });
            assert!(
                mismatches.is_empty(),
                "answers the OpenAPI document does not describe:\n{mismatches}"
            );
        }
    }
}

/// The file in a test daemon's data directory its answers that the OpenAPI document does not describe go to.
pub const ANSWER_MISMATCHES: &str = "answer-mismatches";

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

/// Registers the example project through the API and sets the secrets it declares.
pub fn register_example(daemon: &Daemon) {
    let body = serde_json::json!({ "file": "preview.yaml", "source": EXAMPLE }).to_string();
    let (status, answer) = daemon.http(
        "POST",
        "/v1/projects",
        Some(&daemon.token),
        Some("application/json"),
        body.as_bytes(),
    );
    assert_eq!(status, 200, "{answer}");
    daemon.set_example_secrets();
}

/// An authenticated API call with a JSON body; the status and the answer.
pub fn api(
    daemon: &Daemon,
    method: &str,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    daemon.http(
        method,
        path,
        Some(&daemon.token),
        Some("application/json"),
        body.to_string().as_bytes(),
    )
}

/// Polls `deployment show` until the deployment has ended; returns its JSON.
pub fn wait_until_ended(daemon: &Daemon, id: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let shown = daemon.json(&["deployment", "show", id]);
        if matches!(
            shown["deployment"]["status"].as_str(),
            Some("committed" | "rolled_back" | "failed" | "abandoned")
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
    serve_refused_full(data, &[], env)
}

/// [`serve_refused`] with `extra` flags.
pub fn serve_refused_with(data: &Path, extra: &[&str]) -> Output {
    serve_refused_full(data, extra, &[])
}

fn serve_refused_full(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
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
        .args(extra)
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

/// Asserts that the daemon's own files are private: the data directory 0700, and its store, keys, client config,
/// certificate keys and logs 0600, all owned by `owner`.
pub fn assert_private_files(data: &Path, owner: u32) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mode = |path: &Path| {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(data), 0o700, "{}", data.display());
    let mut files: Vec<PathBuf> = [
        "preview.db",
        "preview.db-wal",
        "preview.db-shm",
        "master.key",
        "client.json",
        "local/ca/ca.key",
    ]
    .iter()
    .map(|f| data.join(f))
    .filter(|f| f.exists())
    .collect();
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir()
                && !path.ends_with("tree")
                && !path.ends_with("home")
                && !path.ends_with("cache")
            {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "log") || path.ends_with("key.pem") {
                found.push(path);
            }
        }
    }
    walk(&data.join("local"), &mut files);
    assert!(
        files.iter().any(|f| f.ends_with("key.pem")),
        "no certificate key among {files:?}"
    );
    assert!(
        files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "log"))
            .count()
            >= 2,
        "no logs among {files:?}"
    );
    for file in files {
        let meta = std::fs::metadata(&file).expect("metadata");
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o600,
            "{}",
            file.display()
        );
        assert_eq!(meta.uid(), owner, "{}", file.display());
    }
}

/// Runs git in `repo` with a fixed identity; its output, trimmed.
pub fn git(repo: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "user.name=test", "-c", "user.email=test@example.test"])
        // The repository may belong to the user a test runs its daemon as.
        .args(["-c", "safe.directory=*"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Commits everything in the working tree of `repo` with `message`; the new commit.
pub fn commit_all(repo: &Path, message: &str) -> String {
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "--quiet", "-m", message]);
    git(repo, &["rev-parse", "HEAD"])
}

/// The output of a command that must succeed.
pub fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Where the daemon on `data` serves plain HTTP through its gateway, from its client config.
pub fn gateway_http(data: &Path) -> String {
    gateway_address(data, "gateway_http")
}

/// Where the daemon on `data` serves HTTPS through its gateway, from its client config.
pub fn gateway_https(data: &Path) -> String {
    gateway_address(data, "gateway_https")
}

/// A gateway address (`gateway_http`, `gateway_https`) the daemon on `data` published in its client config.
fn gateway_address(data: &Path, key: &str) -> String {
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("client.json")).expect("client.json"))
            .expect("json");
    config[key]
        .as_str()
        .expect("the daemon publishes its gateway")
        .to_owned()
}

/// One HTTP/1.1 request through the gateway for `host`; the status and the JSON body (or the body as a string),
/// status 0 when the gateway could not be reached.
pub fn request(
    gateway: &str,
    method: &str,
    host: &str,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let Ok(mut stream) = std::net::TcpStream::connect(gateway) else {
        return (0, serde_json::Value::Null);
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(180)))
        .expect("timeout");
    let sent = write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if sent.is_err() {
        return (0, serde_json::Value::Null);
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::String(body.to_owned())),
    )
}

/// A daemon with the local runtime on `data`: gateway ports from the kernel, environments' ports from `ports`, a
/// 20-second health timeout, and `extra` flags; run as `uid` when given.
pub fn local_daemon(data: &Path, ports: &str, extra: &[&str], uid: Option<u32>) -> Daemon {
    local_daemon_holding(data, ports, extra, uid, None)
}

/// [`local_daemon`] with variables in its environment.
pub fn local_daemon_with_env(data: &Path, ports: &str, env: &[(&str, &str)]) -> Daemon {
    local_daemon_full(data, ports, &[], env, None, None)
}

/// [`local_daemon`], inheriting a descriptor on `holding` when given.
pub fn local_daemon_holding(
    data: &Path,
    ports: &str,
    extra: &[&str],
    uid: Option<u32>,
    holding: Option<&Path>,
) -> Daemon {
    local_daemon_full(data, ports, extra, &[], uid, holding)
}

/// The flags of a daemon with the local runtime: gateway ports from the kernel, environments' from `ports`.
fn local_flags(ports: &str) -> Vec<&str> {
    vec![
        "--runtime",
        "local",
        "--http",
        "127.0.0.1:0",
        "--https",
        "127.0.0.1:0",
        "--ports",
        ports,
    ]
}

fn local_daemon_full(
    data: &Path,
    ports: &str,
    extra: &[&str],
    env: &[(&str, &str)],
    uid: Option<u32>,
    holding: Option<&Path>,
) -> Daemon {
    let mut flags = local_flags(ports);
    if !extra.contains(&"--health-timeout") {
        flags.extend(["--health-timeout", "20"]);
    }
    flags.extend_from_slice(extra);
    Daemon::start_full(data, &flags, env, uid, holding)
}

/// [`local_daemon`] started with `open_files` descriptors (soft limit, hard limit: the daemon may raise its own up
/// to the hard one, not past it), run through `prlimit`.
pub fn local_daemon_with_open_files(data: &Path, ports: &str, open_files: (u64, u64)) -> Daemon {
    let mut command = Command::new("prlimit");
    command
        .arg(format!("--nofile={}:{}", open_files.0, open_files.1))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_preview"));
    Daemon::start_command(command, data, &local_flags(ports), &[], None)
}

/// A new git repository `dir/repo` holding `files`, in one commit.
pub fn repository(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).expect("repo");
    for (name, text) in files {
        std::fs::write(repo.join(name), text).expect("write");
    }
    git(&repo, &["init", "--quiet"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "--quiet", "-m", "the project"]);
    repo
}

/// Polls `condition` every 100 ms until it holds; fails the test after `patience`.
pub fn wait_for(what: &str, patience: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + patience;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An ordinary user to run the daemon as (removed when dropped), or none when the test is not root.
pub struct OrdinaryUser(pub Option<u32>);

impl OrdinaryUser {
    pub fn new() -> OrdinaryUser {
        if !preview_testing::running_as_root() {
            return OrdinaryUser(None);
        }
        let mut id = 3_800_000 + (std::process::id() % 5_000) * 20;
        loop {
            if preview_isolation::id_is_free(id)
                && preview_isolation::create_account(id, "preview test ordinary user").is_ok()
            {
                return OrdinaryUser(Some(id));
            }
            id += 1;
        }
    }

    /// Hands `path` (and everything below it) to the user.
    pub fn give(&self, path: &Path) {
        if let Some(uid) = self.0 {
            let status = std::process::Command::new("chown")
                .arg("-R")
                .arg(format!("{uid}:{uid}"))
                .arg(path)
                .status()
                .expect("chown");
            assert!(status.success());
        }
    }
}

impl Drop for OrdinaryUser {
    fn drop(&mut self) {
        if let Some(uid) = self.0 {
            // Whatever still runs as the user (a test that failed half-way) goes first: userdel refuses otherwise.
            let _ = std::process::Command::new("pkill")
                .args(["-KILL", "-U", &uid.to_string()])
                .status();
            std::thread::sleep(std::time::Duration::from_millis(200));
            let _ = preview_isolation::delete_account(uid);
        }
    }
}

/// A tool `scripts/test` installs under `target/test-tools` (`path` inside it); the test fails, saying what
/// installs it (`installs`), when it is not there.
pub fn test_tool(path: &str, installs: &str) -> PathBuf {
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-tools");
    let program = tools.join(path);
    assert!(
        program.exists(),
        "{} is missing: `scripts/test` installs {installs} into {}",
        program.display(),
        tools.display()
    );
    program
}

/// The workspace this test binary was built from.
pub const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// A new repository holding this workspace's files as they are now (committed or not), in one commit: the
/// example's apps are built from it.
pub fn shop_repository(dir: &Path) -> PathBuf {
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).expect("repo dir");
    git(&repo, &["init", "--quiet"]);
    let files = git(
        Path::new(WORKSPACE),
        &["ls-files", "--cached", "--others", "--exclude-standard"],
    );
    for file in files.lines() {
        let from = Path::new(WORKSPACE).join(file);
        if !from.is_file() {
            continue;
        }
        let to = repo.join(file);
        std::fs::create_dir_all(to.parent().expect("parent")).expect("dirs");
        std::fs::copy(&from, &to).expect("copy");
    }
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "--quiet", "-m", "the shop"]);
    repo
}

/// What `preview demo` printed, with this machine's demo slot, held until it is dropped.
pub struct DemoRun {
    pub output: Output,
    _slot: std::fs::File,
}

/// Runs `preview demo` with `extra` arguments on the example of a clone of this workspace in `dir` (its data
/// directory there too). One demo at a time on a machine: a demo's daemon gives its apps ports from the default
/// range, which another's would share, so the next waits until the [`DemoRun`] is dropped.
pub fn demo(dir: &Path, extra: &[&str]) -> DemoRun {
    let slot = std::fs::File::create(std::env::temp_dir().join("preview-demo.lock")).expect("lock");
    slot.lock().expect("the demo slot");
    let repo = shop_repository(dir);
    // The demo's daemon uses the checkout's build cache: share the workspace's, as the other tests do.
    std::os::unix::fs::symlink(Path::new(WORKSPACE).join("target"), repo.join("target"))
        .expect("symlink");
    let output = preview()
        .args(["demo", "--repository"])
        .arg(&repo)
        .args(extra)
        .env("TMPDIR", dir)
        .stdin(Stdio::null())
        .output()
        .expect("the demo runs");
    DemoRun {
        output,
        _slot: slot,
    }
}

/// How many processes run with `dir` in their command line or as their working directory.
pub fn processes_under(dir: &Path) -> usize {
    let ours = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .expect("proc")
        .flatten()
        .filter(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cwd = std::fs::read_link(e.path().join("cwd")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains(&ours)
                || cwd.to_string_lossy().contains(&ours)
        })
        .count()
}

/// `preview --project PROJECT ARGS…` against the daemon.
pub fn in_project(daemon: &Daemon, project: &str, args: &[&str]) -> Output {
    let mut all = vec!["--project", project];
    all.extend_from_slice(args);
    daemon.cli(&all)
}

/// A change of PROJECT that must succeed; what it printed.
pub fn deploy(daemon: &Daemon, project: &str, args: &[&str]) -> String {
    ok(in_project(daemon, project, args))
}

/// Registers the project whose spec is `repo`'s `preview.yaml` (named as its directory), and sets its masking key.
pub fn register_with_key(daemon: &Daemon, repo: &Path, key: &str) {
    ok(daemon.cli(&[
        "project",
        "register",
        "-f",
        &repo.join("preview.yaml").display().to_string(),
    ]));
    set_masking_key(daemon, repo, key);
}

/// Sets the project secret `MASKING_KEY` of `repo`'s project (named as its directory) to `key`.
pub fn set_masking_key(daemon: &Daemon, repo: &Path, key: &str) {
    let project = repo.file_name().and_then(|n| n.to_str()).expect("name");
    ok(daemon.cli_with_input(
        &[
            "--project",
            project,
            "secret",
            "set",
            "MASKING_KEY",
            "--scope",
            "project",
        ],
        key,
    ));
}

/// Runs a deployment command with `--no-wait`, waits for it to commit, and returns its journal.
pub fn deployed_journal(daemon: &Daemon, project: &str, args: &[&str]) -> String {
    let mut all = vec!["--project", project];
    all.extend_from_slice(args);
    all.push("--no-wait");
    let started = daemon.json(&all);
    let id = faulty::deployment_id(&started);
    let ended = wait_until_ended(daemon, &id);
    assert_eq!(ended["deployment"]["status"], "committed", "{ended}");
    daemon.json(&["deployment", "logs", &id]).to_string()
}

/// A change of PROJECT that must fail; what it printed and its errors.
pub fn failed_deployment(daemon: &Daemon, project: &str, args: &[&str]) -> String {
    let out = in_project(daemon, project, args);
    assert!(
        !out.status.success(),
        "{args:?} succeeded:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
