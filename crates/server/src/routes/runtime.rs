//! What the runtime knows beyond resources: services' logs, the gateway's addresses, the CA to trust.

use axum::Json;
use axum::extract::{Path, State};
use preview_deploy::EnvironmentAddress;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{Params, SharedState};
use crate::error::ApiError;
use crate::routes::project_record;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogQuery {
    /// The byte offset to continue from, as returned in `next`.
    #[serde(default)]
    pub(crate) from: u64,
}

#[utoipa::path(
    get,
    operation_id = "runtime_logs",
    path = "/v1/projects/{project}/environments/{environment}/services/{service}/logs",
    tag = "environments",
    summary = "What an app, job or database of the environment printed, from an offset",
    params(crate::openapi::params::ServicePath, LogQuery),
    responses((status = 200, description = "A chunk of the log", body = crate::openapi::answers::LogChunk), crate::openapi::Refusals)
)]
pub(crate) async fn logs(
    State(state): State<SharedState>,
    Path((project, environment, service)): Path<(String, String, String)>,
    Params(query): Params<LogQuery>,
) -> Result<Json<Value>, ApiError> {
    let project = project_record(&state.store, &project).await?;
    if state
        .store
        .environment(&project.name, &environment)
        .await?
        .is_none()
    {
        return Err(ApiError::NotFound(format!(
            "project `{}` has no environment `{environment}`",
            project.name
        )));
    }
    // Only a service of this environment that runs (an app, a job, a database's server) has a log.
    let recorded = state
        .store
        .recorded_state(&project.name, &environment)
        .await?;
    let services: Vec<&str> = recorded
        .iter()
        .filter(|r| {
            matches!(
                r.kind,
                preview_plan::ResourceKind::App
                    | preview_plan::ResourceKind::Job
                    | preview_plan::ResourceKind::Database
            )
        })
        .filter_map(|r| r.id.split_once('/').map(|(_, name)| name))
        .collect();
    if !services.contains(&service.as_str()) {
        return Err(ApiError::NotFound(format!(
            "environment `{environment}` has no app, job or database `{service}` (it has: {})",
            services.join(", ")
        )));
    }
    let databases: Vec<String> = recorded
        .iter()
        .filter(|r| r.kind == preview_plan::ResourceKind::Database)
        .filter_map(|r| r.id.strip_prefix("database/").map(str::to_owned))
        .collect();
    let address = EnvironmentAddress {
        project: project.name,
        environment,
    };
    let chunk = state
        .runtime
        .logs(&address, &service, query.from)
        .await
        .map_err(|e| ApiError::NotFound(e.to_string()))?;
    // What an app prints is its own; a secret value it prints is shown as `[secret]` all the same.
    let hidden = state
        .vault
        .values_to_hide(&address, &databases)
        .await
        .map_err(ApiError::Internal)?;
    let (text, next) = hide_secrets(chunk.text, chunk.next, &hidden);
    Ok(Json(json!({ "text": text, "next": next })))
}

/// `text` (read up to the byte offset `next`) with every value of `hidden` replaced by `[secret]`; when the text
/// ends with the beginning of one, that end is left for the next read (which starts earlier), so that no value is
/// shown cut in two.
fn hide_secrets(text: String, next: u64, hidden: &[preview_secrets::Secret]) -> (String, u64) {
    let values: Vec<&str> = hidden
        .iter()
        .map(|s| s.expose())
        .filter(|v| v.len() >= 4)
        .collect();
    let mut keep = text.len();
    for value in &values {
        for length in (1..value.len()).rev() {
            if value.is_char_boundary(length) && text[..keep].ends_with(&value[..length]) {
                keep -= length;
                break;
            }
        }
    }
    let held_back = (text.len() - keep) as u64;
    let shown = values.iter().fold(text[..keep].to_owned(), |text, value| {
        text.replace(value, "[secret]")
    });
    (shown, next.saturating_sub(held_back))
}

