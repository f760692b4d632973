//! `preview logs ENV SERVICE [-f]` and `preview ca export`: what the runtime keeps besides resources.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::client::Client;
use crate::context::Context;
use crate::exit::Failure;

/// How often `-f` asks for more.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(300);

pub async fn run(
    context: &Context,
    environment: &str,
    service: &str,
    follow: bool,
) -> Result<(), Failure> {
    let mut from: u64 = 0;
    loop {
        let answer = context
            .client
            .get(&context.path(&format!(
                "/environments/{environment}/services/{service}/logs?from={from}"
            )))
            .await?;
        let text = answer["text"].as_str().unwrap_or_default();
        let next = answer["next"].as_u64().unwrap_or(from);
        if !text.is_empty() {
            use std::io::IsTerminal;
            let mut stdout = std::io::stdout().lock();
            // On a terminal, an app's output cannot move the cursor, erase lines or set the clipboard.
            let text = if stdout.is_terminal() {
                for_terminal(text)
            } else {
                text.to_owned()
            };
            stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
                // A closed pipe (`| head`) ends the command quietly.
                .map_err(|_| Failure::invalid("standard output is closed"))?;
        }
        let caught_up = next == from || text.is_empty();
        from = next;
        if caught_up {
            if !follow {
                return Ok(());
            }
            tokio::time::sleep(FOLLOW_INTERVAL).await;
        }
    }
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

pub async fn export_ca(client: &Client, file: Option<&Path>) -> Result<(), Failure> {
    let answer = client.get("/v1/ca").await?;
    let pem = answer["certificate"].as_str().unwrap_or_default();
    match file {
        Some(file) => {
            std::fs::write(file, pem)
                .map_err(|e| Failure::invalid(format!("cannot write {}: {e}", file.display())))?;
            eprintln!(
                "wrote the CA certificate to {}; trust it with `curl --cacert {}` or your system's trust store",
                file.display(),
                file.display()
            );
        }
        None => print!("{pem}"),
    }
    Ok(())
}
