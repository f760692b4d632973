//! Starting changes and following them: `preview deploy`, `env create|clone|delete` all start one deployment
//! and, unless told not to wait, print its steps as they finish and its outcome.

use std::time::Duration;

use serde_json::{Value, json};

use crate::context::Context;
use crate::exit::Failure;
use crate::output::OutputFormat;

/// A change; `Option<&str>` is the commit, branch or tag to build from.
pub enum Change<'a> {
    Create(&'a str, Option<&'a str>),
    Clone {
        source: &'a str,
        name: &'a str,
        commit: Option<&'a str>,
    },
    Update(&'a str, Option<&'a str>),
    /// The environment, and whether to keep the variables and secrets scoped to it.
    Delete(&'a str, bool),
}

pub async fn start(context: &Context, change: Change<'_>, wait: bool) -> Result<(), Failure> {
    let client = &context.client;
    let answer = match change {
        Change::Create(name, commit) => {
            client
                .post(
                    &context.path("/environments"),
                    json!({ "name": name, "commit": commit }),
                )
                .await?
        }
        Change::Clone {
            source,
            name,
            commit,
        } => {
            client
                .post(
                    &context.path(&format!("/environments/{source}/clone")),
                    json!({ "name": name, "commit": commit }),
                )
                .await?
        }
        Change::Update(name, commit) => {
            client
                .post(
                    &context.path(&format!("/environments/{name}/deploy")),
                    json!({ "commit": commit }),
                )
                .await?
        }
        Change::Delete(name, keep_settings) => {
            let query = if keep_settings {
                "?keep_settings=true"
            } else {
                ""
            };
            client
                .delete(&context.path(&format!("/environments/{name}{query}")))
                .await?
        }
    };
    let deployment = &answer["deployment"];
    let id = deployment["id"].as_str().unwrap_or_default().to_owned();
    if context.output == OutputFormat::Text {
        println!(
            "deployment {id}: {} `{}`, {} steps{}",
            deployment["operation"].as_str().unwrap_or("?"),
            deployment["environment"].as_str().unwrap_or("?"),
            deployment["plan"]["steps"].as_array().map_or(0, Vec::len),
            commit_phrase(&answer["source"])
        );
    }
    print_warnings(&answer["source"]["warnings"]);
    if context.output == OutputFormat::Text {
        print_settings(&answer["settings"]);
    }
    if !wait {
        if context.output == OutputFormat::Json {
            println!("{answer}");
        }
        return Ok(());
    }
    follow(context, &id).await
}

