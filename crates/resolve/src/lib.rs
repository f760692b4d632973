//! Spec + one environment → a [`ResolvedEnvironment`]: every service with the variables and secrets it runs with
//! and the hostnames that lead to it.
//!
//! Variables are layered from least to most specific — project, environment, service, service in the
//! environment — and the most specific definition wins. This crate does no I/O and knows nothing of plans,
//! stores or runtimes.

use std::collections::{BTreeMap, BTreeSet};

use preview_spec::{
    DomainSettings, Environment, Isolation, RuntimeKind, ServiceKind, Spec, VariableValue,
    Variables,
};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResolvedEnvironment {
    pub project: String,
    pub name: String,
    pub isolation: Isolation,
    pub runtime: RuntimeKind,
    pub domain: DomainSettings,
    pub services: BTreeMap<String, ResolvedService>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResolvedService {
    pub name: String,
    pub kind: ServiceKind,
    pub depends_on: Vec<String>,
    /// The winning definition of each variable visible to the service.
    pub variables: BTreeMap<String, VariableValue>,
    /// Names of the secrets the service receives; values never pass through this crate.
    pub secrets: BTreeSet<String>,
    /// Public hostnames (generated first, then custom domains), empty for internal services.
    pub hostnames: Vec<String>,
}

/// Resolves `environment` (a declared environment of `spec`, or a clone built by `preview_spec`).
pub fn resolve_environment(spec: &Spec, environment: &Environment) -> ResolvedEnvironment {
    let services = environment
        .services
        .values()
        .map(|service| {
            let scopes: [Option<&Variables>; 4] = [
                Some(&spec.variables),
                Some(&environment.variables),
                Some(&service.variables),
                environment.service_variables.get(&service.name),
            ];
            let variables = scopes
                .into_iter()
                .flatten()
                .flat_map(|scope| {
                    scope
                        .iter()
                        .map(|(name, v)| (name.clone(), v.value.clone()))
                })
                .collect();
            let secrets = spec
                .secrets
                .iter()
                .chain(&environment.secrets)
                .chain(&service.secrets)
                .map(|s| s.name.clone())
                .collect();
            let resolved = ResolvedService {
                name: service.name.clone(),
                kind: service.kind.clone(),
                depends_on: service
                    .depends_on
                    .iter()
                    .map(|d| d.service.clone())
                    .collect(),
                variables,
                secrets,
                hostnames: hostnames(spec, &environment.name, service),
            };
            (service.name.clone(), resolved)
        })
        .collect();
    ResolvedEnvironment {
        project: spec.project.clone(),
        name: environment.name.clone(),
        isolation: spec.isolation,
        runtime: spec.runtime,
        domain: spec.domain.clone(),
        services,
    }
}

fn hostnames(spec: &Spec, environment: &str, service: &preview_spec::Service) -> Vec<String> {
    let ServiceKind::App(app) = &service.kind else {
        return Vec::new();
    };
    if !app.public {
        return Vec::new();
    }
    let generated = spec
        .domain
        .hostname_for(&spec.project, &service.name, environment);
    let custom = app.domains.iter().map(|d| {
        preview_spec::fill_placeholders(&d.name, &spec.project, &service.name, environment)
    });
    std::iter::once(generated).chain(custom).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../examples/shop/preview.yaml");

    #[test]
    fn the_most_specific_scope_wins() {
        let spec = preview_spec::parse_spec("shop.yaml", EXAMPLE).expect("example is valid");
        let (_, preview) = preview_spec::clone_environment("shop.yaml", EXAMPLE, "staging", "pr-7")
            .expect("clone");
        let resolved = resolve_environment(&spec, &preview);
        let storefront = &resolved.services["storefront"];
        let text = |name: &str| match &storefront.variables[name] {
            VariableValue::Text(text) => text.clone(),
            VariableValue::Alias(target) => format!("alias of {target}"),
        };
        assert_eq!(text("SHOP_MODE"), "preview", "environment over project");
        assert_eq!(
            text("LOG_LEVEL"),
            "debug",
            "service-in-environment over project"
        );
        assert_eq!(text("CATALOG_URL"), "${{ services.catalog.url }}");
        assert!(
            storefront.secrets.contains("SESSION_KEY")
                && storefront.secrets.contains("MASKING_KEY")
        );
        assert_eq!(storefront.hostnames[0], "storefront-pr-7.shop.localhost");
        assert_eq!(storefront.hostnames[1], "pr-7.preview.example.test");
        assert!(resolved.services["catalog"].hostnames.is_empty());
    }
}
