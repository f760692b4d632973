//! Resolution, case by case: each case names an environment, a service and a variable, and expects either
//! `value <- source` (secrets shown as `[secret]`) or an error message.

use std::collections::BTreeMap;

use preview_resolve::*;
use preview_spec::SecretInPreviews;

const SPEC: &str = r#"
project: shop
domain: { base: shop.test }
variables:
  MODE: project
  LOG: info
secrets:
  - API_KEY
  - name: PAY
    previews: withhold
  - name: STRIPE
    previews: { substitute: STRIPE_TEST }
  - FORGE_TOKEN
  - HOOK
  - ACCESS
services:
  web:
    run: ./web
    ports: [{ name: http, port: 8080 }]
    public: true
    depends_on: [api, db, cache]
    variables:
      MODE: service
      API: ${{ services.api.url }}
      GREETING: "hello ${{ environment.name }}"
      DB: { alias: DATABASE_URL }
      KEY: "key=${{ secrets.API_KEY }}"
  api:
    run: ./api
    ports: [9090]
    variables: { LOG: api-debug }
  db:
    type: database
    engine: postgres
    version: 16
  cache:
    type: database
    engine: redis
    version: 7
  ledger:
    type: database
    engine: mysql
    version: 10.11
  billing:
    run: ./billing
    depends_on: [ledger, cache]
environments:
  production:
    variables: { MODE: production, STRIPE_TEST: none }
    services:
      web:
        variables: { MODE: web-production }
  staging:
    variables: { MODE: staging, STRIPE_TEST: sk_test_123 }
previews:
  blueprint: staging
  overrides:
    variables: { MODE: preview }
  forge: { kind: github, repository: octo-org/shop, webhook_secret: HOOK, token: FORGE_TOKEN }
  access: { token: ACCESS }
"#;

