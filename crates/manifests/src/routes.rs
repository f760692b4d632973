//! Routes and the certificate: an Ingress (or a Gateway API HTTPRoute) per public app, TLS from a cert-manager
//! Certificate or from a Secret the runtime issues from the local CA.
//!
//! Access protection of previews is rendered for ingress-nginx (basic authentication from a Secret in the
//! environment's namespace); a token check, or any protection behind a Gateway, is refused rather than left out.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use preview_plan::Resource;
use serde_json::{Value, json};

use crate::labels::{labels, metadata};
use crate::pods::{port_name, service_name};
use crate::{Certificates, Object, RenderError, RouteApi, Settings, Target, Values};

/// The TLS Secret of an environment's hostnames, whoever fills it.
pub(crate) const TLS_SECRET: &str = "tls";
/// Names under which the runtime hands a certificate from the local CA to [`crate::render`].
pub const TLS_CERTIFICATE: &str = "certificate:tls.crt";
pub const TLS_KEY: &str = "certificate:tls.key";

pub(crate) fn render_route(
    resource: &Resource,
    target: &Target,
    settings: &Settings,
    values: &Values<'_>,
) -> Result<Vec<Object>, RenderError> {
    let content = &resource.content;
    let service = content["service"]
        .as_str()
        .unwrap_or(service_name(resource));
    let hostnames: Vec<String> = content["hostnames"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h.as_str().map(str::to_owned))
        .collect();
    let port_number = content["port_number"].as_u64().unwrap_or(80);
    let port = port_name(content["port"].as_str().unwrap_or_default(), port_number);
    let name = service_name(resource);
    let access = &content["access"];
    match &settings.routes {
        RouteApi::Gateway {
            name: gateway,
            namespace,
        } => {
            if !access.is_null() {
                return Err(RenderError::new(
                    resource,
                    "access protection of previews behind a Gateway is not supported; use `routes: ingress` with ingress-nginx",
                ));
            }
            let mut meta = serde_json::to_value(metadata(target, &resource.id, name, service))
                .unwrap_or(Value::Null);
            meta.as_object_mut().map(|m| m.remove("creationTimestamp"));
            let body = json!({
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "HTTPRoute",
                "metadata": meta,
                "spec": {
                    "parentRefs": [{ "name": gateway, "namespace": namespace }],
                    "hostnames": hostnames,
                    "rules": [{ "backendRefs": [{ "name": service, "port": port_number }] }],
                },
            });
            Ok(vec![Object::custom(
                "gateway.networking.k8s.io/v1",
                "HTTPRoute",
                "httproutes",
                body,
            )])
        }
        RouteApi::Ingress { class } => {
            let mut objects = Vec::new();
            let mut meta = metadata(target, &resource.id, name, service);
            if let Some(user) = access["basic_auth"]["user"].as_str() {
                let secret_name = format!("{name}-access");
                let password_name = access["basic_auth"]["password"]["name"]
                    .as_str()
                    .unwrap_or_default();
                let line = values.bytes(
                    resource,
                    password_name,
                    &format!("the value of `{password_name}` is not at hand"),
                    |password| htpasswd_line(user, password).into_bytes(),
                )?;
                let secret = Secret {
                    metadata: metadata(target, &resource.id, &secret_name, service),
                    type_: Some("Opaque".to_owned()),
                    data: Some(BTreeMap::from([("auth".to_owned(), ByteString(line))])),
                    ..Secret::default()
                };
                objects.push(Object::typed(&secret, true));
                meta.annotations.get_or_insert_default().extend([
                    (
                        "nginx.ingress.kubernetes.io/auth-type".to_owned(),
                        "basic".to_owned(),
                    ),
                    (
                        "nginx.ingress.kubernetes.io/auth-secret".to_owned(),
                        secret_name,
                    ),
                    (
                        "nginx.ingress.kubernetes.io/auth-realm".to_owned(),
                        "preview".to_owned(),
                    ),
                ]);
            } else if !access.is_null() {
                return Err(RenderError::new(
                    resource,
                    "access by token is not supported on Kubernetes; use `access: { basic_auth: … }` with ingress-nginx",
                ));
            }
            let backend = IngressBackend {
                service: Some(IngressServiceBackend {
                    name: service.to_owned(),
                    port: Some(ServiceBackendPort {
                        name: Some(port),
                        ..ServiceBackendPort::default()
                    }),
                }),
                ..IngressBackend::default()
            };
            let ingress = Ingress {
                metadata: meta,
                spec: Some(IngressSpec {
                    ingress_class_name: class.clone(),
                    rules: Some(
                        hostnames
                            .iter()
                            .map(|host| IngressRule {
                                host: Some(host.clone()),
                                http: Some(HTTPIngressRuleValue {
                                    paths: vec![HTTPIngressPath {
                                        path: Some("/".to_owned()),
                                        path_type: "Prefix".to_owned(),
                                        backend: backend.clone(),
                                    }],
                                }),
                            })
                            .collect(),
                    ),
                    tls: Some(vec![IngressTLS {
                        hosts: Some(hostnames.clone()),
                        secret_name: Some(TLS_SECRET.to_owned()),
                    }]),
                    ..IngressSpec::default()
                }),
                ..Ingress::default()
            };
            objects.push(Object::typed(&ingress, true));
            Ok(objects)
        }
    }
}

