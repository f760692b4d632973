//! `preview init`: a commented starter spec that validates as written.

use std::path::PathBuf;

use crate::exit::Failure;
use crate::output::OutputFormat;

pub const STARTER: &str = include_str!("starter.yaml");

pub fn run(dir: Option<PathBuf>, force: bool, format: OutputFormat) -> Result<(), Failure> {
    let dir = dir.unwrap_or_else(|| PathBuf::from("."));
    let path = dir.join("preview.yaml");
    if path.exists() && !force {
        return Err(Failure::invalid(format!(
            "{} already exists; edit it, or pass --force to replace it",
            path.display()
        )));
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| Failure::invalid(format!("cannot create directory {}: {e}", dir.display())))?;
    let project = project_name_for(&dir);
    std::fs::write(
        &path,
        STARTER.replace("project: my-app", &format!("project: {project}")),
    )
    .map_err(|e| Failure::invalid(format!("cannot write {}: {e}", path.display())))?;
    match format {
        OutputFormat::Text => {
            println!("wrote {} (project `{project}`)", path.display());
            println!(
                "next: edit it, then run `preview validate -f {}`",
                path.display()
            );
        }
        OutputFormat::Json => println!(
            "{}",
            serde_json::json!({ "ok": true, "file": path.display().to_string(), "project": project })
        ),
    }
    Ok(())
}

/// The directory's name made DNS-safe, or `my-app` if nothing usable is left.
fn project_name_for(dir: &std::path::Path) -> String {
    let name = std::fs::canonicalize(dir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let mut slug: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    slug = slug
        .trim_matches('-')
        .chars()
        .take(30)
        .collect::<String>()
        .trim_matches('-')
        .to_owned();
    while slug.contains("--") {
        slug = slug.replace("--", "-");
    }
    if slug.starts_with(|c: char| c.is_ascii_lowercase()) {
        slug
    } else {
        "my-app".to_owned()
    }
}
