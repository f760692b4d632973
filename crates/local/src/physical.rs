//! Golden snapshots for physical isolation: a stopped server's data directory holding the (masked) copy as the
//! database `preview_golden`, under `<dir>/databases/golden-<id>/` with its description in `golden.json`. It is
//! built once per source, policy, rules and key on a server of its own (started, filled by the same streaming
//! copy as in logical mode, stopped); an environment's own server then starts from a copy of it (a reflink where
//! the file system has them, else a byte copy), and the copy's `preview_golden` is renamed to the environment's
//! database and handed to its role. MariaDB renames no database: a MySQL snapshot keeps only tables in
//! `preview_golden`, which each copy moves into the environment's database, and beside them in `definitions.sql`
//! the routines, views and triggers, made again there as the environment's user (`crate::mysql`). Older than the
//! spec's `refresh`, it is built again; it goes when the project has no server of that database left.

use std::path::{Path, PathBuf};

use preview_database::content::Engine;
use preview_database::postgres::admin;
use preview_database::postgres::server::remove_tree;
use preview_deploy::{DatabaseSnapshot, EnvironmentAddress, RuntimeError, StepLog};

use crate::databases::{DatabaseContent, DatabaseHost, copy_logged, fail};
use crate::faults::{self, When};
use crate::runtime::LocalRuntime;
use crate::snapshots::{Golden, GoldenMark, or_older, stale};

/// The database a physical golden snapshot holds, renamed in each copy to its environment's (MySQL's: its tables
/// moved into the environment's).
pub(crate) const GOLDEN_DATABASE: &str = "preview_golden";

/// Beside a MySQL physical golden snapshot's data: its routines, views and triggers, made again in each copy.
pub(crate) const DEFINITIONS: &str = "definitions.sql";

/// A physical golden snapshot's data directory, and its lock held: no rebuild replaces it while it is copied.
pub(crate) struct PhysicalGolden {
    pub data: PathBuf,
    _held: tokio::sync::OwnedMutexGuard<()>,
}

impl LocalRuntime {
    /// Where the project's physical golden snapshot of `service` is kept: the project and service are part of its
    /// name, as a database's name alone is not (`shop-eu`'s `staging` and `shop`'s `eu-staging` have the same).
    pub(crate) fn physical_golden_dir(
        &self,
        project: &str,
        service: &str,
        golden: &Golden,
    ) -> PathBuf {
        let digest = ring::digest::digest(
            &ring::digest::SHA256,
            format!("{project}\n{service}\n{}", golden.id).as_bytes(),
        );
        let id: String = digest.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.config
            .dir
            .join("databases")
            .join(format!("golden-{id}"))
    }

    /// The key of the server a physical golden snapshot is built on.
    pub(crate) fn golden_builder_key(project: &str, golden: &Golden, service: &str) -> String {
        format!("{project}/+golden-{}/{service}", golden.id)
    }

    /// The physical golden snapshot of `content`'s source, built if it is missing, older than `refresh`, or
    /// `rebuild` says so; returned with its lock held.
    pub(crate) async fn ensure_physical_golden(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        content: &DatabaseContent,
        log: &StepLog,
        rebuild: bool,
    ) -> Result<PhysicalGolden, RuntimeError> {
        let (from, _) = content.copied_from(service)?;
        let golden = Golden::of(content);
        let held = self
            .keyed_lock(&format!("physical/{}", env.project), service)
            .lock_owned()
            .await;
        let dir = self.physical_golden_dir(&env.project, service, &golden);
        let data = dir.join("data");
        let mut fallback = false;
        if !rebuild && data.is_dir() {
            let mark = read_mark(&dir)
                .filter(|mark| mark.project == env.project && mark.service == service);
            match stale(content, mark.as_ref(), service, from, log) {
                Some(may_fall_back) => fallback = may_fall_back,
                None => return Ok(PhysicalGolden { data, _held: held }),
            }
        }
        let began = std::time::Instant::now();
        let built = match content.engine {
            Engine::Mysql => {
                self.build_mysql_physical_golden(env, service, content, &golden, &dir, log)
                    .await
            }
            _ => {
                self.build_physical_golden(env, service, content, &golden, &dir, log)
                    .await
            }
        };
        preview_metrics::metrics().snapshot_built(&built, began);
        or_older(built, fallback, service, from, log)?;
        Ok(PhysicalGolden { data, _held: held })
    }

