//! A pull request's own `preview.yaml` (`previews.spec: pull_request`) may change how its apps are built, run and
//! configured — `build`, `run`, a job's `command`, and `variables` at any level — and nothing else: not the preview
//! policy, secrets and their policies, access, isolation, limits, domains, databases and where they copy from,
//! services, ports or the runtime. Otherwise a pull request could withhold nothing, open its preview to anyone, or
//! copy production's data. The registered spec and the pull request's are compared as data, positions left out.

use preview_spec::Spec;
use serde_json::Value;

/// The keys a pull request's spec may change, wherever they are.
const ITS_OWN: &[&str] = &["build", "run", "command", "variables"];

/// Where written, which moves with every edit and means nothing here.
const POSITIONS: &[&str] = &["origin", "position"];

/// The first place (a key path) where `proposed` changes more than a pull request may, or `None`.
pub(crate) fn beyond_its_own(registered: &Spec, proposed: &Spec) -> Option<String> {
    let registered = serde_json::to_value(registered).ok()?;
    let proposed = serde_json::to_value(proposed).unwrap_or(Value::Null);
    first_difference(&registered, &proposed, "")
}

fn first_difference(registered: &Value, proposed: &Value, path: &str) -> Option<String> {
    let at = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match (registered, proposed) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter()
                .filter(|key| {
                    !ITS_OWN.contains(&key.as_str()) && !POSITIONS.contains(&key.as_str())
                })
                .find_map(|key| match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => first_difference(x, y, &at(key)),
                    _ => Some(at(key)),
                })
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(x, y, &format!("{path}[{i}]"))),
        (a, b) if a == b => None,
        _ => Some(if path.is_empty() {
            "the spec".to_owned()
        } else {
            path.to_owned()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::beyond_its_own;

    const REGISTERED: &str = "project: shop
secrets: [FORGE_TOKEN, PAYMENT]
variables: { MODE: base }
services:
  web:
    build: make
    run: ./web
    ports: [8080]
    public: true
    variables: { GREETING: hello }
  db:
    type: database
    engine: postgres
    version: 16
    clone: { policy: seed, file: seed.sql }
  migrate:
    type: job
    hook: migrate
    command: ./migrate
environments:
  staging: {}
  production: {}
previews:
  blueprint: staging
  forge: { kind: github, repository: o/shop, webhook_secret: FORGE_TOKEN, token: FORGE_TOKEN }
  spec: pull_request
";

    fn parse(text: &str) -> preview_spec::Spec {
        preview_spec::parse_spec("preview.yaml", text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn its_apps_build_run_and_variables_may_change() {
        let registered = parse(REGISTERED);
        let proposed = parse(
            &REGISTERED
                .replace("build: make", "build: make release")
                .replace("run: ./web", "run: ./web --verbose")
                .replace("command: ./migrate", "command: ./migrate --all")
                .replace("GREETING: hello", "GREETING: hi, NEW: one")
                .replace(
                    "variables: { MODE: base }",
                    "\n# moved\nvariables: { MODE: other }",
                ),
        );
        assert_eq!(beyond_its_own(&registered, &proposed), None);
    }

    #[test]
    fn everything_else_is_refused_with_the_place() {
        let registered = parse(REGISTERED);
        for (from, to, place) in [
            // The preview policy: the forge, then access protection.
            (
                "  spec: pull_request\n",
                "  spec: pull_request\n  access: { token: PAYMENT }\n",
                "previews.access",
            ),
            // Secrets that previews may read, and their policies.
            (
                "secrets: [FORGE_TOKEN, PAYMENT]",
                "secrets: [FORGE_TOKEN, { name: PAYMENT, previews: withhold }]",
                "secrets[1]",
            ),
            // Where databases get their data, and previews' overrides (a copy of production's).
            (
                "clone: { policy: seed, file: seed.sql }",
                "clone: { policy: empty }",
                "clone",
            ),
            (
                "  spec: pull_request\n",
                "  spec: pull_request\n  overrides: { services: { db: { clone: { policy: clone, from: production } } } }\n",
                "clone",
            ),
            // Limits, ports, public routes and domains.
            (
                "    public: true\n",
                "    public: true\n    resources: { memory: 2Gi }\n",
                "resources",
            ),
            ("ports: [8080]", "ports: [9090]", "ports"),
            (
                "    public: true\n",
                "    public: true\n    domains: [\"{env}0.shop.example.com\"]\n",
                "domains",
            ),
            // Another service.
            (
                "  migrate:\n",
                "  spy:\n    run: ./spy\n  migrate:\n",
                "spy",
            ),
        ] {
            let proposed = parse(&REGISTERED.replace(from, to));
            let found = beyond_its_own(&registered, &proposed);
            assert!(
                found.as_deref().is_some_and(|p| p.contains(place)),
                "{to}: {found:?}"
            );
        }
    }
}
