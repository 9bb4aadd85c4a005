//! One promotion to a fleet: the same environment in many databases. Each
//! target is promoted exactly as a single environment is (its own lock,
//! ledger, pinned policy and checkpoint), at most `jobs` at once in one
//! thread (a bounded join of the targets' futures, not a thread each). A
//! target's failure never touches the others; it only stops scheduling when
//! it is a canary's or the failures reach `max_failures`.

use super::{Hooks, Report, RunError, RunOptions, Trust};
use crate::changeset::Bundle;
use crate::config::Environment;

/// Why a fleet stopped after a signal.
const INTERRUPTED: &str = "interrupted (Ctrl-C or SIGTERM)";

/// How the targets are scheduled.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// At most this many targets at once (at least 1).
    pub jobs: usize,
    /// These many targets first; any failure among them stops the fleet.
    pub canary: usize,
    /// Stop starting targets once this many have failed.
    pub max_failures: Option<usize>,
}

/// One target, ready to be promoted: its environment, its trust (its own
/// receipt signer) and where its progress goes.
pub struct TargetRun<'a> {
    pub env: Environment,
    pub trust: Trust<'a>,
    pub hooks: Box<dyn Hooks + 'a>,
}

/// What happened to one target.
#[derive(Debug)]
pub enum TargetOutcome {
    Done(Report),
    Failed(RunError),
    /// Never started: the fleet stopped first.
    NotStarted,
}

impl TargetOutcome {
    /// Whether this target counts as failed (refused or failed while applying).
    pub fn failed(&self) -> bool {
        matches!(self, Self::Failed(_))
    }
}

/// Every target's outcome, in target order, and why the fleet stopped early.
#[derive(Debug)]
pub struct FleetReport {
    pub env: String,
    pub from: String,
    pub outcomes: Vec<(String, TargetOutcome)>,
    pub stopped: Option<String>,
}

type Running<'a> = super::join::Boxed<'a, Result<Report, RunError>>;

/// Promotes `from` → every target of `runs`, as scheduled.
pub async fn promote(
    from: &Environment,
    mut runs: Vec<TargetRun<'_>>,
    schema: &str,
    bundles: &[Bundle],
    git_commit: &str,
    opts: &RunOptions,
    schedule: Schedule,
) -> FleetReport {
    let names: Vec<String> = runs
        .iter()
        .map(|r| r.env.target.clone().unwrap_or_else(|| r.env.name.clone()))
        .collect();
    let env = runs.first().map(|r| r.env.name.clone()).unwrap_or_default();
    let mut results: Vec<Option<Result<Report, RunError>>> =
        (0..runs.len()).map(|_| None).collect();
    let mut stopped = None;
    let canary = schedule.canary.min(runs.len());
    // Each future borrows its own target's trust and hooks, and the shared
    // inputs; `runs` outlives them all.
    let mut pending: Vec<Option<(usize, Running<'_>)>> = runs
        .iter_mut()
        .enumerate()
        .map(|(i, run)| {
            let fut: Running<'_> = Box::pin(super::promote(
                from,
                &run.env,
                schema,
                bundles,
                &mut run.trust,
                git_commit.to_owned(),
                opts,
                &mut *run.hooks,
            ));
            Some((i, fut))
        })
        .collect();
    let mut failures = 0usize;
    for (phase, range) in [(0, 0..canary), (1, canary..pending.len())] {
        if stopped.is_some() {
            break;
        }
        let mut next = range.start;
        let mut running: Vec<(usize, Running<'_>)> = Vec::new();
        loop {
            // A signal between two targets' ends starts no new one (which
            // would only record its interruption).
            if stopped.is_none() && next < range.end && super::interrupt::requested() {
                stopped = Some(INTERRUPTED.to_owned());
            }
            while running.len() < schedule.jobs && next < range.end && stopped.is_none() {
                running.push(pending[next].take().expect("each target starts once"));
                next += 1;
            }
            if running.is_empty() {
                break;
            }
            let (i, result) = super::join::next_done(&mut running).await;
            let failed = match &result {
                Err(_) => true,
                Ok(r) => r.failed.is_some(),
            };
            let interrupted = matches!(result, Err(RunError::Interrupted(_)));
            results[i] = Some(result);
            if failed {
                failures += 1;
            }
            if stopped.is_none() {
                if interrupted {
                    stopped = Some(INTERRUPTED.to_owned());
                } else if failed && phase == 0 {
                    stopped = Some(format!("canary target {} failed", names[i]));
                } else if schedule.max_failures.is_some_and(|m| failures >= m) {
                    stopped = Some(format!(
                        "{failures} target{} failed (--max-failures)",
                        if failures == 1 { "" } else { "s" }
                    ));
                }
            }
        }
    }
    drop(pending);
    let outcomes = names
        .into_iter()
        .zip(results)
        .map(|(name, result)| {
            let outcome = match result {
                Some(Ok(report)) => TargetOutcome::Done(report),
                Some(Err(e)) => TargetOutcome::Failed(e),
                None => TargetOutcome::NotStarted,
            };
            (name, outcome)
        })
        .collect();
    FleetReport {
        env,
        from: from.name.clone(),
        outcomes,
        stopped,
    }
}
