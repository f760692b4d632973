//! The engine's guarantees where daemons share a PostgreSQL store and a runtime (here the recording runtime in
//! one directory, as two daemons would drive one cluster): a daemon paused past its lease, a daemon whose clock is
//! an hour wrong, the store restarting mid-deployment, and many clients changing the same environments at once
//! while the daemons are paused in turn.
//! Afterwards the store records exactly what the runtime holds, and no deployment's journal shows two daemons
//! acting on it.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use preview_testing::{TempDir, TestPostgres};
use serde_json::{Value, json};
use support::{Daemon, api, register_example, wait_for, wait_until_ended};

/// What the shared recording runtime holds for an environment: id → hash.
fn runtime_state(runtime: &Path, environment: &str) -> BTreeMap<String, String> {
    let address = preview_deploy::EnvironmentAddress {
        project: "shop".into(),
        environment: environment.into(),
    };
    preview_deploy::read_state(runtime, &address)
        .into_values()
        .map(|r| (r.id, r.hash))
        .collect()
}

/// What the store records for an environment: id → hash (nothing for one that does not exist).
fn recorded(daemon: &Daemon, environment: &str) -> BTreeMap<String, String> {
    let (status, shown) = api(
        daemon,
        "GET",
        &format!("/v1/projects/shop/environments/{environment}"),
        Value::Null,
    );
    if status == 404 {
        return BTreeMap::new();
    }
    assert_eq!(status, 200, "{shown}");
    shown["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| {
            (
                r["id"].as_str().expect("id").to_owned(),
                r["hash"].as_str().expect("hash").to_owned(),
            )
        })
        .collect()
}

/// The deployment's journal entries in order.
fn journal(daemon: &Daemon, id: &str) -> Vec<Value> {
    let logs = daemon.json(&["deployment", "logs", id]);
    logs["entries"].as_array().expect("entries").clone()
}

/// Every entry was written under the lease's current epoch: once a newer epoch wrote, an older one never did
/// again. Returns the holders in the order they acted.
fn acted_in_turn(entries: &[Value]) -> Vec<String> {
    let mut holders: Vec<String> = Vec::new();
    let mut epoch = 0;
    for entry in entries {
        let (this, holder) = (
            entry["epoch"].as_i64().expect("epoch"),
            entry["holder"].as_str().expect("holder"),
        );
        assert!(
            this >= epoch,
            "epoch {this} wrote after epoch {epoch}: {entries:#?}"
        );
        if this > epoch {
            holders.push(holder.to_owned());
            epoch = this;
        }
        assert_eq!(
            Some(holder),
            holders.last().map(String::as_str),
            "{entries:#?}"
        );
    }
    holders
}

