//! What differs between GitHub, GitLab and Gitea, as one trait each forge's module implements: the API's place,
//! its routes to the endpoints served, its checks of who asks, its shapes, pagination headers and error bodies.

use serde_json::Value;

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
    /// Headers every answer carries; `served` counts the requests so far, this one included.
    fn finish(&self, _site: &Site, _served: u64, _started: u64, _response: &mut Response) {}
}

/// The endpoints served. A new one (issue comments, commit statuses, deployments) is a variant here, an arm in each
/// dialect's `route`, and an arm in `Shared::respond`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endpoint {
    /// The repository's pull requests in the states asked for, newest first, a page of them.
    ListPulls,
    Pull(u64),
    /// The paths a pull request changes, a page of them.
    PullFiles(u64),
}

impl Endpoint {
    pub fn paged(self) -> bool {
        matches!(self, Endpoint::ListPulls | Endpoint::PullFiles(_))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Missing {
    /// No such endpoint (or not with this method).
    Endpoint,
    /// An endpoint of another repository than the forge's.
    Repository,
    /// The pull request does not exist: a normal answer, not the client's mistake.
    Pull { files: bool },
}

/// An endpoint and the query parameters it takes besides the page ones.
pub(super) struct Routed {
    pub endpoint: Endpoint,
    /// Parameters `preview` must send, with their value.
    pub required: Vec<(&'static str, String)>,
    /// Parameters the forge writes into its own pagination links, so accepted with that value when sent back.
    pub echoed: Vec<(&'static str, String)>,
}

impl Routed {
    pub fn new(endpoint: Endpoint) -> Routed {
        Routed {
            endpoint,
            required: Vec::new(),
            echoed: Vec::new(),
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
}

/// A pull request's number in a path, which the forges answer 404 to when it is not one.
pub(super) fn number(segment: &str) -> Result<u64, Missing> {
    segment.parse().map_err(|_| Missing::Endpoint)
}
