//! When an HTTP/2 connection has been idle — no request open — long enough to be closed. HTTP/2 clients answer
//! pings while they do nothing, so pings alone never end such a connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// The requests open on one connection, and when the last one ended.
pub(crate) struct Streams {
    began: Instant,
    open: AtomicUsize,
    /// Milliseconds since `began` when the connection last had no request open.
    quiet_since: AtomicU64,
}

impl Streams {
    pub(crate) fn new() -> Arc<Streams> {
        Arc::new(Streams {
            began: Instant::now(),
            open: AtomicUsize::new(0),
            quiet_since: AtomicU64::new(0),
        })
    }

    /// A request begins; it ends when the returned guard is dropped (with its answer's body).
    pub(crate) fn begin(self: &Arc<Streams>) -> Open {
        self.open.fetch_add(1, Ordering::AcqRel);
        Open(Arc::clone(self))
    }

    /// Resolves once no request has been open for `limit`.
    pub(crate) async fn idle_for(&self, limit: Duration) {
        loop {
            let wake = if self.open.load(Ordering::Acquire) == 0 {
                let since =
                    self.began + Duration::from_millis(self.quiet_since.load(Ordering::Acquire));
                let deadline = since + limit;
                if Instant::now() >= deadline && self.open.load(Ordering::Acquire) == 0 {
                    return;
                }
                deadline
            } else {
                // A request is open; look again when it could at the earliest have been idle long enough.
                Instant::now() + limit
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// One open request.
pub(crate) struct Open(Arc<Streams>);

impl Drop for Open {
    fn drop(&mut self) {
        let streams = &self.0;
        let now = u64::try_from(streams.began.elapsed().as_millis()).unwrap_or(u64::MAX);
        streams.quiet_since.store(now, Ordering::Release);
        streams.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_is_idle_once_no_request_was_open_for_the_limit() {
        let streams = Streams::new();
        let limit = Duration::from_millis(200);
        let open = streams.begin();
        let waited = Instant::now();
        let ended = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            drop(open);
        };
        let idle = tokio::time::timeout(Duration::from_secs(10), streams.idle_for(limit));
        let (idle, ()) = tokio::join!(idle, ended);
        assert!(idle.is_ok(), "idle after the request ended");
        let after = waited.elapsed();
        assert!(
            after >= Duration::from_millis(700),
            "not while the request was open, nor before the limit after it: {after:?}"
        );
    }
}
