//! One supervised process: started in its own process group (and, in a sandbox, its own cgroup), restarted with
//! exponential backoff when it exits (or, for a job, run once), stopped with SIGTERM, a grace period, then
//! SIGKILL of everything it started. In a sandbox "everything" is its cgroup, which no process can leave;
//! otherwise its process group. Dropped without being stopped — the step that started it was abandoned — it is
//! killed at once and never restarted.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use preview_isolation::signals::{SIGKILL, SIGTERM, group_alive, signal_group};
use preview_isolation::{Cgroup, Sandbox};
use preview_secrets::Secret;
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::leftovers::EnvironmentLeftovers;
use crate::logs::{LogFile, Recent};

/// Where a process runs.
#[derive(Debug, Clone)]
pub enum Place {
    /// As the daemon's user, in this directory of the daemon's own view of the machine.
    Host(PathBuf),
    /// In a sandbox (its user, cgroup, network and mounts; it names its own working directory).
    Sandbox(Arc<Sandbox>),
}

impl Place {
    fn cgroup(&self) -> Option<&Cgroup> {
        match self {
            Place::Host(_) => None,
            Place::Sandbox(sandbox) => sandbox.cgroup.as_ref(),
        }
    }
}

/// How to run one process.
pub struct ProcessSpec {
    /// For messages and logs.
    pub name: String,
    /// A shell command, run with `/bin/sh -c`.
    pub command: String,
    pub place: Place,
    /// Every variable, secrets included, reaches the process through its environment only — never its arguments.
    /// Nothing else of the daemon's environment is inherited but `PATH`.
    pub env: Vec<(String, Secret)>,
    pub log: PathBuf,
    /// The log rotates past this many bytes; one previous file is kept.
    pub log_limit: u64,
    /// How long a stopped process may take to exit after SIGTERM before its group gets SIGKILL.
    pub grace: Duration,
    /// The first restart delay; each further consecutive restart waits twice as long, up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Its memory limits as people read them (`64Mi, environment 4Gi`), named when the kernel kills it for
    /// going over one.
    pub memory_limit: Option<String>,
    /// Started again whenever it exits (an app), or run once (a job: its first exit is its result).
    pub restart: bool,
    /// Where the end of a process dropped without being stopped is waited for (its environment's `settle`).
    pub leftovers: Option<EnvironmentLeftovers>,
}

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("cannot start `{name}`: {reason}")]
    Spawn { name: String, reason: String },
}

#[derive(Default)]
struct State {
    pid: Option<u32>,
    /// When each restart happened, for people and tests to see the backoff; their number is the restart count.
    restarted_at: Vec<Instant>,
    last_exit: Option<String>,
    /// How the process ended when it was stopped (`exit status: 0` for one that heeded SIGTERM and ended well).
    stop_exit: Option<String>,
    /// Why the running process is being ended to be restarted (a failing health check), for its last exit.
    ending_because: Option<String>,
}

/// What the supervisor is asked to do with its process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted {
    Running,
    /// SIGTERM, the grace period, then SIGKILL.
    Stopped,
    /// SIGKILL now: the step that started it was abandoned.
    Killed,
}

/// A running, supervised process. Stop it with [`Supervised::stop`]; dropping it without a stop kills it at once.
pub struct Supervised {
    name: String,
    log: LogFile,
    state: Arc<Mutex<State>>,
    wanted: watch::Sender<Wanted>,
    /// True once nothing of the process is left, nor its cgroup.
    ended: watch::Receiver<bool>,
    monitor: Mutex<Option<tokio::task::JoinHandle<()>>>,
    cgroup: Option<Cgroup>,
    leftovers: Option<EnvironmentLeftovers>,
    stop_written: AtomicBool,
    grace: Duration,
    /// The last lines of its own output (and of the supervisor's lines about it).
    recent: Recent,
}

impl Supervised {
    /// Starts the process; an error if it cannot be started at all (then nothing is left running).
    pub async fn start(mut spec: ProcessSpec) -> Result<Supervised, SupervisorError> {
        let recent = Recent::default();
        let (child, output) = spawn(&spec, &recent)?;
        let pid = child.id();
        let state = Arc::new(Mutex::new(State {
            pid,
            ..State::default()
        }));
        let (wanted, asked) = watch::channel(Wanted::Running);
        let (done, ended) = watch::channel(false);
        let (name, log) = (
            spec.name.clone(),
            LogFile::keeping(&spec.log, spec.log_limit, &recent),
        );
        let (cgroup, leftovers) = (spec.place.cgroup().cloned(), spec.leftovers.take());
        let grace = spec.grace;
        let monitor = tokio::spawn({
            let state = Arc::clone(&state);
            let recent = recent.clone();
            async move {
                monitor(spec, child, output, state, asked, recent).await;
                let _ = done.send(true);
            }
        });
        // Made before anything is awaited: from here on, a start that is abandoned kills what it started.
        let supervised = Supervised {
            name,
            log,
            state,
            wanted,
            ended,
            monitor: Mutex::new(Some(monitor)),
            cgroup,
            leftovers,
            stop_written: AtomicBool::new(false),
            grace,
            recent,
        };
        // The log exists from the start, also for a process that prints nothing.
        supervised
            .log
            .append(&format!(
                "[preview] {} started (pid {})\n",
                supervised.name,
                pid.map_or("?".to_owned(), |p| p.to_string())
            ))
            .await;
        Ok(supervised)
    }