/// Polls the deployment, printing each step once it is applied, failed or undone, until it ends.
pub async fn follow(context: &Context, id: &str) -> Result<(), Failure> {
    let mut reported: Vec<String> = Vec::new();
    let mut spinner = Spinner::new(context.output == OutputFormat::Text);
    loop {
        let shown = context.client.get(&format!("/v1/deployments/{id}")).await?;
        if context.output == OutputFormat::Text {
            for step in shown["steps"].as_array().into_iter().flatten() {
                let state = step["state"].as_str().unwrap_or("");
                let key = format!("{}:{state}", step["index"]);
                if matches!(state, "applied" | "failed" | "undone") && !reported.contains(&key) {
                    reported.push(key);
                    spinner.clear();
                    println!("{}", step_line(step));
                }
            }
            let working: Vec<String> = shown["steps"]
                .as_array()
                .into_iter()
                .flatten()
                // While the deployment runs, a step with an intent and no outcome is under way.
                .filter(|step| step["state"] == "interrupted")
                .map(|step| {
                    format!(
                        "{} {}",
                        step["action"].as_str().unwrap_or(""),
                        step["resource"].as_str().unwrap_or("")
                    )
                })
                .collect();
            spinner.show(&working.join(", "));
        }
        let status = shown["deployment"]["status"].as_str().unwrap_or("");
        if matches!(status, "committed" | "rolled_back" | "failed") {
            spinner.clear();
            return outcome(context, &shown, status);
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// On a terminal, one line on standard error saying what is under way, redrawn in place; nothing otherwise
/// (scripts and logs get the plain step lines only).
struct Spinner {
    enabled: bool,
    frame: usize,
    started: std::time::Instant,
    drawn: bool,
}

impl Spinner {
    fn new(text_output: bool) -> Spinner {
        use std::io::IsTerminal;
        Spinner {
            enabled: text_output && std::io::stderr().is_terminal(),
            frame: 0,
            started: std::time::Instant::now(),
            drawn: false,
        }
    }

    fn show(&mut self, working: &str) {
        if !self.enabled || working.is_empty() {
            return;
        }
        const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
        self.frame = (self.frame + 1) % FRAMES.len();
        eprint!(
            "\r\x1b[2K  {} {working} ({} s)",
            FRAMES[self.frame],
            self.started.elapsed().as_secs()
        );
        self.drawn = true;
    }

    fn clear(&mut self) {
        if self.drawn {
            eprint!("\r\x1b[2K");
            self.drawn = false;
        }
    }
}

/// `, building 1a2b3c4d5e6f "Fix the login form"` for a deployment with a source commit.
pub fn commit_phrase(source: &Value) -> String {
    match source["short"].as_str() {
        Some(short) => format!(", building {short} {:?}", subject(source)),
        None => String::new(),
    }
}

/// A commit's subject as a line shows it: cut to 60 characters.
pub fn subject(source: &Value) -> String {
    let subject = source["subject"].as_str().unwrap_or_default();
    match subject.char_indices().nth(60) {
        Some((cut, _)) => format!("{}…", &subject[..cut]),
        None => subject.to_owned(),
    }
}

/// For a deletion: the variables and secrets set for the environment, and whether they go with it.
fn print_settings(settings: &Value) {
    let names = |key: &str| -> Vec<String> {
        settings[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n.as_str().map(str::to_owned))
            .collect()
    };
    let (variables, secrets) = (names("variables"), names("secrets"));
    if variables.is_empty() && secrets.is_empty() {
        return;
    }
    let listed = [("variables", &variables), ("secrets", &secrets)]
        .iter()
        .filter(|(_, names)| !names.is_empty())
        .map(|(kind, names)| format!("{kind} {}", names.join(", ")))
        .collect::<Vec<_>>()
        .join("; ");
    if let Some(clones) = settings["kept_for"].as_array() {
        let names: Vec<&str> = clones.iter().filter_map(Value::as_str).collect();
        println!(
            "keeping what was set for it ({listed}): its clones ({}) read it too; delete them first to remove it",
            names.join(", ")
        );
    } else if settings["kept"] == true {
        println!(
            "keeping what was set for it ({listed}): a new environment of the same name gets it"
        );
    } else {
        println!(
            "removing what was set for it with it ({listed}); `--keep-settings` keeps it for a new environment of the same name"
        );
    }
}

/// Warnings go to standard error, whatever the output format, so that JSON on standard output stays parseable.
pub fn print_warnings(warnings: &Value) {
    for warning in warnings.as_array().into_iter().flatten() {
        if let Some(text) = warning.as_str() {
            eprintln!("warning: {text}");
        }
    }
}

pub fn step_line(step: &Value) -> String {
    let mark = match step["state"].as_str() {
        Some("applied") => "✓",
        Some("failed") => "✗",
        Some("undone") => "↶",
        Some("interrupted") => "!",
        _ => "·",
    };
    let duration = step["duration_ms"]
        .as_i64()
        .map(|ms| format!(" ({ms} ms)"))
        .unwrap_or_default();
    let error = step["error"]
        .as_str()
        .map(|e| format!(" — {e}"))
        .unwrap_or_default();
    format!(
        "  {mark} {:>2}. {} {}{duration}{error}",
        step["index"],
        step["action"].as_str().unwrap_or(""),
        step["resource"].as_str().unwrap_or(""),
    )
}

fn outcome(context: &Context, shown: &Value, status: &str) -> Result<(), Failure> {
    let deployment = &shown["deployment"];
    let reason = deployment["reason"].as_str().unwrap_or("");
    match context.output {
        OutputFormat::Json => println!("{shown}"),
        OutputFormat::Text => match status {
            "committed" if deployment["operation"] == "delete" => {
                println!(
                    "committed: `{}` is deleted",
                    deployment["environment"].as_str().unwrap_or("?")
                )
            }
            "committed" => {
                println!(
                    "committed: `{}` is up to date",
                    deployment["environment"].as_str().unwrap_or("?")
                );
                let urls = shown["urls"].as_array();
                for url in urls.into_iter().flatten() {
                    println!("  {}", url.as_str().unwrap_or_default());
                }
                if urls.is_some_and(Vec::is_empty) {
                    println!(
                        "  no public URLs: give an app `public: true` in preview.yaml to route it"
                    );
                }
            }
            "rolled_back" => println!("rolled back: {reason}; the environment is as it was"),
            _ => println!("failed: {reason}"),
        },
    }
    if status == "committed" {
        Ok(())
    } else {
        Err(Failure::reported())
    }
}

pub async fn cancel(context: &Context, environment: &str) -> Result<(), Failure> {
    let answer = context
        .client
        .post(
            &context.path(&format!("/environments/{environment}/cancel")),
            json!({}),
        )
        .await?;
    let id = answer["cancelling"].as_str().unwrap_or_default().to_owned();
    if context.output == OutputFormat::Text {
        println!("cancelling deployment {id}; rolling back");
    }
    follow(context, &id).await.or_else(|failure| match failure {
        // A cancelled deployment ends rolled back: that is what was asked for.
        Failure::Invalid { printed: true, .. } => Ok(()),
        other => Err(other),
    })
}
