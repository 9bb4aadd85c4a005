//! Pure planning: given the bundles, the ledgers and the requirements, what
//! will be applied — and every reason it cannot go, as a typed [`Refusal`]
//! with a hint each. Nothing here touches a database, so every promotion
//! rule is a unit test with in-memory values.

use std::fmt;

use crate::changeset::{ChangesetId, Sha256Digest};
use crate::ledger::{Applied, Dirty, Unfinished};

/// Why a plan (or one changeset of it) cannot go. One variant per reason;
/// `Display` says what is wrong, [`Refusal::hint`] what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The target's applied changesets are not a prefix of the source's.
    Diverged {
        from_env: String,
        to_env: String,
        from: Vec<Applied>,
        to: Vec<Applied>,
    },
    /// The source applied it, but git at the revision does not have it.
    NotInRepository { id: String, from_env: String },
    /// It has no `SHA256SUMS`.
    NotSealed { id: String },
    /// A baseline this environment can neither run (it has applied some of
    /// what the baseline folds) nor adopt (not all of it, or other bundles,
    /// or another schema).
    BaselineNotAdoptable {
        id: String,
        env: String,
        why: String,
    },
    /// The bundle in git differs from the one the source applied.
    ChangedSinceSource {
        id: String,
        from_env: String,
        source: Sha256Digest,
        rev: Sha256Digest,
    },
    /// The work tree's bundle differs from the one the environment applied.
    ChangedSinceApplied {
        id: String,
        env: String,
        applied: Sha256Digest,
        now: Option<Sha256Digest>,
    },
    /// Applied to the environment but gone from `changesets/`.
    MissingFromTree { id: String, env: String },
    /// Pending but numbered below something already applied.
    OutOfOrder {
        id: String,
        newest: String,
        env: String,
    },
    /// Named explicitly, but already applied.
    AlreadyApplied { id: String, env: String },
    /// Named explicitly, but something else must go first.
    NotNext {
        id: String,
        env: String,
        next: Option<String>,
    },
    /// `--to` names a changeset that is neither pending nor applied.
    NotPending { arg: String, env: String },
    /// A non-transactional changeset did not finish.
    Dirty {
        env: String,
        id: String,
        how: Unfinished,
        seq: i64,
        statements: i64,
    },
    /// The target's schema differs from the source's before the same changeset.
    Drift {
        from_env: String,
        to_env: String,
        id: String,
        source: Sha256Digest,
        target: Sha256Digest,
    },
    /// The bundle could not be read or checked at all.
    Unreadable { id: String, message: String },
    /// Its files differ from its `SHA256SUMS`.
    FilesModified { id: String, problems: Vec<String> },
    /// A script holds something that cannot run faithfully (file:line).
    Script { id: String, problem: String },
    /// Too few distinct good signers of a role.
    MissingSignatures {
        id: String,
        role: String,
        need: u32,
        have: u32,
        /// Every signature that did not count, and why.
        not_counted: Vec<String>,
    },
    /// Too few approval statements that match this candidate.
    MissingApprovals {
        id: String,
        role: String,
        need: u32,
        have: u32,
        /// Every approval that did not count, and why.
        not_counted: Vec<String>,
    },
    /// The source's ledger row carries no valid receipt by a pinned key.
    NoReceipt {
        id: String,
        from_env: String,
        reason: String,
    },
    /// A controlled environment without a pinned trust policy.
    NotPinned { env: String },
    /// The pinned-policy table does not verify.
    PolicyTampered {
        env: String,
        seq: i64,
        reason: String,
    },
    /// The pinned policy says the environment is fed from elsewhere.
    PinnedSource {
        env: String,
        pinned: Option<String>,
        from: String,
    },
    /// The environment's receipt key is missing or not the committed one.
    ReceiptKey { env: String, message: String },
    /// The ledger lost rows promoter saw (checkpoint outside the database).
    CheckpointMissing { env: String, why: String },
    /// The ledger's append-only protections are not in place.
    LedgerUnprotected { env: String, why: String },
    /// A re-pin that the currently pinned people have not signed.
    RepinUnsigned {
        env: String,
        /// (role, need, have) per role short.
        short: Vec<(String, u32, u32)>,
        not_counted: Vec<String>,
    },
}

