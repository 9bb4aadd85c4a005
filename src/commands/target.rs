//! What `apply`, `promote`, `status`, `ledger`, `audit` and `resolve` share:
//! opening environments, the ledger's view of what is applied, bundle facts,
//! and running a plan under the lock with partial progress on failure.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use sqlx::postgres::PgConnection;

use super::CommandError;
use super::verify::{BundleCheck, check_bundle};
use crate::changeset::{Bundle, Manifest};
use crate::cli::RunArgs;
use crate::config::{Config, Environment};
use crate::db::executor::{self, Application};
use crate::db::lock::{self, Lock};
use crate::db::{self, DbError, Settings, ledger};
use crate::ledger::{Entry, Signer, Status};
use crate::output;
use crate::plan::{Applied, BundleFacts, Step};
use crate::signing::Keyrings;

/// A current-thread runtime: promoter does one thing at a time.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Connection settings of an environment.
pub fn settings(env: &Environment<'_>, connect_timeout: Option<Duration>) -> Settings {
    Settings {
        statement_timeout: env.config.statement_timeout.clone(),
        lock_timeout: env.config.lock_timeout.clone(),
        connect_timeout,
    }
}

/// Connects to an environment.
pub async fn connect(
    env: &Environment<'_>,
    connect_timeout: Option<Duration>,
) -> anyhow::Result<PgConnection> {
    let url = env.database_url()?;
    Ok(db::connect(env.name, &url, &settings(env, connect_timeout)).await?)
}

/// Reads an environment's ledger without locking (empty if it has none yet).
pub async fn read_ledger(
    config: &Config,
    env: &Environment<'_>,
    connect_timeout: Option<Duration>,
) -> anyhow::Result<Vec<Entry>> {
    let mut conn = connect(env, connect_timeout).await?;
    let rows = ledger::load(&mut conn, env.name, &config.file.ledger_schema).await;
    db::close(conn).await;
    Ok(rows?)
}

/// A target environment opened for writing: a working connection, and the
/// advisory lock on its own connection.
pub struct Target {
    pub env: String,
    pub schema: String,
    pub conn: PgConnection,
    lock: Lock,
}

impl Target {
    /// Connects twice and takes the lock (waiting up to `--lock-timeout`).
    /// Nothing is written until [`execute`] creates the ledger if needed, so a
    /// refused run leaves the target exactly as it was.
    pub async fn open(
        config: &Config,
        env: &Environment<'_>,
        run: &RunArgs,
    ) -> anyhow::Result<Self> {
        let schema = config.file.ledger_schema.clone();
        let lock_conn = connect(env, Some(Duration::from_secs(30))).await?;
        let lock = lock::acquire(
            lock_conn,
            env.name,
            lock::key(&schema),
            Duration::from_secs(run.lock_timeout),
            output::eprint,
        )
        .await?;
        let conn = match connect(env, Some(Duration::from_secs(30))).await {
            Ok(c) => c,
            Err(e) => {
                lock.release().await;
                return Err(e);
            }
        };
        Ok(Self {
            env: env.name.to_owned(),
            schema,
            conn,
            lock,
        })
    }

    pub async fn entries(&mut self) -> Result<Vec<Entry>, DbError> {
        ledger::load(&mut self.conn, &self.env, &self.schema).await
    }

    /// Releases the lock and closes both connections.
    pub async fn close(self) {
        db::close(self.conn).await;
        self.lock.release().await;
    }
}

/// The applied changesets of a ledger, in ledger order.
pub fn applied(entries: &[Entry]) -> Vec<Applied> {
    entries
        .iter()
        .filter(|e| e.status.is_applied())
        .map(|e| Applied {
            changeset_id: e.changeset_id.clone(),
            bundle_hash: e.bundle_hash.clone(),
            entry_hash: e.entry_hash.clone(),
        })
        .collect()
}

/// Changesets left partially applied (a non-transactional changeset that
/// crashed or failed after some statements ran), with their last row.
pub fn dirty(entries: &[Entry]) -> Vec<&Entry> {
    let mut last: BTreeMap<&str, &Entry> = BTreeMap::new();
    for e in entries {
        last.insert(&e.changeset_id, e);
    }
    last.into_values()
        .filter(|e| e.status == Status::Running || (e.status == Status::Failed && e.statements > 0))
        .collect()
}