    /// Builds the physical golden snapshot into `dir`, replacing the one there. The caller holds its lock.
    async fn build_physical_golden(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        content: &DatabaseContent,
        golden: &Golden,
        dir: &Path,
        log: &StepLog,
    ) -> Result<(), RuntimeError> {
        let (from, source) = content.copied_from(service)?;
        let (source_server, _source_in_use) = self
            .physical_source(env, service, content, from, source)
            .await?;
        let masking = self.masking_for(env, service, content).await?;
        log.check_lease()?;
        faults::at("golden", When::Before)?;
        // A builder a killed daemon left goes first.
        let builder_key = Self::golden_builder_key(&env.project, golden, service);
        self.remove_server(&builder_key).await?;
        let started = std::time::Instant::now();
        let built = async {
            let builder = self
                .ensure_server(&builder_key, content.version.major())
                .await?;
            let host = DatabaseHost::of(&builder);
            let client = host.admin.connect().await.map_err(fail(service))?;
            admin::create_database(
                &client,
                GOLDEN_DATABASE,
                preview_database::postgres::server::ADMIN,
                None,
            )
            .await
            .map_err(fail(service))?;
            drop(client);
            copy_logged(
                service,
                &host,
                &source_server.server.admin().to_database(source),
                GOLDEN_DATABASE,
                masking.as_ref(),
                content.masking.as_ref().is_some_and(|m| m.strict),
                log,
            )
            .await
            .map_err(fail(service))
        }
        .await;
        let report = match built {
            Ok(report) => report,
            Err(error) => {
                let _ = self.remove_server(&builder_key).await;
                return Err(error);
            }
        };
        let built_data = self.stop_server(&builder_key).await;
        let mark = GoldenMark::now(env, service, content, &report, masking.as_ref());
        let placed = place(dir, &built_data, &mark, None);
        self.remove_server(&builder_key).await?;
        placed?;
        faults::at("golden", When::After)?;
        self.drop_replaced_physical_goldens(golden, &mark, service, log);
        log.line(format!(
            "database `{service}`: golden snapshot of `{from}` made{} in {} ms ({} tables, {} rows), kept as a stopped data directory",
            if masking.is_some() { ", masked," } else { "" },
            started.elapsed().as_millis(),
            report.tables,
            report.rows
        ));
        Ok(())
    }

    /// Physical golden snapshots of the same project, service, source and policy under another identity.
    pub(crate) fn drop_replaced_physical_goldens(
        &self,
        golden: &Golden,
        mark: &GoldenMark,
        service: &str,
        log: &StepLog,
    ) {
        for (dir, theirs) in self.physical_goldens() {
            if dir == self.physical_golden_dir(&mark.project, &mark.service, golden) {
                continue;
            }
            if (
                &theirs.project,
                &theirs.service,
                &theirs.from,
                &theirs.policy,
            ) == (&mark.project, &mark.service, &mark.from, &mark.policy)
                && remove_tree(&dir).is_ok()
            {
                log.line(format!(
                    "database `{service}`: the golden snapshot in {}, made under other rules or another key, removed",
                    dir.display()
                ));
            }
        }
    }

    /// Every physical golden snapshot, with its description.
    fn physical_goldens(&self) -> Vec<(PathBuf, GoldenMark)> {
        self.golden_dirs()
            .into_iter()
            .filter_map(|dir| Some((dir.clone(), read_mark(&dir)?)))
            .collect()
    }

    /// Every directory of a physical golden snapshot, whole or left half-placed by a kill.
    fn golden_dirs(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.config.dir.join("databases"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| entry.file_name().to_string_lossy().starts_with("golden-"))
            .map(|entry| entry.path())
            .collect()
    }

