//! One problem found in a spec, and the sorted set of them that validation returns.

use std::fmt;

use serde::Serialize;

/// A position in the source, both numbers counted from 1 (columns in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// What is wrong, where (position and key path such as `services.web.ports[0]`), and what would be right.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Diagnostic {
    #[serde(flatten)]
    pub position: Position,
    pub path: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.position, self.message)
        } else {
            write!(f, "{} {}: {}", self.position, self.path, self.message)
        }
    }
}

/// Every problem of one file, sorted by position, without repeats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostics {
    pub file: String,
    pub errors: Vec<Diagnostic>,
}

impl Diagnostics {
    pub(crate) fn new(file: &str, mut errors: Vec<Diagnostic>) -> Self {
        errors.sort();
        errors.dedup();
        Diagnostics {
            file: file.to_owned(),
            errors,
        }
    }
}

impl fmt::Display for Diagnostics {
    /// One line per problem, `file:line:column key.path: message`, as compilers print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{error}", self.file)?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Collects problems while a spec is read, so that all of them are reported at once.
#[derive(Debug, Default)]
pub(crate) struct Sink {
    errors: Vec<Diagnostic>,
}

impl Sink {
    pub(crate) fn push(&mut self, position: Position, path: &str, message: impl Into<String>) {
        self.errors.push(Diagnostic {
            position,
            path: path.to_owned(),
            message: message.into(),
        });
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub(crate) fn into_errors(self) -> Vec<Diagnostic> {
        self.errors
    }
}
