//! The fake Kubernetes API server, driven by the real `kube` client: what it answers, stores, streams and does on
//! its own.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, PersistentVolumeClaim, Pod};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, LogParams, Patch,
    PatchParams, PostParams, Preconditions, PropagationPolicy, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use preview_testing::TempDir;
use preview_testing::kubernetes::ApiServer;
use serde_json::{Value, json};

/// A client of `server` made from the kubeconfig it writes (the directory holding it must outlive nothing).
async fn connect(server: &ApiServer) -> kube::Client {
    let dir = TempDir::new("kubeconfig");
    let path = dir.path().join("config");
    server.kubeconfig(&path).expect("kubeconfig written");
    let kubeconfig = Kubeconfig::read_from(&path).expect("kubeconfig read");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a config");
    kube::Client::try_from(config).expect("a client")
}

/// Waits (up to five seconds) until `check` returns something.
async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    for _ in 0..500 {
        if let Some(found) = check() {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn status_of(error: kube::Error) -> kube::core::Status {
    match error {
        kube::Error::Api(status) => *status,
        other => panic!("expected a Status from the server, got {other}"),
    }
}

/// Sends a request built by `kube::core::Request` and returns the HTTP status and the body.
async fn send(client: &kube::Client, request: hyper::Request<Vec<u8>>) -> (u16, Value) {
    let response = client
        .send(request.map(kube::client::Body::from))
        .await
        .expect("an answer");
    let code = response.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .expect("a body")
        .to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn deployment(name: &str, namespace: &str, replicas: i32, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name, "namespace": namespace, "labels": { "app": name } },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "web", "image": image }] },
            },
        },
    })
}

fn namespace(name: &str) -> Value {
    json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name } })
}

async fn make_namespace(client: &kube::Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            name,
            &PatchParams::apply("preview"),
            &Patch::Apply(namespace(name)),
        )
        .await
        .expect("namespace applied");
}

fn apply_request(object: &Value, params: &PatchParams) -> hyper::Request<Vec<u8>> {
    let name = object["metadata"]["name"].as_str().expect("a name");
    let namespace = object["metadata"]["namespace"]
        .as_str()
        .expect("a namespace");
    kube::core::Request::new(format!("/apis/apps/v1/namespaces/{namespace}/deployments"))
        .patch(name, params, &Patch::Apply(object))
        .expect("a request")
}

#[tokio::test]
async fn apply_creates_with_201_then_updates_with_200_and_counts_generations() {
    let server = ApiServer::start().await;
    let client = connect(&server).await;
    make_namespace(&client, "shop").await;
    let params = PatchParams::apply("preview");

    let (code, created) = send(
        &client,
        apply_request(&deployment("web", "shop", 1, "nginx:1"), &params),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["metadata"]["generation"], 1);
    let uid = created["metadata"]["uid"]
        .as_str()
        .expect("a uid")
        .to_owned();
    let first_version: u64 = created["metadata"]["resourceVersion"]
        .as_str()
        .expect("a version")
        .parse()
        .expect("a number");
    assert_eq!(
        created["metadata"]["managedFields"][0]["manager"],
        "preview"
    );
    assert_eq!(
        created["metadata"]["managedFields"][0]["operation"],
        "Apply"
    );

    server.pause_controllers(true);
    let (code, same) = send(
        &client,
        apply_request(&deployment("web", "shop", 1, "nginx:1"), &params),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        same["metadata"]["resourceVersion"], created["metadata"]["resourceVersion"],
        "an unchanged apply writes nothing"
    );

    let (code, updated) = send(
        &client,
        apply_request(&deployment("web", "shop", 3, "nginx:1"), &params),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(updated["metadata"]["generation"], 2);
    assert_eq!(updated["metadata"]["uid"], uid.as_str());
    let version: u64 = updated["metadata"]["resourceVersion"]
        .as_str()
        .expect("a version")
        .parse()
        .expect("a number");
    assert!(version > first_version);

    // The typed client reads the object back.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "shop");
    let read = deployments.get("web").await.expect("the deployment");
    assert_eq!(read.spec.and_then(|s| s.replicas), Some(3));
}

#[tokio::test]
async fn a_dry_run_answers_the_object_and_stores_nothing() {
    let server = ApiServer::start().await;
    let client = connect(&server).await;
    make_namespace(&client, "shop").await;
    let deployments: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "shop",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apps", "v1", "Deployment"),
            "deployments",
        ),
    );
    let mut params = PatchParams::apply("preview");
    params.dry_run = true;
    let answered = deployments
        .patch(
            "web",
            &params,
            &Patch::Apply(deployment("web", "shop", 2, "nginx")),
        )
        .await
        .expect("a dry run");
    assert_eq!(answered.data["spec"]["replicas"], 2);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(server.object("deployments", Some("shop"), "web"), None);
    assert!(
        server.objects("replicasets", Some("shop")).is_empty(),
        "no controller saw it"
    );
    let dry_runs: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.param("dryRun") == Some("All"))
        .collect();
    assert_eq!(dry_runs.len(), 1);
}

