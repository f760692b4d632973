//! The sandbox a process enters between `fork` and `exec`, while it is still root. In order: a session of its own
//! (no controlling terminal, no way into the daemon's process group); its cgroups, so that none of its work escapes
//! their limits; its environment's network namespace; a mount and IPC namespace of its own, in which a fresh
//! tmpfs on `root` becomes its whole filesystem (`pivot_root`): the system's program and library directories and
//! `/etc` read-only, a `/proc` that shows only its own user's processes, a `/dev` of a few harmless devices with a
//! new `/dev/shm`, and the binds it was given — its checkout, its home or cache, a `/tmp` of its own; nothing else
//! of the host (other users' homes, the daemon's data, the registered repository, host sockets in `/run`) exists
//! there. Then it drops to its user and group for good (no supplementary groups, no new privileges through
//! set-user-id programs), marks every descriptor it inherited beyond the standard three to close on `exec`, and
//! changes into its working directory as that user.
//!
//! Everything the child does is prepared by the parent as a list of operations: after `fork` a multi-threaded
//! parent's child may only make system calls, so the paths and messages are made here and the child only reads
//! them.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::netns::Netns;
use crate::{Cgroup, IsolationError};

/// A host path made visible inside the sandbox at `target` (a path as the process sees it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    pub target: PathBuf,
    pub writable: bool,
}

/// A top-level entry of the host's filesystem that every sandbox sees: a directory (bound read-only) or a symbolic
/// link (made again, e.g. `/bin -> usr/bin` on systems with a merged `/usr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemEntry {
    Directory(PathBuf),
    Link { path: PathBuf, target: PathBuf },
}

/// The host's directories every sandbox sees read-only: programs, libraries and configuration. (`/sys` is a sysfs
/// of its own, read-only, which shows the network namespace it was mounted in.)
const SYSTEM: [&str; 8] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
];

/// The devices a sandbox has.
const DEVICES: [&str; 5] = ["null", "zero", "full", "random", "urandom"];

impl SystemEntry {
    /// What of [`SYSTEM`] exists on this host.
    pub fn of_host() -> Vec<SystemEntry> {
        SYSTEM
            .iter()
            .map(PathBuf::from)
            .filter_map(|path| {
                let meta = std::fs::symlink_metadata(&path).ok()?;
                if meta.file_type().is_symlink() {
                    Some(SystemEntry::Link {
                        target: std::fs::read_link(&path).ok()?,
                        path,
                    })
                } else if meta.is_dir() {
                    Some(SystemEntry::Directory(path))
                } else {
                    None
                }
            })
            .collect()
    }
}

/// Where and as whom a process runs.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub uid: u32,
    pub gid: u32,
    /// The environment's network namespace; `None` keeps the daemon's network.
    pub netns: Option<Arc<Netns>>,
    /// The cgroup the process (and everything it starts) belongs to.
    pub cgroup: Option<Cgroup>,
    /// An existing, empty directory of the host on which the sandbox's filesystem is made.
    pub root: PathBuf,
    /// The host's system directories it sees ([`SystemEntry::of_host`]).
    pub system: Vec<SystemEntry>,
    pub binds: Vec<Bind>,
    /// Where the process starts, as it sees it.
    pub workdir: PathBuf,
    pub umask: u32,
}

/// One step the child takes to make its filesystem, on paths below the new root (before it becomes `/`).
enum Step {
    Directory(CString),
    File(CString),
    Link {
        target: CString,
        path: CString,
    },
    /// A tmpfs with these options and mount flags.
    Tmpfs {
        path: CString,
        options: CString,
        flags: libc::c_ulong,
    },
    /// A bind mount, then remounted with `flags` (read-only, nosuid, …).
    Bind {
        source: CString,
        target: CString,
        flags: libc::c_ulong,
    },
    Proc(CString),
    Sysfs(CString),
}

struct Planned {
    step: Step,
    failure: CString,
}

/// What the child needs, made before `fork`.
struct Prepared {
    /// Where the child says which step failed (the parent reads it from the [`Explanation`]).
    report: OwnedFd,
    cgroup_files: Vec<File>,
    netns: Option<Arc<Netns>>,
    root: CString,
    steps: Vec<Planned>,
    workdir: CString,
    uid: u32,
    gid: u32,
    umask: u32,
    /// The open-files limit to give back (the daemon raised its own).
    open_files: Option<libc::rlimit>,
    messages: Messages,
}

