//! Limits that the kernel enforces on a sandboxed process tree, and finding and killing every process of it.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{SandboxRoot, TestAccount, hand_to, require_root, run_in, text, unique};
use preview_isolation::{Bind, Cgroup, CgroupLimits, Cgroups, Sandbox, SystemEntry};
use preview_testing::TempDir;

/// A daemon-like cgroup tree removed (with whatever still runs in it) when dropped.
struct Tree {
    cgroups: Cgroups,
    base: String,
}

impl Tree {
    fn new() -> Tree {
        let base = unique("preview-test-");
        Tree {
            cgroups: Cgroups::detect(&base).expect("cgroups are mounted"),
            base,
        }
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let root = self.cgroups.root();
        for pid in root.pids() {
            preview_isolation::signals::signal_process(pid, libc_sigkill());
        }
        std::thread::sleep(Duration::from_millis(100));
        let _ = root.remove();
    }
}

fn libc_sigkill() -> i32 {
    preview_isolation::signals::SIGKILL
}

fn sandbox(account: &TestAccount, root: &SandboxRoot, dir: &TempDir, cgroup: &Cgroup) -> Sandbox {
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    hand_to(&home, account.uid(), 0o700);
    Sandbox {
        uid: account.uid(),
        gid: account.uid(),
        netns: None,
        cgroup: Some(cgroup.clone()),
        root: root.0.clone(),
        binds: vec![Bind {
            source: home,
            target: PathBuf::from("/run/preview/home"),
            writable: true,
        }],
        system: SystemEntry::of_host(),
        workdir: PathBuf::from("/run/preview/home"),
        umask: 0o022,
    }
}

#[tokio::test]
async fn memory_beyond_the_limit_of_the_tree_or_its_environment_is_killed_and_counted() {
    require_root();
    let tree = Tree::new();
    let environment = tree.cgroups.group(&["shop.pr-1"]);
    environment
        .create(&CgroupLimits {
            memory_bytes: Some(256 << 20),
            ..CgroupLimits::default()
        })
        .expect("environment cgroup");
    let app = tree.cgroups.group(&["shop.pr-1", "app-hog"]);
    app.create(&CgroupLimits {
        memory_bytes: Some(32 << 20),
        ..CgroupLimits::default()
    })
    .expect("app cgroup");
    let (account, root, dir) = (
        TestAccount::new("memory"),
        SandboxRoot::new(),
        TempDir::new("cgroup-memory"),
    );
    let output = run_in(
        &sandbox(&account, &root, &dir, &app),
        "exec python3 -c 'chunks = []\nwhile True: chunks.append(bytearray(1 << 20))'",
    )
    .await;
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(output.status.signal(), Some(9), "{}", text(&output));
    assert!(app.oom_kills() >= 1, "the app's cgroup counted no kill");
    // Another app of the same environment without a limit of its own is held by the environment's total.
    let other = tree.cgroups.group(&["shop.pr-1", "app-other"]);
    other.create(&CgroupLimits::default()).expect("cgroup");
    let output = run_in(
        &sandbox(&account, &root, &dir, &other),
        "exec python3 -c 'chunks = []\nwhile True: chunks.append(bytearray(1 << 20))'",
    )
    .await;
    assert_eq!(output.status.signal(), Some(9), "{}", text(&output));
    // The kill is counted where the killed process was.
    assert!(
        other.oom_kills() >= 1,
        "the other app's cgroup counted no kill"
    );
    app.remove().expect("removed");
    assert!(!app.exists());
}

