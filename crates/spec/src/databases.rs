//! Database clone policies and masking rules, and the checks that tie them to environments.

use std::collections::BTreeMap;

use crate::diagnostic::Sink;
use crate::model::{
    ClonePolicy, Environment, MaskRule, Masking, SeedSource, ServiceKind, Snapshots,
};
use crate::read::{Fields, choice, duration, integer, named_entries, text};
use crate::services::Names;
use crate::suggest::did_you_mean;
use crate::yaml::{Node, Value};

pub(crate) fn read_clone_policy(
    node: &Node,
    names: &Names<'_>,
    sink: &mut Sink,
) -> Option<ClonePolicy> {
    let fields = Fields::open(
        node,
        "a clone policy",
        &["policy", "file", "job", "from", "refresh", "warm_pool"],
        sink,
    )?;
    let policy = fields
        .require(
            "policy",
            "where the data comes from: `empty`, `seed`, `clone` or `masked`",
            sink,
        )
        .and_then(|n| {
            choice(
                n,
                "a clone policy",
                &["empty", "seed", "clone", "masked"],
                sink,
            )
        })?;
    let only_with = |key: &str, allowed: &str, sink: &mut Sink| {
        if let Some(n) = fields.get(key) {
            sink.push(
                n.position,
                &n.path,
                format!("`{key}` is only used with {allowed}; this policy is `{policy}`"),
            );
        }
    };
    if policy != "seed" {
        only_with("file", "`policy: seed`", sink);
        only_with("job", "`policy: seed`", sink);
    }
    if policy != "clone" && policy != "masked" {
        for key in ["from", "refresh", "warm_pool"] {
            only_with(key, "`policy: clone` or `policy: masked`", sink);
        }
    }
    match policy {
        "empty" => Some(ClonePolicy::Empty),
        "seed" => match (fields.get("file"), fields.get("job")) {
            (Some(file), None) => Some(ClonePolicy::Seed {
                source: SeedSource::File {
                    path: text(file, "a SQL file path", sink)?,
                    origin: file.origin(),
                },
            }),
            (None, Some(job)) => {
                let job_name = text(job, "a job name", sink)?;
                check_seed_job(&job_name, job, names, sink).then_some(ClonePolicy::Seed {
                    source: SeedSource::Job(job_name),
                })
            }
            _ => {
                sink.push(
                    node.position,
                    &node.path,
                    "`policy: seed` needs exactly one of `file: path/to/seed.sql` or `job: <seed job>`",
                );
                None
            }
        },
        _ => {
            let from_node = fields.require("from", "the environment whose data is copied", sink)?;
            let from = text(from_node, "an environment name", sink)?;
            let refresh = match fields.get("refresh") {
                Some(n) => {
                    let refresh = duration(n, "how old a golden snapshot may get", sink)?;
                    if refresh < std::time::Duration::from_secs(1) {
                        sink.push(
                            n.position,
                            &n.path,
                            "`refresh` under a second would build the golden snapshot again for every new database; use `1s` or more (e.g. `24h`)",
                        );
                        return None;
                    }
                    Some(refresh)
                }
                None => None,
            };
            let warm_pool = match fields.get("warm_pool") {
                Some(n) => integer(
                    n,
                    "how many databases are kept ready",
                    0..=i64::from(Snapshots::MAX_WARM_POOL),
                    sink,
                )? as u32,
                None => Snapshots::WARM_POOL,
            };
            if !check_source_environment(&from, from_node, names, sink) {
                return None;
            }
            let snapshots = Snapshots { refresh, warm_pool };
            Some(if policy == "clone" {
                ClonePolicy::Clone { from, snapshots }
            } else {
                ClonePolicy::Masked { from, snapshots }
            })
        }
    }
}

fn check_seed_job(job: &str, node: &Node, names: &Names<'_>, sink: &mut Sink) -> bool {
    match names.job_hooks.get(job) {
        Some(hook) if hook == "seed" => true,
        Some(hook) => {
            sink.push(
                node.position,
                &node.path,
                format!("job `{job}` has `hook: {hook}`; a seed job needs `hook: seed`"),
            );
            false
        }
        None if names.services.contains_key(job) => {
            sink.push(
                node.position,
                &node.path,
                format!("`{job}` is not a job; a seed job needs `type: job` and `hook: seed`"),
            );
            false
        }
        None => names.check_service(job, node, sink),
    }
}

fn check_source_environment(from: &str, node: &Node, names: &Names<'_>, sink: &mut Sink) -> bool {
    if !names.environments.iter().any(|e| e == from) {
        sink.push(
            node.position,
            &node.path,
            format!(
                "unknown environment `{from}`{}",
                did_you_mean(from, names.environments.iter().map(String::as_str))
            ),
        );
        return false;
    }
    if names.current == Some(from) {
        sink.push(
            node.position,
            &node.path,
            format!(
                "environment `{from}` would clone its own database; override `clone` for `{from}` (for example `policy: empty` or `policy: seed`)"
            ),
        );
        return false;
    }
    true
}

fn is_sql_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_table_name(name: &str) -> bool {
    match name.split_once('.') {
        Some((schema, table)) => is_sql_identifier(schema) && is_sql_identifier(table),
        None => is_sql_identifier(name),
    }
}

const RULES: &[&str] = &["hash", "email", "name", "phone", "null"];