struct Messages {
    session: CString,
    cgroup: CString,
    netns: CString,
    unshare: CString,
    private: CString,
    pivot: CString,
    user: CString,
    workdir: CString,
}

fn c_path(path: &Path) -> Result<CString, IsolationError> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| IsolationError::Unavailable(format!("{} has a NUL byte", path.display())))
}

fn c_text(text: &str) -> CString {
    CString::new(text.replace('\0', "")).unwrap_or_default()
}

const NOSUID_NODEV: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV;

/// keyctl(2)'s operation that makes the caller a new, anonymous session keyring (Linux's ABI value).
const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;

impl Sandbox {
    /// Makes `command` enter this sandbox when it is spawned. The command must not be given a working directory
    /// or a process group of its own: the sandbox makes its session, and changes into `workdir` once its
    /// filesystem exists.
    pub fn apply(
        &self,
        command: &mut tokio::process::Command,
    ) -> Result<Explanation, IsolationError> {
        let (explanation, report) = report_pipe()?;
        let mut prepared = self.prepare(report)?;
        #[allow(unsafe_code)]
        // SAFETY: the closure runs in the child between fork and exec; it only reads memory prepared above and
        // makes system calls (setsid, write, setns, umask, unshare, mount, mkdir, open, close, symlink, chdir,
        // pivot_root, umount2, setgroups, setresgid, setresuid, prctl, keyctl, close_range); it allocates nothing.
        unsafe {
            command.pre_exec(move || enter(&mut prepared));
        }
        Ok(explanation)
    }

    /// The path below the new root at which `inside` is made before the root becomes `/`.
    fn outside(&self, inside: &Path) -> PathBuf {
        self.root.join(inside.strip_prefix("/").unwrap_or(inside))
    }

