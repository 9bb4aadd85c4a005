//! The bundle check: a bundle's files against its `SHA256SUMS`, its scripts
//! against what can run faithfully, its signatures against the keyrings, and
//! optionally an environment's signature requirements. Pure: bytes in, a
//! [`BundleCheck`] out; `verify`, `apply`, `promote` and `status` share it.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

use crate::changeset::{Bundle, Sha256Digest};
use crate::output;
use crate::plan::Refusal;
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
            out.extend(self.unmet.iter().map(|s| Refusal::MissingSignatures {
                id: id(),
                role: s.role.clone(),
                need: s.need,
                have: s.have,
            }));
        }
        out
    }
}

/// Checks a bundle's files and signatures, and `require` if given.
pub fn check_bundle(
    keyrings: &Keyrings,
    bundle: &Bundle,
    require: Option<&BTreeMap<String, u32>>,
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
            }
        }
        Err(e) => check.error = Some(e.to_string()),
    }
    let files: Vec<(&str, &[u8])> = bundle
        .signatures
        .iter()
        .map(|s| (s.name.as_str(), s.bytes.as_slice()))
        .collect();
    let reports = signing::verify_signatures(keyrings, &manifest, bundle.id.as_str(), &files, now);
    check.signers = signing::signers_by_role(&reports);
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
    check.signatures = reports.iter().map(SignatureView::from).collect();
    check
}
