//! Answers as the forges' REST documentation shows them (the fields `preview` reads, with their real names and
//! nesting, among others it ignores).

use serde_json::json;

use super::*;

/// Headers as a test writes them.
struct Pairs<'a>(&'a [(&'a str, &'a str)]);

impl Headers for Pairs<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        Headers::get(self.0, name)
    }
}

fn body(json: Value) -> Vec<u8> {
    json.to_string().into_bytes()
}

fn pull(number: u64, open: bool, fork: bool) -> PullState {
    PullState {
        number,
        open,
        head_sha: format!("{number}{}", "a".repeat(39)),
        head_ref: format!("branch-{number}"),
        base_ref: "main".to_owned(),
        fork,
        labels: Vec::new(),
        draft: false,
        author: "octocat".to_owned(),
        title: format!("Change {number}"),
        url: String::new(),
    }
}

fn check_request(request: ApiRequest, url: &str, headers: &[(&str, &str)]) {
    assert_eq!(request.method, "GET");
    assert_eq!(request.url, url);
    assert_eq!(request.body, None, "{url}");
    let got: Vec<(&str, &str)> = request
        .headers
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    assert_eq!(got, headers, "{url}");
}

#[test]
fn requests_name_each_forges_endpoints() {
    let github_headers = [
        ("Accept", "application/vnd.github+json"),
        ("X-GitHub-Api-Version", "2022-11-28"),
    ];
    let json_headers = [("Accept", "application/json")];
    let github = Api::new(Forge::Github, "https://api.github.com/", "octo-org/shop");
    check_request(
        github.list_open(2),
        "https://api.github.com/repos/octo-org/shop/pulls?state=open&per_page=100&page=2",
        &github_headers,
    );
    check_request(
        github.get(42),
        "https://api.github.com/repos/octo-org/shop/pulls/42",
        &github_headers,
    );
    check_request(
        github.files(42, 1),
        "https://api.github.com/repos/octo-org/shop/pulls/42/files?per_page=100&page=1",
        &github_headers,
    );

    let gitlab = Api::new(
        Forge::Gitlab,
        "https://gitlab.com/api/v4",
        "group/sub group/shop.web",
    );
    let project = "https://gitlab.com/api/v4/projects/group%2Fsub%20group%2Fshop.web";
    check_request(
        gitlab.list_open(1),
        &format!("{project}/merge_requests?state=opened&per_page=100&page=1"),
        &json_headers,
    );
    check_request(
        gitlab.get(7),
        &format!("{project}/merge_requests/7"),
        &json_headers,
    );
    check_request(
        gitlab.files(7, 3),
        &format!("{project}/merge_requests/7/diffs?per_page=100&page=3"),
        &json_headers,
    );

    for forge in [Forge::Gitea, Forge::Forgejo] {
        let gitea = Api::new(forge, "https://codeberg.org/api/v1", "team/my shop#1");
        let repo = "https://codeberg.org/api/v1/repos/team/my%20shop%231";
        check_request(
            gitea.list_open(1),
            &format!("{repo}/pulls?state=open&page=1&limit=50"),
            &json_headers,
        );
        check_request(gitea.get(3), &format!("{repo}/pulls/3"), &json_headers);
        check_request(
            gitea.files(3, 2),
            &format!("{repo}/pulls/3/files?page=2&limit=50"),
            &json_headers,
        );
    }
}

#[test]
fn default_bases_and_authorization() {
    for (forge, web, base) in [
        (
            Forge::Github,
            "https://github.com",
            "https://api.github.com",
        ),
        (
            Forge::Github,
            "https://github.com/",
            "https://api.github.com",
        ),
        (
            Forge::Github,
            "https://github.example.com",
            "https://github.example.com/api/v3",
        ),
        (
            Forge::Gitlab,
            "https://gitlab.com/",
            "https://gitlab.com/api/v4",
        ),
        (
            Forge::Gitea,
            "https://git.example.com",
            "https://git.example.com/api/v1",
        ),
        (
            Forge::Forgejo,
            "https://codeberg.org",
            "https://codeberg.org/api/v1",
        ),
    ] {
        assert_eq!(Api::default_base(forge, web), base, "{forge:?} {web}");
    }
    for (forge, header) in [
        (Forge::Github, ("Authorization", "Bearer ghp_x")),
        (Forge::Gitlab, ("PRIVATE-TOKEN", "ghp_x")),
        (Forge::Gitea, ("Authorization", "token ghp_x")),
        (Forge::Forgejo, ("Authorization", "token ghp_x")),
    ] {
        let api = Api::new(forge, "https://example.com", "a/b");
        let (name, value) = api.authorization("ghp_x");
        assert_eq!((name, value.as_str()), header, "{forge:?}");
    }
}

