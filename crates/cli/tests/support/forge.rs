//! A forge for the tests: an HTTP server on loopback that answers as GitHub's, GitLab's or Gitea's REST API does
//! for the endpoints `preview` uses — a repository's open pull requests, one pull request, the paths one changes,
//! the token's user, a pull request's comments, commit statuses and GitHub's deployments — with each forge's shapes,
//! pagination headers, rate-limit headers and error bodies.
//!
//! It records every request and checks it as the forge would (its token in the forge's own header, GitHub's required
//! headers, only known endpoints, query parameters and methods, JSON bodies of the shape each write takes, writes
//! the forge's state refuses); what did not pass is kept in `problems()`, which tests assert is empty. Tests change
//! its state (open, push, label, close, comment as someone else), read what was written (comments, statuses,
//! deployments) and make it misbehave on demand (failed answers, rate limits, one-item pages).
//!
//! This file holds what the forges share: the pull requests, the order of the checks, and the answer to each read
//! of them; `feedback` holds what is written back and the answers to those endpoints, with the `TestForge` methods
//! about it. What differs is the `Dialect` trait (`dialect`), implemented in `github`, `gitlab` and `gitea`; `body`
//! checks the bodies of writes, `query` reads pages and checks query parameters, `http` speaks HTTP/1.1, and
//! `synthetic` makes up ids, shas and times.

#![allow(dead_code)]

mod body;
mod dialect;
mod feedback;
mod gitea;
mod github;
mod gitlab;
mod http;
mod query;
mod synthetic;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use dialect::{Dialect, Endpoint, Missing, Routed, number};
use feedback::Feedback;
use http::{Connections, Handler, Request, Response};
use query::{Page, Paging, check_query};
use synthetic::{fake_sha, iso, stable_id};

// Not every test binary that holds the forge names them.
#[allow(unused_imports)]
pub use feedback::{TestComment, TestDeployment, TestDeploymentStatus, TestStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Github,
    Gitlab,
    Gitea,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Open,
    Closed,
    Merged,
}

/// A pull request (a merge request on GitLab) as the forge holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pull {
    pub number: u64,
    pub head_sha: String,
    pub head_ref: String,
    pub base_ref: String,
    /// Its head lives in the author's fork of the repository.
    pub fork: bool,
    pub labels: Vec<String>,
    pub draft: bool,
    pub author: String,
    pub title: String,
    pub state: State,
}

impl Pull {
    /// An open pull request into `main` from a branch of the repository itself, by `octocat`, without labels.
    pub fn new(number: u64, head_ref: &str, head_sha: &str) -> Pull {
        Pull {
            number,
            head_sha: head_sha.to_string(),
            head_ref: head_ref.to_string(),
            base_ref: "main".to_string(),
            fork: false,
            labels: Vec::new(),
            draft: false,
            author: "octocat".to_string(),
            title: format!("Change {head_ref}"),
            state: State::Open,
        }
    }
}

/// One request as the forge received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// As sent, still percent-encoded.
    pub path: String,
    /// Decoded, in the order sent.
    pub query: Vec<(String, String)>,
    /// Names lowercased, in the order sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The server; dropping it stops it and ends its connections.
pub struct TestForge {
    shared: Arc<Shared>,
    connections: Arc<Connections>,
    address: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
}

impl TestForge {
    /// A forge holding one repository, `owner/name` (GitLab: `group/sub/name` too), readable with `token`.
    pub fn start(kind: Kind, repository: &str, token: &str) -> TestForge {
        let segments = repository.split('/').count();
        assert!(
            segments == 2 || (kind == Kind::Gitlab && segments > 2),
            "{repository:?} is not a repository path of {kind:?} (owner/name)"
        );
        let listener =
            TcpListener::bind("127.0.0.1:0").expect("a loopback port for the test forge");
        let address = listener.local_addr().expect("the test forge's address");
        let shared = Arc::new(Shared {
            site: Site {
                url: format!("http://{address}"),
                repository: repository.to_string(),
                token: token.to_string(),
                id: 4242,
            },
            dialect: dialect_of(kind),
            state: Mutex::new(ForgeState::default()),
            started: now(),
        });
        let connections = Arc::new(Connections::default());
        let acceptor = thread::spawn({
            let (connections, shared) = (Arc::clone(&connections), Arc::clone(&shared));
            move || http::serve(listener, connections, shared)
        });
        TestForge {
            shared,
            connections,
            address,
            acceptor: Some(acceptor),
        }
    }