#[tokio::test]
async fn a_fork_bomb_stops_at_the_task_limit_and_every_process_dies_with_the_tree() {
    require_root();
    let tree = Tree::new();
    let app = tree.cgroups.group(&["shop.pr-1", "app-bomb"]);
    app.create(&CgroupLimits {
        tasks: Some(24),
        ..CgroupLimits::default()
    })
    .expect("cgroup");
    let (account, root, dir) = (
        TestAccount::new("tasks"),
        SandboxRoot::new(),
        TempDir::new("cgroup-tasks"),
    );
    // Forks until it cannot, then makes room for one more that detaches into a session of its own, and waits.
    let script = r#"
import os, signal, time
children = []
while len(children) < 200:
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(300)
        os._exit(0)
    children.append(pid)
os.kill(children.pop(), signal.SIGKILL)
os.waitpid(-1, 0)
if os.fork() == 0:
    os.setsid()
    time.sleep(300)
    os._exit(0)
with open("started", "w") as f:
    f.write(str(len(children)))
time.sleep(300)
"#;
    let mut command = tokio::process::Command::new("python3");
    command
        .args(["-c", script])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .kill_on_drop(true);
    sandbox(&account, &root, &dir, &app)
        .apply(&mut command)
        .expect("sandbox");
    let mut child = command.spawn().expect("starts");
    let started = dir.path().join("home/started");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !started.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the bomb never settled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pids = app.pids();
    assert!(
        pids.len() <= 24,
        "{} tasks in a cgroup limited to 24",
        pids.len()
    );
    assert!(
        pids.len() >= 10,
        "only {} processes: the bomb did not run",
        pids.len()
    );
    app.kill_all(Duration::from_secs(10)).await.expect("killed");
    assert!(app.pids().is_empty());
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z ")),
            "process {pid} outlived its cgroup"
        );
    }
    let _ = child.wait().await;
}

#[tokio::test]
async fn a_busy_process_is_throttled_to_its_cpu_quota() {
    require_root();
    let tree = Tree::new();
    let app = tree.cgroups.group(&["shop.pr-1", "app-busy"]);
    app.create(&CgroupLimits {
        cpu_millicores: Some(100),
        ..CgroupLimits::default()
    })
    .expect("cgroup");
    let (account, root, dir) = (
        TestAccount::new("cpu"),
        SandboxRoot::new(),
        TempDir::new("cgroup-cpu"),
    );
    let output = run_in(
        &sandbox(&account, &root, &dir, &app),
        "timeout 1 sh -c 'while :; do :; done'; echo done",
    )
    .await;
    assert!(text(&output).contains("done"));
    assert!(
        app.cpu_throttled() > 0,
        "the kernel never throttled the busy loop"
    );
}

#[tokio::test]
async fn limits_can_be_lifted_again() {
    require_root();
    let tree = Tree::new();
    let app = tree.cgroups.group(&["shop.staging", "app-web"]);
    app.create(&CgroupLimits {
        cpu_millicores: Some(500),
        memory_bytes: Some(48 << 20),
        tasks: Some(100),
    })
    .expect("created");
    let (account, root, dir) = (
        TestAccount::new("lift"),
        SandboxRoot::new(),
        TempDir::new("cgroup-lift"),
    );
    let sandbox = sandbox(&account, &root, &dir, &app);
    let allocate = "exec python3 -c 'block = bytearray(96 << 20); print(len(block))'";
    let limited = run_in(&sandbox, allocate).await;
    assert!(
        !limited.status.success(),
        "96 MiB fit in 48: {}",
        text(&limited)
    );
    // Where swap is accounted (cgroup v1 with memsw), memory and swap together have the same limit: swapping does
    // not get around it.
    let swap = std::path::Path::new("/sys/fs/cgroup/memory")
        .join(&tree.base)
        .join("shop.staging/app-web/memory.memsw.limit_in_bytes");
    if swap.exists() {
        let limit = std::fs::read_to_string(&swap).expect("memsw");
        assert_eq!(limit.trim(), (48u64 << 20).to_string());
    }
    app.set_limits(&CgroupLimits::default()).expect("lifted");
    let lifted = run_in(&sandbox, allocate).await;
    assert!(lifted.status.success(), "{}", text(&lifted));
}
