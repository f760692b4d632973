//! Where a PostgreSQL major version's programs are: the distribution's packages install each version side by side
//! under `/usr/lib/postgresql/<version>/bin`.

use std::path::{Path, PathBuf};

use crate::DatabaseError;

/// The programs of one major version.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub version: u32,
    dir: PathBuf,
}

impl Binaries {
    /// The programs of `version` under `root` (`/usr/lib/postgresql` on Debian and Ubuntu); an error naming the
    /// package to install when the server is missing.
    pub fn find_in(root: &Path, version: u32) -> Result<Binaries, DatabaseError> {
        let dir = root.join(version.to_string()).join("bin");
        for program in ["postgres", "initdb", "pg_dump"] {
            if !dir.join(program).is_file() {
                return Err(DatabaseError::Missing(format!(
                    "PostgreSQL {version} is not installed on this machine ({} is missing); install the package `postgresql-{version}` (for example `apt-get install postgresql-{version}`), or set `version` to an installed one{}",
                    dir.join(program).display(),
                    installed(root)
                        .map(|v| format!(" ({v})"))
                        .unwrap_or_default()
                )));
            }
        }
        Ok(Binaries { version, dir })
    }

    /// The programs of `version` where the distribution installs them.
    pub fn find(version: u32) -> Result<Binaries, DatabaseError> {
        Binaries::find_in(Path::new("/usr/lib/postgresql"), version)
    }

    /// `pg_dump` and `psql` able to read a server of `version` that runs elsewhere (a cluster's): those of
    /// `version` when installed, else of the oldest installed version above it (`pg_dump` reads older servers,
    /// never newer ones).
    pub fn client_for(version: u32) -> Result<Binaries, DatabaseError> {
        Binaries::client_in(Path::new("/usr/lib/postgresql"), version)
    }

    pub fn client_in(root: &Path, version: u32) -> Result<Binaries, DatabaseError> {
        let has_client = |v: u32| {
            let dir = root.join(v.to_string()).join("bin");
            ["pg_dump", "psql"]
                .iter()
                .all(|program| dir.join(program).is_file())
        };
        let mut versions: Vec<u32> = std::fs::read_dir(root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
            .filter(|v| *v >= version && has_client(*v))
            .collect();
        versions.sort_unstable();
        match versions.first() {
            Some(&found) => Ok(Binaries {
                version: found,
                dir: root.join(found.to_string()).join("bin"),
            }),
            None => Err(DatabaseError::Missing(format!(
                "copying a PostgreSQL {version} database needs `pg_dump` {version} or newer on this machine, and none is installed; install the package `postgresql-client-{version}` (for example `apt-get install postgresql-client-{version}`){}",
                installed(root)
                    .map(|v| format!(" ({v})"))
                    .unwrap_or_default()
            ))),
        }
    }

    pub fn program(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// `installed: 15, 16`, when any version is.
fn installed(root: &Path) -> Option<String> {
    let mut versions: Vec<u32> = std::fs::read_dir(root)
        .ok()?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|version: &u32| {
            root.join(version.to_string())
                .join("bin/postgres")
                .is_file()
        })
        .collect();
    versions.sort_unstable();
    (!versions.is_empty()).then(|| {
        format!(
            "installed: {}",
            versions
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_version_names_the_package() {
        let root = preview_testing::TempDir::new("binaries");
        let bin = root.path().join("15/bin");
        std::fs::create_dir_all(&bin).expect("a directory");
        for program in ["postgres", "initdb", "pg_dump"] {
            std::fs::write(bin.join(program), "").expect("a file");
        }
        assert!(Binaries::find_in(root.path(), 15).is_ok());
        let error = Binaries::find_in(root.path(), 17)
            .expect_err("missing")
            .to_string();
        assert!(error.contains("PostgreSQL 17 is not installed"), "{error}");
        assert!(error.contains("`postgresql-17`"), "{error}");
        assert!(error.contains("installed: 15"), "{error}");
    }

    #[test]
    fn a_client_reads_its_version_or_the_oldest_newer_one() {
        let root = preview_testing::TempDir::new("binaries-client");
        for version in ["14", "16", "17"] {
            let bin = root.path().join(version).join("bin");
            std::fs::create_dir_all(&bin).expect("a directory");
            for program in ["postgres", "pg_dump", "psql"] {
                std::fs::write(bin.join(program), "").expect("a file");
            }
        }
        assert_eq!(
            Binaries::client_in(root.path(), 14).expect("14").version,
            14
        );
        assert_eq!(
            Binaries::client_in(root.path(), 15).expect("16").version,
            16
        );
        assert_eq!(
            Binaries::client_in(root.path(), 17).expect("17").version,
            17
        );
        let error = Binaries::client_in(root.path(), 18)
            .expect_err("none new enough")
            .to_string();
        assert!(error.contains("`postgresql-client-18`"), "{error}");
        assert!(error.contains("installed: 14, 16, 17"), "{error}");
    }
}
