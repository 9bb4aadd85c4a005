//! `promoter apply ENV`: pending sealed changesets from the work tree, in
//! order, to an environment that is not fed by another (DEV).

use std::process::ExitCode;

use super::target::{self, RunInfo, Target};
use super::{CommandError, Context};
use crate::changeset::{self, ChangesetId};
use crate::cli::ApplyArgs;
use crate::plan;

/// Applies pending changesets from the work tree to a root environment:
/// takes the lock, refuses a dirty environment, plans from the ledger and the
/// manifest hashes, checks the planned bundles in full (files, scripts,
/// signatures against `require`), and applies each changeset in its own
/// transaction. Nothing is written unless the whole plan passes.
pub fn run(ctx: &Context, args: &ApplyArgs) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let env = config.environment(&args.env)?;
    if let Some(from) = &env.config.promote_from {
        return Err(CommandError::new(format!(
            "{} is fed by {from}: changesets reach it only by promotion",
            env.name
        ))
        .with_hint(format!("promoter promote {from} {}", env.name))
        .into());
    }
    let keyrings = ctx.keyrings()?;
    let dirs = changeset::source::discover(&ctx.root)?;
    let only: Vec<ChangesetId> = changeset::select(&dirs, &args.changesets, |d| &d.id)?
        .into_iter()
        .filter(|_| !args.changesets.is_empty())
        .map(|d| d.id.clone())
        .collect();
    let bundles = dirs
        .iter()
        .map(changeset::source::load_dir)
        .collect::<Result<Vec<_>, _>>()?;
    let facts = target::sketch(&bundles);
    let git_commit = changeset::source::head_commit(&ctx.root).map(|c| format!("{c}+worktree"));

    target::runtime()?.block_on(async {
        let mut target = Target::open(&config, &env, &args.run).await?;
        let result = async {
            let entries = target.entries().await?;
            target::refuse_dirty(env.name, &entries)?;
            let applied = target::applied(&entries);
            let steps = plan::plan_apply(env.name, &applied, &facts, &only)
                .map_err(|reasons| target::refuse(env.name, &reasons))?;
            if steps.is_empty() {
                target::print_up_to_date(
                    ctx.json,
                    &format!(
                        "{} is up to date ({} changesets applied)",
                        env.name,
                        applied.len()
                    ),
                );
                return Ok(ExitCode::SUCCESS);
            }
            let checked =
                target::check_steps(env.name, &keyrings, &bundles, &steps, &env.config.require)?;
            let info = RunInfo {
                promoted_from: None,
                git_commit,
                json: ctx.json,
            };
            target::run_plan(
                &mut target,
                &steps,
                &checked,
                &args.run,
                env.config.confirm,
                &info,
            )
            .await
        }
        .await;
        target.close().await;
        result
    })
}
