//! `promoter apply ENV`: pending sealed changesets from the work tree, in
//! order, to an environment that is not fed by another (DEV).

use std::process::ExitCode;
use std::time::SystemTime;

use super::target::{self, Checked, RunInfo, Target, Work};
use super::{CommandError, Context};
use crate::changeset::{self, ChangesetId};
use crate::cli::ApplyArgs;
use crate::output;
use crate::plan;

/// Applies pending changesets from the work tree to a root environment:
/// checks every bundle (manifest, scripts, signatures against the
/// environment's `require`), takes the lock, refuses a dirty environment,
/// plans against the ledger, and applies each changeset in its own
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
    let now = SystemTime::now();
    let dirs = changeset::source::discover(&ctx.root)?;
    let only: Vec<ChangesetId> = changeset::select(&dirs, &args.changesets, |d| &d.id)?
        .into_iter()
        .filter(|_| !args.changesets.is_empty())
        .map(|d| d.id.clone())
        .collect();
    let mut checked = Vec::new();
    for dir in &dirs {
        checked.push(Checked::new(
            &keyrings,
            changeset::source::load_dir(dir)?,
            &env.config.require,
            now,
        ));
    }
    let facts: Vec<plan::BundleFacts> = checked.iter().map(Checked::facts).collect();
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
                if ctx.json {
                    output::print("[]");
                } else {
                    output::print(&format!(
                        "{} is up to date ({} changesets applied)",
                        env.name,
                        applied.len()
                    ));
                }
                return Ok(ExitCode::SUCCESS);
            }
            let work: Vec<Work<'_>> = steps
                .iter()
                .map(|s| {
                    let c = checked
                        .iter()
                        .find(|c| c.bundle.id.as_str() == s.changeset_id)
                        .expect("planned from these");
                    let (_, manifest) = c.bundle.sealed_manifest()?;
                    Ok(Work {
                        step: s,
                        checked: c,
                        manifest,
                    })
                })
                .collect::<anyhow::Result<_>>()?;
            if args.run.dry_run {
                print_plan(env.name, &work, ctx.json)?;
                return Ok(ExitCode::SUCCESS);
            }
            if !target::confirm(env.name, work.len(), &args.run, env.config.confirm)? {
                return Err(CommandError::new("not confirmed; nothing was applied").into());
            }
            target::execute(
                &mut target,
                work,
                &RunInfo {
                    promoted_from: None,
                    git_commit,
                    json: ctx.json,
                },
            )
            .await
        }
        .await;
        target.close().await;
        result
    })
}

/// JSON view of one planned step.
#[derive(serde::Serialize)]
struct PlannedView<'a> {
    /// Changeset id.
    changeset_id: &'a str,
    /// The bundle that would be applied.
    bundle_hash: &'a str,
    /// The source ledger entry it is promoted from (promote only).
    source_entry: Option<&'a str>,
    /// Distinct good signers per role.
    signers: &'a std::collections::BTreeMap<String, usize>,
}

/// Prints what would be applied and the checks that passed.
pub fn print_plan(env: &str, work: &[Work<'_>], json: bool) -> anyhow::Result<()> {
    if json {
        let views: Vec<PlannedView<'_>> = work
            .iter()
            .map(|w| PlannedView {
                changeset_id: &w.step.changeset_id,
                bundle_hash: &w.step.bundle_hash,
                source_entry: w.step.source_entry.as_deref(),
                signers: &w.checked.check.signers,
            })
            .collect();
        return output::print_json(&views);
    }
    output::print(&format!(
        "dry run: would apply {} changeset{} to {env}:",
        work.len(),
        if work.len() == 1 { "" } else { "s" }
    ));
    for w in work {
        let c = &w.checked.check;
        let signers: Vec<String> = c.signers.iter().map(|(r, n)| format!("{n} {r}")).collect();
        output::print(&format!(
            "  {}  {}",
            w.step.changeset_id, w.step.bundle_hash
        ));
        output::print("      ok  files match SHA256SUMS; scripts checked");
        output::print(&format!(
            "      ok  signatures: {}",
            if signers.is_empty() {
                "none needed".to_owned()
            } else {
                signers.join(", ")
            }
        ));
        if let Some(entry) = &w.step.source_entry {
            output::print(&format!(
                "      ok  identical to the bundle in the source ledger (entry {})",
                &entry[..12]
            ));
        }
    }
    output::print("nothing was changed (--dry-run)");
    Ok(())
}