#[tokio::test]
async fn another_managers_field_conflicts_until_forced() {
    let server = ApiServer::start().await;
    let client = connect(&server).await;
    make_namespace(&client, "shop").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "shop");
    let ours = Patch::Apply(deployment("web", "shop", 2, "nginx"));
    deployments
        .patch("web", &PatchParams::apply("preview"), &ours)
        .await
        .expect("applied");

    server
        .apply_as("kubectl-edit", deployment("web", "shop", 5, "nginx"))
        .expect("the other manager takes the field");
    let refused = status_of(
        deployments
            .patch("web", &PatchParams::apply("preview"), &ours)
            .await
            .expect_err("a conflict"),
    );
    assert_eq!(refused.code, 409);
    assert_eq!(refused.reason, "Conflict");
    assert_eq!(
        refused.message,
        "Apply failed with 1 conflict: conflict with \"kubectl-edit\": .spec.replicas"
    );
    let causes = refused.details.expect("details").causes;
    assert_eq!(causes.len(), 1);
    assert_eq!(
        (
            causes[0].reason.as_str(),
            causes[0].message.as_str(),
            causes[0].field.as_str()
        ),
        (
            "FieldManagerConflict",
            "conflict with \"kubectl-edit\"",
            ".spec.replicas"
        )
    );

    let forced = deployments
        .patch("web", &PatchParams::apply("preview").force(), &ours)
        .await
        .expect("forced");
    assert_eq!(forced.spec.and_then(|s| s.replicas), Some(2));

    // An update (not an apply) names its API version in the conflict.
    server
        .edit_as(
            "kubectl-patch",
            "deployments",
            Some("shop"),
            "web",
            json!({ "spec": { "replicas": 7 } }),
        )
        .expect("edited");
    let refused = status_of(
        deployments
            .patch("web", &PatchParams::apply("preview"), &ours)
            .await
            .expect_err("a conflict"),
    );
    assert_eq!(
        refused.message,
        "Apply failed with 1 conflict: conflict with \"kubectl-patch\" using apps/v1: .spec.replicas"
    );
}

#[tokio::test]
async fn fields_a_manager_stops_applying_are_removed() {
    let server = ApiServer::start().await;
    let client = connect(&server).await;
    make_namespace(&client, "shop").await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "shop");
    let map = |data: Value| {
        Patch::Apply(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": "settings", "labels": { "app": "shop", "tier": "web" } },
            "data": data,
        }))
    };
    let params = PatchParams::apply("preview");
    maps.patch("settings", &params, &map(json!({ "a": "1", "b": "2" })))
        .await
        .expect("applied");
    let mut second = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "settings", "labels": { "app": "shop" } },
        "data": { "a": "1" },
    });
    let after = maps
        .patch("settings", &params, &Patch::Apply(&second))
        .await
        .expect("applied again");
    let data = after.data.expect("data");
    assert_eq!(data.keys().collect::<Vec<_>>(), ["a"]);
    let labels = after.metadata.labels.expect("labels");
    assert_eq!(labels.keys().collect::<Vec<_>>(), ["app"]);

    // A field another manager also set stays when one of them stops applying it.
    server
        .apply_as(
            "other",
            json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": { "name": "settings", "namespace": "shop" },
                "data": { "a": "1" },
            }),
        )
        .expect("shared");
    second["data"] = json!({ "c": "3" });
    let shared = maps
        .patch("settings", &params, &Patch::Apply(&second))
        .await
        .expect("applied");
    let data = shared.data.expect("data");
    assert_eq!(data.keys().collect::<Vec<_>>(), ["a", "c"]);
}

#[tokio::test]
async fn invalid_objects_and_rejected_ones_answer_422() {
    let server = ApiServer::start().await;
    let client = connect(&server).await;
    make_namespace(&client, "shop").await;
    let deployments: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "shop",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apps", "v1", "Deployment"),
            "deployments",
        ),
    );
    let params = PatchParams::apply("preview");
    let refused = status_of(
        deployments
            .patch(
                "Web",
                &params,
                &Patch::Apply(deployment("Web", "shop", 1, "nginx")),
            )
            .await
            .expect_err("an invalid name"),
    );
    assert_eq!((refused.code, refused.reason.as_str()), (422, "Invalid"));
    assert!(refused.message.starts_with("Deployment.apps \"Web\" is invalid: metadata.name: Invalid value: \"Web\": a lowercase RFC 1123 subdomain"), "{}", refused.message);
    let cause = &refused.details.expect("details").causes[0];
    assert_eq!(
        (cause.reason.as_str(), cause.field.as_str()),
        ("FieldValueInvalid", "metadata.name")
    );

    let mut mismatched = deployment("api", "shop", 1, "nginx");
    mismatched["spec"]["template"]["metadata"]["labels"]["app"] = json!("other");
    let refused = status_of(
        deployments
            .patch("api", &params, &Patch::Apply(&mismatched))
            .await
            .expect_err("a selector mismatch"),
    );
    assert_eq!(
        refused.message,
        "Deployment.apps \"api\" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"other\"}: `selector` does not match template `labels`"
    );

    server.reject(
        "deployments",
        "web",
        "spec.template.spec.containers[0].image",
        "images must come from registry.example",
    );
    let refused = status_of(
        deployments
            .patch(
                "web",
                &params,
                &Patch::Apply(deployment("web", "shop", 1, "nginx")),
            )
            .await
            .expect_err("rejected"),
    );
    assert_eq!(refused.code, 422);
    let cause = &refused.details.expect("details").causes[0];
    assert_eq!(cause.field, "spec.template.spec.containers[0].image");
    assert_eq!(cause.message, "images must come from registry.example");
    assert_eq!(server.object("deployments", Some("shop"), "web"), None);
}

