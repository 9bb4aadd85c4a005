//! `promoter clone FROM TO`: make TO a copy of FROM (see `engine::clone`).

use std::process::ExitCode;
use std::time::Duration;

use super::Context;
use super::run::StderrHooks;
use crate::cli::CloneArgs;
use crate::engine::{self, clone::CloneError, clone::CloneOptions};
use crate::error::{CommandError, ErrorKind};
use crate::output;

/// Copies FROM into TO and prints what was done.
pub fn run(ctx: &Context, args: &CloneArgs) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let from = config.environment(&args.from)?;
    let to = config.environment(&args.to)?;
    let git = super::trust::GitTrust::work_tree(ctx)?;
    let mut receipt = super::trust::receipt_signer(&git, &to)?;
    let mut trust = engine::Trust {
        git_keyrings: &git.keyrings,
        git_policy: None,
        receipt: receipt.as_mut(),
    };
    let opts = CloneOptions {
        jobs: args.jobs,
        assume_yes: args.yes,
        lock_wait: Duration::from_secs(args.lock_wait),
        source_lock_timeout: args.source_lock_timeout.clone(),
        no_owner: args.no_owner,
        mask: match &args.mask {
            None => None,
            Some(path) => Some(
                crate::masking::Spec::load(&ctx.cwd.join(path))
                    .map_err(|e| CommandError::usage(e.to_string()))?,
            ),
        },
        strict: args.strict,
        branch: false,
    };
    let mut hooks = StderrHooks {
        assume_yes: args.yes,
        ..StderrHooks::default()
    };
    let report = ctx
        .block_on(engine::clone::clone(
            &config, &from, &to, &mut trust, &opts, &mut hooks,
        ))
        .map_err(error)?;
    if ctx.json {
        output::print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    let s = &report.seconds;
    let mut lines = vec![format!(
        "cloned {} into {} in {:.1} s: {}, {} rows, a {} dump (dump {:.1} s, restore {:.1} s, verify {:.1} s)",
        report.from,
        report.to,
        s.total,
        output::plural(report.tables as usize, "table"),
        report.rows,
        mib(report.dump_bytes),
        s.dump,
        s.restore,
        s.verify
    )];
    lines.push(format!(
        "  schema {}{}, as {}'s",
        report.schema_after.short(),
        report
            .schema_before
            .filter(|b| *b != report.schema_after)
            .map(|b| format!(" (was {})", b.short()))
            .unwrap_or_default(),
        report.from
    ));
    lines.push(format!(
        "  ledger: {}, then `refreshed` #{}{}",
        match report.source_head {
            Some(h) => format!("{}'s history up to #{}", report.from, h.seq),
            None => format!("{} had no ledger", report.from),
        },
        report.ledger_seq,
        if report.receipt {
            format!(" signed with {}'s receipt key", report.to)
        } else {
            String::new()
        }
    ));
    if let Some(h) = report.replaced {
        lines.push(format!(
            "  {}'s earlier ledger (up to #{}) is kept in {}.ledger_replaced; its pinned trust policy is its own",
            report.to, h.seq, config.file.ledger_schema
        ));
    }
    if let Some(sha) = &report.masking_sha256 {
        lines.push(format!(
            "  masked {} (spec sha256 {})",
            if report.masked_columns.is_empty() {
                "nothing".to_owned()
            } else {
                report.masked_columns.join(", ")
            },
            &sha[..12]
        ));
        for p in &report.propagated {
            lines.push(format!("    along a foreign key: {p}"));
        }
    }
    if report.sessions_ended > 0 {
        lines.push(format!(
            "  {} of {} ended at the swap",
            output::plural(report.sessions_ended as usize, "session"),
            report.to
        ));
    }
    output::unless_closed(output::print(&lines.join("\n")))?;
    Ok(ExitCode::SUCCESS)
}

fn mib(bytes: u64) -> String {
    if bytes < 1_048_576 {
        format!("{:.0} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", bytes as f64 / 1_048_576.0)
    }
}

pub(super) fn error(e: CloneError) -> anyhow::Error {
    // Connection and query errors carry their own kind (unreachable: 5).
    let e = match e {
        CloneError::Db(db) => return db.into(),
        CloneError::CannotAsk(asked) => return asked,
        other => other,
    };
    let kind = match &e {
        CloneError::Failed { .. } => ErrorKind::ApplyFailed,
        CloneError::Interrupted { .. } => ErrorKind::Interrupted,
        _ => ErrorKind::Refused,
    };
    let text = e.to_string();
    let mut err = CommandError::new(kind, text.clone());
    if text.contains("role \"") && text.contains("does not exist") {
        err = err.with_hint(
            "TO's cluster lacks a role that owns or is granted something in FROM: create it there, or pass --no-owner",
        );
    }
    err.into()
}