#[cfg(test)]
mod tests {
    use super::hide_secrets;
    use preview_secrets::Secret;

    #[test]
    fn secret_values_in_a_log_are_hidden_even_cut_between_two_reads() {
        let hidden = [Secret::new("s3cr3t-value".to_owned())];
        let (text, next) = hide_secrets("key=s3cr3t-value ok\n".to_owned(), 100, &hidden);
        assert_eq!((text.as_str(), next), ("key=[secret] ok\n", 100));
        // The chunk ends inside the value: that end is read again with what follows.
        let (text, next) = hide_secrets("key=s3cr3t".to_owned(), 10, &hidden);
        assert_eq!((text.as_str(), next), ("key=", 4));
        // Short values are not hunted for: they would hide ordinary words.
        let short = [Secret::new("abc".to_owned())];
        assert_eq!(hide_secrets("abc".to_owned(), 3, &short).0, "abc");
    }
}

#[utoipa::path(
    get,
    operation_id = "runtime_databases",
    path = "/v1/projects/{project}/environments/{environment}/databases",
    tag = "databases",
    summary = "The environment's databases",
    params(crate::openapi::params::EnvironmentPath),
    responses((status = 200, description = "Every database", body = crate::openapi::answers::DatabaseList), crate::openapi::Refusals)
)]
/// The environment's databases as recorded: their names on the server, engine, version and where their data came
/// from. No credentials.
pub(crate) async fn databases(
    State(state): State<SharedState>,
    Path((project, environment)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let project = project_record(&state.store, &project).await?;
    let recorded = recorded_environment(&state, &project.name, &environment).await?;
    let databases: Vec<Value> = recorded
        .iter()
        .filter(|r| r.kind == preview_plan::ResourceKind::Database)
        .map(|r| {
            json!({
                "service": r.id.trim_start_matches("database/"),
                "name": r.content["name"],
                "engine": r.content["engine"],
                "version": r.content["version"],
                "isolation": r.content["isolation"],
                "mode": r.content["mode"],
                "clone": r.content["clone"]["policy"],
                "from": r.content["clone"]["from"],
            })
        })
        .collect();
    Ok(Json(json!({ "databases": databases })))
}

#[utoipa::path(
    post,
    operation_id = "runtime_database_login",
    path = "/v1/projects/{project}/environments/{environment}/databases/{service}/login",
    tag = "databases",
    summary = "A login to one of the environment's databases (for psql)",
    params(crate::openapi::params::ServicePath),
    responses((status = 200, description = "The login", body = crate::openapi::answers::DatabaseLogin), crate::openapi::Refusals)
)]
/// A login to one of the environment's databases, password included: the one answer that holds a secret value,
/// asked for explicitly by `preview db psql`, which hands it to `psql` through its environment.
pub(crate) async fn database_login(
    State(state): State<SharedState>,
    Path((project, environment, service)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let address = database_of(&state, &project, &environment, &service).await?;
    let login = state
        .runtime
        .database_login(&address, &service)
        .await
        .map_err(|e| ApiError::Conflict(e.to_string()))?;
    Ok(Json(json!({
        "host": login.host,
        "port": login.port,
        "user": login.user,
        "database": login.database,
        "password": login.password.expose(),
    })))
}

#[utoipa::path(
    post,
    operation_id = "runtime_refresh_database",
    path = "/v1/projects/{project}/environments/{environment}/databases/{service}/refresh",
    tag = "databases",
    summary = "Build the golden snapshot the database is copied from again",
    params(crate::openapi::params::ServicePath),
    responses((status = 200, description = "What was done", body = crate::openapi::answers::Lines), crate::openapi::Refusals)
)]
/// Builds the golden snapshot of one of the environment's databases again (`preview db refresh`).
pub(crate) async fn refresh_database(
    State(state): State<SharedState>,
    Path((project, environment, service)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let address = database_of(&state, &project, &environment, &service).await?;
    let lines = state
        .runtime
        .refresh_database_snapshot(&address, &service)
        .await
        .map_err(|e| ApiError::Conflict(e.to_string()))?;
    Ok(Json(json!({ "lines": lines })))
}

#[utoipa::path(
    get,
    operation_id = "runtime_database_snapshot",
    path = "/v1/projects/{project}/environments/{environment}/databases/{service}/snapshot",
    tag = "databases",
    summary = "The golden snapshot the database was made from",
    params(crate::openapi::params::ServicePath),
    responses((status = 200, description = "The snapshot, or null", body = crate::openapi::answers::SnapshotShown), crate::openapi::Refusals)
)]
/// The golden snapshot one of the environment's databases is made from (`preview db snapshot`).
pub(crate) async fn database_snapshot(
    State(state): State<SharedState>,
    Path((project, environment, service)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let address = database_of(&state, &project, &environment, &service).await?;
    let snapshot = state
        .runtime
        .database_snapshot(&address, &service)
        .await
        .map_err(|e| ApiError::Conflict(e.to_string()))?;
    Ok(Json(json!({ "snapshot": snapshot })))
}

#[utoipa::path(
    get,
    operation_id = "runtime_database_snapshots",
    path = "/v1/projects/{project}/database-snapshots",
    tag = "databases",
    summary = "The project's golden snapshots and the environments made from each",
    params(crate::openapi::params::ProjectPath),
    responses((status = 200, description = "Every snapshot", body = crate::openapi::answers::SnapshotList), crate::openapi::Refusals)
)]
/// Every golden snapshot the project's environments are made from, once each, with the environments made from
/// it (`preview db snapshots`).
pub(crate) async fn database_snapshots(
    State(state): State<SharedState>,
    Path(project): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let project = project_record(&state.store, &project).await?;
    let mut snapshots: std::collections::BTreeMap<String, (Value, Vec<String>)> =
        std::collections::BTreeMap::new();
    for environment in state.store.environments(&project.name).await? {
        let recorded = state
            .store
            .recorded_state(&project.name, &environment.name)
            .await?;
        let address = EnvironmentAddress {
            project: project.name.clone(),
            environment: environment.name.clone(),
        };
        for database in recorded
            .iter()
            .filter(|r| r.kind == preview_plan::ResourceKind::Database)
            .filter(|r| {
                matches!(
                    r.content["clone"]["policy"].as_str(),
                    Some("clone" | "masked")
                )
            })
        {
            let service = database.id.trim_start_matches("database/");
            // One environment whose server cannot answer does not hide the others' snapshots.
            let Ok(Some(snapshot)) = state.runtime.database_snapshot(&address, service).await
            else {
                continue;
            };
            let key = format!("{service}/{}", snapshot.name);
            let entry = snapshots.entry(key).or_insert_with(|| {
                let mut described = json!(snapshot);
                described["service"] = json!(service);
                (described, Vec::new())
            });
            entry.1.push(environment.name.clone());
        }
    }
    let snapshots: Vec<Value> = snapshots
        .into_values()
        .map(|(mut snapshot, environments)| {
            snapshot["environments"] = json!(environments);
            snapshot
        })
        .collect();
    Ok(Json(json!({ "snapshots": snapshots })))
}

