//! Which part of the API a path names: the version and health endpoints, discovery, the access review, or a resource
//! collection, object or subresource — `/api/v1/namespaces/{ns}/{plural}/{name}/{sub}`,
//! `/apis/{group}/{version}/…`, cluster-scoped and cluster-wide forms alike. A path naming nothing served (an unknown
//! kind, a custom kind without its CRD) is `NotFound`.

use super::catalog::{Catalog, ResourceType};

/// A resource path, resolved.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub resource: ResourceType,
    /// The namespace of a namespaced path; `None` for cluster-scoped kinds and cluster-wide lists.
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) enum Route {
    Version,
    Health,
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/api/v1`, `/apis/{group}/{version}`
    Resources {
        group: String,
        version: String,
    },
    AccessReview,
    Resource(Target),
    NotFound,
}

pub(crate) fn route(catalog: &Catalog, path: &str) -> Route {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["version"] => Route::Version,
        ["healthz" | "livez" | "readyz"] => Route::Health,
        ["api"] => Route::CoreVersions,
        ["apis"] => Route::Groups,
        ["api", "v1", rest @ ..] => resource_route(catalog, "", "v1", rest),
        ["apis", "authorization.k8s.io", "v1"] => Route::Resources {
            group: "authorization.k8s.io".to_owned(),
            version: "v1".to_owned(),
        },
        [
            "apis",
            "authorization.k8s.io",
            "v1",
            "selfsubjectaccessreviews",
        ] => Route::AccessReview,
        ["apis", group, version, rest @ ..] => resource_route(catalog, group, version, rest),
        _ => Route::NotFound,
    }
}

fn resource_route(catalog: &Catalog, group: &str, version: &str, rest: &[&str]) -> Route {
    if !catalog.serves_group_version(group, version) {
        return Route::NotFound;
    }
    let target =
        |plural: &str, namespace: Option<&str>, name: Option<&&str>, sub: Option<&&str>| {
            let resource = catalog.find(group, version, plural)?;
            if resource.namespaced != namespace.is_some() && (name.is_some() || namespace.is_some())
            {
                return None;
            }
            Some(Target {
                resource: resource.clone(),
                namespace: namespace.map(str::to_owned),
                name: name.map(|n| (*n).to_owned()),
                subresource: sub.map(|s| (*s).to_owned()),
            })
        };
    let found = match rest {
        [] => {
            return Route::Resources {
                group: group.to_owned(),
                version: version.to_owned(),
            };
        }
        // `/api/v1/namespaces/{ns}/{plural}[/{name}[/{sub}]]`, unless `{plural}` is a subresource of the namespace.
        ["namespaces", namespace, plural, more @ ..]
            if more.len() <= 2
                && catalog
                    .find(group, version, plural)
                    .is_some_and(|r| r.namespaced) =>
        {
            target(plural, Some(namespace), more.first(), more.get(1))
        }
        [plural, more @ ..] if more.len() <= 2 => target(plural, None, more.first(), more.get(1)),
        _ => None,
    };
    found
        .filter(|t| !t.name.as_deref().is_some_and(str::is_empty))
        .map_or(Route::NotFound, Route::Resource)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `resource namespace/name/subresource` (`-` for what is absent), or `404`.
    fn resolved(path: &str) -> String {
        let part = |p: Option<String>| p.unwrap_or_else(|| "-".to_owned());
        match route(&Catalog::new(), path) {
            Route::Resource(t) => format!(
                "{} {}/{}/{}",
                t.resource.resource(),
                part(t.namespace),
                part(t.name),
                part(t.subresource)
            ),
            _ => "404".to_owned(),
        }
    }

    #[test]
    fn paths() {
        let cases = [
            (
                "/apis/apps/v1/namespaces/a/deployments/web/status",
                "deployments.apps a/web/status",
            ),
            (
                "/apis/apps/v1/namespaces/a/deployments",
                "deployments.apps a/-/-",
            ),
            ("/api/v1/namespaces/a", "namespaces -/a/-"),
            ("/api/v1/namespaces/a/status", "namespaces -/a/status"),
            ("/api/v1/namespaces/a/pods/p/log", "pods a/p/log"),
            ("/api/v1/pods", "pods -/-/-"),
            ("/api/v1/pods/web", "404"),
            ("/apis/cert-manager.io/v1/namespaces/a/certificates", "404"),
            ("/apis/apps/v1/namespaces/a/widgets", "404"),
            ("/apis/apps/v2/deployments", "404"),
        ];
        for (path, expected) in cases {
            assert_eq!(resolved(path), expected, "{path}");
        }
    }
}
