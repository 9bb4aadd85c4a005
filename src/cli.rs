//! Command-line types (clap derive). Doc comments here are the `--help` text.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};

/// The exit codes, shown at the end of `--help` (and in the README).
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0     success
  1     a check did not hold (verify, audit, drift, status --exit-code)
  2     usage or configuration error
  3     refused before the target was touched
  4     failed while applying (the ledger says what ran)
  5     cannot connect to a database
  130   interrupted (Ctrl-C or SIGTERM)

With --json, a failure prints one JSON object on stdout: {\"format_version\", \"error\": {\"kind\", ...}}.";

/// Carry signed, hashed PostgreSQL changesets from DEV through QAT to PRD.
///
/// Every change is a numbered bundle of SQL scripts in git, sealed with a
/// SHA256SUMS manifest and signed with OpenPGP by its developer; the customer
/// approves the exact bundle after testing it in QAT; promoter applies the
/// byte-identical bundle to PRD and records every application in a ledger
/// table inside the target database.
#[derive(Debug, Parser)]
#[command(
    name = "promoter",
    version,
    propagate_version = true,
    max_term_width = 100,
    after_help = EXIT_CODES_HELP
)]
pub struct Cli {
    /// Run as if promoter was started in DIR (like `git -C`).
    #[arg(short = 'C', global = true, value_name = "DIR")]
    pub directory: Option<PathBuf>,

    /// Print results as JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Set up a project: environments.yaml, keys/, changesets/, .gitattributes.
    Init,
    /// Create the next numbered changeset with a first script.
    New(NewArgs),
    /// Write SHA256SUMS for changesets (all if none are named).
    Seal(SealArgs),
    /// Sign changesets as a developer (or in whatever role your certificate has).
    Sign(SignArgs),
    /// Approve changesets as a customer, after testing them in QAT.
    Approve(ApproveArgs),
    /// Check files against SHA256SUMS and every signature; optionally an environment's requirements.
    Verify(VerifyArgs),
    /// Generate and list OpenPGP keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Apply pending sealed changesets from the work tree to an environment without `promote_from` (DEV).
    Apply(ApplyArgs),
    /// Promote what FROM's ledger shows as applied to TO, reading bundles from git.
    Promote(PromoteArgs),
    /// Show every changeset against every environment.
    ///
    /// Signature checks that held are remembered in the state directory
    /// (`signature-memo`) for the next status; which key made each one and
    /// what it counts for are decided again every time, and no other
    /// command reads the memo.
    Status(StatusArgs),
    /// Print an environment's ledger.
    Ledger(LedgerArgs),
    /// Check an environment's ledger hash chain and every applied bundle against git.
    Audit(AuditArgs),
    /// Record how a partially applied changeset was resolved by hand, or (--forget, DEV only) that an applied one was undone.
    Resolve(ResolveArgs),
    /// Make TO a copy of FROM: schema, data and ledger history (a refresh: `clone prd qat`).
    Clone(CloneArgs),
    /// Compare two environments' schemas (what the drift check compares), line by line.
    Drift(DriftArgs),
    /// The trust policy pinned in a controlled environment's own database.
    #[command(subcommand)]
    Trust(TrustCommand),
    /// Signed ledger rows (receipts) for approving or auditing offline.
    #[command(subcommand)]
    Receipt(ReceiptCommand),
    /// Show one changeset: files, signatures, every environment it ran in with its receipt, and its SQL.
    Show(ShowArgs),
    /// Branch databases: master, develop, feature_*, bugfix_*, test_* — environments without promote_from, known by name.
    #[command(subcommand)]
    Branch(BranchCommand),
    /// Data profiles: datasets saved from an environment (pinned in profiles/NAME/profile.yaml) and restored into DEV or a branch.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Fold every changeset up to N, applied everywhere, into one baseline changeset; the folded ones move to changesets/archive/.
    Baseline(BaselineArgs),
    /// Write one page of everything promoter knows (status, changesets, signatures, ledgers, audits, drift) as HTML, Markdown or JSON.
    Report(ReportArgs),
    /// Print a shell completion script: `source <(promoter completions bash)`.
    Completions(CompletionsArgs),
    /// Write roff man pages for promoter and every subcommand into DIR.
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The changeset (id, number or slug), from the work tree.
    pub changeset: String,
    /// Leave the SQL out (and so the pager).
    #[arg(long)]
    pub no_sql: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write promoter.1, promoter-apply.1, … into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Derive ENV's policy from git, show it, and pin it in ENV's database (trust on first use, or a signed change).
    Pin(TrustPinArgs),
    /// Show ENV's pinned policy, its history, and how git differs.
    Show(TrustShowArgs),
    /// Sign the policy the work tree gives ENV, so that it can be re-pinned.
    Sign(TrustSignArgs),
}

