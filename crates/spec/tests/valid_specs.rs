//! Valid specs read into the model with overrides applied where they belong.

use preview_spec::{
    ClonePolicy, Probe, Resources, SecretInPreviews, ServiceKind, Snapshots, Spec, VariableValue,
    parse_spec,
};

const EXAMPLE: &str = include_str!("../../../examples/shop/preview.yaml");

fn example() -> Spec {
    match parse_spec("examples/shop/preview.yaml", EXAMPLE) {
        Ok(spec) => spec,
        Err(errors) => panic!("the example must be valid:\n{errors}"),
    }
}

fn app<'a>(spec: &'a Spec, environment: &str, service: &str) -> &'a preview_spec::App {
    let environment = match environment {
        "preview" => &spec.previews.as_ref().expect("previews").template,
        name => &spec.environments[name],
    };
    match &environment.services[service].kind {
        ServiceKind::App(app) => app,
        other => panic!("{service} is a {}", other.name()),
    }
}

fn database_clone(environment: &preview_spec::Environment) -> ClonePolicy {
    match &environment.services["db"].kind {
        ServiceKind::Database(db) => db.clone.clone(),
        other => panic!("db is a {}", other.name()),
    }
}

#[test]
fn example_declares_what_the_demo_needs() {
    let spec = example();
    assert_eq!(spec.project, "shop");
    assert_eq!(
        spec.services.keys().map(String::as_str).collect::<Vec<_>>(),
        ["cache", "catalog", "db", "migrate", "storefront"]
    );
    assert_eq!(
        spec.environments
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["production", "staging"]
    );
    let storefront = app(&spec, "staging", "storefront");
    assert!(storefront.public);
    assert_eq!(
        storefront.health.as_ref().map(|h| &h.probe),
        Some(&Probe::Http("/healthz".into()))
    );
    assert_eq!(
        spec.domain.hostname_for("shop", "storefront", "pr-7"),
        "storefront-pr-7.shop.localhost"
    );
}

#[test]
fn a_generated_label_too_long_for_dns_is_shortened_stably() {
    // 55 + "-staging" = 63 fits as it is; 55 + "-pr-99999" = 64 is cut to 54 characters and a hash.
    let service = "a".repeat(55);
    let text = format!(
        "project: p\nservices:\n  {service}:\n    run: x\n    ports: [80]\n    public: true\nenvironments:\n  staging: {{}}\npreviews:\n  blueprint: staging\n"
    );
    let spec = preview_spec::parse_spec("p.yaml", &text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        spec.domain.hostname_for("p", &service, "staging"),
        format!("{service}-staging.localhost")
    );
    let long = spec.domain.hostname_for("p", &service, "pr-99999");
    let label = long.split('.').next().unwrap_or_default();
    assert_eq!(label.len(), 63, "{long}");
    assert!(label.starts_with(&"a".repeat(54)), "{long}");
    assert_eq!(long, spec.domain.hostname_for("p", &service, "pr-99999"));
    assert_ne!(long, spec.domain.hostname_for("p", &service, "pr-99998"));
    // Fixed by the algorithm, so hostnames survive upgrades.
    assert_eq!(long, format!("{}-272bd535.localhost", "a".repeat(54)));
}

