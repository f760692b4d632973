//! A process in the sandbox, as a user of its own: it sees its own files and nothing else of the directories it
//! was given paths into, cannot write what it was given read-only, has a /tmp of its own, cannot gain
//! privileges, and cannot read or signal another user's processes.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use common::{SandboxRoot, TestAccount, hand_to, require_root, run_in, text};
use preview_isolation::{Bind, Sandbox};
use preview_testing::TempDir;

fn sandbox(account: &TestAccount, root: &SandboxRoot, binds: Vec<Bind>) -> Sandbox {
    Sandbox {
        uid: account.uid(),
        gid: account.uid(),
        netns: None,
        cgroup: None,
        root: root.0.clone(),
        binds,
        fresh: vec![PathBuf::from("/dev/shm")],
        workdir: root.0.join("src"),
        umask: 0o022,
    }
}

#[tokio::test]
async fn a_sandboxed_process_sees_only_what_it_was_given() {
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
    let home = private.join("home");
    let tmp = private.join("tmp");
    for own in [&home, &tmp] {
        std::fs::create_dir_all(own).expect("dir");
        hand_to(own, account.uid(), 0o700);
    }
    let sandbox = sandbox(
        &account,
        &root,
        // The sources live under /tmp, which the first bind covers: each is taken before anything is mounted.
        vec![
            Bind {
                source: tmp.clone(),
                target: PathBuf::from("/tmp"),
                writable: true,
            },
            Bind {
                source: private.join("checkout"),
                target: root.0.join("src"),
                writable: false,
            },
            Bind {
                source: home.clone(),
                target: root.0.join("home"),
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
ls {private} 2>&1 && echo "LISTED data"
touch app-written 2>&1 || echo "checkout is read-only"
touch {root}/home/mine && echo "home is writable"
touch {root}/planted 2>&1 || echo "root is not writable"
ls {root}
echo sandbox-tmp > /tmp/in-sandbox && echo "tmp is writable"
grep NoNewPrivs /proc/self/status
"#,
        private = private.display(),
        root = root.0.display(),
    );
    let output = run_in(&sandbox, &script).await;
    let said = text(&output);
    let uid = account.uid();
    for expected in [
        format!("uid={uid} gid={uid} groups={uid}"),
        format!("cwd={}", root.0.join("src").display()),
        "the app".to_owned(),
        "Permission denied".to_owned(),
        "checkout is read-only".to_owned(),
        "Read-only file system".to_owned(),
        "home is writable".to_owned(),
        "root is not writable".to_owned(),
        "tmp is writable".to_owned(),
        "NoNewPrivs:\t1".to_owned(),
    ] {
        assert!(said.contains(&expected), "missing `{expected}` in:\n{said}");
    }
    assert!(!said.contains("READ master.key"), "{said}");
    assert!(!said.contains("LISTED data"), "{said}");
    assert!(!said.contains("the-master-key"), "{said}");
    // Inside the root only the paths given exist.
    let listing: Vec<&str> = said
        .lines()
        .skip_while(|l| !l.contains("root is not writable"))
        .skip(1)
        .take_while(|l| !l.contains("tmp is writable"))
        .collect();
    assert_eq!(listing, ["home", "src"], "{said}");
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
            target: root.0.join("src"),
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
