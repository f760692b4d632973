//! Signals to processes and to whole process groups.

/// Sends `signal` to every process of the group `group`; `false` if none is left.
#[allow(unsafe_code)]
pub fn signal_group(group: u32, signal: i32) -> bool {
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

/// Sends `signal` to the process `pid`; `false` if it is gone (or not ours to signal).
#[allow(unsafe_code)]
pub fn signal_process(pid: u32, signal: i32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    if pid <= 1 {
        // 0, -1 and 1 would address our own group, every process, or init: never.
        return false;
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    unsafe { libc::kill(pid, signal) == 0 }
}

/// True while any process of the group exists.
pub fn group_alive(group: u32) -> bool {
    signal_group(group, 0)
}

pub const SIGTERM: i32 = libc::SIGTERM;
pub const SIGKILL: i32 = libc::SIGKILL;

/// Restores the default action of SIGPIPE (ending the process), which Rust programs start with ignored: a command
/// whose output goes to `| head` then ends quietly when `head` stops reading. Never for a server, whose peers may
/// go away at any time.
#[allow(unsafe_code)]
pub fn end_on_closed_pipe() {
    // SAFETY: setting a signal's disposition to its default has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
