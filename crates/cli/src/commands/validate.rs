//! `preview validate`: every problem with its position, or a short summary of what the spec declares.

use std::path::Path;

use preview_spec::{
    ClonePolicy, Diagnostic, Diagnostics, Environment, Service, ServiceKind, Spec, parse_spec,
};
use serde_json::json;

use crate::exit::Failure;
use crate::output::OutputFormat;

pub fn run(file: &Path, format: OutputFormat) -> Result<(), Failure> {
    let source = std::fs::read_to_string(file).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            "; run `preview init` to create one, or pass `-f FILE`"
        } else {
            ""
        };
        Failure::invalid(format!("cannot read {}: {e}{hint}", file.display()))
    })?;
    let name = file.display().to_string();
    match parse_spec(&name, &source).and_then(|spec| check_files(&name, file, spec)) {
        Ok(spec) => {
            match format {
                OutputFormat::Text => print!("{}", text_summary(&name, &spec)),
                OutputFormat::Json => println!("{}", json_summary(&name, &spec)),
            }
            Ok(())
        }
        Err(diagnostics) => {
            match format {
                OutputFormat::Text => {
                    eprintln!("{diagnostics}");
                    let count = diagnostics.errors.len();
                    eprintln!(
                        "{name}: {count} problem{}",
                        if count == 1 { "" } else { "s" }
                    );
                }
                // The shape of every failure (`ok`, `error.code`, `error.message`), with each problem's place.
                OutputFormat::Json => println!(
                    "{}",
                    json!({
                        "ok": false,
                        "valid": false,
                        "file": name,
                        "error": {
                            "code": "invalid_spec",
                            "message": diagnostics.to_string(),
                            "problems": diagnostics.errors,
                        },
                    })
                ),
            }
            Err(Failure::reported())
        }
    }
}

/// Files the spec names must exist next to it; reported like any other spec error.
fn check_files(name: &str, file: &Path, spec: Spec) -> Result<Spec, Diagnostics> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let errors: Vec<Diagnostic> = spec
        .referenced_files()
        .into_iter()
        .filter(|(path, _)| !dir.join(path).is_file())
        .map(|(path, origin)| Diagnostic {
            position: origin.position,
            path: origin.path.clone(),
            message: format!(
                "the file `{path}` does not exist (looked for {}); paths are relative to the spec's directory",
                dir.join(path).display()
            ),
        })
        .collect();
    if errors.is_empty() {
        Ok(spec)
    } else {
        Err(Diagnostics {
            file: name.to_owned(),
            errors,
        })
    }
}

fn service_line(service: &Service) -> String {
    let detail = match &service.kind {
        ServiceKind::App(app) => {
            let ports: Vec<String> = app
                .ports
                .iter()
                .map(|p| {
                    if p.name == p.number.to_string() {
                        p.name.clone()
                    } else {
                        format!("{}:{}", p.name, p.number)
                    }
                })
                .collect();
            format!(
                "app       {:<9} {}",
                if app.public { "public" } else { "internal" },
                if ports.is_empty() {
                    "no ports".to_owned()
                } else {
                    ports.join(", ")
                }
            )
        }
        ServiceKind::Database(db) => format!(
            "database  {} {}, {}, data: {}",
            db.engine.name(),
            db.version,
            word(&db.mode),
            clone_text(&db.clone)
        ),
        ServiceKind::Job(job) => format!("job       hook {}", word(&job.hook)),
    };
    let deps: Vec<&str> = service
        .depends_on
        .iter()
        .map(|d| d.service.as_str())
        .collect();
    let deps = if deps.is_empty() {
        String::new()
    } else {
        format!("  (after {})", deps.join(", "))
    };
    format!("  {:<14} {detail}{deps}\n", service.name)
}

/// A model enum as the word the spec uses for it (`managed`, `on-create`, …).
fn word(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(word)) => word,
        _ => String::new(),
    }
}

fn clone_text(policy: &ClonePolicy) -> String {
    match policy {
        ClonePolicy::Empty => "empty".to_owned(),
        ClonePolicy::Seed { source } => match source {
            preview_spec::SeedSource::File { path, .. } => format!("seed from {path}"),
            preview_spec::SeedSource::Job(job) => format!("seed by job {job}"),
        },
        ClonePolicy::Clone { from, .. } => format!("clone of {from}"),
        ClonePolicy::Masked { from, .. } => format!("masked clone of {from}"),
    }
}

