//! `preview previews list|sync|approve`: the project's pull requests with their previews, a resync with the forge
//! now, and a maintainer's approval of a fork's head commit.

use serde_json::{Value, json};

use crate::context::Context;
use crate::exit::Failure;
use crate::output::OutputFormat;

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// `3m`, `2h`, `5d`: how long ago `since_ms` was, by the daemon's clock `now_ms`.
fn age(now_ms: i64, since_ms: i64) -> String {
    let seconds = (now_ms - since_ms).max(0) / 1000;
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn state_of(preview: &Value) -> String {
    if let Some(position) = preview["queue_position"].as_u64() {
        return format!("queued #{position}");
    }
    let deploying = preview["last_deployment"]["status"]
        .as_str()
        .is_some_and(|s| s == "running" || s == "rolling_back");
    match (
        preview["environment"].is_string(),
        preview["wanted_commit"].as_str(),
        preview["commit"].as_str(),
    ) {
        _ if deploying => "deploying".to_owned(),
        (true, Some(wanted), Some(commit)) if wanted == commit => "live".to_owned(),
        (true, Some(_), _) => "outdated".to_owned(),
        (true, None, _) => "removing".to_owned(),
        (false, Some(_), _) => "pending".to_owned(),
        (false, None, _) if preview["open"].as_bool() == Some(false) => "closed".to_owned(),
        (false, None, _) => "none".to_owned(),
    }
}

pub async fn list(context: &Context) -> Result<(), Failure> {
    let answer = context.client.get(&context.path("/previews")).await?;
    if context.output == OutputFormat::Json {
        println!("{answer}");
        return Ok(());
    }
    let previews = answer["previews"].as_array().cloned().unwrap_or_default();
    if previews.is_empty() {
        println!("no pull requests yet");
        return Ok(());
    }
    let now = answer["now"].as_i64().unwrap_or_default();
    println!(
        "{:<6} {:<12} {:<13} {:<5} {:<6} {:<28} {:<40} WHY",
        "PR", "STATE", "COMMIT", "AGE", "IDLE", "BRANCH", "URLS"
    );
    for preview in &previews {
        let commit = preview["commit"]
            .as_str()
            .or(preview["head"].as_str())
            .map(short)
            .unwrap_or("-");
        let made = preview["created_at"]
            .as_i64()
            .filter(|_| preview["environment"].is_string())
            .map_or("-".to_owned(), |at| age(now, at));
        // How long since its last request (or since it was made); `asleep` once it sleeps.
        let idle = if preview["sleeping"] == true {
            "asleep".to_owned()
        } else {
            preview["last_request_at"]
                .as_i64()
                .or(preview["created_at"].as_i64())
                .filter(|_| preview["environment"].is_string())
                .map_or("-".to_owned(), |at| age(now, at))
        };
        let urls: Vec<&str> = preview["urls"]
            .as_array()
            .map(|u| u.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let why = match preview["outcome"].as_str() {
            Some(outcome) if !outcome.is_empty() => outcome,
            _ => preview["decision"].as_str().unwrap_or_default(),
        };
        println!(
            "{:<6} {:<12} {:<13} {:<5} {:<6} {:<28} {:<40} {}",
            format!("#{}", preview["number"]),
            state_of(preview),
            commit,
            made,
            idle,
            preview["branch"].as_str().unwrap_or_default(),
            if urls.is_empty() {
                "-".to_owned()
            } else {
                urls.join(" ")
            },
            why
        );
    }
    Ok(())
}

pub async fn sync(context: &Context) -> Result<(), Failure> {
    let answer = context
        .client
        .post(&context.path("/previews/sync"), json!({}))
        .await?;
    match context.output {
        OutputFormat::Json => println!("{answer}"),
        OutputFormat::Text => println!(
            "asking the forge for the open pull requests of `{}` now; `preview previews list` shows what follows",
            answer["project"].as_str().unwrap_or_default()
        ),
    }
    Ok(())
}

pub async fn approve(context: &Context, number: &str, commit: &str) -> Result<(), Failure> {
    let number = number.trim_start_matches('#');
    let answer = context
        .client
        .post(
            &context.path(&format!("/previews/{number}/approve")),
            json!({ "commit": commit }),
        )
        .await?;
    match context.output {
        OutputFormat::Json => println!("{answer}"),
        OutputFormat::Text => println!(
            "approved pull request #{number} at {}; a later push needs a new approval",
            answer["approved_head"]
                .as_str()
                .map(short)
                .unwrap_or_default()
        ),
    }
    Ok(())
}