#[test]
fn environment_overrides_replace_only_the_keys_they_set() {
    let spec = example();
    let production = app(&spec, "production", "storefront");
    let staging = app(&spec, "staging", "storefront");
    assert_eq!((production.replicas, staging.replicas), (2, 1));
    let names = |app: &preview_spec::App| {
        app.domains
            .iter()
            .map(|d| d.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(production),
        ["shop.example.test", "*.shop.example.test"]
    );
    assert_eq!(names(staging), ["staging.example.test"]);
    // Untouched keys keep the base value.
    assert_eq!(production.run, staging.run);
    assert_eq!(
        database_clone(&spec.environments["production"]),
        ClonePolicy::Empty
    );
    assert!(matches!(
        database_clone(&spec.environments["staging"]),
        ClonePolicy::Seed { .. }
    ));
}

#[test]
fn previews_are_the_blueprint_with_preview_overrides() {
    let spec = example();
    let previews = spec.previews.as_ref().expect("previews");
    assert_eq!(previews.blueprint, "staging");
    assert_eq!(
        database_clone(&previews.template),
        ClonePolicy::Masked {
            from: "staging".into(),
            snapshots: Snapshots::default()
        }
    );
    // Blueprint variables are there, shadowed by the preview's where both set one.
    let mode = &previews.template.variables["SHOP_MODE"];
    assert_eq!(mode.value, VariableValue::Text("preview".into()));
    assert_eq!(mode.origin.path, "previews.overrides.variables.SHOP_MODE");
    let storefront_vars = &previews.template.service_variables["storefront"];
    assert_eq!(
        storefront_vars["LOG_LEVEL"].origin.path,
        "previews.overrides.services.storefront.variables.LOG_LEVEL"
    );
    assert_eq!(
        app(&spec, "preview", "storefront").domains[0].name,
        "{env}.preview.example.test"
    );
    assert_eq!(
        previews.ttl,
        Some(std::time::Duration::from_secs(72 * 3600))
    );
}

#[test]
fn variables_keep_their_scope_and_origin() {
    let spec = example();
    let project_level = &spec.variables["SHOP_MODE"];
    assert_eq!(project_level.origin.path, "variables.SHOP_MODE");
    assert_eq!(project_level.origin.position.line, 15);
    let storefront = &spec.services["storefront"];
    assert_eq!(
        storefront.variables["SHOP_DATABASE"].value,
        VariableValue::Alias("DATABASE_URL".into())
    );
    assert_eq!(
        storefront.variables["CATALOG_URL"].value,
        VariableValue::Text("${{ services.catalog.url }}".into())
    );
    assert_eq!(
        storefront.secrets[0].previews,
        SecretInPreviews::Substitute("PREVIEW_SESSION_KEY".into())
    );
}

#[test]
fn anchors_and_merge_keys_are_expanded() {
    let spec = "project: p\n\
                services:\n\
                \x20 web: &app\n\
                \x20   run: ./web\n\
                \x20   ports: [8080]\n\
                \x20 api:\n\
                \x20   <<: *app\n\
                \x20   run: ./api\n\
                environments:\n\
                \x20 staging: {}\n";
    let spec = parse_spec("anchors.yaml", spec).unwrap_or_else(|e| panic!("{e}"));
    let ServiceKind::App(api) = &spec.services["api"].kind else {
        panic!("api is an app")
    };
    assert_eq!(api.run.as_deref(), Some("./api"));
    assert_eq!(api.ports[0].number, 8080);
    assert_eq!(api.ports[0].origin.path, "services.api.ports[0]");
}

#[test]
fn errors_in_merged_values_point_where_they_are_used() {
    let spec = "project: p\ndefaults: &d { replicas: 0 }\n";
    let errors = parse_spec("x.yaml", spec).expect_err("the spec is invalid");
    assert!(
        errors.to_string().contains("unknown key `defaults`"),
        "{errors}"
    );

    let spec = "project: p\nservices:\n  web:\n    run: x\n    resources: &r { cpu: lots }\n  api:\n    run: y\n    resources: *r\nenvironments: {staging: {}}\n";
    let errors = parse_spec("x.yaml", spec).expect_err("the spec is invalid");
    let paths: Vec<&str> = errors.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["services.web.resources.cpu", "services.api.resources.cpu"]
    );
}

#[test]
fn clone_of_any_environment_gets_the_preview_overrides() {
    let (_, qa) = preview_spec::clone_environment("shop.yaml", EXAMPLE, "production", "qa")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(qa.name, "qa");
    // production's own override (2 replicas) stays; the preview overrides replace domains and the data policy.
    let ServiceKind::App(storefront) = &qa.services["storefront"].kind else {
        panic!("app")
    };
    assert_eq!(storefront.replicas, 2);
    assert_eq!(storefront.domains[0].name, "{env}.preview.example.test");
    assert_eq!(
        database_clone(&qa),
        ClonePolicy::Masked {
            from: "staging".into(),
            snapshots: Snapshots::default()
        }
    );
    assert_eq!(
        qa.variables["SHOP_MODE"].value,
        VariableValue::Text("preview".into())
    );
}