    fn prepare(&self, report: OwnedFd) -> Result<Prepared, IsolationError> {
        let cgroup_files = match &self.cgroup {
            Some(cgroup) => cgroup.procs_files()?,
            None => Vec::new(),
        };
        let mut steps: Vec<Planned> = Vec::new();
        let mut made: Vec<PathBuf> = Vec::new();
        // Every directory from the root down to `inside` (exclusive of `inside` unless `last`).
        let mut directories =
            |inside: &Path, last: bool, steps: &mut Vec<Planned>| -> Result<(), IsolationError> {
                let mut ancestors: Vec<&Path> = inside
                    .ancestors()
                    .filter(|a| *a != Path::new("/"))
                    .collect();
                ancestors.reverse();
                if !last {
                    ancestors.pop();
                }
                for ancestor in ancestors {
                    if made.iter().any(|m| m == ancestor) {
                        continue;
                    }
                    made.push(ancestor.to_path_buf());
                    steps.push(Planned {
                        step: Step::Directory(c_path(&self.outside(ancestor))?),
                        failure: c_text(&format!(
                            "preview sandbox: cannot make {}\n",
                            ancestor.display()
                        )),
                    });
                }
                Ok(())
            };
        let bind = |source: &Path,
                    inside: &Path,
                    flags: libc::c_ulong|
         -> Result<Planned, IsolationError> {
            Ok(Planned {
                step: Step::Bind {
                    source: c_path(source)?,
                    target: c_path(&self.outside(inside))?,
                    flags,
                },
                failure: c_text(&format!(
                    "preview sandbox: cannot make {} visible at {}\n",
                    source.display(),
                    inside.display()
                )),
            })
        };
        for entry in &self.system {
            match entry {
                SystemEntry::Directory(path) => {
                    directories(path, true, &mut steps)?;
                    steps.push(bind(path, path, NOSUID_NODEV | libc::MS_RDONLY)?);
                }
                SystemEntry::Link { path, target } => {
                    directories(path, false, &mut steps)?;
                    steps.push(Planned {
                        step: Step::Link {
                            target: c_path(target)?,
                            path: c_path(&self.outside(path))?,
                        },
                        failure: c_text(&format!(
                            "preview sandbox: cannot make the link {}\n",
                            path.display()
                        )),
                    });
                }
            }
        }
        // /proc shows the processes of the sandbox's own user only.
        directories(Path::new("/proc"), true, &mut steps)?;
        steps.push(Planned {
            step: Step::Proc(c_path(&self.outside(Path::new("/proc")))?),
            failure: c_text("preview sandbox: cannot mount /proc\n"),
        });
        directories(Path::new("/sys"), true, &mut steps)?;
        steps.push(Planned {
            step: Step::Sysfs(c_path(&self.outside(Path::new("/sys")))?),
            failure: c_text("preview sandbox: cannot mount /sys\n"),
        });
        // /dev: a few devices, a new /dev/shm, the usual links.
        directories(Path::new("/dev"), true, &mut steps)?;
        steps.push(Planned {
            step: Step::Tmpfs {
                path: c_path(&self.outside(Path::new("/dev")))?,
                options: c_text("mode=0755,size=64k"),
                flags: libc::MS_NOSUID | libc::MS_NOEXEC,
            },
            failure: c_text("preview sandbox: cannot mount /dev\n"),
        });
        for device in DEVICES {
            let inside = Path::new("/dev").join(device);
            steps.push(Planned {
                step: Step::File(c_path(&self.outside(&inside))?),
                failure: c_text(&format!(
                    "preview sandbox: cannot make {}\n",
                    inside.display()
                )),
            });
            // Devices keep working: no `nodev` on these.
            steps.push(bind(&inside, &inside, libc::MS_NOSUID | libc::MS_NOEXEC)?);
        }
        for (link, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            steps.push(Planned {
                step: Step::Link {
                    target: c_text(target),
                    path: c_path(&self.outside(&Path::new("/dev").join(link)))?,
                },
                failure: c_text(&format!("preview sandbox: cannot make /dev/{link}\n")),
            });
        }
        let shm = Path::new("/dev/shm");
        directories(shm, true, &mut steps)?;
        steps.push(Planned {
            step: Step::Tmpfs {
                path: c_path(&self.outside(shm))?,
                options: c_text("mode=1777"),
                flags: NOSUID_NODEV,
            },
            failure: c_text("preview sandbox: cannot mount /dev/shm\n"),
        });
        for given in &self.binds {
            if given.source.is_dir() {
                directories(&given.target, true, &mut steps)?;
            } else {
                directories(&given.target, false, &mut steps)?;
                if !self
                    .system
                    .iter()
                    .any(|s| matches!(s, SystemEntry::Directory(d) if given.target.starts_with(d)))
                {
                    steps.push(Planned {
                        step: Step::File(c_path(&self.outside(&given.target))?),
                        failure: c_text(&format!(
                            "preview sandbox: cannot make {}\n",
                            given.target.display()
                        )),
                    });
                }
            }
            let mut flags = NOSUID_NODEV;
            if !given.writable {
                flags |= libc::MS_RDONLY;
            }
            steps.push(bind(&given.source, &given.target, flags)?);
        }
        Ok(Prepared {
            report,
            cgroup_files,
            netns: self.netns.clone(),
            root: c_path(&self.root)?,
            steps,
            workdir: c_path(&self.workdir)?,
            uid: self.uid,
            gid: self.gid,
            umask: self.umask,
            open_files: crate::privileges::started_with(),
            messages: Messages {
                session: c_text(
                    "preview sandbox: cannot start a session of its own or let go of the daemon's descriptors\n",
                ),
                cgroup: c_text("preview sandbox: cannot join the cgroup\n"),
                netns: c_text(
                    "preview sandbox: cannot enter the environment's network namespace\n",
                ),
                unshare: c_text("preview sandbox: cannot make a mount namespace\n"),
                private: c_text("preview sandbox: cannot make the mounts private\n"),
                pivot: c_text(&format!(
                    "preview sandbox: cannot make {} the root\n",
                    self.root.display()
                )),
                user: c_text(&format!(
                    "preview sandbox: cannot become user {} and group {}\n",
                    self.uid, self.gid
                )),
                workdir: c_text(&format!(
                    "preview sandbox: cannot change into {}\n",
                    self.workdir.display()
                )),
            },
        })
    }
}