    /// The current process id (also its process group id), while one runs.
    pub fn pid(&self) -> Option<u32> {
        self.state.lock().ok().and_then(|s| s.pid)
    }

    /// How many times the process was restarted after exiting.
    pub fn restarts(&self) -> u32 {
        self.state
            .lock()
            .map(|s| s.restarted_at.len() as u32)
            .unwrap_or(0)
    }

    pub fn restarted_at(&self) -> Vec<Instant> {
        self.state
            .lock()
            .map(|s| s.restarted_at.clone())
            .unwrap_or_default()
    }

    /// The processes it consists of now: its cgroup's, or those of its process group.
    pub fn processes(&self) -> Vec<u32> {
        if let Some(cgroup) = &self.cgroup {
            return cgroup.pids();
        }
        let Some(group) = self.pid() else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return vec![group];
        };
        entries
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                // `pid (comm) state ppid pgrp …`; the name may hold spaces and parentheses, so read after the last `)`.
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|stat| {
                        let rest = stat.rsplit_once(')')?.1.to_owned();
                        rest.split_whitespace().nth(2)?.parse::<u32>().ok()
                    })
                    == Some(group)
            })
            .collect()
    }

    /// The last `lines` lines this process (and its restarts) wrote, without other processes' lines in the same log.
    pub fn output_tail(&self, lines: usize) -> String {
        self.recent.last(lines)
    }

    /// How the process last exited, e.g. `exit status: 1`.
    pub fn last_exit(&self) -> Option<String> {
        self.state.lock().ok().and_then(|s| s.last_exit.clone())
    }

    /// How the process ended once [`Supervised::stop`] ended it: `exit status: 0` when it ended well within the
    /// grace period, `signal: 9 (SIGKILL)` when it had to be killed; none when it was not running.
    pub fn stop_exit(&self) -> Option<String> {
        self.state.lock().ok().and_then(|s| s.stop_exit.clone())
    }

    /// Ends the running process — SIGTERM to it and everything it started, the grace period, then SIGKILL — so
    /// that it is restarted with backoff, as a failing liveness check asks. `reason` goes to its log and becomes
    /// its last exit.
    pub async fn restart(&self, reason: &str) {
        let Some(pid) = self.pid() else {
            return;
        };
        if let Ok(mut state) = self.state.lock() {
            state.ending_because = Some(reason.to_owned());
        }
        self.log
            .append(&format!(
                "[preview] {} {reason}; restarting it\n",
                self.name
            ))
            .await;
        let signal = |signal| match &self.cgroup {
            Some(cgroup) => {
                cgroup.signal_all(signal);
            }
            None => {
                signal_group(pid, signal);
            }
        };
        signal(SIGTERM);
        let deadline = Instant::now() + self.grace;
        while self.pid() == Some(pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if self.pid() == Some(pid) {
            signal(SIGKILL);
        }
    }

    /// SIGTERM to the process and everything it started, the grace period, then SIGKILL; returns once no process
    /// of it is left (and its cgroup is gone).
    pub async fn stop(&self) {
        self.wanted.send_if_modified(|wanted| {
            let asked = *wanted == Wanted::Running;
            if asked {
                *wanted = Wanted::Stopped;
            }
            asked
        });
        self.ended().await;
        // Written here, not by the monitor: whichever way it ended, the line is there when `stop` returns.
        if !self.stop_written.swap(true, Ordering::SeqCst) {
            self.log
                .append(&format!("[preview] {} stopped\n", self.name))
                .await;
        }
    }

    /// Returns once nothing of the process is left, nor its cgroup: after [`Supervised::stop`], or for a process
    /// that is not restarted, after its exit.
    pub async fn ended(&self) {
        let mut ended = self.ended.clone();
        // An error: the monitor is gone, and with it everything it watched.
        let _ = ended.wait_for(|ended| *ended).await;
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if *self.ended.borrow() {
            return;
        }
        self.wanted.send_replace(Wanted::Killed);
        // Now, not when the monitor gets to it: the daemon may be tearing its runtime down, and an abandoned
        // version must not serve or write on meanwhile.
        if let Some(cgroup) = &self.cgroup {
            cgroup.signal_all(SIGKILL);
        }
        if let Some(group) = self.pid() {
            signal_group(group, SIGKILL);
        }
        // The monitor reaps it, kills what is left and removes its cgroup; its environment's `settle` waits for
        // that.
        let monitor = match self.monitor.lock() {
            Ok(mut monitor) => monitor.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let (Some(monitor), Some(leftovers)) = (monitor, &self.leftovers) {
            leftovers.adopt(async move {
                let _ = monitor.await;
            });
        }
    }
}

/// The tasks that copy a process's output into its log.
struct Output(Vec<tokio::task::JoinHandle<()>>);

impl Output {
    /// Waits until the output is copied to its end (every writer of its pipes gone), for at most a few seconds:
    /// a process that escaped its group may hold them open.
    async fn drained(self) {
        let copying = async {
            for task in self.0 {
                let _ = task.await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(3), copying).await;
    }
}

fn spawn(spec: &ProcessSpec, recent: &Recent) -> Result<(Child, Output), SupervisorError> {
    let fail = |reason: String| SupervisorError::Spawn {
        name: spec.name.clone(),
        reason,
    };
    if let Some(parent) = spec.log.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| fail(format!("cannot create {}: {e}", parent.display())))?;
    }
    let mut command = Command::new("/bin/sh");
    command.arg("-c").arg(&spec.command);
    // A session of its own (and so a process group of its own): no terminal of the daemon's, no way into its
    // process group; and none of the daemon's descriptors.
    let explanation = match &spec.place {
        Place::Host(dir) => {
            command.current_dir(dir);
            preview_isolation::detach(&mut command);
            None
        }
        Place::Sandbox(sandbox) => Some(
            sandbox
                .apply(&mut command)
                .map_err(|e| fail(e.to_string()))?,
        ),
    };
    command
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
        )
        .envs(
            spec.env
                .iter()
                .map(|(name, value)| (name.as_str(), value.expose())),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(false);
    let mut child = command.spawn().map_err(|e| {
        // A sandbox that could not be made says at which step.
        match explanation
            .as_ref()
            .and_then(preview_isolation::Explanation::take)
        {
            Some(step) => fail(format!("{e} ({step})")),
            None => fail(e.to_string()),
        }
    })?;
    let log = Arc::new(LogFile::keeping(&spec.log, spec.log_limit, recent));
    let mut output = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        let log = Arc::clone(&log);
        output.push(tokio::spawn(async move { log.capture(stdout, "").await }));
    }
    if let Some(stderr) = child.stderr.take() {
        output.push(tokio::spawn(async move { log.capture(stderr, "").await }));
    }
    Ok((child, Output(output)))
}

