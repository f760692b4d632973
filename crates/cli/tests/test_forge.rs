//! The test forge itself, through a raw HTTP client: each forge's pagination followed link by link, its answers in
//! the forge's shape, its 404s, its refusal of a request without the token (with the problem recorded), failures
//! and rate limits on demand, and keep-alive connections. The writes (comments, commit statuses, deployments) are
//! in `writes`.

mod support;
#[path = "test_forge/writes.rs"]
mod writes;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use support::forge::{Kind, Pull, State, TestForge};

const TOKEN: &str = "a-token-of-the-forge";

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// The target (path and query) of the `Link` of relation `rel`.
    fn link(&self, forge: &TestForge, rel: &str) -> Option<String> {
        let url = forge.url();
        self.header("link")?.split(',').find_map(|part| {
            let (target, relation) = part.trim().split_once(">; ")?;
            (relation == format!("rel=\"{rel}\""))
                .then(|| target.trim_start_matches('<').replacen(&url, "", 1))
        })
    }
}

/// The headers `preview` sends to each forge.
fn credentials(kind: Kind) -> Vec<(&'static str, String)> {
    match kind {
        Kind::Github => vec![
            ("Authorization", format!("Bearer {TOKEN}")),
            ("User-Agent", "preview-test".into()),
            ("Accept", "application/vnd.github+json".into()),
            ("X-GitHub-Api-Version", "2022-11-28".into()),
        ],
        Kind::Gitlab => vec![("PRIVATE-TOKEN", TOKEN.into())],
        Kind::Gitea => vec![("Authorization", format!("token {TOKEN}"))],
    }
}

fn send(
    connection: &mut BufReader<TcpStream>,
    method: &str,
    target: &str,
    headers: &[(&str, String)],
) -> Answer {
    exchange(connection, method, target, headers, b"")
}

fn exchange(
    connection: &mut BufReader<TcpStream>,
    method: &str,
    target: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Answer {
    let mut request = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut request = request.into_bytes();
    request.extend_from_slice(body);
    connection.get_mut().write_all(&request).expect("send");
    let mut line = String::new();
    connection.read_line(&mut line).expect("status line");
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        connection.read_line(&mut header).expect("header");
        let Some((name, value)) = header.trim_end().split_once(':') else {
            break;
        };
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let answer = Answer {
        status,
        headers,
        body: String::new(),
    };
    let length = answer
        .header("content-length")
        .and_then(|l| l.parse().ok())
        .expect("Content-Length");
    let mut body = vec![0; length];
    connection.read_exact(&mut body).expect("body");
    Answer {
        body: String::from_utf8(body).expect("UTF-8"),
        ..answer
    }
}

fn connect(forge: &TestForge) -> BufReader<TcpStream> {
    BufReader::new(TcpStream::connect(forge.url().trim_start_matches("http://")).expect("connect"))
}

fn get_with(forge: &TestForge, target: &str, headers: &[(&str, String)]) -> Answer {
    let mut headers = headers.to_vec();
    headers.push(("Connection", "close".into()));
    send(&mut connect(forge), "GET", target, &headers)
}

fn get(forge: &TestForge, kind: Kind, target: &str) -> Answer {
    get_with(forge, target, &credentials(kind))
}

/// A write with `body` as JSON and the forge's credentials.
fn write(forge: &TestForge, kind: Kind, method: &str, target: &str, body: Value) -> Answer {
    let body = body.to_string();
    write_raw(
        forge,
        kind,
        method,
        target,
        Some("application/json"),
        body.as_bytes(),
    )
}

fn write_raw(
    forge: &TestForge,
    kind: Kind,
    method: &str,
    target: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Answer {
    let mut headers = credentials(kind);
    if let Some(content_type) = content_type {
        headers.push(("Content-Type", content_type.into()));
    }
    headers.push(("Content-Length", body.len().to_string()));
    headers.push(("Connection", "close".into()));
    exchange(&mut connect(forge), method, target, &headers, body)
}

/// Every item of a paginated list, following the forge's `rel="next"` links from `first`, and the answers.
fn follow(forge: &TestForge, kind: Kind, first: &str) -> (Vec<Value>, Vec<Answer>) {
    let (mut items, mut answers) = (Vec::new(), Vec::new());
    let mut target = Some(first.to_string());
    while let Some(next) = target {
        let answer = get(forge, kind, &next);
        assert_eq!(answer.status, 200, "{next}: {}", answer.body);
        items.extend(answer.json().as_array().expect("a list").iter().cloned());
        target = answer.link(forge, "next");
        answers.push(answer);
        assert!(answers.len() < 10, "pagination does not end");
    }
    (items, answers)
}

fn sha(n: u64) -> String {
    format!("{n:040x}")
}

/// Three open pull requests (1, 2, 3) and a closed one (4); the third changes three paths.
fn forge_with_pulls(kind: Kind, repository: &str) -> TestForge {
    let forge = TestForge::start(kind, repository, TOKEN);
    for n in 1..=3 {
        forge.open_pull(Pull::new(n, &format!("feature-{n}"), &sha(n)));
    }
    forge.open_pull(Pull {
        state: State::Closed,
        ..Pull::new(4, "abandoned", &sha(4))
    });
    forge.set_files(3, &["web/app.js", "api/main.rs", "README.md"]);
    forge.set_page_size(1);
    forge
}

fn field<'a>(items: &'a [Value], key: &str) -> Vec<&'a Value> {
    items.iter().map(|item| &item[key]).collect()
}