fn signal(daemon: &Daemon, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &daemon.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

fn wait_for_file(path: &Path) {
    wait_for("the fault to be reached", Duration::from_secs(30), || {
        path.exists()
    });
}

/// Two daemons sharing one store and one runtime directory, the second's data directory holding the first's
/// master key (daemons sharing a store share its key).
fn share_key(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("data dir");
    std::fs::copy(from.join("master.key"), to.join("master.key")).expect("copy key");
}

#[test]
fn a_paused_daemon_or_one_whose_clock_is_wrong_never_acts_on_a_deployment_another_holds() {
    let server = TestPostgres::start();
    let url = server.create_database("paused");
    let root = TempDir::new("paused");
    let runtime = root.path().join("runtime");
    let recording = format!("recording:{}", runtime.display());
    let common = [
        "--store",
        url.as_str(),
        "--runtime",
        recording.as_str(),
        "--lease-ttl",
        "2",
    ];
    let slow_first = || {
        let mut flags = common.to_vec();
        flags.extend(["--fault", "slow@1"]);
        flags
    };
    let a_data = root.path().join("a");
    let a = Daemon::start(&a_data, &slow_first());
    register_example(&a);
    share_key(&a_data, &root.path().join("b"));
    // The second daemon's clock is an hour ahead: by its own clock every lease expired long ago. (The offset moves
    // every reading of the daemon's wall clock; leases expire by the store's clock in the SQL itself, so a daemon
    // that judged expiry by its own clock again would take the first daemon's leases here.)
    let b = Daemon::start_with_env(
        &root.path().join("b"),
        &common,
        &[("PREVIEW_TEST_CLOCK_OFFSET_MS", "3600000")],
    );

    // 1. The first operation of a create takes three seconds, longer than the lease: its daemon renews it, and
    //    the other, whatever its clock says, never takes it over.
    let started = a.json(&["env", "create", "staging", "--no-wait"]);
    let id = started["deployment"]["id"].as_str().expect("id").to_owned();
    let ended = wait_until_ended(&a, &id);
    assert_eq!(ended["deployment"]["status"], "committed", "{ended}");
    assert_eq!(
        acted_in_turn(&journal(&a, &id)).len(),
        1,
        "one daemon acted"
    );
    assert!(!runtime_state(&runtime, "staging").is_empty());
    assert_eq!(recorded(&b, "staging"), runtime_state(&runtime, "staging"));

    // 2. The same daemon, started again with a slow first operation, is stopped (SIGSTOP) in it and stays
    //    stopped past its lease: the other daemon takes the deployment over and rolls it back. When the first
    //    resumes, its operation goes on — and must change nothing, and write nothing.
    a.stop();
    std::fs::remove_file(runtime.join("fault-reached")).expect("marker");
    let a = Daemon::start(&a_data, &slow_first());
    let started = a.json(&["env", "create", "production", "--no-wait"]);
    let id = started["deployment"]["id"].as_str().expect("id").to_owned();
    wait_for_file(&runtime.join("fault-reached"));
    signal(&a, "STOP");
    let reached = Instant::now();
    let ended = wait_until_ended(&b, &id);
    // Resumed only once the slow operation's three seconds are over: its wait ends at once, before the daemon's
    // heartbeat has had a chance to learn from the store that the lease is gone — only the daemon's own clock
    // (its last renewal is older than the lease) can stop it from making its change.
    std::thread::sleep(
        (reached + Duration::from_secs(4)).saturating_duration_since(Instant::now()),
    );
    signal(&a, "CONT");
    assert_eq!(ended["deployment"]["status"], "rolled_back", "{ended}");
    // Past the slow operation's three seconds: whatever the resumed daemon does, it has done.
    std::thread::sleep(Duration::from_secs(4));
    let after = b.json(&["deployment", "show", &id]);
    assert_eq!(after["deployment"]["status"], "rolled_back", "{after}");
    assert!(
        runtime_state(&runtime, "production").is_empty(),
        "the resumed operation changed nothing"
    );
    assert_eq!(
        recorded(&b, "production"),
        runtime_state(&runtime, "production")
    );
    let holders = acted_in_turn(&journal(&b, &id));
    assert_eq!(holders.len(), 2, "{holders:?}");
    assert!(
        holders[0].starts_with(a_data_id(&a_data).as_str()),
        "{holders:?}"
    );
    assert!(
        !holders[1].starts_with(a_data_id(&a_data).as_str()),
        "{holders:?}"
    );
    assert!(
        support::read_log(&a_data).contains("stopped acting for it"),
        "{}",
        support::read_log(&a_data)
    );
    // Both daemons go on working.
    let created = a.cli(&["env", "create", "production"]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stdout)
    );
    assert_eq!(
        recorded(&b, "production"),
        runtime_state(&runtime, "production")
    );
}

/// The daemon id kept in a data directory.
fn a_data_id(data: &Path) -> String {
    std::fs::read_to_string(data.join("daemon-id"))
        .expect("daemon id")
        .trim()
        .to_owned()
}

