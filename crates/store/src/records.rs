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
    /// The daemon whose machine runs it, for runtimes whose environments live on one machine (the local runtime);
    /// `None` where any daemon sharing the store may act on it.
    pub owner: Option<String>,
    /// The branch, tag or commit a deployment without one builds (`None`: the repository's HEAD).
    pub follows: Option<String>,
}

/// An environment an operator must look at: a deployment of it was abandoned and may have left resources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttentionRecord {
    pub project: String,
    pub environment: String,
    pub deployment: String,
    /// What happened and what may be left.
    pub note: String,
    pub at: i64,
}

/// A webhook delivery as the receiver judged it: accepted (stored for the reconciler), acknowledged without action,
/// or refused (a bad signature; its id then is the receiver's own). A duplicate is not stored again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub project: String,
    pub delivery: String,
    pub forge: String,
    pub event: String,
    /// What happened, for a pull-request event (`opened`, `pushed`, …).
    pub action: Option<String>,
    pub pull_request: Option<i64>,
    pub head: Option<String>,
    /// `accepted`, `ignored` or `refused`.
    pub verdict: String,
    /// Why, for people.
    pub detail: String,
    /// The event in preview's shape (JSON), for an accepted pull-request event.
    pub event_json: Option<String>,
    /// SHA-256 of an authenticated body: the same body under another id is a duplicate too.
    pub body_digest: Option<String>,
    pub received_at: i64,
}

/// A pull request as last seen, and what the reconciler keeps about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequestRecord {
    pub project: String,
    pub number: i64,
    /// Counts the observations written: a confirmation is written only over the version it read.
    pub version: i64,
    /// The pull request's state (the forge crate's `PullState`, as JSON).
    pub state: String,
    pub open: bool,
    pub head: String,
    /// The forge's API (or the local repository's branches) said so; `false`: only a webhook did, to be confirmed.
    pub confirmed: bool,
    pub observed_at: i64,
    /// The reconciler made its preview (and so may change and remove it).
    pub claimed: bool,
    /// When the reconciler made its preview (for `ttl`).
    pub claimed_at: Option<i64>,
    /// The head a maintainer approved (fork pull requests).
    pub approved_head: Option<String>,
    /// The head whose preview outlived `ttl`: no preview again until a new head.
    pub expired_head: Option<String>,
    /// The head whose deployment failed: not tried again until a new head or a sync.
    pub failed_head: Option<String>,
    /// The head the changed paths were read at, and the paths (JSON list).
    pub paths_head: Option<String>,
    pub paths: Option<String>,
    /// What the reconciler last decided, for people.
    pub outcome: String,
    /// What the pull request was told through its forge (JSON, the daemon's own shape).
    pub feedback: Option<String>,
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
        /// It could not finish — its rollback, or past its point of no return its roll-forward; retried with
        /// growing delays until it does, or until an operator abandons it.
        Failed => "failed",
        /// An operator gave up on it (`preview deployment abandon`); its environment needs attention.
        Abandoned => "abandoned",
    }
);

impl DeploymentStatus {
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            DeploymentStatus::Committed
                | DeploymentStatus::RolledBack
                | DeploymentStatus::Abandoned
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
    /// The commit it builds from, when the project's spec lives in a git repository.
    pub source_commit: Option<String>,
    /// What its environment follows once it is committed (`None`: unchanged by a redeploy, HEAD for a new one).
    pub follows: Option<String>,
    /// For a deletion: keep the variables and secrets scoped to the environment (they apply again to a new
    /// environment of the same name) instead of removing them with it.
    #[serde(default)]
    pub keep_settings: bool,
    pub status: DeploymentStatus,
    /// Why it was rolled back or failed: the first failure, kept as it was through every retry.
    pub reason: Option<String>,
    pub plan: Plan,
    /// Who runs it: a daemon's id and the nonce of that daemon's start (`daemon-…/…`).
    pub holder: String,
    /// For machine-local runtimes, the daemon whose machine it acts on; only that daemon may recover it.
    pub owner: Option<String>,
    /// How often finishing it was tried and failed, and the latest error (status `failed`).
    pub attempts: i64,
    pub last_error: Option<String>,
    /// Not retried before this time (store clock, ms).
    pub retry_at: Option<i64>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

/// A deployment's hold on its environment: the fencing token every write of its holder is checked against.
/// Another daemon taking the deployment over raises the epoch, after which the old holder's writes are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub deployment: String,
    pub holder: String,
    pub epoch: i64,
}

/// Who holds a deployment's lease now, as the store sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseState {
    pub holder: String,
    pub epoch: i64,
    /// By the store's clock.
    pub expired: bool,
}

/// What a plan is made from: the environment's committed revision, its record and its recorded state, read in
/// that order so that a commit in between shows as a newer revision when the deployment starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanningBase {
    pub revision: i64,
    pub environment: Option<EnvironmentRecord>,
    pub recorded: Vec<Resource>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub deployment: String,
    /// Order within the deployment, from 0.
    pub seq: i64,
    /// Who wrote it, under which epoch of the lease.
    pub holder: String,
    pub epoch: i64,
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
    /// It could not finish (rollback, or roll-forward past the point of no return): the lease is kept so that
    /// nothing else touches the environment, and finishing is tried again after `retry_in_ms`.
    Failed {
        reason: String,
        error: String,
        retry_in_ms: i64,
    },
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

/// A secret as it is now: which version (fingerprint) is current, and its preview policy. Its value is in a
/// [`SealedVersion`], sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRecord {
    pub project: String,
    pub scope: String,
    pub name: String,
    pub fingerprint: String,
    /// `share`, `withhold`, or `substitute:VARIABLE`.
    pub previews: String,
    pub updated_at: i64,
}

/// One value a secret had or has: only its ciphertext, nonce and keyed fingerprint are stored, never the value,
/// with the id of the master key that sealed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedVersion {
    pub project: String,
    pub scope: String,
    pub name: String,
    pub fingerprint: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub key_id: String,
}
