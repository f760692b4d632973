//! The system programs isolation drives — `ip` (iproute2), `nft` (nftables) and the shadow tools — run with
//! their arguments and input, their error output kept for the message. Their output is never parsed.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::IsolationError;

/// Runs `program` with `args`, `input` on its standard input; an error with what it printed if it fails.
pub(crate) fn run(program: &str, args: &[&str], input: Option<&str>) -> Result<(), IsolationError> {
    let command = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| IsolationError::Program {
            command: command.clone(),
            output: e.to_string(),
        })?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| IsolationError::io(format!("writing to `{program}`"), e))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| IsolationError::io(format!("waiting for `{program}`"), e))?;
    if output.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&output.stderr);
    let said = if said.trim().is_empty() {
        String::from_utf8_lossy(&output.stdout).into_owned()
    } else {
        said.into_owned()
    };
    Err(IsolationError::Program {
        command,
        output: format!("{} ({})", said.trim(), output.status),
    })
}

/// Which of `programs` are not found in the system's program directories, each with the Debian package that
/// has it: `["nft (package nftables)"]`.
pub fn missing_programs(programs: &[&str]) -> Vec<String> {
    const DIRECTORIES: [&str; 6] = [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ];
    programs
        .iter()
        .filter(|program| {
            !DIRECTORIES
                .iter()
                .any(|dir| std::path::Path::new(dir).join(program).is_file())
        })
        .map(|program| match *program {
            "ip" => "ip (package iproute2)".to_owned(),
            "nft" => "nft (package nftables)".to_owned(),
            "useradd" | "userdel" | "groupadd" | "groupdel" => {
                format!("{program} (package passwd)")
            }
            other => other.to_owned(),
        })
        .collect()
}
