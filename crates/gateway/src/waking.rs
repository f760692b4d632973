//! Waking sleeping environments on request. The gateway does not know how an environment sleeps or wakes: whoever
//! runs environments gives the proxy a [`Waker`]. A request for a sleeping route asks for a wake and waits for it
//! at most a bound; every request that arrives meanwhile waits for the same wake, and a wake outlives the requests
//! that gave up on it. After a failed wake, none starts for the environment for a pause (10 s, doubled at each
//! failure in a row up to 2 minutes): a page that reloads itself every few seconds must not start a whole wake at
//! each reload.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// What a wake comes to: `Err` says why the environment still sleeps.
pub type WakeFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// Starts the wake of the environment (project, environment).
type Wake = dyn Fn(&str, &str) -> WakeFuture + Send + Sync;

type Report = dyn Fn(&FailedWake<'_>) + Send + Sync;

/// The pause after a first failed wake; each failure in a row doubles it, up to [`LONGEST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_secs(10);
const LONGEST_PAUSE: Duration = Duration::from_secs(120);

/// Wakes the environment (project, environment) and resolves once it serves again.
#[derive(Clone)]
pub struct Waker {
    wake: Arc<Wake>,
    report: Option<Arc<Report>>,
}

/// A wake that failed: the environment sleeps on, and requests for it get a 503 without starting another wake
/// until `pause` has passed.
#[derive(Debug)]
pub struct FailedWake<'a> {
    pub project: &'a str,
    pub environment: &'a str,
    pub error: &'a str,
    pub pause: Duration,
}

impl Waker {
    pub fn new(wake: impl Fn(&str, &str) -> WakeFuture + Send + Sync + 'static) -> Waker {
        Waker {
            wake: Arc::new(wake),
            report: None,
        }
    }

