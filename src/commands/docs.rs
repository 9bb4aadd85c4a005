//! `promoter completions SHELL` and `promoter man --out DIR`: generated from
//! the same clap definitions as `--help`, so they never disagree with it.

use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory;

use super::Context;
use crate::cli::{Cli, CompletionsArgs, ManArgs};
use crate::output;

/// Prints the completion script for a shell on stdout (under `--json`,
/// inside the one JSON object).
pub fn completions(ctx: &Context, args: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "promoter", &mut out);
    let script = String::from_utf8_lossy(&out).into_owned();
    if ctx.json {
        #[derive(serde::Serialize)]
        struct CompletionsView {
            shell: String,
            script: String,
        }
        output::print_json(&CompletionsView {
            shell: args.shell.to_string(),
            script,
        })?;
    } else {
        output::unless_closed(output::print(script.trim_end()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes one man page per command, subcommands named `promoter-keys-generate.1`.
pub fn man(ctx: &Context, args: &ManArgs) -> anyhow::Result<ExitCode> {
    let dir = ctx.cwd.join(&args.out);
    std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    let mut cmd = Cli::command();
    cmd.build();
    let mut written = Vec::new();
    write_pages(&cmd, "promoter", &dir, &mut written)?;
    if ctx.json {
        #[derive(serde::Serialize)]
        struct ManView {
            pages: Vec<String>,
        }
        output::print_json(&ManView { pages: written })?;
    } else {
        output::print(&format!(
            "wrote {} into {}; read one with `man -l {}`",
            output::plural(written.len(), "man page"),
            dir.display(),
            dir.join("promoter.1").display()
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn write_pages(
    cmd: &clap::Command,
    name: &str,
    dir: &Path,
    written: &mut Vec<String>,
) -> anyhow::Result<()> {
    let page = cmd.clone().name(name.to_owned());
    let mut bytes = Vec::new();
    clap_mangen::Man::new(page).render(&mut bytes)?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    written.push(path.display().to_string());
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}
