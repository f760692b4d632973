//! Processes a previous run of the daemon started and left behind (it was killed, or the machine's init kept
//! them): found by the marker every supervised process carries in its environment, and stopped.

use std::time::Duration;

use preview_isolation::signals::{SIGKILL, SIGTERM, group_alive, signal_group};

/// The variable every process the local runtime starts carries: `PREVIEW_SUPERVISOR=<marker>`.
pub(crate) const MARKER_VARIABLE: &str = "PREVIEW_SUPERVISOR";

/// A marker unique to one runtime directory, so that two daemons on one machine leave each other's processes,
/// cgroups, packet-filter tables and accounts alone: made once, at random, and kept in the directory, so that the
/// same directory spelled otherwise later is still the same daemon's.
pub(crate) fn marker_for(dir: &std::path::Path) -> Result<String, String> {
    let path = dir.join("marker");
    if let Ok(kept) = std::fs::read_to_string(&path)
        && !kept.trim().is_empty()
    {
        return Ok(kept.trim().to_owned());
    }
    // Random, so that no two data directories — a copy included, once it has made its own — share one.
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| std::io::Read::read_exact(&mut random, &mut bytes))
        .map_err(|e| format!("cannot read random bytes: {e}"))?;
    let marker = preview_secrets::hex::encode(&bytes);
    crate::records::write_atomically(&path, marker.as_bytes())?;
    Ok(marker)
}

/// The process groups whose processes carry `marker`.
pub(crate) fn marked_groups(marker: &str) -> Vec<u32> {
    let wanted = format!("{MARKER_VARIABLE}={marker}");
    let mut groups = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return groups;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if !environ.split(|b| *b == 0).any(|v| v == wanted.as_bytes()) {
            continue;
        }
        if let Some(group) = process_group(pid)
            && !groups.contains(&group)
        {
            groups.push(group);
        }
    }
    groups
}

/// The fifth field of `/proc/<pid>/stat`, counted after the command name in parentheses.
fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after_name) = stat.rsplit_once(')')?;
    after_name.split_whitespace().nth(2)?.parse().ok()
}

/// SIGTERM to every group, `grace`, then SIGKILL to what is left; returns how many groups there were.
pub(crate) async fn stop_groups(groups: &[u32], grace: Duration) -> usize {
    for group in groups {
        signal_group(*group, SIGTERM);
    }
    let deadline = tokio::time::Instant::now() + grace;
    while groups.iter().any(|g| group_alive(*g)) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for group in groups {
        signal_group(*group, SIGKILL);
    }
    groups.len()
}