    /// Tells `report` of each failed wake, once however many requests it turns away.
    pub fn reporting(mut self, report: impl Fn(&FailedWake<'_>) + Send + Sync + 'static) -> Waker {
        self.report = Some(Arc::new(report));
        self
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
    /// The wake finished: the route table says what serves now.
    Finished,
    /// The wake failed — the one the request waited for, or one a moment ago whose pause is not over (no wake was
    /// started for this request).
    Failed,
    /// Still waking when the request's bound ran out.
    StillWaking,
    /// Nobody can wake environments here.
    NoWaker,
}

/// One environment's wake under way, or the pause after its last failed.
#[derive(Debug)]
enum Waking {
    /// Turns `Some(woke)` when the wake is over.
    Running(watch::Receiver<Option<bool>>),
    /// No wake starts before then.
    Paused(Instant),
}

#[derive(Debug)]
struct Entry {
    waking: Waking,
    /// The pause after the last failure in a row, if the last wake failed.
    last_pause: Option<Duration>,
}

/// The wakes under way and the pauses after failed ones, by (project, environment).
type Running = Mutex<HashMap<(String, String), Entry>>;

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

    /// Wakes the environment — or joins the wake already under way — and waits for it at most `bound`; within
    /// the pause after a failed wake, says so at once.
    pub(crate) async fn wake(&self, project: &str, environment: &str, bound: Duration) -> Woken {
        let Some(waker) = &self.waker else {
            return Woken::NoWaker;
        };
        let mut finished = match self.join_or_start(waker, project, environment) {
            Ok(finished) => finished,
            Err(paused) => return paused,
        };
        let waited = tokio::time::timeout(bound, finished.wait_for(Option::is_some))
            .await
            .map(|woke| woke.map(|woke| *woke));
        match waited {
            Ok(Ok(Some(false))) => Woken::Failed,
            // A dropped sender (the task panicked) ends the wait too: the route table says the rest.
            Ok(_) => Woken::Finished,
            Err(_) => Woken::StillWaking,
        }
    }

    /// The wake of the environment under way, or one started now; [`Woken::Failed`] within the pause after a
    /// failed one.
    fn join_or_start(
        &self,
        waker: &Waker,
        project: &str,
        environment: &str,
    ) -> Result<watch::Receiver<Option<bool>>, Woken> {
        let mut running = lock(&self.running);
        let key = (project.to_owned(), environment.to_owned());
        let mut last_pause = None;
        if let Some(entry) = running.get(&key) {
            match &entry.waking {
                Waking::Running(finished) => return Ok(finished.clone()),
                Waking::Paused(until) if Instant::now() < *until => return Err(Woken::Failed),
                Waking::Paused(_) => last_pause = entry.last_pause,
            }
        }
        let (done, finished) = watch::channel(None);
        running.insert(
            key.clone(),
            Entry {
                waking: Waking::Running(finished.clone()),
                last_pause,
            },
        );
        // A task of its own: the wake goes on when the requests waiting for it give up or leave.
        let wake = (waker.wake)(project, environment);
        let (running, report) = (Arc::clone(&self.running), waker.report.clone());
        tokio::spawn(async move {
            let woke = wake.await;
            let Err(error) = &woke else {
                lock(&running).remove(&key);
                let _ = done.send(Some(true));
                return;
            };
            let pause = last_pause.map_or(FIRST_PAUSE, |last| (last * 2).min(LONGEST_PAUSE));
            lock(&running).insert(
                key.clone(),
                Entry {
                    waking: Waking::Paused(Instant::now() + pause),
                    last_pause: Some(pause),
                },
            );
            let _ = done.send(Some(false));
            if let Some(report) = report {
                report(&FailedWake {
                    project: &key.0,
                    environment: &key.1,
                    error,
                    pause,
                });
            }
        });
        Ok(finished)
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
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

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

    #[tokio::test(start_paused = true)]
    async fn after_a_failed_wake_none_starts_for_a_pause_that_doubles_until_one_succeeds() {
        let started = Arc::new(AtomicU32::new(0));
        let failing = Arc::new(AtomicBool::new(true));
        let reported = Arc::new(Mutex::new(Vec::new()));
        let waker = {
            let (started, failing) = (Arc::clone(&started), Arc::clone(&failing));
            Waker::new(move |_, _| {
                started.fetch_add(1, Ordering::SeqCst);
                let fails = failing.load(Ordering::SeqCst);
                Box::pin(async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if fails {
                        Err("its server did not start".to_owned())
                    } else {
                        Ok(())
                    }
                })
            })
        }
        .reporting({
            let reported = Arc::clone(&reported);
            move |failed| {
                lock(&reported).push(format!(
                    "{}/{}: {} ({} s)",
                    failed.project,
                    failed.environment,
                    failed.error,
                    failed.pause.as_secs()
                ));
            }
        });
        let wakes = &Wakes::new(Some(waker));
        let bound = Duration::from_secs(5);
        let wake = move |environment: &'static str| wakes.wake("shop", environment, bound);
        let started_now = || started.load(Ordering::SeqCst);

        assert_eq!(wake("pr-1").await, Woken::Failed);
        assert_eq!(started_now(), 1);
        // Reloads within the pause start nothing; another environment is not held back.
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(3)).await;
            assert_eq!(wake("pr-1").await, Woken::Failed);
        }
        assert_eq!(started_now(), 1);
        assert_eq!(wake("pr-2").await, Woken::Failed);
        assert_eq!(started_now(), 2);
        // Each failure in a row doubles the pause, up to two minutes.
        let mut pause = 10;
        for _ in 0..5 {
            tokio::time::advance(Duration::from_secs(pause)).await;
            let before = started_now();
            assert_eq!(wake("pr-1").await, Woken::Failed);
            assert_eq!(started_now(), before + 1);
            pause = (pause * 2).min(120);
            tokio::time::advance(Duration::from_secs(pause - 1)).await;
            assert_eq!(wake("pr-1").await, Woken::Failed);
            assert_eq!(started_now(), before + 1, "within a pause of {pause} s");
        }
        assert_eq!(
            *lock(&reported),
            [
                "shop/pr-1: its server did not start (10 s)",
                "shop/pr-2: its server did not start (10 s)",
                "shop/pr-1: its server did not start (20 s)",
                "shop/pr-1: its server did not start (40 s)",
                "shop/pr-1: its server did not start (80 s)",
                "shop/pr-1: its server did not start (120 s)",
                "shop/pr-1: its server did not start (120 s)",
            ]
        );
        // A wake that succeeds ends the pauses: the next failure pauses 10 s again.
        failing.store(false, Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(wake("pr-1").await, Woken::Finished);
        failing.store(true, Ordering::SeqCst);
        assert_eq!(wake("pr-1").await, Woken::Failed);
        assert_eq!(
            lock(&reported).last().map(String::as_str),
            Some("shop/pr-1: its server did not start (10 s)")
        );
    }
}
