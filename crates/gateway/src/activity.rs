//! When a request last reached each environment, and how many are under way, for whoever stops idle environments.
//! A request counts itself in the cell its route carries while it is under way — an answer until its body has gone
//! out, a WebSocket until its tunnel closes — and notes the time as it begins and as it ends: atomics, the time
//! written at most once a second per environment, and no lock. The registry hands the same cell to every table
//! swapped in, so that a swap loses nothing.
//!
//! The cell is also where an environment is put to sleep without a race with requests: [`Activity::fall_asleep`]
//! marks it asleep only while no request is under way and none was noted since the cut-off, in one atomic step,
//! and a request that begins after it finds the environment asleep — whatever the route it was found by says — and
//! wakes it instead of reaching an app that is being stopped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::header::HeaderValue;

use crate::link_preview_bots::is_link_preview_bot;

/// Notes closer together than this are one: under load, workers do not write the time at every request.
const RESOLUTION_MS: u64 = 1000;

/// In [`LastRequest`]'s count: the environment is asleep (or being put to sleep).
const ASLEEP: u64 = 1 << 63;

/// When a request last reached one environment, and the requests under way.
#[derive(Debug, Default)]
pub struct LastRequest {
    /// Milliseconds since the Unix epoch (0: none yet).
    at: AtomicU64,
    /// Requests and tunnels under way, and [`ASLEEP`].
    flights: AtomicU64,
}

impl LastRequest {
    /// Whether a request now would move the time on: the check is a load, so that the caller decides cheaply
    /// whether to look closer at the request (a bot's does not count) before it notes it.
    fn due(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.at.load(Ordering::SeqCst)) >= RESOLUTION_MS
    }

    pub(crate) fn note(&self, now_ms: u64) {
        self.at.fetch_max(now_ms, Ordering::SeqCst);
    }

    /// Counts a request to the environment as under way until the returned [`Flight`] is dropped. `agent` is its
    /// `User-Agent`, looked at only when the time is due to be noted.
    pub(crate) fn begin(self: &Arc<Self>, agent: Option<&HeaderValue>) -> Flight {
        let flights = self.flights.fetch_add(1, Ordering::SeqCst);
        Flight {
            cell: Arc::clone(self),
            found_asleep: flights & ASLEEP != 0,
            agent: agent.cloned(),
            person: None,
        }
    }

    fn in_flight(&self) -> u64 {
        self.flights.load(Ordering::SeqCst) & !ASLEEP
    }

    /// Whether the environment was put to sleep (and not woken since) through [`Activity::fall_asleep`].
    pub(crate) fn is_asleep(&self) -> bool {
        self.flights.load(Ordering::SeqCst) & ASLEEP != 0
    }

    /// When a request last reached the environment, if one did since the daemon started: now while one is under
    /// way, else the moment the last one ended.
    pub fn at(&self) -> Option<SystemTime> {
        if self.in_flight() > 0 {
            return Some(SystemTime::now());
        }
        match self.at.load(Ordering::SeqCst) {
            0 => None,
            ms => Some(UNIX_EPOCH + Duration::from_millis(ms)),
        }
    }

    fn fall_asleep(&self, idle_since_ms: u64) -> bool {
        if self.at.load(Ordering::SeqCst) > idle_since_ms {
            return false;
        }
        if self
            .flights
            .compare_exchange(0, ASLEEP, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return false;
        }
        // A request that began and ended since the first look noted its end before it stopped counting.
        if self.at.load(Ordering::SeqCst) > idle_since_ms {
            self.wake();
            return false;
        }
        true
    }

    fn wake(&self) {
        self.flights.fetch_and(!ASLEEP, Ordering::SeqCst);
    }
}

