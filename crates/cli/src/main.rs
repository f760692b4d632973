//! The `preview` command. For now it validates specs and writes a starter; later it drives the daemon.
//!
//! Exit codes: 0 success, 1 invalid input (a bad spec, argument or file), 2 internal error (a bug).

mod commands;
mod exit;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::output::OutputFormat;

/// Full-stack preview environments for every pull request.
#[derive(Parser)]
#[command(name = "preview", version)]
struct Cli {
    /// Output format: human-readable text or JSON for scripts.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a commented starter `preview.yaml` into DIR (default: the current directory).
    Init {
        /// Directory to write `preview.yaml` into; created if missing.
        dir: Option<PathBuf>,
        /// Replace an existing `preview.yaml`.
        #[arg(long)]
        force: bool,
    },
    /// Check a spec and print a summary of it, or every problem with file:line:column and key path.
    Validate {
        /// The spec file.
        #[arg(long, short = 'f', default_value = "preview.yaml")]
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    exit::exit_with_2_on_panic();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // Help and version are successes; anything else is a bad argument, which is invalid input.
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let result = match cli.command {
        Command::Init { dir, force } => commands::init::run(dir, force, cli.output),
        Command::Validate { file } => commands::validate::run(&file, cli.output),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(cli.output),
    }
}
