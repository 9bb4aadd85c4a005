//! `promoter baseline --upto N`: after a release, fold changesets 0001…N —
//! applied, with the same bundles, in every environment, fleet target and
//! branch — into one baseline changeset, proved to give the same schema as
//! the history it stands for; the folded ones move to `changesets/archive/`.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;

use super::run::StderrHooks;
use super::{CommandError, Context, ErrorKind};
use crate::branch::{self, Record, Registry};
use crate::changeset::{
    self, BaselineMeta, Bundle, ChangesetMeta, Sha256Digest, Superseded, TransactionMode, source,
};
use crate::cli::BaselineArgs;
use crate::config::{Config, Environment};
use crate::db::fingerprint;
use crate::engine;
use crate::output;

/// JSON: `promoter --json baseline`.
#[derive(Serialize)]
struct BaselineView {
    /// The baseline changeset written (sealed, not yet signed).
    changeset: String,
    /// The changesets it folds, now in changesets/archive/.
    folds: Vec<String>,
    schema_fingerprint: Sha256Digest,
    /// Reference tables whose rows it carries.
    reference_data: Vec<String>,
}

fn usage(message: String) -> anyhow::Error {
    CommandError::usage(message).into()
}

pub fn run(ctx: &Context, args: &BaselineArgs) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let dirs = source::discover(&ctx.root)?;
    let bundles: Vec<Bundle> = dirs
        .iter()
        .map(source::load_dir)
        .collect::<Result<_, _>>()?;
    let last = bundles
        .iter()
        .position(|b| b.id.matches(&args.upto))
        .ok_or_else(|| usage(format!("--upto {}: no such changeset", args.upto)))?;
    let folded = &bundles[..=last];
    let mut supersedes = Vec::new();
    for b in folded {
        let hash = b
            .hash()
            .ok_or_else(|| usage(format!("{} is not sealed", b.id)))?;
        supersedes.push(Superseded {
            id: b.id.to_string(),
            bundle: hash,
        });
    }
    let id = format!(
        "{}-baseline",
        bundles[last]
            .id
            .as_str()
            .split('-')
            .next()
            .expect("an id has a number")
    );

    // Everywhere, everything up to N, byte-identical.
    let lagging = lagging(ctx, &config, &supersedes)?;
    if !lagging.is_empty() {
        return Err(CommandError::new(
            ErrorKind::Refused,
            format!(
                "not every environment has applied {}…{} with the bundles the work tree has, so nothing was folded:\n  {}",
                supersedes[0].id,
                supersedes[supersedes.len() - 1].id,
                lagging.join("\n  ")
            ),
        )
        .with_hint("promote (or apply) what is missing, or fold fewer: --upto an earlier changeset")
        .into());
    }

    // The history, applied byte-identically to an empty scratch database.
    let dev = config
        .pipeline()
        .into_iter()
        .find(|e| e.config.promote_from.is_none())
        .ok_or_else(|| {
            usage("no environment without promote_from to build the baseline next to".into())
        })?;
    let full = scratch(&config, &dev, "baseline_full")?;
    let base = scratch(&config, &dev, "baseline_check")?;
    let result = build(
        ctx, &config, args, &dev, &full, &base, folded, supersedes, &id,
    );
    // The scratch databases go, whatever happened.
    let _ = ctx.block_on(engine::branch::drop(&full));
    let _ = ctx.block_on(engine::branch::drop(&base));
    let view = result?;
    if ctx.json {
        output::print_json(&view)?;
        return Ok(ExitCode::SUCCESS);
    }
    output::print(&format!(
        "folded {} changesets ({}…{}) into {}: schema {}, the same for a fresh database from it as for the whole history{}",
        view.folds.len(),
        view.folds[0],
        view.folds[view.folds.len() - 1],
        view.changeset,
        view.schema_fingerprint.short(),
        if view.reference_data.is_empty() {
            String::new()
        } else {
            format!("; with the rows of {}", view.reference_data.join(", "))
        }
    ))?;
    output::eprint(&format!(
        "moved {} to changesets/archive/ (still verified by verify and audit)\nnext: sign {} (`promoter sign {}`), commit, then `promoter apply {}`: databases that ran the history adopt it, new ones run it",
        output::plural(view.folds.len(), "changeset"),
        view.changeset,
        view.changeset,
        dev.name
    ));
    Ok(ExitCode::SUCCESS)
}

