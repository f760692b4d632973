//! Keys at the wrong level: a key indented too little becomes a name one level up (`variables:` under `services:`
//! reads as a service called `variables`), and one indented too much an unknown key one level down. Both are
//! reported as what they are, with the level the key belongs to.

use crate::diagnostic::Sink;
use crate::services::{APP_KEYS, DATABASE_KEYS, JOB_KEYS};
use crate::yaml::{Entry, Value};
use crate::{ENVIRONMENT_KEYS, TOP_KEYS};

fn is_service_key(key: &str) -> bool {
    APP_KEYS.contains(&key) || DATABASE_KEYS.contains(&key) || JOB_KEYS.contains(&key)
}

/// Whether `entry`'s value reads as a whole service (a mapping with a key only services have), so that a service
/// that happens to be called like a key is left alone.
fn looks_like_a_service(entry: &Entry) -> bool {
    match &entry.value.value {
        Value::Map(entries) => entries
            .iter()
            .any(|e| is_service_key(&e.key) && !ENVIRONMENT_KEYS.contains(&e.key.as_str())),
        _ => false,
    }
}

/// An entry of `services:` that is a key of a service or of the top level, reported; `true` if it was.
pub(crate) fn misplaced_service(entry: &Entry, sink: &mut Sink) -> bool {
    let key = entry.key.as_str();
    let message = if is_service_key(key) && !looks_like_a_service(entry) {
        format!(
            "`{key}` is a key of a service, not a service: it is indented too little — indent it under the service it belongs to"
        )
    } else if TOP_KEYS.contains(&key)
        && !ENVIRONMENT_KEYS.contains(&key)
        && !looks_like_a_service(entry)
    {
        format!(
            "`{key}` is a top-level key, not a service: it is indented too much — move it to the start of its line"
        )
    } else {
        return false;
    };
    sink.push(entry.key_position, &entry.value.path, message);
    true
}

/// An entry of `environments:` that is a key of an environment or of the top level, reported; `true` if it was.
pub(crate) fn misplaced_environment(entry: &Entry, sink: &mut Sink) -> bool {
    let key = entry.key.as_str();
    let environment_like = match &entry.value.value {
        Value::Map(entries) => entries
            .iter()
            .all(|e| ENVIRONMENT_KEYS.contains(&e.key.as_str())),
        _ => entry.value.is_null(),
    };
    let message = if ENVIRONMENT_KEYS.contains(&key) && !environment_like {
        format!(
            "`{key}` is a key of an environment, not an environment: it is indented too little — indent it under the environment it belongs to"
        )
    } else if TOP_KEYS.contains(&key) && !ENVIRONMENT_KEYS.contains(&key) {
        format!(
            "`{key}` is a top-level key, not an environment: it is indented too much — move it to the start of its line"
        )
    } else {
        return false;
    };
    sink.push(entry.key_position, &entry.value.path, message);
    true
}

/// For an unknown key in `what` (a service, an environment, …): what it is when it is a key of another level.
pub(crate) fn misplaced_in(key: &str, what: &str) -> Option<String> {
    if what == "a project spec" {
        return None;
    }
    // Keys that also belong to lower levels (`variables`, `secrets`, …) say nothing about where they were meant.
    if TOP_KEYS.contains(&key) && !ENVIRONMENT_KEYS.contains(&key) && !is_service_key(key) {
        return Some(format!(
            "`{key}` is a top-level key, not one of {what}: it is indented too much — move it to the start of its line"
        ));
    }
    if what.starts_with("environment ") && is_service_key(key) {
        return Some(format!(
            "`{key}` is a key of a service, not of {what}: put it under the environment's `services:`, in the service it changes"
        ));
    }
    None
}