/// Cells are compared by identity: two routes share one when they lead to the same environment.
impl PartialEq for LastRequest {
    fn eq(&self, other: &LastRequest) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for LastRequest {}

/// A request (or the tunnel it became) under way to an environment: counted until dropped, which notes its end —
/// however the request ends.
#[derive(Debug)]
pub(crate) struct Flight {
    cell: Arc<LastRequest>,
    found_asleep: bool,
    agent: Option<HeaderValue>,
    /// Whether the request counts as someone using the environment, once looked at.
    person: Option<bool>,
}

impl Flight {
    /// Whether the environment was asleep, or being put to sleep, when the request began: it must be woken,
    /// whatever the route the request was found by says.
    pub(crate) fn found_asleep(&self) -> bool {
        self.found_asleep
    }

    /// Whether a link-preview bot sent the request: it neither wakes the environment nor counts as use.
    pub(crate) fn by_link_preview_bot(&mut self) -> bool {
        let agent = self.agent.as_ref();
        !*self
            .person
            .get_or_insert_with(|| !is_link_preview_bot(agent))
    }

    /// Notes now as when a request last reached the environment (at most once a second), unless a bot sent it.
    pub(crate) fn note(&mut self) {
        let now = now_ms();
        if self.cell.due(now) && !self.by_link_preview_bot() {
            self.cell.note(now);
        }
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        // Noted before the count goes down: whoever sees no request under way sees this one's end.
        self.note();
        self.cell.flights.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Milliseconds since the Unix epoch, now.
fn now_ms() -> u64 {
    milliseconds(SystemTime::now())
}

fn milliseconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Every environment's [`LastRequest`], by project and environment.
#[derive(Debug, Default)]
pub struct Activity {
    cells: Mutex<HashMap<String, HashMap<String, Arc<LastRequest>>>>,
}

impl Activity {
    /// When a request last reached the environment, if one did since the daemon started: now while one is under
    /// way (a long upload, a streamed answer, a WebSocket), else the moment the last one ended.
    pub fn last_request(&self, project: &str, environment: &str) -> Option<SystemTime> {
        self.cell(project, environment).and_then(|cell| cell.at())
    }

    /// Marks the environment asleep, unless a request is under way or one was noted after `idle_since`: from then
    /// on, requests that reach it ask for a wake whatever their route says, until [`Activity::woke`]. Whoever puts
    /// environments to sleep calls it once it alone changes the environment, and before it stops anything;
    /// `false` means the environment is in use and must stay awake. An environment without routes is used by
    /// nobody.
    pub fn fall_asleep(&self, project: &str, environment: &str, idle_since: SystemTime) -> bool {
        self.cell(project, environment)
            .is_none_or(|cell| cell.fall_asleep(milliseconds(idle_since)))
    }

    /// Requests that reach the environment are forwarded again (as its routes say): it woke, or its sleep was
    /// given up.
    pub fn woke(&self, project: &str, environment: &str) {
        if let Some(cell) = self.cell(project, environment) {
            cell.wake();
        }
    }

    fn cell(&self, project: &str, environment: &str) -> Option<Arc<LastRequest>> {
        self.lock()
            .get(project)
            .and_then(|environments| environments.get(environment))
            .cloned()
    }

    /// The cells of the environments `present` names, made for those that had none; the others are dropped (their
    /// environments no longer have routes).
    pub(crate) fn keep_only(
        &self,
        present: &[(&str, &str)],
    ) -> HashMap<(String, String), Arc<LastRequest>> {
        let mut cells = self.lock();
        let mut kept: HashMap<String, HashMap<String, Arc<LastRequest>>> = HashMap::new();
        let mut handed = HashMap::new();
        for (project, environment) in present {
            let cell = cells
                .get_mut(*project)
                .and_then(|environments| environments.remove(*environment))
                .or_else(|| {
                    kept.get(*project)
                        .and_then(|environments| environments.get(*environment))
                        .cloned()
                })
                .unwrap_or_default();
            kept.entry((*project).to_owned())
                .or_default()
                .insert((*environment).to_owned(), Arc::clone(&cell));
            handed.insert(((*project).to_owned(), (*environment).to_owned()), cell);
        }
        *cells = kept;
        handed
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<String, Arc<LastRequest>>>> {
        match self.cells.lock() {
            Ok(cells) => cells,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn a_note_counts_once_a_second_and_never_goes_back() {
        let cell = LastRequest::default();
        assert_eq!(cell.at(), None);
        assert!(cell.due(5_000));
        cell.note(5_000);
        assert!(!cell.due(5_999), "within a second of the last note");
        assert!(cell.due(6_000));
        cell.note(4_000);
        assert_eq!(cell.at(), Some(at(5_000)));
    }

    #[test]
    fn a_request_under_way_is_a_request_now_and_notes_its_end() {
        let cell = Arc::new(LastRequest::default());
        cell.note(5_000);
        let flight = cell.begin(None);
        let during = cell.at().expect("a request under way");
        assert!(during > at(5_000) && during <= SystemTime::now());
        assert!(!cell.fall_asleep(milliseconds(SystemTime::now())));
        drop(flight);
        assert_eq!(cell.in_flight(), 0);
        let ended = cell.at().expect("noted");
        assert!(ended > at(5_000), "its end is noted: {ended:?}");
    }

    #[test]
    fn a_bot_under_way_counts_but_notes_nothing() {
        let cell = Arc::new(LastRequest::default());
        let bot = HeaderValue::from_static("Twitterbot/1.0");
        let mut flight = cell.begin(Some(&bot));
        assert!(flight.by_link_preview_bot());
        flight.note();
        assert!(!cell.fall_asleep(u64::MAX), "it is under way");
        drop(flight);
        assert_eq!(cell.at(), None);
        let person = HeaderValue::from_static("curl/8.5.0");
        drop(cell.begin(Some(&person)));
        assert!(cell.at().is_some());
    }

    #[test]
    fn an_environment_falls_asleep_only_when_unused_since_the_cut_off() {
        let cell = Arc::new(LastRequest::default());
        cell.note(10_000);
        assert!(!cell.fall_asleep(9_999), "a request came after the cut-off");
        assert!(!cell.is_asleep());
        let flight = cell.begin(None);
        assert!(!flight.found_asleep());
        assert!(!cell.fall_asleep(10_000), "a request is under way");
        drop(flight);
        let now = milliseconds(SystemTime::now());
        assert!(cell.fall_asleep(now));
        assert!(cell.is_asleep());
        // A request from then on finds it asleep, whatever its route says, and is counted all the same.
        let flight = cell.begin(None);
        assert!(flight.found_asleep());
        assert_eq!(cell.in_flight(), 1);
        drop(flight);
        assert!(cell.is_asleep(), "only a wake ends a sleep");
        cell.wake();
        assert!(!cell.is_asleep());
        assert!(!cell.begin(None).found_asleep());
        assert_eq!(cell.in_flight(), 0);
    }

    #[test]
    fn environments_keep_their_cell_across_swaps_and_lose_it_with_their_routes() {
        let activity = Activity::default();
        let first = activity.keep_only(&[("shop", "pr-1"), ("shop", "pr-2"), ("shop", "pr-1")]);
        assert_eq!(first.len(), 2);
        first[&("shop".to_owned(), "pr-1".to_owned())].note(10_000);
        let second = activity.keep_only(&[("shop", "pr-1")]);
        assert!(Arc::ptr_eq(
            &first[&("shop".to_owned(), "pr-1".to_owned())],
            &second[&("shop".to_owned(), "pr-1".to_owned())]
        ));
        assert_eq!(activity.last_request("shop", "pr-1"), Some(at(10_000)));
        assert_eq!(activity.last_request("shop", "pr-2"), None);
        first[&("shop".to_owned(), "pr-2".to_owned())].note(20_000);
        assert_eq!(
            activity.last_request("shop", "pr-2"),
            None,
            "a dropped environment's cell is no longer read"
        );
        assert!(
            activity.fall_asleep("shop", "pr-2", at(0)),
            "an environment without routes is used by nobody"
        );
        assert!(!activity.fall_asleep("shop", "pr-1", at(9_999)));
        assert!(activity.fall_asleep("shop", "pr-1", at(10_000)));
        activity.woke("shop", "pr-1");
        assert!(!second[&("shop".to_owned(), "pr-1".to_owned())].is_asleep());
    }
}
