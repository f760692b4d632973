//! `preview project register|list`.

use std::path::Path;

use serde_json::json;

use crate::client::Client;
use crate::exit::Failure;
use crate::output::OutputFormat;

pub async fn register(client: &Client, file: &Path, output: OutputFormat) -> Result<(), Failure> {
    let source = std::fs::read_to_string(file)
        .map_err(|e| Failure::invalid(format!("cannot read {}: {e}", file.display())))?;
    // Checked here first, so that errors come with positions even before reaching the daemon.
    if let Err(diagnostics) = preview_spec::parse_spec(&file.display().to_string(), &source) {
        return Err(Failure::invalid(diagnostics.to_string()));
    }
    // The daemon builds from the repository the spec lives in: it needs the spec's directory on this machine.
    let directory = std::fs::canonicalize(file)
        .ok()
        .and_then(|path| path.parent().map(|p| p.display().to_string()));
    let answer = client
        .post(
            "/v1/projects",
            json!({ "file": file.display().to_string(), "source": source, "directory": directory }),
        )
        .await?;
    match output {
        OutputFormat::Json => println!("{answer}"),
        OutputFormat::Text => {
            let environments: Vec<&str> = answer["environments"]
                .as_array()
                .map(|e| e.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            println!(
                "registered project {} ({} services; environments {})",
                answer["project"]["name"].as_str().unwrap_or("?"),
                answer["services"],
                environments.join(", ")
            );
        }
    }
    Ok(())
}

pub async fn list(client: &Client, output: OutputFormat) -> Result<(), Failure> {
    let answer = client.get("/v1/projects").await?;
    match output {
        OutputFormat::Json => println!("{answer}"),
        OutputFormat::Text => {
            for project in answer["projects"].as_array().into_iter().flatten() {
                println!(
                    "{:<20} {}",
                    project["name"].as_str().unwrap_or("?"),
                    project["file"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(())
}

pub async fn show(client: &Client, name: &str, output: OutputFormat) -> Result<(), Failure> {
    let answer = client.get(&format!("/v1/projects/{name}")).await?;
    match output {
        OutputFormat::Json => println!("{answer}"),
        OutputFormat::Text => {
            let project = &answer["project"];
            println!("project    {}", project["name"].as_str().unwrap_or("?"));
            println!("spec       {}", project["file"].as_str().unwrap_or(""));
            if let Some(directory) = project["directory"].as_str() {
                println!("directory  {directory}");
            }
            let forge = &answer["forge"];
            if forge.is_null() {
                println!(
                    "webhooks   none: its previews come from no forge (`previews.forge` in the spec)"
                );
            } else {
                println!(
                    "forge      {} {}",
                    forge["kind"].as_str().unwrap_or("?"),
                    forge["repository"].as_str().unwrap_or("?")
                );
                println!(
                    "webhooks   {} (secret: project secret `{}`)",
                    client.url(forge["webhook_path"].as_str().unwrap_or_default()),
                    forge["webhook_secret"].as_str().unwrap_or("none named")
                );
            }
        }
    }
    Ok(())
}

/// Deletes every environment of the project, each in a deployment of its own (followed like `env delete`), then
/// the project itself with its variables, secrets and history.
pub async fn delete(context: &crate::context::Context) -> Result<(), Failure> {
    let listed = context.client.get(&context.path("/environments")).await?;
    let names: Vec<String> = listed["environments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["created_at"].is_number())
        .filter_map(|e| e["name"].as_str().map(str::to_owned))
        .collect();
    for name in &names {
        crate::commands::deploy::start(
            context,
            crate::commands::deploy::Change::Delete(name, false),
            true,
        )
        .await?;
    }
    let answer = context
        .client
        .delete(&format!("/v1/projects/{}", context.project))
        .await?;
    match context.output {
        OutputFormat::Json => println!("{answer}"),
        OutputFormat::Text => println!(
            "deleted project {} ({} environments, its variables, secrets and history)",
            context.project,
            names.len()
        ),
    }
    Ok(())
}
