//! `promoter promote FROM TO`: what FROM's ledger shows applied and TO lacks,
//! read from git at `--rev`, checked in full before TO is touched.

use std::process::ExitCode;

use super::run::{self, StderrHooks};
use super::{CommandError, Context};
use crate::changeset::source;
use crate::cli::PromoteArgs;
use crate::config::{self, Config};
use crate::engine;
use crate::signing::Keyrings;

/// Loads `environments.yaml` and the role keyrings from git at `rev`, so that
/// requirements and keys cannot be weakened by uncommitted edits either.
pub fn config_and_keyrings_at(ctx: &Context, rev: &str) -> anyhow::Result<(Config, Keyrings)> {
    let text = source::read_file_at(&ctx.root, rev, std::path::Path::new(config::CONFIG_FILE))?
        .ok_or_else(|| {
            CommandError::usage(format!("{} is not in git at {rev}", config::CONFIG_FILE))
                .with_hint("commit environments.yaml and keys/: promotions read them from git, like the bundles")
        })?;
    let text = String::from_utf8(text)
        .map_err(|_| CommandError::usage(format!("{} at {rev}: not UTF-8", config::CONFIG_FILE)))?;
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
/// and lets the engine read FROM's ledger, lock TO, and refuse — before TO
/// is touched — on any changed bundle, missing signature, divergence or
/// schema drift.
pub fn run(ctx: &Context, args: &PromoteArgs) -> anyhow::Result<ExitCode> {
    // One commit for everything this run reads, whatever the branch does meanwhile.
    let commit = source::resolve_rev(&ctx.root, &args.rev)?;
    crate::output::eprint(&format!(
        "reading bundles, environments.yaml and keys/ from commit {commit} ({})",
        args.rev
    ));
    let git = super::trust::GitTrust::at(ctx, &commit)?;
    let config = &git.config;
    let from = config.environment(&args.from)?;
    let to = config.environment(&args.to)?;
    // A pinned policy may say otherwise; the engine checks that. Without
    // one, environments.yaml must at least agree.
    if to.config.promote_from.as_deref() != Some(from.name.as_str()) && to.config.require.is_empty()
    {
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
        return Err(CommandError::usage(msg).into());
    }
    let snapshot = source::load_git(&ctx.root, &commit)?;
    if to.is_fleet() {
        return super::fleet::promote(ctx, args, &git, &from, &to, &snapshot);
    }
    let flag = match (&args.fleet.targets[..], args.fleet.target_index) {
        ([], None) => None,
        ([], Some(_)) => Some("--target-index"),
        _ => Some("--target"),
    };
    if let Some(flag) = flag {
        return Err(CommandError::usage(format!(
            "{flag}: {} is not a fleet (it has one database_url)",
            to.label()
        ))
        .into());
    }
    let git_policy = super::trust::derive(&git, &to).ok().map(|(p, _)| p);
    let mut receipt = super::trust::receipt_signer(&git, &to)?;
    let mut trust = engine::Trust {
        git_keyrings: &git.keyrings,
        git_policy,
        receipt: receipt.as_mut(),
    };
    let opts = run::options(&args.run, args.upto.clone(), Vec::new());
    let outcome = ctx.block_on(engine::promote(
        &from,
        &to,
        &config.file.ledger_schema,
        &snapshot.bundles,
        &mut trust,
        snapshot.commit.clone(),
        &opts,
        &mut StderrHooks::interactive(ctx.json, false),
    ));
    match outcome {
        Ok(report) => run::render(
            &report,
            ctx.json,
            &format!("{} is up to date with {}", to.name, from.name),
        ),
        Err(e) => {
            let extra = match &e {
                engine::RunError::Refused { refusals, .. } => {
                    uncommitted_signatures(ctx, &snapshot, refusals, &args.rev)
                }
                _ => Vec::new(),
            };
            let mut err = run::error(e, opts.dry_run, ctx.json);
            if let Some(c) = err.downcast_mut::<CommandError>() {
                c.hints.extend(extra);
            }
            Err(err)
        }
    }
}

/// For changesets refused for want of signatures or approvals: a hint
/// naming the signature files the work tree holds and `rev` does not.
fn uncommitted_signatures(
    ctx: &Context,
    snapshot: &source::GitSnapshot,
    refusals: &[crate::plan::Refusal],
    rev: &str,
) -> Vec<String> {
    use crate::plan::Refusal;
    let mut ids: Vec<&str> = refusals
        .iter()
        .filter_map(|r| match r {
            Refusal::MissingSignatures { id, .. } | Refusal::MissingApprovals { id, .. } => {
                Some(id.as_str())
            }
            _ => None,
        })
        .collect();
    ids.dedup();
    ids.into_iter()
        .filter_map(|id| {
            let missing = source::uncommitted_signatures(&ctx.root, snapshot, id);
            (!missing.is_empty()).then(|| {
                format!(
                    "changesets/{id}/signatures/ holds {} not committed at {rev} ({}): promote reads git, not the work tree — commit them first",
                    crate::output::plural(missing.len(), "signature file"),
                    missing.join(", ")
                )
            })
        })
        .collect()
}
