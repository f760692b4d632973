//! Deployment ids, holder nonces and clock readings.

/// Ten random hex digits: short enough to type, enough that two daemons never pick the same one.
pub(crate) fn new_deployment_id() -> String {
    random_hex(5)
}

/// `bytes` random bytes as hex.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    let random = ring::rand::SystemRandom::new();
    if ring::rand::SecureRandom::fill(&random, &mut buffer).is_err() {
        // The system's random source failing is not a reason to stop deploying; time plus a counter is unique
        // within this daemon, and the store's primary keys catch the rest.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = Clock::default().now_ms() as u64
            ^ COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed) << 40;
        for (i, byte) in buffer.iter_mut().enumerate() {
            *byte = n.to_be_bytes()[(3 + i) % 8];
        }
    }
    preview_secrets::hex::encode(&buffer)
}

/// This daemon's wall clock, for the times it writes (journal entries). Leases never depend on it: they expire
/// by the store's clock. `offset_ms` moves it, so that tests can run a daemon whose clock is wrong.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    pub offset_ms: i64,
}

impl Clock {
    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
            + self.offset_ms
    }
}
