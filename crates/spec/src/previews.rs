//! The preview policy: which environment previews clone, what they override, which pull requests get one, and
//! how long they live.

use std::collections::BTreeMap;

use crate::diagnostic::Sink;
use crate::limits::Totals;
use crate::model::{Access, Filter, Forge, ForgeKind, PreviewPolicy, SecretDeclaration};
use crate::read::{Fields, boolean, choice, duration, integer, list, text};
use crate::services::Names;
use crate::suggest::did_you_mean;
use crate::yaml::{Node, Value};

const KEYS: &[&str] = &[
    "blueprint",
    "overrides",
    "branches",
    "target_branches",
    "labels",
    "drafts",
    "paths",
    "ttl",
    "idle_stop",
    "max_live",
    "forge",
    "access",
    "limits",
    "spec",
    "cluster",
];

/// The name a preview's template environment carries; real previews are named `pr-<number>`.
pub(crate) const TEMPLATE_NAME: &str = "pr-{number}";

pub(crate) fn read_previews(
    node: &Node,
    environment_nodes: &BTreeMap<String, &Node>,
    base: &BTreeMap<String, &Node>,
    names: &Names<'_>,
    project_secrets: &[SecretDeclaration],
    totals: &Totals,
    sink: &mut Sink,
) -> Option<PreviewPolicy> {
    let fields = Fields::open(node, "the preview policy", KEYS, sink)?;
    let blueprint_node = fields.require(
        "blueprint",
        "the environment every preview is cloned from",
        sink,
    )?;
    let blueprint = text(blueprint_node, "an environment name", sink)?;
    let Some(blueprint_env) = environment_nodes.get(&blueprint) else {
        sink.push(
            blueprint_node.position,
            &blueprint_node.path,
            format!(
                "the blueprint `{blueprint}` is not a declared environment{}",
                did_you_mean(&blueprint, environment_nodes.keys().map(String::as_str))
            ),
        );
        return None;
    };
    let mut layers = vec![*blueprint_env];
    if let Some(overrides) = fields.get("overrides") {
        Fields::open(
            overrides,
            "preview overrides",
            &["variables", "services"],
            sink,
        )?;
        layers.push(overrides);
    }
    let origin = fields.get("overrides").unwrap_or(node).origin();
    let mut template = crate::environments::build_environment(
        TEMPLATE_NAME,
        origin,
        &layers,
        base,
        names,
        totals,
        sink,
    );
    // Previews may live on a cluster of their own; without one, on their blueprint's.
    if let Some(cluster) = fields
        .get("cluster")
        .and_then(|n| crate::environments::read_cluster(n, sink))
    {
        template.cluster = Some(cluster);
    }
    let max_live = fields
        .get("max_live")
        .and_then(|n| integer(n, "a number of previews", 1..=10_000, sink))
        .map(|n| n as u32);
    Some(PreviewPolicy {
        blueprint,
        template,
        branches: fields
            .get("branches")
            .map(|n| read_filter(n, sink))
            .unwrap_or_default(),
        target_branches: fields
            .get("target_branches")
            .map(|n| read_filter(n, sink))
            .unwrap_or_default(),
        labels: fields
            .get("labels")
            .map(|n| read_filter(n, sink))
            .unwrap_or_default(),
        drafts: fields
            .get("drafts")
            .and_then(|n| boolean(n, sink))
            .unwrap_or(false),
        paths: fields
            .get("paths")
            .map(|n| read_filter(n, sink))
            .unwrap_or_default(),
        ttl: fields
            .get("ttl")
            .and_then(|n| duration(n, "a time-to-live", sink)),
        idle_stop: fields
            .get("idle_stop")
            .and_then(|n| duration(n, "an idle time", sink)),
        max_live,
        spec_from_pull_request: fields
            .get("spec")
            .and_then(|n| {
                choice(
                    n,
                    "where previews take their spec from",
                    &["registered", "pull_request"],
                    sink,
                )
            })
            .is_some_and(|choice| choice == "pull_request"),
        forge: fields
            .get("forge")
            .and_then(|n| read_forge(n, project_secrets, sink)),
        access: fields
            .get("access")
            .and_then(|n| read_access(n, project_secrets, sink)),
    })
}

/// `{ token: SECRET }` or `{ basic_auth: { user: NAME, password: SECRET } }`.
fn read_access(
    node: &Node,
    project_secrets: &[SecretDeclaration],
    sink: &mut Sink,
) -> Option<Access> {
    let fields = Fields::open(node, "access protection", &["token", "basic_auth"], sink)?;
    match (fields.get("token"), fields.get("basic_auth")) {
        (Some(token), None) => Some(Access::Token {
            secret: declared_secret(token, project_secrets, sink)?,
        }),
        (None, Some(basic)) => {
            let basic = Fields::open(basic, "basic authentication", &["user", "password"], sink)?;
            let user = basic
                .require("user", "the user name reviewers type", sink)
                .and_then(|n| text(n, "a user name", sink));
            let password = basic
                .require("password", "the project secret holding the password", sink)
                .and_then(|n| declared_secret(n, project_secrets, sink));
            let user = user?;
            if user.is_empty() || user.contains(':') {
                sink.push(
                    node.position,
                    &node.path,
                    "basic_auth.user must be a non-empty name without `:`",
                );
                return None;
            }
            Some(Access::BasicAuth {
                user,
                secret: password?,
            })
        }
        _ => {
            sink.push(
                node.position,
                &node.path,
                "give exactly one of `token: SECRET` or `basic_auth: { user, password: SECRET }`",
            );
            None
        }
    }
}

