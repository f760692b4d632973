//! Reading one service (app, database or job) from its mapping, with the references it makes checked against
//! the names the spec declares.

use std::collections::BTreeMap;

use crate::diagnostic::{Position, Sink};
use crate::limits::{Totals, read_resources};
use crate::model::{
    App, Database, DatabaseMode, DatabaseVersion, Dependency, Domain, Engine, HealthCheck, Hook,
    Job, Persistence, Port, Probe, RuntimeKind, Service, ServiceKind,
};
use crate::names::hostname_problem;
use crate::read::{Fields, boolean, choice, duration, integer, list, string, text};
use crate::suggest::did_you_mean;
use crate::variables::{read_secrets, read_variables};
use crate::yaml::{Node, Value};

pub(crate) const APP_KEYS: &[&str] = &[
    "type",
    "build",
    "run",
    "image",
    "ports",
    "health",
    "replicas",
    "resources",
    "public",
    "domains",
    "depends_on",
    "variables",
    "secrets",
];
pub(crate) const DATABASE_KEYS: &[&str] = &[
    "type",
    "engine",
    "version",
    "mode",
    "admin_url",
    "clone",
    "masking",
    "persistence",
    "depends_on",
    "variables",
    "secrets",
];
pub(crate) const JOB_KEYS: &[&str] = &[
    "type",
    "hook",
    "command",
    "image",
    "depends_on",
    "variables",
    "secrets",
];

pub(crate) const SUPPORTED_POSTGRES: std::ops::RangeInclusive<i64> = 13..=18;
pub(crate) const SUPPORTED_REDIS: std::ops::RangeInclusive<i64> = 7..=8;
/// The MariaDB release series (its long-term ones) that serve `engine: mysql`.
pub(crate) const SUPPORTED_MARIADB: &[(u16, u16)] = &[(10, 6), (10, 11), (11, 4), (11, 8)];

/// A MariaDB release series, `10.11`, read as written (YAML would read `10.10` as the number 10.1).
fn mariadb_series(node: &Node, sink: &mut Sink) -> Option<DatabaseVersion> {
    let listed = SUPPORTED_MARIADB
        .iter()
        .map(|(major, minor)| format!("`{major}.{minor}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let text = match &node.value {
        Value::Scalar { text, .. } if !node.is_null() => text.trim().to_owned(),
        _ => {
            sink.push(
                node.position,
                &node.path,
                format!(
                    "expected a MariaDB release series ({listed}), found {}",
                    node.kind_name()
                ),
            );
            return None;
        }
    };
    let parsed = text
        .split_once('.')
        .and_then(|(major, minor)| Some((major.parse::<u16>().ok()?, minor.parse::<u16>().ok()?)));
    if let Some((major, minor)) = parsed
        && SUPPORTED_MARIADB.contains(&(major, minor))
    {
        return Some(DatabaseVersion::Series(major, minor));
    }
    let why = match parsed {
        Some((5, _) | (8, _) | (9, _)) => format!(
            "`{text}` is a MySQL version; `engine: mysql` is served by MariaDB (MySQL-compatible), so name a MariaDB release series"
        ),
        _ => format!("`{text}` is not a supported MariaDB release series"),
    };
    sink.push(node.position, &node.path, format!("{why}: {listed}"));
    None
}

/// What the rest of the spec declares, for checking references while a service is read.
pub(crate) struct Names<'a> {
    /// Service name → kind (`app`, `database`, `job`).
    pub services: &'a BTreeMap<String, &'static str>,
    /// Job name → the hook it declares, as written.
    pub job_hooks: &'a BTreeMap<String, String>,
    pub environments: &'a [String],
    pub runtime: RuntimeKind,
    /// The environment being read, if any: the base services belong to none.
    pub current: Option<&'a str>,
    /// The effective totals of the environment being read, which no app alone may exceed.
    pub totals: Option<&'a Totals>,
}

