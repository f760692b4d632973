//! Effective values: text with secret parts that stay references until a runtime applies them.

use serde::{Deserialize, Serialize};

use crate::scope::Scope;

/// A secret a value needs; only the runtime, at the moment it applies a resource, turns it into its value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "secret", rename_all = "snake_case")]
pub enum SecretRef {
    /// A secret set with `preview secret set`.
    Stored { name: String, scope: Scope },
    /// The password `preview` generates for an environment's database.
    DatabasePassword { database: String },
}

impl std::fmt::Display for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretRef::Stored { name, scope } => write!(f, "{name} at {scope}"),
            SecretRef::DatabasePassword { database } => {
                write!(f, "password of database {database}")
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    Text(String),
    Secret(SecretRef),
}

/// A value as a sequence of parts; adjacent text is merged.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Value(pub Vec<Part>);

impl Value {
    pub fn text(text: impl Into<String>) -> Value {
        let mut value = Value::default();
        value.push_text(&text.into());
        value
    }

    pub fn secret(secret: SecretRef) -> Value {
        Value(vec![Part::Secret(secret)])
    }

    pub(crate) fn push_text(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        match self.0.last_mut() {
            Some(Part::Text(last)) => last.push_str(text),
            _ => self.0.push(Part::Text(text.to_owned())),
        }
    }

    pub(crate) fn append(&mut self, other: &Value) {
        for part in &other.0 {
            match part {
                Part::Text(text) => self.push_text(text),
                Part::Secret(secret) => self.0.push(Part::Secret(secret.clone())),
            }
        }
    }

    /// True when any part is a secret: the whole value is then treated as one.
    pub fn is_secret(&self) -> bool {
        self.0.iter().any(|part| matches!(part, Part::Secret(_)))
    }

    pub fn secrets(&self) -> impl Iterator<Item = &SecretRef> {
        self.0.iter().filter_map(|part| match part {
            Part::Secret(secret) => Some(secret),
            Part::Text(_) => None,
        })
    }

    /// The value as people may see it: secret parts as `[secret]`.
    pub fn redacted(&self) -> String {
        self.0
            .iter()
            .map(|part| match part {
                Part::Text(text) => text.as_str(),
                Part::Secret(_) => "[secret]",
            })
            .collect()
    }

    /// The text of a value without secrets.
    pub fn plain(&self) -> Option<String> {
        (!self.is_secret()).then(|| self.redacted())
    }
}
