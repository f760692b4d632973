//! The client against a forge that answers from a script: one connection per request, read on a thread.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use preview_forge::Forge;

use super::*;

const TOKEN: &str = "ghp_secret";

/// A request as the forge received it.
#[derive(Debug)]
struct Seen {
    /// Method, path and query: `GET /repos/…?page=1`.
    line: String,
    /// Names lowercased.
    headers: Vec<(String, String)>,
    /// As long as its `Content-Length` says.
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!("{}: the body is not JSON ({e}): {:?}", self.line, self.body)
        })
    }
}

fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> String {
    let mut text = format!("HTTP/1.1 {status} Whatever\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    text
}

/// A forge at `http://127.0.0.1:<port>` giving `answers` in turn, one per connection (an empty one closes the
/// connection without answering); the thread returns what it was asked.
fn forge(answers: Vec<String>) -> (String, JoinHandle<Vec<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = listener.local_addr().expect("its address");
    let thread = thread::spawn(move || {
        let mut seen = Vec::new();
        for answer in answers {
            let (stream, _) = listener.accept().expect("a connection");
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            reader.read_line(&mut line).expect("a request line");
            let line = line.trim_end().trim_end_matches(" HTTP/1.1").to_owned();
            let mut headers = Vec::new();
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).expect("a header");
                let Some((name, value)) = header.trim_end().split_once(':') else {
                    break;
                };
                headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
            }
            let length = headers
                .iter()
                .find(|(name, _)| name == "content-length")
                .map_or(0, |(_, value)| value.parse().expect("a length"));
            let mut body = vec![0; length];
            reader.read_exact(&mut body).expect("the body");
            let body = String::from_utf8(body).expect("a UTF-8 body");
            seen.push(Seen {
                line,
                headers,
                body,
            });
            let mut stream = reader.into_inner();
            stream
                .write_all(answer.as_bytes())
                .expect("the answer sent");
        }
        seen
    });
    (format!("http://{address}"), thread)
}

fn client(forge: Forge, base: &str, repository: &str) -> ForgeClient {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    ForgeClient::with_tls(
        Api::new(forge, base, repository),
        Some(Secret::new(TOKEN.to_owned())),
        tls,
    )
}

