//! Pull requests drive previews, through the real daemon: signed webhooks as GitHub, GitLab and Gitea send them,
//! a test forge that answers their REST APIs as documented (and checks every request), and real git repositories
//! the commits are fetched from. Each story opens, pushes and closes pull requests and looks at what runs: the
//! preview's URL answering with the right commit, environments made and destroyed, deployments cancelled when a
//! newer head or a close beats them, and the reconciler catching up with a forge after it was down.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use preview_testing::TempDir;
use serde_json::{Value, json};
use support::forge::{Kind, Pull, TestForge};
use support::{Daemon, ReleaseAccounts, git, ok, wait_for};

const HOOK_SECRET: &str = "the-webhook-secret-of-the-forge";
const TOKEN: &str = "forge-api-token-0123456789";
const REPOSITORY: &str = "octo-org/plain";

/// The app: answers with its environment and commit.
const WEB: &str = include_str!("plain/web.py");

/// The project's spec: one app (`build` as given), the forge's settings, and the preview policy's `extra` keys.
fn spec(build: &str, forge: &str, extra: &str) -> String {
    format!(
        "project: plain
domain:
  base: plain.localhost
secrets: [HOOK, FORGE_TOKEN]
services:
  web:
    build: \"{build}\"
    run: python3 web.py
    ports: [8000]
    health: {{ http: /healthz }}
    public: true
environments:
  staging: {{}}
previews:
  blueprint: staging
{extra}  forge:
{forge}"
    )
}

/// A forge's settings in the spec: the test forge's API, the origin repository, the secrets.
fn remote_forge(kind: Kind, forge: &TestForge, origin: &Path) -> String {
    let (name, url) = match kind {
        Kind::Github => ("github", format!("    api_url: {}\n", forge.api_base())),
        Kind::Gitlab => ("gitlab", format!("    url: {}\n", forge.url())),
        Kind::Gitea => ("gitea", format!("    url: {}\n", forge.url())),
    };
    format!(
        "    kind: {name}
    repository: {REPOSITORY}
{url}    clone_url: file://{}
    webhook_secret: HOOK
    token: FORGE_TOKEN
",
        origin.display()
    )
}

/// The forge's repository (`origin.git`, bare) holding the project on `main`, and a working clone of it — the
/// project's registered directory, where pull requests' commits are made.
fn repositories(dir: &Path, spec: &str) -> (PathBuf, PathBuf) {
    let work = dir.join("work");
    std::fs::create_dir_all(&work).expect("work");
    std::fs::write(work.join("preview.yaml"), spec).expect("spec");
    std::fs::write(work.join("web.py"), WEB).expect("web.py");
    git(&work, &["init", "--quiet", "--initial-branch=main"]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "--quiet", "-m", "the project"]);
    let origin = dir.join("origin.git");
    git(
        dir,
        &[
            "clone",
            "--quiet",
            "--bare",
            work.to_str().expect("path"),
            origin.to_str().expect("path"),
        ],
    );
    // The daemon's builders read the registered directory's repository.
    let _ = std::process::Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(dir)
        .status();
    (work, origin)
}

/// A commit on `branch` (made from `main` when new) changing `file`, published to the forge as pull request
/// `number`'s head (`refs/pull/N/head`, or `refs/merge-requests/N/head` on GitLab); its id.
fn push_head(
    work: &Path,
    origin: &Path,
    kind: Kind,
    number: u64,
    branch: &str,
    file: &str,
) -> String {
    let current = git(work, &["rev-parse", "--abbrev-ref", "HEAD"]);
    if current.trim() != branch {
        let exists = std::process::Command::new("git")
            .arg("-C")
            .arg(work)
            .args([
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("refs/heads/{branch}"),
            ])
            .status()
            .expect("git")
            .success();
        if exists {
            git(work, &["checkout", "--quiet", branch]);
        } else {
            git(work, &["checkout", "--quiet", "-b", branch, "main"]);
        }
    }
    std::fs::write(work.join(file), format!("{file} {}\n", rand_suffix())).expect("file");
    git(work, &["add", "-A"]);
    git(
        work,
        &["commit", "--quiet", "-m", &format!("change {file}")],
    );
    let sha = git(work, &["rev-parse", "HEAD"]).trim().to_owned();
    let reference = match kind {
        Kind::Gitlab => format!("refs/merge-requests/{number}/head"),
        _ => format!("refs/pull/{number}/head"),
    };
    git(
        work,
        &[
            "push",
            "--quiet",
            "--force",
            origin.to_str().expect("path"),
            &format!("{sha}:{reference}"),
        ],
    );
    git(work, &["checkout", "--quiet", "main"]);
    sha
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_nanos()
}

fn hmac_hex(body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, HOOK_SECRET.as_bytes());
    ring::hmac::sign(&key, body)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A pull-request event's body as each forge documents it, for `pull` after `action` (GitHub's words: `opened`,
