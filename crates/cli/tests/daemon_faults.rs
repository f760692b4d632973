//! Fault injection against the real daemon: for a create, an update and a delete, at every runtime operation,
//! (a) the operation fails, and (b) the daemon is killed with SIGKILL just before or just after the operation
//! takes effect; the daemon is then started again. The runtime must then hold exactly the previous state or
//! exactly the new one — never a mix, never an orphan — the store must record exactly what the runtime holds, and
//! `preview deployment show` must say which. Before a plan's point of no return every failure and kill rolls
//! back; after it the deployment completes.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use preview_plan::{Resource, desired_state, plan_deployment};
use support::{Daemon, EXAMPLE, copy_dir, wait_until_ended};

fn desired(source: &str, versions: &preview_plan::SecretVersions) -> BTreeMap<String, Resource> {
    let spec = preview_spec::parse_spec("preview.yaml", source).unwrap_or_else(|e| panic!("{e}"));
    let context = preview_resolve::Context::default();
    let resolved =
        preview_resolve::resolve_environment(&spec, &spec.environments["staging"], &context)
            .unwrap_or_else(|e| panic!("{e:?}"));
    desired_state(&resolved, versions)
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect()
}

/// The secrets' fingerprints as the daemon puts them into resources.
fn versions(daemon: &Daemon) -> preview_plan::SecretVersions {
    let listed = daemon.json(&["secret", "list"]);
    listed["secrets"]
        .as_array()
        .expect("secrets")
        .iter()
        .map(|s| {
            let name = format!(
                "{}/{}",
                s["scope"].as_str().expect("scope"),
                s["name"].as_str().expect("name")
            );
            (
                name,
                s["fingerprint"].as_str().expect("fingerprint").to_owned(),
            )
        })
        .collect()
}

/// `text` with `from` replaced by `to`; fails if `from` is not there, so that a changed example cannot quietly
/// turn the update into no update.
fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the example no longer has `{from}`");
    text.replace(from, to)
}

fn changed_example() -> String {
    replaced(
        &replaced(
            EXAMPLE,
            "      SHOP_MODE: staging",
            "      SHOP_MODE: staging\n      FEATURE: on",
        ),
        "    depends_on: [db, migrate]",
        "    replicas: 2\n    depends_on: [db, migrate]",
    )
}

fn runtime_state(data: &Path) -> BTreeMap<String, Resource> {
    let address = preview_deploy::EnvironmentAddress {
        project: "shop".into(),
        environment: "staging".into(),
    };
    preview_deploy::read_state(&data.join("runtime"), &address)
}

