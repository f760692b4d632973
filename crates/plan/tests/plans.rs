//! Plans for the example project: create, update, no-op and delete, as snapshots, plus ordering properties.

use preview_plan::{Action, Resource, desired_state, plan_deployment, render_plan};

const EXAMPLE: &str = include_str!("../../../examples/shop/preview.yaml");

fn desired(source: &str, environment: &str) -> Vec<Resource> {
    desired_at(source, environment, None)
}

/// With a commit: the apps get builds, and their resources name the commit.
fn desired_at(source: &str, environment: &str, commit: Option<&str>) -> Vec<Resource> {
    let spec = preview_spec::parse_spec("shop.yaml", source).unwrap_or_else(|e| panic!("{e}"));
    let context = preview_resolve::Context {
        source: commit.map(|commit| preview_resolve::SourceCommit {
            repository: "/srv/shop".into(),
            directory: "deploy".into(),
            commit: commit.into(),
        }),
        ..Default::default()
    };
    desired_state(
        &preview_resolve::resolve_environment(&spec, &spec.environments[environment], &context)
            .unwrap_or_else(|e| panic!("{e:?}")),
        &Default::default(),
    )
}

/// The preview `pr-7`: the clone of staging, resolved as a clone.
fn desired_preview(source: &str) -> Vec<Resource> {
    let (spec, environment) =
        preview_spec::clone_environment("shop.yaml", source, "staging", "pr-7")
            .unwrap_or_else(|e| panic!("{e}"));
    let context = preview_resolve::Context {
        based_on: Some("staging".into()),
        ..Default::default()
    };
    desired_state(
        &preview_resolve::resolve_environment(&spec, &environment, &context)
            .unwrap_or_else(|e| panic!("{e:?}")),
        &Default::default(),
    )
}

fn content<'a>(state: &'a [Resource], id: &str) -> &'a serde_json::Value {
    &state
        .iter()
        .find(|r| r.id == id)
        .unwrap_or_else(|| panic!("no {id}"))
        .content
}

#[test]
fn the_space_carries_the_environments_totals_and_apps_their_own() {
    // What the local runtime reads: the quantity as written for Kubernetes, the number for cgroups.
    let preview = desired_preview(EXAMPLE);
    assert_eq!(
        content(&preview, "space"),
        &serde_json::json!({
            "project": "shop",
            "environment": "pr-7",
            "isolation": "logical",
            "runtime": "local",
            "preview": true,
            "limits": {
                "cpu": { "quantity": "4", "millicores": 4000 },
                "memory": { "quantity": "4Gi", "bytes": 4_294_967_296_u64 },
                "processes": 4096,
            },
        })
    );
    assert_eq!(
        content(&preview, "app/catalog")["resources"],
        serde_json::json!({
            "cpu": { "quantity": "250m", "millicores": 250 },
            "memory": { "quantity": "128Mi", "bytes": 134_217_728 },
            "processes": null,
        })
    );
    let staging = desired(EXAMPLE, "staging");
    assert_eq!(content(&staging, "space")["preview"], false);
    assert_eq!(
        content(&staging, "space")["limits"],
        serde_json::json!({ "cpu": null, "memory": null, "processes": null }),
        "a key nobody set has no total outside previews"
    );
    assert!(
        content(&staging, "job/migrate").get("resources").is_none(),
        "jobs have no resources of their own"
    );
}

#[test]
fn preview_create_plan() {
    let plan = plan_deployment("pr-7", &desired_preview(EXAMPLE), &[]);
    insta::assert_snapshot!(render_plan(&plan));
}

#[test]
fn a_new_commit_rebuilds_and_redeploys_the_apps_and_the_job() {
    let before = desired_at(
        EXAMPLE,
        "staging",
        Some("1111111111111111111111111111111111111111"),
    );
    let after = desired_at(
        EXAMPLE,
        "staging",
        Some("2222222222222222222222222222222222222222"),
    );
    let builds: Vec<&str> = after
        .iter()
        .filter(|r| r.kind == preview_plan::ResourceKind::Build)
        .map(|r| r.id.as_str())
        .collect();
    assert_eq!(builds, ["build/catalog", "build/storefront"]);
    let catalog = after
        .iter()
        .find(|r| r.id == "app/catalog")
        .expect("catalog");
    assert!(catalog.depends_on.contains(&"build/catalog".to_owned()));
    let plan = plan_deployment("staging", &after, &before);
    insta::assert_snapshot!(render_plan(&plan));
}

#[test]
fn create_plan() {
    let plan = plan_deployment("staging", &desired(EXAMPLE, "staging"), &[]);
    assert!(plan.steps.len() >= 8);
    assert!(plan.steps.iter().all(|s| s.action == Action::Create));
    insta::assert_snapshot!(render_plan(&plan));
}

#[test]
fn no_op_plan() {
    let state = desired(EXAMPLE, "staging");
    let plan = plan_deployment("staging", &state, &state);
    assert!(plan.is_empty());
    insta::assert_snapshot!(render_plan(&plan), @"No changes: `staging` is up to date.");
}

