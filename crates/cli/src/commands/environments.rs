//! `preview env list|show`, `preview plan`, `preview deployments`, `preview deployment show|logs|abandon`.

use crate::commands::deploy::{print_warnings, step_line};
use crate::context::Context;
use crate::exit::Failure;
use crate::output::OutputFormat;
use crate::time::format_utc;

fn text(value: &serde_json::Value) -> &str {
    value.as_str().unwrap_or("")
}

pub async fn list(context: &Context) -> Result<(), Failure> {
    let answer = context.client.get(&context.path("/environments")).await?;
    if context.output == OutputFormat::Json {
        println!("{answer}");
        return Ok(());
    }
    let environments = answer["environments"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if environments.is_empty() {
        println!(
            "no environments in `{}` yet; create one with `preview env create NAME`",
            context.project
        );
    }
    for environment in environments {
        let last = &environment["last_deployment"];
        println!(
            "{:<16} {:<18} {:<12} last: {} {} ({}){}{}",
            text(&environment["name"]),
            environment["based_on"]
                .as_str()
                .map(|b| format!("clone of {b}"))
                .unwrap_or_default(),
            short(&environment["commit"]),
            text(&last["operation"]),
            text(&last["id"]),
            text(&last["status"]),
            if environment["sleeping"] == true {
                "  sleeping"
            } else {
                ""
            },
            if environment["attention"].is_string() {
                "  NEEDS ATTENTION (`preview env show` says why)"
            } else {
                ""
            },
        );
    }
    Ok(())
}

pub async fn show(context: &Context, name: &str) -> Result<(), Failure> {
    let answer = context
        .client
        .get(&context.path(&format!("/environments/{name}")))
        .await?;
    if context.output == OutputFormat::Json {
        println!("{answer}");
        return Ok(());
    }
    let environment = &answer["environment"];
    println!(
        "environment {name} of {}{}, created {}",
        context.project,
        environment["based_on"]
            .as_str()
            .map(|b| format!(" (clone of {b})"))
            .unwrap_or_default(),
        format_utc(environment["created_at"].as_i64().unwrap_or(0))
    );
    if let Some(commit) = answer["commit"].as_str() {
        println!(
            "runs commit {commit}{}",
            environment["follows"]
                .as_str()
                .map(|f| format!(" (follows `{f}`)"))
                .unwrap_or_default()
        );
    }
    if answer["sleeping"] == true {
        println!("sleeping: nobody used it for a while; its next request wakes it");
    }
    if let Some(at) = answer["last_request_at"].as_i64() {
        println!("last request {}", format_utc(at));
    }
    if let Some(note) = answer["attention"].as_str() {
        println!("\nNEEDS ATTENTION: {note}");
    }
    println!("\nresources");
    for resource in answer["resources"].as_array().into_iter().flatten() {
        println!(
            "  {:<24} {}",
            text(&resource["id"]),
            &text(&resource["hash"])[..12.min(text(&resource["hash"]).len())]
        );
    }
    let services = answer["services"].as_array().cloned().unwrap_or_default();
    if !services.is_empty() {
        println!("\nservices");
        for service in &services {
            println!(
                "  {:<20} {:<10} pid {:<8} {:<16} restarts {}{}",
                text(&service["service"]),
                text(&service["state"]),
                service["pid"]
                    .as_u64()
                    .map_or("-".to_owned(), |p| p.to_string()),
                text(&service["address"]),
                service["restarts"].as_u64().unwrap_or(0),
                service["last_exit"]
                    .as_str()
                    .map(|e| format!(" (last: {e})"))
                    .unwrap_or_default()
            );
        }
    }
    let isolation = answer["isolation"].as_array().cloned().unwrap_or_default();
    if !isolation.is_empty() {
        println!("\nisolation");
        for protection in &isolation {
            println!(
                "  {:<8} {:<4} {}",
                text(&protection["name"]),
                if protection["in_effect"] == true {
                    "on"
                } else {
                    "OFF"
                },
                text(&protection["detail"])
            );
        }
    }
    let urls = answer["urls"].as_array().cloned().unwrap_or_default();
    if !urls.is_empty() {
        println!("\nurls");
        for url in &urls {
            println!("  {}", text(url));
        }
    }
    println!("\nrecent deployments");
    for deployment in answer["deployments"].as_array().into_iter().flatten() {
        println!(
            "  {} {:<8} {:<12} {:<12} {}",
            text(&deployment["id"]),
            text(&deployment["operation"]),
            text(&deployment["status"]),
            short(&deployment["commit"]),
            text(&deployment["reason"])
        );
    }
    Ok(())
}

pub async fn plan(context: &Context, name: &str, commit: Option<&str>) -> Result<(), Failure> {
    let query = match commit {
        Some(reference) => format!("?commit={}", percent_encode(reference)),
        None => String::new(),
    };
    let answer = context
        .client
        .get(&context.path(&format!("/environments/{name}/plan{query}")))
        .await?;
    match context.output {
        OutputFormat::Json => println!("{answer}"),
        OutputFormat::Text => {
            if let Some(short) = answer["source"]["short"].as_str() {
                println!(
                    "at commit {short} {:?}",
                    crate::commands::deploy::subject(&answer["source"])
                );
            }
            print!("{}", text(&answer["text"]));
        }
    }
    print_warnings(&answer["warnings"]);
    Ok(())
}

/// The first line of every file `render -d` writes: the files it may replace.
const RENDERED: &str = "# rendered by `preview render`; written again by it\n";

pub async fn render(
    context: &Context,
    name: &str,
    commit: Option<&str>,
    output_dir: Option<&std::path::Path>,
) -> Result<(), Failure> {
    let query = match commit {
        Some(reference) => format!("?commit={}", percent_encode(reference)),
        None => String::new(),
    };
    let answer = context
        .client
        .get(&context.path(&format!("/environments/{name}/manifests{query}")))
        .await?;
    let Some(dir) = output_dir else {
        match context.output {
            OutputFormat::Json => println!("{answer}"),
            OutputFormat::Text => print!("{}", text(&answer["yaml"])),
        }
        return Ok(());
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure::invalid(format!("cannot create {}: {e}", dir.display())))?;
    // The files of an earlier render go: an object no longer rendered must not stay behind in a repository.
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let rendered = name.ends_with(".yaml")
            && std::fs::read_to_string(entry.path()).is_ok_and(|text| text.starts_with(RENDERED));
        if rendered {
            std::fs::remove_file(entry.path()).map_err(|e| {
                Failure::invalid(format!("cannot remove {}: {e}", entry.path().display()))
            })?;
        }
    }
    let objects = answer["objects"].as_array().cloned().unwrap_or_default();
    for (index, object) in objects.iter().enumerate() {
        let file = dir.join(format!(
            "{:02}-{}-{}.yaml",
            index + 1,
            text(&object["kind"]).to_ascii_lowercase(),
            text(&object["name"])
        ));
        std::fs::write(&file, format!("{RENDERED}{}", text(&object["yaml"])))
            .map_err(|e| Failure::invalid(format!("cannot write {}: {e}", file.display())))?;
    }
    println!("{} objects written to {}", objects.len(), dir.display());
    Ok(())
}

