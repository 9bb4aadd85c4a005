//! Trust at run time: the target's pinned policy decides who counts, the
//! source's signed receipts prove what ran there, and approval statements
//! must name exactly the candidate. Git only supplies bytes (bundles,
//! statements, certificates for revocation updates); it decides nothing for
//! an environment whose policy is pinned.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::SystemTime;

use super::{Event, Hooks, RunError, Target, who, wrote};
use crate::approval::{self, Candidate, Statement};
use crate::changeset::{Bundle, Sha256Digest};
use crate::config::Environment;
use crate::db::{self, DbError, ledger};
use crate::ledger::{Entry, Signer, Status, TRUST_EVENT};
use crate::plan::Refusal;
use crate::policy::{self, PinKind, PinRecord, Policy, SIGNING_ROLE, Signed};
use crate::signing::{self, Keyrings, SignatureReport};

/// What the target's pinned policy makes of a run.
pub struct Effective {
    /// The pinned policy and its record; `None` for an uncontrolled
    /// environment (no `require` in git, nothing pinned).
    pub pinned: Option<(PinRecord, Policy)>,
    /// The certificates that count, by role: the pinned ones (merged with
    /// git's copies of the same keys, for revocations), or git's keyrings for
    /// an uncontrolled environment.
    pub keyrings: Keyrings,
    /// The thresholds checked against `SHA256SUMS` signatures.
    pub signature_require: BTreeMap<String, u32>,
}

/// Every certificate of `record`, as keyrings by pinned role (and receipt
/// keys under their environment's name), merged with git's copies of the
/// same certificates so that a revocation committed later is seen.
pub fn pinned_keyrings(
    record: &PinRecord,
    policy: &Policy,
    git: &Keyrings,
) -> Result<Keyrings, String> {
    let certs: BTreeMap<String, String> = serde_json::from_str(&record.certificates)
        .map_err(|e| format!("pinned certificates are not readable: {e}"))?;
    let mut files = Vec::new();
    let mut add = |role: &str, fpr: &str| {
        if let Some(armored) = certs.get(fpr) {
            files.push((
                role.to_owned(),
                PathBuf::from(format!("pinned/{fpr}.asc")),
                armored.clone().into_bytes(),
            ));
        }
        if let Some(bytes) = git.armored(fpr) {
            files.push((
                role.to_owned(),
                PathBuf::from(format!("git/{fpr}.asc")),
                bytes,
            ));
        }
    };
    for k in &policy.keys {
        add(&k.role, &k.fingerprint);
    }
    for r in &policy.receipt_keys {
        add(&format!("receipt:{}", r.environment), &r.fingerprint);
    }
    Keyrings::from_files(&[], files).map_err(|e| e.to_string())
}

/// Reads the target's pins and decides what counts for this run. A
/// controlled environment (git gives it `require`) without a pin, or with a
/// pin table that does not verify, is refused.
pub(super) async fn effective(
    target: &mut Target,
    env: &Environment,
    git_keyrings: &Keyrings,
    git_policy: Option<&Policy>,
    hooks: &mut dyn Hooks,
) -> Result<Result<Effective, Refusal>, RunError> {
    let pins = db::policy::load(&mut target.conn, &env.name, &target.schema).await?;
    if let Some((seq, reason)) = policy::check_pins(&pins) {
        return Ok(Err(Refusal::PolicyTampered {
            env: env.name.clone(),
            seq,
            reason,
        }));
    }
    let Some(record) = pins.last().cloned() else {
        if env.config.require.values().any(|n| *n > 0) {
            return Ok(Err(Refusal::NotPinned {
                env: env.name.clone(),
            }));
        }
        return Ok(Ok(Effective {
            pinned: None,
            keyrings: git_keyrings.clone(),
            signature_require: BTreeMap::new(),
        }));
    };
    let pinned = record
        .parsed()
        .map_err(|e| RunError::Other(anyhow::anyhow!("{}: pinned policy: {e}", env.name)))?;
    // A policy pinned for another environment came with a copy of its
    // database: it says nothing about this one.
    if pinned.environment != env.name {
        return Ok(Err(Refusal::PolicyTampered {
            env: env.name.clone(),
            seq: record.seq,
            reason: format!(
                "the pinned policy is {}'s, not {}'s: this database holds a copy of another environment's trust; copy it without the policy table (promoter branch, profile and clone do), or pin {} in a fresh database",
                pinned.environment, env.name, env.name
            ),
        }));
    }
    if let Some(git) = git_policy
        && git != &pinned
    {
        let w = format!(
            "git's trust policy for {} differs from the pinned one, which is what counts (see `promoter trust show {}`):\n  {}",
            env.name,
            env.name,
            git.diff(&pinned).join("\n  ")
        );
        hooks.event(Event::Warning(&w));
    }
    let keyrings = pinned_keyrings(&record, &pinned, git_keyrings)
        .map_err(|e| RunError::Other(anyhow::anyhow!("{}: {e}", env.name)))?;
    let signature_require = pinned
        .require
        .iter()
        .filter(|(role, _)| role.as_str() == SIGNING_ROLE)
        .map(|(r, n)| (r.clone(), *n))
        .collect();
    Ok(Ok(Effective {
        pinned: Some((record, pinned)),
        keyrings,
        signature_require,
    }))
}

