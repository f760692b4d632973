//! Readiness: an HTTP GET of a path must answer 2xx or 3xx, or a TCP connection must be accepted — in the
//! daemon's network, or in an environment's network namespace.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use preview_isolation::Netns;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Http { path: String },
    Tcp,
}

/// Why a probe failed: what people read, and the HTTP status when the app answered one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeFailure {
    pub message: String,
    pub status: Option<u16>,
}

impl ProbeFailure {
    fn new(message: String) -> ProbeFailure {
        ProbeFailure {
            message,
            status: None,
        }
    }
}

/// One probe of `address`, bounded by `timeout`; the error says what was wrong.
pub async fn probe_once(
    probe: &Probe,
    address: SocketAddr,
    timeout: Duration,
) -> Result<(), String> {
    probe_in(None, probe, address, timeout).await
}

/// One probe of `address` in `network` (the daemon's when `None`), bounded by `timeout`.
pub async fn probe_in(
    network: Option<&Netns>,
    probe: &Probe,
    address: SocketAddr,
    timeout: Duration,
) -> Result<(), String> {
    probe_status(network, probe, address, timeout)
        .await
        .map_err(|failure| failure.message)
}

/// [`probe_in`], saying which status an app that answered gave.
pub async fn probe_status(
    network: Option<&Netns>,
    probe: &Probe,
    address: SocketAddr,
    timeout: Duration,
) -> Result<(), ProbeFailure> {
    match tokio::time::timeout(timeout, attempt(network, probe, address)).await {
        Ok(result) => result,
        Err(_) => Err(ProbeFailure::new(format!(
            "no answer from {address} within {} ms",
            timeout.as_millis()
        ))),
    }
}

/// The most of an answer's body a probe reads (counting it, not keeping it); an app that sends more is cut off there.
const MOST_READ: usize = 16 * 1024 * 1024;

async fn attempt(
    network: Option<&Netns>,
    probe: &Probe,
    address: SocketAddr,
) -> Result<(), ProbeFailure> {
    let mut stream = crate::forward::connect(address, network)
        .await
        .map_err(|e| ProbeFailure::new(format!("cannot connect to {address}: {e}")))?;
    let Probe::Http { path } = probe else {
        return Ok(());
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: preview-health\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.map_err(|e| {
        ProbeFailure::new(format!("cannot send the health request to {address}: {e}"))
    })?;
    // The whole answer is read before the connection is closed: closing with unread bytes resets the connection,
    // which apps log as an error of theirs.
    let mut answer = Vec::with_capacity(256);
    let mut buffer = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            break Some(end + 4);
        }
        if answer.len() > 64 * 1024 {
            break None;
        }
        let read = stream
            .read(&mut buffer)
            .await
            .map_err(|e| ProbeFailure::new(format!("reading the answer from {address}: {e}")))?;
        if read == 0 {
            break None;
        }
        answer.extend_from_slice(&buffer[..read]);
    };
    let line = String::from_utf8_lossy(&answer[..answer.len().min(1024)]).into_owned();
    let status = line
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("HTTP/1."))
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| ProbeFailure::new(format!("GET {path} on {address} did not answer HTTP")))?;
    if let Some(head_end) = head_end {
        let head = String::from_utf8_lossy(&answer[..head_end]).to_ascii_lowercase();
        let length = head.lines().find_map(|l| {
            l.strip_prefix("content-length:")
                .and_then(|v| v.trim().parse::<usize>().ok())
        });
        let chunked = head
            .lines()
            .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
        let bodiless = status == 204 || status == 304 || (100..200).contains(&status);
        // The body is counted, not kept: only its last bytes, for the chunked encoding's end.
        let mut read_body = answer.len() - head_end;
        let mut tail: Vec<u8> = answer[head_end..].to_vec();
        let complete = |read_body: usize, tail: &[u8]| -> bool {
            if bodiless {
                true
            } else if let Some(length) = length {
                read_body >= length
            } else if chunked {
                tail.ends_with(b"0\r\n\r\n")
            } else {
                false
            }
        };
        while !complete(read_body, &tail) && read_body < MOST_READ {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => {
                    read_body += read;
                    tail.extend_from_slice(&buffer[..read]);
                    let keep = tail.len().saturating_sub(8);
                    tail.drain(..keep);
                }
            }
        }
    }
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(ProbeFailure {
            message: format!("GET {path} on {address} answered {status}"),
            status: Some(status),
        })
    }
}

