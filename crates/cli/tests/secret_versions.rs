//! Secrets by version, through the real daemon: a rollback gets back exactly the values the previous deployment
//! ran with, and secret writes racing key rotations lose nothing and leave nothing under a key that is gone.

mod support;

use preview_secrets::{MasterKey, Sealed, Slot};
use preview_store::Store;
use preview_testing::TempDir;
use serde_json::json;
use support::{Daemon, ReleaseAccounts, api, commit_all, git, ok, register_example};

/// One app that answers with a digest of its secret (never the secret), and one that waits for it and fails to
/// start in a commit holding a file `broken`.
const VAULT: [(&str, &str); 3] = [
    (
        "preview.yaml",
        "project: vault
domain:
  base: vault.localhost
runtime: local
secrets: [TOKEN]

services:
  web:
    run: python3 web.py
    ports: [8000]
    health: { http: /healthz }
    public: true
  gate:
    run: python3 gate.py
    ports: [8001]
    health: { http: /healthz }
    depends_on: [web]

environments:
  staging: {}
",
    ),
    (
        "web.py",
        r#""""Says which secret value it was started with, as a digest."""
import hashlib, http.server, json, os

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"token": hashlib.sha256(os.environ["TOKEN"].encode()).hexdigest()}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"#,
    ),
    (
        "gate.py",
        r#""""Starts, unless its commit holds a file `broken`."""
import http.server, os, sys

if os.path.exists("broken"):
    sys.exit("broken on purpose")

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"#,
    ),
];

fn sha256(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    preview_secrets::hex::encode(digest.as_ref())
}

fn set_token(daemon: &Daemon, value: &str) {
    ok(daemon.cli_with_input(
        &["secret", "set", "TOKEN", "--scope", "project"],
        &format!("{value}\n"),
    ));
}

#[test]
fn a_rollback_gets_back_the_secret_value_the_previous_deployment_ran_with() {
    let dir = TempDir::new("secret-rollback");
    let data = dir.path().join("data");
    let _accounts = ReleaseAccounts(data.clone());
    let repo = support::repository(dir.path(), &VAULT);
    let daemon = support::local_daemon(&data, "27000-27099", &[], None);
    ok(daemon.cli(&[
        "project",
        "register",
        "-f",
        repo.join("preview.yaml").to_str().expect("path"),
    ]));
    set_token(&daemon, "first-value");
    ok(daemon.cli(&["env", "create", "staging"]));
    let gateway = support::gateway_http(&data);
    let host = "web-staging.vault.localhost";
    let answered = || support::request(&gateway, "GET", host, "/", "");
    assert_eq!(answered().1["token"], sha256("first-value").as_str());

    // A new value, and a commit whose second app fails to start: the first app is updated (new value, new
    // commit), then the deployment fails and rolls back.
    set_token(&daemon, "second-value");
    std::fs::write(repo.join("broken"), "").expect("broken");
    let broken = commit_all(&repo, "the gate fails");
    let failed = daemon.cli(&["deploy", "staging", "--commit", &broken]);
    assert!(!failed.status.success());
    let shown = daemon.json(&["deployments", "staging"]);
    let last = &shown["deployments"][0];
    assert_eq!(last["status"], "rolled_back", "{shown}");
    let journal = daemon.json(&["deployment", "logs", last["id"].as_str().expect("id")]);
    assert!(
        journal["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .any(|e| e["phase"] == "apply"
                && e["event"] == "done"
                && e["message"].as_str().unwrap_or("").contains("app/web")),
        "the first app was updated before the failure: {journal}"
    );
    // The app runs with the value it had before the deployment, not the one set since.
    assert_eq!(answered().1["token"], sha256("first-value").as_str());
    // A deployment of a good commit picks up the new value.
    git(&repo, &["rm", "--quiet", "broken"]);
    let fixed = commit_all(&repo, "the gate starts again");
    ok(daemon.cli(&["deploy", "staging", "--commit", &fixed]));
    assert_eq!(answered().1["token"], sha256("second-value").as_str());
    ok(daemon.cli(&["env", "delete", "staging"]));
}

