//! A hostile preview through the real daemon, as root: `staging` runs with a secret; a preview whose build
//! command and app are hostile programs (`tests/hostile/`) tries to read every other process's environment, to
//! signal `staging`'s processes, to read the daemon's store, master key, CA key and client config, to write into
//! `staging`'s directories, its checkout and its project's build cache, to connect to `staging`'s ports, to fork
//! and to allocate without bound. Every attempt is recorded by the hostile program and asserted here; the
//! secret's value is found nowhere the preview could read, and `staging` answers through the gateway throughout.
//! Then `staging` makes the same attempts against the preview, and the preview's deletion leaves none of its
//! users, network or cgroups behind.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Daemon, ReleaseAccounts, git, ok, request};

const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
const HOSTILE: [(&str, &str); 5] = [
    ("preview.yaml", include_str!("hostile/preview.yaml")),
    ("attacks.py", include_str!("hostile/attacks.py")),
    ("prober.py", include_str!("hostile/prober.py")),
    ("build.py", include_str!("hostile/build.py")),
    ("hog.py", include_str!("hostile/hog.py")),
];

/// A directory outside /tmp (which sandboxes cover with their own), so that what the hostile programs are refused
/// is refused by permissions, not because the path is out of sight; removed when dropped.
struct Workdir(PathBuf);

