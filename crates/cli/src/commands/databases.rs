//! `preview db list|psql|redis-cli|snapshot|snapshots|refresh|reset`: an environment's databases, a `psql` or
//! `redis-cli` session on one of them, the golden snapshots they are made from, built again, and a database made again by its clone policy.

use std::process::Stdio;

use crate::context::Context;
use crate::exit::Failure;
use crate::output::OutputFormat;

pub async fn list(context: &Context, environment: &str) -> Result<(), Failure> {
    let answer = context
        .client
        .get(&context.path(&format!("/environments/{environment}/databases")))
        .await?;
    match context.output {
        OutputFormat::Json => println!("{answer}"),
        OutputFormat::Text => {
            for database in answer["databases"].as_array().into_iter().flatten() {
                let text = |key: &str| database[key].as_str().unwrap_or("").to_owned();
                let from = match database["from"].as_str() {
                    Some(from) => format!(" from `{from}`"),
                    None => String::new(),
                };
                println!(
                    "{:<12} {} {} {:<40} {}{from}, {} isolation",
                    text("service"),
                    text("engine"),
                    database["version"],
                    text("name"),
                    text("clone"),
                    text("isolation"),
                );
            }
        }
    }
    Ok(())
}

/// Runs `psql` with the login in its environment; its exit status becomes this command's.
pub async fn psql(
    context: &Context,
    environment: &str,
    service: &str,
    args: &[String],
) -> Result<(), Failure> {
    let login = login(context, environment, service).await?;
    let text = |key: &str| login[key].as_str().unwrap_or_default().to_owned();
    let status = tokio::process::Command::new("psql")
        .args(args)
        .env("PGHOST", text("host"))
        .env("PGPORT", login["port"].to_string())
        .env("PGUSER", text("user"))
        .env("PGDATABASE", text("database"))
        .env("PGPASSWORD", text("password"))
        // TLS when the server offers it (an external one may insist), none for the servers preview runs.
        .env("PGSSLMODE", "prefer")
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .await
        .map_err(|e| {
            Failure::invalid(format!(
                "cannot run psql: {e}; install the PostgreSQL client (for example `apt-get install postgresql-client`)"
            ))
        })?;
    ended("psql", status)
}

/// Runs `redis-cli` logged in as the environment's user (the password in its environment); its exit status
/// becomes this command's.
pub async fn redis_cli(
    context: &Context,
    environment: &str,
    service: &str,
    args: &[String],
) -> Result<(), Failure> {
    let login = login(context, environment, service).await?;
    let text = |key: &str| login[key].as_str().unwrap_or_default().to_owned();
    let status = tokio::process::Command::new("redis-cli")
        .args(["-h", &text("host"), "-p", &login["port"].to_string()])
        .args(["--user", &text("user"), "--no-auth-warning"])
        .args(args)
        .env("REDISCLI_AUTH", text("password"))
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .await
        .map_err(|e| {
            Failure::invalid(format!(
                "cannot run redis-cli: {e}; install the Redis client (for example `apt-get install redis-tools`)"
            ))
        })?;
    ended("redis-cli", status)
}

/// The login of ENV's database SERVICE for a person on this machine, password included.
async fn login(
    context: &Context,
    environment: &str,
    service: &str,
) -> Result<serde_json::Value, Failure> {
    context
        .client
        .post(
            &context.path(&format!(
                "/environments/{environment}/databases/{service}/login"
            )),
            serde_json::json!({}),
        )
        .await
}

/// A client program's exit status as this command's.
fn ended(program: &str, status: std::process::ExitStatus) -> Result<(), Failure> {
    if status.success() {
        Ok(())
    } else {
        Err(Failure::coded(
            program,
            format!("{program} ended with {status}"),
        ))
    }
}

/// `refresh` or `reset` of one database; prints what was done.
pub async fn action(
    context: &Context,
    environment: &str,
    service: &str,
    action: &str,
) -> Result<(), Failure> {
    let answer = context
        .client
        .post(
            &context.path(&format!(
                "/environments/{environment}/databases/{service}/{action}"
            )),
            serde_json::json!({}),
        )
        .await?;
    match context.output {
        OutputFormat::Json => println!("{answer}"),
        OutputFormat::Text => {
            for line in answer["lines"].as_array().into_iter().flatten() {
                println!("{}", line.as_str().unwrap_or_default());
            }
        }
    }
    Ok(())
}