#[test]
fn clone_of_an_unknown_environment_is_an_error() {
    let errors = preview_spec::clone_environment("shop.yaml", EXAMPLE, "prod", "qa")
        .expect_err("unknown source");
    assert_eq!(
        errors.to_string(),
        "shop.yaml:1:1 environments: cannot clone `prod`: it is not an environment of this spec; did you mean `production`?"
    );
    let errors = preview_spec::clone_environment("shop.yaml", EXAMPLE, "staging", "QA")
        .expect_err("bad name");
    assert_eq!(
        errors.to_string(),
        "shop.yaml:1:1: `QA` is not a valid environment name: it contains the uppercase letter `Q`; use lowercase"
    );
}

// ---------------------------------------------------------------- resources and limits

fn cpu(quantity: &str, millicores: u64) -> Option<preview_spec::Cpu> {
    Some(preview_spec::Cpu {
        quantity: quantity.into(),
        millicores,
    })
}

fn memory(quantity: &str, bytes: u64) -> Option<preview_spec::Memory> {
    Some(preview_spec::Memory {
        quantity: quantity.into(),
        bytes,
    })
}

#[test]
fn resources_keep_what_was_written_and_the_number() {
    let spec = example();
    assert_eq!(
        app(&spec, "staging", "catalog").resources,
        Resources {
            cpu: cpu("250m", 250),
            memory: memory("128Mi", 128 << 20),
            processes: None,
        }
    );
    let text = "project: p\nservices:\n  web:\n    run: x\n    resources: { cpu: 1.5, memory: 1G, processes: 512 }\nenvironments: {staging: {}}\n";
    let spec = parse_spec("p.yaml", text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        app(&spec, "staging", "web").resources,
        Resources {
            cpu: cpu("1.5", 1500),
            memory: memory("1G", 1_000_000_000),
            processes: Some(512),
        }
    );
}

#[test]
fn limits_layer_key_by_key() {
    let text = "project: p\n\
                limits: { cpu: 4, memory: 8Gi }\n\
                services:\n\
                \x20 web:\n\
                \x20   run: x\n\
                \x20   resources: { memory: 2Gi }\n\
                environments:\n\
                \x20 production:\n\
                \x20   limits: { memory: 16Gi, processes: 10000 }\n\
                \x20 staging: {}\n\
                previews:\n\
                \x20 blueprint: production\n\
                \x20 limits: { memory: 2Gi }\n";
    let spec = parse_spec("p.yaml", text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        spec.environments["production"].limits,
        Resources {
            cpu: cpu("4", 4000),
            memory: memory("16Gi", 16 << 30),
            processes: Some(10_000),
        }
    );
    // Keys nobody set have no total outside previews.
    assert_eq!(
        spec.environments["staging"].limits,
        Resources {
            cpu: cpu("4", 4000),
            memory: memory("8Gi", 8 << 30),
            processes: None,
        }
    );
    // Previews: the project's, then `previews.limits`, then the built-in defaults; never the blueprint's own.
    // An app may ask for its environment's whole total.
    let preview = &spec.previews.as_ref().expect("previews").template;
    assert_eq!(
        preview.limits,
        Resources {
            cpu: cpu("4", 4000),
            memory: memory("2Gi", 2 << 30),
            processes: Some(4096),
        }
    );
}

