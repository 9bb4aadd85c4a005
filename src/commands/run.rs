//! What `apply` and `promote` share in the command layer: resolving the
//! command line into [`RunOptions`], the [`Hooks`] that print progress on
//! stderr and ask for confirmation, and rendering the engine's [`Report`] or
//! [`RunError`] for people and for `--json`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::{CommandError, ErrorKind};
use crate::changeset::{ChangesetId, Sha256Digest};
use crate::cli::RunArgs;
use crate::db::executor::{Meter, MeterReading};
use crate::engine::{AppliedStep, Event, Hooks, PlannedStep, Report, RunError, RunOptions};
use crate::error::{ReasonView, StatementView};
use crate::output;
use crate::plan::Refusal;

/// Resolves the run flags once; no clap type goes further.
pub fn options(run: &RunArgs, upto: Option<String>, only: Vec<ChangesetId>) -> RunOptions {
    RunOptions {
        dry_run: run.dry_run,
        assume_yes: run.yes,
        lock_wait: Duration::from_secs(run.lock_wait),
        allow_drift: run.allow_drift,
        upto,
        only,
    }
}

/// Progress on stderr, a line per changeset as it starts and as it ends
/// (also when stderr is not a terminal: operators read CI logs), and the
/// confirmation prompt.
#[derive(Debug, Default)]
pub struct StderrHooks {
    /// `--yes`: every question is answered yes.
    pub assume_yes: bool,
    /// For a target of a fleet: its name, before each line.
    pub prefix: Option<String>,
    /// Draw a progress bar (changesets done of total) under the lines: set
    /// only when stderr is a terminal and the run is not `--json`.
    pub progress: bool,
    /// The bar, once the first changeset starts.
    pub bar: Option<Bar>,
    /// For a fleet: the display every target's bar is one line of. A
    /// target's bar goes when its last changeset ends.
    pub multi: Option<indicatif::MultiProgress>,
    /// What the executor reports of the running script, shown on the bar.
    pub meter: Option<Arc<Meter>>,
}

/// A progress bar that clears itself when the hooks go.
#[derive(Debug)]
pub struct Bar(indicatif::ProgressBar);

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

impl StderrHooks {
    /// Hooks for an interactive run: a progress bar when stderr is a
    /// terminal and stdout is not carrying `--json`.
    pub fn interactive(json: bool, assume_yes: bool) -> Self {
        Self {
            assume_yes,
            progress: !json && output::stderr_is_terminal(),
            ..Self::default()
        }
    }

    fn line(&self, line: &str) {
        match (&self.multi, &self.bar) {
            (Some(multi), _) => multi.suspend(|| output::eprint(line)),
            (None, Some(bar)) => bar.0.suspend(|| output::eprint(line)),
            (None, None) => output::eprint(line),
        }
    }

    fn new_bar(&self, total: usize) -> Bar {
        let bar = indicatif::ProgressBar::new(total as u64);
        let template = match &self.prefix {
            // A fleet's target: one line each.
            Some(_) => "{prefix:>12} {bar:20.cyan/blue} {pos}/{len}  {msg}  {script}",
            None => "{bar:30.cyan/blue} {pos}/{len} changesets  {elapsed}  {wide_msg}\n  {script}",
        };
        let meter = self.meter.clone();
        let style = indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .with_key(
                "script",
                move |_: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    if let Some(m) = &meter {
                        let _ = w.write_str(&script_line(&m.reading()));
                    }
                },
            );
        bar.set_style(style);
        if let Some(p) = &self.prefix {
            bar.set_prefix(p.clone());
        }
        let bar = match &self.multi {
            Some(multi) => multi.add(bar),
            None => bar,
        };
        bar.enable_steady_tick(Duration::from_millis(200));
        Bar(bar)
    }
}

/// The running script as the bar shows it: `script 1/2 001-load.sql:
/// 45.0 of 200.0 MiB (22 %), 12345 statements`.
pub fn script_line(r: &MeterReading) -> String {
    if r.file.is_empty() {
        return String::new();
    }
    let name = r.file.rsplit('/').next().unwrap_or(&r.file);
    // Both figures in the unit of the larger one.
    let unit = |b: u64| match b {
        0..1024 => (1.0, "bytes", 0),
        1024..1_048_576 => (1024.0, "KiB", 1),
        1_048_576..1_073_741_824 => (1_048_576.0, "MiB", 1),
        _ => (1_073_741_824.0, "GiB", 2),
    };
    let read = if r.size > 0 {
        let read = r.read.min(r.size);
        let (d, name, p) = unit(r.size);
        format!(
            "{:.p$} of {:.p$} {name} ({} %)",
            read as f64 / d,
            r.size as f64 / d,
            read * 100 / r.size
        )
    } else {
        let (d, name, p) = unit(r.read);
        format!("{:.p$} {name} read", r.read as f64 / d)
    };
    format!(
        "script {}/{} {name}: {read}, {}",
        r.index,
        r.scripts,
        output::plural(r.statements as usize, "statement")
    )
}

