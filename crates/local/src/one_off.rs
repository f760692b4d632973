//! One-off commands — checkouts and builds — run with `/bin/sh -c` to their end, in a sandbox or a directory of
//! the daemon's, their output going to a log. Whatever a command leaves running in the background is killed when
//! it ends; a command that is abandoned (the step that ran it timed out or was cancelled, or its daemon stopped
//! acting, and dropped it) is killed at once, in the drop, with its cgroup or process group, and what remains —
//! waiting for its end, removing its cgroup and what it half made, letting go of the locks it held — is left to
//! its environment's leftovers (`settle`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use preview_isolation::signals::{SIGKILL, signal_group};
use preview_isolation::{Cgroup, Sandbox};
use tokio::process::{Child, Command};

use crate::leftovers::EnvironmentLeftovers;
use crate::logs::LogFile;

/// Where and how a one-off command runs.
pub(crate) struct Once {
    pub sandbox: Option<Sandbox>,
    /// The working directory when there is no sandbox.
    pub dir: PathBuf,
    pub variables: Vec<(String, OsString)>,
    /// What happens if the command is abandoned.
    pub abandoned: Abandoned,
}

/// Something held until nothing of a command runs any more: a lock on the tree or cache it writes.
pub(crate) type Holding = Arc<dyn std::any::Any + Send + Sync>;

/// What is done when a one-off command is abandoned (the deployment that ran it timed out or was cancelled and
/// dropped it), once nothing of it runs any more.
#[derive(Default)]
pub(crate) struct Abandoned {
    /// Where the waiting is filed, for its environment's `settle`.
    pub leftovers: Option<EnvironmentLeftovers>,
    /// Half-made directories, removed.
    pub discard: Vec<PathBuf>,
    /// Locks let go only then: the next checkout or build of the same tree or cache never meets a process of
    /// this one still writing.
    pub holding: Vec<Holding>,
}

/// Kills whatever is left of a one-off command — its cgroup, and its process group (it leads a session of its
/// own) — when it ended, and at once, in the drop, when it is abandoned; the waiting for the end then goes to its
/// environment's leftovers.
struct Reaper {
    child: Option<Child>,
    cgroup: Option<Cgroup>,
    group: Option<u32>,
    abandoned: Abandoned,
}

impl Reaper {
    async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        match self.child.as_mut() {
            Some(child) => child.wait().await,
            None => Err(std::io::Error::other("it was reaped already")),
        }
    }

    /// After the command exited: what it left running in the background goes now, and its cgroup with it.
    async fn reap(&mut self) {
        self.child = None;
        if let Some(group) = self.group.take() {
            signal_group(group, SIGKILL);
        }
        if let Some(cgroup) = self.cgroup.take() {
            let _ = cgroup.kill_all(Duration::from_secs(10)).await;
            let _ = cgroup.remove();
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let (cgroup, group) = (self.cgroup.take(), self.group.take());
        if let Some(group) = group {
            signal_group(group, SIGKILL);
        }
        if let Some(cgroup) = &cgroup {
            cgroup.signal_all(SIGKILL);
        }
        let Abandoned {
            leftovers,
            discard,
            holding,
        } = std::mem::take(&mut self.abandoned);
        let cleanup = async move {
            let _ = child.start_kill();
            let _ = child.wait().await;
            match (&cgroup, group) {
                (Some(cgroup), _) => {
                    let _ = cgroup.kill_all(Duration::from_secs(10)).await;
                    let _ = cgroup.remove();
                }
                (None, Some(group)) => {
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while signal_group(group, SIGKILL) && Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                (None, None) => {}
            }
            for dir in discard {
                let _ = std::fs::remove_dir_all(dir);
            }
            drop(holding);
        };
        match leftovers {
            Some(leftovers) => leftovers.adopt(cleanup),
            None => {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(cleanup);
                }
            }
        }
    }
}

/// A build's log rotates past this size (one previous file is kept): a build printing without end fills no disk.
const BUILD_LOG_LIMIT: u64 = 8 * 1024 * 1024;

/// Runs `script` with `/bin/sh -c` to its end, its output going to `log` (begun afresh).
pub(crate) async fn run_once(
    once: Once,
    script: &str,
    log: &Path,
) -> Result<std::process::ExitStatus, String> {
    for old in [log.to_path_buf(), LogFile::previous(log)] {
        match std::fs::remove_file(&old) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot remove {}: {e}", old.display())),
        }
    }
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(script)
        .env_clear()
        .envs(once.variables)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let cgroup = once.sandbox.as_ref().and_then(|s| s.cgroup.clone());
    let explanation = match &once.sandbox {
        Some(sandbox) => match sandbox.apply(&mut command) {
            Ok(explanation) => Some(explanation),
            Err(e) => {
                discard(cgroup).await;
                return Err(e.to_string());
            }
        },
        None => {
            command.current_dir(&once.dir);
            preview_isolation::detach(&mut command);
            None
        }
    };
    let spawned = command.spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            // A sandbox that could not be made says at which step.
            let step = explanation
                .as_ref()
                .and_then(preview_isolation::Explanation::take)
                .map(|step| format!(" ({step})"))
                .unwrap_or_default();
            discard(cgroup).await;
            return Err(format!("cannot start `{script}`: {e}{step}"));
        }
    };
    let output = Arc::new(LogFile::new(log, BUILD_LOG_LIMIT));
    let mut captures = tokio::task::JoinSet::new();
    if let Some(stdout) = child.stdout.take() {
        let output = Arc::clone(&output);
        captures.spawn(async move { output.capture(stdout, "").await });
    }
    if let Some(stderr) = child.stderr.take() {
        captures.spawn(async move { output.capture(stderr, "").await });
    }
    // Made before anything is awaited: from here on, a command that is abandoned is killed.
    let mut reaper = Reaper {
        group: child.id(),
        child: Some(child),
        cgroup,
        abandoned: once.abandoned,
    };
    let status = reaper
        .wait()
        .await
        .map_err(|e| format!("waiting for `{script}`: {e}"))?;
    // What it left running in the background goes now, not later (and closes the output it held).
    reaper.reap().await;
    while captures.join_next().await.is_some() {}
    Ok(status)
}

/// The cgroup made for a command that never started (a child that failed between `fork` and `exec` may still be
/// in it).
async fn discard(cgroup: Option<Cgroup>) {
    if let Some(cgroup) = cgroup {
        let _ = cgroup.kill_all(Duration::from_secs(10)).await;
        let _ = cgroup.remove();
    }
}