/// The name of a declared project secret at `node`.
fn declared_secret(
    node: &Node,
    project_secrets: &[SecretDeclaration],
    sink: &mut Sink,
) -> Option<String> {
    let name = text(node, "a secret name", sink)?;
    if !project_secrets.iter().any(|s| s.name == name) {
        sink.push(
            node.position,
            &node.path,
            format!(
                "`{name}` is not a declared project secret{}; add it under the top-level `secrets:` and set it with `preview secret set {name} --scope project`",
                did_you_mean(&name, project_secrets.iter().map(|s| s.name.as_str()))
            ),
        );
        return None;
    }
    Some(name)
}

/// A list of glob patterns (all included), or `{ include: [...], exclude: [...] }`.
fn read_filter(node: &Node, sink: &mut Sink) -> Filter {
    let patterns = |node: &Node, sink: &mut Sink| -> Vec<String> {
        list(node, "glob patterns", sink)
            .iter()
            .filter_map(|item| text(item, "a glob pattern", sink))
            .collect()
    };
    if let Value::Map(_) = node.value {
        let Some(fields) = Fields::open(node, "a filter", &["include", "exclude"], sink) else {
            return Filter::default();
        };
        return Filter {
            include: fields
                .get("include")
                .map(|n| patterns(n, sink))
                .unwrap_or_default(),
            exclude: fields
                .get("exclude")
                .map(|n| patterns(n, sink))
                .unwrap_or_default(),
        };
    }
    Filter {
        include: patterns(node, sink),
        exclude: Vec::new(),
    }
}

fn read_forge(
    node: &Node,
    project_secrets: &[SecretDeclaration],
    sink: &mut Sink,
) -> Option<Forge> {
    let fields = Fields::open(
        node,
        "forge settings",
        &[
            "kind",
            "repository",
            "webhook_secret",
            "url",
            "api_url",
            "clone_url",
            "token",
            "resync",
        ],
        sink,
    )?;
    let kind = fields
        .require(
            "kind",
            "`github`, `gitlab`, `gitea`, `forgejo` or `local`",
            sink,
        )
        .and_then(|n| {
            choice(
                n,
                "a forge",
                &["github", "gitlab", "gitea", "forgejo", "local"],
                sink,
            )
        })
        .map(|kind| match kind {
            "github" => ForgeKind::Github,
            "gitlab" => ForgeKind::Gitlab,
            "gitea" => ForgeKind::Gitea,
            "forgejo" => ForgeKind::Forgejo,
            _ => ForgeKind::Local,
        });
    let repository_node = fields.require(
        "repository",
        "`owner/name` on the forge, or a path for `local`",
        sink,
    );
    let repository = repository_node.and_then(|n| text(n, "a repository", sink));
    let kind = kind?;
    let repository = repository?;
    if kind != ForgeKind::Local && !is_repository_name(&repository) {
        let n = repository_node?;
        sink.push(
            n.position,
            &n.path,
            format!("`{repository}` is not a repository; write `owner/name`"),
        );
        return None;
    }
    let webhook_secret = match (fields.get("webhook_secret"), kind) {
        (Some(n), _) => Some(declared_secret(n, project_secrets, sink)?),
        (None, ForgeKind::Local) => None,
        (None, _) => {
            sink.push(
                node.position,
                &node.path,
                "missing required key `webhook_secret` (the project secret that verifies webhook signatures)",
            );
            return None;
        }
    };
    let token = match fields.get("token") {
        Some(n) => Some(declared_secret(n, project_secrets, sink)?),
        None => None,
    };
    let url_of = |key: &str, sink: &mut Sink| -> Option<Option<String>> {
        let Some(n) = fields.get(key) else {
            return Some(None);
        };
        let url = text(n, "a URL", sink)?;
        let url = url.trim_end_matches('/').to_owned();
        let scheme_ok = url.starts_with("https://")
            || url.starts_with("http://")
            || (key == "clone_url" && (url.starts_with("file://") || url.starts_with("git://")));
        if !scheme_ok || url.chars().any(char::is_whitespace) {
            sink.push(
                n.position,
                &n.path,
                format!(
                    "`{url}` is not a URL; write it as `https://host…`{}",
                    if key == "clone_url" {
                        " (or `file://`, `git://`)"
                    } else {
                        ""
                    }
                ),
            );
            return None;
        }
        Some(Some(url))
    };
    let url = url_of("url", sink)?;
    let api_url = url_of("api_url", sink)?;
    let clone_url = url_of("clone_url", sink)?;
    if url.is_none() && matches!(kind, ForgeKind::Gitea | ForgeKind::Forgejo) {
        sink.push(
            node.position,
            &node.path,
            "missing required key `url` (where the Gitea or Forgejo server is, e.g. `https://git.example.com`)",
        );
        return None;
    }
    let resync = fields
        .get("resync")
        .and_then(|n| duration(n, "a resync interval", sink));
    Some(Forge {
        kind,
        repository,
        webhook_secret,
        url,
        api_url,
        clone_url,
        token,
        resync,
    })
}

fn is_repository_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    parts.len() >= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
}
