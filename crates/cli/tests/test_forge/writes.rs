//! The test forge's writes through a raw HTTP client: comments, commit statuses and GitHub's deployments, kept as
//! tests read them; bodies checked against their documented shapes; and the writes each forge refuses.

use serde_json::{Value, json};

use super::support::forge::{
    Kind, Pull, TestComment, TestDeployment, TestDeploymentStatus, TestForge, TestStatus,
};
use super::{TOKEN, assert_no_problems, field, follow, get, sha, write, write_raw};

/// Where a pull request's comments are, in `acme/shop`.
fn comments_of(kind: Kind, number: u64) -> String {
    match kind {
        Kind::Github => format!("/repos/acme/shop/issues/{number}/comments"),
        Kind::Gitlab => format!("/api/v4/projects/acme%2Fshop/merge_requests/{number}/notes"),
        Kind::Gitea => format!("/api/v1/repos/acme/shop/issues/{number}/comments"),
    }
}

/// How and where a comment is edited.
fn comment_at(kind: Kind, number: u64, id: u64) -> (&'static str, String) {
    match kind {
        Kind::Github => ("PATCH", format!("/repos/acme/shop/issues/comments/{id}")),
        Kind::Gitlab => (
            "PUT",
            format!("/api/v4/projects/acme%2Fshop/merge_requests/{number}/notes/{id}"),
        ),
        Kind::Gitea => (
            "PATCH",
            format!("/api/v1/repos/acme/shop/issues/comments/{id}"),
        ),
    }
}

fn status_of(kind: Kind, sha: &str) -> String {
    match kind {
        Kind::Github => format!("/repos/acme/shop/statuses/{sha}"),
        Kind::Gitlab => format!("/api/v4/projects/acme%2Fshop/statuses/{sha}"),
        Kind::Gitea => format!("/api/v1/repos/acme/shop/statuses/{sha}"),
    }
}

/// A forge holding `acme/shop` with pull request #1 at `sha(1)`.
fn forge_with_one_pull(kind: Kind) -> TestForge {
    let forge = TestForge::start(kind, "acme/shop", TOKEN);
    forge.open_pull(Pull::new(1, "feature", &sha(1)));
    forge
}

fn comment(id: u64, author: &str, body: &str, edits: usize) -> TestComment {
    TestComment {
        id,
        author: author.into(),
        body: body.into(),
        edits,
    }
}

#[test]
fn the_tokens_user_is_the_bot() {
    for (kind, target, login) in [
        (Kind::Github, "/user", "login"),
        (Kind::Gitlab, "/api/v4/user", "username"),
        (Kind::Gitea, "/api/v1/user", "login"),
    ] {
        let forge = TestForge::start(kind, "acme/shop", TOKEN);
        let user = get(&forge, kind, target).json();
        assert_eq!(
            (&user[login], &user["id"]),
            (&json!("preview-bot"), &json!(4242)),
            "{kind:?}"
        );
        forge.set_bot("preview[bot]");
        let user = get(&forge, kind, target).json();
        assert_eq!(user[login], "preview[bot]", "{kind:?}");
        if kind == Kind::Github {
            assert_eq!(user["type"], "Bot");
        }
        assert_no_problems(&forge);
    }
}