/// Supervises until told to stop (or, for a process that is not restarted, until it exits); then nothing of the
/// process is left, nor its cgroup.
async fn monitor(
    spec: ProcessSpec,
    child: Child,
    output: Output,
    state: Arc<Mutex<State>>,
    asked: watch::Receiver<Wanted>,
    recent: Recent,
) {
    supervise(&spec, child, output, state, asked, &recent).await;
    if let Some(cgroup) = spec.place.cgroup() {
        let _ = cgroup.kill_all(Duration::from_secs(10)).await;
        let _ = cgroup.remove();
    }
}

/// Waits for the process; restarts it with backoff when it exits, until told to stop.
async fn supervise(
    spec: &ProcessSpec,
    mut child: Child,
    mut output: Output,
    state: Arc<Mutex<State>>,
    mut asked: watch::Receiver<Wanted>,
    recent: &Recent,
) {
    let name = &spec.name;
    let log = LogFile::keeping(&spec.log, spec.log_limit, recent);
    let mut consecutive: u32 = 0;
    let cgroup = spec.place.cgroup().cloned();
    let oom_kills = || cgroup.as_ref().map_or(0, Cgroup::oom_kills);
    loop {
        let started = Instant::now();
        let group = child.id();
        let killed_before = oom_kills();
        tokio::select! {
            status = child.wait() => {
                let mut exit = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                if oom_kills() > killed_before {
                    exit.push_str(&format!(
                        ", killed by the kernel for going over its memory limit ({})",
                        spec.memory_limit.as_deref().unwrap_or("its environment's")
                    ));
                }
                // Whatever the shell left behind goes with it.
                match &cgroup {
                    Some(cgroup) => {
                        let _ = cgroup.kill_all(spec.grace).await;
                    }
                    None => {
                        if let Some(group) = group {
                            signal_group(group, SIGKILL);
                        }
                    }
                }
                // Its last words before the line that says it ended.
                std::mem::replace(&mut output, Output(Vec::new())).drained().await;
                log.append(&format!("[preview] {name} exited ({exit})\n")).await;
                if let Ok(mut s) = state.lock() {
                    s.pid = None;
                    s.last_exit = Some(match s.ending_because.take() {
                        Some(reason) => format!("ended: {reason}"),
                        None => exit,
                    });
                }
            }
            wanted = asked_to_end(&mut asked) => {
                match (wanted, &cgroup) {
                    (Wanted::Killed, _) => {
                        kill(&mut child, group, cgroup.as_ref()).await;
                        log.append(&format!(
                            "[preview] {name} killed: the step that started it was abandoned\n"
                        ))
                        .await;
                    }
                    (_, Some(cgroup)) => terminate_cgroup(&mut child, cgroup, spec.grace).await,
                    (_, None) => terminate(&mut child, group, spec.grace).await,
                }
                // Nothing of it writes to its log once it is stopped: its files may be removed next.
                output.drained().await;
                // Reaped by now: its status is kept.
                let ended = child.try_wait().ok().flatten();
                if let Ok(mut s) = state.lock() {
                    s.pid = None;
                    s.stop_exit = ended.map(|status| status.to_string());
                }
                return;
            }
        }
        if !spec.restart {
            return;
        }
        // A process that ran a while was healthy: start the backoff afresh.
        if started.elapsed() > spec.max_backoff.max(Duration::from_secs(10)) {
            consecutive = 0;
        }
        let delay = spec
            .backoff
            .saturating_mul(2u32.saturating_pow(consecutive))
            .min(spec.max_backoff);
        consecutive = consecutive.saturating_add(1);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = asked_to_end(&mut asked) => return,
        }
        match spawn(spec, recent) {
            Ok((next, next_output)) => {
                (child, output) = (next, next_output);
                if let Ok(mut s) = state.lock() {
                    s.pid = child.id();
                    s.restarted_at.push(Instant::now());
                }
                log.append(&format!(
                    "[preview] {name} restarted after {} ms\n",
                    delay.as_millis()
                ))
                .await;
            }
            Err(error) => {
                log.append(&format!("[preview] {error}\n")).await;
                // Try again after the next, longer delay.
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = asked_to_end(&mut asked) => return,
                }
                match spawn(spec, recent) {
                    Ok((next, next_output)) => (child, output) = (next, next_output),
                    Err(_) => return,
                }
            }
        }
    }
}

