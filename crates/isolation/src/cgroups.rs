//! Control groups: every process tree the runtime starts lives in a cgroup of its own, under one per
//! environment, under one per daemon. The environment's cgroup bounds what all of it uses together, the tree's
//! what that one app, job or build may use; and because no process can leave a cgroup it was put in, the tree's
//! cgroup is also how every process of it is found and killed — however it detached itself from its process
//! group — and how an earlier run's processes are found after a crash.
//!
//! cgroup v2 is used where its controllers are available; otherwise the v1 hierarchies of each controller (as on
//! machines that mount both, with the controllers bound to v1).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::IsolationError;
use crate::signals::{SIGKILL, signal_process};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Controller {
    Memory,
    Cpu,
    Pids,
}

impl Controller {
    const ALL: [Controller; 3] = [Controller::Memory, Controller::Cpu, Controller::Pids];

    fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
            Controller::Pids => "pids",
        }
    }
}

/// What a cgroup may use; `None` is no limit of its own (its parents' still apply).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupLimits {
    /// Thousandths of a CPU, enforced as a quota per 100 ms period.
    pub cpu_millicores: Option<u64>,
    pub memory_bytes: Option<u64>,
    /// Processes and threads together.
    pub tasks: Option<u64>,
}

/// One mounted hierarchy and the controllers of ours it carries.
#[derive(Debug, Clone)]
struct Hierarchy {
    mount: PathBuf,
    controllers: Vec<Controller>,
}

/// The cgroups of one daemon: `<hierarchy>/<base>/…` in each hierarchy used.
#[derive(Debug, Clone)]
pub struct Cgroups {
    version: CgroupVersion,
    hierarchies: Vec<Hierarchy>,
    base: String,
}

/// One cgroup, as a directory in each hierarchy.
#[derive(Debug, Clone)]
pub struct Cgroup {
    version: CgroupVersion,
    /// (directory, controllers of that hierarchy); the first is where processes are listed.
    dirs: Vec<(PathBuf, Vec<Controller>)>,
}

impl Cgroups {
    /// Finds the mounted cgroup hierarchies; `base` names this daemon's cgroup in each. An error says what is
    /// missing.
    pub fn detect(base: &str) -> Result<Cgroups, IsolationError> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| IsolationError::io("reading /proc/self/mountinfo", e))?;
        Cgroups::from_mounts(&mountinfo, base, &|path| std::fs::read_to_string(path).ok())
    }

    fn from_mounts(
        mountinfo: &str,
        base: &str,
        read: &dyn Fn(&Path) -> Option<String>,
    ) -> Result<Cgroups, IsolationError> {
        let mut v1: Vec<Hierarchy> = Vec::new();
        let mut v2: Option<Hierarchy> = None;
        for line in mountinfo.lines() {
            let Some((before, after)) = line.split_once(" - ") else {
                continue;
            };
            let mount = before.split(' ').nth(4).map(PathBuf::from);
            let mut after = after.split(' ');
            let (Some(kind), _, Some(options), Some(mount)) =
                (after.next(), after.next(), after.next(), mount)
            else {
                continue;
            };
            match kind {
                "cgroup2" if v2.is_none() => {
                    let available = read(&mount.join("cgroup.controllers")).unwrap_or_default();
                    let controllers = Controller::ALL
                        .into_iter()
                        .filter(|c| available.split_whitespace().any(|a| a == c.name()))
                        .collect();
                    v2 = Some(Hierarchy { mount, controllers });
                }
                "cgroup" => {
                    let controllers: Vec<Controller> = Controller::ALL
                        .into_iter()
                        .filter(|c| options.split(',').any(|o| o == c.name()))
                        .filter(|c| !v1.iter().any(|h| h.controllers.contains(c)))
                        .collect();
                    if !controllers.is_empty() {
                        v1.push(Hierarchy { mount, controllers });
                    }
                }
                _ => {}
            }
        }
        let in_v1: usize = v1.iter().map(|h| h.controllers.len()).sum();
        let (version, hierarchies) = match v2 {
            Some(v2) if !v2.controllers.is_empty() && v2.controllers.len() >= in_v1 => {
                (CgroupVersion::V2, vec![v2])
            }
            _ if in_v1 > 0 => {
                // Processes are listed in the `pids` hierarchy when there is one: it holds every task.
                v1.sort_by_key(|h| !h.controllers.contains(&Controller::Pids));
                (CgroupVersion::V1, v1)
            }
            _ => {
                return Err(IsolationError::Unavailable(
                    "no cgroup hierarchy with the memory, cpu or pids controller is mounted"
                        .to_owned(),
                ));
            }
        };
        Ok(Cgroups {
            version,
            hierarchies,
            base: base.to_owned(),
        })
    }

    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// `cgroup v1 (memory, cpu, pids)`, and which controllers are missing, for the daemon's report.
    pub fn describe(&self) -> String {
        let present: Vec<&str> = Controller::ALL
            .into_iter()
            .filter(|c| self.has(*c))
            .map(Controller::name)
            .collect();
        let missing: Vec<&str> = Controller::ALL
            .into_iter()
            .filter(|c| !self.has(*c))
            .map(Controller::name)
            .collect();
        let version = match self.version {
            CgroupVersion::V1 => "cgroup v1",
            CgroupVersion::V2 => "cgroup v2",
        };
        if missing.is_empty() {
            format!("{version} ({})", present.join(", "))
        } else {
            format!(
                "{version} ({}; no {} controller, so no such limit)",
                present.join(", "),
                missing.join(" or ")
            )
        }
    }

    fn has(&self, controller: Controller) -> bool {
        self.hierarchies
            .iter()
            .any(|h| h.controllers.contains(&controller))
    }

    /// The daemon's own cgroup (the parent of all others).
    pub fn root(&self) -> Cgroup {
        self.group(&[])
    }

    /// `<base>/<path…>` in every hierarchy; nothing is created until [`Cgroup::create`].
    pub fn group(&self, path: &[&str]) -> Cgroup {
        Cgroup {
            version: self.version,
            dirs: self
                .hierarchies
                .iter()
                .map(|h| {
                    let mut dir = h.mount.join(&self.base);
                    for part in path {
                        dir.push(part);
                    }
                    (dir, h.controllers.clone())
                })
                .collect(),
        }
    }
}