impl Refusal {
    /// A stable kebab-case name, for `--json` and tests.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Diverged { .. } => "diverged",
            Self::NotInRepository { .. } => "not-in-repository",
            Self::NotSealed { .. } => "not-sealed",
            Self::BaselineNotAdoptable { .. } => "baseline-not-adoptable",
            Self::ChangedSinceSource { .. } => "changed-since-source",
            Self::ChangedSinceApplied { .. } => "changed-since-applied",
            Self::MissingFromTree { .. } => "missing-from-tree",
            Self::OutOfOrder { .. } => "out-of-order",
            Self::AlreadyApplied { .. } => "already-applied",
            Self::NotNext { .. } => "not-next",
            Self::NotPending { .. } => "not-pending",
            Self::Dirty { .. } => "dirty",
            Self::Drift { .. } => "drift",
            Self::Unreadable { .. } => "unreadable",
            Self::FilesModified { .. } => "files-modified",
            Self::Script { .. } => "script",
            Self::MissingSignatures { .. } => "missing-signatures",
            Self::MissingApprovals { .. } => "missing-approvals",
            Self::NoReceipt { .. } => "no-receipt",
            Self::NotPinned { .. } => "not-pinned",
            Self::PolicyTampered { .. } => "policy-tampered",
            Self::PinnedSource { .. } => "pinned-source",
            Self::ReceiptKey { .. } => "receipt-key",
            Self::RepinUnsigned { .. } => "repin-unsigned",
            Self::LedgerUnprotected { .. } => "ledger-unprotected",
            Self::CheckpointMissing { .. } => "checkpoint-missing",
        }
    }

    /// The changeset it concerns, if one.
    pub fn changeset(&self) -> Option<&str> {
        match self {
            Self::Diverged { .. }
            | Self::NotPending { .. }
            | Self::NotPinned { .. }
            | Self::PolicyTampered { .. }
            | Self::PinnedSource { .. }
            | Self::ReceiptKey { .. }
            | Self::RepinUnsigned { .. }
            | Self::LedgerUnprotected { .. }
            | Self::CheckpointMissing { .. } => None,
            Self::NotInRepository { id, .. }
            | Self::NotSealed { id }
            | Self::BaselineNotAdoptable { id, .. }
            | Self::ChangedSinceSource { id, .. }
            | Self::ChangedSinceApplied { id, .. }
            | Self::MissingFromTree { id, .. }
            | Self::OutOfOrder { id, .. }
            | Self::AlreadyApplied { id, .. }
            | Self::NotNext { id, .. }
            | Self::Dirty { id, .. }
            | Self::Drift { id, .. }
            | Self::Unreadable { id, .. }
            | Self::FilesModified { id, .. }
            | Self::Script { id, .. }
            | Self::MissingSignatures { id, .. }
            | Self::MissingApprovals { id, .. }
            | Self::NoReceipt { id, .. } => Some(id),
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Self::Diverged { from_env, to_env, .. } => format!(
                "compare the two with `promoter status`; {to_env} ran something {from_env} did not, so promotion cannot continue until someone decides which is right"
            ),
            Self::NotInRepository { .. } => {
                "pass --rev with the commit that holds it, or commit it".to_owned()
            }
            Self::NotSealed { id } => format!("run `promoter seal {id}`"),
            Self::ChangedSinceSource { from_env, .. } => format!(
                "promote the exact bundle {from_env} ran: check out the commit it came from, or apply the new version as a new changeset"
            ),
            Self::ChangedSinceApplied { id, env, .. } => format!(
                "restore {id} as it was applied (git checkout) and put the change in a new changeset; or, to redo it in {env}: undo it there by hand, then `promoter resolve {env} {id} --forget --note \"...\"` and apply again"
            ),
            Self::MissingFromTree { .. } => {
                "restore the changeset directory from git; applied changesets stay in the repository".to_owned()
            }
            Self::OutOfOrder { newest, .. } => format!("renumber it after {newest}"),
            Self::AlreadyApplied { .. } => return None,
            Self::NotNext { next, .. } => match next {
                Some(n) => format!("apply {n} first, or name it too"),
                None => return None,
            },
            Self::NotPending { env, .. } => {
                format!("see what is pending for {env} with `promoter status`")
            }
            Self::Dirty { env, id, .. } => format!(
                "finish or undo it by hand, then record what you did: `promoter resolve {env} {id} --applied|--rolled-back --note \"...\"`"
            ),
            Self::Drift { from_env, to_env, .. } => format!(
                "see the difference with `promoter drift {from_env} {to_env}`, make {to_env} match {from_env} (or refresh {from_env} from {to_env}), or pass --allow-drift"
            ),
            Self::BaselineNotAdoptable { env, .. } => format!(
                "a database takes a baseline only from nothing (it runs it) or from exactly the changesets it folds (it adopts it): apply what {env} lacks from the history before the baseline was folded, or rebuild {env} (`promoter profile restore clean-db --to {env}`)"
            ),
            Self::Unreadable { .. } => return None,
            Self::FilesModified { id, .. } => format!(
                "restore the files from git, or reseal with `promoter seal --force {id}` and sign again"
            ),
            Self::Script { .. } => return None,
            Self::MissingSignatures { id, role, .. } => {
                if role == crate::policy::SIGNING_ROLE {
                    format!("promoter sign {id}")
                } else {
                    format!("promoter approve {id}")
                }
            }
            Self::MissingApprovals { id, .. } => format!(
                "the customer approves after testing: `promoter approve {id} --for ENV` (the statement binds the test environment's signed receipt)"
            ),
            Self::NoReceipt { from_env, .. } => format!(
                "promote it to {from_env} again from a {from_env} with its receipt_key set; rows written by hand or by another database carry no receipt"
            ),
            Self::NotPinned { env } => format!(
                "pin its trust policy first: `promoter trust pin {env}` (shows the policy from git and asks)"
            ),
            Self::PolicyTampered { env, .. } => format!(
                "someone edited {env}'s pinned policy table; its DBAs must investigate before anything is promoted"
            ),
            Self::PinnedSource { env, .. } => format!(
                "the pinned policy decides; change it with a signed re-pin (`promoter trust sign {env}`, then `promoter trust pin {env}`)"
            ),
            Self::ReceiptKey { env, .. } => format!(
                "set {env}'s receipt_key to the secret key of the certificate committed as keys/environments/{env}.asc"
            ),
            Self::CheckpointMissing { env, .. } => format!(
                "{env}'s ledger lost rows promoter saw (the changesets they record may run again): restore it from a backup and `promoter audit {env}` before anything is applied"
            ),
            Self::LedgerUnprotected { env, .. } => format!(
                "someone with DBA rights changed {env}'s ledger protections; find out who and why (`promoter audit {env}`), restore them, then run again"
            ),
            Self::RepinUnsigned { env, .. } => format!(
                "the people pinned now must sign the new policy: `promoter trust sign {env} --key …`, commit policy/{env}/, then pin again; or `--break-glass --reason …` for lost keys"
            ),
        })
    }
}