#[derive(Default)]
struct Given {
    stored: Vec<(&'static str, &'static str, &'static str)>,
    secrets: Vec<(&'static str, &'static str)>,
    preview: bool,
    endpoints: Vec<(&'static str, &'static str, u16)>,
}

fn scope(text: &str) -> Scope {
    Scope::parse(text).unwrap_or_else(|e| panic!("{e}"))
}

/// Resolves `environment` (`pr-42` is a preview of staging) and renders `service`'s `variable`.
fn resolve(given: &Given, environment: &str, service: &str, variable: &str) -> String {
    let (spec, env) = if environment.starts_with("pr-") {
        preview_spec::clone_environment("shop.yaml", SPEC, "staging", environment)
            .unwrap_or_else(|e| panic!("{e}"))
    } else {
        let spec = preview_spec::parse_spec("shop.yaml", SPEC).unwrap_or_else(|e| panic!("{e}"));
        let env = spec.environments[environment].clone();
        (spec, env)
    };
    let context = Context {
        stored: given
            .stored
            .iter()
            .map(|(s, name, value)| StoredVariable {
                name: (*name).into(),
                scope: scope(s),
                value: (*value).into(),
            })
            .collect(),
        secrets: given
            .secrets
            .iter()
            .map(|(s, name)| StoredSecret {
                name: (*name).into(),
                scope: scope(s),
                previews: SecretInPreviews::Shared,
            })
            .collect(),
        preview: given.preview.then(|| PreviewContext {
            forge: "github".into(),
            repository: "acme/shop".into(),
            number: 42,
            branch: "feature/cart".into(),
            commit: "0123abc".into(),
        }),
        based_on: environment.starts_with("pr-").then(|| "staging".to_owned()),
        source: None,
        public_port: None,
        endpoints: given
            .endpoints
            .iter()
            .map(|(name, host, port)| {
                (
                    (*name).to_owned(),
                    Endpoint {
                        host: (*host).into(),
                        port: *port,
                    },
                )
            })
            .collect::<BTreeMap<_, _>>(),
    };
    match resolve_environment(&spec, &env, &context) {
        Ok(resolved) => match resolved.services[service].variables.get(variable) {
            Some(v) => format!("{} <- {}", v.value.redacted(), source(&v.source)),
            None => "(absent)".to_owned(),
        },
        Err(errors) => errors
            .iter()
            .filter(|e| e.service == service)
            .map(|e| format!("error in {}: {}", e.variable, e.message))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

fn source(source: &Source) -> String {
    match source {
        Source::BuiltIn => "built-in".into(),
        Source::Spec { path, .. } => format!("spec:{path}"),
        Source::Stored { scope } => format!("stored:{scope}"),
        Source::Secret { scope } => format!("secret:{scope}"),
    }
}

#[track_caller]
fn check(given: Given, at: (&str, &str, &str), expected: &str) {
    assert_eq!(resolve(&given, at.0, at.1, at.2), expected, "{at:?}");
}

fn none() -> Given {
    Given::default()
}

fn stored(entries: &[(&'static str, &'static str, &'static str)]) -> Given {
    Given {
        stored: entries.to_vec(),
        ..Given::default()
    }
}

// ------------------------------------------------------------------ precedence between levels (spec)

#[test]
fn project_reaches_every_service() {
    check(
        none(),
        ("production", "web", "LOG"),
        "info <- spec:variables.LOG",
    );
}

#[test]
fn environment_beats_project() {
    check(
        none(),
        ("staging", "api", "MODE"),
        "staging <- spec:environments.staging.variables.MODE",
    );
}

#[test]
fn service_beats_environment() {
    check(
        none(),
        ("staging", "web", "MODE"),
        "service <- spec:services.web.variables.MODE",
    );
}

#[test]
fn service_in_environment_beats_service() {
    check(
        none(),
        ("production", "web", "MODE"),
        "web-production <- spec:environments.production.services.web.variables.MODE",
    );
}

#[test]
fn service_beats_project() {
    check(
        none(),
        ("staging", "api", "LOG"),
        "api-debug <- spec:services.api.variables.LOG",
    );
}

#[test]
fn project_beats_built_in() {
    check(
        stored(&[("project", "PORT", "1")]),
        ("staging", "web", "PORT"),
        "1 <- stored:project",
    );
    check(none(), ("staging", "web", "PORT"), "8080 <- built-in");
}

// ------------------------------------------------------------------ spec against stored, same level and across

#[test]
fn stored_beats_spec_at_project_level() {
    check(
        stored(&[("project", "LOG", "warn")]),
        ("production", "web", "LOG"),
        "warn <- stored:project",
    );
}

#[test]
fn stored_beats_spec_at_environment_level() {
    check(
        stored(&[("environment:staging", "MODE", "qa")]),
        ("staging", "api", "MODE"),
        "qa <- stored:environment:staging",
    );
}

#[test]
fn stored_beats_spec_at_service_level() {
    check(
        stored(&[("service:web", "MODE", "svc")]),
        ("staging", "web", "MODE"),
        "svc <- stored:service:web",
    );
}

#[test]
fn stored_beats_spec_at_service_in_environment_level() {
    check(
        stored(&[("service:web@production", "MODE", "x")]),
        ("production", "web", "MODE"),
        "x <- stored:service:web@production",
    );
}

#[test]
fn a_more_specific_level_beats_a_stored_value() {
    check(
        stored(&[("project", "MODE", "stored")]),
        ("staging", "api", "MODE"),
        "staging <- spec:environments.staging.variables.MODE",
    );
}

#[test]
fn a_stored_value_at_a_more_specific_level_beats_the_spec() {
    check(
        stored(&[("environment:production", "LOG", "error")]),
        ("production", "web", "LOG"),
        "error <- stored:environment:production",
    );
}

#[test]
fn stored_values_of_another_environment_do_not_apply() {
    check(
        stored(&[("environment:production", "LOG", "error")]),
        ("staging", "web", "LOG"),
        "info <- spec:variables.LOG",
    );
}

#[test]
fn stored_values_of_another_service_do_not_apply() {
    check(
        stored(&[("service:api", "LOG", "x")]),
        ("staging", "web", "LOG"),
        "info <- spec:variables.LOG",
    );
}

// ------------------------------------------------------------------ secrets

#[test]
fn a_secret_is_shown_only_as_secret() {
    check(
        none(),
        ("staging", "web", "API_KEY"),
        "[secret] <- secret:project",
    );
}

#[test]
fn a_secret_beats_a_variable_at_its_level() {
    check(
        Given {
            stored: vec![("project", "API_KEY", "plain")],
            ..none()
        },
        ("staging", "web", "API_KEY"),
        "[secret] <- secret:project",
    );
}

#[test]
fn a_variable_at_a_more_specific_level_beats_a_secret() {
    check(
        stored(&[("environment:staging", "PAY", "dummy")]),
        ("staging", "web", "PAY"),
        "dummy <- stored:environment:staging",
    );
}

#[test]
fn a_stored_secret_at_service_level_is_visible_there_only() {
    let given = || Given {
        secrets: vec![("service:api", "TOKEN")],
        ..none()
    };
    check(
        given(),
        ("staging", "api", "TOKEN"),
        "[secret] <- secret:service:api",
    );
    check(given(), ("staging", "web", "TOKEN"), "(absent)");
}

#[test]
fn a_secret_inside_text_makes_the_value_secret() {
    check(
        none(),
        ("staging", "web", "KEY"),
        "key=[secret] <- spec:services.web.variables.KEY",
    );
}

#[test]
fn secrets_reference_must_name_a_secret() {
    check(
        stored(&[("service:web", "BAD", "${{ secrets.LOG }}")]),
        ("staging", "web", "BAD"),
        "error in BAD: `${{ secrets.LOG }}`: `LOG` is not a secret; use `${{ variables.LOG }}`",
    );
}

// ------------------------------------------------------------------ aliases, references, outputs, built-ins

#[test]
fn alias_reads_another_variable() {
    check(
        none(),
        ("staging", "web", "DB"),
        "postgres://shop_staging_db:[secret]@db:5432/shop_staging_db <- spec:services.web.variables.DB",
    );
}

#[test]
fn alias_to_nothing_names_the_chain() {
    check(
        stored(&[
            ("service:api", "A", "${{ variables.B }}"),
            ("service:api", "B", "${{ variables.NOPE }}"),
        ]),
        ("staging", "api", "A"),
        "error in A: no variable `NOPE` to read (A → B → NOPE)",
    );
}

#[test]
fn reference_to_another_services_url() {
    check(
        none(),
        ("staging", "web", "API"),
        "http://api:9090 <- spec:services.web.variables.API",
    );
}

#[test]
fn reference_uses_the_runtimes_endpoints() {
    let given = Given {
        endpoints: vec![("api", "127.0.0.1", 41_000)],
        ..none()
    };
    check(
        given,
        ("staging", "web", "API"),
        "http://127.0.0.1:41000 <- spec:services.web.variables.API",
    );
    let given = Given {
        endpoints: vec![("api", "127.0.0.1", 41_000)],
        ..none()
    };
    check(given, ("staging", "api", "PORT"), "41000 <- built-in");
}

#[test]
fn reference_to_public_url() {
    check(
        stored(&[(
            "service:api",
            "CALLBACK",
            "${{ services.web.public_url }}/hook",
        )]),
        ("staging", "api", "CALLBACK"),
        "https://web-staging.shop.test/hook <- stored:service:api",
    );
}

#[test]
fn internal_services_have_no_public_url() {
    check(
        stored(&[("service:web", "X", "${{ services.api.public_url }}")]),
        ("staging", "web", "X"),
        "error in X: `${{ services.api.public_url }}`: `api` is not public, so it has no public URL",
    );
}

#[test]
fn reference_to_an_unknown_service() {
    check(
        stored(&[("service:web", "X", "${{ services.queue.url }}")]),
        ("staging", "web", "X"),
        "error in X: `${{ services.queue.url }}`: no service `queue` in `staging`",
    );
}

#[test]
fn database_connection_url_carries_its_password_as_a_secret() {
    check(
        none(),
        ("production", "web", "DATABASE_URL"),
        "postgres://shop_production_db:[secret]@db:5432/shop_production_db <- built-in",
    );
    check(none(), ("production", "api", "DATABASE_URL"), "(absent)");
}

#[test]
fn a_redis_dependency_is_the_redis_url_and_leaves_the_database_url_alone() {
    check(
        none(),
        ("production", "web", "REDIS_URL"),
        "redis://shop_production_cache:[secret]@cache:6379/0 <- built-in",
    );
    check(
        none(),
        ("production", "web", "DATABASE_URL"),
        "postgres://shop_production_db:[secret]@db:5432/shop_production_db <- built-in",
    );
    check(none(), ("production", "api", "REDIS_URL"), "(absent)");
    check(none(), ("staging", "api", "CACHE_PORT"), "6379 <- built-in");
    check(
        stored(&[("service:web", "X", "${{ services.cache.name }}")]),
        ("staging", "web", "X"),
        "error in X: `${{ services.cache.name }}`: `cache` is a Redis database, which has no name (its data is the server's database 0); it offers host, port, url, user and password",
    );
}

#[test]
fn a_mysql_dependency_is_the_database_url() {
    check(
        none(),
        ("production", "billing", "DATABASE_URL"),
        "mysql://shop_production_ledger:[secret]@ledger:3306/shop_production_ledger <- built-in",
    );
    check(
        none(),
        ("staging", "billing", "LEDGER_PORT"),
        "3306 <- built-in",
    );
    // Next to a PostgreSQL database, neither is the one SQL database: each is reached by its own variables.
    check(
        stored(&[("service:web", "X", "${{ services.ledger.url }}")]),
        ("staging", "web", "X"),
        "mysql://shop_staging_ledger:[secret]@ledger:3306/shop_staging_ledger <- stored:service:web",
    );
}

#[test]
fn addresses_of_other_services_are_built_in() {
    check(none(), ("staging", "web", "API_HOST"), "api <- built-in");
    check(
        none(),
        ("staging", "api", "WEB_PUBLIC_URL"),
        "https://web-staging.shop.test <- built-in",
    );
    check(none(), ("staging", "api", "DB_PORT"), "5432 <- built-in");
}

#[test]
fn environment_and_project_names() {
    check(
        none(),
        ("production", "web", "GREETING"),
        "hello production <- spec:services.web.variables.GREETING",
    );
    check(
        none(),
        ("production", "web", "PREVIEW_PROJECT"),
        "shop <- built-in",
    );
}

#[test]
fn a_cycle_is_named_in_full() {
    check(
        stored(&[
            ("service:api", "A", "${{ variables.B }}"),
            ("service:api", "B", "x${{ variables.C }}"),
            ("service:api", "C", "${{ variables.A }}"),
        ]),
        ("staging", "api", "A"),
        "error in A: variables refer to each other in a cycle: A → B → C → A",
    );
}

#[test]
fn a_self_reference_is_a_cycle() {
    check(
        stored(&[("service:api", "SELF", "again ${{ variables.SELF }}")]),
        ("staging", "api", "SELF"),
        "error in SELF: variables refer to each other in a cycle: SELF → SELF",
    );
}

#[test]
fn an_unclosed_reference() {
    check(
        stored(&[("service:api", "X", "${{ variables.LOG")]),
        ("staging", "api", "X"),
        "error in X: `${{ variables.LOG` has a `${{` without its closing `}}`",
    );
}

// ------------------------------------------------------------------ previews

#[test]
fn preview_overrides_beat_the_blueprint() {
    check(
        none(),
        ("pr-42", "api", "MODE"),
        "preview <- spec:previews.overrides.variables.MODE",
    );
}

#[test]
fn a_preview_sees_its_blueprints_stored_values_and_its_own_win() {
    check(
        stored(&[("environment:staging", "X", "from-staging")]),
        ("pr-42", "api", "X"),
        "from-staging <- stored:environment:staging",
    );
    check(
        stored(&[
            ("environment:staging", "X", "from-staging"),
            ("environment:pr-42", "X", "own"),
        ]),
        ("pr-42", "api", "X"),
        "own <- stored:environment:pr-42",
    );
}

#[test]
fn preview_built_ins() {
    let preview = || Given {
        preview: true,
        ..none()
    };
    check(
        preview(),
        ("pr-42", "web", "PREVIEW_PR_NUMBER"),
        "42 <- built-in",
    );
    check(
        preview(),
        ("pr-42", "web", "PREVIEW_BRANCH"),
        "feature/cart <- built-in",
    );
    check(
        preview(),
        ("pr-42", "web", "PREVIEW_COMMIT"),
        "0123abc <- built-in",
    );
    check(none(), ("staging", "web", "PREVIEW_PR_NUMBER"), "(absent)");
}

#[test]
fn preview_references_outside_previews_are_errors() {
    check(
        stored(&[("service:web", "BRANCH", "${{ preview.branch }}")]),
        ("staging", "web", "BRANCH"),
        "error in BRANCH: `${{ preview.branch }}` has a value only in previews of pull requests; set it under `previews.overrides`",
    );
    let given = Given {
        stored: vec![("service:web", "BRANCH", "${{ preview.branch }}")],
        preview: true,
        ..none()
    };
    check(
        given,
        ("pr-42", "web", "BRANCH"),
        "feature/cart <- stored:service:web",
    );
}

#[test]
fn a_withheld_secret_is_absent_from_previews() {
    check(
        none(),
        ("staging", "web", "PAY"),
        "[secret] <- secret:project",
    );
    check(none(), ("pr-42", "web", "PAY"), "(absent)");
}

#[test]
fn the_secrets_that_run_previews_never_reach_them() {
    // Shared by their policy, yet a pull request's code never sees the forge's token, the webhook secret or the
    // previews' access token; the blueprint's apps do.
    for name in ["FORGE_TOKEN", "HOOK", "ACCESS"] {
        check(
            none(),
            ("staging", "web", name),
            "[secret] <- secret:project",
        );
        check(none(), ("pr-42", "web", name), "(absent)");
    }
    check(
        none(),
        ("pr-42", "web", "API_KEY"),
        "[secret] <- secret:project",
    );
}

#[test]
fn a_substituted_secret_reads_its_substitute_in_previews() {
    check(
        none(),
        ("staging", "web", "STRIPE"),
        "[secret] <- secret:project",
    );
    check(
        none(),
        ("pr-42", "web", "STRIPE"),
        "sk_test_123 <- secret:project",
    );
}

#[test]
fn provenance_lists_what_was_shadowed() {
    let spec = preview_spec::parse_spec("shop.yaml", SPEC).expect("valid");
    let context = Context {
        stored: vec![StoredVariable {
            name: "MODE".into(),
            scope: scope("project"),
            value: "stored".into(),
        }],
        ..Context::default()
    };
    let resolved =
        resolve_environment(&spec, &spec.environments["production"], &context).expect("resolves");
    let mode = &resolved.services["web"].variables["MODE"];
    let shadowed: Vec<String> = mode
        .shadowed
        .iter()
        .map(|s| format!("{:?} {} = {}", s.level, source(&s.source), s.value))
        .collect();
    assert_eq!(
        shadowed,
        [
            "Project spec:variables.MODE = project",
            "Project stored:project = stored",
            "Environment spec:environments.production.variables.MODE = production",
            "Service spec:services.web.variables.MODE = service",
        ]
    );
    assert_eq!(mode.level, Level::ServiceInEnvironment);
}

#[test]
fn secrets_stay_references() {
    let spec = preview_spec::parse_spec("shop.yaml", SPEC).expect("valid");
    let resolved = resolve_environment(&spec, &spec.environments["staging"], &Context::default())
        .expect("resolves");
    let key = &resolved.services["web"].variables["KEY"];
    let secrets: Vec<&SecretRef> = key.value.secrets().collect();
    assert_eq!(
        secrets,
        [&SecretRef::Stored {
            name: "API_KEY".into(),
            scope: Scope::Project
        }]
    );
    assert!(key.value.is_secret() && key.value.plain().is_none());
}

#[test]
fn scopes_parse_and_print_alike() {
    for text in [
        "project",
        "environment:staging",
        "service:web",
        "service:web@staging",
    ] {
        assert_eq!(scope(text).to_string(), text);
    }
    for bad in ["", "env:x", "service:", "service:web@", "environment:"] {
        assert!(Scope::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn previews_are_marked_and_carry_their_totals() {
    let spec = preview_spec::parse_spec("shop.yaml", SPEC).expect("valid");
    let staging = resolve_environment(&spec, &spec.environments["staging"], &Context::default())
        .expect("resolves");
    assert!(!staging.preview);
    assert_eq!(staging.limits, preview_spec::Resources::default());

    let (spec, clone) = preview_spec::clone_environment("shop.yaml", SPEC, "staging", "pr-42")
        .unwrap_or_else(|e| panic!("{e}"));
    let context = Context {
        based_on: Some("staging".into()),
        ..Context::default()
    };
    let preview = resolve_environment(&spec, &clone, &context).expect("resolves");
    assert!(preview.preview);
    assert_eq!(preview.limits, clone.limits);
    assert_eq!(preview.limits.processes, Some(4096));
}

#[test]
fn an_external_servers_admin_url_and_a_masking_key_never_reach_previews() {
    let spec = r#"
project: shop
secrets: [ADMIN_URL, MASK_KEY, OTHER]
services:
  web:
    run: ./web
    ports: [8080]
  db:
    type: database
    engine: postgres
    version: 16
    mode: external
    admin_url: ADMIN_URL
    clone: { policy: empty }
    masking: { key: MASK_KEY, tables: { customers: { email: email } } }
environments:
  staging: {}
previews:
  blueprint: staging
  overrides:
    services:
      db:
        clone: { policy: masked, from: staging }
"#;
    let variables = |environment: &str| {
        let (spec, env) = if environment == "staging" {
            let spec =
                preview_spec::parse_spec("shop.yaml", spec).unwrap_or_else(|e| panic!("{e}"));
            let env = spec.environments["staging"].clone();
            (spec, env)
        } else {
            preview_spec::clone_environment("shop.yaml", spec, "staging", environment)
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let context = Context {
            based_on: (environment != "staging").then(|| "staging".to_owned()),
            ..Context::default()
        };
        let resolved =
            resolve_environment(&spec, &env, &context).unwrap_or_else(|e| panic!("{e:?}"));
        resolved.services["web"]
            .variables
            .keys()
            .cloned()
            .collect::<Vec<String>>()
    };
    let staging = variables("staging");
    let preview = variables("pr-3");
    for name in ["ADMIN_URL", "MASK_KEY", "OTHER"] {
        assert!(staging.contains(&name.to_owned()), "{name} in {staging:?}");
    }
    assert!(preview.contains(&"OTHER".to_owned()), "{preview:?}");
    assert!(!preview.contains(&"ADMIN_URL".to_owned()), "{preview:?}");
    assert!(!preview.contains(&"MASK_KEY".to_owned()), "{preview:?}");
}