    /// The web URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.shared.site.url.clone()
    }

    /// Where the REST API is: the root for GitHub (as `api.github.com`), `/api/v4` for GitLab, `/api/v1` for Gitea.
    pub fn api_base(&self) -> String {
        self.shared.site.api(self.shared.dialect)
    }

    /// Adds the pull request, or replaces the one of its number.
    pub fn open_pull(&self, pr: Pull) {
        let mut state = self.shared.lock();
        let now = state.tick();
        let closed = (pr.state != State::Open).then_some(now);
        state.feedback.commits.insert(pr.head_sha.clone());
        match state.entries.get_mut(&pr.number) {
            Some(entry) => {
                entry.closed = if pr.state == State::Open {
                    None
                } else {
                    entry.closed.or(closed)
                };
                entry.pull = pr;
                entry.updated = now;
            }
            None => {
                let entry = Entry {
                    pull: pr,
                    files: Vec::new(),
                    created: now,
                    updated: now,
                    closed,
                    fork_gone: false,
                };
                state.entries.insert(entry.pull.number, entry);
            }
        }
    }

    /// A new head commit.
    pub fn push(&self, number: u64, head_sha: &str) {
        self.shared.change(number, |entry, _| {
            entry.pull.head_sha = head_sha.to_string()
        });
        self.shared
            .lock()
            .feedback
            .commits
            .insert(head_sha.to_string());
    }

    pub fn close(&self, number: u64, merged: bool) {
        self.shared.change(number, |entry, now| {
            entry.pull.state = if merged { State::Merged } else { State::Closed };
            entry.closed = Some(now);
        });
    }

    pub fn set_labels(&self, number: u64, labels: &[&str]) {
        self.shared.change(number, |entry, _| {
            entry.pull.labels = labels.iter().map(|l| l.to_string()).collect()
        });
    }

    /// The paths the pull request changes (each shown as modified).
    pub fn set_files(&self, number: u64, files: &[&str]) {
        self.shared.change(number, |entry, _| {
            entry.files = files.iter().map(|f| f.to_string()).collect()
        });
    }

    /// The fork its head lives in is deleted: GitHub and Gitea then show `head.repo` as null.
    pub fn delete_fork(&self, number: u64) {
        self.shared.change(number, |entry, _| {
            assert!(
                entry.pull.fork,
                "pull request #{} is not from a fork",
                entry.pull.number
            );
            entry.fork_gone = true;
        });
    }

    pub fn pull(&self, number: u64) -> Option<Pull> {
        self.shared
            .lock()
            .entries
            .get(&number)
            .map(|entry| entry.pull.clone())
    }

    /// The next `n` requests are answered with `status` and the forge's error body for it.
    pub fn fail_next(&self, n: usize, status: u16) {
        let mut state = self.shared.lock();
        state.failures = n;
        state.failure_status = status;
    }

    /// The next `n` requests are refused as over the rate limit, each forge in its way.
    pub fn rate_limit_next(&self, n: usize) {
        self.shared.lock().rate_limited = n;
    }

    /// The next `n` requests are refused as sent too soon after others: GitHub's secondary rate limit, with
    /// `Retry-After`; the other forges answer their only rate limit.
    pub fn secondary_rate_limit_next(&self, n: usize) {
        self.shared.lock().secondary_limited = n;
    }

    /// Pages hold at most `n` items, whatever larger size the client asks for.
    pub fn set_page_size(&self, n: usize) {
        self.shared.lock().page_size = Some(n.max(1));
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().requests.clone()
    }

    /// Every request that did not pass the forge's checks, described; empty when the client behaved.
    pub fn problems(&self) -> Vec<String> {
        self.shared.lock().problems.clone()
    }
}

