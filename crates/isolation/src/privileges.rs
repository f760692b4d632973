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
