//! A job run: a Job whose name carries the run's content hash, for a Job's pod template cannot change — a new
//! command, image or variable is a new Job, and the old one leaves with the inventory.

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use preview_plan::Resource;

use crate::labels::{labels, metadata};
use crate::pods::{
    image, pod, resources, restricted_container, secrets_digest, service_name, variables,
};
use crate::{Object, RenderError, Target};

pub(crate) fn render(resource: &Resource, target: &Target) -> Result<Object, RenderError> {
    let service = service_name(resource);
    let content = &resource.content;
    let Some(command) = content["command"].as_str() else {
        return Err(RenderError::new(resource, "has no `command`"));
    };
    // Service names are at most 63 characters, like the Job's: the hash keeps 8 of them when it must be cut.
    let prefix: String = service.chars().take(54).collect();
    let name = format!("{}-{}", prefix.trim_end_matches('-'), &resource.hash[..8]);
    let container = Container {
        name: service.to_owned(),
        image: Some(image(resource)?),
        // `$(NAME)` in a command would be expanded by the kubelet before the shell sees it; `$$` keeps a `$`.
        command: Some(vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            command.replace('$', "$$"),
        ]),
        env: Some(variables(resource)),
        resources: resources(content),
        security_context: Some(restricted_container()),
        ..Container::default()
    };
    let job = Job {
        metadata: metadata(target, &resource.id, &name, service),
        spec: Some(JobSpec {
            // A job runs once: a failure fails the deployment, which says why, instead of being tried again.
            backoff_limit: Some(0),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(target, service)),
                    annotations: Some(secrets_digest(resource)),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod(vec![container], Some("Never"))),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    };
    Ok(Object::typed(&job, true))
}
