//! The JSON bodies of write requests: the fields each endpoint takes, with their types and bounds, and the check of
//! a request's body against them, which lists every fault rather than stopping at the first. How a forge words its
//! refusal of a faulty body is its dialect's business; what is wrong is decided here.

use serde_json::{Map, Value};

use super::http::Request;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Type {
    Text,
    /// A string, or null to say "none".
    TextOrNull,
    Flag,
    Integer,
    /// An array of strings.
    Texts,
    /// An object or a string (GitHub's deployment payload).
    Payload,
    /// One of these strings.
    OneOf(&'static [&'static str]),
}

impl Type {
    fn admits(self, value: &Value) -> bool {
        match self {
            Type::Text => value.is_string(),
            Type::TextOrNull => value.is_string() || value.is_null(),
            Type::Flag => value.is_boolean(),
            Type::Integer => value.is_i64() || value.is_u64(),
            Type::Texts => value
                .as_array()
                .is_some_and(|items| items.iter().all(Value::is_string)),
            Type::Payload => value.is_object() || value.is_string(),
            Type::OneOf(values) => value.as_str().is_some_and(|v| values.contains(&v)),
        }
    }

    fn describe(self) -> String {
        match self {
            Type::Text => "a string".into(),
            Type::TextOrNull => "a string or null".into(),
            Type::Flag => "a boolean".into(),
            Type::Integer => "an integer".into(),
            Type::Texts => "an array of strings".into(),
            Type::Payload => "an object or a string".into(),
            Type::OneOf(values) => format!("one of {}", values.join(", ")),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Field {
    pub name: &'static str,
    pub kind: Type,
    pub required: bool,
    /// At most this many characters.
    pub max: Option<usize>,
    /// An empty string is refused.
    pub nonblank: bool,
}

impl Field {
    pub const fn required(name: &'static str, kind: Type) -> Field {
        Field {
            name,
            kind,
            required: true,
            max: None,
            nonblank: false,
        }
    }

    pub const fn optional(name: &'static str, kind: Type) -> Field {
        Field {
            required: false,
            ..Field::required(name, kind)
        }
    }

    pub const fn at_most(self, chars: usize) -> Field {
        Field {
            max: Some(chars),
            ..self
        }
    }

    pub const fn nonblank(self) -> Field {
        Field {
            nonblank: true,
            ..self
        }
    }
}

/// The body one endpoint takes.
pub(super) struct Shape {
    /// What the forge calls the thing written (`IssueComment`, `Status`, `Note`), as its errors name it.
    pub resource: &'static str,
    /// Where the endpoint is documented, as GitHub's errors point.
    pub docs: &'static str,
    pub fields: &'static [Field],
    /// Fields besides these are refused, as GitHub's schema-checked endpoints do (others ignore them).
    pub closed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Wrong {
    /// The body is not declared JSON (the header's value, if any).
    ContentType(Option<String>),
    /// Not JSON at all (the parser's complaint).
    NotJson(String),
    NotObject,
    Missing,
    Blank,
    /// Not of the type the field takes.
    Type(Type),
    /// Longer than the maximum, in characters.
    TooLong {
        chars: usize,
        max: usize,
    },
    /// Not a field the endpoint takes.
    Unknown,
}

/// One thing wrong with a body: the field it is about (none for the body as a whole) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Fault {
    pub field: Option<String>,
    pub wrong: Wrong,
}

impl Fault {
    fn of_body(wrong: Wrong) -> Fault {
        Fault { field: None, wrong }
    }

    fn of(field: &str, wrong: Wrong) -> Fault {
        Fault {
            field: Some(field.to_string()),
            wrong,
        }
    }

    /// The fault in a problem report.
    pub fn describe(&self) -> String {
        let field = self.field.as_deref().unwrap_or("the body");
        match &self.wrong {
            Wrong::ContentType(None) => "a body without Content-Type: application/json".into(),
            Wrong::ContentType(Some(other)) => {
                format!("a body sent as Content-Type: {other}, where application/json is meant")
            }
            Wrong::NotJson(why) => format!("a body that is not JSON ({why})"),
            Wrong::NotObject => "a body that is not a JSON object".into(),
            Wrong::Missing => format!("no `{field}`, which the endpoint requires"),
            Wrong::Blank => format!("`{field}` is empty"),
            Wrong::Type(wanted) => format!("`{field}` is not {}", wanted.describe()),
            Wrong::TooLong { chars, max } => {
                format!("`{field}` is {chars} characters long, over the maximum of {max}")
            }
            Wrong::Unknown => format!("`{field}` is not a field this endpoint takes"),
        }
    }
}

/// The body as a JSON object when it has the shape, else every fault found.
pub(super) fn check(shape: &Shape, request: &Request) -> Result<Map<String, Value>, Vec<Fault>> {
    let content_type = request.header("content-type");
    let media = content_type
        .and_then(|value| value.split(';').next())
        .map(str::trim);
    if !media.is_some_and(|media| media.eq_ignore_ascii_case("application/json")) {
        return Err(vec![Fault::of_body(Wrong::ContentType(
            content_type.map(str::to_string),
        ))]);
    }
    let body = match serde_json::from_slice::<Value>(&request.body) {
        Ok(Value::Object(body)) => body,
        Ok(_) => return Err(vec![Fault::of_body(Wrong::NotObject)]),
        Err(error) => return Err(vec![Fault::of_body(Wrong::NotJson(error.to_string()))]),
    };
    let mut faults = Vec::new();
    for field in shape.fields {
        let Some(value) = body.get(field.name) else {
            if field.required {
                faults.push(Fault::of(field.name, Wrong::Missing));
            }
            continue;
        };
        // Optional fields may be null where the forge reads the body loosely (Rails, Go); GitHub's schema does not.
        if value.is_null() && !field.required && !shape.closed {
            continue;
        }
        if !field.kind.admits(value) {
            faults.push(Fault::of(field.name, Wrong::Type(field.kind)));
            continue;
        }
        let text = value.as_str().unwrap_or_default();
        let chars = text.chars().count();
        if field.nonblank && text.trim().is_empty() {
            faults.push(Fault::of(field.name, Wrong::Blank));
        } else if let Some(max) = field.max.filter(|max| chars > *max) {
            faults.push(Fault::of(field.name, Wrong::TooLong { chars, max }));
        }
    }
    if shape.closed {
        for name in body.keys() {
            if !shape.fields.iter().any(|field| field.name == name) {
                faults.push(Fault::of(name, Wrong::Unknown));
            }
        }
    }
    if faults.is_empty() {
        Ok(body)
    } else {
        Err(faults)
    }
}

/// A string field of a checked body.
pub(super) fn text(body: &Map<String, Value>, name: &str) -> Option<String> {
    body.get(name).and_then(Value::as_str).map(str::to_string)
}

/// A boolean field of a checked body, `default` when absent.
pub(super) fn flag(body: &Map<String, Value>, name: &str, default: bool) -> bool {
    body.get(name).and_then(Value::as_bool).unwrap_or(default)
}
