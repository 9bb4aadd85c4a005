//! The bundle check: a bundle's files against its `SHA256SUMS`, its scripts
//! against what can run faithfully, its signatures against the keyrings, and
//! optionally an environment's signature requirements. Pure: bytes in, a
//! [`BundleCheck`] out; `verify`, `apply`, `promote` and `status` share it.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

use crate::approval::Statement;
use crate::changeset::{Bundle, ChangesetMeta, Sha256Digest};
use crate::output;
use crate::plan::Refusal;
use crate::policy::SIGNING_ROLE;
use crate::signing::{self, Keyrings, Shortfall, SignatureReport, Verdict};

/// JSON view of one signature.
#[derive(Debug, Serialize)]
pub struct SignatureView {
    pub file: String,
    pub good: bool,
    pub reason: Option<String>,
    pub fingerprint: Option<String>,
    pub issuer: Option<String>,
    pub userid: Option<String>,
    /// The person: normalized e-mail of the primary user id, or the fingerprint.
    pub principal: Option<String>,
    pub role: Option<String>,
    pub created: Option<String>,
}

impl From<&SignatureReport> for SignatureView {
    fn from(r: &SignatureReport) -> Self {
        Self {
            file: r.file.clone(),
            good: r.is_good(),
            reason: match &r.verdict {
                Verdict::Good => None,
                Verdict::Bad(why) => Some(why.clone()),
            },
            fingerprint: r.fingerprint.clone(),
            issuer: r.issuer.clone(),
            userid: r.userid.clone(),
            principal: r.principal.clone(),
            role: r.role.clone(),
            created: r.created.map(output::format_time),
        }
    }
}

/// The result of checking one bundle.
#[derive(Debug, Serialize)]
pub struct BundleCheck {
    pub id: String,
    pub bundle_hash: Option<Sha256Digest>,
    /// Why the bundle could not be checked at all (not sealed, bad files…).
    pub error: Option<String>,
    /// Differences between the files and `SHA256SUMS`.
    pub file_problems: Vec<String>,
    /// What the scripts hold that cannot be executed faithfully (file:line).
    pub script_problems: Vec<String>,
    pub signatures: Vec<SignatureView>,
    /// Distinct good signers per role.
    pub signers: BTreeMap<String, usize>,
    /// Unmet requirements of the environment checked for.
    #[serde(serialize_with = "as_strings")]
    pub unmet: Vec<Shortfall>,
    /// Every approval statement, what it binds, and whether it still holds.
    pub approvals: Vec<ApprovalView>,
    /// `changeset.yaml` as checked: parsed from the bytes that were hashed
    /// against `SHA256SUMS`, so a run decides how the changeset runs from
    /// what was verified, not from a later read of the file.
    #[serde(skip)]
    pub meta: Option<ChangesetMeta>,
}

/// One approval statement as `verify` sees it (offline: whether the test
/// environment's receipt is real is checked by `promote`, against the
/// target's pinned keys).
#[derive(Debug, Serialize)]
pub struct ApprovalView {
    /// `approval-<FPR>.txt`
    pub file: String,
    /// Whether it counts for the environment checked (`--for`), as far as
    /// can be told offline.
    pub good: bool,
    /// Why not.
    pub reason: Option<String>,
    pub fingerprint: Option<String>,
    pub principal: Option<String>,
    pub role: Option<String>,
    /// The test environment and its ledger entry it rests on.
    pub tested_in: Option<String>,
    pub entry: Option<Sha256Digest>,
    pub receipt_key: Option<String>,
    pub opens: Vec<String>,
    pub expires: Option<String>,
}

fn as_strings<S: serde::Serializer>(v: &[Shortfall], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(ToString::to_string))
}

impl BundleCheck {
    /// Files intact and every signature good (and the environment's requirements met, if asked).
    pub fn ok(&self) -> bool {
        self.error.is_none()
            && self.file_problems.is_empty()
            && self.script_problems.is_empty()
            && self.signatures.iter().all(|s| s.good)
            && self.approvals.iter().all(|a| a.good)
            && self.unmet.is_empty()
    }

    /// A check of a bundle that could not even be loaded.
    pub fn unreadable(id: &str, message: String) -> Self {
        Self {
            id: id.to_owned(),
            bundle_hash: None,
            error: Some(message),
            file_problems: Vec::new(),
            script_problems: Vec::new(),
            signatures: Vec::new(),
            signers: BTreeMap::new(),
            unmet: Vec::new(),
            approvals: Vec::new(),
            meta: None,
        }
    }

