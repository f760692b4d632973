//! As root, an environment's space — its users, network namespace, cgroups and directories — exists only while the
//! environment does: a create that fails is rolled back to nothing, a deployment killed with the daemon is rolled
//! back to nothing at the next start, and a deleted environment leaves nothing.

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

/// What of the environment `plain/<name>` is on the machine: its accounts, namespace, interface, cgroups and
/// directory; empty when nothing is.
fn traces(data: &Path, name: &str) -> Vec<String> {
    let mut found = Vec::new();
    let accounts: std::collections::BTreeMap<String, u32> =
        std::fs::read(data.join("local/accounts.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
    let mut ids = Vec::new();
    for key in [format!("env:plain/{name}"), format!("build:plain/{name}")] {
        if let Some(id) = accounts.get(&key) {
            found.push(format!("{key} has user {id}"));
            ids.push(*id);
        }
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    found.extend(
        passwd
            .lines()
            .filter(|l| l.contains(&format!(" plain/{name} ")))
            .map(|l| format!("passwd: {l}")),
    );
    // A namespace is this environment's while its user is; one whose user is gone was left behind by someone
    // (users go only after their namespaces).
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
        if ids.contains(&id) || user.is_none_or(|l| l.contains(&format!(" plain/{name} "))) {
            found.push(format!("namespace {namespace}"));
        }
    }
    let cgroups = std::process::Command::new("sh")
        .args(["-c", &format!("ls -d /sys/fs/cgroup/*/preview-*/plain.{name} /sys/fs/cgroup/preview-*/plain.{name} 2>/dev/null")])
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
    git(&repo, &["add", "broken"]);
    git(&repo, &["commit", "--quiet", "-m", "a build that fails"]);
    let broken = git(&repo, &["rev-parse", "HEAD"]);
    git(&repo, &["rm", "--quiet", "broken"]);
    std::fs::write(repo.join("slow"), "").expect("slow");
    git(&repo, &["add", "slow"]);
    git(&repo, &["commit", "--quiet", "-m", "a slow build"]);
    let slow = git(&repo, &["rev-parse", "HEAD"]);

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
