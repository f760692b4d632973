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

/// A commit id as git writes it: 40 (SHA-1) or 64 (SHA-256) lowercase hexadecimal digits. A head that is not one
/// (a branch name, a reference) is refused where it is read, so that nothing downstream resolves it as a name.
pub fn is_commit_id(text: &str) -> bool {
    matches!(text.len(), 40 | 64) && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The commit id at `field` of an answer or event, or why it is not one.
pub(crate) fn commit_id(text: String, field: &str) -> Result<String, String> {
    if is_commit_id(&text) {
        Ok(text)
    } else {
        Err(format!("`{field}` is not a commit id"))
    }
}

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