fn assert_no_problems(forge: &TestForge) {
    assert_eq!(forge.problems(), Vec::<String>::new());
}

#[test]
fn github_pages_through_open_pulls_newest_first_and_through_files() {
    let forge = forge_with_pulls(Kind::Github, "acme/shop");
    let (pulls, answers) = follow(
        &forge,
        Kind::Github,
        "/repos/acme/shop/pulls?state=open&per_page=100&page=1",
    );
    assert_eq!(field(&pulls, "number"), [&json!(3), &json!(2), &json!(1)]);
    let rels = |answer: &Answer| {
        ["prev", "next", "last", "first"].map(|rel| answer.link(&forge, rel).is_some())
    };
    assert_eq!(rels(&answers[0]), [false, true, true, false]);
    assert_eq!(rels(&answers[1]), [true, true, true, true]);
    assert_eq!(rels(&answers[2]), [true, false, false, true]);
    let id = 4242;
    assert_eq!(
        answers[0].link(&forge, "next").as_deref(),
        Some(format!("/repositories/{id}/pulls?state=open&per_page=100&page=2").as_str())
    );
    assert_eq!(answers[0].header("x-ratelimit-resource"), Some("core"));
    assert_eq!(answers[0].header("x-ratelimit-remaining"), Some("4999"));
    assert_eq!(answers[2].header("x-ratelimit-used"), Some("3"));
    let newest = &pulls[0];
    assert_eq!(newest["state"], "open");
    assert_eq!(
        newest["html_url"],
        format!("{}/acme/shop/pull/3", forge.url())
    );
    assert_eq!(newest["user"]["login"], "octocat");
    assert_eq!(newest["head"]["ref"], "feature-3");
    assert_eq!(newest["head"]["sha"], sha(3));
    assert_eq!(newest["head"]["repo"]["full_name"], "acme/shop");
    assert_eq!(newest["base"]["ref"], "main");
    assert_eq!(newest["merged_at"], Value::Null);

    let (files, _) = follow(
        &forge,
        Kind::Github,
        "/repos/acme/shop/pulls/3/files?per_page=100",
    );
    assert_eq!(
        field(&files, "filename"),
        [
            &json!("web/app.js"),
            &json!("api/main.rs"),
            &json!("README.md")
        ]
    );
    assert_eq!(files[0]["status"], "modified");
    assert_no_problems(&forge);
}

