//! The secret values a resource's objects are rendered with, fetched at the moment of apply by the versions the
//! resource names, so that applying it again (a rollback) writes exactly the values it had.

use std::collections::BTreeMap;

use preview_deploy::{EnvironmentAddress, RuntimeError, SecretSource};
use preview_plan::{Resource, ResourceKind};
use preview_secrets::Secret;

/// Every value `resource` needs, by the name it is rendered under.
pub(crate) async fn values_of(
    secrets: &dyn SecretSource,
    env: &EnvironmentAddress,
    resource: &Resource,
    issue_certificate: &crate::CertificateIssuer,
    local_ca: bool,
) -> Result<BTreeMap<String, Secret>, RuntimeError> {
    let content = &resource.content;
    let mut values = BTreeMap::new();
    match resource.kind {
        ResourceKind::Secrets => {
            for (name, version) in content["names"].as_object().into_iter().flatten() {
                let value = secrets
                    .reveal(env, name, version.as_str().unwrap_or("unset"))
                    .await?;
                values.insert(name.clone(), value);
            }
        }
        ResourceKind::Database if content["mode"] != "external" => {
            let service = resource.id.split_once('/').map_or("", |(_, s)| s);
            let name = preview_manifests::password_name(service);
            values.insert(name.clone(), secrets.reveal(env, &name, "derived").await?);
        }
        ResourceKind::Route => {
            let password = &content["access"]["basic_auth"]["password"];
            if let (Some(name), Some(version)) =
                (password["name"].as_str(), password["version"].as_str())
            {
                values.insert(name.to_owned(), secrets.reveal(env, name, version).await?);
            }
        }
        ResourceKind::Certificate if local_ca => {
            let hostnames: Vec<String> = content["hostnames"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|h| h.as_str().map(str::to_owned))
                .collect();
            let (chain, key) = issue_certificate(&hostnames).map_err(RuntimeError::new)?;
            values.insert(
                preview_manifests::TLS_CERTIFICATE.to_owned(),
                Secret::new(chain),
            );
            values.insert(preview_manifests::TLS_KEY.to_owned(), key);
        }
        _ => {}
    }
    Ok(values)
}