/// An item of GitHub's (and, with `draft` left out when `draft` is `None`, Gitea's) pull request list.
fn github_pull(
    number: u64,
    state: &str,
    merged: bool,
    head_repo: Value,
    draft: Option<bool>,
) -> Value {
    let mut pull = json!({
        "url": format!("https://api.github.com/repos/octo-org/shop/pulls/{number}"),
        "id": 1000 + number,
        "html_url": format!("https://github.com/octo-org/shop/pull/{number}"),
        "number": number,
        "state": state,
        "locked": false,
        "title": format!("Change {number}"),
        "user": { "login": "octocat", "id": 1, "type": "User" },
        "body": "Please pull these awesome changes in!",
        "labels": [],
        "closed_at": if state == "closed" { json!("2011-01-26T19:01:12Z") } else { Value::Null },
        "merged_at": if merged { json!("2011-01-26T19:01:12Z") } else { Value::Null },
        "merge_commit_sha": "e5bd3914e2e596debea16f433f57875b5b90bcd6",
        "head": {
            "label": format!("octocat:branch-{number}"),
            "ref": format!("branch-{number}"),
            "sha": format!("{number}{}", "a".repeat(39)),
            "user": { "login": "octocat" },
            "repo": head_repo
        },
        "base": {
            "label": "octo-org:main",
            "ref": "main",
            "sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e",
            "repo": { "id": 1296269, "name": "shop", "full_name": "octo-org/shop" }
        },
        "author_association": "OWNER"
    });
    if let Some(draft) = draft {
        pull["draft"] = json!(draft);
    }
    pull
}

fn repo(full_name: &str) -> Value {
    json!({ "id": 1296269, "name": "shop", "full_name": full_name, "private": false })
}

#[test]
fn github_lists_forks_drafts_and_closed_pull_requests() {
    let api = Api::new(Forge::Github, "https://api.github.com", "octo-org/shop");
    let mut labelled = github_pull(1, "open", false, repo("octo-org/shop"), Some(true));
    labelled["labels"] = json!([
        { "id": 208045946, "name": "preview", "color": "f29513", "default": true },
        { "id": 208045947, "name": "bug", "color": "d73a4a", "default": false }
    ]);
    let answer = json!([
        labelled,
        github_pull(2, "open", false, repo("stranger/shop"), Some(false)),
        // The fork was deleted: its head repository is `null`.
        github_pull(3, "open", false, Value::Null, Some(false)),
        github_pull(4, "closed", true, repo("octo-org/shop"), Some(false)),
        github_pull(5, "closed", false, repo("octo-org/shop"), Some(false)),
    ]);
    let url = |n: u64| format!("https://github.com/octo-org/shop/pull/{n}");
    assert_eq!(
        api.read_list(&body(answer)),
        Ok(vec![
            PullState {
                labels: vec!["preview".to_owned(), "bug".to_owned()],
                draft: true,
                url: url(1),
                ..pull(1, true, false)
            },
            PullState {
                url: url(2),
                ..pull(2, true, true)
            },
            PullState {
                url: url(3),
                ..pull(3, true, true)
            },
            PullState {
                url: url(4),
                ..pull(4, false, false)
            },
            PullState {
                url: url(5),
                ..pull(5, false, false)
            },
        ])
    );
    let one = github_pull(9, "open", false, repo("octo-org/shop"), Some(false));
    assert_eq!(api.read_one(&body(one)).map(|p| p.number), Ok(9));
}

#[test]
fn gitea_reads_like_github_with_draft_optional() {
    let gitea_repo =
        |full_name: &str| json!({ "id": 5, "name": "shop", "full_name": full_name, "fork": false });
    let mut item = github_pull(3, "open", false, gitea_repo("team/shop"), None);
    item["labels"] = json!([{ "id": 1, "name": "preview", "color": "00aabb", "exclusive": false }]);
    item["head"]["repo_id"] = json!(5);
    item["merged"] = json!(false);
    let mut forked = github_pull(4, "open", false, gitea_repo("someone/shop"), Some(true));
    let mut merged = github_pull(5, "closed", true, gitea_repo("team/shop"), None);
    merged["merged"] = json!(true);
    for pull in [&mut item, &mut forked, &mut merged] {
        pull["base"]["repo"] = gitea_repo("team/shop");
    }
    for forge in [Forge::Gitea, Forge::Forgejo] {
        let api = Api::new(forge, "https://codeberg.org/api/v1", "team/shop");
        let read = api
            .read_list(&body(json!([item, forked, merged])))
            .expect("a list of pull requests");
        let summary: Vec<(u64, bool, bool, bool, Vec<String>)> = read
            .into_iter()
            .map(|p| (p.number, p.open, p.fork, p.draft, p.labels))
            .collect();
        assert_eq!(
            summary,
            [
                (3, true, false, false, vec!["preview".to_owned()]),
                (4, true, true, true, vec![]),
                (5, false, false, false, vec![]),
            ],
            "{forge:?}"
        );
    }
}

