//! The environment's Secret: every secret value it uses, and every variable whose value holds one, assembled.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use preview_plan::Resource;

use crate::labels::metadata;
use crate::{Object, RenderError, Target, Values};

/// The name of the environment's Secret.
pub(crate) const SECRET_NAME: &str = "environment";

/// The key of a secret (`project/API_KEY` → `secret.project.API_KEY`).
pub(crate) fn secret_key(name: &str) -> String {
    format!("secret.{}", name.replace([':', '/'], "."))
}

/// The key of a service's variable that holds a secret (`var.web.DATABASE_URL`).
pub(crate) fn variable_key(service: &str, variable: &str) -> String {
    format!("var.{service}.{variable}")
}

pub(crate) fn render(
    resource: &Resource,
    target: &Target,
    values: &Values<'_>,
) -> Result<Object, RenderError> {
    let value_of = |name: &str| {
        values.bytes(
            resource,
            name,
            &format!("the value of `{name}` is not at hand"),
            |v| v.as_bytes().to_vec(),
        )
    };
    let mut data = BTreeMap::new();
    for name in resource.content["names"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(n, _)| n)
    {
        data.insert(secret_key(name), ByteString(value_of(name)?));
    }
    for (service, variables) in resource.content["variables"]
        .as_object()
        .into_iter()
        .flatten()
    {
        for (variable, parts) in variables.as_object().into_iter().flatten() {
            let mut value = Vec::new();
            for part in parts.as_array().into_iter().flatten() {
                match (part["text"].as_str(), part["secret"].as_str()) {
                    (Some(text), _) => value.extend_from_slice(text.as_bytes()),
                    (None, Some(secret)) => value.extend(value_of(secret)?),
                    _ => {}
                }
            }
            data.insert(variable_key(service, variable), ByteString(value));
        }
    }
    let secret = Secret {
        metadata: metadata(target, &resource.id, SECRET_NAME, "secrets"),
        type_: Some("Opaque".to_owned()),
        data: Some(data),
        ..Secret::default()
    };
    Ok(Object::typed(&secret, true))
}
