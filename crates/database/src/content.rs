//! A database resource as the planner writes it, read the same way by every runtime; the marks that say a
//! database's data is complete and whose it is; and the seed file, read from the project's repository at the
//! deployed commit.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use tokio_postgres::Client;

use crate::DatabaseError;
use crate::masking_plan::Rules;

/// A database resource's content.
#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseContent {
    pub engine: Engine,
    pub version: Version,
    pub mode: String,
    pub isolation: String,
    pub name: String,
    pub clone: ClonePolicy,
    pub masking: Option<MaskingContent>,
    pub source: Option<SourceContent>,
    /// With `mode: external`: the project secret holding the server's admin URL.
    pub admin_url: Option<SecretVersion>,
    /// Redis only: `rdb`, `aof` or `none`.
    pub persistence: Option<String>,
}

/// The engines a database resource may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Postgres,
    Redis,
    /// MySQL, served by MariaDB.
    Mysql,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::Redis => "redis",
            Engine::Mysql => "mysql",
        }
    }
}

/// A database's version as the planner writes it: a major version (`16`, a number) or a release series (`"10.11"`,
/// MariaDB's); written back the same way, so golden snapshots' ids stay what they were.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    Major(u32),
    Series(u32, u32),
}

impl Version {
    /// The major version: all that PostgreSQL's and Redis's programs are chosen by.
    pub fn major(self) -> u32 {
        match self {
            Version::Major(major) | Version::Series(major, _) => major,
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Version::Major(major) => write!(f, "{major}"),
            Version::Series(major, minor) => write!(f, "{major}.{minor}"),
        }
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Version, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(u32),
            Text(String),
        }
        match Written::deserialize(deserializer)? {
            Written::Number(major) => Ok(Version::Major(major)),
            Written::Text(text) => text
                .split_once('.')
                .and_then(|(major, minor)| {
                    Some(Version::Series(major.parse().ok()?, minor.parse().ok()?))
                })
                .ok_or_else(|| serde::de::Error::custom(format!("`{text}` is not a version"))),
        }
    }
}

impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Version::Major(major) => serializer.serialize_u32(*major),
            Version::Series(..) => serializer.collect_str(self),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ClonePolicy {
    pub policy: String,
    pub file: Option<String>,
    pub from: Option<String>,
    /// The source environment's database name.
    pub source: Option<String>,
    /// With `policy: seed`: the job that seeds it, instead of a file.
    pub job: Option<String>,
    /// A golden snapshot older than this many seconds is built again before it is used.
    pub refresh_seconds: Option<u64>,
    pub warm_pool: Option<u32>,
}

