//! What `preview` writes back about pull requests — comments, commit statuses, GitHub's deployments — as the forge
//! keeps it, and the `TestForge` methods through which tests read it and comment as other people. The answers to
//! the endpoints that read and write it are in `endpoints`.

mod endpoints;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{TestForge, stable_id};

/// The id of the token's user.
const BOT_ID: u64 = 4242;

/// A comment on a pull request, as a test sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestComment {
    pub id: u64,
    pub author: String,
    pub body: String,
    /// How many times it was edited through the API.
    pub edits: usize,
}

/// A commit status, as a test sees it (GitLab's `name` is its context).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestStatus {
    pub state: String,
    pub context: String,
    pub description: Option<String>,
    pub target_url: Option<String>,
}

/// A GitHub deployment, as a test sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestDeployment {
    pub id: u64,
    pub sha: String,
    pub environment: String,
    pub transient_environment: bool,
    pub auto_merge: bool,
    /// Empty when the body named none (GitHub then requires every context the commit has).
    pub required_contexts: Vec<String>,
    pub statuses: Vec<TestDeploymentStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestDeploymentStatus {
    pub state: String,
    pub environment_url: Option<String>,
    pub log_url: Option<String>,
}

/// Someone who writes: the token's user or another.
#[derive(Debug, Clone)]
pub(super) struct Person {
    pub login: String,
    pub id: u64,
}

pub(super) struct Comment {
    pub id: u64,
    /// The pull request's number.
    pub number: u64,
    pub author: Person,
    pub body: String,
    pub created: u64,
    pub updated: u64,
    pub edits: usize,
}

/// What a commit-status request says, in the same terms for every forge.
pub(super) struct StatusFields {
    pub state: String,
    pub context: String,
    pub description: Option<String>,
    pub target_url: Option<String>,
    /// GitLab's `ref`.
    pub reference: Option<String>,
}

pub(super) struct CommitStatus {
    pub id: u64,
    pub sha: String,
    pub creator: Person,
    pub created: u64,
    pub fields: StatusFields,
}

pub(super) struct Deployment {
    pub id: u64,
    pub sha: String,
    /// The `ref` as sent.
    pub reference: String,
    pub task: String,
    pub payload: Value,
    /// Where it is now: a status may move it.
    pub environment: String,
    pub original_environment: String,
    pub description: Option<String>,
    pub transient: bool,
    pub production: bool,
    pub auto_merge: bool,
    pub required_contexts: Option<Vec<String>>,
    pub creator: Person,
    pub created: u64,
    pub statuses: Vec<DeploymentStatus>,
}

pub(super) struct DeploymentStatus {
    pub id: u64,
    pub state: String,
    pub description: String,
    pub environment: String,
    pub environment_url: Option<String>,
    pub log_url: Option<String>,
    pub creator: Person,
    pub created: u64,
}

/// What the forge keeps of what was written.
pub(super) struct Feedback {
    /// The token's user's login.
    pub bot: String,
    next_id: u64,
    /// By id, which is also the order they were made in.
    pub comments: BTreeMap<u64, Comment>,
    /// In the order posted.
    pub statuses: Vec<CommitStatus>,
    pub deployments: Vec<Deployment>,
    /// Every head a pull request has had: the commits statuses may be posted for.
    pub commits: BTreeSet<String>,
}

impl Default for Feedback {
    fn default() -> Feedback {
        Feedback {
            bot: "preview-bot".to_string(),
            next_id: 100_000,
            comments: BTreeMap::new(),
            statuses: Vec::new(),
            deployments: Vec::new(),
            commits: BTreeSet::new(),
        }
    }
}

impl Feedback {
    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn person(&self, login: &str) -> Person {
        Person {
            login: login.to_string(),
            id: if login == self.bot {
                BOT_ID
            } else {
                stable_id(login)
            },
        }
    }

    fn bot(&self) -> Person {
        self.person(&self.bot)
    }

    fn add_comment(&mut self, number: u64, author: Person, body: String, now: u64) -> &Comment {
        let id = self.next_id();
        self.comments.entry(id).or_insert(Comment {
            id,
            number,
            author,
            body,
            created: now,
            updated: now,
            edits: 0,
        })
    }