/// Checks the receipt on the source's ledger row `entry`: the source's
/// chain must verify from its first row up to it (`chain_break` is where
/// `check_chain` of the whole source broke, computed once a run), and the
/// row must carry a signature by a receipt key the target pinned for that
/// source. Returns the fingerprint that signed it.
#[allow(clippy::too_many_arguments)]
pub fn check_receipt(
    source: &[Entry],
    chain_break: Option<&crate::ledger::ChainBreak>,
    entry: Sha256Digest,
    from_env: &str,
    pinned: &Policy,
    keyrings: &Keyrings,
    now: SystemTime,
) -> Result<String, String> {
    let Some(idx) = source.iter().position(|e| e.entry_hash == entry) else {
        return Err("the row is not in its ledger".into());
    };
    if let Some(brk) = chain_break.filter(|b| b.seq <= source[idx].seq) {
        return Err(format!(
            "{from_env}'s hash chain breaks at row #{}: {}",
            brk.seq, brk.reason
        ));
    }
    let row = &source[idx];
    let why = match receipt_of(
        keyrings,
        from_env,
        row,
        &format!("pinned for {from_env}"),
        now,
    ) {
        Ok(fpr) if pinned.is_receipt_key(from_env, &fpr) => return Ok(fpr),
        Ok(fpr) => format!("signed by {fpr}, not a receipt key pinned for {from_env}"),
        Err(ReceiptError::Unsigned) => format!(
            "not signed (written by hand, by a promoter without {from_env}'s receipt key, or by another database)"
        ),
        Err(ReceiptError::Invalid(why)) => why,
    };
    Err(format!("row #{}: {why}", row.seq))
}

/// Why a ledger row's receipt does not count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptError {
    /// The row carries no receipt.
    Unsigned,
    /// It does not verify by a key of `keyrings`' `receipt:<env>` role: why.
    Invalid(String),
}

/// The one check of a ledger row's receipt, for `promote`, `approve`,
/// `audit` and `ledger`: a signature over the row's canonical bytes by a
/// certificate in `keyrings` under the role `receipt:<env>`. Returns the
/// signing fingerprint. `known_as` says in messages where the keys came
/// from ("pinned for qat", "committed for qat").
pub fn receipt_of(
    keyrings: &Keyrings,
    env: &str,
    row: &Entry,
    known_as: &str,
    now: SystemTime,
) -> Result<String, ReceiptError> {
    let Some(receipt) = &row.receipt else {
        return Err(ReceiptError::Unsigned);
    };
    let reports = signing::verify_detached(
        keyrings,
        &row.canonical_bytes(),
        None,
        &[("receipt", receipt.as_bytes())],
        now,
    );
    let role = format!("receipt:{env}");
    if let Some(r) = reports
        .iter()
        .find(|r| r.is_good() && r.role.as_deref() == Some(role.as_str()))
    {
        return Ok(r.fingerprint.clone().unwrap_or_default());
    }
    let why: Vec<String> = reports
        .iter()
        .map(|r| match &r.verdict {
            signing::Verdict::Good => format!(
                "signed by {} {}, not a receipt key {known_as}",
                r.role.as_deref().unwrap_or("?"),
                r.fingerprint.as_deref().unwrap_or("?")
            ),
            signing::Verdict::Bad(why) if why.starts_with("unknown signer") => format!(
                "signed by key {}, which is not a receipt key {known_as}",
                r.issuer.as_deref().unwrap_or("?")
            ),
            signing::Verdict::Bad(why) => why.clone(),
        })
        .collect();
    Err(ReceiptError::Invalid(why.join("; ")))
}

