//! YAML text → a tree of nodes that remember their position and key path.
//!
//! Built from the parser's event stream rather than through serde, because serde stops at the first problem and
//! forgets where values came from; here every node knows its `line:column` and its path
//! (`services.web.ports[0]`), duplicate keys are caught, and anchors, aliases and `<<` merge keys are expanded
//! with a bound so that an "alias bomb" cannot exhaust memory.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use crate::diagnostic::{Position, Sink};

/// Upper bound on nodes after alias expansion; far above any real spec.
const MAX_NODES: usize = 200_000;
/// Upper bound on nesting; deeper documents are refused rather than risking the stack of later walks.
const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub position: Position,
    pub path: String,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// `plain` is false for quoted and block scalars, which are always strings.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub key: String,
    pub key_position: Position,
    pub value: Node,
}

impl Node {
    pub(crate) fn entries(&self) -> Option<&[Entry]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        self.entries()?
            .iter()
            .find(|entry| entry.key == key)
            .map(|entry| &entry.value)
    }

    /// The YAML type as a user would name it, for "expected X, found Y" messages.
    pub(crate) fn kind_name(&self) -> &'static str {
        match &self.value {
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
            Value::Scalar { text, plain: false } if text.is_empty() => "an empty string",
            Value::Scalar { plain: false, .. } => "a string",
            Value::Scalar { text, plain: true } => plain_scalar_kind(text),
        }
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true } if is_null_text(text))
    }
}

fn is_null_text(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

fn plain_scalar_kind(text: &str) -> &'static str {
    if is_null_text(text) {
        "nothing (null)"
    } else if matches!(text, "true" | "false" | "True" | "False" | "TRUE" | "FALSE") {
        "a boolean"
    } else if text.parse::<i64>().is_ok() {
        "a number"
    } else if text.parse::<f64>().is_ok() {
        "a decimal number"
    } else {
        "a string"
    }
}

fn position(span: &Span) -> Position {
    Position {
        line: span.start.line(),
        column: span.start.col() + 1,
    }
}

fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// A collection being built: a list, or a mapping with its key waiting for a value.
enum Frame {
    Seq {
        node: Node,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        node: Node,
        anchor: usize,
        entries: Vec<Entry>,
        /// Entries from `<<` merge keys; added at the end for keys the mapping does not set itself.
        merged: Vec<Entry>,
        key: Option<(String, Position)>,
    },
}

struct TreeBuilder<'s> {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    documents: usize,
    nodes: usize,
    sink: &'s mut Sink,
}

/// Parses one YAML document. Returns `None` (with the reason in `sink`) when the text is not YAML this crate can
/// read; problems that do not stop reading, such as duplicate keys, are added to `sink` too.
pub(crate) fn parse_document(source: &str, sink: &mut Sink) -> Option<Node> {
    let mut builder = TreeBuilder {
        stack: Vec::new(),
        anchors: HashMap::new(),
        root: None,
        documents: 0,
        nodes: 0,
        sink,
    };
    for event in Parser::new_from_str(source) {
        match event {
            Ok((event, span)) => {
                if builder.on_event(event, &span).is_err() {
                    return None;
                }
            }
            Err(error) => {
                let marker = error.marker();
                let mut at = Position {
                    line: marker.line(),
                    column: marker.col() + 1,
                };
                if error.info().contains("tabs") {
                    at = first_tab_on_line(source, at);
                }
                builder
                    .sink
                    .push(at, "", explain_syntax_error(error.info()));
                return None;
            }
        }
    }
    match builder.root {
        Some(root) if !root.is_null() => Some(root),
        _ => {
            builder.sink.push(
                Position { line: 1, column: 1 },
                "",
                "the file is empty; it must be a mapping that starts with `project: <name>` (run `preview init` for a starter)",
            );
            None
        }
    }
}

/// The parser reports a tab error after the tab; point at the tab itself.
fn first_tab_on_line(source: &str, at: Position) -> Position {
    let column = source
        .lines()
        .nth(at.line.saturating_sub(1))
        .and_then(|line| line.chars().position(|c| c == '\t'));
    match column {
        Some(column) => Position {
            line: at.line,
            column: column + 1,
        },
        None => at,
    }
}

