//! Reaching a cluster: a kubeconfig file and context, or the service account of the pod the daemon runs in; and
//! what the client's errors mean, said so that a person knows what to do.

use std::path::PathBuf;

use kube::config::{KubeConfigOptions, Kubeconfig};

/// Which cluster, and as whom.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterConfig {
    /// A kubeconfig file; `None`: `$KUBECONFIG`, `~/.kube/config`, or the pod's service account.
    pub kubeconfig: Option<PathBuf>,
    /// A kubeconfig's text (a registered cluster's, unsealed from the store), in place of a file.
    pub inline: Option<preview_secrets::Secret>,
    /// A context of that file; `None`: its current context.
    pub context: Option<String>,
}

/// A client of the cluster `config` names, and the API server's address. Nothing is sent yet.
pub async fn connect(config: &ClusterConfig) -> Result<(kube::Client, String), String> {
    let options = KubeConfigOptions {
        context: config.context.clone(),
        ..KubeConfigOptions::default()
    };
    // A kubeconfig from text (a registered cluster's) or a file, named as errors should name it.
    let file = match (&config.inline, &config.kubeconfig) {
        (Some(text), _) => Some((
            Kubeconfig::from_yaml(text.expose()).map_err(|e| {
                format!(
                    "the kubeconfig cannot be read: {}",
                    without_secrets(&e.to_string(), text)
                )
            })?,
            "the kubeconfig".to_owned(),
        )),
        (None, Some(path)) => Some((
            Kubeconfig::read_from(path)
                .map_err(|e| format!("cannot read the kubeconfig {}: {e}", path.display()))?,
            format!("the kubeconfig {}", path.display()),
        )),
        (None, None) => None,
    };
    let client_config = match file {
        Some((file, named)) => kube::Config::from_custom_kubeconfig(file, &options)
            .await
            .map_err(|e| {
                let e = match &config.inline {
                    Some(text) => without_secrets(&e.to_string(), text),
                    None => e.to_string(),
                };
                match &config.context {
                    Some(context) => format!("{named} has no usable context `{context}`: {e}"),
                    None => format!("{named} cannot be used: {e}"),
                }
            })?,
        None if config.context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| format!("no usable kubeconfig context: {e}"))?,
        None => kube::Config::infer()
            .await
            .map_err(|e| format!("no cluster configured (no kubeconfig, not in a pod): {e}"))?,
    };
    let mut client_config = client_config;
    // No request waits forever on a server that stopped answering: every wait of the runtime has a deadline of its
    // own, and these bound what lies under it.
    client_config.connect_timeout = Some(std::time::Duration::from_secs(10));
    client_config.read_timeout = Some(std::time::Duration::from_secs(30));
    client_config.write_timeout = Some(std::time::Duration::from_secs(30));
    let url = client_config.cluster_url.to_string();
    let client = kube::Client::try_from(client_config)
        .map_err(|e| format!("cannot make a client of the cluster at {url}: {e}"))?;
    Ok((client, url))
}

/// A parser's message about a kubeconfig may quote it: no line of the kubeconfig's own is repeated.
fn without_secrets(message: &str, kubeconfig: &preview_secrets::Secret) -> String {
    let quoted = kubeconfig
        .expose()
        .lines()
        .map(str::trim)
        .filter(|line| line.len() >= 8)
        .any(|line| message.contains(line));
    if quoted {
        "it is not a valid kubeconfig".to_owned()
    } else {
        message.to_owned()
    }
}

/// A registered cluster's kubeconfig carries its credentials inline: a path would be read on the daemon's machine
/// (and not be sealed), a command or auth plugin would run as the daemon.
pub fn inline_credentials_only(kubeconfig: &preview_secrets::Secret) -> Result<(), String> {
    let file = Kubeconfig::from_yaml(kubeconfig.expose())
        .map_err(|_| "the kubeconfig is not a valid kubeconfig".to_owned())?;
    for user in &file.auth_infos {
        let Some(auth) = &user.auth_info else {
            continue;
        };
        let refused = [
            (auth.exec.is_some(), "an `exec` command"),
            (auth.auth_provider.is_some(), "an `auth-provider`"),
            (auth.token_file.is_some(), "a `tokenFile`"),
            (
                auth.client_certificate.is_some(),
                "a `client-certificate` file",
            ),
            (auth.client_key.is_some(), "a `client-key` file"),
        ];
        if let Some((_, what)) = refused.iter().find(|(present, _)| *present) {
            return Err(format!(
                "user `{}` of the kubeconfig uses {what}; a registered cluster's credentials must be inline (`kubectl config view --flatten --minify` writes them so)",
                user.name
            ));
        }
    }
    for cluster in &file.clusters {
        if cluster
            .cluster
            .as_ref()
            .is_some_and(|c| c.certificate_authority.is_some())
        {
            return Err(format!(
                "cluster `{}` of the kubeconfig names a `certificate-authority` file; a registered cluster's must be inline (`certificate-authority-data`)",
                cluster.name
            ));
        }
    }
    Ok(())
}

/// What went wrong with a request about `what` (`Deployment shop-pr-1-x7k2p/web`), for a person: the API server's
/// own message for refusals (conflicts name the other field manager and the field), what to check otherwise.
pub(crate) fn explain(what: &str, error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => {
            let causes: Vec<String> = status
                .details
                .as_ref()
                .map(|d| {
                    d.causes
                        .iter()
                        .map(|c| match (c.field.is_empty(), c.message.is_empty()) {
                            (false, false) => format!("{}: {}", c.field, c.message),
                            (true, false) => c.message.clone(),
                            _ => c.reason.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            let message = if status.message.is_empty() {
                status.reason.clone()
            } else {
                status.message.clone()
            };
            let what_to_do = match status.code {
                401 => {
                    " (the cluster refused the credentials: they may have expired; renew them in the kubeconfig)"
                }
                403 if status.reason == "Forbidden" && !is_terminating(status) => {
                    " (the credentials may not do this: `preview cluster check` lists what they lack)"
                }
                409 if message.contains("conflict") => {
                    " (another field manager owns the field: remove its change, or let it own the object)"
                }
                _ => "",
            };
            let detail = if causes.is_empty() || message.contains(&causes.join("; ")) {
                String::new()
            } else {
                format!(" [{}]", causes.join("; "))
            };
            format!(
                "{what}: {} {}: {message}{detail}{what_to_do}",
                status.code, status.reason
            )
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => format!(
            "{what}: cannot reach the cluster: {error} (is the API server up and the kubeconfig's address right?)"
        ),
        other => format!("{what}: {other}"),
    }
}

/// The refusal of a write into a namespace being deleted.
pub(crate) fn is_terminating(status: &kube::core::Status) -> bool {
    status
        .details
        .as_ref()
        .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"))
        || status.message.contains("because it is being terminated")
}

/// Whether the error says the object (or its namespace) does not exist.
pub(crate) fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}
