//! Builds: a checkout of a commit for each builder (an export of the repository at that commit), and each app's
//! build command run in it once per command. Builds see no secrets and none of the daemon's environment but what
//! compilers need to find themselves; `PREVIEW_BUILD_CACHE` is kept between a builder's builds (compiler caches);
//! builds sharing a cache run one at a time.
//!
//! When environments are isolated, the checkout and the build run as the builder, in a sandbox of the
//! environment's space: the repository's git directory read-only, the checkout and the cache its own, the tools
//! it may use read-only, and `HOME` inside its cache, so that tool caches (cargo's registry, npm's cache) are
//! kept too. A preview's cache starts as a copy of its project's: quick first builds, and nothing a pull request
//! writes reaches the project's cache.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use preview_deploy::{EnvironmentAddress, StepLog};

use crate::layout::{self, Builder};
use crate::logs::tail;
use crate::one_off::{Abandoned, Holding, Once, run_once};
use crate::runtime::LocalRuntime;
use crate::spaces::{Space, Work};

/// What to build: the fields of a `build/<service>` resource.
#[derive(Debug, Clone)]
pub(crate) struct BuildRequest {
    pub service: String,
    pub command: Option<String>,
    pub repository: String,
    pub directory: String,
    pub commit: String,
}

/// One lock per checkout and per build, so that environments at the same commit wait for each other.
#[derive(Default)]
pub(crate) struct BuildLocks {
    locks: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

impl BuildLocks {
    fn lock(&self, path: &Path) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = match self.locks.lock() {
            Ok(locks) => locks,
            Err(poisoned) => poisoned.into_inner(),
        };
        Arc::clone(locks.entry(path.to_path_buf()).or_default())
    }
}

/// Variables a build inherits from the daemon, when set, if it runs as the daemon's user: where the tools and
/// their caches are.
const INHERITED: [&str; 7] = [
    "PATH",
    "HOME",
    "LANG",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "RUSTUP_TOOLCHAIN",
    "GOPATH",
];

impl LocalRuntime {
    /// Who builds the environment's apps: the project's builder, or a preview's own.
    pub(crate) fn builder(&self, env: &EnvironmentAddress) -> Builder {
        let preview = self.with_state(env, |s| s.preview);
        Builder::of(
            &self.config.dir,
            &self.config.build_cache,
            &env.project,
            preview.then_some(env.environment.as_str()),
        )
    }

    fn space(&self, env: &EnvironmentAddress) -> Option<Arc<Space>> {
        self.with_state(env, |s| s.space.clone())
    }

    /// Makes the builder's checkout of the commit if it does not exist yet; returns its tree.
    pub(crate) async fn checkout(
        &self,
        env: &EnvironmentAddress,
        builder: &Builder,
        repository: &str,
        commit: &str,
        step: &StepLog,
    ) -> Result<PathBuf, String> {
        if !commit.chars().all(|c| c.is_ascii_hexdigit()) || commit.len() < 7 {
            return Err(format!("`{commit}` is not a commit id"));
        }
        let tree = builder.tree(commit);
        // Held until nothing of an abandoned export of the tree runs any more (see `Abandoned`); so the tree,
        // made by renaming its partial one after a successful export, is complete whenever it exists.
        let held: Holding = Arc::new(self.build_locks.lock(&tree).lock_owned().await);
        if tree.is_dir() {
            return Ok(tree);
        }
        step.check_lease().map_err(|e| e.message)?;
        let dir = builder.commit_dir(commit);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let partial = dir.join("tree.partial");
        let _ = std::fs::remove_dir_all(&partial);
        let space = self.space(env);
        let owner = space.as_ref().map(|s| s.builder);
        crate::trees::own_dir(&partial, owner, 0o755)?;
        let scratch = dir.join("scratch");
        let _ = std::fs::remove_dir_all(&scratch);
        crate::trees::own_dir(&scratch, owner, 0o700)?;
        let log = dir.join("checkout.log");
        let once = match (&self.isolation, &space) {
            (Some(isolation), Some(space)) => {
                let git_dir = layout::git_dir(Path::new(repository))?;
                let (sandbox, home) = isolation.sandbox(
                    env,
                    space,
                    Work::Checkout {
                        git_dir: &git_dir,
                        partial: &partial,
                        scratch: &scratch,
                    },
                )?;
                let script = format!(
                    "git -c safe.directory='*' -c core.attributesFile=/dev/null --git-dir={repo} archive --format=tar -o /tmp/{commit}.tar {commit} && tar -xf /tmp/{commit}.tar -C {target}; status=$?; rm -f /tmp/{commit}.tar; exit $status",
                    repo = layout::inside(layout::REPOSITORY).display(),
                    target = layout::inside(layout::CHECKOUT).display(),
                );
                (
                    Once {
                        // git reads no configuration but the repository's own: no user's, no system's (a
                        // filter defined elsewhere would run as the builder with the repository in reach).
                        variables: vec![
                            ("PATH".to_owned(), OsString::from(SYSTEM_PATH)),
                            ("HOME".to_owned(), home.into_os_string()),
                            ("GIT_CONFIG_GLOBAL".to_owned(), OsString::from("/dev/null")),
                            ("GIT_CONFIG_NOSYSTEM".to_owned(), OsString::from("1")),
                            ("GIT_ATTR_NOSYSTEM".to_owned(), OsString::from("1")),
                        ],
                        sandbox: Some(sandbox),
                        dir: PathBuf::new(),
                        abandoned: Abandoned::default(),
                    },
                    script,
                )
            }
            _ => {
                let archive = dir.join("source.tar");
                let script = format!(
                    "git -C '{repo}' archive --format=tar -o '{archive}' {commit} && tar -xf '{archive}' -C '{target}'; status=$?; rm -f '{archive}'; exit $status",
                    repo = repository.replace('\'', "'\\''"),
                    archive = archive.display(),
                    target = partial.display(),
                );
                (
                    Once {
                        sandbox: None,
                        dir: dir.clone(),
                        variables: inherited(),
                        abandoned: Abandoned::default(),
                    },
                    script,
                )
            }
        };
        let (mut once, script) = once;
        once.abandoned = Abandoned {
            leftovers: Some(self.leftovers.of(env)),
            discard: vec![partial.clone(), scratch.clone()],
            holding: vec![Arc::clone(&held)],
        };
        let status = run_once(self.marked(once), &script, &log).await?;
        let _ = std::fs::remove_dir_all(&scratch);
        if !status.success() {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(format!(
                "exporting commit {commit} of {repository} failed ({status}): {}",
                tail(&log, 10)
            ));
        }
        std::fs::rename(&partial, &tree)
            .map_err(|e| format!("cannot move the checkout into place: {e}"))?;
        drop(held);
        Ok(tree)
    }