/// A reference as a query parameter value: everything but unreserved characters percent-encoded.
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The first 12 characters of a commit id, or `-`.
fn short(commit: &serde_json::Value) -> String {
    commit
        .as_str()
        .map_or("-".to_owned(), |c| c.chars().take(12).collect())
}

pub async fn deployments(context: &Context, name: &str) -> Result<(), Failure> {
    let answer = context
        .client
        .get(&context.path(&format!("/environments/{name}/deployments")))
        .await?;
    if context.output == OutputFormat::Json {
        println!("{answer}");
        return Ok(());
    }
    for deployment in answer["deployments"].as_array().into_iter().flatten() {
        println!(
            "{}  {}  {:<8} {:<12} {:<12} {:>3} steps  {}",
            text(&deployment["id"]),
            format_utc(deployment["created_at"].as_i64().unwrap_or(0)),
            text(&deployment["operation"]),
            text(&deployment["status"]),
            short(&deployment["commit"]),
            deployment["steps"],
            text(&deployment["reason"])
        );
    }
    Ok(())
}

pub async fn deployment_show(context: &Context, id: &str) -> Result<(), Failure> {
    let answer = context.client.get(&format!("/v1/deployments/{id}")).await?;
    if context.output == OutputFormat::Json {
        println!("{answer}");
        return Ok(());
    }
    let deployment = &answer["deployment"];
    println!(
        "deployment {id}: {} `{}` — {}",
        text(&deployment["operation"]),
        text(&deployment["environment"]),
        text(&deployment["status"])
    );
    println!(
        "started  {}",
        format_utc(deployment["created_at"].as_i64().unwrap_or(0))
    );
    if let Some(finished) = deployment["finished_at"].as_i64() {
        println!("finished {}", format_utc(finished));
    }
    if let Some(reason) = deployment["reason"].as_str() {
        println!("reason   {reason}");
    }
    if let Some(error) = deployment["last_error"].as_str() {
        println!(
            "tried    {} time(s) to finish it; last error: {error}",
            deployment["attempts"].as_i64().unwrap_or(0)
        );
        if let Some(at) = deployment["retry_at"].as_i64() {
            println!(
                "retry    after {} (or give up: `preview deployment abandon {id}`)",
                format_utc(at)
            );
        }
    }
    if let Some(point) = deployment["point_of_no_return"].as_i64() {
        println!("point of no return before step {point}");
    }
    for step in answer["steps"].as_array().into_iter().flatten() {
        println!("{}", step_line(step));
    }
    Ok(())
}

