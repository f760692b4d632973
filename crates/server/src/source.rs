//! Which commit an environment is built from: the project's repository at the requested reference, or at its
//! current HEAD. Asks `git` in the spec's directory; a spec outside any repository has no commit.

use preview_resolve::SourceCommit;
use tokio::process::Command;

use crate::error::ApiError;

async fn git(directory: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(directory)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run git: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
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