#[utoipa::path(
    post,
    operation_id = "runtime_reset_database",
    path = "/v1/projects/{project}/environments/{environment}/databases/{service}/reset",
    tag = "databases",
    summary = "Make the database again as its clone policy says",
    params(crate::openapi::params::ServicePath),
    responses((status = 200, description = "What was done", body = crate::openapi::answers::Lines), crate::openapi::Refusals)
)]
/// Makes one of the environment's databases again by its clone policy (`preview db reset`).
pub(crate) async fn reset_database(
    State(state): State<SharedState>,
    Path((project, environment, service)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let address = database_of(&state, &project, &environment, &service).await?;
    let lines = state
        .runtime
        .reset_database(&address, &service)
        .await
        .map_err(|e| ApiError::Conflict(e.to_string()))?;
    Ok(Json(json!({ "lines": lines })))
}

/// The environment that has the database `service`, or why there is none.
async fn database_of(
    state: &SharedState,
    project: &str,
    environment: &str,
    service: &str,
) -> Result<EnvironmentAddress, ApiError> {
    let project = project_record(&state.store, project).await?;
    let recorded = recorded_environment(state, &project.name, environment).await?;
    let id = format!("database/{service}");
    if !recorded.iter().any(|r| r.id == id) {
        return Err(ApiError::NotFound(format!(
            "environment `{environment}` has no database `{service}`"
        )));
    }
    Ok(EnvironmentAddress {
        project: project.name,
        environment: environment.to_owned(),
    })
}

async fn recorded_environment(
    state: &SharedState,
    project: &str,
    environment: &str,
) -> Result<Vec<preview_plan::Resource>, ApiError> {
    if state
        .store
        .environment(project, environment)
        .await?
        .is_none()
    {
        return Err(ApiError::NotFound(format!(
            "project `{project}` has no environment `{environment}`"
        )));
    }
    Ok(state.store.recorded_state(project, environment).await?)
}

#[utoipa::path(
    get,
    operation_id = "runtime_gateway",
    path = "/v1/gateway",
    tag = "daemon",
    summary = "Where the gateway listens",
    responses((status = 200, description = "Its addresses", body = crate::openapi::answers::GatewayAddresses), crate::openapi::Refusals)
)]
pub(crate) async fn gateway(State(state): State<SharedState>) -> Result<Json<Value>, ApiError> {
    let gateway = state.gateway.as_ref().ok_or_else(no_gateway)?;
    Ok(Json(
        json!({ "http": gateway.http.to_string(), "https": gateway.https.to_string() }),
    ))
}

