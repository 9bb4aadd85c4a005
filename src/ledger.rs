//! The ledger row and its hash chain. Pure: `db::ledger` stores and loads
//! rows; this module defines what a row is and how its hash is computed.
//!
//! `entry_hash` = sha256 over the canonical encoding of the row:
//! the bytes `promoter-ledger-v1\n`, then each field below in this order as a
//! 4-byte big-endian length and the field's UTF-8 bytes, or the 4 bytes
//! `ff ff ff ff` for NULL. Integers are written in decimal; timestamps as
//! microseconds since the Unix epoch. `prev_hash` is the last field, so each
//! row commits to the one before it; the first row's `prev_hash` is 64 zeros.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::changeset::Sha256Digest;

/// `prev_hash` of the first row: 64 zeros.
pub const GENESIS: Sha256Digest = Sha256Digest([0; 32]);

/// What happened to a changeset in an environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Applied,
    Failed,
    /// A non-transactional changeset has started; a later row says how it ended.
    Running,
    /// An operator recorded that a partial application was completed by hand.
    ResolvedApplied,
    /// An operator recorded that a partial application was undone by hand.
    ResolvedRolledBack,
    /// Not a changeset: the environment's trust policy was pinned (the row's
    /// `changeset_id` is [`TRUST_EVENT`], its `bundle_hash` the policy's hash).
    TrustPinned,
    /// Not a changeset: the database was made as a branch of another
    /// (`promoter branch create`). The rows before it are the source's
    /// history; its `changeset_id` is [`BRANCH_EVENT`], its note a
    /// [`BranchNote`].
    Branched,
    /// A baseline (`promoter baseline`) that this database did not run: it
    /// had applied every changeset the baseline folds, and its schema
    /// fingerprint was the baseline's. Counts as applied.
    BaselineAdopted,
    /// In an environment without `promote_from` (DEV), a developer undid an
    /// applied changeset by hand (`promoter resolve dev N --forget`): it
    /// counts as not applied, so that a fixed bundle can run again. The
    /// rows before stay, and say what ran.
    Forgotten,
    /// Not a changeset: the database was replaced by a copy of another
    /// environment (`promoter clone`). The rows before it are the source's
    /// history; its `changeset_id` is [`REFRESH_EVENT`], its note a
    /// [`RefreshNote`].
    Refreshed,
}

/// How the error text of a ledger row starts when a changeset's SQL touched
/// the ledger: such a row keeps the environment refusing runs until resolved.
pub const LEDGER_TAMPERED: &str = "LEDGER TAMPERED";

/// How the error text starts when the server left promoter's transaction
/// in the middle of a changeset: like [`LEDGER_TAMPERED`], it keeps the
/// environment refusing runs until resolved.
pub const TRANSACTION_BROKEN: &str = "TRANSACTION BROKEN";

/// The `changeset_id` of ledger rows that record trust events.
pub const TRUST_EVENT: &str = "trust-policy";

/// The `changeset_id` of ledger rows that record a refresh (`promoter clone`).
pub const REFRESH_EVENT: &str = "refresh";

/// The `changeset_id` of ledger rows that record a branch (`promoter branch create`).
pub const BRANCH_EVENT: &str = "branch";

/// The note of a `branched` row, as JSON: where the copy came from and how
/// it was made. The source's head is the row's `promoted_from_entry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct BranchNote {
    /// The environment or branch copied.
    pub from: String,
    /// `template` (`CREATE DATABASE … TEMPLATE`) or `dump` (pg_dump/pg_restore).
    pub method: String,
    /// sha256 of the masking spec the data went through, if any.
    pub masking_sha256: Option<String>,
}

impl BranchNote {
    /// The note of a `branched` row; `None` for any other row.
    pub fn of(entry: &Entry) -> Option<Self> {
        if entry.status != Status::Branched {
            return None;
        }
        serde_json::from_str(entry.note.as_deref()?).ok()
    }
}

/// A ledger head: a row's sequence number and entry hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Head {
    pub seq: i64,
    pub entry_hash: Sha256Digest,
}

impl Head {
    pub fn of(entry: &Entry) -> Self {
        Self {
            seq: entry.seq,
            entry_hash: entry.entry_hash,
        }
    }
}

