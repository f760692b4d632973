//! What differs between GitHub, GitLab and Gitea, as one trait each forge's module implements: the API's place,
//! its routes to the endpoints served, its checks of who asks, its shapes, pagination headers and error bodies, and
//! the bodies its writes take and the refusals it answers them with.

use serde_json::{Map, Value};

use super::body::{Fault, Shape};
use super::feedback::{Comment, CommitStatus, Deployment, DeploymentStatus, Person, StatusFields};
use super::http::{Request, Response};
use super::query::{Page, Paging};
use super::{Entry, Site, State};

/// What one forge's API looks like: everything that differs between GitHub, GitLab and Gitea.
pub(super) trait Dialect: Send + Sync {
    fn name(&self) -> &'static str;
    /// The API's path under the web URL.
    fn api_prefix(&self) -> &'static str;
    /// The endpoint `method` on the path `segments` (after the API prefix) names, with the query it takes.
    fn route(&self, site: &Site, method: &str, segments: &[&str]) -> Result<Routed, Missing>;
    /// The forge's checks of who asks and how: what failed goes to `problems`, and a refusal is answered instead.
    fn check(&self, site: &Site, request: &Request, problems: &mut Vec<String>)
    -> Option<Response>;
    fn paging(&self) -> Paging;
    /// The states a list's `state` parameter selects, or the forge's answer to a value it does not know.
    fn listed(&self, site: &Site, state: Option<&str>) -> Result<&'static [State], Response>;
    fn pull(&self, site: &Site, entry: &Entry, single: bool) -> Value;
    fn file(&self, site: &Site, entry: &Entry, path: &str) -> Value;
    fn page_headers(
        &self,
        site: &Site,
        request: &Request,
        routed: &Routed,
        page: &Page,
    ) -> Vec<(String, String)>;
    fn not_found(&self, site: &Site, missing: Missing) -> Response;
    fn error(&self, site: &Site, status: u16) -> Response;
    /// The refusal of a request over the limit, which resets at `reset` (seconds since the epoch).
    fn rate_limited(&self, site: &Site, reset: u64) -> Response;
    /// The refusal of a request sent too soon after others, which GitHub calls its secondary rate limit; the other
    /// forges have one limit only.
    fn secondary_rate_limited(&self, site: &Site, reset: u64) -> Response {
        self.rate_limited(site, reset)
    }
    /// Headers every answer carries; `served` counts the requests so far, this one included.
    fn finish(&self, _site: &Site, _served: u64, _started: u64, _response: &mut Response) {}

    /// The token's user.
    fn user(&self, site: &Site, user: &Person) -> Value;
    fn comment(&self, site: &Site, comment: &Comment) -> Value;
    /// Whether a pull request's comments come a page at a time; Gitea answers all of them whatever the query.
    fn pages_comments(&self) -> bool {
        true
    }
    fn comment_shape(&self) -> &'static Shape;
    fn status_shape(&self) -> &'static Shape;
    /// A commit status from a body of `status_shape`: the forge's names for its fields and its default context.
    fn status_fields(&self, body: &Map<String, Value>) -> StatusFields;
    fn status(&self, site: &Site, status: &CommitStatus) -> Value;
    /// GitHub's deployments, which the other forges do not have.
    fn deployments(&self) -> Option<&dyn Deployments> {
        None
    }
    /// The answer to a body that is not what the endpoint takes.
    fn invalid(&self, site: &Site, shape: &Shape, faults: &[Fault]) -> Response;
    /// The answer to a write the forge's state refuses, or `None` where this forge lets it through.
    fn refuse(&self, site: &Site, refusal: &Refusal) -> Option<Response>;
}

/// GitHub's deployments and their statuses: the bodies they take and their shapes.
pub(super) trait Deployments: Send + Sync {
    fn deployment_shape(&self) -> &'static Shape;
    fn status_shape(&self) -> &'static Shape;
    fn deployment(&self, site: &Site, deployment: &Deployment) -> Value;
    fn status(&self, site: &Site, deployment: &Deployment, status: &DeploymentStatus) -> Value;
}

