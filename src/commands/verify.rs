//! `promoter verify`: files against the manifest, every signature, and
//! optionally an environment's signature requirements.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::SystemTime;

use serde::Serialize;

use super::Context;
use crate::changeset::Bundle;
use crate::cli::VerifyArgs;
use crate::output;
use crate::signing::{self, Keyrings, SignatureReport, Verdict};

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

/// The result of checking one bundle, shared with `promote` and `status`.
#[derive(Debug, Serialize)]
pub struct BundleCheck {
    pub id: String,
    pub bundle_hash: Option<String>,
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
    pub unmet: Vec<String>,
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
        bundle_hash: bundle.hash().map(|h| h.to_hex()),
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
        check.unmet = signing::shortfalls(require, counted)
            .iter()
            .map(ToString::to_string)
            .collect();
    }
    check.signatures = reports.iter().map(SignatureView::from).collect();
    check
}

/// Prints a bundle check for people.
pub fn print_check(check: &BundleCheck, for_env: Option<&str>) {
    output::print(&format!(
        "{}  {}",
        check.id,
        check.bundle_hash.as_deref().unwrap_or("(not sealed)")
    ));
    if let Some(e) = &check.error {
        output::print(&format!("  FAIL  {e}"));
        return;
    }
    if check.file_problems.is_empty() {
        output::print("  ok    files match SHA256SUMS");
    } else {
        for p in &check.file_problems {
            output::print(&format!("  FAIL  {p}"));
        }
    }
    for p in &check.script_problems {
        output::print(&format!("  FAIL  {p}"));
    }
    if check.signatures.is_empty() {
        output::print("  --    no signatures");
    }
    for s in &check.signatures {
        // Without a known certificate, the reason itself names the key.
        let who = match (&s.role, &s.fingerprint) {
            (Some(role), Some(fpr)) => format!(
                "{role} {fpr}{}",
                s.userid
                    .as_deref()
                    .map(|u| format!(" {u}"))
                    .unwrap_or_default()
            ),
            _ => String::new(),
        };
        let sep = if who.is_empty() { "" } else { ": " };
        match &s.reason {
            None => output::print(&format!(
                "  good  signatures/{}: {who}, made {}",
                s.file,
                s.created.as_deref().unwrap_or("-")
            )),
            Some(why) => output::print(&format!("  BAD   signatures/{}: {who}{sep}{why}", s.file)),
        }
    }
    if let Some(env) = for_env {
        if check.unmet.is_empty() {
            output::print(&format!("  ok    meets {env}'s requirements"));
        } else {
            for u in &check.unmet {
                let what = if u.contains(" customer ") {
                    "missing customer approval: "
                } else {
                    ""
                };
                output::print(&format!("  FAIL  not ready for {env}: {what}{u}"));
            }
            let verb = if check.unmet.iter().all(|u| u.contains(" customer ")) {
                "approve"
            } else {
                "sign"
            };
            output::print(&format!("  hint  promoter {verb} {}", check.id));
        }
    }
}

/// Verifies changesets; exit 0 only if every file, script and signature is
/// good and, with `--for`, the environment's requirements are met.
pub fn run(ctx: &Context, args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let config = match &args.for_env {
        Some(_) => Some(ctx.config()?),
        None => None,
    };
    let require = match (&config, &args.for_env) {
        (Some(c), Some(env)) => Some(c.environment(env)?.config.require.clone()),
        _ => None,
    };
    let keyrings = ctx.keyrings()?;
    let now = SystemTime::now();
    let mut checks = Vec::new();
    for dir in ctx.select_dirs(&args.changesets)? {
        let check = match crate::changeset::source::load_dir(&dir) {
            Ok(bundle) => check_bundle(&keyrings, &bundle, require.as_ref(), now),
            Err(e) => BundleCheck {
                id: dir.id.to_string(),
                bundle_hash: None,
                error: Some(e.to_string()),
                file_problems: Vec::new(),
                script_problems: Vec::new(),
                signatures: Vec::new(),
                signers: BTreeMap::new(),
                unmet: Vec::new(),
            },
        };
        checks.push(check);
    }
    let all_ok = checks.iter().all(BundleCheck::ok);
    if ctx.json {
        output::print_json(&checks)?;
    } else {
        for c in &checks {
            print_check(c, args.for_env.as_deref());
        }
        let bad = checks.iter().filter(|c| !c.ok()).count();
        if bad > 0 {
            output::eprint(&format!(
                "{bad} of {} changesets failed verification",
                checks.len()
            ));
        }
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        super::failed()
    })
}
