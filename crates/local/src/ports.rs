//! Port ranges: each environment gets a block of the configured range, kept across restarts. The first half of a
//! block holds the environment's service ports (stable: other apps reach a service there, whatever version runs),
//! the second half the ports of the versions that run behind them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Ports per environment, and how many of them are service ports.
pub const BLOCK: u16 = 32;
pub const SERVICE_SLOTS: u16 = BLOCK / 2;

/// An inclusive range of ports, e.g. `20000-29999`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    /// `20000-29999`; the range must hold at least one block.
    pub fn parse(text: &str) -> Result<PortRange, String> {
        let bad = || format!("`{text}` is not a port range; write FIRST-LAST, e.g. 20000-29999");
        let (first, last) = text.split_once('-').ok_or_else(bad)?;
        let first: u16 = first.trim().parse().map_err(|_| bad())?;
        let last: u16 = last.trim().parse().map_err(|_| bad())?;
        if first < 1024 || last < first || last - first + 1 < BLOCK {
            return Err(format!(
                "`{text}` must lie above 1023 and hold at least {BLOCK} ports (one environment's block)"
            ));
        }
        Ok(PortRange { first, last })
    }
}

impl Default for PortRange {
    /// Below Linux's ephemeral range (32768–60999), so that ports the kernel hands out do not land in it.
    fn default() -> Self {
        PortRange {
            first: 20000,
            last: 29999,
        }
    }
}

/// One environment's block: its first port, and the slot of each service port by service name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Block {
    pub base: u16,
    pub services: BTreeMap<String, u16>,
}

impl Block {
    pub(crate) fn service_port(&self, service: &str) -> Option<u16> {
        self.services.get(service).map(|slot| self.base + slot)
    }

    /// The ports versions of apps may run on.
    pub(crate) fn version_ports(&self) -> impl Iterator<Item = u16> + use<> {
        let base = self.base;
        (SERVICE_SLOTS..BLOCK).map(move |slot| base + slot)
    }
}

/// The blocks of every environment, saved to a file on each change.
pub(crate) struct Ports {
    path: PathBuf,
    range: PortRange,
    blocks: Mutex<BTreeMap<String, Block>>,
}

impl Ports {
    pub(crate) fn open(path: PathBuf, range: PortRange) -> Result<Ports, String> {
        let blocks = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{} is damaged: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Ok(Ports {
            path,
            range,
            blocks: Mutex::new(blocks),
        })
    }

    pub(crate) fn get(&self, environment: &str) -> Option<Block> {
        self.blocks.lock().ok()?.get(environment).cloned()
    }

    /// The block the environment has, or would get, with a slot for each of `services` — without keeping
    /// anything: reads (plans, shown variables, refused requests) reserve no ports. A new block is the first free
    /// one whose service ports `usable` accepts; new services take the next free slots.
    pub(crate) fn peek(
        &self,
        environment: &str,
        services: &[String],
        usable: &mut dyn FnMut(u16) -> bool,
    ) -> Result<Block, String> {
        let blocks = self.blocks.lock().map_err(|_| "port table poisoned")?;
        self.propose(&blocks, environment, services, usable)
    }

    /// Like [`Ports::peek`], and keeps the result.
    pub(crate) fn assign(
        &self,
        environment: &str,
        services: &[String],
        usable: &mut dyn FnMut(u16) -> bool,
    ) -> Result<Block, String> {
        let mut blocks = self.blocks.lock().map_err(|_| "port table poisoned")?;
        let block = self.propose(&blocks, environment, services, usable)?;
        blocks.insert(environment.to_owned(), block.clone());
        save(&self.path, &blocks)?;
        Ok(block)
    }

    fn propose(
        &self,
        blocks: &BTreeMap<String, Block>,
        environment: &str,
        services: &[String],
        usable: &mut dyn FnMut(u16) -> bool,
    ) -> Result<Block, String> {
        let mut block = match blocks.get(environment) {
            Some(block) => block.clone(),
            None => {
                let taken: Vec<u16> = blocks.values().map(|b| b.base).collect();
                let mut base = self.range.first;
                loop {
                    if u32::from(base) + u32::from(BLOCK) - 1 > u32::from(self.range.last) {
                        return Err(format!(
                            "the port range {}-{} has no free block of {BLOCK} ports left for `{environment}`; delete environments or widen --ports",
                            self.range.first, self.range.last
                        ));
                    }
                    if !taken.contains(&base) && usable(base) {
                        break;
                    }
                    base += BLOCK;
                }
                Block {
                    base,
                    services: BTreeMap::new(),
                }
            }
        };
        for service in services {
            if block.services.contains_key(service) {
                continue;
            }
            let slot = (0..SERVICE_SLOTS)
                .find(|slot| !block.services.values().any(|s| s == slot))
                .ok_or_else(|| {
                    format!(
                        "`{environment}` has more than {SERVICE_SLOTS} services with ports, the most the local runtime gives one environment"
                    )
                })?;
            block.services.insert(service.clone(), slot);
        }
        Ok(block)
    }

