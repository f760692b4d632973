//! What the daemon as root takes from the machine and leaves on it. An environment's space — its users, network
//! namespace, cgroups and directories — exists only while the environment does: a create that fails is rolled back
//! to nothing, a deployment killed with the daemon is rolled back to nothing at the next start, and a deleted
//! environment leaves nothing. A daemon whose data directory is spelled otherwise is the same daemon; two daemons
//! whose environments would share addresses are told so; a build that floods its output neither fills the disk nor
//! the daemon's memory. Reading — plans, shown variables, refused requests — reserves no ports and writes no file, and
//! a second daemon on the same data directory is refused.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use preview_testing::TempDir;
use support::{Daemon, ReleaseAccounts, git, ok};

const PLAIN: [(&str, &str); 2] = [
    ("preview.yaml", include_str!("plain/preview.yaml")),
    ("web.py", include_str!("plain/web.py")),
];

fn start(data: &Path) -> Daemon {
    support::local_daemon(data, "26000-26999", &[], None)
}

/// What of the environment `plain/<name>` is on the machine — its accounts, cgroups and directory — and what of
/// this daemon is on it without an environment it knows: accounts and namespaces of users it no longer lists.
/// Empty when nothing is.
fn traces(data: &Path, name: &str) -> Vec<String> {
    let mut found = Vec::new();
    let accounts: std::collections::BTreeMap<String, u32> =
        std::fs::read(data.join("local/accounts.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
    for key in [format!("env:plain/{name}"), format!("build:plain/{name}")] {
        if let Some(id) = accounts.get(&key) {
            found.push(format!("{key} has user {id}"));
        }
    }
    // This daemon's accounts say so in their comment (other tests' daemons make environments of the same names).
    let marker = std::fs::read_to_string(data.join("local/marker")).expect("the daemon's marker");
    let signature = format!("preview {}", marker.trim());
    let known: Vec<u32> = accounts.values().copied().collect();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        let Some(id) = fields.get(2).and_then(|id| id.parse::<u32>().ok()) else {
            continue;
        };
        if fields.get(4) == Some(&signature.as_str()) && !known.contains(&id) {
            found.push(format!("an account nothing lists: {line}"));
        }
    }
    // A namespace whose user is gone, or is this daemon's but unlisted, was left behind (users go only after their
    // namespaces).
    for entry in std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
    {
        let namespace = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = namespace
            .strip_prefix("preview-")
            .and_then(|id| id.parse::<u32>().ok())
        else {
            continue;
        };
        let user = passwd
            .lines()
            .find(|l| l.starts_with(&format!("preview-{id}:")));
        let ours_unlisted = user.is_some_and(|l| {
            l.ends_with(&format!(":{signature}:/nonexistent:/usr/sbin/nologin"))
                && !known.contains(&id)
        });
        if user.is_none() || ours_unlisted {
            found.push(format!("namespace {namespace}"));
        }
    }
    let cgroups = std::process::Command::new("sh")
        .args([
            "-c",
            &format!(
                "ls -d /sys/fs/cgroup/*/preview-{m}/plain.{name} /sys/fs/cgroup/preview-{m}/plain.{name} 2>/dev/null",
                m = marker.trim()
            ),
        ])
        .output()
        .expect("ls");
    found.extend(
        String::from_utf8_lossy(&cgroups.stdout)
            .lines()
            .map(|l| format!("cgroup {l}")),
    );
    if data.join("local/environments/plain").join(name).exists() {
        found.push("its directory".to_owned());
    }
    found
}

#[test]
fn nothing_of_an_environment_outlives_it_on_the_machine() {
    assert!(
        preview_testing::running_as_root(),
        "this test looks at what the daemon as root leaves on the machine"
    );
    let dir = TempDir::new("leftovers");
    let data = dir.path().join("data");
    let _accounts = ReleaseAccounts(data.clone());
    let repo = support::repository(dir.path(), &PLAIN);
    let good = git(&repo, &["rev-parse", "HEAD"]);
    std::fs::write(repo.join("broken"), "").expect("broken");
    let broken = support::commit_all(&repo, "a build that fails");
    std::fs::remove_file(repo.join("broken")).expect("broken");
    std::fs::write(repo.join("slow"), "").expect("slow");
    let slow = support::commit_all(&repo, "a slow build");

    let daemon = start(&data);
    ok(daemon.cli(&[
        "project",
        "register",
        "-f",
        repo.join("preview.yaml").to_str().expect("path"),
    ]));
    ok(daemon.cli(&["env", "create", "staging", "--commit", &good]));
    assert!(!traces(&data, "staging").is_empty(), "staging has a space");

    // A clone whose build fails is rolled back to nothing.
    let failed = daemon.cli(&["env", "clone", "staging", "pr-1", "--commit", &broken]);
    assert!(!failed.status.success());
    assert_eq!(traces(&data, "pr-1"), Vec::<String>::new());

    // A clone killed with the daemon during its build is rolled back to nothing when the daemon starts again.
    let mut cloning = support::preview()
        .arg("--data-dir")
        .arg(&data)
        .args(["env", "clone", "staging", "pr-2", "--commit", &slow])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("clone");
    let deadline = Instant::now() + Duration::from_secs(30);
    while traces(&data, "pr-2").len() < 3 {
        assert!(Instant::now() < deadline, "the clone did not get its space");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    daemon.kill();
    let _ = cloning.wait();
    assert!(
        !traces(&data, "pr-2").is_empty(),
        "the killed daemon left the clone's space"
    );
    let daemon = start(&data);
    assert_eq!(traces(&data, "pr-2"), Vec::<String>::new());

    // A deleted environment leaves nothing; the last one takes the project's builder with it.
    ok(daemon.cli(&["env", "delete", "staging"]));
    assert_eq!(traces(&data, "staging"), Vec::<String>::new());
    let accounts = std::fs::read_to_string(data.join("local/accounts.json")).expect("accounts");
    assert_eq!(accounts.trim(), "{}", "{accounts}");
    daemon.stop();
}

/// The daemon's peak memory, in kB.
fn peak_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmHWM:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .expect("VmHWM")
}

#[test]
fn a_data_directory_spelled_otherwise_and_a_flooding_build_change_nothing() {
    assert!(
        preview_testing::running_as_root(),
        "this test looks at what the daemon as root does"
    );
    let dir = TempDir::new("machine-spelling");
    let data = dir.path().join("data");
    let _accounts = ReleaseAccounts(data.clone());
    let repo = support::repository(dir.path(), &PLAIN);
    let good = git(&repo, &["rev-parse", "HEAD"]);
    std::fs::write(repo.join("flood"), "").expect("flood");
    let flood = support::commit_all(&repo, "a build that floods its output");
    let daemon = support::local_daemon(&data, "26100-26199", &[], None);
    ok(daemon.cli(&[
        "project",
        "register",
        "-f",
        repo.join("preview.yaml").to_str().expect("path"),
    ]));
    ok(daemon.cli(&["env", "create", "staging", "--commit", &good]));
    daemon.stop();
    // The same directory, spelled otherwise: the same daemon, whose environment comes back.
    let spelled = dir.path().join(".").join("data");
    let daemon = support::local_daemon(&spelled, "26100-26199", &[], None);
    let gateway = support::gateway_http(&spelled);
    let (status, answer) =
        support::request(&gateway, "GET", "web-staging.plain.localhost", "/", "");
    assert_eq!(status, 200, "{answer}\n{}", support::read_log(&data));
    // 300 MB on one line, then a failure: a short error, a log of bounded size, no memory taken.
    let before = peak_kb(daemon.pid());
    let failed = daemon.cli(&["deploy", "staging", "--commit", &flood]);
    assert!(!failed.status.success());
    let said = String::from_utf8_lossy(&failed.stdout).into_owned()
        + &String::from_utf8_lossy(&failed.stderr);
    assert!(
        said.contains("the build of `web`"),
        "{}",
        &said[..said.len().min(2000)]
    );
    assert!(
        said.len() < 64 * 1024,
        "the error is {} bytes long",
        said.len()
    );
    let grown = peak_kb(daemon.pid()).saturating_sub(before);
    assert!(grown < 64 * 1024, "the daemon grew by {grown} kB");
    let logs: u64 = std::fs::read_dir(data.join(format!("local/builds/plain/project/{flood}")))
        .expect("commit directory")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("build-web.log"))
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();
    assert!(
        logs <= 16 * 1024 * 1024,
        "the build's logs take {logs} bytes"
    );
    ok(daemon.cli(&["env", "delete", "staging"]));
    daemon.stop();
}

