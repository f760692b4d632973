//! `preview completions SHELL` and `preview man`: the shell completion scripts and the manual pages, generated from
//! the command's own definitions, so they say what the command accepts.

use std::io::Write;
use std::path::Path;

use crate::exit::Failure;

/// The shells completion scripts are made for.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

pub fn completions(shell: Shell, mut command: clap::Command) -> Result<(), Failure> {
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "preview", &mut script);
    write_out(&script)
}

/// The top page to standard output; with `dir`, every page — `preview.1`, then one per command and subcommand
/// (`preview-env.1`, `preview-env-create.1`, …) — into it.
pub fn man(command: clap::Command, dir: Option<&Path>) -> Result<(), Failure> {
    let Some(dir) = dir else {
        let mut page = Vec::new();
        clap_mangen::Man::new(command)
            .render(&mut page)
            .map_err(|e| Failure::internal(format!("cannot render the manual page: {e}")))?;
        return write_out(&page);
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure::invalid(format!("cannot create {}: {e}", dir.display())))?;
    let mut written = 0;
    write_pages(
        &command.clone().name("preview"),
        "preview",
        dir,
        &mut written,
    )?;
    println!("{written} manual pages written to {}", dir.display());
    Ok(())
}

fn write_pages(
    command: &clap::Command,
    name: &str,
    dir: &Path,
    written: &mut usize,
) -> Result<(), Failure> {
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone().name(name.to_owned()))
        .render(&mut page)
        .map_err(|e| Failure::internal(format!("cannot render the manual page of {name}: {e}")))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, page)
        .map_err(|e| Failure::invalid(format!("cannot write {}: {e}", path.display())))?;
    *written += 1;
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}

fn write_out(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| Failure::internal(format!("cannot write to standard output: {e}")))
}
