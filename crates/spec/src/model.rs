//! The typed project specification that every later stage consumes.
//!
//! Each environment carries its *effective* services (the base services with that environment's overrides
//! applied), so later stages never merge YAML themselves. Variables are kept per scope, not merged, because the
//! resolver must be able to say which scope a value came from.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::diagnostic::Position;

/// Where a value was written: its position and key path in the spec file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub position: Position,
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spec {
    pub project: String,
    pub domain: DomainSettings,
    pub isolation: Isolation,
    pub runtime: RuntimeKind,
    /// Project-scope variables.
    pub variables: Variables,
    /// Project-scope secret declarations.
    pub secrets: Vec<SecretDeclaration>,
    /// The services as declared, before any environment's overrides.
    pub services: BTreeMap<String, Service>,
    pub environments: BTreeMap<String, Environment>,
    pub previews: Option<PreviewPolicy>,
}

impl Spec {
    /// The project secrets that run previews rather than belong to any app — the forge's token and webhook secret,
    /// the previews' access credential, external servers' admin URLs, masking keys. A preview never receives them,
    /// whatever their preview policy says: a pull request's code would read them.
    pub fn withheld_from_previews(&self) -> std::collections::BTreeSet<String> {
        let mut names = std::collections::BTreeSet::new();
        if let Some(previews) = &self.previews {
            if let Some(forge) = &previews.forge {
                names.extend(forge.token.clone());
                names.extend(forge.webhook_secret.clone());
            }
            match &previews.access {
                Some(Access::Token { secret } | Access::BasicAuth { secret, .. }) => {
                    names.insert(secret.clone());
                }
                None => {}
            }
        }
        let services = self
            .services
            .values()
            .chain(self.environments.values().flat_map(|e| e.services.values()))
            .chain(
                self.previews
                    .iter()
                    .flat_map(|p| p.template.services.values()),
            );
        for service in services {
            if let ServiceKind::Database(database) = &service.kind {
                names.extend(database.admin_url.clone());
                names.extend(database.masking.as_ref().and_then(|m| m.key_secret.clone()));
            }
        }
        names
    }

    /// Whether any scope — the project, an environment, a service, a service in an environment, the preview
    /// template — declares a secret called `name`.
    pub fn declares_secret(&self, name: &str) -> bool {
        let declared = |list: &[SecretDeclaration]| list.iter().any(|s| s.name == name);
        let in_environment = |environment: &Environment| {
            declared(&environment.secrets)
                || environment.services.values().any(|s| declared(&s.secrets))
        };
        declared(&self.secrets)
            || self.services.values().any(|s| declared(&s.secrets))
            || self.environments.values().any(in_environment)
            || self
                .previews
                .as_ref()
                .is_some_and(|p| in_environment(&p.template))
    }