/// `user:{SSHA}…`: a salted SHA-1 line nginx's basic authentication reads. The salt comes from the user and
/// password, so that rendering stays a function of its input.
fn htpasswd_line(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let salt_input = format!("preview-access\0{user}\0{password}");
    let digest = ring::digest::digest(&ring::digest::SHA256, salt_input.as_bytes());
    let salt = &digest.as_ref()[..8];
    let mut context = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    context.update(password.as_bytes());
    context.update(salt);
    let mut hashed = context.finish().as_ref().to_vec();
    hashed.extend_from_slice(salt);
    format!(
        "{user}:{{SSHA}}{}\n",
        base64::engine::general_purpose::STANDARD.encode(hashed)
    )
}

pub(crate) fn render_certificate(
    resource: &Resource,
    target: &Target,
    settings: &Settings,
    values: &Values<'_>,
) -> Result<Vec<Object>, RenderError> {
    let hostnames: Vec<&str> = resource.content["hostnames"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    match &settings.certificates {
        Certificates::CertManager {
            issuer,
            wildcard_issuer,
        } => {
            let wildcard = hostnames.iter().any(|h| h.starts_with("*."));
            let issuer = match (wildcard, wildcard_issuer) {
                (false, _) => issuer,
                (true, Some(issuer)) => issuer,
                (true, None) => {
                    return Err(RenderError::new(
                        resource,
                        "a wildcard hostname needs a DNS-01 issuer (the cluster's `wildcard_issuer`)",
                    ));
                }
            };
            let body = json!({
                "apiVersion": "cert-manager.io/v1",
                "kind": "Certificate",
                "metadata": {
                    "name": TLS_SECRET,
                    "namespace": target.namespace,
                    "labels": labels(target, "certificate"),
                    "annotations": { crate::labels::RESOURCE: resource.id },
                },
                "spec": {
                    "secretName": TLS_SECRET,
                    "dnsNames": hostnames,
                    "issuerRef": { "name": issuer, "kind": "ClusterIssuer", "group": "cert-manager.io" },
                },
            });
            Ok(vec![Object::custom(
                "cert-manager.io/v1",
                "Certificate",
                "certificates",
                body,
            )])
        }
        Certificates::LocalCa => {
            let value = |name: &str| {
                values.bytes(
                    resource,
                    name,
                    "the certificate from the local CA is not at hand",
                    |v| v.as_bytes().to_vec(),
                )
            };
            let secret = Secret {
                metadata: metadata(target, &resource.id, TLS_SECRET, "certificate"),
                type_: Some("kubernetes.io/tls".to_owned()),
                data: Some(BTreeMap::from([
                    ("tls.crt".to_owned(), ByteString(value(TLS_CERTIFICATE)?)),
                    ("tls.key".to_owned(), ByteString(value(TLS_KEY)?)),
                ])),
                ..Secret::default()
            };
            Ok(vec![Object::typed(&secret, true)])
        }
    }
}