#[test]
fn fifty_secret_writes_racing_two_key_rotations_lose_nothing() {
    let root = TempDir::new("rotation-race");
    let data = root.path().join("data");
    let daemon = Daemon::start(&data, &[]);
    register_example(&daemon);
    let outcomes = std::thread::scope(|scope| {
        let daemon = &daemon;
        let writes: Vec<_> = (0..50)
            .map(|i| {
                scope.spawn(move || {
                    api(
                        daemon,
                        "POST",
                        "/v1/projects/shop/secrets",
                        json!({ "scope": "project", "name": format!("RACE_{i}"), "value": format!("value-{i}") }),
                    )
                })
            })
            .collect();
        let rotations: Vec<_> = (0..2)
            .map(|_| scope.spawn(move || api(daemon, "POST", "/v1/secrets/rotate-key", json!({}))))
            .collect();
        let writes: Vec<_> = writes
            .into_iter()
            .map(|w| w.join().expect("write"))
            .collect();
        let rotations: Vec<_> = rotations
            .into_iter()
            .map(|r| r.join().expect("rotation"))
            .collect();
        (writes, rotations)
    });
    let (writes, rotations) = outcomes;
    for (status, answer) in &writes {
        assert_eq!(*status, 200, "{answer}");
    }
    let rotated = rotations
        .iter()
        .filter(|(status, _)| *status == 200)
        .count();
    assert!(rotated >= 1, "{rotations:?}");
    for (status, answer) in &rotations {
        assert!(
            *status == 200
                || (*status == 409
                    && answer["error"]["message"]
                        .as_str()
                        .unwrap_or("")
                        .contains("already running")),
            "{status}: {answer}"
        );
    }
    daemon.stop();
    // Every secret opens with the key the daemon keeps now, and holds the value last written to it.
    let key =
        MasterKey::from_hex(&std::fs::read_to_string(data.join("master.key")).expect("key file"))
            .expect("key");
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = tokio
        .block_on(Store::open_sqlite(&data.join("preview.db")))
        .expect("store");
    let versions = tokio.block_on(store.secret_versions()).expect("versions");
    assert!(
        versions.iter().all(|v| v.key_id == key.id()),
        "one key seals everything"
    );
    for i in 0..50 {
        let name = format!("RACE_{i}");
        let current = tokio
            .block_on(store.secrets(Some("shop")))
            .expect("secrets")
            .into_iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name} was lost"));
        let version = tokio
            .block_on(store.secret_version("shop", "project", &name, &current.fingerprint))
            .expect("version")
            .expect("current version");
        let slot = Slot {
            project: "shop",
            scope: "project",
            name: &name,
        };
        let value = key
            .open(
                &slot,
                &Sealed {
                    nonce: version.nonce,
                    ciphertext: version.ciphertext,
                },
            )
            .unwrap_or_else(|e| panic!("{name} does not open with the final key: {e}"));
        assert_eq!(value.expose(), format!("value-{i}"));
    }
    // And the daemon, started again, reads them all.
    let daemon = Daemon::start(&data, &[]);
    let listed = daemon.json(&["secret", "list"]);
    assert!(listed["secrets"].as_array().expect("secrets").len() >= 50);
    let created = daemon.cli(&["env", "create", "staging"]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stdout)
    );
}

#[test]
fn a_daemon_sharing_the_store_notices_a_key_rotation_and_says_which_key_it_needs() {
    let server = preview_testing::TestPostgres::start();
    let url = server.create_database("rotation");
    let root = TempDir::new("rotation-noticed");
    let recording = format!("recording:{}", root.path().join("runtime").display());
    let common = ["--store", url.as_str(), "--runtime", recording.as_str()];
    let (a_data, b_data) = (root.path().join("a"), root.path().join("b"));
    let a = Daemon::start(&a_data, &common);
    register_example(&a);
    std::fs::create_dir_all(&b_data).expect("b");
    std::fs::copy(a_data.join("master.key"), b_data.join("master.key")).expect("copy key");
    let b = Daemon::start(&b_data, &common);
    ok(b.cli(&["env", "create", "staging"]));
    // The first daemon rotates the key; the second still has the old one in its key file.
    ok(a.cli(&["secret", "rotate-key"]));
    let refused = b.cli(&["env", "create", "production"]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stdout);
    let new_key =
        MasterKey::from_hex(&std::fs::read_to_string(a_data.join("master.key")).expect("key"))
            .expect("new key");
    assert!(
        said.contains("the master key was rotated")
            && said.contains(&new_key.id())
            && said.contains(&b_data.join("master.key").display().to_string()),
        "{said}"
    );
    // Given the new key, it goes on without a restart, and writes under it.
    std::fs::copy(a_data.join("master.key"), b_data.join("master.key")).expect("copy key");
    ok(b.cli(&["env", "create", "production"]));
    ok(b.cli_with_input(
        &["secret", "set", "AFTER", "--scope", "project"],
        "after-rotation\n",
    ));
    ok(a.cli(&["env", "clone", "staging", "qa"]));
}
