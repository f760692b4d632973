//! Where things are. On the host everything lives in the daemon's private data directory (and the build cache);
//! a sandboxed process sees its part of it at fixed paths below the sandbox root, the same for every
//! environment, so that build outputs recording paths (compiler caches do) stay valid from one builder to the
//! next.

use std::path::{Path, PathBuf};

/// Where a sandboxed process sees its own files (whatever directory of the host its filesystem is made on).
pub(crate) const INSIDE: &str = "/run/preview";

/// `INSIDE/<name>`: a path as a sandboxed process sees it.
pub(crate) fn inside(name: &str) -> PathBuf {
    Path::new(INSIDE).join(name)
}

/// Inside a sandbox: the checkout (read-only for apps and jobs, the build's own for builds).
pub(crate) const SOURCE: &str = "src";
/// Inside a sandbox: the home of an app or job.
pub(crate) const HOME: &str = "home";
/// Inside a sandbox: a build's cache (`PREVIEW_BUILD_CACHE`), with its `HOME` in `home/`.
pub(crate) const CACHE: &str = "cache";
/// Inside a sandbox: the repository's git directory while a commit is checked out, read-only.
pub(crate) const REPOSITORY: &str = "repository.git";
/// Inside a sandbox: where a commit is checked out.
pub(crate) const CHECKOUT: &str = "checkout";
/// Inside a sandbox: the tools builds may run (`tools/0`, `tools/1`, …), read-only.
pub(crate) const TOOLS: &str = "tools";

/// Who builds an environment's apps, and where that builder keeps checkouts and its cache. Environments that are
/// not previews share their project's builder; each preview has its own, whose cache starts as a copy of the
/// project's, so that nothing a pull request builds reaches the builds of the environments it was cloned from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Builder {
    /// Its key among the runtime's accounts: `build:shop` or `build:shop/pr-1`.
    pub key: String,
    /// `<commit>/tree` for each commit it checked out.
    pub checkouts: PathBuf,
    pub cache: PathBuf,
    /// For a preview's builder: the project builder's cache, which its own starts as a copy of.
    pub seed: Option<PathBuf>,
}

impl Builder {
    pub(crate) fn of(
        runtime_dir: &Path,
        cache_root: &Path,
        project: &str,
        preview: Option<&str>,
    ) -> Builder {
        let checkouts = runtime_dir.join("builds").join(project);
        let cache = cache_root.join(project);
        match preview {
            None => Builder {
                key: format!("build:{project}"),
                checkouts: checkouts.join("project"),
                cache: cache.join("project"),
                seed: None,
            },
            // A preview's cache is the daemon's own, not in a build cache other daemons may share: it goes with
            // the preview.
            Some(environment) => {
                let checkouts = checkouts.join("previews").join(environment);
                Builder {
                    key: format!("build:{project}/{environment}"),
                    cache: checkouts.join("cache"),
                    checkouts,
                    seed: Some(cache.join("project")),
                }
            }
        }
    }

    /// `<checkouts>/<commit>`: the checkout's own directory (the tree, build logs and markers). Commits are hex,
    /// so they never meet `cache` and `tmp` in the same directory.
    pub(crate) fn commit_dir(&self, commit: &str) -> PathBuf {
        self.checkouts.join(commit)
    }

    pub(crate) fn tree(&self, commit: &str) -> PathBuf {
        self.commit_dir(commit).join("tree")
    }

    /// Where its builds' `/tmp` is: not in the cache, which previews copy.
    pub(crate) fn tmp(&self) -> PathBuf {
        self.checkouts.join("tmp")
    }
}

pub(crate) use preview_database::content::git_dir;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_have_builders_of_their_own_seeded_from_the_project() {
        let staging = Builder::of(Path::new("/d/local"), Path::new("/c"), "shop", None);
        let preview = Builder::of(Path::new("/d/local"), Path::new("/c"), "shop", Some("pr-1"));
        assert_eq!(staging.key, "build:shop");
        assert_eq!(preview.key, "build:shop/pr-1");
        assert_eq!(
            staging.tree("abc"),
            Path::new("/d/local/builds/shop/project/abc/tree")
        );
        assert_eq!(
            preview.tree("abc"),
            Path::new("/d/local/builds/shop/previews/pr-1/abc/tree")
        );
        assert_eq!(staging.cache, Path::new("/c/shop/project"));
        assert_eq!(
            preview.cache,
            Path::new("/d/local/builds/shop/previews/pr-1/cache")
        );
        assert_eq!(preview.seed.as_deref(), Some(staging.cache.as_path()));
        assert_ne!(preview.tmp(), staging.tmp());
    }

    #[test]
    fn git_directories_of_repositories_and_worktrees() {
        let dir = preview_testing::TempDir::new("git-dir");
        let main = dir.path().join("main");
        std::fs::create_dir_all(main.join(".git/worktrees/feature")).expect("dirs");
        std::fs::write(main.join(".git/worktrees/feature/commondir"), "../..\n")
            .expect("commondir");
        let worktree = dir.path().join("feature");
        std::fs::create_dir_all(&worktree).expect("worktree");
        std::fs::write(
            worktree.join(".git"),
            format!(
                "gitdir: {}\n",
                main.join(".git/worktrees/feature").display()
            ),
        )
        .expect(".git file");
        assert_eq!(git_dir(&main), Ok(main.join(".git")));
        assert_eq!(
            git_dir(&worktree),
            Ok(main.join(".git/worktrees/feature/../.."))
        );
        assert!(git_dir(dir.path()).is_err());
    }
}
