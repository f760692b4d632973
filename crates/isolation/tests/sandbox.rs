//! A process in the sandbox, as a user of its own: its whole filesystem is the system's directories read-only
//! and what it was given — nothing else of the host exists for it — it cannot write what it was given read-only,
//! has a /tmp of its own, sees only its own processes, has no terminal and no way into the daemon's session, cannot
//! gain privileges, inherits none of the daemon's descriptors, and cannot read or signal another user's processes.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use common::{SandboxRoot, TestAccount, hand_to, require_root, run_in, text};
use preview_isolation::{Bind, Sandbox, SystemEntry};
use preview_testing::TempDir;

fn sandbox(account: &TestAccount, root: &SandboxRoot, binds: Vec<Bind>) -> Sandbox {
    Sandbox {
        uid: account.uid(),
        gid: account.uid(),
        netns: None,
        cgroup: None,
        root: root.0.clone(),
        system: SystemEntry::of_host(),
        binds,
        workdir: PathBuf::from("/run/preview/src"),
        umask: 0o022,
    }
}

#[tokio::test]
async fn a_sandboxed_process_sees_only_the_system_and_what_it_was_given() {
    require_root();
    let dir = TempDir::new("sandbox-files");
    let account = TestAccount::new("files");
    let root = SandboxRoot::new();
    // The daemon's private directory, with a secret in it, and inside it what the process is given.
    let private = dir.path().join("data");
    std::fs::create_dir_all(private.join("checkout")).expect("dirs");
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::fs::write(private.join("master.key"), "the-master-key").expect("key");
    std::fs::write(private.join("checkout/app.txt"), "the app").expect("checkout file");
    // A world-readable file elsewhere on the host, as a repository's configuration with a token would be.
    std::fs::write(
        dir.path().join("readable.txt"),
        "world-readable-on-the-host",
    )
    .expect("readable");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let home = private.join("home");
    let tmp = private.join("tmp");
    for own in [&home, &tmp] {
        std::fs::create_dir_all(own).expect("dir");
        hand_to(own, account.uid(), 0o700);
    }
    let sandbox = sandbox(
        &account,
        &root,
        vec![
            Bind {
                source: tmp.clone(),
                target: PathBuf::from("/tmp"),
                writable: true,
            },
            Bind {
                source: private.join("checkout"),
                target: PathBuf::from("/run/preview/src"),
                writable: false,
            },
            Bind {
                source: home.clone(),
                target: PathBuf::from("/run/preview/home"),
                writable: true,
            },
        ],
    );
    let script = format!(
        r#"
echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)"
echo "cwd=$(pwd)"
cat app.txt; echo
cat {private}/master.key 2>&1 && echo "READ master.key"
cat {readable} 2>&1 && echo "READ the host"
touch app-written 2>&1 || echo "checkout is read-only"
touch /run/preview/home/mine && echo "home is writable"
touch /planted 2>&1 || echo "root is not writable"
touch /etc/planted 2>&1 || echo "etc is not writable"
echo "top: $(ls / | tr '\n' ' ')"
echo "run: $(ls /run/preview | tr '\n' ' ')"
echo sandbox-tmp > /tmp/in-sandbox && echo "tmp is writable"
echo "processes: $(ls /proc | grep -c '^[0-9]')"
ls /dev/null /dev/urandom >/dev/null && head -c 4 /dev/zero | wc -c
cat /dev/tty 2>&1 || echo "no terminal"
echo "session leader: $(ps -o sid= -p $$ | tr -d ' ') $$"
grep NoNewPrivs /proc/self/status
ls /proc/self/fd
"#,
        private = private.display(),
        readable = dir.path().join("readable.txt").display(),
    );
    let output = run_in(&sandbox, &script).await;
    let said = text(&output);
    let uid = account.uid();
    for expected in [
        format!("uid={uid} gid={uid} groups={uid}"),
        "cwd=/run/preview/src".to_owned(),
        "the app".to_owned(),
        "No such file or directory".to_owned(),
        "checkout is read-only".to_owned(),
        "Read-only file system".to_owned(),
        "home is writable".to_owned(),
        "root is not writable".to_owned(),
        "etc is not writable".to_owned(),
        "run: home src ".to_owned(),
        "tmp is writable".to_owned(),
        "no terminal".to_owned(),
        "NoNewPrivs:\t1".to_owned(),
    ] {
        assert!(said.contains(&expected), "missing `{expected}` in:\n{said}");
    }
    assert!(!said.contains("READ"), "{said}");
    assert!(
        !said.contains("the-master-key") && !said.contains("world-readable-on-the-host"),
        "{said}"
    );
    // Its filesystem is the system's directories and what it was given: no /home, /root, /work, /var/lib, …
    let top: Vec<&str> = said
        .lines()
        .find_map(|l| l.strip_prefix("top: "))
        .expect("top")
        .split_whitespace()
        .collect();
    let expected: Vec<&str> = [
        "bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "run", "sbin", "sys",
        "tmp", "usr",
    ]
    .into_iter()
    .filter(|d| {
        *d == "dev"
            || *d == "proc"
            || *d == "run"
            || *d == "tmp"
            || std::path::Path::new(&format!("/{d}")).exists()
    })
    .collect();
    assert_eq!(top, expected, "{said}");
    // Only its own processes: the shell, and what it ran for the count.
    let processes: usize = said
        .lines()
        .find_map(|l| l.strip_prefix("processes: "))
        .and_then(|n| n.trim().parse().ok())
        .expect("count");
    assert!(processes <= 4, "it sees {processes} processes: {said}");
    // A session of its own, led by its shell.
    let leader = said
        .lines()
        .find_map(|l| l.strip_prefix("session leader: "))
        .expect("session");
    let (sid, pid) = leader.split_once(' ').expect("two numbers");
    assert_eq!(sid, pid, "{said}");
    // Descriptors: the standard three and the one `ls` opened for itself.
    let descriptors: Vec<&str> = said
        .lines()
        .skip_while(|l| !l.starts_with("NoNewPrivs"))
        .skip(1)
        .collect();
    assert!(
        descriptors.len() <= 4,
        "descriptors passed on: {descriptors:?}"
    );
    // Its /tmp was its own directory, not the machine's; its home file is there, owned by it.
    assert_eq!(
        std::fs::read_to_string(tmp.join("in-sandbox")).expect("written to its own tmp"),
        "sandbox-tmp\n"
    );
    assert!(!std::path::Path::new("/tmp/in-sandbox").exists());
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(home.join("mine"))
            .expect("home file")
            .uid(),
        uid
    );
    // Nothing was left mounted on the host.
    assert_eq!(std::fs::read_dir(&root.0).expect("root").count(), 0);
}