/// The note of a `refreshed` row (JSON, stored and hashed as written):
/// what the copy replaced and how it was made. The source, its ledger head
/// and its schema are the row's `promoted_from`, `promoted_from_entry` and
/// `schema_after`; the replaced database's schema is its `schema_before`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RefreshNote {
    /// The head of the ledger this copy replaced (`None`: it had none). Its
    /// rows are kept in `ledger_replaced`, under this row's `entry_hash`.
    pub replaced: Option<Head>,
    /// sha256 of the masking spec the data went through, if any.
    pub masking_sha256: Option<String>,
    /// Tables copied, and their rows, as counted in the source's snapshot.
    pub tables: u64,
    pub rows: u64,
}

impl RefreshNote {
    /// The note of a `refreshed` row; `None` for any other row, or a note
    /// promoter did not write (which `audit` reports).
    pub fn of(entry: &Entry) -> Option<Self> {
        if entry.status != Status::Refreshed {
            return None;
        }
        serde_json::from_str(entry.note.as_deref()?).ok()
    }
}

/// A row of a ledger that a refresh replaced, with the `entry_hash` of the
/// `refreshed` row that replaced it (the `ledger_replaced` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplacedRow {
    pub replaced_by: Sha256Digest,
    pub entry: Entry,
}

/// Checks the ledgers that refreshes of `env` replaced against the
/// `refreshed` rows in `entries` that name them: each kept ledger must be
/// complete (its own chain intact) and end at the head its `refreshed` row
/// recorded, and no kept row may belong to no refresh. Returns (seq, why)
/// per problem; the seq is the `refreshed` row's.
pub fn check_replaced(
    entries: &[Entry],
    env: &str,
    replaced: &[ReplacedRow],
) -> Vec<(i64, String)> {
    let mut problems = Vec::new();
    // Refreshes in the kept ledgers too: a database refreshed twice keeps
    // the first refresh's kept rows under a row that is itself kept.
    let refreshes: Vec<&Entry> = entries
        .iter()
        .chain(replaced.iter().map(|k| &k.entry))
        .filter(|e| e.status == Status::Refreshed && e.environment == env)
        .collect();
    for r in &refreshes {
        let Some(note) = RefreshNote::of(r) else {
            problems.push((
                r.seq,
                "the refreshed row's note was not written by promoter".into(),
            ));
            continue;
        };
        let kept: Vec<Entry> = replaced
            .iter()
            .filter(|k| k.replaced_by == r.entry_hash)
            .map(|k| k.entry.clone())
            .collect();
        match note.replaced {
            None if kept.is_empty() => {}
            None => problems.push((
                r.seq,
                format!(
                    "{} kept rows claim a refresh that replaced no ledger",
                    kept.len()
                ),
            )),
            Some(head) => {
                if let Some(b) = check_chain(&kept) {
                    problems.push((
                        r.seq,
                        format!("the ledger it replaced, kept in ledger_replaced, is broken at row #{}: {}", b.seq, b.reason),
                    ));
                } else if kept.last().map(Head::of) != Some(head) {
                    problems.push((
                        r.seq,
                        format!(
                            "the ledger it replaced ended at row #{} ({}), but ledger_replaced {}",
                            head.seq,
                            head.entry_hash.short(),
                            match kept.last() {
                                None => "holds none of its rows".to_owned(),
                                Some(l) =>
                                    format!("ends at row #{} ({})", l.seq, l.entry_hash.short()),
                            }
                        ),
                    ));
                }
            }
        }
    }
    for k in replaced {
        if !refreshes.iter().any(|r| r.entry_hash == k.replaced_by) {
            problems.push((
                k.entry.seq,
                format!(
                    "ledger_replaced holds row #{} under {}, which is no refresh of {env} in this ledger",
                    k.entry.seq,
                    k.replaced_by.short()
                ),
            ));
        }
    }
    problems.sort();
    problems.dedup();
    problems
}

