//! Which commit an environment is built from: the project's repository at the requested reference, or at its
//! current HEAD. Asks `git` in the spec's directory; a spec outside any repository has no commit.

use preview_resolve::SourceCommit;
use tokio::process::Command;

use crate::error::ApiError;

async fn git(directory: &str, args: &[&str]) -> Result<String, String> {
    run_git(std::path::Path::new(directory), args, &[], GIT_PATIENCE).await
}

/// How long a git command that only reads may take.
pub(crate) const GIT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs git in `directory` with `env` added to its environment, killed after `timeout`; its output, or what it
/// said on failure.
pub(crate) async fn run_git(
    directory: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
    timeout: std::time::Duration,
) -> Result<String, String> {
    let mut command = Command::new("git");
    command
        .arg("-C")
        .arg(directory)
        .args(args)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(timeout, command.output())
        .await
        .map_err(|_| {
            format!(
                "git {} took longer than {} s",
                args.first().unwrap_or(&""),
                timeout.as_secs()
            )
        })?
        .map_err(|e| format!("cannot run git: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout)
            .trim_end()
            .to_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// The commit of `reference` (HEAD when `None`) in the repository holding `directory`.
pub(crate) async fn source_commit(
    directory: Option<&str>,
    reference: Option<&str>,
) -> Result<Option<SourceCommit>, ApiError> {
    let Some(directory) = directory else {
        return match reference {
            Some(_) => Err(ApiError::BadRequest(
                "commit: the project was registered without its directory, so there is no repository to take a commit from; register it again with `preview project register -f FILE`".to_owned(),
            )),
            None => Ok(None),
        };
    };
    let Ok(repository) = git(directory, &["rev-parse", "--show-toplevel"]).await else {
        return match reference {
            Some(_) => Err(ApiError::BadRequest(format!(
                "commit: {directory} is not inside a git repository"
            ))),
            None => Ok(None),
        };
    };
    let prefix = git(directory, &["rev-parse", "--show-prefix"])
        .await
        .map_err(ApiError::Internal)?;
    let wanted = reference.unwrap_or("HEAD");
    if wanted.starts_with('-') || wanted.chars().any(char::is_whitespace) {
        return Err(ApiError::BadRequest(format!(
            "commit: `{wanted}` is not a commit, branch or tag name"
        )));
    }
    let commit = git(
        directory,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{wanted}^{{commit}}"),
        ],
    )
    .await
    .ok()
    .filter(|c| !c.is_empty())
    .ok_or_else(|| {
        ApiError::BadRequest(match reference {
            Some(reference) => format!("commit: `{reference}` is not a commit of {repository}"),
            None => format!("{repository} has no commit yet; commit the project first"),
        })
    })?;
    Ok(Some(SourceCommit {
        repository,
        directory: prefix.trim_end_matches('/').to_owned(),
        commit,
    }))
}

/// What a deployment or plan says about the commit it builds: its short id and subject, and warnings about what
/// it leaves out — uncommitted changes in the working tree, a spec file at that commit that differs from the
/// registered one.
pub(crate) async fn describe(
    source: &SourceCommit,
    registered_file: &str,
    registered_spec: &str,
) -> serde_json::Value {
    let repository = source.repository.as_str();
    let short = source.commit.get(..12).unwrap_or(&source.commit).to_owned();
    let subject = git(repository, &["log", "-1", "--format=%s", &source.commit])
        .await
        .unwrap_or_default();
    let mut warnings = Vec::new();
    let head = git(repository, &["rev-parse", "--verify", "--quiet", "HEAD"])
        .await
        .unwrap_or_default();
    if head == source.commit
        && let Ok(status) = git(
            repository,
            // Changes to tracked files only (a file nobody added is not part of the project yet); no optional
            // lock, no file-system monitor: looking must not write to the user's repository.
            &[
                "-c",
                "core.fsmonitor=false",
                "--no-optional-locks",
                "status",
                "--porcelain",
                "--untracked-files=no",
            ],
        )
        .await
        && !status.is_empty()
    {
        let paths: Vec<&str> = status.lines().filter_map(|line| line.get(3..)).collect();
        let shown: Vec<&str> = paths.iter().take(5).copied().collect();
        let more = paths.len().saturating_sub(shown.len());
        warnings.push(format!(
            "the working tree of {repository} has uncommitted changes that are not deployed: {}{}; commit them to include them",
            shown.join(", "),
            if more > 0 { format!(" and {more} more") } else { String::new() }
        ));
    }
    if let (in_repository, Ok(committed)) = spec_at(source, registered_file).await
        && committed.trim_end() != registered_spec.trim_end()
    {
        warnings.push(format!(
            "{in_repository} at {short} differs from the registered spec, which is what is deployed; take the committed one with `preview project register -f {registered_file}`"
        ));
    }
    serde_json::json!({ "commit": source.commit, "short": short, "subject": subject, "warnings": warnings })
}

/// The spec file at `source`'s commit, where the registered one lies in the repository (its path there, and its text
/// or why it cannot be read).
pub(crate) async fn spec_at(
    source: &SourceCommit,
    registered_file: &str,
) -> (String, Result<String, String>) {
    let file_name = std::path::Path::new(registered_file)
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "preview.yaml".to_owned());
    let in_repository = if source.directory.is_empty() {
        file_name
    } else {
        format!("{}/{file_name}", source.directory)
    };
    let text = run_git(
        std::path::Path::new(&source.repository),
        &[
            "-c",
            "safe.directory=*",
            "show",
            &format!("{}:{in_repository}", source.commit),
        ],
        &[],
        GIT_PATIENCE,
    )
    .await;
    (in_repository, text)
}

/// What an environment follows after a deployment asked for `reference`: the reference itself when it names a
/// branch or a tag (a later deployment builds its head), else the commit it resolved to (`HEAD~1` is pinned, not
/// followed).
pub(crate) async fn to_follow(
    directory: Option<&str>,
    reference: &str,
    commit: Option<&str>,
) -> String {
    if let Some(directory) = directory {
        for kind in ["refs/heads/", "refs/tags/", "refs/remotes/"] {
            if git(
                directory,
                &[
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    &format!("{kind}{reference}"),
                ],
            )
            .await
            .is_ok_and(|found| !found.is_empty())
            {
                return reference.to_owned();
            }
        }
    }
    commit.unwrap_or(reference).to_owned()
}
