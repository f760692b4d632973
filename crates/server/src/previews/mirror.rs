//! The daemon's mirror of a project's repository (`<data>/mirrors/<project>.git`, bare): the commits pull requests
//! are built from are fetched into it from the forge (`refs/pull/N/head` on GitHub, Gitea and Forgejo,
//! `refs/merge-requests/N/head` on GitLab), each kept under `refs/preview/pull/N`. Git reads no configuration but
//! the mirror's, asks for nothing on a terminal and speaks only file, git, HTTP(S) and SSH; a token goes in a
//! header through git's environment, never in a URL or an argument. The mirror's files are readable by the
//! builders that export checkouts from it (the data directory around it is not).

use std::path::{Path, PathBuf};
use std::time::Duration;

use preview_secrets::Secret;

/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(600);

/// What git's environment holds for the mirror: no configuration but the repository's own, no prompt, and only
/// the file, git, HTTP(S) and SSH transports.
const ENVIRONMENT: &[(&str, &str)] = &[
    ("GIT_CONFIG_NOSYSTEM", "1"),
    ("GIT_CONFIG_GLOBAL", "/dev/null"),
    ("GIT_TERMINAL_PROMPT", "0"),
    ("GIT_ASKPASS", "/bin/false"),
    ("SSH_ASKPASS", "/bin/false"),
    ("GIT_ALLOW_PROTOCOL", "file:git:http:https:ssh"),
];

async fn git(
    directory: &Path,
    args: &[&str],
    extra: &[(String, String)],
    timeout: Duration,
) -> Result<String, String> {
    let mut env: Vec<(&str, &str)> = ENVIRONMENT.to_vec();
    env.extend(extra.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    crate::source::run_git(directory, args, &env, timeout).await
}

/// Whether `commit` is a commit of the repository at `directory`.
pub(crate) async fn has_commit(directory: &Path, commit: &str) -> bool {
    // A local repository may be anyone's; reading one object runs nothing of its configuration.
    git(
        directory,
        &[
            "-c",
            "safe.directory=*",
            "cat-file",
            "-e",
            &format!("{commit}^{{commit}}"),
        ],
        &[],
        Duration::from_secs(30),
    )
    .await
    .is_ok()
}

/// The mirror of `project` under `root`, made on first use.
async fn mirror(root: &Path, project: &str) -> Result<PathBuf, String> {
    let path = root.join(format!("{project}.git"));
    if path.join("HEAD").is_file() {
        return Ok(path);
    }
    std::fs::create_dir_all(root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    let making = root.join(format!("{project}.git.making"));
    let _ = std::fs::remove_dir_all(&making);
    git(
        root,
        &[
            "init",
            "--quiet",
            "--bare",
            "--shared=0644",
            making
                .to_str()
                .ok_or("the data directory's path is not UTF-8")?,
        ],
        &[],
        Duration::from_secs(30),
    )
    .await
    .map_err(|e| format!("cannot make the mirror {}: {e}", path.display()))?;
    std::fs::rename(&making, &path)
        .map_err(|e| format!("cannot put the mirror {} in place: {e}", path.display()))?;
    Ok(path)
}

/// What a fetch needs to know about where it fetches from.
pub(crate) struct Remote<'a> {
    pub clone_url: &'a str,
    /// The forge's reference of the pull request's head (`refs/pull/7/head`).
    pub reference: String,
    /// The API token, sent as an HTTP header to fetch a private repository.
    pub token: Option<&'a Secret>,
    /// How the token is sent: GitLab and Gitea take it as a password for any user, GitHub for `x-access-token`.
    pub token_user: &'a str,
}

/// Fetches pull request `number`'s head into the project's mirror and checks that it is `head`; the mirror's
/// path. A head the forge's reference no longer points at (a newer push) is an error: the next pass deploys the
/// newer head.
pub(crate) async fn fetch(
    root: &Path,
    project: &str,
    number: i64,
    head: &str,
    remote: &Remote<'_>,
) -> Result<PathBuf, String> {
    let path = mirror(root, project).await?;
    if has_commit(&path, head).await {
        return Ok(path);
    }
    let mut extra = Vec::new();
    if let Some(token) = remote.token {
        let basic = preview_gateway::basic_credentials(remote.token_user, token.expose());
        extra.push(("GIT_CONFIG_COUNT".to_owned(), "1".to_owned()));
        extra.push(("GIT_CONFIG_KEY_0".to_owned(), "http.extraHeader".to_owned()));
        extra.push((
            "GIT_CONFIG_VALUE_0".to_owned(),
            format!("Authorization: Basic {basic}"),
        ));
    }
    let refspec = format!("+{}:refs/preview/pull/{number}", remote.reference);
    git(
        &path,
        &[
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            "--",
            remote.clone_url,
            &refspec,
        ],
        &extra,
        FETCH_TIMEOUT,
    )
    .await
    .map_err(|e| {
        let e = match remote.token {
            Some(token) => e.replace(token.expose(), "[secret]").replace(
                &preview_gateway::basic_credentials(remote.token_user, token.expose()),
                "[secret]",
            ),
            None => e,
        };
        format!(
            "fetching {} from {} failed: {e}",
            remote.reference, remote.clone_url
        )
    })?;
    if !has_commit(&path, head).await {
        return Err(format!(
            "{} at {} is no longer commit {head} (a newer push); its newer head is deployed next",
            remote.reference, remote.clone_url
        ));
    }
    Ok(path)
}

/// Drops the mirror's reference of a pull request whose preview is gone, so that its commits can be collected.
pub(crate) async fn forget(root: &Path, project: &str, number: i64) {
    let path = root.join(format!("{project}.git"));
    if path.is_dir() {
        let _ = git(
            &path,
            &["update-ref", "-d", &format!("refs/preview/pull/{number}")],
            &[],
            Duration::from_secs(30),
        )
        .await;
    }
}