/// Refuses to touch an environment with a partial application.
pub fn refuse_dirty(env: &str, entries: &[Entry]) -> anyhow::Result<()> {
    let dirty = dirty(entries);
    let Some(first) = dirty.first() else {
        return Ok(());
    };
    let list: Vec<String> = dirty
        .iter()
        .map(|e| {
            format!(
                "  {} is {} after {} statement{} (ledger row {})",
                e.changeset_id,
                if e.status == Status::Running {
                    "still marked running"
                } else {
                    "partially applied"
                },
                e.statements,
                if e.statements == 1 { "" } else { "s" },
                e.seq
            )
        })
        .collect();
    Err(CommandError::new(format!(
        "{env} is dirty: a non-transactional changeset did not finish\n{}",
        list.join("\n")
    ))
    .with_hint(format!(
        "finish or undo it by hand, then record what you did: `promoter resolve {env} {} --applied|--rolled-back --note \"...\"`",
        first.changeset_id
    ))
    .into())
}

/// A bundle with everything checked about it.
pub struct Checked {
    pub bundle: Bundle,
    pub check: BundleCheck,
}

impl Checked {
    pub fn new(
        keyrings: &Keyrings,
        bundle: Bundle,
        require: &BTreeMap<String, u32>,
        now: SystemTime,
    ) -> Self {
        let check = check_bundle(keyrings, &bundle, Some(require), now);
        Self { bundle, check }
    }

    /// The planner's view: the hash and every problem that blocks it.
    pub fn facts(&self) -> BundleFacts {
        let mut problems: Vec<String> = self.check.error.iter().cloned().collect();
        problems.extend(self.check.file_problems.iter().cloned());
        problems.extend(self.check.script_problems.iter().cloned());
        problems.extend(self.check.unmet.iter().cloned());
        BundleFacts {
            id: self.bundle.id.clone(),
            hash: self.check.bundle_hash.clone(),
            problems,
        }
    }

    /// The good signers, as recorded in the ledger.
    pub fn signers_json(&self) -> String {
        let mut signers: Vec<Signer> = self
            .check
            .signatures
            .iter()
            .filter(|s| s.good)
            .filter_map(|s| {
                Some(Signer {
                    fingerprint: s.fingerprint.clone()?,
                    role: s.role.clone()?,
                    signed_at: s.created.clone().unwrap_or_default(),
                })
            })
            .collect();
        signers.sort_by(|a, b| {
            (&a.role, &a.fingerprint, &a.signed_at).cmp(&(&b.role, &b.fingerprint, &b.signed_at))
        });
        signers.dedup_by(|a, b| a.role == b.role && a.fingerprint == b.fingerprint);
        serde_json::to_string(&signers).unwrap_or_else(|_| "[]".into())
    }
}

/// The planner's view of bundles before any file is read: id and manifest
/// hash. Planning needs no more; only the steps it picks are then checked in
/// full ([`check_steps`]), so a run never re-reads changesets applied long ago.
pub fn sketch(bundles: &[Bundle]) -> Vec<BundleFacts> {
    bundles
        .iter()
        .map(|b| BundleFacts {
            id: b.id.clone(),
            hash: b.hash().map(|h| h.to_hex()),
            problems: Vec::new(),
        })
        .collect()
}

/// Checks the bundles of `steps` in full (files, scripts, signatures against
/// `require`); any problem of any step refuses the run, naming the changeset.
pub fn check_steps(
    env: &str,
    keyrings: &Keyrings,
    bundles: &[Bundle],
    steps: &[Step],
    require: &BTreeMap<String, u32>,
) -> anyhow::Result<Vec<Checked>> {
    let now = SystemTime::now();
    let checked: Vec<Checked> = steps
        .iter()
        .map(|step| {
            let bundle = bundles
                .iter()
                .find(|b| b.id.as_str() == step.changeset_id)
                .expect("steps are planned from these bundles");
            Checked::new(keyrings, bundle.clone(), require, now)
        })
        .collect();
    let reasons: Vec<String> = checked
        .iter()
        .flat_map(|c| {
            let id = c.bundle.id.clone();
            c.facts()
                .problems
                .into_iter()
                .map(move |p| format!("{id}: {p}"))
        })
        .collect();
    if reasons.is_empty() {
        Ok(checked)
    } else {
        Err(refuse(env, &reasons))
    }
}

/// Prints the reasons a plan cannot go and returns the error.
pub fn refuse(env: &str, reasons: &[String]) -> anyhow::Error {
    CommandError::new(format!(
        "nothing was applied to {env}:\n{}",
        reasons
            .iter()
            .map(|r| format!("  - {}", r.replace('\n', "\n    ")))
            .collect::<Vec<_>>()
            .join("\n")
    ))
    .into()
}