#[test]
fn gitlab_pages_through_opened_merge_requests_and_diffs_with_its_headers() {
    let forge = forge_with_pulls(Kind::Gitlab, "group/sub/shop");
    let list = "/api/v4/projects/group%2Fsub%2Fshop/merge_requests?state=opened&per_page=20&page=1";
    let (merge_requests, answers) = follow(&forge, Kind::Gitlab, list);
    assert_eq!(
        field(&merge_requests, "iid"),
        [&json!(3), &json!(2), &json!(1)]
    );
    let headers = |answer: &Answer| {
        [
            "X-Page",
            "X-Per-Page",
            "X-Next-Page",
            "X-Prev-Page",
            "X-Total",
            "X-Total-Pages",
        ]
        .map(|name| answer.header(name).expect(name).to_string())
    };
    assert_eq!(headers(&answers[0]), ["1", "1", "2", "", "3", "3"]);
    assert_eq!(headers(&answers[2]), ["3", "1", "", "2", "3", "3"]);
    // GitLab's links carry the route's own parameters, which it accepts when they come back.
    assert!(
        answers[0]
            .link(&forge, "next")
            .expect("next")
            .contains("id=group%2Fsub%2Fshop&page=2")
    );
    let newest = &merge_requests[0];
    assert_eq!(newest["state"], "opened");
    assert_eq!(newest["sha"], sha(3));
    assert_eq!(newest["source_branch"], "feature-3");
    assert_eq!(newest["source_project_id"], newest["target_project_id"]);
    assert_eq!(
        newest["web_url"],
        format!("{}/group/sub/shop/-/merge_requests/3", forge.url())
    );

    let (diffs, _) = follow(
        &forge,
        Kind::Gitlab,
        "/api/v4/projects/group%2Fsub%2Fshop/merge_requests/3/diffs",
    );
    assert_eq!(
        field(&diffs, "new_path"),
        [
            &json!("web/app.js"),
            &json!("api/main.rs"),
            &json!("README.md")
        ]
    );
    assert_no_problems(&forge);
}

#[test]
fn gitea_pages_through_open_pulls_and_files_with_its_headers() {
    let forge = forge_with_pulls(Kind::Gitea, "acme/shop");
    let (pulls, answers) = follow(
        &forge,
        Kind::Gitea,
        "/api/v1/repos/acme/shop/pulls?state=open&page=1&limit=50",
    );
    assert_eq!(field(&pulls, "number"), [&json!(3), &json!(2), &json!(1)]);
    assert_eq!(answers[0].header("X-Total-Count"), Some("3"));
    assert!(
        !answers[1].header("Link").expect("Link").contains(", "),
        "Gitea joins links with bare commas"
    );
    assert_eq!(
        answers[0].link(&forge, "last").as_deref(),
        Some("/api/v1/repos/acme/shop/pulls?limit=50&page=3&state=open")
    );
    let newest = &pulls[0];
    assert_eq!(
        (&newest["state"], &newest["merged"]),
        (&json!("open"), &json!(false))
    );
    assert_eq!(
        newest["html_url"],
        format!("{}/acme/shop/pulls/3", forge.url())
    );
    assert_eq!(newest["head"]["repo"]["full_name"], "acme/shop");

    let (files, _) = follow(
        &forge,
        Kind::Gitea,
        "/api/v1/repos/acme/shop/pulls/3/files?page=1&limit=50",
    );
    assert_eq!(
        field(&files, "filename"),
        [
            &json!("web/app.js"),
            &json!("api/main.rs"),
            &json!("README.md")
        ]
    );
    assert_no_problems(&forge);
}

