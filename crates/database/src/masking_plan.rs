//! Masking rules against the source's catalog, before a single row is copied: every rule names a table and column
//! that exist, `same_as` and foreign keys give a column the transform of the column it joins on, a unique column
//! only gets a transform that keeps it unique, a non-null column never becomes NULL, and columns whose names look
//! personal but have no rule are found (a warning, or an error in strict mode).

use std::collections::BTreeMap;

use crate::DatabaseError;
use crate::masking::{Rule, keeps_unique, looks_personal_in};
use crate::postgres::catalog::Catalog;

/// Table → column → rule, as the spec's `masking.tables` writes them (`customers` is `public.customers`).
pub type Rules = BTreeMap<String, BTreeMap<String, Rule>>;

/// The transform of each masked column, by `schema.table`, with the warnings found.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MaskingPlan {
    pub columns: BTreeMap<String, BTreeMap<String, Rule>>,
    pub warnings: Vec<String>,
}

fn qualified(table: &str) -> String {
    if table.contains('.') {
        table.to_owned()
    } else {
        format!("public.{table}")
    }
}

/// Checks `rules` against `catalog` and resolves `same_as` and references.
pub fn plan_masking(
    catalog: &Catalog,
    rules: &Rules,
    strict: bool,
) -> Result<MaskingPlan, DatabaseError> {
    let mut columns: BTreeMap<String, BTreeMap<String, Rule>> = BTreeMap::new();
    let mut problems = Vec::new();
    for (table, table_rules) in rules {
        let name = qualified(table);
        let Some(found) = catalog.tables.get(&name) else {
            problems.push(format!(
                "masking.tables.{table}: the source database has no table `{name}`"
            ));
            continue;
        };
        for (column, rule) in table_rules {
            if !found.columns.contains(column) {
                problems.push(format!(
                    "masking.tables.{table}.{column}: table `{name}` has no column `{column}`"
                ));
                continue;
            }
            columns
                .entry(name.clone())
                .or_default()
                .insert(column.clone(), rule.clone());
        }
    }
    if !problems.is_empty() {
        return Err(DatabaseError::Invalid(problems.join("\n")));
    }
    // `same_as`: the transform of the named column.
    let direct = columns.clone();
    for (table, table_columns) in &mut columns {
        for (column, rule) in table_columns.iter_mut() {
            if let Rule::SameAs {
                table: target_table,
                column: target_column,
            } = rule
            {
                match direct
                    .get(&qualified(target_table))
                    .and_then(|c| c.get(target_column.as_str()))
                {
                    Some(target) if !matches!(target, Rule::SameAs { .. }) => *rule = target.clone(),
                    _ => problems.push(format!(
                        "masking.tables.{table}.{column}: `same_as: {target_table}.{target_column}` names no masked column"
                    )),
                }
            }
        }
    }
    // A column that references a masked column gets its transform, so that the reference still holds (and
    // further references of it, in turn).
    loop {
        let mut changed = false;
        for ((child_table, child_column), (parent_table, parent_column)) in &catalog.references {
            let Some(rule) = columns
                .get(parent_table)
                .and_then(|c| c.get(parent_column))
                .cloned()
            else {
                continue;
            };
            let entry = columns.entry(child_table.clone()).or_default();
            if !entry.contains_key(child_column) {
                entry.insert(child_column.clone(), rule);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    for (table, table_columns) in &columns {
        let Some(found) = catalog.tables.get(table) else {
            continue;
        };
        for (column, rule) in table_columns {
            if found.unique.contains(column) && !keeps_unique(rule) {
                problems.push(format!(
                    "masking of {table}.{column}: the column is unique, and `{}` can give two rows the same value; use `hash` or `email`",
                    rule_name(rule)
                ));
            }
            if found.not_null.contains(column) && matches!(rule, Rule::Null) {
                problems.push(format!(
                    "masking of {table}.{column}: the column is NOT NULL, so `null` cannot be its rule"
                ));
            }
        }
    }
    if !problems.is_empty() {
        return Err(DatabaseError::Invalid(problems.join("\n")));
    }
    let mut warnings = Vec::new();
    for (table, found) in &catalog.tables {
        for column in &found.columns {
            let masked = columns.get(table).is_some_and(|c| c.contains_key(column));
            if !masked && looks_personal_in(table, column) {
                warnings.push(format!(
                    "{table}.{column} looks like personal data and has no masking rule; it is copied as it is"
                ));
            }
        }
    }
    if strict && !warnings.is_empty() {
        return Err(DatabaseError::Invalid(format!(
            "masking.strict is on and columns that look personal have no rule:\n{}",
            warnings.join("\n")
        )));
    }
    Ok(MaskingPlan { columns, warnings })
}

fn rule_name(rule: &Rule) -> &'static str {
    match rule {
        Rule::Hash => "hash",
        Rule::Email => "email",
        Rule::Name => "name",
        Rule::Phone => "phone",
        Rule::Null => "null",
        Rule::Fixed(_) => "fixed",
        Rule::SameAs { .. } => "same_as",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::catalog::Table;

    fn shop() -> Catalog {
        let table = |columns: &[&str], unique: &[&str]| Table {
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            not_null: columns.iter().map(|c| (*c).to_owned()).collect(),
            unique: unique.iter().map(|c| (*c).to_owned()).collect(),
            estimated_rows: 0,
        };
        let mut catalog = Catalog::default();
        catalog.tables.insert(
            "public.customers".into(),
            table(&["id", "email", "full_name", "phone"], &["id", "email"]),
        );
        catalog.tables.insert(
            "public.orders".into(),
            table(&["id", "customer_email", "note"], &["id"]),
        );
        catalog.tables.insert(
            "public.reviews".into(),
            table(&["id", "author_email"], &["id"]),
        );
        catalog.references.push((
            ("public.orders".into(), "customer_email".into()),
            ("public.customers".into(), "email".into()),
        ));
        catalog
    }

    fn rules(yaml_like: &[(&str, &str, Rule)]) -> Rules {
        let mut rules = Rules::new();
        for (table, column, rule) in yaml_like {
            rules
                .entry((*table).to_owned())
                .or_default()
                .insert((*column).to_owned(), rule.clone());
        }
        rules
    }

    fn check(given: &[(&str, &str, Rule)], expected: Result<&[(&str, &str, Rule)], &str>) {
        let result = plan_masking(&shop(), &rules(given), false);
        match (result, expected) {
            (Ok(plan), Ok(expected)) => {
                let mut want: BTreeMap<String, BTreeMap<String, Rule>> = BTreeMap::new();
                for (table, column, rule) in expected {
                    want.entry((*table).to_owned())
                        .or_default()
                        .insert((*column).to_owned(), rule.clone());
                }
                assert_eq!(plan.columns, want);
            }
            (Err(error), Err(part)) => assert!(error.to_string().contains(part), "{error}"),
            (other, _) => panic!("{given:?}: {other:?}"),
        }
    }

    #[test]
    fn rules_are_checked_and_resolved_before_copying() {
        // A reference to a masked column gets the same transform.
        check(
            &[
                ("customers", "email", Rule::Email),
                ("customers", "full_name", Rule::Name),
            ],
            Ok(&[
                ("public.customers", "email", Rule::Email),
                ("public.customers", "full_name", Rule::Name),
                ("public.orders", "customer_email", Rule::Email),
            ]),
        );
        // `same_as` takes the named column's transform.
        check(
            &[
                ("customers", "email", Rule::Hash),
                (
                    "reviews",
                    "author_email",
                    Rule::SameAs {
                        table: "customers".into(),
                        column: "email".into(),
                    },
                ),
            ],
            Ok(&[
                ("public.customers", "email", Rule::Hash),
                ("public.orders", "customer_email", Rule::Hash),
                ("public.reviews", "author_email", Rule::Hash),
            ]),
        );
        check(
            &[("customer", "email", Rule::Email)],
            Err("masking.tables.customer: the source database has no table `public.customer`"),
        );
        check(
            &[("customers", "emial", Rule::Email)],
            Err("masking.tables.customers.emial: table `public.customers` has no column `emial`"),
        );
        check(
            &[("customers", "email", Rule::Name)],
            Err("masking of public.customers.email: the column is unique"),
        );
        check(
            &[("customers", "email", Rule::Fixed("x".into()))],
            Err("the column is unique"),
        );
        check(
            &[("customers", "phone", Rule::Null)],
            Err("the column is NOT NULL"),
        );
        check(
            &[(
                "reviews",
                "author_email",
                Rule::SameAs {
                    table: "customers".into(),
                    column: "email".into(),
                },
            )],
            Err("names no masked column"),
        );
    }

    #[test]
    fn personal_columns_without_rules_warn_or_fail_when_strict() {
        let given = rules(&[("customers", "email", Rule::Email)]);
        let plan = plan_masking(&shop(), &given, false).expect("a plan");
        assert!(
            plan.warnings
                .iter()
                .any(|w| w.starts_with("public.customers.full_name looks like personal data")),
            "{:?}",
            plan.warnings
        );
        assert!(
            plan.warnings
                .iter()
                .any(|w| w.starts_with("public.reviews.author_email")),
            "{:?}",
            plan.warnings
        );
        assert!(
            !plan
                .warnings
                .iter()
                .any(|w| w.contains("customers.email") || w.contains(".id ")),
            "{:?}",
            plan.warnings
        );
        let error = plan_masking(&shop(), &given, true)
            .expect_err("strict")
            .to_string();
        assert!(
            error.contains("masking.strict") && error.contains("full_name"),
            "{error}"
        );
    }
}
