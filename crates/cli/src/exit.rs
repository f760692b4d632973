//! How a command fails. Invalid input exits 1 with a message for people or as JSON; an internal error (a bug)
//! exits 2 through the panic hook installed by [`exit_with_2_on_panic`].

use std::process::ExitCode;

use crate::output::OutputFormat;

/// Why a command failed: its input or the requested change (exit 1), or something internal (exit 2).
pub enum Failure {
    /// The user's input is wrong, or the requested change did not happen; the message says what and where, the
    /// code what kind of problem it is (the daemon's code — `bad_request`, `not_found`, `conflict`, … — or
    /// `invalid_input`). Already printed if `printed`.
    Invalid {
        code: String,
        message: String,
        printed: bool,
    },
    /// The daemon failed internally; its log has the details.
    Internal(String),
}

impl Failure {
    pub fn invalid(message: impl Into<String>) -> Self {
        Failure::coded("invalid_input", message)
    }

    /// Invalid input the daemon refused with `code`.
    pub fn coded(code: impl Into<String>, message: impl Into<String>) -> Self {
        Failure::Invalid {
            code: code.into(),
            message: message.into(),
            printed: false,
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Failure::Internal(message.into())
    }

    /// Invalid input whose details the command has already printed.
    pub fn reported() -> Self {
        Failure::Invalid {
            code: String::new(),
            message: String::new(),
            printed: true,
        }
    }

    pub fn report(self, format: OutputFormat) -> ExitCode {
        match self {
            Failure::Invalid { printed: true, .. } => ExitCode::from(1),
            Failure::Invalid { code, message, .. } => {
                print_error(&code, &message, format);
                ExitCode::from(1)
            }
            Failure::Internal(message) => {
                print_error("internal", &message, format);
                ExitCode::from(2)
            }
        }
    }
}

/// A bug must not look like a verdict on the user's input: report it and exit 2.
pub fn exit_with_2_on_panic() {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("internal error: {info}");
        eprintln!("this is a bug in preview, not a problem with your input; please report it");
        std::process::exit(2);
    }));
}

/// Every failure has one shape in JSON: `{"ok": false, "error": {"code": …, "message": …}}`, the daemon's API
/// errors' shape with `ok` added.
fn print_error(code: &str, message: &str, format: OutputFormat) {
    match format {
        OutputFormat::Text => eprintln!("error: {message}"),
        OutputFormat::Json => println!(
            "{}",
            serde_json::json!({ "ok": false, "error": { "code": code, "message": message } })
        ),
    }
}
