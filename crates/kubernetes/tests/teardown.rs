//! Removing an environment's space: its namespace deleted and waited for until its uid is gone, the inventory
//! with it; a namespace held by finalizers is reported with what holds it, and the finalizers are left alone.

mod support;

use preview_plan::ResourceKind;
use support::{Cluster, env, kubernetes_example, resources};

#[tokio::test]
async fn the_namespace_goes_and_the_inventory_with_it() {
    let cluster = Cluster::start().await;
    let example = resources(&kubernetes_example(), "staging");
    cluster.create("staging", &example).await;
    let namespace = cluster.namespace("staging");
    assert!(
        cluster
            .api
            .objects("configmaps", Some("preview-system"))
            .len()
            >= example.len()
    );
    // In the engine's order: every resource, the space last.
    for resource in support::in_order(&example).iter().rev() {
        cluster
            .remove(&resource.id, resource.kind)
            .await
            .expect("removed");
    }
    assert!(!cluster.api.namespaces().contains(&namespace));
    let inventory: Vec<_> = cluster
        .api
        .objects("configmaps", Some("preview-system"))
        .into_iter()
        .filter(|c| {
            c["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("shop."))
        })
        .collect();
    assert!(inventory.is_empty(), "{inventory:?}");
    // Removing it again — or an environment whose namespace someone already deleted — succeeds.
    cluster
        .remove("space", ResourceKind::Space)
        .await
        .expect("again");
}

#[tokio::test]
async fn a_namespace_held_by_a_finalizer_is_reported_and_left_to_its_owner() {
    let cluster = Cluster::start().await;
    let example = resources(&kubernetes_example(), "staging");
    cluster.create("staging", &example).await;
    let namespace = cluster.namespace("staging");
    assert!(cluster.api.add_finalizer(
        "deployments",
        Some(&namespace),
        "catalog",
        "example.com/hold"
    ));
    let error = cluster
        .remove("space", ResourceKind::Space)
        .await
        .expect_err("held");
    assert!(
        error.message.starts_with(&format!(
            "Namespace {namespace} is still terminating after 5 s"
        )),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("NamespaceFinalizersRemaining"),
        "{}",
        error.message
    );
    assert!(
        error
            .message
            .contains("held by Deployment catalog (example.com/hold)"),
        "{}",
        error.message
    );
    let held = cluster
        .api
        .object("deployments", Some(&namespace), "catalog")
        .expect("still there");
    assert_eq!(
        held["metadata"]["finalizers"][0], "example.com/hold",
        "finalizers are never removed"
    );
    // Once its owner lets it go, removing the space again finishes.
    cluster
        .api
        .remove_finalizers("deployments", Some(&namespace), "catalog");
    cluster
        .remove("space", ResourceKind::Space)
        .await
        .expect("gone");
    assert!(!cluster.api.namespaces().contains(&namespace));
}

#[tokio::test]
async fn an_environment_whose_namespace_someone_deleted_is_removed_all_the_same() {
    let cluster = Cluster::start().await;
    let example = resources(&kubernetes_example(), "staging");
    cluster.create("staging", &example).await;
    let namespace = cluster.namespace("staging");
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
        kube::Api::all(cluster.kube_client().await);
    namespaces
        .delete(&namespace, &Default::default())
        .await
        .expect("deleted");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while cluster.api.namespaces().contains(&namespace) {
        assert!(
            std::time::Instant::now() < deadline,
            "the namespace never went"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Its inventory is still there; removing every resource, the space last, succeeds and clears it.
    for resource in support::in_order(&example).iter().rev() {
        cluster
            .remove(&resource.id, resource.kind)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", resource.id));
    }
    assert!(!cluster.runtime.holds(&env("staging")).await.expect("holds"));
}
