//! The daemon's log: `tracing` events on stderr, chosen by `RUST_LOG` (default `info`), as text or as one JSON
//! object per line for log collectors.
//!
//! Other libraries' events below `error` are never written, whatever `RUST_LOG` asks: some of them carry
//! statement text or request and response bodies at `debug` and even `warn` (the Kubernetes client logs a body it
//! cannot read, a Secret's included), and no secret value may reach a log at any level. The daemon's own events
//! carry names, ids and redacted messages only. In text, a line break inside an event (an app's output quoted in
//! an error) is written as `\n`: what a pull request's code prints cannot pass for a line of the daemon's own.

use std::io::{IsTerminal, Write};

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

/// Whether an event or span may be written at all: the daemon's own at any level, other libraries' errors only.
fn may_be_written(metadata: &Metadata<'_>) -> bool {
    metadata.target().starts_with("preview_") || *metadata.level() <= Level::ERROR
}

/// Writes each formatted event (one call per event, its line break last) with the line breaks inside it escaped.
struct OneLine<W>(W);

impl<W: Write> Write for OneLine<W> {
    fn write(&mut self, event: &[u8]) -> std::io::Result<usize> {
        let (body, ended) = match event.strip_suffix(b"\n") {
            Some(body) => (body, true),
            None => (event, false),
        };
        let mut line = Vec::with_capacity(event.len() + 8);
        for &byte in body {
            match byte {
                b'\n' => line.extend_from_slice(b"\\n"),
                b'\r' => line.extend_from_slice(b"\\r"),
                _ => line.push(byte),
            }
        }
        if ended {
            line.push(b'\n');
        }
        self.0.write_all(&line)?;
        Ok(event.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

fn one_line_stderr() -> OneLine<std::io::Stderr> {
    OneLine(std::io::stderr())
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
            .with_writer(one_line_stderr)
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
    fn other_libraries_write_errors_only() {
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
        assert!(check("tokio_postgres::query", Level::ERROR));
        assert!(!check("tokio_postgres::query", Level::DEBUG));
        assert!(!check("kube_client::client", Level::TRACE));
        assert!(!check("kube_client::client", Level::WARN));
        assert!(check("hyper", Level::ERROR));
    }

    #[test]
    fn a_line_break_inside_an_event_is_escaped() {
        let mut written = Vec::new();
        let mut writer = OneLine(&mut written);
        writer
            .write_all(b"INFO step failed: app said\n2026-11-30 INFO committed\r\n")
            .expect("write");
        writer.write_all(b"INFO next\n").expect("write");
        assert_eq!(
            String::from_utf8(written).expect("utf-8"),
            "INFO step failed: app said\\n2026-11-30 INFO committed\\r\nINFO next\n"
        );
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