    /// Everything that keeps the bundle from being applied, as refusals.
    /// Bad signatures that are not needed do not refuse: the requirements do.
    pub fn refusals(&self) -> Vec<Refusal> {
        let id = || self.id.clone();
        let mut out = Vec::new();
        if let Some(message) = &self.error {
            out.push(Refusal::Unreadable {
                id: id(),
                message: message.clone(),
            });
        }
        if !self.file_problems.is_empty() {
            out.push(Refusal::FilesModified {
                id: id(),
                problems: self.file_problems.clone(),
            });
        }
        out.extend(self.script_problems.iter().map(|p| Refusal::Script {
            id: id(),
            problem: p.clone(),
        }));
        // Missing signatures are noise next to a bundle that is not intact:
        // its signatures count for nothing until the files are right.
        if out.is_empty() {
            let not_counted: Vec<String> = self
                .signatures
                .iter()
                .filter_map(|s| {
                    s.reason
                        .as_ref()
                        .map(|r| format!("signatures/{}: {r}", s.file))
                })
                .collect();
            out.extend(self.unmet.iter().map(|s| Refusal::MissingSignatures {
                id: id(),
                role: s.role.clone(),
                need: s.need,
                have: s.have,
                not_counted: not_counted.clone(),
            }));
        }
        out
    }
}

/// Checks a bundle's files and signatures, and `require` if given: the
/// signing role (developers) counts signatures over `SHA256SUMS`; every other
/// role counts approval statements that open `target`.
pub fn check_bundle(
    keyrings: &Keyrings,
    bundle: &Bundle,
    require: Option<&BTreeMap<String, u32>>,
    target: Option<&str>,
    now: SystemTime,
) -> BundleCheck {
    let mut check = BundleCheck {
        id: bundle.id.to_string(),
        bundle_hash: bundle.hash(),
        error: None,
        file_problems: Vec::new(),
        script_problems: Vec::new(),
        signatures: Vec::new(),
        signers: BTreeMap::new(),
        unmet: Vec::new(),
        approvals: Vec::new(),
        meta: None,
    };
    let (manifest, sealed) = match bundle.sealed_manifest() {
        Ok((bytes, sealed)) => (bytes.to_vec(), sealed),
        Err(e) => {
            check.error = Some(e.to_string());
            return check;
        }
    };
    // One read of every file (which also validates changeset.yaml): hashed for
    // the manifest check, scripts split and checked on the way. Script
    // problems count only for the sealed bytes.
    match crate::sql::scan_bundle(bundle) {
        Ok(scan) => {
            check.file_problems = sealed
                .check(&scan.manifest)
                .iter()
                .map(|p| format!("{}/{p}", bundle.location))
                .collect();
            if check.file_problems.is_empty() {
                check.script_problems = scan.problems.iter().map(ToString::to_string).collect();
                check.meta = Some(scan.meta);
            }
        }
        Err(e) => check.error = Some(e.to_string()),
    }
    let (reports, signers, approvals) = signers_of(keyrings, bundle, &manifest, target, now);
    check.signers = signers;
    check.approvals = approvals;
    if let Some(require) = require {
        // Signatures over a modified bundle count for nothing.
        let none = BTreeMap::new();
        let counted = if check.file_problems.is_empty() && check.error.is_none() {
            &check.signers
        } else {
            &none
        };
        check.unmet = signing::shortfalls(require, counted);
    }
    check.signatures = reports
        .iter()
        .map(SignatureView::from)
        .map(|mut v| {
            if v.good && v.role.as_deref().is_some_and(|r| r != SIGNING_ROLE) {
                v.good = false;
                v.reason = Some(format!(
                    "a {} signature over SHA256SUMS counts for nothing: {}s sign approval statements (`promoter approve`)",
                    v.role.as_deref().unwrap_or("?"),
                    v.role.as_deref().unwrap_or("?")
                ));
            }
            v
        })
        .collect();
    check
}

