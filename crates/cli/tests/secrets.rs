//! Secrets through the real daemon and CLI: no value leaks anywhere, tampering and wrong keys are refused,
//! and a key rotation keeps every secret readable while the old key stops working.

mod support;

use std::path::Path;

use preview_secrets::{MasterKey, Sealed, Slot};
use preview_store::Store;
use support::{Daemon, EXAMPLE, EXAMPLE_SECRETS, serve_refused};

/// Distinctive values that must never show up anywhere but in the runtime's hands.
const CANARIES: [&str; 3] = [
    "CANARY-masking-5f2c9e",
    "CANARY-webhook-a81d3b",
    "CANARY-session-77e0c4",
];

fn register(daemon: &Daemon, dir: &Path) {
    std::fs::create_dir_all(dir.join("db")).expect("spec dir");
    std::fs::write(dir.join("db/seed.sql"), "SELECT 1;\n").expect("seed");
    std::fs::write(dir.join("preview.yaml"), EXAMPLE).expect("spec");
    let file = dir.join("preview.yaml");
    let out = daemon.cli(&["project", "register", "-f", file.to_str().expect("path")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn set_canaries(daemon: &Daemon) {
    for ((name, scope), value) in EXAMPLE_SECRETS.iter().zip(CANARIES) {
        let out = daemon.cli_with_input(
            &["secret", "set", name, "--scope", scope],
            &format!("{value}\n"),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.path().is_dir() {
            files.extend(files_under(&entry.path()));
        } else {
            files.push(entry.path());
        }
    }
    files
}

fn assert_no_canary(what: &str, bytes: &[u8]) {
    for canary in CANARIES {
        assert!(
            !bytes.windows(canary.len()).any(|w| w == canary.as_bytes()),
            "{what} contains the secret value {canary}"
        );
    }
}

/// A project of one real app on the local runtime that gets all three canaries — two at project scope, one at
/// its own, one of them inside a composed value — and prints a line of its own, never a value.
const LEAKY: [(&str, &str); 2] = [
    (
        "preview.yaml",
        "project: leak
domain:
  base: leak.localhost
runtime: local
secrets: [MASKING_KEY, FORGE_WEBHOOK_SECRET]

services:
  web:
    run: python3 web.py
    ports: [8000]
    health: { http: /healthz }
    public: true
    secrets: [SESSION_KEY]
    variables:
      STORE_URL: \"postgres://shop:${{ secrets.MASKING_KEY }}@db.internal/shop\"

environments:
  staging: {}

previews:
  blueprint: staging
",
    ),
    (
        "web.py",
        r#""""Answers every request; prints which variables it got, never their values."""
import http.server, os, sys

print("started with", sorted(k for k in os.environ if k.isupper()), flush=True)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        print("request", self.path, flush=True)

http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"#,
    ),
];

/// The secrets of [`LEAKY`] with their scopes, in the order of [`CANARIES`].
const LEAKY_SECRETS: [(&str, &str); 3] = [
    ("MASKING_KEY", "project"),
    ("FORGE_WEBHOOK_SECRET", "project"),
    ("SESSION_KEY", "service:web"),
];

#[test]
fn secret_values_appear_nowhere() {
    let root = preview_testing::TempDir::new("leak");
    let data = root.path().join("data");
    let _accounts = support::ReleaseAccounts(data.clone());
    let repo = support::repository(root.path(), &LEAKY);
    let trace = [("RUST_LOG", "trace")];
    let mut flags = vec![
        "--runtime",
        "local",
        "--http",
        "127.0.0.1:0",
        "--https",
        "127.0.0.1:0",
        "--ports",
        "27200-27299",
    ];
    flags.extend(["--health-timeout", "20"]);
    let daemon = Daemon::start_with_env(&data, &flags, &trace);
    support::ok(daemon.cli(&[
        "project",
        "register",
        "-f",
        repo.join("preview.yaml").to_str().expect("path"),
    ]));
    for ((name, scope), value) in LEAKY_SECRETS.iter().zip(CANARIES) {
        support::ok(daemon.cli_with_input(
            &["secret", "set", name, "--scope", scope],
            &format!("{value}\n"),
        ));
    }
    // A control: a plain variable's value must be found by the same scan, or the scan proves nothing.
    let control = "CONTROL-plain-value-31b6";
    support::ok(daemon.cli(&["vars", "set", &format!("VISIBLE={control}")]));

    let mut seen: Vec<(String, Vec<u8>)> = Vec::new();
    let mut run = |args: &[&str]| {
        let out = support::preview()
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .env("RUST_LOG", "trace")
            .output()
            .expect("cli");
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        seen.push((format!("stdout of {args:?}"), out.stdout));
        seen.push((format!("stderr of {args:?}"), out.stderr));
    };
    run(&["plan", "staging"]);
    run(&["-o", "json", "plan", "staging"]);
    run(&["env", "create", "staging"]);
    run(&["env", "clone", "staging", "qa"]);
    for args in [
        &["vars", "show", "staging"][..],
        &["-o", "json", "vars", "show", "qa"],
        &["secret", "list"],
        &["-o", "json", "secret", "list"],
        &["env", "show", "staging"],
        &["-o", "json", "env", "list"],
        &["-o", "json", "deployments", "staging"],
        &["logs", "staging", "web"],
    ] {
        run(args);
    }
    let deployments = daemon.json(&["deployments", "qa"]);
    let id = deployments["deployments"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    run(&["deployment", "show", &id]);
    run(&["deployment", "logs", &id]);
    run(&["-o", "json", "deployment", "logs", &id]);

    // Every API route a client can read, raw.
    for path in [
        "/v1/projects",
        "/v1/projects/leak",
        "/v1/projects/leak/variables",
        "/v1/projects/leak/secrets",
        "/v1/projects/leak/environments",
        "/v1/projects/leak/environments/staging",
        "/v1/projects/leak/environments/staging/plan",
        "/v1/projects/leak/environments/staging/variables",
        "/v1/projects/leak/environments/qa/variables",
        "/v1/projects/leak/environments/qa/deployments",
        "/v1/projects/leak/environments/qa/services/web/logs",
        &format!("/v1/deployments/{id}"),
        &format!("/v1/deployments/{id}/logs"),
    ] {
        let (status, body) = daemon.http("GET", path, Some(&daemon.token), None, b"");
        assert_eq!(status, 200, "{path}: {body}");
        seen.push((
            format!("API response of {path}"),
            body.to_string().into_bytes(),
        ));
    }

    // The command lines of every process running now: the daemon's, and the apps' that hold the values.
    let apps = daemon.json(&["env", "show", "qa"])["services"][0]["pid"]
        .as_u64()
        .expect("the app runs");
    let mut command_lines = 0;
    for entry in std::fs::read_dir("/proc").expect("proc").flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            seen.push((
                format!("command line of {}", entry.path().display()),
                cmdline,
            ));
            command_lines += 1;
        }
    }
    assert!(command_lines > 1);
    for pid in [u64::from(daemon.pid()), apps] {
        assert!(
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok(),
            "process {pid} is running"
        );
    }
    // The app really holds the values: the scan looks where they would leak from.
    let environ = std::fs::read(format!("/proc/{apps}/environ")).expect("environ");
    assert!(String::from_utf8_lossy(&environ).contains(CANARIES[2]));

    support::ok(daemon.cli(&["env", "delete", "qa"]));
    support::ok(daemon.cli(&["env", "delete", "staging"]));
    daemon.stop();
    // The daemon's log was written at every level: each step's journal lines and each request's answer.
    let daemon_log = support::read_log(&data);
    assert!(
        daemon_log.contains("DEBUG") && daemon_log.contains(" answered"),
        "the daemon logged at debug and below"
    );
    // The store, the runtime's records, the apps' logs, the daemon's log, the client config: every file the
    // daemon wrote.
    let files = files_under(&data);
    assert!(
        files.iter().any(|f| f.ends_with("preview.db"))
            && files.iter().any(|f| f.ends_with("daemon.log"))
    );
    let app_logs: Vec<_> = files
        .iter()
        .filter(|f| {
            f.extension().is_some_and(|e| e == "log")
                && f.to_string_lossy().contains("environments")
        })
        .collect();
    for file in files_under(root.path()) {
        seen.push((
            format!("file {}", file.display()),
            std::fs::read(&file).expect("read"),
        ));
    }
    for (what, bytes) in &seen {
        assert_no_canary(what, bytes);
    }
    let found = |needle: &str| {
        seen.iter()
            .filter(|(_, b)| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
            .count()
    };
    assert!(
        found(control) >= 3,
        "the scan sees outputs, responses and files"
    );
    // What the apps printed (a list of their variables' names) is only in their logs.
    assert!(
        found("started with ['") >= 2,
        "the scan reads the apps' logs ({app_logs:?})"
    );
    println!(
        "checked {} outputs, responses, command lines and files",
        seen.len()
    );
}

fn record_slot(record: &preview_store::SealedVersion) -> (String, String, String) {
    (
        record.project.clone(),
        record.scope.clone(),
        record.name.clone(),
    )
}

#[test]
fn a_ciphertext_moved_into_another_slot_does_not_open() {
    let root = preview_testing::TempDir::new("moved");
    let data = root.path().join("data");
    let daemon = Daemon::start(&data, &[]);
    register(&daemon, &root.path().join("spec"));
    set_canaries(&daemon);
    daemon.stop();

    // Copy MASKING_KEY's sealed value over FORGE_WEBHOOK_SECRET's.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = Store::open_sqlite(&data.join("preview.db"))
            .await
            .expect("store");
        let secrets = store.secrets(Some("shop")).await.expect("secrets");
        let masking = secrets
            .iter()
            .find(|s| s.name == "MASKING_KEY")
            .expect("masking");
        let webhook = secrets
            .iter()
            .find(|s| s.name == "FORGE_WEBHOOK_SECRET")
            .expect("webhook");
        let current = |record: &preview_store::SecretRecord| {
            let store = &store;
            let record = record.clone();
            async move {
                store
                    .secret_version(
                        &record.project,
                        &record.scope,
                        &record.name,
                        &record.fingerprint,
                    )
                    .await
                    .expect("version")
                    .expect("current")
            }
        };
        let (masking, target) = (current(masking).await, current(webhook).await);
        let moved = preview_store::SealedVersion {
            nonce: masking.nonce,
            ciphertext: masking.ciphertext,
            ..target
        };
        store.put_secret(webhook, &moved).await.expect("tamper");
    });

    let daemon = Daemon::start(&data, &[]);
    let out = daemon.cli(&["env", "create", "staging"]);
    assert_eq!(out.status.code(), Some(1), "the deployment does not commit");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("cannot open secret `FORGE_WEBHOOK_SECRET` at project of project `shop`: the ciphertext was not sealed for this slot with this master key"),
        "{text}"
    );
    assert!(text.contains("rolled back"), "{text}");
}

#[test]
fn a_wrong_master_key_is_refused_and_nothing_is_overwritten() {
    let root = preview_testing::TempDir::new("wrong-key");
    let data = root.path().join("data");
    let daemon = Daemon::start(&data, &[]);
    register(&daemon, &root.path().join("spec"));
    set_canaries(&daemon);
    daemon.stop();
    let before = store_contents(&data);
    let key_file = std::fs::read(data.join("master.key")).expect("key");

    let other = MasterKey::generate().expect("key");
    let out = serve_refused(&data, &[("PREVIEW_MASTER_KEY", other.to_hex().as_str())]);
    assert!(!out.status.success());
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(
        message.contains(
            "the master key does not match the one this store's secrets were sealed with"
        ),
        "{message}"
    );
    let out = serve_refused(&data, &[("PREVIEW_MASTER_KEY", "not-a-key")]);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("PREVIEW_MASTER_KEY: master key: a master key is 64 hexadecimal digits")
    );

    assert_eq!(store_contents(&data), before, "the store is unchanged");
    assert_eq!(
        std::fs::read(data.join("master.key")).expect("key"),
        key_file,
        "the key file is unchanged"
    );
    // And the right key still works.
    let daemon = Daemon::start(&data, &[]);
    assert!(daemon.cli(&["env", "create", "staging"]).status.success());
}

