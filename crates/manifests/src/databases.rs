//! A database of `mode: container`: a PostgreSQL StatefulSet of one pod with its volume, a headless Service by the
//! database's name and a Secret with its password. On a cluster, `mode: managed` — a server `preview` runs — is the
//! same: the server runs in the environment's namespace, one per environment. `mode: external` is not rendered yet.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, ExecAction, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSecurityContext, PodTemplateSpec, Probe, Secret,
    SecretKeySelector, Service, ServicePort, ServiceSpec, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use preview_plan::Resource;

use crate::labels::{labels, metadata, selector};
use crate::pods::{pod, restricted_container, service_name};
use crate::{Object, RenderError, Settings, Target};

/// The user id of `postgres` in the official images, which run as it when started as it.
const POSTGRES_UID: i64 = 999;

/// The name of a database's password in the resources (`database:db/password`).
pub fn password_name(service: &str) -> String {
    format!("database:{service}/password")
}

pub(crate) fn render(
    resource: &Resource,
    target: &Target,
    settings: &Settings,
    values: &crate::Values<'_>,
) -> Result<Vec<Object>, RenderError> {
    let content = &resource.content;
    if content["mode"] == "external" {
        return Err(RenderError::new(
            resource,
            "`mode: external` is not supported on Kubernetes yet; use `mode: container` (a server in the environment's namespace)",
        ));
    }
    if content["engine"] != "postgres" {
        return Err(RenderError::new(
            resource,
            format!("engine {} cannot run in a container yet", content["engine"]),
        ));
    }
    let service = service_name(resource);
    let identity = content["name"].as_str().unwrap_or(service);
    let version = content["version"].as_u64().unwrap_or(16);
    let password_secret = format!("{service}-password");
    let password = values.bytes(
        resource,
        &password_name(service),
        "the database's password is not at hand",
        |v| v.as_bytes().to_vec(),
    )?;
    let secret = Secret {
        metadata: metadata(target, &resource.id, &password_secret, service),
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([(
            "password".to_owned(),
            ByteString(password),
        )])),
        ..Secret::default()
    };
    let plain = |name: &str, value: &str| EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        ..EnvVar::default()
    };
    let pg_isready = Probe {
        exec: Some(ExecAction {
            command: Some(
                [
                    "pg_isready",
                    "-h",
                    "127.0.0.1",
                    "-U",
                    identity,
                    "-d",
                    identity,
                ]
                .map(str::to_owned)
                .to_vec(),
            ),
        }),
        period_seconds: Some(2),
        failure_threshold: Some(3),
        ..Probe::default()
    };
    let container = Container {
        name: "postgres".to_owned(),
        image: Some(format!("postgres:{version}")),
        env: Some(vec![
            plain("PGDATA", "/var/lib/postgresql/data/pgdata"),
            plain("POSTGRES_DB", identity),
            EnvVar {
                name: "POSTGRES_PASSWORD".to_owned(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: password_secret.clone(),
                        key: "password".to_owned(),
                        optional: Some(false),
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            },
            plain("POSTGRES_USER", identity),
            // Every login needs its password, loopback ones included: a port forward arrives on the pod's loopback.
            plain(
                "POSTGRES_INITDB_ARGS",
                "--auth-local=scram-sha-256 --auth-host=scram-sha-256",
            ),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("postgres".to_owned()),
            container_port: 5432,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(pg_isready),
        volume_mounts: Some(vec![VolumeMount {
            name: "data".to_owned(),
            mount_path: "/var/lib/postgresql/data".to_owned(),
            ..VolumeMount::default()
        }]),
        security_context: Some(restricted_container()),
        ..Container::default()
    };
    let mut pod_spec = pod(vec![container], None);
    if let Some(context) = pod_spec.security_context.as_mut() {
        *context = PodSecurityContext {
            run_as_user: Some(POSTGRES_UID),
            run_as_group: Some(POSTGRES_UID),
            fs_group: Some(POSTGRES_UID),
            ..context.clone()
        };
    }
    let statefulset = StatefulSet {
        metadata: metadata(target, &resource.id, service, service),
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(service.to_owned()),
            selector: LabelSelector {
                match_labels: Some(selector(target, service)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(target, service)),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec),
            },
            // The claims go with the StatefulSet, and carry the resource's marks so that the inventory finds them.
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Delete".to_owned()),
                    when_scaled: Some("Retain".to_owned()),
                },
            ),
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("data".to_owned()),
                    labels: Some(labels(target, service)),
                    annotations: Some(BTreeMap::from([(
                        crate::labels::RESOURCE.to_owned(),
                        resource.id.clone(),
                    )])),
                    ..ObjectMeta::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".to_owned(),
                            Quantity(settings.database_storage.clone()),
                        )])),
                        ..VolumeResourceRequirements::default()
                    }),
                    ..PersistentVolumeClaimSpec::default()
                }),
                ..PersistentVolumeClaim::default()
            }]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    };
    let headless = Service {
        metadata: metadata(target, &resource.id, service, service),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            selector: Some(selector(target, service)),
            ports: Some(vec![ServicePort {
                name: Some("postgres".to_owned()),
                port: 5432,
                target_port: Some(IntOrString::String("postgres".to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    Ok(vec![
        Object::typed(&secret, true),
        Object::typed(&statefulset, true),
        Object::typed(&headless, true),
    ])
}
