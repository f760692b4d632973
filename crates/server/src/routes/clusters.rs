//! The clusters environments live on: `preview cluster check`.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::Value;

use crate::api::SharedState;
use crate::error::ApiError;

/// The name of the cluster `preview serve --kubeconfig` connects to.
pub(crate) const DEFAULT_CLUSTER: &str = "default";

/// What the cluster offers, and what the credentials may not do.
pub(crate) async fn check(
    State(state): State<SharedState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let Some(cluster) = &state.kubernetes else {
        return Err(ApiError::NotFound(
            "this daemon runs no Kubernetes runtime: start it with `preview serve --runtime kubernetes --kubeconfig FILE`".to_owned(),
        ));
    };
    if name != DEFAULT_CLUSTER {
        return Err(ApiError::NotFound(format!(
            "no cluster `{name}`; the daemon's cluster is `{DEFAULT_CLUSTER}`"
        )));
    }
    let report = cluster
        .check()
        .await
        .map_err(|e| ApiError::Conflict(format!("cluster `{name}`: {e}")))?;
    Ok(Json(serde_json::to_value(report).unwrap_or_default()))
}