#[tokio::test]
async fn writes_into_missing_or_terminating_namespaces_are_refused() {
    let server = ApiServer::start().await;
    let client = connect(&server).await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "nowhere");
    let map = |namespace: &str| {
        Patch::Apply(
            json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "c", "namespace": namespace } }),
        )
    };
    let missing = status_of(
        maps.patch("c", &PatchParams::apply("preview"), &map("nowhere"))
            .await
            .expect_err("no namespace"),
    );
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(missing.message, "namespaces \"nowhere\" not found");

    make_namespace(&client, "leaving").await;
    server.pause_controllers(true);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete("leaving", &DeleteParams::default())
        .await
        .expect("deleted");
    let terminating = server
        .object("namespaces", None, "leaving")
        .expect("still there");
    assert_eq!(terminating["status"]["phase"], "Terminating");
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "leaving");
    let forbidden = status_of(
        maps.patch("c", &PatchParams::apply("preview"), &map("leaving"))
            .await
            .expect_err("terminating"),
    );
    assert_eq!(
        (forbidden.code, forbidden.reason.as_str()),
        (403, "Forbidden")
    );
    assert_eq!(
        forbidden.message,
        "configmaps \"c\" is forbidden: unable to create new content in namespace leaving because it is being terminated"
    );
    let cause = &forbidden.details.expect("details").causes[0];
    assert_eq!(
        (
            cause.reason.as_str(),
            cause.message.as_str(),
            cause.field.as_str()
        ),
        (
            "NamespaceTerminating",
            "namespace leaving is being terminated",
            "metadata.namespace"
        )
    );
}

#[tokio::test]
async fn a_watch_sees_the_controller_make_a_deployment_ready() {
    let server = ApiServer::start().await;
    let client = connect(&server).await;
    make_namespace(&client, "shop").await;
    server.pause_controllers(true);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "shop");
    let applied = deployments
        .patch(
            "web",
            &PatchParams::apply("preview"),
            &Patch::Apply(deployment("web", "shop", 2, "nginx:1")),
        )
        .await
        .expect("applied");
    let version = applied.metadata.resource_version.expect("a version");
    let params = WatchParams::default()
        .fields("metadata.name=web")
        .timeout(10);
    let mut events = Box::pin(deployments.watch(&params, &version).await.expect("a watch"));
    server.pause_controllers(false);
    let ready = tokio::time::timeout(Duration::from_secs(5), async {
        use futures_util::StreamExt;
        while let Some(event) = events.next().await {
            if let WatchEvent::Modified(d) = event.expect("an event") {
                let status = d.status.unwrap_or_default();
                if status.ready_replicas == Some(2) {
                    return status;
                }
            }
        }
        panic!("the watch ended before the deployment was ready");
    })
    .await
    .expect("ready in time");
    assert_eq!(ready.observed_generation, Some(1));
    let conditions = ready.conditions.unwrap_or_default();
    let progressing = conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .expect("Progressing");
    assert_eq!(
        progressing.reason.as_deref(),
        Some("NewReplicaSetAvailable")
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    let running = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("pods");
    assert_eq!(running.items.len(), 2);
    let pod = &running.items[0];
    assert_eq!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Running")
    );
    assert!(
        pod.metadata
            .name
            .as_deref()
            .is_some_and(|n| n.starts_with("web-"))
    );
}

#[tokio::test]
async fn a_watch_from_nothing_lists_the_current_objects_first() {
    let server = ApiServer::start().await;
    let client = connect(&server).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let events: Vec<String> = {
        use futures_util::StreamExt;
        let stream = namespaces
            .watch(&WatchParams::default().timeout(1), "0")
            .await
            .expect("a watch");
        stream
            .map(|e| match e.expect("an event") {
                WatchEvent::Added(ns) => ns.metadata.name.unwrap_or_default(),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
            .await
    };
    assert_eq!(
        events,
        ["default", "kube-node-lease", "kube-public", "kube-system"]
    );
    let watch = server
        .requests()
        .into_iter()
        .find(|r| r.param("watch") == Some("true"))
        .expect("the watch");
    assert_eq!(watch.param("timeoutSeconds"), Some("1"));
}

async fn wait_for_job(jobs: &Api<Job>, name: &str) -> Job {
    for _ in 0..500 {
        let job = jobs.get(name).await.expect("the job");
        let finished = job
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter()
                    .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
            });
        if finished {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("job {name} did not finish");
}

fn job(name: &str, command: &[&str]) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": { "name": name },
        "spec": { "template": { "spec": {
            "restartPolicy": "Never",
            "containers": [{ "name": "task", "image": "shop/migrations:1", "command": command }],
        } } },
    })
}