#[derive(Debug, Args)]
pub struct TrustPinArgs {
    /// The environment, e.g. prd.
    pub env: String,
    /// Git revision to derive the policy from (environments.yaml and keys/).
    #[arg(long, default_value = "HEAD")]
    pub rev: String,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub yes: bool,
    /// Replace the pinned policy without the pinned people's signatures (lost keys); recorded and always reported by audit.
    #[arg(long, requires = "reason")]
    pub break_glass: bool,
    /// Why the glass was broken (with --break-glass).
    #[arg(long, requires = "break_glass")]
    pub reason: Option<String>,
    /// How long to wait for another promoter that holds the lock, in seconds.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub lock_wait: u64,
}

#[derive(Debug, Args)]
pub struct TrustShowArgs {
    /// The environment, e.g. prd.
    pub env: String,
    /// Git revision to compare the pinned policy with.
    #[arg(long, default_value = "HEAD")]
    pub rev: String,
}

#[derive(Debug, Args)]
pub struct TrustSignArgs {
    /// The environment whose new policy to sign.
    pub env: String,
    #[command(flatten)]
    pub key: KeySource,
    /// Derive the policy from this git revision instead of the work tree.
    #[arg(long)]
    pub rev: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ReceiptCommand {
    /// Write ENV's signed ledger row for CHANGESET as a file (for `approve --receipt`, or an auditor).
    Export(ReceiptExportArgs),
}

#[derive(Debug, Args)]
pub struct ReceiptExportArgs {
    /// The environment that ran it, e.g. qat.
    pub env: String,
    /// The changeset (id, number or slug).
    pub changeset: String,
    /// The file to write (default: stdout).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// Lower-case slug: letters, digits and single hyphens, e.g. `add-customers`.
    pub slug: String,
    /// Run statements one by one outside a transaction (for CREATE INDEX CONCURRENTLY).
    #[arg(long)]
    pub no_transaction: bool,
    /// One line on what the change does (default: the slug in words).
    #[arg(long, short)]
    pub description: Option<String>,
}

#[derive(Debug, Args)]
pub struct SealArgs {
    /// Changesets by id, number or slug; all if omitted.
    pub changesets: Vec<String>,
    /// Reseal a signed changeset whose content changed, deleting its now-stale signatures.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args, Clone)]
#[group(required = true, multiple = false)]
pub struct KeySource {
    /// Armored secret key file; the passphrase comes from PROMOTER_PASSPHRASE or a prompt.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Sign through gpg with this key (gpg-agent and smartcards work).
    #[arg(long, value_name = "KEYID")]
    pub gpg: Option<String>,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// Changesets by id, number or slug.
    #[arg(required = true)]
    pub changesets: Vec<String>,
    #[command(flatten)]
    pub key: KeySource,
}

#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// Changesets by id, number or slug.
    #[arg(required = true)]
    pub changesets: Vec<String>,
    #[command(flatten)]
    pub key: KeySource,
    /// The environment the approval opens (default: the one whose `require` has customers).
    #[arg(long = "for", value_name = "ENV")]
    pub for_env: Option<String>,
    /// How long the approval holds: e.g. 14d, 48h (default 14d).
    #[arg(long, default_value = "14d", value_name = "DURATION")]
    pub expires: String,
    /// A note for the record (one line).
    #[arg(long, default_value = "")]
    pub comment: String,
    /// Approve from an exported receipt (`promoter receipt export`) instead of reading the test environment's ledger.
    #[arg(long, value_name = "FILE")]
    pub receipt: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Changesets by id, number or slug; all if omitted.
    pub changesets: Vec<String>,
    /// Also check that ENV's `require` is met.
    #[arg(long = "for", value_name = "ENV")]
    pub for_env: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate an ed25519 signing key: public certificate and secret key, armored, named by fingerprint.
    Generate(GenerateArgs),
    /// List the certificates of every role keyring.
    List,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// User id, e.g. "Ada Lovelace <ada@example.com>".
    #[arg(long)]
    pub name: String,
    /// Directory to write `<FPR>.asc` (public), `<FPR>.secret.asc` and `<FPR>.rev.asc` into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Validity in days; 0 for a key that never expires.
    #[arg(long, default_value_t = 1095)]
    pub valid_days: u64,
    /// Write the secret key unprotected (throw-away keys, tests). Otherwise
    /// it is encrypted with $PROMOTER_PASSPHRASE or a passphrase asked twice
    /// on the terminal, and without either nothing is written.
    #[arg(long)]
    pub no_passphrase: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The environment: one without `promote_from`, such as dev.
    pub env: String,
    /// Only these changesets (and they must be next in order); all pending if omitted.
    pub changesets: Vec<String>,
    /// Stop after this changeset (id, number or slug).
    #[arg(long = "to", value_name = "CHANGESET", conflicts_with = "changesets")]
    pub upto: Option<String>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The environment whose ledger says what is ready (e.g. qat).
    pub from: String,
    /// The environment to apply to; its `promote_from` must be FROM (e.g.
    /// prd). For a fleet, every target (or those named with --target);
    /// `prd/acme` is one target.
    pub to: String,
    /// Git revision to read bundles from.
    #[arg(long, default_value = "HEAD")]
    pub rev: String,
    /// Stop after this changeset (id, number or slug).
    #[arg(long = "to", value_name = "CHANGESET")]
    pub upto: Option<String>,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

/// `promoter clone FROM TO`.
#[derive(Debug, Args)]
#[command(after_help = "\
FROM is only read: one snapshot, no writes, no lock that waits for its users.
The copy is built under a temporary name next to TO, verified (schema
fingerprint and every table's row count equal to FROM's) and only then swapped
in; a failed or interrupted clone leaves TO as it was. TO's ledger continues:
FROM's history, then a `refreshed` row (signed with TO's receipt key) naming
FROM's ledger head; TO's own earlier ledger is kept in ledger_replaced, and
TO keeps its own pinned trust policy. Needs pg_dump and pg_restore at least as
new as both servers, and a role that may create databases in TO's cluster and
end TO's sessions.")]
pub struct CloneArgs {
    /// The environment to copy, e.g. prd (prd/TARGET for one target of a fleet).
    pub from: String,
    /// The environment to replace, e.g. qat or dev; it must come before FROM
    /// in the pipeline (be promoted into it, directly or through others).
    pub to: String,
    /// Parallel jobs of pg_dump and pg_restore.
    #[arg(long, short = 'j', default_value_t = 2, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub jobs: u32,
    /// Do not ask before replacing an environment with `confirm: true`.
    #[arg(long, short)]
    pub yes: bool,
    /// How long to wait for another promoter that holds TO's lock, in seconds.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub lock_wait: u64,
    /// How long pg_dump may wait for a share lock on one of FROM's tables
    /// before it gives up (rather than queue behind FROM's users).
    #[arg(long, default_value = "30s", value_name = "INTERVAL")]
    pub source_lock_timeout: String,
    /// Restore without FROM's owners and grants (for roles TO's cluster lacks).
    #[arg(long)]
    pub no_owner: bool,
    /// Mask data on the way with this spec (docs/masking.md); the salt is
    /// read from $PROMOTER_MASK_SALT or the variable the spec names.
    #[arg(long, value_name = "MASKING.YAML")]
    pub mask: Option<PathBuf>,
    /// With --mask: every table is sensitive (each column must be
    /// transformed or kept, or the clone is refused).
    #[arg(long, requires = "mask")]
    pub strict: bool,
}

/// How a promotion to a fleet is scheduled.
#[derive(Debug, Args, Clone)]
pub struct FleetArgs {
    /// Fleet: at most this many targets at once.
    #[arg(long, default_value_t = 4, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub jobs: u32,
    /// Fleet: do these many targets first (in target order), and stop if any fails.
    #[arg(long, value_name = "K")]
    pub canary: Option<u32>,
    /// Fleet: stop starting targets once this many have failed.
    #[arg(long, value_name = "M", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_failures: Option<u32>,
    /// Fleet: only these targets (repeatable).
    #[arg(long = "target", value_name = "NAME")]
    pub targets: Vec<String>,
    /// Fleet: only the target at this place in the fleet's list (0 for the
    /// first, in the order written): one job of an indexed job engine, e.g.
    /// `--target-index $JOB_COMPLETION_INDEX` (see docs/fleets.md).
    #[arg(long, value_name = "I", conflicts_with = "targets")]
    pub target_index: Option<usize>,
    /// Fleet: carry on after an earlier run stopped; the canary is not run
    /// again. What is left is read from each target's own ledger, as on
    /// every run.
    #[arg(long)]
    pub resume: bool,
}

#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Print the plan and every check; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub yes: bool,
    /// How long to wait for another promoter that holds the target's lock, in
    /// seconds. (PostgreSQL's own `lock_timeout` is set in environments.yaml.)
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub lock_wait: u64,
    /// Promote even if the target's schema differs from the source's schema before the same changeset.
    #[arg(long)]
    pub allow_drift: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Git revision to compare ledgers with (default: the work tree).
    #[arg(long)]
    pub rev: Option<String>,
    /// Exit 1 when anything is pending, failed, interrupted, modified or unreachable.
    #[arg(long)]
    pub exit_code: bool,
}