impl Names<'_> {
    /// Reports `name` if it is not a declared service, suggesting the closest one.
    pub(crate) fn check_service(&self, name: &str, node: &Node, sink: &mut Sink) -> bool {
        self.check_service_at(name, node.position, &node.path, sink)
    }

    pub(crate) fn check_service_at(
        &self,
        name: &str,
        position: Position,
        path: &str,
        sink: &mut Sink,
    ) -> bool {
        if self.services.contains_key(name) {
            return true;
        }
        sink.push(
            position,
            path,
            format!(
                "unknown service `{name}`{}",
                did_you_mean(name, self.services.keys().map(String::as_str))
            ),
        );
        false
    }
}

/// The kind a service declares with `type:` (default `app`), read without reporting anything.
pub(crate) fn declared_kind(node: &Node) -> &'static str {
    match node.get("type").map(|t| &t.value) {
        Some(Value::Scalar { text, .. }) if text == "database" => "database",
        Some(Value::Scalar { text, .. }) if text == "job" => "job",
        _ => "app",
    }
}

pub(crate) fn keys_of(kind: &str) -> &'static [&'static str] {
    match kind {
        "database" => DATABASE_KEYS,
        "job" => JOB_KEYS,
        _ => APP_KEYS,
    }
}

pub(crate) fn read_service(
    name: &str,
    node: &Node,
    names: &Names<'_>,
    sink: &mut Sink,
) -> Option<Service> {
    let kind = match node.get("type") {
        Some(type_node) => choice(
            type_node,
            "a service type",
            &["app", "database", "job"],
            sink,
        )?,
        None => "app",
    };
    let what = match (kind, node.get("type")) {
        ("app", None) => format!(
            "service `{name}` (an app; add `type: database` or `type: job` for other kinds)"
        ),
        _ => format!("{kind} `{name}`"),
    };
    let fields = Fields::open(node, &what, keys_of(kind), sink)?;
    let scope = format!("service:{name}");
    let depends_on = fields
        .get("depends_on")
        .map(|deps| read_dependencies(name, deps, names, sink))
        .unwrap_or_default();
    let variables = fields
        .get("variables")
        .map(|v| read_variables(v, &scope, sink))
        .unwrap_or_default();
    let secrets = fields
        .get("secrets")
        .map(|s| read_secrets(s, &scope, sink))
        .unwrap_or_default();
    let kind = match kind {
        "database" => ServiceKind::Database(read_database(&fields, names, sink)?),
        "job" => ServiceKind::Job(read_job(&fields, names, sink)?),
        _ => ServiceKind::App(read_app(&fields, names, sink)?),
    };
    Some(Service {
        name: name.to_owned(),
        kind,
        depends_on,
        variables,
        secrets,
        origin: node.origin(),
    })
}

fn read_dependencies(
    name: &str,
    node: &Node,
    names: &Names<'_>,
    sink: &mut Sink,
) -> Vec<Dependency> {
    let mut dependencies: Vec<Dependency> = Vec::new();
    for item in list(node, "service names", sink) {
        let Some(target) = text(item, "a service name", sink) else {
            continue;
        };
        if target == name {
            sink.push(
                item.position,
                &item.path,
                format!("`{name}` depends on itself; remove it from `depends_on`"),
            );
            continue;
        }
        if dependencies.iter().any(|d| d.service == target) {
            sink.push(
                item.position,
                &item.path,
                format!("`{target}` is listed twice"),
            );
            continue;
        }
        if names.check_service(&target, item, sink) {
            dependencies.push(Dependency {
                service: target,
                origin: item.origin(),
            });
        }
    }
    dependencies
}