#[tokio::test]
async fn jobs_complete_or_fail_by_their_command() {
    let server = ApiServer::start().await;
    let client = connect(&server).await;
    make_namespace(&client, "shop").await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "shop");
    let params = PatchParams::apply("preview");
    jobs.patch(
        "migrate",
        &params,
        &Patch::Apply(job("migrate", &["migrate", "--all"])),
    )
    .await
    .expect("applied");
    let done = wait_for_job(&jobs, "migrate").await;
    let status = done.status.expect("a status");
    assert_eq!(status.succeeded, Some(1));
    let complete = status.conditions.unwrap_or_default();
    assert!(
        complete
            .iter()
            .any(|c| c.type_ == "Complete" && c.status == "True")
    );

    let pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    let pod = pods
        .list(&ListParams::default().labels("job-name=migrate"))
        .await
        .expect("pods")
        .items
        .remove(0);
    let pod_name = pod.metadata.name.expect("a name");
    let log = pods
        .logs(&pod_name, &LogParams::default())
        .await
        .expect("a log");
    assert_eq!(log, "running: migrate --all\n");
    server.set_logs("migrate-", "one\ntwo\nthree\n");
    let tail = pods
        .logs(
            &pod_name,
            &LogParams {
                tail_lines: Some(2),
                ..LogParams::default()
            },
        )
        .await
        .expect("a log");
    assert_eq!(tail, "two\nthree\n");

    jobs.patch(
        "broken",
        &params,
        &Patch::Apply(job("broken", &["sh", "-c", "exit 1 # fail"])),
    )
    .await
    .expect("applied");
    let failed = wait_for_job(&jobs, "broken")
        .await
        .status
        .expect("a status");
    assert_eq!(failed.failed, Some(1));
    let condition = failed
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Failed")
        .expect("Failed");
    assert_eq!(condition.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(
        condition.message.as_deref(),
        Some("Job has reached the specified backoff limit")
    );
}

#[tokio::test]
async fn a_delete_whose_uid_precondition_does_not_match_conflicts() {
    let server = ApiServer::start().await;
    let client = connect(&server).await;
    make_namespace(&client, "shop").await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "shop");
    let made = maps
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": "c" } })).expect("a map"),
        )
        .await
        .expect("created");
    let uid = made.metadata.uid.expect("a uid");
    let wrong = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some("not-it".to_owned()),
            resource_version: None,
        }),
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    let refused = status_of(maps.delete("c", &wrong).await.expect_err("a conflict"));
    assert_eq!((refused.code, refused.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        refused.message,
        format!(
            "Operation cannot be fulfilled on configmaps \"c\": Precondition failed: UID in precondition: not-it, UID in object meta: {uid}"
        )
    );
    assert!(server.object("configmaps", Some("shop"), "c").is_some());
    let right = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    maps.delete("c", &right).await.expect("deleted");
    assert!(server.object("configmaps", Some("shop"), "c").is_none());
    let missing = status_of(maps.delete("c", &right).await.expect_err("gone"));
    assert_eq!(missing.code, 404);
}

#[tokio::test]
async fn deleting_a_deployment_collects_its_pods() {
    let server = ApiServer::start().await;
    let client = connect(&server).await;
    make_namespace(&client, "shop").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "shop");
    deployments
        .patch(
            "web",
            &PatchParams::apply("preview"),
            &Patch::Apply(deployment("web", "shop", 2, "nginx")),
        )
        .await
        .expect("applied");
    eventually("two pods", || {
        (server.objects("pods", Some("shop")).len() == 2).then_some(())
    })
    .await;
    deployments
        .delete("web", &DeleteParams::background())
        .await
        .expect("deleted");
    eventually("no pods", || {
        server
            .objects("pods", Some("shop"))
            .is_empty()
            .then_some(())
    })
    .await;
    assert!(server.objects("replicasets", Some("shop")).is_empty());
}

#[tokio::test]
async fn a_namespace_goes_with_its_content_unless_a_finalizer_holds_it() {
    let server = ApiServer::start().await;
    let client = connect(&server).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    make_namespace(&client, "gone").await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "gone");
    maps.create(
        &PostParams::default(),
        &serde_json::from_value(json!({ "metadata": { "name": "c" } })).expect("a map"),
    )
    .await
    .expect("created");
    namespaces
        .delete("gone", &DeleteParams::default())
        .await
        .expect("deleted");
    eventually("the namespace to go", || {
        server
            .object("namespaces", None, "gone")
            .is_none()
            .then_some(())
    })
    .await;
    assert!(server.objects("configmaps", Some("gone")).is_empty());

    make_namespace(&client, "held").await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "held");
    maps.create(
        &PostParams::default(),
        &serde_json::from_value(json!({ "metadata": { "name": "c" } })).expect("a map"),
    )
    .await
    .expect("created");
    assert!(server.add_finalizer("configmaps", Some("held"), "c", "example.com/hold"));
    namespaces
        .delete("held", &DeleteParams::default())
        .await
        .expect("deleted");
    let stuck = eventually("the finalizer condition", || {
        let ns = server.object("namespaces", None, "held")?;
        let conditions = ns["status"]["conditions"].as_array()?.clone();
        conditions
            .into_iter()
            .find(|c| c["type"] == "NamespaceFinalizersRemaining" && c["status"] == "True")
    })
    .await;
    assert_eq!(stuck["reason"], "SomeFinalizersRemain");
    assert_eq!(
        stuck["message"],
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
    );
    let ns = namespaces.get("held").await.expect("still there");
    assert_eq!(
        ns.status.and_then(|s| s.phase).as_deref(),
        Some("Terminating")
    );
    let held = maps.get("c").await.expect("the held map");
    assert!(held.metadata.deletion_timestamp.is_some());

    assert!(server.remove_finalizers("configmaps", Some("held"), "c"));
    eventually("the namespace to go", || {
        server
            .object("namespaces", None, "held")
            .is_none()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_wrong_token_is_unauthorized() {
    let server = ApiServer::start().await;
    let client = connect(&server).await;
    server.set_token("rotated");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let refused = status_of(
        namespaces
            .list(&ListParams::default())
            .await
            .expect_err("unauthorized"),
    );
    assert_eq!(
        (
            refused.code,
            refused.reason.as_str(),
            refused.message.as_str()
        ),
        (401, "Unauthorized", "Unauthorized")
    );
    let newer = connect(&server).await;
    let version = newer.apiserver_version().await.expect("the version");
    assert_eq!(
        (
            version.major.as_str(),
            version.minor.as_str(),
            version.git_version.as_str()
        ),
        ("1", "33", "v1.33.0")
    );
}

#[tokio::test]
async fn access_reviews_allow_unless_denied() {
    let server = ApiServer::start().await;
    let client = connect(&server).await;
    server.deny("delete", "", "namespaces");
    let review = |verb: &str, resource: &str| {
        json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": { "resourceAttributes": { "verb": verb, "group": "", "resource": resource } },
        })
    };
    let post = |body: Value| {
        hyper::Request::post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")
            .header("content-type", "application/json")
            .body(body.to_string().into_bytes())
            .expect("a request")
    };
    let (code, allowed) = send(&client, post(review("create", "namespaces"))).await;
    assert_eq!(code, 201);
    assert_eq!(allowed["status"]["allowed"], true);
    assert_eq!(allowed["spec"]["resourceAttributes"]["verb"], "create");
    let (_, denied) = send(&client, post(review("delete", "namespaces"))).await;
    assert_eq!(denied["status"]["allowed"], false);
    assert!(denied["status"]["reason"].is_string());
}

