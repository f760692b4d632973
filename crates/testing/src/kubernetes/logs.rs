//! Pod logs (`GET /api/v1/namespaces/{ns}/pods/{name}/log`): the text a test chose for pods whose name starts with a
//! prefix, or a line saying what the container runs (`running: migrate --all`). `container`, `tailLines` and `follow`
//! are read as the kubelet reads them; a container that never started has no log.

use serde_json::Value;

use super::reads::get;
use super::request::Request;
use super::route::Target;
use super::state::State;
use super::status::ApiError;

pub(crate) fn pod_log(
    state: &State,
    target: &Target,
    request: &Request,
) -> Result<String, ApiError> {
    let pod = get(state, target)?;
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let containers: Vec<&Value> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let names: Vec<&str> = containers
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let container = match request.param("container") {
        Some(wanted) => containers
            .iter()
            .find(|c| c["name"] == wanted)
            .ok_or_else(|| {
                ApiError::bad_request(format!("container {wanted} is not valid for pod {name}"))
            })?,
        None if containers.len() == 1 => &containers[0],
        None => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                names.join(" ")
            )));
        }
    };
    let container_name = container["name"].as_str().unwrap_or_default();
    let status = pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == container_name);
    let waiting = status
        .map(|s| &s["state"]["waiting"])
        .filter(|w| !w.is_null());
    let never_ran = status.is_none_or(|s| s["restartCount"].as_u64().unwrap_or(0) == 0)
        && (status.is_none() || waiting.is_some());
    if never_ran {
        let reason = waiting
            .and_then(|w| w["reason"].as_str())
            .map(|r| match r {
                "ImagePullBackOff" | "ErrImagePull" => "trying and failing to pull image",
                other => other,
            })
            .unwrap_or("ContainerCreating");
        return Err(ApiError::bad_request(format!(
            "container \"{container_name}\" in pod \"{name}\" is waiting to start: {reason}"
        )));
    }
    let text = state
        .logs
        .iter()
        .find(|(prefix, _)| name.starts_with(prefix.as_str()))
        .map(|(_, text)| text.clone())
        .unwrap_or_else(|| default_log(container));
    let tail = match request.param("tailLines") {
        None | Some("") => None,
        Some(n) => Some(
            n.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("tailLines: Invalid value: {n:?}")))?,
        ),
    };
    Ok(match tail {
        None => text,
        Some(n) => {
            let lines: Vec<&str> = text.lines().collect();
            let kept = &lines[lines.len().saturating_sub(n)..];
            kept.iter().map(|l| format!("{l}\n")).collect()
        }
    })
}

/// `running: <command and args>`, or the image when the container runs its own entrypoint.
fn default_log(container: &Value) -> String {
    let words: Vec<&str> = ["command", "args"]
        .iter()
        .flat_map(|field| container[*field].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    if words.is_empty() {
        format!(
            "running: {}\n",
            container["image"].as_str().unwrap_or_default()
        )
    } else {
        format!("running: {}\n", words.join(" "))
    }
}
