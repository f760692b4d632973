//! Capturing a process's output into a log file that rotates at a size limit (one previous file is kept). Logs
//! are the daemon's alone (mode 0600): apps print secrets.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};

pub(crate) struct LogFile {
    path: PathBuf,
    limit: u64,
}

impl LogFile {
    pub(crate) fn new(path: &Path, limit: u64) -> Self {
        LogFile {
            path: path.to_path_buf(),
            limit,
        }
    }

    /// The rotated-out file: `app.log` → `app.log.1`.
    pub(crate) fn previous(path: &Path) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(".1");
        PathBuf::from(name)
    }

    /// Appends each line of `stream` (prefixed with `prefix`), rotating when the file passes the limit.
    pub(crate) async fn capture(&self, stream: impl AsyncRead + Unpin, prefix: &'static str) {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            self.append(&format!("{prefix}{line}\n")).await;
        }
    }

    pub(crate) async fn append(&self, text: &str) {
        if let Ok(metadata) = tokio::fs::metadata(&self.path).await
            && metadata.len() + text.len() as u64 > self.limit
        {
            let _ = tokio::fs::rename(&self.path, LogFile::previous(&self.path)).await;
        }
        // Only the daemon's user may read a log: apps print secrets.
        if let Ok(mut file) = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)
            .await
        {
            // tokio finishes a write on a blocking thread after `write_all` returns; `flush` waits for it, so the
            // next size check and any reader see this line.
            let _ = file.write_all(text.as_bytes()).await;
            let _ = file.flush().await;
        }
    }
}
