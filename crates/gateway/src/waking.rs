//! Waking sleeping environments on request. The gateway does not know how an environment sleeps or wakes: whoever
//! runs environments gives the proxy a [`Waker`]. A request for a sleeping route asks for a wake and waits for it
//! at most a bound; every request that arrives meanwhile waits for the same wake, and a wake outlives the requests
//! that gave up on it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

/// What a wake comes to: `Err` says why it failed, for the log.
pub type WakeFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// Starts the wake of the environment (project, environment).
type Wake = dyn Fn(&str, &str) -> WakeFuture + Send + Sync;

/// Wakes the environment (project, environment) and resolves once it serves again.
#[derive(Clone)]
pub struct Waker(Arc<Wake>);

impl Waker {
    pub fn new(wake: impl Fn(&str, &str) -> WakeFuture + Send + Sync + 'static) -> Waker {
        Waker(Arc::new(wake))
    }
}

impl std::fmt::Debug for Waker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Waker")
    }
}

/// How a request's wait for a wake ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Woken {
    /// The wake finished, well or not: the route table says what serves now.
    Finished,
    /// Still waking when the request's bound ran out.
    StillWaking,
    /// Nobody can wake environments here.
    NoWaker,
}

/// The wakes under way by (project, environment), each a receiver that turns `true` when its wake is over.
type Running = Mutex<HashMap<(String, String), watch::Receiver<bool>>>;

/// The wakes under way, one per environment.
#[derive(Default)]
pub(crate) struct Wakes {
    waker: Option<Waker>,
    running: Arc<Running>,
}

impl Wakes {
    pub(crate) fn new(waker: Option<Waker>) -> Wakes {
        Wakes {
            waker,
            running: Arc::default(),
        }
    }

    /// Wakes the environment — or joins the wake already under way — and waits for it at most `bound`.
    pub(crate) async fn wake(&self, project: &str, environment: &str, bound: Duration) -> Woken {
        let Some(waker) = &self.waker else {
            return Woken::NoWaker;
        };
        let mut finished = {
            let mut running = lock(&self.running);
            let key = (project.to_owned(), environment.to_owned());
            match running.get(&key) {
                Some(finished) => finished.clone(),
                None => {
                    let (done, finished) = watch::channel(false);
                    running.insert(key.clone(), finished.clone());
                    // A task of its own: the wake goes on when the requests waiting for it give up or leave.
                    let wake = (waker.0)(project, environment);
                    let running = Arc::clone(&self.running);
                    tokio::spawn(async move {
                        // Its outcome is the runtime's to log; requests read the route table again.
                        let _ = wake.await;
                        let _ = done.send(true);
                        lock(&running).remove(&key);
                    });
                    finished
                }
            }
        };
        match tokio::time::timeout(bound, finished.wait_for(|done| *done)).await {
            // A dropped sender (the task panicked) ends the wait too: the route table says the rest.
            Ok(_) => Woken::Finished,
            Err(_) => Woken::StillWaking,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A waker that counts its wakes, each taking `takes`.
    fn counting(takes: Duration) -> (Waker, Arc<AtomicU32>, Arc<AtomicU32>) {
        let started = Arc::new(AtomicU32::new(0));
        let ended = Arc::new(AtomicU32::new(0));
        let (s, e) = (Arc::clone(&started), Arc::clone(&ended));
        let waker = Waker::new(move |_, _| {
            s.fetch_add(1, Ordering::SeqCst);
            let e = Arc::clone(&e);
            Box::pin(async move {
                tokio::time::sleep(takes).await;
                e.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
        });
        (waker, started, ended)
    }

    #[tokio::test]
    async fn requests_at_once_share_one_wake() {
        let (waker, started, ended) = counting(Duration::from_millis(200));
        let wakes = Arc::new(Wakes::new(Some(waker)));
        let mut waiting = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let wakes = Arc::clone(&wakes);
            waiting.spawn(async move { wakes.wake("shop", "pr-1", Duration::from_secs(5)).await });
        }
        while let Some(woken) = waiting.join_next().await {
            assert_eq!(woken.expect("joined"), Woken::Finished);
        }
        assert_eq!(started.load(Ordering::SeqCst), 1);
        assert_eq!(ended.load(Ordering::SeqCst), 1);
        // Another environment, and the same one later, get wakes of their own.
        assert_eq!(
            wakes.wake("shop", "pr-2", Duration::from_secs(5)).await,
            Woken::Finished
        );
        assert_eq!(
            wakes.wake("shop", "pr-1", Duration::from_secs(5)).await,
            Woken::Finished
        );
        assert_eq!(started.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_request_waits_at_most_its_bound_and_the_wake_goes_on() {
        let (waker, started, ended) = counting(Duration::from_millis(600));
        let wakes = Wakes::new(Some(waker));
        let began = std::time::Instant::now();
        assert_eq!(
            wakes.wake("shop", "pr-1", Duration::from_millis(100)).await,
            Woken::StillWaking
        );
        assert!(began.elapsed() < Duration::from_millis(500));
        assert_eq!(ended.load(Ordering::SeqCst), 0);
        // A request after the first one gave up joins the same wake.
        assert_eq!(
            wakes.wake("shop", "pr-1", Duration::from_secs(5)).await,
            Woken::Finished
        );
        assert_eq!(started.load(Ordering::SeqCst), 1);
        assert_eq!(ended.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn without_a_waker_nothing_is_woken() {
        assert_eq!(
            Wakes::new(None)
                .wake("shop", "pr-1", Duration::from_secs(1))
                .await,
            Woken::NoWaker
        );
    }
}