/// Turns the parser's wording into advice, keeping the parser's text for anything not recognised.
fn explain_syntax_error(info: &str) -> String {
    let advice = if info.contains("tabs") {
        "a tab is used for indentation; YAML allows only spaces there"
    } else if info.contains("did not find expected key") {
        "bad indentation: this line is not aligned with the keys of the mapping above it"
    } else if info.contains("mapping values are not allowed") {
        "a `:` where no mapping can start; quote the value if it contains `: `, or fix the indentation"
    } else if info.contains("did not find expected '-'") {
        "bad indentation: this line is not aligned with the items of the list above it"
    } else if info.contains("found unknown anchor") || info.contains("unknown anchor") {
        "this alias refers to an anchor that is not defined before it"
    } else if info.contains("found character that cannot start any token") {
        "a character that cannot start a YAML value; quote the value"
    } else if info.contains("recursion limit") {
        "the document nests too deeply; preview.yaml never needs that"
    } else if info.contains("quoted scalar") {
        "a quoted string is not closed, or its continuation lines are not indented"
    } else {
        return format!("invalid YAML: {info}");
    };
    format!("invalid YAML: {advice}")
}

/// Marks that reading stopped; the reason is already in the sink.
struct Stop;

impl TreeBuilder<'_> {
    fn on_event(&mut self, event: Event<'_>, span: &Span) -> Result<(), Stop> {
        let at = position(span);
        match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => Ok(()),
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    self.sink.push(
                        at,
                        "",
                        "a second YAML document (`---`); preview.yaml holds exactly one document",
                    );
                    return Err(Stop);
                }
                Ok(())
            }
            Event::Scalar(text, style, anchor, tag) => {
                let plain = matches!(style, ScalarStyle::Plain) && !is_string_tag(tag.as_deref());
                if let Some(tag) = tag.as_deref().filter(|tag| !tag.is_yaml_core_schema()) {
                    self.sink.push(
                        at,
                        &self.value_path(),
                        format!(
                            "the YAML tag `{}{}` is not supported; remove it",
                            tag.handle, tag.suffix
                        ),
                    );
                }
                if self.expecting_key() {
                    return self.on_key(text.into_owned(), plain, at);
                }
                let node = self.new_node(
                    at,
                    Value::Scalar {
                        text: text.into_owned(),
                        plain,
                    },
                )?;
                self.remember_anchor(anchor, &node);
                self.attach(node)
            }
            Event::SequenceStart(anchor, _) => {
                let node = self.open_collection(at, Value::Seq(Vec::new()))?;
                self.stack.push(Frame::Seq {
                    node,
                    anchor,
                    items: Vec::new(),
                });
                Ok(())
            }
            Event::MappingStart(anchor, _) => {
                let node = self.open_collection(at, Value::Map(Vec::new()))?;
                self.stack.push(Frame::Map {
                    node,
                    anchor,
                    entries: Vec::new(),
                    merged: Vec::new(),
                    key: None,
                });
                Ok(())
            }
            Event::SequenceEnd => match self.stack.pop() {
                Some(Frame::Seq {
                    mut node,
                    anchor,
                    items,
                }) => {
                    node.value = Value::Seq(items);
                    self.remember_anchor(anchor, &node);
                    self.attach(node)
                }
                _ => Ok(()),
            },
            Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Map {
                    mut node,
                    anchor,
                    mut entries,
                    merged,
                    ..
                }) => {
                    for entry in merged {
                        if !entries.iter().any(|explicit| explicit.key == entry.key) {
                            entries.push(entry);
                        }
                    }
                    node.value = Value::Map(entries);
                    self.remember_anchor(anchor, &node);
                    self.attach(node)
                }
                _ => Ok(()),
            },
            Event::Alias(id) => {
                let Some(target) = self.anchors.get(&id).cloned() else {
                    self.sink.push(
                        at,
                        &self.value_path(),
                        "this alias refers to an anchor that is not defined before it",
                    );
                    return Err(Stop);
                };
                if self.expecting_key() {
                    self.sink.push(
                        at,
                        &self.value_path(),
                        "an alias cannot be used as a key; write the key out",
                    );
                    return Err(Stop);
                }
                self.nodes += count_nodes(&target);
                self.check_budget(at)?;
                let path = self.value_path();
                let copy = relocate(target, &path, Some(at));
                self.attach(copy)
            }
        }
    }

    fn expecting_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }

    fn on_key(&mut self, key: String, plain: bool, at: Position) -> Result<(), Stop> {
        let Some(Frame::Map {
            node,
            entries,
            key: slot,
            ..
        }) = self.stack.last_mut()
        else {
            return Ok(());
        };
        if plain && key == "<<" {
            *slot = Some((key, at));
            return Ok(());
        }
        if let Some(first) = entries.iter().find(|entry| entry.key == key) {
            let path = child_path(&node.path, &key);
            let message = format!(
                "duplicate key `{key}` (first defined at line {}); each key may appear once",
                first.key_position.line
            );
            self.sink.push(at, &path, message);
        }
        *slot = Some((key, at));
        Ok(())
    }

    /// The key path the next value will have.
    fn value_path(&self) -> String {
        match self.stack.last() {
            None => String::new(),
            Some(Frame::Seq { node, items, .. }) => format!("{}[{}]", node.path, items.len()),
            Some(Frame::Map {
                node,
                key: Some((key, _)),
                ..
            }) => child_path(&node.path, key),
            Some(Frame::Map { node, .. }) => node.path.clone(),
        }
    }

    fn new_node(&mut self, at: Position, value: Value) -> Result<Node, Stop> {
        self.nodes += 1;
        self.check_budget(at)?;
        Ok(Node {
            position: at,
            path: self.value_path(),
            value,
        })
    }

    fn open_collection(&mut self, at: Position, value: Value) -> Result<Node, Stop> {
        if self.expecting_key() {
            self.sink.push(
                at,
                &self.value_path(),
                "a list or mapping used as a key; keys must be plain names",
            );
            return Err(Stop);
        }
        if self.stack.len() >= MAX_DEPTH {
            self.sink.push(
                at,
                &self.value_path(),
                format!("the document nests more than {MAX_DEPTH} levels deep; preview.yaml never needs that"),
            );
            return Err(Stop);
        }
        self.new_node(at, value)
    }

    fn check_budget(&mut self, at: Position) -> Result<(), Stop> {
        if self.nodes > MAX_NODES {
            self.sink.push(
                at,
                &self.value_path(),
                format!("the document expands to more than {MAX_NODES} values (through aliases?); simplify it"),
            );
            return Err(Stop);
        }
        Ok(())
    }

    fn remember_anchor(&mut self, anchor: usize, node: &Node) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
    }

    fn attach(&mut self, node: Node) -> Result<(), Stop> {
        match self.stack.last_mut() {
            None => {
                self.root = Some(node);
                Ok(())
            }
            Some(Frame::Seq { items, .. }) => {
                items.push(node);
                Ok(())
            }
            Some(Frame::Map {
                node: parent,
                entries,
                merged,
                key,
                ..
            }) => {
                let Some((key, key_position)) = key.take() else {
                    return Ok(());
                };
                if key == "<<" {
                    merge_into(merged, &parent.path, node, self.sink);
                } else {
                    entries.push(Entry {
                        key,
                        key_position,
                        value: node,
                    });
                }
                Ok(())
            }
        }
    }
}