#[tokio::test]
async fn requests_are_recorded_with_their_query() {
    let server = ApiServer::start().await;
    let client = connect(&server).await;
    make_namespace(&client, "shop").await;
    server.clear_requests();
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "shop");
    let body = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "c" } });
    maps.patch(
        "c",
        &PatchParams::apply("preview").force(),
        &Patch::Apply(&body),
    )
    .await
    .expect("applied");
    maps.list(&ListParams::default().labels("app=shop,tier!=db"))
        .await
        .expect("listed");
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let apply = &requests[0];
    assert_eq!(
        (apply.method.as_str(), apply.path.as_str()),
        ("PATCH", "/api/v1/namespaces/shop/configmaps/c")
    );
    assert_eq!(apply.param("fieldManager"), Some("preview"));
    assert_eq!(apply.param("force"), Some("true"));
    assert_eq!(
        apply.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    assert_eq!(apply.json(), Some(&body));
    assert_eq!(
        requests[1].param("labelSelector"),
        Some("app=shop,tier!=db")
    );
}

#[tokio::test]
async fn lists_select_by_labels_and_fields_and_page() {
    let server = ApiServer::start().await;
    let client = connect(&server).await;
    // Held from the start, so that the namespace has no `kube-root-ca.crt` to list.
    server.pause_controllers(true);
    make_namespace(&client, "shop").await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "shop");
    for (name, tier) in [("a", "web"), ("b", "db"), ("c", "web")] {
        let body = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name, "labels": { "tier": tier } } });
        maps.patch(name, &PatchParams::apply("preview"), &Patch::Apply(&body))
            .await
            .expect("applied");
    }
    let names = |list: kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        list.items
            .into_iter()
            .filter_map(|m| m.metadata.name)
            .collect()
    };
    assert_eq!(
        names(
            maps.list(&ListParams::default().labels("tier=web"))
                .await
                .expect("list")
        ),
        ["a", "c"]
    );
    assert_eq!(
        names(
            maps.list(&ListParams::default().labels("tier!=web"))
                .await
                .expect("list")
        ),
        ["b"]
    );
    assert_eq!(
        names(
            maps.list(&ListParams::default().fields("metadata.name=b"))
                .await
                .expect("list")
        ),
        ["b"]
    );
    let first = maps
        .list(&ListParams::default().limit(2))
        .await
        .expect("a page");
    let token = first.metadata.continue_.clone().expect("more");
    assert_eq!(names(first), ["a", "b"]);
    let rest = maps
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .expect("the rest");
    assert_eq!(rest.metadata.continue_, None);
    assert_eq!(names(rest), ["c"]);
    let everywhere: Api<ConfigMap> = Api::all(client.clone());
    let all = everywhere
        .list(&ListParams::default().labels("tier"))
        .await
        .expect("a cluster-wide list");
    assert_eq!(names(all), ["a", "b", "c"]);
    let refused = status_of(
        maps.list(&ListParams::default().fields("data.x=1"))
            .await
            .expect_err("unsupported"),
    );
    assert_eq!(
        (refused.code, refused.message.as_str()),
        (400, "field label not supported: data.x")
    );
}