/// How many times in a row an app may give the same client-error answer while starting before the wait ends: a
/// path that answers 404 will not start answering 200 by waiting.
const SAME_CLIENT_ERROR: u32 = 3;

/// Probes every `interval` until one succeeds, `deadline` passes, `gave_up` gives a reason to stop waiting
/// (e.g. the process exited), or the app keeps giving the same 4xx answer; the error names the reason and the
/// last probe's.
pub async fn wait_until_healthy(
    network: Option<&Netns>,
    probe: &Probe,
    address: SocketAddr,
    interval: Duration,
    timeout: Duration,
    deadline: Instant,
    gave_up: &(dyn Fn() -> Option<String> + Sync),
) -> Result<(), String> {
    let mut same: (Option<u16>, u32) = (None, 0);
    loop {
        let last = match probe_status(network, probe, address, timeout).await {
            Ok(()) => return Ok(()),
            Err(failure) => failure,
        };
        if let Some(reason) = gave_up() {
            return Err(format!("{reason}; last probe: {}", last.message));
        }
        same = match last.status {
            // 408 and 429 say "not now": they may change by waiting.
            Some(status @ 400..=499) if status != 408 && status != 429 => {
                if same.0 == Some(status) {
                    (Some(status), same.1 + 1)
                } else {
                    (Some(status), 1)
                }
            }
            _ => (None, 0),
        };
        if same.1 >= SAME_CLIENT_ERROR {
            return Err(format!(
                "{} {SAME_CLIENT_ERROR} times in a row; the app runs, but this is not a health check it passes: check `health` in preview.yaml",
                last.message
            ));
        }
        if Instant::now() + interval > deadline {
            return Err(format!("not healthy in time: {}", last.message));
        }
        tokio::time::sleep(interval).await;
    }
}

/// How a running app is checked: every `interval`, each check bounded by `timeout`; after `failures` failed checks
/// in a row it is restarted. A process that was (re)started is given `start_timeout` to pass its first check.
#[derive(Debug, Clone)]
pub(crate) struct Liveness {
    pub probe: Probe,
    pub interval: Duration,
    pub timeout: Duration,
    pub failures: u32,
    pub start_timeout: Duration,
}

/// Checks a running version until dropped (the task is aborted with its [`crate::runtime::Version`]).
pub(crate) async fn watch(
    liveness: Liveness,
    network: Option<std::sync::Arc<Netns>>,
    address: SocketAddr,
    supervised: std::sync::Arc<crate::supervisor::Supervised>,
) {
    let mut failed: u32 = 0;
    let mut pid = supervised.pid();
    let mut starting_until: Option<Instant> = None;
    loop {
        tokio::time::sleep(liveness.interval).await;
        let now = supervised.pid();
        if now.is_none() {
            // Between an exit and its restart.
            failed = 0;
            continue;
        }
        if now != pid {
            pid = now;
            failed = 0;
            starting_until = Some(Instant::now() + liveness.start_timeout);
        }
        match probe_status(
            network.as_deref(),
            &liveness.probe,
            address,
            liveness.timeout,
        )
        .await
        {
            Ok(()) => {
                failed = 0;
                starting_until = None;
            }
            Err(failure) => {
                if starting_until.is_some_and(|until| Instant::now() < until) {
                    continue;
                }
                starting_until = None;
                failed += 1;
                if failed >= liveness.failures {
                    supervised
                        .restart(&format!(
                            "failed {failed} health checks in a row (last: {})",
                            failure.message
                        ))
                        .await;
                    failed = 0;
                }
            }
        }
    }
}