fn write(path: &Path, value: &str) -> Result<(), IsolationError> {
    std::fs::write(path, value)
        .map_err(|e| IsolationError::io(format!("writing `{value}` to {}", path.display()), e))
}

/// The number after `key ` in a flat keyed file such as `memory.events` or `cpu.stat`.
fn keyed(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(key)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

impl Cgroup {
    /// Creates the cgroup (and its parents) in every hierarchy and sets its limits.
    pub fn create(&self, limits: &CgroupLimits) -> Result<(), IsolationError> {
        for (dir, controllers) in &self.dirs {
            if self.version == CgroupVersion::V2 {
                enable_controllers(dir, controllers)?;
            }
            std::fs::create_dir_all(dir).map_err(|e| {
                IsolationError::io(format!("creating the cgroup {}", dir.display()), e)
            })?;
        }
        self.set_limits(limits)
    }

    /// Sets (or lifts) every limit this cgroup's controllers can enforce.
    pub fn set_limits(&self, limits: &CgroupLimits) -> Result<(), IsolationError> {
        for (dir, controllers) in &self.dirs {
            for controller in controllers {
                match (self.version, controller) {
                    (CgroupVersion::V1, Controller::Memory) => {
                        let value = limits
                            .memory_bytes
                            .map_or("-1".to_owned(), |b| b.to_string());
                        // With swap accounting, memory and swap together get the same limit, so that the limit
                        // cannot be passed by swapping; that limit may never be below the memory limit, so it is
                        // lifted first and set last.
                        let swap = dir.join("memory.memsw.limit_in_bytes");
                        let accounts_swap = swap.exists();
                        if accounts_swap {
                            write(&swap, "-1")?;
                        }
                        write(&dir.join("memory.limit_in_bytes"), &value)?;
                        if accounts_swap {
                            write(&swap, &value)?;
                        }
                    }
                    (CgroupVersion::V1, Controller::Cpu) => {
                        write(&dir.join("cpu.cfs_period_us"), "100000")?;
                        let quota = limits
                            .cpu_millicores
                            .map_or("-1".to_owned(), |m| (m.max(1) * 100).to_string());
                        write(&dir.join("cpu.cfs_quota_us"), &quota)?;
                    }
                    (CgroupVersion::V2, Controller::Memory) => {
                        let value = limits
                            .memory_bytes
                            .map_or("max".to_owned(), |b| b.to_string());
                        write(&dir.join("memory.max"), &value)?;
                        // Without swap a limit means what it says; a machine without swap accounting has no file.
                        let _ = std::fs::write(dir.join("memory.swap.max"), "0");
                    }
                    (CgroupVersion::V2, Controller::Cpu) => {
                        let quota = limits
                            .cpu_millicores
                            .map_or("max".to_owned(), |m| (m.max(1) * 100).to_string());
                        write(&dir.join("cpu.max"), &format!("{quota} 100000"))?;
                    }
                    (_, Controller::Pids) => {
                        let value = limits.tasks.map_or("max".to_owned(), |t| t.to_string());
                        write(&dir.join("pids.max"), &value)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The `cgroup.procs` file of each hierarchy, open for writing: a process that writes `0` into each is in
    /// this cgroup (the sandbox does so between `fork` and `exec`, before it runs anything of its own).
    pub fn procs_files(&self) -> Result<Vec<File>, IsolationError> {
        self.dirs
            .iter()
            .map(|(dir, _)| {
                let path = dir.join("cgroup.procs");
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| IsolationError::io(format!("opening {}", path.display()), e))
            })
            .collect()
    }

    fn listing_dir(&self) -> Option<&Path> {
        self.dirs.first().map(|(dir, _)| dir.as_path())
    }

    /// Every process in this cgroup and the cgroups below it.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        if let Some(dir) = self.listing_dir() {
            collect_pids(dir, &mut pids);
        }
        pids
    }

    /// The names of the cgroups directly below this one.
    pub fn children(&self) -> Vec<String> {
        let Some(dir) = self.listing_dir() else {
            return Vec::new();
        };
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.path().is_dir())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the cgroup exists.
    pub fn exists(&self) -> bool {
        self.listing_dir().is_some_and(Path::is_dir)
    }

    /// Sends `signal` to every process of the cgroup; returns how many there were.
    pub fn signal_all(&self, signal: i32) -> usize {
        let pids = self.pids();
        for pid in &pids {
            signal_process(*pid, signal);
        }
        pids.len()
    }

    /// Kills every process of the cgroup and waits until none is left (at most `patience`). A process forking as
    /// fast as it can is killed with its children: the loop goes on until the listing stays empty.
    pub async fn kill_all(&self, patience: Duration) -> Result<(), IsolationError> {
        let deadline = tokio::time::Instant::now() + patience;
        if self.version == CgroupVersion::V2
            && let Some(dir) = self.listing_dir()
        {
            let _ = std::fs::write(dir.join("cgroup.kill"), "1");
        }
        loop {
            if self.signal_all(SIGKILL) == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(IsolationError::Unavailable(format!(
                    "processes of {} survived SIGKILL for {} s",
                    self.listing_dir()
                        .map(Path::display)
                        .map(|d| d.to_string())
                        .unwrap_or_default(),
                    patience.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// How many times the kernel killed a process of this cgroup because it ran out of memory (its own limit or
    /// a parent's).
    pub fn oom_kills(&self) -> u64 {
        let file = match self.version {
            CgroupVersion::V1 => "memory.oom_control",
            CgroupVersion::V2 => "memory.events",
        };
        self.memory_dir()
            .and_then(|dir| std::fs::read_to_string(dir.join(file)).ok())
            .map_or(0, |text| keyed(&text, "oom_kill"))
    }

    /// How many periods the cgroup's processes were throttled because they used up their CPU quota.
    pub fn cpu_throttled(&self) -> u64 {
        self.dirs
            .iter()
            .find(|(_, c)| c.contains(&Controller::Cpu))
            .and_then(|(dir, _)| std::fs::read_to_string(dir.join("cpu.stat")).ok())
            .map_or(0, |text| keyed(&text, "nr_throttled"))
    }

    fn memory_dir(&self) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(_, c)| c.contains(&Controller::Memory))
            .map(|(dir, _)| dir.as_path())
    }

    /// Removes the cgroup and every cgroup below it, in every hierarchy; they must hold no process any more.
    /// Nothing to do when it does not exist.
    pub fn remove(&self) -> Result<(), IsolationError> {
        for (dir, _) in &self.dirs {
            remove_tree(dir)?;
        }
        Ok(())
    }
}

fn collect_pids(dir: &Path, pids: &mut Vec<u32>) {
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.path().is_dir() {
                collect_pids(&entry.path(), pids);
            }
        }
    }
}

/// cgroup directories are removed with rmdir, leaves first: their files are not removable one by one.
fn remove_tree(dir: &Path) -> Result<(), IsolationError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(IsolationError::io(format!("reading {}", dir.display()), e)),
    };
    for entry in entries.flatten() {
        if entry.path().is_dir() {
            remove_tree(&entry.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(IsolationError::io(
            format!("removing the cgroup {}", dir.display()),
            e,
        )),
    }
}

/// cgroup v2 hands a controller to a cgroup's children only when its parent enables it in
/// `cgroup.subtree_control`, from the root down.
fn enable_controllers(dir: &Path, controllers: &[Controller]) -> Result<(), IsolationError> {
    let enable: Vec<String> = controllers
        .iter()
        .map(|c| format!("+{}", c.name()))
        .collect();
    let mut ancestors: Vec<&Path> = dir.ancestors().skip(1).collect();
    ancestors.reverse();
    for ancestor in ancestors {
        let control = ancestor.join("cgroup.subtree_control");
        if !control.exists() {
            continue;
        }
        let current = std::fs::read_to_string(&control).unwrap_or_default();
        if controllers
            .iter()
            .all(|c| current.split_whitespace().any(|e| e == c.name()))
        {
            continue;
        }
        write(&control, &enable.join(" "))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 23 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
33 30 0:29 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
35 30 0:31 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    const UNIFIED: &str = "\
30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate
";

    fn detect(mountinfo: &str, v2_controllers: &str) -> Result<Cgroups, IsolationError> {
        let controllers = v2_controllers.to_owned();
        Cgroups::from_mounts(mountinfo, "preview-x", &move |path| {
            path.ends_with("cgroup.controllers")
                .then(|| controllers.clone())
        })
    }

    #[test]
    fn v1_hierarchies_are_used_when_the_controllers_are_bound_to_them() {
        let found = detect(HYBRID, "").expect("detected");
        assert_eq!(found.version(), CgroupVersion::V1);
        assert_eq!(found.describe(), "cgroup v1 (memory, cpu, pids)");
        let group = found.group(&["shop.staging", "app-web"]);
        // Processes are listed in the pids hierarchy.
        assert_eq!(
            group.listing_dir(),
            Some(Path::new(
                "/sys/fs/cgroup/pids/preview-x/shop.staging/app-web"
            ))
        );
        assert_eq!(group.dirs.len(), 3);
    }

    #[test]
    fn v2_is_used_when_it_has_the_controllers() {
        let found = detect(UNIFIED, "cpuset cpu io memory hugetlb pids rdma").expect("detected");
        assert_eq!(found.version(), CgroupVersion::V2);
        assert_eq!(found.describe(), "cgroup v2 (memory, cpu, pids)");
        assert_eq!(
            found.root().listing_dir(),
            Some(Path::new("/sys/fs/cgroup/preview-x"))
        );
        let partial = detect(UNIFIED, "cpu memory").expect("detected");
        assert_eq!(
            partial.describe(),
            "cgroup v2 (memory, cpu; no pids controller, so no such limit)"
        );
    }

    #[test]
    fn no_controller_is_an_error_that_says_so() {
        let error = detect(UNIFIED, "").expect_err("nothing to use").to_string();
        assert!(error.contains("no cgroup hierarchy"), "{error}");
    }

    #[test]
    fn keyed_files_are_read_by_key() {
        let events = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(keyed(events, "oom_kill"), 2);
        assert_eq!(keyed(events, "oom"), 3);
        assert_eq!(keyed("nr_periods 10\nnr_throttled 4\n", "nr_throttled"), 4);
        assert_eq!(keyed("", "oom_kill"), 0);
    }
}
