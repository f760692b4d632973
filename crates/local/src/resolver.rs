//! Name resolution inside environments' network namespaces. Sandboxes get a `resolv.conf` of their own: the
//! host's, or — when the host's names only a resolver on its own loopback (systemd-resolved's 127.0.0.53), which
//! a namespace's loopback does not have — the upstream servers'. The packet filter lets environments reach these
//! servers on port 53 even where they lie in a private network.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The file systemd-resolved keeps with the upstream servers.
const UPSTREAM: &str = "/run/systemd/resolve/resolv.conf";

fn nameservers_in(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().parse().ok())
        .collect()
}

/// The resolvers an environment uses: the host's, or the upstream ones when the host's are on its loopback.
pub(crate) fn nameservers() -> Vec<IpAddr> {
    let host = nameservers_in(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default());
    if host.iter().any(|ip| !ip.is_loopback()) {
        return host;
    }
    nameservers_in(&std::fs::read_to_string(UPSTREAM).unwrap_or_default())
        .into_iter()
        .filter(|ip| !ip.is_loopback())
        .collect()
}

/// The `resolv.conf` sandboxes see, as a plain file in `runtime_dir`, and where they see it: the host's own
/// content, or the upstream servers' when the host names only a resolver on its loopback; bound where
/// `/etc/resolv.conf` leads (it is often a link into `/run`, which a sandbox does not have). `None` when the host
/// has no `/etc/resolv.conf`.
pub(crate) fn for_sandboxes(runtime_dir: &Path) -> Result<Option<(PathBuf, PathBuf)>, String> {
    let Ok(host) = std::fs::read_to_string("/etc/resolv.conf") else {
        return Ok(None);
    };
    let target = std::fs::canonicalize("/etc/resolv.conf")
        .unwrap_or_else(|_| PathBuf::from("/etc/resolv.conf"));
    let content = if nameservers_in(&host).iter().any(|ip| !ip.is_loopback()) {
        host
    } else {
        std::fs::read_to_string(UPSTREAM).unwrap_or(host)
    };
    let path = runtime_dir.join("resolv.conf");
    crate::records::write_atomically(&path, content.as_bytes())?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
        .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
    Ok(Some((path, target)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_are_read_from_resolv_conf() {
        let text = "# generated\nnameserver 127.0.0.53\noptions edns0\nnameserver 10.255.255.53\nsearch lan\n";
        assert_eq!(
            nameservers_in(text),
            vec![
                "127.0.0.53".parse::<IpAddr>().expect("ip"),
                "10.255.255.53".parse().expect("ip")
            ]
        );
        assert!(nameservers_in("").is_empty());
    }
}
