//! `promoter init`: lay out a project without overwriting anything.

use std::process::ExitCode;

use serde::Serialize;

use super::Context;
use crate::output;

const GITATTRIBUTES: &str = "\
# promoter hashes and executes bundle files byte for byte: never convert line endings.
changesets/** -text
";

const GITIGNORE: &str = "\
# Secret keys and revocation certificates never belong in the repository:
# only public certificates (<FPR>.asc) go into keys/.
*.secret.asc
*.rev.asc
# Data profiles and other local state.
.promoter/
";

/// JSON: `promoter --json init`.
#[derive(Serialize)]
struct InitView {
    /// Files created.
    created: Vec<String>,
    /// Files that already existed and were left alone.
    kept: Vec<String>,
}

/// Creates what is missing and keeps what exists; warns if an existing
/// `.gitattributes` does not protect bundle bytes.
pub fn run(ctx: &Context) -> anyhow::Result<ExitCode> {
    let mut view = InitView {
        created: Vec::new(),
        kept: Vec::new(),
    };
    std::fs::create_dir_all(&ctx.root)
        .map_err(|e| anyhow::anyhow!("{}: {e}", ctx.root.display()))?;
    let files = [
        (crate::config::CONFIG_FILE, crate::config::TEMPLATE),
        (".gitattributes", GITATTRIBUTES),
        (".gitignore", GITIGNORE),
        ("keys/developers/.gitkeep", ""),
        ("keys/customers/.gitkeep", ""),
        ("changesets/.gitkeep", ""),
    ];
    for (name, content) in files {
        let path = ctx.root.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| anyhow::anyhow!("{}: {e}", parent.display()))?;
        }
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path);
        match created {
            Ok(mut file) => {
                use std::io::Write;
                file.write_all(content.as_bytes())
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                view.created.push(name.to_owned());
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if name == ".gitignore" {
                    let existing = std::fs::read_to_string(&path).unwrap_or_default();
                    if !existing.lines().any(|l| l.trim() == "*.secret.asc") {
                        output::eprint(
                            "warning: .gitignore exists without `*.secret.asc`; add it (and `*.rev.asc`) so a secret key is never committed",
                        );
                    }
                }
                if name == ".gitattributes" {
                    let existing = std::fs::read_to_string(&path).unwrap_or_default();
                    if !existing.lines().any(|l| l.trim() == "changesets/** -text") {
                        output::eprint(
                            "warning: .gitattributes exists without `changesets/** -text`; add it so git never converts line endings of bundle files",
                        );
                    }
                }
                view.kept.push(name.to_owned());
            }
            Err(e) => return Err(anyhow::anyhow!("{}: {e}", path.display())),
        }
    }
    // promote reads bundles, keys and environments.yaml from git: a project
    // needs a repository. Offered on a terminal, said otherwise.
    let in_repository = crate::changeset::source::work_tree(&ctx.root).is_some();
    if !in_repository {
        let ask = !ctx.json && output::stdin_is_terminal();
        let yes = ask
            && {
                eprint!(
                    "{} is not in a git repository, which `promoter promote` reads from; run `git init` here? [y/N] ",
                    ctx.root.display()
                );
                let mut answer = String::new();
                std::io::stdin().read_line(&mut answer)?;
                matches!(answer.trim(), "y" | "Y" | "yes")
            };
        if yes {
            git2::Repository::init(&ctx.root)
                .map_err(|e| anyhow::anyhow!("git init {}: {}", ctx.root.display(), e.message()))?;
            output::eprint(&format!(
                "initialized an empty git repository in {}",
                ctx.root.display()
            ));
        } else {
            output::eprint(&format!(
                "note: {} is not in a git repository; `promoter promote` reads from git: run `git init` and commit",
                ctx.root.display()
            ));
        }
    }
    if ctx.json {
        output::print_json(&view)?;
    } else {
        for name in &view.created {
            output::print(&format!("created  {name}"))?;
        }
        for name in &view.kept {
            output::print(&format!("kept     {name} (already exists)"))?;
        }
        if !view.created.is_empty() {
            output::print(
                "\nnext: put developer certificates in keys/developers/, customer certificates in keys/customers/,",
            )?;
            output::print("      then `promoter new SLUG` to write your first changeset")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
