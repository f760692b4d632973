//! Reading variables and secret declarations, at any scope. A secret *value* in the file is refused without ever
//! being repeated in the message.

use crate::diagnostic::Sink;
use crate::model::{SecretDeclaration, SecretInPreviews, Variable, VariableValue, Variables};
use crate::read::{Fields, choice, list, named_entries, string, text};
use crate::yaml::{Node, Value};

/// Letters, digits and `_`, not starting with a digit.
pub fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_variable_name(name: &str, node: &Node, sink: &mut Sink) -> bool {
    if is_variable_name(name) {
        return true;
    }
    sink.push(
        node.position,
        &node.path,
        format!("`{name}` is not a variable name; use letters, digits and `_`, not starting with a digit"),
    );
    false
}

/// `variables:` of one scope. `scope` names it for messages ("project", "environment `staging`", …).
pub(crate) fn read_variables(node: &Node, scope: &str, sink: &mut Sink) -> Variables {
    let mut variables = Variables::new();
    for entry in named_entries(node, "variables", sink) {
        let name = &entry.key;
        let value_node = &entry.value;
        if !check_variable_name(name, value_node, sink) {
            continue;
        }
        let value = match &value_node.value {
            Value::Map(_) => read_variable_mapping(name, value_node, scope, sink),
            Value::Scalar { text, .. } if !value_node.is_null() => {
                Some(VariableValue::Text(text.clone()))
            }
            _ if value_node.is_null() => {
                sink.push(
                    value_node.position,
                    &value_node.path,
                    format!("`{name}` has no value; write `{name}: \"\"` for an empty value"),
                );
                None
            }
            _ => {
                sink.push(
                    value_node.position,
                    &value_node.path,
                    format!(
                        "expected the value of `{name}` (text) or `{{ alias: OTHER }}`, found {}",
                        value_node.kind_name()
                    ),
                );
                None
            }
        };
        if let Some(value) = value {
            variables.insert(
                name.clone(),
                Variable {
                    value,
                    origin: value_node.origin(),
                },
            );
        }
    }
    variables
}

fn read_variable_mapping(
    name: &str,
    node: &Node,
    scope: &str,
    sink: &mut Sink,
) -> Option<VariableValue> {
    if node.get("secret").is_some() || node.get("value").is_some() {
        sink.push(node.position, &node.path, secret_value_message(name, scope));
        return None;
    }
    let fields = Fields::open(node, "a variable", &["alias"], sink)?;
    let target = text(
        fields.require("alias", "the variable this one reads", sink)?,
        "a variable name",
        sink,
    )?;
    let target_node = fields.get("alias")?;
    check_variable_name(&target, target_node, sink).then_some(VariableValue::Alias(target))
}

fn secret_value_message(name: &str, scope: &str) -> String {
    format!(
        "a secret value is written in the spec; remove it, declare `{name}` under `secrets:` and set it with \
         `preview secret set {name} --scope {scope}` (the value is read from standard input)"
    )
}

/// `secrets:` of one scope: a list of names, or of `{ name, previews }`.
pub(crate) fn read_secrets(node: &Node, scope: &str, sink: &mut Sink) -> Vec<SecretDeclaration> {
    if let Value::Map(entries) = &node.value {
        // `secrets: { NAME: value }` is the one shape that puts values in the file: refuse each, never echo them.
        for entry in entries {
            sink.push(
                entry.key_position,
                &entry.value.path,
                secret_value_message(&entry.key, scope),
            );
        }
        return Vec::new();
    }
    let mut declarations: Vec<SecretDeclaration> = Vec::new();
    for item in list(node, "secret declarations", sink) {
        let Some(declaration) = read_secret(item, scope, sink) else {
            continue;
        };
        if declarations.iter().any(|d| d.name == declaration.name) {
            sink.push(
                item.position,
                &item.path,
                format!(
                    "secret `{}` is declared twice in this scope",
                    declaration.name
                ),
            );
            continue;
        }
        declarations.push(declaration);
    }
    declarations
}

fn read_secret(item: &Node, scope: &str, sink: &mut Sink) -> Option<SecretDeclaration> {
    let (name, previews) = match &item.value {
        Value::Map(_) => {
            if item.get("value").is_some() {
                let name = item
                    .get("name")
                    .and_then(|n| string(n, "a secret name", &mut Sink::default()));
                let name = name.unwrap_or_else(|| "NAME".to_owned());
                sink.push(
                    item.position,
                    &item.path,
                    secret_value_message(&name, scope),
                );
                return None;
            }
            // `- NAME: value`: a value written into the file.
            if let Value::Map(entries) = &item.value
                && let [entry] = entries.as_slice()
                && !["name", "previews"].contains(&entry.key.as_str())
                && is_variable_name(&entry.key)
            {
                sink.push(
                    item.position,
                    &item.path,
                    secret_value_message(&entry.key, scope),
                );
                return None;
            }
            let fields = Fields::open(item, "a secret declaration", &["name", "previews"], sink)?;
            let name_node = fields.require("name", "the secret's name", sink)?;
            let name = text(name_node, "a secret name", sink)?;
            let previews = match fields.get("previews") {
                Some(node) => read_secret_in_previews(node, sink)?,
                None => SecretInPreviews::Shared,
            };
            (name, previews)
        }
        _ => (text(item, "a secret name", sink)?, SecretInPreviews::Shared),
    };
    // `- NAME=value` (or `- NAME: value`, read as a mapping above) writes a value into the file: refuse it
    // without repeating what follows the name.
    if let Some((written, _value)) = name.split_once(['=', ':'])
        && is_variable_name(written.trim())
    {
        sink.push(
            item.position,
            &item.path,
            secret_value_message(written.trim(), scope),
        );
        return None;
    }
    if !is_variable_name(&name) {
        // Not echoed: a string in a secrets list that is not a name may well be a value pasted by mistake.
        sink.push(
            item.position,
            &item.path,
            "this is not a secret name (not repeated here, in case it is a value); a name uses letters, digits and `_`, not starting with a digit, and values are set with `preview secret set NAME`",
        );
        return None;
    }
    Some(SecretDeclaration {
        name,
        previews,
        origin: item.origin(),
    })
}

fn read_secret_in_previews(node: &Node, sink: &mut Sink) -> Option<SecretInPreviews> {
    match &node.value {
        Value::Scalar { .. } => match choice(
            node,
            "a secret's preview setting",
            &["share", "withhold"],
            sink,
        )? {
            "share" => Some(SecretInPreviews::Shared),
            _ => Some(SecretInPreviews::Withheld),
        },
        Value::Map(_) => {
            let fields = Fields::open(node, "a preview substitute", &["substitute"], sink)?;
            let target_node =
                fields.require("substitute", "the variable previews use instead", sink)?;
            let target = text(target_node, "a variable name", sink)?;
            check_variable_name(&target, target_node, sink)
                .then_some(SecretInPreviews::Substitute(target))
        }
        Value::Seq(_) => {
            sink.push(
                node.position,
                &node.path,
                "expected `share`, `withhold` or `{ substitute: VARIABLE }`, found a list",
            );
            None
        }
    }
}