/// Every environment (every fleet target, every branch) that has not
/// applied all of `supersedes` with the same bundles, and what it lacks.
fn lagging(
    ctx: &Context,
    config: &Config,
    supersedes: &[Superseded],
) -> anyhow::Result<Vec<String>> {
    let mut envs: Vec<Environment> = config
        .pipeline()
        .into_iter()
        .flat_map(|e| if e.is_fleet() { e.targets() } else { vec![e] })
        .collect();
    let reg = Registry::load(&ctx.root).map_err(usage)?;
    for (name, record) in &reg.branches {
        envs.push(branch::environment(config, name, record).map_err(usage)?);
    }
    let schema = &config.file.ledger_schema;
    let mut out = Vec::new();
    for env in &envs {
        let applied = match ctx.block_on(engine::read_ledger(env, schema)) {
            Ok(l) => crate::ledger::applied(&l.entries),
            Err(e) => {
                out.push(format!("{}: could not be read ({e})", env.label()));
                continue;
            }
        };
        let problems = crate::plan::baseline_lag(&applied, supersedes);
        if !problems.is_empty() {
            let shown = problems.len().min(5);
            out.push(format!(
                "{}: {}{}",
                env.label(),
                problems[..shown].join(", "),
                if problems.len() > shown {
                    format!(" and {} more", problems.len() - shown)
                } else {
                    String::new()
                }
            ));
        }
    }
    Ok(out)
}

/// A scratch database next to DEV's (or in the branch cluster): a branch
/// environment promoter drops when done, with no signature requirement.
fn scratch(config: &Config, dev: &Environment, name: &str) -> anyhow::Result<Environment> {
    let root_db = crate::db::conninfo::dbname(&dev.database_url()?)
        .map_err(usage)?
        .ok_or_else(|| usage(format!("{}'s database_url names no database", dev.name)))?;
    let record = Record {
        from: dev.name.clone(),
        root: dev.name.clone(),
        database: branch::database_name(&root_db, name).map_err(usage)?,
        in_branch_cluster: config.file.branches.database_url.is_some(),
        method: "scratch".into(),
        created_at: String::new(),
        created_by: String::new(),
    };
    let mut env = branch::environment(config, name, &record).map_err(usage)?;
    env.config.require = BTreeMap::new();
    Ok(env)
}

/// Applies `bundles` to the empty scratch `env`.
fn apply_to(
    ctx: &Context,
    config: &Config,
    env: &Environment,
    bundles: &[Bundle],
) -> anyhow::Result<()> {
    let git = super::trust::GitTrust::work_tree(ctx)?;
    let mut trust = engine::Trust {
        git_keyrings: &git.keyrings,
        git_policy: None,
        receipt: None,
    };
    let opts = engine::RunOptions {
        dry_run: false,
        assume_yes: true,
        lock_wait: Duration::from_secs(30),
        allow_drift: false,
        upto: None,
        only: Vec::new(),
    };
    ctx.block_on(engine::apply(
        env,
        &config.file.ledger_schema,
        engine::Bundles::Ready(bundles),
        &mut trust,
        None,
        &opts,
        &mut StderrHooks::default(),
    ))
    .map(|_| ())
    .map_err(|e| super::run::error(e, false, false))
}

