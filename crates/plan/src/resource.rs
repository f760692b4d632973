//! A resource: one addressable thing a runtime creates, with a content hash that says whether it changed.

use serde::{Deserialize, Serialize};

/// Kinds in the order an environment is built: a kind only depends on kinds before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    /// The environment's own space: a namespace, or a directory and a port range.
    Space,
    /// The environment's secret set (names and fingerprints, never values).
    Secrets,
    Database,
    /// An app's build: a checkout of the environment's commit with the app's build command run in it.
    Build,
    /// One run of a job (seed, migrate, on-create, on-delete).
    Job,
    /// An app workload.
    App,
    /// The TLS certificate for the environment's hostnames.
    Certificate,
    /// Hostnames → an app's port.
    Route,
}

impl ResourceKind {
    /// The kind's name, as resource ids and metrics spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Space => "space",
            ResourceKind::Secrets => "secrets",
            ResourceKind::Database => "database",
            ResourceKind::Build => "build",
            ResourceKind::Job => "job",
            ResourceKind::App => "app",
            ResourceKind::Certificate => "certificate",
            ResourceKind::Route => "route",
        }
    }

    /// Build order: space → secrets, databases and builds → jobs → apps and certificates → routes.
    pub fn level(self) -> u8 {
        match self {
            ResourceKind::Space => 0,
            ResourceKind::Secrets | ResourceKind::Database | ResourceKind::Build => 1,
            ResourceKind::Job => 2,
            ResourceKind::App | ResourceKind::Certificate => 3,
            ResourceKind::Route => 4,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// Stable within an environment: `space`, `secrets`, `database/db`, `app/web`, `route/web`, …
    pub id: String,
    pub kind: ResourceKind,
    /// Ids of the resources that must exist before this one.
    pub depends_on: Vec<String>,
    /// What the runtime needs to create it; never holds a secret value.
    pub content: serde_json::Value,
    /// SHA-256 of the canonical JSON of `content` (keys sorted), hex.
    pub hash: String,
}

impl Resource {
    pub fn new(
        id: impl Into<String>,
        kind: ResourceKind,
        depends_on: Vec<String>,
        content: serde_json::Value,
    ) -> Self {
        let hash = content_hash(&content);
        Resource {
            id: id.into(),
            kind,
            depends_on,
            content,
            hash,
        }
    }
}

/// `serde_json::Value` keeps object keys sorted, so its compact text is canonical.
fn content_hash(content: &serde_json::Value) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, content.to_string().as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
