//! Which TCP ports a set of processes listens on, from `/proc`: the sockets their descriptors hold, looked up in
//! the TCP tables of their network namespace. Used to tell an app that listens on the wrong port.

use std::collections::BTreeSet;

/// The TCP ports the processes `pids` listen on (IPv4 and IPv6), sorted.
pub(crate) fn listening_ports(pids: &[u32]) -> Vec<u16> {
    let mut inodes = BTreeSet::new();
    for pid in pids {
        let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for entry in entries.flatten() {
            if let Ok(target) = std::fs::read_link(entry.path())
                && let Some(inode) = target
                    .to_str()
                    .and_then(|t| t.strip_prefix("socket:["))
                    .and_then(|t| t.strip_suffix(']'))
                    .and_then(|t| t.parse::<u64>().ok())
            {
                inodes.insert(inode);
            }
        }
    }
    let mut ports = BTreeSet::new();
    if inodes.is_empty() {
        return Vec::new();
    }
    // Each process sees its own network namespace's tables here; the processes of one app share one.
    for pid in pids.iter().take(1) {
        for table in ["tcp", "tcp6"] {
            let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
                continue;
            };
            ports.extend(listeners(&text, &inodes));
        }
    }
    ports.into_iter().collect()
}

/// The local ports of the sockets in `table` (`/proc/net/tcp` format) that listen and whose inode is in `inodes`.
fn listeners(table: &str, inodes: &BTreeSet<u64>) -> Vec<u16> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            if *state != "0A" || !inodes.contains(&inode.parse::<u64>().ok()?) {
                return None;
            }
            u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_sockets_are_read_from_the_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 999 1 0000000000000000 100 0 0 10 0
   2: 0100007F:0BB9 0100007F:8000 01 00000000:00000000 00:00000000 00000000  1000        0 4243 1 0000000000000000 100 0 0 10 0
";
        let ours = BTreeSet::from([4242, 4243]);
        assert_eq!(listeners(table, &ours), vec![3000]);
    }

    #[test]
    fn a_process_of_ours_listening_is_found() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        assert!(listening_ports(&[std::process::id()]).contains(&port));
        drop(listener);
        assert!(!listening_ports(&[std::process::id()]).contains(&port));
    }
}