    /// Files the spec refers to (seed files), relative to its own directory, with where each is named. Whether
    /// they exist is for the caller to check: this crate does no I/O.
    pub fn referenced_files(&self) -> Vec<(&str, &Origin)> {
        let environments = self
            .environments
            .values()
            .chain(self.previews.as_ref().map(|p| &p.template));
        let services = self
            .services
            .values()
            .chain(environments.flat_map(|e| e.services.values()));
        let mut files: Vec<(&str, &Origin)> = services
            .filter_map(|service| match &service.kind {
                ServiceKind::Database(Database {
                    clone:
                        ClonePolicy::Seed {
                            source: SeedSource::File { path, origin },
                        },
                    ..
                }) => Some((path.as_str(), origin)),
                _ => None,
            })
            .collect();
        files.sort_by(|a, b| (a.1.position, a.0).cmp(&(b.1.position, b.0)));
        files.dedup();
        files
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainSettings {
    /// The domain under which generated hostnames live, e.g. `shop.localhost`.
    pub base: String,
    /// The labels left of the base domain, with `{service}`, `{env}` and `{project}` placeholders.
    pub hostname: String,
}

impl DomainSettings {
    pub const DEFAULT_HOSTNAME: &'static str = "{service}-{env}";

    /// The generated hostname of `service` in `environment`.
    /// The generated hostname of a service in an environment. A label longer than DNS allows (63 characters) is
    /// cut and given a suffix hashed from the whole label, so it stays unique and the same every time.
    pub fn hostname_for(&self, project: &str, service: &str, environment: &str) -> String {
        let labels = fill_placeholders(&self.hostname, project, service, environment);
        let labels: Vec<String> = labels.split('.').map(shorten_label).collect();
        format!("{}.{}", labels.join("."), self.base)
    }
}

/// `label` if it fits in 63 characters, else its first 54 characters, `-` and 8 hex digits of its FNV-1a hash
/// (a hash defined by its algorithm, so the result never changes between versions).
fn shorten_label(label: &str) -> String {
    const MAX: usize = 63;
    if label.len() <= MAX {
        return label.to_owned();
    }
    let hash = label.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let kept = label[..MAX - 9].trim_end_matches('-');
    format!("{kept}-{:08x}", hash as u32)
}

/// Replaces `{service}`, `{env}` and `{project}` in a hostname or domain template.
pub fn fill_placeholders(
    template: &str,
    project: &str,
    service: &str,
    environment: &str,
) -> String {
    template
        .replace("{service}", service)
        .replace("{env}", environment)
        .replace("{project}", project)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// One namespace / one database and role per environment, sharing servers.
    Logical,
    /// A dedicated cluster or database server per environment.
    Physical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    Local,
    Kubernetes,
}

/// Variables of one scope, by name.
pub type Variables = BTreeMap<String, Variable>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Variable {
    pub value: VariableValue,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VariableValue {
    /// Text, possibly holding `${{ … }}` references that the resolver expands.
    Text(String),
    /// Reads the effective value of another variable.
    Alias(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretDeclaration {
    pub name: String,
    pub previews: SecretInPreviews,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretInPreviews {
    /// Previews receive the secret like any environment.
    Shared,
    /// Previews run without it.
    Withheld,
    /// Previews receive the value of this variable (or secret) instead.
    Substitute(String),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    pub name: String,
    pub kind: ServiceKind,
    pub depends_on: Vec<Dependency>,
    /// Service-scope variables (not the per-environment ones; see [`Environment::service_variables`]).
    pub variables: Variables,
    pub secrets: Vec<SecretDeclaration>,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dependency {
    pub service: String,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServiceKind {
    App(App),
    Database(Database),
    Job(Job),
}

impl ServiceKind {
    pub fn name(&self) -> &'static str {
        match self {
            ServiceKind::App(_) => "app",
            ServiceKind::Database(_) => "database",
            ServiceKind::Job(_) => "job",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct App {
    /// Shell command run in a checkout of the commit to build the app (local runtime).
    pub build: Option<String>,
    /// Shell command that starts the app (local runtime).
    pub run: Option<String>,
    /// Container image reference (Kubernetes runtime).
    pub image: Option<String>,
    pub ports: Vec<Port>,
    pub health: Option<HealthCheck>,
    pub replicas: u32,
    pub resources: Resources,
    /// Whether the app gets public routes (its first port), or is reachable only inside its environment.
    pub public: bool,
    /// Custom domains, possibly wildcards (`*.shop.example.com`) and `{env}` placeholders.
    pub domains: Vec<Domain>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Port {
    pub name: String,
    pub number: u16,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthCheck {
    pub probe: Probe,
    /// The name of the port probed.
    pub port: String,
    /// How often a running app is checked.
    #[serde(rename = "interval_ms", serialize_with = "milliseconds")]
    pub interval: Duration,
    /// How long one check may take.
    #[serde(rename = "timeout_ms", serialize_with = "milliseconds")]
    pub timeout: Duration,
    /// How long a starting version may take to become healthy (default: the daemon's `--health-timeout`).
    #[serde(rename = "start_timeout_ms", serialize_with = "optional_milliseconds")]
    pub start_timeout: Option<Duration>,
    /// A running app that fails this many checks in a row is restarted.
    pub failures: u32,
}

/// Durations in JSON are whole milliseconds.
fn milliseconds<S: serde::Serializer>(
    duration: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(duration.as_millis().try_into().unwrap_or(u64::MAX))
}

fn optional_milliseconds<S: serde::Serializer>(
    duration: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match duration {
        Some(duration) => milliseconds(duration, serializer),
        None => serializer.serialize_none(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// An HTTP GET of this path must answer 2xx or 3xx.
    Http(String),
    /// A TCP connection must be accepted.
    Tcp,
}

/// What one app may use (`resources:`), or what one environment may use in all (`limits:`). A key left unset
/// sets no bound.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Resources {
    /// The cores its processes may use together.
    pub cpu: Option<Cpu>,
    /// The most memory its processes may hold before the kernel kills one of them.
    pub memory: Option<Memory>,
    /// The most processes and threads (kernel tasks) it may have at once.
    pub processes: Option<u32>,
}

/// A CPU amount as written (a Kubernetes quantity such as `250m` or `1.5`) and in thousandths of a core.
/// Serialized as `{"quantity": "250m", "millicores": 250}`: renderers for Kubernetes use the quantity, the local
/// runtime the number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cpu {
    pub quantity: String,
    pub millicores: u64,
}

/// A memory amount as written (a Kubernetes quantity such as `256Mi`) and in bytes.
/// Serialized as `{"quantity": "256Mi", "bytes": 268435456}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Memory {
    pub quantity: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Domain {
    pub name: String,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Database {
    pub engine: Engine,
    /// `16` (PostgreSQL), `7` (Redis), `10.11` (MySQL, the MariaDB series that serves it).
    pub version: DatabaseVersion,
    pub mode: DatabaseMode,
    /// With `mode: external`: the project secret that holds the server's admin URL.
    pub admin_url: Option<String>,
    pub clone: ClonePolicy,
    pub masking: Option<Masking>,
    /// Redis only: how its data outlives a restart of its server.
    pub persistence: Option<Persistence>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Postgres,
    Redis,
    /// MySQL, served by MariaDB.
    Mysql,
}

impl Engine {
    /// The engine's name for people.
    pub fn title(self) -> &'static str {
        match self {
            Engine::Postgres => "PostgreSQL",
            Engine::Redis => "Redis",
            Engine::Mysql => "MySQL",
        }
    }

    /// The engine's name in the spec.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::Redis => "redis",
            Engine::Mysql => "mysql",
        }
    }
}

/// A database's version as the spec writes it: a major version (`16`), serialized as a number, or a release
/// series (`10.11`), serialized as its text — so a PostgreSQL database's plan reads as it always has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseVersion {
    Major(u16),
    Series(u16, u16),
}

impl std::fmt::Display for DatabaseVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseVersion::Major(major) => write!(f, "{major}"),
            DatabaseVersion::Series(major, minor) => write!(f, "{major}.{minor}"),
        }
    }
}

impl Serialize for DatabaseVersion {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            DatabaseVersion::Major(major) => serializer.serialize_u16(*major),
            DatabaseVersion::Series(..) => serializer.collect_str(self),
        }
    }
}

/// How a Redis server keeps its data on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Persistence {
    /// Snapshots (RDB) now and then, and when the server stops.
    Rdb,
    /// Every write appended to a log (AOF), fsynced each second.
    Aof,
    /// Nothing: the data lasts as long as the server's process.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseMode {
    /// A server run by `preview` itself (a local server, or a StatefulSet on Kubernetes).
    Container,
    /// A database created inside a server `preview` manages for the whole project.
    Managed,
    /// A database created inside a server the project already runs (RDS, Cloud SQL, any PostgreSQL), through the
    /// admin URL in a project secret.
    External,
}

/// Where an environment's data comes from when the database is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "policy", rename_all = "snake_case")]
pub enum ClonePolicy {
    Empty,
    Seed { source: SeedSource },
    Clone { from: String, snapshots: Snapshots },
    Masked { from: String, snapshots: Snapshots },
}

/// How the golden snapshot a copy is made from is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Snapshots {
    /// A golden snapshot older than this is built again before a database is made from it.
    pub refresh: Option<std::time::Duration>,
    /// How many databases made from the current golden snapshot are kept ready to be handed out.
    pub warm_pool: u32,
}

impl Default for Snapshots {
    fn default() -> Self {
        Snapshots {
            refresh: None,
            warm_pool: Snapshots::WARM_POOL,
        }
    }
}

impl Snapshots {
    /// The warm pool's size when the spec says nothing.
    pub const WARM_POOL: u32 = 1;
    /// The largest warm pool: each of its databases is a whole copy on disk.
    pub const MAX_WARM_POOL: u32 = 8;
}

impl ClonePolicy {
    pub fn name(&self) -> &'static str {
        match self {
            ClonePolicy::Empty => "empty",
            ClonePolicy::Seed { .. } => "seed",
            ClonePolicy::Clone { .. } => "clone",
            ClonePolicy::Masked { .. } => "masked",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SeedSource {
    /// A SQL file, relative to the spec file's directory.
    File { path: String, origin: Origin },
    /// A job service whose hook is `seed`.
    Job(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Masking {
    /// Name of the secret holding the key of the deterministic transforms.
    pub key_secret: Option<String>,
    /// table → column → rule.
    pub tables: BTreeMap<String, BTreeMap<String, MaskRule>>,
    /// A column whose name looks personal and has no rule fails the copy instead of being reported.
    pub strict: bool,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskRule {
    /// Keyed hash of the value, same input → same output.
    Hash,
    /// A deterministic, unique fake e-mail address.
    Email,
    /// A deterministic fake person name.
    Name,
    /// A deterministic fake phone number.
    Phone,
    /// SQL NULL.
    Null,
    /// This literal for every row.
    Fixed(String),
    /// The transform of another column (`table.column`), so joins on the two keep matching.
    SameAs { table: String, column: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Job {
    pub hook: Hook,
    pub command: String,
    pub image: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hook {
    Seed,
    Migrate,
    OnCreate,
    OnDelete,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Environment {
    pub name: String,
    /// Environment-scope variables.
    pub variables: Variables,
    pub secrets: Vec<SecretDeclaration>,
    /// Every service with this environment's overrides applied.
    pub services: BTreeMap<String, Service>,
    /// Variables of a service in this environment only (the most specific scope).
    pub service_variables: BTreeMap<String, Variables>,
    /// The registered Kubernetes cluster the environment is made on (`cluster:`; for previews and other clones
    /// `previews.cluster`, else their source's); `None`: the daemon's own cluster.
    pub cluster: Option<String>,
    /// The totals of everything the environment runs at once (apps, jobs and builds together), after layering:
    /// the project's `limits`, then the environment's own; for previews and other clones the project's, then
    /// `previews.limits`, then the built-in preview defaults. A key still unset has no total.
    pub limits: Resources,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreviewPolicy {
    /// The environment previews are cloned from.
    pub blueprint: String,
    /// What a preview looks like: the blueprint with the preview overrides applied. Its name is a placeholder
    /// (`pr-{number}`); each preview gets its own.
    pub template: Environment,
    /// Source branches.
    pub branches: Filter,
    /// Target (base) branches.
    pub target_branches: Filter,
    pub labels: Filter,
    /// Whether draft pull requests get previews.
    pub drafts: bool,
    pub paths: Filter,
    #[serde(rename = "ttl_ms", serialize_with = "optional_milliseconds")]
    pub ttl: Option<Duration>,
    #[serde(rename = "idle_stop_ms", serialize_with = "optional_milliseconds")]
    pub idle_stop: Option<Duration>,
    pub max_live: Option<u32>,
    /// `spec: pull_request`: a pull request's preview is made from the `preview.yaml` at its head commit (never a
    /// fork's); by default, from the registered one.
    pub spec_from_pull_request: bool,
    pub forge: Option<Forge>,
    /// Who may open a preview's URLs; `None`: anyone who can reach the gateway.
    pub access: Option<Access>,
}

/// Access protection of previews at the gateway; the credential is always a declared project secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// A shared token, sent as the `X-Preview-Token` header or the `preview_token` cookie (set by opening a URL
    /// with `?preview_token=…` once).
    Token { secret: String },
    /// HTTP basic authentication with this user and the secret as password.
    BasicAuth { user: String, secret: String },
}

impl PreviewPolicy {
    /// The environment name of the preview for pull request `number`.
    pub fn environment_name(number: u64) -> String {
        format!("pr-{number}")
    }
}

/// Glob patterns; an empty `include` means "everything".
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Filter {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Forge {
    pub kind: ForgeKind,
    /// `owner/name` on the forge, or a path for `local`.
    pub repository: String,
    /// Name of the project secret that holds the webhook secret.
    pub webhook_secret: Option<String>,
    /// The forge's web address (`https://github.com`, `https://gitlab.com` by default; required for Gitea and
    /// Forgejo), without a trailing slash.
    pub url: Option<String>,
    /// Its REST API's base, when not the forge's usual one under `url`.
    pub api_url: Option<String>,
    /// Where the repository is fetched from, when not `<url>/<repository>.git`.
    pub clone_url: Option<String>,
    /// Name of the project secret holding an API token (also used to fetch a private repository).
    pub token: Option<String>,
    /// How often the open pull requests are listed through the forge's API (default 5 minutes).
    #[serde(rename = "resync_ms", serialize_with = "optional_milliseconds")]
    pub resync: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ForgeKind {
    Github,
    Gitlab,
    Gitea,
    Forgejo,
    /// Branches of a local Git repository act as pull requests.
    Local,
}