#[test]
fn comments_are_written_and_edited_by_the_bot_and_listed_oldest_first() {
    for (kind, query) in [
        (Kind::Github, "?per_page=100"),
        (Kind::Gitlab, "?sort=asc&order_by=created_at&per_page=100"),
        (Kind::Gitea, ""),
    ] {
        let forge = forge_with_one_pull(kind);
        forge.set_page_size(1);
        let theirs = forge.add_comment(1, "octocat", "Looks good");
        let created = write(
            &forge,
            kind,
            "POST",
            &comments_of(kind, 1),
            json!({"body": "Deploying"}),
        );
        assert_eq!(created.status, 201, "{kind:?}: {}", created.body);
        let created = created.json();
        let author = match kind {
            Kind::Gitlab => &created["author"]["username"],
            _ => &created["user"]["login"],
        };
        assert_eq!(author, "preview-bot", "{kind:?}");
        let ours = created["id"].as_u64().expect("an id");
        let (method, target) = comment_at(kind, 1, ours);
        for body in ["Deployed", "Deployed again"] {
            let edited = write(&forge, kind, method, &target, json!({ "body": body }));
            assert_eq!(
                (edited.status, &edited.json()["body"]),
                (200, &json!(body)),
                "{kind:?}"
            );
        }
        let (listed, _) = follow(&forge, kind, &format!("{}{query}", comments_of(kind, 1)));
        assert_eq!(
            field(&listed, "body"),
            [&json!("Looks good"), &json!("Deployed again")],
            "{kind:?}"
        );
        assert_eq!(
            forge.comments(1),
            [
                comment(theirs, "octocat", "Looks good", 0),
                comment(ours, "preview-bot", "Deployed again", 2)
            ],
            "{kind:?}"
        );
        forge.delete_comment(ours);
        let edited = write(&forge, kind, method, &target, json!({"body": "Gone"}));
        assert_eq!(edited.status, 404, "{kind:?}");
        assert_no_problems(&forge);
    }
}

#[test]
fn comments_of_an_unknown_pull_are_each_forges_error() {
    for (kind, status) in [(Kind::Github, 404), (Kind::Gitlab, 404), (Kind::Gitea, 500)] {
        let forge = forge_with_one_pull(kind);
        let answer = write(
            &forge,
            kind,
            "POST",
            &comments_of(kind, 9),
            json!({"body": "Hi"}),
        );
        assert_eq!(answer.status, status, "{kind:?}: {}", answer.body);
        assert_no_problems(&forge);
    }
}

#[test]
fn gitea_answers_every_comment_whatever_the_page() {
    let forge = forge_with_one_pull(Kind::Gitea);
    forge.set_page_size(1);
    for body in ["one", "two", "three"] {
        forge.add_comment(1, "octocat", body);
    }
    let answer = get(
        &forge,
        Kind::Gitea,
        "/api/v1/repos/acme/shop/issues/1/comments?page=2&limit=1",
    );
    assert_eq!(answer.json().as_array().map(Vec::len), Some(3));
    assert_eq!(
        (answer.header("X-Total-Count"), answer.header("Link")),
        (Some("3"), None)
    );
    let problems = forge.problems();
    assert!(
        problems.len() == 1 && problems[0].contains("page=2"),
        "{problems:?}"
    );
}

#[test]
fn editing_someone_elses_comment_is_a_problem_which_gitlab_refuses() {
    for (kind, status, kept) in [
        (Kind::Github, 200, "Overwritten"),
        (Kind::Gitlab, 403, "Mine"),
        (Kind::Gitea, 200, "Overwritten"),
    ] {
        let forge = forge_with_one_pull(kind);
        let theirs = forge.add_comment(1, "octocat", "Mine");
        let (method, target) = comment_at(kind, 1, theirs);
        let answer = write(
            &forge,
            kind,
            method,
            &target,
            json!({"body": "Overwritten"}),
        );
        assert_eq!(answer.status, status, "{kind:?}: {}", answer.body);
        assert_eq!(forge.comments(1)[0].body, kept, "{kind:?}");
        let problems = forge.problems();
        assert!(
            problems.len() == 1 && problems[0].contains("a comment by octocat"),
            "{kind:?}: {problems:?}"
        );
    }
}