/// The signatures over `manifest` (the sealed SHA256SUMS) and the approval
/// statements of `bundle`, and the distinct good signers per role they
/// give: developers by signature, the other roles by approval.
fn signers_of(
    keyrings: &Keyrings,
    bundle: &Bundle,
    manifest: &[u8],
    target: Option<&str>,
    now: SystemTime,
) -> (
    Vec<signing::SignatureReport>,
    BTreeMap<String, usize>,
    Vec<ApprovalView>,
) {
    let files: Vec<(&str, &[u8])> = bundle
        .manifest_signatures()
        .map(|s| (s.name.as_str(), s.bytes.as_slice()))
        .collect();
    let reports = signing::verify_signatures(keyrings, manifest, bundle.id.as_str(), &files, now);
    // Signatures over SHA256SUMS count for the signing role only; the others
    // approve with statements.
    let mut signers: BTreeMap<String, usize> = signing::signers_by_role(&reports)
        .into_iter()
        .filter(|(role, _)| role == SIGNING_ROLE)
        .collect();
    let approvals = check_approvals(keyrings, bundle, target, now);
    let mut approvers: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for a in approvals.iter().filter(|a| a.good) {
        if let (Some(role), Some(who)) = (&a.role, &a.principal) {
            approvers
                .entry(role.clone())
                .or_default()
                .insert(who.clone());
        }
    }
    for (role, who) in approvers {
        signers.insert(role, who.len());
    }
    (reports, signers, approvals)
}

/// The distinct good signers per role of `bundle`, as [`check_bundle`]
/// counts them, without reading its scripts (for `status`, which shows
/// modification from the hashes, not from this). Empty if it is not sealed.
pub fn signers(keyrings: &Keyrings, bundle: &Bundle, now: SystemTime) -> BTreeMap<String, usize> {
    match bundle.sealed_manifest() {
        Ok((bytes, _)) => signers_of(keyrings, bundle, bytes, None, now).1,
        Err(_) => BTreeMap::new(),
    }
}

/// Every approval statement of `bundle`: its signature against the
/// keyrings, and the fields that can be checked without the test
/// environment (this changeset, this bundle, `target` among what it opens,
/// not expired).
fn check_approvals(
    keyrings: &Keyrings,
    bundle: &Bundle,
    target: Option<&str>,
    now: SystemTime,
) -> Vec<ApprovalView> {
    let epoch = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    bundle
        .approvals()
        .into_iter()
        .map(|a| {
            let mut view = ApprovalView {
                file: a.name.to_owned(),
                good: false,
                reason: None,
                fingerprint: None,
                principal: None,
                role: None,
                tested_in: None,
                entry: None,
                receipt_key: None,
                opens: Vec::new(),
                expires: None,
            };
            let parsed = std::str::from_utf8(a.statement)
                .map_err(|e| e.to_string())
                .and_then(Statement::parse);
            let statement = match parsed {
                Ok(s) => s,
                Err(e) => {
                    view.reason = Some(e);
                    return view;
                }
            };
            view.tested_in = Some(statement.tested_in.clone());
            view.entry = Some(statement.entry);
            view.receipt_key = Some(statement.receipt_key.clone());
            view.opens = statement.opens.clone();
            view.expires = Some(output::format_unix(statement.expires));
            let Some(sig) = a.signature else {
                view.reason = Some(format!("no signature ({}.asc)", a.name));
                return view;
            };
            let reports =
                signing::verify_detached(keyrings, a.statement, None, &[(a.name, sig)], now);
            let Some(r) = reports.first() else {
                view.reason = Some("contains no signature".into());
                return view;
            };
            view.fingerprint = r.fingerprint.clone();
            view.principal = r.principal.clone();
            view.role = r.role.clone();
            view.reason = match &r.verdict {
                signing::Verdict::Bad(why) => Some(why.clone()),
                signing::Verdict::Good if r.role.as_deref() == Some(SIGNING_ROLE) => Some(
                    "signed by a developer key; approvals come from the roles that approve".into(),
                ),
                signing::Verdict::Good if statement.changeset != bundle.id.as_str() => {
                    Some(format!("approves changeset {}", statement.changeset))
                }
                signing::Verdict::Good if Some(statement.bundle) != bundle.hash() => Some(format!(
                    "approves bundle {}, not this one",
                    statement.bundle.short()
                )),
                signing::Verdict::Good if statement.expires <= epoch => Some(format!(
                    "expired at {}",
                    output::format_unix(statement.expires)
                )),
                signing::Verdict::Good => match target {
                    Some(env) if !statement.opens.iter().any(|o| o == env) => {
                        Some(format!("opens {} only", statement.opens.join(", ")))
                    }
                    _ => None,
                },
            };
            view.good = view.reason.is_none();
            view
        })
        .collect()
}
