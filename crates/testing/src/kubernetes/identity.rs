//! Names the server makes up: object uids, the hash of a pod template (`pod-template-hash`), the random suffixes of
//! generated names, and pod IPs — unique within one server, from a seed of its own.

use std::time::{SystemTime, UNIX_EPOCH};

/// The characters Kubernetes uses for generated suffixes: no vowels (no words), no look-alikes.
const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

pub(crate) struct Identities {
    seed: u64,
    counter: u64,
}

impl Identities {
    pub fn new() -> Identities {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Identities {
            seed: nanos ^ (u64::from(std::process::id()) << 32),
            counter: 0,
        }
    }

    fn next(&mut self) -> u64 {
        self.counter += 1;
        mix(self
            .seed
            .wrapping_add(self.counter.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
    }

    /// A version-4 UUID.
    pub fn uid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }

    /// `len` characters for a generated name (`web-7d4b9c8f5d-x2k9q`).
    pub fn suffix(&mut self, len: usize) -> String {
        safe_encode(self.next(), len)
    }

    /// 16 hex digits, as event names end (`web-x2k9q.17f3a2b4c5d6e7f8`).
    pub fn hex(&mut self) -> String {
        format!("{:016x}", self.next())
    }

    /// An address in the pod network.
    pub fn pod_ip(&mut self) -> String {
        let n = self.next();
        format!("10.244.{}.{}", (n >> 8) % 250, n % 250 + 2)
    }

    /// An address in the service network.
    pub fn cluster_ip(&mut self) -> String {
        let n = self.next();
        format!("10.96.{}.{}", (n >> 8) % 250, n % 250 + 2)
    }
}

/// splitmix64's finaliser: spreads a counter over all bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a of `text`: stable across runs, as a template's hash must be.
pub(crate) fn hash_text(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `len` characters of `SAFE` taken from `value`.
pub(crate) fn safe_encode(mut value: u64, len: usize) -> String {
    let mut out = String::with_capacity(len);
    for _ in 0..len {
        let index = (value % SAFE.len() as u64) as usize;
        out.push(char::from(SAFE[index]));
        value = (value / SAFE.len() as u64) ^ mix(value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_distinct_uuids() {
        let mut ids = Identities::new();
        let (a, b) = (ids.uid(), ids.uid());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.as_bytes()[14], b'4');
    }

    #[test]
    fn hashes_are_stable_and_safe() {
        let hash = safe_encode(hash_text("template"), 10);
        assert_eq!(hash, safe_encode(hash_text("template"), 10));
        assert!(hash.bytes().all(|c| SAFE.contains(&c)));
    }
}