#[test]
fn a_deployment_survives_its_store_restarting_and_the_daemon_keeps_serving() {
    let server = TestPostgres::start();
    let url = server.create_database("restart");
    let root = TempDir::new("store-restart");
    let runtime = root.path().join("runtime");
    let recording = format!("recording:{}", runtime.display());
    let data = root.path().join("data");
    let daemon = Daemon::start(
        &data,
        &[
            "--store",
            &url,
            "--runtime",
            &recording,
            "--lease-ttl",
            "2",
            "--fault",
            "slow@2",
        ],
    );
    register_example(&daemon);
    let started = daemon.json(&["env", "create", "staging", "--no-wait"]);
    let id = started["deployment"]["id"].as_str().expect("id").to_owned();
    wait_for_file(&runtime.join("fault-reached"));
    server.stop();
    // The slow operation ends while the store is gone, and the lease could not be renewed meanwhile.
    std::thread::sleep(Duration::from_secs(4));
    let (status, _) = daemon.http("GET", "/health", None, None, b"");
    assert_eq!(status, 200, "the daemon still answers");
    let (status, _) = api(
        &daemon,
        "GET",
        "/v1/projects/shop/environments",
        Value::Null,
    );
    assert!(
        status >= 500,
        "without its store the daemon cannot list environments ({status})"
    );
    server.start_again();
    // Once the store is back the deployment is finished from its journal, without a restart of the daemon.
    let deadline = Instant::now() + Duration::from_secs(60);
    let ended = loop {
        let (status, shown) = api(
            &daemon,
            "GET",
            &format!("/v1/deployments/{id}"),
            Value::Null,
        );
        let state = shown["deployment"]["status"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        if status == 200 && matches!(state.as_str(), "committed" | "rolled_back") {
            break shown;
        }
        assert!(
            Instant::now() < deadline,
            "the deployment did not end: {status} {shown}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        recorded(&daemon, "staging"),
        runtime_state(&runtime, "staging"),
        "{ended}"
    );
    let holders = acted_in_turn(&journal(&daemon, &id));
    assert!(
        holders.len() >= 2,
        "taken again after the outage: {holders:?}"
    );
    let created = daemon.cli(&["env", "create", "production"]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stdout)
    );
    assert_eq!(
        recorded(&daemon, "production"),
        runtime_state(&runtime, "production")
    );
}

/// A client's next move, from a small deterministic generator of its own.
fn next(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *seed >> 33
}

#[test]
fn twenty_clients_changing_the_same_environments_for_thirty_seconds_leave_no_orphan() {
    let server = TestPostgres::start();
    let url = server.create_database("storm");
    let root = TempDir::new("storm");
    let runtime = root.path().join("runtime");
    let recording = format!("recording:{}", runtime.display());
    // A short lease on a busy machine: renewals come late, daemons stop acting and others take over.
    let common = [
        "--store",
        url.as_str(),
        "--runtime",
        recording.as_str(),
        "--lease-ttl",
        "1",
    ];
    let first = Daemon::start(&root.path().join("a"), &common);
    register_example(&first);
    share_key(&root.path().join("a"), &root.path().join("b"));
    let second = Daemon::start(&root.path().join("b"), &common);
    let created = first.cli(&["env", "create", "staging"]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stdout)
    );
    let previews = ["pr-1", "pr-2", "pr-3"];
    let until = Instant::now() + Duration::from_secs(30);
    let accepted = std::thread::scope(|scope| {
        // A nemesis pauses one daemon after the other past its lease, mid-deployment as likely as not: the other
        // takes over what it held, and the paused one, when it resumes, must not act on it any more.
        scope.spawn(|| {
            let mut turn = 0;
            while Instant::now() + Duration::from_secs(4) < until {
                std::thread::sleep(Duration::from_millis(1500));
                let paused = if turn % 2 == 0 { &first } else { &second };
                signal(paused, "STOP");
                std::thread::sleep(Duration::from_millis(2500));
                signal(paused, "CONT");
                turn += 1;
            }
        });
        let clients: Vec<_> = (0..20u64)
            .map(|client| {
                let daemon = if client % 2 == 0 { &first } else { &second };
                scope.spawn(move || {
                    let mut seed = client + 1;
                    let mut accepted = 0;
                    while Instant::now() < until {
                        let preview = previews[(next(&mut seed) % 3) as usize];
                        let (status, answer) = match next(&mut seed) % 4 {
                            0 => api(
                                daemon,
                                "POST",
                                "/v1/projects/shop/environments/staging/clone",
                                json!({ "name": preview }),
                            ),
                            1 => api(
                                daemon,
                                "DELETE",
                                &format!("/v1/projects/shop/environments/{preview}"),
                                Value::Null,
                            ),
                            2 => api(
                                daemon,
                                "POST",
                                &format!("/v1/projects/shop/environments/{preview}/deploy"),
                                json!({}),
                            ),
                            _ => api(
                                daemon,
                                "POST",
                                "/v1/projects/shop/environments/staging/deploy",
                                json!({}),
                            ),
                        };
                        // Busy, already there, not there: a client retries with another move.
                        match status {
                            202 => accepted += 1,
                            404 | 409 => {}
                            other => {
                                let log = support::read_log(&daemon.data);
                                let errors: Vec<&str> =
                                    log.lines().filter(|l| l.contains("error")).collect();
                                panic!("{other}: {answer}\n{}", errors.join("\n"))
                            }
                        }
                    }
                    accepted
                })
            })
            .collect();
        clients
            .into_iter()
            .map(|c| c.join().expect("client"))
            .sum::<u32>()
    });
    assert!(
        accepted > 20,
        "the clients got deployments through ({accepted})"
    );
    // Let every deployment end, recovered by whichever daemon holds it.
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = tokio
        .block_on(preview_store::Store::open_postgres(&url))
        .expect("store");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let unfinished = tokio
            .block_on(store.unfinished_deployments())
            .expect("unfinished");
        if unfinished.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let mut report = String::new();
            for d in &unfinished {
                let lease = tokio.block_on(store.lease_state(&d.id)).expect("lease");
                let entries = tokio.block_on(store.journal(&d.id)).expect("journal");
                report.push_str(&format!(
                    "{} {} {} holder {} lease {lease:?} attempts {} error {:?} retry_at {:?}\n  last entries: {:?}\n",
                    d.id,
                    d.environment,
                    d.status,
                    d.holder,
                    d.attempts,
                    d.last_error,
                    d.retry_at,
                    entries.iter().rev().take(3).map(|e| (&e.holder, e.epoch, &e.message)).collect::<Vec<_>>()
                ));
            }
            let logs = [&first, &second]
                .iter()
                .map(|d| {
                    let log = support::read_log(&d.data);
                    let lines: Vec<&str> = log.lines().collect();
                    lines[lines.len().saturating_sub(15)..].join("\n")
                })
                .collect::<Vec<_>>()
                .join("\n----\n");
            panic!("deployments did not end:\n{report}\n{logs}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for environment in ["staging", "pr-1", "pr-2", "pr-3"] {
        let recorded = tokio
            .block_on(store.recorded_state("shop", environment))
            .expect("recorded")
            .into_iter()
            .map(|r| (r.id, r.hash))
            .collect::<BTreeMap<_, _>>();
        assert_eq!(
            recorded,
            runtime_state(&runtime, environment),
            "{environment}"
        );
        let exists = tokio
            .block_on(store.environment("shop", environment))
            .expect("environment")
            .is_some();
        assert_eq!(exists, !recorded.is_empty(), "{environment}");
    }
    // Nothing of an environment the store does not know is left in the runtime.
    for entry in std::fs::read_dir(runtime.join("shop")).expect("runtime") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        assert!(
            ["staging", "pr-1", "pr-2", "pr-3"].contains(&name.as_str()),
            "{name}"
        );
    }
    // No deployment had two daemons acting on it at once.
    let ids: Vec<String> = ["staging", "pr-1", "pr-2", "pr-3"]
        .iter()
        .flat_map(|e| {
            tokio
                .block_on(store.deployments("shop", e, 1000))
                .expect("deployments")
        })
        .map(|d| d.id)
        .collect();
    assert!(ids.len() > 20);
    let mut taken_over = 0;
    for id in &ids {
        let entries: Vec<Value> = tokio
            .block_on(store.journal(id))
            .expect("journal")
            .into_iter()
            .map(|e| serde_json::to_value(e).expect("entry"))
            .collect();
        taken_over += usize::from(acted_in_turn(&entries).len() > 1);
    }
    println!(
        "{accepted} changes accepted, {} deployments, {taken_over} finished by a later holder",
        ids.len()
    );
    assert!(
        taken_over > 0,
        "the pauses made daemons take over each other's deployments"
    );
}