#[test]
fn update_plan() {
    let before = desired(EXAMPLE, "staging");
    let changed = EXAMPLE
        .replace(
            "      memory: 128Mi",
            "      memory: 256Mi\n      processes: 64",
        )
        .replace(
            "      SHOP_MODE: staging",
            "      SHOP_MODE: staging\n      FEATURE_FLAGS: checkout-v2",
        )
        .replace(
            "    depends_on: [db, migrate]",
            "    replicas: 3\n    depends_on: [db, migrate]",
        )
        .replace(
            "  migrate:\n",
            "  search:\n    run: ./search\n    ports: [7700]\n  migrate:\n",
        );
    let changed = changed.replace(
        "SHOP_DATABASE: { alias: DATABASE_URL }",
        "SEARCH_URL: ${{ services.search.url }}",
    );
    let after = desired(&changed, "staging");
    let plan = plan_deployment("staging", &after, &before);
    insta::assert_snapshot!(render_plan(&plan));
    assert_eq!(
        plan.resulting_state(&before),
        after,
        "applying the plan gives the desired state"
    );
}

#[test]
fn delete_plan_is_the_create_plan_in_reverse() {
    let state = desired(EXAMPLE, "staging");
    let plan = plan_deployment("staging", &[], &state);
    insta::assert_snapshot!(render_plan(&plan));
    let create = plan_deployment("staging", &state, &[]);
    let created: Vec<&str> = create
        .steps
        .iter()
        .map(|s| s.resource.as_str())
        .rev()
        .collect::<Vec<_>>();
    let deleted: Vec<&str> = plan.steps.iter().map(|s| s.resource.as_str()).collect();
    // Same set; every resource is deleted after everything that depends on it.
    assert_eq!(
        created
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>(),
        deleted
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>()
    );
    for step in &plan.steps {
        for dependent in plan.steps.iter().filter(|s| {
            s.before
                .as_ref()
                .is_some_and(|r| r.depends_on.contains(&step.resource))
        }) {
            assert!(
                dependent.index < step.index,
                "{} deleted before {}",
                step.resource,
                dependent.resource
            );
            assert!(step.after_steps.contains(&dependent.index));
        }
    }
}

#[test]
fn every_step_waits_for_its_dependencies_even_of_the_same_kind() {
    // `a-app` depends on `z-app`: same level, later name; it must still come after.
    let spec = "project: p\nservices:\n  a-app:\n    run: x\n    depends_on: [z-app]\n  z-app:\n    run: y\nenvironments: {staging: {}}\n";
    let state = desired(spec, "staging");
    let plan = plan_deployment("staging", &state, &[]);
    let position = |id: &str| {
        plan.steps
            .iter()
            .position(|s| s.resource == id)
            .expect("step")
    };
    assert!(position("app/z-app") < position("app/a-app"));
    let a = &plan.steps[position("app/a-app")];
    assert!(a.after_steps.contains(&position("app/z-app")));
    let teardown = plan_deployment("staging", &[], &state);
    let position = |id: &str| {
        teardown
            .steps
            .iter()
            .position(|s| s.resource == id)
            .expect("step")
    };
    assert!(position("app/a-app") < position("app/z-app"));
}

#[test]
fn inverse_undoes_each_step() {
    let before = desired(EXAMPLE, "staging");
    let after = desired(&EXAMPLE.replace("replicas: 2", "replicas: 4"), "production");
    let plan = plan_deployment("staging", &after, &before);
    for step in &plan.steps {
        let inverse = step.inverse();
        assert_eq!(inverse.before, step.after);
        assert_eq!(inverse.after, step.before);
        assert_eq!(inverse.inverse().action, step.action);
    }
}

#[test]
fn moving_lines_in_the_spec_changes_nothing() {
    let state = desired(EXAMPLE, "staging");
    let shifted = format!("# a comment that moves every line down\n\n{EXAMPLE}");
    assert!(plan_deployment("staging", &desired(&shifted, "staging"), &state).is_empty());
}

#[test]
fn on_kubernetes_the_secrets_carry_the_values_that_hold_secrets() {
    let kubernetes = EXAMPLE.replace("runtime: local", "runtime: kubernetes");
    let before = desired(&kubernetes, "staging");
    assert_eq!(
        content(&before, "secrets")["variables"]["storefront"]["SHOP_DATABASE"][1],
        serde_json::json!({ "secret": "database:db/password" })
    );
    assert!(
        content(&desired(EXAMPLE, "staging"), "secrets")
            .get("variables")
            .is_none()
    );
    let after = desired(
        &kubernetes.replace(
            "SHOP_DATABASE: { alias: DATABASE_URL }",
            "SHOP_DATABASE: plain",
        ),
        "staging",
    );
    let plan = render_plan(&plan_deployment("staging", &after, &before));
    assert!(
        plan.contains(
            "~ update  secrets                values that hold secrets: storefront.SHOP_DATABASE"
        ),
        "{plan}"
    );
}
