//! Capturing a process's output into a log file that rotates at a size limit (one previous file is kept), in lines
//! of at most [`MAX_LINE`] bytes; and reading a log's end for an error message, from a bounded part of the file.
//! Logs are the daemon's alone (mode 0600): apps print secrets.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// The longest line a log keeps in one piece.
pub(crate) const MAX_LINE: usize = 16 * 1024;

pub(crate) struct LogFile {
    path: PathBuf,
    limit: u64,
    /// The last lines written through this writer, when kept: one process's own output, apart from what other
    /// versions of its service write to the same file.
    recent: Option<Recent>,
}

/// The last [`RECENT_LINES`] lines one process wrote (each cut like [`tail`]'s).
#[derive(Clone, Default)]
pub(crate) struct Recent(std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<String>>>);

const RECENT_LINES: usize = 50;

impl Recent {
    fn push(&self, text: &str) {
        let Ok(mut lines) = self.0.lock() else {
            return;
        };
        for line in text.lines() {
            if lines.len() == RECENT_LINES {
                lines.pop_front();
            }
            lines.push_back(shown(line));
        }
    }

    /// The last `count` lines.
    pub(crate) fn last(&self, count: usize) -> String {
        let Ok(lines) = self.0.lock() else {
            return String::new();
        };
        let skip = lines.len().saturating_sub(count);
        lines
            .iter()
            .skip(skip)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl LogFile {
    pub(crate) fn new(path: &Path, limit: u64) -> Self {
        LogFile {
            path: path.to_path_buf(),
            limit,
            recent: None,
        }
    }

    /// A writer that also keeps what it writes in `recent`.
    pub(crate) fn keeping(path: &Path, limit: u64, recent: &Recent) -> Self {
        LogFile {
            path: path.to_path_buf(),
            limit,
            recent: Some(recent.clone()),
        }
    }

    /// The rotated-out file: `app.log` → `app.log.1`.
    pub(crate) fn previous(path: &Path) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(".1");
        PathBuf::from(name)
    }

    /// Appends each line of `stream` (prefixed with `prefix`), rotating when the file passes the limit. A line
    /// longer than [`MAX_LINE`] is cut into pieces: a process that prints without end cannot make the daemon hold
    /// its output.
    pub(crate) async fn capture(&self, mut stream: impl AsyncRead + Unpin, prefix: &'static str) {
        // Lines, and the batches written at once, fit twice in the file: the file never passes its limit.
        let batch = usize::try_from(self.limit / 2)
            .unwrap_or(MAX_LINE)
            .clamp(1, 64 * 1024);
        let longest = batch.min(MAX_LINE);
        let mut buffer = vec![0u8; 64 * 1024];
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let read = match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => read,
            };
            let mut lines = Vec::new();
            let mut rest = &buffer[..read];
            while !rest.is_empty() {
                let room = longest - pending.len();
                let end = rest.iter().take(room).position(|b| *b == b'\n');
                let (taken, complete) = match end {
                    Some(newline) => (newline + 1, true),
                    None if rest.len() >= room => (room, true),
                    None => (rest.len(), false),
                };
                pending.extend_from_slice(&rest[..taken]);
                rest = &rest[taken..];
                if complete {
                    if pending.last() != Some(&b'\n') {
                        pending.push(b'\n');
                    }
                    if lines.len() + prefix.len() + pending.len() > batch && !lines.is_empty() {
                        self.append(&String::from_utf8_lossy(&lines)).await;
                        lines.clear();
                    }
                    lines.extend_from_slice(prefix.as_bytes());
                    lines.append(&mut pending);
                }
            }
            if !lines.is_empty() {
                self.append(&String::from_utf8_lossy(&lines)).await;
            }
        }
        if !pending.is_empty() {
            pending.push(b'\n');
            self.append(&format!("{prefix}{}", String::from_utf8_lossy(&pending)))
                .await;
        }
    }

    pub(crate) async fn append(&self, text: &str) {
        if let Some(recent) = &self.recent {
            recent.push(text);
        }
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

/// The last `lines` lines of a log, read from at most its last 64 KiB, each cut to 400 characters: what an error
/// message quotes of a process's output, whatever the process wrote.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    const WINDOW: u64 = 64 * 1024;
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let length = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut bytes = Vec::new();
    if file
        .seek(SeekFrom::Start(length.saturating_sub(WINDOW)))
        .is_err()
        || file.take(WINDOW).read_to_end(&mut bytes).is_err()
    {
        return String::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|line| shown(line))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A line as a message quotes it: control characters made visible, cut to 400 characters.
fn shown(line: &str) -> String {
    let shown = visible(line);
    match shown.char_indices().nth(400) {
        Some((cut, _)) => format!("{}…", &shown[..cut]),
        None => shown,
    }
}

/// `line` with its control characters (but tabs) written as `\x1b` and the like: a process's output quoted in a
/// message cannot move a terminal's cursor, erase what was printed or reach its clipboard.
pub(crate) fn visible(line: &str) -> String {
    line.chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                format!("\\x{:02x}", u32::from(c))
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn endless_lines_are_cut_and_the_end_of_a_log_is_read_within_bounds() {
        let dir = preview_testing::TempDir::new("logs");
        let path = dir.path().join("app.log");
        let log = LogFile::new(&path, 1 << 20);
        // 100 000 bytes without a newline, then a short line, then an unfinished one.
        let mut output = vec![b'x'; 100_000];
        output.extend_from_slice(b"\nshort line\nunfinished");
        log.capture(&output[..], "").await;
        let written = std::fs::read_to_string(&path).expect("log");
        let lines: Vec<&str> = written.lines().collect();
        assert!(
            lines.iter().all(|l| l.len() <= MAX_LINE),
            "a line longer than {MAX_LINE}"
        );
        assert_eq!(
            lines.iter().map(|l| l.len()).sum::<usize>(),
            100_000 + 10 + 10
        );
        assert_eq!(&lines[lines.len() - 2..], ["short line", "unfinished"]);
        let end = tail(&path, 3);
        assert!(end.ends_with("short line\nunfinished"), "{end}");
        assert_eq!(
            visible("a\x1b[2K\rb\x1b]52;c;AAAA\x07\tc"),
            "a\\x1b[2K\\x0db\\x1b]52;c;AAAA\\x07\tc"
        );
        assert!(end.lines().all(|l| l.chars().count() <= 401), "{end}");
    }
}