pub(crate) fn read_masking(node: &Node, sink: &mut Sink) -> Option<Masking> {
    let fields = Fields::open(node, "masking rules", &["key", "tables", "strict"], sink)?;
    let strict = fields
        .get("strict")
        .and_then(|n| crate::read::boolean(n, sink))
        .unwrap_or(false);
    let key_secret = fields
        .get("key")
        .and_then(|n| text(n, "a secret name", sink));
    let tables_node = fields.require("tables", "table → column → rule", sink)?;
    let mut tables: BTreeMap<String, BTreeMap<String, MaskRule>> = BTreeMap::new();
    let mut references: Vec<(&Node, String, String)> = Vec::new();
    for table in named_entries(tables_node, "tables", sink) {
        if !is_table_name(&table.key) {
            sink.push(
                table.key_position,
                &table.value.path,
                format!("`{}` is not a table name; use `table` or `schema.table` with letters, digits and `_`", table.key),
            );
            continue;
        }
        let columns = tables.entry(table.key.clone()).or_default();
        for column in named_entries(&table.value, "columns", sink) {
            if !is_sql_identifier(&column.key) {
                sink.push(
                    column.key_position,
                    &column.value.path,
                    format!(
                        "`{}` is not a column name; use letters, digits and `_`",
                        column.key
                    ),
                );
                continue;
            }
            let Some(rule) = read_rule(&column.value, sink) else {
                continue;
            };
            if let MaskRule::SameAs {
                table,
                column: target,
            } = &rule
            {
                references.push((&column.value, table.clone(), target.clone()));
            }
            columns.insert(column.key.clone(), rule);
        }
    }
    for (at, table, column) in references {
        check_same_as(&tables, at, &table, &column, sink);
    }
    Some(Masking {
        key_secret,
        tables,
        strict,
        origin: node.origin(),
    })
}

fn read_rule(node: &Node, sink: &mut Sink) -> Option<MaskRule> {
    if let Value::Map(_) = node.value {
        let fields = Fields::open(node, "a masking rule", &["fixed", "same_as"], sink)?;
        return match (fields.get("fixed"), fields.get("same_as")) {
            (Some(fixed), None) => {
                crate::read::string(fixed, "a replacement value", sink).map(MaskRule::Fixed)
            }
            (None, Some(same_as)) => {
                let target = text(same_as, "a `table.column`", sink)?;
                match target.rsplit_once('.') {
                    Some((table, column)) if is_table_name(table) && is_sql_identifier(column) => {
                        Some(MaskRule::SameAs {
                            table: table.to_owned(),
                            column: column.to_owned(),
                        })
                    }
                    _ => {
                        sink.push(
                            same_as.position,
                            &same_as.path,
                            format!("`{target}` is not a `table.column` reference"),
                        );
                        None
                    }
                }
            }
            _ => {
                sink.push(
                    node.position,
                    &node.path,
                    "a masking rule mapping holds exactly one of `fixed` or `same_as`",
                );
                None
            }
        };
    }
    let rule = choice(node, "a masking rule", RULES, sink)?;
    Some(match rule {
        "hash" => MaskRule::Hash,
        "email" => MaskRule::Email,
        "name" => MaskRule::Name,
        "phone" => MaskRule::Phone,
        _ => MaskRule::Null,
    })
}

/// `same_as` must name a column masked in its own right, so that both columns get the same transform.
fn check_same_as(
    tables: &BTreeMap<String, BTreeMap<String, MaskRule>>,
    at: &Node,
    table: &str,
    column: &str,
    sink: &mut Sink,
) {
    let known = tables
        .iter()
        .flat_map(|(t, columns)| columns.keys().map(move |c| format!("{t}.{c}")))
        .collect::<Vec<_>>();
    let reference = format!("{table}.{column}");
    match tables.get(table).and_then(|columns| columns.get(column)) {
        None => sink.push(
            at.position,
            &at.path,
            format!(
                "`{reference}` is not a masked column{}",
                did_you_mean(&reference, known.iter().map(String::as_str))
            ),
        ),
        Some(MaskRule::SameAs { .. }) => sink.push(
            at.position,
            &at.path,
            format!(
                "`{reference}` is itself a `same_as`; point at the column that has the transform"
            ),
        ),
        Some(_) => {}
    }
}

/// Masking rules must be used, and `policy: masked` must have rules, in every environment (and the preview
/// template) after overrides.
pub(crate) fn check_masking_use(environments: &[&Environment], sink: &mut Sink) {
    let mut used_somewhere: BTreeMap<String, bool> = BTreeMap::new();
    let mut declared_at: BTreeMap<String, crate::model::Origin> = BTreeMap::new();
    for environment in environments {
        for service in environment.services.values() {
            let ServiceKind::Database(database) = &service.kind else {
                continue;
            };
            let masked = matches!(database.clone, ClonePolicy::Masked { .. });
            match (&database.masking, masked) {
                (None, true) => sink.push(
                    service.origin.position,
                    &service.origin.path,
                    format!(
                        "`clone.policy: masked` in `{}` needs `masking` rules (table → column → rule)",
                        environment.name
                    ),
                ),
                (Some(masking), _) => {
                    *used_somewhere.entry(service.name.clone()).or_default() |= masked;
                    declared_at.entry(service.name.clone()).or_insert_with(|| masking.origin.clone());
                }
                (None, false) => {}
            }
        }
    }
    for (database, used) in used_somewhere {
        if used {
            continue;
        }
        let Some(origin) = declared_at.get(&database) else {
            continue;
        };
        sink.push(
            origin.position,
            &origin.path,
            format!(
                "masking rules on `{database}`, whose `clone.policy` is not `masked` in any environment or preview; \
                 set `clone: {{ policy: masked, from: <environment> }}` where data is cloned, or remove `masking`"
            ),
        );
    }
}