#[tokio::test]
async fn images_choose_how_pods_fail() {
    let server = ApiServer::start().await;
    let client = connect(&server).await;
    make_namespace(&client, "shop").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "shop");
    let params = PatchParams::apply("preview");
    deployments
        .patch(
            "pull",
            &params,
            &Patch::Apply(deployment(
                "pull",
                "shop",
                1,
                "registry.example/unpullable:1",
            )),
        )
        .await
        .expect("applied");
    deployments
        .patch(
            "crash",
            &params,
            &Patch::Apply(deployment(
                "crash",
                "shop",
                1,
                "registry.example/crashloop:1",
            )),
        )
        .await
        .expect("applied");
    let deadline = eventually("the progress deadline", || {
        let d = server.object("deployments", Some("shop"), "pull")?;
        let conditions = d["status"]["conditions"].as_array()?.clone();
        conditions
            .into_iter()
            .find(|c| c["type"] == "Progressing" && c["status"] == "False")
    })
    .await;
    assert_eq!(deadline["reason"], "ProgressDeadlineExceeded");
    assert!(deadline["message"].as_str().is_some_and(
        |m| m.starts_with("ReplicaSet \"pull-") && m.ends_with("\" has timed out progressing.")
    ));

    let pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    let waiting = |pod: &Pod| {
        pod.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c[0].state.as_ref())
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.clone())
    };
    let pulling = pods
        .list(&ListParams::default().labels("app=pull"))
        .await
        .expect("pods")
        .items
        .remove(0);
    assert_eq!(waiting(&pulling).as_deref(), Some("ImagePullBackOff"));
    assert_eq!(
        pulling.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Pending")
    );
    let crashing = pods
        .list(&ListParams::default().labels("app=crash"))
        .await
        .expect("pods")
        .items
        .remove(0);
    assert_eq!(waiting(&crashing).as_deref(), Some("CrashLoopBackOff"));
    let restarts = crashing
        .status
        .and_then(|s| s.container_statuses)
        .map(|c| c[0].restart_count);
    assert!(restarts.is_some_and(|r| r >= 1));

    let events: Api<Event> = Api::namespaced(client.clone(), "shop");
    let pull_name = pulling.metadata.name.expect("a name");
    let pull_events = events
        .list(&ListParams::default().fields(&format!("involvedObject.name={pull_name}")))
        .await
        .expect("events");
    let failed = pull_events
        .items
        .iter()
        .find(|e| e.reason.as_deref() == Some("Failed"))
        .expect("a Failed event");
    assert_eq!(failed.type_.as_deref(), Some("Warning"));
    assert_eq!(
        failed.message.as_deref(),
        Some("Failed to pull image \"registry.example/unpullable:1\": not found")
    );
}

#[tokio::test]
async fn unschedulable_clusters_and_exhausted_quotas_keep_pods_away() {
    let server = ApiServer::start().await;
    let client = connect(&server).await;
    make_namespace(&client, "shop").await;
    server.set_schedulable(false);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "shop");
    let params = PatchParams::apply("preview");
    deployments
        .patch(
            "web",
            &params,
            &Patch::Apply(deployment("web", "shop", 1, "nginx")),
        )
        .await
        .expect("applied");
    let scheduled = eventually("an unschedulable pod", || {
        let pod = server.objects("pods", Some("shop")).into_iter().next()?;
        let conditions = pod["status"]["conditions"].as_array()?.clone();
        conditions.into_iter().find(|c| c["type"] == "PodScheduled")
    })
    .await;
    assert_eq!(
        (scheduled["status"].as_str(), scheduled["reason"].as_str()),
        (Some("False"), Some("Unschedulable"))
    );
    assert!(
        server
            .objects("events", Some("shop"))
            .iter()
            .any(|e| e["reason"] == "FailedScheduling")
    );
    server.set_schedulable(true);
    eventually("the deployment to be ready", || {
        let d = server.object("deployments", Some("shop"), "web")?;
        (d["status"]["readyReplicas"] == 1).then_some(())
    })
    .await;

    make_namespace(&client, "full").await;
    server
        .apply_as(
            "preview",
            json!({
                "apiVersion": "v1", "kind": "ResourceQuota",
                "metadata": { "name": "no-pods", "namespace": "full" },
                "spec": { "hard": { "pods": "0" } },
            }),
        )
        .expect("a quota");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "full");
    deployments
        .patch(
            "web",
            &params,
            &Patch::Apply(deployment("web", "full", 1, "nginx")),
        )
        .await
        .expect("applied");
    let failure = eventually("a replica failure", || {
        let d = server.object("deployments", Some("full"), "web")?;
        let conditions = d["status"]["conditions"].as_array()?.clone();
        conditions
            .into_iter()
            .find(|c| c["type"] == "ReplicaFailure")
    })
    .await;
    assert_eq!(failure["reason"], "FailedCreate");
    assert!(
        failure["message"]
            .as_str()
            .is_some_and(|m| m.contains("is forbidden: exceeded quota: no-pods")),
        "{failure}"
    );
    assert!(server.objects("pods", Some("full")).is_empty());
    assert!(
        server
            .objects("events", Some("full"))
            .iter()
            .any(|e| e["reason"] == "FailedCreate" && e["involvedObject"]["kind"] == "ReplicaSet")
    );
}

