//! The metadata every object carries: the recommended `app.kubernetes.io` labels and the project's own.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::Target;

pub(crate) const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub(crate) const NAME: &str = "app.kubernetes.io/name";
pub(crate) const INSTANCE: &str = "app.kubernetes.io/instance";
pub(crate) const PROJECT: &str = "preview.dev/project";
pub(crate) const ENVIRONMENT: &str = "preview.dev/environment";
/// The resource id (`app/web`) an object was rendered from: an annotation, for ids hold `/`.
pub(crate) const RESOURCE: &str = "preview.dev/resource";

/// Labels of an object of `name` (a service, or what the object is for) in `target`.
pub(crate) fn labels(target: &Target, name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.to_owned(), "preview".to_owned()),
        (NAME.to_owned(), name.to_owned()),
        (INSTANCE.to_owned(), target.namespace.clone()),
        (PROJECT.to_owned(), target.project.clone()),
        (ENVIRONMENT.to_owned(), target.environment.clone()),
    ])
}

/// What selects the pods of service `name`: the labels no other service's pods share.
pub(crate) fn selector(target: &Target, name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME.to_owned(), name.to_owned()),
        (INSTANCE.to_owned(), target.namespace.clone()),
    ])
}

/// Metadata of object `object_name`, rendered from resource `resource`, in the environment's namespace.
pub(crate) fn metadata(
    target: &Target,
    resource: &str,
    object_name: &str,
    name: &str,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(object_name.to_owned()),
        namespace: Some(target.namespace.clone()),
        labels: Some(labels(target, name)),
        annotations: Some(BTreeMap::from([(RESOURCE.to_owned(), resource.to_owned())])),
        ..ObjectMeta::default()
    }
}