#[allow(clippy::too_many_arguments)]
fn build(
    ctx: &Context,
    config: &Config,
    args: &BaselineArgs,
    dev: &Environment,
    full: &Environment,
    base: &Environment,
    folded: &[Bundle],
    supersedes: Vec<Superseded>,
    id: &str,
) -> anyhow::Result<BaselineView> {
    let schema = config.file.ledger_schema.as_str();
    ctx.block_on(engine::branch::create_empty(dev, full))?;
    output::eprint(&format!(
        "applying {} to an empty scratch database …",
        output::plural(folded.len(), "changeset")
    ));
    apply_to(ctx, config, full, folded)?;
    let fingerprint_of = |env: &Environment| -> anyhow::Result<(Sha256Digest, Vec<String>)> {
        ctx.block_on(async {
            let mut conn = engine::connect(env).await?;
            let catalog = fingerprint::catalog(&mut conn, &env.name, schema).await;
            crate::db::close(conn).await;
            let catalog = catalog?;
            anyhow::Ok((fingerprint::of_catalog(&catalog), catalog))
        })
    };
    let (fp_full, catalog_full) = fingerprint_of(full)?;
    let schema_args = vec![
        "--schema-only".to_owned(),
        "--no-owner".to_owned(),
        format!("--exclude-schema={schema}"),
    ];
    let schema_sql = ctx
        .block_on(engine::branch::dump_sql(full, &schema_args))
        .map_err(super::clone::error)?;
    let data_sql = if args.reference_data.is_empty() {
        None
    } else {
        let mut data_args = vec!["--data-only".to_owned(), "--no-owner".to_owned()];
        for t in &args.reference_data {
            data_args.push(format!("--table={t}"));
        }
        Some(
            ctx.block_on(engine::branch::dump_sql(full, &data_args))
                .map_err(super::clone::error)?,
        )
    };

    // The folded changesets go to the archive, then the baseline is written.
    let archive = ctx
        .root
        .join(changeset::CHANGESETS_DIR)
        .join(source::ARCHIVE_DIR);
    std::fs::create_dir_all(&archive).map_err(|e| anyhow::anyhow!("{}: {e}", archive.display()))?;
    let mut moved = Vec::new();
    let undo = |moved: &[(std::path::PathBuf, std::path::PathBuf)],
                written: Option<&std::path::Path>| {
        if let Some(w) = written {
            let _ = std::fs::remove_dir_all(w);
        }
        for (from, to) in moved.iter().rev() {
            let _ = std::fs::rename(to, from);
        }
    };
    for b in folded {
        let from = b.dir.clone().expect("work-tree bundles have a directory");
        let to = archive.join(b.id.as_str());
        if to.exists() {
            undo(&moved, None);
            return Err(usage(format!("{} exists already", to.display())));
        }
        std::fs::rename(&from, &to).map_err(|e| anyhow::anyhow!("{}: {e}", from.display()))?;
        moved.push((from, to));
    }
    let dir = ctx.root.join(changeset::CHANGESETS_DIR).join(id);
    let written = (|| -> anyhow::Result<()> {
        std::fs::create_dir(&dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
        let meta = ChangesetMeta {
            id: id.to_owned(),
            description: format!(
                "Baseline: {}…{} folded into one schema",
                supersedes[0].id,
                supersedes[supersedes.len() - 1].id
            ),
            transaction: TransactionMode::PerChangeset,
            baseline: Some(BaselineMeta {
                schema_fingerprint: fp_full,
                supersedes: supersedes.clone(),
            }),
        };
        let yaml = serde_yaml_ng::to_string(&meta)?;
        std::fs::write(dir.join(changeset::META_FILE), yaml)?;
        std::fs::write(dir.join("001-schema.sql"), &schema_sql)?;
        if let Some(data) = &data_sql {
            std::fs::write(dir.join("002-reference-data.sql"), data)?;
        }
        Ok(())
    })();
    if let Err(e) = written {
        undo(&moved, Some(&dir));
        return Err(e);
    }
    // Sealed, then proved: a fresh database from the baseline alone has the
    // schema of the whole history.
    let proved = (|| -> anyhow::Result<()> {
        let bundle_dir = source::BundleDir {
            id: changeset::ChangesetId::parse(id).map_err(|e| anyhow::anyhow!("{e}"))?,
            path: dir.clone(),
        };
        // Sealed as `seal` seals: every script checked first.
        let unsealed = source::load_dir(&bundle_dir)?;
        let scan = crate::sql::scan_bundle(&unsealed)?;
        if !scan.problems.is_empty() {
            let all: Vec<String> = scan.problems.iter().map(ToString::to_string).collect();
            return Err(usage(format!(
                "the schema dump cannot be sealed as a changeset:\n  {}",
                all.join("\n  ")
            )));
        }
        std::fs::write(dir.join(changeset::MANIFEST_FILE), scan.manifest.render())?;
        let bundle = source::load_dir(&bundle_dir)?;
        ctx.block_on(engine::branch::create_empty(dev, base))?;
        apply_to(ctx, config, base, std::slice::from_ref(&bundle))?;
        let (fp_base, catalog_base) = fingerprint_of(base)?;
        if fp_base != fp_full {
            let only_full: Vec<&String> = catalog_full
                .iter()
                .filter(|l| !catalog_base.contains(l))
                .collect();
            let only_base: Vec<&String> = catalog_base
                .iter()
                .filter(|l| !catalog_full.contains(l))
                .collect();
            return Err(CommandError::new(
                ErrorKind::CheckFailed,
                format!(
                    "a fresh database from the baseline has schema {}, the whole history {}: nothing was folded\n  only after the history:\n    {}\n  only after the baseline:\n    {}",
                    fp_base.short(),
                    fp_full.short(),
                    only_full.iter().take(10).map(|s| s.as_str()).collect::<Vec<_>>().join("\n    "),
                    only_base.iter().take(10).map(|s| s.as_str()).collect::<Vec<_>>().join("\n    ")
                ),
            )
            .into());
        }
        Ok(())
    })();
    if let Err(e) = proved {
        undo(&moved, Some(&dir));
        return Err(e);
    }
    Ok(BaselineView {
        changeset: id.to_owned(),
        folds: supersedes.into_iter().map(|s| s.id).collect(),
        schema_fingerprint: fp_full,
        reference_data: args.reference_data.clone(),
    })
}
