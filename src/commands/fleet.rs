//! `promoter promote FROM FLEET`: one promotion to every target of a fleet
//! (or those named with `--target`), scheduled by the engine; a line per
//! target as it goes, a table at the end, one `--json` document.

use std::process::ExitCode;

use serde::Serialize;

use super::run::{self, StderrHooks};
use super::trust::GitTrust;
use super::{CommandError, Context};
use crate::changeset::source::GitSnapshot;
use crate::cli::PromoteArgs;
use crate::config::Environment;
use crate::engine::fleet::{self, FleetReport, Schedule, TargetOutcome, TargetRun};
use crate::engine::{self, RunError};
use crate::error::ErrorKind;
use crate::output;

/// JSON: `promoter --json promote FROM FLEET`.
#[derive(Serialize)]
struct FleetView<'a> {
    /// The fleet.
    environment: &'a str,
    /// The source environment.
    from: &'a str,
    /// Why the fleet stopped before every target was started, if it did.
    stopped: Option<&'a str>,
    /// Targets per status.
    counts: std::collections::BTreeMap<&'static str, usize>,
    targets: Vec<TargetView<'a>>,
}

#[derive(Serialize)]
struct TargetView<'a> {
    /// The target's name in environments.yaml.
    target: &'a str,
    /// `up-to-date`, `applied`, `planned` (`--dry-run`), `refused`,
    /// `failed`, `unreachable`, `interrupted` or `not-started`.
    status: &'static str,
    /// The changesets applied to it in this run.
    applied: Vec<&'a str>,
    /// What went wrong, as on stderr.
    error: Option<String>,
}

/// A target's status, and the error kind behind it.
fn status_of(outcome: &TargetOutcome) -> (&'static str, Option<ErrorKind>) {
    match outcome {
        TargetOutcome::Done(r) if r.dry_run && !r.planned.is_empty() => ("planned", None),
        TargetOutcome::Done(r) if r.applied.is_empty() => ("up-to-date", None),
        TargetOutcome::Done(_) => ("applied", None),
        TargetOutcome::NotStarted => ("not-started", None),
        TargetOutcome::Failed(e) => match e {
            RunError::Refused { .. } | RunError::NotConfirmed { .. } => {
                ("refused", Some(ErrorKind::Refused))
            }
            RunError::SourceUnreadable { .. } => ("unreachable", Some(ErrorKind::Unreachable)),
            RunError::Failed(_) => ("failed", Some(ErrorKind::ApplyFailed)),
            RunError::Interrupted(_) => ("interrupted", Some(ErrorKind::Interrupted)),
            RunError::Db(crate::db::DbError::Connect { .. }) => {
                ("unreachable", Some(ErrorKind::Unreachable))
            }
            RunError::Db(
                crate::db::DbError::BadUrl { .. } | crate::db::DbError::Unconfigured(_),
            ) => ("refused", Some(ErrorKind::Usage)),
            RunError::Db(_) => ("refused", Some(ErrorKind::Refused)),
            RunError::Other(_) => ("failed", Some(ErrorKind::ApplyFailed)),
        },
    }
}

fn applied_ids(outcome: &TargetOutcome) -> Vec<&str> {
    let report = match outcome {
        TargetOutcome::Done(r) => Some(r),
        TargetOutcome::Failed(RunError::Failed(r) | RunError::Interrupted(r)) => Some(&**r),
        _ => None,
    };
    report
        .map(|r| r.applied.iter().map(|a| a.changeset_id.as_str()).collect())
        .unwrap_or_default()
}

pub fn promote(
    ctx: &Context,
    args: &PromoteArgs,
    git: &GitTrust,
    from: &Environment,
    to: &Environment,
    snapshot: &GitSnapshot,
) -> anyhow::Result<ExitCode> {
    let targets = match args.fleet.target_index {
        Some(i) => vec![to.target_at(i).map_err(|e| match e {
            crate::config::ConfigError::NoTargetAt { .. } => {
                CommandError::usage(format!("--target-index {i}: {e}")).into()
            }
            e => anyhow::Error::from(e),
        })?],
        None => to.select_targets(&args.fleet.targets)?,
    };
    let mut opts = run::options(&args.run, args.upto.clone(), Vec::new());
    // One question for the whole fleet, not one per target.
    if to.config.confirm && !opts.dry_run && !opts.assume_yes {
        let mut hooks = StderrHooks::default();
        let question = format!(
            "promote {} to {} targets of {} ({})? [y/N] ",
            from.name,
            targets.len(),
            to.name,
            crate::config::first_names(
                targets.iter().filter_map(|t| t.target.as_deref()),
                targets.len()
            )
        );
        if !engine::Hooks::ask(&mut hooks, &question)? {
            return Err(CommandError::refused(format!(
                "not confirmed; nothing was applied to {}",
                to.name
            ))
            .into());
        }
    }
    opts.assume_yes = true;
    let git_policy = super::trust::derive(git, to).ok().map(|(p, _)| p);
    // Each target signs its own rows: a signer each (the same key).
    let mut signers = targets
        .iter()
        .map(|t| super::trust::receipt_signer(git, t))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // On a terminal, a bar per target while it runs, under the lines.
    let multi = (!ctx.json && output::stderr_is_terminal()).then(indicatif::MultiProgress::new);
    let runs: Vec<TargetRun<'_>> = targets
        .into_iter()
        .zip(signers.iter_mut())
        .map(|(env, signer)| TargetRun {
            trust: engine::Trust {
                git_keyrings: &git.keyrings,
                git_policy: git_policy.clone(),
                receipt: signer.as_mut(),
            },
            // Its lines, prefixed; on a terminal its own bar while it runs.
            hooks: Box::new(StderrHooks {
                assume_yes: true,
                prefix: Some(env.label()),
                progress: multi.is_some(),
                multi: multi.clone(),
                ..StderrHooks::default()
            }),
            env,
        })
        .collect();
    let schedule = Schedule {
        jobs: args.fleet.jobs as usize,
        canary: if args.fleet.resume {
            0
        } else {
            args.fleet.canary.unwrap_or(0) as usize
        },
        max_failures: args.fleet.max_failures.map(|m| m as usize),
    };
    let report = ctx.block_on(fleet::promote(
        from,
        runs,
        // As promote reads everything else: from git at the commit (the work
        // tree's environments.yaml, and its targets_file, are not read again).
        &git.config.file.ledger_schema,
        &snapshot.bundles,
        &snapshot.commit,
        &opts,
        schedule,
    ));
    render(&report, ctx.json)
}