pub async fn deployment_logs(context: &Context, id: &str) -> Result<(), Failure> {
    let answer = context
        .client
        .get(&format!("/v1/deployments/{id}/logs"))
        .await?;
    if context.output == OutputFormat::Json {
        println!("{answer}");
        return Ok(());
    }
    for entry in answer["entries"].as_array().into_iter().flatten() {
        println!(
            "{}  step {:>2}  {:<10} {:<6} {}",
            format_utc(entry["at"].as_i64().unwrap_or(0)),
            entry["step"].as_i64().unwrap_or(0) + 1,
            text(&entry["phase"]),
            text(&entry["event"]),
            text(&entry["message"])
        );
    }
    Ok(())
}

pub async fn deployment_abandon(context: &Context, id: &str) -> Result<(), Failure> {
    let answer = context
        .client
        .post(
            &format!("/v1/deployments/{id}/abandon"),
            serde_json::json!({}),
        )
        .await?;
    if context.output == OutputFormat::Json {
        println!("{answer}");
        return Ok(());
    }
    println!(
        "abandoned deployment {id}: `{}` needs attention",
        text(&answer["deployment"]["environment"])
    );
    if let Some(note) = answer["attention"]["note"].as_str() {
        println!("{note}");
    }
    Ok(())
}

/// `preview url ENV [SERVICE]`: the URL of a public service of the environment.
pub async fn url(context: &Context, name: &str, service: Option<&str>) -> Result<(), Failure> {
    let answer = context
        .client
        .get(&context.path(&format!("/environments/{name}")))
        .await?;
    let urls: Vec<(String, String)> = answer["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            Some((
                r["service"].as_str()?.to_owned(),
                r["url"].as_str()?.to_owned(),
            ))
        })
        .collect();
    let services: Vec<&str> = {
        let mut names: Vec<&str> = urls.iter().map(|(s, _)| s.as_str()).collect();
        names.dedup();
        names
    };
    let chosen = match service {
        Some(wanted) => urls.iter().find(|(s, _)| s == wanted).ok_or_else(|| {
            Failure::coded(
                "not_found",
                format!(
                    "`{name}` has no URL for `{wanted}`{}",
                    if services.is_empty() {
                        " (it has no public service: give one `public: true` in preview.yaml)"
                            .to_owned()
                    } else {
                        format!(" (public services: {})", services.join(", "))
                    }
                ),
            )
        })?,
        None => match services.as_slice() {
            [_] => &urls[0],
            [] => {
                return Err(Failure::coded(
                    "not_found",
                    format!(
                        "`{name}` has no public service: give one `public: true` in preview.yaml"
                    ),
                ));
            }
            several => {
                return Err(Failure::invalid(format!(
                    "`{name}` has several public services ({}); name one: `preview url {name} SERVICE`",
                    several.join(", ")
                )));
            }
        },
    };
    match context.output {
        OutputFormat::Json => println!(
            "{}",
            serde_json::json!({ "environment": name, "service": chosen.0, "url": chosen.1 })
        ),
        OutputFormat::Text => println!("{}", chosen.1),
    }
    Ok(())
}
