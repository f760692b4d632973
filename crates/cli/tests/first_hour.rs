//! A newcomer's first hour with a project of their own: what `deploy`, `plan`, `env` and `vars` say about the
//! commit they build, what they warn about, and errors that name the right thing.

mod support;

use std::path::Path;

use serde_json::Value;
use support::{Daemon, commit_all, git, ok, repository};

const SPEC: &str = "project: hour
secrets: [API_TOKEN]
services:
  web:
    run: ./serve
    ports: [8000]
    variables:
      TOKEN: ${secrets.API_TOKEN}
environments:
  staging: {}
";

/// A daemon on the recording runtime with the project registered from a repository of its own.
fn project(name: &str) -> (preview_testing::TempDir, Daemon, std::path::PathBuf) {
    let root = preview_testing::TempDir::new(name);
    let repo = repository(
        root.path(),
        &[("preview.yaml", SPEC), ("serve", "#!/bin/sh\n")],
    );
    let daemon = Daemon::start(&root.path().join("data"), &[]);
    git(&repo, &["branch", "-M", "main"]);
    let spec = repo.join("preview.yaml");
    ok(daemon.cli(&["project", "register", "-f", spec.to_str().expect("utf-8")]));
    (root, daemon, repo)
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn set_token(daemon: &Daemon) {
    ok(daemon.cli_with_input(&["secret", "set", "API_TOKEN"], "tok-1\n"));
}

fn head(repo: &Path) -> String {
    git(repo, &["rev-parse", "HEAD"])
}

fn commit_on(repo: &Path, branch: &str, file: &str, message: &str) -> String {
    git(repo, &["checkout", "--quiet", branch]);
    std::fs::write(repo.join(file), message).expect("write");
    let commit = commit_all(repo, message);
    git(repo, &["checkout", "--quiet", "-"]);
    commit
}

#[test]
fn an_environment_made_from_a_branch_follows_it_and_every_view_names_the_commit() {
    let (_root, daemon, repo) = project("follows");
    set_token(&daemon);
    let main = head(&repo);
    git(&repo, &["branch", "feature"]);
    let first = commit_on(&repo, "feature", "feature.txt", "Start the feature");
    ok(daemon.cli(&["env", "create", "staging"]));
    let out = daemon.cli(&["env", "clone", "staging", "qa", "--commit", "feature"]);
    let printed = ok(out);
    assert!(
        printed.contains(&format!("building {} \"Start the feature\"", &first[..12])),
        "the clone names its commit: {printed}"
    );
    // The branch moves on; so does main.
    let second = commit_on(&repo, "feature", "feature.txt", "Finish the feature");
    std::fs::write(repo.join("main.txt"), "main moves").expect("write");
    let main_moved = commit_all(&repo, "Main moves on");
    assert_ne!(main, main_moved);

    let plan = daemon.json(&["plan", "qa"]);
    assert_eq!(plan["source"]["commit"], second.as_str(), "{plan}");
    let printed = ok(daemon.cli(&["deploy", "qa"]));
    assert!(
        printed.contains(&format!(
            "building {} \"Finish the feature\"",
            &second[..12]
        )),
        "a redeploy builds the branch's new head: {printed}"
    );
    let shown = daemon.json(&["env", "show", "qa"]);
    assert_eq!(shown["commit"], second.as_str(), "{shown}");
    assert_eq!(shown["environment"]["follows"], "feature", "{shown}");
    let listed = daemon.json(&["env", "list"]);
    let commit_of = |name: &str| -> Value {
        listed["environments"]
            .as_array()
            .expect("environments")
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["commit"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(commit_of("qa"), second.as_str());
    assert_eq!(commit_of("staging"), main.as_str());
    let history = daemon.json(&["deployments", "qa"]);
    let commits: Vec<&str> = history["deployments"]
        .as_array()
        .expect("deployments")
        .iter()
        .filter_map(|d| d["commit"].as_str())
        .collect();
    assert_eq!(commits, [second.as_str(), first.as_str()], "{history}");
    let text = ok(daemon.cli(&["deployments", "qa"]));
    assert!(
        text.contains(&second[..12]) && text.contains(&first[..12]),
        "{text}"
    );
    let text = ok(daemon.cli(&["env", "list"]));
    assert!(
        text.contains(&second[..12]) && text.contains(&main[..12]),
        "{text}"
    );

    // The clone's PREVIEW_COMMIT is the commit it runs, even after its branch moved on again.
    commit_on(&repo, "feature", "feature.txt", "Not deployed yet");
    let vars = daemon.json(&["vars", "show", "qa", "--service", "web"]);
    let preview_commit = vars["services"][0]["variables"]
        .as_array()
        .expect("variables")
        .iter()
        .find(|v| v["name"] == "PREVIEW_COMMIT")
        .map(|v| v["value"].clone());
    assert_eq!(preview_commit, Some(Value::from(second.as_str())), "{vars}");

    // `plan --commit` plans for another reference; `deploy --commit` moves what the environment follows.
    let plan = daemon.json(&["plan", "qa", "--commit", "main"]);
    assert_eq!(plan["source"]["commit"], main_moved.as_str(), "{plan}");
    ok(daemon.cli(&["deploy", "qa", "--commit", "main"]));
    let shown = daemon.json(&["env", "show", "qa"]);
    assert_eq!(shown["commit"], main_moved.as_str());
    assert_eq!(shown["environment"]["follows"], "main");
    // staging was made without a reference: it follows HEAD.
    ok(daemon.cli(&["deploy", "staging"]));
    assert_eq!(
        daemon.json(&["env", "show", "staging"])["commit"],
        main_moved.as_str()
    );
}

#[test]
fn deploy_and_plan_warn_about_what_they_leave_out() {
    let (_root, daemon, repo) = project("warnings");
    // No value for the secret yet: the plan shows the deployment and says it would be refused, and how to fix it.
    let out = daemon.cli(&["plan", "staging"]);
    let printed = ok(out.clone());
    assert!(printed.contains("Plan for `staging`"), "{printed}");
    assert!(
        stderr(&out).contains("`preview env create staging` would be refused")
            && stderr(&out).contains("preview secret set API_TOKEN --scope project"),
        "{}",
        stderr(&out)
    );
    set_token(&daemon);
    let out = daemon.cli(&["plan", "staging"]);
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));

    // Uncommitted changes are not deployed, and the spec at the commit differs from the registered one.
    std::fs::write(repo.join("serve"), "#!/bin/sh\necho changed\n").expect("write");
    std::fs::write(
        repo.join("preview.yaml"),
        SPEC.replace("ports: [8000]", "ports: [9000]"),
    )
    .expect("write");
    let out = daemon.cli(&["env", "create", "staging"]);
    let warned = stderr(&out);
    ok(out);
    assert!(
        warned.contains("uncommitted changes that are not deployed") && warned.contains("serve"),
        "{warned}"
    );
    assert!(
        !warned.contains("differs from the registered spec"),
        "{warned}"
    );
    commit_all(&repo, "Move to port 9000");
    let out = daemon.cli(&["plan", "staging"]);
    let warned = stderr(&out);
    assert!(
        warned.contains("preview.yaml at ")
            && warned.contains("differs from the registered spec")
            && warned.contains("preview project register -f"),
        "{warned}"
    );
    assert!(!warned.contains("uncommitted"), "{warned}");
    // JSON output stays parseable: warnings are part of it, and on standard error.
    let plan = daemon.json(&["plan", "staging"]);
    assert!(
        plan["warnings"].as_array().is_some_and(|w| w
            .iter()
            .any(|w| w.as_str().is_some_and(|w| w.contains("differs")))),
        "{plan}"
    );
}

#[test]
fn errors_name_the_right_thing() {
    let (_root, daemon, _repo) = project("errors");
    set_token(&daemon);
    ok(daemon.cli(&["env", "create", "staging"]));
    let out = daemon.cli(&["env", "clone", "staging", "Bad_Name"]);
    assert_eq!(out.status.code(), Some(1));
    let message = stderr(&out);
    assert!(
        message.contains("`Bad_Name` is not a valid environment name")
            && !message.contains("preview.yaml"),
        "{message}"
    );
    let out = daemon.cli(&["deployments", "nosuch"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no environment `nosuch`"),
        "{}",
        stderr(&out)
    );
    let out = daemon.cli(&["logs", "staging", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("has no app, job or database `nosuch` (it has: web)"),
        "{}",
        stderr(&out)
    );
    // A deleted environment keeps its history.
    ok(daemon.cli(&["env", "delete", "staging"]));
    let history = daemon.json(&["deployments", "staging"]);
    assert_eq!(history["deployments"].as_array().map(Vec::len), Some(2));
}

#[test]
fn deleting_an_environment_takes_what_was_set_for_it_unless_kept() {
    let (_root, daemon, _repo) = project("settings");
    set_token(&daemon);
    ok(daemon.cli(&["env", "create", "staging"]));
    ok(daemon.cli(&["env", "clone", "staging", "qa"]));
    ok(daemon.cli(&["vars", "set", "MODE=qa-only", "--scope", "environment:qa"]));
    ok(daemon.cli(&["vars", "set", "LEVEL=debug", "--scope", "service:web@qa"]));
    ok(daemon.cli_with_input(
        &["secret", "set", "API_TOKEN", "--scope", "environment:qa"],
        "qa-token\n",
    ));
    ok(daemon.cli(&["vars", "set", "KEPT=yes", "--scope", "environment:staging"]));

    let printed = ok(daemon.cli(&["env", "delete", "qa"]));
    assert!(
        printed.contains("removing what was set for it")
            && printed.contains("MODE (environment:qa)")
            && printed.contains("API_TOKEN (environment:qa)"),
        "{printed}"
    );
    let vars = daemon.json(&["vars", "list"]);
    let scopes: Vec<&str> = vars["variables"]
        .as_array()
        .expect("variables")
        .iter()
        .filter_map(|v| v["scope"].as_str())
        .collect();
    assert_eq!(scopes, ["environment:staging"], "{vars}");
    let secrets = daemon.json(&["secret", "list"]);
    assert!(
        secrets["secrets"]
            .as_array()
            .expect("secrets")
            .iter()
            .all(|s| s["scope"] != "environment:qa"),
        "{secrets}"
    );
    // A new `qa` starts clean: nothing of the old one applies to it.
    ok(daemon.cli(&["env", "clone", "staging", "qa"]));
    let shown = daemon.json(&["vars", "show", "qa", "--service", "web"]);
    assert!(!shown.to_string().contains("qa-only"), "{shown}");

    // Kept knowingly, and said so.
    ok(daemon.cli(&["vars", "set", "MODE=qa-only", "--scope", "environment:qa"]));
    let printed = ok(daemon.cli(&["env", "delete", "qa", "--keep-settings"]));
    assert!(printed.contains("keeping what was set for it"), "{printed}");
    let vars = daemon.json(&["vars", "list"]);
    assert!(vars.to_string().contains("environment:qa"), "{vars}");

    // What was set for an environment that has clones stays: the clones read it too.
    ok(daemon.cli(&["env", "clone", "staging", "feat"]));
    let printed = ok(daemon.cli(&["env", "delete", "staging"]));
    assert!(
        printed.contains("its clones (feat) read it too"),
        "{printed}"
    );
    let vars = daemon.json(&["vars", "list"]);
    assert!(vars.to_string().contains("environment:staging"), "{vars}");
}

#[test]
fn setting_a_secret_the_spec_does_not_declare_warns() {
    let (_root, daemon, _repo) = project("undeclared");
    let out = daemon.cli_with_input(&["secret", "set", "API_TOKNE"], "x\n");
    let warned = stderr(&out);
    ok(out);
    assert!(
        warned.contains("warning: `API_TOKNE` is not declared in"),
        "{warned}"
    );
    let out = daemon.cli_with_input(&["secret", "set", "API_TOKEN"], "x\n");
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
}

#[test]
fn deleting_a_project_deletes_its_environments_first() {
    let (_root, daemon, repo) = project("project-delete");
    set_token(&daemon);
    ok(daemon.cli(&["env", "create", "staging"]));
    ok(daemon.cli(&["env", "clone", "staging", "qa"]));
    // The API alone refuses while environments remain, naming them.
    let (status, answer) = support::api(&daemon, "DELETE", "/v1/projects/hour", Value::Null);
    assert_eq!(status, 409, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("staging") && message.contains("qa"),
        "{answer}"
    );
    let printed = ok(daemon.cli(&["project", "delete", "hour"]));
    assert!(
        printed.contains("`qa` is deleted") && printed.contains("`staging` is deleted"),
        "{printed}"
    );
    assert!(printed.contains("deleted project hour"), "{printed}");
    assert_eq!(
        daemon.json(&["project", "list"])["projects"],
        serde_json::json!([])
    );
    // Nothing of it is left to apply to a project registered again under the same name.
    let secrets = support::api(&daemon, "GET", "/v1/projects/hour/secrets", Value::Null);
    assert_eq!(secrets.0, 404, "{}", secrets.1);
    let spec = repo.join("preview.yaml");
    ok(daemon.cli(&["project", "register", "-f", spec.to_str().expect("utf-8")]));
    assert_eq!(
        daemon.json(&["secret", "list"])["secrets"],
        serde_json::json!([])
    );
    assert_eq!(
        daemon.json(&["vars", "list"])["variables"],
        serde_json::json!([])
    );
    assert_eq!(
        daemon.json(&["deployments", "staging"])["error"]["code"],
        "not_found"
    );
}

#[test]
fn every_command_honours_output_json_and_fails_in_one_shape() {
    let (root, daemon, _repo) = project("json");
    set_token(&daemon);
    let parse = |args: &[&str]| -> Value {
        let mut all = vec!["-o", "json"];
        all.extend_from_slice(args);
        let out = daemon.cli(&all);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        serde_json::from_str(text.trim()).unwrap_or_else(|e| {
            panic!(
                "{args:?} printed no single JSON document ({e}):\n{text}\n{}",
                stderr(&out)
            )
        })
    };
    let ca = root.path().join("ca.pem");
    for args in [
        vec!["env", "create", "staging"],
        vec!["env", "list"],
        vec!["env", "show", "staging"],
        vec!["plan", "staging"],
        vec!["deploy", "staging"],
        vec!["deployments", "staging"],
        vec!["vars", "set", "A=1"],
        vec!["vars", "list"],
        vec!["vars", "show", "staging"],
        vec!["vars", "unset", "A"],
        vec!["secret", "list"],
        vec!["project", "list"],
        vec!["logs", "staging", "web"],
    ] {
        parse(&args);
    }
    // The recording runtime has no CA: the error is JSON too, in the one shape.
    let failed = parse(&["ca", "export", "-f", ca.to_str().expect("utf-8")]);
    assert_eq!(failed["ok"], false, "{failed}");
    // The oldest: the creation, which has steps.
    let history = parse(&["deployments", "staging"]);
    let id = history["deployments"]
        .as_array()
        .and_then(|d| d.last())
        .and_then(|d| d["id"].as_str())
        .expect("id")
        .to_owned();
    let shown = parse(&["deployment", "show", &id]);
    // Durations are whole milliseconds.
    assert!(shown["steps"][0]["duration_ms"].is_u64(), "{shown}");
    parse(&["deployment", "logs", &id]);
    for (args, code) in [
        (vec!["env", "show", "nosuch"], "not_found"),
        (vec!["env", "clone", "staging", "Bad_Name"], "bad_request"),
        (vec!["vars", "set", "nonsense"], "invalid_input"),
    ] {
        let failed = parse(&args);
        assert_eq!(failed["ok"], false, "{args:?}: {failed}");
        assert_eq!(failed["error"]["code"], code, "{args:?}: {failed}");
        assert!(failed["error"]["message"].is_string(), "{args:?}: {failed}");
    }
    // The spec checker fails in the same shape, with each problem's place.
    let bad = root.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "project: p\nservices: {}\nenvironments: {}\nbogus: 1\n",
    )
    .expect("write");
    let failed = parse(&["validate", "-f", bad.to_str().expect("utf-8")]);
    assert_eq!(failed["ok"], false);
    assert_eq!(failed["error"]["code"], "invalid_spec");
    assert!(failed["error"]["problems"][0]["line"].is_u64(), "{failed}");
}