fn plural(n: impl Into<i64>, word: &str) -> String {
    let n = n.into();
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// Appends "not counted" reasons as indented lines.
fn list(f: &mut fmt::Formatter<'_>, items: &[String]) -> fmt::Result {
    for item in items {
        write!(f, "\n  not counted: {item}")?;
    }
    Ok(())
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Diverged {
                from_env,
                to_env,
                from,
                to,
            } => {
                let list = |v: &[Applied]| {
                    if v.is_empty() {
                        "(nothing)".to_owned()
                    } else {
                        v.iter()
                            .map(|a| format!("{} {}", a.changeset_id, a.bundle_hash.short()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                };
                write!(
                    f,
                    "{to_env} has diverged from {from_env}: {to_env}'s applied changesets must be a prefix of {from_env}'s\n  {from_env}: {}\n  {to_env}: {}",
                    list(from),
                    list(to)
                )
            }
            Self::NotInRepository { id, from_env } => write!(
                f,
                "{id} is applied to {from_env} but is not in the repository at this revision"
            ),
            Self::NotSealed { id } => write!(f, "{id} is not sealed"),
            Self::BaselineNotAdoptable { id, env, why } => {
                write!(f, "{env} cannot take the baseline {id}: {why}")
            }
            Self::ChangedSinceSource {
                id,
                from_env,
                source,
                rev,
            } => write!(
                f,
                "{id} changed since it was applied to {from_env}: {from_env} has {source}, rev has {rev}"
            ),
            Self::ChangedSinceApplied {
                id,
                env,
                applied,
                now,
            } => write!(
                f,
                "{id} changed since it was applied to {env}: {env} has {applied}, the work tree has {}",
                now.map_or("no SHA256SUMS".to_owned(), |h| h.to_hex())
            ),
            Self::MissingFromTree { id, env } => {
                write!(f, "{id} is applied to {env} but missing from changesets/")
            }
            Self::OutOfOrder { id, newest, env } => write!(
                f,
                "{id} is older than {newest}, which is already applied to {env}: changesets apply in number order"
            ),
            Self::AlreadyApplied { id, env } => write!(f, "{id} is already applied to {env}"),
            Self::NotNext { id, env, next } => write!(
                f,
                "{id} is not next in line for {env}: {} must be applied first",
                next.as_deref().unwrap_or("nothing")
            ),
            Self::NotPending { arg, env } => {
                write!(f, "--to {arg}: no such changeset is pending for {env}")
            }
            Self::Dirty {
                env,
                id,
                how,
                seq,
                statements,
            } => write!(
                f,
                "{env} is dirty: {id} {} after {} (ledger row {seq})",
                match how {
                    Unfinished::Interrupted => "was interrupted (its row still says running)",
                    Unfinished::Partial => "is partially applied",
                    Unfinished::Tampered =>
                        "touched the ledger (a statement that had already committed)",
                },
                plural(*statements, "statement")
            ),
            Self::Drift {
                from_env,
                to_env,
                id,
                source,
                target,
            } => write!(
                f,
                "{to_env}'s schema differs from {from_env}'s when {from_env} applied {id} (schema fingerprint {to_env} {}, {from_env} {}), so the rehearsal in {from_env} was not representative",
                target.short(),
                source.short()
            ),
            Self::Unreadable { id, message } => write!(f, "{id}: {message}"),
            Self::FilesModified { id, problems } => {
                write!(
                    f,
                    "{id}: files differ from SHA256SUMS: {}",
                    problems.join("; ")
                )
            }
            Self::Script { id, problem } => write!(f, "{id}: {problem}"),
            Self::MissingSignatures {
                id,
                role,
                need,
                have,
                not_counted,
            } => {
                write!(
                    f,
                    "{id}: needs {} {role} signature{} from distinct people, has {have}",
                    need,
                    if *need == 1 { "" } else { "s" }
                )?;
                list(f, not_counted)
            }
            Self::MissingApprovals {
                id,
                role,
                need,
                have,
                not_counted,
            } => {
                write!(
                    f,
                    "{id}: needs {need} {role} approval{} that match{} this bundle, its test and this environment, has {have}",
                    if *need == 1 { "" } else { "s" },
                    if *need == 1 { "es" } else { "" }
                )?;
                list(f, not_counted)
            }
            Self::NoReceipt {
                id,
                from_env,
                reason,
            } => write!(
                f,
                "{id}: {from_env}'s ledger row has no valid receipt: {reason}"
            ),
            Self::NotPinned { env } => write!(
                f,
                "{env} has `require` but no pinned trust policy: nothing is promoted to it until its policy is pinned in its own database"
            ),
            Self::PolicyTampered { env, seq, reason } => {
                write!(
                    f,
                    "{env}'s pinned policy does not verify at row #{seq}: {reason}"
                )
            }
            Self::PinnedSource { env, pinned, from } => write!(
                f,
                "{env}'s pinned policy says it is fed from {}, not from {from} (environments.yaml in git says otherwise, and does not decide)",
                pinned.as_deref().unwrap_or("nothing (apply only)")
            ),
            Self::ReceiptKey { env, message } => write!(f, "{env}: receipt key: {message}"),
            Self::CheckpointMissing { env, why } => {
                write!(
                    f,
                    "{env}: {why} (checkpoint in {})",
                    crate::checkpoint::state_dir().display()
                )
            }
            Self::LedgerUnprotected { env, why } => {
                write!(f, "{env}'s ledger is not protected: {why}")
            }
            Self::RepinUnsigned {
                env,
                short,
                not_counted,
            } => {
                let need: Vec<String> = short
                    .iter()
                    .map(|(role, need, have)| format!("{need} {role} (has {have})"))
                    .collect();
                write!(
                    f,
                    "{env}: the new policy differs from the pinned one and is not signed by the people pinned now: needs {}",
                    need.join(", ")
                )?;
                list(f, not_counted)
            }
        }
    }
}

/// What the checks found about a bundle (from git or the work tree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleFacts {
    pub id: ChangesetId,
    /// `None` if not sealed.
    pub hash: Option<Sha256Digest>,
    /// For a baseline: the changesets it folds and their bundles.
    pub supersedes: Vec<(String, Sha256Digest)>,
    /// Everything that keeps it from being applied.
    pub problems: Vec<Refusal>,
}

/// One changeset to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub changeset_id: String,
    pub bundle_hash: Sha256Digest,
    /// The source environment's ledger entry, when promoting.
    pub source_entry: Option<Sha256Digest>,
}