#[test]
fn environments_of_two_daemons_never_share_addresses() {
    assert!(
        preview_testing::running_as_root(),
        "this test looks at what the daemon as root does"
    );
    let dir = TempDir::new("machine-two-daemons");
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    let (_first_accounts, _second_accounts) = (
        ReleaseAccounts(first.clone()),
        ReleaseAccounts(second.clone()),
    );
    let repo = support::repository(dir.path(), &PLAIN);
    // Other ranges of user ids on the same network: the first environment of each would get the same /30.
    let one = support::local_daemon(
        &first,
        "26200-26299",
        &["--users", "51000-51015", "--network", "10.216.0.0/16"],
        None,
    );
    let two = support::local_daemon(
        &second,
        "26300-26399",
        &["--users", "51100-51115", "--network", "10.216.0.0/16"],
        None,
    );
    for daemon in [&one, &two] {
        ok(daemon.cli(&[
            "project",
            "register",
            "-f",
            repo.join("preview.yaml").to_str().expect("path"),
        ]));
    }
    ok(one.cli(&["env", "create", "staging"]));
    let refused = two.cli(&["env", "create", "staging"]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stdout);
    assert!(
        said.contains("10.216.0.1 is already an address of this machine")
            && said.contains("--network"),
        "{said}"
    );
    // With a network of its own it works, and both answer.
    two.stop();
    let two = support::local_daemon(
        &second,
        "26300-26399",
        &["--users", "51100-51115", "--network", "10.217.0.0/16"],
        None,
    );
    ok(two.cli(&["env", "create", "staging"]));
    ok(one.cli(&["env", "delete", "staging"]));
    ok(two.cli(&["env", "delete", "staging"]));
    one.stop();
    two.stop();
}

