//! Builds: a checkout of a commit (an export of the repository at that commit, shared by every environment at
//! the same commit), and each app's build command run in it once. Builds see no secrets and none of the daemon's
//! environment but what compilers need to find themselves; `PREVIEW_BUILD_CACHE` is a directory kept between
//! builds of the project, for compiler caches; builds sharing it run one at a time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::process::Command;

/// What to build: the fields of a `build/<service>` resource.
#[derive(Debug, Clone)]
pub(crate) struct BuildRequest {
    pub project: String,
    pub service: String,
    pub command: Option<String>,
    pub repository: String,
    pub directory: String,
    pub commit: String,
}

pub(crate) struct Builds {
    root: PathBuf,
    cache: PathBuf,
    /// One lock per checkout and per build, so that environments at the same commit wait for each other.
    locks: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

/// Variables a build inherits from the daemon, when set: where the tools and their caches are.
const INHERITED: [&str; 7] = [
    "PATH",
    "HOME",
    "LANG",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "RUSTUP_TOOLCHAIN",
    "GOPATH",
];

impl Builds {
    pub(crate) fn new(root: PathBuf, cache: PathBuf) -> Builds {
        Builds {
            root,
            cache,
            locks: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self, path: &Path) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = match self.locks.lock() {
            Ok(locks) => locks,
            Err(poisoned) => poisoned.into_inner(),
        };
        Arc::clone(locks.entry(path.to_path_buf()).or_default())
    }

    /// The checkout of `commit`: `<root>/<commit>/tree`.
    pub(crate) fn tree(&self, commit: &str) -> PathBuf {
        self.root.join(commit).join("tree")
    }

    /// Where the service's commands run: the spec's directory inside the checkout.
    pub(crate) fn workdir(&self, request: &BuildRequest) -> PathBuf {
        self.tree(&request.commit).join(&request.directory)
    }

    /// Makes the checkout of the commit if it does not exist yet.
    pub(crate) async fn checkout(&self, repository: &str, commit: &str) -> Result<PathBuf, String> {
        if !commit.chars().all(|c| c.is_ascii_hexdigit()) || commit.len() < 7 {
            return Err(format!("`{commit}` is not a commit id"));
        }
        let tree = self.tree(commit);
        let lock = self.lock(&tree);
        let _held = lock.lock().await;
        if tree.is_dir() {
            return Ok(tree);
        }
        let dir = self.root.join(commit);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let archive = dir.join("source.tar");
        run(
            Command::new("git")
                .arg("-C")
                .arg(repository)
                .args(["archive", "--format=tar", "-o"])
                .arg(&archive)
                .arg(commit),
            &format!("exporting commit {commit} of {repository}"),
        )
        .await?;
        let partial = dir.join("tree.partial");
        let _ = std::fs::remove_dir_all(&partial);
        std::fs::create_dir_all(&partial)
            .map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
        run(
            Command::new("tar")
                .arg("-xf")
                .arg(&archive)
                .arg("-C")
                .arg(&partial),
            &format!("unpacking commit {commit}"),
        )
        .await?;
        let _ = std::fs::remove_file(&archive);
        // Readable by the unprivileged user apps run as; the daemon's data directory only lets it pass through.
        set_mode(&dir, 0o755);
        set_mode(&partial, 0o755);
        std::fs::rename(&partial, &tree)
            .map_err(|e| format!("cannot move the checkout into place: {e}"))?;
        Ok(tree)
    }

    /// Checks out the commit and runs the build command once per commit and command; the output goes to a log
    /// whose end is part of the error when the build fails. Returns a line saying what happened.
    pub(crate) async fn build(&self, request: &BuildRequest) -> Result<String, String> {
        self.checkout(&request.repository, &request.commit).await?;
        let Some(command) = &request.command else {
            return Ok(format!("checked out {}", short(&request.commit)));
        };
        let dir = self.root.join(&request.commit);
        let marker = dir.join(format!("built-{}-{}", request.service, short_hash(command)));
        let lock = self.lock(&marker);
        let _held = lock.lock().await;
        if marker.exists() {
            return Ok(format!(
                "{} at {} is already built",
                request.service,
                short(&request.commit)
            ));
        }
        let log = dir.join(format!("build-{}.log", request.service));
        let output = std::fs::File::create(&log)
            .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let errors = output
            .try_clone()
            .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
        let cache = self.cache.join(&request.project);
        std::fs::create_dir_all(&cache)
            .map_err(|e| format!("cannot create {}: {e}", cache.display()))?;
        // Builds that share a cache run one at a time, in this daemon and any other using the same directory:
        // a build may then copy its output out of the cache without another build replacing it meanwhile.
        let _cache_lock = lock_file(cache.join(".build.lock")).await?;
        let mut shell = Command::new("/bin/sh");
        shell
            .arg("-c")
            .arg(command)
            .current_dir(self.workdir(request))
            .env_clear()
            .envs(
                INHERITED
                    .iter()
                    .filter_map(|name| Some((name, std::env::var_os(name)?))),
            )
            .env("PREVIEW_BUILD_CACHE", &cache)
            .env("PREVIEW_COMMIT", &request.commit)
            .stdin(std::process::Stdio::null())
            .stdout(output)
            .stderr(errors)
            .kill_on_drop(true);
        let started = Instant::now();
        let status = shell
            .status()
            .await
            .map_err(|e| format!("cannot run the build of `{}`: {e}", request.service))?;
        if !status.success() {
            return Err(format!(
                "the build of `{}` at {} failed ({status}); `{command}` printed, at the end:\n{}",
                request.service,
                short(&request.commit),
                tail(&log, 20)
            ));
        }
        std::fs::write(&marker, b"")
            .map_err(|e| format!("cannot write {}: {e}", marker.display()))?;
        Ok(format!(
            "built {} at {} in {:.1} s",
            request.service,
            short(&request.commit),
            started.elapsed().as_secs_f64()
        ))
    }
}

/// An exclusive lock on `path` (created if missing), held until the file is dropped.
async fn lock_file(path: PathBuf) -> Result<std::fs::File, String> {
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        file.lock()
            .map_err(|e| format!("cannot lock {}: {e}", path.display()))?;
        Ok(file)
    })
    .await
    .map_err(|e| format!("the build lock failed: {e}"))?
}

async fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let output = command
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("{what}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}

pub(crate) fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

fn short_hash(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    preview_secrets::hex::encode(&digest.as_ref()[..6])
}

/// The last `lines` lines of a file, for error messages.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
