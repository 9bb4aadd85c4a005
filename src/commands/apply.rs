//! `promoter apply ENV`: pending sealed changesets from the work tree, in
//! order, to an environment that is not fed by another (DEV).

use std::process::ExitCode;

use super::run::{self, StderrHooks};
use super::{CommandError, Context};
use crate::changeset::{self, ChangesetId};
use crate::cli::ApplyArgs;
use crate::engine;

/// Applies pending changesets from the work tree to a root environment:
/// loads the bundles, and lets the engine lock, plan, check in full and
/// apply each changeset in its own transaction. Nothing is written unless
/// the whole plan passes.
pub fn run(ctx: &Context, args: &ApplyArgs) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let env = config.environment(&args.env)?;
    if let Some(from) = &env.config.promote_from {
        return Err(CommandError::usage(format!(
            "{} is fed by {from}: changesets reach it only by promotion",
            env.name
        ))
        .with_hint(format!("promoter promote {from} {}", env.name))
        .into());
    }
    let dirs = changeset::source::discover(&ctx.root)?;
    let only: Vec<ChangesetId> = if args.changesets.is_empty() {
        Vec::new()
    } else {
        changeset::select(&dirs, &args.changesets, |d| &d.id)?
            .into_iter()
            .map(|d| d.id.clone())
            .collect()
    };
    let opts = run::options(&args.run, args.upto.clone(), only);
    let outcome = work_tree(
        ctx,
        &config,
        &env,
        &opts,
        &mut StderrHooks::interactive(ctx.json, false),
    )?;
    match outcome {
        Ok(report) => run::render(&report, ctx.json, &format!("{} is up to date", env.name)),
        Err(e) => Err(run::error(e, opts.dry_run, ctx.json)),
    }
}

/// Applies the work tree's pending sealed changesets to `env` (one without
/// `promote_from`), as `apply` does; for `profile restore` too.
pub(super) fn work_tree(
    ctx: &Context,
    config: &crate::config::Config,
    env: &crate::config::Environment,
    opts: &engine::RunOptions,
    hooks: &mut dyn engine::Hooks,
) -> anyhow::Result<Result<engine::Report, engine::RunError>> {
    let git = super::trust::GitTrust::work_tree(ctx)?;
    let git_policy = super::trust::derive(&git, env).ok().map(|(p, _)| p);
    let mut receipt = super::trust::receipt_signer(&git, env)?;
    let mut trust = engine::Trust {
        git_keyrings: &git.keyrings,
        git_policy,
        receipt: receipt.as_mut(),
    };
    let git_commit = changeset::source::head_commit(&ctx.root).map(|c| format!("{c}+worktree"));
    // Read from disk while the engine connects, locks and reads the ledger.
    let read = || -> anyhow::Result<Vec<changeset::Bundle>> {
        Ok(changeset::source::load_work_tree(&ctx.root)?)
    };
    std::thread::scope(|scope| {
        let loading = scope.spawn(read);
        Ok(ctx.block_on(engine::apply(
            env,
            &config.file.ledger_schema,
            engine::Bundles::Loading(loading),
            &mut trust,
            git_commit,
            opts,
            hooks,
        )))
    })
}
