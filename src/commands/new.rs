//! `promoter new SLUG`: the next numbered changeset with a first script.

use std::process::ExitCode;

use serde::Serialize;

use super::{CommandError, Context};
use crate::changeset::{self, ChangesetId, ChangesetMeta, TransactionMode};
use crate::cli::NewArgs;
use crate::output;

/// JSON: `promoter --json new`.
#[derive(Serialize)]
struct NewView {
    /// The new changeset's id.
    id: String,
    /// Its directory, relative to the project.
    path: String,
    /// The files created in it.
    files: Vec<String>,
}

/// Creates the next changeset (highest number + 1) with its `changeset.yaml`
/// and a first script.
pub fn run(ctx: &Context, args: &NewArgs) -> anyhow::Result<ExitCode> {
    changeset::validate_slug(&args.slug)?;
    let existing = changeset::source::discover(&ctx.root)?;
    let number = existing.iter().map(|d| d.id.number()).max().unwrap_or(0) + 1;
    let id = ChangesetId::new(number, &args.slug)?;
    if let Some(same) = existing.iter().find(|d| d.id.matches(&args.slug)) {
        output::eprint(&format!(
            "warning: {} already uses the slug `{}`",
            same.id, args.slug
        ));
    }
    let dir = changeset::changesets_dir(&ctx.root).join(id.as_str());
    std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    let transaction = if args.no_transaction {
        TransactionMode::None
    } else {
        TransactionMode::PerChangeset
    };
    let meta = ChangesetMeta {
        id: id.to_string(),
        description: args
            .description
            .clone()
            .unwrap_or_else(|| args.slug.replace('-', " ")),
        transaction,
        baseline: None,
    };
    let script_name = format!("001-{}.sql", args.slug);
    let script = match transaction {
        TransactionMode::PerChangeset => format!(
            "-- {id}: {}\n-- Scripts run in file-name order, all in one transaction with the ledger row.\n",
            meta.description
        ),
        TransactionMode::None => format!(
            "-- {id}: {}\n-- transaction: none — each statement runs on its own, in autocommit.\n",
            meta.description
        ),
    };
    for (name, content) in [
        (changeset::META_FILE, changeset::render_meta(&meta)),
        (script_name.as_str(), script),
    ] {
        let path = dir.join(name);
        if path.exists() {
            return Err(CommandError::usage(format!(
                "{} already exists",
                ctx.relative(&path).display()
            ))
            .into());
        }
        std::fs::write(&path, content).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    let view = NewView {
        id: id.to_string(),
        path: ctx.relative(&dir).display().to_string(),
        files: vec![changeset::META_FILE.to_owned(), script_name.clone()],
    };
    if ctx.json {
        output::print_json(&view)?;
    } else {
        output::print(&format!("created {}/", view.path))?;
        for f in &view.files {
            output::print(&format!("  {f}"))?;
        }
        output::print(&format!(
            "\nnext: write the SQL, `promoter seal {id}`, try it with `promoter apply dev`, then `promoter sign {id} --key FILE`"
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