/// Where the rows this environment vouches for row by row begin: after its
/// last `refreshed` (or `branched`) row, the history before which is the copied source's,
/// covered as a whole by that row's hash chain and receipt. 0 when the
/// environment was never refreshed.
pub fn own_rows_start(entries: &[Entry], env: &str) -> usize {
    entries
        .iter()
        .rposition(|e| {
            matches!(e.status, Status::Refreshed | Status::Branched) && e.environment == env
        })
        .unwrap_or(0)
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Failed => "failed",
            Self::Running => "running",
            Self::ResolvedApplied => "resolved-applied",
            Self::ResolvedRolledBack => "resolved-rolled-back",
            Self::TrustPinned => "trust-pinned",
            Self::Refreshed => "refreshed",
            Self::Forgotten => "forgotten",
            Self::Branched => "branched",
            Self::BaselineAdopted => "baseline-adopted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "applied" => Self::Applied,
            "failed" => Self::Failed,
            "running" => Self::Running,
            "resolved-applied" => Self::ResolvedApplied,
            "resolved-rolled-back" => Self::ResolvedRolledBack,
            "trust-pinned" => Self::TrustPinned,
            "refreshed" => Self::Refreshed,
            "forgotten" => Self::Forgotten,
            "branched" => Self::Branched,
            "baseline-adopted" => Self::BaselineAdopted,
            _ => return None,
        })
    }

    /// Whether the row records an event of the environment (a trust pin, a
    /// refresh) rather than a changeset.
    pub fn is_event(self) -> bool {
        matches!(self, Self::TrustPinned | Self::Refreshed | Self::Branched)
    }

    /// Whether the changeset counts as applied after this row.
    pub fn is_applied(self) -> bool {
        matches!(
            self,
            Self::Applied | Self::ResolvedApplied | Self::BaselineAdopted
        )
    }
}

/// One signer recorded with an application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Signer {
    pub fingerprint: String,
    pub role: String,
    /// Signature creation time, RFC 3339.
    pub signed_at: String,
    /// The person (normalized e-mail, or the fingerprint); absent in rows
    /// written before principals were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// For an approval: sha256 of the approval statement it signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
}

/// One ledger row. Hashes are parsed digests: a value in the database that
/// is not 64 lower-case hex digits never becomes an `Entry` (the loader
/// reports it, naming the row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Entry {
    pub seq: i64,
    pub changeset_id: String,
    pub bundle_hash: Sha256Digest,
    pub environment: String,
    pub status: Status,
    /// JSON array of [`Signer`], exactly as hashed.
    pub signers: String,
    pub promoted_from: Option<String>,
    pub promoted_from_entry: Option<Sha256Digest>,
    pub git_commit: Option<String>,
    pub os_user: String,
    pub host: String,
    pub db_role: String,
    /// Microseconds since the Unix epoch.
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub schema_before: Option<Sha256Digest>,
    pub schema_after: Option<Sha256Digest>,
    /// Statements executed (for non-transactional changesets: how far it got).
    pub statements: i64,
    pub error: Option<String>,
    pub note: Option<String>,
    pub prev_hash: Sha256Digest,
    pub entry_hash: Sha256Digest,
    /// The environment's signature over [`Entry::canonical_bytes`] (armored),
    /// where it has a receipt key. Not part of the hashed content: it signs it.
    pub receipt: Option<String>,
}

/// The length-prefixed encoding shared by every hash-chained row: `header`,
/// then each field as a 4-byte big-endian length and its UTF-8 bytes, or
/// `ff ff ff ff` for NULL.
pub fn encode_fields(header: &[u8], fields: &[Option<&str>]) -> Vec<u8> {
    let mut out = header.to_vec();
    for value in fields {
        match value {
            Some(v) => {
                out.extend_from_slice(&(v.len() as u32).to_be_bytes());
                out.extend_from_slice(v.as_bytes());
            }
            None => out.extend_from_slice(&[0xff; 4]),
        }
    }
    out
}

