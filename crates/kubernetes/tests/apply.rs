//! Applying an environment to a cluster through the runtime, against the fake API server: every object by
//! server-side apply under `preview`, what a resource made recorded, nothing sent again when nothing changed,
//! objects that left deleted by uid, and refusals (foreign objects, conflicts, invalid objects, a namespace being
//! deleted, a cluster that is gone or no longer takes the credentials) said by object and reason.

mod support;

use std::time::Duration;

use preview_deploy::{Runtime, StepLog};
use preview_plan::ResourceKind;
use support::{CANARY, Cluster, changed, env, find, kubernetes_example, resources};

#[tokio::test]
async fn the_example_is_applied_by_server_side_apply_and_recorded() {
    let cluster = Cluster::start().await;
    let example = resources(&kubernetes_example(), "staging");
    cluster.create("staging", &example).await;
    let namespace = cluster.namespace("staging");
    assert!(
        namespace.starts_with("shop-staging-") && namespace.len() == "shop-staging-".len() + 5,
        "{namespace}"
    );
    // Every kind of object is there, in the environment's namespace.
    for (plural, name) in [
        ("networkpolicies", "default-deny"),
        ("networkpolicies", "allow-environment"),
        ("resourcequotas", "environment"),
        ("limitranges", "containers"),
        ("serviceaccounts", "workload"),
        ("secrets", "environment"),
        ("secrets", "db-password"),
        ("statefulsets", "db"),
        ("services", "db"),
        ("deployments", "catalog"),
        ("services", "catalog"),
        ("deployments", "storefront"),
        ("ingresses", "storefront"),
        ("secrets", "tls"),
    ] {
        let object = cluster.api.object(plural, Some(&namespace), name);
        let object = object.unwrap_or_else(|| panic!("no {plural} {namespace}/{name}"));
        assert_eq!(
            object["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "preview"
        );
        let managers: Vec<&str> = object["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["manager"].as_str())
            .collect();
        assert!(
            managers.contains(&"preview"),
            "{plural}/{name} managed by {managers:?}"
        );
    }
    let namespace_object = cluster
        .api
        .object("namespaces", None, &namespace)
        .expect("namespace");
    assert_eq!(
        namespace_object["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    let jobs = cluster.api.objects("jobs", Some(&namespace));
    assert_eq!(jobs.len(), 1, "the migrate job ran once");
    // Every write of an object was a server-side apply under the field manager `preview`.
    let patches: Vec<_> = cluster
        .api
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert!(patches.len() > 15);
    for patch in &patches {
        assert_eq!(
            patch.param("fieldManager"),
            Some("preview"),
            "{}",
            patch.path
        );
        assert_eq!(
            patch.content_type.as_deref(),
            Some("application/apply-patch+yaml"),
            "{}",
            patch.path
        );
    }
    // Each resource's objects are recorded with their uids.
    for resource in &example {
        let entry = cluster
            .runtime
            .observe(&env("staging"), &resource.id)
            .await
            .expect("observe")
            .unwrap_or_else(|| panic!("{} not observed", resource.id));
        assert_eq!(entry.hash, resource.hash, "{}", resource.id);
    }
    let inventory = cluster
        .api
        .object(
            "configmaps",
            Some("preview-system"),
            "shop.staging.app.storefront",
        )
        .expect("inventory entry");
    let entry: serde_json::Value =
        serde_json::from_str(inventory["data"]["inventory"].as_str().expect("text")).expect("json");
    assert_eq!(entry["state"], "applied");
    let live_uid = cluster
        .api
        .object("deployments", Some(&namespace), "storefront")
        .expect("deployment")["metadata"]["uid"]
        .clone();
    assert!(
        entry["objects"]
            .as_array()
            .expect("objects")
            .iter()
            .any(|o| o["kind"] == "Deployment" && o["uid"] == live_uid)
    );

    // Applied again unchanged: nothing is written.
    cluster.api.clear_requests();
    cluster.create("staging", &example).await;
    assert_eq!(cluster.writes(), Vec::<String>::new());
    // The secret values are in the Secret and nowhere else on the cluster.
    let everything: String = [
        "deployments",
        "statefulsets",
        "services",
        "jobs",
        "ingresses",
        "configmaps",
        "namespaces",
    ]
    .iter()
    .flat_map(|plural| cluster.api.objects(plural, None))
    .map(|o| o.to_string())
    .collect();
    assert!(
        !everything.contains(CANARY),
        "a secret value outside a Secret"
    );
    let secret = cluster
        .api
        .object("secrets", Some(&namespace), "environment")
        .expect("secret");
    assert!(
        secret["data"].as_object().is_some_and(|d| d.len() >= 4),
        "{secret}"
    );
}

#[tokio::test]
async fn an_update_rolls_the_workload_and_objects_that_left_are_deleted_by_uid() {
    let cluster = Cluster::start().await;
    let example = resources(&kubernetes_example(), "staging");
    cluster.create("staging", &example).await;
    let namespace = cluster.namespace("staging");
    let app = find(&example, "app/catalog");
    let before = cluster
        .api
        .object("deployments", Some(&namespace), "catalog")
        .expect("deployment");
    let more = changed(app, |c| c["replicas"] = 3.into());
    cluster.apply(&more).await.expect("update");
    let after = cluster
        .api
        .object("deployments", Some(&namespace), "catalog")
        .expect("deployment");
    assert_eq!(after["spec"]["replicas"], 3);
    assert_eq!(
        after["metadata"]["uid"], before["metadata"]["uid"],
        "updated in place"
    );
    assert!(after["metadata"]["generation"].as_i64() > before["metadata"]["generation"].as_i64());

    // A job run again with another command is a new Job; the old one goes, by its uid.
    let job = find(&example, "job/migrate");
    let old_job = cluster.api.objects("jobs", Some(&namespace))[0].clone();
    cluster.api.clear_requests();
    let again = changed(job, |c| {
        c["command"] = "bin/shop-catalog migrate --again".into()
    });
    let log = StepLog::default();
    cluster
        .runtime
        .apply(&env("staging"), &again, &log)
        .await
        .expect("new job");
    let jobs = cluster.api.objects("jobs", Some(&namespace));
    assert_eq!(jobs.len(), 1);
    assert_ne!(jobs[0]["metadata"]["name"], old_job["metadata"]["name"]);
    let delete = cluster
        .api
        .requests()
        .into_iter()
        .find(|r| {
            r.method == "DELETE"
                && r.path
                    .ends_with(old_job["metadata"]["name"].as_str().expect("name"))
        })
        .expect("the old job was deleted");
    assert_eq!(
        delete.json().map(|b| b["preconditions"]["uid"].clone()),
        Some(old_job["metadata"]["uid"].clone()),
        "deleted by the uid it was recorded with"
    );
    // Its output is in the step's log.
    assert!(
        log.lines()
            .iter()
            .any(|l| l.contains("running: /bin/sh -c bin/shop-catalog migrate --again")),
        "{:?}",
        log.lines()
    );

    // A route removed: its Ingress goes, and nothing else.
    let route = find(&example, "route/storefront");
    cluster
        .remove(&route.id, ResourceKind::Route)
        .await
        .expect("removed");
    assert!(
        cluster
            .api
            .object("ingresses", Some(&namespace), "storefront")
            .is_none()
    );
    assert!(
        cluster
            .api
            .object("deployments", Some(&namespace), "storefront")
            .is_some()
    );
    assert_eq!(
        cluster
            .runtime
            .observe(&env("staging"), &route.id)
            .await
            .expect("observe"),
        None
    );
}

#[tokio::test]
async fn objects_changed_behind_its_back_are_seen_and_taken_back() {
    let cluster = Cluster::start().await;
    let example = resources(&kubernetes_example(), "staging");
    cluster.create("staging", &example).await;
    let namespace = cluster.namespace("staging");
    let app = find(&example, "app/catalog");
    // Someone deletes a Deployment preview made: observe no longer reports the recorded hash.
    let api = &cluster.api;
    let deployment = api
        .object("deployments", Some(&namespace), "catalog")
        .expect("deployment");
    let client = cluster.kube_client().await;
    let deployments: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(client, &namespace);
    deployments
        .delete("catalog", &Default::default())
        .await
        .expect("deleted");
    let observed = cluster
        .runtime
        .observe(&env("staging"), &app.id)
        .await
        .expect("observe")
        .expect("entry");
    assert_ne!(observed.hash, app.hash);
    // Applying the resource again makes it again.
    cluster.apply(app).await.expect("again");
    let made = api
        .object("deployments", Some(&namespace), "catalog")
        .expect("made again");
    assert_ne!(made["metadata"]["uid"], deployment["metadata"]["uid"]);
    assert_eq!(
        cluster
            .runtime
            .observe(&env("staging"), &app.id)
            .await
            .expect("observe")
            .expect("entry")
            .hash,
        app.hash
    );

    // A field preview owns, changed by another manager, is taken back: preview made the object.
    api.edit_as(
        "kubectl-edit",
        "deployments",
        Some(&namespace),
        "catalog",
        serde_json::json!({ "spec": { "replicas": 7 } }),
    )
    .expect("edited");
    let more = changed(app, |c| c["replicas"] = 2.into());
    cluster.apply(&more).await.expect("forced");
    assert_eq!(
        api.object("deployments", Some(&namespace), "catalog")
            .expect("d")["spec"]["replicas"],
        2
    );
}

#[tokio::test]
async fn objects_preview_did_not_make_are_left_alone_and_conflicts_name_the_manager_and_field() {
    let cluster = Cluster::start().await;
    let example = resources(&kubernetes_example(), "staging");
    let space = find(&example, "space");
    cluster.apply(space).await.expect("space");
    let namespace = cluster.namespace("staging");
    // A Service of another tool, by the name an app's Service would have.
    cluster
        .api
        .apply_as(
            "helm",
            serde_json::json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": { "name": "catalog", "namespace": namespace },
                "spec": { "ports": [{ "name": "http", "port": 9999 }] },
            }),
        )
        .expect("helm's service");
    let error = cluster
        .apply(find(&example, "app/catalog"))
        .await
        .expect_err("refused");
    assert_eq!(
        error.message,
        format!(
            "Service {namespace}/catalog exists and was not made by preview for shop/staging (managed by helm): it is left as it is"
        )
    );
    assert_eq!(
        cluster
            .api
            .object("services", Some(&namespace), "catalog")
            .expect("svc")["spec"]["ports"][0]["port"],
        9999
    );

    // An object marked as this resource's but not recorded (its record was lost) is applied without forcing: a
    // field another manager owns fails the step, naming both.
    cluster
        .api
        .apply_as(
            "helm",
            serde_json::json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": { "name": "catalog", "namespace": namespace, "annotations": { "preview.dev/resource": "app/catalog" }, "labels": { "preview.dev/project": "shop", "preview.dev/environment": "staging" } },
                "spec": { "ports": [{ "name": "http", "port": 9999, "protocol": "TCP" }] },
            }),
        )
        .expect("helm's service");
    let error = cluster
        .apply(find(&example, "app/catalog"))
        .await
        .expect_err("conflict");
    assert!(
        error.message.starts_with(&format!(
            "Service {namespace}/catalog: 409 Conflict: Apply failed with"
        )),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("conflict with \"helm\""),
        "{}",
        error.message
    );
    assert!(error.message.contains(".spec.ports"), "{}", error.message);
}

