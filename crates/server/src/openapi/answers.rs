//! The shapes of the API's answers, for the document. The handlers build their answers as JSON; the property-based
//! check of the API against the document (`crates/cli/tests/openapi.rs`) and the check every test daemon makes of
//! its answers (`check.rs`) fail when an answer leaves these shapes. Fields are required when every answer has them
//! (an optional one is `null` when it has no value, never left out: `#[schema(required)]`); objects may carry more.

#![allow(dead_code)]

use serde_json::Value;
use utoipa::ToSchema;

/// Every error: a machine-readable code and a message for people naming the problem and the place.
#[derive(ToSchema)]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

#[derive(ToSchema)]
pub(crate) struct ErrorDetail {
    code: ErrorCode,
    message: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub(crate) enum ErrorCode {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    TooLarge,
    TooMany,
    Internal,
    /// A webhook delivery that was not accepted.
    Refused,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub(crate) enum Operation {
    Create,
    Update,
    Delete,
    Clone,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub(crate) enum Status {
    Running,
    RollingBack,
    Committed,
    RolledBack,
    Failed,
    Abandoned,
}

#[derive(ToSchema)]
pub(crate) struct Health {
    ok: bool,
}

#[derive(ToSchema)]
pub(crate) struct ProjectSummary {
    name: String,
    /// The spec's file name.
    file: String,
    /// The spec's directory on the daemon's machine.
    #[schema(required)]
    directory: Option<String>,
    /// Milliseconds since the Unix epoch.
    updated_at: i64,
}

#[derive(ToSchema)]
pub(crate) struct ProjectList {
    projects: Vec<ProjectSummary>,
}

#[derive(ToSchema)]
pub(crate) struct Registered {
    project: ProjectSummary,
    /// How many services the spec declares.
    services: u64,
    /// The environments it declares.
    environments: Vec<String>,
}

#[derive(ToSchema)]
pub(crate) struct ProjectShown {
    project: ProjectSummary,
    /// The spec's text.
    source: String,
    /// Where its forge sends webhooks, when its previews come from one that does.
    #[schema(value_type = Option<Object>, required)]
    forge: Option<Value>,
}

#[derive(ToSchema)]
pub(crate) struct Deleted {
    deleted: String,
}

/// A deployment as the store keeps it (its plan included).
#[derive(ToSchema)]
pub(crate) struct Deployment {
    id: String,
    project: String,
    environment: String,
    operation: Operation,
    status: Status,
    #[schema(required)]
    based_on: Option<String>,
    /// The commit it builds.
    #[schema(required)]
    source_commit: Option<String>,
    #[schema(required)]
    reason: Option<String>,
    created_at: i64,
    #[schema(required)]
    finished_at: Option<i64>,
    holder: String,
    attempts: i64,
    #[schema(value_type = Object)]
    plan: Value,
}

/// A change started: `202 Accepted` with the deployment that carries it out.
#[derive(ToSchema)]
pub(crate) struct Started {
    deployment: Deployment,
    /// The commit it builds, described for people, with warnings.
    #[schema(value_type = Option<Object>, required)]
    source: Option<Value>,
}

/// A deletion started, and what becomes of the settings scoped to the environment.
#[derive(ToSchema)]
pub(crate) struct DeletionStarted {
    deployment: Deployment,
    settings: DeletedSettings,
}

#[derive(ToSchema)]
pub(crate) struct DeletedSettings {
    variables: Vec<String>,
    secrets: Vec<String>,
    kept: bool,
    #[schema(required)]
    kept_for: Option<Vec<String>>,
}

#[derive(ToSchema)]
pub(crate) struct EnvironmentEntry {
    name: String,
    sleeping: bool,
    /// Where its public services answer.
    urls: Vec<String>,
    /// When a request last reached it through the gateway (since the daemon started).
    #[schema(required)]
    last_request_at: Option<i64>,
    #[schema(required)]
    based_on: Option<String>,
    #[schema(required)]
    created_at: Option<i64>,
    #[schema(required)]
    commit: Option<String>,
    #[schema(required)]
    follows: Option<String>,
    #[schema(value_type = Option<Object>, required)]
    last_deployment: Option<Value>,
    #[schema(required)]
    attention: Option<String>,
}

#[derive(ToSchema)]
pub(crate) struct EnvironmentList {
    environments: Vec<EnvironmentEntry>,
}

#[derive(ToSchema)]
pub(crate) struct EnvironmentShown {
    #[schema(value_type = Object)]
    environment: Value,
    #[schema(required)]
    commit: Option<String>,
    sleeping: bool,
    #[schema(required)]
    last_request_at: Option<i64>,
    #[schema(value_type = Vec<Object>)]
    resources: Vec<Value>,
    #[schema(value_type = Vec<Object>)]
    services: Vec<Value>,
    #[schema(value_type = Vec<Object>)]
    isolation: Vec<Value>,
    urls: Vec<String>,
    #[schema(value_type = Vec<Object>)]
    routes: Vec<Value>,
    #[schema(value_type = Vec<Object>)]
    deployments: Vec<Value>,
    #[schema(required)]
    attention: Option<String>,
}

#[derive(ToSchema)]
pub(crate) struct Planned {
    #[schema(value_type = Object)]
    plan: Value,
    /// The plan for people.
    text: String,
    #[schema(value_type = Option<Object>, required)]
    source: Option<Value>,
    warnings: Vec<String>,
}

#[derive(ToSchema)]
pub(crate) struct Manifests {
    objects: Vec<Manifest>,
    /// Every object, as one YAML stream.
    yaml: String,
}

#[derive(ToSchema)]
pub(crate) struct Manifest {
    api_version: String,
    kind: String,
    #[schema(required)]
    namespace: Option<String>,
    name: String,
    yaml: String,
}

#[derive(ToSchema)]
pub(crate) struct Cancelling {
    /// The deployment told to stop.
    cancelling: String,
}

#[derive(ToSchema)]
pub(crate) struct DeploymentEntry {
    id: String,
    operation: Operation,
    status: Status,
    #[schema(required)]
    reason: Option<String>,
    /// How many steps its plan has.
    steps: u64,
    #[schema(required)]
    commit: Option<String>,
    created_at: i64,
    #[schema(required)]
    finished_at: Option<i64>,
}

#[derive(ToSchema)]
pub(crate) struct DeploymentList {
    deployments: Vec<DeploymentEntry>,
}

#[derive(ToSchema)]
pub(crate) struct DeploymentShown {
    #[schema(value_type = Object)]
    deployment: Value,
    steps: Vec<StepReport>,
    /// Where the environment answers once the change committed; `null` without a gateway.
    #[schema(required)]
    urls: Option<Vec<String>>,
}

#[derive(ToSchema)]
pub(crate) struct StepReport {
    /// From 1.
    index: u64,
    #[schema(value_type = String)]
    action: Value,
    resource: String,
    /// `applied`, `failed`, `undone`, `interrupted` or `not started`.
    state: String,
    /// When it began (milliseconds since the Unix epoch).
    #[schema(required)]
    started_at: Option<i64>,
    #[schema(required)]
    duration_ms: Option<i64>,
    #[schema(required)]
    error: Option<String>,
}

#[derive(ToSchema)]
pub(crate) struct Journal {
    #[schema(value_type = Vec<Object>)]
    entries: Vec<Value>,
}

#[derive(ToSchema)]
pub(crate) struct Abandoned {
    deployment: Deployment,
    #[schema(value_type = Option<Object>, required)]
    attention: Option<Value>,
}

#[derive(ToSchema)]
pub(crate) struct VariableList {
    #[schema(value_type = Vec<Object>)]
    variables: Vec<Value>,
}

#[derive(ToSchema)]
pub(crate) struct VariableSet {
    #[schema(value_type = Object)]
    variable: Value,
}

#[derive(ToSchema)]
pub(crate) struct Unset {
    unset: UnsetSlot,
}

#[derive(ToSchema)]
pub(crate) struct UnsetSlot {
    scope: String,
    name: String,
}

/// A secret as clients see it: never its value.
#[derive(ToSchema)]
pub(crate) struct SecretSummary {
    name: String,
    scope: String,
    /// A keyed fingerprint of the value: equal values, equal fingerprints; the value cannot be read from it.
    fingerprint: String,
    previews: String,
    updated_at: i64,
}

#[derive(ToSchema)]
pub(crate) struct SecretSet {
    secret: SecretSummary,
    warnings: Vec<String>,
}

#[derive(ToSchema)]
pub(crate) struct SecretList {
    secrets: Vec<SecretSummary>,
}

#[derive(ToSchema)]
pub(crate) struct Rotated {
    /// How many sealed values were sealed again with the new key.
    rotated: u64,
}

#[derive(ToSchema)]
pub(crate) struct EffectiveVariables {
    environment: String,
    services: Vec<ServiceVariables>,
}

#[derive(ToSchema)]
pub(crate) struct ServiceVariables {
    service: String,
    variables: Vec<EffectiveVariable>,
}

/// A variable's effective value and where it came from; a secret's value is `[secret]`.
#[derive(ToSchema)]
pub(crate) struct EffectiveVariable {
    name: String,
    value: String,
    secret: bool,
    #[schema(value_type = String)]
    level: Value,
    source: String,
    #[schema(value_type = Vec<Object>)]
    shadowed: Vec<Value>,
    #[schema(required)]
    note: Option<String>,
}

#[derive(ToSchema)]
pub(crate) struct LogChunk {
    text: String,
    /// Where the next read starts (`?from=`).
    next: u64,
}

#[derive(ToSchema)]
pub(crate) struct DatabaseList {
    #[schema(value_type = Vec<Object>)]
    databases: Vec<Value>,
}

/// A login to an environment's database, for `preview db psql`.
#[derive(ToSchema)]
pub(crate) struct DatabaseLogin {
    host: String,
    port: u16,
    user: String,
    database: String,
    password: String,
}

#[derive(ToSchema)]
pub(crate) struct Lines {
    lines: Vec<String>,
}

#[derive(ToSchema)]
pub(crate) struct SnapshotShown {
    #[schema(value_type = Option<Object>, required)]
    snapshot: Option<Value>,
}

#[derive(ToSchema)]
pub(crate) struct SnapshotList {
    #[schema(value_type = Vec<Object>)]
    snapshots: Vec<Value>,
}

#[derive(ToSchema)]
pub(crate) struct Deliveries {
    /// Where the project's forge sends webhooks.
    url: String,
    #[schema(value_type = Vec<Object>)]
    deliveries: Vec<Value>,
}

/// A webhook delivery's verdict.
#[derive(ToSchema)]
pub(crate) struct Delivered {
    /// `accepted`, `ignored` or `duplicate`.
    verdict: String,
    delivery: String,
    #[schema(required)]
    detail: Option<String>,
}

#[derive(ToSchema)]
pub(crate) struct PreviewList {
    now: i64,
    #[schema(value_type = Option<Object>, required)]
    forge: Option<Value>,
    #[schema(required)]
    max_live: Option<u64>,
    #[schema(value_type = Vec<Object>)]
    previews: Vec<Value>,
}

#[derive(ToSchema)]
pub(crate) struct SyncStarted {
    sync: String,
    project: String,
}

#[derive(ToSchema)]
pub(crate) struct Approved {
    number: i64,
    approved_head: String,
}

#[derive(ToSchema)]
pub(crate) struct GatewayAddresses {
    http: String,
    https: String,
}

#[derive(ToSchema)]
pub(crate) struct Certificate {
    /// The local CA's certificate (PEM).
    certificate: String,
}

#[derive(ToSchema)]
pub(crate) struct ClusterList {
    #[schema(value_type = Vec<Object>)]
    clusters: Vec<Value>,
}

#[derive(ToSchema)]
pub(crate) struct ClusterAdded {
    name: String,
    server: String,
}

#[derive(ToSchema)]
pub(crate) struct ClusterRemoved {
    removed: String,
}

#[derive(ToSchema)]
pub(crate) struct Woken {
    environment: String,
    sleeping: bool,
}