/// One approval as counted (or not) for a candidate.
#[derive(Debug, Clone)]
pub struct CountedApproval {
    pub signer: Signed,
    /// sha256 of the statement.
    pub statement: Sha256Digest,
    pub signed_at: Option<SystemTime>,
}

/// The approval statements of `bundle` that count for `candidate`: signed
/// by a pinned principal of a non-signing role, every field matching.
/// Returns the counted ones and a reason for every one that did not count.
pub fn count_approvals(
    bundle: &Bundle,
    candidate: &Candidate<'_>,
    keyrings: &Keyrings,
    now: SystemTime,
) -> (Vec<CountedApproval>, Vec<String>) {
    let mut counted = Vec::new();
    let mut not = Vec::new();
    let epoch = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    for a in bundle.approvals() {
        let name = format!("signatures/{}", a.name);
        let Some(sig) = a.signature else {
            not.push(format!("{name}: no signature ({}.asc)", a.name));
            continue;
        };
        let statement = match std::str::from_utf8(a.statement)
            .map_err(|e| e.to_string())
            .and_then(Statement::parse)
        {
            Ok(s) => s,
            Err(e) => {
                not.push(format!("{name}: {e}"));
                continue;
            }
        };
        let reports = signing::verify_detached(keyrings, a.statement, None, &[(a.name, sig)], now);
        let Some(good) = reports.iter().find(|r| r.is_good()) else {
            let why: Vec<String> = reports
                .iter()
                .map(|r| match &r.verdict {
                    signing::Verdict::Bad(w) => w.clone(),
                    signing::Verdict::Good => String::new(),
                })
                .collect();
            not.push(format!("{name}: {}", why.join("; ")));
            continue;
        };
        let role = good.role.clone().unwrap_or_default();
        if role == SIGNING_ROLE || role.starts_with("receipt:") {
            not.push(format!(
                "{name}: signed by a {role} key; approvals come from the roles that approve"
            ));
            continue;
        }
        if let Err(why) = approval::matches(&statement, candidate, epoch) {
            not.push(format!("{name}: {why}"));
            continue;
        }
        counted.push(CountedApproval {
            signer: Signed {
                role,
                principal: good.principal.clone().unwrap_or_default(),
                fingerprint: good.fingerprint.clone().unwrap_or_default(),
            },
            statement: Sha256Digest::of(a.statement),
            signed_at: good.created,
        });
    }
    (counted, not)
}

/// The refusals for roles (other than the signing one) short of approvals.
pub fn approval_refusals(
    id: &str,
    pinned: &Policy,
    counted: &[CountedApproval],
    not_counted: &[String],
) -> Vec<Refusal> {
    let signed: Vec<Signed> = counted.iter().map(|c| c.signer.clone()).collect();
    let require: BTreeMap<String, u32> = pinned
        .require
        .iter()
        .filter(|(role, _)| role.as_str() != SIGNING_ROLE)
        .map(|(r, n)| (r.clone(), *n))
        .collect();
    policy::shortfalls(&require, &signed)
        .into_iter()
        .map(|s| Refusal::MissingApprovals {
            id: id.to_owned(),
            role: s.role,
            need: s.need,
            have: s.have,
            not_counted: not_counted.to_vec(),
        })
        .collect()
}

/// The ledger's record of approvals that opened a changeset.
pub fn approval_signers(counted: &[CountedApproval]) -> Vec<Signer> {
    let mut seen = BTreeSet::new();
    counted
        .iter()
        .filter(|c| seen.insert((c.signer.role.clone(), c.signer.principal.clone())))
        .map(|c| Signer {
            fingerprint: c.signer.fingerprint.clone(),
            role: c.signer.role.clone(),
            signed_at: c
                .signed_at
                .map(crate::output::format_time)
                .unwrap_or_default(),
            principal: Some(c.signer.principal.clone()),
            approval: Some(c.statement.to_hex()),
        })
        .collect()
}

/// How a pin is to be made.
#[derive(Debug, Clone)]
pub enum PinMode {
    /// Pin if nothing is pinned, or if the change is signed (`signatures`:
    /// detached signatures over the new policy's canonical bytes).
    Normal { signatures: Vec<(String, Vec<u8>)> },
    /// Pin whatever is pinned now, recorded as break-glass with a reason.
    BreakGlass { reason: String },
}