fn read_app(fields: &Fields<'_>, names: &Names<'_>, sink: &mut Sink) -> Option<App> {
    let build = fields
        .get("build")
        .and_then(|n| text(n, "a build command", sink));
    let run = match names.runtime {
        RuntimeKind::Local => fields.require(
            "run",
            "the command that starts the app on the local runtime",
            sink,
        ),
        RuntimeKind::Kubernetes => fields.get("run"),
    }
    .and_then(|n| text(n, "a command", sink));
    let image = match names.runtime {
        RuntimeKind::Kubernetes => fields.require(
            "image",
            "the container image the Kubernetes runtime runs",
            sink,
        ),
        RuntimeKind::Local => fields.get("image"),
    }
    .and_then(|n| text(n, "an image reference", sink));
    let ports = fields
        .get("ports")
        .map(|n| read_ports(n, sink))
        .unwrap_or_default();
    let health = fields
        .get("health")
        .and_then(|n| read_health(n, &ports, sink));
    let replicas = match fields.get("replicas") {
        Some(n) => integer(n, "a replica count", 1..=100, sink).map(|r| r as u32),
        None => Some(1),
    };
    let resources = fields
        .get("resources")
        .map(|n| {
            let resources = read_resources(n, "resources", sink);
            if let (Some(environment), Some(totals)) = (names.current, names.totals) {
                totals.check_app(environment, n, &resources, sink);
            }
            resources
        })
        .unwrap_or_default();
    let public = fields
        .get("public")
        .and_then(|n| boolean(n, sink))
        .unwrap_or(false);
    if public && ports.is_empty() && fields.get("ports").is_none() {
        sink.push(
            fields.node.position,
            &fields.node.path,
            "a public app needs `ports`: its routes lead to the first port",
        );
    }
    let domains = match fields.get("domains") {
        Some(n) => {
            if !public {
                sink.push(
                    n.position,
                    &n.path,
                    "custom domains route to a public app; set `public: true` on this service or remove `domains`",
                );
            }
            read_domains(n, sink)
        }
        None => Vec::new(),
    };
    Some(App {
        build,
        run,
        image,
        ports,
        health,
        replicas: replicas?,
        resources,
        public,
        domains,
    })
}

fn read_ports(node: &Node, sink: &mut Sink) -> Vec<Port> {
    let mut ports: Vec<Port> = Vec::new();
    for item in list(node, "ports", sink) {
        let port = match &item.value {
            Value::Map(_) => {
                let Some(fields) = Fields::open(item, "a port", &["name", "port"], sink) else {
                    continue;
                };
                let name = fields
                    .require(
                        "name",
                        "how routes and health checks refer to the port",
                        sink,
                    )
                    .and_then(|n| read_port_name(n, sink));
                let number = fields
                    .require("port", "the number the app listens on", sink)
                    .and_then(|n| integer(n, "a port", 1..=65535, sink));
                match (name, number) {
                    (Some(name), Some(number)) => (name, number as u16),
                    _ => continue,
                }
            }
            _ => match integer(item, "a port", 1..=65535, sink) {
                Some(number) => (number.to_string(), number as u16),
                None => continue,
            },
        };
        let (name, number) = port;
        if let Some(first) = ports.iter().find(|p| p.number == number) {
            sink.push(
                item.position,
                &item.path,
                format!(
                    "port {number} is already declared at {}; each port may appear once",
                    first.origin.path
                ),
            );
            continue;
        }
        if let Some(first) = ports.iter().find(|p| p.name == name) {
            sink.push(
                item.position,
                &item.path,
                format!(
                    "port name `{name}` is already used at {}; give each port its own name",
                    first.origin.path
                ),
            );
            continue;
        }
        ports.push(Port {
            name,
            number,
            origin: item.origin(),
        });
    }
    ports
}

fn read_port_name(node: &Node, sink: &mut Sink) -> Option<String> {
    let name = text(node, "a port name", sink)?;
    if name.len() > 15
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        sink.push(
            node.position,
            &node.path,
            format!("`{name}` is not a port name; use at most 15 lowercase letters, digits and `-` (e.g. `http`)"),
        );
        return None;
    }
    Some(name)
}