#[tokio::test]
async fn invalid_objects_and_a_terminating_namespace_are_refused_by_name() {
    let cluster = Cluster::start().await;
    let example = resources(&kubernetes_example(), "staging");
    cluster.api.reject(
        "deployments",
        "storefront",
        "spec.template.spec.containers[0].image",
        "Invalid value: \"x\": no registry",
    );
    // The pre-flight dry run finds it while nothing has changed.
    cluster.api.clear_requests();
    let error = cluster
        .runtime
        .preflight(&env("staging"), &example)
        .await
        .expect_err("refused");
    assert!(
        error
            .message
            .contains("Deployment preview-system/storefront (dry run): 422 Invalid")
            && error.message.contains(
                "spec.template.spec.containers[0].image: Invalid value: \"x\": no registry"
            ),
        "{}",
        error.message
    );
    assert_eq!(
        cluster.writes(),
        Vec::<String>::new(),
        "a dry run writes nothing"
    );
    assert!(
        cluster
            .api
            .requests()
            .iter()
            .any(|r| r.param("dryRun") == Some("All"))
    );
    assert!(
        cluster
            .api
            .namespaces()
            .iter()
            .all(|n| !n.starts_with("shop-"))
    );

    // A namespace being deleted refuses new objects: the step says so.
    let space = find(&example, "space");
    cluster.apply(space).await.expect("space");
    let namespace = cluster.namespace("staging");
    cluster
        .api
        .apply_as("holder", serde_json::json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "held", "namespace": namespace } }))
        .expect("held");
    cluster
        .api
        .add_finalizer("configmaps", Some(&namespace), "held", "example.com/hold");
    let client = cluster.kube_client().await;
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
    namespaces
        .delete(&namespace, &Default::default())
        .await
        .expect("deleting");
    let error = cluster
        .apply(find(&example, "secrets"))
        .await
        .expect_err("terminating");
    assert!(
        error
            .message
            .contains(&format!("Secret {namespace}/environment: 403 Forbidden")),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("because it is being terminated"),
        "{}",
        error.message
    );
    // The space cannot move to a new namespace while another resource of the environment is recorded in the old
    // one: it would be left behind there.
    let space_again = changed(space, |c| c["preview"] = true.into());
    let error = cluster.apply(&space_again).await.expect_err("stranded");
    assert_eq!(
        error.message,
        format!(
            "Namespace {namespace} of shop/staging was deleted outside preview while secrets still live in it; delete the environment and create it again"
        )
    );
    // Once nothing else is recorded (the failed step undone), making the space again takes a new namespace instead of
    // waiting for the old one.
    cluster
        .remove("secrets", ResourceKind::Secrets)
        .await
        .expect("undone");
    cluster.apply(&space_again).await.expect("again");
    let again = cluster.namespace("staging");
    assert_ne!(again, namespace);
}