impl Entry {
    /// The canonical encoding hashed into `entry_hash` (see the module docs).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = b"promoter-ledger-v1\n".to_vec();
        let hex = |d: Option<Sha256Digest>| d.map(Sha256Digest::to_hex);
        let mut field = |value: Option<&str>| match value {
            Some(v) => {
                out.extend_from_slice(&(v.len() as u32).to_be_bytes());
                out.extend_from_slice(v.as_bytes());
            }
            None => out.extend_from_slice(&[0xff; 4]),
        };
        field(Some(&self.seq.to_string()));
        field(Some(&self.changeset_id));
        field(Some(&self.bundle_hash.to_hex()));
        field(Some(&self.environment));
        field(Some(self.status.as_str()));
        field(Some(&self.signers));
        field(self.promoted_from.as_deref());
        field(hex(self.promoted_from_entry).as_deref());
        field(self.git_commit.as_deref());
        field(Some(&self.os_user));
        field(Some(&self.host));
        field(Some(&self.db_role));
        field(Some(&self.started_at.to_string()));
        field(self.finished_at.map(|t| t.to_string()).as_deref());
        field(hex(self.schema_before).as_deref());
        field(hex(self.schema_after).as_deref());
        field(Some(&self.statements.to_string()));
        field(self.error.as_deref());
        field(self.note.as_deref());
        field(Some(&self.prev_hash.to_hex()));
        out
    }

    /// The hash this row should carry.
    pub fn compute_hash(&self) -> Sha256Digest {
        Sha256Digest::of(&self.canonical_bytes())
    }

    /// Sets `prev_hash` (from the row before, or [`GENESIS`]) and `entry_hash`.
    pub fn seal(&mut self, prev: Option<&Entry>) {
        self.seq = prev.map_or(1, |p| p.seq + 1);
        self.prev_hash = prev.map_or(GENESIS, |p| p.entry_hash);
        self.entry_hash = self.compute_hash();
    }
}

/// The first problem in a ledger's hash chain, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub seq: i64,
    pub reason: String,
}

/// Recomputes the chain of `rows` (in `seq` order as stored).
pub fn check_chain(rows: &[Entry]) -> Option<ChainBreak> {
    let mut prev: Option<&Entry> = None;
    for row in rows {
        let expected_seq = prev.map_or(1, |p| p.seq + 1);
        let expected_prev = prev.map_or(GENESIS, |p| p.entry_hash);
        if row.entry_hash != row.compute_hash() {
            return Some(ChainBreak {
                seq: row.seq,
                reason: "row content does not match its entry_hash (edited after it was written)"
                    .into(),
            });
        }
        if row.seq != expected_seq || row.prev_hash != expected_prev {
            let reason = match prev {
                Some(p) if row.prev_hash != p.entry_hash => format!(
                    "prev_hash does not match row {}: a row was deleted, inserted or reordered before it",
                    p.seq
                ),
                None if row.prev_hash != GENESIS => {
                    "first row does not start the chain: rows before it were deleted".into()
                }
                _ => format!(
                    "sequence number {} where {expected_seq} was expected",
                    row.seq
                ),
            };
            return Some(ChainBreak {
                seq: row.seq,
                reason,
            });
        }
        prev = Some(row);
    }
    None
}

/// A changeset as a ledger records it applied: what planning compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub changeset_id: String,
    pub bundle_hash: Sha256Digest,
    /// The ledger row's `entry_hash` (what a promotion from here links to).
    pub entry_hash: Sha256Digest,
}

/// The applied changesets of a ledger, in ledger order.
pub fn applied(entries: &[Entry]) -> Vec<Applied> {
    let mut out: Vec<Applied> = Vec::new();
    for e in entries {
        if e.status.is_applied() {
            out.push(Applied {
                changeset_id: e.changeset_id.clone(),
                bundle_hash: e.bundle_hash,
                entry_hash: e.entry_hash,
            });
        } else if e.status == Status::Forgotten {
            out.retain(|a| a.changeset_id != e.changeset_id);
        }
    }
    out
}

/// The rows that still count for a changeset: those after its last
/// `forgotten` row (all of them when it was never forgotten).
pub fn live_rows<'a, 'b>(rows: &'b [&'a Entry]) -> &'b [&'a Entry] {
    match rows.iter().rposition(|e| e.status == Status::Forgotten) {
        Some(i) => &rows[i + 1..],
        None => rows,
    }
}

/// Whether the applied row at `index` of `entries` was later forgotten.
fn forgotten_later(entries: &[Entry], index: usize) -> bool {
    let id = &entries[index].changeset_id;
    entries[index + 1..]
        .iter()
        .any(|e| e.status == Status::Forgotten && e.changeset_id == *id)
}

