//! The client against a forge that answers from a script: one connection per request, read on a thread.

use std::io::{BufRead, BufReader, Write};
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
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
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

/// A forge at `http://127.0.0.1:<port>` giving `answers` in turn, one per connection; the thread returns what it
/// was asked.
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
            seen.push(Seen { line, headers });
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
