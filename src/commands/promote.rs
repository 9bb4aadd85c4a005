//! `promoter promote FROM TO`: what FROM's ledger shows applied and TO lacks,
//! read from git at `--rev`, checked in full before TO is touched.

use std::process::ExitCode;
use std::time::Duration;

use super::target::{self, RunInfo, Target};
use super::{CommandError, Context};
use crate::changeset::source;
use crate::cli::PromoteArgs;
use crate::config::{self, Config};
use crate::db::fingerprint;
use crate::output;
use crate::plan;
use crate::signing::Keyrings;

/// Loads `environments.yaml` and the role keyrings from git at `rev`, so that
/// requirements and keys cannot be weakened by uncommitted edits either.
pub fn config_and_keyrings_at(ctx: &Context, rev: &str) -> anyhow::Result<(Config, Keyrings)> {
    let text = source::read_file_at(&ctx.root, rev, std::path::Path::new(config::CONFIG_FILE))?.ok_or_else(|| {
        CommandError::new(format!("{} is not in git at {rev}", config::CONFIG_FILE))
            .with_hint("commit environments.yaml and keys/: promotions read them from git, like the bundles")
    })?;
    let text = String::from_utf8(text)
        .map_err(|_| anyhow::anyhow!("{}: not UTF-8", config::CONFIG_FILE))?;
    let path = ctx.root.join(format!("{}@{rev}", config::CONFIG_FILE));
    let config = Config::parse(&ctx.root, &path, &text)?;
    let mut files = Vec::new();
    for (role, dir) in &config.file.roles {
        for (name, bytes) in source::read_dir_at(&ctx.root, rev, dir)? {
            if !name.starts_with('.') {
                files.push((role.clone(), dir.join(&name), bytes));
            }
        }
    }
    let keyrings = Keyrings::from_files(&config.role_dirs(), files)?;
    keyrings.check_separation()?;
    Ok((config, keyrings))
}

/// Promotes FROM → TO: reads bundles, config and keys from git at `--rev`,
/// reads FROM's ledger live, locks TO, and refuses — before TO is touched —
/// on any changed bundle, missing signature, divergence or schema drift.
pub fn run(ctx: &Context, args: &PromoteArgs) -> anyhow::Result<ExitCode> {
    let (config, keyrings) = config_and_keyrings_at(ctx, &args.rev)?;
    let from = config.environment(&args.from)?;
    let to = config.environment(&args.to)?;
    if to.config.promote_from.as_deref() != Some(from.name) {
        let msg = match &to.config.promote_from {
            Some(actual) => format!(
                "{} is promoted from {actual}, not from {}",
                to.name, from.name
            ),
            None => format!(
                "{} is not fed by promotion (it has no promote_from)",
                to.name
            ),
        };
        return Err(CommandError::new(msg).into());
    }
    let snapshot = source::load_git(&ctx.root, &args.rev)?;
    let bundles = snapshot.bundles;
    let facts = target::sketch(&bundles);
    let schema = config.file.ledger_schema.clone();
    // Drift matters once the source is itself a controlled environment (QAT → PRD).
    let check_drift = from.config.promote_from.is_some() && !args.run.allow_drift;

    target::runtime()?.block_on(async {
        let from_entries = target::read_ledger(&config, &from, Some(Duration::from_secs(15)))
            .await
            .map_err(|e| anyhow::anyhow!("{e}\nnothing was applied to {}: its source {} could not be read", to.name, from.name))?;
        let mut target = Target::open(&config, &to, &args.run).await?;
        let result = async {
            let to_entries = target.entries().await?;
            target::refuse_dirty(to.name, &to_entries)?;
            let steps = plan::plan_promotion(
                from.name,
                to.name,
                &target::applied(&from_entries),
                &target::applied(&to_entries),
                &facts,
            )
            .map_err(|reasons| target::refuse(to.name, &reasons))?;
            if steps.is_empty() {
                target::print_up_to_date(ctx.json, &format!("{} is up to date with {}", to.name, from.name));
                return Ok(ExitCode::SUCCESS);
            }
            if check_drift {
                let first = from_entries
                    .iter()
                    .find(|e| Some(&e.entry_hash) == steps[0].source_entry.as_ref());
                if let Some(expected) = first.and_then(|e| e.schema_before.clone()) {
                    let actual = fingerprint::fingerprint(&mut target.conn, to.name, &schema).await?;
                    if actual != expected {
                        return Err(CommandError::new(format!(
                            "nothing was applied to {to}: its schema differs from {from}'s when {from} applied {id} (schema fingerprint {to} {}, {from} {}), so the rehearsal in {from} was not representative",
                            &actual[..12],
                            &expected[..12],
                            to = to.name,
                            from = from.name,
                            id = steps[0].changeset_id
                        ))
                        .with_hint(format!(
                            "see the difference with `promoter drift {from} {to}`, make {to} match {from} (or refresh {from} from {to}), or pass --allow-drift",
                            to = to.name,
                            from = from.name
                        ))
                        .into());
                    }
                }
            }
            let checked = target::check_steps(to.name, &keyrings, &bundles, &steps, &to.config.require)?;
            let info = RunInfo {
                promoted_from: Some(from.name.to_owned()),
                git_commit: Some(snapshot.commit.clone()),
                json: ctx.json,
            };
            let code = target::run_plan(&mut target, &steps, &checked, &args.run, to.config.confirm, &info).await?;
            if args.run.dry_run {
                return Ok(code);
            }
            if check_drift {
                let to_entries = target.entries().await?;
                for step in &steps {
                    let source = from_entries.iter().find(|e| Some(&e.entry_hash) == step.source_entry.as_ref());
                    let mine = to_entries.iter().rev().find(|e| e.changeset_id == step.changeset_id && e.status.is_applied());
                    if let (Some(s), Some(m)) = (source, mine)
                        && s.schema_after != m.schema_after
                    {
                        output::eprint(&format!(
                            "warning: after {}, {}'s schema differs from {}'s after the same changeset",
                            step.changeset_id, to.name, from.name
                        ));
                    }
                }
            }
            Ok(code)
        }
        .await;
        target.close().await;
        result
    })
}