#[tokio::test]
async fn a_sandboxed_process_cannot_read_or_signal_another_users_processes() {
    require_root();
    let (victim, intruder) = (TestAccount::new("victim"), TestAccount::new("intruder"));
    let root = SandboxRoot::new();
    let dir = TempDir::new("sandbox-processes");
    for (account, name) in [(&victim, "victim"), (&intruder, "intruder")] {
        let home = dir.path().join(name);
        std::fs::create_dir_all(&home).expect("home");
        hand_to(&home, account.uid(), 0o700);
    }
    let binds = |name: &str| {
        vec![Bind {
            source: dir.path().join(name),
            target: PathBuf::from("/run/preview/src"),
            writable: true,
        }]
    };
    // The victim holds a secret in its environment and waits.
    let mut victim_command = tokio::process::Command::new("/bin/sh");
    victim_command
        .args(["-c", "echo started > started; exec sleep 60"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("VICTIM_SECRET", "s3cret-value-of-the-victim")
        .kill_on_drop(true);
    sandbox(&victim, &root, binds("victim"))
        .apply(&mut victim_command)
        .expect("sandbox");
    let mut victim_process = victim_command.spawn().expect("victim starts");
    let pid = victim_process.id().expect("pid");
    let started = dir.path().join("victim/started");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !started.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the victim did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let script = format!(
        "cat /proc/{pid}/environ 2>&1 || echo 'environ: denied'
kill -TERM {pid} 2>&1 || echo 'signal: denied'
kill -KILL -1 2>&1; echo 'after kill -1'"
    );
    let output = run_in(&sandbox(&intruder, &root, binds("intruder")), &script).await;
    let said = text(&output);
    assert!(said.contains("environ: denied"), "{said}");
    assert!(said.contains("signal: denied"), "{said}");
    assert!(!said.contains("s3cret-value-of-the-victim"), "{said}");
    // The victim lives on.
    assert!(
        victim_process.try_wait().expect("wait").is_none(),
        "the victim was killed: {said}"
    );
    victim_process.kill().await.expect("kill");
}

/// A file of the test process left open across `exec` (as a careless parent leaves one), and the test process's
/// session keyring, as a sandboxed process sees them.
#[tokio::test]
async fn a_sandboxed_process_inherits_no_descriptor_and_no_keyring() {
    require_root();
    let dir = TempDir::new("sandbox-inherited");
    let account = TestAccount::new("inherited");
    let root = SandboxRoot::new();
    let secret = dir.path().join("held");
    std::fs::write(&secret, "held by the parent").expect("held");
    let held = std::fs::File::open(&secret).expect("open");
    #[allow(unsafe_code)]
    // SAFETY: fcntl(2) on a descriptor the test owns, clearing close-on-exec.
    unsafe {
        use std::os::fd::AsRawFd;
        assert_eq!(libc::fcntl(held.as_raw_fd(), libc::F_SETFD, 0), 0);
    }
    let keyring = "import ctypes; print('keyring', ctypes.CDLL(None).syscall(250, 0, -3, 1))";
    let outside = std::process::Command::new("python3")
        .args(["-c", keyring])
        .output()
        .expect("python3");
    let outside = String::from_utf8_lossy(&outside.stdout).trim().to_owned();
    let mut bare = sandbox(&account, &root, Vec::new());
    bare.workdir = PathBuf::from("/");
    let output = run_in(
        &bare,
        &format!("ls -l /proc/self/fd; python3 -c \"{keyring}\""),
    )
    .await;
    let said = text(&output);
    assert!(
        !said.contains("held"),
        "the sandbox inherited the test's file: {said}"
    );
    let inside = said
        .lines()
        .find(|l| l.starts_with("keyring"))
        .unwrap_or_else(|| panic!("no keyring line ({:?}): {said}", output.status));
    assert!(outside.starts_with("keyring "), "{outside}");
    assert_ne!(
        inside, outside,
        "the sandbox shares the test's session keyring"
    );
    drop(held);
}

/// A file bound where a link of the system's directories leads — as `/etc/resolv.conf` leads into `/run` on
/// hosts with systemd-resolved — is what the sandbox reads through the link, although the link's target does not
/// exist in its filesystem otherwise.
#[tokio::test]
async fn a_file_is_bound_where_a_system_link_leads() {
    require_root();
    let dir = TempDir::new("sandbox-link");
    let account = TestAccount::new("link");
    let root = SandboxRoot::new();
    // A "system" directory of the test's own whose file is a link into a place the sandbox does not have.
    let unique = common::unique("");
    let system = PathBuf::from(format!("/run/preview-test-etc-{unique}"));
    let elsewhere = PathBuf::from(format!("/run/preview-test-state-{unique}"));
    std::fs::create_dir_all(&system).expect("etc");
    std::fs::create_dir_all(&elsewhere).expect("state");
    std::fs::write(elsewhere.join("resolv.conf"), "nameserver 127.0.0.53\n").expect("stub");
    std::os::unix::fs::symlink(elsewhere.join("resolv.conf"), system.join("resolv.conf"))
        .expect("link");
    let ours = dir.path().join("resolv.conf");
    std::fs::write(&ours, "nameserver 192.0.2.53\n").expect("ours");
    std::fs::set_permissions(&ours, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut sandbox = sandbox(
        &account,
        &root,
        vec![Bind {
            source: ours.clone(),
            target: std::fs::canonicalize(system.join("resolv.conf")).expect("resolved"),
            writable: false,
        }],
    );
    sandbox.system.push(SystemEntry::Directory(system.clone()));
    sandbox.workdir = PathBuf::from("/");
    let output = run_in(
        &sandbox,
        &format!("cat {}", system.join("resolv.conf").display()),
    )
    .await;
    let said = text(&output);
    let _ = std::fs::remove_dir_all(&system);
    let _ = std::fs::remove_dir_all(&elsewhere);
    assert_eq!(said.trim(), "nameserver 192.0.2.53", "{said}");
}

#[tokio::test]
async fn a_sandbox_that_cannot_be_made_says_at_which_step() {
    require_root();
    let account = TestAccount::new("unmade");
    let root = SandboxRoot::new();
    let mut nowhere = sandbox(&account, &root, Vec::new());
    nowhere.workdir = PathBuf::from("/run/preview/missing");
    let mut command = tokio::process::Command::new("/bin/true");
    let explanation = nowhere.apply(&mut command).expect("prepared");
    let error = command.spawn().expect_err("no working directory");
    assert_eq!(error.raw_os_error(), Some(2), "{error}");
    assert_eq!(
        explanation.take().as_deref(),
        Some("preview sandbox: cannot change into /run/preview/missing")
    );
}
