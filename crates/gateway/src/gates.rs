//! At most so many requests in flight to one backend, whichever clients they come from: each needs a connection to
//! the app (HTTP/1.1 carries one request at a time), so without a cap one HTTP/2 client could make the gateway open
//! a connection to an app per stream, and a slow app could hold every descriptor of the daemon.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::routes::Backend;

/// One gate per backend, made when a request first needs it and gone when no request and no client connection
/// holds it (a gate nobody holds has all its permits, so forgetting it changes nothing).
pub(crate) struct Gates {
    per_backend: usize,
    /// By address, then by the name of the network the address is in.
    open: Mutex<HashMap<SocketAddr, Vec<AtAddress>>>,
}

/// The gate of the backend at an address in a network (`None`: the gateway's own).
type AtAddress = (Option<String>, Weak<Semaphore>);

impl Gates {
    pub(crate) fn new(per_backend: usize) -> Gates {
        Gates {
            per_backend: per_backend.max(1),
            open: Mutex::default(),
        }
    }

    /// The gate of `backend`.
    pub(crate) fn gate(&self, backend: &Backend) -> Arc<Semaphore> {
        let mut open = match self.open.lock() {
            Ok(open) => open,
            Err(poisoned) => poisoned.into_inner(),
        };
        let network = backend.network.as_ref().map(|n| n.name());
        let at_address = open.entry(backend.address).or_default();
        if let Some(gate) = at_address
            .iter()
            .find(|(name, _)| name.as_deref() == network)
            .and_then(|(_, gate)| gate.upgrade())
        {
            return gate;
        }
        let gate = Arc::new(Semaphore::new(self.per_backend));
        at_address.retain(|(name, gate)| name.as_deref() != network && gate.strong_count() > 0);
        at_address.push((network.map(str::to_owned), Arc::downgrade(&gate)));
        // Backends come and go with deployments: forget the gates of those no one holds any more.
        if open.len() > 1024 {
            open.retain(|_, gates| {
                gates.retain(|(_, gate)| gate.strong_count() > 0);
                !gates.is_empty()
            });
        }
        gate
    }
}

/// A place in `gate`, waiting at most `patience` for one to free up; `None` when none did.
pub(crate) async fn enter(
    gate: &Arc<Semaphore>,
    patience: Duration,
) -> Option<OwnedSemaphorePermit> {
    match Arc::clone(gate).try_acquire_owned() {
        Ok(permit) => Some(permit),
        Err(_) => tokio::time::timeout(patience, Arc::clone(gate).acquire_owned())
            .await
            .ok()?
            .ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(port: u16) -> Backend {
        Backend {
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            network: None,
        }
    }

    #[tokio::test]
    async fn a_backend_takes_so_many_requests_and_the_next_waits() {
        let gates = Gates::new(2);
        let gate = gates.gate(&backend(1));
        assert!(
            Arc::ptr_eq(&gate, &gates.gate(&backend(1))),
            "one gate per backend"
        );
        let patience = Duration::from_millis(50);
        let first = enter(&gate, patience).await.expect("first");
        let _second = enter(&gate, patience).await.expect("second");
        assert!(
            enter(&gate, patience).await.is_none(),
            "the third waits, then gives up"
        );
        assert!(
            enter(&gates.gate(&backend(2)), patience).await.is_some(),
            "another backend has its own"
        );
        drop(first);
        assert!(
            enter(&gate, patience).await.is_some(),
            "a place freed is taken"
        );
    }

    #[test]
    fn a_gate_nobody_holds_is_made_again() {
        let gates = Gates::new(1);
        let gate = gates.gate(&backend(1));
        let weak = Arc::downgrade(&gate);
        drop(gate);
        assert!(weak.upgrade().is_none());
        let _again = gates.gate(&backend(1));
        let open = gates.open.lock().expect("lock");
        assert_eq!(
            open[&backend(1).address].len(),
            1,
            "the dead gate was replaced"
        );
    }
}