#[utoipa::path(
    get,
    operation_id = "runtime_ca",
    path = "/v1/ca",
    tag = "daemon",
    summary = "The local CA's certificate, to trust environments' HTTPS",
    responses((status = 200, description = "The certificate", body = crate::openapi::answers::Certificate), crate::openapi::Refusals)
)]
pub(crate) async fn ca(State(state): State<SharedState>) -> Result<Json<Value>, ApiError> {
    let gateway = state.gateway.as_ref().ok_or_else(no_gateway)?;
    Ok(Json(json!({ "certificate": gateway.ca_pem })))
}

fn no_gateway() -> ApiError {
    ApiError::NotFound(
        "this daemon runs no gateway: its runtime serves no routes (start it with `--runtime local`)"
            .to_owned(),
    )
}

/// `https://name` (with the gateway's port unless it is 443) for each hostname that is not a wildcard.
pub(crate) fn urls(state: &SharedState, resources: &[preview_plan::Resource]) -> Vec<String> {
    service_urls(state, resources)
        .into_iter()
        .map(|(_, url)| url)
        .collect()
}

/// [`urls`], each with the service it leads to.
pub(crate) fn service_urls(
    state: &SharedState,
    resources: &[preview_plan::Resource],
) -> Vec<(String, String)> {
    let Some(gateway) = &state.gateway else {
        return Vec::new();
    };
    let port = match gateway.https.port() {
        443 => String::new(),
        port => format!(":{port}"),
    };
    resources
        .iter()
        .filter(|r| r.kind == preview_plan::ResourceKind::Route)
        .flat_map(|r| {
            let service = r.content["service"].as_str().unwrap_or_default().to_owned();
            let port = port.clone();
            r.content["hostnames"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|name| name.as_str().map(str::to_owned))
                .filter(|name| !name.starts_with("*."))
                .map(move |name| (service.clone(), format!("https://{name}{port}")))
        })
        .collect()
}
