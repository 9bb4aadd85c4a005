//! `promoter report`: gathers what `status`, `show`, `ledger`, `audit` and
//! the drift check know into one [`crate::report::Report`] and writes it as
//! an HTML page, a Markdown summary or JSON. Read-only everywhere: it saves
//! no checkpoint and writes nothing to any database.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::SystemTime;

use serde::Serialize;

use super::Context;
use super::status::{self, Matrix};
use crate::changeset::{Sha256Digest, source};
use crate::cli::{ReportArgs, ReportFormat};
use crate::db::{self, fingerprint};
use crate::engine;
use crate::ledger::Entry;
use crate::output;
use crate::report::{self, Cell, Finding, LedgerRow, MatrixRow, Report};
use crate::status::State;

/// JSON: `promoter --json report --out FILE`.
#[derive(Serialize)]
struct WrittenView {
    /// The file written.
    file: String,
    /// `html`, `md` or `json`.
    format: &'static str,
    bytes: usize,
    /// The data hash the report shows: the sha256 of `--format json`.
    data_sha256: Sha256Digest,
    /// Whether every environment was reached, audited intact and without drift.
    all_good: bool,
}

/// Writes the report; exit 0 even when it shows problems (showing them is
/// its job: `status --exit-code` and `audit` are the gates).
pub fn run(ctx: &Context, args: &ReportArgs) -> anyhow::Result<ExitCode> {
    if ctx.json && args.out.is_none() && args.format != ReportFormat::Json {
        return Err(super::CommandError::usage(
            "--json describes the file written: give --out FILE, or use --format json for the data",
        )
        .into());
    }
    let report = gather(ctx, args.rev.as_deref())?;
    let generated = output::format_time(SystemTime::now());
    let text = match args.format {
        ReportFormat::Html => report::html(&report, &generated),
        ReportFormat::Md => report::markdown(&report, &generated),
        ReportFormat::Json => report.json(),
    };
    let Some(out) = &args.out else {
        output::unless_closed(std::io::stdout().lock().write_all(text.as_bytes()))?;
        return Ok(ExitCode::SUCCESS);
    };
    write_replacing(out, text.as_bytes())?;
    let view = WrittenView {
        file: out.display().to_string(),
        format: args.format.as_str(),
        bytes: text.len(),
        data_sha256: report.data_hash(),
        all_good: report.all_good(),
    };
    if ctx.json {
        output::print_json(&view)?;
    } else {
        output::print(&format!(
            "wrote {} ({}, data sha256 {}){}",
            view.file,
            output::plural(view.bytes, "byte"),
            view.data_sha256.short(),
            if view.all_good {
                ""
            } else {
                ": it shows problems that need attention"
            }
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes through a temporary file in the same directory, then renames: a
/// reader never sees half a report, and a failure leaves the old one.
fn write_replacing(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(parent)
        .map_err(|e| anyhow::anyhow!("{}: {e}", parent.display()))?;
    tmp.write_all(bytes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", tmp.path().display()))?;
    tmp.persist(path)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.error))?;
    Ok(())
}

/// Everything the report shows, read from the work tree (or `rev`), git and
/// every environment.
fn gather(ctx: &Context, rev: Option<&str>) -> anyhow::Result<Report> {
    let config = ctx.config()?;
    let Matrix {
        pipeline,
        ledgers,
        bundles,
        view,
    } = status::matrix(ctx, &config, rev, true)?;
    let schema = config.file.ledger_schema.clone();

    let columns = status::columns(&pipeline);
    // The newest changesets are described in full; the matrix has them all.
    let omitted = bundles
        .len()
        .saturating_sub(crate::limits::REPORT_CHANGESETS);
    let detailed: std::collections::BTreeSet<&str> =
        bundles[omitted..].iter().map(|b| b.id.as_str()).collect();
    let matrix = view
        .changesets
        .iter()
        .map(|c| MatrixRow {
            changeset: c.id.clone(),
            detailed: detailed.contains(c.id.as_str()),
            bundle: c.bundle_hash.map_or("-".into(), |h| h.short()),
            cells: columns
                .iter()
                .map(|(_, members)| match members.as_slice() {
                    [one] if one.target.is_none() => {
                        let cell = &c.environments[&one.label()];
                        Cell {
                            state: cell.state.as_str().to_owned(),
                            text: status::cell_text(cell),
                        }
                    }
                    _ => {
                        let states = members.iter().map(|env| {
                            let cell = &c.environments[&env.label()];
                            (env.target.as_deref().unwrap_or(""), cell.state)
                        });
                        Cell {
                            state: worst(states.clone().map(|(_, s)| s)).as_str().to_owned(),
                            text: status::fleet_cell(states),
                        }
                    }
                })
                .collect(),
        })
        .collect();
    let columns = columns.iter().map(status::column_title).collect();

    // The audits compare the ledgers with git at the revision, or HEAD.
    let audited = rev.unwrap_or("HEAD");
    let snapshot = source::load_git(&ctx.root, audited);
    let audited_against = match &snapshot {
        Ok(s) => format!(
            "{audited} ({})",
            s.commit.chars().take(12).collect::<String>()
        ),
        Err(e) => format!("nothing: git at {audited} could not be read ({e})"),
    };

    // Every reachable environment's live schema, read at once.
    type Reading<'a> = std::pin::Pin<
        Box<dyn std::future::Future<Output = Option<Result<Sha256Digest, String>>> + 'a>,
    >;
    let readings: Vec<Reading<'_>> = pipeline
        .iter()
        .zip(&ledgers)
        .map(|(env, l)| {
            let schema = &schema;
            Box::pin(async move {
                l.as_ref().ok()?;
                Some(
                    async {
                        let mut conn = engine::connect(env).await?;
                        let fp = fingerprint::fingerprint(&mut conn, &env.name, schema).await;
                        db::close(conn).await;
                        fp
                    }
                    .await
                    .map_err(|e: crate::db::DbError| e.to_string()),
                )
            }) as Reading<'_>
        })
        .collect();
    let live = ctx.block_on(engine::join::bounded(readings, 16));

    let git = match rev {
        Some(rev) => super::trust::GitTrust::at(ctx, rev).ok(),
        None => super::trust::GitTrust::work_tree(ctx).ok(),
    };
    let mut environments = Vec::new();
    for (i, (env, ledger)) in pipeline.iter().zip(&ledgers).enumerate() {
        let label = env.label();
        let l = match ledger {
            Err(why) => {
                environments.push(unreachable(label, why.clone()));
                continue;
            }
            Ok(l) => l,
        };
        // Reachable ledgers always have a reading.
        let schema_now = live[i]
            .clone()
            .unwrap_or_else(|| Err("not read".to_owned()));
        let drift = Some(match &schema_now {
            Err(why) => Finding {
                ok: false,
                text: format!("schema not read: {why}"),
            },
            Ok(now) => drift(&l.entries, *now),
        });
        let source = env.config.promote_from.as_deref().and_then(|from| {
            let j = pipeline.iter().position(|p| p.name == from)?;
            match (&schema_now, &live[j]) {
                (Ok(a), Some(Ok(b))) if a == b => Some(Finding {
                    ok: true,
                    text: format!("same schema as {from}"),
                }),
                (Ok(_), Some(Ok(_))) => Some(Finding {
                    ok: false,
                    text: format!(
                        "differs from {from}: changesets still pending here, or drift (promoter drift {from} {})",
                        env.name
                    ),
                }),
                _ => None,
            }
        });
        let mut problems: Vec<String> = match &snapshot {
            Ok(s) => super::ledger::audit_problems(ctx, &config, env, s, None, l)?
                .iter()
                .map(ToString::to_string)
                .collect(),
            Err(_) => Vec::new(),
        };
        let problems_omitted = problems
            .len()
            .saturating_sub(crate::limits::REPORT_PROBLEMS);
        problems.truncate(crate::limits::REPORT_PROBLEMS);
        let audit = snapshot.as_ref().ok().map(|_| Finding {
            ok: problems.is_empty(),
            text: if problems.is_empty() {
                "intact".to_owned()
            } else {
                output::plural(problems.len() + problems_omitted, "problem")
            },
        });
        let marks = super::ledger::row_marks(ctx, &env.name, &l.entries);
        let keep = l.entries.len().min(crate::limits::REPORT_LEDGER_ROWS);
        let first = l.entries.len() - keep;
        let ledger = l.entries[first..]
            .iter()
            .zip(&marks[first..])
            .map(|(e, m)| ledger_row(&env.name, &l.entries, e, m.clone()))
            .collect();
        environments.push(report::Environment {
            name: label,
            unreachable: None,
            rows: l.entries.len(),
            applied: crate::ledger::applied(&l.entries).len(),
            head: l.entries.last().map_or("empty".into(), |e| {
                format!("#{} {}", e.seq, e.entry_hash.short())
            }),
            schema: schema_now.as_ref().ok().map(|s| s.short()),
            drift,
            source,
            audit,
            problems,
            problems_omitted,
            ledger,
            ledger_omitted: first,
        });
    }

    let keyrings = ctx.keyrings()?;
    let now = SystemTime::now();
    let mut changesets = Vec::new();
    for bundle in &bundles[omitted..] {
        let check = crate::check::check_bundle(&keyrings, bundle, None, None, now);
        let (files, _) = super::show::files(bundle)?;
        let mut runs = Vec::new();
        for (env, l) in pipeline.iter().zip(&ledgers) {
            let Ok(l) = l else { continue };
            for r in super::show::runs(bundle.id.as_str(), &l.entries, git.as_ref()) {
                let signs_receipts = git
                    .as_ref()
                    .is_some_and(|g| !g.receipt_fingerprints(&r.written_by).is_empty());
                use super::show::Receipt;
                let ok = match r.checked {
                    Receipt::Verified | Receipt::Unchecked => true,
                    Receipt::Absent => !signs_receipts,
                    Receipt::Invalid => false,
                };
                runs.push(report::Run {
                    // A row a refresh copied in is the source's history.
                    environment: if r.written_by == env.name {
                        env.label()
                    } else {
                        format!("{} (copied from {})", env.label(), r.written_by)
                    },
                    seq: r.seq,
                    status: r.status.to_owned(),
                    at: r.finished_at,
                    by: r.by,
                    seconds: r.seconds.map(|s| format!("{s:.2} s")),
                    statements: r.statements,
                    schema: format!(
                        "{} → {}",
                        r.schema_before.map_or("-".into(), |h| h.short()),
                        r.schema_after.map_or("-".into(), |h| h.short())
                    ),
                    receipt: Finding {
                        ok,
                        text: if r.checked == Receipt::Absent && signs_receipts {
                            format!("absent, though {} signs its rows", r.written_by)
                        } else {
                            r.receipt
                        },
                    },
                    error: r.error,
                });
            }
        }
        changesets.push(report::Changeset {
            id: bundle.id.to_string(),
            description: bundle.meta().ok().map(|m| m.description),
            bundle_hash: bundle.hash(),
            files: files
                .into_iter()
                .map(|f| report::File {
                    name: f.name,
                    bytes: f.bytes,
                    statements: f.statements,
                    sha256: f.sha256,
                })
                .collect(),
            signatures: check
                .signatures
                .iter()
                .map(|s| report::Signature {
                    role: s.role.clone().unwrap_or_else(|| "-".into()),
                    who: s
                        .principal
                        .clone()
                        .or_else(|| s.userid.clone())
                        .unwrap_or_else(|| "unknown signer".into()),
                    key: s
                        .fingerprint
                        .clone()
                        .or_else(|| s.issuer.clone())
                        .unwrap_or_else(|| "-".into()),
                    binds: s.created.clone().unwrap_or_else(|| "-".into()),
                    verdict: verdict(s.good, s.reason.as_deref()),
                })
                .collect(),
            approvals: check
                .approvals
                .iter()
                .map(|a| report::Signature {
                    role: a.role.clone().unwrap_or_else(|| "-".into()),
                    who: a
                        .principal
                        .clone()
                        .unwrap_or_else(|| "unknown signer".into()),
                    key: a.fingerprint.clone().unwrap_or_else(|| "-".into()),
                    binds: approval_binds(a),
                    verdict: verdict(a.good, a.reason.as_deref()),
                })
                .collect(),
            runs,
        });
    }

    let project = ctx
        .root
        .canonicalize()
        .unwrap_or_else(|_| ctx.root.clone())
        .file_name()
        .map_or_else(
            || "promoter project".into(),
            |n| n.to_string_lossy().into_owned(),
        );
    Ok(Report {
        format_version: 1,
        project,
        bundles_from: match rev {
            Some(rev) => format!("git at {rev}"),
            None => "the work tree".into(),
        },
        audited_against,
        columns,
        matrix,
        environments,
        changesets,
        changesets_omitted: omitted,
    })
}

/// A fleet cell's state: the one that most needs attention.
fn worst(states: impl Iterator<Item = State>) -> State {
    const ORDER: [State; 9] = [
        State::Failed,
        State::Modified,
        State::Interrupted,
        State::Unreachable,
        State::Running,
        State::Pending,
        State::ResolvedRolledBack,
        State::Absent,
        State::Applied,
    ];
    states
        .min_by_key(|s| ORDER.iter().position(|o| o == s).unwrap_or(0))
        .unwrap_or(State::Absent)
}

fn unreachable(name: String, why: String) -> report::Environment {
    report::Environment {
        name,
        unreachable: Some(why),
        rows: 0,
        applied: 0,
        head: "-".into(),
        schema: None,
        drift: None,
        source: None,
        audit: None,
        problems: Vec::new(),
        problems_omitted: 0,
        ledger: Vec::new(),
        ledger_omitted: 0,
    }
}

/// The live schema against the last one the ledger recorded.
fn drift(entries: &[Entry], now: Sha256Digest) -> Finding {
    let recorded = entries
        .iter()
        .rev()
        .filter(|e| !e.status.is_event())
        .find_map(|e| e.schema_after.or(e.schema_before).map(|s| (e.seq, s)));
    match recorded {
        None => Finding {
            ok: true,
            text: "nothing recorded yet".into(),
        },
        Some((seq, s)) if s == now => Finding {
            ok: true,
            text: format!("none (as ledger #{seq} recorded)"),
        },
        Some((seq, s)) => Finding {
            ok: false,
            text: format!(
                "changed outside promoter since ledger #{seq} recorded {}",
                s.short()
            ),
        },
    }
}

fn verdict(good: bool, reason: Option<&str>) -> Finding {
    Finding {
        ok: good,
        text: match (good, reason) {
            (true, _) => "good".into(),
            (false, Some(why)) => why.to_owned(),
            (false, None) => "does not verify".into(),
        },
    }
}

fn approval_binds(a: &crate::check::ApprovalView) -> String {
    let mut parts = Vec::new();
    if !a.opens.is_empty() {
        parts.push(format!("opens {}", a.opens.join(", ")));
    }
    if let Some(exp) = &a.expires {
        parts.push(format!("until {exp}"));
    }
    match (&a.tested_in, &a.entry) {
        (Some(env), Some(entry)) => {
            parts.push(format!("tested in {env} at entry {}", entry.short()))
        }
        (Some(env), None) => parts.push(format!("tested in {env}")),
        _ => {}
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join("; ")
    }
}

fn ledger_row(env: &str, entries: &[Entry], e: &Entry, problem: Option<String>) -> LedgerRow {
    let mut notes = Vec::new();
    if let Some(err) = &e.error {
        notes.push(format!("error: {err}"));
    }
    if let Some(refresh) = crate::ledger::RefreshNote::of(e) {
        notes.push(super::ledger::refresh_line(env, entries, e, &refresh));
    } else if let Some(note) = &e.note {
        notes.push(format!("note: {note}"));
    }
    LedgerRow {
        seq: e.seq,
        changeset: e.changeset_id.clone(),
        status: e.status.as_str().to_owned(),
        bundle: e.bundle_hash.short(),
        finished: output::format_unix(e.finished_at.unwrap_or(e.started_at).div_euclid(1_000_000)),
        by: format!("{}@{} as {}", e.os_user, e.host, e.db_role),
        from: e.promoted_from.clone().unwrap_or_else(|| "-".into()),
        signers: super::ledger::signers_text(e),
        receipt: if e.receipt.is_some() { "signed" } else { "-" }.to_owned(),
        entry: e.entry_hash.short(),
        problem,
        note: (!notes.is_empty()).then(|| notes.join("; ")),
    }
}
