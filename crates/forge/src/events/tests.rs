//! Payloads as the forges' documentation shows them (the fields `preview` reads, with their real names and
//! nesting, among others it ignores).

use super::*;

fn github(action: &str, merged: bool, head_repo: &str) -> Vec<u8> {
    serde_json::json!({
        "action": action,
        "number": 42,
        "pull_request": {
            "url": "https://api.github.com/repos/octo-org/shop/pulls/42",
            "html_url": "https://github.com/octo-org/shop/pull/42",
            "number": 42,
            "state": if action == "closed" { "closed" } else { "open" },
            "locked": false,
            "title": "Faster checkout",
            "user": { "login": "octocat", "id": 1, "type": "User" },
            "draft": false,
            "merged": merged,
            "labels": [{ "id": 208045946, "name": "preview", "color": "f29513", "default": false }],
            "head": {
                "label": "octocat:faster-checkout",
                "ref": "faster-checkout",
                "sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e",
                "repo": { "id": 1296269, "name": "shop", "full_name": head_repo, "fork": head_repo != "octo-org/shop" }
            },
            "base": {
                "label": "octo-org:main",
                "ref": "main",
                "sha": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
                "repo": { "id": 1296269, "name": "shop", "full_name": "octo-org/shop" }
            }
        },
        "repository": { "id": 1296269, "full_name": "octo-org/shop" },
        "sender": { "login": "octocat" }
    })
    .to_string()
    .into_bytes()
}

#[test]
fn github_pull_request_events() {
    let read = |action: &str, merged: bool| match read_event(
        Forge::Github,
        "pull_request",
        &github(action, merged, "octo-org/shop"),
    ) {
        Ok(Event::PullRequest(pr)) => *pr,
        other => panic!("{other:?}"),
    };
    let opened = read("opened", false);
    assert_eq!(
        opened,
        PullRequest {
            number: 42,
            action: Action::Opened,
            open: true,
            head_sha: "6dcb09b5b57875f334f61aebed695e2e4193db5e".to_owned(),
            head_ref: "faster-checkout".to_owned(),
            base_ref: "main".to_owned(),
            repository: "octo-org/shop".to_owned(),
            head_repository: "octo-org/shop".to_owned(),
            fork: false,
            labels: vec!["preview".to_owned()],
            draft: false,
            author: "octocat".to_owned(),
            title: "Faster checkout".to_owned(),
            url: "https://github.com/octo-org/shop/pull/42".to_owned(),
        }
    );
    assert_eq!(read("synchronize", false).action, Action::Pushed);
    assert_eq!(read("closed", false).action, Action::Closed);
    assert!(!read("closed", false).open);
    assert_eq!(read("closed", true).action, Action::Merged);
    assert_eq!(read("unlabeled", false).action, Action::Labeled);
    assert_eq!(read("ready_for_review", false).action, Action::DraftChanged);
    assert_eq!(
        read("edited", false).action,
        Action::Other("edited".to_owned())
    );
    // Gitea's name for a push is not GitHub's.
    assert_eq!(
        read("synchronized", false).action,
        Action::Other("synchronized".to_owned())
    );
    let fork = read_event(
        Forge::Github,
        "pull_request",
        &github("opened", false, "stranger/shop"),
    );
    assert!(
        matches!(fork, Ok(Event::PullRequest(pr)) if pr.fork && pr.head_repository == "stranger/shop")
    );
}

#[test]
fn pings_and_other_events_are_acknowledged_and_broken_bodies_named() {
    assert_eq!(
        read_event(
            Forge::Github,
            "ping",
            br#"{"zen":"Keep it logically awesome.","hook_id":1}"#
        ),
        Ok(Event::Ping)
    );
    assert_eq!(
        read_event(Forge::Github, "push", b"{}"),
        Ok(Event::Ignored {
            event: "push".to_owned()
        })
    );
    assert_eq!(
        read_event(Forge::Github, "pull_request", b"not json").map(|_| ()),
        Err("the body is not JSON: expected ident at line 1 column 2".to_owned())
    );
    let error = read_event(
        Forge::Github,
        "pull_request",
        br#"{"action":"opened","number":1}"#,
    )
    .expect_err("no pull_request");
    assert_eq!(error, "the event has no `repository.full_name`");
}

fn gitea(action: &str) -> Vec<u8> {
    serde_json::json!({
        "action": action,
        "number": 3,
        "pull_request": {
            "id": 11,
            "number": 3,
            "user": { "id": 1, "login": "gitea-user", "username": "gitea-user" },
            "title": "Faster checkout",
            "labels": [{ "id": 1, "name": "preview", "color": "00aabb" }],
            "state": "open",
            "draft": false,
            "merged": false,
            "base": { "label": "main", "ref": "main", "sha": "1111111111111111111111111111111111111111",
                      "repo": { "id": 5, "full_name": "team/shop" } },
            "head": { "label": "faster", "ref": "faster", "sha": "2222222222222222222222222222222222222222",
                      "repo": { "id": 5, "full_name": "team/shop" } }
        },
        "repository": { "id": 5, "full_name": "team/shop" },
        "sender": { "login": "gitea-user" }
    })
    .to_string()
    .into_bytes()
}

