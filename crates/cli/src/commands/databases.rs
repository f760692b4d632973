//! `preview db list|psql|refresh|reset`: an environment's databases, a `psql` session on one of them, their golden
//! snapshots built again, and a database made again by its clone policy.

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
    let login = context
        .client
        .post(
            &context.path(&format!(
                "/environments/{environment}/databases/{service}/login"
            )),
            serde_json::json!({}),
        )
        .await?;
    let text = |key: &str| login[key].as_str().unwrap_or_default().to_owned();
    let status = tokio::process::Command::new("psql")
        .args(args)
        .env("PGHOST", text("host"))
        .env("PGPORT", login["port"].to_string())
        .env("PGUSER", text("user"))
        .env("PGDATABASE", text("database"))
        .env("PGPASSWORD", text("password"))
        .env("PGSSLMODE", "disable")
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
    if status.success() {
        Ok(())
    } else {
        Err(Failure::coded("psql", format!("psql ended with {status}")))
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
