//! The webhook receiver through the real daemon over HTTP: deliveries signed as GitHub, Gitea and GitLab sign them
//! (payloads in their documented shape), and what is refused — no signature, a wrong one, one of another body, a
//! wrong token, a replayed delivery id, a body over the limit — each with its verdict in `preview webhooks list`,
//! and neither the secret nor the body in the daemon's log.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use preview_testing::TempDir;
use support::{Daemon, ok};

const SECRET: &str = "a-webhook-secret-of-the-forge";

fn spec(project: &str, kind: &str) -> String {
    format!(
        "project: {project}
secrets: [HOOK]
services:
  web:
    run: \"true\"
    ports: [8080]
environments:
  staging: {{}}
previews:
  blueprint: staging
  forge:
    kind: {kind}
    repository: octo-org/shop
    url: https://git.example.test
    webhook_secret: HOOK
"
    )
}

fn register(daemon: &Daemon, dir: &std::path::Path, project: &str, kind: &str) {
    let file = dir.join(format!("{project}.yaml"));
    std::fs::write(&file, spec(project, kind)).expect("spec");
    ok(daemon.cli(&["project", "register", "-f", file.to_str().expect("path")]));
    ok(daemon.cli_with_input(
        &[
            "--project",
            project,
            "secret",
            "set",
            "HOOK",
            "--scope",
            "project",
        ],
        SECRET,
    ));
}

/// A POST of JSON to the daemon with these headers; the status and the JSON answer.
fn post(
    daemon: &Daemon,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, serde_json::Value) {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    daemon.http_with("POST", path, &all, body)
}