#[test]
fn gitea_and_forgejo_use_their_own_actions() {
    for forge in [Forge::Gitea, Forge::Forgejo] {
        for (event, action, expected) in [
            ("pull_request", "opened", Action::Opened),
            ("pull_request_sync", "synchronized", Action::Pushed),
            ("pull_request_label", "label_updated", Action::Labeled),
            ("pull_request_label", "label_cleared", Action::Labeled),
            ("pull_request", "closed", Action::Closed),
        ] {
            match read_event(forge, event, &gitea(action)) {
                Ok(Event::PullRequest(pr)) => {
                    assert_eq!(pr.action, expected, "{forge:?} {action}");
                    assert_eq!((pr.number, pr.head_ref.as_str()), (3, "faster"));
                    assert_eq!(pr.head_sha, "2222222222222222222222222222222222222222");
                    assert!(!pr.fork);
                }
                other => panic!("{forge:?} {action}: {other:?}"),
            }
        }
    }
}

fn gitlab(attributes: serde_json::Value, changes: serde_json::Value) -> Vec<u8> {
    let mut object_attributes = serde_json::json!({
        "id": 99,
        "iid": 1,
        "target_branch": "master",
        "source_branch": "ms-viewport",
        "source_project_id": 14,
        "target_project_id": 14,
        "state": "opened",
        "draft": false,
        "work_in_progress": false,
        "title": "MS-Viewport",
        "url": "http://example.com/diaspora/merge_requests/1",
        "source": { "name": "Awesome Project", "path_with_namespace": "awesome_space/awesome_project" },
        "target": { "name": "Awesome Project", "path_with_namespace": "awesome_space/awesome_project" },
        "last_commit": {
            "id": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
            "message": "fixed readme",
            "url": "http://example.com/awesome_space/awesome_project/commits/da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
        },
        "action": "open"
    });
    for (key, value) in attributes.as_object().into_iter().flatten() {
        object_attributes[key] = value.clone();
    }
    serde_json::json!({
        "object_kind": "merge_request",
        "event_type": "merge_request",
        "user": { "id": 1, "name": "Administrator", "username": "root" },
        "project": { "id": 1, "name": "Gitlab Test", "path_with_namespace": "awesome_space/awesome_project" },
        "object_attributes": object_attributes,
        "labels": [{ "id": 206, "title": "API", "color": "#ffffff", "project_id": 14, "type": "ProjectLabel" }],
        "changes": changes
    })
    .to_string()
    .into_bytes()
}

#[test]
fn gitlab_merge_request_events() {
    let read = |attributes: serde_json::Value, changes: serde_json::Value| match read_event(
        Forge::Gitlab,
        "Merge Request Hook",
        &gitlab(attributes, changes),
    ) {
        Ok(Event::PullRequest(pr)) => *pr,
        other => panic!("{other:?}"),
    };
    let opened = read(serde_json::json!({}), serde_json::json!({}));
    assert_eq!(opened.action, Action::Opened);
    assert_eq!(opened.number, 1);
    assert_eq!(opened.head_sha, "da1560886d4f094c3e6c9ef40349f7d38b5d27d7");
    assert_eq!(
        (opened.head_ref.as_str(), opened.base_ref.as_str()),
        ("ms-viewport", "master")
    );
    assert_eq!(opened.repository, "awesome_space/awesome_project");
    assert_eq!(opened.labels, vec!["API".to_owned()]);
    assert!(opened.open && !opened.fork && !opened.draft);
    assert_eq!(opened.author, "root");
    // An update is a push only with `oldrev`; a label change says so in `changes`.
    let pushed = read(
        serde_json::json!({ "action": "update", "oldrev": "4b825dc642cb6eb9a060e54bf8d69288fbee4904" }),
        serde_json::json!({}),
    );
    assert_eq!(pushed.action, Action::Pushed);
    let labeled = read(
        serde_json::json!({ "action": "update" }),
        serde_json::json!({ "labels": { "previous": [], "current": [{ "title": "API" }] } }),
    );
    assert_eq!(labeled.action, Action::Labeled);
    let edited = read(
        serde_json::json!({ "action": "update" }),
        serde_json::json!({ "title": {} }),
    );
    assert_eq!(edited.action, Action::Other("update".to_owned()));
    let merged = read(
        serde_json::json!({ "action": "merge", "state": "merged" }),
        serde_json::json!({}),
    );
    assert_eq!(merged.action, Action::Merged);
    assert!(!merged.open);
    let closed = read(
        serde_json::json!({ "action": "close", "state": "closed" }),
        serde_json::json!({}),
    );
    assert_eq!(closed.action, Action::Closed);
    // From a fork: another source project.
    let fork = read(
        serde_json::json!({ "source_project_id": 15, "source": { "path_with_namespace": "stranger/awesome_project" } }),
        serde_json::json!({}),
    );
    assert!(fork.fork);
    assert_eq!(fork.head_repository, "stranger/awesome_project");
    assert_eq!(
        read_event(Forge::Gitlab, "Push Hook", b"{}"),
        Ok(Event::Ignored {
            event: "Push Hook".to_owned()
        })
    );
}

#[test]
fn a_head_that_is_not_a_commit_id_is_refused() {
    for head in [
        "main",
        "refs/preview/pull/3",
        "6DCB09B5B57875F334F61AEBED695E2E4193DB5E",
        "6dcb09b5",
    ] {
        let body = github("opened", false, "octo-org/shop");
        let text = String::from_utf8(body)
            .expect("utf-8")
            .replace("6dcb09b5b57875f334f61aebed695e2e4193db5e", head);
        let read = read_event(Forge::Github, "pull_request", text.as_bytes());
        assert!(
            matches!(&read, Err(problem) if problem.contains("pull_request.head.sha")),
            "{head}: {read:?}"
        );
    }
}
