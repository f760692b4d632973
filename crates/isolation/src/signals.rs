//! Signals to whole process groups: the one place this crate needs a system call std does not offer.

/// Sends `signal` to every process of the group `group`; `false` if none is left.
#[allow(unsafe_code)]
pub(crate) fn signal_group(group: u32, signal: i32) -> bool {
    let Ok(group) = i32::try_from(group) else {
        return false;
    };
    if group <= 1 {
        // 0 and 1 would address our own group or every process: never.
        return false;
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; a negative pid addresses the group.
    unsafe { libc::kill(-group, signal) == 0 }
}

/// True while any process of the group exists.
pub(crate) fn group_alive(group: u32) -> bool {
    signal_group(group, 0)
}

pub(crate) const SIGTERM: i32 = libc::SIGTERM;
pub(crate) const SIGKILL: i32 = libc::SIGKILL;