fn github_pull(number: u64) -> serde_json::Value {
    serde_json::json!({
        "number": number,
        "state": "open",
        "merged_at": null,
        "title": format!("Change {number}"),
        "html_url": format!("https://github.com/octo-org/shop/pull/{number}"),
        "user": { "login": "octocat" },
        "labels": [],
        "draft": false,
        "head": { "ref": "topic", "sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e",
                  "repo": { "full_name": "octo-org/shop" } },
        "base": { "ref": "main", "repo": { "full_name": "octo-org/shop" } }
    })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

#[tokio::test]
async fn lists_every_page_through_a_5xx_and_a_rate_limit() {
    let list = "/repos/octo-org/shop/pulls?state=open&per_page=100";
    let next = format!(
        "<https://api.github.com{list}&page=2>; rel=\"next\", <https://api.github.com{list}&page=2>; rel=\"last\""
    );
    let reset = (now() + 1).to_string();
    let (base, thread) = forge(vec![
        answer(503, &[], r#"{"message":"Service Unavailable"}"#),
        answer(200, &[("Link", &next)], &format!("[{}]", github_pull(1))),
        answer(
            403,
            &[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", &reset),
            ],
            r#"{"message":"API rate limit exceeded"}"#,
        ),
        answer(200, &[], &format!("[{}]", github_pull(2))),
    ]);
    let started = Instant::now();
    let pulls = client(Forge::Github, &base, "octo-org/shop")
        .open_pulls()
        .await
        .expect("the open pull requests");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited for the reset"
    );
    assert_eq!(pulls.iter().map(|p| p.number).collect::<Vec<_>>(), [1, 2]);
    let seen = thread.join().expect("the forge's requests");
    let lines: Vec<&str> = seen.iter().map(|s| s.line.as_str()).collect();
    let page = |n: u32| format!("GET {list}&page={n}");
    assert_eq!(lines, [page(1), page(1), page(2), page(2)]);
    for request in &seen {
        assert_eq!(request.header("authorization"), Some("Bearer ghp_secret"));
        assert_eq!(
            request.header("accept"),
            Some("application/vnd.github+json")
        );
        assert_eq!(request.header("x-github-api-version"), Some("2022-11-28"));
        assert_eq!(
            request.header("user-agent"),
            Some(concat!("preview/", env!("CARGO_PKG_VERSION")))
        );
    }
}

#[tokio::test]
async fn a_missing_pull_request_is_none_and_a_refusal_names_the_request_not_the_token() {
    let far_reset = (now() + 3600).to_string();
    let (base, thread) = forge(vec![
        answer(404, &[], r#"{"message":"Not Found"}"#),
        answer(
            401,
            &[],
            r#"{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest"}"#,
        ),
        answer(
            429,
            &[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", &far_reset),
            ],
            "{}",
        ),
    ]);
    let client = client(Forge::Github, &base, "octo-org/shop");
    assert_eq!(client.pull(7).await.expect("an answer"), None);
    let refused = client.pull(8).await.expect_err("refused").to_string();
    assert!(
        refused.contains("GET /repos/octo-org/shop/pulls/8"),
        "{refused}"
    );
    assert!(refused.contains("401"), "{refused}");
    assert!(refused.contains("Bad credentials"), "{refused}");
    assert!(!refused.contains(TOKEN), "{refused}");
    let started = Instant::now();
    let limited = client.pull(9).await.expect_err("rate limited");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "did not wait an hour"
    );
    assert!(
        matches!(&limited, ForgeError::RateLimited { wait, .. } if *wait > LONGEST_WAIT),
        "{limited:?}"
    );
    assert!(
        limited.to_string().contains("resets in 60 min"),
        "{limited}"
    );
    let seen = thread.join().expect("the forge's requests");
    let lines: Vec<&str> = seen.iter().map(|s| s.line.as_str()).collect();
    assert_eq!(
        lines,
        [
            "GET /repos/octo-org/shop/pulls/7",
            "GET /repos/octo-org/shop/pulls/8",
            "GET /repos/octo-org/shop/pulls/9"
        ]
    );
}

#[tokio::test]
async fn gitlab_pages_by_x_next_page_with_its_own_token_header() {
    let (base, thread) = forge(vec![
        answer(
            200,
            &[("X-Next-Page", "2"), ("X-Page", "1")],
            r#"[{"old_path":"README","new_path":"README"},{"old_path":"old.rb","new_path":"new.rb"}]"#,
        ),
        answer(
            200,
            &[("X-Next-Page", ""), ("X-Page", "2")],
            r#"[{"old_path":"web/app.js","new_path":"web/app.js"}]"#,
        ),
    ]);
    let paths = client(Forge::Gitlab, &format!("{base}/api/v4"), "group/shop")
        .changed_paths(5)
        .await
        .expect("the changed paths");
    assert_eq!(paths, ["README", "new.rb", "old.rb", "web/app.js"]);
    let seen = thread.join().expect("the forge's requests");
    let diffs = "GET /api/v4/projects/group%2Fshop/merge_requests/5/diffs?per_page=100";
    assert_eq!(seen[0].line, format!("{diffs}&page=1"));
    assert_eq!(seen[1].line, format!("{diffs}&page=2"));
    for request in &seen {
        assert_eq!(request.header("private-token"), Some(TOKEN));
        assert_eq!(request.header("authorization"), None);
    }
}

#[tokio::test]
async fn an_unreachable_forge_is_tried_three_times() {
    let address = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port");
    let started = Instant::now();
    let error = client(
        Forge::Gitea,
        &format!("http://{address}/api/v1"),
        "team/shop",
    )
    .pull(3)
    .await
    .expect_err("nobody listens");
    // Two pauses between three tries: 200 ms, then 400 ms.
    assert!(started.elapsed() >= Duration::from_millis(600), "{error}");
    assert!(matches!(error, ForgeError::Unreachable { .. }), "{error:?}");
    let text = error.to_string();
    assert!(
        text.starts_with(
            "GET /api/v1/repos/team/shop/pulls/3: the forge could not be reached after 3 tries"
        ),
        "{text}"
    );
}

fn github_comment(id: u64, text: &str) -> String {
    serde_json::json!({
        "id": id,
        "html_url": format!("https://github.com/octo-org/shop/pull/42#issuecomment-{id}"),
        "body": text,
        "user": { "login": "preview-bot", "type": "User" },
        "created_at": "2011-04-14T16:00:49Z"
    })
    .to_string()
}

/// A write as the forge must have received it: its line, JSON body and content type.
fn check_write(seen: &Seen, line: &str, body: serde_json::Value) {
    assert_eq!(seen.line, line);
    assert_eq!(
        seen.header("content-type"),
        Some("application/json"),
        "{line}"
    );
    assert_eq!(seen.json(), body, "{line}");
    assert_eq!(
        seen.header("authorization"),
        Some("Bearer ghp_secret"),
        "{line}"
    );
}

#[tokio::test]
async fn a_comment_deleted_meanwhile_is_none_when_edited() {
    let (base, thread) = forge(vec![
        answer(
            200,
            &[],
            r#"{"login":"preview-bot","id":1,"type":"User","site_admin":false}"#,
        ),
        answer(
            404,
            &[],
            r#"{"message":"Not Found","documentation_url":"https://docs.github.com/rest"}"#,
        ),
    ]);
    let client = client(Forge::Github, &base, "octo-org/shop");
    assert_eq!(
        client.current_user().await.expect("the user"),
        "preview-bot"
    );
    let edited = client
        .edit_comment(42, 1001, "<!-- preview -->\nGone")
        .await
        .expect("an answer");
    assert_eq!(edited, None);
    let seen = thread.join().expect("the forge's requests");
    assert_eq!(seen[0].line, "GET /user");
    // A read has no body, and says none.
    assert_eq!(seen[0].body, "");
    assert_eq!(seen[0].header("content-type"), None);
    check_write(
        &seen[1],
        "PATCH /repos/octo-org/shop/issues/comments/1001",
        serde_json::json!({ "body": "<!-- preview -->\nGone" }),
    );
}

#[tokio::test]
async fn a_new_comment_is_sent_again_after_a_502() {
    let (base, thread) = forge(vec![
        answer(502, &[], r#"{"message":"Server Error"}"#),
        answer(201, &[], &github_comment(1001, "<!-- preview -->\nReady")),
    ]);
    let comment = client(Forge::Github, &base, "octo-org/shop")
        .create_comment(42, "<!-- preview -->\nReady")
        .await
        .expect("the comment");
    assert_eq!(
        comment,
        Comment {
            id: 1001,
            author: "preview-bot".to_owned(),
            body: "<!-- preview -->\nReady".to_owned(),
        }
    );
    let seen = thread.join().expect("the forge's requests");
    assert_eq!(seen.len(), 2);
    for request in &seen {
        check_write(
            request,
            "POST /repos/octo-org/shop/issues/42/comments",
            serde_json::json!({ "body": "<!-- preview -->\nReady" }),
        );
    }
}

#[tokio::test]
async fn a_new_comment_that_may_have_been_made_is_not_sent_again_but_a_status_is() {
    // The forge reads each request, then hangs up without answering.
    let (base, thread) = forge(vec![String::new()]);
    let error = client(Forge::Github, &base, "octo-org/shop")
        .create_comment(42, "<!-- preview -->")
        .await
        .expect_err("no answer");
    assert!(matches!(error, ForgeError::NoAnswer { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with("POST /repos/octo-org/shop/issues/42/comments: no answer"),
        "{error}"
    );
    assert_eq!(thread.join().expect("the forge's requests").len(), 1);

    let sha = "6dcb09b5b57875f334f61aebed695e2e4193db5e";
    let (base, thread) = forge(vec![String::new(), answer(201, &[], r#"{"id":1}"#)]);
    client(Forge::Github, &base, "octo-org/shop")
        .set_status(sha, CommitState::Running, "preview", "deploying", None)
        .await
        .expect("the status set");
    let seen = thread.join().expect("the forge's requests");
    assert_eq!(seen.len(), 2);
    for request in &seen {
        check_write(
            request,
            &format!("POST /repos/octo-org/shop/statuses/{sha}"),
            serde_json::json!({ "state": "pending", "description": "deploying", "context": "preview" }),
        );
    }
}

#[tokio::test]
async fn a_status_waits_out_a_secondary_rate_limit() {
    let sha = "6dcb09b5b57875f334f61aebed695e2e4193db5e";
    let (base, thread) = forge(vec![
        answer(
            403,
            &[
                ("Retry-After", "1"),
                ("x-ratelimit-remaining", "4990"),
                ("x-ratelimit-reset", &(now() + 3000).to_string()),
            ],
            r#"{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again.","documentation_url":"https://docs.github.com/rest"}"#,
        ),
        answer(
            201,
            &[],
            r#"{"id":1,"state":"success","context":"preview","target_url":"https://pr-42.preview.example.com"}"#,
        ),
    ]);
    let started = Instant::now();
    client(Forge::Github, &base, "octo-org/shop")
        .set_status(
            sha,
            CommitState::Success,
            "preview",
            "live",
            Some("https://pr-42.preview.example.com"),
        )
        .await
        .expect("the status set");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited a second"
    );
    let seen = thread.join().expect("the forge's requests");
    assert_eq!(seen.len(), 2);
    for request in &seen {
        check_write(
            request,
            &format!("POST /repos/octo-org/shop/statuses/{sha}"),
            serde_json::json!({
                "state": "success",
                "target_url": "https://pr-42.preview.example.com",
                "description": "live",
                "context": "preview"
            }),
        );
    }
}

#[tokio::test]
async fn gitlab_notes_and_a_deployment_that_only_github_has() {
    let (base, thread) = forge(vec![
        answer(
            200,
            &[("X-Next-Page", "2")],
            r#"[{"id":301,"body":"added 1 commit","author":{"username":"admin"},"system":true},
                {"id":302,"body":"<!-- preview -->","author":{"username":"preview-bot"},"system":false}]"#,
        ),
        answer(
            200,
            &[("X-Next-Page", "")],
            r#"[{"id":303,"body":"Thanks","author":{"username":"admin"},"system":false}]"#,
        ),
    ]);
    let client = client(Forge::Gitlab, &format!("{base}/api/v4"), "group/shop");
    let comments = client.comments(7).await.expect("the notes");
    let ids: Vec<(u64, &str)> = comments.iter().map(|c| (c.id, c.author.as_str())).collect();
    assert_eq!(ids, [(302, "preview-bot"), (303, "admin")]);
    // GitLab has no deployments: nothing is asked.
    assert_eq!(
        client
            .create_deployment("8888888888888888888888888888888888888888", "mr-7", "!7")
            .await
            .expect("nothing to do"),
        None
    );
    client
        .set_deployment_status(1, DeploymentState::Success, None, None, "live")
        .await
        .expect("nothing to do");
    let seen = thread.join().expect("the forge's requests");
    let notes = "GET /api/v4/projects/group%2Fshop/merge_requests/7/notes?per_page=100";
    let lines: Vec<&str> = seen.iter().map(|s| s.line.as_str()).collect();
    assert_eq!(
        lines,
        [
            format!("{notes}&page=1&sort=asc&order_by=created_at"),
            format!("{notes}&page=2&sort=asc&order_by=created_at"),
        ]
    );
}

#[tokio::test]
async fn a_github_deployment_and_its_status() {
    let sha = "6dcb09b5b57875f334f61aebed695e2e4193db5e";
    let (base, thread) = forge(vec![
        answer(
            201,
            &[],
            r#"{"id":77,"sha":"6dcb09b5b57875f334f61aebed695e2e4193db5e","environment":"pr-42"}"#,
        ),
        answer(201, &[], r#"{"id":1,"state":"success"}"#),
    ]);
    let client = client(Forge::Github, &base, "octo-org/shop");
    let id = client
        .create_deployment(sha, "pr-42", "the preview of #42")
        .await
        .expect("the deployment");
    assert_eq!(id, Some(77));
    client
        .set_deployment_status(
            77,
            DeploymentState::Success,
            Some("https://pr-42.preview.example.com"),
            None,
            "live",
        )
        .await
        .expect("its status");
    let seen = thread.join().expect("the forge's requests");
    check_write(
        &seen[0],
        "POST /repos/octo-org/shop/deployments",
        serde_json::json!({
            "ref": sha,
            "environment": "pr-42",
            "description": "the preview of #42",
            "transient_environment": true,
            "production_environment": false,
            "auto_merge": false,
            "required_contexts": []
        }),
    );
    check_write(
        &seen[1],
        "POST /repos/octo-org/shop/deployments/77/statuses",
        serde_json::json!({
            "state": "success",
            "environment_url": "https://pr-42.preview.example.com",
            "description": "live",
            "auto_inactive": false
        }),
    );
}
