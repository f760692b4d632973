//! `preview cluster check`: what the daemon's cluster offers and what its credentials lack.

use crate::client::Client;
use crate::exit::Failure;
use crate::output::OutputFormat;

pub async fn check(client: &Client, name: &str, output: OutputFormat) -> Result<(), Failure> {
    let answer = client.get(&format!("/v1/clusters/{name}/check")).await?;
    if output == OutputFormat::Json {
        println!("{answer}");
        return Ok(());
    }
    let list = |key: &str| -> String {
        let items: Vec<&str> = answer[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .collect();
        if items.is_empty() {
            "none".to_owned()
        } else {
            items.join(", ")
        }
    };
    println!(
        "cluster {name}: {} (Kubernetes {})",
        answer["server"].as_str().unwrap_or_default(),
        answer["version"].as_str().unwrap_or_default()
    );
    let denied = answer["denied"].as_array().map_or(0, Vec::len);
    println!(
        "permissions: {} checked, {}",
        answer["permissions_checked"],
        if denied == 0 {
            "all granted".to_owned()
        } else {
            format!("{denied} denied: {}", list("denied"))
        }
    );
    println!("ingress classes: {}", list("ingress_classes"));
    println!("storage classes: {}", list("storage_classes"));
    println!("volume snapshot classes: {}", list("snapshot_classes"));
    println!("extensions: {}", list("extensions"));
    let missing: Vec<&str> = answer["missing"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .collect();
    if missing.is_empty() {
        println!("nothing missing");
        return Ok(());
    }
    for item in &missing {
        println!("missing: {item}");
    }
    Err(Failure::invalid(format!(
        "cluster {name} lacks {} thing{} preview needs (above)",
        missing.len(),
        if missing.len() == 1 { "" } else { "s" }
    )))
}

pub async fn add(
    client: &Client,
    name: &str,
    kubeconfig: &std::path::Path,
    context: Option<&str>,
    output: OutputFormat,
) -> Result<(), Failure> {
    let text = std::fs::read_to_string(kubeconfig).map_err(|e| {
        Failure::invalid(format!(
            "--kubeconfig: cannot read {}: {e}",
            kubeconfig.display()
        ))
    })?;
    let answer = client
        .post(
            "/v1/clusters",
            serde_json::json!({ "name": name, "kubeconfig": text, "context": context }),
        )
        .await?;
    match output {
        OutputFormat::Json => println!("{answer}"),
        OutputFormat::Text => println!(
            "cluster {name} registered: {} (its credentials are sealed in the store; name it in a spec with `cluster: {name}`)",
            answer["server"].as_str().unwrap_or_default()
        ),
    }
    Ok(())
}

pub async fn list(client: &Client, output: OutputFormat) -> Result<(), Failure> {
    let answer = client.get("/v1/clusters").await?;
    if output == OutputFormat::Json {
        println!("{answer}");
        return Ok(());
    }
    println!("{:<16} {:<40} ENVIRONMENTS", "CLUSTER", "SERVER");
    for cluster in answer["clusters"].as_array().into_iter().flatten() {
        let environments = match cluster["environments"].as_array() {
            Some(list) if list.is_empty() => "-".to_owned(),
            Some(list) => list
                .iter()
                .filter_map(|e| e.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            None => format!("unknown: {}", cluster["error"].as_str().unwrap_or_default()),
        };
        println!(
            "{:<16} {:<40} {environments}",
            cluster["name"].as_str().unwrap_or_default(),
            cluster["server"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}

pub async fn remove(client: &Client, name: &str, output: OutputFormat) -> Result<(), Failure> {
    let answer = client.delete(&format!("/v1/clusters/{name}")).await?;
    match output {
        OutputFormat::Json => println!("{answer}"),
        OutputFormat::Text => println!("cluster {name} removed"),
    }
    Ok(())
}
