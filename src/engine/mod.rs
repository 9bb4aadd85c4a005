//! The engine: everything a run does against databases, in one place.
//! It opens the target (two connections: one for the work, one that holds
//! the advisory lock for the whole run and can cancel the work), reads the
//! ledgers, asks the pure core for the plan and the checks, and applies
//! changesets one by one. Progress goes out as [`Event`]s; the outcome comes
//! back as a typed [`Report`] or [`RunError`]. It prints nothing itself: the
//! command layer renders.

pub mod branch;
pub mod clone;
pub mod fleet;
pub mod interrupt;
pub mod join;
pub mod profile;
pub mod trust;

pub use crate::threads::{join_thread, parallel_map};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::changeset::{
    Bundle, ChangesetId, ChangesetMeta, Manifest, Sha256Digest, TransactionMode,
};
use crate::check::{BundleCheck, check_bundle};
use crate::config::Environment;
use crate::db::executor::{self, Application, ExecError, StatementError};
use crate::db::lock::{self, Lock};
use crate::db::{self, DbError, Settings, fingerprint, ledger};
use crate::ledger::{Entry, Signer, Status};
use crate::plan::{self, BundleFacts, Refusal, Step};
use crate::signing::Keyrings;

/// How long a run waits by default for another promoter to release the
/// target's lock (`--lock-wait`).
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(30);

/// What the operator asked of a run, resolved from the command line.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Plan and check; change nothing.
    pub dry_run: bool,
    /// Do not ask for confirmation.
    pub assume_yes: bool,
    /// How long to wait for another promoter holding the target's lock.
    pub lock_wait: Duration,
    /// Promote even if the target's schema differs from the source's.
    pub allow_drift: bool,
    /// Stop after this changeset (an id, number or slug).
    pub upto: Option<String>,
    /// Only these changesets, which must be next in line (`apply` only).
    pub only: Vec<ChangesetId>,
}