    /// The latest state of each context on `sha` that a deployment requires: the ones named, or all of them.
    fn required_states(&self, sha: &str, required: Option<&[String]>) -> Vec<(String, String)> {
        let mut latest = BTreeMap::new();
        for status in self.statuses.iter().filter(|status| status.sha == sha) {
            latest.insert(status.fields.context.clone(), status.fields.state.clone());
        }
        match required {
            None => latest.into_iter().collect(),
            Some(contexts) => contexts
                .iter()
                .map(|context| {
                    let state = latest.get(context).map_or("missing", String::as_str);
                    (context.clone(), state.to_string())
                })
                .collect(),
        }
    }
}

impl Feedback {
    /// GitHub's `auto_inactive`: the earlier deployments to the same environment, neither transient nor production,
    /// that had succeeded are made inactive by the success of the one at `index`.
    fn deactivate_before(&mut self, index: usize, now: u64) {
        let environment = self.deployments[index].environment.clone();
        let creator = self.bot();
        let earlier: Vec<usize> = (0..index)
            .filter(|&i| {
                let deployment = &self.deployments[i];
                deployment.environment == environment
                    && !deployment.transient
                    && !deployment.production
                    && deployment
                        .statuses
                        .last()
                        .is_some_and(|s| s.state == "success")
            })
            .collect();
        for i in earlier {
            let id = self.next_id();
            let deployment = &mut self.deployments[i];
            let last = deployment.statuses.last();
            let (environment_url, log_url) = (
                last.and_then(|s| s.environment_url.clone()),
                last.and_then(|s| s.log_url.clone()),
            );
            deployment.statuses.push(DeploymentStatus {
                id,
                state: "inactive".into(),
                description: String::new(),
                environment: deployment.environment.clone(),
                environment_url,
                log_url,
                creator: creator.clone(),
                created: now,
            });
        }
    }
}

impl TestForge {
    /// The comments on a pull request, oldest first.
    pub fn comments(&self, number: u64) -> Vec<TestComment> {
        self.shared
            .lock()
            .feedback
            .comments
            .values()
            .filter(|comment| comment.number == number)
            .map(|comment| TestComment {
                id: comment.id,
                author: comment.author.login.clone(),
                body: comment.body.clone(),
                edits: comment.edits,
            })
            .collect()
    }

    /// The statuses posted for a commit, in the order posted.
    pub fn statuses(&self, sha: &str) -> Vec<TestStatus> {
        self.shared
            .lock()
            .feedback
            .statuses
            .iter()
            .filter(|status| status.sha == sha)
            .map(|status| TestStatus {
                state: status.fields.state.clone(),
                context: status.fields.context.clone(),
                description: status.fields.description.clone(),
                target_url: status.fields.target_url.clone(),
            })
            .collect()
    }

    /// GitHub's deployments, in the order made, each with its statuses in the order posted.
    pub fn deployments(&self) -> Vec<TestDeployment> {
        self.shared
            .lock()
            .feedback
            .deployments
            .iter()
            .map(|deployment| TestDeployment {
                id: deployment.id,
                sha: deployment.sha.clone(),
                environment: deployment.environment.clone(),
                transient_environment: deployment.transient,
                auto_merge: deployment.auto_merge,
                required_contexts: deployment.required_contexts.clone().unwrap_or_default(),
                statuses: deployment
                    .statuses
                    .iter()
                    .map(|status| TestDeploymentStatus {
                        state: status.state.clone(),
                        environment_url: status.environment_url.clone(),
                        log_url: status.log_url.clone(),
                    })
                    .collect(),
            })
            .collect()
    }

    /// The login of the token's user, who writes what `preview` writes (`preview-bot` unless set; GitHub shows a
    /// login ending in `[bot]` as an app's bot).
    pub fn set_bot(&self, login: &str) {
        self.shared.lock().feedback.bot = login.to_string();
    }

    /// A comment on pull request `number` written by `author` elsewhere than through the API; its id.
    pub fn add_comment(&self, number: u64, author: &str, body: &str) -> u64 {
        let mut state = self.shared.lock();
        assert!(
            state.entries.contains_key(&number),
            "the test forge has no pull request #{number}"
        );
        let now = state.tick();
        let author = state.feedback.person(author);
        state
            .feedback
            .add_comment(number, author, body.to_string(), now)
            .id
    }

    /// Deletes a comment, as its author or a maintainer may at any time.
    pub fn delete_comment(&self, id: u64) {
        let removed = self.shared.lock().feedback.comments.remove(&id);
        assert!(removed.is_some(), "the test forge has no comment {id}");
    }
}