fn register(daemon: &Daemon, dir: &Path, source: &str) {
    let file = dir.join("preview.yaml");
    // The example's seed file is named relative to the spec; the recording runtime never reads it.
    std::fs::create_dir_all(dir.join("db")).expect("spec dir");
    std::fs::write(dir.join("db/seed.sql"), "SELECT 1;\n").expect("write seed");
    std::fs::write(&file, source).expect("write spec");
    let out = daemon.cli(&["project", "register", "-f", file.to_str().expect("path")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    daemon.set_example_secrets();
}

/// A stopped daemon's data directory in which `prepare` has been done, and its secrets' fingerprints.
fn baseline(
    root: &Path,
    name: &str,
    prepare: impl FnOnce(&Daemon),
) -> (std::path::PathBuf, preview_plan::SecretVersions) {
    let data = root.join(name);
    let daemon = Daemon::start(&data, &[]);
    prepare(&daemon);
    let versions = versions(&daemon);
    daemon.stop();
    (data, versions)
}

struct Scenario {
    name: &'static str,
    base: std::path::PathBuf,
    command: Vec<&'static str>,
    old: BTreeMap<String, Resource>,
    new: BTreeMap<String, Resource>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Injection {
    Fail,
    KillBefore,
    KillAfter,
    KillInVerification,
}

fn run(scenario: &Scenario, operation: u64, injection: Injection, work: &Path) -> &'static str {
    let data = work.join(format!("{}-{operation}-{injection:?}", scenario.name));
    copy_dir(&scenario.base, &data);
    let fault = match injection {
        Injection::Fail => format!("fail@{operation}"),
        Injection::KillBefore => format!("stop-before@{operation}"),
        Injection::KillAfter => format!("stop-after@{operation}"),
        Injection::KillInVerification => "stop-verify@1".to_owned(),
    };
    let daemon = Daemon::start(&data, &["--fault", &fault]);
    let mut args = scenario.command.clone();
    args.push("--no-wait");
    let started = daemon.json(&args);
    let id = started["deployment"]["id"]
        .as_str()
        .expect("deployment id")
        .to_owned();
    let daemon = if injection == Injection::Fail {
        wait_until_ended(&daemon, &id);
        daemon.stop();
        Daemon::start(&data, &[])
    } else {
        let marker = data.join("runtime").join("fault-reached");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !marker.exists() {
            assert!(
                Instant::now() < deadline,
                "{fault} was never reached:\n{}",
                support::read_log(&data)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        daemon.kill();
        Daemon::start(&data, &[])
    };
    let shown = daemon.json(&["deployment", "show", &id]);
    let status = shown["deployment"]["status"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let state = runtime_state(&data);
    let context = format!("{} with {fault}: {status}\n{shown:#}", scenario.name);
    match status.as_str() {
        "committed" => assert_eq!(state, scenario.new, "{context}"),
        "rolled_back" => {
            assert_eq!(state, scenario.old, "{context}");
            let steps = shown["steps"].as_array().expect("steps");
            assert!(
                steps.iter().all(|s| matches!(
                    s["state"].as_str(),
                    Some("undone" | "not started" | "failed")
                )),
                "every started step is undone: {context}"
            );
            let logs = daemon.json(&["deployment", "logs", &id]);
            let compensated = logs["entries"]
                .as_array()
                .expect("entries")
                .iter()
                .any(|e| e["phase"] == "compensate");
            assert!(
                compensated || steps.iter().all(|s| s["state"] == "not started"),
                "{context}"
            );
        }
        _ => panic!("the deployment neither committed nor rolled back: {context}"),
    }
    // The store agrees with the runtime: the environment's recorded resources are exactly the ones it holds.
    let shown = daemon.cli(&["--output", "json", "env", "show", "staging"]);
    let recorded: BTreeMap<String, String> = if shown.status.success() {
        let shown: serde_json::Value =
            serde_json::from_slice(&shown.stdout).expect("env show is JSON");
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
    } else {
        BTreeMap::new()
    };
    let held: BTreeMap<String, String> = state
        .values()
        .map(|r| (r.id.clone(), r.hash.clone()))
        .collect();
    assert_eq!(recorded, held, "{context}");
    daemon.stop();
    let _ = std::fs::remove_dir_all(&data);
    if status == "committed" { "new" } else { "old" }
}

#[test]
fn every_step_of_create_update_and_delete_survives_errors_and_kills() {
    let root = preview_testing::TempDir::new("faults");
    let (v1, v2) = (EXAMPLE.to_owned(), changed_example());
    let spec_dir = root.path().join("spec");
    let empty = baseline(root.path(), "empty", |d| register(d, &spec_dir, &v1));
    let created = baseline(root.path(), "created", |d| {
        register(d, &spec_dir, &v1);
        let out = d.cli(&["env", "create", "staging"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    let outdated = baseline(root.path(), "outdated", |d| {
        register(d, &spec_dir, &v1);
        let out = d.cli(&["env", "create", "staging"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        register(d, &spec_dir, &v2);
    });
    let scenarios = [
        Scenario {
            name: "create",
            base: empty.0,
            command: vec!["env", "create", "staging"],
            old: BTreeMap::new(),
            new: desired(&v1, &empty.1),
        },
        Scenario {
            name: "update",
            base: outdated.0,
            command: vec!["deploy", "staging"],
            old: desired(&v1, &outdated.1),
            new: desired(&v2, &outdated.1),
        },
        Scenario {
            name: "delete",
            base: created.0,
            command: vec!["env", "delete", "staging"],
            old: desired(&v1, &created.1),
            new: BTreeMap::new(),
        },
    ];
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    for scenario in &scenarios {
        let old: Vec<Resource> = scenario.old.values().cloned().collect();
        let new: Vec<Resource> = scenario.new.values().cloned().collect();
        let plan = plan_deployment("staging", &new, &old);
        let steps = plan.steps.len() as u64;
        assert!(steps > 0, "{}: the plan has steps", scenario.name);
        assert!(
            scenario.name != "create" || steps >= 8,
            "the create plan has at least 8 steps"
        );
        // Operations come in step order up to the point: every step after it waits for all before it.
        let point = plan.point_of_no_return.map_or(steps, |p| p as u64);
        for operation in 1..=steps {
            for injection in [Injection::Fail, Injection::KillBefore, Injection::KillAfter] {
                let ended = run(scenario, operation, injection, root.path());
                *outcomes
                    .entry(format!(
                        "{} {injection:?} at {operation} → {ended}",
                        scenario.name
                    ))
                    .or_default() += 1;
                // A kill right after the last step, before its result was journaled: past a point of no return
                // the deployment completes; in a plan without one (a new environment's) it rolls back.
                let past = operation > point
                    || (operation == steps
                        && injection == Injection::KillAfter
                        && plan.point_of_no_return.is_some());
                let want = if past { "new" } else { "old" };
                if injection != Injection::KillAfter || past {
                    *expected
                        .entry(format!(
                            "{} {injection:?} at {operation} → {want}",
                            scenario.name
                        ))
                        .or_default() += 1;
                } else {
                    // A kill right after a step before the point took effect: rolled back.
                    *expected
                        .entry(format!(
                            "{} {injection:?} at {operation} → old",
                            scenario.name
                        ))
                        .or_default() += 1;
                }
            }
        }
        let ended = run(scenario, 1, Injection::KillInVerification, root.path());
        assert_eq!(
            ended, "new",
            "{}: a kill when only verification remained finishes the deployment",
            scenario.name
        );
    }
    // Before the point of no return an injected error or kill rolls back; after it the deployment completes.
    assert_eq!(outcomes, expected);
}
