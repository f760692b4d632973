//! An app: a Deployment running its image and a Service by the app's name, so that the environment's other
//! services reach it at `<name>:<port>` as their variables say.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, HTTPGetAction, PodTemplateSpec, Probe, Service, ServicePort,
    ServiceSpec, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use preview_plan::Resource;
use serde_json::Value;

use crate::labels::{labels, metadata, selector};
use crate::pods::{
    image, pod, port_name, resources, restricted_container, secrets_digest, service_name, variables,
};
use crate::{Object, RenderError, Target};

/// How long a rollout may make no progress before it is failed, when the health check sets no start timeout.
const PROGRESS_DEADLINE_SECONDS: i32 = 300;

pub(crate) fn render(resource: &Resource, target: &Target) -> Result<Vec<Object>, RenderError> {
    let name = service_name(resource);
    let content = &resource.content;
    let ports: Vec<(String, i32)> = content["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|port| {
            let number = port["port"].as_u64()?;
            let name = port_name(port["name"].as_str().unwrap_or_default(), number);
            Some((name, i32::try_from(number).ok()?))
        })
        .collect();
    let health = &content["health"];
    let probe = |failures: Option<i32>| probe(health, content, failures);
    let container = Container {
        name: name.to_owned(),
        image: Some(image(resource)?),
        env: Some(variables(resource)),
        ports: Some(
            ports
                .iter()
                .map(|(name, number)| ContainerPort {
                    name: Some(name.clone()),
                    container_port: *number,
                    protocol: Some("TCP".to_owned()),
                    ..ContainerPort::default()
                })
                .collect(),
        ),
        readiness_probe: probe(Some(1)),
        liveness_probe: probe(None),
        startup_probe: startup_probe(health, content),
        resources: resources(content),
        security_context: Some(restricted_container()),
        ..Container::default()
    };
    let deadline = health["start_timeout_ms"]
        .as_u64()
        .map_or(PROGRESS_DEADLINE_SECONDS, |ms| {
            i32::try_from(ms.div_ceil(1000)).unwrap_or(i32::MAX).max(10)
        });
    let deployment = Deployment {
        metadata: metadata(target, &resource.id, name, name),
        spec: Some(DeploymentSpec {
            replicas: Some(
                content["replicas"]
                    .as_u64()
                    .and_then(|r| i32::try_from(r).ok())
                    .unwrap_or(1),
            ),
            selector: LabelSelector {
                match_labels: Some(selector(target, name)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(target, name)),
                    annotations: Some(secrets_digest(resource)),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod(vec![container], None)),
            },
            progress_deadline_seconds: Some(deadline),
            revision_history_limit: Some(2),
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    };
    let mut objects = vec![Object::typed(&deployment, true)];
    if !ports.is_empty() {
        let service = Service {
            metadata: metadata(target, &resource.id, name, name),
            spec: Some(ServiceSpec {
                selector: Some(selector(target, name)),
                ports: Some(
                    ports
                        .iter()
                        .map(|(port_name, number)| ServicePort {
                            name: Some(port_name.clone()),
                            port: *number,
                            target_port: Some(IntOrString::String(port_name.clone())),
                            protocol: Some("TCP".to_owned()),
                            ..ServicePort::default()
                        })
                        .collect(),
                ),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        };
        objects.push(Object::typed(&service, true));
    }
    Ok(objects)
}

/// The health check as a probe: HTTP GET of its path or a TCP connection, on its port, at its interval.
/// `failure_threshold` one for readiness (out of the Service at the first failure), the spec's count otherwise.
fn probe(health: &Value, content: &Value, failure_threshold: Option<i32>) -> Option<Probe> {
    if health.is_null() {
        return None;
    }
    let port_number = content["ports"]
        .as_array()?
        .iter()
        .find(|port| port["name"] == health["port"])?["port"]
        .as_u64()?;
    let port = IntOrString::String(port_name(health["port"].as_str()?, port_number));
    let seconds = |key: &str| {
        health[key]
            .as_u64()
            .map(|ms| i32::try_from(ms.div_ceil(1000)).unwrap_or(i32::MAX).max(1))
    };
    let (http_get, tcp_socket) = match health["probe"]["http"].as_str() {
        Some(path) => (
            Some(HTTPGetAction {
                path: Some(path.to_owned()),
                port,
                ..HTTPGetAction::default()
            }),
            None,
        ),
        None => (
            None,
            Some(TCPSocketAction {
                port,
                ..TCPSocketAction::default()
            }),
        ),
    };
    Some(Probe {
        http_get,
        tcp_socket,
        period_seconds: seconds("interval_ms"),
        timeout_seconds: seconds("timeout_ms"),
        failure_threshold: failure_threshold.or_else(|| {
            health["failures"]
                .as_u64()
                .and_then(|f| i32::try_from(f).ok())
        }),
        ..Probe::default()
    })
}

/// While a new pod starts, liveness waits for this probe: the start timeout in probe periods.
fn startup_probe(health: &Value, content: &Value) -> Option<Probe> {
    let start = health["start_timeout_ms"].as_u64()?;
    let period = health["interval_ms"].as_u64().unwrap_or(1000).max(1000);
    let mut probe = probe(health, content, None)?;
    probe.failure_threshold = Some(
        i32::try_from(start.div_ceil(period))
            .unwrap_or(i32::MAX)
            .max(1),
    );
    Some(probe)
}