#[test]
fn previews_and_clones_always_have_totals() {
    let text = "project: p\nenvironments:\n  production: {}\n  staging: {}\npreviews:\n  blueprint: staging\n";
    let spec = parse_spec("p.yaml", text).unwrap_or_else(|e| panic!("{e}"));
    let defaults = Resources {
        cpu: cpu("2", 2000),
        memory: memory("4Gi", 4 << 30),
        processes: Some(4096),
    };
    assert_eq!(spec.environments["staging"].limits, Resources::default());
    let preview = &spec.previews.as_ref().expect("previews").template;
    assert_eq!(preview.limits, defaults);
    // A clone is a preview, whatever it was cloned from and even without a preview policy.
    let (_, qa) = preview_spec::clone_environment("p.yaml", text, "production", "qa")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(qa.limits, defaults);
    let without_policy = "project: p\nenvironments:\n  production: {}\n";
    let (_, qa) = preview_spec::clone_environment("p.yaml", without_policy, "production", "qa")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(qa.limits, defaults);
    let (_, qa) = preview_spec::clone_environment("shop.yaml", EXAMPLE, "production", "qa")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        qa.limits.cpu,
        cpu("4", 4000),
        "previews.limits of the example"
    );
}

#[test]
fn a_clone_is_checked_against_the_preview_totals() {
    let text = "project: p\nservices:\n  web:\n    run: x\n    resources: { memory: 6Gi }\nenvironments:\n  production:\n    limits: { memory: 8Gi }\n";
    assert!(parse_spec("p.yaml", text).is_ok());
    let errors = preview_spec::clone_environment("p.yaml", text, "production", "qa")
        .expect_err("6Gi is more than previews get");
    assert_eq!(
        errors.to_string(),
        "p.yaml:5:26 services.web.resources.memory: 6Gi is more than the total of environment `qa` (4Gi, the default total for previews; raise it with previews.limits.memory)"
    );
}

#[test]
fn health_checks_take_milliseconds_a_start_timeout_and_a_failure_count() {
    let spec = preview_spec::parse_spec(
        "preview.yaml",
        "project: p
services:
  web:
    run: ./web
    ports: [8000]
    health: { http: /ready, interval: 500ms, timeout: 1s250ms, start_timeout: 2m, failures: 5 }
  api:
    run: ./api
    ports: [9000]
    health: { tcp: true }
environments:
  staging: {}
",
    )
    .expect("valid");
    let app = |name: &str| match &spec.services[name].kind {
        preview_spec::ServiceKind::App(app) => app.health.clone().expect("health"),
        _ => panic!("an app"),
    };
    let web = app("web");
    assert_eq!(web.interval, std::time::Duration::from_millis(500));
    assert_eq!(web.timeout, std::time::Duration::from_millis(1250));
    assert_eq!(web.start_timeout, Some(std::time::Duration::from_secs(120)));
    assert_eq!(web.failures, 5);
    // Durations are milliseconds in JSON.
    let json = serde_json::to_value(&web).expect("json");
    assert_eq!(json["interval_ms"], 500);
    assert_eq!(json["start_timeout_ms"], 120_000);
    // The defaults the reference states.
    let api = app("api");
    assert_eq!(api.interval, std::time::Duration::from_secs(2));
    assert_eq!(api.timeout, std::time::Duration::from_secs(1));
    assert_eq!((api.start_timeout, api.failures), (None, 3));
}

#[test]
fn golden_snapshots_are_refreshed_and_kept_warm_as_the_clone_policy_says() {
    let spec = parse_spec(
        "preview.yaml",
        "project: p\nservices:\n  db:\n    type: database\n    engine: postgres\n    version: 16\nenvironments:\n  production: {}\n  staging:\n    services:\n      db:\n        clone: { policy: clone, from: production, refresh: 24h, warm_pool: 3 }\n  qa:\n    services:\n      db:\n        clone: { policy: clone, from: production }\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        database_clone(&spec.environments["staging"]),
        ClonePolicy::Clone {
            from: "production".into(),
            snapshots: Snapshots {
                refresh: Some(std::time::Duration::from_secs(24 * 3600)),
                warm_pool: 3
            }
        }
    );
    assert_eq!(
        database_clone(&spec.environments["qa"]),
        ClonePolicy::Clone {
            from: "production".into(),
            snapshots: Snapshots {
                refresh: None,
                warm_pool: 1
            }
        }
    );
}