#[tokio::test]
async fn stateful_sets_get_their_claims_and_revisions() {
    let server = ApiServer::start().await;
    let client = connect(&server).await;
    make_namespace(&client, "shop").await;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "shop");
    let set = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": { "name": "db" },
        "spec": {
            "replicas": 2,
            "serviceName": "db",
            "selector": { "matchLabels": { "app": "db" } },
            "template": { "metadata": { "labels": { "app": "db" } }, "spec": { "containers": [{ "name": "db", "image": "postgres:17" }] } },
            "volumeClaimTemplates": [{ "metadata": { "name": "data" }, "spec": {
                "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } },
            } }],
        },
    });
    sets.patch("db", &PatchParams::apply("preview"), &Patch::Apply(&set))
        .await
        .expect("applied");
    let status = eventually("the set to be ready", || {
        let s = server.object("statefulsets", Some("shop"), "db")?;
        (s["status"]["readyReplicas"] == 2).then(|| s["status"].clone())
    })
    .await;
    assert_eq!(status["currentRevision"], status["updateRevision"]);
    assert_eq!(status["updatedReplicas"], 2);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "shop");
    let claim = claims.get("data-db-0").await.expect("the claim");
    assert_eq!(claim.status.and_then(|s| s.phase).as_deref(), Some("Bound"));
    assert!(server.object("pods", Some("shop"), "db-1").is_some());
}

#[tokio::test]
async fn custom_kinds_are_served_once_their_crd_is_installed() {
    let server = ApiServer::start().await;
    let client = connect(&server).await;
    make_namespace(&client, "shop").await;
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("cert-manager.io", "v1", "Certificate"),
        "certificates",
    );
    let certificates: Api<DynamicObject> = Api::namespaced_with(client.clone(), "shop", &resource);
    let certificate = json!({
        "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
        "metadata": { "name": "web" },
        "spec": { "secretName": "web-tls", "dnsNames": ["web.example"], "issuerRef": { "name": "ca", "kind": "ClusterIssuer" } },
    });
    let params = PatchParams::apply("preview");
    let missing = status_of(
        certificates
            .patch("web", &params, &Patch::Apply(&certificate))
            .await
            .expect_err("no CRD"),
    );
    assert_eq!(
        (missing.code, missing.message.as_str()),
        (404, "the server could not find the requested resource")
    );

    server.install_crd("cert-manager.io");
    certificates
        .patch("web", &params, &Patch::Apply(&certificate))
        .await
        .expect("applied");
    eventually("the certificate to be ready", || {
        let c = server.object("certificates", Some("shop"), "web")?;
        let conditions = c["status"]["conditions"].as_array()?.clone();
        conditions
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
            .then_some(())
    })
    .await;
    let secret = server
        .object("secrets", Some("shop"), "web-tls")
        .expect("the certificate's secret");
    assert_eq!(secret["type"], "kubernetes.io/tls");
}

#[tokio::test]
async fn injected_failures_delays_and_a_stopped_server() {
    let server = ApiServer::start().await;
    let client = connect(&server).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    server.fail_next("GET", "/api/v1/namespaces/default", 500, "InternalError");
    let failed = status_of(namespaces.get("default").await.expect_err("injected"));
    assert_eq!(
        (failed.code, failed.reason.as_str()),
        (500, "InternalError")
    );
    namespaces
        .get("default")
        .await
        .expect("only the next request fails");

    // The client retries a 503 by itself: the server sees the request twice.
    server.clear_requests();
    server.fail_next(
        "GET",
        "/api/v1/namespaces/default",
        503,
        "ServiceUnavailable",
    );
    namespaces.get("default").await.expect("retried");
    assert_eq!(server.requests().len(), 2);

    server.delay(
        "GET",
        "/api/v1/namespaces/default",
        Duration::from_millis(200),
    );
    let started = std::time::Instant::now();
    namespaces.get("default").await.expect("slow but fine");
    assert!(started.elapsed() >= Duration::from_millis(200));

    server.stop().await;
    let error = namespaces.get("default").await.expect_err("unreachable");
    assert!(!matches!(error, kube::Error::Api(_)), "{error}");
    assert!(
        server.object("namespaces", None, "default").is_some(),
        "still inspectable"
    );
}

#[tokio::test]
async fn a_new_template_replaces_the_old_pods() {
    let server = ApiServer::start().await;
    let client = connect(&server).await;
    make_namespace(&client, "shop").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "shop");
    let params = PatchParams::apply("preview");
    let images = || -> Vec<String> {
        server
            .objects("pods", Some("shop"))
            .iter()
            .map(|p| {
                p["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    };
    deployments
        .patch(
            "web",
            &params,
            &Patch::Apply(deployment("web", "shop", 1, "nginx:1")),
        )
        .await
        .expect("applied");
    eventually("the first pod", || (images() == ["nginx:1"]).then_some(())).await;
    deployments
        .patch(
            "web",
            &params,
            &Patch::Apply(deployment("web", "shop", 1, "nginx:2")),
        )
        .await
        .expect("applied");
    eventually("only the new pod", || {
        (images() == ["nginx:2"]).then_some(())
    })
    .await;
    let sets = server.objects("replicasets", Some("shop"));
    let replicas: Vec<i64> = sets
        .iter()
        .map(|s| s["spec"]["replicas"].as_i64().unwrap_or(-1))
        .collect();
    assert_eq!(sets.len(), 2);
    assert!(
        replicas.contains(&0) && replicas.contains(&1),
        "{replicas:?}"
    );
    let status = eventually("the rollout to finish", || {
        let d = server.object("deployments", Some("shop"), "web")?;
        (d["status"]["observedGeneration"] == 2
            && d["status"]["updatedReplicas"] == 1
            && d["status"]["readyReplicas"] == 1)
            .then(|| d["status"].clone())
    })
    .await;
    assert_eq!(status["replicas"], 1);
}

/// A PostgreSQL StatefulSet whose password comes from a Secret, as the manifests render one.
fn database_set(name: &str, namespace: &str, initdb_args: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": { "name": name, "namespace": namespace },
        "spec": {
            "replicas": 1,
            "serviceName": name,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{
                    "name": "postgres",
                    "image": "postgres:16",
                    "ports": [{ "name": "postgres", "containerPort": 5432 }],
                    "env": [
                        { "name": "POSTGRES_USER", "value": "shop_staging" },
                        { "name": "POSTGRES_DB", "value": "shop_staging" },
                        { "name": "POSTGRES_PASSWORD", "valueFrom": { "secretKeyRef": { "name": "db-password", "key": "password" } } },
                        { "name": "POSTGRES_INITDB_ARGS", "value": initdb_args },
                    ],
                }] },
            },
        },
    })
}