/// Resolves once the process is to end, with how; a supervisor nobody can ask any more kills it.
async fn asked_to_end(asked: &mut watch::Receiver<Wanted>) -> Wanted {
    match asked.wait_for(|wanted| *wanted != Wanted::Running).await {
        Ok(wanted) => *wanted,
        Err(_) => Wanted::Killed,
    }
}

/// SIGKILL to the cgroup (or group) at once; returns once nothing of it is left.
async fn kill(child: &mut Child, group: Option<u32>, cgroup: Option<&Cgroup>) {
    if let Some(group) = group {
        signal_group(group, SIGKILL);
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
    match (cgroup, group) {
        (Some(cgroup), _) => {
            let _ = cgroup.kill_all(Duration::from_secs(10)).await;
        }
        (None, Some(group)) => {
            let deadline = Instant::now() + Duration::from_secs(5);
            while signal_group(group, SIGKILL) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        (None, None) => {}
    }
}

/// SIGTERM to every process of the cgroup; after `grace`, SIGKILL to what is left; then the cgroup is removed.
async fn terminate_cgroup(child: &mut Child, cgroup: &Cgroup, grace: Duration) {
    cgroup.signal_all(SIGTERM);
    let deadline = tokio::time::Instant::now() + grace;
    let _ = tokio::time::timeout_at(deadline, child.wait()).await;
    while !cgroup.pids().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = cgroup.kill_all(Duration::from_secs(10)).await;
    let _ = child.wait().await;
    let _ = cgroup.remove();
}

/// SIGTERM to the group; after `grace`, SIGKILL; then wait until the group is empty.
async fn terminate(child: &mut Child, group: Option<u32>, grace: Duration) {
    let Some(group) = group else {
        return;
    };
    signal_group(group, SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() || group_alive(group) {
        let deadline = Instant::now() + grace;
        while group_alive(group) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        signal_group(group, SIGKILL);
    }
    let _ = child.wait().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while group_alive(group) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
