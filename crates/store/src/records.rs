//! What the store keeps, as plain types.

use preview_plan::{Plan, Resource};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectRecord {
    pub name: String,
    /// The spec's file name, for messages.
    pub file: String,
    /// The spec's text as registered.
    pub source: String,
    /// The spec's directory on the daemon's machine, when it was registered from one: where the local runtime
    /// finds the repository to build from.
    pub directory: Option<String>,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentRecord {
    pub project: String,
    pub name: String,
    /// For a clone: the environment it was cloned from. `None` for an environment declared in the spec.
    pub based_on: Option<String>,
    pub created_at: i64,
}

/// Declares an enum stored as snake_case text, with its conversions.
macro_rules! stored_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

stored_enum!(
    /// What a deployment does to its environment.
    Operation { Create => "create", Update => "update", Delete => "delete", Clone => "clone" }
);

stored_enum!(
    DeploymentStatus {
        Running => "running",
        RollingBack => "rolling_back",
        Committed => "committed",
        RolledBack => "rolled_back",
        /// The rollback itself could not finish; it is retried when the daemon starts.
        Failed => "failed",
    }
);

impl DeploymentStatus {
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            DeploymentStatus::Committed | DeploymentStatus::RolledBack
        )
    }
}

stored_enum!(
    /// Whether a journal entry belongs to applying the plan or to undoing it.
    Phase { Apply => "apply", Compensate => "compensate" }
);

stored_enum!(
    JournalEvent {
        /// Written before the runtime is asked to act.
        Intent => "intent",
        Done => "done",
        Failed => "failed",
        /// A line of output or progress.
        Log => "log",
    }
);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentRecord {
    pub id: String,
    pub project: String,
    pub environment: String,
    pub operation: Operation,
    pub based_on: Option<String>,
    pub status: DeploymentStatus,
    /// Why it was rolled back or failed.
    pub reason: Option<String>,
    pub plan: Plan,
    /// The daemon running it.
    pub holder: String,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub deployment: String,
    /// Order within the deployment, from 0.
    pub seq: i64,
    /// The plan step it is about.
    pub step: i64,
    pub phase: Phase,
    pub event: JournalEvent,
    pub message: String,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
}

/// How a deployment ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every step applied: `state` becomes the recorded state.
    Committed { state: Vec<Resource> },
    /// Every applied step was undone: the recorded state is unchanged.
    RolledBack { reason: String },
    /// The rollback could not finish; the lease is kept so that nothing else touches the environment.
    Failed { reason: String },
}

/// A plain variable set through the CLI or API. `scope` is written as the CLI takes it (`project`,
/// `environment:staging`, `service:web`, `service:web@staging`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariableRecord {
    pub project: String,
    pub scope: String,
    pub name: String,
    pub value: String,
    pub updated_at: i64,
}

/// A sealed secret: only its ciphertext, nonce and keyed fingerprint are stored, never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRecord {
    pub project: String,
    pub scope: String,
    pub name: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub fingerprint: String,
    /// `share`, `withhold`, or `substitute:VARIABLE`.
    pub previews: String,
    pub updated_at: i64,
}
