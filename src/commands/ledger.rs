//! `promoter ledger ENV` and `promoter audit ENV`.

use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;

use super::target;
use super::{CommandError, Context};
use crate::changeset::source;
use crate::cli::{AuditArgs, LedgerArgs};
use crate::ledger::{Entry, check_chain};
use crate::output;

/// Prints every ledger row of an environment (errors and notes after the table).
pub fn show(ctx: &Context, args: &LedgerArgs) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let env = config.environment(&args.env)?;
    let entries = target::runtime()?.block_on(target::read_ledger(
        &config,
        &env,
        Some(Duration::from_secs(15)),
    ))?;
    if ctx.json {
        output::print_json(&entries)?;
        return Ok(ExitCode::SUCCESS);
    }
    if entries.is_empty() {
        output::print(&format!("{}: the ledger is empty", env.name));
        return Ok(ExitCode::SUCCESS);
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
            "ENTRY",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for e in &entries {
        let signers: Vec<crate::ledger::Signer> =
            serde_json::from_str(&e.signers).unwrap_or_default();
        rows.push(vec![
            e.seq.to_string(),
            e.changeset_id.clone(),
            e.status.as_str().to_owned(),
            e.bundle_hash[..12].to_owned(),
            target::time(e.finished_at.unwrap_or(e.started_at)),
            format!("{}@{} as {}", e.os_user, e.host, e.db_role),
            e.promoted_from.clone().unwrap_or_else(|| "-".into()),
            if signers.is_empty() {
                "-".to_owned()
            } else {
                signers
                    .iter()
                    .map(|s| {
                        format!(
                            "{}:{}",
                            s.role,
                            &s.fingerprint[..8.min(s.fingerprint.len())]
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            },
            e.entry_hash[..12].to_owned(),
        ]);
    }
    for line in output::table(&rows) {
        output::print(&line);
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
            ));
        }
        if let Some(note) = &e.note {
            output::print(&format!("#{} note: {note}", e.seq));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// JSON: `promoter --json audit ENV`.
#[derive(Serialize)]
struct AuditView {
    /// The audited environment.
    environment: String,
    /// Ledger rows read.
    rows: usize,
    /// Rows that count as applied (each checked against git).
    applied: usize,
    /// The revision the bundles were read from, as given.
    rev: String,
    /// The commit it resolved to.
    commit: String,
    /// Every problem found, the first chain break first; empty when the audit passes.
    problems: Vec<String>,
}

/// Audits an environment: recomputes the hash chain (catching edited,
/// deleted and reordered rows) and checks every applied row against the
/// bundle in git at `--rev`. Exit 1 naming the first bad row.
pub fn audit(ctx: &Context, args: &AuditArgs) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let env = config.environment(&args.env)?;
    let entries: Vec<Entry> = target::runtime()?.block_on(target::read_ledger(
        &config,
        &env,
        Some(Duration::from_secs(15)),
    ))?;
    let snapshot = source::load_git(&ctx.root, &args.rev)?;
    let mut problems = Vec::new();
    if let Some(brk) = check_chain(&entries) {
        problems.push(format!("ledger row #{}: {}", brk.seq, brk.reason));
    }
    let applied: Vec<&Entry> = entries.iter().filter(|e| e.status.is_applied()).collect();
    for e in &applied {
        match snapshot
            .bundles
            .iter()
            .find(|b| b.id.as_str() == e.changeset_id)
        {
            None => problems.push(format!(
                "ledger row #{} ({}): no such changeset in git at {}",
                e.seq, e.changeset_id, args.rev
            )),
            Some(b) => {
                let hash = b.hash().map(|h| h.to_hex());
                if hash.as_deref() != Some(e.bundle_hash.trim()) {
                    problems.push(format!(
                        "ledger row #{} ({}): applied bundle {} but git at {} has {}",
                        e.seq,
                        e.changeset_id,
                        e.bundle_hash,
                        args.rev,
                        hash.as_deref().unwrap_or("no SHA256SUMS")
                    ));
                } else {
                    match b.check_files() {
                        Ok(p) if p.is_empty() => {}
                        Ok(p) => problems.push(format!(
                            "ledger row #{} ({}): the bundle in git no longer matches its SHA256SUMS: {}",
                            e.seq,
                            e.changeset_id,
                            p.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
                        )),
                        Err(err) => problems.push(format!("ledger row #{} ({}): {err}", e.seq, e.changeset_id)),
                    }
                }
            }
        }
    }
    let view = AuditView {
        environment: env.name.to_owned(),
        rows: entries.len(),
        applied: applied.len(),
        rev: args.rev.clone(),
        commit: snapshot.commit.clone(),
        problems,
    };
    if ctx.json {
        output::print_json(&view)?;
    } else if view.problems.is_empty() {
        output::print(&format!(
            "audit {}: {} ledger rows, hash chain intact; {} applied bundles identical to git at {} ({})",
            view.environment,
            view.rows,
            view.applied,
            view.rev,
            &view.commit[..12]
        ));
    }
    if let Some(first) = view.problems.first() {
        return Err(CommandError::new(format!(
            "audit {} failed: {first}{}",
            view.environment,
            if view.problems.len() > 1 {
                format!(
                    "\n  and {} more:\n  {}",
                    view.problems.len() - 1,
                    view.problems[1..].join("\n  ")
                )
            } else {
                String::new()
            }
        ))
        .into());
    }
    Ok(ExitCode::SUCCESS)
}