impl Hooks for StderrHooks {
    fn ask(&mut self, question: &str) -> anyhow::Result<bool> {
        if self.assume_yes {
            return Ok(true);
        }
        if !output::stdin_is_terminal() {
            return Err(CommandError::refused(format!(
                "{} — and there is no terminal to ask on",
                question.trim_end_matches(" [y/N] ").trim_end_matches('?')
            ))
            .with_hint("pass --yes to confirm non-interactively")
            .into());
        }
        eprint!("{question}");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
    }

    fn event(&mut self, event: Event<'_>) {
        if self.progress {
            match &event {
                Event::Starting {
                    id, index, total, ..
                } => {
                    if let Some(m) = &self.meter {
                        m.clear();
                    }
                    if self.bar.is_none() {
                        self.bar = Some(self.new_bar(*total));
                    }
                    let bar = &self.bar.as_ref().expect("just made").0;
                    bar.set_length(*total as u64);
                    bar.set_position(index.saturating_sub(1) as u64);
                    bar.set_message(id.to_string());
                }
                Event::Applied { .. } | Event::Failed { .. } => {
                    if let Some(bar) = &self.bar {
                        bar.0.inc(1);
                        // A fleet's target that is done leaves the display.
                        if self.multi.is_some()
                            && (bar.0.position() >= bar.0.length().unwrap_or(0)
                                || matches!(event, Event::Failed { .. }))
                        {
                            self.bar = None;
                        }
                    }
                }
                _ => {}
            }
        }
        let line = match event {
            Event::Waiting(w) => w.to_owned(),
            Event::Starting {
                env,
                id,
                index,
                total,
            } => format!("[{index}/{total}] applying {id} to {env} …"),
            Event::Applied { env, step } => format!(
                "[ok] {} applied to {env} in {:.2} s",
                step.changeset_id, step.seconds
            ),
            Event::Failed { env, step } => format!(
                "[{}] {} on {env} (ledger #{})",
                if step.interrupted {
                    "interrupted"
                } else {
                    "failed"
                },
                step.changeset_id,
                step.ledger_seq
            ),
            Event::Interrupting { env, id } => format!(
                "interrupt: cancelling the running statement of {id} on {env}; it will be rolled back and recorded (press Ctrl-C again to abandon cleanup)"
            ),
            Event::Warning(w) => format!("warning: {w}"),
            Event::Step(s) => s.to_owned(),
            Event::Progress(_) if !output::stderr_is_terminal() => return,
            Event::Progress(p) => p.to_owned(),
        };
        match &self.prefix {
            Some(p) => self.line(&format!("[{p}] {line}")),
            None => self.line(&line),
        }
    }

    fn run_output(&mut self) -> crate::db::executor::RunOutput {
        Box::new(output::RunOutput::stderr())
    }

    fn meter(&mut self) -> Option<Arc<Meter>> {
        self.progress
            .then(|| self.meter.get_or_insert_with(Default::default).clone())
    }

    fn confirm(&mut self, env: &str, steps: &[PlannedStep]) -> anyhow::Result<bool> {
        if !output::stdin_is_terminal() {
            return Err(CommandError::refused(format!(
                "{env} asks for confirmation before applying (confirm: true), and there is no terminal to ask on"
            ))
            .with_hint("pass --yes to confirm non-interactively")
            .into());
        }
        output::eprint(&format!(
            "about to apply {} to {env}:",
            output::plural(steps.len(), "changeset")
        ));
        for s in steps {
            output::eprint(&format!("  {}  {}", s.changeset_id, s.bundle_hash.short()));
        }
        eprint!("apply to {env}? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
    }
}

/// JSON: one planned changeset (`--dry-run`, and refused plans).
#[derive(Serialize)]
struct PlannedView<'a> {
    /// Changeset id.
    changeset_id: &'a str,
    /// The bundle that would be applied.
    bundle_hash: Sha256Digest,
    /// The source ledger entry it is promoted from (promote only).
    source_entry: Option<Sha256Digest>,
    /// Distinct good signers per role.
    signers: &'a std::collections::BTreeMap<String, usize>,
    /// Whether every check of it passed.
    ok: bool,
    /// What refuses it.
    problems: Vec<ReasonView>,
}

