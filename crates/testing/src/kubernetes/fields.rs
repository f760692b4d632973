//! Field paths and their owners: the set of leaf fields an object (or an applied configuration) sets — `.spec.replicas`,
//! `.metadata.labels.app`, `.spec.template.spec.containers[name="web"].image` — and, per field manager, the fields it
//! owns, written into `metadata.managedFields` as `FieldsV1`.
//!
//! Lists of objects that all carry a key (`name`, `containerPort`, `port`, `mountPath`, `type`) are associative, as
//! the schemas of the built-in kinds make them: their items are addressed by key and owned one by one. Other lists are
//! atomic, owned as one value.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Segment {
    Field(String),
    /// An item of an associative list: the key field and its value as JSON (`name`, `"web"`).
    Item(String, String),
}

pub(crate) type FieldPath = Vec<Segment>;

/// `.spec.template.spec.containers[name="web"].image`, as conflicts print it.
pub(crate) fn display(path: &[Segment]) -> String {
    path.iter()
        .map(|segment| match segment {
            Segment::Field(name) => format!(".{name}"),
            Segment::Item(key, value) => format!("[{key}={value}]"),
        })
        .collect()
}

/// Which part of an object a write touches: the main resource, or the `status` subresource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Main,
    Status,
}

/// Fields that no manager owns: identity, system-set metadata, and the type.
const UNOWNED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "generateName",
];

/// The leaf fields (and associative-list items) `object` sets within `scope`.
pub(crate) fn paths_of(object: &Value, scope: Scope) -> BTreeSet<FieldPath> {
    let mut paths = BTreeSet::new();
    let Some(fields) = object.as_object() else {
        return paths;
    };
    for (name, value) in fields {
        let top = name.as_str();
        let wanted = match scope {
            Scope::Main => !matches!(top, "apiVersion" | "kind" | "status"),
            Scope::Status => top == "status",
        };
        if !wanted {
            continue;
        }
        let mut path = vec![Segment::Field(name.clone())];
        if top == "metadata" {
            for (field, inner) in value.as_object().into_iter().flatten() {
                if !UNOWNED_METADATA.contains(&field.as_str()) {
                    path.push(Segment::Field(field.clone()));
                    walk(inner, &mut path, &mut paths);
                    path.pop();
                }
            }
        } else {
            walk(value, &mut path, &mut paths);
        }
    }
    paths
}

fn walk(value: &Value, path: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
    match value {
        Value::Null => {}
        Value::Object(fields) if !fields.is_empty() => {
            for (name, inner) in fields {
                path.push(Segment::Field(name.clone()));
                walk(inner, path, out);
                path.pop();
            }
        }
        Value::Array(items) => match list_key(items) {
            Some(key) => {
                for item in items {
                    path.push(Segment::Item(key.to_owned(), item[key].to_string()));
                    out.insert(path.clone());
                    walk(item, path, out);
                    path.pop();
                }
            }
            None => {
                out.insert(path.clone());
            }
        },
        _ => {
            out.insert(path.clone());
        }
    }
}

/// The key of an associative list: a field every item has.
pub(crate) fn list_key(items: &[Value]) -> Option<&'static str> {
    const KEYS: &[&str] = &["name", "containerPort", "port", "mountPath", "type"];
    if items.is_empty() {
        return None;
    }
    KEYS.iter().copied().find(|key| {
        items.iter().all(|item| {
            item.get(key)
                .is_some_and(|v| v.is_string() || v.is_number())
        })
    })
}

/// Whether an item of an associative list has `key` set to `value` (as JSON).
fn has_key(item: &Value, key: &str, value: &str) -> bool {
    item.get(key)
        .and_then(|v| serde_json::to_string(v).ok())
        .is_some_and(|text| text == value)
}

/// The value at `path`.
pub(crate) fn value_at<'a>(object: &'a Value, path: &[Segment]) -> Option<&'a Value> {
    let mut node = object;
    for segment in path {
        node = match segment {
            Segment::Field(name) => node.get(name)?,
            Segment::Item(key, value) => node
                .as_array()?
                .iter()
                .find(|item| has_key(item, key, value))?,
        };
    }
    Some(node)
}

/// Removes the field or item at `path`, then the maps it leaves empty on the way up.
pub(crate) fn remove_at(object: &mut Value, path: &[Segment]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let Some(parent) = value_at_mut(object, parents) else {
        return;
    };
    match last {
        Segment::Field(name) => {
            if let Some(fields) = parent.as_object_mut() {
                fields.remove(name);
            }
        }
        Segment::Item(key, value) => {
            if let Some(items) = parent.as_array_mut() {
                items.retain(|item| !has_key(item, key, value));
            }
        }
    }
    let emptied = match parent {
        Value::Object(fields) => fields.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    };
    // Never past the top-level field (`spec` stays even when emptied).
    if emptied && parents.len() > 1 {
        remove_at(object, parents);
    }
}