impl Workdir {
    fn new() -> Workdir {
        let path = Path::new(WORKSPACE)
            .join("target/hostile-tests")
            .join(format!("{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("workdir");
        Workdir(path)
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the other side knows of an environment: its apps' processes and ports, its addresses, its files.
struct Target {
    pids: Vec<u32>,
    /// The prober's service port.
    prober_port: u16,
    /// Service ports (the same numbers inside its namespace) and the ports its versions run on.
    ports: Vec<u16>,
    address: String,
    host_side: String,
    tree: PathBuf,
    home: PathBuf,
    tmp: PathBuf,
    log: PathBuf,
    cache: PathBuf,
}

impl Target {
    fn read(daemon: &Daemon, name: &str, tree: PathBuf, cache: PathBuf) -> Target {
        let shown = daemon.json(&["env", "show", name]);
        let services = shown["services"].as_array().cloned().unwrap_or_default();
        // The prober's process is the target (the preview's hog comes and goes with its restarts).
        let pids: Vec<u32> = services
            .iter()
            .filter(|s| s["service"] == "prober")
            .filter_map(|s| s["pid"].as_u64())
            .map(|p| p as u32)
            .collect();
        assert_eq!(pids.len(), 1, "the prober of {name} runs: {shown}");
        let mut ports: Vec<u16> = services
            .iter()
            .filter_map(|s| s["address"].as_str()?.rsplit_once(':')?.1.parse().ok())
            .collect();
        let variables = daemon.json(&["vars", "show", name, "--service", "prober"]);
        let mut prober_port = 0;
        for variable in variables["services"][0]["variables"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if matches!(variable["name"].as_str(), Some("PROBER_PORT" | "HOG_PORT")) {
                let port = variable["value"]
                    .as_str()
                    .and_then(|p| p.parse().ok())
                    .expect("a port");
                if variable["name"] == "PROBER_PORT" {
                    prober_port = port;
                }
                ports.push(port);
            }
        }
        let network = shown["isolation"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == "network" && p["in_effect"] == true)
            .and_then(|p| p["detail"].as_str())
            .unwrap_or_else(|| panic!("{name} has a network namespace: {shown}"))
            .to_owned();
        // "network namespace preview-50000 at 10.213.0.2 (host side 10.213.0.1); …"
        let word_after = |marker: &str| {
            network
                .split(marker)
                .nth(1)
                .and_then(|rest| rest.split([' ', ')', ';']).next())
                .unwrap_or_else(|| panic!("`{marker}` in `{network}`"))
                .to_owned()
        };
        let environment = daemon.data.join("local/environments/fortress").join(name);
        Target {
            pids,
            prober_port,
            ports,
            address: word_after(" at "),
            host_side: word_after("host side "),
            tree,
            home: environment.join("home/prober"),
            tmp: environment.join("tmp"),
            log: environment.join("logs/prober.log"),
            cache,
        }
    }

    /// Everything a hostile program of another environment tries against this one, the daemon and the host (whose
    /// `host_port` listens on every address of the host).
    fn attacks(&self, daemon: &Daemon, secret: Option<&str>, host_port: u16) -> Value {
        let data = &daemon.data;
        let api_port: u16 = daemon
            .address
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .expect("api port");
        let mut connect: Vec<Value> = self.ports.iter().map(|p| json!(["127.0.0.1", p])).collect();
        connect.extend(self.ports.iter().map(|p| json!([self.address, p])));
        connect.push(json!([self.host_side, api_port]));
        connect.push(json!([self.host_side, host_port]));
        connect.push(json!(["127.0.0.1", api_port]));
        let mut pids: Vec<u32> = self.pids.clone();
        pids.push(daemon.pid());
        let mut read: Vec<PathBuf> = [
            "preview.db",
            "preview.db-wal",
            "master.key",
            "client.json",
            "local/ca/ca.key",
        ]
        .iter()
        .map(|f| data.join(f))
        .collect();
        read.extend([self.log.clone(), self.tree.join("prober.py")]);
        json!({
            "pids": pids,
            "read": read,
            "list": [data, data.join("local/environments"), self.home],
            "write": [
                self.home.join("planted"),
                self.tmp.join("planted"),
                self.tree.join("planted"),
                self.cache.join("planted"),
                data.join("planted"),
                "/usr/local/bin/planted",
                "/etc/planted",
            ],
            "connect": connect,
            "secret_hex": secret.map(|s| s.bytes().map(|b| format!("{b:02x}")).collect::<String>()),
            "search": ["/proc", "/"],
            "pgid": process_group(daemon.pid()),
            "bombs": true,
        })
    }
}

/// The process group of `pid`: the fifth field of its `stat`, after the command name in parentheses.
fn process_group(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(2)?.parse().ok())
        .expect("process group")
}

/// A number from a line of `/proc/<pid>/status`, in kB.
fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .expect(field)
}

/// How many descriptors the process `pid` holds.
fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd")
        .count()
}

/// Every attempt failed (each reason as expected) and every control succeeded.
fn assert_refused(results: &Value, who: &str, app_tasks: u64) {
    let results = results
        .as_array()
        .unwrap_or_else(|| panic!("{who}: no results: {results}"));
    assert!(results.len() > 20, "{who}: only {} attempts", results.len());
    let mut controls = 0;
    for result in results {
        let attempt = result["attempt"].as_str().unwrap_or_default();
        let (outcome, detail) = (
            result["outcome"].as_str().unwrap_or_default(),
            result["detail"].as_str().unwrap_or_default(),
        );
        eprintln!("{who}: {attempt}: {outcome}: {detail}");
        if attempt.starts_with("control:") {
            controls += 1;
            assert_eq!(outcome, "succeeded", "{who}: {attempt}: {detail}");
            continue;
        }
        assert_eq!(
            outcome, "failed",
            "{who} succeeded in `{attempt}`: {detail}"
        );
        // Files of the daemon and of other environments are not in the sandbox's filesystem at all; the system's
        // directories are, read-only; another network's addresses are dropped (a timeout), a port on its own
        // loopback is simply closed.
        let expected: &[&str] = if attempt.starts_with("read other") {
            &["no other user's environment is readable"]
        } else if attempt.starts_with("use descriptors") {
            &["nothing beyond its standard"]
        } else if attempt.starts_with("open the daemon's terminal") {
            &["FileNotFoundError", "No such device"]
        } else if attempt.starts_with("signal") || attempt.starts_with("join") {
            &["PermissionError"]
        } else if attempt.starts_with("read ") || attempt.starts_with("list ") {
            &["FileNotFoundError"]
        } else if attempt.starts_with("write ") {
            &["FileNotFoundError", "Read-only file system"]
        } else if attempt.starts_with("connect to 127.0.0.1:") {
            &["ConnectionRefusedError"]
        } else if attempt.starts_with("connect") {
            &["TimeoutError", "timed out"]
        } else if attempt.starts_with("find") {
            &["LookupError"]
        } else if attempt.starts_with("fork") {
            &["stopped at"]
        } else if attempt.starts_with("allocate") {
            &["killed by signal 9"]
        } else {
            panic!("{who}: an attempt this test does not know: {attempt}")
        };
        assert!(
            expected.iter().any(|e| detail.contains(e)),
            "{who}: `{attempt}` failed for another reason: {detail}"
        );
        if attempt.starts_with("fork") {
            let count: u64 = detail
                .split_whitespace()
                .nth(3)
                .and_then(|n| n.parse().ok())
                .unwrap_or(u64::MAX);
            assert!(
                count < app_tasks,
                "{who}: forked {count} processes with a limit of {app_tasks}"
            );
        }
    }
    assert!(controls >= 2, "{who}: the controls did not run");
}

/// Requests through the gateway until told to stop; counts answers that are not 200.
struct Load {
    stop: Arc<AtomicBool>,
    failures: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

impl Load {
    fn start(gateway: String, host: String) -> Load {
        let (stop, failures, requests) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (s, f, r) = (
            Arc::clone(&stop),
            Arc::clone(&failures),
            Arc::clone(&requests),
        );
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                r.fetch_add(1, Ordering::SeqCst);
                if request(&gateway, "GET", &host, "/healthz", "").0 != 200 {
                    f.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Load {
            stop,
            failures,
            requests,
            thread,
        }
    }

    fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("load");
        (
            self.requests.load(Ordering::SeqCst),
            self.failures.load(Ordering::SeqCst),
        )
    }
}

#[test]
fn a_hostile_preview_reaches_nothing_of_staging_or_the_daemon_and_neither_does_staging() {
    assert!(
        preview_testing::running_as_root(),
        "this test runs the daemon as root, the only way it isolates environments (as the test suite does on its machine)"
    );
    let dir = Workdir::new();
    let data = dir.0.join("data");
    let _accounts = ReleaseAccounts(data.clone());
    let repo = support::repository(&dir.0, &HOSTILE);
    // The registered repository holds a credential, as one cloned from a forge with a token does.
    let credential = format!(
        "AUTHORIZATION: basic repository-credential-{}",
        std::process::id()
    );
    git(&repo, &["config", "http.extraheader", &credential]);
    let first = git(&repo, &["rev-parse", "HEAD"]);
    let cache = dir.0.join("cache");
    // The daemon holds a descriptor on a file only root may read, as one started by a careless parent would.
    let held = dir.0.join("held-by-the-daemon");
    std::fs::write(&held, "held-secret").expect("held file");
    let daemon = support::local_daemon_holding(
        &data,
        "24000-24999",
        &[
            "--step-timeout",
            "300",
            "--build-cache",
            cache.to_str().expect("utf-8"),
        ],
        None,
        Some(&held),
    );
    // A service of the host's on every address, which environments must not reach.
    let host_service = std::net::TcpListener::bind("0.0.0.0:0").expect("host service");
    let host_port = host_service.local_addr().expect("address").port();
    let log = support::read_log(&data);
    for protection in ["users on", "files on", "network on", "limits on"] {
        assert!(log.contains(&format!("isolation: {protection}")), "{log}");
    }
    ok(daemon.cli(&[
        "project",
        "register",
        "-f",
        repo.join("preview.yaml").to_str().expect("path"),
    ]));
    let secret = format!(
        "vault-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    );
    ok(daemon.cli_with_input(
        &["secret", "set", "VAULT_TOKEN", "--scope", "service:prober"],
        &format!("{secret}\n"),
    ));
    ok(daemon.cli(&["env", "create", "staging"]));
    let staging = Target::read(
        &daemon,
        "staging",
        data.join(format!("local/builds/fortress/project/{first}/tree")),
        cache.join("fortress/project"),
    );
    let gateway = support::gateway_http(&data);
    let (status, answer) = request(
        &gateway,
        "GET",
        "prober-staging.fortress.localhost",
        "/healthz",
        "",
    );
    assert_eq!(status, 200, "{answer}");
    let staging_uid = answer["uid"].as_u64().expect("uid");
    // The preview's commit carries what its build attacks; its own checkout and cache are the build's to write.
    let mut build_targets = staging.attacks(&daemon, Some(&secret), host_port);
    build_targets["controls"] = json!({
        "read": ["attacks.py"],
        "write": ["build-control", "/run/preview/cache/build-control"],
        // Links where a careless daemon would write as root: the cache is the build's, the lock is not in it.
        "plant": [
            ["/run/preview/cache/.build.lock", dir.0.join("planted-by-root")],
            ["/run/preview/cache/cache.lock", dir.0.join("planted-by-root")],
        ],
        // A git filter in its /tmp, which a later commit's .gitattributes names: the next checkout, as this
        // builder with the repository in reach, must not run it.
        "files": [[
            "/tmp/.gitconfig",
            "[filter \"steal\"]\n\tsmudge = sh -c 'cat; cat /run/preview/repository.git/config > /run/preview/checkout/stolen'\n",
        ]],
    });
    std::fs::write(repo.join("targets.json"), build_targets.to_string()).expect("targets");
    let hostile = support::commit_all(&repo, "the preview's build attacks staging");

    let load = Load::start(
        gateway.clone(),
        "prober-staging.fortress.localhost".to_owned(),
    );
    ok(daemon.cli(&["env", "clone", "staging", "pr-1", "--commit", &hostile]));
    let preview = Target::read(
        &daemon,
        "pr-1",
        data.join(format!(
            "local/builds/fortress/previews/pr-1/{hostile}/tree"
        )),
        data.join("local/builds/fortress/previews/pr-1/cache"),
    );
    support::assert_private_files(&data, 0);
    let preview_host = "prober-pr-1.fortress.localhost";
    let (status, built) = request(&gateway, "GET", preview_host, "/build-results", "");
    assert_eq!(status, 200, "{built}");
    assert_refused(&built, "the preview's build", 4096);
    // What the preview's build wrote into its cache is in its own copy, not in the cache staging builds from.
    assert!(preview.cache.join("build-control").exists());
    assert!(!staging.cache.join("build-control").exists());
    // The host cannot open a connection into an environment either: only the daemon reaches it, from inside.
    for port in &staging.ports {
        let address: std::net::SocketAddr = format!("{}:{port}", staging.address)
            .parse()
            .expect("address");
        assert!(
            std::net::TcpStream::connect_timeout(&address, Duration::from_millis(500)).is_err(),
            "the host reached {address}"
        );
    }
    let (_, answer) = request(&gateway, "GET", preview_host, "/healthz", "");
    let preview_uid = answer["uid"].as_u64().expect("uid");
    assert_ne!(
        preview_uid, staging_uid,
        "the preview runs as a user of its own"
    );
    let mut app_targets = staging.attacks(&daemon, Some(&secret), host_port);
    // Controls: its own files and service port, and an endless line on its output.
    app_targets["controls"] = json!({
        "read": ["attacks.py"],
        "write": ["/run/preview/home/control", "/tmp/control"],
        "connect": [["127.0.0.1", preview.prober_port]],
        "flood_mib": 128,
    });
    let peak = status_kb(daemon.pid(), "VmHWM:");
    let (status, attacked) = request(
        &gateway,
        "POST",
        preview_host,
        "/",
        &app_targets.to_string(),
    );
    assert_eq!(status, 200, "{attacked}");
    assert_refused(&attacked, "the preview's app", 64);
    // The daemon's memory did not take the endless line.
    let grown = status_kb(daemon.pid(), "VmHWM:").saturating_sub(peak);
    assert!(grown < 64 * 1024, "the daemon grew by {grown} kB");
    // 3000 connections to its own service port, held while the test looks at the daemon: they take no more than
    // the environment's share of the daemon's descriptors, and staging goes on answering.
    let open = descriptors(daemon.pid());
    let hold = json!({ "controls": { "hold": ["127.0.0.1", preview.prober_port, 3000, 8] } });
    let (status, holding) = request(&gateway, "POST", preview_host, "/", &hold.to_string());
    assert_eq!(status, 200, "{holding}");
    std::thread::sleep(Duration::from_secs(4));
    let held_open = descriptors(daemon.pid()).saturating_sub(open);
    eprintln!("the preview's 3000 connections hold {held_open} more descriptors of the daemon's");
    assert!(
        held_open <= 2 * 1024 + 100,
        "the daemon holds {held_open} more descriptors for the preview's connections"
    );
    let (requests, failures) = load.finish();
    assert_eq!(
        failures, 0,
        "{failures} of {requests} requests to staging failed while the preview attacked"
    );
    assert!(requests > 20, "only {requests} requests reached staging");
    // Nothing of staging moved: the same processes, no restart; the secret appeared nowhere the preview wrote.
    let after = Target::read(
        &daemon,
        "staging",
        staging.tree.clone(),
        staging.cache.clone(),
    );
    assert_eq!(
        after.pids, staging.pids,
        "staging's apps were not restarted"
    );
    let preview_logs = ok(daemon.cli(&["logs", "pr-1", "prober"]));
    for text in [built.to_string(), attacked.to_string(), preview_logs] {
        assert!(!text.contains(&secret), "the secret reached the preview");
    }
    for planted in [
        staging.home.join("planted"),
        staging.tree.join("planted"),
        staging.cache.join("planted"),
        data.join("planted"),
    ] {
        assert!(!planted.exists(), "{} was written", planted.display());
    }

    // The preview's hog goes over its memory limit: killed by the kernel, said so, restarted with backoff.
    support::wait_for(
        "the hog to be killed and restarted",
        Duration::from_secs(60),
        || {
            daemon.json(&["env", "show", "pr-1"])["services"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| {
                    s["service"] == "hog"
                        && s["restarts"].as_u64() >= Some(1)
                        && s["last_exit"]
                            .as_str()
                            .is_some_and(|e| e.contains("memory limit"))
                })
        },
    );
    let shown = ok(daemon.cli(&["env", "show", "pr-1"]));
    assert!(
        shown.contains(
            "killed by the kernel for going over its memory limit (64Mi; environment total 1Gi)"
        ),
        "{shown}"
    );
    assert!(
        shown.contains("isolation") && shown.contains("preview's own builder"),
        "{shown}"
    );
    let hog_log = ok(daemon.cli(&["logs", "pr-1", "hog"]));
    assert!(
        hog_log.contains("killed by the kernel for going over its memory limit"),
        "{hog_log}"
    );
    assert!(hog_log.contains("restarted after"), "{hog_log}");

    // The same attempts from staging against the preview: its app, then its build at a commit that names them.
    let mut app_targets = preview.attacks(&daemon, None, host_port);
    app_targets["controls"] =
        json!({ "read": ["attacks.py"], "write": ["/run/preview/home/control"] });
    let (status, attacked) = request(
        &gateway,
        "POST",
        "prober-staging.fortress.localhost",
        "/",
        &app_targets.to_string(),
    );
    assert_eq!(status, 200, "{attacked}");
    assert_refused(&attacked, "staging's app", 64);
    let mut build_targets = preview.attacks(&daemon, None, host_port);
    build_targets["controls"] = json!({ "read": ["attacks.py"], "write": ["build-control"] });
    std::fs::write(repo.join("targets.json"), build_targets.to_string()).expect("targets");
    std::fs::write(repo.join(".gitattributes"), "* filter=steal\n").expect("attributes");
    let counter = support::commit_all(
        &repo,
        "staging's build attacks the preview; files name the preview's filter",
    );
    ok(daemon.cli(&["deploy", "staging", "--commit", &counter]));
    let (status, built) = request(
        &gateway,
        "GET",
        "prober-staging.fortress.localhost",
        "/build-results",
        "",
    );
    assert_eq!(status, 200, "{built}");
    assert_refused(&built, "staging's build", 4096);
    let (status, _) = request(&gateway, "GET", preview_host, "/healthz", "");
    assert_eq!(status, 200, "the preview survived staging's attempts");
    // The preview builds again (staging's commit), past the links its first build planted: the daemon followed
    // none of them, and the build went through.
    ok(daemon.cli(&["deploy", "pr-1", "--commit", &counter]));
    assert!(
        !dir.0.join("planted-by-root").exists(),
        "the daemon followed a link the preview planted"
    );
    // Nor did its checkout run the filter its earlier build planted: the repository's credential stayed put.
    let checkout = data.join(format!(
        "local/builds/fortress/previews/pr-1/{counter}/tree"
    ));
    assert!(
        checkout.join("prober.py").exists(),
        "the preview was checked out"
    );
    assert!(
        !checkout.join("stolen").exists(),
        "the checkout ran the preview's filter"
    );
    for text in [built.to_string(), attacked.to_string()] {
        assert!(
            !text.contains(&credential),
            "the repository's credential reached an environment"
        );
    }
    drop(host_service);

    // Deleting the preview takes its users, its network and its cgroups off the machine.
    let accounts: std::collections::BTreeMap<String, u32> =
        serde_json::from_slice(&std::fs::read(data.join("local/accounts.json")).expect("accounts"))
            .expect("json");
    let (preview_user, preview_builder) = (
        accounts["env:fortress/pr-1"],
        accounts["build:fortress/pr-1"],
    );
    assert_eq!(u64::from(preview_user), preview_uid);
    ok(daemon.cli(&["env", "delete", "pr-1"]));
    let passwd = std::fs::read_to_string("/etc/passwd").expect("passwd");
    for id in [preview_user, preview_builder] {
        assert!(
            !passwd.contains(&format!("preview-{id}:")),
            "user {id} is left"
        );
    }
    assert!(!Path::new(&format!("/run/netns/preview-{preview_user}")).exists());
    assert!(!Path::new(&format!("/sys/class/net/pv{preview_user}")).exists());
    let cgroups_left = Command::new("sh")
        .args(["-c", "ls -d /sys/fs/cgroup/*/preview-*/fortress.pr-1 /sys/fs/cgroup/preview-*/fortress.pr-1 2>/dev/null | wc -l"])
        .output()
        .expect("ls");
    assert_eq!(
        String::from_utf8_lossy(&cgroups_left.stdout).trim(),
        "0",
        "the preview's cgroups are left"
    );
    assert!(!data.join("local/builds/fortress/previews/pr-1").exists());
    daemon.stop();
}
