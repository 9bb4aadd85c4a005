//! `promoter ledger ENV` and `promoter audit ENV`.

use std::process::ExitCode;

use serde::Serialize;

use super::{CommandError, Context, ErrorKind};
use crate::changeset::{Sha256Digest, source};
use crate::cli::{AuditArgs, LedgerArgs};
use crate::db::DbError;
use crate::engine;
use crate::ledger::{AuditProblem, Entry, InGit, Signer, Status};
use crate::output;

/// JSON: one ledger row, times as RFC 3339 and signers as an array.
#[derive(Serialize)]
struct EntryView<'a> {
    seq: i64,
    changeset_id: &'a str,
    bundle_hash: Sha256Digest,
    environment: &'a str,
    status: Status,
    /// The signers counted when it was applied.
    signers: Vec<Signer>,
    promoted_from: Option<&'a str>,
    promoted_from_entry: Option<Sha256Digest>,
    git_commit: Option<&'a str>,
    os_user: &'a str,
    host: &'a str,
    db_role: &'a str,
    started_at: String,
    finished_at: Option<String>,
    schema_before: Option<Sha256Digest>,
    schema_after: Option<Sha256Digest>,
    statements: i64,
    error: Option<&'a str>,
    note: Option<&'a str>,
    prev_hash: Sha256Digest,
    entry_hash: Sha256Digest,
    /// The environment's armored signature over the row (its receipt), if it signs rows.
    receipt: Option<&'a str>,
    /// What is wrong with the row (chain broken, receipt missing or bad), if anything.
    problem: Option<String>,
}

impl<'a> From<&'a Entry> for EntryView<'a> {
    fn from(e: &'a Entry) -> Self {
        Self {
            seq: e.seq,
            changeset_id: &e.changeset_id,
            bundle_hash: e.bundle_hash,
            environment: &e.environment,
            status: e.status,
            signers: serde_json::from_str(&e.signers).unwrap_or_default(),
            promoted_from: e.promoted_from.as_deref(),
            promoted_from_entry: e.promoted_from_entry,
            git_commit: e.git_commit.as_deref(),
            os_user: &e.os_user,
            host: &e.host,
            db_role: &e.db_role,
            started_at: output::format_micros(e.started_at),
            finished_at: e.finished_at.map(output::format_micros),
            schema_before: e.schema_before,
            schema_after: e.schema_after,
            statements: e.statements,
            error: e.error.as_deref(),
            note: e.note.as_deref(),
            prev_hash: e.prev_hash,
            entry_hash: e.entry_hash,
            receipt: e.receipt.as_deref(),
            problem: None,
        }
    }
}

/// JSON: `promoter --json ledger ENV`.
#[derive(Serialize)]
struct LedgerView<'a> {
    environment: &'a str,
    rows: Vec<EntryView<'a>>,
}

