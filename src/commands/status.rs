//! `promoter status`: every changeset against every environment.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::Context;
use super::target::{self, Checked};
use crate::changeset::{self, Bundle};
use crate::cli::StatusArgs;
use crate::ledger::{Entry, Status};
use crate::output;

/// JSON: one environment of `status`.
#[derive(Serialize)]
struct EnvView {
    /// Environment name from environments.yaml, in pipeline order.
    name: String,
    /// Whether its ledger could be read.
    reachable: bool,
    /// Why not, if it could not (URL shown without its password).
    error: Option<String>,
    /// How many changesets its ledger shows applied.
    applied: usize,
}

/// JSON: one changeset in one environment.
#[derive(Serialize)]
struct Cell {
    /// `applied`, `modified` (applied, but the bundle changed since), `pending`,
    /// `failed`, `running` (a non-transactional changeset in progress or
    /// interrupted), `resolved-rolled-back`, `absent` (ledger-only rows) or `unreachable`.
    state: String,
    /// When it was applied or failed (RFC 3339, UTC).
    at: Option<String>,
    /// `os_user@host` that applied it.
    by: Option<String>,
    /// What is missing for a pending one (`needs 1 customer`), the first line of a failure, or why it is modified.
    detail: Option<String>,
}

/// JSON: one changeset row of `status`.
#[derive(Serialize)]
struct ChangesetView {
    /// Changeset id, `NNNN-slug`.
    id: String,
    /// sha256 of its `SHA256SUMS`; null if unsealed or only known to a ledger.
    bundle_hash: Option<String>,
    /// Environment name → its state there.
    environments: BTreeMap<String, Cell>,
}

/// JSON: `promoter --json status`.
#[derive(Serialize)]
struct StatusView {
    /// Every environment, in pipeline order.
    environments: Vec<EnvView>,
    /// Every changeset of the work tree (or `--rev`), then those only a ledger knows.
    changesets: Vec<ChangesetView>,
}

