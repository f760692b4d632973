//! The `preview` binary as a user runs it: exit codes, text and JSON output, `init` then `validate`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/shop/preview.yaml"
);

fn preview(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_preview"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the preview binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A fresh directory of this test's own, removed afterwards.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("preview-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn validate_example_prints_summary() {
    let out = preview(&["validate", "-f", EXAMPLE], Path::new("."));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    for expected in [
        ": valid",
        "project shop",
        "storefront     app       public",
        "db             database  postgres 15, managed, data: seed from db/seed.sql",
        "production     storefront-production.shop.localhost, shop.example.test, *.shop.example.test",
        "previews: clones of `staging` for pull requests on github example/shop",
        "pr-42.preview.example.test",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn validate_example_as_json() {
    let out = preview(
        &["validate", "-f", EXAMPLE, "--output", "json"],
        Path::new("."),
    );
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(json["valid"], true);
    assert_eq!(json["project"], "shop");
    assert_eq!(json["services"].as_array().map(Vec::len), Some(5));
    assert_eq!(json["previews"]["blueprint"], "staging");
    assert_eq!(json["previews"]["ttl_ms"], 72 * 3600 * 1000);
}

#[test]
fn invalid_spec_exits_1_with_every_error() {
    let scratch = Scratch::new("invalid");
    std::fs::write(
        scratch.0.join("preview.yaml"),
        "project: p\nisolation: none\nservices:\n  web:\n    run: x\n    replica: 2\nenvironments: {staging: {}}\n",
    )
    .expect("write spec");
    let out = preview(&["validate"], &scratch.0);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "preview.yaml:2:12 isolation: `none` is not an isolation; use `logical` or `physical`\n\
         preview.yaml:6:5 services.web.replica: unknown key `replica` in service `web` (an app; add `type: database` or `type: job` for other kinds); did you mean `replicas`?\n\
         preview.yaml: 2 problems\n"
    );

    let out = preview(&["validate", "-o", "json"], &scratch.0);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(json["valid"], false);
    assert_eq!(json["ok"], false);
    assert_eq!(json["error"]["code"], "invalid_spec");
    let problem = &json["error"]["problems"][1];
    assert_eq!(problem["line"], 6);
    assert_eq!(problem["column"], 5);
    assert_eq!(problem["path"], "services.web.replica");
}

#[test]
fn init_then_validate_in_an_empty_directory() {
    let scratch = Scratch::new("init");
    let dir = scratch.0.join("My Shop");
    let out = preview(&["init", dir.to_str().expect("utf-8 path")], &scratch.0);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let written =
        std::fs::read_to_string(dir.join("preview.yaml")).expect("init wrote preview.yaml");
    assert!(
        written.starts_with("# preview.yaml"),
        "the starter is commented"
    );
    assert!(
        written.contains("project: my-shop"),
        "the project is named after the directory"
    );

    let out = preview(&["validate"], &dir);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("project my-shop"));
}

#[test]
fn init_refuses_to_overwrite() {
    let scratch = Scratch::new("init-twice");
    std::fs::write(scratch.0.join("preview.yaml"), "project: mine\n").expect("write spec");
    let out = preview(&["init"], &scratch.0);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    let kept = std::fs::read_to_string(scratch.0.join("preview.yaml")).expect("read spec");
    assert_eq!(kept, "project: mine\n", "nothing already stored is lost");
}

#[test]
fn missing_file_and_bad_arguments_exit_1() {
    let scratch = Scratch::new("missing");
    let out = preview(&["validate"], &scratch.0);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot read preview.yaml"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("preview init"), "{}", stderr(&out));

    let out = preview(&["validate", "--output", "xml"], &scratch.0);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("invalid value 'xml'"),
        "{}",
        stderr(&out)
    );

    let out = preview(&["valdate"], &scratch.0);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("similar subcommand exists: 'validate'"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_certificate_issuer_flags_are_refused_before_the_daemon_starts() {
    let scratch = Scratch::new("issuer");
    let data = scratch.0.join("data");
    let data = data.to_str().expect("utf-8 path");
    let root = scratch.0.join("not-a-certificate.pem");
    std::fs::write(&root, "hello").expect("write");
    let root = root.to_str().expect("utf-8 path");
    for (args, expected) in [
        (
            vec!["--issuer", "letsencrypt"],
            "--issuer: `letsencrypt` is not an issuer; use `local` or `acme`",
        ),
        (
            vec!["--acme-email", "ops@example.com"],
            "--acme-email only apply with --issuer acme",
        ),
        (
            vec![
                "--issuer",
                "acme",
                "--acme-directory",
                "http://ca.example/dir",
            ],
            "--acme-directory: `http://ca.example/dir` is not an https:// URL",
        ),
        (
            vec!["--issuer", "acme", "--acme-email", "ops"],
            "--acme-email: `ops` is not an email address",
        ),
        (
            vec!["--issuer", "acme", "--acme-root", root],
            "holds no PEM certificate",
        ),
        (
            vec!["--issuer", "acme", "--acme-root", "/nonexistent/root.pem"],
            "--acme-root: cannot read /nonexistent/root.pem",
        ),
    ] {
        let mut all = vec!["serve", "--data-dir", data];
        all.extend(args);
        let out = preview(&all, &scratch.0);
        assert_eq!(out.status.code(), Some(1), "{all:?}");
        assert!(stderr(&out).contains(expected), "{all:?}: {}", stderr(&out));
    }
    assert!(
        !Path::new(data).exists(),
        "nothing is written before the flags are checked"
    );
}

#[test]
fn every_command_explains_itself() {
    for (args, expected) in [
        (
            vec!["--help"],
            "Full-stack preview environments for every pull request",
        ),
        (
            vec!["init", "--help"],
            "Write a commented starter `preview.yaml`",
        ),
        (
            vec!["validate", "--help"],
            "Check a spec and print a summary",
        ),
    ] {
        let out = preview(&args, Path::new("."));
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(
            stdout(&out).contains(expected),
            "{args:?}: {}",
            stdout(&out)
        );
    }
}

#[test]
fn missing_seed_file_is_reported_at_its_key() {
    let scratch = Scratch::new("seed");
    std::fs::write(
        scratch.0.join("preview.yaml"),
        "project: p\nservices:\n  db:\n    type: database\n    engine: postgres\n    version: 16\n    clone: { policy: seed, file: db/seed.sql }\nenvironments: {staging: {}}\n",
    )
    .expect("write spec");
    let out = preview(&["validate"], &scratch.0);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with(
            "preview.yaml:7:34 services.db.clone.file: the file `db/seed.sql` does not exist"
        ),
        "{}",
        stderr(&out)
    );

    std::fs::create_dir_all(scratch.0.join("db")).expect("mkdir");
    std::fs::write(scratch.0.join("db/seed.sql"), "SELECT 1;\n").expect("write seed");
    let out = preview(&["validate"], &scratch.0);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// `script` run by `shell` with `args` (the script's path appended); its standard output, or why it failed.
fn shell(shell: &str, args: &[&str], script: &Path) -> String {
    let out = Command::new(shell)
        .args(args)
        .arg(script)
        .output()
        .unwrap_or_else(|e| panic!("{shell} runs (scripts/test installs it): {e}"));
    assert!(
        out.status.success(),
        "{shell} {args:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

#[test]
fn completions_complete_commands_in_bash_zsh_and_fish() {
    let dir = Scratch::new("completions");
    let script = |name: &str| {
        let out = preview(&["completions", name], &dir.0);
        assert!(out.status.success(), "{}", stderr(&out));
        let path = dir.0.join(format!("preview.{name}"));
        std::fs::write(&path, &out.stdout).expect("script");
        path
    };
    // bash: completing `preview clu` and `preview env cr` as bash would.
    let bash = script("bash");
    let complete = |words: &str| {
        let driver = dir.0.join("complete.sh");
        std::fs::write(
            &driver,
            format!(
                "source {}\nCOMP_WORDS=({words})\nCOMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))\nCOMP_LINE=\"{words}\"\nCOMP_POINT=${{#COMP_LINE}}\n_preview preview \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
                bash.display()
            ),
        )
        .expect("driver");
        shell("bash", &[], &driver)
    };
    assert_eq!(complete("preview clu").trim(), "cluster");
    assert!(
        complete("preview env cr").lines().any(|l| l == "create"),
        "{}",
        complete("preview env cr")
    );
    assert_eq!(complete("preview completions f").trim(), "fish");
    // zsh: a well-formed completion function for `preview`.
    let zsh = script("zsh");
    shell("zsh", &["-n"], &zsh);
    let text = std::fs::read_to_string(&zsh).expect("zsh script");
    assert!(text.starts_with("#compdef preview"), "{text:.200}");
    // fish: what fish itself offers after loading the script.
    let fish = script("fish");
    shell("fish", &["--no-execute"], &fish);
    let driver = dir.0.join("complete.fish");
    std::fs::write(
        &driver,
        format!(
            "source {}\ncomplete --do-complete 'preview clu'\ncomplete --do-complete 'preview env cr'\n",
            fish.display()
        ),
    )
    .expect("driver");
    let offered = shell("fish", &[], &driver);
    assert!(
        offered.lines().any(|l| l.starts_with("cluster")),
        "{offered}"
    );
    assert!(
        offered.lines().any(|l| l.starts_with("create")),
        "{offered}"
    );
    // A shell it does not know is a bad argument.
    let out = preview(&["completions", "tcsh"], &dir.0);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn the_manual_is_generated_from_the_commands() {
    let dir = Scratch::new("man");
    let out = preview(&["man"], &dir.0);
    assert!(out.status.success(), "{}", stderr(&out));
    let page = stdout(&out);
    assert!(page.contains(".TH preview 1"), "{page:.300}");
    // Read by `man` as a person would (no warnings about the roff).
    let path = dir.0.join("preview.1");
    std::fs::write(&path, &page).expect("page");
    let rendered = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(&path)
        .env("MANWIDTH", "100")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .output()
        .expect("man runs");
    let text = stdout(&rendered);
    assert!(rendered.status.success(), "{}", stderr(&rendered));
    assert!(stderr(&rendered).trim().is_empty(), "{}", stderr(&rendered));
    for expected in ["preview", "SUBCOMMANDS", "completions", "--output"] {
        assert!(text.contains(expected), "{expected} in {text:.2000}");
    }
    // Every page into a directory: one per command and subcommand.
    let pages = dir.0.join("pages");
    let out = preview(&["man", "-d", pages.to_str().expect("path")], &dir.0);
    assert!(out.status.success(), "{}", stderr(&out));
    for name in [
        "preview.1",
        "preview-env.1",
        "preview-env-create.1",
        "preview-cluster-check.1",
    ] {
        let text =
            std::fs::read_to_string(pages.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(text.contains(".TH"), "{name}");
    }
}
