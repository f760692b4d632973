//! What the isolation tests share: they make real accounts, cgroups, namespaces and nftables tables, so they
//! need root, and they remove what they made even when they fail.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};

use preview_isolation::{Account, Sandbox, create_account, delete_account, id_is_free};

/// Every test here changes the machine the way the daemon does as root: without root it proves nothing.
pub fn require_root() {
    assert!(
        preview_testing::running_as_root(),
        "the isolation tests make system users, cgroups and network namespaces and must run as root (as the test suite does on its machine)"
    );
}

/// A name unique to this test process: `<prefix><pid><n>`.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}{}",
        std::process::id() % 100_000,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A system account made for the test and removed when dropped.
pub struct TestAccount(pub Account);

impl TestAccount {
    pub fn new(what: &str) -> TestAccount {
        // Ids far above the daemon's default range, spread by process so that parallel tests rarely meet.
        let mut id = 3_900_000 + (std::process::id() % 5_000) * 20;
        loop {
            if id_is_free(id)
                && let Ok(account) = create_account(id, &format!("preview isolation test {what}"))
            {
                return TestAccount(account);
            }
            id += 1;
        }
    }

    pub fn uid(&self) -> u32 {
        self.0.uid
    }
}

impl Drop for TestAccount {
    fn drop(&mut self) {
        let _ = delete_account(self.0.uid);
    }
}

/// An empty directory under /run for a sandbox's root (a sandbox covers it with a tmpfs of its own), removed
/// when dropped.
pub struct SandboxRoot(pub PathBuf);

impl SandboxRoot {
    pub fn new() -> SandboxRoot {
        let path = PathBuf::from(format!("/run/{}", unique("preview-test-root-")));
        std::fs::create_dir_all(&path).expect("sandbox root");
        SandboxRoot(path)
    }
}

impl Drop for SandboxRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Runs `script` with `sh -c` in `sandbox`; returns its output.
pub async fn run_in(sandbox: &Sandbox, script: &str) -> Output {
    let mut command = tokio::process::Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(script)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .kill_on_drop(true);
    sandbox.apply(&mut command).expect("sandbox");
    command.output().await.expect("the sandboxed command runs")
}

pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Makes `path` owned by `uid` with `mode`.
pub fn hand_to(path: &Path, uid: u32, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).expect("chown");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