#[tokio::test]
async fn an_unreachable_cluster_and_refused_credentials_are_said_as_such() {
    let cluster = Cluster::start().await;
    let example = resources(&kubernetes_example(), "staging");
    cluster.api.set_token("rotated");
    let error = cluster
        .apply(find(&example, "space"))
        .await
        .expect_err("401");
    assert!(
        error.message.contains("401 Unauthorized"),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("may have expired"),
        "{}",
        error.message
    );
    cluster.api.stop().await;
    let error = cluster
        .apply(find(&example, "space"))
        .await
        .expect_err("unreachable");
    assert!(
        error.message.contains("cannot reach the cluster"),
        "{}",
        error.message
    );
    // A daemon does not start against a cluster it cannot reach.
    let refused = Cluster::connect(&cluster.options)
        .await
        .err()
        .expect("refused");
    assert!(refused.contains("cannot reach the cluster"), "{refused}");
    let _ = Duration::ZERO;
}

#[tokio::test]
async fn a_field_changed_behind_its_back_shows_as_changed_and_is_taken_back_by_applying_again() {
    let cluster = Cluster::start().await;
    let example = resources(&kubernetes_example(), "staging");
    cluster.create("staging", &example).await;
    let namespace = cluster.namespace("staging");
    let app = find(&example, "app/catalog");
    let image = |cluster: &Cluster| {
        cluster
            .api
            .object("deployments", Some(&namespace), "catalog")
            .expect("deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
            .clone()
    };
    let wanted = image(&cluster);
    cluster
        .api
        .edit_as(
            "kubectl-set",
            "deployments",
            Some(&namespace),
            "catalog",
            serde_json::json!({ "spec": { "template": { "spec": { "containers": [{ "name": "catalog", "image": "evil:1" }] } } } }),
        )
        .expect("edited");
    assert_eq!(image(&cluster), "evil:1");
    let observed = cluster
        .runtime
        .observe(&env("staging"), &app.id)
        .await
        .expect("observe")
        .expect("entry");
    assert_ne!(
        observed.hash, app.hash,
        "a changed spec is not the recorded resource"
    );
    // The same resource applied again (its hash unchanged) writes it again, forcing the field back.
    cluster.apply(app).await.expect("again");
    assert_eq!(image(&cluster), wanted);
    let observed = cluster
        .runtime
        .observe(&env("staging"), &app.id)
        .await
        .expect("observe")
        .expect("entry");
    assert_eq!(observed.hash, app.hash);
}

#[tokio::test]
async fn a_protected_preview_is_applied_only_behind_ingress_nginx() {
    let cluster = Cluster::start().await;
    let example = resources(&kubernetes_example(), "staging");
    for id in [
        "space",
        "secrets",
        "database/db",
        "job/migrate",
        "app/catalog",
        "app/storefront",
        "certificate",
    ] {
        cluster.apply(find(&example, id)).await.expect(id);
    }
    let protected = changed(find(&example, "route/storefront"), |c| {
        c["access"] = serde_json::json!({
            "basic_auth": { "user": "review", "password": { "name": "project/PREVIEW_PASSWORD", "version": "v1" } }
        })
    });
    let namespace = cluster.namespace("staging");
    let class = |controller: &str| {
        serde_json::json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": { "name": "public", "annotations": { "ingressclass.kubernetes.io/is-default-class": "true" } },
            "spec": { "controller": controller },
        })
    };
    // No IngressClass to tell: refused, and by the dry run too.
    let error = cluster.apply(&protected).await.expect_err("refused");
    assert!(
        error
            .message
            .contains("the default IngressClass does not exist; the preview is not deployed open"),
        "{}",
        error.message
    );
    let error = cluster
        .runtime
        .preflight(&env("staging"), std::slice::from_ref(&protected))
        .await
        .expect_err("refused");
    assert!(
        error.message.contains("not deployed open"),
        "{}",
        error.message
    );
    // Another controller ignores ingress-nginx's authentication: refused, naming it.
    cluster
        .api
        .apply_as("admin", class("traefik.io/ingress-controller"))
        .expect("class");
    let error = cluster.apply(&protected).await.expect_err("refused");
    assert!(
        error.message.contains("the default IngressClass is served by `traefik.io/ingress-controller`, which ignores its authentication"),
        "{}",
        error.message
    );
    assert!(
        cluster
            .api
            .object("ingresses", Some(&namespace), "storefront")
            .is_none(),
        "nothing served open"
    );
    // ingress-nginx: applied with its authentication.
    cluster
        .api
        .apply_as("admin", class("k8s.io/ingress-nginx"))
        .expect("class");
    cluster.apply(&protected).await.expect("applied");
    let ingress = cluster
        .api
        .object("ingresses", Some(&namespace), "storefront")
        .expect("ingress");
    assert_eq!(
        ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/auth-type"],
        "basic"
    );
}
