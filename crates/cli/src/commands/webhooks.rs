//! `preview webhooks list`: the project's latest webhook deliveries and what the receiver made of them.

use crate::context::Context;
use crate::exit::Failure;
use crate::output::OutputFormat;

pub async fn list(context: &Context) -> Result<(), Failure> {
    let answer = context.client.get(&context.path("/webhooks")).await?;
    match context.output {
        OutputFormat::Json => println!("{answer}"),
        OutputFormat::Text => {
            println!(
                "the forge sends them to {}",
                context
                    .client
                    .url(answer["url"].as_str().unwrap_or_default())
            );
            let deliveries = answer["deliveries"].as_array().cloned().unwrap_or_default();
            if deliveries.is_empty() {
                println!("no deliveries yet");
                return Ok(());
            }
            println!(
                "{:<20} {:<38} {:<20} {:<9} DETAIL",
                "RECEIVED", "DELIVERY", "EVENT", "VERDICT"
            );
            for delivery in &deliveries {
                println!(
                    "{:<20} {:<38} {:<20} {:<9} {}",
                    crate::time::format_utc(delivery["received_at"].as_i64().unwrap_or_default()),
                    delivery["delivery"].as_str().unwrap_or_default(),
                    delivery["event"].as_str().unwrap_or_default(),
                    delivery["verdict"].as_str().unwrap_or_default(),
                    delivery["detail"].as_str().unwrap_or_default(),
                );
                // What the reconciler made of the pull request since (its latest decision).
                if let Some(outcome) = delivery["reconciler"].as_str().filter(|o| !o.is_empty()) {
                    println!("{:<20} {:<38} → {outcome}", "", "");
                }
            }
        }
    }
    Ok(())
}
