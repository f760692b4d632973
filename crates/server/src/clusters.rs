//! Registered clusters (`preview cluster add`): each one's kubeconfig and context sealed in the store like a secret —
//! in a slot no project can have (project names are DNS labels), so that key rotation re-seals it with the rest and
//! nothing prints it — and connected when the daemon starts.

use std::sync::Arc;

use preview_deploy::{EnvironmentAddress, SecretSource};
use preview_kubernetes::{ClusterConfig, Clusters, KubernetesRuntime};
use preview_secrets::Secret;

use crate::vault::Vault;

/// The slot registered clusters are sealed in: `~clusters/cluster/<name>`.
const PROJECT: &str = "~clusters";
const SCOPE: &str = "cluster";

/// What is sealed for a cluster: its kubeconfig's text and the context to use.
#[derive(serde::Serialize, serde::Deserialize)]
struct Sealed {
    kubeconfig: String,
    context: Option<String>,
}

fn config(kubeconfig: &Secret, context: Option<&str>) -> ClusterConfig {
    ClusterConfig {
        inline: Some(kubeconfig.clone()),
        context: context.map(str::to_owned),
        ..ClusterConfig::default()
    }
}

/// Connects to the cluster (its server must answer), then seals its credentials and registers it.
pub(crate) async fn add(
    vault: &Vault,
    clusters: &Clusters,
    name: &str,
    kubeconfig: Secret,
    context: Option<&str>,
    now: i64,
) -> Result<Arc<KubernetesRuntime>, String> {
    let (_, default) = clusters
        .all()
        .into_iter()
        .next()
        .ok_or_else(|| "the daemon has no cluster".to_owned())?;
    preview_kubernetes::inline_credentials_only(&kubeconfig)?;
    let cluster = Arc::new(default.another(config(&kubeconfig, context)).await?);
    cluster.reach().await?;
    let sealed = serde_json::to_string(&Sealed {
        kubeconfig: kubeconfig.expose().to_owned(),
        context: context.map(str::to_owned),
    })
    .map_err(|e| e.to_string())?;
    vault
        .set(PROJECT, SCOPE, name, &Secret::new(sealed), "withheld", now)
        .await?;
    clusters.register(name, Arc::clone(&cluster));
    Ok(cluster)
}

pub(crate) async fn remove(vault: &Vault, clusters: &Clusters, name: &str) -> Result<(), String> {
    vault.unset(PROJECT, SCOPE, name).await?;
    clusters.unregister(name);
    Ok(())
}

/// Opens every registered cluster; one that does not answer now is registered all the same, and one that cannot
/// be opened (its sealed credentials damaged, or no longer making a client) is known as unusable: its environments'
/// steps fail saying why, and nothing takes one of them for gone.
pub(crate) async fn load(vault: &Arc<Vault>, clusters: &Clusters) -> Result<(), String> {
    let (_, default) = clusters
        .all()
        .into_iter()
        .next()
        .ok_or_else(|| "the daemon has no cluster".to_owned())?;
    let address = EnvironmentAddress {
        project: PROJECT.to_owned(),
        environment: String::new(),
    };
    for (slot, version) in vault.versions(PROJECT).await? {
        let Some(name) = slot.strip_prefix("cluster/") else {
            continue;
        };
        let sealed = match vault.reveal(&address, &slot, &version).await {
            Ok(value) => serde_json::from_str::<Sealed>(value.expose())
                .map_err(|_| "its sealed credentials are damaged".to_owned()),
            Err(e) => Err(e.message),
        };
        let opened = match sealed {
            Ok(sealed) => {
                let kubeconfig = Secret::new(sealed.kubeconfig);
                default
                    .another(config(&kubeconfig, sealed.context.as_deref()))
                    .await
            }
            Err(e) => Err(e),
        };
        match opened {
            Ok(cluster) => {
                if let Err(e) = cluster.reach().await {
                    tracing::warn!("cluster `{name}` does not answer now: {e}");
                }
                tracing::info!("cluster `{name}`: {}", cluster.cluster_url());
                clusters.register(name, Arc::new(cluster));
            }
            Err(e) => {
                tracing::warn!("cluster `{name}` cannot be used: {e}");
                clusters.register_broken(name, &e);
            }
        }
    }
    Ok(())
}