impl Drop for TestForge {
    fn drop(&mut self) {
        self.connections.stop(self.address);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        self.connections.end_all();
    }
}

fn dialect_of(kind: Kind) -> &'static dyn Dialect {
    match kind {
        Kind::Github => &github::Github,
        Kind::Gitlab => &gitlab::Gitlab,
        Kind::Gitea => &gitea::Gitea,
    }
}

/// The repository the forge holds and where it is served.
struct Site {
    url: String,
    repository: String,
    token: String,
    /// The repository's numeric id (GitHub's `/repositories/{id}`, GitLab's project id, Gitea's repo id).
    id: u64,
}

impl Site {
    fn api(&self, dialect: &dyn Dialect) -> String {
        format!("{}{}", self.url, dialect.api_prefix())
    }

    fn owner(&self) -> &str {
        self.repository
            .rsplit_once('/')
            .map_or("", |(owner, _)| owner)
    }

    fn name(&self) -> &str {
        self.repository
            .rsplit_once('/')
            .map_or(&self.repository, |(_, name)| name)
    }

    /// Whether `owner/name` in a path is this repository (the forges ignore case there).
    fn is(&self, owner: &str, name: &str) -> bool {
        self.repository
            .eq_ignore_ascii_case(&format!("{owner}/{name}"))
    }
}

/// A pull request with what the forge knows around it.
struct Entry {
    pull: Pull,
    files: Vec<String>,
    created: u64,
    updated: u64,
    closed: Option<u64>,
    fork_gone: bool,
}

impl Entry {
    fn merged_at(&self) -> Option<u64> {
        self.closed.filter(|_| self.pull.state == State::Merged)
    }
}

struct ForgeState {
    entries: BTreeMap<u64, Entry>,
    /// The forge's clock for `created_at`/`updated_at`: a fixed start, one minute more for each change.
    clock: u64,
    failures: usize,
    failure_status: u16,
    rate_limited: usize,
    secondary_limited: usize,
    page_size: Option<usize>,
    requests: Vec<Recorded>,
    problems: Vec<String>,
    feedback: Feedback,
}

impl Default for ForgeState {
    fn default() -> ForgeState {
        ForgeState {
            entries: BTreeMap::new(),
            clock: 1_714_564_800, // 2024-05-01T12:00:00Z
            failures: 0,
            failure_status: 502,
            rate_limited: 0,
            secondary_limited: 0,
            page_size: None,
            requests: Vec::new(),
            problems: Vec::new(),
            feedback: Feedback::default(),
        }
    }
}

impl ForgeState {
    fn tick(&mut self) -> u64 {
        self.clock += 60;
        self.clock
    }
}

struct Shared {
    site: Site,
    dialect: &'static dyn Dialect,
    state: Mutex<ForgeState>,
    started: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ForgeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes a pull request at the forge's next minute.
    fn change(&self, number: u64, change: impl FnOnce(&mut Entry, u64)) {
        let mut state = self.lock();
        let now = state.tick();
        let Some(entry) = state.entries.get_mut(&number) else {
            panic!("the test forge has no pull request #{number}");
        };
        change(entry, now);
        entry.updated = now;
    }