#[test]
fn statuses_go_to_commits_the_forge_knows() {
    for (kind, context, unknown) in [
        (Kind::Github, "context", 422),
        (Kind::Gitlab, "name", 404),
        (Kind::Gitea, "context", 404),
    ] {
        let forge = forge_with_one_pull(kind);
        forge.push(1, &sha(2));
        let mut body = json!({
            "state": "pending",
            "description": "Deploying",
            "target_url": "http://preview.test/1",
        });
        body[context] = json!("preview");
        for head in [sha(1), sha(2)] {
            let answer = write(&forge, kind, "POST", &status_of(kind, &head), body.clone());
            assert_eq!(answer.status, 201, "{kind:?}: {}", answer.body);
        }
        let answer = write(&forge, kind, "POST", &status_of(kind, &sha(3)), body);
        assert_eq!(answer.status, unknown, "{kind:?}: {}", answer.body);
        if kind == Kind::Github {
            assert_eq!(
                answer.json()["message"],
                format!("No commit found for SHA: {}", sha(3))
            );
        }
        let problems = forge.problems();
        assert!(
            problems.len() == 1 && problems[0].contains("no commit"),
            "{kind:?}: {problems:?}"
        );
        assert_eq!(
            forge.statuses(&sha(1)),
            [TestStatus {
                state: "pending".into(),
                context: "preview".into(),
                description: Some("Deploying".into()),
                target_url: Some("http://preview.test/1".into()),
            }],
            "{kind:?}"
        );
        assert_eq!(forge.statuses(&sha(3)), []);
    }
}

#[test]
fn gitlab_refuses_a_status_a_context_already_has_while_pending_or_running() {
    let forge = forge_with_one_pull(Kind::Gitlab);
    let target = status_of(Kind::Gitlab, &sha(1));
    let post = |state: &str, name: &str| {
        write(
            &forge,
            Kind::Gitlab,
            "POST",
            &target,
            json!({"state": state, "name": name}),
        )
    };
    let answers: Vec<u16> = [
        "pending", "pending", "running", "running", "success", "success",
    ]
    .into_iter()
    .map(|state| post(state, "preview").status)
    .collect();
    // A finished status is followed by a new one, so that only pending and running cannot repeat.
    assert_eq!(answers, [201, 400, 201, 400, 201, 201]);
    assert_eq!(post("running", "other").status, 201);
    let refused = post("running", "other");
    assert_eq!(
        (refused.status, refused.json()),
        (
            400,
            json!({"message": "Cannot transition status via :run from :running (Reason(s): Status cannot transition via \"run\".)"})
        )
    );
    let states: Vec<String> = forge
        .statuses(&sha(1))
        .into_iter()
        .map(|status| format!("{}:{}", status.context, status.state))
        .collect();
    assert_eq!(
        states,
        [
            "preview:pending",
            "preview:running",
            "preview:success",
            "preview:success",
            "other:running"
        ]
    );
    assert_eq!(forge.problems().len(), 3, "{:?}", forge.problems());
}

#[test]
fn a_github_deployment_takes_statuses_and_its_success_retires_the_one_before() {
    let forge = forge_with_one_pull(Kind::Github);
    let deploy = || {
        let answer = write(
            &forge,
            Kind::Github,
            "POST",
            "/repos/acme/shop/deployments",
            json!({
                "ref": "feature",
                "environment": "pr-1",
                "description": "Preview of #1",
                "auto_merge": false,
                "required_contexts": [],
                "transient_environment": false,
                "production_environment": false,
            }),
        );
        assert_eq!(answer.status, 201, "{}", answer.body);
        answer.json()
    };
    let report = |id: &Value, body: Value| {
        let target = format!("/repos/acme/shop/deployments/{id}/statuses");
        let answer = write(&forge, Kind::Github, "POST", &target, body);
        assert_eq!(answer.status, 201, "{}", answer.body);
        answer.json()
    };
    let first = deploy();
    assert_eq!(
        (&first["sha"], &first["environment"], &first["task"]),
        (&json!(sha(1)), &json!("pr-1"), &json!("deploy"))
    );
    report(
        &first["id"],
        json!({"state": "in_progress", "log_url": "http://log.test/1"}),
    );
    let (env, log) = ("http://pr-1.preview.test", "http://log.test/1");
    let success = report(
        &first["id"],
        json!({"state": "success", "environment_url": env, "log_url": log}),
    );
    assert_eq!(
        (&success["environment_url"], &success["deployment_url"]),
        (
            &json!(env),
            &json!(format!(
                "{}/repos/acme/shop/deployments/{}",
                forge.url(),
                first["id"]
            ))
        )
    );
    forge.push(1, &sha(2));
    let second = deploy();
    report(
        &second["id"],
        json!({"state": "success", "environment_url": env}),
    );

    let status =
        |state: &str, environment_url: Option<&str>, log_url: Option<&str>| TestDeploymentStatus {
            state: state.into(),
            environment_url: environment_url.map(str::to_string),
            log_url: log_url.map(str::to_string),
        };
    let deployment = |answer: &Value, head: String, statuses| TestDeployment {
        id: answer["id"].as_u64().expect("an id"),
        sha: head,
        environment: "pr-1".into(),
        transient_environment: false,
        auto_merge: false,
        required_contexts: Vec::new(),
        statuses,
    };
    assert_eq!(
        forge.deployments(),
        [
            deployment(
                &first,
                sha(1),
                vec![
                    status("in_progress", None, Some(log)),
                    status("success", Some(env), Some(log)),
                    status("inactive", Some(env), Some(log)),
                ]
            ),
            deployment(&second, sha(2), vec![status("success", Some(env), None)]),
        ]
    );
    let unknown = write(
        &forge,
        Kind::Github,
        "POST",
        "/repos/acme/shop/deployments/1/statuses",
        json!({"state": "success"}),
    );
    assert_eq!(unknown.status, 404);
    assert_no_problems(&forge);
}

