//! What `env show`, `logs` and the isolation report read of an environment on the cluster: its pods, its
//! protections, a service's newest pod's log.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams};
use preview_deploy::{EnvironmentAddress, LogChunk, Protection, RuntimeError, ServiceStatus};

use crate::KubernetesRuntime;
use crate::connect::explain;

impl KubernetesRuntime {
    pub(crate) async fn pods_status(&self, env: &EnvironmentAddress) -> Vec<ServiceStatus> {
        let Ok(namespace) = self.namespace_of(env).await else {
            return Vec::new();
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let Ok(pods) = api
            .list(&ListParams::default().labels("app.kubernetes.io/managed-by=preview"))
            .await
        else {
            return Vec::new();
        };
        let mut statuses: Vec<ServiceStatus> = pods
            .items
            .iter()
            .map(|pod| {
                let service = pod
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("app.kubernetes.io/name").cloned())
                    .unwrap_or_default();
                let status = pod.status.clone().unwrap_or_default();
                let containers = status.container_statuses.clone().unwrap_or_default();
                let ready = !containers.is_empty() && containers.iter().all(|c| c.ready);
                let waiting = containers
                    .iter()
                    .find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone());
                let state = match (ready, waiting, status.phase.as_deref()) {
                    (true, _, _) => "running".to_owned(),
                    (false, Some(reason), _) => format!("waiting ({reason})"),
                    (false, None, Some("Succeeded")) => "completed".to_owned(),
                    (false, None, phase) => phase.unwrap_or("pending").to_ascii_lowercase(),
                };
                let last_exit = containers.iter().find_map(|c| {
                    let terminated = c.last_state.as_ref()?.terminated.as_ref()?;
                    Some(format!(
                        "exit status: {}{}",
                        terminated.exit_code,
                        terminated
                            .reason
                            .as_ref()
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default()
                    ))
                });
                ServiceStatus {
                    service: format!(
                        "{service} (pod {})",
                        pod.metadata.name.clone().unwrap_or_default()
                    ),
                    state,
                    pid: None,
                    restarts: containers
                        .iter()
                        .map(|c| c.restart_count.max(0) as u32)
                        .sum(),
                    last_exit,
                    address: status.pod_ip.clone(),
                }
            })
            .collect();
        statuses.sort_by(|a, b| a.service.cmp(&b.service));
        statuses
    }

    pub(crate) async fn protections(&self, env: &EnvironmentAddress) -> Vec<Protection> {
        let Ok(Some(space)) = self.inventory.read(env, "space").await else {
            return Vec::new();
        };
        let has = |kind: &str, name: &str| {
            space
                .objects
                .iter()
                .any(|o| o.kind == kind && o.name == name && o.uid.is_some())
        };
        vec![
            Protection {
                name: "users".to_owned(),
                in_effect: has("Namespace", &space.namespace),
                detail: format!(
                    "namespace {} under Pod Security `restricted`: non-root, no privilege escalation, no capabilities, ServiceAccount without a token",
                    space.namespace
                ),
            },
            Protection {
                name: "network".to_owned(),
                in_effect: has("NetworkPolicy", "default-deny")
                    && has("NetworkPolicy", "allow-environment"),
                detail: format!(
                    "default-deny NetworkPolicy; in from the namespace and from {}; out to the namespace, DNS and the internet but private and metadata addresses (enforced where the cluster's network plugin enforces NetworkPolicy)",
                    self.options.settings.ingress_namespace
                ),
            },
            Protection {
                name: "limits".to_owned(),
                in_effect: has("ResourceQuota", "environment") && has("LimitRange", "containers"),
                detail: "ResourceQuota for the environment, LimitRange defaults for containers"
                    .to_owned(),
            },
        ]
    }

    pub(crate) async fn service_log(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        from: u64,
    ) -> Result<LogChunk, RuntimeError> {
        let namespace = self.namespace_of(env).await?;
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let selector =
            format!("app.kubernetes.io/name={service},app.kubernetes.io/managed-by=preview");
        let pods = api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| RuntimeError::new(explain(&format!("pods of `{service}`"), &e)))?;
        let newest = pods
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .max_by(|a, b| {
                (
                    a.metadata.creation_timestamp.as_ref().map(|t| t.0),
                    &a.metadata.name,
                )
                    .cmp(&(
                        b.metadata.creation_timestamp.as_ref().map(|t| t.0),
                        &b.metadata.name,
                    ))
            })
            .and_then(|p| p.metadata.name.clone());
        let Some(pod) = newest else {
            return Err(RuntimeError::new(format!(
                "`{service}` has no pod in {namespace}"
            )));
        };
        let text = api.logs(&pod, &LogParams::default()).await.map_err(|e| {
            RuntimeError::new(explain(&format!("the log of pod {namespace}/{pod}"), &e))
        })?;
        let start = usize::try_from(from).unwrap_or(usize::MAX).min(text.len());
        let start = (start..=text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(text.len());
        Ok(LogChunk {
            text: text[start..].to_owned(),
            next: text.len() as u64,
        })
    }
}