    /// The answer to a request that passed the checks.
    fn respond(
        &self,
        state: &mut ForgeState,
        request: &Request,
        problems: &mut Vec<String>,
    ) -> Response {
        let (site, dialect) = (&self.site, self.dialect);
        let routed = request
            .path
            .strip_prefix(dialect.api_prefix())
            .and_then(|path| path.strip_prefix('/'))
            .ok_or(Missing::Endpoint)
            .and_then(|path| {
                dialect.route(site, &request.method, &path.split('/').collect::<Vec<_>>())
            });
        let routed = match routed {
            Ok(routed) => routed,
            Err(missing) => {
                problems.push(match missing {
                    Missing::Repository => format!("not the repository {} (404)", site.repository),
                    _ => format!(
                        "not an endpoint of {}'s API that `preview` uses (404)",
                        dialect.name()
                    ),
                });
                return dialect.not_found(site, missing);
            }
        };
        check_query(dialect, &routed, request, problems);
        match &routed.endpoint {
            Endpoint::ListPulls => {
                let states = match dialect.listed(site, request.param("state")) {
                    Ok(states) => states,
                    Err(refusal) => return refusal,
                };
                let pulls: Vec<&Entry> = state
                    .entries
                    .values()
                    .rev()
                    .filter(|entry| states.contains(&entry.pull.state))
                    .collect();
                let page = Page::of(
                    dialect.paging(),
                    request,
                    state.page_size,
                    pulls.len(),
                    problems,
                );
                let items = pulls[page.range()]
                    .iter()
                    .map(|entry| dialect.pull(site, entry, false))
                    .collect();
                Response::json(200, &Value::Array(items))
                    .with_all(dialect.page_headers(site, request, &routed, &page))
            }
            Endpoint::Pull(number) => match state.entries.get(number) {
                Some(entry) => Response::json(200, &dialect.pull(site, entry, true)),
                None => dialect.not_found(site, Missing::Pull { files: false }),
            },
            Endpoint::PullFiles(number) => {
                let Some(entry) = state.entries.get(number) else {
                    return dialect.not_found(site, Missing::Pull { files: true });
                };
                let page = Page::of(
                    dialect.paging(),
                    request,
                    state.page_size,
                    entry.files.len(),
                    problems,
                );
                let items = entry.files[page.range()]
                    .iter()
                    .map(|path| dialect.file(site, entry, path))
                    .collect();
                Response::json(200, &Value::Array(items))
                    .with_all(dialect.page_headers(site, request, &routed, &page))
            }
            Endpoint::User => self.user(state),
            Endpoint::ListComments(number) => {
                self.list_comments(state, request, &routed, *number, problems)
            }
            Endpoint::CreateComment(number) => {
                self.create_comment(state, request, *number, problems)
            }
            Endpoint::EditComment { pull, id } => {
                self.edit_comment(state, request, (*pull, *id), problems)
            }
            Endpoint::CreateStatus(sha) => self.create_status(state, request, sha, problems),
            Endpoint::CreateDeployment => self.create_deployment(state, request, problems),
            Endpoint::CreateDeploymentStatus(id) => {
                self.create_deployment_status(state, request, *id, problems)
            }
        }
    }
}

impl Handler for Shared {
    fn answer(&self, request: &Request) -> Response {
        let mut state = self.lock();
        state.requests.push(Recorded {
            method: request.method.clone(),
            path: request.path.clone(),
            query: request.query.clone(),
            headers: request.headers.clone(),
            body: request.body.clone(),
        });
        let served = state.requests.len() as u64;
        // The checks run on every request, so that a client's mistake shows even when a failure is answered.
        let mut problems = Vec::new();
        let refusal = self.dialect.check(&self.site, request, &mut problems);
        let mut response = if state.failures > 0 {
            state.failures -= 1;
            self.dialect.error(&self.site, state.failure_status)
        } else if let Some(refusal) = refusal {
            refusal
        } else if state.rate_limited > 0 {
            state.rate_limited -= 1;
            self.dialect.rate_limited(&self.site, now() + 1)
        } else if state.secondary_limited > 0 {
            state.secondary_limited -= 1;
            self.dialect.secondary_rate_limited(&self.site, now() + 1)
        } else {
            self.respond(&mut state, request, &mut problems)
        };
        self.dialect
            .finish(&self.site, served, self.started, &mut response);
        let target = request.target();
        state.problems.extend(
            problems
                .into_iter()
                .map(|problem| format!("{} {target}: {problem}", request.method)),
        );
        response
    }

    fn malformed(&self, why: &str) {
        self.lock()
            .problems
            .push(format!("a request the forge could not read: {why}"));
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