#[test]
fn an_unknown_pull_is_the_forges_404_and_an_unknown_endpoint_a_problem_too() {
    let cases = [
        (
            Kind::Github,
            "acme/shop",
            "/repos/acme/shop/pulls/99",
            json!({
                "message": "Not Found",
                "documentation_url": "https://docs.github.com/rest/pulls/pulls#get-a-pull-request",
                "status": "404",
            }),
        ),
        (
            Kind::Gitlab,
            "acme/shop",
            "/api/v4/projects/acme%2Fshop/merge_requests/99",
            json!({"message": "404 Not found"}),
        ),
        (
            Kind::Gitea,
            "acme/shop",
            "/api/v1/repos/acme/shop/pulls/99",
            json!("The target couldn't be found."),
        ),
    ];
    for (kind, repository, target, expected) in cases {
        let forge = TestForge::start(kind, repository, TOKEN);
        let answer = get(&forge, kind, target);
        assert_eq!(answer.status, 404, "{kind:?}");
        match kind {
            Kind::Gitea => assert_eq!(answer.json()["message"], expected),
            _ => assert_eq!(answer.json(), expected, "{kind:?}"),
        }
        assert_no_problems(&forge);

        let answer = get(
            &forge,
            kind,
            &target
                .replace("pulls/99", "issues")
                .replace("merge_requests/99", "issues"),
        );
        assert_eq!(answer.status, 404, "{kind:?}");
        assert_eq!(
            forge.problems().len(),
            1,
            "{kind:?}: {:?}",
            forge.problems()
        );
    }
}

#[test]
fn a_request_without_the_token_is_refused_and_recorded() {
    let cases = [
        (
            Kind::Github,
            "/repos/acme/shop/pulls/1",
            "Authorization",
            json!({
                "message": "Bad credentials",
                "documentation_url": "https://docs.github.com/rest",
                "status": "401",
            }),
        ),
        (
            Kind::Gitlab,
            "/api/v4/projects/acme%2Fshop/merge_requests/1",
            "PRIVATE-TOKEN",
            json!({"message": "401 Unauthorized"}),
        ),
        (
            Kind::Gitea,
            "/api/v1/repos/acme/shop/pulls/1",
            "Authorization",
            json!({
                "message": "token is required",
                "url": "",
            }),
        ),
    ];
    for (kind, target, token_header, mut expected) in cases {
        let forge = TestForge::start(kind, "acme/shop", TOKEN);
        forge.open_pull(Pull::new(1, "feature", &sha(1)));
        if kind == Kind::Gitea {
            expected["url"] = json!(format!("{}/api/swagger", forge.url()));
        }
        let without: Vec<_> = credentials(kind)
            .into_iter()
            .filter(|(name, _)| *name != token_header)
            .collect();
        let answer = get_with(&forge, target, &without);
        assert_eq!((answer.status, answer.json()), (401, expected), "{kind:?}");
        let problems = forge.problems();
        assert_eq!(problems.len(), 1, "{kind:?}: {problems:?}");
        assert!(
            problems[0].starts_with(&format!("GET {target}: ")),
            "{problems:?}"
        );
        assert_eq!(forge.requests().len(), 1);
        assert_eq!(forge.requests()[0].header(token_header), None);
    }
}

#[test]
fn github_refuses_a_request_without_user_agent() {
    let forge = TestForge::start(Kind::Github, "acme/shop", TOKEN);
    let headers: Vec<_> = credentials(Kind::Github)
        .into_iter()
        .filter(|(name, _)| *name != "User-Agent")
        .collect();
    let answer = get_with(&forge, "/repos/acme/shop/pulls?state=open", &headers);
    assert_eq!(answer.status, 403);
    assert!(answer.body.contains("User-Agent header"), "{}", answer.body);
    assert_eq!(forge.problems().len(), 1, "{:?}", forge.problems());
}

