//! How a command fails. Invalid input exits 1 with a message for people or as JSON; an internal error (a bug)
//! exits 2 through the panic hook installed by [`exit_with_2_on_panic`].

use std::process::ExitCode;

use crate::output::OutputFormat;

/// A command's failure caused by its input: exit code 1.
pub enum Failure {
    /// The user's input is wrong; the message says what and where. Already printed if `printed`.
    Invalid { message: String, printed: bool },
}

impl Failure {
    pub fn invalid(message: impl Into<String>) -> Self {
        Failure::Invalid {
            message: message.into(),
            printed: false,
        }
    }

    /// Invalid input whose details the command has already printed.
    pub fn reported() -> Self {
        Failure::Invalid {
            message: String::new(),
            printed: true,
        }
    }

    pub fn report(self, format: OutputFormat) -> ExitCode {
        match self {
            Failure::Invalid { printed: true, .. } => ExitCode::from(1),
            Failure::Invalid { message, .. } => {
                match format {
                    OutputFormat::Text => eprintln!("error: {message}"),
                    OutputFormat::Json => println!(
                        "{}",
                        serde_json::json!({ "ok": false, "error": { "kind": "invalid", "message": message } })
                    ),
                }
                ExitCode::from(1)
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
