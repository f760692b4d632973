//! Who the daemon is, and the file mode its own files get.

/// Whether the daemon runs as root, the only case in which it can isolate environments.
#[allow(unsafe_code)]
pub fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// Makes every file and directory the daemon creates from now on readable by its own user only (umask 077):
/// its store, keys, logs and records hold secrets. What others must read is handed to them explicitly.
#[allow(unsafe_code)]
pub fn restrict_umask() {
    // SAFETY: umask(2) cannot fail and touches no memory.
    unsafe {
        libc::umask(0o077);
    }
}

/// The daemon's user, by name when it has a passwd entry, else by id: for messages.
pub fn user_name() -> String {
    #[allow(unsafe_code)]
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    let uid = unsafe { libc::geteuid() };
    crate::accounts::account(uid).map_or_else(|| format!("uid {uid}"), |a| a.name)
}

/// The open-files limit the daemon started with, which processes it starts get back.
static STARTED_WITH: std::sync::OnceLock<libc::rlimit> = std::sync::OnceLock::new();

/// Raises the daemon's own open-files limit to its hard limit — it holds two descriptors for every connection it
/// forwards or proxies, for every environment — and returns the new limit. Processes it starts get the limit it
/// started with (see [`started_with`]).
#[allow(unsafe_code)]
pub fn raise_open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) and setrlimit(2) read and write a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        let _ = STARTED_WITH.set(limit);
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            return raised.rlim_cur;
        }
    }
    limit.rlim_cur
}

/// The open-files limit the daemon started with, when it raised its own.
pub(crate) fn started_with() -> Option<libc::rlimit> {
    STARTED_WITH.get().copied()
}