#[tokio::test]
async fn ports_of_running_pods_are_forwarded_to_what_serves_them() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = ApiServer::start().await;
    let client = connect(&server).await;
    make_namespace(&client, "shop").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    // No such pod: the API's 404.
    let Err(missing) = pods.portforward("db-0", &[5432]).await else {
        panic!("a pod that does not exist is forwarded to");
    };
    assert!(
        matches!(&missing, kube::Error::Api(s) if s.code == 404 && s.reason == "NotFound"),
        "{missing:?}"
    );
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "db-password", "namespace": "shop" },
        "stringData": { "password": "s3cret 'quoted'" },
    });
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), "shop");
    secrets
        .patch(
            "db-password",
            &PatchParams::apply("preview"),
            &Patch::Apply(secret),
        )
        .await
        .expect("secret applied");
    server.pause_controllers(true);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "shop");
    sets.patch(
        "db",
        &PatchParams::apply("preview"),
        &Patch::Apply(database_set(
            "db",
            "shop",
            "--auth-local=scram-sha-256 --auth-host=scram-sha-256",
        )),
    )
    .await
    .expect("applied");
    // Nothing runs while the controllers are held: there is no pod to forward to.
    assert!(pods.portforward("db-0", &[5432]).await.is_err());
    server.pause_controllers(false);
    eventually("db-0 running", || {
        server
            .object("pods", Some("shop"), "db-0")
            .filter(|p| p["status"]["phase"] == "Running")
    })
    .await;
    // Running, but nothing serves it: the port's error channel says so.
    let mut forwarder = pods.portforward("db-0", &[5432]).await.expect("upgraded");
    let error = forwarder.take_error(5432).expect("an error channel").await;
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("error forwarding port 5432 to pod db-0")),
        "{error:?}"
    );
    // Served: the bytes reach a PostgreSQL server made as the image makes one, which answers an SSL request.
    let postgres = server.serve_postgres_pods();
    let mut forwarder = pods.portforward("db-0", &[5432]).await.expect("upgraded");
    let mut stream = forwarder.take_stream(5432).expect("a stream");
    stream
        .write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .await
        .expect("written");
    let mut answer = [0u8; 1];
    stream.read_exact(&mut answer).await.expect("an answer");
    assert_eq!(&answer, b"N", "PostgreSQL declines TLS");
    drop(stream);
    forwarder.join().await.expect("the forwarding ends cleanly");
    let made = postgres.server("shop", "db-0").expect("a server for db-0");
    assert_eq!(
        made.sql(
            "postgres",
            "SELECT rolsuper, (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'shop_staging') FROM pg_roles WHERE rolname = 'shop_staging'"
        )
        .expect("asked"),
        "t|shop_staging"
    );
    // Its password is asked for and checked, as the pod's initdb arguments say.
    assert_eq!(
        made.login("shop_staging", Some("s3cret 'quoted'"), "shop_staging"),
        Ok("shop_staging".to_owned())
    );
    assert!(
        made.login("shop_staging", Some("wrong"), "shop_staging")
            .is_err()
    );
    assert!(made.login("shop_staging", None, "shop_staging").is_err());
    // Without those arguments, as the image does, logins over the pod's loopback are trusted.
    sets.patch(
        "open",
        &PatchParams::apply("preview"),
        &Patch::Apply(database_set("open", "shop", "")),
    )
    .await
    .expect("applied");
    eventually("open-0 running", || {
        server
            .object("pods", Some("shop"), "open-0")
            .filter(|p| p["status"]["phase"] == "Running")
    })
    .await;
    let mut forwarder = pods.portforward("open-0", &[5432]).await.expect("upgraded");
    drop(forwarder.take_stream(5432));
    forwarder.join().await.expect("closed");
    // Made by the forward's connection, which the client need not wait for.
    let open = eventually("a server for open-0", || postgres.server("shop", "open-0")).await;
    assert_eq!(
        open.login("shop_staging", None, "shop_staging"),
        Ok("shop_staging".to_owned())
    );
    assert_eq!(postgres.pods(), 2);
    let forwarded = server
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v1/namespaces/shop/pods/db-0/portforward")
        .map(|r| r.param("ports").map(str::to_owned))
        .collect::<Vec<_>>();
    assert!(
        forwarded.len() >= 3 && forwarded.iter().all(|p| p.as_deref() == Some("5432")),
        "{forwarded:?}"
    );
}
