//! `promoter status`: every changeset against every environment.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::ExitCode;
use std::time::SystemTime;

use serde::Serialize;

use super::{CommandError, Context};
use crate::changeset::{self, Bundle, Sha256Digest};
use crate::cli::StatusArgs;
use crate::engine;
use crate::ledger::Entry;
use crate::output;
use crate::status::{self, Cell, State};

/// JSON: one environment of `status`.
#[derive(Serialize)]
pub(super) struct EnvView {
    /// Environment name from environments.yaml, in pipeline order.
    pub name: String,
    /// Whether its ledger could be read.
    pub reachable: bool,
    /// Why not, if it could not (URL shown without its password).
    pub error: Option<String>,
    /// How many changesets its ledger shows applied.
    pub applied: usize,
}

/// JSON: one changeset in one environment.
#[derive(Serialize)]
pub(super) struct CellView {
    /// `applied`, `modified` (applied, but the bundle changed since),
    /// `pending`, `failed`, `running` (being applied now), `interrupted` (a
    /// `running` row no promoter is working on), `resolved-rolled-back`,
    /// `absent` (ledger-only rows) or `unreachable`.
    pub state: State,
    /// When it was applied or last attempted (RFC 3339, UTC).
    pub at: Option<String>,
    /// `os_user@host` that applied it.
    pub by: Option<String>,
    /// What is missing for a pending one (`needs 1 customer`), the first line of a failure, or why it is modified.
    pub detail: Option<String>,
}

impl From<Cell> for CellView {
    fn from(c: Cell) -> Self {
        Self {
            state: c.state,
            at: c.at.map(output::format_micros),
            by: c.by,
            detail: c.detail,
        }
    }
}

/// JSON: one changeset row of `status`.
#[derive(Serialize)]
pub(super) struct ChangesetView {
    /// Changeset id, `NNNN-slug`.
    pub id: String,
    /// sha256 of its `SHA256SUMS`; null if unsealed or only known to a ledger.
    pub bundle_hash: Option<Sha256Digest>,
    /// Environment name → its state there.
    pub environments: BTreeMap<String, CellView>,
}

/// JSON: `promoter --json status`.
#[derive(Serialize)]
pub(super) struct StatusView {
    /// Every environment, in pipeline order (a fleet's targets each), then the branches.
    pub environments: Vec<EnvView>,
    /// Every changeset of the work tree (or `--rev`), then those only a ledger knows.
    pub changesets: Vec<ChangesetView>,
}

/// A fleet's cell: the state of every target when they agree, else counts
/// per state with the targets that need attention named.
pub(super) fn fleet_cell<'a>(targets: impl Iterator<Item = (&'a str, State)>) -> String {
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut attention = Vec::new();
    for (name, state) in targets {
        *counts.entry(state.as_str()).or_insert(0) += 1;
        if state.needs_attention() {
            attention.push(name);
        }
    }
    if counts.len() == 1 {
        return counts.into_keys().next().unwrap_or_default().to_owned();
    }
    let mut text = counts
        .iter()
        .map(|(s, n)| format!("{s} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    if !attention.is_empty() {
        let shown = attention.len().min(5);
        text.push_str(&format!(": {}", attention[..shown].join(", ")));
        if attention.len() > shown {
            text.push_str(&format!(" and {} more", attention.len() - shown));
        }
    }
    text
}

/// The matrix's columns: an environment each, a fleet's targets sharing one.
pub(super) type Column<'a> = (String, Vec<&'a crate::config::Environment>);

/// Groups `pipeline` into columns: consecutive targets of one fleet share one.
pub(super) fn columns(pipeline: &[crate::config::Environment]) -> Vec<Column<'_>> {
    let mut columns: Vec<Column<'_>> = Vec::new();
    for env in pipeline {
        match columns.last_mut() {
            Some((name, members)) if *name == env.name && env.target.is_some() => members.push(env),
            _ => columns.push((env.name.clone(), vec![env])),
        }
    }
    columns
}

/// A column's heading: `QAT`, or `PRD (3 targets)` for a fleet.
pub(super) fn column_title((name, members): &Column<'_>) -> String {
    match members.as_slice() {
        [one] if one.target.is_none() => name.to_uppercase(),
        _ => format!("{} ({} targets)", name.to_uppercase(), members.len()),
    }
}

/// What one environment's cell says: `applied 2026-12-03`, or the state
/// with its detail, `pending (needs 1 customer)`.
pub(super) fn cell_text(cell: &CellView) -> String {
    let mut text = cell.state.as_str().to_owned();
    if cell.state == State::Applied
        && let Some(at) = &cell.at
    {
        text = format!("applied {}", &at[..10]);
    }
    if let Some(d) = &cell.detail {
        text = format!("{text} ({d})");
    }
    text
}