#[test]
fn an_environment_of_the_local_runtime_belongs_to_the_daemon_that_made_it() {
    let server = TestPostgres::start();
    let url = server.create_database("owned");
    let root = TempDir::new("owned");
    let (a_data, b_data) = (root.path().join("a"), root.path().join("b"));
    let _accounts = (
        support::ReleaseAccounts(a_data.clone()),
        support::ReleaseAccounts(b_data.clone()),
    );
    let repo = support::repository(
        root.path(),
        &[
            ("preview.yaml", include_str!("plain/preview.yaml")),
            ("web.py", include_str!("plain/web.py")),
        ],
    );
    let flags = |users: &'static str, network: &'static str| {
        vec![
            "--store",
            url.as_str(),
            "--lease-ttl",
            "1",
            "--users",
            users,
            "--network",
            network,
        ]
    };
    let a_flags = flags("51200-51215", "10.218.0.0/16");
    let a = support::local_daemon(&a_data, "27300-27399", &a_flags, None);
    support::ok(a.cli(&[
        "project",
        "register",
        "-f",
        repo.join("preview.yaml").to_str().expect("path"),
    ]));
    support::ok(a.cli(&["env", "create", "staging"]));
    share_key(&a_data, &b_data);
    let b_flags = flags("51300-51315", "10.219.0.0/16");
    let b = support::local_daemon(&b_data, "27400-27499", &b_flags, None);
    let owner = a_data_id(&a_data);
    // The other daemon refuses to change it, naming the daemon whose machine runs it.
    for args in [&["deploy", "staging"][..], &["env", "delete", "staging"]] {
        let refused = b.cli(args);
        assert!(!refused.status.success());
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(
            said.contains(&format!("runs on the machine of daemon `{owner}`")),
            "{args:?}: {said}"
        );
    }
    // Its owner dies during a deployment: the other daemon does not take it over, even long after its lease.
    std::fs::write(repo.join("slow"), "").expect("slow");
    let slow = support::commit_all(&repo, "a slow build");
    let started = a.json(&["deploy", "staging", "--commit", &slow, "--no-wait"]);
    let id = started["deployment"]["id"].as_str().expect("id").to_owned();
    std::thread::sleep(Duration::from_millis(500));
    a.kill();
    std::thread::sleep(Duration::from_secs(4));
    let shown = b.json(&["deployment", "show", &id]);
    assert_eq!(shown["deployment"]["status"], "running", "{shown}");
    assert!(
        shown["deployment"]["holder"]
            .as_str()
            .unwrap_or("")
            .starts_with(&owner),
        "{shown}"
    );
    // Started again, its owner finishes it.
    let a = support::local_daemon(&a_data, "27300-27399", &a_flags, None);
    let ended = wait_until_ended(&a, &id);
    assert_eq!(ended["deployment"]["status"], "rolled_back", "{ended}");
    support::ok(a.cli(&["env", "delete", "staging"]));
    b.stop();
    a.stop();
}