/// Builds the changeset × environment matrix. Unreachable environments are
/// shown as such; nothing is written anywhere.
pub fn run(ctx: &Context, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let keyrings = ctx.keyrings()?;
    let bundles: Vec<Bundle> = match &args.rev {
        Some(rev) => changeset::source::load_git(&ctx.root, rev)?.bundles,
        None => changeset::source::discover(&ctx.root)?
            .iter()
            .map(changeset::source::load_dir)
            .collect::<Result<_, _>>()?,
    };
    let pipeline = config.pipeline();
    let ledgers: Vec<Result<Vec<Entry>, String>> = target::runtime()?.block_on(async {
        let mut out = Vec::new();
        for env in &pipeline {
            let r = target::read_ledger(&config, env, Some(Duration::from_secs(5))).await;
            out.push(r.map_err(|e| e.to_string()));
        }
        out
    });
    let now = SystemTime::now();
    let mut view = StatusView {
        environments: pipeline
            .iter()
            .zip(&ledgers)
            .map(|(env, l)| EnvView {
                name: env.name.to_owned(),
                reachable: l.is_ok(),
                error: l.as_ref().err().cloned(),
                applied: l.as_ref().map_or(0, |e| target::applied(e).len()),
            })
            .collect(),
        changesets: Vec::new(),
    };
    for bundle in bundles {
        let mut cells = BTreeMap::new();
        let hash = bundle.hash().map(|h| h.to_hex());
        let mut checked: Option<Checked> = None;
        for (env, ledger) in pipeline.iter().zip(&ledgers) {
            let cell = match ledger {
                Err(_) => Cell {
                    state: "unreachable".into(),
                    at: None,
                    by: None,
                    detail: None,
                },
                Ok(entries) => {
                    let rows: Vec<&Entry> = entries
                        .iter()
                        .filter(|e| e.changeset_id == bundle.id.as_str())
                        .collect();
                    let applied = rows.iter().rev().find(|e| e.status.is_applied());
                    let last = rows.last();
                    match (applied, last) {
                        (Some(a), _) => Cell {
                            state: if Some(&a.bundle_hash) == hash.as_ref() {
                                "applied"
                            } else {
                                "modified"
                            }
                            .into(),
                            at: Some(target::time(a.finished_at.unwrap_or(a.started_at))),
                            by: Some(format!("{}@{}", a.os_user, a.host)),
                            detail: (Some(&a.bundle_hash) != hash.as_ref()).then(|| {
                                format!(
                                    "applied {}, now {}",
                                    &a.bundle_hash[..12],
                                    hash.as_deref().map_or("unsealed", |h| &h[..12])
                                )
                            }),
                        },
                        (None, Some(l)) if matches!(l.status, Status::Failed | Status::Running) => {
                            Cell {
                                state: l.status.as_str().into(),
                                at: Some(target::time(l.started_at)),
                                by: Some(format!("{}@{}", l.os_user, l.host)),
                                detail: l
                                    .error
                                    .as_ref()
                                    .map(|e| e.lines().next().unwrap_or("").to_owned()),
                            }
                        }
                        _ => {
                            let c = checked.get_or_insert_with(|| {
                                Checked::new(&keyrings, bundle.clone(), &BTreeMap::new(), now)
                            });
                            let missing: Vec<String> =
                                crate::signing::shortfalls(&env.config.require, &c.check.signers)
                                    .iter()
                                    .map(|s| format!("{} {}", s.need - s.have, s.role))
                                    .collect();
                            Cell {
                                state: "pending".into(),
                                at: None,
                                by: None,
                                detail: if hash.is_none() {
                                    Some("not sealed".into())
                                } else if missing.is_empty() {
                                    None
                                } else {
                                    Some(format!("needs {}", missing.join(", ")))
                                },
                            }
                        }
                    }
                }
            };
            cells.insert(env.name.to_owned(), cell);
        }
        view.changesets.push(ChangesetView {
            id: bundle.id.to_string(),
            bundle_hash: hash,
            environments: cells,
        });
    }
    // Changesets a ledger knows that the work tree (or rev) no longer has.
    let known: Vec<String> = view.changesets.iter().map(|c| c.id.clone()).collect();
    let mut orphans: Vec<&str> = ledgers
        .iter()
        .flatten()
        .flatten()
        .map(|e| e.changeset_id.as_str())
        .filter(|id| !known.iter().any(|k| k == id))
        .collect();
    orphans.sort_unstable();
    orphans.dedup();
    for id in orphans {
        let environments = pipeline
            .iter()
            .zip(&ledgers)
            .map(|(env, ledger)| {
                let last = ledger
                    .as_ref()
                    .ok()
                    .and_then(|rows| rows.iter().rev().find(|e| e.changeset_id == id));
                let cell = Cell {
                    state: match (ledger, last) {
                        (Err(_), _) => "unreachable".into(),
                        (Ok(_), None) => "absent".into(),
                        (Ok(_), Some(e)) => e.status.as_str().into(),
                    },
                    at: last.map(|e| target::time(e.finished_at.unwrap_or(e.started_at))),
                    by: last.map(|e| format!("{}@{}", e.os_user, e.host)),
                    detail: last.map(|_| "not in the work tree".to_owned()),
                };
                (env.name.to_owned(), cell)
            })
            .collect();
        view.changesets.push(ChangesetView {
            id: id.to_owned(),
            bundle_hash: None,
            environments,
        });
    }
    if ctx.json {
        output::print_json(&view)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![{
        let mut h = vec!["CHANGESET".to_owned(), "BUNDLE".to_owned()];
        h.extend(pipeline.iter().map(|e| e.name.to_uppercase()));
        h
    }];
    for c in &view.changesets {
        let mut row = vec![
            c.id.clone(),
            c.bundle_hash
                .as_deref()
                .map_or("-".into(), |h| h[..12].to_owned()),
        ];
        for env in &pipeline {
            let cell = &c.environments[env.name];
            let mut text = cell.state.clone();
            if cell.state == "applied"
                && let Some(at) = &cell.at
            {
                text = format!("applied {}", &at[..10]);
            }
            if let Some(d) = &cell.detail {
                text = format!("{text} ({d})");
            }
            row.push(text);
        }
        rows.push(row);
    }
    for line in output::table(&rows) {
        output::print(&line);
    }
    for e in &view.environments {
        if let Some(err) = &e.error {
            output::eprint(&format!("warning: {} unreachable: {err}", e.name));
        }
    }
    Ok(ExitCode::SUCCESS)
}