    /// Removes the builders of the project's physical golden snapshots of `service` that a killed daemon left, and
    /// the snapshots themselves once no environment's server of it is left.
    pub(crate) async fn remove_unused_physical_goldens(
        &self,
        project: &str,
        service: &str,
    ) -> Result<(), RuntimeError> {
        // Nobody builds one meanwhile.
        let _held = self
            .keyed_lock(&format!("physical/{project}"), service)
            .lock_owned()
            .await;
        // PostgreSQL's servers and MariaDB's (a service is of one engine).
        let mysql = self.mysql_server_keys();
        let keys: Vec<String> = self
            .recorded_server_keys()
            .into_iter()
            .chain(mysql.iter().cloned())
            .collect();
        let of_service = |key: &&String| {
            key.strip_prefix(&format!("{project}/"))
                .and_then(|rest| rest.strip_suffix(&format!("/{service}")))
                .is_some()
        };
        for builder in keys
            .iter()
            .filter(of_service)
            .filter(|key| key.contains("/+golden-"))
        {
            if mysql.contains(builder) {
                self.remove_mysql_server(builder).await?;
            } else {
                self.remove_server(builder).await?;
            }
        }
        if keys
            .iter()
            .filter(of_service)
            .any(|key| !key.contains("/+golden-"))
        {
            return Ok(());
        }
        // Whole or left half-placed by a kill (`.new` and `.old` are described from the start).
        for dir in self.golden_dirs() {
            if read_mark(&dir)
                .is_some_and(|mark| mark.project == project && mark.service == service)
            {
                remove_tree(&dir).map_err(|e| RuntimeError::new(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// Hands the copy's `preview_golden` database to the environment: renamed, owned by its role, its objects
    /// too, and closed to the golden owner. False when the server holds none (it was not started from a copy).
    pub(crate) async fn take_golden_copy(
        &self,
        host: &DatabaseHost,
        admin_client: &tokio_postgres::Client,
        name: &str,
        service: &str,
    ) -> Result<bool, RuntimeError> {
        if !admin::database_exists(admin_client, GOLDEN_DATABASE)
            .await
            .map_err(fail(service))?
        {
            return Ok(false);
        }
        admin::rename_database(admin_client, GOLDEN_DATABASE, name)
            .await
            .map_err(fail(service))?;
        host.hand_over_copy(admin_client, name, service).await?;
        Ok(true)
    }

    /// The physical golden snapshot the environment's database was made from, for `db snapshot(s)`.
    pub(crate) fn physical_snapshot_of(
        &self,
        env: &EnvironmentAddress,
        service: &str,
        content: &DatabaseContent,
    ) -> Option<DatabaseSnapshot> {
        let golden = Golden::of(content);
        let dir = self.physical_golden_dir(&env.project, service, &golden);
        let mark = read_mark(&dir)?;
        Some(DatabaseSnapshot {
            name: dir.display().to_string(),
            from: mark.from,
            policy: mark.policy,
            made_at: mark.made_at,
            size_bytes: size_of(&dir.join("data")),
            tables: mark.tables,
            rows: mark.rows,
            masking_key: mark.masking_key,
            warm: 0,
            warm_pool: 0,
            refresh_seconds: content.clone.refresh_seconds,
        })
    }
}

pub(crate) fn read_mark(dir: &Path) -> Option<GoldenMark> {
    std::fs::read(dir.join("golden.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
}

/// Puts a built data directory in place as the golden snapshot `dir`, replacing the one there: the data, its
/// description and the `definitions` that go with it (MySQL's, in `definitions.sql`) are put together in `<dir>.new`, which is then renamed to `dir` (the old one moved aside to
/// `<dir>.old` and removed), so that `dir` is always whole and described; what a kill leaves beside it is removed
/// with the project's snapshots.
pub(crate) fn place(
    dir: &Path,
    built: &Path,
    mark: &GoldenMark,
    definitions: Option<&[u8]>,
) -> Result<(), RuntimeError> {
    let fail = |e: String| RuntimeError::new(format!("cannot keep the golden snapshot: {e}"));
    let fresh = sibling(dir, "new");
    let old = sibling(dir, "old");
    remove_tree(&fresh).map_err(|e| fail(e.to_string()))?;
    remove_tree(&old).map_err(|e| fail(e.to_string()))?;
    // Only a directory, never a link the builder's user could have put there.
    if !std::fs::symlink_metadata(built).is_ok_and(|m| m.is_dir()) {
        return Err(fail(format!("{} is not a directory", built.display())));
    }
    crate::trees::own_dir(&fresh, None, 0o700).map_err(fail)?;
    crate::records::write_atomically(
        &fresh.join("golden.json"),
        &serde_json::to_vec(mark).map_err(|e| fail(e.to_string()))?,
    )
    .map_err(fail)?;
    if let Some(definitions) = definitions {
        crate::records::write_atomically(&fresh.join(DEFINITIONS), definitions).map_err(fail)?;
    }
    std::fs::rename(built, fresh.join("data"))
        .map_err(|e| fail(format!("{}: {e}", built.display())))?;
    // The daemon's own from now on (as its directory is): the builder's user goes with its server, and its id may
    // be given to another.
    let daemon = std::fs::metadata(&fresh).map_err(|e| fail(e.to_string()))?;
    preview_isolation::hand_tree_to(
        &fresh.join("data"),
        std::os::unix::fs::MetadataExt::uid(&daemon),
        std::os::unix::fs::MetadataExt::gid(&daemon),
    )
    .map_err(|e| fail(e.to_string()))?;
    if dir.is_dir() {
        std::fs::rename(dir, &old).map_err(|e| fail(e.to_string()))?;
    }
    std::fs::rename(&fresh, dir).map_err(|e| fail(e.to_string()))?;
    remove_tree(&old).map_err(|e| fail(e.to_string()))
}

/// `golden-<id>.<suffix>`, beside `dir`.
fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{suffix}"));
    dir.with_file_name(name)
}

fn size_of(path: &Path) -> u64 {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::read_dir(path)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| size_of(&entry.path()))
            .sum(),
        Ok(meta) => meta.len(),
        Err(_) => 0,
    }
}