/// Who is applying: OS user and host.
pub fn who() -> (String, String) {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(user_from_passwd)
        .unwrap_or_else(|| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    (user, host)
}

/// The login name of this process's real uid, from /etc/passwd.
fn user_from_passwd() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_owned();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)? == uid).then(|| name.to_owned())
    })
}

/// Asks for confirmation on a terminal; refuses without one.
pub fn confirm(env: &str, count: usize, run: &RunArgs, required: bool) -> anyhow::Result<bool> {
    if !required || run.yes || count == 0 {
        return Ok(true);
    }
    if !output::stdin_is_terminal() {
        return Err(CommandError::new(format!(
            "{env} asks for confirmation before applying (confirm: true), and there is no terminal to ask on"
        ))
        .with_hint("pass --yes to confirm non-interactively")
        .into());
    }
    eprint!(
        "apply {count} changeset{} to {env}? [y/N] ",
        if count == 1 { "" } else { "s" }
    );
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// Everything needed to apply one step.
struct Work<'a> {
    pub step: &'a Step,
    pub checked: &'a Checked,
    pub manifest: Manifest,
}

/// Common ledger fields of a run, and how to report it.
pub struct RunInfo {
    pub promoted_from: Option<String>,
    pub git_commit: Option<String>,
    /// Print the applied changesets as JSON at the end instead of a line each.
    pub json: bool,
}

/// JSON view of one application.
#[derive(serde::Serialize)]
struct AppliedView {
    /// Changeset id.
    changeset_id: String,
    /// The bundle applied.
    bundle_hash: String,
    /// Its ledger row.
    ledger_seq: i64,
    /// That row's `entry_hash`.
    entry_hash: String,
    /// Statements executed.
    statements: i64,
    /// Wall time of the application.
    seconds: f64,
}

/// Prints that there is nothing to do (`[]` under `--json`).
pub fn print_up_to_date(json: bool, message: &str) {
    output::print(if json { "[]" } else { message });
}