/// Sends `message` to `report` and returns the error of the call that failed. (A socket, so that a parent that no
/// longer listens costs the child no SIGPIPE.)
#[allow(unsafe_code)]
fn fail(report: &OwnedFd, message: &CStr) -> std::io::Error {
    let error = std::io::Error::last_os_error();
    let bytes = message.to_bytes();
    // SAFETY: send(2) reads `bytes.len()` bytes from a live buffer into a socket we own.
    unsafe {
        libc::send(
            report.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_NOSIGNAL,
        );
    }
    error
}

/// Why a sandboxed process could not be started: the step its child was at, told through a socket that closes
/// when the process starts.
pub struct Explanation(File);

impl Explanation {
    /// What the child said, once `spawn` failed; `None` if it said nothing.
    pub fn take(&self) -> Option<String> {
        use std::io::Read;
        let mut said = Vec::new();
        let _ = (&self.0).read_to_end(&mut said);
        let said = String::from_utf8_lossy(&said).trim().to_owned();
        (!said.is_empty()).then_some(said)
    }
}

/// A connected pair of sockets whose ends both close on `exec`: the parent's, non-blocking, explains; the child
/// writes to the other.
#[allow(unsafe_code)]
fn report_pipe() -> Result<(Explanation, OwnedFd), IsolationError> {
    let mut ends = [0 as libc::c_int; 2];
    // SAFETY: socketpair(2) writes two descriptors into the array we own; each is owned once below.
    let (read, write) = unsafe {
        let kind = libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
        if libc::socketpair(libc::AF_UNIX, kind, 0, ends.as_mut_ptr()) != 0 {
            return Err(IsolationError::io(
                "making a socket pair",
                std::io::Error::last_os_error(),
            ));
        }
        (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1]))
    };
    Ok((Explanation(File::from(read)), write))
}

#[allow(unsafe_code)]
fn mount(
    source: Option<&CStr>,
    target: &CStr,
    kind: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> bool {
    let pointer = |s: Option<&CStr>| s.map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: every pointer is null or points at a NUL-terminated string that outlives the call.
    unsafe {
        libc::mount(
            pointer(source),
            target.as_ptr(),
            pointer(kind),
            flags,
            pointer(data).cast(),
        ) == 0
    }
}

/// A new session, every descriptor beyond the standard three closed on `exec`, and the open-files limit the daemon
/// started with: what every process the runtime starts needs, in a sandbox or not (see [`detach`]).
#[allow(unsafe_code)]
fn leave_the_daemon(open_files: Option<libc::rlimit>) -> std::io::Result<()> {
    // SAFETY: setsid(2), close_range(2) and setrlimit(2) take plain integers and a struct we own.
    unsafe {
        if libc::setsid() < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let flags = libc::CLOSE_RANGE_CLOEXEC as libc::c_int;
        if libc::close_range(3, libc::c_uint::MAX, flags) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if let Some(limit) = open_files
            && libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Makes a process that runs outside any sandbox (the daemon is not root) leave the daemon's session and not
/// inherit its descriptors; its process group is then its own, led by it.
pub fn detach(command: &mut tokio::process::Command) {
    let open_files = crate::privileges::started_with();
    #[allow(unsafe_code)]
    // SAFETY: the closure makes three system calls and allocates nothing.
    unsafe {
        command.pre_exec(move || leave_the_daemon(open_files));
    }
}

/// Runs in the child after `fork`: see the module's documentation for the order and why.
#[allow(unsafe_code)]
fn enter(p: &mut Prepared) -> std::io::Result<()> {
    let m = &p.messages;
    if leave_the_daemon(p.open_files).is_err() {
        return Err(fail(&p.report, &m.session));
    }
    for file in &p.cgroup_files {
        // SAFETY: write(2) of one byte from a static buffer to a descriptor we own.
        if unsafe { libc::write(file.as_raw_fd(), b"0".as_ptr().cast(), 1) } != 1 {
            return Err(fail(&p.report, &m.cgroup));
        }
    }
    if let Some(netns) = &p.netns {
        // SAFETY: setns(2) with a descriptor we own.
        if unsafe { libc::setns(netns.fd().as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(fail(&p.report, &m.netns));
        }
    }
    // SAFETY: umask(2) cannot fail. The mount points made below get their modes as written, not the daemon's
    // private umask, and so does what the process creates.
    unsafe {
        libc::umask(p.umask as libc::mode_t);
    }
    // SAFETY: unshare(2) with flags only.
    if unsafe { libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWIPC) } != 0 {
        return Err(fail(&p.report, &m.unshare));
    }
    if !mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None) {
        return Err(fail(&p.report, &m.private));
    }
    let tmpfs = c"tmpfs";
    if !mount(
        Some(tmpfs),
        &p.root,
        Some(tmpfs),
        NOSUID_NODEV,
        Some(c"mode=0755,size=1m"),
    ) {
        return Err(fail(&p.report, &m.pivot));
    }
    for planned in &p.steps {
        if !take(&planned.step) {
            return Err(fail(&p.report, &planned.failure));
        }
    }
    // SAFETY: chdir(2), pivot_root(2) with the same directory twice (the old root ends up on top of the new one,
    // and is then detached), umount2(2): NUL-terminated paths and plain integers.
    unsafe {
        if libc::chdir(p.root.as_ptr()) != 0
            || libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) != 0
            || libc::umount2(c".".as_ptr(), libc::MNT_DETACH) != 0
            || libc::chdir(c"/".as_ptr()) != 0
        {
            return Err(fail(&p.report, &m.pivot));
        }
    }
    // SAFETY: setgroups(2) with one id read from our memory, setresgid(2), setresuid(2) and prctl(2) with plain
    // integers.
    unsafe {
        let groups = [p.gid as libc::gid_t];
        if libc::setgroups(1, groups.as_ptr()) != 0
            || libc::setresgid(p.gid, p.gid, p.gid) != 0
            || libc::setresuid(p.uid, p.uid, p.uid) != 0
            || libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
        {
            return Err(fail(&p.report, &m.user));
        }
    }
    // A session keyring of its own: the daemon's (a service manager gives services one) is no channel between
    // environments. A kernel without keyrings has nothing to share.
    // SAFETY: keyctl(2) with plain integers.
    unsafe {
        libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, 0usize);
    }
    // SAFETY: chdir(2) of a NUL-terminated path.
    if unsafe { libc::chdir(p.workdir.as_ptr()) } != 0 {
        return Err(fail(&p.report, &m.workdir));
    }
    Ok(())
}