/// How a changeset was left unfinished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unfinished {
    /// Its last row says `running`: the process applying it was killed (or
    /// is still at work, which the advisory lock rules out for a run that holds it).
    Interrupted,
    /// A non-transactional changeset failed after some statements committed.
    Partial,
    /// A changeset's SQL touched the ledger after it could no longer be
    /// rolled back: nothing runs until an operator has looked.
    Tampered,
}

/// Statements a non-transactional changeset recorded as committed, by the
/// `seq` of its `running` row (the `ledger_progress` table): what a killed
/// run leaves as the count of its progress.
pub type Progress = BTreeMap<i64, i64>;

/// A changeset left partially applied, with its last row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dirty<'a> {
    pub how: Unfinished,
    pub row: &'a Entry,
    /// Statements known to have committed.
    pub committed: i64,
}

/// Changesets left partially applied: the last row of a changeset is
/// `running` (its progress rows say how far it got), or `failed` after
/// statements committed (a transactional failure records 0 statements,
/// since nothing persisted).
pub fn dirty<'a>(entries: &'a [Entry], progress: &Progress) -> Vec<Dirty<'a>> {
    let mut last: BTreeMap<&str, &Entry> = BTreeMap::new();
    for e in entries {
        last.insert(&e.changeset_id, e);
    }
    last.into_values()
        .filter_map(|row| match row.status {
            Status::Running => Some(Dirty {
                how: Unfinished::Interrupted,
                row,
                committed: progress.get(&row.seq).copied().unwrap_or(0),
            }),
            Status::Failed
                if row.error.as_deref().is_some_and(|e| {
                    e.starts_with(LEDGER_TAMPERED) || e.starts_with(TRANSACTION_BROKEN)
                }) =>
            {
                Some(Dirty {
                    how: Unfinished::Tampered,
                    row,
                    committed: row.statements,
                })
            }
            Status::Failed if row.statements > 0 => Some(Dirty {
                how: Unfinished::Partial,
                row,
                committed: row.statements,
            }),
            _ => None,
        })
        .collect()
}

/// What git holds for a changeset a ledger row names, as `audit` compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InGit {
    /// No such changeset at the revision.
    Missing,
    /// Present; `hash` is `None` when it has no `SHA256SUMS`. `files` are the
    /// differences between its files and its manifest (or why they could not be read).
    Present {
        hash: Option<Sha256Digest>,
        files: Result<Vec<String>, String>,
    },
}

/// One thing `audit` found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum AuditProblem {
    /// The hash chain breaks at `seq`.
    ChainBroken { seq: i64, reason: String },
    /// A row holds a value promoter never writes (e.g. a hash that is not hex).
    Malformed { seq: i64, reason: String },
    /// An applied row names a changeset git does not have.
    NotInGit { seq: i64, changeset_id: String },
    /// An applied row's bundle differs from git's.
    BundleDiffers {
        seq: i64,
        changeset_id: String,
        applied: Sha256Digest,
        git: Option<Sha256Digest>,
    },
    /// The bundle in git no longer matches its own manifest.
    FilesDiffer {
        seq: i64,
        changeset_id: String,
        problems: Vec<String>,
    },
    /// The environment signs its rows, and this one has no valid receipt.
    NoReceipt { seq: i64, reason: String },
    /// The pinned-policy table does not verify.
    PolicyTampered { seq: i64, reason: String },
    /// A refresh's kept copy of the ledger it replaced does not verify.
    ReplacedBroken { seq: i64, reason: String },
    /// The ledger lost the head promoter (or an auditor) saw before.
    CheckpointMissing { seq: i64, reason: String },
    /// A `forgotten` row in an environment promoted to from another, where
    /// promoter never writes one.
    ForgottenInControlled { seq: i64, changeset_id: String },
    /// A downstream environment's row was promoted from an entry this
    /// ledger no longer has.
    ReferenceMissing {
        seq: i64,
        environment: String,
        entry: Sha256Digest,
    },
}

