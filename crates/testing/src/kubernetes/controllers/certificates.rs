//! cert-manager, as far as a preview needs it: a Certificate is issued on the next tick — its Secret (`spec.secretName`,
//! type `kubernetes.io/tls`) made and its `Ready` condition `True` for its generation.

use base64::Engine;
use serde_json::{Value, json};

use super::{condition, create, is_deleting, set_status, text, with_times};
use crate::kubernetes::clock;
use crate::kubernetes::state::State;
use crate::kubernetes::store::Key;

const COMPONENT: &str = "cert-manager-certificates-issuing";

pub(super) fn reconcile(state: &mut State) {
    for key in state.store.keys("certificates.cert-manager.io", None) {
        let Some(certificate) = state.store.object(&key).cloned() else {
            continue;
        };
        let ready_now = certificate["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| {
                c["type"] == "Ready"
                    && c["status"] == "True"
                    && c["observedGeneration"] == certificate["metadata"]["generation"]
            });
        if !is_deleting(&certificate) && !ready_now {
            issue(state, &key, &certificate);
        }
    }
}

fn issue(state: &mut State, key: &Key, certificate: &Value) {
    let secret_name = text(certificate, "/spec/secretName");
    if !secret_name.is_empty()
        && state
            .store
            .get(&Key::new("secrets", Some(&key.namespace), secret_name))
            .is_none()
    {
        let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
        let pem =
            |label: &str| format!("-----BEGIN {label}-----\nZmFrZQ==\n-----END {label}-----\n");
        let secret = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {
                "name": secret_name,
                "namespace": key.namespace,
                "annotations": {
                    "cert-manager.io/certificate-name": key.name,
                    "cert-manager.io/common-name": certificate["spec"]["commonName"].as_str().unwrap_or_default(),
                    "cert-manager.io/issuer-name": text(certificate, "/spec/issuerRef/name"),
                    "cert-manager.io/issuer-kind": text(certificate, "/spec/issuerRef/kind"),
                },
            },
            "data": {
                "tls.crt": encode(&pem("CERTIFICATE")),
                "tls.key": encode(&pem("PRIVATE KEY")),
                "ca.crt": encode(&pem("CERTIFICATE")),
            },
        });
        create(state, "secrets", secret, COMPONENT);
    }
    let mut ready = condition(
        "Ready",
        true,
        "Ready",
        "Certificate is up to date and has not expired",
    );
    ready["observedGeneration"] = certificate["metadata"]["generation"].clone();
    let status = json!({
        "conditions": with_times(&certificate["status"]["conditions"], vec![ready], false),
        "notBefore": clock::now(),
        "notAfter": clock::days_from_now(90),
        "renewalTime": clock::days_from_now(60),
        "revision": certificate["status"]["revision"].as_i64().unwrap_or(0) + 1,
    });
    set_status(state, key, status, "cert-manager-certificates-readiness");
}