fn read_health(node: &Node, ports: &[Port], sink: &mut Sink) -> Option<HealthCheck> {
    let fields = Fields::open(
        node,
        "a health check",
        &[
            "http",
            "tcp",
            "port",
            "interval",
            "timeout",
            "start_timeout",
            "failures",
        ],
        sink,
    )?;
    let probe = match (fields.get("http"), fields.get("tcp")) {
        (Some(path_node), None) => {
            let path = text(path_node, "an HTTP path", sink)?;
            if !path.starts_with('/') {
                sink.push(
                    path_node.position,
                    &path_node.path,
                    format!("`{path}` is not an HTTP path; start it with `/`"),
                );
                return None;
            }
            Probe::Http(path)
        }
        (None, Some(tcp_node)) => {
            if !boolean(tcp_node, sink)? {
                sink.push(
                    tcp_node.position,
                    &tcp_node.path,
                    "`tcp: false` checks nothing; use `tcp: true` or `http: /path`",
                );
                return None;
            }
            Probe::Tcp
        }
        (Some(_), Some(_)) => {
            sink.push(
                node.position,
                &node.path,
                "a health check is either `http: /path` or `tcp: true`, not both",
            );
            return None;
        }
        (None, None) => {
            sink.push(
                node.position,
                &node.path,
                "a health check needs `http: /path` or `tcp: true`",
            );
            return None;
        }
    };
    let port = match fields.get("port") {
        Some(port_node) => {
            let port = string(port_node, "a port name", sink)?;
            if !ports.iter().any(|p| p.name == port) {
                let known = ports.iter().map(|p| p.name.as_str());
                sink.push(
                    port_node.position,
                    &port_node.path,
                    format!("unknown port `{port}`{}", did_you_mean(&port, known)),
                );
                return None;
            }
            port
        }
        None => match ports.first() {
            Some(first) => first.name.clone(),
            None => {
                sink.push(
                    node.position,
                    &node.path,
                    "a health check needs a port to probe; declare `ports`",
                );
                return None;
            }
        },
    };
    let interval = fields
        .get("interval")
        .map_or(Some(std::time::Duration::from_secs(2)), |n| {
            duration(n, "an interval", sink)
        });
    let timeout = fields
        .get("timeout")
        .map_or(Some(std::time::Duration::from_secs(1)), |n| {
            duration(n, "a timeout", sink)
        });
    let start_timeout = match fields.get("start_timeout") {
        Some(n) => Some(duration(n, "a start timeout", sink)?),
        None => None,
    };
    let failures = match fields.get("failures") {
        Some(n) => integer(n, "a number of failed checks", 1..=100, sink)? as u32,
        None => 3,
    };
    Some(HealthCheck {
        probe,
        port,
        interval: interval?,
        timeout: timeout?,
        start_timeout,
        failures,
    })
}

fn read_domains(node: &Node, sink: &mut Sink) -> Vec<Domain> {
    let mut domains: Vec<Domain> = Vec::new();
    for item in list(node, "domains", sink) {
        let Some(name) = text(item, "a domain", sink) else {
            continue;
        };
        let sample = crate::model::fill_placeholders(&name, "project", "service", "env");
        if let Some(problem) = hostname_problem(&sample) {
            sink.push(
                item.position,
                &item.path,
                format!("`{name}` is not a domain: it {problem}"),
            );
            continue;
        }
        if domains.iter().any(|d| d.name == name) {
            sink.push(
                item.position,
                &item.path,
                format!("domain `{name}` is listed twice"),
            );
            continue;
        }
        domains.push(Domain {
            name,
            origin: item.origin(),
        });
    }
    domains
}

