//! A job's output in the deployment's log: its pods' logs, with every secret value the job was given replaced by
//! `[secret]` — in the whole text before it is cut into lines, so that a value spanning lines is caught too, and
//! line by line for each line of such a value — and without terminal control sequences, which a pull request's
//! code could print to an operator's terminal.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, LogParams};
use preview_deploy::{EnvironmentAddress, StepLog};
use preview_manifests::Object;
use preview_plan::Resource;
use preview_secrets::Secret;

use crate::KubernetesRuntime;
use crate::diagnose::pods_of;

/// The lines of a job's output kept in the deployment's log.
const JOB_LOG_LINES: i64 = 200;

pub(crate) async fn copy_to_log(
    runtime: &KubernetesRuntime,
    env: &EnvironmentAddress,
    object: &Object,
    stored: &DynamicObject,
    resource: &Resource,
    values: &BTreeMap<String, Secret>,
    log: &StepLog,
) {
    let Some(namespace) = &object.namespace else {
        return;
    };
    let body = crate::runtime::body_of(stored);
    let mut secrets = crate::runtime::secret_texts(values);
    for (name, version) in resource.content["secrets"]
        .as_object()
        .into_iter()
        .flatten()
    {
        if let Ok(value) = runtime
            .secrets
            .reveal(env, name, version.as_str().unwrap_or("unset"))
            .await
        {
            secrets.push(value.expose().to_owned());
        }
    }
    let api: Api<Pod> = Api::namespaced(runtime.client.clone(), namespace);
    for pod in pods_of(&runtime.client, namespace, &body).await {
        let Some(name) = pod.metadata.name else {
            continue;
        };
        let params = LogParams {
            tail_lines: Some(JOB_LOG_LINES),
            ..LogParams::default()
        };
        if let Ok(text) = api.logs(&name, &params).await {
            for line in redact(&text, &secrets).lines() {
                log.line(format!("{name}: {line}"));
            }
        }
    }
}

/// `text` with every secret (at least 4 bytes long; shorter ones would blank out ordinary text) and each of its
/// lines replaced, and control characters but tabs dropped.
pub(crate) fn redact(text: &str, secrets: &[String]) -> String {
    let mut needles: Vec<&str> = Vec::new();
    for secret in secrets {
        needles.push(secret.as_str());
        needles.extend(secret.lines().map(str::trim).filter(|l| !l.is_empty()));
    }
    needles.retain(|n| n.len() >= 4);
    // The longest first: a value that contains another is replaced whole.
    needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
    let replaced = needles.iter().fold(text.to_owned(), |text, needle| {
        text.replace(needle, "[secret]")
    });
    replaced
        .chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn secrets_are_replaced_across_lines_and_control_characters_dropped() {
        let key = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG\n-----END KEY-----".to_owned();
        let text = format!("loaded {key}\nuser pw=hunter22 ok\n\u{1b}]0;owned\u{7}title\n");
        let out = redact(
            &text,
            &[key.clone(), "hunter22".to_owned(), "abc".to_owned()],
        );
        assert!(
            !out.contains("MIIEvQIBADANBgkqhkiG") && !out.contains("hunter22"),
            "{out}"
        );
        assert!(
            out.contains("loaded [secret]") && out.contains("pw=[secret] ok"),
            "{out}"
        );
        assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
        // Each line of a value printed apart from the others is caught too.
        let out = redact("line: MIIEvQIBADANBgkqhkiG\n", &[key]);
        assert_eq!(out, "line: [secret]\n");
        // Values shorter than four bytes are left: they would blank out ordinary words.
        assert_eq!(redact("abc", &["abc".to_owned()]), "abc");
    }
}
