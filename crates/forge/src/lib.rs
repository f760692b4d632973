//! Forges as `preview` sees them. A webhook delivery is authenticated over its raw body before anything of it is
//! parsed (`signature`), then read into one shape whatever forge sent it (`events`): which pull request, what
//! happened to it, and its state at that moment (head commit, branches, labels, draft, fork). The reconciler needs
//! no more than that from an event: it is woken by it, and asks the forge for the rest.

pub mod api;
pub mod events;
pub mod signature;

pub use api::PullState;
pub use events::{Action, Event, PullRequest, read_event};
pub use signature::{Authenticated, Headers, Refusal, SIGNATURE_HEADERS, authenticate};

/// The forges that send webhooks. Forgejo is Gitea's fork and speaks its dialect under its own header names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forge {
    Github,
    Gitea,
    Forgejo,
    Gitlab,
}

impl Forge {
    pub fn name(self) -> &'static str {
        match self {
            Forge::Github => "github",
            Forge::Gitea => "gitea",
            Forge::Forgejo => "forgejo",
            Forge::Gitlab => "gitlab",
        }
    }
}