/// `synchronize`, `closed`, `labeled`, `unlabeled`, `reopened`).
fn event_body(kind: Kind, action: &str, pull: &Pull) -> Vec<u8> {
    let open = matches!(pull.state, support::forge::State::Open);
    let head_repo = if pull.fork {
        "a-contributor/plain"
    } else {
        REPOSITORY
    };
    match kind {
        Kind::Github | Kind::Gitea => {
            let action = match (kind, action) {
                (Kind::Gitea, "synchronize") => "synchronized",
                (Kind::Gitea, "labeled" | "unlabeled") => "label_updated",
                (_, other) => other,
            };
            json!({
                "action": action,
                "number": pull.number,
                "pull_request": {
                    "number": pull.number,
                    "state": if open { "open" } else { "closed" },
                    "title": pull.title,
                    "html_url": format!("https://forge.test/{REPOSITORY}/pull/{}", pull.number),
                    "user": { "login": pull.author },
                    "draft": pull.draft,
                    "merged": matches!(pull.state, support::forge::State::Merged),
                    "labels": pull.labels.iter().map(|l| json!({ "name": l, "color": "ededed" })).collect::<Vec<_>>(),
                    "head": { "ref": pull.head_ref, "sha": pull.head_sha, "repo": { "full_name": head_repo } },
                    "base": { "ref": pull.base_ref, "sha": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c", "repo": { "full_name": REPOSITORY } }
                },
                "repository": { "full_name": REPOSITORY },
                "sender": { "login": pull.author }
            })
        }
        Kind::Gitlab => {
            let (action, oldrev) = match action {
                "opened" => ("open", None),
                "synchronize" => ("update", Some("da1560886d4f094c3e6c9ef40349f7d38b5d27d7")),
                "closed" => ("close", None),
                "reopened" => ("reopen", None),
                _ => ("update", None),
            };
            let mut attributes = json!({
                "iid": pull.number,
                "id": 90_000 + pull.number,
                "action": action,
                "state": if open { "opened" } else { "closed" },
                "title": pull.title,
                "url": format!("https://forge.test/{REPOSITORY}/-/merge_requests/{}", pull.number),
                "source_branch": pull.head_ref,
                "target_branch": pull.base_ref,
                "source_project_id": if pull.fork { 99 } else { 14 },
                "target_project_id": 14,
                "draft": pull.draft,
                "work_in_progress": pull.draft,
                "last_commit": { "id": pull.head_sha, "message": "a change" },
                "source": { "path_with_namespace": head_repo },
                "target": { "path_with_namespace": REPOSITORY }
            });
            if let Some(oldrev) = oldrev {
                attributes["oldrev"] = json!(oldrev);
            }
            json!({
                "object_kind": "merge_request",
                "event_type": "merge_request",
                "user": { "username": pull.author, "name": "Octo Cat" },
                "project": { "id": 14, "path_with_namespace": REPOSITORY },
                "object_attributes": attributes,
                "labels": pull.labels.iter().map(|l| json!({ "title": l })).collect::<Vec<_>>(),
                "changes": {}
            })
        }
    }
    .to_string()
    .into_bytes()
}

/// Sends a signed delivery of `pull`'s event; the receiver's status.
fn deliver(daemon: &Daemon, kind: Kind, action: &str, pull: &Pull, delivery: &str) -> u16 {
    let body = event_body(kind, action, pull);
    let signature = hmac_hex(&body);
    let github_signature = format!("sha256={signature}");
    let headers: Vec<(&str, &str)> = match kind {
        Kind::Github => vec![
            ("X-GitHub-Event", "pull_request"),
            ("X-GitHub-Delivery", delivery),
            ("X-Hub-Signature-256", &github_signature),
        ],
        Kind::Gitea => vec![
            ("X-Gitea-Event", "pull_request"),
            ("X-Gitea-Delivery", delivery),
            ("X-Gitea-Signature", &signature),
        ],
        Kind::Gitlab => vec![
            ("X-Gitlab-Event", "Merge Request Hook"),
            ("Idempotency-Key", delivery),
            ("X-Gitlab-Token", HOOK_SECRET),
        ],
    };
    let mut all = vec![("Content-Type", "application/json")];
    all.extend(headers);
    let (status, answer) = daemon.http_with("POST", "/webhooks/plain", &all, &body);
    assert!(status == 202 || status == 200, "{status} {answer}");
    status
}

fn register(daemon: &Daemon, work: &Path) {
    ok(daemon.cli(&[
        "project",
        "register",
        "-f",
        work.join("preview.yaml").to_str().expect("path"),
    ]));
    ok(daemon.cli_with_input(
        &[
            "--project",
            "plain",
            "secret",
            "set",
            "HOOK",
            "--scope",
            "project",
        ],
        HOOK_SECRET,
    ));
    ok(daemon.cli_with_input(
        &[
            "--project",
            "plain",
            "secret",
            "set",
            "FORGE_TOKEN",
            "--scope",
            "project",
        ],
        TOKEN,
    ));
}

fn create_staging(daemon: &Daemon) {
    let answer = daemon.json(&["--project", "plain", "env", "create", "staging"]);
    let id = answer["deployment"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"))
        .to_owned();
    let ended = support::wait_until_ended(daemon, &id);
    assert_eq!(ended["deployment"]["status"], "committed", "{ended}");
}

fn previews(daemon: &Daemon) -> Vec<Value> {
    daemon.json(&["--project", "plain", "previews", "list"])["previews"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn environments(daemon: &Daemon) -> Vec<String> {
    daemon.json(&["--project", "plain", "env", "list"])["environments"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The commit environment `name` runs, when it exists and its last deployment committed.
fn running_commit(daemon: &Daemon, name: &str) -> Option<String> {
    let list = daemon.json(&["--project", "plain", "env", "list"]);
    let environment = list["environments"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)?
        .clone();
    if environment["last_deployment"]["status"] != "committed" {
        return None;
    }
    environment["commit"].as_str().map(str::to_owned)
}

/// The deployments of environment `name`, oldest first.
fn deployments(daemon: &Daemon, name: &str) -> Vec<Value> {
    let output = daemon.cli(&[
        "--project",
        "plain",
        "--output",
        "json",
        "deployments",
        name,
    ]);
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    let mut list = answer["deployments"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    list.reverse();
    list
}

/// What the preview of pull request `number` answers through the gateway: its environment and commit.
fn answer_of(data: &Path, number: u64) -> Option<Value> {
    let gateway = support::gateway_http(data);
    let (status, body) = support::request(
        &gateway,
        "GET",
        &format!("web-pr-{number}.plain.localhost"),
        "/",
        "",
    );
    (status == 200).then_some(body)
}

fn wait_answering(daemon: &Daemon, number: u64, commit: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while !answer_of(&daemon.data, number).is_some_and(|a| a["commit"] == commit) {
        assert!(
            std::time::Instant::now() < deadline,
            "pr-{number} does not answer at {commit}: {:?}\n{}",
            previews(daemon),
            support::read_log(&daemon.data)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_gone(daemon: &Daemon, number: u64) {
    let name = format!("pr-{number}");
    wait_for(
        &format!("{name} to be destroyed"),
        Duration::from_secs(90),
        || {
            !environments(daemon).contains(&name)
                && deployments(daemon, &name)
                    .last()
                    .is_none_or(|d| d["status"] != "running" && d["status"] != "rolling_back")
        },
    );
}

/// The whole story on one forge: open → the preview answers at the head; push → at the new head; (with labels)
/// label removed → destroyed, added again → made again; close → destroyed. Every request to the forge passed its
/// checks, and every delivery is listed.
fn story(kind: Kind, dir_name: &str, ports: &str) {
    let dir = TempDir::new(dir_name);
    let forge = TestForge::start(kind, REPOSITORY, TOKEN);
    let labels = matches!(kind, Kind::Github);
    let extra = if labels { "  labels: [preview]\n" } else { "" };
    let origin_path = dir.path().join("origin.git");
    let text = spec("true", &remote_forge(kind, &forge, &origin_path), extra);
    let (work, origin) = repositories(dir.path(), &text);
    let data = dir.path().join("data");
    let _release = ReleaseAccounts(data.clone());
    let daemon = support::local_daemon(&data, ports, &[], None);
    register(&daemon, &work);
    create_staging(&daemon);

    // Opened: the preview is made at the head, and answers.
    let first = push_head(&work, &origin, kind, 7, "faster-checkout", "checkout.txt");
    let mut pull = Pull::new(7, "faster-checkout", &first);
    if labels {
        pull.labels = vec!["preview".to_owned()];
    }
    forge.open_pull(pull);
    let current = |forge: &TestForge| forge.pull(7).expect("pull request 7");
    deliver(&daemon, kind, "opened", &current(&forge), "delivery-1");
    wait_answering(&daemon, 7, &first);
    assert_eq!(answer_of(&data, 7).expect("answer")["environment"], "pr-7");
    // The pull request is told: one comment with the URL and the phases, a success on the head, a deployment.
    told(&forge, kind, &first, "live");
    let comment = sticky(&forge);
    for part in [
        "web-pr-7.plain.localhost",
        "| build |",
        "| start |",
        "**total**",
        &first[..12],
    ] {
        assert!(comment.body.contains(part), "{part}: {}", comment.body);
    }
    // The secrets that run previews never reach a pull request's code.
    let variables = daemon
        .json(&["--project", "plain", "vars", "show", "pr-7"])
        .to_string();
    assert!(
        !variables.contains("FORGE_TOKEN") && !variables.contains("\"HOOK\""),
        "{variables}"
    );
    let blueprint = daemon
        .json(&["--project", "plain", "vars", "show", "staging"])
        .to_string();
    assert!(blueprint.contains("FORGE_TOKEN"), "{blueprint}");

    // Pushed: redeployed at the new head.
    let second = push_head(&work, &origin, kind, 7, "faster-checkout", "checkout.txt");
    forge.push(7, &second);
    deliver(&daemon, kind, "synchronize", &current(&forge), "delivery-2");
    wait_answering(&daemon, 7, &second);
    told(&forge, kind, &second, "live");
    // The first head's success stays its own; on GitHub its deployment is retired.
    assert_eq!(last_status(&forge, &first).as_deref(), Some("success"));
    if matches!(kind, Kind::Github) {
        wait_for(
            "the first deployment to be retired",
            Duration::from_secs(30),
            || deployment_state(&forge, &first).as_deref() == Some("inactive"),
        );
    }

    if labels {
        // The label removed: the preview goes; added again: it comes back at the same head.
        forge.set_labels(7, &[]);
        deliver(&daemon, kind, "unlabeled", &current(&forge), "delivery-3");
        wait_gone(&daemon, 7);
        forge.set_labels(7, &["preview"]);
        deliver(&daemon, kind, "labeled", &current(&forge), "delivery-4");
        wait_answering(&daemon, 7, &second);
    }

    // Closed: destroyed.
    forge.close(7, false);
    deliver(&daemon, kind, "closed", &current(&forge), "delivery-5");
    wait_gone(&daemon, 7);
    assert!(answer_of(&data, 7).is_none());
    told(&forge, kind, &second, "removed");
    let comment = sticky(&forge);
    assert!(
        comment.edits >= 3,
        "edited in place through the story: {comment:?}"
    );
    if matches!(kind, Kind::Github) {
        wait_for(
            "every deployment to be retired",
            Duration::from_secs(30),
            || {
                forge
                    .deployments()
                    .iter()
                    .all(|d| d.statuses.last().is_some_and(|s| s.state == "inactive"))
            },
        );
        let deployments = forge.deployments();
        assert!(deployments.len() >= 2, "{deployments:?}");
        assert!(deployments.iter().all(|d| d.transient_environment
            && !d.auto_merge
            && d.required_contexts.is_empty()
            && d.environment == "pr-7"));
    }

    let listed = previews(&daemon);
    let seven = listed.iter().find(|p| p["number"] == 7).expect("listed");
    assert_eq!(seven["open"], false, "{seven}");
    let deliveries = daemon.json(&["--project", "plain", "webhooks", "list"])["deliveries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        deliveries
            .iter()
            .filter(|d| d["verdict"] == "accepted")
            .count()
            >= 3,
        "{deliveries:?}"
    );
    // Each accepted delivery says what the reconciler made of its pull request since.
    assert!(
        deliveries
            .iter()
            .filter(|d| d["verdict"] == "accepted")
            .all(|d| d["reconciler"]
                .as_str()
                .is_some_and(|o| o.contains("closed"))),
        "{deliveries:?}"
    );
    // Everything was asked of the forge as its API documents, with the token.
    let problems = forge.problems();
    assert!(problems.is_empty(), "{problems:?}");
    let requests = forge.requests();
    let list_path = match kind {
        Kind::Github => format!("/repos/{REPOSITORY}/pulls"),
        Kind::Gitlab => "/api/v4/projects/octo-org%2Fplain/merge_requests".to_owned(),
        Kind::Gitea => format!("/api/v1/repos/{REPOSITORY}/pulls"),
    };
    assert!(
        requests.iter().any(|r| r.path == list_path),
        "the open pull requests were listed at start: {:?}",
        requests.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    assert!(
        requests
            .iter()
            .any(|r| r.path.starts_with(&format!("{list_path}/7"))),
        "a pull request a webhook named was read again"
    );
    // The log says why the preview went.
    let log = support::read_log(&data);
    assert!(log.contains("destroying `pr-7`"), "{log}");
    assert!(!log.contains(TOKEN) && !log.contains(HOOK_SECRET));
    daemon.stop();
}

#[test]
fn github_pull_requests_make_update_and_destroy_previews() {
    story(Kind::Github, "pr-github", "18000-18199");
}

#[test]
fn gitlab_merge_requests_make_update_and_destroy_previews() {
    story(Kind::Gitlab, "pr-gitlab", "18200-18399");
}

#[test]
fn gitea_pull_requests_make_update_and_destroy_previews() {
    story(Kind::Gitea, "pr-gitea", "18400-18599");
}

/// A project on a GitHub test forge with its repositories, and a daemon on it — the local runtime on `ports`, or the
/// recording runtime when `None` — with the blueprint made.
/// Fields drop in order: the daemon stops first, then its accounts go (read from its data directory), and only then
/// the directories.
struct Setup {
    daemon: Daemon,
    _release: ReleaseAccounts,
    forge: TestForge,
    work: PathBuf,
    origin: PathBuf,
    dir: TempDir,
}

impl Setup {
    fn new(name: &str, build: &str, extra: &str, ports: Option<&str>) -> Setup {
        Setup::with_flags(name, build, extra, ports, &[])
    }

    /// [`Setup::new`] with a daemon started with `flags` too (the local runtime only).
    fn with_flags(
        name: &str,
        build: &str,
        extra: &str,
        ports: Option<&str>,
        flags: &[&str],
    ) -> Setup {
        let dir = TempDir::new(name);
        let forge = TestForge::start(Kind::Github, REPOSITORY, TOKEN);
        let origin = dir.path().join("origin.git");
        let text = spec(build, &remote_forge(Kind::Github, &forge, &origin), extra);
        let (work, origin) = repositories(dir.path(), &text);
        let data = dir.path().join("data");
        let release = ReleaseAccounts(data.clone());
        let daemon = match ports {
            Some(ports) => support::local_daemon(&data, ports, flags, None),
            None => Setup::daemon(&data, None),
        };
        register(&daemon, &work);
        create_staging(&daemon);
        Setup {
            dir,
            forge,
            work,
            origin,
            daemon,
            _release: release,
        }
    }

    fn daemon(data: &Path, ports: Option<&str>) -> Daemon {
        match ports {
            Some(ports) => support::local_daemon(data, ports, &[], None),
            None => Daemon::start(data, &[]),
        }
    }

    fn head(&self, number: u64, file: &str) -> String {
        push_head(
            &self.work,
            &self.origin,
            Kind::Github,
            number,
            &format!("change-{number}"),
            file,
        )
    }

    /// Opens pull request `number` on the forge at a new head and delivers the event; the head.
    fn open(&self, number: u64, fork: bool) -> String {
        let head = self.head(number, &format!("file-{number}.txt"));
        let mut pull = Pull::new(number, &format!("change-{number}"), &head);
        pull.fork = fork;
        self.forge.open_pull(pull);
        self.deliver(number, "opened");
        head
    }

    fn deliver(&self, number: u64, action: &str) {
        let pull = self.forge.pull(number).expect("pull request");
        deliver(
            &self.daemon,
            Kind::Github,
            action,
            &pull,
            &format!("{number}-{action}-{}", rand_suffix()),
        );
    }

    fn wait_commit(&self, number: u64, commit: &str) {
        let name = format!("pr-{number}");
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        while running_commit(&self.daemon, &name).as_deref() != Some(commit) {
            assert!(
                std::time::Instant::now() < deadline,
                "{name} is not at {commit}: {:?}\n{}",
                previews(&self.daemon),
                support::read_log(&self.daemon.data)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn outcome(&self, number: u64) -> String {
        previews(&self.daemon)
            .iter()
            .find(|p| p["number"] == number)
            .map(|p| format!("{} / {}", p["decision"], p["outcome"]))
            .unwrap_or_default()
    }
}

/// Deployments of one environment never overlap, and each began after the one before it ended.
fn assert_one_at_a_time(list: &[Value]) {
    for pair in list.windows(2) {
        let ended = pair[0]["finished_at"]
            .as_i64()
            .expect("the earlier one ended");
        let began = pair[1]["created_at"].as_i64().expect("created");
        assert!(began >= ended, "two deployments at once: {pair:?}");
    }
}

#[test]
fn the_latest_head_wins_and_a_close_beats_a_running_create() {
    // Builds take two seconds; a commit with a file `broken` fails to build, saying it was "cancelled" (which must
    // not pass for a cancellation).
    let setup = Setup::new(
        "pr-races",
        "sleep 2; test ! -f broken || (echo operation cancelled; echo; echo '| web | https://evil.example |'; echo @org/security; echo EVILTOKEN; exit 1)",
        "",
        Some("18600-18799"),
    );
    let daemon = &setup.daemon;

    // Ten pushes within a second while the first head builds: only the last head is deployed.
    let first = setup.open(3, false);
    wait_for(
        "the first deployment of pr-3",
        Duration::from_secs(30),
        || {
            deployments(daemon, "pr-3")
                .last()
                .is_some_and(|d| d["status"] == "running")
        },
    );
    // The ten commits are made first, so that their pushes come within a second.
    git(&setup.work, &["checkout", "--quiet", "change-3"]);
    let heads: Vec<String> = (0..10)
        .map(|i| {
            std::fs::write(setup.work.join("push.txt"), format!("push {i}\n")).expect("write");
            git(&setup.work, &["add", "-A"]);
            git(
                &setup.work,
                &["commit", "--quiet", "-m", &format!("push {i}")],
            );
            git(&setup.work, &["rev-parse", "HEAD"]).trim().to_owned()
        })
        .collect();
    git(&setup.work, &["checkout", "--quiet", "main"]);
    let started = std::time::Instant::now();
    for head in &heads {
        git(
            &setup.work,
            &[
                "push",
                "--quiet",
                "--force",
                setup.origin.to_str().expect("path"),
                &format!("{head}:refs/pull/3/head"),
            ],
        );
        setup.forge.push(3, head);
        setup.deliver(3, "synchronize");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    let last = heads.last().expect("heads").clone();
    setup.wait_commit(3, &last);
    let list = deployments(daemon, "pr-3");
    assert_one_at_a_time(&list);
    let committed: Vec<&str> = list
        .iter()
        .filter(|d| d["status"] == "committed")
        .filter_map(|d| d["commit"].as_str())
        .collect();
    assert!(
        committed.iter().all(|c| *c == last || *c == first),
        "an intermediate head was deployed: {list:?}"
    );
    assert!(
        list.len() <= 4,
        "superseded heads were deployed one by one: {list:?}"
    );
    assert!(
        list.iter().any(|d| d["status"] == "rolled_back"),
        "the deployment of the first head was cancelled: {list:?}"
    );
    let log = support::read_log(&daemon.data);
    assert!(log.contains("moved on to"), "{log}");

    // A close while the preview's first deployment runs: it is cancelled and nothing is left.
    setup.open(4, false);
    wait_for("the deployment of pr-4", Duration::from_secs(30), || {
        deployments(daemon, "pr-4")
            .last()
            .is_some_and(|d| d["status"] == "running")
    });
    setup.forge.close(4, false);
    setup.deliver(4, "closed");
    wait_gone(daemon, 4);
    let list = deployments(daemon, "pr-4");
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["status"], "rolled_back", "{list:?}");
    let accounts =
        std::fs::read_to_string(daemon.data.join("local/accounts.json")).unwrap_or_default();
    assert!(!accounts.contains("plain/pr-4"), "{accounts}");

    // A push that fails to build: tried once, not again at that commit; the preview keeps its earlier commit and
    // the pull request is told which step failed — no success is left on the failed head.
    let good = setup.open(5, false);
    setup.wait_commit(5, &good);
    let broken = setup.head(5, "broken");
    setup.forge.push(5, &broken);
    setup.deliver(5, "synchronize");
    wait_for(
        "the broken head's deployment to end",
        Duration::from_secs(60),
        || {
            deployments(daemon, "pr-5")
                .last()
                .is_some_and(|d| d["commit"] == broken.as_str() && d["status"] == "rolled_back")
        },
    );
    let tried = deployments(daemon, "pr-5").len();
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        deployments(daemon, "pr-5").len(),
        tried,
        "a failed head is not tried again"
    );
    // Still running the good commit (its last deployment, the failed one, changed nothing).
    let listed = daemon.json(&["--project", "plain", "env", "list"]);
    let five = listed["environments"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["name"] == "pr-5"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(five["commit"], good.as_str(), "{five}");
    assert_eq!(
        answer_of(&daemon.data, 5).expect("it answers")["commit"],
        good.as_str()
    );
    assert!(setup.outcome(5).contains("failed"), "{}", setup.outcome(5));
    wait_for("the failure to be told", Duration::from_secs(30), || {
        setup
            .forge
            .statuses(&broken)
            .last()
            .is_some_and(|s| s.state == "failure")
            && setup
                .forge
                .comments(5)
                .iter()
                .any(|c| c.body.contains(": failed") && c.body.contains(&broken[..12]))
    });
    assert!(
        setup
            .forge
            .statuses(&broken)
            .iter()
            .all(|s| s.state != "success")
    );
    // The comment names the step that failed, never the build's output (which the pull request writes).
    let told: Vec<String> = setup
        .forge
        .comments(5)
        .into_iter()
        .map(|c| c.body)
        .collect();
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(told[0].contains("build/web"), "{}", told[0]);
    assert!(
        !told[0].contains("EVILTOKEN") && !told[0].contains("evil") && !told[0].contains("@org"),
        "{}",
        told[0]
    );
    // A sync tries it once more.
    ok(daemon.cli(&["--project", "plain", "previews", "sync"]));
    wait_for("one more try", Duration::from_secs(60), || {
        let list = deployments(daemon, "pr-5");
        list.len() == tried + 1 && list.last().is_some_and(|d| d["status"] == "rolled_back")
    });
    let problems = setup.forge.problems();
    assert!(problems.is_empty(), "{problems:?}");
}

/// A small deterministic shuffle (the tests must not depend on a random crate's stream).
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        items.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

#[test]
fn a_hundred_events_for_twenty_pull_requests_at_once_leave_exactly_the_right_previews() {
    let setup = Setup::new("pr-hundred", "true", "", None);
    let daemon = &setup.daemon;
    // Twenty pull requests, each pushed one to four times; every fourth is closed in the end.
    let mut events: Vec<(u64, &str, Pull, String)> = Vec::new();
    let mut finals = Vec::new();
    for number in 1..=20u64 {
        let pushes = 1 + (number % 4) as usize;
        let mut heads = Vec::new();
        for push in 0..pushes {
            heads.push(setup.head(number, &format!("f-{number}-{push}.txt")));
        }
        let branch = format!("change-{number}");
        for (i, head) in heads.iter().enumerate() {
            let action = if i == 0 { "opened" } else { "synchronize" };
            events.push((
                number,
                action,
                Pull::new(number, &branch, head),
                format!("d-{number}-{i}"),
            ));
        }
        let last = heads.last().expect("a head").clone();
        let mut final_state = Pull::new(number, &branch, &last);
        if number % 4 == 0 {
            final_state.state = support::forge::State::Closed;
            events.push((
                number,
                "closed",
                final_state.clone(),
                format!("d-{number}-closed"),
            ));
        }
        setup.forge.open_pull(Pull::new(number, &branch, &last));
        if number % 4 == 0 {
            setup.forge.close(number, false);
        }
        finals.push((number, last, number % 4 != 0));
    }
    // Some deliveries come twice (a forge redelivers), and everything arrives in any order, at once.
    let duplicates: Vec<_> = events.iter().step_by(5).cloned().collect();
    events.extend(duplicates);
    shuffle(&mut events, 0x9e37_79b9_7f4a_7c15);
    assert!(events.len() >= 60, "{}", events.len());
    let accepted = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for chunk in events.chunks(events.len().div_ceil(8)) {
            let accepted = &accepted;
            scope.spawn(move || {
                for (_, action, pull, delivery) in chunk {
                    if deliver(daemon, Kind::Github, action, pull, delivery) == 202 {
                        accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            });
        }
    });
    let unique: std::collections::BTreeSet<&str> =
        events.iter().map(|(_, _, _, d)| d.as_str()).collect();
    assert_eq!(
        accepted.into_inner(),
        unique.len(),
        "each delivery applied once"
    );

    let wanted: Vec<String> = finals
        .iter()
        .filter(|(_, _, open)| *open)
        .map(|(n, _, _)| format!("pr-{n}"))
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let mut present: Vec<String> = environments(daemon)
            .into_iter()
            .filter(|e| e.starts_with("pr-"))
            .collect();
        present.sort();
        let mut expected = wanted.clone();
        expected.sort();
        let at_heads = finals
            .iter()
            .filter(|(_, _, open)| *open)
            .all(|(n, head, _)| {
                running_commit(daemon, &format!("pr-{n}")).as_deref() == Some(head)
            });
        if present == expected && at_heads {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "previews {present:?}, wanted {expected:?}: {:?}",
            previews(daemon)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // And it stays so: nothing else is deployed once everything is in place.
    let before: usize = wanted.iter().map(|n| deployments(daemon, n).len()).sum();
    std::thread::sleep(Duration::from_secs(3));
    let after: usize = wanted.iter().map(|n| deployments(daemon, n).len()).sum();
    assert_eq!(before, after);
    for (number, _, open) in &finals {
        if !open {
            assert!(
                deployments(daemon, &format!("pr-{number}"))
                    .iter()
                    .all(|d| d["status"] != "running")
            );
        }
    }
    let problems = setup.forge.problems();
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn a_daemon_that_was_down_catches_up_with_the_forge() {
    let mut setup = Setup::new("pr-down", "true", "", None);
    let one = setup.open(1, false);
    let three = setup.open(3, false);
    setup.wait_commit(1, &one);
    setup.wait_commit(3, &three);
    // Both were told they are live (a comment each, and #1's deployment) before the daemon stops.
    wait_for("#1 and #3 to be told", Duration::from_secs(30), || {
        [1, 3].iter().all(|n| {
            setup
                .forge
                .comments(*n)
                .iter()
                .any(|c| c.body.contains(": live"))
        }) && setup
            .forge
            .deployments()
            .iter()
            .any(|d| d.sha == one && d.statuses.last().is_some_and(|s| s.state == "success"))
    });
    let data = setup.daemon.data.clone();
    let stopped = std::mem::replace(
        &mut setup.daemon,
        Daemon::start(&setup.dir.path().join("other"), &[]),
    );
    stopped.stop();
    // While it is down, #1 is closed and #2 opened; the forge's deliveries never arrive.
    setup.forge.close(1, true);
    let two = setup.head(2, "two.txt");
    setup.forge.open_pull(Pull::new(2, "change-2", &two));
    setup.daemon = Setup::daemon(&data, None);
    wait_gone(&setup.daemon, 1);
    setup.wait_commit(2, &two);
    setup.wait_commit(3, &three);
    // What the pull requests were told before the restart is not forgotten: #1's comment is edited (not made
    // again) to say the preview is gone, the deployments the first daemon made are retired, and #3's comment is
    // found again rather than made twice.
    wait_for(
        "#1 to be told its preview went",
        Duration::from_secs(30),
        || {
            setup
                .forge
                .comments(1)
                .iter()
                .any(|c| c.body.contains(": removed"))
        },
    );
    assert_eq!(setup.forge.comments(1).len(), 1);
    wait_for(
        "#1's deployments to be retired",
        Duration::from_secs(30),
        || {
            let made: Vec<_> = setup
                .forge
                .deployments()
                .into_iter()
                .filter(|d| d.sha == one)
                .collect();
            !made.is_empty()
                && made
                    .iter()
                    .all(|d| d.statuses.last().is_some_and(|s| s.state == "inactive"))
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(setup.forge.comments(3).len(), 1);
    // A pull request the forge no longer lists as open loses its preview at the next sync, event or not.
    setup.forge.close(3, false);
    ok(setup
        .daemon
        .cli(&["--project", "plain", "previews", "sync"]));
    wait_gone(&setup.daemon, 3);
    let log = support::read_log(&data);
    assert!(log.contains("destroying `pr-1`"), "{log}");
    assert!(log.contains("destroying `pr-3`"), "{log}");
    let problems = setup.forge.problems();
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn a_fork_pull_request_waits_for_an_approval_of_each_head() {
    let setup = Setup::new("pr-fork", "true", "", None);
    let daemon = &setup.daemon;
    let first = setup.open(9, true);
    wait_for(
        "the fork's pull request to be seen",
        Duration::from_secs(30),
        || setup.outcome(9).contains("approve"),
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(!environments(daemon).contains(&"pr-9".to_owned()));
    assert!(setup.outcome(9).contains("fork"), "{}", setup.outcome(9));
    ok(daemon.cli(&[
        "--project",
        "plain",
        "previews",
        "approve",
        "9",
        "--commit",
        &first,
    ]));
    setup.wait_commit(9, &first);
    // A push is not approved: the preview stays at the approved commit.
    let second = setup.head(9, "fork-2.txt");
    setup.forge.push(9, &second);
    setup.deliver(9, "synchronize");
    wait_for("the push to be seen", Duration::from_secs(30), || {
        setup.outcome(9).contains(&second[..12])
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        running_commit(daemon, "pr-9").as_deref(),
        Some(first.as_str())
    );
    // A short id is refused (a forged commit can share it), and so is a commit it is no longer at.
    let short = daemon.cli(&[
        "--project",
        "plain",
        "previews",
        "approve",
        "9",
        "--commit",
        &second[..12],
    ]);
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("not a whole commit id"));
    let stale = daemon.cli(&[
        "--project",
        "plain",
        "previews",
        "approve",
        "9",
        "--commit",
        &first,
    ]);
    assert!(!stale.status.success());
    assert!(String::from_utf8_lossy(&stale.stderr).contains("a push needs a new approval"));
    ok(daemon.cli(&[
        "--project",
        "plain",
        "previews",
        "approve",
        "9",
        "--commit",
        &second,
    ]));
    setup.wait_commit(9, &second);
    let problems = setup.forge.problems();
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn branches_of_a_local_repository_act_as_pull_requests() {
    let dir = TempDir::new("pr-local");
    let forge = "    kind: local\n    repository: .\n";
    // No forge, no webhook, no token: no secrets either.
    // Previews take their spec from the branch (`spec: pull_request`).
    let text =
        spec("true", forge, "  spec: pull_request\n").replace("secrets: [HOOK, FORGE_TOKEN]\n", "");
    let (work, _origin) = repositories(dir.path(), &text);
    let data = dir.path().join("data");
    let _release = ReleaseAccounts(data.clone());
    let daemon = support::local_daemon(&data, "18800-18999", &[], None);
    ok(daemon.cli(&[
        "project",
        "register",
        "-f",
        work.join("preview.yaml").to_str().expect("path"),
    ]));
    create_staging(&daemon);
    // A developer's clone pushes branches to the registered repository; its checked-out `main` stays as it is.
    let dev = dir.path().join("dev");
    git(
        dir.path(),
        &[
            "clone",
            "--quiet",
            work.to_str().expect("path"),
            dev.to_str().expect("path"),
        ],
    );
    let commit_on = |file: &str| {
        std::fs::write(dev.join(file), format!("{file} {}\n", rand_suffix())).expect("write");
        git(&dev, &["add", "-A"]);
        git(&dev, &["commit", "--quiet", "-m", file]);
        git(&dev, &["push", "--quiet", "origin", "feature-a"]);
        git(&dev, &["rev-parse", "HEAD"]).trim().to_owned()
    };
    git(&dev, &["checkout", "--quiet", "-b", "feature-a"]);
    let first = commit_on("a.txt");
    wait_answering(&daemon, 1, &first);
    let listed = previews(&daemon);
    assert_eq!(listed[0]["branch"], "feature-a", "{listed:?}");
    let second = commit_on("b.txt");
    wait_answering(&daemon, 1, &second);
    // The branch's own spec applies to its preview (a variable it adds), never to `staging`.
    std::fs::write(
        dev.join("preview.yaml"),
        text.replace(
            "services:\n",
            "variables:\n  FROM_THE_BRANCH: \"yes\"\nservices:\n",
        ),
    )
    .expect("spec");
    // The branch's app says what it got.
    std::fs::write(
        dev.join("web.py"),
        WEB.replace(
            "\"uid\": os.getuid(),",
            "\"uid\": os.getuid(), \"from_the_branch\": os.environ.get(\"FROM_THE_BRANCH\"),",
        ),
    )
    .expect("web.py");
    git(&dev, &["commit", "--quiet", "-am", "a variable"]);
    git(&dev, &["push", "--quiet", "origin", "feature-a"]);
    let third = git(&dev, &["rev-parse", "HEAD"]).trim().to_owned();
    wait_answering(&daemon, 1, &third);
    assert_eq!(
        answer_of(&daemon.data, 1).expect("answers")["from_the_branch"],
        "yes"
    );
    // `vars show` shows the preview as it runs (once its deployment committed): its branch's spec, its commit
    // (never `staging`'s).
    wait_for(
        "pr-1's deployment to commit",
        Duration::from_secs(30),
        || running_commit(&daemon, "pr-1").as_deref() == Some(third.as_str()),
    );
    let shown = daemon
        .json(&["--project", "plain", "vars", "show", "pr-1"])
        .to_string();
    assert!(
        shown.contains("FROM_THE_BRANCH") && shown.contains(&third),
        "{shown}"
    );
    let blueprint = daemon
        .json(&["--project", "plain", "vars", "show", "staging"])
        .to_string();
    assert!(!blueprint.contains("FROM_THE_BRANCH"), "{blueprint}");
    // A branch whose spec is not valid, or changes more than its apps (here the preview policy), gets no deployment
    // and says why; the preview keeps its commit.
    for (spec_text, refusal) in [
        (
            "project: plain\nservices: [oops\n".to_owned(),
            "is not valid",
        ),
        (
            text.replace(
                "  spec: pull_request\n",
                "  spec: pull_request\n  drafts: true\n",
            ),
            "changes `previews.drafts`",
        ),
    ] {
        std::fs::write(dev.join("preview.yaml"), spec_text).expect("spec");
        git(&dev, &["commit", "--quiet", "-am", refusal]);
        git(&dev, &["push", "--quiet", "origin", "feature-a"]);
        wait_for(refusal, Duration::from_secs(30), || {
            previews(&daemon)
                .iter()
                .any(|p| p["outcome"].as_str().is_some_and(|o| o.contains(refusal)))
        });
        assert_eq!(
            answer_of(&daemon.data, 1).expect("answers")["commit"],
            third.as_str()
        );
    }
    git(&dev, &["reset", "--quiet", "--hard", &third]);
    git(&dev, &["push", "--quiet", "--force", "origin", "feature-a"]);
    let second = third;
    git(
        &dev,
        &["push", "--quiet", "origin", "--delete", "feature-a"],
    );
    wait_gone(&daemon, 1);
    // A branch made again gets its number back.
    git(&dev, &["push", "--quiet", "origin", "feature-a"]);
    wait_answering(&daemon, 1, &second);
    daemon.stop();
}

/// The one comment of the bot on pull request 7 (the test fails if there is more than one).
fn sticky(forge: &TestForge) -> support::forge::TestComment {
    let comments: Vec<_> = forge
        .comments(7)
        .into_iter()
        .filter(|c| c.author == "preview-bot")
        .collect();
    assert_eq!(comments.len(), 1, "exactly one comment: {comments:?}");
    comments.into_iter().next().expect("one")
}

fn last_status(forge: &TestForge, sha: &str) -> Option<String> {
    forge.statuses(sha).last().map(|s| s.state.clone())
}

fn deployment_state(forge: &TestForge, sha: &str) -> Option<String> {
    forge
        .deployments()
        .iter()
        .rev()
        .find(|d| d.sha == sha)
        .and_then(|d| d.statuses.last().map(|s| s.state.clone()))
}

/// Waits until pull request 7's comment says `headline` for `head`, and (when live) its status and deployment say
/// so too.
fn told(forge: &TestForge, kind: Kind, head: &str, headline: &str) {
    wait_for(
        &format!("pull request 7 to be told `{headline}` at {head}"),
        Duration::from_secs(30),
        || {
            forge
                .comments(7)
                .iter()
                .any(|c| c.body.contains(&format!(": {headline}")) && c.body.contains(&head[..12]))
        },
    );
    if headline == "live" {
        wait_for("the head's status", Duration::from_secs(30), || {
            last_status(forge, head).as_deref() == Some("success")
        });
        let status = forge.statuses(head).last().cloned().expect("a status");
        assert!(
            status
                .target_url
                .as_deref()
                .is_some_and(|u| u.contains("web-pr-7")),
            "{status:?}"
        );
        if matches!(kind, Kind::Github) {
            wait_for("the head's deployment", Duration::from_secs(30), || {
                deployment_state(forge, head).as_deref() == Some("success")
            });
        }
    }
}

#[test]
fn changed_paths_a_queue_and_a_time_to_live() {
    let setup = Setup::new(
        "pr-policy",
        "true",
        "  paths: { exclude: [\"docs/**\"] }\n  max_live: 1\n  ttl: 6s\n",
        None,
    );
    let daemon = &setup.daemon;
    // Changes to the documentation alone get no preview (the paths come from the forge's files API).
    let head = setup.head(11, "docs-note.txt");
    setup.forge.open_pull(Pull::new(11, "change-11", &head));
    setup
        .forge
        .set_files(11, &["docs/guide.md", "docs/images/a.png"]);
    setup.deliver(11, "opened");
    wait_for("#11 to be decided", Duration::from_secs(30), || {
        setup.outcome(11).contains("previews.paths")
    });
    assert!(!environments(daemon).contains(&"pr-11".to_owned()));
    assert!(
        setup
            .forge
            .requests()
            .iter()
            .any(|r| r.path == format!("/repos/{REPOSITORY}/pulls/11/files")),
        "the changed paths were read from the forge"
    );
    // One place: the first pull request with code gets it, the next waits first in line.
    let twelve = setup.head(12, "src-12.txt");
    setup.forge.open_pull(Pull::new(12, "change-12", &twelve));
    setup.forge.set_files(12, &["src/main.rs"]);
    setup.deliver(12, "opened");
    setup.wait_commit(12, &twelve);
    let thirteen = setup.head(13, "src-13.txt");
    setup.forge.open_pull(Pull::new(13, "change-13", &thirteen));
    setup.forge.set_files(13, &["src/lib.rs", "docs/a.md"]);
    setup.deliver(13, "opened");
    wait_for("#13 to queue", Duration::from_secs(30), || {
        previews(daemon)
            .iter()
            .any(|p| p["number"] == 13 && p["queue_position"] == 1)
    });
    assert!(!environments(daemon).contains(&"pr-13".to_owned()));
    // #12's preview outlives its time to live: it goes (and the pull request is told why), and #13 takes the place.
    wait_gone(daemon, 12);
    wait_for("#12 to be told why", Duration::from_secs(30), || {
        setup
            .forge
            .comments(12)
            .iter()
            .any(|c| c.body.contains(": removed") && c.body.contains("ttl"))
    });
    setup.wait_commit(13, &thirteen);
    // Once gone for its time to live, #12 gets a preview again only with a new push.
    std::thread::sleep(Duration::from_secs(3));
    let listed = previews(daemon);
    let entry = listed.iter().find(|p| p["number"] == 12).expect("#12");
    assert!(entry["environment"].is_null(), "{entry}");
    let problems = setup.forge.problems();
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn daemons_sharing_a_store_reconcile_one_at_a_time() {
    let server = preview_testing::TestPostgres::start();
    let url = server.create_database("previews");
    let dir = TempDir::new("pr-shared");
    let forge = TestForge::start(Kind::Github, REPOSITORY, TOKEN);
    let origin = dir.path().join("origin.git");
    let text = spec("true", &remote_forge(Kind::Github, &forge, &origin), "");
    let (work, origin) = repositories(dir.path(), &text);
    // Two daemons on one store and one (shared) runtime, with the same master key, as a team would run them.
    let runtime = format!("recording:{}", dir.path().join("runtime").display());
    let flags = [
        "--store",
        url.as_str(),
        "--runtime",
        runtime.as_str(),
        "--lease-ttl",
        "1",
    ];
    let key = [("PREVIEW_MASTER_KEY", "7a".repeat(32))];
    let key: Vec<(&str, &str)> = key.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let first = Daemon::start_with_env(&dir.path().join("a"), &flags, &key);
    register(&first, &work);
    create_staging(&first);
    let second = Daemon::start_with_env(&dir.path().join("b"), &flags, &key);
    // A webhook may reach either daemon; one of them reconciles.
    let head = push_head(&work, &origin, Kind::Github, 1, "change-1", "one.txt");
    forge.open_pull(Pull::new(1, "change-1", &head));
    deliver(
        &second,
        Kind::Github,
        "opened",
        &forge.pull(1).expect("#1"),
        "shared-1",
    );
    wait_for("pr-1 at its head", Duration::from_secs(60), || {
        running_commit(&second, "pr-1").as_deref() == Some(head.as_str())
    });
    wait_for("#1 to be told", Duration::from_secs(30), || {
        forge.comments(1).iter().any(|c| c.body.contains(": live"))
    });
    std::thread::sleep(Duration::from_secs(3));
    // Told once: one comment, one deployment of the head, one success.
    assert_eq!(forge.comments(1).len(), 1);
    assert_eq!(
        forge.deployments().iter().filter(|d| d.sha == head).count(),
        1
    );
    let successes = forge
        .statuses(&head)
        .iter()
        .filter(|s| s.state == "success")
        .count();
    assert_eq!(successes, 1);
    let logs = [
        support::read_log(&first.data),
        support::read_log(&second.data),
    ];
    let leaders = logs
        .iter()
        .filter(|log| log.contains("this daemon reconciles pull requests"))
        .count();
    assert_eq!(leaders, 1, "{logs:?}");
    // The first daemon stops (it held the role: it was up first); the second takes over at once.
    first.stop();
    let next = push_head(&work, &origin, Kind::Github, 1, "change-1", "two.txt");
    forge.push(1, &next);
    deliver(
        &second,
        Kind::Github,
        "synchronize",
        &forge.pull(1).expect("#1"),
        "shared-2",
    );
    wait_for("pr-1 at the new head", Duration::from_secs(60), || {
        running_commit(&second, "pr-1").as_deref() == Some(next.as_str())
    });
    wait_for("#1 to be told again", Duration::from_secs(30), || {
        forge
            .comments(1)
            .iter()
            .any(|c| c.body.contains(": live") && c.body.contains(&next[..12]))
    });
    assert_eq!(forge.comments(1).len(), 1, "the same comment, edited");
    assert!(support::read_log(&second.data).contains("this daemon reconciles pull requests"));
    let problems = forge.problems();
    assert!(problems.is_empty(), "{problems:?}");
    second.stop();
}

/// The samples of a `/metrics` answer as the Prometheus project's own OpenMetrics parser reads them (the test
/// fails if it cannot): name, labels and value of each.
fn parse_exposition(text: &str) -> Vec<(String, Value, f64)> {
    use std::io::Write;
    const READ: &str = "import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
print(json.dumps([[s.name, s.labels, s.value] for f in text_string_to_metric_families(sys.stdin.read()) for s in f.samples]))";
    let mut child = std::process::Command::new("/usr/bin/python3")
        .args(["-c", READ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("parser");
    assert!(
        out.status.success(),
        "the exposition does not parse: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples: Vec<(String, Value, f64)> = serde_json::from_slice(&out.stdout).expect("samples");
    samples
}

/// The value of the sample `name` whose labels include `labels` (0 when there is none).
fn sample(samples: &[(String, Value, f64)], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l[*k] == *v))
        .map(|(_, _, value)| value)
        .sum()
}

/// The daemon's metrics after a story — deployments, a rollback, requests through the gateway, webhook deliveries,
/// calls to the forge — read by a Prometheus parser: every series is there with the counts of what happened.
#[test]
fn metrics_count_what_the_daemon_did() {
    let flags = ["--metrics-listen", "127.0.0.1:0", "--health-timeout", "5"];
    let setup = Setup::with_flags("pr-metrics", "true", "", Some("20100-20299"), &flags);
    let daemon = &setup.daemon;
    let config: Value = serde_json::from_slice(
        &std::fs::read(daemon.data.join("client.json")).expect("client config"),
    )
    .expect("json");
    let metrics_url = config["metrics"]
        .as_str()
        .expect("the metrics address")
        .to_owned();
    let metrics_address = metrics_url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_owned();
    let scrape = || {
        let (status, body) = support::request(&metrics_address, "GET", "scraper", "/metrics", "");
        assert_eq!(status, 200, "{body}");
        let text = body.as_str().map(str::to_owned).unwrap_or_default();
        parse_exposition(&text)
    };

    // A pull request's preview, made by a webhook and calls to the forge.
    let head = setup.open(3, false);
    setup.wait_commit(3, &head);
    // The same delivery twice: the second is a duplicate.
    let pull = setup.forge.pull(3).expect("pull request 3");
    deliver(daemon, Kind::Github, "labeled", &pull, "delivered-twice");
    deliver(daemon, Kind::Github, "labeled", &pull, "delivered-twice");
    // A delivery signed with another secret is refused.
    let body = b"{}";
    let (status, _) = daemon.http_with(
        "POST",
        "/webhooks/plain",
        &[
            ("Content-Type", "application/json"),
            ("X-GitHub-Event", "pull_request"),
            ("X-GitHub-Delivery", "forged-1"),
            ("X-Hub-Signature-256", "sha256=00"),
        ],
        body,
    );
    assert_eq!(status, 401);
    // A deployment whose app does not start is rolled back.
    git(&setup.work, &["checkout", "--quiet", "-b", "broken"]);
    std::fs::write(setup.work.join("web.py"), "raise SystemExit(3)\n").expect("web.py");
    git(
        &setup.work,
        &["commit", "--quiet", "-am", "an app that exits"],
    );
    git(&setup.work, &["checkout", "--quiet", "main"]);
    let broken = daemon.json(&[
        "--project",
        "plain",
        "deploy",
        "staging",
        "--commit",
        "broken",
    ]);
    assert_eq!(broken["deployment"]["status"], "rolled_back", "{broken}");

    // Exactly five requests through the gateway between two scrapes, all answered by the app.
    let before = scrape();
    let gateway = support::gateway_http(&daemon.data);
    for path in ["/", "/a", "/b", "/c", "/d"] {
        let (status, _) = support::request(&gateway, "GET", "web-pr-3.plain.localhost", path, "");
        assert_eq!(status, 200);
    }
    let after = scrape();
    let route = [
        ("project", "plain"),
        ("environment", "pr-3"),
        ("service", "web"),
    ];
    let with = |class: &'static str| {
        let mut labels = route.to_vec();
        labels.push(("class", class));
        labels
    };
    let delta = |name: &str, labels: &[(&str, &str)]| {
        sample(&after, name, labels) - sample(&before, name, labels)
    };
    assert_eq!(delta("preview_gateway_requests_total", &with("2xx")), 5.0);
    for class in ["1xx", "3xx", "4xx", "5xx"] {
        assert_eq!(delta("preview_gateway_requests_total", &with(class)), 0.0);
    }
    assert_eq!(
        delta("preview_gateway_request_duration_seconds_count", &route),
        5.0
    );
    let unknown = support::request(&gateway, "GET", "nothing-here.plain.localhost", "/", "");
    assert_eq!(unknown.0, 404);

    let samples = scrape();
    let count = |name: &str, labels: &[(&str, &str)]| sample(&samples, name, labels);
    // The series a count of 0 is read from are there: a missing one would read 0 too.
    for (name, labels) in [
        ("preview_environments", [("state", "deploying")]),
        ("preview_environments", [("state", "failed")]),
        ("preview_previews", [("state", "waiting")]),
    ] {
        assert!(
            samples
                .iter()
                .any(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l[*k] == *v)),
            "{name} {labels:?} is exported"
        );
    }
    // Deployments by operation and outcome: staging made, the preview cloned, the broken one rolled back.
    assert_eq!(
        count(
            "preview_deployments_total",
            &[("operation", "create"), ("outcome", "committed")]
        ),
        1.0
    );
    assert_eq!(
        count(
            "preview_deployments_total",
            &[("operation", "clone"), ("outcome", "committed")]
        ),
        1.0
    );
    assert_eq!(
        count(
            "preview_deployments_total",
            &[("operation", "update"), ("outcome", "rolled_back")]
        ),
        1.0
    );
    assert_eq!(
        count("preview_rollbacks_total", &[("operation", "update")]),
        1.0
    );
    assert_eq!(count("preview_deployment_failures_total", &[]), 0.0);
    // Step durations by kind: the app's steps applied, and the broken one undone.
    assert!(
        count(
            "preview_step_duration_seconds_count",
            &[("kind", "app"), ("phase", "apply"), ("result", "done")]
        ) >= 2.0
    );
    assert!(
        count(
            "preview_step_duration_seconds_count",
            &[("kind", "app"), ("phase", "compensate"), ("result", "done")]
        ) >= 1.0
    );
    assert!(
        count(
            "preview_step_duration_seconds_count",
            &[("kind", "build"), ("phase", "apply")]
        ) >= 3.0
    );
    // Environments and previews by state.
    assert_eq!(count("preview_environments", &[("state", "ready")]), 2.0);
    assert_eq!(
        count("preview_environments", &[("state", "deploying")]),
        0.0
    );
    assert_eq!(count("preview_previews", &[("state", "ready")]), 1.0);
    // Webhooks by forge and verdict; the forge's API answered.
    assert_eq!(
        count(
            "preview_webhook_deliveries_total",
            &[("forge", "github"), ("verdict", "accepted")]
        ),
        2.0
    );
    assert_eq!(
        count(
            "preview_webhook_deliveries_total",
            &[("forge", "github"), ("verdict", "duplicate")]
        ),
        1.0
    );
    assert_eq!(
        count(
            "preview_webhook_deliveries_total",
            &[("forge", "github"), ("verdict", "refused")]
        ),
        1.0
    );
    assert!(
        count(
            "preview_forge_requests_total",
            &[("forge", "github"), ("class", "2xx")]
        ) >= 1.0
    );
    // A request no route answers is in no environment's series.
    assert!(
        !samples
            .iter()
            .any(|(name, labels, _)| name.starts_with("preview_gateway")
                && labels["environment"] != "pr-3"),
        "{samples:?}"
    );
    // No series names a request, a commit or a deployment.
    for (name, labels, _) in &samples {
        let labels = labels.as_object().expect("labels");
        for key in labels.keys() {
            assert!(
                [
                    "operation",
                    "outcome",
                    "kind",
                    "phase",
                    "result",
                    "state",
                    "project",
                    "environment",
                    "service",
                    "class",
                    "forge",
                    "verdict",
                    "policy",
                    "le"
                ]
                .contains(&key.as_str()),
                "{name} has the label {key}"
            );
        }
    }

    // On the API's address /metrics needs the token.
    let (status, _) = daemon.http("GET", "/metrics", None, None, b"");
    assert_eq!(status, 401);
    let (status, _, _) = daemon.http_full(
        "GET",
        "/metrics",
        &[("Authorization", &format!("Bearer {}", daemon.token))],
        b"",
    );
    assert_eq!(status, 200);
    // The metrics address serves nothing else.
    let (status, _) = support::request(&metrics_address, "GET", "scraper", "/v1/projects", "");
    assert_eq!(status, 404);

    // Closed: the preview is deleted, and its route's series go with it; the rate limit ran out once meanwhile.
    setup.forge.rate_limit_next(1);
    setup.forge.close(3, false);
    setup.deliver(3, "closed");
    wait_gone(daemon, 3);
    wait_for(
        "the preview's series to go and the forge to be asked past its rate limit",
        Duration::from_secs(30),
        || {
            let samples = scrape();
            !samples.iter().any(|(name, labels, _)| {
                name.starts_with("preview_gateway") && labels["environment"] == "pr-3"
            }) && sample(&samples, "preview_previews", &[("state", "ready")]) == 0.0
                && sample(&samples, "preview_environments", &[("state", "ready")]) == 1.0
                && sample(
                    &samples,
                    "preview_deployments_total",
                    &[("operation", "delete"), ("outcome", "committed")],
                ) == 1.0
                && sample(
                    &samples,
                    "preview_forge_rate_limit_waits_total",
                    &[("forge", "github")],
                ) >= 1.0
        },
    );
    assert!(
        setup.forge.problems().is_empty(),
        "{:?}",
        setup.forge.problems()
    );
}