/// The secrets and the key check as stored.
fn store_contents(data: &Path) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = Store::open_sqlite(&data.join("preview.db"))
            .await
            .expect("store");
        let secrets = store.secrets(None).await.expect("secrets");
        format!(
            "{secrets:?} {:?}",
            store.meta("secrets_key_check").await.expect("meta")
        )
    })
}

#[test]
fn after_rotation_every_secret_reads_back_and_the_old_key_no_longer_works() {
    let root = preview_testing::TempDir::new("rotate");
    let data = root.path().join("data");
    let daemon = Daemon::start(&data, &[]);
    register(&daemon, &root.path().join("spec"));
    set_canaries(&daemon);
    let old_key = std::fs::read_to_string(data.join("master.key")).expect("key");
    let before = daemon.json(&["secret", "list"]);

    let out = daemon.cli(&["secret", "rotate-key"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "re-encrypted 3 secrets under a new master key\n"
    );
    let new_key = std::fs::read_to_string(data.join("master.key")).expect("key");
    assert_ne!(old_key, new_key);
    assert_eq!(
        daemon.json(&["secret", "list"]),
        before,
        "names, scopes and fingerprints are unchanged"
    );
    // Every secret opens under the new key: the deployment reveals all of them.
    let out = daemon.cli(&["env", "create", "staging"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    daemon.stop();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let records = runtime.block_on(async {
        let store = Store::open_sqlite(&data.join("preview.db"))
            .await
            .expect("store");
        let mut current = Vec::new();
        for record in store.secrets(None).await.expect("secrets") {
            current.push(
                store
                    .secret_version(
                        &record.project,
                        &record.scope,
                        &record.name,
                        &record.fingerprint,
                    )
                    .await
                    .expect("version")
                    .expect("current"),
            );
        }
        current
    });
    let (old, new) = (
        MasterKey::from_hex(&old_key).expect("old"),
        MasterKey::from_hex(&new_key).expect("new"),
    );
    for (record, canary) in records.iter().zip([CANARIES[1], CANARIES[0], CANARIES[2]]) {
        let (project, scope, name) = record_slot(record);
        let slot = Slot {
            project: &project,
            scope: &scope,
            name: &name,
        };
        let sealed = Sealed {
            nonce: record.nonce.clone(),
            ciphertext: record.ciphertext.clone(),
        };
        assert_eq!(
            new.open(&slot, &sealed)
                .expect("opens with the new key")
                .expose(),
            canary
        );
        assert!(
            old.open(&slot, &sealed).is_err(),
            "the old key no longer opens {name}"
        );
    }
    let out = serve_refused(&data, &[("PREVIEW_MASTER_KEY", old_key.trim())]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("the master key does not match"));
}
