//! Expanding a service's winning definitions into values: aliases, `${{ … }}` references to variables, secrets,
//! service outputs and built-ins, in dependency order, with cycles and missing references named as chains.

use std::collections::BTreeMap;

use preview_spec::references::{Segment, segments};
use preview_spec::suggest::did_you_mean;
use preview_spec::{Environment, Spec};

use crate::Context;
use crate::definitions::{Definitions, Raw};
use crate::outputs::output;
use crate::value::Value;

pub(crate) struct Expander<'a> {
    pub spec: &'a Spec,
    pub environment: &'a Environment,
    pub context: &'a Context,
    pub definitions: &'a Definitions,
    memo: BTreeMap<String, Result<Value, String>>,
    /// The variables being expanded, outermost first: the chain a cycle or a missing reference is named by.
    stack: Vec<String>,
}

impl<'a> Expander<'a> {
    pub(crate) fn new(
        spec: &'a Spec,
        environment: &'a Environment,
        context: &'a Context,
        definitions: &'a Definitions,
    ) -> Self {
        Expander {
            spec,
            environment,
            context,
            definitions,
            memo: BTreeMap::new(),
            stack: Vec::new(),
        }
    }

    fn chain(&self, last: &str) -> String {
        let mut names: Vec<&str> = self.stack.iter().map(String::as_str).collect();
        names.push(last);
        names.join(" → ")
    }

    /// The effective value of variable `name` for this service.
    pub(crate) fn variable(&mut self, name: &str) -> Result<Value, String> {
        if let Some(done) = self.memo.get(name) {
            return done.clone();
        }
        if self.stack.iter().any(|n| n == name) {
            let start = self.stack.iter().position(|n| n == name).unwrap_or(0);
            let cycle: Vec<&str> = self.stack[start..]
                .iter()
                .map(String::as_str)
                .chain([name])
                .collect();
            return Err(format!(
                "variables refer to each other in a cycle: {}",
                cycle.join(" → ")
            ));
        }
        let Some(winner) = self.definitions.get(name).and_then(|d| d.last()) else {
            let known = self.definitions.keys().map(String::as_str);
            return Err(format!(
                "no variable `{name}` to read ({}){}",
                self.chain(name),
                did_you_mean(name, known)
            ));
        };
        self.stack.push(name.to_owned());
        let result = match &winner.raw {
            Raw::Value(value) => Ok(value.clone()),
            Raw::Alias(target) => self.variable(target),
            Raw::Text(text) => self.text(text),
        };
        self.stack.pop();
        self.memo.insert(name.to_owned(), result.clone());
        result
    }

    fn text(&mut self, text: &str) -> Result<Value, String> {
        let pieces = segments(text)
            .map_err(|rest| format!("`{rest}` has a `${{{{` without its closing `}}}}`"))?;
        let mut value = Value::default();
        for piece in pieces {
            match piece {
                Segment::Text(text) => value.push_text(text),
                Segment::Reference(expression) => value.append(&self.reference(expression)?),
            }
        }
        Ok(value)
    }

    fn reference(&mut self, expression: &str) -> Result<Value, String> {
        let parts: Vec<&str> = expression.split('.').collect();
        let shown = format!("`${{{{ {expression} }}}}`");
        match parts.as_slice() {
            ["variables", name] => self.variable(name),
            ["secrets", name] => {
                let value = self.variable(name)?;
                if value.is_secret() {
                    Ok(value)
                } else {
                    Err(format!(
                        "{shown}: `{name}` is not a secret; use `${{{{ variables.{name} }}}}`"
                    ))
                }
            }
            ["services", service, name] => {
                let Some(target) = self.environment.services.get(*service) else {
                    return Err(format!(
                        "{shown}: no service `{service}` in `{}`",
                        self.environment.name
                    ));
                };
                output(self.spec, self.environment, self.context, target, name)
                    .map_err(|e| format!("{shown}: {e}"))
            }
            ["environment", "name"] => Ok(Value::text(&self.environment.name)),
            ["project", "name"] => Ok(Value::text(&self.spec.project)),
            ["preview", field] => {
                let Some(preview) = &self.context.preview else {
                    return Err(format!(
                        "{shown} has a value only in previews of pull requests; set it under `previews.overrides`"
                    ));
                };
                match *field {
                    "number" => Ok(Value::text(preview.number.to_string())),
                    "branch" => Ok(Value::text(&preview.branch)),
                    "commit" => Ok(Value::text(&preview.commit)),
                    "repository" => Ok(Value::text(&preview.repository)),
                    "forge" => Ok(Value::text(&preview.forge)),
                    _ => Err(format!(
                        "{shown}: previews offer number, branch, commit, repository and forge"
                    )),
                }
            }
            _ => Err(format!(
                "{shown} is not a reference; use variables.NAME, secrets.NAME, services.NAME.OUTPUT, environment.name, project.name or preview.FIELD"
            )),
        }
    }
}
