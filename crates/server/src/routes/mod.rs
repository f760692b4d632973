//! One module per kind of API resource.

pub(crate) mod clusters;
pub(crate) mod deployments;
pub(crate) mod environments;
pub(crate) mod events;
pub(crate) mod metrics;
pub(crate) mod previews;
pub(crate) mod projects;
pub(crate) mod runtime;
pub(crate) mod variables;
pub(crate) mod webhooks;

use preview_store::{ProjectRecord, Store};

use crate::error::ApiError;

pub(crate) async fn project_record(store: &Store, name: &str) -> Result<ProjectRecord, ApiError> {
    store.project(name).await?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "no project `{name}`; register its spec with `preview project register -f preview.yaml`"
        ))
    })
}
