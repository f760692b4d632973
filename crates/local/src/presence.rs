//! This daemon among the daemons of the machine. Each has a file in `/run/preview-daemons` named by its marker and
//! locked while it runs, so that a second daemon with the same marker (a copy of its data directory) is refused,
//! and so that what the daemons share on the machine is kept straight: IPv4 forwarding, turned on by the first that
//! needs it (with a note saying a daemon did) and off again by the last to stop. Everything here happens under one
//! machine-wide lock; a daemon killed without stopping leaves its file unlocked, which the next to look removes.

use std::fs::File;
use std::path::{Path, PathBuf};

const DIRECTORY: &str = "/run/preview-daemons";
const LOCK: &str = "/run/preview-daemons.lock";
/// Present while IPv4 forwarding is on because a daemon of this machine turned it on.
const FORWARDING_FLAG: &str = "/run/preview-forwarding-was-off";
const FORWARDING: &str = "/proc/sys/net/ipv4/ip_forward";

pub(crate) struct Presence {
    file: File,
    path: PathBuf,
}

/// The machine-wide lock, held until the file is dropped.
fn machine_lock() -> Result<File, String> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK)
        .map_err(|e| format!("cannot open {LOCK}: {e}"))?;
    file.lock()
        .map_err(|e| format!("cannot lock {LOCK}: {e}"))?;
    Ok(file)
}

impl Presence {
    /// Registers this daemon; an error when another running daemon has the same marker.
    pub(crate) fn register(marker: &str) -> Result<Presence, String> {
        let _machine = machine_lock()?;
        std::fs::create_dir_all(DIRECTORY)
            .map_err(|e| format!("cannot create {DIRECTORY}: {e}"))?;
        let path = Path::new(DIRECTORY).join(marker);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        if file.try_lock().is_err() {
            return Err(format!(
                "another daemon runs with this data directory's marker ({marker}): it uses this directory or a copy of it; stop it, or give the copy a marker of its own by removing its local/marker"
            ));
        }
        Ok(Presence { file, path })
    }

    /// Turns IPv4 forwarding on if it is off, with the note that a daemon did; returns whether forwarding is a
    /// daemon's doing (then only environments' traffic may be forwarded).
    pub(crate) fn forward(&self) -> Result<bool, String> {
        let _machine = machine_lock()?;
        let current = std::fs::read_to_string(FORWARDING)
            .map_err(|e| format!("cannot read {FORWARDING}: {e}"))?;
        if current.trim() == "0" {
            // The note first: a daemon killed in between leaves forwarding off with a note, never on without one.
            std::fs::write(FORWARDING_FLAG, b"")
                .map_err(|e| format!("cannot write {FORWARDING_FLAG}: {e}"))?;
            preview_isolation::enable_forwarding().map_err(|e| e.to_string())?;
        }
        Ok(Path::new(FORWARDING_FLAG).exists())
    }

    /// Leaves the machine; the last daemon to leave turns forwarding off again if a daemon turned it on.
    pub(crate) fn leave(self) {
        let Ok(_machine) = machine_lock() else {
            return;
        };
        drop(self.file);
        let _ = std::fs::remove_file(&self.path);
        let mut running = 0;
        for entry in std::fs::read_dir(DIRECTORY).into_iter().flatten().flatten() {
            let Ok(file) = std::fs::OpenOptions::new().write(true).open(entry.path()) else {
                continue;
            };
            if file.try_lock().is_ok() {
                // Its daemon was killed: nobody holds it any more.
                let _ = std::fs::remove_file(entry.path());
            } else {
                running += 1;
            }
        }
        if running == 0 && Path::new(FORWARDING_FLAG).exists() {
            let _ = std::fs::write(FORWARDING, "0");
            let _ = std::fs::remove_file(FORWARDING_FLAG);
        }
    }
}