    /// Checks out the commit and runs the build command once per commit and command; the output goes to a log
    /// whose end is part of the error when the build fails. Returns a line saying what happened.
    pub(crate) async fn build(
        &self,
        env: &EnvironmentAddress,
        request: &BuildRequest,
        step: &StepLog,
    ) -> Result<String, String> {
        let builder = self.builder(env);
        let tree = self
            .checkout(env, &builder, &request.repository, &request.commit, step)
            .await?;
        let Some(command) = &request.command else {
            return Ok(format!("checked out {}", short(&request.commit)));
        };
        let dir = builder.commit_dir(&request.commit);
        let marker = dir.join(format!("built-{}-{}", request.service, short_hash(command)));
        // Both locks are held until nothing of an abandoned build runs any more (see `Abandoned`).
        let held: Holding = Arc::new(self.build_locks.lock(&marker).lock_owned().await);
        if marker.exists() {
            return Ok(format!(
                "{} at {} is already built",
                request.service,
                short(&request.commit)
            ));
        }
        let space = self.space(env);
        let cache_lock: Holding =
            Arc::new(self.prepare_cache(env, &builder, space.as_deref()).await?);
        step.check_lease().map_err(|e| e.message)?;
        let mut once = match (&self.isolation, &space) {
            (Some(isolation), Some(space)) => {
                let (sandbox, home) = isolation.sandbox(
                    env,
                    space,
                    Work::Build {
                        tree: &tree,
                        directory: &request.directory,
                        builder: &builder,
                        service: &request.service,
                    },
                )?;
                let cache = layout::inside(layout::CACHE);
                Once {
                    variables: self.sandboxed_build_variables(home, cache, &request.commit),
                    sandbox: Some(sandbox),
                    dir: PathBuf::new(),
                    abandoned: Abandoned::default(),
                }
            }
            _ => {
                let mut variables = inherited();
                variables.push((
                    "PREVIEW_BUILD_CACHE".to_owned(),
                    builder.cache.clone().into_os_string(),
                ));
                variables.push(("PREVIEW_COMMIT".to_owned(), OsString::from(&request.commit)));
                Once {
                    sandbox: None,
                    dir: tree.join(&request.directory),
                    variables,
                    abandoned: Abandoned::default(),
                }
            }
        };
        once.abandoned = Abandoned {
            leftovers: Some(self.leftovers.of(env)),
            discard: Vec::new(),
            holding: vec![Arc::clone(&held), Arc::clone(&cache_lock)],
        };
        let log = dir.join(format!("build-{}.log", request.service));
        let started = Instant::now();
        let status = run_once(self.marked(once), command, &log).await?;
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

    /// `once` with the variable that marks this runtime's processes (how a restarted daemon finds what a killed
    /// one left, where there are no cgroups).
    fn marked(&self, mut once: Once) -> Once {
        once.variables.push((
            crate::strays::MARKER_VARIABLE.to_owned(),
            OsString::from(&self.marker),
        ));
        once
    }

    /// Makes the builder's cache (a preview's as a copy of its project's), takes its lock — builds sharing a
    /// cache run one at a time, in this daemon and any other using the same directory — and hands it to the
    /// builder. The lock is held until the returned file is dropped.
    async fn prepare_cache(
        &self,
        env: &EnvironmentAddress,
        builder: &Builder,
        space: Option<&Space>,
    ) -> Result<std::fs::File, String> {
        let leftovers = self.leftovers.of(env);
        // Two builds of one preview start at once: one copies, the other waits for the copy.
        let copying = self.build_locks.lock(&builder.cache).lock_owned().await;
        if !builder.cache.exists()
            && let Some(seed) = builder.seed.clone().filter(|s| s.is_dir())
        {
            // A project build in progress is not copied half-done.
            let seed_lock = lock_file(cache_lock(&seed)).await?;
            let target = builder.cache.clone();
            // A copy cannot be stopped: abandoned, it still ends before its environment settles, and holds the
            // locks until then, so that no second copy starts into the same place meanwhile.
            let copy = tokio::task::spawn_blocking(move || {
                let copied = crate::trees::copy_tree(&seed, &target, &[]);
                drop((seed_lock, copying));
                copied
            });
            leftovers
                .outlive(copy)
                .await
                .map_err(|e| format!("copying the project's build cache failed: {e}"))??;
        }
        crate::trees::own_dir(&builder.cache, None, 0o700)?;
        let lock = lock_file(cache_lock(&builder.cache)).await?;
        let home = builder.cache.join("home");
        std::fs::create_dir_all(&home)
            .map_err(|e| format!("cannot create {}: {e}", home.display()))?;
        if let Some(space) = space {
            let (cache, user) = (builder.cache.clone(), space.builder);
            let handing =
                tokio::task::spawn_blocking(move || crate::trees::hand_over(&cache, user, user));
            leftovers
                .outlive(handing)
                .await
                .map_err(|e| format!("handing the build cache over failed: {e}"))??;
            crate::trees::own_dir(&builder.tmp(), Some(user), 0o700)?;
        }
        Ok(lock)
    }

    /// A sandboxed build's variables: tools where the build sees them, `HOME` in its cache.
    fn sandboxed_build_variables(
        &self,
        home: PathBuf,
        cache: PathBuf,
        commit: &str,
    ) -> Vec<(String, OsString)> {
        let tools = self
            .isolation
            .as_ref()
            .map(|i| i.tools())
            .unwrap_or_default();
        // A path in a tool directory (a toolchain's `bin` inside `~/.rustup`) is where the build sees it.
        let seen = |path: &Path| {
            tools.iter().find_map(|(host, inside)| {
                path.strip_prefix(host).ok().map(|rest| inside.join(rest))
            })
        };
        let path: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|p| {
                std::env::split_paths(&p)
                    .map(|dir| seen(&dir).unwrap_or(dir))
                    .collect()
            })
            .unwrap_or_else(|| std::env::split_paths(SYSTEM_PATH).collect());
        let mut variables = vec![
            (
                "PATH".to_owned(),
                std::env::join_paths(path).unwrap_or_else(|_| OsString::from(SYSTEM_PATH)),
            ),
            ("HOME".to_owned(), home.into_os_string()),
            ("PREVIEW_BUILD_CACHE".to_owned(), cache.into_os_string()),
            ("PREVIEW_COMMIT".to_owned(), OsString::from(commit)),
        ];
        for name in ["LANG", "RUSTUP_TOOLCHAIN"] {
            if let Some(value) = std::env::var_os(name) {
                variables.push((name.to_owned(), value));
            }
        }
        // rustup's proxies find their toolchains through RUSTUP_HOME, which defaults to a home the build does
        // not have.
        let rustup = std::env::var_os("RUSTUP_HOME")
            .and_then(|home| seen(Path::new(&home)))
            .or_else(|| {
                tools
                    .iter()
                    .find(|(host, _)| host.file_name().is_some_and(|n| n == ".rustup"))
                    .map(|(_, inside)| inside.clone())
            });
        if let Some(rustup) = rustup {
            variables.push(("RUSTUP_HOME".to_owned(), rustup.into_os_string()));
        }
        variables
    }
}

const SYSTEM_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

fn inherited() -> Vec<(String, OsString)> {
    INHERITED
        .iter()
        .filter_map(|name| Some(((*name).to_owned(), std::env::var_os(name)?)))
        .collect()
}

/// The lock of a build cache: next to it, in a directory of the daemon's — never inside the cache, which its
/// builder can fill with links and pipes.
pub(crate) fn cache_lock(cache: &Path) -> PathBuf {
    cache.with_extension("lock")
}

/// An exclusive lock on `path` (created if missing), held until the file is dropped. A link or anything but a
/// plain file there is refused, not followed or waited on.
pub(crate) async fn lock_file(path: PathBuf) -> Result<std::fs::File, String> {
    use std::os::unix::fs::OpenOptionsExt;
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            return Err(format!("{} is not a plain file", path.display()));
        }
        file.lock()
            .map_err(|e| format!("cannot lock {}: {e}", path.display()))?;
        Ok(file)
    })
    .await
    .map_err(|e| format!("the build lock failed: {e}"))?
}

pub(crate) fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

fn short_hash(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    preview_secrets::hex::encode(&digest.as_ref()[..6])
}
