//! The sandbox a process enters between `fork` and `exec`, while it is still root: into its cgroups (so that none
//! of its work escapes their limits), into its environment's network namespace, into a mount namespace (and IPC
//! namespace) of its own in which a fresh, small tmpfs covers `root` and only the paths bound below it — its
//! checkout, its home, its cache — are visible, with `/tmp` and `/var/tmp` its own and `/dev/shm` new; then
//! down to its user and group for good (no supplementary groups, no new privileges through set-user-id
//! programs), and into its working directory as that user.
//!
//! Everything the child does is prepared by the parent: after `fork` a multi-threaded parent's child may only
//! make system calls, so the paths and messages are made here and the closure only reads them.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::netns::Netns;
use crate::{Cgroup, IsolationError};

/// A host path made visible inside the sandbox at `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    pub target: PathBuf,
    pub writable: bool,
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
    /// An existing, empty directory of the host; inside the sandbox a tmpfs covers it, and the binds are made
    /// below it (targets elsewhere, such as `/tmp`, must exist).
    pub root: PathBuf,
    pub binds: Vec<Bind>,
    /// Covered by a fresh tmpfs each (`/dev/shm`).
    pub fresh: Vec<PathBuf>,
    /// Where the process starts, as seen inside.
    pub workdir: PathBuf,
    pub umask: u32,
}

fn c_path(path: &Path) -> Result<CString, IsolationError> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| IsolationError::Unavailable(format!("{} has a NUL byte", path.display())))
}

fn c_text(text: &str) -> CString {
    CString::new(text.replace('\0', "")).unwrap_or_default()
}

/// One mount the child makes.
struct Mount {
    source: CString,
    target: CString,
    writable: bool,
    failure: CString,
}

/// What the child needs, made before `fork`.
struct Prepared {
    cgroup_files: Vec<File>,
    netns: Option<Arc<Netns>>,
    root: CString,
    directories: Vec<CString>,
    files: Vec<CString>,
    binds: Vec<Mount>,
    /// A detached copy of each bind's source, taken before any mount can hide it (a source under `/tmp` is hidden
    /// once `/tmp` is covered).
    trees: Vec<libc::c_int>,
    fresh: Vec<CString>,
    workdir: CString,
    uid: u32,
    gid: u32,
    umask: u32,
    messages: Messages,
}

struct Messages {
    cgroup: CString,
    netns: CString,
    unshare: CString,
    private: CString,
    root: CString,
    directory: CString,
    fresh: CString,
    user: CString,
    workdir: CString,
}

impl Sandbox {
    /// Makes `command` enter this sandbox when it is spawned. The command must not be given a working directory
    /// of its own: the sandbox changes into `workdir` once its mounts exist.
    pub fn apply(&self, command: &mut tokio::process::Command) -> Result<(), IsolationError> {
        let mut prepared = self.prepare()?;
        #[allow(unsafe_code)]
        // SAFETY: the closure runs in the child between fork and exec; it only reads memory prepared above (and
        // writes descriptors into a vector sized beforehand) and makes system calls (write, setns, unshare, mount,
        // open_tree, move_mount, mkdir, open, close, umask, setgroups, setresgid, setresuid, prctl, chdir); it
        // allocates nothing.
        unsafe {
            command.pre_exec(move || enter(&mut prepared));
        }
        Ok(())
    }

