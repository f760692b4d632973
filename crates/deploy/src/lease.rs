//! Acting for a deployment while its lease holds. The lease is renewed in the background; a [`Fence`] says
//! whether this daemon may still act: it is valid for three quarters of the lease's length from the moment the
//! last successful renewal was *sent*, measured on this machine's monotonic clock, so it runs out before the
//! store lets another daemon take over — whatever this daemon's wall clock says, and also across a pause (a
//! stopped process, a store outage). Once it runs out, or the store says the lease was taken over, the daemon
//! stops acting for the deployment and leaves it to whoever takes the lease next.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use preview_store::{Lease, Store};
use tokio::time::Instant;

/// Whether this daemon may still act for a deployment.
pub(crate) struct Fence {
    state: Mutex<FenceState>,
    validity: Duration,
}

struct FenceState {
    valid_until: Instant,
    lost: Option<String>,
}

impl Fence {
    /// A fence for a lease of `ttl` taken by a request sent at `taken_at`.
    pub(crate) fn new(taken_at: Instant, ttl: Duration) -> Fence {
        let validity = ttl * 3 / 4;
        Fence {
            state: Mutex::new(FenceState {
                valid_until: taken_at + validity,
                lost: None,
            }),
            validity,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FenceState> {
        match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// An error saying why the daemon may no longer act, once it may not.
    pub(crate) fn check(&self) -> Result<(), String> {
        let state = self.state();
        if let Some(reason) = &state.lost {
            return Err(reason.clone());
        }
        if Instant::now() >= state.valid_until {
            return Err(format!(
                "this daemon could not renew the deployment's lease within {:.1}s (the store was unreachable, or the daemon was paused), so it stopped acting for it",
                self.validity.as_secs_f64()
            ));
        }
        Ok(())
    }

    fn valid_until(&self) -> Instant {
        self.state().valid_until
    }

    fn renewed(&self, sent: Instant) {
        let mut state = self.state();
        // A fence that ran out stays out: acting again needs the lease taken again, with a new epoch.
        if state.lost.is_none() && Instant::now() < state.valid_until {
            state.valid_until = state.valid_until.max(sent + self.validity);
        }
    }

    fn lose(&self, reason: String) {
        self.state().lost.get_or_insert(reason);
    }
}

/// A lease held by this daemon: its fence, and the renewal running in the background until dropped.
pub(crate) struct Held {
    pub lease: Lease,
    pub fence: Arc<Fence>,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

/// Renews `lease` (taken by a request sent at `taken_at`) every third of `ttl`; calls `lost` once with the reason
/// when the daemon may no longer act for the deployment.
pub(crate) fn hold(
    store: Arc<Store>,
    lease: Lease,
    ttl: Duration,
    taken_at: Instant,
    lost: impl Fn(String) + Send + 'static,
) -> Held {
    let fence = Arc::new(Fence::new(taken_at, ttl));
    let heartbeat = tokio::spawn({
        let (fence, lease) = (Arc::clone(&fence), lease.clone());
        async move {
            let every = ttl / 3;
            let mut last = taken_at;
            loop {
                tokio::time::sleep_until((last + every).min(fence.valid_until())).await;
                if let Err(reason) = fence.check() {
                    lost(reason);
                    return;
                }
                if Instant::now() < last + every {
                    continue;
                }
                let sent = Instant::now();
                last = sent;
                match tokio::time::timeout(every, store.renew_lease(&lease, ttl.as_millis() as i64))
                    .await
                {
                    Ok(Ok(true)) => fence.renewed(sent),
                    Ok(Ok(false)) => {
                        let reason = "another daemon took over the deployment's lease after it expired, so this daemon stopped acting for it".to_owned();
                        fence.lose(reason.clone());
                        lost(reason);
                        return;
                    }
                    // The store did not answer: try again; the fence runs out on its own if it never does.
                    Ok(Err(_)) | Err(_) => {}
                }
            }
        }
    });
    Held {
        lease,
        fence,
        heartbeat,
    }
}
