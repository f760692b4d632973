//! Hostnames: custom domains must be valid DNS names for every environment — including a preview of a
//! five-digit pull request — and none may be claimed by two services or environments. (Generated hostnames are
//! valid by construction: `DomainSettings::hostname_for` shortens a label that would be too long.)

use std::collections::BTreeMap;

use crate::diagnostic::Sink;
use crate::model::{DomainSettings, Environment, Origin, ServiceKind, fill_placeholders};
use crate::names::hostname_problem;
use crate::read::text;
use crate::yaml::Node;

const PLACEHOLDERS: &[&str] = &["{service}", "{env}", "{project}"];
/// The longest preview name the checks assume: pull request numbers up to five digits.
pub(crate) const LONGEST_PREVIEW: &str = "pr-99999";

/// Reads `domain.hostname`: only known placeholders, and both `{service}` and `{env}`, or hostnames collide.
pub(crate) fn read_hostname_template(node: &Node, sink: &mut Sink) -> Option<String> {
    let template = text(node, "a hostname template", sink)?;
    let mut rest = template.as_str();
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            sink.push(
                node.position,
                &node.path,
                format!("`{template}` has a `{{` that is not closed"),
            );
            return None;
        };
        let placeholder = &rest[open..open + close + 1];
        if !PLACEHOLDERS.contains(&placeholder) {
            sink.push(
                node.position,
                &node.path,
                format!("unknown placeholder `{placeholder}` in `{template}`; use `{{service}}`, `{{env}}` and `{{project}}`"),
            );
            return None;
        }
        rest = &rest[open + close + 1..];
    }
    for required in ["{service}", "{env}"] {
        if !template.contains(required) {
            sink.push(
                node.position,
                &node.path,
                format!("`{template}` lacks `{required}`, so hostnames of different services or environments would collide; the default is `{}`", DomainSettings::DEFAULT_HOSTNAME),
            );
            return None;
        }
    }
    let sample = fill_placeholders(&template, "project", "service", "env");
    if let Some(problem) = hostname_problem(&format!("{sample}.example.com")) {
        sink.push(
            node.position,
            &node.path,
            format!("`{template}` does not make valid hostnames: it {problem}"),
        );
        return None;
    }
    Some(template)
}

/// Checks generated hostnames and custom domains of the given environments; a preview (flag `true`) is checked
/// under the longest preview name.
pub(crate) struct RouteCheck<'a> {
    pub project: &'a str,
}

impl RouteCheck<'_> {
    pub(crate) fn check(&self, environments: &[(&Environment, bool)], sink: &mut Sink) {
        let mut claimed: BTreeMap<String, (String, String, String)> = BTreeMap::new();
        for (environment, is_preview) in environments {
            let env_name = if *is_preview {
                LONGEST_PREVIEW
            } else {
                environment.name.as_str()
            };
            for service in environment.services.values() {
                let ServiceKind::App(app) = &service.kind else {
                    continue;
                };
                if !app.public {
                    continue;
                }
                // Generated hostnames need no check: `hostname_for` shortens a label that would be too long.
                for domain in &app.domains {
                    self.check_domain(
                        &domain.name,
                        &domain.origin,
                        &service.name,
                        env_name,
                        *is_preview,
                        &mut claimed,
                        sink,
                    );
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn check_domain(
        &self,
        domain: &str,
        origin: &Origin,
        service: &str,
        env_name: &str,
        is_preview: bool,
        claimed: &mut BTreeMap<String, (String, String, String)>,
        sink: &mut Sink,
    ) {
        if is_preview && !domain.contains("{env}") {
            sink.push(
                origin.position,
                &origin.path,
                format!("every preview would claim `{domain}`; put `{{env}}` in it (e.g. `{{env}}.{domain}`) or set domains for previews in `previews.overrides`"),
            );
            return;
        }
        let host = fill_placeholders(domain, self.project, service, env_name);
        if let Some(problem) = hostname_problem(&host) {
            sink.push(
                origin.position,
                &origin.path,
                format!("`{domain}` becomes `{host}`, which {problem}"),
            );
            return;
        }
        let owner = (env_name.to_owned(), service.to_owned(), origin.path.clone());
        match claimed.get(&host) {
            Some((env, svc, path)) if env != env_name || svc != service => sink.push(
                origin.position,
                &origin.path,
                format!(
                    "`{host}` would route to `{service}` in `{env_name}` and to `{svc}` in `{env}` (declared at {path}); \
                     a domain belongs to one service of one environment: declare it in that environment's overrides, or put `{{env}}` in it"
                ),
            ),
            Some(_) => {}
            None => {
                claimed.insert(host, owner);
            }
        }
    }
}
