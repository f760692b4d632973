//! When a request last reached each environment, for whoever stops idle environments. A request notes it in the
//! cell its route carries — an atomic store, at most once a second per environment, and no lock — and the registry
//! hands the same cell to every table swapped in, so that a swap loses nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Notes closer together than this are one: under load, workers do not write the same cache line at every request.
const RESOLUTION_MS: u64 = 1000;

/// When a request last reached one environment, in milliseconds since the Unix epoch (0: none yet).
#[derive(Debug, Default)]
pub struct LastRequest(AtomicU64);

impl LastRequest {
    /// Whether a request now would move the time on: the check is a load, so that the caller decides cheaply
    /// whether to look closer at the request (a bot's does not count) before it [`LastRequest::note`]s it.
    pub(crate) fn due(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.0.load(Ordering::Relaxed)) >= RESOLUTION_MS
    }

    pub(crate) fn note(&self, now_ms: u64) {
        self.0.fetch_max(now_ms, Ordering::Relaxed);
    }

    /// When a request last reached the environment, if one did since the daemon started.
    pub fn at(&self) -> Option<SystemTime> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(UNIX_EPOCH + Duration::from_millis(ms)),
        }
    }
}

/// Cells are compared by identity: two routes share one when they lead to the same environment.
impl PartialEq for LastRequest {
    fn eq(&self, other: &LastRequest) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for LastRequest {}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Every environment's [`LastRequest`], by project and environment.
#[derive(Debug, Default)]
pub struct Activity {
    cells: Mutex<HashMap<String, HashMap<String, Arc<LastRequest>>>>,
}

impl Activity {
    /// When a request last reached the environment, if one did since the daemon started.
    pub fn last_request(&self, project: &str, environment: &str) -> Option<SystemTime> {
        self.lock()
            .get(project)
            .and_then(|environments| environments.get(environment))
            .and_then(|cell| cell.at())
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

    #[test]
    fn a_note_counts_once_a_second_and_never_goes_back() {
        let cell = LastRequest::default();
        assert_eq!(cell.at(), None);
        assert!(cell.due(5_000));
        cell.note(5_000);
        assert!(!cell.due(5_999), "within a second of the last note");
        assert!(cell.due(6_000));
        cell.note(4_000);
        assert_eq!(cell.at(), Some(UNIX_EPOCH + Duration::from_millis(5_000)));
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
        assert_eq!(
            activity.last_request("shop", "pr-1"),
            Some(UNIX_EPOCH + Duration::from_millis(10_000))
        );
        assert_eq!(activity.last_request("shop", "pr-2"), None);
        first[&("shop".to_owned(), "pr-2".to_owned())].note(20_000);
        assert_eq!(
            activity.last_request("shop", "pr-2"),
            None,
            "a dropped environment's cell is no longer read"
        );
    }
}