/// What `trust pin` did.
#[derive(Debug)]
pub enum Pinned {
    /// The same policy was pinned already.
    Unchanged(Box<PinRecord>),
    /// A new pin, with the one it replaced.
    New {
        record: Box<PinRecord>,
        previous: Option<Box<PinRecord>>,
    },
}

/// Pins `policy` in `env`'s database, next to its ledger, under the lock:
/// the first pin is trust on first use; a change needs signatures by the
/// people the current pin names (or break-glass). The pin and a ledger event
/// are written in one transaction. `certificates` holds every pinned key.
#[allow(clippy::too_many_arguments)]
pub async fn pin(
    env: &Environment,
    schema: &str,
    new: &Policy,
    certificates: &BTreeMap<String, String>,
    mode: PinMode,
    lock_wait: std::time::Duration,
    git_keyrings: &Keyrings,
    sign: &mut ledger::RowSigner<'_>,
    hooks: &mut dyn Hooks,
) -> Result<Pinned, RunError> {
    let mut target = Target::open(env, schema, lock_wait, hooks).await?;
    let result = async {
        let pins = db::policy::load(&mut target.conn, &env.name, schema).await?;
        if let Some((seq, reason)) = policy::check_pins(&pins) {
            return Err(refused(env, Refusal::PolicyTampered { env: env.name.clone(), seq, reason }));
        }
        let current = pins.last().cloned();
        let text = new.canonical();
        if let Some(c) = &current
            && c.policy == text
        {
            return Ok(Pinned::Unchanged(Box::new(c.clone())));
        }
        let (kind, reason, signers) = match (&current, mode) {
            (None, _) => (PinKind::FirstUse, None, Vec::new()),
            (Some(_), PinMode::BreakGlass { reason }) => (PinKind::BreakGlass, Some(reason), Vec::new()),
            (Some(c), PinMode::Normal { signatures }) => {
                let pinned = c.parsed().map_err(|e| RunError::Other(anyhow::anyhow!("{e}")))?;
                let keyrings = pinned_keyrings(c, &pinned, git_keyrings).map_err(|e| RunError::Other(anyhow::anyhow!("{e}")))?;
                let files: Vec<(&str, &[u8])> = signatures.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
                let reports = signing::verify_detached(&keyrings, text.as_bytes(), None, &files, SystemTime::now());
                let signed = good_signers(&reports);
                if let Err(short) = policy::repin_allowed(&pinned, &signed) {
                    let not_counted = reports
                        .iter()
                        .filter_map(|r| match &r.verdict {
                            signing::Verdict::Bad(w) => Some(format!("{}: {w}", r.file)),
                            signing::Verdict::Good => None,
                        })
                        .collect();
                    return Err(refused(
                        env,
                        Refusal::RepinUnsigned {
                            env: env.name.clone(),
                            short: short.into_iter().map(|s| (s.role, s.need, s.have)).collect(),
                            not_counted,
                        },
                    ));
                }
                (PinKind::Signed, None, signed)
            }
        };
        let question = match kind {
            PinKind::FirstUse => format!(
                "nothing is pinned in {} yet: pin this policy as trust on first use? [y/N] ",
                env.name
            ),
            PinKind::Signed => format!("pin this signed change of {}'s policy? [y/N] ", env.name),
            PinKind::BreakGlass => format!(
                "BREAK GLASS: replace {}'s policy without the pinned people's signatures (recorded, and reported by every audit)? [y/N] ",
                env.name
            ),
        };
        if !hooks.ask(&question)? {
            return Err(RunError::NotConfirmed { env: env.name.clone() });
        }
        ledger::ensure(&mut target.conn, &env.name, schema).await?;
        let (os_user, host) = who();
        let db_role = ledger::current_role(&mut target.conn, &env.name).await?;
        let now = super::now_micros();
        let signer_rows: Vec<Signer> = signers
            .iter()
            .map(|s| Signer {
                fingerprint: s.fingerprint.clone(),
                role: s.role.clone(),
                signed_at: String::new(),
                principal: Some(s.principal.clone()),
                approval: None,
            })
            .collect();
        let signers_json = serde_json::to_string(&signer_rows).unwrap_or_else(|_| "[]".into());
        let mut record = PinRecord {
            seq: 0,
            environment: env.name.clone(),
            policy: text.clone(),
            policy_hash: new.hash(),
            kind,
            reason: reason.clone(),
            signers: signers_json.clone(),
            certificates: serde_json::to_string(certificates).unwrap_or_else(|_| "{}".into()),
            pinned_at: now,
            os_user: os_user.clone(),
            host: host.clone(),
            db_role: db_role.clone(),
            prev_hash: crate::ledger::GENESIS,
            entry_hash: crate::ledger::GENESIS,
        };
        let mut event = Entry {
            seq: 0,
            changeset_id: TRUST_EVENT.to_owned(),
            bundle_hash: new.hash(),
            environment: env.name.clone(),
            status: Status::TrustPinned,
            signers: signers_json,
            promoted_from: None,
            promoted_from_entry: None,
            git_commit: None,
            os_user,
            host,
            db_role,
            started_at: now,
            finished_at: Some(now),
            schema_before: None,
            schema_after: None,
            statements: 0,
            error: None,
            note: Some(match &reason {
                Some(r) => format!("{}: {r}", kind.as_str()),
                None => kind.as_str().to_owned(),
            }),
            prev_hash: crate::ledger::GENESIS,
            entry_hash: crate::ledger::GENESIS,
            receipt: None,
        };
        let mut tx = sqlx_begin(&mut target.conn, &env.name).await?;
        db::policy::append(&mut tx, &env.name, schema, &mut record, current.as_ref()).await?;
        ledger::append(&mut tx, &env.name, schema, &mut event, sign).await?;
        db::commit(tx, &env.name).await?;
        Ok(Pinned::New {
            record: Box::new(record),
            previous: current.map(Box::new),
        })
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

fn refused(env: &Environment, r: Refusal) -> RunError {
    RunError::Refused {
        env: env.name.clone(),
        refusals: vec![r],
        planned: Vec::new(),
    }
}

async fn sqlx_begin<'c>(
    conn: &'c mut db::Connection,
    env: &str,
) -> Result<db::Transaction<'c>, DbError> {
    db::begin(conn, env).await
}

