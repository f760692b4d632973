//! The clusters environments live on: `preview cluster add|list|remove|check`. Credentials go in and never come
//! out: no answer holds a kubeconfig.

use axum::Json;
use axum::extract::{Path, State};
use preview_kubernetes::{Clusters, DEFAULT_CLUSTER};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{Body, SharedState};
use crate::error::ApiError;

fn clusters(state: &SharedState) -> Result<&Clusters, ApiError> {
    state.kubernetes.as_deref().ok_or_else(|| {
        ApiError::NotFound(
            "this daemon runs no Kubernetes runtime: start it with `preview serve --runtime kubernetes --kubeconfig FILE`".to_owned(),
        )
    })
}

#[utoipa::path(
    get,
    operation_id = "clusters_list",
    path = "/v1/clusters",
    tag = "clusters",
    summary = "The clusters environments may live on",
    responses((status = 200, description = "Every cluster", body = crate::openapi::answers::ClusterList), crate::openapi::Refusals)
)]
/// Every cluster with its server and the environments on it.
pub(crate) async fn list(State(state): State<SharedState>) -> Result<Json<Value>, ApiError> {
    let clusters = clusters(&state)?;
    let mut listed = Vec::new();
    for (name, cluster) in clusters.all() {
        let environments = cluster.environments().await;
        listed.push(json!({
            "name": name,
            "server": cluster.cluster_url(),
            "environments": environments.as_ref().ok(),
            "error": environments.err(),
        }));
    }
    Ok(Json(json!({ "clusters": listed })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewCluster {
    #[schema(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    name: String,
    /// The kubeconfig's text.
    kubeconfig: String,
    #[serde(default)]
    context: Option<String>,
}

#[utoipa::path(
    post,
    operation_id = "clusters_add",
    path = "/v1/clusters",
    tag = "clusters",
    summary = "Add a cluster by its kubeconfig (stored sealed)",
    request_body = NewCluster,
    responses((status = 200, description = "Added", body = crate::openapi::answers::ClusterAdded), crate::openapi::Refusals)
)]
/// Registers a cluster once its server answers with the credentials given.
pub(crate) async fn add(
    State(state): State<SharedState>,
    Body(body): Body<NewCluster>,
) -> Result<Json<Value>, ApiError> {
    let clusters = clusters(&state)?;
    if let Some(problem) = preview_spec::name_problem(&body.name) {
        return Err(ApiError::BadRequest(format!(
            "`{}` is not a cluster name: it {problem}",
            body.name
        )));
    }
    if clusters.get(&body.name).is_some() {
        return Err(ApiError::Conflict(format!(
            "a cluster `{}` exists; remove it first (`preview cluster remove {}`)",
            body.name, body.name
        )));
    }
    let kubeconfig = preview_secrets::Secret::new(body.kubeconfig);
    let cluster = crate::clusters::add(
        &state.vault,
        clusters,
        &body.name,
        kubeconfig,
        body.context.as_deref(),
        crate::routes::projects::now_ms(),
    )
    .await
    .map_err(|e| ApiError::BadRequest(format!("cluster `{}`: {e}", body.name)))?;
    Ok(Json(
        json!({ "name": body.name, "server": cluster.cluster_url() }),
    ))
}

#[utoipa::path(
    delete,
    operation_id = "clusters_remove",
    path = "/v1/clusters/{name}",
    tag = "clusters",
    summary = "Remove a cluster no environment lives on",
    params(crate::openapi::params::ClusterPath),
    responses((status = 200, description = "Removed", body = crate::openapi::answers::ClusterRemoved), crate::openapi::Refusals)
)]
/// Forgets a cluster no environment lives on.
pub(crate) async fn remove(
    State(state): State<SharedState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let clusters = clusters(&state)?;
    if name == DEFAULT_CLUSTER {
        return Err(ApiError::BadRequest(
            "`default` is the daemon's own cluster (`--kubeconfig`); it cannot be removed"
                .to_owned(),
        ));
    }
    if clusters.get(&name).is_none() {
        return Err(ApiError::NotFound(format!("no cluster `{name}`")));
    }
    let environments = clusters
        .environments_on(&name)
        .await
        .map_err(|e| ApiError::Conflict(format!("cluster `{name}`: {e}; it is kept")))?;
    if !environments.is_empty() {
        return Err(ApiError::Conflict(format!(
            "environments live on cluster `{name}`: {}; delete them first",
            environments.join(", ")
        )));
    }
    crate::clusters::remove(&state.vault, clusters, &name)
        .await
        .map_err(ApiError::Internal)?;
    Ok(Json(json!({ "removed": name })))
}

#[utoipa::path(
    get,
    operation_id = "clusters_check",
    path = "/v1/clusters/{name}/check",
    tag = "clusters",
    summary = "What the daemon may do on the cluster, permission by permission",
    params(crate::openapi::params::ClusterPath),
    responses((status = 200, description = "The report", body = Object), crate::openapi::Refusals)
)]
/// What the cluster offers, and what the credentials may not do.
pub(crate) async fn check(
    State(state): State<SharedState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let clusters = clusters(&state)?;
    let Some(cluster) = clusters.get(&name) else {
        let names: Vec<String> = clusters.all().into_iter().map(|(n, _)| n).collect();
        return Err(ApiError::NotFound(format!(
            "no cluster `{name}`; the clusters are {}",
            names.join(", ")
        )));
    };
    let report = cluster
        .check()
        .await
        .map_err(|e| ApiError::Conflict(format!("cluster `{name}`: {e}")))?;
    Ok(Json(serde_json::to_value(report).unwrap_or_default()))
}