    fn prepare(&self) -> Result<Prepared, IsolationError> {
        let cgroup_files = match &self.cgroup {
            Some(cgroup) => cgroup.procs_files()?,
            None => Vec::new(),
        };
        let mut directories: Vec<PathBuf> = Vec::new();
        let mut files: Vec<PathBuf> = Vec::new();
        let mut binds = Vec::new();
        for bind in &self.binds {
            if bind.target.starts_with(&self.root) {
                let mut ancestors: Vec<&Path> = bind
                    .target
                    .ancestors()
                    .skip(1)
                    .take_while(|a| a.starts_with(&self.root) && *a != self.root)
                    .collect();
                ancestors.reverse();
                for ancestor in ancestors {
                    if !directories.iter().any(|d| d == ancestor) {
                        directories.push(ancestor.to_path_buf());
                    }
                }
                if bind.source.is_dir() {
                    if !directories.contains(&bind.target) {
                        directories.push(bind.target.clone());
                    }
                } else {
                    files.push(bind.target.clone());
                }
            }
            binds.push(Mount {
                source: c_path(&bind.source)?,
                target: c_path(&bind.target)?,
                writable: bind.writable,
                failure: c_text(&format!(
                    "preview sandbox: cannot make {} visible at {}\n",
                    bind.source.display(),
                    bind.target.display()
                )),
            });
        }
        Ok(Prepared {
            cgroup_files,
            netns: self.netns.clone(),
            root: c_path(&self.root)?,
            directories: directories
                .iter()
                .map(|d| c_path(d))
                .collect::<Result<_, _>>()?,
            files: files.iter().map(|f| c_path(f)).collect::<Result<_, _>>()?,
            trees: vec![-1; binds.len()],
            binds,
            fresh: self
                .fresh
                .iter()
                .map(|f| c_path(f))
                .collect::<Result<_, _>>()?,
            workdir: c_path(&self.workdir)?,
            uid: self.uid,
            gid: self.gid,
            umask: self.umask,
            messages: Messages {
                cgroup: c_text("preview sandbox: cannot join the cgroup\n"),
                netns: c_text(
                    "preview sandbox: cannot enter the environment's network namespace\n",
                ),
                unshare: c_text("preview sandbox: cannot make a mount namespace\n"),
                private: c_text("preview sandbox: cannot make the mounts private\n"),
                root: c_text(&format!(
                    "preview sandbox: cannot mount a tmpfs on {}\n",
                    self.root.display()
                )),
                directory: c_text("preview sandbox: cannot make a mount point\n"),
                fresh: c_text("preview sandbox: cannot mount a fresh tmpfs\n"),
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

/// Writes `message` to standard error (the process's log) and returns the error of the call that failed.
#[allow(unsafe_code)]
fn fail(message: &CString) -> std::io::Error {
    let error = std::io::Error::last_os_error();
    let bytes = message.as_bytes();
    // SAFETY: write(2) reads `bytes.len()` bytes from a live buffer.
    unsafe {
        libc::write(2, bytes.as_ptr().cast(), bytes.len());
    }
    error
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

/// Runs in the child after `fork`: see the module's documentation for the order and why.
#[allow(unsafe_code)]
fn enter(p: &mut Prepared) -> std::io::Result<()> {
    let m = &p.messages;
    for file in &p.cgroup_files {
        // SAFETY: write(2) of one byte from a static buffer to a descriptor we own.
        if unsafe { libc::write(file.as_raw_fd(), b"0".as_ptr().cast(), 1) } != 1 {
            return Err(fail(&m.cgroup));
        }
    }
    if let Some(netns) = &p.netns {
        let fd: RawFd = netns.fd().as_raw_fd();
        // SAFETY: setns(2) with a descriptor we own.
        if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
            return Err(fail(&m.netns));
        }
    }
    // SAFETY: umask(2) cannot fail. The mount points made below get their modes as written, not the daemon's
    // private umask, and so does what the process creates.
    unsafe {
        libc::umask(p.umask as libc::mode_t);
    }
    // SAFETY: unshare(2) with flags only.
    if unsafe { libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWIPC) } != 0 {
        return Err(fail(&m.unshare));
    }
    let tmpfs = c"tmpfs";
    if !mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None) {
        return Err(fail(&m.private));
    }
    for (bind, tree) in p.binds.iter().zip(p.trees.iter_mut()) {
        // SAFETY: open_tree(2) of a NUL-terminated path; it returns a descriptor or -1.
        *tree = unsafe {
            libc::syscall(
                libc::SYS_open_tree,
                libc::AT_FDCWD,
                bind.source.as_ptr(),
                (libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC) as libc::c_int
                    | libc::AT_RECURSIVE,
            ) as libc::c_int
        };
        if *tree < 0 {
            return Err(fail(&bind.failure));
        }
    }
    let hidden = libc::MS_NOSUID | libc::MS_NODEV;
    if !mount(
        Some(tmpfs),
        &p.root,
        Some(tmpfs),
        hidden,
        Some(c"mode=0755,size=1m"),
    ) {
        return Err(fail(&m.root));
    }
    for directory in &p.directories {
        // SAFETY: mkdir(2) of a NUL-terminated path.
        if unsafe { libc::mkdir(directory.as_ptr(), 0o755) } != 0
            && std::io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST)
        {
            return Err(fail(&m.directory));
        }
    }
    for file in &p.files {
        // SAFETY: open(2) of a NUL-terminated path, closed at once.
        let fd = unsafe {
            libc::open(
                file.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                0o644,
            )
        };
        if fd < 0 {
            return Err(fail(&m.directory));
        }
        // SAFETY: close(2) of the descriptor just opened.
        unsafe {
            libc::close(fd);
        }
    }
    for (bind, tree) in p.binds.iter().zip(p.trees.iter()) {
        // SAFETY: move_mount(2) of a descriptor we own to a NUL-terminated path, then close(2) of it.
        let moved = unsafe {
            let moved = libc::syscall(
                libc::SYS_move_mount,
                *tree,
                c"".as_ptr(),
                libc::AT_FDCWD,
                bind.target.as_ptr(),
                libc::MOVE_MOUNT_F_EMPTY_PATH,
            );
            libc::close(*tree);
            moved
        };
        if moved != 0 {
            return Err(fail(&bind.failure));
        }
        let mut flags = libc::MS_BIND | libc::MS_REMOUNT | hidden;
        if !bind.writable {
            flags |= libc::MS_RDONLY;
        }
        if !mount(None, &bind.target, None, flags, None) {
            return Err(fail(&bind.failure));
        }
    }
    for target in &p.fresh {
        if !mount(Some(tmpfs), target, Some(tmpfs), hidden, Some(c"mode=1777")) {
            return Err(fail(&m.fresh));
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
            return Err(fail(&m.user));
        }
    }
    // SAFETY: chdir(2) of a NUL-terminated path.
    if unsafe { libc::chdir(p.workdir.as_ptr()) } != 0 {
        return Err(fail(&m.workdir));
    }
    Ok(())
}
