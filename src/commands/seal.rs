//! `promoter seal`: write `SHA256SUMS` for changesets.

use std::process::ExitCode;

use serde::Serialize;

use super::{CommandError, Context};
use crate::changeset::{MANIFEST_FILE, SIGNATURES_DIR, bundle_hash};
use crate::cli::SealArgs;
use crate::output;

#[derive(Serialize)]
struct SealView {
    /// Changeset id.
    id: String,
    /// `sealed`, `resealed` or `unchanged`.
    result: &'static str,
    /// sha256 of the new `SHA256SUMS`.
    bundle_hash: String,
    /// Files listed in the manifest.
    files: usize,
    /// Signatures deleted by `--force` because they no longer match.
    removed_signatures: Vec<String>,
    /// Warnings, such as scripts with CRLF line endings.
    warnings: Vec<String>,
}

/// Seals changesets: checks the bundle rules and scripts, writes
/// `SHA256SUMS` atomically, and refuses to invalidate signatures unless
/// `--force` (which deletes them and says which).
pub fn run(ctx: &Context, args: &SealArgs) -> anyhow::Result<ExitCode> {
    let dirs = ctx.select_dirs(&args.changesets)?;
    let mut views = Vec::new();
    for dir in &dirs {
        let bundle = crate::changeset::source::load_dir(dir)?;
        bundle.check_sealable()?;
        // One read of every file: scripts checked, hashed and scanned for CRLF together.
        let scan = crate::sql::scan_bundle(&bundle)?;
        if let Some(first) = scan.problems.first() {
            let all: Vec<String> = scan.problems.iter().map(ToString::to_string).collect();
            return Err(CommandError::usage(all.join("\n"))
                .with_hint(first.hint())
                .into());
        }
        let manifest = scan.manifest;
        let bytes = manifest.render();
        let mut warnings: Vec<String> = scan
            .crlf
            .iter()
            .map(|script| {
                format!(
                    "{}/{script}: has CRLF line endings; they are hashed and executed as they are",
                    bundle.location
                )
            })
            .collect();
        let mut removed = Vec::new();
        let result = match &bundle.manifest {
            Some(old) if *old == bytes => "unchanged",
            old => {
                if old.is_some() && !bundle.signatures.is_empty() {
                    let names: Vec<String> = bundle
                        .signatures
                        .iter()
                        .map(|s| format!("{}/{SIGNATURES_DIR}/{}", bundle.location, s.name))
                        .collect();
                    if !args.force {
                        return Err(CommandError::usage(format!(
                            "{}: content changed since it was sealed and signed; resealing would invalidate {}",
                            bundle.location,
                            names.join(", ")
                        ))
                        .with_hint(format!(
                            "`promoter seal --force {}` reseals and deletes the stale signatures; they must then be made again",
                            bundle.id
                        ))
                        .into());
                    }
                    let sig_dir = dir.path.join(SIGNATURES_DIR);
                    for sig in &bundle.signatures {
                        let path = sig_dir.join(&sig.name);
                        std::fs::remove_file(&path)
                            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                    }
                    removed = names;
                }
                let path = dir.path.join(MANIFEST_FILE);
                let tmp = dir.path.join(format!(".{MANIFEST_FILE}.tmp"));
                std::fs::write(&tmp, &bytes)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", tmp.display()))?;
                std::fs::rename(&tmp, &path)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                if old.is_some() {
                    let (ran, unknown) = applied_in(ctx, bundle.id.as_str());
                    if !ran.is_empty() {
                        warnings.push(format!(
                            "{} was already applied to {} as the bundle before this one: there it shows as modified; in an environment without promote_from, undo it by hand and `promoter resolve ENV {} --forget`; elsewhere restore it and put the change in a new changeset",
                            bundle.id,
                            ran.join(", "),
                            bundle.id
                        ));
                    }
                    if !unknown.is_empty() {
                        warnings.push(format!(
                            "could not check whether {} ran in {} (unreachable)",
                            bundle.id,
                            unknown.join(", ")
                        ));
                    }
                    "resealed"
                } else {
                    "sealed"
                }
            }
        };
        views.push(SealView {
            id: bundle.id.to_string(),
            result,
            bundle_hash: bundle_hash(&bytes).to_hex(),
            files: manifest.len(),
            removed_signatures: removed,
            warnings,
        });
    }
    if ctx.json {
        /// JSON: `promoter --json seal`.
        #[derive(Serialize)]
        struct SealedView<'a> {
            /// One entry per changeset, in id order.
            changesets: &'a [SealView],
        }
        output::print_json(&SealedView { changesets: &views })?;
        return Ok(ExitCode::SUCCESS);
    }
    for v in &views {
        output::print(&format!(
            "{:<9} {}  {}  ({} files)",
            v.result, v.id, v.bundle_hash, v.files
        ))?;
        for r in &v.removed_signatures {
            output::print(&format!("          removed stale signature {r}"))?;
        }
        for w in &v.warnings {
            output::eprint(&format!("warning: {w}"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The environments (a fleet's targets each) whose ledger shows changeset
/// `id` applied, and those that could not be read; empty without an
/// `environments.yaml`. Read at once, read-only.
fn applied_in(ctx: &Context, id: &str) -> (Vec<String>, Vec<String>) {
    let Ok(config) = ctx.config() else {
        return (Vec::new(), Vec::new());
    };
    let envs: Vec<crate::config::Environment> = config
        .pipeline()
        .into_iter()
        .flat_map(|e| if e.is_fleet() { e.targets() } else { vec![e] })
        .collect();
    let schema = &config.file.ledger_schema;
    type Reading<'a> = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<crate::engine::Ledger, String>> + 'a>,
    >;
    let readings: Vec<Reading<'_>> = envs
        .iter()
        .map(|env| {
            Box::pin(async move {
                crate::engine::read_ledger(env, schema)
                    .await
                    .map_err(|e| e.to_string())
            }) as Reading<'_>
        })
        .collect();
    let ledgers = ctx.block_on(crate::engine::join::bounded(readings, 16));
    let (mut ran, mut unknown) = (Vec::new(), Vec::new());
    for (env, l) in envs.iter().zip(ledgers) {
        match l {
            Ok(l)
                if crate::ledger::applied(&l.entries)
                    .iter()
                    .any(|a| a.changeset_id == id) =>
            {
                ran.push(env.label())
            }
            Ok(_) => {}
            Err(_) => unknown.push(env.label()),
        }
    }
    (ran, unknown)
}