/// What `apply` and `promote` share once a plan passed: match each step to
/// its checked bundle, print the plan under `--dry-run`, ask when the
/// environment wants confirmation, then execute.
pub async fn run_plan(
    target: &mut Target,
    steps: &[Step],
    checked: &[Checked],
    run: &RunArgs,
    confirm_required: bool,
    info: &RunInfo,
) -> anyhow::Result<ExitCode> {
    let work: Vec<Work<'_>> = steps
        .iter()
        .map(|step| {
            let checked = checked
                .iter()
                .find(|c| c.bundle.id.as_str() == step.changeset_id)
                .expect("steps are planned from these bundles");
            let (_, manifest) = checked.bundle.sealed_manifest()?;
            Ok(Work {
                step,
                checked,
                manifest,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    if run.dry_run {
        print_plan(&target.env, &work, info.json)?;
        return Ok(ExitCode::SUCCESS);
    }
    if !confirm(&target.env, work.len(), run, confirm_required)? {
        return Err(CommandError::new(format!(
            "not confirmed; nothing was applied to {}",
            target.env
        ))
        .into());
    }
    execute(target, work, info).await
}

/// JSON view of one planned step.
#[derive(serde::Serialize)]
struct PlannedView<'a> {
    /// Changeset id.
    changeset_id: &'a str,
    /// The bundle that would be applied.
    bundle_hash: &'a str,
    /// The source ledger entry it is promoted from (promote only).
    source_entry: Option<&'a str>,
    /// Distinct good signers per role.
    signers: &'a std::collections::BTreeMap<String, usize>,
}

/// Prints what would be applied and the checks that passed.
fn print_plan(env: &str, work: &[Work<'_>], json: bool) -> anyhow::Result<()> {
    if json {
        let views: Vec<PlannedView<'_>> = work
            .iter()
            .map(|w| PlannedView {
                changeset_id: &w.step.changeset_id,
                bundle_hash: &w.step.bundle_hash,
                source_entry: w.step.source_entry.as_deref(),
                signers: &w.checked.check.signers,
            })
            .collect();
        return output::print_json(&views);
    }
    output::print(&format!(
        "dry run: would apply {} changeset{} to {env}:",
        work.len(),
        if work.len() == 1 { "" } else { "s" }
    ));
    for w in work {
        let c = &w.checked.check;
        let signers: Vec<String> = c.signers.iter().map(|(r, n)| format!("{n} {r}")).collect();
        output::print(&format!(
            "  {}  {}",
            w.step.changeset_id, w.step.bundle_hash
        ));
        output::print("      ok  files match SHA256SUMS; scripts checked");
        output::print(&format!(
            "      ok  signatures: {}",
            if signers.is_empty() {
                "none needed".to_owned()
            } else {
                signers.join(", ")
            }
        ));
        if let Some(entry) = &w.step.source_entry {
            output::print(&format!(
                "      ok  identical to the bundle in the source ledger (entry {})",
                &entry[..12]
            ));
        }
    }
    output::print("nothing was changed (--dry-run)");
    Ok(())
}

/// Applies the plan in order; stops at the first failure and reports partial
/// progress ("applied 0040, 0041; failed at 0042 …"). The ledger is created
/// here, not when the target is opened, so that refusals write nothing.
async fn execute(
    target: &mut Target,
    work: Vec<Work<'_>>,
    info: &RunInfo,
) -> anyhow::Result<ExitCode> {
    ledger::ensure(&mut target.conn, &target.env, &target.schema).await?;
    let (os_user, host) = who();
    let db_role = ledger::current_role(&mut target.conn, &target.env).await?;
    let mut done: Vec<String> = Vec::new();
    let mut views: Vec<AppliedView> = Vec::new();
    for w in work {
        let meta = w.checked.bundle.meta()?;
        let scripts = match meta.transaction {
            crate::changeset::TransactionMode::PerChangeset => {
                executor::stream_scripts(&w.checked.bundle, &w.manifest)
            }
            crate::changeset::TransactionMode::None => {
                executor::preload_scripts(&w.checked.bundle, &w.manifest)
            }
        }?;
        let entry = Entry {
            seq: 0,
            changeset_id: w.step.changeset_id.clone(),
            bundle_hash: w.step.bundle_hash.clone(),
            environment: target.env.clone(),
            status: Status::Running,
            signers: w.checked.signers_json(),
            promoted_from: info.promoted_from.clone(),
            promoted_from_entry: w.step.source_entry.clone(),
            git_commit: info.git_commit.clone(),
            os_user: os_user.clone(),
            host: host.clone(),
            db_role: db_role.clone(),
            started_at: 0,
            finished_at: None,
            schema_before: None,
            schema_after: None,
            statements: 0,
            error: None,
            note: None,
            prev_hash: String::new(),
            entry_hash: String::new(),
        };
        let app = Application {
            ledger_schema: target.schema.clone(),
            entry,
            mode: meta.transaction,
        };
        if output::stderr_is_terminal() {
            output::eprint(&format!(
                "applying {} to {} …",
                w.step.changeset_id, target.env
            ));
        }
        let outcome = executor::apply(&mut target.conn, &target.env, app, scripts).await?;
        let e = &outcome.entry;
        let took = e.finished_at.unwrap_or(e.started_at) - e.started_at;
        match outcome.error {
            None if info.json => {
                views.push(AppliedView {
                    changeset_id: e.changeset_id.clone(),
                    bundle_hash: e.bundle_hash.clone(),
                    ledger_seq: e.seq,
                    entry_hash: e.entry_hash.clone(),
                    statements: e.statements,
                    seconds: took as f64 / 1e6,
                });
                done.push(e.changeset_id.clone());
            }
            None => {
                output::print(&format!(
                    "applied {} to {}  ({} statement{}, {:.2} s, ledger #{})",
                    e.changeset_id,
                    target.env,
                    e.statements,
                    if e.statements == 1 { "" } else { "s" },
                    took as f64 / 1e6,
                    e.seq
                ));
                done.push(e.changeset_id.clone());
            }
            Some(error) => {
                let progress = if done.is_empty() {
                    "nothing applied".to_owned()
                } else {
                    format!("applied {}", done.join(", "))
                };
                let partial = if meta.transaction == crate::changeset::TransactionMode::None
                    && e.statements > 0
                {
                    format!(
                        "; {} statement{} of this non-transactional changeset had already committed",
                        e.statements,
                        if e.statements == 1 { "" } else { "s" }
                    )
                } else {
                    "; it was rolled back".to_owned()
                };
                return Err(CommandError::new(format!(
                    "{}: {progress}; failed at {}{partial} (ledger #{} records the failure):\n  {}",
                    target.env,
                    e.changeset_id,
                    e.seq,
                    error.to_string().replace('\n', "\n  ")
                ))
                .into());
            }
        }
    }
    if info.json {
        output::print_json(&views)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `2026-11-22T10:04:05Z` for ledger microseconds.
pub fn time(micros: i64) -> String {
    output::format_unix(micros.div_euclid(1_000_000))
}
