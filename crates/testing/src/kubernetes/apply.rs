//! Server-side apply and field ownership: merging an applied configuration into the live object, refusing to take
//! fields another manager set to something else (unless forced), removing the fields a manager stopped applying
//! that nobody else owns, and recording who owns what after other writes (create, replace, merge patch), which take
//! the fields they change from everyone else without conflicts.

use std::collections::BTreeSet;

use serde_json::Value;

use super::fields::{
    FieldPath, Manager, Operation, Scope, Segment, display, list_key, paths_of, remove_at, value_at,
};
use super::status::{ApiError, Cause};

/// Who applies, and how.
pub(crate) struct ApplyAs<'a> {
    pub manager: &'a str,
    pub force: bool,
    pub api_version: &'a str,
    pub scope: Scope,
    pub now: &'a str,
}

/// The object after applying `applied` as `who` to `live` (`{}` when there is none), with the new owners; or the
/// conflicts with other managers.
pub(crate) fn apply(
    live: &Value,
    managers: &[Manager],
    applied: &Value,
    who: &ApplyAs,
) -> Result<(Value, Vec<Manager>), ApiError> {
    let subresource = subresource_of(who.scope);
    let applied_paths = paths_of(applied, who.scope);
    let mut managers = managers.to_vec();

    let mut conflicts: Vec<(String, FieldPath)> = Vec::new();
    for path in applied_paths
        .iter()
        .filter(|p| !matches!(p.last(), Some(Segment::Item(..))))
    {
        if value_at(live, path) == value_at(applied, path) {
            continue;
        }
        for other in managers
            .iter_mut()
            .filter(|m| !m.is(who.manager, Operation::Apply, subresource))
        {
            if other.paths.contains(path) {
                conflicts.push((other.describe(), path.clone()));
                if who.force {
                    other.paths.remove(path);
                }
            }
        }
    }
    if !conflicts.is_empty() && !who.force {
        return Err(conflict_error(&conflicts));
    }

    let mut merged = live.clone();
    merge(&mut merged, &within(applied, who.scope));

    let before: BTreeSet<FieldPath> = managers
        .iter()
        .find(|m| m.is(who.manager, Operation::Apply, subresource))
        .map(|m| m.paths.clone())
        .unwrap_or_default();
    let others: Vec<&FieldPath> = managers
        .iter()
        .filter(|m| !m.is(who.manager, Operation::Apply, subresource))
        .flat_map(|m| m.paths.iter())
        .collect();
    let mut dropped: Vec<&FieldPath> = before
        .difference(&applied_paths)
        .filter(|gone| !others.iter().any(|owned| owned.starts_with(gone)))
        .collect();
    // Deepest first, so that an item's fields go before the item.
    dropped.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for path in dropped {
        remove_at(&mut merged, path);
    }

    match managers
        .iter_mut()
        .find(|m| m.is(who.manager, Operation::Apply, subresource))
    {
        Some(entry) => {
            if entry.paths != applied_paths {
                entry.time = who.now.to_owned();
            }
            entry.paths = applied_paths;
            entry.api_version = who.api_version.to_owned();
        }
        None => managers.push(Manager {
            name: who.manager.to_owned(),
            operation: Operation::Apply,
            api_version: who.api_version.to_owned(),
            subresource: subresource.map(str::to_owned),
            time: who.now.to_owned(),
            paths: applied_paths,
        }),
    }
    managers.retain(|m| !m.paths.is_empty());
    Ok((merged, managers))
}

/// Records a write other than apply by `manager`: it owns what it changed, nobody owns what it removed.
pub(crate) fn record_update(
    managers: &mut Vec<Manager>,
    manager: &str,
    api_version: &str,
    scope: Scope,
    old: Option<&Value>,
    new: &Value,
    now: &str,
) {
    let subresource = subresource_of(scope);
    let empty = Value::Null;
    let old = old.unwrap_or(&empty);
    let old_paths = paths_of(old, scope);
    let new_paths = paths_of(new, scope);
    let changed: BTreeSet<FieldPath> = new_paths
        .iter()
        .filter(|path| match path.last() {
            Some(Segment::Item(..)) => !old_paths.contains(*path),
            _ => value_at(old, path) != value_at(new, path),
        })
        .cloned()
        .collect();
    for entry in managers.iter_mut() {
        entry
            .paths
            .retain(|p| new_paths.contains(p) || !in_scope(p, scope));
        if !entry.is(manager, Operation::Update, subresource) {
            entry.paths.retain(|p| !changed.contains(p));
        }
    }
    if !changed.is_empty() {
        match managers
            .iter_mut()
            .find(|m| m.is(manager, Operation::Update, subresource))
        {
            Some(entry) => {
                entry.paths.extend(changed);
                entry.time = now.to_owned();
            }
            None => managers.push(Manager {
                name: manager.to_owned(),
                operation: Operation::Update,
                api_version: api_version.to_owned(),
                subresource: subresource.map(str::to_owned),
                time: now.to_owned(),
                paths: changed,
            }),
        }
    }
    managers.retain(|m| !m.paths.is_empty());
}

fn subresource_of(scope: Scope) -> Option<&'static str> {
    match scope {
        Scope::Main => None,
        Scope::Status => Some("status"),
    }
}

fn in_scope(path: &FieldPath, scope: Scope) -> bool {
    let is_status = matches!(path.first(), Some(Segment::Field(f)) if f == "status");
    is_status == (scope == Scope::Status)
}

