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
    match tokio::time::timeout(timeout, attempt(network, probe, address)).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "no answer from {address} within {} ms",
            timeout.as_millis()
        )),
    }
}

async fn attempt(
    network: Option<&Netns>,
    probe: &Probe,
    address: SocketAddr,
) -> Result<(), String> {
    let mut stream = crate::forward::connect(address, network)
        .await
        .map_err(|e| format!("cannot connect to {address}: {e}"))?;
    let Probe::Http { path } = probe else {
        return Ok(());
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: preview-health\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("cannot send the health request to {address}: {e}"))?;
    // The status line is all that matters; read until it is complete.
    let mut head = Vec::with_capacity(64);
    let mut buffer = [0u8; 64];
    while !head.contains(&b'\n') && head.len() < 1024 {
        let read = stream
            .read(&mut buffer)
            .await
            .map_err(|e| format!("reading the answer from {address}: {e}"))?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..read]);
    }
    let line = String::from_utf8_lossy(&head);
    let status = line
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("HTTP/1."))
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("GET {path} on {address} did not answer HTTP"))?;
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("GET {path} on {address} answered {status}"))
    }
}

/// Probes every `interval` until one succeeds, `deadline` passes, or `gave_up` gives a reason to stop waiting
/// (e.g. the process exited); the error names the reason and the last probe's.
pub async fn wait_until_healthy(
    network: Option<&Netns>,
    probe: &Probe,
    address: SocketAddr,
    interval: Duration,
    timeout: Duration,
    deadline: Instant,
    gave_up: &(dyn Fn() -> Option<String> + Sync),
) -> Result<(), String> {
    loop {
        let last = match probe_in(network, probe, address, timeout).await {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        if let Some(reason) = gave_up() {
            return Err(format!("{reason}; last probe: {last}"));
        }
        if Instant::now() + interval > deadline {
            return Err(format!("not healthy in time: {last}"));
        }
        tokio::time::sleep(interval).await;
    }
}
