//! `preview vars …` and `preview secret …`. Secret values come from standard input or a file, never from an
//! argument (arguments show in process listings and shell history), and are never printed back.

use std::io::{IsTerminal, Read};
use std::path::Path;

use serde_json::json;

use crate::context::Context;
use crate::exit::Failure;
use crate::output::OutputFormat;
use crate::time::format_utc;

fn text(value: &serde_json::Value) -> &str {
    value.as_str().unwrap_or("")
}

pub async fn set(context: &Context, assignment: &str, scope: &str) -> Result<(), Failure> {
    let (name, value) = assignment
        .split_once('=')
        .ok_or_else(|| Failure::invalid(format!("`{assignment}` is not NAME=VALUE")))?;
    let answer = context
        .client
        .post(
            &context.path("/variables"),
            json!({ "scope": scope, "name": name, "value": value }),
        )
        .await?;
    match context.output {
        OutputFormat::Json => println!("{answer}"),
        OutputFormat::Text => println!("set {name} at {}", text(&answer["variable"]["scope"])),
    }
    Ok(())
}

pub async fn unset(
    context: &Context,
    name: &str,
    scope: &str,
    secret: bool,
) -> Result<(), Failure> {
    let path = if secret {
        "/secrets/unset"
    } else {
        "/variables/unset"
    };
    let answer = context
        .client
        .post(&context.path(path), json!({ "scope": scope, "name": name }))
        .await?;
    match context.output {
        OutputFormat::Json => println!("{answer}"),
        OutputFormat::Text => println!("unset {name} at {}", text(&answer["unset"]["scope"])),
    }
    Ok(())
}

pub async fn list(context: &Context) -> Result<(), Failure> {
    let answer = context.client.get(&context.path("/variables")).await?;
    if context.output == OutputFormat::Json {
        println!("{answer}");
        return Ok(());
    }
    for variable in answer["variables"].as_array().into_iter().flatten() {
        println!(
            "{:<28} {:<24} {}",
            text(&variable["scope"]),
            text(&variable["name"]),
            text(&variable["value"])
        );
    }
    Ok(())
}

pub async fn show(
    context: &Context,
    environment: &str,
    service: Option<&str>,
) -> Result<(), Failure> {
    let query = service.map(|s| format!("?service={s}")).unwrap_or_default();
    let answer = context
        .client
        .get(&context.path(&format!("/environments/{environment}/variables{query}")))
        .await?;
    if context.output == OutputFormat::Json {
        println!("{answer}");
        return Ok(());
    }
    for service in answer["services"].as_array().into_iter().flatten() {
        println!("{}", text(&service["service"]));
        for variable in service["variables"].as_array().into_iter().flatten() {
            println!(
                "  {:<24} = {:<40} ← {}",
                text(&variable["name"]),
                text(&variable["value"]),
                text(&variable["source"])
            );
            for shadowed in variable["shadowed"].as_array().into_iter().flatten() {
                println!(
                    "  {:<24}   shadows {} ({})",
                    "",
                    text(&shadowed["value"]),
                    text(&shadowed["source"])
                );
            }
            if let Some(note) = variable["note"].as_str() {
                println!("  {:<24}   note: {note}", "");
            }
        }
    }
    Ok(())
}

/// Reads a secret value from `file` or standard input; one trailing newline is dropped.
fn read_value(name: &str, file: Option<&Path>) -> Result<String, Failure> {
    let mut value = String::new();
    match file {
        Some(file) => {
            value = std::fs::read_to_string(file)
                .map_err(|e| Failure::invalid(format!("cannot read {}: {e}", file.display())))?;
        }
        None => {
            if std::io::stdin().is_terminal() {
                eprintln!(
                    "value of {name} (end with Ctrl-D; it is not echoed back anywhere else):"
                );
            }
            std::io::stdin()
                .read_to_string(&mut value)
                .map_err(|e| Failure::invalid(format!("cannot read standard input: {e}")))?;
        }
    }
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    if value.is_empty() {
        return Err(Failure::invalid(format!(
            "no value for {name}: pipe it in (`… | preview secret set {name}`) or pass --from-file"
        )));
    }
    Ok(value)
}

pub async fn set_secret(
    context: &Context,
    name: &str,
    scope: &str,
    file: Option<&Path>,
    previews: &str,
) -> Result<(), Failure> {
    // Wiped from memory when dropped.
    let value = preview_secrets::Secret::new(read_value(name, file)?);
    let body =
        json!({ "scope": scope, "name": name, "value": value.expose(), "previews": previews });
    let answer = context.client.post(&context.path("/secrets"), body).await?;
    match context.output {
        OutputFormat::Json => println!("{answer}"),
        OutputFormat::Text => println!(
            "set secret {name} at {} (fingerprint {})",
            text(&answer["secret"]["scope"]),
            text(&answer["secret"]["fingerprint"])
        ),
    }
    crate::commands::deploy::print_warnings(&answer["warnings"]);
    Ok(())
}

pub async fn list_secrets(context: &Context) -> Result<(), Failure> {
    let answer = context.client.get(&context.path("/secrets")).await?;
    if context.output == OutputFormat::Json {
        println!("{answer}");
        return Ok(());
    }
    for secret in answer["secrets"].as_array().into_iter().flatten() {
        println!(
            "{:<28} {:<24} {}  {:<10} updated {}",
            text(&secret["scope"]),
            text(&secret["name"]),
            text(&secret["fingerprint"]),
            text(&secret["previews"]),
            format_utc(secret["updated_at"].as_i64().unwrap_or(0))
        );
    }
    Ok(())
}

pub async fn rotate_key(context: &Context) -> Result<(), Failure> {
    let answer = context
        .client
        .post("/v1/secrets/rotate-key", json!({}))
        .await?;
    match context.output {
        OutputFormat::Json => println!("{answer}"),
        OutputFormat::Text => println!(
            "re-encrypted {} secrets under a new master key",
            answer["rotated"]
        ),
    }
    Ok(())
}