impl std::fmt::Display for AuditProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ChainBroken { seq, reason } | Self::Malformed { seq, reason } => {
                write!(f, "ledger row #{seq}: {reason}")
            }
            Self::NoReceipt { seq, reason } => {
                write!(f, "ledger row #{seq}: no valid receipt: {reason}")
            }
            Self::PolicyTampered { seq, reason } => {
                write!(f, "pinned policy row #{seq}: {reason}")
            }
            Self::ReplacedBroken { seq, reason } => {
                write!(f, "refresh at ledger row #{seq}: {reason}")
            }
            Self::CheckpointMissing { reason, .. } => write!(f, "checkpoint: {reason}"),
            Self::ForgottenInControlled { seq, changeset_id } => write!(
                f,
                "ledger row #{seq} forgets {changeset_id}, which promoter never writes in an environment promoted to from another: it was written by hand"
            ),
            Self::ReferenceMissing {
                seq,
                environment,
                entry,
            } => write!(
                f,
                "{environment}'s ledger row #{seq} was promoted from entry {} of this ledger, which is not in it: rows were deleted",
                entry.short()
            ),
            Self::NotInGit { seq, changeset_id } => {
                write!(
                    f,
                    "ledger row #{seq} ({changeset_id}): no such changeset in git"
                )
            }
            Self::BundleDiffers {
                seq,
                changeset_id,
                applied,
                git,
            } => write!(
                f,
                "ledger row #{seq} ({changeset_id}): applied bundle {applied} but git has {}",
                git.map_or("no SHA256SUMS".to_owned(), |g| g.to_hex())
            ),
            Self::FilesDiffer {
                seq,
                changeset_id,
                problems,
            } => write!(
                f,
                "ledger row #{seq} ({changeset_id}): the bundle in git no longer matches its SHA256SUMS: {}",
                problems.join("; ")
            ),
        }
    }
}

