//! Typed reading of YAML nodes that records every problem instead of stopping at the first.

use std::time::Duration;

use crate::diagnostic::Sink;
use crate::model::Origin;
use crate::suggest::did_you_mean;
use crate::yaml::{Entry, Node, Value};

impl Node {
    pub(crate) fn origin(&self) -> Origin {
        Origin {
            position: self.position,
            path: self.path.clone(),
        }
    }
}

/// The keys of one mapping, read one at a time; keys the caller does not know are reported when it is opened.
pub(crate) struct Fields<'n> {
    pub node: &'n Node,
    entries: &'n [Entry],
}

impl<'n> Fields<'n> {
    /// Opens `node` as a mapping of `what` (e.g. "an app service") whose keys must be among `known`.
    /// A missing value (null) reads as an empty mapping.
    pub(crate) fn open(
        node: &'n Node,
        what: &str,
        known: &[&str],
        sink: &mut Sink,
    ) -> Option<Self> {
        let entries: &[Entry] = match &node.value {
            Value::Map(entries) => entries,
            _ if node.is_null() => &[],
            _ => {
                sink.push(
                    node.position,
                    &node.path,
                    format!(
                        "expected {what} (a mapping of `key: value`), found {}",
                        node.kind_name()
                    ),
                );
                return None;
            }
        };
        for entry in entries {
            if !known.contains(&entry.key.as_str()) {
                let suggestion = did_you_mean(&entry.key, known.iter().copied());
                // A near key of this level is the likelier meaning; a key of another level comes next.
                let misplaced = suggestion
                    .is_empty()
                    .then(|| crate::levels::misplaced_in(&entry.key, what))
                    .flatten();
                let message = if let Some(misplaced) = misplaced {
                    misplaced
                } else if suggestion.is_empty() {
                    format!(
                        "unknown key `{}` in {what}; known keys: {}",
                        entry.key,
                        known.join(", ")
                    )
                } else {
                    format!("unknown key `{}` in {what}{suggestion}", entry.key)
                };
                sink.push(entry.key_position, &entry.value.path, message);
            }
        }
        Some(Fields { node, entries })
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|entry| entry.key == key)
            .map(|entry| &entry.value)
    }

    /// The value of a key that must be present; reports `missing` (what the key is for) otherwise.
    pub(crate) fn require(&self, key: &str, missing: &str, sink: &mut Sink) -> Option<&'n Node> {
        let found = self.get(key);
        if found.is_none() {
            sink.push(
                self.node.position,
                &self.node.path,
                format!("missing required key `{key}` ({missing})"),
            );
        }
        found
    }
}

/// Every entry of a mapping whose keys are names chosen by the user (services, variables, environments).
pub(crate) fn named_entries<'n>(node: &'n Node, what: &str, sink: &mut Sink) -> &'n [Entry] {
    match &node.value {
        Value::Map(entries) => entries,
        _ if node.is_null() => &[],
        _ => {
            sink.push(
                node.position,
                &node.path,
                format!(
                    "expected {what} (a mapping of `name: …`), found {}",
                    node.kind_name()
                ),
            );
            &[]
        }
    }
}

pub(crate) fn list<'n>(node: &'n Node, what: &str, sink: &mut Sink) -> &'n [Node] {
    match &node.value {
        Value::Seq(items) => items,
        _ if node.is_null() => &[],
        _ => {
            sink.push(
                node.position,
                &node.path,
                format!("expected {what} (a list), found {}", node.kind_name()),
            );
            &[]
        }
    }
}

/// Any scalar as text (so `version: 16` reads as "16"); lists, mappings and nulls are errors.
pub(crate) fn string(node: &Node, what: &str, sink: &mut Sink) -> Option<String> {
    match &node.value {
        Value::Scalar { text, .. } if !node.is_null() => Some(text.clone()),
        _ => {
            sink.push(
                node.position,
                &node.path,
                format!("expected {what}, found {}", node.kind_name()),
            );
            None
        }
    }
}

/// A non-empty string after trimming.
pub(crate) fn text(node: &Node, what: &str, sink: &mut Sink) -> Option<String> {
    let value = string(node, what, sink)?;
    if value.trim().is_empty() {
        sink.push(
            node.position,
            &node.path,
            format!("expected {what}, found an empty string"),
        );
        return None;
    }
    Some(value)
}

pub(crate) fn integer(
    node: &Node,
    what: &str,
    range: std::ops::RangeInclusive<i64>,
    sink: &mut Sink,
) -> Option<i64> {
    let parsed = match &node.value {
        Value::Scalar { text, plain: true } => text.parse::<i64>().ok(),
        _ => None,
    };
    let Some(value) = parsed else {
        sink.push(
            node.position,
            &node.path,
            format!("expected {what} (a whole number), found {}", describe(node)),
        );
        return None;
    };
    if !range.contains(&value) {
        sink.push(
            node.position,
            &node.path,
            format!(
                "{value} is not {what}; use a number from {} to {}",
                range.start(),
                range.end()
            ),
        );
        return None;
    }
    Some(value)
}

pub(crate) fn boolean(node: &Node, sink: &mut Sink) -> Option<bool> {
    match &node.value {
        Value::Scalar { text, plain: true } if text == "true" => Some(true),
        Value::Scalar { text, plain: true } if text == "false" => Some(false),
        _ => {
            sink.push(
                node.position,
                &node.path,
                format!("expected `true` or `false`, found {}", describe(node)),
            );
            None
        }
    }
}

/// One of a fixed set of words.
pub(crate) fn choice<'c>(
    node: &Node,
    what: &str,
    options: &[&'c str],
    sink: &mut Sink,
) -> Option<&'c str> {
    let value = string(node, what, sink)?;
    if let Some(found) = options.iter().find(|option| **option == value) {
        return Some(found);
    }
    let listed = match options {
        [one] => format!("`{one}`"),
        [init @ .., last] => format!(
            "{} or `{last}`",
            init.iter()
                .map(|o| format!("`{o}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        [] => String::new(),
    };
    sink.push(
        node.position,
        &node.path,
        format!(
            "`{value}` is not {what}; use {listed}{}",
            did_you_mean(&value, options.iter().copied())
        ),
    );
    None
}

/// `90s`, `30m`, `72h`, `7d`, or sums of them such as `1h30m`.
pub(crate) fn duration(node: &Node, what: &str, sink: &mut Sink) -> Option<Duration> {
    let value = string(node, what, sink)?;
    match parse_duration(&value) {
        Some(duration) if !duration.is_zero() => Some(duration),
        _ => {
            sink.push(
                node.position,
                &node.path,
                format!(
                    "`{value}` is not a duration; write a number with a unit, such as `500ms`, `90s`, `30m`, `72h`, `7d` or `1h30m`"
                ),
            );
            None
        }
    }
}

pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut saw_unit = false;
    let mut chars = text.trim().chars().peekable();
    while let Some(ch) = chars.next() {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        let millis_per_unit: u64 = match ch {
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                1
            }
            's' => 1_000,
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            _ => return None,
        };
        let amount: u64 = digits.parse().ok()?;
        total = total.checked_add(amount.checked_mul(millis_per_unit)?)?;
        digits.clear();
        saw_unit = true;
    }
    (saw_unit && digits.is_empty()).then(|| Duration::from_millis(total))
}

/// A node's value as it would appear in a message: scalars quoted, collections by kind.
fn describe(node: &Node) -> String {
    match &node.value {
        Value::Scalar { text, .. } if !node.is_null() => format!("`{text}`"),
        _ => node.kind_name().to_owned(),
    }
}
