//! What the gateway allows a client or an app: how long it waits on them, how much it holds for them, and which
//! peers it believes about where a request came from.

use std::time::Duration;

use crate::forwarding_headers::IpRange;
use crate::waking::Waker;

/// Everything a [`crate::Proxy`] is configured with; `Config::default()` is what the daemon runs with unless told
/// otherwise.
#[derive(Debug, Clone)]
pub struct Config {
    pub timeouts: Timeouts,
    pub limits: Limits,
    /// Peers whose forwarding headers (`X-Forwarded-*`, `Forwarded`, `X-Real-IP`) are kept: another proxy in front
    /// of the gateway. From anyone else they are replaced or removed, so that an app never believes a client about
    /// its own address.
    pub trusted_proxies: Vec<IpRange>,
    /// Where HTTPS is served: plain-HTTP requests for protected routes are redirected there, so that a credential
    /// never travels in clear more than once.
    pub https_port: u16,
    /// With a value, HTTPS answers of protected routes carry `Strict-Transport-Security` for that long.
    pub hsts: Option<Duration>,
    /// Wakes a sleeping environment when a request comes for it; without one, sleeping routes answer 503.
    pub waker: Option<Waker>,
    /// How long a request for a sleeping environment waits for it to wake; past it, a browser gets a page that
    /// reloads itself and other clients a 503, both with `Retry-After`.
    pub wake_timeout: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            timeouts: Timeouts::default(),
            limits: Limits::default(),
            trusted_proxies: Vec::new(),
            https_port: 443,
            hsts: None,
            waker: None,
            wake_timeout: Duration::from_secs(30),
        }
    }
}

/// How long the gateway waits on a client before it closes the connection, so that clients that open connections
/// and then say nothing (or say it very slowly, or read nothing) cannot use them all up.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// For the TLS handshake.
    pub handshake: Duration,
    /// For the head of an HTTP/1.1 request, counted from when the connection opened or the previous answer went
    /// out: a keep-alive connection left idle this long is closed too.
    pub request_head: Duration,
    /// Between two pieces of a request's body: a client that stops sending its body gets 408 and is let go.
    pub request_body: Duration,
    /// For a write to a client to make progress: a client that reads nothing of its answer this long is let go.
    pub write: Duration,
    /// For an HTTP/2 connection with no request open.
    pub idle: Duration,
    /// An HTTP/2 client that sent nothing this long is pinged, and let go without an answer within as long again.
    pub ping: Duration,
    /// For an upgraded connection (a WebSocket) on which neither side sent a byte.
    pub tunnel: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            handshake: Duration::from_secs(10),
            request_head: Duration::from_secs(60),
            request_body: Duration::from_secs(60),
            write: Duration::from_secs(60),
            idle: Duration::from_secs(120),
            ping: Duration::from_secs(30),
            tunnel: Duration::from_secs(300),
        }
    }
}

/// How much the gateway holds at once, so that neither a client nor an app can make it hold more.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Client connections served at once, across every listener of one [`crate::Proxy`]; the next waits in the
    /// listen backlog until one closes. `None`: worked out from the descriptor limit when the proxy is made (after
    /// the daemon raised it), a quarter of it and at most 16,384.
    pub connections: Option<usize>,
    /// Requests in flight to one backend at once (each needs a connection to it); a request beyond waits a little,
    /// then gets 503.
    pub per_backend: usize,
    /// Bytes of a request head (request line and headers); beyond, the client gets 431.
    pub request_head: usize,
    /// Bytes of an app's answer head; beyond, the client gets 502.
    pub answer_head: usize,
    /// Requests open at once on one HTTP/2 connection.
    pub streams: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            connections: None,
            per_backend: 256,
            request_head: 64 * 1024,
            answer_head: 64 * 1024,
            streams: 128,
        }
    }
}

/// The cap for this process's descriptor limit as it is now.
pub(crate) fn connection_cap_now() -> usize {
    connection_cap(open_files_limit())
}

/// At most this many client connections whatever the descriptor limit.
const MAX_CONNECTIONS: usize = 16 * 1024;

/// How many client connections fit in a process allowed `open_files` descriptors: a client connection holds its
/// own and (most of the time) one to its app, and the gateway takes at most half of the daemon's descriptors, so
/// that the API, the store, logs and environments' forwarded ports still get theirs when every client connection
/// is taken.
fn connection_cap(open_files: u64) -> usize {
    usize::try_from(open_files / 4)
        .unwrap_or(MAX_CONNECTIONS)
        .clamp(16, MAX_CONNECTIONS)
}

/// The process's soft limit on open descriptors (which the daemon raises to its hard limit before the gateway
/// starts), read from `/proc/self/limits`; 1,024 (the usual default) when it cannot be read.
fn open_files_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| soft_open_files(&text))
        .unwrap_or(1024)
}

fn soft_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    match soft {
        "unlimited" => Some(u64::MAX),
        number => number.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_leaves_half_the_descriptors_to_the_rest_of_the_daemon() {
        for (open_files, cap) in [
            (1024, 256),
            (20_000, 5_000),
            (65_536, 16_384),
            (1_048_576, 16_384),
            (u64::MAX, 16_384),
            (10, 16),
        ] {
            assert_eq!(connection_cap(open_files), cap, "{open_files}");
        }
    }

    #[test]
    fn the_soft_limit_is_read_from_proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max processes             127441               127441               processes \n\
                    Max open files            20000                524288               files     \n";
        assert_eq!(soft_open_files(text), Some(20_000));
        assert_eq!(
            soft_open_files(
                "Max open files            unlimited            unlimited            files"
            ),
            Some(u64::MAX)
        );
        assert_eq!(soft_open_files("nothing"), None);
        assert!(open_files_limit() > 0);
    }
}