#[test]
fn failures_on_demand_then_answers_again() {
    for (kind, target, message) in [
        (Kind::Github, "/repos/acme/shop/pulls/1", "Bad Gateway"),
        (
            Kind::Gitlab,
            "/api/v4/projects/acme%2Fshop/merge_requests/1",
            "502 Bad Gateway",
        ),
        (
            Kind::Gitea,
            "/api/v1/repos/acme/shop/pulls/1",
            "Bad Gateway",
        ),
    ] {
        let forge = TestForge::start(kind, "acme/shop", TOKEN);
        forge.open_pull(Pull::new(1, "feature", &sha(1)));
        forge.fail_next(2, 502);
        for _ in 0..2 {
            let answer = get(&forge, kind, target);
            assert_eq!(
                (answer.status, &answer.json()["message"]),
                (502, &json!(message)),
                "{kind:?}"
            );
        }
        assert_eq!(get(&forge, kind, target).status, 200, "{kind:?}");
        assert_no_problems(&forge);
    }
}

#[test]
fn rate_limits_on_demand_each_forge_in_its_way() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let forge = TestForge::start(Kind::Github, "acme/shop", TOKEN);
    forge.rate_limit_next(1);
    let answer = get(&forge, Kind::Github, "/repos/acme/shop/pulls?state=open");
    assert_eq!(answer.status, 403);
    assert_eq!(answer.header("x-ratelimit-remaining"), Some("0"));
    let reset: u64 = answer
        .header("x-ratelimit-reset")
        .and_then(|r| r.parse().ok())
        .expect("a reset time");
    assert!((now..=now + 3).contains(&reset), "reset {reset}, now {now}");
    assert!(
        answer.json()["message"]
            .as_str()
            .expect("a message")
            .starts_with("API rate limit exceeded")
    );
    assert_eq!(
        get(&forge, Kind::Github, "/repos/acme/shop/pulls?state=open").status,
        200
    );

    for (kind, target) in [
        (
            Kind::Gitlab,
            "/api/v4/projects/acme%2Fshop/merge_requests?state=opened",
        ),
        (Kind::Gitea, "/api/v1/repos/acme/shop/pulls?state=open"),
    ] {
        let forge = TestForge::start(kind, "acme/shop", TOKEN);
        forge.rate_limit_next(1);
        let answer = get(&forge, kind, target);
        assert_eq!(
            (answer.status, answer.header("Retry-After")),
            (429, Some("1")),
            "{kind:?}"
        );
        assert_eq!(get(&forge, kind, target).status, 200, "{kind:?}");
        assert_no_problems(&forge);
    }
}

#[test]
fn a_connection_is_kept_alive_until_the_client_closes_it() {
    let forge = TestForge::start(Kind::Gitea, "acme/shop", TOKEN);
    forge.open_pull(Pull::new(1, "feature", &sha(1)));
    let mut connection = connect(&forge);
    let first = send(
        &mut connection,
        "GET",
        "/api/v1/repos/acme/shop/pulls/1",
        &credentials(Kind::Gitea),
    );
    assert_eq!((first.status, first.header("Connection")), (200, None));
    let mut closing = credentials(Kind::Gitea);
    closing.push(("Connection", "close".into()));
    let second = send(
        &mut connection,
        "GET",
        "/api/v1/repos/acme/shop/pulls/1",
        &closing,
    );
    assert_eq!(
        (second.status, second.header("Connection")),
        (200, Some("close"))
    );
    assert_eq!(
        connection
            .read(&mut [0; 16])
            .expect("the end of the stream"),
        0
    );
    let requests = forge.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].header("connection"), Some("close"));
    assert!(
        requests[1]
            .headers
            .iter()
            .all(|(name, _)| *name == name.to_ascii_lowercase())
    );
}

#[test]
fn dropping_the_forge_ends_the_connections_a_client_keeps_open() {
    let forge = TestForge::start(Kind::Gitlab, "acme/shop", TOKEN);
    let mut connection = connect(&forge);
    let target = "/api/v4/projects/acme%2Fshop/merge_requests?state=opened";
    assert_eq!(
        send(&mut connection, "GET", target, &credentials(Kind::Gitlab)).status,
        200
    );
    drop(forge);
    assert_eq!(
        connection
            .read(&mut [0; 16])
            .expect("the end of the stream"),
        0
    );
}