/// The matrix's inputs and result, for `status` and `report`.
pub(super) struct Matrix {
    /// Every environment, a fleet's targets each on their own.
    pub pipeline: Vec<crate::config::Environment>,
    /// Each one's ledger, or why it could not be read.
    pub ledgers: Vec<Result<engine::Ledger, String>>,
    pub bundles: Vec<Bundle>,
    pub view: StatusView,
}

/// Reads every ledger (at once) and builds the changeset × environment
/// matrix of the work tree's bundles, or `rev`'s. Read-only everywhere.
pub(super) fn matrix(
    ctx: &Context,
    config: &crate::config::Config,
    rev: Option<&str>,
    with_replaced: bool,
) -> anyhow::Result<Matrix> {
    // The keyrings and bundles are read from disk on a thread of their
    // own while the ledgers are read over the network.
    let load = || -> anyhow::Result<_> {
        let keyrings = ctx.keyrings()?;
        let bundles: Vec<Bundle> = match rev {
            Some(rev) => changeset::source::load_git(&ctx.root, rev)?.bundles,
            None => changeset::source::load_work_tree(&ctx.root)?,
        };
        Ok((keyrings, bundles))
    };
    // A fleet's targets are environments of their own here.
    let mut pipeline: Vec<crate::config::Environment> = config
        .pipeline()
        .into_iter()
        .flat_map(|e| if e.is_fleet() { e.targets() } else { vec![e] })
        .collect();
    // Branch databases are environments too, after the pipeline.
    let registry = crate::branch::Registry::load(&ctx.root).map_err(CommandError::usage)?;
    for (name, record) in &registry.branches {
        pipeline
            .push(crate::branch::environment(config, name, record).map_err(CommandError::usage)?);
    }
    let schema = &config.file.ledger_schema;
    // Every ledger at once (a fleet may have many): the time is the slowest
    // database's, not the sum.
    type Reading<'a> =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<engine::Ledger, String>> + 'a>>;
    let readings: Vec<Reading<'_>> = pipeline
        .iter()
        .map(|env| {
            Box::pin(async move {
                let read = if with_replaced {
                    engine::read_ledger_with_replaced(env, schema).await
                } else {
                    engine::read_ledger(env, schema).await
                };
                read.map_err(|e| e.to_string())
            }) as Reading<'_>
        })
        .collect();
    let (loaded, ledgers) = std::thread::scope(|scope| {
        let loading = scope.spawn(load);
        let ledgers: Vec<Result<engine::Ledger, String>> =
            ctx.block_on(engine::join::bounded(readings, 16));
        (engine::join_thread(loading), ledgers)
    });
    let (keyrings, bundles) = loaded?;
    let now = SystemTime::now();
    let mut view = StatusView {
        environments: pipeline
            .iter()
            .zip(&ledgers)
            .map(|(env, l)| EnvView {
                name: env.label(),
                reachable: l.is_ok(),
                error: l.as_ref().err().cloned(),
                applied: l
                    .as_ref()
                    .map_or(0, |l| crate::ledger::applied(&l.entries).len()),
            })
            .collect(),
        changesets: Vec::new(),
    };
    // Who signed what, for the pending cells' details: checked once per
    // bundle that some reachable ledger has not applied, on every core
    // (signature checks are most of a large status's time).
    let applied_sets: Vec<std::collections::HashSet<(String, Sha256Digest)>> = ledgers
        .iter()
        .flatten()
        .map(|l| {
            crate::ledger::applied(&l.entries)
                .into_iter()
                .map(|a| (a.changeset_id, a.bundle_hash))
                .collect()
        })
        .collect();
    let needed: Vec<usize> = bundles
        .iter()
        .enumerate()
        .filter(|(_, b)| {
            b.hash().is_some_and(|h| {
                applied_sets
                    .iter()
                    .any(|set| !set.contains(&(b.id.to_string(), h)))
            })
        })
        .map(|(i, _)| i)
        .collect();
    let mut checked: Vec<Option<BTreeMap<String, usize>>> = vec![None; bundles.len()];
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let chunk = needed.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = needed
            .chunks(chunk)
            .map(|part| {
                let (keyrings, bundles) = (&keyrings, &bundles);
                scope.spawn(move || {
                    part.iter()
                        .map(|&i| (i, crate::check::signers(keyrings, &bundles[i], now)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            if let Ok(results) = h.join() {
                for (i, s) in results {
                    checked[i] = Some(s);
                }
            }
        }
    });
    // Each ledger's rows by changeset, in ledger order (a lookup per cell,
    // not a scan: at 1,000 changesets the scans were a third of the time).
    let rows_by_id: Vec<HashMap<&str, Vec<&Entry>>> = ledgers
        .iter()
        .map(|l| {
            let mut by_id: HashMap<&str, Vec<&Entry>> = HashMap::new();
            for e in l.iter().flat_map(|l| &l.entries) {
                by_id.entry(e.changeset_id.as_str()).or_default().push(e);
            }
            by_id
        })
        .collect();
    for (index, bundle) in bundles.iter().enumerate() {
        let hash = bundle.hash();
        // Checked above when some environment has it pending; otherwise
        // (a cell that needs it after all) here, at most once.
        let mut signers: Option<BTreeMap<String, usize>> = checked[index].take();
        let mut cells = BTreeMap::new();
        for ((env, ledger), by_id) in pipeline.iter().zip(&ledgers).zip(&rows_by_id) {
            let cell = match ledger {
                Err(_) => status::unreachable(),
                Ok(l) => {
                    let rows = by_id.get(bundle.id.as_str()).map_or(&[][..], Vec::as_slice);
                    status::cell(rows, hash, l.locked, &l.progress, || {
                        let s = signers
                            .get_or_insert_with(|| crate::check::signers(&keyrings, bundle, now));
                        crate::signing::shortfalls(&env.config.require, s)
                    })
                }
            };
            cells.insert(env.label(), CellView::from(cell));
        }
        view.changesets.push(ChangesetView {
            id: bundle.id.to_string(),
            bundle_hash: hash,
            environments: cells,
        });
    }
    // Changesets a ledger knows that the work tree (or rev) no longer has;
    // not those a baseline folded (its row stands for them).
    let folded: std::collections::BTreeSet<String> = bundles
        .iter()
        .filter_map(Bundle::baseline)
        .flat_map(|bl| bl.supersedes.into_iter().map(|s| s.id))
        .collect();
    let known: HashSet<&str> = bundles.iter().map(|b| b.id.as_str()).collect();
    let mut orphans: Vec<&str> = ledgers
        .iter()
        .flatten()
        .flat_map(|l| l.entries.iter())
        .filter(|e| !e.status.is_event())
        .map(|e| e.changeset_id.as_str())
        .filter(|id| !known.contains(id))
        .filter(|id| !folded.contains(*id))
        .collect();
    orphans.sort_unstable();
    orphans.dedup();
    for id in orphans {
        let environments = pipeline
            .iter()
            .zip(&ledgers)
            .map(|(env, ledger)| {
                let cell = match ledger {
                    Err(_) => status::unreachable(),
                    Ok(l) => status::orphan(
                        l.entries.iter().rev().find(|e| e.changeset_id == id),
                        l.locked,
                    ),
                };
                (env.label(), CellView::from(cell))
            })
            .collect();
        view.changesets.push(ChangesetView {
            id: id.to_owned(),
            bundle_hash: None,
            environments,
        });
    }
    Ok(Matrix {
        pipeline,
        ledgers,
        bundles,
        view,
    })
}

/// Builds the changeset × environment matrix. Unreachable environments are
/// shown as such; nothing is written anywhere.
pub fn run(ctx: &Context, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    // Only here: this command shows and decides nothing (signing::memo).
    crate::signing::memo::restore(&crate::checkpoint::state_dir());
    let Matrix { pipeline, view, .. } = matrix(ctx, &config, args.rev.as_deref(), false)?;
    let attention = view
        .changesets
        .iter()
        .flat_map(|c| c.environments.values())
        .any(|c| c.state.needs_attention())
        || view.environments.iter().any(|e| !e.reachable);
    let code = if args.exit_code && attention {
        super::failed()
    } else {
        ExitCode::SUCCESS
    };
    if ctx.json {
        output::print_json(&view)?;
        return Ok(code);
    }
    let columns = columns(&pipeline);
    let mut rows = vec![{
        let mut h = vec!["CHANGESET".to_owned(), "BUNDLE".to_owned()];
        h.extend(columns.iter().map(column_title));
        h
    }];
    let coloured = output::colour(output::Stream::Stdout);
    for c in &view.changesets {
        let mut row = vec![
            c.id.clone(),
            c.bundle_hash.map_or("-".into(), |h| h.short()),
        ];
        for (_, members) in &columns {
            let cell_text = |env: &crate::config::Environment| {
                let cell = &c.environments[&env.label()];
                let mut text = cell_text(cell);
                if coloured {
                    let tone = match cell.state {
                        State::Applied => Some(output::Tone::Good),
                        State::Pending | State::Running => Some(output::Tone::Waiting),
                        State::Failed
                        | State::Modified
                        | State::Interrupted
                        | State::Unreachable => Some(output::Tone::Bad),
                        _ => None,
                    };
                    if let Some(t) = tone {
                        text = output::paint(&text, t);
                    }
                }
                text
            };
            match members.as_slice() {
                [one] if one.target.is_none() => row.push(cell_text(one)),
                _ => row.push(fleet_cell(members.iter().map(|env| {
                    let cell = &c.environments[&env.label()];
                    (env.target.as_deref().unwrap_or(""), cell.state)
                }))),
            }
        }
        rows.push(row);
    }
    let printed = output::print_all(&output::table(&rows));
    // `status | head` is normal; the exit code still says what status found.
    output::unless_closed(printed)?;
    for e in &view.environments {
        if let Some(err) = &e.error {
            output::eprint(&format!("warning: {} unreachable: {err}", e.name));
        }
    }
    Ok(code)
}