/// Every file under `dir` (its path), without the store's shared-memory index, which readers use.
fn files(dir: &Path) -> std::collections::BTreeSet<std::path::PathBuf> {
    fn walk(dir: &Path, found: &mut std::collections::BTreeSet<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&path, found);
            } else if !path.ends_with("preview.db-shm") {
                found.insert(path);
            }
        }
    }
    let mut found = std::collections::BTreeSet::new();
    walk(dir, &mut found);
    found
}

#[test]
fn plans_shown_variables_and_refused_clones_reserve_no_ports_and_write_no_file() {
    assert!(
        preview_testing::running_as_root(),
        "this test looks at what the daemon as root does"
    );
    let dir = TempDir::new("machine-refused");
    let data = dir.path().join("data");
    let _accounts = ReleaseAccounts(data.clone());
    // The plain project with a secret every environment needs.
    let spec = PLAIN[0]
        .1
        .replace("runtime: local\n", "runtime: local\nsecrets: [TOKEN]\n");
    let repo = support::repository(dir.path(), &[("preview.yaml", &spec), PLAIN[1]]);
    // Room for three environments' blocks: a reservation per refused request would run out at the third.
    let daemon = support::local_daemon(&data, "27100-27195", &[], None);
    ok(daemon.cli(&[
        "project",
        "register",
        "-f",
        repo.join("preview.yaml").to_str().expect("path"),
    ]));
    ok(daemon.cli_with_input(&["secret", "set", "TOKEN", "--scope", "project"], "t\n"));
    ok(daemon.cli(&["env", "create", "staging"]));
    ok(daemon.cli(&["secret", "unset", "TOKEN", "--scope", "project"]));
    let ports = || std::fs::read(data.join("local/ports.json")).expect("ports");
    let (ports_before, files_before) = (ports(), files(&data));
    for i in 0..1000 {
        let (status, answer) = support::api(
            &daemon,
            "POST",
            "/v1/projects/plain/environments/staging/clone",
            serde_json::json!({ "name": format!("pr-{i}") }),
        );
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("needs secrets that have no value yet"),
            "{answer}"
        );
    }
    for _ in 0..20 {
        ok(daemon.cli(&["plan", "staging"]));
        ok(daemon.cli(&["vars", "show", "staging"]));
    }
    assert_eq!(
        String::from_utf8_lossy(&ports()),
        String::from_utf8_lossy(&ports_before),
        "no port block was reserved"
    );
    let written: Vec<_> = files(&data)
        .into_iter()
        .filter(|f| !files_before.contains(f))
        .collect();
    assert_eq!(
        written,
        Vec::<std::path::PathBuf>::new(),
        "no file was written"
    );
    // A second daemon on the same data directory refuses to start, naming the reason.
    let refused = support::serve_refused(&data, &[]);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("another daemon is using the data directory"),
        "{said}"
    );
    ok(daemon.cli_with_input(&["secret", "set", "TOKEN", "--scope", "project"], "t\n"));
    ok(daemon.cli(&["env", "clone", "staging", "pr-1"]));
    ok(daemon.cli(&["env", "delete", "pr-1"]));
    ok(daemon.cli(&["env", "delete", "staging"]));
    daemon.stop();
}