#[test]
fn github_refuses_a_deployment_its_statuses_hold_back_or_of_an_unknown_ref() {
    let forge = forge_with_one_pull(Kind::Github);
    let deployments = "/repos/acme/shop/deployments";
    let pending = json!({"state": "pending", "context": "preview"});
    assert_eq!(
        write(
            &forge,
            Kind::Github,
            "POST",
            &status_of(Kind::Github, &sha(1)),
            pending
        )
        .status,
        201
    );
    let held = write(
        &forge,
        Kind::Github,
        "POST",
        deployments,
        json!({"ref": sha(1)}),
    );
    assert_eq!(held.status, 409, "{}", held.body);
    assert_eq!(
        held.json()["errors"][0]["contexts"],
        json!([{"context": "preview", "state": "pending"}])
    );
    let deployed = write(
        &forge,
        Kind::Github,
        "POST",
        deployments,
        json!({"ref": "refs/pull/1/head", "required_contexts": []}),
    );
    assert_eq!(deployed.status, 201, "{}", deployed.body);
    assert_eq!(
        (
            &deployed.json()["environment"],
            &deployed.json()["production_environment"]
        ),
        (&json!("production"), &json!(true))
    );
    assert!(forge.deployments()[0].auto_merge, "GitHub's default");
    let nowhere = write(
        &forge,
        Kind::Github,
        "POST",
        deployments,
        json!({"ref": "nowhere", "required_contexts": []}),
    );
    assert_eq!(
        (nowhere.status, &nowhere.json()["message"]),
        (422, &json!("No ref found for: nowhere"))
    );
    let problems = forge.problems();
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(problems[0].contains("required_contexts"), "{problems:?}");
    assert!(problems[1].contains("\"nowhere\""), "{problems:?}");

    for (kind, target) in [
        (Kind::Gitlab, "/api/v4/projects/acme%2Fshop/deployments"),
        (Kind::Gitea, "/api/v1/repos/acme/shop/deployments"),
    ] {
        let forge = forge_with_one_pull(kind);
        let answer = write(&forge, kind, "POST", target, json!({"ref": sha(1)}));
        assert_eq!(answer.status, 404, "{kind:?}");
        assert_eq!(forge.problems().len(), 1, "{kind:?}");
    }
}