/// A write the forge's state may refuse; each forge decides whether it does, and how it says so.
pub(super) enum Refusal<'a> {
    /// A commit status for a commit the forge does not know.
    UnknownCommit(&'a str),
    /// A deployment of a ref that names no branch, pull request or commit the forge knows.
    UnknownRef(&'a str),
    /// An edit of a comment someone else wrote.
    OthersComment { author: &'a str },
    /// A commit status `to` where the commit's status of the same context is `from`.
    Transition { from: Option<&'a str>, to: &'a str },
    /// A deployment of `reference` while the statuses it requires are these (context, latest state), not all
    /// `success`.
    Contexts {
        reference: &'a str,
        checked: &'a [(String, String)],
    },
}

impl Refusal<'_> {
    /// The refusal in a problem report.
    pub fn describe(&self, forge: &str) -> String {
        match self {
            Refusal::UnknownCommit(sha) => format!(
                "a status for {sha}, which is no commit {forge} knows (no pull request's head, now or before)"
            ),
            Refusal::UnknownRef(reference) => format!(
                "a deployment of {reference:?}, which names no branch, pull request or commit {forge} knows"
            ),
            Refusal::OthersComment { author } => format!(
                "an edit of a comment by {author}, which is not the token's user's to change"
            ),
            Refusal::Transition { from, to } => format!(
                "a status {to} for a context whose status already is {}, which {forge} refuses",
                from.unwrap_or("none")
            ),
            Refusal::Contexts { reference, checked } => format!(
                "a deployment of {reference} while its commit statuses are not all success ({}), which {forge} \
                 refuses (409); `required_contexts: []` deploys whatever they are",
                checked
                    .iter()
                    .map(|(context, state)| format!("{context}: {state}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// The endpoints served. A new one is a variant here, an arm in each dialect's `route`, and an arm in
/// `Shared::respond`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Endpoint {
    /// The repository's pull requests in the states asked for, newest first, a page of them.
    ListPulls,
    Pull(u64),
    /// The paths a pull request changes, a page of them.
    PullFiles(u64),
    /// The token's user.
    User,
    /// A pull request's comments, oldest first, a page of them.
    ListComments(u64),
    CreateComment(u64),
    /// A comment by its id; GitLab names its merge request too.
    EditComment {
        pull: Option<u64>,
        id: u64,
    },
    /// A status of the commit (or ref) named.
    CreateStatus(String),
    CreateDeployment,
    CreateDeploymentStatus(u64),
}

impl Endpoint {
    pub fn paged(&self) -> bool {
        matches!(
            self,
            Endpoint::ListPulls | Endpoint::PullFiles(_) | Endpoint::ListComments(_)
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Missing {
    /// No such endpoint (or not with this method).
    Endpoint,
    /// An endpoint of another repository than the forge's.
    Repository,
    /// The pull request does not exist: a normal answer, not the client's mistake.
    Pull {
        files: bool,
    },
    /// The pull request whose comments are asked for does not exist.
    Issue,
    /// The comment does not exist (or no longer: its author may delete it any time).
    Comment,
    Deployment,
}

/// An endpoint and the query parameters it takes besides the page ones.
pub(super) struct Routed {
    pub endpoint: Endpoint,
    /// Parameters `preview` must send, with their value.
    pub required: Vec<(&'static str, String)>,
    /// Parameters the forge writes into its own pagination links, so accepted with that value when sent back.
    pub echoed: Vec<(&'static str, String)>,
    /// Parameters `preview` may send, with the value it means (the forge's default).
    pub allowed: Vec<(&'static str, String)>,
}

impl Routed {
    pub fn new(endpoint: Endpoint) -> Routed {
        Routed {
            endpoint,
            required: Vec::new(),
            echoed: Vec::new(),
            allowed: Vec::new(),
        }
    }

    pub fn require(mut self, name: &'static str, value: &str) -> Routed {
        self.required.push((name, value.to_string()));
        self
    }

    pub fn echo(mut self, name: &'static str, value: &str) -> Routed {
        self.echoed.push((name, value.to_string()));
        self
    }

    pub fn allow(mut self, name: &'static str, value: &str) -> Routed {
        self.allowed.push((name, value.to_string()));
        self
    }
}

/// A pull request's number (or a comment's id) in a path, which the forges answer 404 to when it is not one.
pub(super) fn number(segment: &str) -> Result<u64, Missing> {
    segment.parse().map_err(|_| Missing::Endpoint)
}
