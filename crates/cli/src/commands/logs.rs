//! `preview logs ENV SERVICE [-f]` and `preview ca export`: what the runtime keeps besides resources.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::client::Client;
use crate::context::Context;
use crate::exit::Failure;
use crate::output::OutputFormat;

/// How often `-f` asks for more.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(300);

pub async fn run(
    context: &Context,
    environment: &str,
    service: &str,
    follow: bool,
) -> Result<(), Failure> {
    let mut from: u64 = 0;
    // Without -f, JSON output is one object holding the whole log; with -f, one object per new piece (JSON lines),
    // each saying where the next one starts.
    let mut collected = String::new();
    loop {
        let answer = context
            .client
            .get(&context.path(&format!(
                "/environments/{environment}/services/{service}/logs?from={from}"
            )))
            .await?;
        let text = answer["text"].as_str().unwrap_or_default();
        let next = answer["next"].as_u64().unwrap_or(from);
        match context.output {
            OutputFormat::Json if follow => {
                if !text.is_empty() {
                    let piece = serde_json::json!({
                        "environment": environment, "service": service, "from": from, "text": text, "next": next,
                    });
                    write_out(&format!("{piece}\n"))?;
                }
            }
            OutputFormat::Json => collected.push_str(text),
            OutputFormat::Text if !text.is_empty() => {
                use std::io::IsTerminal;
                // On a terminal, an app's output cannot move the cursor, erase lines or set the clipboard.
                if std::io::stdout().is_terminal() {
                    write_out(&for_terminal(text))?;
                } else {
                    write_out(text)?;
                }
            }
            OutputFormat::Text => {}
        }
        let caught_up = next == from || text.is_empty();
        from = next;
        if caught_up {
            if !follow {
                if context.output == OutputFormat::Json {
                    let whole = serde_json::json!({
                        "environment": environment, "service": service, "text": collected, "next": next,
                    });
                    write_out(&format!("{whole}\n"))?;
                }
                return Ok(());
            }
            tokio::time::sleep(FOLLOW_INTERVAL).await;
        }
    }
}

fn write_out(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|_| Failure::invalid("standard output is closed"))
}

/// `text` with its control characters but newlines and tabs written as `\x1b` and the like.
fn for_terminal(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                format!("\\x{:02x}", u32::from(c))
            } else {
                c.to_string()
            }
        })
        .collect()
}

pub async fn export_ca(
    client: &Client,
    file: Option<&Path>,
    output: OutputFormat,
) -> Result<(), Failure> {
    let answer = client.get("/v1/ca").await?;
    let pem = answer["certificate"].as_str().unwrap_or_default();
    if let Some(file) = file {
        std::fs::write(file, pem)
            .map_err(|e| Failure::invalid(format!("cannot write {}: {e}", file.display())))?;
    }
    match (output, file) {
        (OutputFormat::Json, _) => println!(
            "{}",
            serde_json::json!({ "certificate": pem, "file": file.map(|f| f.display().to_string()) })
        ),
        (OutputFormat::Text, Some(file)) => eprintln!(
            "wrote the CA certificate to {}; trust it with `curl --cacert {}` or your system's trust store",
            file.display(),
            file.display()
        ),
        (OutputFormat::Text, None) => print!("{pem}"),
    }
    Ok(())
}