fn render(report: &FleetReport, json: bool) -> anyhow::Result<ExitCode> {
    let mut worst: Option<ErrorKind> = None;
    let mut counts = std::collections::BTreeMap::new();
    let mut views = Vec::new();
    for (name, outcome) in &report.outcomes {
        let (status, kind) = status_of(outcome);
        *counts.entry(status).or_insert(0) += 1;
        if let Some(k) = kind {
            worst = Some(match worst {
                Some(w) if severity(w) >= severity(k) => w,
                _ => k,
            });
        }
        let error = match outcome {
            // Without the environment it starts with: every line that
            // shows it (the table, stderr, the JSON) names the target.
            TargetOutcome::Failed(e) => {
                Some(unprefixed(&describe(e), &report.env, name).to_owned())
            }
            _ => None,
        };
        views.push(TargetView {
            target: name,
            status,
            applied: applied_ids(outcome),
            error,
        });
    }
    if report.stopped.is_some() && worst.is_none() {
        worst = Some(ErrorKind::Interrupted);
    }
    if json {
        let view = FleetView {
            environment: &report.env,
            from: &report.from,
            stopped: report.stopped.as_deref(),
            counts,
            targets: views,
        };
        output::unless_closed(
            output::print_json(&view).map_err(|e| std::io::Error::other(e.to_string())),
        )?;
    } else {
        let width = views.iter().map(|v| v.target.len()).max().unwrap_or(0);
        let printed = (|| {
            for v in &views {
                let detail = match (v.status, &v.error) {
                    ("applied", _) => format!("applied {}", v.applied.join(", ")),
                    ("planned", _) => "would apply (--dry-run)".to_owned(),
                    (_, Some(e)) => e.lines().next().unwrap_or("").to_owned(),
                    _ => String::new(),
                };
                output::print(&format!("{:width$}  {:11}  {detail}", v.target, v.status))?;
            }
            let summary = counts
                .iter()
                .map(|(s, n)| format!("{n} {s}"))
                .collect::<Vec<_>>()
                .join(", ");
            output::print(&format!(
                "{}: {} targets from {}: {summary}{}",
                report.env,
                report.outcomes.len(),
                report.from,
                report
                    .stopped
                    .as_ref()
                    .map(|s| format!("; stopped: {s}"))
                    .unwrap_or_default()
            ))
        })();
        output::unless_closed(printed)?;
        for v in views.iter().filter(|v| v.error.is_some()) {
            output::eprint(&format!(
                "error: {}/{}: {}",
                report.env,
                v.target,
                v.error.as_deref().unwrap_or("")
            ));
        }
    }
    Ok(match worst {
        None => ExitCode::SUCCESS,
        Some(kind) => ExitCode::from(kind.exit_code()),
    })
}

/// `error` without the environment it starts with (`prd: …` or
/// `prd/acme: …`), where the line already names the target.
fn unprefixed<'e>(error: &'e str, env: &str, target: &str) -> &'e str {
    error
        .strip_prefix(&format!("{env}/{target}: "))
        .or_else(|| error.strip_prefix(&format!("{env}: ")))
        .unwrap_or(error)
}

/// A target's failure in one paragraph: every refusal, or the failing
/// changeset and its error.
fn describe(e: &RunError) -> String {
    match e {
        RunError::Refused { refusals, .. } => refusals
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
        RunError::Failed(r) | RunError::Interrupted(r) => r
            .failed
            .as_ref()
            .map(|f| format!("{}: {}", f.changeset_id, f.error))
            .unwrap_or_else(|| e.to_string()),
        RunError::SourceUnreadable { error, .. } => format!("{e}: {error}"),
        other => other.to_string(),
    }
}

/// Which failure decides the fleet's exit code: the most serious.
fn severity(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Interrupted => 5,
        ErrorKind::ApplyFailed => 4,
        ErrorKind::Unreachable => 3,
        ErrorKind::Refused => 2,
        ErrorKind::Usage => 1,
        ErrorKind::CheckFailed => 0,
    }
}