#[test]
fn changes_to_a_pull_show_in_each_forges_terms() {
    let forge = TestForge::start(Kind::Github, "acme/shop", TOKEN);
    forge.open_pull(Pull {
        fork: true,
        author: "outsider".into(),
        ..Pull::new(7, "patch", &sha(1))
    });
    forge.push(7, &sha(2));
    forge.set_labels(7, &["preview"]);
    let pull = get(&forge, Kind::Github, "/repos/acme/shop/pulls/7").json();
    assert_eq!(pull["head"]["sha"], sha(2));
    assert_eq!(pull["labels"][0]["name"], "preview");
    assert_eq!(pull["head"]["repo"]["full_name"], "outsider/shop");
    assert_eq!(pull["head"]["label"], "outsider:patch");
    assert_ne!(pull["created_at"], pull["updated_at"]);
    forge.delete_fork(7);
    forge.close(7, true);
    let pull = get(&forge, Kind::Github, "/repos/acme/shop/pulls/7").json();
    assert_eq!(pull["head"]["repo"], Value::Null);
    assert_eq!(
        (&pull["state"], &pull["merged"]),
        (&json!("closed"), &json!(true))
    );
    assert_eq!(pull["merged_at"], pull["closed_at"]);
    assert_eq!(forge.pull(7).map(|p| p.state), Some(State::Merged));
    let open = get(&forge, Kind::Github, "/repos/acme/shop/pulls?state=open").json();
    assert_eq!(open, json!([]));
    assert_no_problems(&forge);

    let forge = TestForge::start(Kind::Gitlab, "acme/shop", TOKEN);
    forge.open_pull(Pull {
        fork: true,
        draft: true,
        ..Pull::new(7, "patch", &sha(1))
    });
    forge.close(7, true);
    let merge_request = get(
        &forge,
        Kind::Gitlab,
        "/api/v4/projects/acme%2Fshop/merge_requests/7",
    )
    .json();
    assert_eq!(merge_request["state"], "merged");
    assert_eq!(
        (&merge_request["draft"], &merge_request["work_in_progress"]),
        (&json!(true), &json!(true))
    );
    assert_ne!(
        merge_request["source_project_id"],
        merge_request["target_project_id"]
    );
    assert_no_problems(&forge);
}

#[test]
fn what_the_forge_would_not_take_is_a_problem() {
    let forge = TestForge::start(Kind::Github, "acme/shop", TOKEN);
    let pulls: Vec<Pull> = (1..=120).map(|n| Pull::new(n, "branch", &sha(n))).collect();
    pulls.into_iter().for_each(|pull| forge.open_pull(pull));
    let answer = get(
        &forge,
        Kind::Github,
        "/repos/acme/shop/pulls?state=open&per_page=500",
    );
    assert_eq!(
        answer.json().as_array().map(Vec::len),
        Some(100),
        "GitHub answers at most 100 a page"
    );
    let answer = get(
        &forge,
        Kind::Github,
        "/repos/acme/shop/pulls?per_page=10&sort=updated",
    );
    assert_eq!(answer.status, 200);
    let mut headers = credentials(Kind::Github);
    headers.push(("Connection", "close".into()));
    assert_eq!(
        send(
            &mut connect(&forge),
            "POST",
            "/repos/acme/shop/pulls",
            &headers
        )
        .status,
        404
    );
    assert_eq!(
        get(&forge, Kind::Github, "/repos/acme/other/pulls/1").status,
        404
    );
    let problems = forge.problems();
    assert_eq!(problems.len(), 5, "{problems:#?}");
    for (problem, about) in problems.iter().zip([
        "per_page=500",
        "`sort`",
        "no state=open",
        "not an endpoint",
        "not the repository",
    ]) {
        assert!(problem.contains(about), "{problem:?} is not about {about}");
    }
}
