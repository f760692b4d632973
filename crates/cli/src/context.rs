//! What client commands share: where the daemon's data is, which project they act on, how to print.

use std::path::PathBuf;

use crate::client::Client;
use crate::exit::Failure;
use crate::output::OutputFormat;

pub struct Context {
    pub client: Client,
    pub project: String,
    pub output: OutputFormat,
}

/// `--data-dir`, else `PREVIEW_HOME`, else `~/.preview`.
pub fn data_dir(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("PREVIEW_HOME").map(PathBuf::from))
        .unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."))
                .join(".preview")
        })
}

impl Context {
    /// The project is `--project`, else the one `./preview.yaml` declares, else the daemon's only project.
    pub async fn new(
        data_dir: PathBuf,
        project: Option<String>,
        output: OutputFormat,
    ) -> Result<Context, Failure> {
        let client = Client::from_data_dir(&data_dir)?;
        let project = match project {
            Some(project) => project,
            None => match local_project() {
                Some(project) => project,
                None => only_project(&client).await?,
            },
        };
        Ok(Context {
            client,
            project,
            output,
        })
    }

    pub fn path(&self, rest: &str) -> String {
        format!("/v1/projects/{}{rest}", self.project)
    }
}

fn local_project() -> Option<String> {
    let source = std::fs::read_to_string("preview.yaml").ok()?;
    preview_spec::parse_spec("preview.yaml", &source)
        .ok()
        .map(|spec| spec.project)
}

async fn only_project(client: &Client) -> Result<String, Failure> {
    let listed = client.get("/v1/projects").await?;
    let names: Vec<&str> = listed["projects"]
        .as_array()
        .map(|projects| projects.iter().filter_map(|p| p["name"].as_str()).collect())
        .unwrap_or_default();
    match names.as_slice() {
        [one] => Ok((*one).to_owned()),
        [] => Err(Failure::invalid(
            "the daemon has no project yet; register one with `preview project register -f preview.yaml`",
        )),
        several => Err(Failure::invalid(format!(
            "the daemon has several projects ({}); choose one with --project",
            several.join(", ")
        ))),
    }
}
