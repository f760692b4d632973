//! The result does not depend on the order in which variables are declared in the spec or stored.

use preview_resolve::*;
use proptest::prelude::*;

const NAMES: &[&str] = &["A", "B", "C", "D", "E", "F"];

fn spec(order: &[usize], values: &[String]) -> String {
    let mut project = String::new();
    let mut service = String::new();
    for &i in order {
        project.push_str(&format!("  {}: \"p{}\"\n", NAMES[i], values[i]));
        // Half of them reference another variable, so expansion order matters if anything does.
        let value = if i % 2 == 0 {
            format!("s{}", values[i])
        } else {
            format!("${{{{ variables.{} }}}}-s", NAMES[i - 1])
        };
        service.push_str(&format!("      {}: \"{value}\"\n", NAMES[i]));
    }
    format!(
        "project: p\nvariables:\n{project}services:\n  web:\n    run: x\n    variables:\n{service}environments:\n  staging: {{}}\n"
    )
}

fn stored(order: &[usize], values: &[String]) -> Vec<StoredVariable> {
    order
        .iter()
        .map(|&i| StoredVariable {
            name: NAMES[i].to_owned(),
            scope: if i % 3 == 0 {
                Scope::Project
            } else {
                Scope::Environment {
                    environment: "staging".into(),
                }
            },
            value: format!("stored-{}", values[i]),
        })
        .collect()
}

fn resolve(order: &[usize], stored_order: &[usize], values: &[String]) -> ResolvedEnvironment {
    let spec =
        preview_spec::parse_spec("p.yaml", &spec(order, values)).unwrap_or_else(|e| panic!("{e}"));
    let context = Context {
        stored: stored(stored_order, values),
        ..Context::default()
    };
    let mut resolved =
        resolve_environment(&spec, &spec.environments["staging"], &context).expect("resolves");
    // Where a spec value was written (its line) legitimately follows the declaration order; nothing else may.
    for service in resolved.services.values_mut() {
        for variable in service.variables.values_mut() {
            for source in std::iter::once(&mut variable.source)
                .chain(variable.shadowed.iter_mut().map(|s| &mut s.source))
            {
                if let Source::Spec { line, column, .. } = source {
                    (*line, *column) = (0, 0);
                }
            }
        }
    }
    resolved
}

proptest! {
    #[test]
    fn declaration_and_storage_order_do_not_matter(
        values in proptest::collection::vec("[a-z]{1,4}", NAMES.len()),
        order in Just((0..NAMES.len()).collect::<Vec<_>>()).prop_shuffle(),
        stored_order in Just((0..NAMES.len()).collect::<Vec<_>>()).prop_shuffle(),
    ) {
        let canonical: Vec<usize> = (0..NAMES.len()).collect();
        prop_assert_eq!(resolve(&order, &stored_order, &values), resolve(&canonical, &canonical, &values));
    }
}