/// A merge request as GitLab's "List project merge requests" shows it.
fn gitlab_merge_request(iid: u64, state: &str, source_project_id: u64) -> Value {
    json!({
        "id": 100 + iid,
        "iid": iid,
        "project_id": 3,
        "title": format!("Change {iid}"),
        "description": "fixed login page css paddings",
        "state": state,
        "merged_by": null,
        "target_branch": "main",
        "source_branch": format!("branch-{iid}"),
        "upvotes": 0,
        "author": { "id": 1, "name": "Administrator", "username": "admin", "state": "active" },
        "source_project_id": source_project_id,
        "target_project_id": 3,
        "labels": ["Community contribution", "preview"],
        "draft": false,
        "work_in_progress": false,
        "merge_when_pipeline_succeeds": true,
        "detailed_merge_status": "not_open",
        "sha": "8888888888888888888888888888888888888888",
        "merge_commit_sha": null,
        "web_url": format!("http://gitlab.example.com/my-group/my-project/merge_requests/{iid}"),
        "references": { "short": format!("!{iid}"), "full": format!("my-group/my-project!{iid}") }
    })
}

#[test]
fn gitlab_lists_merge_requests_by_iid() {
    let api = Api::new(
        Forge::Gitlab,
        "https://gitlab.example.com/api/v4",
        "my-group/my-project",
    );
    let mut older = gitlab_merge_request(2, "opened", 3);
    // Before GitLab 14, a draft was "work in progress", and there was no `draft`.
    older.as_object_mut().expect("an object").remove("draft");
    older["work_in_progress"] = json!(true);
    let answer = json!([
        gitlab_merge_request(1, "opened", 3),
        older,
        gitlab_merge_request(3, "opened", 77),
        gitlab_merge_request(4, "merged", 3),
        gitlab_merge_request(5, "closed", 3),
        gitlab_merge_request(6, "locked", 3),
    ]);
    let read = api
        .read_list(&body(answer))
        .expect("a list of merge requests");
    assert_eq!(
        read[0],
        PullState {
            number: 1,
            open: true,
            head_sha: "8888888888888888888888888888888888888888".to_owned(),
            head_ref: "branch-1".to_owned(),
            base_ref: "main".to_owned(),
            fork: false,
            labels: vec!["Community contribution".to_owned(), "preview".to_owned()],
            draft: false,
            author: "admin".to_owned(),
            title: "Change 1".to_owned(),
            url: "http://gitlab.example.com/my-group/my-project/merge_requests/1".to_owned(),
        }
    );
    let summary: Vec<(u64, bool, bool, bool)> = read
        .iter()
        .map(|p| (p.number, p.open, p.fork, p.draft))
        .collect();
    assert_eq!(
        summary,
        [
            (1, true, false, false),
            (2, true, false, true),
            (3, true, true, false),
            (4, false, false, false),
            (5, false, false, false),
            (6, false, false, false),
        ]
    );
}