#[test]
fn bodies_not_of_the_documented_shape_are_refused_and_recorded() {
    let json = Some("application/json");
    let long = json!({"state": "success", "description": "x".repeat(141)}).to_string();
    let github_status = status_of(Kind::Github, &sha(1));
    let gitlab_status = status_of(Kind::Gitlab, &sha(1));
    let cases = [
        (
            Kind::Github,
            github_status.clone(),
            json,
            long,
            422,
            r#""field":"description""#,
            "over the maximum of 140",
        ),
        (
            Kind::Github,
            github_status.clone(),
            json,
            r#"{"state":"success","colour":"red"}"#.into(),
            422,
            r#""field":"colour""#,
            "`colour` is not a field",
        ),
        (
            Kind::Github,
            github_status,
            json,
            r#"{"state":"done"}"#.into(),
            422,
            "Validation Failed",
            "`state` is not one of error, failure, pending, success",
        ),
        (
            Kind::Github,
            comments_of(Kind::Github, 1),
            json,
            "{}".into(),
            422,
            "missing_field",
            "no `body`",
        ),
        (
            Kind::Github,
            comments_of(Kind::Github, 1),
            Some("text/plain"),
            "Hello".into(),
            400,
            "Problems parsing JSON",
            "Content-Type: text/plain",
        ),
        (
            Kind::Github,
            comments_of(Kind::Github, 1),
            json,
            "{\"body\":".into(),
            400,
            "Problems parsing JSON",
            "not JSON",
        ),
        (
            Kind::Github,
            "/repos/acme/shop/deployments".into(),
            json,
            r#"{"ref":"feature","transient_environment":"yes"}"#.into(),
            422,
            r#""field":"transient_environment""#,
            "not a boolean",
        ),
        (
            Kind::Github,
            "/repos/acme/shop/deployments/1/statuses".into(),
            json,
            r#"{"environment_url":"http://x.test"}"#.into(),
            422,
            "missing_field",
            "no `state`",
        ),
        (
            Kind::Gitlab,
            comments_of(Kind::Gitlab, 1),
            json,
            r#"{"body":" "}"#.into(),
            400,
            r#"{"error":"body is empty"}"#,
            "`body` is empty",
        ),
        (
            Kind::Gitlab,
            gitlab_status.clone(),
            json,
            r#"{"state":"successful"}"#.into(),
            400,
            "state does not have a valid value",
            "`state` is not one of",
        ),
        (
            Kind::Gitlab,
            gitlab_status,
            None,
            r#"{"state":"success"}"#.into(),
            400,
            "state is missing",
            "without Content-Type",
        ),
        (
            Kind::Gitea,
            comments_of(Kind::Gitea, 1),
            json,
            r#"{"body":5}"#.into(),
            422,
            "[Body]:",
            "`body` is not a string",
        ),
        (
            Kind::Gitea,
            status_of(Kind::Gitea, &sha(1)),
            json,
            "{}".into(),
            422,
            "[State]: Required",
            "no `state`",
        ),
    ];
    for (kind, target, content_type, body, status, answered, problem) in cases {
        let forge = forge_with_one_pull(kind);
        let answer = write_raw(&forge, kind, "POST", &target, content_type, body.as_bytes());
        assert_eq!(answer.status, status, "{kind:?} {body}: {}", answer.body);
        assert!(
            answer.body.contains(answered),
            "{kind:?} {body}: {}",
            answer.body
        );
        let problems = forge.problems();
        assert!(
            problems.len() == 1 && problems[0].contains(problem),
            "{kind:?} {body}: {problems:?}"
        );
        assert!(
            forge.comments(1).is_empty()
                && forge.statuses(&sha(1)).is_empty()
                && forge.deployments().is_empty()
        );
    }
}

#[test]
fn writes_meet_failures_and_githubs_secondary_rate_limit() {
    let forge = forge_with_one_pull(Kind::Github);
    let post = || {
        write(
            &forge,
            Kind::Github,
            "POST",
            &comments_of(Kind::Github, 1),
            json!({"body": "Deploying"}),
        )
    };
    forge.secondary_rate_limit_next(1);
    let limited = post();
    assert_eq!(
        (limited.status, limited.header("Retry-After")),
        (403, Some("1"))
    );
    assert_ne!(limited.header("x-ratelimit-remaining"), Some("0"));
    assert!(
        limited.json()["message"]
            .as_str()
            .expect("a message")
            .starts_with("You have exceeded a secondary rate limit")
    );
    forge.rate_limit_next(1);
    assert_eq!(post().header("x-ratelimit-remaining"), Some("0"));
    forge.fail_next(1, 502);
    assert_eq!(post().status, 502);
    assert_eq!(forge.comments(1), []);
    assert_eq!(post().status, 201);
    assert_eq!(forge.comments(1).len(), 1);
    assert_no_problems(&forge);
}