/// One step of making the filesystem; `false` if its system call failed.
#[allow(unsafe_code)]
fn take(step: &Step) -> bool {
    match step {
        Step::Directory(path) => {
            // SAFETY: mkdir(2) of a NUL-terminated path.
            let made = unsafe { libc::mkdir(path.as_ptr(), 0o755) } == 0;
            made || std::io::Error::last_os_error().raw_os_error() == Some(libc::EEXIST)
        }
        Step::File(path) => {
            // SAFETY: open(2) of a NUL-terminated path, closed at once.
            let fd = unsafe {
                libc::open(
                    path.as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                    0o644,
                )
            };
            if fd < 0 {
                return false;
            }
            // SAFETY: close(2) of the descriptor just opened.
            unsafe {
                libc::close(fd);
            }
            true
        }
        // SAFETY: symlink(2) of two NUL-terminated paths.
        Step::Link { target, path } => unsafe {
            libc::symlink(target.as_ptr(), path.as_ptr()) == 0
        },
        Step::Tmpfs {
            path,
            options,
            flags,
        } => mount(Some(c"tmpfs"), path, Some(c"tmpfs"), *flags, Some(options)),
        Step::Bind {
            source,
            target,
            flags,
        } => {
            mount(
                Some(source),
                target,
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            ) && mount(
                None,
                target,
                None,
                libc::MS_BIND | libc::MS_REMOUNT | flags,
                None,
            )
        }
        Step::Sysfs(path) => {
            let flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
            mount(Some(c"sysfs"), path, Some(c"sysfs"), flags, None)
        }
        Step::Proc(path) => {
            let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
            mount(
                Some(c"proc"),
                path,
                Some(c"proc"),
                flags,
                Some(c"hidepid=invisible"),
            ) || mount(
                Some(c"proc"),
                path,
                Some(c"proc"),
                flags,
                Some(c"hidepid=2"),
            )
        }
    }
}