#[test]
fn broken_answers_name_the_field() {
    let github = Api::new(Forge::Github, "https://api.github.com", "octo-org/shop");
    let mut no_sha = github_pull(1, "open", false, repo("octo-org/shop"), None);
    no_sha["head"]
        .as_object_mut()
        .expect("an object")
        .remove("sha");
    assert_eq!(
        github.read_one(&body(no_sha.clone())),
        Err("the answer has no `head.sha`".to_owned())
    );
    let fine = github_pull(1, "open", false, repo("octo-org/shop"), None);
    assert_eq!(
        github.read_list(&body(json!([fine, no_sha]))),
        Err("the answer's item 1 has no `head.sha`".to_owned())
    );
    let mut no_base_repo = github_pull(1, "open", false, repo("octo-org/shop"), None);
    no_base_repo["base"]["repo"] = Value::Null;
    assert_eq!(
        github.read_one(&body(no_base_repo)),
        Err("the answer has no `base.repo.full_name`".to_owned())
    );
    assert_eq!(
        github.read_list(br#"{"message":"Not Found"}"#),
        Err("the answer is not a list".to_owned())
    );
    assert!(
        github
            .read_one(b"<html>")
            .is_err_and(|e| e.starts_with("the answer is not JSON"))
    );
    let gitlab = Api::new(Forge::Gitlab, "https://gitlab.com/api/v4", "a/b");
    let mut text_iid = gitlab_merge_request(1, "opened", 3);
    text_iid["iid"] = json!("1");
    assert_eq!(
        gitlab.read_one(&body(text_iid)),
        Err("the answer has no number `iid`".to_owned())
    );
    assert_eq!(
        gitlab.read_files(&body(json!([{ "old_path": "a" }]))),
        Err("the answer's item 0 has no `new_path`".to_owned())
    );
}

#[test]
fn changed_files_include_where_renamed_files_were() {
    let github_files = json!([
        { "sha": "bbcd538c8e72b8c175046e27cc8f907076331401", "filename": "web/app.js", "status": "modified",
          "additions": 103, "deletions": 21, "changes": 124 },
        { "sha": "cccd538c8e72b8c175046e27cc8f907076331401", "filename": "api/new.rs", "status": "renamed",
          "previous_filename": "api/old.rs", "additions": 0, "deletions": 0, "changes": 0 }
    ]);
    for forge in [Forge::Github, Forge::Gitea, Forge::Forgejo] {
        let api = Api::new(forge, "https://example.com", "o/r");
        assert_eq!(
            api.read_files(&body(github_files.clone())),
            Ok(vec![
                "web/app.js".to_owned(),
                "api/new.rs".to_owned(),
                "api/old.rs".to_owned()
            ]),
            "{forge:?}"
        );
    }
    let gitlab = Api::new(Forge::Gitlab, "https://gitlab.com/api/v4", "a/b");
    let diffs = json!([
        { "old_path": "README", "new_path": "README", "a_mode": "100644", "b_mode": "100644",
          "diff": "@@ -1 +1 @@\n-Title\n+README", "new_file": false, "renamed_file": false, "deleted_file": false },
        { "old_path": "lib/old.rb", "new_path": "lib/new.rb", "a_mode": "100644", "b_mode": "100644",
          "diff": "", "new_file": false, "renamed_file": true, "deleted_file": false }
    ]);
    assert_eq!(
        gitlab.read_files(&body(diffs)),
        Ok(vec![
            "README".to_owned(),
            "lib/new.rb".to_owned(),
            "lib/old.rb".to_owned()
        ])
    );
}

#[test]
fn next_pages_from_link_and_x_next_page() {
    let check = |forge: Forge, headers: &[(&str, &str)], page: u32, expected: Option<u32>| {
        let api = Api::new(forge, "https://example.com", "o/r");
        assert_eq!(
            api.next_page(&Pairs(headers), page),
            expected,
            "{forge:?} {headers:?} {page}"
        );
    };
    let github_middle = r#"<https://api.github.com/repositories/1300192/pulls?state=open&per_page=100&page=1>; rel="prev", <https://api.github.com/repositories/1300192/pulls?state=open&per_page=100&page=3>; rel="next", <https://api.github.com/repositories/1300192/pulls?state=open&per_page=100&page=5>; rel="last", <https://api.github.com/repositories/1300192/pulls?state=open&per_page=100&page=1>; rel="first""#;
    check(Forge::Github, &[("link", github_middle)], 2, Some(3));
    let github_last = r#"<https://api.github.com/repositories/1300192/pulls?page=4>; rel="prev", <https://api.github.com/repositories/1300192/pulls?page=1>; rel="first""#;
    check(Forge::Github, &[("Link", github_last)], 5, None);
    check(Forge::Github, &[], 1, None);
    // A "next" link that points back would loop.
    check(
        Forge::Github,
        &[("Link", r#"<https://x/pulls?page=1>; rel="next""#)],
        1,
        None,
    );
    // Gitea's Link, with `limit` before `page`.
    let gitea = r#"<https://codeberg.org/api/v1/repos/team/shop/pulls?limit=50&page=2&state=open>; rel="next",<https://codeberg.org/api/v1/repos/team/shop/pulls?limit=50&page=4&state=open>; rel="last""#;
    check(Forge::Gitea, &[("Link", gitea)], 1, Some(2));
    check(Forge::Forgejo, &[("Link", gitea)], 1, Some(2));
    let gitea_last = r#"<https://codeberg.org/api/v1/repos/team/shop/pulls?limit=50&page=1&state=open>; rel="first",<https://codeberg.org/api/v1/repos/team/shop/pulls?limit=50&page=3&state=open>; rel="prev""#;
    check(Forge::Gitea, &[("Link", gitea_last)], 4, None);
    // GitLab says it in X-Next-Page, empty on the last page (it sends a Link too).
    let gitlab_link = r#"<https://gitlab.example.com/api/v4/projects/8/merge_requests?page=1&per_page=100>; rel="first""#;
    check(
        Forge::Gitlab,
        &[("X-Next-Page", "3"), ("X-Page", "2"), ("Link", gitlab_link)],
        2,
        Some(3),
    );
    check(
        Forge::Gitlab,
        &[("x-next-page", ""), ("x-page", "3"), ("Link", gitlab_link)],
        3,
        None,
    );
    // X-Next-Page is GitLab's: another forge's answer is paged by its Link only.
    check(Forge::Github, &[("X-Next-Page", "3")], 2, None);
}

#[test]
fn rate_limits_say_how_long_to_wait() {
    let now = 1_700_000_000;
    let check = |status: u16, headers: &[(&str, &str)], expected: Option<u64>| {
        assert_eq!(
            rate_limit_wait(status, &Pairs(headers), b"{}", now),
            expected.map(Duration::from_secs),
            "{status} {headers:?}"
        );
    };
    // GitHub's primary limit: nothing left until the reset.
    let reset = (now + 30).to_string();
    let github = [
        ("x-ratelimit-limit", "5000"),
        ("x-ratelimit-remaining", "0"),
        ("x-ratelimit-used", "5000"),
        ("x-ratelimit-reset", reset.as_str()),
    ];
    check(403, &github, Some(30));
    check(429, &github, Some(30));
    // The same headers on a success, or requests left on a 403 (a refusal), are no rate limit.
    check(200, &github, None);
    check(
        403,
        &[
            ("x-ratelimit-remaining", "12"),
            ("x-ratelimit-reset", reset.as_str()),
        ],
        None,
    );
    check(403, &[], None);
    // GitHub's secondary limits say Retry-After.
    check(
        403,
        &[("retry-after", "7"), ("x-ratelimit-remaining", "4999")],
        Some(7),
    );
    // GitLab's 429.
    let gitlab_reset = (now + 12).to_string();
    check(
        429,
        &[
            ("RateLimit-Limit", "60"),
            ("RateLimit-Remaining", "0"),
            ("RateLimit-Reset", gitlab_reset.as_str()),
        ],
        Some(12),
    );
    check(
        429,
        &[
            ("Retry-After", "3"),
            ("RateLimit-Reset", gitlab_reset.as_str()),
        ],
        Some(3),
    );
    // A reset already past still waits a second; a bare 429 a minute.
    let past = (now - 5).to_string();
    check(
        403,
        &[
            ("X-RateLimit-Remaining", "0"),
            ("X-RateLimit-Reset", past.as_str()),
        ],
        Some(1),
    );
    check(429, &[], Some(60));
}

#[test]
fn github_secondary_rate_limits_are_known_by_their_message() {
    let now = 1_700_000_000;
    let reset = (now + 3000).to_string();
    // What GitHub sends on a secondary limit: requests left on the primary one, and its far reset.
    let primary = [
        ("x-ratelimit-remaining", "4990"),
        ("x-ratelimit-reset", reset.as_str()),
    ];
    let check = |status: u16, headers: &[(&str, &str)], message: &str, expected: Option<u64>| {
        let body = body(json!({
            "message": message,
            "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
        }));
        assert_eq!(
            rate_limit_wait(status, &Pairs(headers), &body, now),
            expected.map(Duration::from_secs),
            "{status} {headers:?} {message}"
        );
    };
    let secondary =
        "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.";
    check(403, &primary, secondary, Some(60));
    check(403, &[], secondary, Some(60));
    check(403, &[("Retry-After", "5")], secondary, Some(5));
    check(
        403,
        &primary,
        "You have triggered an abuse detection mechanism. Please wait a few minutes before you try again.",
        Some(60),
    );
    // Used up, the primary limit's reset says when.
    check(
        403,
        &[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", reset.as_str()),
        ],
        secondary,
        Some(3000),
    );
    check(
        403,
        &primary,
        "Resource not accessible by integration",
        None,
    );
    check(422, &[], secondary, None);
}

/// A write: its method, URL, headers and JSON body (compared as JSON, whatever the order of its keys).
fn check_write(
    request: Option<ApiRequest>,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    expected: Value,
) {
    let request = request.unwrap_or_else(|| panic!("a request to {method} {url}"));
    assert_eq!((request.method, request.url.as_str()), (method, url));
    let got: Vec<(&str, &str)> = request
        .headers
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    assert_eq!(got, headers, "{url}");
    let sent: Value = serde_json::from_str(request.body.as_deref().expect("a body")).expect("JSON");
    assert_eq!(sent, expected, "{method} {url}");
}

#[test]
fn github_feedback_requests() {
    let headers = [
        ("Accept", "application/vnd.github+json"),
        ("X-GitHub-Api-Version", "2022-11-28"),
    ];
    let api = Api::new(Forge::Github, "https://api.github.com", "octo-org/shop");
    let repo = "https://api.github.com/repos/octo-org/shop";
    check_request(api.current_user(), "https://api.github.com/user", &headers);
    check_request(
        api.comments(42, 2),
        &format!("{repo}/issues/42/comments?per_page=100&page=2"),
        &headers,
    );
    check_write(
        Some(api.create_comment(42, "Preview ready")),
        "POST",
        &format!("{repo}/issues/42/comments"),
        &headers,
        json!({ "body": "Preview ready" }),
    );
    check_write(
        Some(api.edit_comment(42, 1001, "Preview gone")),
        "PATCH",
        &format!("{repo}/issues/comments/1001"),
        &headers,
        json!({ "body": "Preview gone" }),
    );
    let sha = "6dcb09b5b57875f334f61aebed695e2e4193db5e";
    for (state, name) in [
        (CommitState::Pending, "pending"),
        (CommitState::Running, "pending"),
        (CommitState::Success, "success"),
        (CommitState::Failure, "failure"),
        (CommitState::Canceled, "error"),
    ] {
        check_write(
            Some(api.commit_status(sha, state, "preview", "Deploying", None)),
            "POST",
            &format!("{repo}/statuses/{sha}"),
            &headers,
            json!({ "state": name, "description": "Deploying", "context": "preview" }),
        );
    }
    // GitHub refuses a description longer than 140 characters; a character is not a byte.
    let long = "é".repeat(150);
    check_write(
        Some(api.commit_status(
            sha,
            CommitState::Success,
            "preview",
            &long,
            Some("https://pr-42.preview.example.com"),
        )),
        "POST",
        &format!("{repo}/statuses/{sha}"),
        &headers,
        json!({
            "state": "success",
            "target_url": "https://pr-42.preview.example.com",
            "description": "é".repeat(140),
            "context": "preview"
        }),
    );
    check_write(
        api.create_deployment(sha, "pr-42", "The preview of #42"),
        "POST",
        &format!("{repo}/deployments"),
        &headers,
        json!({
            "ref": sha,
            "environment": "pr-42",
            "description": "The preview of #42",
            "transient_environment": true,
            "production_environment": false,
            "auto_merge": false,
            "required_contexts": []
        }),
    );
    for (state, name) in [
        (DeploymentState::InProgress, "in_progress"),
        (DeploymentState::Success, "success"),
        (DeploymentState::Failure, "failure"),
        (DeploymentState::Inactive, "inactive"),
    ] {
        check_write(
            api.deployment_status(7, state, None, None, "Deploying"),
            "POST",
            &format!("{repo}/deployments/7/statuses"),
            &headers,
            json!({ "state": name, "description": "Deploying", "auto_inactive": false }),
        );
    }
    check_write(
        api.deployment_status(
            7,
            DeploymentState::Success,
            Some("https://pr-42.preview.example.com"),
            Some("https://preview.example.com/projects/shop/previews/42"),
            &long,
        ),
        "POST",
        &format!("{repo}/deployments/7/statuses"),
        &headers,
        json!({
            "state": "success",
            "environment_url": "https://pr-42.preview.example.com",
            "log_url": "https://preview.example.com/projects/shop/previews/42",
            "description": "é".repeat(140),
            "auto_inactive": false
        }),
    );
}

#[test]
fn gitlab_feedback_requests() {
    let headers = [("Accept", "application/json")];
    let api = Api::new(Forge::Gitlab, "https://gitlab.com/api/v4", "group/shop");
    let project = "https://gitlab.com/api/v4/projects/group%2Fshop";
    check_request(
        api.current_user(),
        "https://gitlab.com/api/v4/user",
        &headers,
    );
    check_request(
        api.comments(7, 3),
        &format!(
            "{project}/merge_requests/7/notes?per_page=100&page=3&sort=asc&order_by=created_at"
        ),
        &headers,
    );
    check_write(
        Some(api.create_comment(7, "Preview ready")),
        "POST",
        &format!("{project}/merge_requests/7/notes"),
        &headers,
        json!({ "body": "Preview ready" }),
    );
    check_write(
        Some(api.edit_comment(7, 302, "Preview gone")),
        "PUT",
        &format!("{project}/merge_requests/7/notes/302"),
        &headers,
        json!({ "body": "Preview gone" }),
    );
    let sha = "8888888888888888888888888888888888888888";
    for (state, name) in [
        (CommitState::Pending, "pending"),
        (CommitState::Running, "running"),
        (CommitState::Success, "success"),
        (CommitState::Failure, "failed"),
        (CommitState::Canceled, "canceled"),
    ] {
        check_write(
            Some(api.commit_status(sha, state, "preview", "Deploying", None)),
            "POST",
            &format!("{project}/statuses/{sha}"),
            &headers,
            json!({ "state": name, "name": "preview", "description": "Deploying" }),
        );
    }
    // Only GitHub's descriptions are cut.
    let long = "x".repeat(300);
    check_write(
        Some(api.commit_status(
            sha,
            CommitState::Success,
            "preview",
            &long,
            Some("https://mr-7.preview.example.com"),
        )),
        "POST",
        &format!("{project}/statuses/{sha}"),
        &headers,
        json!({
            "state": "success",
            "name": "preview",
            "description": long,
            "target_url": "https://mr-7.preview.example.com"
        }),
    );
    assert_eq!(
        api.create_deployment(sha, "mr-7", "The preview of !7"),
        None
    );
    assert_eq!(
        api.deployment_status(1, DeploymentState::Success, None, None, "Ready"),
        None
    );
}

#[test]
fn gitea_feedback_requests() {
    let headers = [("Accept", "application/json")];
    for forge in [Forge::Gitea, Forge::Forgejo] {
        let api = Api::new(forge, "https://codeberg.org/api/v1/", "team/shop");
        let repo = "https://codeberg.org/api/v1/repos/team/shop";
        check_request(
            api.current_user(),
            "https://codeberg.org/api/v1/user",
            &headers,
        );
        check_request(
            api.comments(3, 2),
            &format!("{repo}/issues/3/comments?page=2&limit=50"),
            &headers,
        );
        check_write(
            Some(api.create_comment(3, "Preview ready")),
            "POST",
            &format!("{repo}/issues/3/comments"),
            &headers,
            json!({ "body": "Preview ready" }),
        );
        check_write(
            Some(api.edit_comment(3, 55, "Preview gone")),
            "PATCH",
            &format!("{repo}/issues/comments/55"),
            &headers,
            json!({ "body": "Preview gone" }),
        );
        let sha = "a".repeat(40);
        for (state, name) in [
            (CommitState::Pending, "pending"),
            (CommitState::Running, "pending"),
            (CommitState::Success, "success"),
            (CommitState::Failure, "failure"),
            (CommitState::Canceled, "error"),
        ] {
            check_write(
                Some(api.commit_status(&sha, state, "preview", "Deploying", None)),
                "POST",
                &format!("{repo}/statuses/{sha}"),
                &headers,
                json!({ "state": name, "context": "preview", "description": "Deploying" }),
            );
        }
        let long = "x".repeat(300);
        check_write(
            Some(api.commit_status(
                &sha,
                CommitState::Failure,
                "preview",
                &long,
                Some("https://pr-3.preview.example.com"),
            )),
            "POST",
            &format!("{repo}/statuses/{sha}"),
            &headers,
            json!({
                "state": "failure",
                "context": "preview",
                "description": long,
                "target_url": "https://pr-3.preview.example.com"
            }),
        );
        assert_eq!(
            api.create_deployment(&sha, "pr-3", "The preview of #3"),
            None
        );
        assert_eq!(
            api.deployment_status(1, DeploymentState::Inactive, None, None, "Gone"),
            None
        );
    }
}

fn comment(id: u64, author: &str, text: &str) -> Comment {
    Comment {
        id,
        author: author.to_owned(),
        body: text.to_owned(),
    }
}

/// A comment as GitHub's and Gitea's issue comments list it.
fn issue_comment(id: u64, login: &str, text: &str) -> Value {
    json!({
        "id": id,
        "node_id": "MDEyOklzc3VlQ29tbWVudDE=",
        "html_url": format!("https://github.com/octo-org/shop/issues/42#issuecomment-{id}"),
        "body": text,
        "user": { "login": login, "id": 1, "type": "Bot" },
        "created_at": "2011-04-14T16:00:49Z",
        "updated_at": "2011-04-14T16:00:49Z",
        "author_association": "NONE"
    })
}

/// A note as GitLab's merge request notes list it.
fn gitlab_note(id: u64, username: &str, text: &str, system: bool) -> Value {
    json!({
        "id": id,
        "body": text,
        "attachment": null,
        "author": { "id": 1, "username": username, "name": "Preview Bot", "state": "active" },
        "created_at": "2013-10-02T09:22:45Z",
        "system": system,
        "noteable_id": 377,
        "noteable_type": "MergeRequest",
        "noteable_iid": 7,
        "resolvable": false
    })
}

#[test]
fn comments_read_their_author_and_gitlab_leaves_out_system_notes() {
    let listing = json!([
        issue_comment(1, "octocat", "Looks good"),
        issue_comment(2, "preview-bot[bot]", "<!-- preview -->\nReady"),
    ]);
    for forge in [Forge::Github, Forge::Gitea, Forge::Forgejo] {
        let api = Api::new(forge, "https://example.com", "o/r");
        assert_eq!(
            api.read_comments(&body(listing.clone())),
            Ok(vec![
                comment(1, "octocat", "Looks good"),
                comment(2, "preview-bot[bot]", "<!-- preview -->\nReady"),
            ]),
            "{forge:?}"
        );
        assert_eq!(
            api.read_comment(&body(issue_comment(3, "preview-bot", "Gone"))),
            Ok(comment(3, "preview-bot", "Gone")),
            "{forge:?}"
        );
    }
    let gitlab = Api::new(Forge::Gitlab, "https://gitlab.com/api/v4", "a/b");
    let notes = json!([
        gitlab_note(301, "admin", "added 1 commit", true),
        gitlab_note(302, "preview-bot", "<!-- preview -->", false),
        gitlab_note(303, "admin", "Thanks", false),
    ]);
    assert_eq!(
        gitlab.read_comments(&body(notes)),
        Ok(vec![
            comment(302, "preview-bot", "<!-- preview -->"),
            comment(303, "admin", "Thanks"),
        ])
    );
    assert_eq!(
        gitlab.read_comment(&body(gitlab_note(304, "preview-bot", "Ready", false))),
        Ok(comment(304, "preview-bot", "Ready"))
    );
    // A comment whose author's account is gone is nobody's.
    let mut orphan = issue_comment(4, "x", "Old");
    orphan["user"] = Value::Null;
    let github = Api::new(Forge::Github, "https://api.github.com", "o/r");
    assert_eq!(
        github.read_comments(&body(json!([orphan]))),
        Ok(vec![comment(4, "", "Old")])
    );
    let mut no_id = issue_comment(5, "octocat", "Hm");
    no_id.as_object_mut().expect("an object").remove("id");
    assert_eq!(
        github.read_comments(&body(json!([issue_comment(1, "a", "b"), no_id.clone()]))),
        Err("the answer's item 1 has no number `id`".to_owned())
    );
    assert_eq!(
        github.read_comment(&body(no_id)),
        Err("the answer has no number `id`".to_owned())
    );
}

#[test]
fn users_and_deployments_read() {
    let github_user =
        json!({ "login": "preview-bot", "id": 1, "type": "User", "site_admin": false });
    let gitea_user =
        json!({ "id": 1, "login": "preview-bot", "full_name": "", "email": "bot@example.com" });
    let gitlab_user =
        json!({ "id": 1, "username": "preview-bot", "name": "Preview Bot", "state": "active" });
    for (forge, answer) in [
        (Forge::Github, &github_user),
        (Forge::Gitea, &gitea_user),
        (Forge::Forgejo, &gitea_user),
        (Forge::Gitlab, &gitlab_user),
    ] {
        let api = Api::new(forge, "https://example.com", "o/r");
        assert_eq!(
            api.read_user(&body(answer.clone())),
            Ok("preview-bot".to_owned()),
            "{forge:?}"
        );
    }
    let gitlab = Api::new(Forge::Gitlab, "https://gitlab.com/api/v4", "a/b");
    assert_eq!(
        gitlab.read_user(&body(github_user)),
        Err("the answer has no `username`".to_owned())
    );
    let github = Api::new(Forge::Github, "https://api.github.com", "o/r");
    let deployment = json!({
        "url": "https://api.github.com/repos/octocat/example/deployments/1",
        "id": 1,
        "sha": "a84d88e7554fc1fa21bcbc4efae3c782a70d2b9d",
        "ref": "topic-branch",
        "task": "deploy",
        "environment": "pr-42",
        "transient_environment": true,
        "production_environment": false
    });
    assert_eq!(github.read_deployment(&body(deployment)), Ok(1));
    assert_eq!(
        github.read_deployment(
            br#"{"message":"Auto-merged master into topic-branch on deployment."}"#
        ),
        Err("the answer has no number `id`".to_owned())
    );
}
