//! Watches: `GET …?watch=true` answered with a chunked stream of newline-delimited `{"type","object"}` events — the
//! current objects as `ADDED` first when no resource version (or `0`) is given, then every change after it that the
//! selectors pick (an object leaving the selection is reported `DELETED`, one entering it `ADDED`), until
//! `timeoutSeconds` pass. `sendInitialEvents=true` ends the initial events with the bookmark that says so.
//!
//! The stream reads the store's history itself when woken, so nothing runs on its own: the stream lives in its
//! connection's task and ends with it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use super::catalog::ResourceType;
use super::reads::selection;
use super::request::Request;
use super::route::Target;
use super::selectors::{FieldSelector, LabelSelector};
use super::state::{Shared, State};
use super::status::ApiError;
use super::store::{Change, ChangeType};

/// A watch about to stream.
pub(crate) struct Watch {
    resource: ResourceType,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    /// Changes after this version; all current objects first when `None`.
    from: Option<u64>,
    initial_events_end: bool,
    timeout: Duration,
}

impl Watch {
    pub fn parse(target: &Target, request: &Request) -> Result<Watch, ApiError> {
        let (labels, fields) = selection(target, request)?;
        let from = match request.param("resourceVersion") {
            None | Some("" | "0") => None,
            Some(text) => Some(text.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("resourceVersion: Invalid value: {text:?}"))
            })?),
        };
        let timeout = match request.param("timeoutSeconds") {
            None | Some("") => Duration::from_secs(1800),
            Some(text) => Duration::from_secs(text.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("timeoutSeconds: Invalid value: {text:?}"))
            })?),
        };
        let initial_events_end = request.flag("sendInitialEvents")?;
        Ok(Watch {
            resource: target.resource.clone(),
            namespace: target.namespace.clone(),
            labels,
            fields,
            from: if initial_events_end { None } else { from },
            initial_events_end,
            timeout,
        })
    }

    fn selects(&self, object: &Value) -> bool {
        let namespace = object["metadata"]["namespace"].as_str();
        self.namespace
            .as_deref()
            .is_none_or(|ns| Some(ns) == namespace)
            && self.labels.matches(object)
            && self.fields.matches(object)
    }

    /// The event a change is to this watch, if any.
    fn event_of(&self, change: &Change) -> Option<Bytes> {
        if change.key.resource != self.resource.resource() {
            return None;
        }
        let now = self.selects(&change.object);
        let before = change.previous.as_ref().is_some_and(|p| self.selects(p));
        let kind = match (change.change, before, now) {
            (ChangeType::Added, _, true) => ChangeType::Added,
            (ChangeType::Modified, true, true) => ChangeType::Modified,
            (ChangeType::Modified, false, true) => ChangeType::Added,
            (ChangeType::Modified, true, false) => ChangeType::Deleted,
            (ChangeType::Deleted, _, true) => ChangeType::Deleted,
            _ => return None,
        };
        Some(line(kind.as_str(), &change.object))
    }

    /// The first events, and the version to follow changes from.
    fn start(&self, state: &State) -> (Vec<Bytes>, u64) {
        let Some(from) = self.from else {
            let revision = state.store.revision();
            let mut events: Vec<Bytes> = state
                .store
                .list(&self.resource.resource(), self.namespace.as_deref())
                .filter(|(_, e)| self.selects(&e.object))
                .map(|(_, e)| line("ADDED", &e.object))
                .collect();
            if self.initial_events_end {
                events.push(line(
                    "BOOKMARK",
                    &json!({
                        "kind": self.resource.kind,
                        "apiVersion": self.resource.api_version(),
                        "metadata": {
                            "resourceVersion": revision.to_string(),
                            "annotations": { "k8s.io/initial-events-end": "true" },
                        },
                    }),
                ));
            }
            return (events, revision);
        };
        let events = state
            .store
            .changes_after(from)
            .iter()
            .filter_map(|c| self.event_of(c))
            .collect();
        (events, state.store.revision())
    }
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut bytes = json!({ "type": kind, "object": object })
        .to_string()
        .into_bytes();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

struct Streaming {
    shared: Arc<Shared>,
    watch: Watch,
    changes: watch::Receiver<u64>,
    pending: std::collections::VecDeque<Bytes>,
    cursor: u64,
    deadline: Instant,
}

/// The stream of a watch's events, each a line of JSON.
pub(crate) fn stream(shared: Arc<Shared>, watch: Watch) -> impl Stream<Item = Bytes> + Send {
    let (pending, cursor, changes) = {
        let state = shared.lock();
        let (events, cursor) = watch.start(&state);
        (events.into(), cursor, state.store.subscribe())
    };
    let deadline = Instant::now() + watch.timeout;
    let streaming = Streaming {
        shared,
        watch,
        changes,
        pending,
        cursor,
        deadline,
    };
    futures_util::stream::unfold(streaming, |mut s| async move {
        loop {
            if let Some(next) = s.pending.pop_front() {
                return Some((next, s));
            }
            tokio::select! {
                changed = s.changes.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                    let state = s.shared.lock();
                    let changes = state.store.changes_after(s.cursor);
                    s.pending.extend(changes.iter().filter_map(|c| s.watch.event_of(c)));
                    s.cursor = state.store.revision();
                }
                _ = tokio::time::sleep_until(s.deadline) => return None,
            }
        }
    })
}