/// The part of `applied` a write of `scope` may change.
fn within(applied: &Value, scope: Scope) -> Value {
    let mut part = applied.clone();
    if let Some(fields) = part.as_object_mut() {
        match scope {
            Scope::Main => {
                fields.remove("status");
            }
            Scope::Status => fields.retain(|name, _| name == "status"),
        }
    }
    part
}

/// Merges `applied` into `live`: maps field by field, associative lists item by item, anything else replaced.
fn merge(live: &mut Value, applied: &Value) {
    match (live, applied) {
        (Value::Object(live), Value::Object(applied)) => {
            for (name, value) in applied {
                if value.is_null() {
                    continue;
                }
                match live.get_mut(name) {
                    Some(existing) => merge(existing, value),
                    None => {
                        live.insert(name.clone(), value.clone());
                    }
                }
            }
        }
        (Value::Array(live), Value::Array(applied))
            if !live.is_empty()
                && list_key(applied).is_some()
                && list_key(live) == list_key(applied) =>
        {
            let Some(key) = list_key(applied) else {
                return;
            };
            for item in applied {
                match live.iter_mut().find(|l| l.get(key) == item.get(key)) {
                    Some(existing) => merge(existing, item),
                    None => live.push(item.clone()),
                }
            }
        }
        (live, applied) => *live = applied.clone(),
    }
}

/// `Apply failed with 1 conflict: conflict with "kubectl-edit": .spec.replicas`, with one cause per field.
fn conflict_error(conflicts: &[(String, FieldPath)]) -> ApiError {
    let causes = conflicts
        .iter()
        .map(|(manager, path)| Cause {
            reason: "FieldManagerConflict".to_owned(),
            message: format!("conflict with {manager}"),
            field: display(path),
        })
        .collect();
    let message = match conflicts {
        [(manager, path)] => format!(
            "Apply failed with 1 conflict: conflict with {manager}: {}",
            display(path)
        ),
        _ => {
            let managers: BTreeSet<&String> = conflicts.iter().map(|(m, _)| m).collect();
            let mut lines = Vec::new();
            for manager in managers {
                lines.push(format!("conflicts with {manager}:"));
                lines.extend(
                    conflicts
                        .iter()
                        .filter(|(m, _)| m == manager)
                        .map(|(_, path)| format!("- {}", display(path))),
                );
            }
            format!(
                "Apply failed with {} conflicts: {}",
                conflicts.len(),
                lines.join("\n")
            )
        }
    };
    ApiError::apply_conflicts(message, causes)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn apply_as(
        live: &Value,
        managers: &[Manager],
        manager: &str,
        applied: Value,
        force: bool,
    ) -> Result<(Value, Vec<Manager>), ApiError> {
        let who = ApplyAs {
            manager,
            force,
            api_version: "apps/v1",
            scope: Scope::Main,
            now: "2025-01-01T00:00:00Z",
        };
        apply(live, managers, &applied, &who)
    }

    fn deployment(replicas: u32, labels: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "web", "labels": labels },
            "spec": { "replicas": replicas },
        })
    }

    #[test]
    fn another_manager_setting_an_owned_field_conflicts_unless_forced() {
        let (live, managers) = apply_as(
            &json!({}),
            &[],
            "preview",
            deployment(2, json!({"app": "web"})),
            false,
        )
        .expect("first apply");
        let refused = apply_as(
            &live,
            &managers,
            "kubectl",
            deployment(5, json!({"app": "web"})),
            false,
        )
        .expect_err("a conflict");
        assert_eq!(refused.code, 409);
        assert_eq!(
            refused.message,
            "Apply failed with 1 conflict: conflict with \"preview\": .spec.replicas"
        );
        let (forced, managers) = apply_as(
            &live,
            &managers,
            "kubectl",
            deployment(5, json!({"app": "web"})),
            true,
        )
        .expect("forced");
        assert_eq!(forced["spec"]["replicas"], 5);
        let preview = managers
            .iter()
            .find(|m| m.name == "preview")
            .expect("preview still owns the label");
        assert_eq!(preview.paths.len(), 1);
    }

    #[test]
    fn fields_no_longer_applied_are_removed_unless_shared() {
        let (live, managers) = apply_as(
            &json!({}),
            &[],
            "preview",
            deployment(2, json!({"app": "web", "tier": "front"})),
            false,
        )
        .expect("first apply");
        let (after, _) = apply_as(
            &live,
            &managers,
            "preview",
            deployment(2, json!({"app": "web"})),
            false,
        )
        .expect("second apply");
        assert_eq!(after["metadata"]["labels"], json!({"app": "web"}));

        let (shared, managers) = apply_as(
            &live,
            &managers,
            "other",
            deployment(2, json!({"tier": "front"})),
            false,
        )
        .expect("same values do not conflict");
        let (after, _) = apply_as(
            &shared,
            &managers,
            "preview",
            deployment(2, json!({"app": "web"})),
            false,
        )
        .expect("third apply");
        assert_eq!(
            after["metadata"]["labels"],
            json!({"app": "web", "tier": "front"})
        );
    }

    #[test]
    fn updates_take_what_they_change() {
        let (live, mut managers) = apply_as(
            &json!({}),
            &[],
            "preview",
            deployment(2, json!({"app": "web"})),
            false,
        )
        .expect("apply");
        let edited = deployment(3, json!({"app": "web"}));
        record_update(
            &mut managers,
            "kubectl-edit",
            "apps/v1",
            Scope::Main,
            Some(&live),
            &edited,
            "now",
        );
        let refused = apply_as(
            &edited,
            &managers,
            "preview",
            deployment(2, json!({"app": "web"})),
            false,
        )
        .expect_err("a conflict");
        assert_eq!(
            refused.message,
            "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using apps/v1: .spec.replicas"
        );
    }
}