fn read_database(fields: &Fields<'_>, names: &Names<'_>, sink: &mut Sink) -> Option<Database> {
    let engine = fields
        .require(
            "engine",
            "the database engine, `postgres`, `mysql` or `redis`",
            sink,
        )
        .and_then(|n| {
            choice(
                n,
                "a database engine",
                &["postgres", "mysql", "redis"],
                sink,
            )
        })
        .map(|engine| match engine {
            "redis" => Engine::Redis,
            "mysql" => Engine::Mysql,
            _ => Engine::Postgres,
        });
    let version = match engine {
        Some(Engine::Mysql) => fields
            .require(
                "version",
                "the MariaDB release series that serves it, e.g. `10.11`",
                sink,
            )
            .and_then(|n| mariadb_series(n, sink)),
        Some(engine) => {
            let (example, what, supported) = match engine {
                Engine::Redis => (
                    "the major version, e.g. `7`",
                    "a supported Redis version",
                    SUPPORTED_REDIS,
                ),
                _ => (
                    "the major version, e.g. `16`",
                    "a supported PostgreSQL version",
                    SUPPORTED_POSTGRES,
                ),
            };
            fields
                .require("version", example, sink)
                .and_then(|n| integer(n, what, supported, sink))
                .map(|v| DatabaseVersion::Major(v as u16))
        }
        None => None,
    };
    let mode = match fields.get("mode") {
        Some(n) => choice(
            n,
            "a database mode",
            &["container", "managed", "external"],
            sink,
        )
        .and_then(|m| match m {
            "external" if engine == Some(Engine::Redis) => {
                sink.push(
                    n.position,
                    &n.path,
                    "a Redis database always runs on a server of its own per environment, run by preview; `mode: external` is for PostgreSQL",
                );
                None
            }
            "container" => Some(DatabaseMode::Container),
            "external" => Some(DatabaseMode::External),
            _ => Some(DatabaseMode::Managed),
        }),
        None => Some(DatabaseMode::Managed),
    };
    let admin_url = match (mode, fields.get("admin_url")) {
        (Some(DatabaseMode::External), Some(n)) => text(n, "a project secret's name", sink),
        (Some(DatabaseMode::External), None) => {
            fields.require(
                "admin_url",
                match engine {
                    Some(Engine::Mysql) => "the project secret holding the external server's admin URL (mysql://user:password@host:port/)",
                    _ => "the project secret holding the external server's admin URL (postgres://user:password@host:port/postgres)",
                },
                sink,
            );
            None
        }
        (_, Some(n)) => {
            sink.push(
                n.position,
                &n.path,
                "`admin_url` is only used with `mode: external`",
            );
            None
        }
        (_, None) => None,
    };
    let clone = match fields.get("clone") {
        Some(n) => crate::databases::read_clone_policy(n, names, sink),
        None => Some(crate::model::ClonePolicy::Empty),
    };
    let masking = match (engine, fields.get("masking")) {
        (Some(Engine::Redis), Some(n)) => {
            sink.push(
                n.position,
                &n.path,
                "Redis values are opaque to preview, so they cannot be masked; copy the data as it is (`policy: clone`), or seed previews from a file",
            );
            None
        }
        (_, n) => n.and_then(|n| crate::databases::read_masking(n, sink)),
    };
    if engine == Some(Engine::Redis)
        && let Some(crate::model::ClonePolicy::Masked { .. }) = &clone
        && let Some(n) = fields.get("clone")
    {
        sink.push(
            n.position,
            &n.path,
            "`policy: masked` is not available for Redis: its values are opaque to preview, so nothing in them could be masked; use `policy: clone` (the data as it is) or `policy: seed`",
        );
        return None;
    }
    let persistence = match (engine, fields.get("persistence")) {
        (Some(Engine::Redis), Some(n)) => {
            choice(n, "a Redis persistence", &["rdb", "aof", "none"], sink).map(|p| match p {
                "aof" => Persistence::Aof,
                "none" => Persistence::None,
                _ => Persistence::Rdb,
            })
        }
        (Some(Engine::Redis), None) => Some(Persistence::Rdb),
        (_, Some(n)) => {
            sink.push(
                n.position,
                &n.path,
                "`persistence` is only used with `engine: redis`",
            );
            None
        }
        (_, None) => None,
    };
    Some(Database {
        engine: engine?,
        version: version?,
        mode: mode?,
        admin_url,
        clone: clone?,
        masking,
        persistence,
    })
}

fn read_job(fields: &Fields<'_>, names: &Names<'_>, sink: &mut Sink) -> Option<Job> {
    let hook = fields
        .require(
            "hook",
            "when the job runs: `seed`, `migrate`, `on-create` or `on-delete`",
            sink,
        )
        .and_then(|n| {
            choice(
                n,
                "a job hook",
                &["seed", "migrate", "on-create", "on-delete"],
                sink,
            )
        })
        .map(|hook| match hook {
            "seed" => Hook::Seed,
            "migrate" => Hook::Migrate,
            "on-create" => Hook::OnCreate,
            _ => Hook::OnDelete,
        });
    let command = fields
        .require("command", "the shell command the job runs", sink)
        .and_then(|n| text(n, "a command", sink));
    let image = match names.runtime {
        RuntimeKind::Kubernetes => fields.require(
            "image",
            "the container image the Kubernetes runtime runs",
            sink,
        ),
        RuntimeKind::Local => fields.get("image"),
    }
    .and_then(|n| text(n, "an image reference", sink));
    Some(Job {
        hook: hook?,
        command: command?,
        image,
    })
}