/// A plan: the steps in order, and every reason it cannot go. A plan with
/// refusals still lists the steps it found, so `--dry-run` can show them
/// with the failing checks marked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub refusals: Vec<Refusal>,
}

impl Plan {
    /// The steps, if nothing refuses them.
    pub fn into_result(self) -> Result<Vec<Step>, Vec<Refusal>> {
        if self.refusals.is_empty() {
            Ok(self.steps)
        } else {
            Err(self.refusals)
        }
    }
}

/// Refusals for the unfinished changesets of an environment.
pub fn refuse_dirty(env: &str, dirty: &[Dirty<'_>]) -> Vec<Refusal> {
    dirty
        .iter()
        .map(|d| Refusal::Dirty {
            env: env.to_owned(),
            id: d.row.changeset_id.clone(),
            how: d.how,
            seq: d.row.seq,
            statements: d.committed,
        })
        .collect()
}

/// An environment's applied sequence as it counts once baselines are
/// taken into account: entries some baseline of `bundles` folds (same
/// changeset, same bundle) are history the baseline stands for, not part
/// of what is compared or promoted.
pub fn effective(applied: &[Applied], bundles: &[BundleFacts]) -> Vec<Applied> {
    applied
        .iter()
        .filter(|a| !folded(a, bundles))
        .cloned()
        .collect()
}

/// What keeps an environment from a baseline that folds `supersedes`: each
/// folded changeset it has not applied, or applied as another bundle.
/// Empty when it has run exactly that history.
pub fn baseline_lag(
    applied: &[Applied],
    supersedes: &[crate::changeset::Superseded],
) -> Vec<String> {
    supersedes
        .iter()
        .filter_map(|s| match applied.iter().find(|a| a.changeset_id == s.id) {
            None => Some(format!("{} not applied", s.id)),
            Some(a) if a.bundle_hash != s.bundle => Some(format!(
                "{} applied as bundle {}, the work tree has {}",
                s.id,
                a.bundle_hash.short(),
                s.bundle.short()
            )),
            Some(_) => None,
        })
        .collect()
}

/// Whether `a` is folded by some baseline of `bundles` with the same bundle.
fn folded(a: &Applied, bundles: &[BundleFacts]) -> bool {
    bundles.iter().any(|b| {
        b.supersedes
            .iter()
            .any(|(id, hash)| *id == a.changeset_id && *hash == a.bundle_hash)
    })
}

/// Plans `promote FROM TO`: candidates are FROM's applied changesets that TO
/// lacks, in FROM's order, up to and including `upto` if given; TO's
/// applied sequence must be a prefix of FROM's.
pub fn plan_promotion(
    from_env: &str,
    to_env: &str,
    from: &[Applied],
    to: &[Applied],
    bundles: &[BundleFacts],
    upto: Option<&str>,
) -> Plan {
    let mut plan = Plan::default();
    let (from, to) = (&effective(from, bundles)[..], &effective(to, bundles)[..]);
    let diverges = to.len() > from.len()
        || to
            .iter()
            .zip(from)
            .any(|(t, f)| t.changeset_id != f.changeset_id || t.bundle_hash != f.bundle_hash);
    if diverges {
        plan.refusals.push(Refusal::Diverged {
            from_env: from_env.to_owned(),
            to_env: to_env.to_owned(),
            from: from.to_vec(),
            to: to.to_vec(),
        });
        return plan;
    }
    let named = |a: &Applied, arg: &str| {
        ChangesetId::parse(&a.changeset_id).is_ok_and(|id| id.matches(arg))
    };
    let mut candidates = &from[to.len()..];
    if let Some(arg) = upto {
        match candidates.iter().position(|a| named(a, arg)) {
            Some(i) => candidates = &candidates[..=i],
            None if to.iter().any(|a| named(a, arg)) => return plan,
            None => {
                plan.refusals.push(Refusal::NotPending {
                    arg: arg.to_owned(),
                    env: to_env.to_owned(),
                });
                return plan;
            }
        }
    }
    for candidate in candidates {
        let id = &candidate.changeset_id;
        // History a baseline in the plan stands for: never promoted again.
        if folded(candidate, bundles) {
            continue;
        }
        let Some(bundle) = bundles.iter().find(|b| b.id.as_str() == id) else {
            plan.refusals.push(Refusal::NotInRepository {
                id: id.clone(),
                from_env: from_env.to_owned(),
            });
            continue;
        };
        match bundle.hash {
            None => plan.refusals.push(Refusal::NotSealed { id: id.clone() }),
            Some(hash) if hash != candidate.bundle_hash => {
                plan.refusals.push(Refusal::ChangedSinceSource {
                    id: id.clone(),
                    from_env: from_env.to_owned(),
                    source: candidate.bundle_hash,
                    rev: hash,
                });
            }
            Some(_) => {}
        }
        plan.refusals.extend(bundle.problems.iter().cloned());
        plan.steps.push(Step {
            changeset_id: id.clone(),
            bundle_hash: candidate.bundle_hash,
            source_entry: Some(candidate.entry_hash),
        });
    }
    plan
}

/// Plans `apply ENV`: the pending bundles in order (or only `only`, which
/// must be next in line), stopping after `upto` if given. Applied bundles
/// must be unchanged, and nothing may be older than what is already applied.
pub fn plan_apply(
    env: &str,
    applied: &[Applied],
    bundles: &[BundleFacts],
    only: &[ChangesetId],
    upto: Option<&str>,
) -> Plan {
    let mut plan = Plan::default();
    for a in applied {
        match bundles.iter().find(|b| b.id.as_str() == a.changeset_id) {
            // Archived under a baseline that folds exactly this bundle.
            None if folded(a, bundles) => {}
            None => plan.refusals.push(Refusal::MissingFromTree {
                id: a.changeset_id.clone(),
                env: env.to_owned(),
            }),
            Some(b) if b.hash != Some(a.bundle_hash) => {
                plan.refusals.push(Refusal::ChangedSinceApplied {
                    id: a.changeset_id.clone(),
                    env: env.to_owned(),
                    applied: a.bundle_hash,
                    now: b.hash,
                });
            }
            Some(_) => {}
        }
    }
    let is_applied = |b: &BundleFacts| applied.iter().any(|a| a.changeset_id == b.id.as_str());
    let newest_applied = bundles
        .iter()
        .filter(|b| is_applied(b))
        .map(|b| &b.id)
        .max();
    let mut pending: Vec<&BundleFacts> = bundles.iter().filter(|b| !is_applied(b)).collect();
    pending.sort_by(|a, b| a.id.cmp(&b.id));
    // A baseline this environment has already run the history of is
    // adopted, not run: it may come after what is applied, and goes first.
    let adoptable = |b: &BundleFacts| {
        !b.supersedes.is_empty()
            && b.supersedes
                .iter()
                .any(|(id, _)| applied.iter().any(|a| a.changeset_id == *id))
    };
    pending.sort_by_key(|b| !adoptable(b));
    if let Some(newest) = newest_applied {
        for p in pending.iter().filter(|p| p.id < *newest && !adoptable(p)) {
            plan.refusals.push(Refusal::OutOfOrder {
                id: p.id.to_string(),
                newest: newest.to_string(),
                env: env.to_owned(),
            });
        }
    }
    if !only.is_empty() {
        let mut wanted: Vec<&ChangesetId> = only.iter().collect();
        wanted.sort();
        for (i, w) in wanted.iter().enumerate() {
            if applied.iter().any(|a| a.changeset_id == w.as_str()) {
                plan.refusals.push(Refusal::AlreadyApplied {
                    id: w.to_string(),
                    env: env.to_owned(),
                });
            } else if pending.get(i).map(|p| &p.id) != Some(*w) {
                plan.refusals.push(Refusal::NotNext {
                    id: w.to_string(),
                    env: env.to_owned(),
                    next: pending.get(i).map(|p| p.id.to_string()),
                });
            }
        }
        pending.truncate(wanted.len());
    }
    if let Some(arg) = upto {
        match pending.iter().position(|p| p.id.matches(arg)) {
            Some(i) => pending.truncate(i + 1),
            None if bundles.iter().any(|b| is_applied(b) && b.id.matches(arg)) => {
                pending.clear();
            }
            None => {
                plan.refusals.push(Refusal::NotPending {
                    arg: arg.to_owned(),
                    env: env.to_owned(),
                });
                return plan;
            }
        }
    }
    for b in pending {
        match b.hash {
            None => plan.refusals.push(Refusal::NotSealed {
                id: b.id.to_string(),
            }),
            Some(hash) => plan.steps.push(Step {
                changeset_id: b.id.to_string(),
                bundle_hash: hash,
                source_entry: None,
            }),
        }
        plan.refusals.extend(b.problems.iter().cloned());
    }
    plan
}

/// The drift rule: promoting to `to_env` needs its schema now to equal the
/// source's schema before the first changeset of the plan (the rehearsal
/// was representative). `None` when the source recorded no fingerprint.
pub fn check_drift(
    from_env: &str,
    to_env: &str,
    first: &Step,
    source_before: Option<Sha256Digest>,
    target_now: Sha256Digest,
) -> Option<Refusal> {
    let source = source_before?;
    (source != target_now).then(|| Refusal::Drift {
        from_env: from_env.to_owned(),
        to_env: to_env.to_owned(),
        id: first.changeset_id.clone(),
        source,
        target: target_now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ChangesetId {
        ChangesetId::parse(s).unwrap()
    }

    fn digest(c: &str) -> Sha256Digest {
        Sha256Digest::from_hex(&c.repeat(64)).unwrap()
    }

    fn applied(id: &str, hash: &str) -> Applied {
        Applied {
            changeset_id: id.into(),
            bundle_hash: digest(hash),
            entry_hash: Sha256Digest::of(id.as_bytes()),
        }
    }

    fn facts(i: &str, hash: &str, problems: &[Refusal]) -> BundleFacts {
        BundleFacts {
            id: id(i),
            hash: Some(digest(hash)),
            problems: problems.to_vec(),
            supersedes: Vec::new(),
        }
    }

    fn ids(steps: &[Step]) -> Vec<&str> {
        steps.iter().map(|s| s.changeset_id.as_str()).collect()
    }

    fn kinds(refusals: &[Refusal]) -> Vec<&'static str> {
        refusals.iter().map(Refusal::kind).collect()
    }

    #[test]
    fn a_baseline_needs_exactly_the_history_it_folds() {
        let folds = |ids: &[(&str, &str)]| -> Vec<crate::changeset::Superseded> {
            ids.iter()
                .map(|(i, h)| crate::changeset::Superseded {
                    id: (*i).into(),
                    bundle: digest(h),
                })
                .collect()
        };
        let supersedes = folds(&[("0001-a", "a"), ("0002-b", "b")]);
        for (applied, want) in [
            (vec![applied("0001-a", "a"), applied("0002-b", "b")], vec![]),
            (
                vec![
                    applied("0001-a", "a"),
                    applied("0002-b", "b"),
                    applied("0003-c", "c"),
                ],
                vec![],
            ),
            (vec![applied("0001-a", "a")], vec!["0002-b not applied"]),
            (
                vec![applied("0001-a", "a"), applied("0002-b", "e")],
                vec!["0002-b applied as bundle eeeeeeeeeeee, the work tree has bbbbbbbbbbbb"],
            ),
            (vec![], vec!["0001-a not applied", "0002-b not applied"]),
        ] {
            assert_eq!(baseline_lag(&applied, &supersedes), want, "{applied:?}");
        }
    }

    #[test]
    fn promotion_takes_what_the_source_has_and_the_target_lacks_in_source_order() {
        let from = [
            applied("0001-a", "a"),
            applied("0002-b", "b"),
            applied("0003-c", "c"),
        ];
        let to = [applied("0001-a", "a")];
        let bundles = [
            facts("0001-a", "a", &[]),
            facts("0002-b", "b", &[]),
            facts("0003-c", "c", &[]),
            facts("0004-d", "d", &[]),
        ];
        let steps = plan_promotion("qat", "prd", &from, &to, &bundles, None)
            .into_result()
            .unwrap();
        assert_eq!(ids(&steps), ["0002-b", "0003-c"]);
        assert_eq!(steps[0].source_entry, Some(from[1].entry_hash));
        let none = plan_promotion("qat", "prd", &from, &from, &bundles, None);
        assert_eq!(none, Plan::default());
    }

    #[test]
    fn promotion_to_stops_after_the_named_changeset() {
        let from = [
            applied("0001-a", "a"),
            applied("0002-b", "b"),
            applied("0003-c", "c"),
        ];
        let bundles = [
            facts("0001-a", "a", &[]),
            facts("0002-b", "b", &[]),
            facts("0003-c", "c", &[]),
        ];
        let cases: &[(&str, Result<&[&str], &str>)] = &[
            ("0002-b", Ok(&["0001-a", "0002-b"])),
            ("2", Ok(&["0001-a", "0002-b"])),
            ("a", Ok(&["0001-a"])),
            ("0009-z", Err("not-pending")),
        ];
        for (arg, want) in cases {
            let plan = plan_promotion("qat", "prd", &from, &[], &bundles, Some(arg));
            match want {
                Ok(want) => assert_eq!(ids(&plan.into_result().unwrap()), *want, "--to {arg}"),
                Err(kind) => assert_eq!(kinds(&plan.refusals), [*kind], "--to {arg}"),
            }
        }
        // Already promoted: nothing to do, not an error.
        let plan = plan_promotion("qat", "prd", &from, &from[..2], &bundles, Some("1"));
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn promotion_refuses_with_a_reason_per_changeset() {
        let from = [
            applied("0001-a", "a"),
            applied("0002-b", "b"),
            applied("0003-c", "c"),
            applied("0004-d", "d"),
        ];
        let short = Refusal::MissingSignatures {
            id: "0003-c".into(),
            role: "customer".into(),
            need: 1,
            have: 0,
            not_counted: Vec::new(),
        };
        let bundles = [
            facts("0001-a", "a", &[]),
            facts("0002-b", "f", &[]),
            facts("0003-c", "c", std::slice::from_ref(&short)),
        ];
        let plan = plan_promotion("qat", "prd", &from, &[], &bundles, None);
        assert_eq!(
            kinds(&plan.refusals),
            [
                "changed-since-source",
                "missing-signatures",
                "not-in-repository"
            ]
        );
        // The refused plan still lists what it found, for --dry-run.
        assert_eq!(ids(&plan.steps), ["0001-a", "0002-b", "0003-c"]);
        let text = plan.refusals[0].to_string();
        assert!(
            text.starts_with("0002-b changed since it was applied to qat: qat has bbbb"),
            "{text}"
        );
        assert!(text.contains("rev has ffff"), "{text}");
        assert_eq!(
            plan.refusals[1].to_string(),
            "0003-c: needs 1 customer signature from distinct people, has 0"
        );
        assert_eq!(plan.refusals[1].hint().unwrap(), "promoter approve 0003-c");
        assert_eq!(
            plan.refusals[2].to_string(),
            "0004-d is applied to qat but is not in the repository at this revision"
        );
        assert_eq!(plan.refusals[2].changeset(), Some("0004-d"));
    }

    #[test]
    fn promotion_refuses_a_diverged_target() {
        let from = [applied("0001-a", "a"), applied("0002-b", "b")];
        let bundles = [
            facts("0001-a", "a", &[]),
            facts("0002-b", "b", &[]),
            facts("0003-x", "e", &[]),
        ];
        for to in [
            vec![applied("0002-b", "b")],
            vec![applied("0001-a", "9")],
            vec![
                applied("0001-a", "a"),
                applied("0002-b", "b"),
                applied("0003-x", "e"),
            ],
        ] {
            let plan = plan_promotion("qat", "prd", &from, &to, &bundles, None);
            let text = plan.refusals[0].to_string();
            assert!(text.starts_with("prd has diverged from qat"), "{text}");
            assert!(
                text.contains("qat: 0001-a aaaaaaaaaaaa, 0002-b bbbbbbbbbbbb"),
                "{text}"
            );
            assert!(plan.steps.is_empty());
        }
    }

    #[test]
    fn apply_takes_pending_in_number_order() {
        let bundles = [
            facts("0002-b", "b", &[]),
            facts("0001-a", "a", &[]),
            facts("0010-c", "c", &[]),
        ];
        let done = [applied("0001-a", "a")];
        let steps = plan_apply("dev", &done, &bundles, &[], None)
            .into_result()
            .unwrap();
        assert_eq!(ids(&steps), ["0002-b", "0010-c"]);
        let steps = plan_apply("dev", &done, &bundles, &[id("0002-b")], None)
            .into_result()
            .unwrap();
        assert_eq!(ids(&steps), ["0002-b"]);
        let steps = plan_apply("dev", &done, &bundles, &[], Some("2"))
            .into_result()
            .unwrap();
        assert_eq!(ids(&steps), ["0002-b"]);
        let up_to_date = plan_apply("dev", &done, &bundles, &[], Some("0001-a"));
        assert_eq!(up_to_date, Plan::default());
        let unknown = plan_apply("dev", &done, &bundles, &[], Some("nope"));
        assert_eq!(kinds(&unknown.refusals), ["not-pending"]);
    }

    #[test]
    fn apply_refuses_changed_missing_out_of_order_unsealed_and_skipping() {
        let mut unsealed = facts("0005-e", "e", &[]);
        unsealed.hash = None;
        let modified = Refusal::FilesModified {
            id: "0004-d".into(),
            problems: vec!["001-x.sql: content differs".into()],
        };
        let bundles = [
            facts("0001-a", "9", &[]),
            facts("0002-b", "b", &[]),
            facts("0004-d", "d", std::slice::from_ref(&modified)),
            unsealed,
        ];
        let applied_rows = [applied("0001-a", "a"), applied("0003-c", "c")];
        let plan = plan_apply("dev", &applied_rows, &bundles, &[], None);
        assert_eq!(
            kinds(&plan.refusals),
            [
                "changed-since-applied",
                "missing-from-tree",
                "files-modified",
                "not-sealed"
            ]
        );
        assert_eq!(
            plan.refusals[3].hint().as_deref(),
            Some("run `promoter seal 0005-e`")
        );
        let bundles = [
            facts("0001-a", "a", &[]),
            facts("0002-b", "b", &[]),
            facts("0003-c", "c", &[]),
        ];
        let plan = plan_apply(
            "dev",
            &[applied("0001-a", "a")],
            &bundles,
            &[id("0003-c")],
            None,
        );
        assert_eq!(
            plan.refusals
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["0003-c is not next in line for dev: 0002-b must be applied first"]
        );
        let plan = plan_apply("dev", &[applied("0002-b", "b")], &bundles, &[], None);
        assert!(
            plan.refusals[0]
                .to_string()
                .starts_with("0001-a is older than 0002-b"),
            "{:?}",
            plan.refusals
        );
    }

    #[test]
    fn drift_is_refused_only_when_both_fingerprints_are_known_and_differ() {
        let step = Step {
            changeset_id: "0002-b".into(),
            bundle_hash: digest("b"),
            source_entry: None,
        };
        assert_eq!(check_drift("qat", "prd", &step, None, digest("1")), None);
        assert_eq!(
            check_drift("qat", "prd", &step, Some(digest("1")), digest("1")),
            None
        );
        let refusal = check_drift("qat", "prd", &step, Some(digest("1")), digest("2")).unwrap();
        assert_eq!(refusal.kind(), "drift");
        assert!(
            refusal
                .to_string()
                .contains("prd 222222222222, qat 111111111111")
        );
        assert!(refusal.hint().unwrap().contains("promoter drift qat prd"));
    }
}
