//! `promoter resolve ENV CHANGESET --applied|--rolled-back --note "…"`: an
//! operator records how a partial, non-transactional application ended;
//! `--forget` records that a developer undid an applied changeset in DEV.

use std::process::ExitCode;
use std::time::Duration;

use super::Context;
use super::run::{self, StderrHooks};
use crate::cli::ResolveArgs;
use crate::engine;
use crate::ledger::Status;
use crate::output;

/// Appends a `resolved-applied` or `resolved-rolled-back` row for a changeset
/// left partially applied, with the operator's note.
pub fn run(ctx: &Context, args: &ResolveArgs) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let env = config.environment(&args.env)?;
    let outcome = if args.applied {
        Status::ResolvedApplied
    } else {
        Status::ResolvedRolledBack
    };
    let git = super::trust::GitTrust::work_tree(ctx)?;
    let mut receipt = super::trust::receipt_signer(&git, &env)?;
    let mut trust = engine::Trust {
        git_keyrings: &git.keyrings,
        git_policy: None,
        receipt: receipt.as_mut(),
    };
    let lock_wait = Duration::from_secs(args.lock_wait);
    let entry = if args.forget {
        ctx.block_on(engine::forget(
            &env,
            &config.file.ledger_schema,
            &args.changeset,
            &args.note,
            lock_wait,
            &mut trust,
            &mut StderrHooks::default(),
        ))
    } else {
        ctx.block_on(engine::resolve(
            &env,
            &config.file.ledger_schema,
            &args.changeset,
            outcome,
            &args.note,
            lock_wait,
            &mut trust,
            &mut StderrHooks::default(),
        ))
    }
    .map_err(|e| run::error(e, false, ctx.json))?;
    #[derive(serde::Serialize)]
    struct ResolvedView<'a> {
        environment: &'a str,
        changeset_id: &'a str,
        status: Status,
        ledger_seq: i64,
    }
    if ctx.json {
        output::print_json(&ResolvedView {
            environment: &env.name,
            changeset_id: &entry.changeset_id,
            status: entry.status,
            ledger_seq: entry.seq,
        })?;
    } else {
        output::unless_closed(output::print(&format!(
            "recorded {} as {} in {} (ledger #{})",
            entry.changeset_id,
            entry.status.as_str(),
            env.name,
            entry.seq
        )))?;
        if args.forget {
            output::eprint(&format!(
                "next: fix the scripts, `promoter seal {0} --force`, then `promoter apply {1}`",
                entry.changeset_id, env.name
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}
