//! Deployment ids and clock readings.

/// Ten random hex digits: short enough to type, enough that two daemons never pick the same one.
pub(crate) fn new_deployment_id() -> String {
    let mut bytes = [0u8; 5];
    let random = ring::rand::SystemRandom::new();
    if ring::rand::SecureRandom::fill(&random, &mut bytes).is_err() {
        // The system's random source failing is not a reason to stop deploying; time plus a counter is unique
        // within this daemon, and the store's primary key catches the rest.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = now_ms() as u64 ^ COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed) << 40;
        bytes.copy_from_slice(&n.to_be_bytes()[3..]);
    }
    preview_secrets::hex::encode(&bytes)
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