fn planned_views(planned: &[PlannedStep]) -> Vec<PlannedView<'_>> {
    planned
        .iter()
        .map(|p| PlannedView {
            changeset_id: &p.changeset_id,
            bundle_hash: p.bundle_hash,
            source_entry: p.source_entry,
            signers: &p.signers,
            ok: p.problems.is_empty(),
            problems: p.problems.iter().map(reason).collect(),
        })
        .collect()
}

/// JSON: `apply` and `promote`.
#[derive(Serialize)]
struct RunView<'a> {
    /// The target environment.
    environment: &'a str,
    /// The source environment (promote only).
    from: Option<&'a str>,
    /// Whether this was `--dry-run` (nothing was changed).
    dry_run: bool,
    /// What the plan held, in order.
    planned: Vec<PlannedView<'a>>,
    /// What was applied, in order (empty under `--dry-run`).
    applied: &'a [AppliedStep],
    /// Warnings that did not stop the run.
    warnings: &'a [String],
}

/// A refusal as JSON.
pub fn reason(r: &Refusal) -> ReasonView {
    ReasonView {
        kind: r.kind().to_owned(),
        changeset: r.changeset().map(str::to_owned),
        message: r.to_string(),
        hint: r.hint(),
    }
}

/// Prints a successful run: the applied lines (or the plan), or that there
/// was nothing to do. A closed stdout loses nothing here: the work is done
/// and the ledger has it.
pub fn render(report: &Report, json: bool, up_to_date: &str) -> anyhow::Result<ExitCode> {
    if json {
        let view = RunView {
            environment: &report.env,
            from: report.from.as_deref(),
            dry_run: report.dry_run,
            planned: planned_views(&report.planned),
            applied: &report.applied,
            warnings: &report.warnings,
        };
        output::unless_closed(
            output::print_json(&view).map_err(|e| std::io::Error::other(e.to_string())),
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let printed = (|| {
        if report.planned.is_empty() {
            return output::print(up_to_date);
        }
        if report.dry_run {
            print_plan(&report.env, &report.planned)?;
            return output::print("nothing was changed (--dry-run)");
        }
        for a in &report.applied {
            output::print(&format!(
                "applied {} to {}  ({}, {:.2} s, ledger #{})",
                a.changeset_id,
                report.env,
                output::plural(a.statements as usize, "statement"),
                a.seconds,
                a.ledger_seq
            ))?;
        }
        Ok(())
    })();
    output::unless_closed(printed)?;
    Ok(ExitCode::SUCCESS)
}

/// The plan with every check, failing ones marked.
fn print_plan(env: &str, planned: &[PlannedStep]) -> std::io::Result<()> {
    let bad = planned.iter().filter(|p| !p.problems.is_empty()).count();
    output::print(&format!(
        "dry run: {} {} to {env}{}:",
        if bad == 0 { "would apply" } else { "plan for" },
        output::plural(planned.len(), "changeset"),
        if bad == 0 {
            String::new()
        } else {
            format!(" ({bad} refused)")
        }
    ))?;
    for p in planned {
        output::print(&format!("  {}  {}", p.changeset_id, p.bundle_hash))?;
        if p.problems.is_empty() {
            let signers: Vec<String> = p.signers.iter().map(|(r, n)| format!("{n} {r}")).collect();
            output::print("      ok    files match SHA256SUMS; scripts checked")?;
            output::print(&format!(
                "      ok    signatures: {}",
                if signers.is_empty() {
                    "none needed".to_owned()
                } else {
                    signers.join(", ")
                }
            ))?;
        }
        for problem in &p.problems {
            output::print(&format!(
                "      FAIL  {}",
                problem.to_string().replace('\n', "\n            ")
            ))?;
        }
        if let Some(entry) = p.source_entry {
            output::print(&format!(
                "      ok    identical to the bundle in the source ledger (entry {})",
                entry.short()
            ))?;
        }
    }
    Ok(())
}

/// Turns a run that did not complete into the error the user sees, with its
/// kind (which picks the exit code), every reason, hints, and the partial
/// progress. Under `--dry-run` a refused plan is printed first.
pub fn error(err: RunError, dry_run: bool, json: bool) -> anyhow::Error {
    match err {
        RunError::Refused {
            env,
            refusals,
            planned,
        } => {
            if dry_run && !json && !planned.is_empty() {
                let _ = print_plan(&env, &planned);
            }
            let mut e = CommandError::refused(format!(
                "nothing was applied to {env}:\n{}",
                refusals
                    .iter()
                    .map(|r| format!("  - {}", r.to_string().replace('\n', "\n    ")))
                    .collect::<Vec<_>>()
                    .join("\n")
            ));
            let mut hints: Vec<String> = refusals.iter().filter_map(Refusal::hint).collect();
            hints.dedup();
            e.hints = hints;
            let mut ids: Vec<String> = refusals
                .iter()
                .filter_map(|r| r.changeset().map(str::to_owned))
                .collect();
            ids.dedup();
            e.changesets = ids;
            e.reasons = refusals.iter().map(reason).collect();
            if json && dry_run {
                e.report = Some(serde_json::json!({ "planned": planned_views(&planned) }));
            }
            e.into()
        }
        RunError::NotConfirmed { .. } => CommandError::refused(err.to_string()).into(),
        RunError::SourceUnreadable { ref error, .. } => {
            let kind = match error {
                crate::db::DbError::Connect { .. } => ErrorKind::Unreachable,
                crate::db::DbError::BadUrl { .. } | crate::db::DbError::Unconfigured(_) => {
                    ErrorKind::Usage
                }
                _ => ErrorKind::Refused,
            };
            CommandError::new(kind, format!("{error}\n{err}")).into()
        }
        RunError::Failed(ref report) | RunError::Interrupted(ref report) => {
            let kind = if matches!(err, RunError::Interrupted(_)) {
                ErrorKind::Interrupted
            } else {
                ErrorKind::ApplyFailed
            };
            let mut e = CommandError::new(kind, err.to_string());
            e.changesets = report
                .failed
                .iter()
                .map(|f| f.changeset_id.clone())
                .collect();
            e.statement = err.statement().map(|s| StatementView {
                file: s.file.clone(),
                line: s.line,
                column: s.column,
                sqlstate: s.sqlstate.clone(),
                message: s.message.clone(),
            });
            e.report = Some(serde_json::json!({
                "environment": report.env,
                "applied": report.applied,
                "failed_at": report.failed.as_ref().map(|f| &f.changeset_id),
                "rolled_back": report.failed.as_ref().map(|f| f.rolled_back),
                "statements_committed": report.failed.as_ref().map(|f| f.statements_committed),
                "ledger_seq": report.failed.as_ref().map(|f| f.ledger_seq),
                "not_started": report.not_started,
            }));
            if kind == ErrorKind::Interrupted {
                e.hints
                    .push("run the same command again to continue from where it stopped".into());
            } else if let Some(f) = &report.failed
                && !f.rolled_back
            {
                e.hints.push(format!(
                    "finish or undo it by hand, then `promoter resolve {} {} --applied|--rolled-back --note \"...\"`",
                    report.env, f.changeset_id
                ));
            }
            e.into()
        }
        RunError::Db(db) => db.into(),
        RunError::Other(other) => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_line_says_how_far_the_script_has_got() {
        let reading = |size, read, statements| MeterReading {
            index: 2,
            scripts: 3,
            file: "changesets/0007-load/002-rows.sql".into(),
            size,
            read,
            statements,
        };
        for (r, want) in [
            (
                reading(200 << 20, 50 << 20, 12),
                "script 2/3 002-rows.sql: 50.0 of 200.0 MiB (25 %), 12 statements",
            ),
            // Read ahead of the size (a file growing): never over 100 %.
            (
                reading(1 << 20, 2 << 20, 1),
                "script 2/3 002-rows.sql: 1.0 of 1.0 MiB (100 %), 1 statement",
            ),
            // Size unknown.
            (
                reading(0, 3 << 19, 0),
                "script 2/3 002-rows.sql: 1.5 MiB read, 0 statements",
            ),
            (
                reading(600, 300, 1),
                "script 2/3 002-rows.sql: 300 of 600 bytes (50 %), 1 statement",
            ),
            (
                reading(3 << 30, 1 << 30, 9),
                "script 2/3 002-rows.sql: 1.00 of 3.00 GiB (33 %), 9 statements",
            ),
            (
                reading(10 << 10, 5 << 9, 2),
                "script 2/3 002-rows.sql: 2.5 of 10.0 KiB (25 %), 2 statements",
            ),
        ] {
            assert_eq!(script_line(&r), want);
        }
        assert_eq!(
            script_line(&MeterReading {
                file: String::new(),
                ..reading(0, 0, 0)
            }),
            ""
        );
    }
}
