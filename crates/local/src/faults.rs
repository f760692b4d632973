//! Faults injected around the runtime's database operations, for the suite that proves a failed or killed step
//! leaves nothing behind. Only a daemon started with `PREVIEW_TEST_FAULTS=<file>` has them: at each operation it
//! reads the file, and a line `<operation> <fail|kill> <before|after>` makes the operation fail (an error from the
//! runtime) or the daemon die by SIGKILL, just before the operation or just after it took effect. Without the
//! variable, and in release builds, nothing is read.

use std::path::PathBuf;
use std::sync::OnceLock;

use preview_deploy::RuntimeError;

/// The operations faults can be injected around, as the fault file names them.
pub(crate) const OPERATIONS: &[&str] = &[
    "server",
    "role",
    "create",
    "seed",
    "golden",
    "handout",
    "warm",
    "mark",
    "drop",
    "drop-role",
    "copy",
    "install",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum When {
    Before,
    After,
}

/// The fault file; a release build never reads one.
fn file() -> Option<&'static PathBuf> {
    static FILE: OnceLock<Option<PathBuf>> = OnceLock::new();
    FILE.get_or_init(|| {
        std::env::var_os("PREVIEW_TEST_FAULTS")
            .filter(|_| cfg!(debug_assertions))
            .map(PathBuf::from)
    })
    .as_ref()
}

/// Fails or kills the daemon here when the fault file says so.
pub(crate) fn at(operation: &'static str, when: When) -> Result<(), RuntimeError> {
    debug_assert!(OPERATIONS.contains(&operation), "{operation}");
    let Some(file) = file() else {
        return Ok(());
    };
    let wanted = std::fs::read_to_string(file).unwrap_or_default();
    let when_name = match when {
        When::Before => "before",
        When::After => "after",
    };
    for line in wanted.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() != 3 || words[0] != operation || words[2] != when_name {
            continue;
        }
        match words[1] {
            "kill" => {
                preview_isolation::signals::signal_process(
                    std::process::id(),
                    preview_isolation::signals::SIGKILL,
                );
                // SIGKILL is not delivered at once; nothing more may happen meanwhile.
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
            }
            "fail" => {
                return Err(RuntimeError::new(format!(
                    "injected fault {when_name} the database operation `{operation}`"
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Runs `operation` between its two fault points.
pub(crate) async fn around<T>(
    operation: &'static str,
    run: impl std::future::Future<Output = Result<T, RuntimeError>>,
) -> Result<T, RuntimeError> {
    at(operation, When::Before)?;
    let value = run.await?;
    at(operation, When::After)?;
    Ok(value)
}
