//! The daemon's log: `tracing` events on stderr, chosen by `RUST_LOG` (default `info`), as text or as one JSON
//! object per line for log collectors.
//!
//! Other libraries' events below `info` are never written, whatever `RUST_LOG` asks: some of them carry statement
//! text or request bodies at `debug` (the database client logs `ALTER ROLE … PASSWORD` as it sends it), and no
//! secret value may reach a log at any level. The daemon's own events carry names, ids and redacted messages only.

use std::io::IsTerminal;

use tracing::{Level, Metadata};
use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

/// How each log line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Time, level, where, message and the fields of the spans it happened in.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, the event's fields (`message` among them), the
    /// innermost `span` and the list of `spans` with their fields (`deployment`, `step`, `request_id`, …).
    Json,
}

impl LogFormat {
    pub fn parse(text: &str) -> Result<LogFormat, String> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "`{other}` is not a log format; use `text` or `json`"
            )),
        }
    }
}

/// Whether an event or span may be written at all: the daemon's own at any level, other libraries' at `info`
/// and above.
fn may_be_written(metadata: &Metadata<'_>) -> bool {
    metadata.target().starts_with("preview") || *metadata.level() <= Level::INFO
}

/// The filter `RUST_LOG` asks for; `info` when it is unset or empty.
fn requested_filter() -> Result<EnvFilter, String> {
    match std::env::var("RUST_LOG") {
        Ok(text) if !text.trim().is_empty() => EnvFilter::builder()
            .parse(&text)
            .map_err(|error| format!("RUST_LOG: `{text}` is not a log filter: {error}")),
        _ => Ok(EnvFilter::new("info")),
    }
}

/// Installs the daemon's log for this process. Fails on a `RUST_LOG` that is not a filter, or when a log is
/// installed already.
pub fn init_logging(format: LogFormat) -> Result<(), String> {
    let filter = requested_filter()?.and(filter_fn(may_be_written));
    let ansi = std::io::stderr().is_terminal();
    let layer = match format {
        LogFormat::Text => fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_current_span(true)
            .with_span_list(true)
            .flatten_event(true)
            .with_filter(filter)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(layer)
        .try_init()
        .map_err(|error| format!("cannot install the daemon's log: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_libraries_are_capped_at_info() {
        use tracing::callsite::Identifier;
        use tracing::field::FieldSet;
        use tracing::metadata::Kind;
        struct Site;
        impl tracing::callsite::Callsite for Site {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                unreachable!()
            }
        }
        static SITE: Site = Site;
        let check = |target: &'static str, level: Level| {
            let metadata = Metadata::new(
                "event",
                target,
                level,
                None,
                None,
                None,
                FieldSet::new(&[], Identifier(&SITE)),
                Kind::EVENT,
            );
            may_be_written(&metadata)
        };
        assert!(check("preview_server::daemon", Level::TRACE));
        assert!(check("preview_deploy::steps", Level::DEBUG));
        assert!(check("tokio_postgres::query", Level::INFO));
        assert!(!check("tokio_postgres::query", Level::DEBUG));
        assert!(!check("kube_client::client", Level::TRACE));
        assert!(check("hyper", Level::WARN));
    }

    #[test]
    fn log_formats() {
        assert_eq!(LogFormat::parse("json"), Ok(LogFormat::Json));
        assert_eq!(LogFormat::parse("text"), Ok(LogFormat::Text));
        assert!(
            LogFormat::parse("yaml")
                .expect_err("refused")
                .contains("`yaml` is not a log format")
        );
    }
}