/// Prints every ledger row of an environment (errors and notes after the table).
pub fn show(ctx: &Context, args: &LedgerArgs) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let env = config.environment(&args.env)?;
    let entries = ctx
        .block_on(engine::read_ledger(&env, &config.file.ledger_schema))?
        .entries;
    // Marks are computed over the whole chain, then the rows filtered.
    let marks = row_marks(ctx, &env.name, &entries);
    let since = args
        .since
        .as_deref()
        .map(output::parse_time)
        .transpose()
        .map_err(|e| CommandError::usage(format!("--since: {e}")))?;
    let keep = |e: &Entry| {
        args.changeset.as_deref().is_none_or(|c| {
            crate::changeset::ChangesetId::parse(&e.changeset_id).is_ok_and(|id| id.matches(c))
                || e.changeset_id == c
        }) && since.is_none_or(|t| e.finished_at.unwrap_or(e.started_at) >= t)
    };
    let (entries, marks): (Vec<Entry>, Vec<Option<String>>) = entries
        .into_iter()
        .zip(marks)
        .filter(|(e, _)| keep(e))
        .unzip();
    if ctx.json {
        output::print_json(&LedgerView {
            environment: &env.name,
            rows: entries
                .iter()
                .zip(&marks)
                .map(|(e, m)| EntryView {
                    problem: m.clone(),
                    ..EntryView::from(e)
                })
                .collect(),
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    output::unless_closed(print_table(&env.name, &entries, &marks))?;
    Ok(ExitCode::SUCCESS)
}

/// What is wrong with each row, if anything: where the hash chain breaks,
/// and, when the work tree holds the environment's receipt certificate, a
/// row without a valid receipt.
pub(super) fn row_marks(ctx: &Context, env: &str, entries: &[Entry]) -> Vec<Option<String>> {
    let mut marks = vec![None; entries.len()];
    if let Some(brk) = crate::ledger::check_chain(entries)
        && let Some(i) = entries.iter().position(|e| e.seq == brk.seq)
    {
        marks[i] = Some(format!("chain broken: {}", brk.reason));
    }
    let Ok(git) = super::trust::GitTrust::work_tree(ctx) else {
        return marks;
    };
    if git.receipt_fingerprints(env).is_empty() {
        return marks;
    }
    let known = format!("committed for {env}");
    let now = std::time::SystemTime::now();
    // Rows before a refresh are the copied source's, vouched for by the
    // `refreshed` row's own receipt.
    let own = crate::ledger::own_rows_start(entries, env);
    for (i, e) in entries.iter().enumerate().skip(own) {
        if marks[i].is_some() {
            continue;
        }
        marks[i] = match engine::trust::receipt_of(&git.receipt_certs, env, e, &known, now) {
            Ok(_) => None,
            Err(engine::trust::ReceiptError::Unsigned) => {
                Some("not signed by the environment's receipt key".to_owned())
            }
            Err(engine::trust::ReceiptError::Invalid(why)) => {
                Some(format!("receipt does not verify: {why}"))
            }
        };
    }
    marks
}

/// The signers a row counted, as `role:fingerprint8` (`(approved)` for an approval).
pub(super) fn signers_text(e: &Entry) -> String {
    let signers: Vec<Signer> = serde_json::from_str(&e.signers).unwrap_or_default();
    if signers.is_empty() {
        return "-".to_owned();
    }
    signers
        .iter()
        .map(|s| {
            let short: String = s.fingerprint.chars().take(8).collect();
            let how = if s.approval.is_some() {
                "(approved)"
            } else {
                ""
            };
            format!("{}:{short}{how}", s.role)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn print_table(env: &str, entries: &[Entry], marks: &[Option<String>]) -> std::io::Result<()> {
    if entries.is_empty() {
        return output::print(&format!("{env}: the ledger is empty"));
    }
    let mut rows = vec![
        [
            "#",
            "CHANGESET",
            "STATUS",
            "BUNDLE",
            "FINISHED",
            "BY",
            "FROM",
            "SIGNERS",
            "RECEIPT",
            "ENTRY",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for e in entries {
        rows.push(vec![
            e.seq.to_string(),
            e.changeset_id.clone(),
            e.status.as_str().to_owned(),
            e.bundle_hash.short(),
            output::format_unix(e.finished_at.unwrap_or(e.started_at).div_euclid(1_000_000)),
            format!("{}@{} as {}", e.os_user, e.host, e.db_role),
            e.promoted_from.clone().unwrap_or_else(|| "-".into()),
            signers_text(e),
            if e.receipt.is_some() { "signed" } else { "-" }.to_owned(),
            e.entry_hash.short(),
        ]);
    }
    for line in output::table(&rows) {
        output::print(&line)?;
    }
    for (e, mark) in entries.iter().zip(marks) {
        if let Some(m) = mark {
            output::print(&format!("#{} PROBLEM: {m}", e.seq))?;
        }
    }
    for e in entries
        .iter()
        .filter(|e| e.error.is_some() || e.note.is_some())
    {
        if let Some(err) = &e.error {
            output::print(&format!(
                "#{} error: {}",
                e.seq,
                err.replace('\n', "\n    ")
            ))?;
        }
        if let Some(refresh) = crate::ledger::RefreshNote::of(e) {
            output::print(&format!(
                "#{} {}",
                e.seq,
                refresh_line(env, entries, e, &refresh)
            ))?;
        } else if let Some(note) = &e.note {
            output::print(&format!("#{} note: {note}", e.seq))?;
        }
    }
    Ok(())
}

/// What a `refreshed` row says, in words.
pub(super) fn refresh_line(
    env: &str,
    entries: &[Entry],
    row: &Entry,
    note: &crate::ledger::RefreshNote,
) -> String {
    let from = row.promoted_from.as_deref().unwrap_or("?");
    let copied = entries.iter().take_while(|e| e.seq < row.seq).count();
    let history = match copied {
        0 => format!("{from} had no ledger rows"),
        n => format!("#1–#{n} are {from}'s ledger, copied"),
    };
    let replaced = match note.replaced {
        Some(h) => format!(
            "{env}'s ledger before it (up to #{} {}) is kept in ledger_replaced",
            h.seq,
            h.entry_hash.short()
        ),
        None => format!("{env} had no ledger before"),
    };
    let masked = note
        .masking_sha256
        .as_ref()
        .map(|m| format!(", masked by spec {}", &m[..m.len().min(12)]))
        .unwrap_or_default();
    format!(
        "refreshed from {from}: {history}; {replaced}; {} tables, {} rows{masked}",
        note.tables, note.rows
    )
}

/// JSON: `promoter --json audit ENV`.
#[derive(Serialize)]
struct AuditView {
    /// The audited environment.
    environment: String,
    /// Whether the audit passed.
    ok: bool,
    /// Ledger rows read.
    rows: usize,
    /// Rows that count as applied (each checked against git).
    applied: usize,
    /// The revision the bundles were read from, as given.
    rev: String,
    /// The commit it resolved to.
    commit: String,
    /// Every problem found, the first chain break first; empty when the audit passes.
    problems: Vec<AuditProblem>,
    /// Every pin of the trust policy; a `break-glass` one is always reported.
    trust_events: Vec<TrustEventView>,
}

/// JSON: one pin of the trust policy.
#[derive(Serialize)]
struct TrustEventView {
    seq: i64,
    kind: &'static str,
    reason: Option<String>,
    pinned_at: String,
    by: String,
    policy_hash: String,
}

/// What the ledger must still hold: the head promoter saw last (its
/// checkpoint), the head an auditor gives with `--checkpoint`, and every
/// entry that downstream environments' rows were promoted from.
fn checkpoint_problems(
    ctx: &Context,
    given: Option<&std::path::Path>,
    config: &crate::config::Config,
    env: &crate::config::Environment,
    ledger: &engine::Ledger,
) -> anyhow::Result<Vec<AuditProblem>> {
    let mut out = Vec::new();
    let replaced = ledger.replaced.as_deref().unwrap_or_default();
    let mut check = |cp: &crate::checkpoint::Checkpoint, from: &str| {
        if let Err(why) = crate::checkpoint::check(&ledger.entries, replaced, cp) {
            out.push(AuditProblem::CheckpointMissing {
                seq: cp.seq,
                reason: format!("{why} ({from})"),
            });
        }
    };
    match crate::checkpoint::load(&crate::checkpoint::state_dir(), &ledger.identity) {
        Ok(Some(cp)) => check(&cp, "promoter's checkpoint"),
        Ok(None) => {}
        Err(e) => output::eprint(&format!("warning: {e}")),
    }
    if let Some(path) = given {
        #[derive(serde::Deserialize)]
        struct Given {
            seq: i64,
            entry_hash: crate::changeset::Sha256Digest,
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let given: Given = serde_json::from_str(&text).map_err(|e| {
            CommandError::usage(format!(
                "{}: not a checkpoint (seq, entry_hash): {e}",
                path.display()
            ))
        })?;
        let cp = crate::checkpoint::Checkpoint {
            environment: env.name.clone(),
            database: ledger.identity.clone(),
            seq: given.seq,
            entry_hash: given.entry_hash,
            seen_at: "the time the auditor recorded it".into(),
        };
        check(&cp, &path.display().to_string());
    }
    for downstream in config.pipeline() {
        if downstream.config.promote_from.as_deref() != Some(env.name.as_str()) {
            continue;
        }
        match ctx.block_on(engine::read_ledger(&downstream, &config.file.ledger_schema)) {
            Ok(d) => {
                // Entries a refresh replaced are still what those rows were promoted from.
                let known: Vec<Entry> = ledger
                    .entries
                    .iter()
                    .cloned()
                    .chain(replaced.iter().map(|k| k.entry.clone()))
                    .collect();
                for (seq, entry) in
                    crate::checkpoint::missing_references(&env.name, &known, &d.entries)
                {
                    out.push(AuditProblem::ReferenceMissing {
                        seq,
                        environment: downstream.name.clone(),
                        entry,
                    });
                }
            }
            Err(e) => output::eprint(&format!(
                "note: {} (promoted from {}) is not reachable; its references were not checked: {e}",
                downstream.name, env.name
            )),
        }
    }
    Ok(out)
}

/// In an environment that has a receipt certificate committed at the
/// audited revision, every row must carry a valid receipt by it: a row
/// inserted by hand, or re-hashed after an edit, has none. After a refresh,
/// the rows before the `refreshed` row are the source's history, which that
/// row's own receipt covers through the hash chain.
fn receipt_problems(
    ctx: &Context,
    commit: &str,
    env: &str,
    entries: &[Entry],
) -> anyhow::Result<Vec<AuditProblem>> {
    let git = super::trust::GitTrust::at(ctx, commit)?;
    if git.receipt_fingerprints(env).is_empty() {
        return Ok(Vec::new());
    }
    let known = format!("committed for {env}");
    let now = std::time::SystemTime::now();
    Ok(entries[crate::ledger::own_rows_start(entries, env)..]
        .iter()
        .filter_map(|e| {
            let reason = match engine::trust::receipt_of(&git.receipt_certs, env, e, &known, now) {
                Ok(_) => return None,
                Err(engine::trust::ReceiptError::Unsigned) => "the row is not signed".to_owned(),
                Err(engine::trust::ReceiptError::Invalid(why)) => why,
            };
            Some(AuditProblem::NoReceipt { seq: e.seq, reason })
        })
        .collect())
}

/// Everything wrong with `env`'s ledger (read with what refreshes replaced):
/// its chain, its applied bundles against git at `snapshot`, its receipts,
/// its kept ledgers, its pinned policies and the heads it must still hold.
pub(super) fn audit_problems(
    ctx: &Context,
    config: &crate::config::Config,
    env: &crate::config::Environment,
    snapshot: &source::GitSnapshot,
    checkpoint: Option<&std::path::Path>,
    l: &engine::Ledger,
) -> anyhow::Result<Vec<AuditProblem>> {
    let mut problems = crate::ledger::audit(&l.entries, |id| {
        // A changeset a baseline folded is in the archive, and audited there.
        match snapshot
            .bundles
            .iter()
            .chain(&snapshot.archived)
            .find(|b| b.id.as_str() == id)
        {
            None => InGit::Missing,
            Some(b) => InGit::Present {
                hash: b.hash(),
                files: b
                    .check_files()
                    .map(|p| p.iter().map(ToString::to_string).collect())
                    .map_err(|e| e.to_string()),
            },
        }
    });
    problems.extend(receipt_problems(
        ctx,
        &snapshot.commit,
        &env.name,
        &l.entries,
    )?);
    problems.extend(
        crate::ledger::check_replaced(
            &l.entries,
            &env.name,
            l.replaced.as_deref().unwrap_or_default(),
        )
        .into_iter()
        .map(|(seq, reason)| AuditProblem::ReplacedBroken { seq, reason }),
    );
    if env.config.promote_from.is_some() {
        problems.extend(
            l.entries[crate::ledger::own_rows_start(&l.entries, &env.name)..]
                .iter()
                .filter(|e| e.status == crate::ledger::Status::Forgotten)
                .map(|e| AuditProblem::ForgottenInControlled {
                    seq: e.seq,
                    changeset_id: e.changeset_id.clone(),
                }),
        );
    }
    if let Some((seq, reason)) = crate::policy::check_pins(&l.pins) {
        problems.push(AuditProblem::PolicyTampered { seq, reason });
    }
    problems.extend(checkpoint_problems(ctx, checkpoint, config, env, l)?);
    Ok(problems)
}

/// Audits an environment: recomputes the hash chain (catching edited,
/// deleted and reordered rows) and checks every applied row against the
/// bundle in git at `--rev`. Exit 1 naming every bad row; a row holding a
/// value promoter never writes is such a problem too, never a crash.
pub fn audit(ctx: &Context, args: &AuditArgs) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let env = config.environment(&args.env)?;
    let snapshot = source::load_git(&ctx.root, &args.rev)?;
    let mut trust_events = Vec::new();
    let mut identity = None;
    let (entries, problems) = match ctx.block_on(engine::read_ledger_with_replaced(
        &env,
        &config.file.ledger_schema,
    )) {
        Ok(l) => {
            let problems = audit_problems(
                ctx,
                &config,
                &env,
                &snapshot,
                args.checkpoint.as_deref(),
                &l,
            )?;
            identity = Some(l.identity.clone());
            trust_events = l
                .pins
                .iter()
                .map(|p| TrustEventView {
                    seq: p.seq,
                    kind: p.kind.as_str(),
                    reason: p.reason.clone(),
                    pinned_at: output::format_micros(p.pinned_at),
                    by: format!("{}@{} as {}", p.os_user, p.host, p.db_role),
                    policy_hash: p.policy_hash.to_hex(),
                })
                .collect();
            (l.entries, problems)
        }
        Err(DbError::MalformedLedger { seq, reason, .. }) => {
            (Vec::new(), vec![AuditProblem::Malformed { seq, reason }])
        }
        Err(e) => return Err(e.into()),
    };
    let view = AuditView {
        environment: env.name.clone(),
        ok: problems.is_empty(),
        rows: entries.len(),
        applied: entries.iter().filter(|e| e.status.is_applied()).count(),
        rev: args.rev.clone(),
        commit: snapshot.commit.clone(),
        problems,
        trust_events,
    };
    if ctx.json {
        output::print_json(&view)?;
        return Ok(if view.ok {
            ExitCode::SUCCESS
        } else {
            super::failed()
        });
    }
    for t in view.trust_events.iter().filter(|t| t.kind == "break-glass") {
        output::eprint(&format!(
            "notice: {}'s trust policy was re-pinned by BREAK GLASS at #{} ({} by {}): {}",
            view.environment,
            t.seq,
            t.pinned_at,
            t.by,
            t.reason.as_deref().unwrap_or("no reason given")
        ));
    }
    if view.ok
        && let (Some(identity), Some(head)) = (&identity, entries.last())
    {
        let cp = crate::checkpoint::Checkpoint {
            environment: env.name.clone(),
            database: identity.clone(),
            seq: head.seq,
            entry_hash: head.entry_hash,
            seen_at: output::format_time(std::time::SystemTime::now()),
        };
        if let Err(e) = crate::checkpoint::save(&crate::checkpoint::state_dir(), &cp) {
            output::eprint(&format!(
                "warning: could not save {}'s checkpoint: {e}",
                env.name
            ));
        }
    }
    if view.ok {
        output::unless_closed(output::print(&format!(
            "audit {}: {}, hash chain intact; {} identical to git at {} ({})",
            view.environment,
            output::plural(view.rows, "ledger row"),
            output::plural(view.applied, "applied bundle"),
            view.rev,
            view.commit.chars().take(12).collect::<String>()
        )))?;
        return Ok(ExitCode::SUCCESS);
    }
    let lines: Vec<String> = view.problems.iter().map(ToString::to_string).collect();
    Err(CommandError::new(
        ErrorKind::CheckFailed,
        format!(
            "audit {} failed: {}{}",
            view.environment,
            lines[0],
            if lines.len() > 1 {
                format!(
                    "\n  and {} more:\n  {}",
                    lines.len() - 1,
                    lines[1..].join("\n  ")
                )
            } else {
                String::new()
            }
        ),
    )
    .into())
}
