//! `${{ … }}` references inside variable values: well-formed, and naming services that exist. What each service
//! outputs is the resolver's business; the spec only knows which services there are.

use std::collections::BTreeMap;

use crate::diagnostic::Sink;
use crate::model::{Service, Variable};
use crate::suggest::did_you_mean;

/// A piece of a variable's value: literal text, or the expression of a `${{ … }}` reference (trimmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment<'a> {
    Text(&'a str),
    Reference(&'a str),
}

/// Splits `text` into literal text and references; `Err` with the offending rest if a `${{` is not closed.
pub fn segments(text: &str) -> Result<Vec<Segment<'_>>, &str> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${{") {
        let after = &rest[start + 3..];
        let Some(end) = after.find("}}") else {
            return Err(&rest[start..]);
        };
        if start > 0 {
            found.push(Segment::Text(&rest[..start]));
        }
        found.push(Segment::Reference(after[..end].trim()));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        found.push(Segment::Text(rest));
    }
    Ok(found)
}

/// The expressions between `${{` and `}}` in `text`, trimmed; `Err` with the offending rest if one is unclosed.
pub fn references(text: &str) -> Result<Vec<&str>, &str> {
    Ok(segments(text)?
        .into_iter()
        .filter_map(|segment| match segment {
            Segment::Reference(expression) => Some(expression),
            Segment::Text(_) => None,
        })
        .collect())
}

pub(crate) fn check_references<'a>(
    variables: impl IntoIterator<Item = (&'a String, &'a Variable)>,
    services: &BTreeMap<String, Service>,
    sink: &mut Sink,
) {
    for (name, variable) in variables {
        let crate::model::VariableValue::Text(text) = &variable.value else {
            continue;
        };
        let at = &variable.origin;
        match references(text) {
            Err(_) => sink.push(
                at.position,
                &at.path,
                format!("`{name}` has a `${{{{` without its closing `}}}}`"),
            ),
            Ok(expressions) => {
                for expression in expressions {
                    if let Some(problem) = reference_problem(expression, services) {
                        sink.push(at.position, &at.path, problem);
                    }
                }
            }
        }
    }
}

fn reference_problem(expression: &str, services: &BTreeMap<String, Service>) -> Option<String> {
    let mut parts = expression.split('.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("services"), Some(service), Some(output)) if !output.is_empty() => {
            (!services.contains_key(service)).then(|| {
                format!(
                    "`${{{{ {expression} }}}}` refers to unknown service `{service}`{}",
                    did_you_mean(service, services.keys().map(String::as_str))
                )
            })
        }
        (Some("services"), _, _) => Some(format!(
            "`${{{{ {expression} }}}}` is incomplete; write `${{{{ services.<service>.<output> }}}}`, e.g. `${{{{ services.db.url }}}}`"
        )),
        (Some("variables" | "secrets" | "preview" | "environment" | "project"), _, _) => None,
        _ => Some(format!(
            "`${{{{ {expression} }}}}` is not a reference; references start with `services.`, `variables.`, `secrets.`, `environment.`, `project.` or `preview.`"
        )),
    }
}