/// Progress, as it happens.
#[derive(Debug)]
pub enum Event<'a> {
    /// The target's lock is held by someone else; waiting.
    Waiting(&'a str),
    /// A changeset starts.
    Starting {
        env: &'a str,
        id: &'a str,
        index: usize,
        total: usize,
    },
    /// A changeset was applied.
    Applied { env: &'a str, step: &'a AppliedStep },
    /// A changeset failed (and was rolled back, or recorded as partial).
    Failed { env: &'a str, step: &'a FailedStep },
    /// A signal arrived: the running statement is being cancelled.
    Interrupting { env: &'a str, id: &'a str },
    /// Something worth knowing that does not stop the run.
    Warning(&'a str),
    /// A step of a whole-database operation (clone) starts or ends.
    Step(&'a str),
    /// Finer progress within a step (a table being copied): shown on a
    /// terminal only.
    Progress(&'a str),
}

/// What the engine needs from whoever drives it: somewhere to report
/// progress and someone to confirm.
pub trait Hooks {
    fn event(&mut self, event: Event<'_>);
    /// Asked before applying to an environment with `confirm: true`
    /// (unless `--yes`); `Ok(false)` declines.
    fn confirm(&mut self, env: &str, steps: &[PlannedStep]) -> anyhow::Result<bool>;
    /// Asks a yes/no question (trust changes); `Ok(false)` declines.
    fn ask(&mut self, question: &str) -> anyhow::Result<bool>;
    /// Where a changeset's own output goes while it runs (`\echo`, the rows
    /// of `COPY … TO STDOUT`): never stdout, which belongs to `--json`.
    fn run_output(&mut self) -> executor::RunOutput;
    /// Where the executor shows how far a changeset's scripts have got
    /// (bytes read, statements sent); `None` when nobody watches.
    fn meter(&mut self) -> Option<std::sync::Arc<executor::Meter>> {
        None
    }
}

/// What a run knows about trust from git, resolved by the command.
pub struct Trust<'a> {
    /// The role keyrings in git: for an uncontrolled environment they count;
    /// for a pinned one they only update the pinned certificates
    /// (revocations).
    pub git_keyrings: &'a Keyrings,
    /// The policy git would pin for the target now, for the warning when it
    /// differs from the pinned one.
    pub git_policy: Option<crate::policy::Policy>,
    /// Signs the target's ledger rows (its receipt key), when it has one.
    pub receipt: Option<&'a mut crate::signing::Signer>,
}

impl Trust<'_> {
    /// The receipt key as the ledger writer wants it.
    fn row_signer(&mut self) -> Option<impl FnMut(&[u8]) -> Result<String, String> + '_> {
        self.receipt.as_deref_mut().map(|signer| {
            move |bytes: &[u8]| {
                signer
                    .sign(bytes, &[])
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
                    .map_err(|e| e.to_string())
            }
        })
    }
}

/// Whether a run's outcome means it wrote ledger rows.
fn wrote<T>(result: &Result<T, RunError>) -> bool {
    matches!(
        result,
        Ok(_) | Err(RunError::Failed(_)) | Err(RunError::Interrupted(_))
    )
}

/// Microseconds since the Unix epoch.
fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// One changeset of a plan, with what its checks found.
#[derive(Debug, Clone)]
pub struct PlannedStep {
    pub changeset_id: String,
    pub bundle_hash: Sha256Digest,
    /// The source environment's ledger entry, when promoting.
    pub source_entry: Option<Sha256Digest>,
    /// Distinct good signers per role (empty if the bundle was not checked).
    pub signers: BTreeMap<String, usize>,
    /// What refuses this changeset; empty when every check passed.
    pub problems: Vec<Refusal>,
}

/// One changeset applied.
#[derive(Debug, Clone, Serialize)]
pub struct AppliedStep {
    /// Changeset id.
    pub changeset_id: String,
    /// The bundle applied.
    pub bundle_hash: Sha256Digest,
    /// Its ledger row.
    pub ledger_seq: i64,
    /// That row's `entry_hash`.
    pub entry_hash: Sha256Digest,
    /// Statements executed.
    pub statements: i64,
    /// Wall time of the application.
    pub seconds: f64,
}

/// The changeset a run stopped at.
#[derive(Debug)]
pub struct FailedStep {
    pub changeset_id: String,
    /// The `failed` ledger row.
    pub ledger_seq: i64,
    /// Statements that stayed committed (non-transactional changesets only).
    pub statements_committed: i64,
    /// Whether everything it did was rolled back.
    pub rolled_back: bool,
    pub interrupted: bool,
    pub error: ExecError,
}

/// The outcome of a run: what was planned, what was applied, where it stopped.
#[derive(Debug)]
pub struct Report {
    pub env: String,
    /// The source environment, when promoting.
    pub from: Option<String>,
    pub dry_run: bool,
    pub planned: Vec<PlannedStep>,
    pub applied: Vec<AppliedStep>,
    pub failed: Option<FailedStep>,
    /// Stopped by a signal (between changesets, or during `failed`).
    pub interrupted: bool,
    /// Planned changesets never started because the run stopped.
    pub not_started: Vec<String>,
    pub warnings: Vec<String>,
}

impl Report {
    fn new(env: &str, from: Option<&str>, dry_run: bool) -> Self {
        Self {
            env: env.to_owned(),
            from: from.map(str::to_owned),
            dry_run,
            planned: Vec::new(),
            applied: Vec::new(),
            failed: None,
            interrupted: false,
            not_started: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

/// Why a run did not complete.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Refused before the target was touched; every reason, and the plan as
    /// far as it was found (for `--dry-run`).
    #[error("nothing was applied to {env}")]
    Refused {
        env: String,
        refusals: Vec<Refusal>,
        planned: Vec<PlannedStep>,
    },
    /// The operator declined the confirmation.
    #[error("not confirmed; nothing was applied to {env}")]
    NotConfirmed { env: String },
    /// The source environment's ledger could not be read.
    #[error("nothing was applied to {env}: its source {from} could not be read")]
    SourceUnreadable {
        env: String,
        from: String,
        #[source]
        error: DbError,
    },
    /// A changeset failed while applying; the report says what ran.
    #[error("{}", failure_line(.0))]
    Failed(Box<Report>),
    /// Stopped by Ctrl-C or SIGTERM; the report says what ran.
    #[error("{}", failure_line(.0))]
    Interrupted(Box<Report>),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// "dev: applied 0001-a; failed at 0002-b; it was rolled back (ledger #3 records the failure)".
fn failure_line(report: &Report) -> String {
    let progress = if report.applied.is_empty() {
        "nothing applied".to_owned()
    } else {
        format!(
            "applied {}",
            report
                .applied
                .iter()
                .map(|a| a.changeset_id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let Some(f) = &report.failed else {
        return format!(
            "{}: interrupted; {progress}; not started: {}",
            report.env,
            report.not_started.join(", ")
        );
    };
    let (at, what) = if f.interrupted {
        ("interrupted", "interruption")
    } else {
        ("failed", "failure")
    };
    let partial = if f.rolled_back {
        "; it was rolled back".to_owned()
    } else {
        format!(
            "; {} of this non-transactional changeset had already committed",
            crate::output::plural(f.statements_committed as usize, "statement")
        )
    };
    format!(
        "{}: {progress}; {at} at {}{partial} (ledger #{} records the {what}):\n  {}",
        report.env,
        f.changeset_id,
        f.ledger_seq,
        f.error.to_string().replace('\n', "\n  ")
    )
}

impl RunError {
    /// For an SQL failure: where the statement is.
    pub fn statement(&self) -> Option<&StatementError> {
        match self {
            Self::Failed(r) | Self::Interrupted(r) => {
                r.failed.as_ref().and_then(|f| f.error.statement())
            }
            _ => None,
        }
    }
}

/// Connection settings of an environment.
pub fn settings(env: &Environment) -> Settings {
    Settings {
        statement_timeout: env.config.statement_timeout.clone(),
        lock_timeout: env.config.lock_timeout.clone(),
        connect_timeout: env.connect_timeout(),
    }
}

/// Connects to an environment.
pub async fn connect(env: &Environment) -> Result<db::Connection, DbError> {
    let url = env
        .database_url()
        .map_err(|e| DbError::Unconfigured(e.to_string()))?;
    db::connect(&env.name, &url, &settings(env)).await
}

/// An environment's ledger as read without locking.
#[derive(Debug)]
pub struct Ledger {
    pub entries: Vec<Entry>,
    /// How far each `running` non-transactional changeset got.
    pub progress: crate::ledger::Progress,
    /// The pinned trust policies, in order (empty if never pinned).
    pub pins: Vec<crate::policy::PinRecord>,
    /// The ledgers that refreshes of this database replaced, row for row:
    /// read only by [`read_ledger_with_replaced`] (`audit`), `None` otherwise,
    /// so that `status` and `promote` do not pay for history they rarely need.
    pub replaced: Option<Vec<crate::ledger::ReplacedRow>>,
    /// Whether a promoter holds the environment's lock right now (so a
    /// `running` row may really be running).
    pub locked: bool,
    /// The database's identity, for its checkpoint.
    pub identity: String,
}

/// Reads an environment's ledger without locking (empty if it has none yet).
pub async fn read_ledger(env: &Environment, schema: &str) -> Result<Ledger, DbError> {
    read(env, schema, false).await
}

/// [`read_ledger`], with the ledgers refreshes replaced.
pub async fn read_ledger_with_replaced(env: &Environment, schema: &str) -> Result<Ledger, DbError> {
    read(env, schema, true).await
}

async fn read(env: &Environment, schema: &str, with_replaced: bool) -> Result<Ledger, DbError> {
    let mut conn = connect(env).await?;
    let entries = ledger::load(&mut conn, &env.name, schema).await;
    let progress = ledger::load_progress(&mut conn, &env.name, schema).await;
    let pins = db::policy::load(&mut conn, &env.name, schema).await;
    let replaced = if with_replaced {
        ledger::load_replaced(&mut conn, &env.name, schema)
            .await
            .map(Some)
    } else {
        Ok(None)
    };
    let locked = lock::is_held(&mut conn, lock::key(schema)).await;
    let identity = db::identity(&mut conn, &env.name).await;
    db::close(conn).await;
    Ok(Ledger {
        entries: entries?,
        progress: progress?,
        pins: pins?,
        replaced: replaced?,
        locked,
        identity,
    })
}

/// A target opened for writing: the work connection, and the advisory lock
/// on its own connection.
struct Target {
    env: String,
    schema: String,
    conn: db::Connection,
    /// The work connection's backend, for cancel requests.
    pid: i32,
    lock: Lock,
    /// The database's identity, for its checkpoint.
    identity: String,
}

impl Target {
    /// Connects twice and takes the lock (waiting up to `lock_wait`).
    /// Nothing is written until [`execute`] creates the ledger if needed, so a
    /// refused run leaves the target exactly as it was.
    async fn open(
        env: &Environment,
        schema: &str,
        lock_wait: Duration,
        hooks: &mut dyn Hooks,
    ) -> Result<Self, DbError> {
        // Both connections at once (each is a new server process).
        let (lock_conn, conn) = tokio::join!(connect(env), connect(env));
        let (lock_conn, mut conn) = match (lock_conn, conn) {
            (Ok(l), Ok(c)) => (l, c),
            (Err(e), Ok(c)) | (Ok(c), Err(e)) => {
                db::close(c).await;
                return Err(e);
            }
            (Err(e), Err(_)) => return Err(e),
        };
        let lock = match lock::acquire(lock_conn, &env.name, lock::key(schema), lock_wait, |w| {
            hooks.event(Event::Waiting(w));
        })
        .await
        {
            Ok(lock) => lock,
            Err(e) => {
                db::close(conn).await;
                return Err(e);
            }
        };
        let pid = match db::backend_pid(&mut conn, &env.name).await {
            Ok(pid) => pid,
            Err(e) => {
                lock.release().await;
                return Err(e);
            }
        };
        let identity = db::identity(&mut conn, &env.name).await;
        Ok(Self {
            env: env.name.clone(),
            schema: schema.to_owned(),
            conn,
            pid,
            lock,
            identity,
        })
    }

    async fn entries(&mut self) -> Result<Vec<Entry>, DbError> {
        ledger::load(&mut self.conn, &self.env, &self.schema).await
    }

    /// Refuses a ledger that lost the head promoter last saw.
    async fn check_checkpoint(&mut self, entries: &[Entry]) -> Result<Option<Refusal>, DbError> {
        let cp = match crate::checkpoint::load(&crate::checkpoint::state_dir(), &self.identity) {
            Ok(None) => return Ok(None),
            Ok(Some(cp)) => cp,
            Err(why) => {
                return Ok(Some(Refusal::CheckpointMissing {
                    env: self.env.clone(),
                    why,
                }));
            }
        };
        // The kept ledgers of refreshes are read only when the head is not
        // in the ledger itself.
        if crate::checkpoint::check(entries, &[], &cp).is_ok() {
            return Ok(None);
        }
        let replaced = ledger::load_replaced(&mut self.conn, &self.env, &self.schema).await?;
        Ok(crate::checkpoint::check(entries, &replaced, &cp)
            .err()
            .map(|why| Refusal::CheckpointMissing {
                env: self.env.clone(),
                why,
            }))
    }

    /// Records the ledger's head as seen now (best effort: a run that
    /// applied something must not fail for want of a state directory).
    async fn save_checkpoint(&mut self, hooks: &mut dyn Hooks) {
        let Ok(Some(head)) = ledger::last(&mut self.conn, &self.env, &self.schema).await else {
            return;
        };
        let cp = crate::checkpoint::Checkpoint {
            environment: self.env.clone(),
            database: self.identity.clone(),
            seq: head.seq,
            entry_hash: head.entry_hash,
            seen_at: crate::output::format_time(SystemTime::now()),
        };
        if let Err(e) = crate::checkpoint::save(&crate::checkpoint::state_dir(), &cp) {
            hooks.event(Event::Warning(&format!(
                "could not save {}'s ledger checkpoint: {e}",
                self.env
            )));
        }
    }

    async fn progress(&mut self) -> Result<crate::ledger::Progress, DbError> {
        ledger::load_progress(&mut self.conn, &self.env, &self.schema).await
    }

    /// Releases the lock once the work backend is idle, and closes both
    /// connections.
    async fn close(mut self) {
        for _ in 0..50 {
            if self.lock.backend_idle(self.pid).await {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Idle: nothing of this run is in flight on it any more.
        tokio::join!(db::close(self.conn), self.lock.release());
    }
}

/// A bundle with everything checked about it.
struct Checked<'a> {
    bundle: &'a Bundle,
    check: BundleCheck,
    /// The approvals that opened it (recorded with the signers).
    approvals: Vec<Signer>,
}

impl Checked<'_> {
    /// The good signers, as recorded in the ledger: JSON, sorted, one per
    /// role and certificate.
    fn signers_json(&self) -> String {
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
                    principal: s.principal.clone(),
                    approval: None,
                })
            })
            .chain(self.approvals.iter().cloned())
            .collect();
        signers.sort_by(|a, b| {
            (&a.role, &a.fingerprint, &a.signed_at).cmp(&(&b.role, &b.fingerprint, &b.signed_at))
        });
        signers.dedup_by(|a, b| {
            a.role == b.role && a.fingerprint == b.fingerprint && a.approval == b.approval
        });
        serde_json::to_string(&signers).unwrap_or_else(|_| "[]".into())
    }
}

/// The planner's view of bundles before any file is read: id and manifest
/// hash. Planning needs no more; only the steps it picks are then checked in
/// full, so a run never re-reads changesets applied long ago.
pub fn sketch(bundles: &[Bundle]) -> Vec<BundleFacts> {
    bundles
        .iter()
        .map(|b| BundleFacts {
            id: b.id.clone(),
            hash: b.hash(),
            problems: Vec::new(),
            supersedes: b
                .baseline()
                .map(|bl| {
                    bl.supersedes
                        .into_iter()
                        .map(|s| (s.id, s.bundle))
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}

/// Checks the bundles of `steps` in full (files, scripts, signatures against
/// `require`).
/// Per-step trust checks beyond `SHA256SUMS` signatures (receipts,
/// approvals): what refuses the step, and the approvals that open it.
type StepTrust<'t> = dyn FnMut(&Step, &Bundle) -> (Vec<Refusal>, Vec<Signer>) + 't;

fn check_steps<'a>(
    keyrings: &Keyrings,
    bundles: &'a [Bundle],
    steps: &[Step],
    require: &BTreeMap<String, u32>,
    step_trust: &mut StepTrust<'_>,
) -> (Vec<PlannedStep>, Vec<Checked<'a>>) {
    let now = SystemTime::now();
    let mut by_id: HashMap<&str, &Bundle> = HashMap::with_capacity(bundles.len());
    for bundle in bundles {
        by_id.entry(bundle.id.as_str()).or_insert(bundle);
    }
    let found: Vec<(&Step, &'a Bundle)> = steps
        .iter()
        .filter_map(|step| Some((step, *by_id.get(step.changeset_id.as_str())?)))
        .collect();
    // Each check reads and hashes the bundle's files and verifies its
    // signatures, on its own: they are made on every core, and used in order.
    let checks = parallel_map(&found, |(_, bundle)| {
        check_bundle(keyrings, bundle, Some(require), None, now)
    });
    let mut planned = Vec::new();
    let mut checked = Vec::new();
    for ((step, bundle), check) in found.into_iter().zip(checks) {
        let mut problems = check.refusals();
        let (more, approvals) = step_trust(step, bundle);
        problems.extend(more);
        let mut signers = check.signers.clone();
        for a in &approvals {
            *signers.entry(a.role.clone()).or_default() += 1;
        }
        planned.push(PlannedStep {
            changeset_id: step.changeset_id.clone(),
            bundle_hash: step.bundle_hash,
            source_entry: step.source_entry,
            signers,
            problems,
        });
        checked.push(Checked {
            bundle,
            check,
            approvals,
        });
    }
    (planned, checked)
}

/// Who is applying: the OS user of this process and the host.
fn who() -> (String, String) {
    let user = whoami::username().unwrap_or_else(|_| "unknown".into());
    let host = whoami::hostname().unwrap_or_else(|_| "unknown".into());
    (user, host)
}

/// What a plan needs to be applied, found by `apply` or `promote`.
struct Work<'a> {
    schema: &'a str,
    steps: Vec<Step>,
    refusals: Vec<Refusal>,
    keyrings: &'a Keyrings,
    bundles: &'a [Bundle],
    require: &'a BTreeMap<String, u32>,
    confirm: bool,
    promoted_from: Option<String>,
    git_commit: Option<String>,
    /// Baselines this target adopts rather than runs.
    adopt: BTreeSet<String>,
}

/// For each baseline in `steps`: a target that has run none of what it
/// folds runs it (its id in the second set); one that has run all of it,
/// with the same bundles, and whose ledger recorded the baseline's schema
/// after the last of them adopts it (the first set); anything between is
/// refused, naming what differs.
fn baselines(
    env: &str,
    entries: &[Entry],
    bundles: &[Bundle],
    steps: &[Step],
    refusals: &mut Vec<Refusal>,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let applied = crate::ledger::applied(entries);
    let mut adopt = BTreeSet::new();
    let mut run_fresh = BTreeSet::new();
    for step in steps {
        let Some(b) = bundles.iter().find(|b| b.id.as_str() == step.changeset_id) else {
            continue;
        };
        let Some(bl) = b.baseline() else {
            continue;
        };
        let ran: Vec<&crate::changeset::Superseded> = bl
            .supersedes
            .iter()
            .filter(|s| applied.iter().any(|a| a.changeset_id == s.id))
            .collect();
        if ran.is_empty() {
            run_fresh.insert(step.changeset_id.clone());
            continue;
        }
        let why = if ran.len() < bl.supersedes.len() {
            let missing: Vec<&str> = bl
                .supersedes
                .iter()
                .filter(|s| !applied.iter().any(|a| a.changeset_id == s.id))
                .map(|s| s.id.as_str())
                .collect();
            Some(format!(
                "it has applied {} of the {} changesets the baseline folds, not {}",
                ran.len(),
                bl.supersedes.len(),
                missing.join(", ")
            ))
        } else if let Some((s, a)) = bl.supersedes.iter().find_map(|s| {
            applied
                .iter()
                .find(|a| a.changeset_id == s.id && a.bundle_hash != s.bundle)
                .map(|a| (s, a))
        }) {
            Some(format!(
                "it applied {} as bundle {}, and the baseline folds bundle {}",
                s.id,
                a.bundle_hash.short(),
                s.bundle.short()
            ))
        } else {
            // The schema this database had right after the last folded
            // changeset, as its ledger recorded it, is the baseline's: what
            // ran here is what the baseline stands for (later changesets
            // run on either alike).
            let last = bl.supersedes.last().expect("a baseline folds something");
            let recorded = entries
                .iter()
                .rev()
                .find(|e| e.changeset_id == last.id && e.status.is_applied())
                .and_then(|e| e.schema_after);
            match recorded {
                Some(fp) if fp == bl.schema_fingerprint => None,
                Some(fp) => Some(format!(
                    "after {} its schema was {}, not the {} the baseline gives",
                    last.id,
                    fp.short(),
                    bl.schema_fingerprint.short()
                )),
                None => Some(format!(
                    "its ledger recorded no schema after {}, so it cannot be shown to match the baseline",
                    last.id
                )),
            }
        };
        match why {
            None => {
                adopt.insert(step.changeset_id.clone());
            }
            Some(why) => refusals.push(Refusal::BaselineNotAdoptable {
                id: step.changeset_id.clone(),
                env: env.to_owned(),
                why,
            }),
        }
    }
    (adopt, run_fresh)
}

/// The pinned policy of the target, or a refusal and git's view as a
/// fallback (so that `--dry-run` can still show the plan).
async fn effective(
    target: &mut Target,
    env: &Environment,
    trust: &Trust<'_>,
    hooks: &mut dyn Hooks,
    refusals: &mut Vec<Refusal>,
) -> Result<trust::Effective, RunError> {
    match trust::effective(
        target,
        env,
        trust.git_keyrings,
        trust.git_policy.as_ref(),
        hooks,
    )
    .await?
    {
        Ok(e) => Ok(e),
        Err(r) => {
            refusals.push(r);
            Ok(trust::Effective {
                pinned: None,
                keyrings: trust.git_keyrings.clone(),
                signature_require: env.config.require.clone(),
            })
        }
    }
}

/// The bundles of a run: at hand, or still being read from disk on a
/// thread of their own, taken once the target is locked and its ledger
/// read (at 500 changesets reading them is a third of a run with nothing
/// to do, and the connections and the ledger another third).
pub enum Bundles<'a> {
    Ready(&'a [Bundle]),
    Loading(std::thread::ScopedJoinHandle<'a, anyhow::Result<Vec<Bundle>>>),
}

/// Applies pending changesets from `bundles` (the work tree) to an
/// environment without `promote_from`.
#[allow(clippy::too_many_arguments)]
pub async fn apply(
    env: &Environment,
    schema: &str,
    bundles: Bundles<'_>,
    trust: &mut Trust<'_>,
    git_commit: Option<String>,
    opts: &RunOptions,
    hooks: &mut dyn Hooks,
) -> Result<Report, RunError> {
    let mut target = match Target::open(env, schema, opts.lock_wait, hooks).await {
        Ok(target) => target,
        // What is wrong with the bundles is said first, as when they were
        // read before connecting.
        Err(e) => {
            if let Bundles::Loading(handle) = bundles
                && let Err(bad) = join_thread(handle)
            {
                return Err(RunError::Other(bad));
            }
            return Err(e.into());
        }
    };
    let result = async {
        let entries = target.entries().await?;
        let progress = target.progress().await?;
        let owned;
        let bundles = match bundles {
            Bundles::Ready(bundles) => bundles,
            Bundles::Loading(handle) => {
                owned = join_thread(handle)?;
                &owned[..]
            }
        };
        let mut refusals =
            plan::refuse_dirty(&env.name, &crate::ledger::dirty(&entries, &progress));
        if let Err(why) = db::guard::protected(&mut target.conn, &env.name, schema).await? {
            refusals.push(Refusal::LedgerUnprotected {
                env: env.name.clone(),
                why,
            });
        }
        refusals.extend(target.check_checkpoint(&entries).await?);
        let eff = effective(&mut target, env, trust, hooks, &mut refusals).await?;
        if let Some((_, pinned)) = &eff.pinned {
            if let Some(from) = &pinned.promote_from {
                refusals.push(Refusal::PinnedSource {
                    env: env.name.clone(),
                    pinned: Some(from.clone()),
                    from: "the work tree (apply)".into(),
                });
            }
            // Roles that approve need a tested source; `apply` has none.
            if let Some(role) = crate::policy::approving_roles(&pinned.require).next() {
                refusals.push(Refusal::PinnedSource {
                    env: env.name.clone(),
                    pinned: None,
                    from: format!(
                        "the work tree: {role} approvals rest on a test environment's receipts"
                    ),
                });
            }
        }
        let applied = crate::ledger::applied(&entries);
        // An applied changeset edited in the work tree without resealing:
        // nothing will run it again, which is worth saying.
        for a in &applied {
            if let Some(b) = bundles.iter().find(|b| b.id.as_str() == a.changeset_id)
                && b.touched_since_sealed()
                && let Ok(problems) = b.check_files()
                && !problems.is_empty()
            {
                let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
                hooks.event(Event::Warning(&format!(
                    "{}: {} (it ran in {} as sealed, and will not run again); to redo it: undo it by hand, `promoter resolve {} {} --forget --note \"...\"`, `promoter seal --force {}`, apply",
                    b.location,
                    list.join("; "),
                    env.name,
                    env.name,
                    a.changeset_id,
                    a.changeset_id
                )));
            }
        }
        let plan = plan::plan_apply(
            &env.name,
            &applied,
            &sketch(bundles),
            &opts.only,
            opts.upto.as_deref(),
        );
        refusals.extend(plan.refusals);
        let (adopt, _) = baselines(&env.name, &entries, bundles, &plan.steps, &mut refusals);
        let work = Work {
            schema,
            steps: plan.steps,
            refusals,
            keyrings: &eff.keyrings,
            bundles,
            require: &eff.signature_require,
            confirm: env.config.confirm,
            promoted_from: None,
            git_commit,
            adopt,
        };
        let mut no_more = |_: &Step, _: &Bundle| (Vec::new(), Vec::new());
        run(
            &mut target,
            work,
            opts,
            hooks,
            trust,
            &mut no_more,
            Report::new(&env.name, None, opts.dry_run),
        )
        .await
    }
    .await;
    // A head worth remembering: what this run wrote. Never after a refusal,
    // which would bless the very ledger it refused.
    if wrote(&result) {
        target.save_checkpoint(hooks).await;
    }
    target.close().await;
    result
}

/// Promotes what `from`'s ledger shows applied and `to` lacks, with bundles
/// from git (`bundles`, read at `git_commit`). With a pinned policy, the
/// policy decides: its source, its people, its receipt keys.
#[allow(clippy::too_many_arguments)]
pub async fn promote(
    from: &Environment,
    to: &Environment,
    schema: &str,
    bundles: &[Bundle],
    trust: &mut Trust<'_>,
    git_commit: String,
    opts: &RunOptions,
    hooks: &mut dyn Hooks,
) -> Result<Report, RunError> {
    let source_ledger =
        read_ledger(from, schema)
            .await
            .map_err(|error| RunError::SourceUnreadable {
                env: to.name.clone(),
                from: from.name.clone(),
                error,
            })?;
    let source_checkpoint =
        crate::checkpoint::load(&crate::checkpoint::state_dir(), &source_ledger.identity)
            .ok()
            .flatten();
    let source = &source_ledger.entries;
    // Drift matters once the source is itself a controlled environment (QAT → PRD).
    let check_drift = from.config.promote_from.is_some() && !opts.allow_drift;
    let mut target = Target::open(to, schema, opts.lock_wait, hooks).await?;
    let result = async {
        let entries = target.entries().await?;
        let progress = target.progress().await?;
        let mut refusals = plan::refuse_dirty(&to.name, &crate::ledger::dirty(&entries, &progress));
        if let Err(why) = db::guard::protected(&mut target.conn, &to.name, schema).await? {
            refusals.push(Refusal::LedgerUnprotected {
                env: to.name.clone(),
                why,
            });
        }
        refusals.extend(target.check_checkpoint(&entries).await?);
        // The source's kept ledgers are read only when its checkpointed head
        // is not in its ledger itself (after a refresh of the source).
        let source_checked = match source_checkpoint.as_ref() {
            None => Ok(()),
            Some(cp) => match crate::checkpoint::check(source, &[], cp) {
                Ok(()) => Ok(()),
                Err(_) => {
                    let replaced = read_ledger_with_replaced(from, schema)
                        .await
                        .map_err(|error| RunError::SourceUnreadable {
                            env: to.name.clone(),
                            from: from.name.clone(),
                            error,
                        })?
                        .replaced
                        .unwrap_or_default();
                    crate::checkpoint::check(source, &replaced, cp)
                }
            },
        };
        if let Err(why) = source_checked {
            refusals.push(Refusal::CheckpointMissing {
                env: from.name.clone(),
                why,
            });
        }
        let eff = effective(&mut target, to, trust, hooks, &mut refusals).await?;
        if let Some((_, pinned)) = &eff.pinned
            && pinned.promote_from.as_deref() != Some(from.name.as_str())
        {
            refusals.push(Refusal::PinnedSource {
                env: to.name.clone(),
                pinned: pinned.promote_from.clone(),
                from: from.name.clone(),
            });
        }
        let plan = plan::plan_promotion(
            &from.name,
            &to.name,
            &crate::ledger::applied(source),
            &crate::ledger::applied(&entries),
            &sketch(bundles),
            opts.upto.as_deref(),
        );
        refusals.extend(plan.refusals);
        let (adopt, run_fresh) = baselines(&to.name, &entries, bundles, &plan.steps, &mut refusals);
        // A baseline run on an empty database starts from nothing, not from
        // the source's schema before it (which had the history it folds).
        if check_drift
            && let Some(first) = plan.steps.first()
            && !run_fresh.contains(&first.changeset_id)
        {
            let before = source
                .iter()
                .find(|e| Some(e.entry_hash) == first.source_entry)
                .and_then(|e| e.schema_before);
            if before.is_some() {
                let now = fingerprint::fingerprint(&mut target.conn, &to.name, schema).await?;
                refusals.extend(plan::check_drift(&from.name, &to.name, first, before, now));
            }
        }
        let now = SystemTime::now();
        // The source's chain is checked once, not once per candidate.
        let chain_break = crate::ledger::check_chain(source);
        let pinned = eff.pinned.as_ref().map(|(_, p)| p);
        let keyrings = &eff.keyrings;
        let from_name = from.name.clone();
        let to_name = to.name.clone();
        let mut step_trust = |step: &Step, bundle: &Bundle| -> (Vec<Refusal>, Vec<Signer>) {
            let Some(pinned) = pinned else {
                return (Vec::new(), Vec::new());
            };
            let mut problems = Vec::new();
            let entry = step.source_entry.unwrap_or(crate::ledger::GENESIS);
            let needs_receipt = pinned
                .receipt_keys
                .iter()
                .any(|r| r.environment == from_name);
            let receipt_key = if needs_receipt {
                match trust::check_receipt(
                    source,
                    chain_break.as_ref(),
                    entry,
                    &from_name,
                    pinned,
                    keyrings,
                    now,
                ) {
                    Ok(fpr) => Some(fpr),
                    Err(reason) => {
                        problems.push(Refusal::NoReceipt {
                            id: step.changeset_id.clone(),
                            from_env: from_name.clone(),
                            reason,
                        });
                        None
                    }
                }
            } else {
                None
            };
            if crate::policy::approving_roles(&pinned.require)
                .next()
                .is_none()
            {
                return (problems, Vec::new());
            }
            let key = receipt_key.unwrap_or_default();
            let candidate = crate::approval::Candidate {
                changeset: &step.changeset_id,
                bundle: step.bundle_hash,
                tested_in: &from_name,
                entry,
                receipt_key: &key,
                target: &to_name,
            };
            let (counted, not_counted) = trust::count_approvals(bundle, &candidate, keyrings, now);
            problems.extend(trust::approval_refusals(
                &step.changeset_id,
                pinned,
                &counted,
                &not_counted,
            ));
            (problems, trust::approval_signers(&counted))
        };
        let work = Work {
            schema,
            steps: plan.steps,
            refusals,
            keyrings,
            bundles,
            require: &eff.signature_require,
            confirm: to.config.confirm,
            promoted_from: Some(from.name.clone()),
            git_commit: Some(git_commit),
            adopt,
        };
        let mut report = run(
            &mut target,
            work,
            opts,
            hooks,
            trust,
            &mut step_trust,
            Report::new(&to.name, Some(&from.name), opts.dry_run),
        )
        .await?;
        if check_drift && !report.dry_run {
            let mine = target.entries().await?;
            for step in &report.applied {
                let theirs = source
                    .iter()
                    .rev()
                    .find(|e| e.changeset_id == step.changeset_id && e.status.is_applied());
                let ours = mine.iter().find(|e| e.entry_hash == step.entry_hash);
                if let (Some(s), Some(m)) = (theirs, ours)
                    && s.schema_after != m.schema_after
                {
                    let w = format!(
                        "after {}, {}'s schema differs from {}'s after the same changeset",
                        step.changeset_id, to.name, from.name
                    );
                    hooks.event(Event::Warning(&w));
                    report.warnings.push(w);
                }
            }
        }
        Ok(report)
    }
    .await;
    // A head worth remembering: what this run wrote. Never after a refusal,
    // which would bless the very ledger it refused.
    if wrote(&result) {
        target.save_checkpoint(hooks).await;
    }
    target.close().await;
    result
}

/// What `apply` and `promote` share once a plan is found: check the planned
/// bundles in full, refuse with every reason, or print the plan under
/// `--dry-run`, ask when the environment wants confirmation, then execute.
async fn run(
    target: &mut Target,
    work: Work<'_>,
    opts: &RunOptions,
    hooks: &mut dyn Hooks,
    trust: &mut Trust<'_>,
    step_trust: &mut StepTrust<'_>,
    mut report: Report,
) -> Result<Report, RunError> {
    let (planned, checked) = check_steps(
        work.keyrings,
        work.bundles,
        &work.steps,
        work.require,
        step_trust,
    );
    let mut refusals = work.refusals;
    refusals.extend(planned.iter().flat_map(|p| p.problems.iter().cloned()));
    if !refusals.is_empty() {
        return Err(RunError::Refused {
            env: target.env.clone(),
            refusals,
            planned,
        });
    }
    report.planned = planned;
    if opts.dry_run || report.planned.is_empty() {
        return Ok(report);
    }
    if work.confirm && !opts.assume_yes && !hooks.confirm(&target.env, &report.planned)? {
        return Err(RunError::NotConfirmed {
            env: target.env.clone(),
        });
    }
    let info = (work.promoted_from, work.git_commit, work.adopt);
    execute(
        target,
        work.schema,
        checked,
        &info,
        hooks,
        trust,
        &mut report,
    )
    .await?;
    if report.failed.is_some() {
        return Err(if report.interrupted {
            RunError::Interrupted(Box::new(report))
        } else {
            RunError::Failed(Box::new(report))
        });
    }
    if report.interrupted {
        return Err(RunError::Interrupted(Box::new(report)));
    }
    Ok(report)
}

/// Applies the checked bundles in order; stops at the first failure or
/// signal, recording it in `report`. The ledger is created here, not when the
/// target is opened, so that refusals write nothing.
async fn execute(
    target: &mut Target,
    schema: &str,
    checked: Vec<Checked<'_>>,
    (promoted_from, git_commit, adopt): &(Option<String>, Option<String>, BTreeSet<String>),
    hooks: &mut dyn Hooks,
    trust: &mut Trust<'_>,
    report: &mut Report,
) -> Result<(), RunError> {
    let mut signer = trust.row_signer();
    let mut sign: db::ledger::RowSigner<'_> = signer
        .as_mut()
        .map(|f| f as &mut dyn FnMut(&[u8]) -> Result<String, String>);
    ledger::ensure(&mut target.conn, &target.env, schema).await?;
    let ledger_catalog = db::guard::catalog(&mut target.conn, &target.env, schema).await?;
    let ledger_shape = db::guard::shape(&mut target.conn, &target.env, schema).await?;
    let (os_user, host) = who();
    let db_role = ledger::current_role(&mut target.conn, &target.env).await?;
    interrupt::install();
    let total = checked.len();
    let steps: Vec<PlannedStep> = report.planned.clone();
    let mut previous = None;
    let mut tracked = None;
    // The next changeset's files are opened while the server commits this
    // one (its fsync), not after: the client's part of a small changeset.
    let mut ahead: Option<anyhow::Result<Prepared>> = None;
    for (index, step) in steps.into_iter().enumerate() {
        let c = &checked[index];
        if interrupt::requested() {
            report.interrupted = true;
            report.not_started = report.planned[index..]
                .iter()
                .map(|p| p.changeset_id.clone())
                .collect();
            return Ok(());
        }
        let Prepared {
            meta,
            scripts,
            signers,
        } = match ahead.take() {
            Some(prepared) => prepared?,
            None => prepare(c, &step.changeset_id)?,
        };
        let entry = Entry {
            seq: 0,
            changeset_id: step.changeset_id.clone(),
            bundle_hash: step.bundle_hash,
            environment: target.env.clone(),
            status: Status::Running,
            signers,
            promoted_from: promoted_from.clone(),
            promoted_from_entry: step.source_entry,
            git_commit: git_commit.clone(),
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
            prev_hash: crate::ledger::GENESIS,
            entry_hash: crate::ledger::GENESIS,
            receipt: None,
        };
        let app = Application {
            ledger_schema: schema.to_owned(),
            ledger_catalog,
            ledger_shape: ledger_shape.clone(),
            entry,
            mode: meta.transaction,
            previous: previous.take(),
            tracked: tracked.take(),
            meter: hooks.meter(),
        };
        hooks.event(Event::Starting {
            env: &target.env,
            id: &step.changeset_id,
            index: index + 1,
            total,
        });
        if adopt.contains(&step.changeset_id) {
            // The history the baseline folds ran here, and the schema is
            // the baseline's (checked under this lock): recorded, not run.
            let mut e = app.entry;
            let fp = fingerprint::fingerprint(&mut target.conn, &target.env, schema).await?;
            let now = SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as i64);
            e.status = Status::BaselineAdopted;
            e.started_at = now;
            e.finished_at = Some(now);
            e.schema_before = Some(fp);
            e.schema_after = Some(fp);
            e.note = Some(format!(
                "adopted: this database ran every changeset {} folds, and its schema is the baseline's",
                step.changeset_id
            ));
            executor::append_alone(&mut target.conn, &target.env, schema, &mut e, &mut sign)
                .await?;
            report.applied.push(AppliedStep {
                changeset_id: e.changeset_id.clone(),
                bundle_hash: e.bundle_hash,
                ledger_seq: e.seq,
                entry_hash: e.entry_hash,
                statements: 0,
                seconds: 0.0,
            });
            let step = report.applied.last().expect("just pushed");
            hooks.event(Event::Applied {
                env: &target.env,
                step,
            });
            continue;
        }
        let outcome = {
            let Target {
                conn,
                lock,
                pid,
                env,
                ..
            } = &mut *target;
            let mut out = hooks.run_output();
            let next = checked.get(index + 1).zip(report.planned.get(index + 1));
            let mut read_ahead = || {
                if let Some((c, step)) = next {
                    ahead = Some(prepare(c, &step.changeset_id));
                }
            };
            let applying = executor::apply(
                conn,
                env,
                app,
                scripts,
                &mut sign,
                executor::Driver {
                    stop: interrupt::flag(),
                    out: &mut *out,
                    while_committing: &mut read_ahead,
                },
            );
            tokio::pin!(applying);
            let mut cancelled = false;
            loop {
                tokio::select! {
                    outcome = &mut applying => break outcome?,
                    () = interrupt::wait(), if !cancelled => {
                        cancelled = true;
                        hooks.event(Event::Interrupting { env, id: &step.changeset_id });
                        lock.cancel(*pid).await;
                    }
                }
            }
        };
        previous = outcome.mark;
        tracked = outcome.tracked;
        let e = &outcome.entry;
        let seconds = (e.finished_at.unwrap_or(e.started_at) - e.started_at) as f64 / 1e6;
        match outcome.error {
            None => {
                report.applied.push(AppliedStep {
                    changeset_id: e.changeset_id.clone(),
                    bundle_hash: e.bundle_hash,
                    ledger_seq: e.seq,
                    entry_hash: e.entry_hash,
                    statements: e.statements,
                    seconds,
                });
                let step = report.applied.last().expect("just pushed");
                hooks.event(Event::Applied {
                    env: &target.env,
                    step,
                });
            }
            Some(error) => {
                let interrupted = matches!(error, ExecError::Interrupted { .. });
                report.interrupted |= interrupted;
                report.failed = Some(FailedStep {
                    changeset_id: e.changeset_id.clone(),
                    ledger_seq: e.seq,
                    statements_committed: e.statements,
                    rolled_back: meta.transaction == TransactionMode::PerChangeset
                        || e.statements == 0,
                    interrupted,
                    error,
                });
                report.not_started = report.planned[index + 1..]
                    .iter()
                    .map(|p| p.changeset_id.clone())
                    .collect();
                let step = report.failed.as_ref().expect("just set");
                hooks.event(Event::Failed {
                    env: &target.env,
                    step,
                });
                return Ok(());
            }
        }
    }
    Ok(())
}

/// What running one checked changeset needs from its bundle: its
/// changeset.yaml as checked, its scripts opened, and its signers as the
/// ledger records them.
struct Prepared {
    meta: ChangesetMeta,
    scripts: Vec<executor::ScriptSource>,
    signers: String,
}

fn prepare(c: &Checked<'_>, id: &str) -> anyhow::Result<Prepared> {
    // As checked: from the bytes hashed against SHA256SUMS (a check that
    // found a difference refused the run before anything ran).
    let meta = c
        .check
        .meta
        .clone()
        .ok_or_else(|| anyhow::anyhow!("internal error: {id} has no checked changeset.yaml"))?;
    let (_, manifest): (_, Manifest) = c.bundle.sealed_manifest().map_err(anyhow::Error::from)?;
    let scripts = match meta.transaction {
        TransactionMode::PerChangeset => executor::stream_scripts(c.bundle, &manifest),
        TransactionMode::None => executor::preload_scripts(c.bundle, &manifest),
    }
    .map_err(|e| anyhow::anyhow!("{id}: {e}"))?;
    Ok(Prepared {
        meta,
        scripts,
        signers: c.signers_json(),
    })
}

/// Records that a developer undid changeset `changeset` by hand in `env`,
/// an environment without `promote_from`, so that it counts as not applied
/// and a fixed bundle can run again (`promoter resolve dev N --forget`). A
/// `forgotten` row names the bundle that had run and carries the note and
/// the live schema fingerprint; the rows before it stay. Refused in any
/// environment that is promoted to from another: what ran there is a fact.
pub async fn forget(
    env: &Environment,
    schema: &str,
    changeset: &str,
    note: &str,
    lock_wait: Duration,
    trust: &mut Trust<'_>,
    hooks: &mut dyn Hooks,
) -> Result<Entry, RunError> {
    let usage = |msg: String| RunError::Other(crate::error::CommandError::usage(msg).into());
    if env.config.promote_from.is_some() {
        return Err(RunError::Other(
            crate::error::CommandError::refused(format!(
                "{} is promoted from {}: what ran there is part of the promotion's record and is never forgotten",
                env.name,
                env.config.promote_from.as_deref().unwrap_or("?")
            ))
            .with_hint("--forget is for an environment without promote_from (DEV); fix forward with a new changeset here")
            .into(),
        ));
    }
    let mut target = Target::open(env, schema, lock_wait, hooks).await?;
    let result = async {
        ledger::ensure(&mut target.conn, &env.name, schema).await?;
        let entries = target.entries().await?;
        let matching: Vec<&Entry> = entries
            .iter()
            .filter(|e| {
                !e.status.is_event()
                    && ChangesetId::parse(&e.changeset_id).is_ok_and(|id| id.matches(changeset))
            })
            .collect();
        let Some(last) = crate::ledger::live_rows(&matching)
            .iter()
            .rev()
            .find(|e| e.status.is_applied())
        else {
            return Err(usage(format!(
                "{}: `{changeset}` is not applied here; nothing to forget",
                env.name
            )));
        };
        let ids: std::collections::BTreeSet<&str> =
            matching.iter().map(|e| e.changeset_id.as_str()).collect();
        if ids.len() > 1 {
            return Err(usage(format!(
                "`{changeset}` matches {}; name one",
                ids.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
        let schema_now = fingerprint::fingerprint(&mut target.conn, &env.name, schema).await?;
        let (os_user, host) = who();
        let now = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        let mut entry = Entry {
            status: Status::Forgotten,
            os_user,
            host,
            db_role: ledger::current_role(&mut target.conn, &env.name).await?,
            started_at: now,
            finished_at: Some(now),
            schema_before: Some(schema_now),
            schema_after: Some(schema_now),
            statements: 0,
            error: None,
            note: Some(note.to_owned()),
            signers: "[]".into(),
            promoted_from: None,
            promoted_from_entry: None,
            receipt: None,
            ..(*last).clone()
        };
        entry.environment = env.name.clone();
        let mut signer = trust.row_signer();
        let mut sign: db::ledger::RowSigner<'_> = signer
            .as_mut()
            .map(|f| f as &mut dyn FnMut(&[u8]) -> Result<String, String>);
        executor::append_alone(&mut target.conn, &env.name, schema, &mut entry, &mut sign).await?;
        Ok(entry)
    }
    .await;
    if wrote(&result) {
        target.save_checkpoint(hooks).await;
    }
    target.close().await;
    result
}

/// Records how an operator resolved a partial application: a
/// `resolved-applied` or `resolved-rolled-back` row for the unfinished
/// changeset that `changeset` names, with the operator's note. The
/// environment is clean again afterwards.
#[allow(clippy::too_many_arguments)]
pub async fn resolve(
    env: &Environment,
    schema: &str,
    changeset: &str,
    outcome: Status,
    note: &str,
    lock_wait: Duration,
    trust: &mut Trust<'_>,
    hooks: &mut dyn Hooks,
) -> Result<Entry, RunError> {
    let mut target = Target::open(env, schema, lock_wait, hooks).await?;
    let result = async {
        ledger::ensure(&mut target.conn, &env.name, schema).await?;
        let entries = target.entries().await?;
        let progress = target.progress().await?;
        let dirty = crate::ledger::dirty(&entries, &progress);
        let Some(found) = dirty.iter().find(|d| {
            ChangesetId::parse(&d.row.changeset_id).is_ok_and(|id| id.matches(changeset))
        }) else {
            return Err(RunError::Other(
                crate::error::CommandError::usage(format!(
                    "{}: `{changeset}` is not partially applied; nothing to resolve",
                    env.name
                ))
                .into(),
            ));
        };
        let mut entry = found.row.clone();
        entry.statements = found.committed;
        let (os_user, host) = who();
        entry.status = outcome;
        entry.os_user = os_user;
        entry.host = host;
        entry.db_role = ledger::current_role(&mut target.conn, &env.name).await?;
        entry.error = None;
        entry.note = Some(note.to_owned());
        let now = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        entry.started_at = now;
        entry.finished_at = Some(now);
        let mut signer = trust.row_signer();
        let mut sign: db::ledger::RowSigner<'_> = signer
            .as_mut()
            .map(|f| f as &mut dyn FnMut(&[u8]) -> Result<String, String>);
        executor::append_alone(&mut target.conn, &env.name, schema, &mut entry, &mut sign).await?;
        Ok(entry)
    }
    .await;
    // A head worth remembering: what this run wrote. Never after a refusal,
    // which would bless the very ledger it refused.
    if wrote(&result) {
        target.save_checkpoint(hooks).await;
    }
    target.close().await;
    result
}
