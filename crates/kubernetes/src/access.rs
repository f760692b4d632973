//! Access protection of previews is rendered as ingress-nginx's authentication annotations, which any other
//! controller ignores: a protected route is applied only when the IngressClass it gets is ingress-nginx's, so that a
//! preview meant to be protected is never served open.

use kube::api::ListParams;
use preview_deploy::RuntimeError;
use preview_manifests::{RouteApi, Settings};
use preview_plan::Resource;

use crate::apply::api_of;
use crate::connect::{explain, is_not_found};

/// The controller name ingress-nginx's IngressClasses carry.
const INGRESS_NGINX: &str = "k8s.io/ingress-nginx";

/// The settings a route is rendered with: for a protected one, the IngressClass checked to be ingress-nginx's,
/// named in the Ingress so that no other default can take it over later.
pub(crate) async fn settings_for(
    client: &kube::Client,
    settings: &Settings,
    route: &Resource,
) -> Result<Settings, RuntimeError> {
    match check_protection(client, settings, route).await? {
        Some(class) => Ok(Settings {
            routes: RouteApi::Ingress { class: Some(class) },
            ..settings.clone()
        }),
        None => Ok(settings.clone()),
    }
}

/// The name of the ingress-nginx class a protected route gets; `None` when it is not protected (or behind a
/// Gateway, where rendering refuses protection by itself).
async fn check_protection(
    client: &kube::Client,
    settings: &Settings,
    route: &Resource,
) -> Result<Option<String>, RuntimeError> {
    if route.content["access"].is_null() {
        return Ok(None);
    }
    let RouteApi::Ingress { class } = &settings.routes else {
        return Ok(None);
    };
    let api = api_of(
        client,
        "networking.k8s.io/v1",
        "IngressClass",
        "ingressclasses",
        None,
    );
    let found = match class {
        Some(name) => match api.get_opt(name).await {
            Ok(found) => found,
            Err(e) if is_not_found(&e) => None,
            Err(e) => {
                return Err(RuntimeError::new(explain(
                    &format!("IngressClass {name}"),
                    &e,
                )));
            }
        },
        None => api
            .list(&ListParams::default())
            .await
            .map_err(|e| RuntimeError::new(explain("the cluster's IngressClasses", &e)))?
            .items
            .into_iter()
            .find(|c| {
                c.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("ingressclass.kubernetes.io/is-default-class"))
                    .is_some_and(|v| v == "true")
            }),
    };
    let which = class
        .as_deref()
        .map_or("the default IngressClass".to_owned(), |c| {
            format!("IngressClass `{c}`")
        });
    let Some(found) = found else {
        return Err(RuntimeError::new(format!(
            "{}: previews are protected (`access`), which needs ingress-nginx, and {which} does not exist; the preview is not deployed open",
            route.id
        )));
    };
    let controller = found.data["spec"]["controller"]
        .as_str()
        .unwrap_or_default();
    if controller != INGRESS_NGINX {
        return Err(RuntimeError::new(format!(
            "{}: previews are protected (`access`), which needs ingress-nginx, and {which} is served by `{controller}`, which ignores its authentication; the preview is not deployed open",
            route.id
        )));
    }
    Ok(found.metadata.name)
}