/// The good signatures among `reports`, as the policy rules see them.
pub fn good_signers(reports: &[SignatureReport]) -> Vec<Signed> {
    reports
        .iter()
        .filter(|r| r.is_good())
        .filter_map(|r| {
            Some(Signed {
                role: r.role.clone()?,
                principal: r.principal.clone().or_else(|| r.fingerprint.clone())?,
                fingerprint: r.fingerprint.clone()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PinnedKey;

    fn policy(customers: u32) -> Policy {
        Policy {
            environment: "prd".into(),
            promote_from: Some("qat".into()),
            require: BTreeMap::from([("developer".into(), 1), ("customer".into(), customers)]),
            keys: vec![PinnedKey {
                role: "customer".into(),
                principal: "carl@example.com".into(),
                fingerprint: "C".repeat(40),
            }],
            receipt_keys: Vec::new(),
        }
    }

    fn counted(principal: &str) -> CountedApproval {
        CountedApproval {
            signer: Signed {
                role: "customer".into(),
                principal: principal.into(),
                fingerprint: "C".repeat(40),
            },
            statement: Sha256Digest::of(principal.as_bytes()),
            signed_at: None,
        }
    }

    #[test]
    fn approvals_count_people_per_approving_role_and_name_what_did_not_count() {
        let not = vec!["signatures/approval-X.txt: expired at 2026-01-01T00:00:00Z".to_owned()];
        assert!(
            approval_refusals("0001-a", &policy(1), &[counted("carl@example.com")], &not)
                .is_empty()
        );
        let short = approval_refusals(
            "0001-a",
            &policy(2),
            &[counted("carl@example.com"), counted("carl@example.com")],
            &not,
        );
        assert_eq!(short.len(), 1);
        let text = short[0].to_string();
        assert!(text.contains("needs 2 customer approvals"), "{text}");
        assert!(text.contains("has 1"), "{text}");
        assert!(
            text.contains("not counted: signatures/approval-X.txt: expired"),
            "{text}"
        );
        // The signing role is never satisfied by approvals, nor asked of them.
        assert!(approval_refusals("0001-a", &policy(0), &[], &[]).is_empty());
        let signers = approval_signers(&[counted("carl@example.com"), counted("carl@example.com")]);
        assert_eq!(signers.len(), 1, "one person, one ledger signer");
        assert!(signers[0].approval.is_some());
    }
}