#[derive(Debug, Args)]
pub struct LedgerArgs {
    /// The environment whose ledger to print.
    pub env: String,
    /// Only the rows of this changeset (id, number or slug).
    #[arg(long, value_name = "CHANGESET")]
    pub changeset: Option<String>,
    /// Only rows that finished (or started) at or after this time: a date
    /// (2026-12-01, UTC) or an RFC 3339 time (2026-12-01T10:00:00+01:00).
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The environment whose ledger to audit.
    pub env: String,
    /// Git revision holding the bundles to check applied rows against.
    #[arg(long, default_value = "HEAD")]
    pub rev: String,
    /// A ledger head an auditor recorded earlier (a JSON file with `seq` and `entry_hash`, as in promoter's checkpoints): it must still be there.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("outcome").required(true).args(["applied", "rolled_back", "forget"])))]
pub struct ResolveArgs {
    /// The environment holding the partial application (or, with --forget, DEV).
    pub env: String,
    /// The changeset whose partial application you resolved (or undid, with --forget).
    pub changeset: String,
    /// You completed the remaining statements by hand: record it as applied.
    #[arg(long)]
    pub applied: bool,
    /// You undid what had run: record it as not applied, so it can run again.
    #[arg(long)]
    pub rolled_back: bool,
    /// In an environment without promote_from (DEV) only: you undid an
    /// applied changeset by hand; record it as not applied, so that the fixed
    /// bundle can be resealed and applied again.
    #[arg(long)]
    pub forget: bool,
    /// What was done, for the audit trail.
    #[arg(long, required = true)]
    pub note: String,
    /// How long to wait for another promoter that holds the lock, in seconds.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub lock_wait: u64,
}

#[derive(Debug, Args)]
pub struct BaselineArgs {
    /// The last changeset to fold (id, number or slug).
    #[arg(long = "upto", value_name = "CHANGESET")]
    pub upto: String,
    /// Tables whose rows the baseline carries (reference data), e.g.
    /// public.countries; repeat or separate with commas.
    #[arg(long, value_name = "TABLES", value_delimiter = ',')]
    pub reference_data: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Dump ENV (one consistent snapshot, read-only) into the profile store and pin it in profiles/NAME/profile.yaml.
    Save(ProfileSaveArgs),
    /// Replace an environment without promote_from (DEV) or a branch with a profile, then apply the pending changesets.
    Restore(ProfileRestoreArgs),
    /// Every profile: where it was taken, when, and whether its artifact is in the store.
    List,
    /// Check a profile's artifact in the store against its pins, file by file.
    Verify(ProfileVerifyArgs),
}

#[derive(Debug, Args)]
pub struct ProfileSaveArgs {
    /// The profile's name, e.g. user-generated or customer1 (clean-db is built, not saved).
    pub name: String,
    /// The environment (or branch) to take it from.
    #[arg(long, value_name = "ENV")]
    pub from: String,
    /// Replace a profile of that name.
    #[arg(long)]
    pub force: bool,
    /// Mask the data on the way (docs/masking.md): it is copied through the
    /// spec into a scratch branch database, which is dumped, then dropped.
    #[arg(long, value_name = "MASKING_YAML")]
    pub mask: Option<std::path::PathBuf>,
    /// Parallel jobs of pg_dump.
    #[arg(long, default_value_t = 2)]
    pub jobs: u32,
}

#[derive(Debug, Args)]
pub struct ProfileRestoreArgs {
    /// The profile (clean-db: an empty database, then every changeset).
    pub name: String,
    /// The environment without promote_from, or the branch, to replace.
    #[arg(long, value_name = "ENV|BRANCH")]
    pub to: String,
    /// Do not ask (its sessions are ended).
    #[arg(long, short)]
    pub yes: bool,
    /// Parallel jobs of pg_restore.
    #[arg(long, default_value_t = 2)]
    pub jobs: u32,
    /// Restore without the dump's owners and grants (roles the target's cluster lacks).
    #[arg(long)]
    pub no_owner: bool,
    /// How long to wait for another promoter that holds the target's lock, in seconds.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub lock_wait: u64,
}

#[derive(Debug, Args)]
pub struct ProfileVerifyArgs {
    /// The profile to check.
    pub name: String,
}

#[derive(Debug, Subcommand)]
pub enum BranchCommand {
    /// Make a branch database as a copy of an environment or a branch (its ledger continues the source's).
    Create(BranchCreateArgs),
    /// Every branch: its source, how it was made, its ledger head, pending changesets and size.
    List,
    /// Drop a branch's database and make it again from its source.
    Reset(BranchResetArgs),
    /// Drop a branch's database and forget the branch.
    Drop(BranchDropArgs),
}

#[derive(Debug, Args)]
pub struct BranchCreateArgs {
    /// master, develop, feature_<name>, bugfix_<name> or test_<name>.
    pub name: String,
    /// The environment or branch to copy (default: develop for feature_*,
    /// master for bugfix_* and develop; required for master and test_*).
    #[arg(long, value_name = "BRANCH|ENV")]
    pub from: Option<String>,
    /// End the source's other sessions without asking, so that it can be
    /// copied by CREATE DATABASE … TEMPLATE (without: asked on a terminal,
    /// otherwise it is copied with pg_dump).
    #[arg(long, short)]
    pub yes: bool,
    /// Parallel jobs of pg_dump and pg_restore (the dump path).
    #[arg(long, default_value_t = 2)]
    pub jobs: u32,
    /// How long to wait for another promoter that holds a lock, in seconds.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub lock_wait: u64,
}

#[derive(Debug, Args)]
pub struct BranchResetArgs {
    /// The branch to make again.
    pub name: String,
    /// Drop it without asking, and end its source's sessions if needed.
    #[arg(long, short)]
    pub yes: bool,
    /// Make it again from this data profile instead of its source (clean-db:
    /// empty, then every changeset); NAME may then also be DEV.
    #[arg(long, value_name = "PROFILE")]
    pub profile: Option<String>,
    /// Parallel jobs of pg_dump and pg_restore (the dump path).
    #[arg(long, default_value_t = 2)]
    pub jobs: u32,
    /// How long to wait for another promoter that holds a lock, in seconds.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub lock_wait: u64,
}

#[derive(Debug, Args)]
pub struct BranchDropArgs {
    /// The branch to drop.
    pub name: String,
    /// Do not ask (its sessions are ended).
    #[arg(long, short)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Write the report to FILE (replaced whole, never half-written) instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<std::path::PathBuf>,
    /// html: one self-contained page to read or print; md: a summary to paste
    /// into a ticket; json: the data the page shows, whose sha256 the page prints.
    #[arg(long, value_enum, default_value_t = ReportFormat::Html)]
    pub format: ReportFormat,
    /// Read the bundles from this git revision (default: the work tree);
    /// the ledgers are audited against it (default: HEAD).
    #[arg(long)]
    pub rev: Option<String>,
}

/// What `promoter report` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Html,
    Md,
    Json,
}

impl ReportFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Html => "html",
            Self::Md => "md",
            Self::Json => "json",
        }
    }
}

#[derive(Debug, Args)]
pub struct DriftArgs {
    /// The reference environment (e.g. qat).
    pub a: String,
    /// The environment compared with it (e.g. prd).
    pub b: String,
}