impl ClonePolicy {
    /// How many databases made from the golden snapshot are kept ready.
    pub fn warm_pool(&self) -> u32 {
        self.warm_pool.unwrap_or(1)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct MaskingContent {
    pub key: Option<SecretVersion>,
    pub tables: Rules,
    #[serde(default)]
    pub strict: bool,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct SecretVersion {
    pub name: String,
    pub version: String,
}

/// Where the spec came from: a repository, the spec's directory in it, and the commit deployed.
#[derive(Debug, Clone, Deserialize)]
pub struct SourceContent {
    pub repository: String,
    pub directory: String,
    pub commit: String,
}

impl DatabaseContent {
    /// The content of the resource `resource_id`; an error naming it when its engine is not one of `engines` (those
    /// the `runtime` runs) or the record is not readable.
    pub fn parse(
        resource_id: &str,
        content: &serde_json::Value,
        runtime: &str,
        engines: &[Engine],
    ) -> Result<DatabaseContent, String> {
        let engine = content["engine"].as_str().unwrap_or_default();
        if !engines.iter().any(|e| e.name() == engine) {
            return Err(format!(
                "{resource_id}: engine `{engine}` is not supported by the {runtime} runtime; it runs {}",
                engines
                    .iter()
                    .map(|e| format!("`{}`", e.name()))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ));
        }
        serde_json::from_value(content.clone())
            .map_err(|e| format!("{resource_id}: the recorded database is not readable: {e}"))
    }

    /// Whether the database has a server of its own (a Redis always has).
    pub fn physical(&self) -> bool {
        self.engine == Engine::Redis
            || self.mode != "external" && (self.isolation == "physical" || self.mode == "container")
    }

    pub fn external(&self) -> bool {
        self.mode == "external"
    }

    /// The environment a copy is made from, and its database's name; an error naming the service when the
    /// policy names none.
    pub fn copied_from(&self, service: &str) -> Result<(&str, &str), String> {
        match (&self.clone.from, &self.clone.source) {
            (Some(from), Some(source)) => Ok((from, source)),
            _ => Err(format!(
                "database `{service}`: `clone.from` names no environment"
            )),
        }
    }

    /// The masking of a `masked` copy — its rules and the project secret keying them —, none for other policies;
    /// an error naming the service when the rules or the key are missing.
    pub fn masking_of(
        &self,
        service: &str,
    ) -> Result<Option<(&MaskingContent, &SecretVersion)>, String> {
        if self.clone.policy != "masked" {
            return Ok(None);
        }
        let Some(masking) = &self.masking else {
            return Err(format!(
                "database `{service}`: `policy: masked` needs `masking` rules"
            ));
        };
        let Some(key) = &masking.key else {
            return Err(format!(
                "database `{service}`: masking needs `key: <project secret>`, the key of its transforms"
            ));
        };
        Ok(Some((masking, key)))
    }

    /// The seed file `file` as the deployed commit has it, read from the project's repository.
    pub fn seed_file(&self, service: &str, file: &str) -> Result<Vec<u8>, String> {
        let Some(source) = &self.source else {
            return Err(format!(
                "database `{service}`: the seed file {file} is read from the project's repository, and this project has none; register it from a directory in a git repository"
            ));
        };
        let git_dir = git_dir(Path::new(&source.repository))?;
        let path = if source.directory.is_empty() {
            file.to_owned()
        } else {
            format!("{}/{file}", source.directory)
        };
        let output = std::process::Command::new("git")
            .args(["-c", "safe.directory=*", "--git-dir"])
            .arg(&git_dir)
            .args(["cat-file", "blob", &format!("{}:{path}", source.commit)])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .output()
            .map_err(|e| format!("cannot run git: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "database `{service}`: the seed file {file} is not in commit {} ({})",
                &source.commit[..source.commit.len().min(12)],
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(output.stdout)
    }
}

/// The git directory of a repository: its `.git` (a directory, or a worktree's file naming one), or the
/// repository itself when it is bare.
pub fn git_dir(repository: &Path) -> Result<PathBuf, String> {
    let dot_git = repository.join(".git");
    if dot_git.is_dir() {
        return Ok(dot_git);
    }
    if repository.join("objects").is_dir() && repository.join("HEAD").is_file() {
        return Ok(repository.to_path_buf());
    }
    let text = std::fs::read_to_string(&dot_git).map_err(|e| {
        format!(
            "{} is not a git repository ({}: {e})",
            repository.display(),
            dot_git.display()
        )
    })?;
    let named = text
        .trim()
        .strip_prefix("gitdir:")
        .map(|d| repository.join(d.trim()))
        .ok_or_else(|| format!("{} does not name a git directory", dot_git.display()))?;
    match std::fs::read_to_string(named.join("commondir")) {
        Ok(common) => Ok(named.join(common.trim())),
        Err(_) => Ok(named),
    }
}

/// How a database's state is marked, in its comment: data is only kept once it is complete.
pub const READY: &str = "preview: ready";

/// How the mark of an environment's database begins, before `<project>/<environment>/<service>`.
pub const READY_FOR: &str = "preview: ready for ";

/// The mark of a database that is complete, naming whose it is: two environments whose names give the same
/// database name (`a-b`/`c` and `a`/`b-c`) must not share data.
pub fn ready_mark(project: &str, environment: &str, service: &str) -> String {
    format!("{READY_FOR}{project}/{environment}/{service}")
}

/// The database's comment, where its mark is.
pub async fn readiness(client: &Client, database: &str) -> Result<Option<String>, DatabaseError> {
    let row = client
        .query_opt(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
            &[&database],
        )
        .await
        .map_err(|e| DatabaseError::postgres("cannot look for the database", &e))?;
    Ok(row.and_then(|row| row.get::<_, Option<String>>(0)))
}

/// Whether the database's data is complete.
pub async fn is_ready(client: &Client, database: &str) -> Result<bool, DatabaseError> {
    Ok(readiness(client, database)
        .await?
        .is_some_and(|mark| mark.starts_with(READY)))
}

/// Marks the database complete, as `mark` says.
pub async fn mark_ready(client: &Client, database: &str, mark: &str) -> Result<(), DatabaseError> {
    use crate::postgres::connection::{quote_identifier, quote_literal};
    client
        .batch_execute(&format!(
            "COMMENT ON DATABASE {} IS {}",
            quote_identifier(database),
            quote_literal(mark)
        ))
        .await
        .map_err(|e| DatabaseError::postgres("cannot mark the database ready", &e))
}
