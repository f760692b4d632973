//! A plan as people read it: one line per step with what it does, and for updates what changes.

use serde_json::Value;

use crate::diff::{Action, Plan, Step};
use crate::resource::{Resource, ResourceKind};

const SECRET: &str = "[secret]";

pub fn render_plan(plan: &Plan) -> String {
    if plan.is_empty() {
        return format!("No changes: `{}` is up to date.\n", plan.environment);
    }
    let count = |action: Action| plan.steps.iter().filter(|s| s.action == action).count();
    let mut parts = Vec::new();
    for (action, word) in [
        (Action::Create, "create"),
        (Action::Update, "update"),
        (Action::Delete, "delete"),
    ] {
        let n = count(action);
        if n > 0 {
            parts.push(format!("{n} to {word}"));
        }
    }
    let mut out = format!(
        "Plan for `{}`: {} step{} ({})\n",
        plan.environment,
        plan.steps.len(),
        if plan.steps.len() == 1 { "" } else { "s" },
        parts.join(", ")
    );
    for step in &plan.steps {
        if plan.point_of_no_return == Some(step.index) {
            out.push_str(
                "      -- point of no return: the steps below cannot be undone exactly; once one has begun, a failure is retried until the deployment completes\n",
            );
        }
        out.push_str(&render_step(step));
    }
    out
}

fn render_step(step: &Step) -> String {
    let (sign, word) = match step.action {
        Action::Create => ('+', "create"),
        Action::Update => ('~', "update"),
        Action::Delete => ('-', "delete"),
    };
    let detail = match (&step.before, &step.after) {
        (Some(before), Some(after)) => changes(before, after),
        (None, Some(resource)) | (Some(resource), None) => summary(resource),
        (None, None) => String::new(),
    };
    let waits = if step.after_steps.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = step
            .after_steps
            .iter()
            .map(|i| (i + 1).to_string())
            .collect();
        format!("  (after {})", list.join(", "))
    };
    format!(
        "{:>4}. {sign} {word}  {:<22} {detail}{waits}\n",
        step.index + 1,
        step.resource
    )
}

fn summary(resource: &Resource) -> String {
    let c = &resource.content;
    let text = |v: &Value| compact(v);
    match resource.kind {
        ResourceKind::Space => format!(
            "{}/{}{}, {} isolation, {} runtime{}",
            text(&c["project"]),
            text(&c["environment"]),
            if c["preview"] == Value::Bool(true) {
                " (preview)"
            } else {
                ""
            },
            text(&c["isolation"]),
            text(&c["runtime"]),
            limits(&c["limits"])
        ),
        ResourceKind::Secrets => secret_list(&c["names"]),
        ResourceKind::Database => format!(
            "{} {} ({}), data: {}",
            text(&c["engine"]),
            text(&c["version"]),
            text(&c["mode"]),
            data_source(&c["clone"])
        ),
        ResourceKind::Build => format!(
            "{} at {}: {}",
            text(&c["service"]),
            text(&c["commit"]).chars().take(12).collect::<String>(),
            text(&c["command"])
        ),
        ResourceKind::Job => format!("hook {}: {}", text(&c["hook"]), text(&c["command"])),
        ResourceKind::App => {
            let ports: Vec<String> = c["ports"]
                .as_array()
                .map(|ports| ports.iter().map(port).collect())
                .unwrap_or_default();
            let command = if c["run"].is_null() {
                text(&c["image"])
            } else {
                text(&c["run"])
            };
            format!(
                "{command}, ports {}, replicas {}",
                ports.join(" "),
                text(&c["replicas"])
            )
        }
        ResourceKind::Certificate => list(&c["hostnames"]),
        ResourceKind::Route => format!(
            "{} → {}:{}",
            list(&c["hostnames"]),
            text(&c["service"]),
            text(&c["port"])
        ),
    }
}

/// `, limits cpu 2, memory 4Gi, processes 4096` with the keys that have a total, or nothing.
fn limits(limits: &Value) -> String {
    let set: Vec<String> = ["cpu", "memory", "processes"]
        .into_iter()
        .filter(|key| !limits[key].is_null())
        .map(|key| format!("{key} {}", shown(&limits[key])))
        .collect();
    if set.is_empty() {
        String::new()
    } else {
        format!(", limits {}", set.join(", "))
    }
}