fn is_string_tag(tag: Option<&saphyr_parser::Tag>) -> bool {
    tag.is_some_and(|tag| tag.is_yaml_core_schema() && tag.suffix == "str")
}

/// `<<: *base` (or a list of them): collects the entries to merge; the first source to set a key wins.
fn merge_into(entries: &mut Vec<Entry>, parent_path: &str, source: Node, sink: &mut Sink) {
    let sources = match source.value {
        Value::Map(_) => vec![source],
        Value::Seq(items) => items,
        Value::Scalar { .. } => {
            sink.push(
                source.position,
                &source.path,
                "a `<<` merge key needs a mapping or a list of mappings (usually an alias such as `*defaults`)",
            );
            return;
        }
    };
    for source in sources {
        let Value::Map(merged) = source.value else {
            sink.push(
                source.position,
                &source.path,
                "a `<<` merge key needs a mapping or a list of mappings",
            );
            continue;
        };
        for entry in merged {
            if !entries.iter().any(|existing| existing.key == entry.key) {
                let path = child_path(parent_path, &entry.key);
                entries.push(Entry {
                    value: relocate(entry.value, &path, None),
                    ..entry
                });
            }
        }
    }
}

fn count_nodes(node: &Node) -> usize {
    1 + match &node.value {
        Value::Scalar { .. } => 0,
        Value::Seq(items) => items.iter().map(count_nodes).sum(),
        Value::Map(entries) => entries.iter().map(|entry| count_nodes(&entry.value)).sum(),
    }
}

/// Gives a copied node the path of the place that uses it, and (for an alias) that place's position, so errors
/// point where the value takes effect.
fn relocate(mut node: Node, path: &str, at: Option<Position>) -> Node {
    node.path = path.to_owned();
    if let Some(at) = at {
        node.position = at;
    }
    node.value = match node.value {
        Value::Scalar { .. } => node.value,
        Value::Seq(items) => Value::Seq(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| relocate(item, &format!("{path}[{i}]"), at))
                .collect(),
        ),
        Value::Map(entries) => Value::Map(
            entries
                .into_iter()
                .map(|entry| Entry {
                    value: relocate(entry.value, &child_path(path, &entry.key), at),
                    key_position: at.unwrap_or(entry.key_position),
                    key: entry.key,
                })
                .collect(),
        ),
    };
    node
}