fn hmac_hex(body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    ring::hmac::sign(&key, body)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A pull-request event as GitHub and Gitea send it.
fn pull_request(action: &str, sha: &str) -> Vec<u8> {
    serde_json::json!({
        "action": action,
        "number": 42,
        "pull_request": {
            "number": 42,
            "state": "open",
            "title": "zq-unique-title-of-the-body",
            "body": "zq-unique-description-of-the-body",
            "user": { "login": "octocat" },
            "draft": false,
            "merged": false,
            "labels": [{ "name": "preview" }],
            "head": { "ref": "faster-checkout", "sha": sha, "repo": { "full_name": "octo-org/shop" } },
            "base": { "ref": "main", "sha": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c", "repo": { "full_name": "octo-org/shop" } }
        },
        "repository": { "full_name": "octo-org/shop" },
        "sender": { "login": "octocat" }
    })
    .to_string()
    .into_bytes()
}

fn deliveries(daemon: &Daemon, project: &str) -> Vec<serde_json::Value> {
    daemon.json(&["--project", project, "webhooks", "list"])["deliveries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn github_deliveries_are_verified_over_their_raw_body_and_applied_once() {
    let dir = TempDir::new("webhooks-github");
    let daemon = Daemon::start(&dir.path().join("data"), &[]);
    register(&daemon, dir.path(), "hooked", "github");
    let body = pull_request("opened", "6dcb09b5b57875f334f61aebed695e2e4193db5e");
    let signature = format!("sha256={}", hmac_hex(&body));
    let signed = |delivery: &'static str, event: &'static str, signature: String| {
        vec![
            ("X-GitHub-Event", event.to_owned()),
            ("X-GitHub-Delivery", delivery.to_owned()),
            ("X-Hub-Signature-256", signature),
        ]
    };
    let send = |headers: Vec<(&str, String)>, body: &[u8]| {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        post(&daemon, "/webhooks/hooked", &headers, body)
    };

    // Refused: no signature, a wrong one, the signature of another body, and another secret's.
    let (status, answer) = send(
        vec![
            ("X-GitHub-Event", "pull_request".into()),
            ("X-GitHub-Delivery", "r1".into()),
        ],
        &body,
    );
    assert_eq!(status, 401, "{answer}");
    assert!(answer.to_string().contains("not signed"), "{answer}");
    let (status, _) = send(signed("r2", "pull_request", "sha256=00".into()), &body);
    assert_eq!(status, 401);
    let other = pull_request("closed", "6dcb09b5b57875f334f61aebed695e2e4193db5e");
    let (status, _) = send(signed("r3", "pull_request", signature.clone()), &other);
    assert_eq!(status, 401);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"another secret");
    let foreign: String = ring::hmac::sign(&key, &body)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let (status, _) = send(
        signed("r4", "pull_request", format!("sha256={foreign}")),
        &body,
    );
    assert_eq!(status, 401);

    // Accepted once; the same delivery again is a duplicate, whatever it carries.
    let (status, answer) = send(signed("d-1", "pull_request", signature.clone()), &body);
    assert_eq!(
        (status, answer["verdict"].as_str()),
        (202, Some("accepted")),
        "{answer}"
    );
    let (status, answer) = send(signed("d-1", "pull_request", signature.clone()), &body);
    assert_eq!(
        (status, answer["verdict"].as_str()),
        (200, Some("duplicate")),
        "{answer}"
    );
    // The id is not signed: the same signed body under another id is the same delivery.
    let (status, answer) = send(
        signed("d-1-again", "pull_request", signature.clone()),
        &body,
    );
    assert_eq!(
        (status, answer["verdict"].as_str()),
        (200, Some("duplicate")),
        "{answer}"
    );
    // A ping, an event preview does not act on, and a signed body that is not what its event says: acknowledged.
    let ping = br#"{"zen":"Design for failure.","hook_id":12345678}"#;
    let (status, answer) = send(
        signed("p-1", "ping", format!("sha256={}", hmac_hex(ping))),
        ping,
    );
    assert_eq!(
        (status, answer["verdict"].as_str()),
        (200, Some("ignored")),
        "{answer}"
    );
    let (status, _) = send(
        signed("u-1", "issues", format!("sha256={}", hmac_hex(b"{}"))),
        b"{}",
    );
    assert_eq!(status, 200);
    let (status, answer) = send(
        signed(
            "u-2",
            "pull_request",
            format!("sha256={}", hmac_hex(b"[1,2]")),
        ),
        b"[1,2]",
    );
    assert_eq!(
        (status, answer["verdict"].as_str()),
        (200, Some("ignored")),
        "{answer}"
    );
    // Over the limit: refused before it is read.
    let huge = vec![b' '; 2 * 1024 * 1024];
    let (status, _) = send(
        signed("big", "pull_request", format!("sha256={}", hmac_hex(&huge))),
        &huge,
    );
    assert_eq!(status, 413);

    let listed = deliveries(&daemon, "hooked");
    let verdicts: Vec<(&str, &str)> = listed
        .iter()
        .map(|d| {
            (
                d["verdict"].as_str().unwrap_or(""),
                d["detail"].as_str().unwrap_or(""),
            )
        })
        .collect();
    // Refusals reach the listing (and the log) at most once a second per project; the next one says how many
    // were left out.
    assert_eq!(
        verdicts.iter().filter(|(v, _)| *v == "refused").count(),
        1,
        "{verdicts:?}"
    );
    std::thread::sleep(Duration::from_millis(1100));
    let (status, _) = send(signed("r5", "pull_request", "sha256=00".into()), &body);
    assert_eq!(status, 401);
    let refusals: Vec<String> = deliveries(&daemon, "hooked")
        .iter()
        .filter(|d| d["verdict"] == "refused")
        .map(|d| d["detail"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    assert!(
        refusals[0].contains("X-Hub-Signature-256") && refusals[0].contains("and 3 more refused"),
        "{refusals:?}"
    );
    let accepted: Vec<&serde_json::Value> = listed
        .iter()
        .filter(|d| d["verdict"] == "accepted")
        .collect();
    assert_eq!(accepted.len(), 1, "{listed:?}");
    assert_eq!(accepted[0]["delivery"], "d-1");
    assert_eq!(accepted[0]["pull_request"], 42);
    assert_eq!(accepted[0]["action"], "opened");
    assert_eq!(
        accepted[0]["head"],
        "6dcb09b5b57875f334f61aebed695e2e4193db5e"
    );
    assert!(
        verdicts
            .iter()
            .any(|(v, d)| *v == "ignored" && d.contains("unreadable")),
        "{verdicts:?}"
    );
    // A flood of unsigned requests records next to nothing and pushes out nothing the forge sent.
    for i in 0..200 {
        let (status, _) = send(vec![("X-GitHub-Delivery", format!("flood-{i}"))], b"{}");
        assert_eq!(status, 401);
    }
    let after_flood = deliveries(&daemon, "hooked");
    assert!(after_flood.iter().any(|d| d["delivery"] == "d-1"));
    assert!(
        after_flood
            .iter()
            .filter(|d| d["verdict"] == "refused")
            .count()
            <= 4,
        "{after_flood:?}"
    );
    // A body that does not arrive is given up on within seconds.
    let started = std::time::Instant::now();
    let mut stream = std::net::TcpStream::connect(&daemon.address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    stream
        .write_all(
            b"POST /webhooks/hooked HTTP/1.1\r\nHost: x\r\nX-Hub-Signature-256: sha256=00\r\nContent-Length: 1000\r\n\r\n{",
        )
        .expect("write");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(20));
    let shown = ok(daemon.cli(&["project", "show", "hooked"]));
    assert!(
        shown.contains(&format!("http://{}/webhooks/hooked", daemon.address))
            && shown.contains("`HOOK`"),
        "{shown}"
    );
    let table = ok(daemon.cli(&["--project", "hooked", "webhooks", "list"]));
    assert!(
        table.contains("/webhooks/hooked") && table.contains("d-1"),
        "{table}"
    );
    // Neither the secret nor anything of a body in what the daemon logs, lists or stores in plain text.
    let log = support::read_log(&daemon.data);
    assert!(log.contains("webhook for `hooked` refused"), "{log}");
    // The store's files, read as bytes: the secret is sealed, and no body is kept.
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(&daemon.data).expect("data").flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with("preview.db")
        {
            stored.extend(std::fs::read(entry.path()).expect("store file"));
        }
    }
    assert!(!stored.is_empty(), "the store's files were read");
    let stored = String::from_utf8_lossy(&stored).into_owned();
    for text in [
        log.as_str(),
        table.as_str(),
        &serde_json::Value::from(listed.clone()).to_string(),
        stored.as_str(),
    ] {
        assert!(!text.contains(SECRET));
        // The body is not kept: only what the reconciler reads of the pull request (its title among it).
        assert!(!text.contains("zq-unique-description-of-the-body"));
    }
    for text in [log.as_str(), table.as_str()] {
        assert!(!text.contains("zq-unique-title-of-the-body"));
    }
}

#[test]
fn gitea_and_gitlab_deliveries_and_projects_that_take_none() {
    let dir = TempDir::new("webhooks-others");
    let daemon = Daemon::start(&dir.path().join("data"), &[]);
    register(&daemon, dir.path(), "onea", "gitea");
    register(&daemon, dir.path(), "onelab", "gitlab");
    let body = pull_request("synchronized", "2222222222222222222222222222222222222222");
    let signature = hmac_hex(&body);
    let (status, answer) = post(
        &daemon,
        "/webhooks/onea",
        &[
            ("X-Gitea-Event", "pull_request"),
            ("X-Gitea-Delivery", "g-1"),
            ("X-Gitea-Signature", &signature),
        ],
        &body,
    );
    assert_eq!(
        (status, answer["verdict"].as_str()),
        (202, Some("accepted")),
        "{answer}"
    );
    assert_eq!(deliveries(&daemon, "onea")[0]["action"], "pushed");
    // A GitHub-style signature is not Gitea's.
    let (status, _) = post(
        &daemon,
        "/webhooks/onea",
        &[
            ("X-GitHub-Event", "pull_request"),
            ("X-GitHub-Delivery", "g-2"),
            ("X-Hub-Signature-256", &format!("sha256={signature}")),
        ],
        &body,
    );
    assert_eq!(status, 401);

    let merge_request = serde_json::json!({
        "object_kind": "merge_request",
        "user": { "username": "root" },
        "project": { "path_with_namespace": "octo-org/shop" },
        "object_attributes": {
            "iid": 7, "action": "open", "state": "opened", "draft": false,
            "source_branch": "feature", "target_branch": "main",
            "source_project_id": 1, "target_project_id": 1,
            "last_commit": { "id": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7" }
        },
        "labels": []
    })
    .to_string();
    let (status, _) = post(
        &daemon,
        "/webhooks/onelab",
        &[
            ("X-Gitlab-Event", "Merge Request Hook"),
            ("Idempotency-Key", "l-1"),
            ("X-Gitlab-Token", "a-webhook-secret-of-the-forgf"),
        ],
        merge_request.as_bytes(),
    );
    assert_eq!(status, 401);
    let (status, answer) = post(
        &daemon,
        "/webhooks/onelab",
        &[
            ("X-Gitlab-Event", "Merge Request Hook"),
            ("Idempotency-Key", "l-1"),
            ("X-Gitlab-Token", SECRET),
        ],
        merge_request.as_bytes(),
    );
    assert_eq!(
        (status, answer["verdict"].as_str()),
        (202, Some("accepted")),
        "{answer}"
    );
    assert_eq!(deliveries(&daemon, "onelab")[0]["pull_request"], 7);

    // Forgejo sends its own names and Gitea's; a project whose forge is Forgejo reads them.
    register(&daemon, dir.path(), "forj", "forgejo");
    let (status, answer) = post(
        &daemon,
        "/webhooks/forj",
        &[
            ("X-Forgejo-Event", "pull_request"),
            ("X-Forgejo-Delivery", "fj-1"),
            ("X-Forgejo-Signature", &signature),
            ("X-Gitea-Event", "pull_request"),
            ("X-Gitea-Delivery", "fj-1"),
            ("X-Gitea-Signature", &signature),
            ("X-Hub-Signature-256", &format!("sha256={signature}")),
        ],
        &body,
    );
    assert_eq!(
        (status, answer["delivery"].as_str()),
        (202, Some("fj-1")),
        "{answer}"
    );
    // A delivery signed with the secret it had a moment ago still verifies while the forge catches up.
    ok(daemon.cli_with_input(
        &[
            "--project",
            "forj",
            "secret",
            "set",
            "HOOK",
            "--scope",
            "project",
        ],
        "the-secret-after-rotation",
    ));
    let rotated = pull_request("opened", "3333333333333333333333333333333333333333");
    let old_signature = hmac_hex(&rotated);
    let (status, answer) = post(
        &daemon,
        "/webhooks/forj",
        &[
            ("X-Forgejo-Event", "pull_request"),
            ("X-Forgejo-Delivery", "fj-2"),
            ("X-Forgejo-Signature", &old_signature),
        ],
        &rotated,
    );
    assert_eq!(
        (status, answer["verdict"].as_str()),
        (202, Some("accepted")),
        "{answer}"
    );
    // A deleted project's deliveries go with it: registered again, it starts with none.
    ok(daemon.cli(&["project", "delete", "forj"]));
    register(&daemon, dir.path(), "forj", "forgejo");
    assert!(deliveries(&daemon, "forj").is_empty());

    // A project that does not exist and one without a forge get the same answer.
    let plain = dir.path().join("plain.yaml");
    std::fs::write(
        &plain,
        "project: plain\nservices:\n  web:\n    run: \"true\"\n    ports: [8080]\nenvironments:\n  staging: {}\n",
    )
    .expect("spec");
    ok(daemon.cli(&["project", "register", "-f", plain.to_str().expect("path")]));
    let signed = [("X-Hub-Signature-256", "sha256=00")];
    let (missing, first) = post(&daemon, "/webhooks/nothing", &signed, b"{}");
    let (without, second) = post(&daemon, "/webhooks/plain", &signed, b"{}");
    assert_eq!((missing, without), (404, 404));
    assert_eq!(
        first.to_string().replace("nothing", "X"),
        second.to_string().replace("plain", "X")
    );
}