/// `http:8080`, or just `8080` for a port named after its number.
fn port(port: &Value) -> String {
    let (name, number) = (compact(&port["name"]), compact(&port["port"]));
    if name == number {
        number
    } else {
        format!("{name}:{number}")
    }
}

fn data_source(clone: &Value) -> String {
    let policy = compact(&clone["policy"]);
    match policy.as_str() {
        "seed" if !clone["file"].is_null() => format!("seed {}", compact(&clone["file"])),
        "seed" => format!("seed by job {}", compact(&clone["job"])),
        "clone" | "masked" => format!("{policy} from {}", compact(&clone["from"])),
        _ => policy,
    }
}

fn secret_list(names: &Value) -> String {
    // `{ name: fingerprint }`: only the names are shown.
    let names: Vec<String> = names
        .as_object()
        .map(|names| names.keys().map(|n| format!("{n}={SECRET}")).collect())
        .unwrap_or_default();
    if names.is_empty() {
        "no secrets".to_owned()
    } else {
        names.join(", ")
    }
}

/// `key: old → new` for each changed field, one level into objects (`variables.LOG_LEVEL: info → debug`).
fn changes(before: &Resource, after: &Resource) -> String {
    if before.kind == ResourceKind::Secrets {
        let (old, new) = (&before.content["names"], &after.content["names"]);
        if old == new {
            return format!(
                "values that hold secrets: {}",
                changed_keys(&before.content["variables"], &after.content["variables"])
            );
        }
        return format!("{} → {}", secret_list(old), secret_list(new));
    }
    let mut changed = Vec::new();
    let (Value::Object(old), Value::Object(new)) = (&before.content, &after.content) else {
        return format!("{} → {}", compact(&before.content), compact(&after.content));
    };
    let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for key in keys {
        let (a, b) = (
            old.get(key).unwrap_or(&Value::Null),
            new.get(key).unwrap_or(&Value::Null),
        );
        // Where secrets sit in a value repeats the `variables` change, which is shown.
        if a == b || key == "with_secrets" {
            continue;
        }
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                let inner: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
                for sub in inner {
                    let (x, y) = (
                        a.get(sub).unwrap_or(&Value::Null),
                        b.get(sub).unwrap_or(&Value::Null),
                    );
                    if x != y {
                        changed.push(format!("{key}.{sub}: {} → {}", shown(x), shown(y)));
                    }
                }
            }
            _ => changed.push(format!("{key}: {} → {}", shown(a), shown(b))),
        }
    }
    if before.depends_on != after.depends_on {
        changed.push(format!(
            "depends on: {} → {}",
            before.depends_on.join(" "),
            after.depends_on.join(" ")
        ));
    }
    changed.join("; ")
}

/// `web.DATABASE_URL, …`: the service variables whose parts differ (names only: the parts name secrets).
fn changed_keys(before: &Value, after: &Value) -> String {
    let services: std::collections::BTreeSet<&String> = [before, after]
        .iter()
        .filter_map(|v| v.as_object())
        .flat_map(|m| m.keys())
        .collect();
    let mut changed = Vec::new();
    for service in services {
        let variables: std::collections::BTreeSet<&String> = [&before[service], &after[service]]
            .iter()
            .filter_map(|v| v.as_object())
            .flat_map(|m| m.keys())
            .collect();
        changed.extend(
            variables
                .into_iter()
                .filter(|v| before[service][v.as_str()] != after[service][v.as_str()])
                .map(|v| format!("{service}.{v}")),
        );
    }
    changed.join(", ")
}

/// `(none)` for null, a CPU or memory amount as it was written (`250m`, `4Gi`), anything else compact.
fn shown(value: &Value) -> String {
    match value {
        Value::Null => "(none)".to_owned(),
        Value::Object(amount) if amount.contains_key("quantity") => compact(&amount["quantity"]),
        _ => compact(value),
    }
}

fn list(values: &Value) -> String {
    values
        .as_array()
        .map(|items| items.iter().map(compact).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

/// Strings bare, anything else as compact JSON, cut at 60 characters.
fn compact(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.chars().count() > 60 {
        format!("{}…", text.chars().take(59).collect::<String>())
    } else {
        text
    }
}
