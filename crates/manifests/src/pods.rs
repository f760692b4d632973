//! What every pod of an environment shares: the restricted security context, the environment's ServiceAccount,
//! variables as plain values or references into the environment's Secret, images with `{commit}` filled in.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, EnvVarSource, PodSecurityContext, PodSpec,
    ResourceRequirements, SeccompProfile, SecretKeySelector, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use preview_plan::Resource;
use serde_json::Value;

use crate::RenderError;
use crate::secrets::{SECRET_NAME, variable_key};
use crate::space::SERVICE_ACCOUNT;

/// The service name of a resource id (`app/web` → `web`).
pub(crate) fn service_name(resource: &Resource) -> &str {
    resource
        .id
        .split_once('/')
        .map_or(resource.id.as_str(), |(_, name)| name)
}

/// The image to run: `image` with `{commit}` replaced by the environment's commit.
pub(crate) fn image(resource: &Resource) -> Result<String, RenderError> {
    let Some(image) = resource.content["image"].as_str() else {
        return Err(RenderError::new(
            resource,
            "has no `image`: the Kubernetes runtime runs container images",
        ));
    };
    if !image.contains("{commit}") {
        return Ok(image.to_owned());
    }
    match resource.content["source"]["commit"].as_str() {
        Some(commit) => Ok(image.replace("{commit}", commit)),
        None => Err(RenderError::new(
            resource,
            format!("image `{image}` names `{{commit}}`, but the environment follows no commit"),
        )),
    }
}

/// The container's variables: plain ones as values, those holding a secret as references to the environment's
/// Secret, so that no secret value is written into a pod spec.
pub(crate) fn variables(resource: &Resource) -> Vec<EnvVar> {
    let service = service_name(resource);
    let content = &resource.content;
    let mut env: Vec<EnvVar> = content["variables"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, value)| {
            if content["with_secrets"].get(name).is_some() {
                EnvVar {
                    name: name.clone(),
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: SECRET_NAME.to_owned(),
                            key: variable_key(service, name),
                            optional: Some(false),
                        }),
                        ..EnvVarSource::default()
                    }),
                    ..EnvVar::default()
                }
            } else {
                EnvVar {
                    // `$(NAME)` in a value would be expanded by the kubelet; `$$` keeps a `$` as written.
                    value: Some(value.as_str().unwrap_or_default().replace('$', "$$")),
                    name: name.clone(),
                    ..EnvVar::default()
                }
            }
        })
        .collect();
    env.sort_by(|a, b| a.name.cmp(&b.name));
    env
}

/// A digest of what the pods read from the Secret — the secret versions and the text around them in each variable
/// that holds one — as a pod annotation: a change of either rolls the pods, which read the Secret only when they
/// start.
pub(crate) fn secrets_digest(resource: &Resource) -> BTreeMap<String, String> {
    let versions = format!(
        "{}{}",
        resource.content["secrets"], resource.content["with_secrets"]
    );
    let digest = ring::digest::digest(&ring::digest::SHA256, versions.as_bytes());
    let hex: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    BTreeMap::from([("preview.dev/secrets".to_owned(), hex)])
}

/// `resources:` as limits (requests follow them); nothing when unset, for the LimitRange's defaults.
pub(crate) fn resources(content: &Value) -> Option<ResourceRequirements> {
    let limits: BTreeMap<String, Quantity> = ["cpu", "memory"]
        .into_iter()
        .filter_map(|key| {
            let quantity = content["resources"][key]["quantity"].as_str()?;
            Some((key.to_owned(), Quantity(quantity.to_owned())))
        })
        .collect();
    (!limits.is_empty()).then(|| ResourceRequirements {
        limits: Some(limits),
        ..ResourceRequirements::default()
    })
}

/// The container security context Pod Security `restricted` asks for.
pub(crate) fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Capabilities::default()
        }),
        run_as_non_root: Some(true),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            ..SeccompProfile::default()
        }),
        ..SecurityContext::default()
    }
}

/// A pod running `containers` as the environment's ServiceAccount, without its token, non-root.
pub(crate) fn pod(containers: Vec<Container>, restart_policy: Option<&str>) -> PodSpec {
    PodSpec {
        containers,
        service_account_name: Some(SERVICE_ACCOUNT.to_owned()),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        restart_policy: restart_policy.map(str::to_owned),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        ..PodSpec::default()
    }
}

/// A port's name as Kubernetes accepts it (an IANA service name: at most 15 lowercase letters, digits and `-`,
/// with a letter): the spec's name when it is one, else `p` and the number.
pub(crate) fn port_name(name: &str, number: u64) -> String {
    let valid = !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().any(|b| b.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if valid {
        name.to_owned()
    } else {
        format!("p{number}")
    }
}