    /// Keeps the block that holds exactly the service ports a plan was made with (`endpoints`: service → port),
    /// as [`Ports::peek`] proposed them: the environment's own block, or the free one they lie in. Refused when
    /// another environment took that block since, or the ports no longer fit.
    pub(crate) fn claim(
        &self,
        environment: &str,
        endpoints: &BTreeMap<String, u16>,
        usable: &mut dyn FnMut(u16) -> bool,
    ) -> Result<Block, String> {
        let mut blocks = self.blocks.lock().map_err(|_| "port table poisoned")?;
        let Some(first) = endpoints.values().min().copied() else {
            return Err(format!("no ports to reserve for `{environment}`"));
        };
        let moved = |what: String| {
            format!(
                "the ports `{environment}` was planned with cannot be reserved: {what}; deploy again"
            )
        };
        let mut block = match blocks.get(environment) {
            Some(block) => block.clone(),
            None => {
                if first < self.range.first || first > self.range.last {
                    return Err(moved(format!(
                        "port {first} lies outside the range {}-{}",
                        self.range.first, self.range.last
                    )));
                }
                let base = self.range.first + (first - self.range.first) / BLOCK * BLOCK;
                if let Some((other, _)) = blocks.iter().find(|(_, b)| b.base == base) {
                    return Err(moved(format!(
                        "ports {base}-{} went to `{other}` meanwhile",
                        base + BLOCK - 1
                    )));
                }
                if !usable(base) {
                    return Err(moved(format!(
                        "another program listens on ports {base}-{}",
                        base + SERVICE_SLOTS - 1
                    )));
                }
                Block {
                    base,
                    services: BTreeMap::new(),
                }
            }
        };
        for (service, &port) in endpoints {
            let slot = port
                .checked_sub(block.base)
                .filter(|slot| *slot < SERVICE_SLOTS);
            let Some(slot) = slot else {
                return Err(moved(format!(
                    "port {port} of `{service}` is not in its block {}-{}",
                    block.base,
                    block.base + SERVICE_SLOTS - 1
                )));
            };
            match block.services.get(service) {
                Some(&held) if held == slot => continue,
                Some(_) => {
                    return Err(moved(format!(
                        "`{service}` already listens on another port"
                    )));
                }
                None => {}
            }
            if let Some((other, _)) = block.services.iter().find(|(_, s)| **s == slot) {
                return Err(moved(format!("port {port} belongs to `{other}`")));
            }
            block.services.insert(service.clone(), slot);
        }
        blocks.insert(environment.to_owned(), block.clone());
        save(&self.path, &blocks)?;
        Ok(block)
    }

    pub(crate) fn release(&self, environment: &str) -> Result<(), String> {
        let mut blocks = self.blocks.lock().map_err(|_| "port table poisoned")?;
        if blocks.remove(environment).is_some() {
            save(&self.path, &blocks)?;
        }
        Ok(())
    }
}

fn save(path: &std::path::Path, blocks: &BTreeMap<String, Block>) -> Result<(), String> {
    let bytes = serde_json::to_vec_pretty(blocks).map_err(|e| e.to_string())?;
    crate::records::write_atomically(path, &bytes)
}

/// True when nothing listens on `port` of the loopback address (of `network`) right now.
pub(crate) fn is_free(port: u16, network: Option<&preview_isolation::Netns>) -> bool {
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    match network {
        Some(network) => network.listen(address).is_ok(),
        None => std::net::TcpListener::bind(address).is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_or_say_why_not() {
        assert_eq!(
            PortRange::parse("20000-20031"),
            Ok(PortRange {
                first: 20000,
                last: 20031
            })
        );
        for bad in ["", "20000", "a-b", "30000-20000", "80-1000", "20000-20010"] {
            assert!(PortRange::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn blocks_are_distinct_kept_and_released() {
        let dir = preview_testing::TempDir::new("ports");
        let path = dir.path().join("ports.json");
        let range = PortRange::parse("40000-40127").expect("range");
        let ports = Ports::open(path.clone(), range).expect("open");
        let services = vec!["web".to_owned(), "api".to_owned()];
        let a = ports.assign("shop/a", &services, &mut |_| true).expect("a");
        // The second block's first candidate is refused, as if another program held it.
        let b = ports
            .assign("shop/b", &services, &mut |base| base != 40032)
            .expect("b");
        assert_eq!((a.base, b.base), (40000, 40064));
        assert_ne!(a.service_port("web"), a.service_port("api"));
        let again = Ports::open(path, range).expect("reopen");
        assert_eq!(again.get("shop/a"), Some(a.clone()));
        again.release("shop/a").expect("release");
        assert_eq!(again.get("shop/a"), None);
        // A peek keeps nothing; a claim keeps what a peek proposed, and refuses it once the block went elsewhere.
        let proposed = again
            .peek("shop/d", &services, &mut |_| true)
            .expect("peek");
        assert_eq!(again.get("shop/d"), None);
        let endpoints: BTreeMap<String, u16> = services
            .iter()
            .map(|s| (s.clone(), proposed.service_port(s).expect("port")))
            .collect();
        let taken = again.assign("shop/e", &services, &mut |_| true).expect("e");
        assert_eq!(taken.base, proposed.base);
        let refused = again
            .claim("shop/d", &endpoints, &mut |_| true)
            .expect_err("taken meanwhile");
        assert!(refused.contains("went to `shop/e` meanwhile"), "{refused}");
        again.release("shop/e").expect("release");
        assert_eq!(
            again
                .claim("shop/d", &endpoints, &mut |_| true)
                .expect("claim"),
            proposed
        );
        assert_eq!(again.get("shop/d"), Some(proposed));
        let more: Vec<String> = (0..=SERVICE_SLOTS).map(|i| format!("s{i}")).collect();
        match again.assign("shop/c", &more, &mut |_| true) {
            Err(error) => assert!(error.contains("more than 16 services"), "{error}"),
            Ok(block) => panic!("17 services got a block: {block:?}"),
        }
    }
}