/// Audits a ledger against git: the chain first, then every applied row
/// against what `git` says of its changeset. Pure; the caller reads git.
pub fn audit(entries: &[Entry], mut git: impl FnMut(&str) -> InGit) -> Vec<AuditProblem> {
    let mut problems = Vec::new();
    if let Some(brk) = check_chain(entries) {
        problems.push(AuditProblem::ChainBroken {
            seq: brk.seq,
            reason: brk.reason,
        });
    }
    // A row that was later forgotten ran a bundle that was then fixed: it
    // is history, not what the database holds, and git need not have it.
    for (_, e) in entries
        .iter()
        .enumerate()
        .filter(|(i, e)| e.status.is_applied() && !forgotten_later(entries, *i))
    {
        let (seq, changeset_id) = (e.seq, e.changeset_id.clone());
        match git(&e.changeset_id) {
            InGit::Missing => problems.push(AuditProblem::NotInGit { seq, changeset_id }),
            InGit::Present { hash, .. } if hash != Some(e.bundle_hash) => {
                problems.push(AuditProblem::BundleDiffers {
                    seq,
                    changeset_id,
                    applied: e.bundle_hash,
                    git: hash,
                });
            }
            InGit::Present { files: Ok(p), .. } if p.is_empty() => {}
            InGit::Present { files, .. } => problems.push(AuditProblem::FilesDiffer {
                seq,
                changeset_id,
                problems: files.unwrap_or_else(|e| vec![e]),
            }),
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> Entry {
        Entry {
            seq: 0,
            changeset_id: id.into(),
            bundle_hash: digest("ab"),
            environment: "qat".into(),
            status: Status::Applied,
            signers:
                r#"[{"fingerprint":"F","role":"developer","signed_at":"2026-01-01T00:00:00Z"}]"#
                    .into(),
            promoted_from: Some("dev".into()),
            promoted_from_entry: Some(digest("cd")),
            git_commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
            os_user: "ops".into(),
            host: "bastion".into(),
            db_role: "deploy".into(),
            started_at: 1_795_392_245_000_000,
            finished_at: Some(1_795_392_246_500_000),
            schema_before: Some(digest("11")),
            schema_after: Some(digest("22")),
            statements: 7,
            error: None,
            note: None,
            prev_hash: GENESIS,
            entry_hash: GENESIS,
            receipt: None,
        }
    }

    fn digest(pair: &str) -> Sha256Digest {
        Sha256Digest::from_hex(&pair.repeat(32)).unwrap()
    }

    /// A QAT ledger of `n` rows, and a refresh of it from a PRD ledger of
    /// `m` rows: (current ledger, kept rows).
    fn refreshed(n: usize, m: usize) -> (Vec<Entry>, Vec<ReplacedRow>) {
        let chain = |n: usize, env: &str| {
            let mut rows: Vec<Entry> = Vec::new();
            for i in 0..n {
                let mut e = entry(&format!("{:04}-x", i + 1));
                e.environment = env.into();
                e.seal(rows.last());
                rows.push(e);
            }
            rows
        };
        let old = chain(n, "qat");
        let mut rows = chain(m, "prd");
        let mut r = entry(REFRESH_EVENT);
        r.status = Status::Refreshed;
        r.note = Some(
            serde_json::to_string(&RefreshNote {
                replaced: old.last().map(Head::of),
                masking_sha256: None,
                tables: 1,
                rows: 1,
            })
            .unwrap(),
        );
        r.seal(rows.last());
        let kept = old
            .into_iter()
            .map(|entry| ReplacedRow {
                replaced_by: r.entry_hash,
                entry,
            })
            .collect();
        rows.push(r);
        (rows, kept)
    }

    #[test]
    fn a_refresh_keeps_the_replaced_ledger_whole_or_audit_says_what_is_missing() {
        let (rows, kept) = refreshed(3, 2);
        assert!(check_replaced(&rows, "qat", &kept).is_empty());
        assert_eq!(own_rows_start(&rows, "qat"), 2);
        assert_eq!(own_rows_start(&rows[..2], "qat"), 0);
        type Change = Box<dyn Fn(&mut Vec<ReplacedRow>)>;
        let cases: [(&str, Change); 4] = [
            (
                "newest kept row deleted",
                Box::new(|k| {
                    k.pop();
                }),
            ),
            (
                "a kept row deleted from the middle",
                Box::new(|k| {
                    k.remove(1);
                }),
            ),
            (
                "a kept row edited",
                Box::new(|k| k[0].entry.db_role = "someone".into()),
            ),
            (
                "a row kept under no refresh",
                Box::new(|k| {
                    let mut extra = k[0].clone();
                    extra.replaced_by = Sha256Digest([7; 32]);
                    k.push(extra);
                }),
            ),
        ];
        for (what, change) in cases {
            let mut k = kept.clone();
            change(&mut k);
            assert!(!check_replaced(&rows, "qat", &k).is_empty(), "{what}");
        }
        // A note promoter never wrote is reported (and, being hashed, breaks
        // the chain, which `check_chain` reports).
        let mut bad = rows.clone();
        bad[2].note = Some("{}".into());
        let problems = check_replaced(&bad, "qat", &kept);
        assert!(
            problems[0].1.contains("not written by promoter"),
            "{problems:?}"
        );
        assert!(check_chain(&bad).is_some());
    }

    #[test]
    fn a_checkpoint_taken_before_a_refresh_is_found_in_the_kept_ledger() {
        let (rows, kept) = refreshed(3, 2);
        let cp = |e: &Entry| crate::checkpoint::Checkpoint {
            environment: "qat".into(),
            database: "1/qat".into(),
            seq: e.seq,
            entry_hash: e.entry_hash,
            seen_at: "then".into(),
        };
        let old_head = cp(&kept[2].entry);
        assert!(crate::checkpoint::check(&rows, &[], &old_head).is_err());
        assert_eq!(crate::checkpoint::check(&rows, &kept, &old_head), Ok(()));
        assert_eq!(
            crate::checkpoint::check(&rows, &kept, &cp(&kept[0].entry)),
            Ok(())
        );
        // Not if the kept ledger lost rows since.
        assert!(crate::checkpoint::check(&rows, &kept[..2], &old_head).is_err());
    }

    /// Pinned: changing the encoding would make every existing ledger fail its audit.
    #[test]
    fn entry_hash_of_a_fixed_row_never_changes() {
        let mut e = entry("0001-create-customers");
        e.seal(None);
        assert_eq!(e.seq, 1);
        assert_eq!(e.prev_hash, GENESIS);
        // Cross-checked with an independent Python implementation of the encoding.
        assert_eq!(
            e.entry_hash.to_hex(),
            "afe266806ae9e143c770fa1c7e9c035f0d2e4908270fdd560b9bd498917e7bd7"
        );
    }

    #[test]
    fn null_and_empty_encode_differently() {
        let mut a = entry("x");
        let mut b = entry("x");
        a.error = None;
        b.error = Some(String::new());
        assert_ne!(a.compute_hash(), b.compute_hash());
        // Length prefixes keep field boundaries: moving a byte between fields changes the hash.
        let (mut c, mut d) = (entry("x"), entry("x"));
        c.os_user = "ab".into();
        c.host = "c".into();
        d.os_user = "a".into();
        d.host = "bc".into();
        assert_ne!(c.compute_hash(), d.compute_hash());
    }

    #[test]
    fn chain_detects_edits_deletions_and_reordering() {
        let mut rows: Vec<Entry> = Vec::new();
        for id in ["0001-a", "0002-b", "0003-c"] {
            let mut e = entry(id);
            e.seal(rows.last());
            rows.push(e);
        }
        assert_eq!(check_chain(&rows), None);

        let mut edited = rows.clone();
        edited[1].status = Status::Failed;
        assert_eq!(check_chain(&edited).unwrap().seq, 2);

        let mut deleted = rows.clone();
        deleted.remove(1);
        let brk = check_chain(&deleted).unwrap();
        assert_eq!(brk.seq, 3);
        assert!(brk.reason.contains("deleted"), "{}", brk.reason);

        let first_deleted = rows[1..].to_vec();
        assert_eq!(check_chain(&first_deleted).unwrap().seq, 2);

        let mut reordered = rows.clone();
        reordered.swap(1, 2);
        assert_eq!(check_chain(&reordered).unwrap().seq, 3);
    }
    #[test]
    fn dirty_is_the_last_row_running_or_failed_after_commits() {
        let row = |id: &str, status, statements| {
            let mut e = entry(id);
            e.status = status;
            e.statements = statements;
            e
        };
        let rows = [
            row("0001-a", Status::Running, 0),
            row("0001-a", Status::Applied, 3),
            row("0002-b", Status::Failed, 0),
            row("0003-c", Status::Running, 0),
            row("0004-d", Status::Running, 0),
            row("0004-d", Status::Failed, 2),
            row("0005-e", Status::Failed, 2),
            row("0005-e", Status::ResolvedRolledBack, 2),
        ];
        let mut rows = rows.to_vec();
        for (i, r) in rows.iter_mut().enumerate() {
            r.seq = i as i64 + 1;
        }
        let progress = Progress::from([(4, 3)]);
        let got: Vec<(&str, Unfinished, i64)> = dirty(&rows, &progress)
            .iter()
            .map(|d| (d.row.changeset_id.as_str(), d.how, d.committed))
            .collect();
        assert_eq!(
            got,
            [
                ("0003-c", Unfinished::Interrupted, 3),
                ("0004-d", Unfinished::Partial, 2)
            ]
        );
    }

    #[test]
    fn audit_compares_every_applied_row_with_git() {
        let mut rows: Vec<Entry> = Vec::new();
        for id in ["0001-a", "0002-b", "0003-c", "0004-d"] {
            let mut e = entry(id);
            e.seal(rows.last());
            rows.push(e);
        }
        let problems = audit(&rows, |id| match id {
            "0001-a" => InGit::Present {
                hash: Some(digest("ab")),
                files: Ok(vec![]),
            },
            "0002-b" => InGit::Missing,
            "0003-c" => InGit::Present {
                hash: Some(digest("ef")),
                files: Ok(vec![]),
            },
            _ => InGit::Present {
                hash: Some(digest("ab")),
                files: Ok(vec!["001-x.sql: content differs".into()]),
            },
        });
        let kinds: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(kinds.len(), 3, "{kinds:#?}");
        assert_eq!(kinds[0], "ledger row #2 (0002-b): no such changeset in git");
        assert!(
            kinds[1].starts_with("ledger row #3 (0003-c): applied bundle abab"),
            "{}",
            kinds[1]
        );
        assert!(
            kinds[2].ends_with("SHA256SUMS: 001-x.sql: content differs"),
            "{}",
            kinds[2]
        );
        let mut edited = rows.clone();
        edited[0].host = "elsewhere".into();
        let problems = audit(&edited, |_| InGit::Missing);
        assert!(matches!(
            problems[0],
            AuditProblem::ChainBroken { seq: 1, .. }
        ));
    }
}
