//! What the local runtime has applied, one JSON file per resource in the environment's directory: the source of
//! truth for `observe`, for starting apps again after a restart, and for cleaning up.

use std::path::{Path, PathBuf};

use preview_plan::ResourceKind;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub id: String,
    pub kind: ResourceKind,
    pub hash: String,
    pub content: serde_json::Value,
}

impl Record {
    pub(crate) fn of(resource: &preview_plan::Resource) -> Record {
        Record {
            id: resource.id.clone(),
            kind: resource.kind,
            hash: resource.hash.clone(),
            content: resource.content.clone(),
        }
    }

    /// The resource as applied, to apply again (its dependencies are not recorded: they were met then).
    pub(crate) fn resource(&self) -> preview_plan::Resource {
        preview_plan::Resource {
            id: self.id.clone(),
            kind: self.kind,
            depends_on: Vec::new(),
            content: self.content.clone(),
            hash: self.hash.clone(),
        }
    }
}

/// `<root>/<project>/<environment>`: everything of one environment.
#[derive(Debug, Clone)]
pub(crate) struct EnvironmentDir {
    pub path: PathBuf,
}

impl EnvironmentDir {
    pub(crate) fn new(root: &Path, project: &str, environment: &str) -> Self {
        EnvironmentDir {
            path: root.join(project).join(environment),
        }
    }

    fn record_path(&self, id: &str) -> PathBuf {
        // Ids are `kind/name` with DNS-safe names: `/` is the only character to replace.
        self.path
            .join("resources")
            .join(format!("{}.json", id.replace('/', "~")))
    }

    pub(crate) fn log_path(&self, service: &str) -> PathBuf {
        self.path.join("logs").join(format!("{service}.log"))
    }

    pub(crate) fn home(&self, service: &str) -> PathBuf {
        self.path.join("home").join(service)
    }

    /// The environment's `/tmp` (and `/var/tmp`) when its processes run in sandboxes.
    pub(crate) fn tmp(&self) -> PathBuf {
        self.path.join("tmp")
    }

    pub(crate) fn read(&self, id: &str) -> Result<Option<Record>, String> {
        read_json(&self.record_path(id))
    }

    pub(crate) fn all(&self) -> Vec<Record> {
        let Ok(entries) = std::fs::read_dir(self.path.join("resources")) else {
            return Vec::new();
        };
        let mut records: Vec<Record> = entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
            .collect();
        records.sort_by(|a: &Record, b: &Record| a.id.cmp(&b.id));
        records
    }

    pub(crate) fn write(&self, record: &Record) -> Result<(), String> {
        let bytes = serde_json::to_vec_pretty(record).map_err(|e| e.to_string())?;
        write_atomically(&self.record_path(&record.id), &bytes)
    }

    fn intent_path(&self, id: &str) -> PathBuf {
        self.path
            .join("intents")
            .join(format!("{}.json", id.replace('/', "~")))
    }

    /// What a step is about to make, written before it makes anything that outlives the daemon (a database):
    /// removing the resource then finds it even when the step never finished.
    pub(crate) fn write_intent(&self, id: &str, content: &serde_json::Value) -> Result<(), String> {
        let bytes = serde_json::to_vec(content).map_err(|e| e.to_string())?;
        write_atomically(&self.intent_path(id), &bytes)
    }

    pub(crate) fn read_intent(&self, id: &str) -> Result<Option<serde_json::Value>, String> {
        read_json(&self.intent_path(id))
    }

    pub(crate) fn remove_intent(&self, id: &str) -> Result<(), String> {
        match std::fs::remove_file(self.intent_path(id)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("cannot remove the intent of {id}: {e}")),
        }
    }

    pub(crate) fn remove(&self, id: &str) -> Result<(), String> {
        let path = self.record_path(id);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("cannot remove {}: {e}", path.display())),
        }
    }
}

/// The JSON file at `path`, `None` when there is none.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{} is damaged: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Every environment directory under `root`, as (project, environment).
pub(crate) fn environments(root: &Path) -> Vec<(String, String)> {
    let names = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.path().is_dir())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut found = Vec::new();
    for project in names(root) {
        for environment in names(&root.join(&project)) {
            found.push((project.clone(), environment));
        }
    }
    found.sort();
    found
}

/// Removes the file `path` (nothing to do when it is absent) and syncs its directory: a crash afterwards does not
/// bring it back.
pub(crate) fn remove_durably(path: &Path) -> Result<(), String> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot remove {}: {e}", path.display())),
    }
    match path.parent() {
        Some(parent) => std::fs::File::open(parent)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| format!("cannot sync {}: {e}", parent.display())),
        None => Ok(()),
    }
}

/// Writes `bytes` to a new file next to `path`, syncs it and renames it over `path`: readers and a crash see the
/// old content or the new, never a part.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&partial)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&partial, path)
    };
    write().map_err(|e| format!("cannot write {}: {e}", path.display()))
}