/// The public hostnames of an environment: generated ones and custom domains, placeholders filled.
fn hostnames(spec: &Spec, environment: &Environment, env_name: &str) -> Vec<String> {
    let mut hosts = Vec::new();
    for service in environment.services.values() {
        let ServiceKind::App(app) = &service.kind else {
            continue;
        };
        if !app.public {
            continue;
        }
        hosts.push(
            spec.domain
                .hostname_for(&spec.project, &service.name, env_name),
        );
        for domain in &app.domains {
            hosts.push(preview_spec::fill_placeholders(
                &domain.name,
                &spec.project,
                &service.name,
                env_name,
            ));
        }
    }
    hosts
}

fn text_summary(file: &str, spec: &Spec) -> String {
    let mut out = format!(
        "{file}: valid\n\nproject {} — isolation {}, runtime {}, base domain {}\n\nservices ({})\n",
        spec.project,
        word(&spec.isolation),
        word(&spec.runtime),
        spec.domain.base,
        spec.services.len()
    );
    for service in spec.services.values() {
        out.push_str(&service_line(service));
    }
    out.push_str(&format!("\nenvironments ({})\n", spec.environments.len()));
    for (name, environment) in &spec.environments {
        let hosts = hostnames(spec, environment, name);
        out.push_str(&format!(
            "  {name:<14} {}\n",
            if hosts.is_empty() {
                "no public routes".to_owned()
            } else {
                hosts.join(", ")
            }
        ));
    }
    match &spec.previews {
        None => out
            .push_str("\npreviews: none (add a `previews:` policy to get one per pull request)\n"),
        Some(previews) => {
            out.push_str(&format!("\npreviews: clones of `{}`", previews.blueprint));
            if let Some(forge) = &previews.forge {
                out.push_str(&format!(
                    " for pull requests on {} {}",
                    word(&forge.kind),
                    forge.repository
                ));
            }
            out.push('\n');
            let example = preview_spec::PreviewPolicy::environment_name(42);
            out.push_str(&format!(
                "  e.g. {example:<9} {}\n",
                hostnames(spec, &previews.template, &example).join(", ")
            ));
            let mut limits = Vec::new();
            if let Some(ttl) = previews.ttl {
                limits.push(format!("destroyed after {}", human_duration(ttl)));
            }
            if let Some(idle) = previews.idle_stop {
                limits.push(format!("stopped when idle for {}", human_duration(idle)));
            }
            if let Some(max) = previews.max_live {
                limits.push(format!("at most {max} at once"));
            }
            if !limits.is_empty() {
                out.push_str(&format!("  {}\n", limits.join("; ")));
            }
        }
    }
    out
}

pub(crate) fn human_duration(duration: std::time::Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn json_summary(file: &str, spec: &Spec) -> serde_json::Value {
    let services: Vec<serde_json::Value> = spec
        .services
        .values()
        .map(|s| {
            json!({
                "name": s.name,
                "type": s.kind.name(),
                "depends_on": s.depends_on.iter().map(|d| &d.service).collect::<Vec<_>>(),
            })
        })
        .collect();
    let environments: Vec<serde_json::Value> = spec
        .environments
        .iter()
        .map(|(name, environment)| json!({ "name": name, "hostnames": hostnames(spec, environment, name) }))
        .collect();
    let previews = spec.previews.as_ref().map(|p| {
        json!({
            "blueprint": p.blueprint,
            "forge": p.forge,
            "ttl_ms": p.ttl.map(|d| d.as_millis() as u64),
            "idle_stop_ms": p.idle_stop.map(|d| d.as_millis() as u64),
            "max_live": p.max_live,
        })
    });
    json!({
        "ok": true,
        "valid": true,
        "file": file,
        "project": spec.project,
        "isolation": spec.isolation,
        "runtime": spec.runtime,
        "base_domain": spec.domain.base,
        "services": services,
        "environments": environments,
        "previews": previews,
    })
}