fn value_at_mut<'a>(object: &'a mut Value, path: &[Segment]) -> Option<&'a mut Value> {
    let mut node = object;
    for segment in path {
        node = match segment {
            Segment::Field(name) => node.get_mut(name)?,
            Segment::Item(key, value) => node
                .as_array_mut()?
                .iter_mut()
                .find(|item| has_key(item, key, value))?,
        };
    }
    Some(node)
}

/// Whether a manager's field set came from an apply or from another write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Apply,
    Update,
}

/// One entry of `metadata.managedFields`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Manager {
    pub name: String,
    pub operation: Operation,
    pub api_version: String,
    pub subresource: Option<String>,
    pub time: String,
    pub paths: BTreeSet<FieldPath>,
}

impl Manager {
    /// `"preview"`, or `"kubectl-edit" using apps/v1` for a manager that did not apply: how conflicts name it.
    pub fn describe(&self) -> String {
        let mut name = format!("{:?}", self.name);
        if let Some(subresource) = &self.subresource {
            name = format!("{name} with subresource {subresource:?}");
        }
        match self.operation {
            Operation::Apply => name,
            Operation::Update => format!("{name} using {}", self.api_version),
        }
    }

    fn identity(&self) -> (&str, Operation, Option<&str>) {
        (&self.name, self.operation, self.subresource.as_deref())
    }

    /// Whether this entry is the one of `name`, `operation` and `subresource`.
    pub fn is(&self, name: &str, operation: Operation, subresource: Option<&str>) -> bool {
        self.identity() == (name, operation, subresource)
    }
}

/// `metadata.managedFields` for `managers` (those owning nothing are left out, as the server drops them).
pub(crate) fn render(managers: &[Manager]) -> Value {
    let entries: Vec<Value> = managers
        .iter()
        .filter(|m| !m.paths.is_empty())
        .map(|m| {
            let mut entry = json!({
                "manager": m.name,
                "operation": match m.operation {
                    Operation::Apply => "Apply",
                    Operation::Update => "Update",
                },
                "apiVersion": m.api_version,
                "time": m.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": fields_v1(&m.paths),
            });
            if let Some(subresource) = &m.subresource {
                entry["subresource"] = json!(subresource);
            }
            entry
        })
        .collect();
    Value::Array(entries)
}

/// The `FieldsV1` trie of `paths`: `f:<field>` and `k:{"name":"web"}` keys, `.` for items themselves.
fn fields_v1(paths: &BTreeSet<FieldPath>) -> Value {
    let mut root = Map::new();
    for path in paths {
        insert_path(&mut root, path);
    }
    Value::Object(root)
}

fn insert_path(node: &mut Map<String, Value>, path: &[Segment]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let key = match first {
        Segment::Field(name) => format!("f:{name}"),
        Segment::Item(key, value) => format!("k:{{\"{key}\":{value}}}"),
    };
    let child = node.entry(key).or_insert_with(|| json!({}));
    if !child.is_object() {
        *child = json!({});
    }
    let Some(child) = child.as_object_mut() else {
        return;
    };
    if !rest.is_empty() {
        insert_path(child, rest);
    } else if matches!(first, Segment::Item(..)) {
        child.insert(".".to_owned(), json!({}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(object: &Value) -> Vec<String> {
        paths_of(object, Scope::Main)
            .iter()
            .map(|p| display(p))
            .collect()
    }

    #[test]
    fn leaves_and_keyed_items() {
        let object = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "web", "labels": { "app": "web" } },
            "spec": {
                "replicas": 2,
                "template": { "spec": { "containers": [{ "name": "web", "image": "nginx", "args": ["-v"] }] } },
            },
            "status": { "replicas": 2 },
        });
        assert_eq!(
            shown(&object),
            [
                ".metadata.labels.app",
                ".spec.replicas",
                ".spec.template.spec.containers[name=\"web\"]",
                ".spec.template.spec.containers[name=\"web\"].args",
                ".spec.template.spec.containers[name=\"web\"].image",
                ".spec.template.spec.containers[name=\"web\"].name",
            ]
        );
    }

    #[test]
    fn removing_the_last_label_removes_the_map() {
        let mut object = json!({ "metadata": { "name": "a", "labels": { "app": "web" } } });
        let path = vec![
            Segment::Field("metadata".into()),
            Segment::Field("labels".into()),
            Segment::Field("app".into()),
        ];
        remove_at(&mut object, &path);
        assert_eq!(object, json!({ "metadata": { "name": "a" } }));
    }

    #[test]
    fn fields_v1_marks_items() {
        let object = json!({ "spec": { "ports": [{ "port": 80 }] } });
        let paths = paths_of(&object, Scope::Main);
        assert_eq!(
            fields_v1(&paths),
            json!({ "f:spec": { "f:ports": { "k:{\"port\":80}": { ".": {}, "f:port": {} } } } })
        );
    }
}