pub async fn snapshot(context: &Context, environment: &str, service: &str) -> Result<(), Failure> {
    let answer = context
        .client
        .get(&context.path(&format!(
            "/environments/{environment}/databases/{service}/snapshot"
        )))
        .await?;
    match context.output {
        OutputFormat::Json => println!("{answer}"),
        OutputFormat::Text if answer["snapshot"].is_null() => println!(
            "database `{service}` of `{environment}` is not made from a golden snapshot (an empty or seeded database, or a physical copy read from its source's server)"
        ),
        OutputFormat::Text => {
            let snapshot = &answer["snapshot"];
            for (label, value) in describe(snapshot) {
                println!("{label:<12} {value}");
            }
        }
    }
    Ok(())
}

pub async fn snapshots(context: &Context) -> Result<(), Failure> {
    let answer = context
        .client
        .get(&context.path("/database-snapshots"))
        .await?;
    match context.output {
        OutputFormat::Json => println!("{answer}"),
        OutputFormat::Text => {
            let listed = answer["snapshots"].as_array().cloned().unwrap_or_default();
            if listed.is_empty() {
                println!(
                    "no golden snapshots: no environment's database is a copy of another's yet"
                );
            }
            println!(
                "{:<10} {:<24} {:>8} {:>10} {:>10} {:<6} {:<28} USED BY",
                "SERVICE", "SOURCE", "AGE", "SIZE", "ROWS", "WARM", "MASKING KEY"
            );
            for snapshot in &listed {
                let used_by: Vec<&str> = snapshot["environments"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e.as_str())
                    .collect();
                println!(
                    "{:<10} {:<24} {:>8} {:>10} {:>10} {:<6} {:<28} {}",
                    snapshot["service"].as_str().unwrap_or_default(),
                    format!(
                        "{} ({})",
                        snapshot["from"].as_str().unwrap_or_default(),
                        snapshot["policy"].as_str().unwrap_or_default()
                    ),
                    age(snapshot["made_at"].as_u64().unwrap_or_default()),
                    size(snapshot["size_bytes"].as_u64().unwrap_or_default()),
                    snapshot["rows"],
                    format!("{}/{}", snapshot["warm"], snapshot["warm_pool"]),
                    snapshot["masking_key"].as_str().unwrap_or("-"),
                    used_by.join(", ")
                );
            }
        }
    }
    Ok(())
}

fn describe(snapshot: &serde_json::Value) -> Vec<(&'static str, String)> {
    vec![
        (
            "snapshot",
            snapshot["name"].as_str().unwrap_or_default().to_owned(),
        ),
        (
            "source",
            format!(
                "{} ({})",
                snapshot["from"].as_str().unwrap_or_default(),
                snapshot["policy"].as_str().unwrap_or_default()
            ),
        ),
        ("age", age(snapshot["made_at"].as_u64().unwrap_or_default())),
        (
            "size",
            size(snapshot["size_bytes"].as_u64().unwrap_or_default()),
        ),
        ("tables", snapshot["tables"].to_string()),
        ("rows", snapshot["rows"].to_string()),
        (
            "masking key",
            snapshot["masking_key"]
                .as_str()
                .unwrap_or("none (a plain copy)")
                .to_owned(),
        ),
        (
            "warm pool",
            format!("{} of {} ready", snapshot["warm"], snapshot["warm_pool"]),
        ),
        (
            "refresh",
            match snapshot["refresh_seconds"].as_u64() {
                Some(seconds) => format!("when older than {}", age_text(seconds)),
                None => "on demand (`preview db refresh`)".to_owned(),
            },
        ),
    ]
}

fn age(made_at: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    age_text(now.saturating_sub(made_at))
}

fn age_text(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b < 1 << 20 => format!("{} kB", b / 1024),
        b if b < 1 << 30 => format!("{} MB", b >> 20),
        b => format!("{:.1} GB", b as f64 / f64::from(1u32 << 30)),
    }
}
