//! `promoter sign` and `promoter approve`: detached signatures over `SHA256SUMS`.

use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context as _;
use serde::Serialize;

use super::{CommandError, Context};
use crate::changeset::{Bundle, SIGNATURES_DIR};
use crate::cli::{KeySource, SignArgs};
use crate::output;
use crate::signing::{
    self, Keyrings, NOTATION_CHANGESET, NOTATION_ROLE, SigningKey, Verdict, gpg_certificate,
    gpg_sign,
};

use crate::policy::SIGNING_ROLE;

/// JSON: one signature made by `sign` or `approve`.
#[derive(Serialize)]
struct SignView {
    /// Changeset id.
    id: String,
    /// The bundle hash the signature covers (sha256 of `SHA256SUMS`).
    bundle_hash: String,
    /// The signer's role, from the keyring that holds the certificate.
    role: String,
    /// The signer's primary fingerprint.
    fingerprint: String,
    /// The signature file written.
    file: String,
}

/// Who signs: a loaded secret key or a gpg key id, with its certificate's
/// fingerprint and role.
enum Signer {
    Key(Box<SigningKey>),
    Gpg(String),
}

/// Signs changesets in the role of the keyring that holds the signer's certificate.
pub fn run_sign(ctx: &Context, args: &SignArgs) -> anyhow::Result<ExitCode> {
    sign(ctx, &args.changesets, &args.key)
}

/// Reads the passphrase from PROMOTER_PASSPHRASE, or asks on a terminal.
pub fn passphrase(prompt: &str) -> Option<String> {
    if let Ok(p) = std::env::var("PROMOTER_PASSPHRASE") {
        return Some(p);
    }
    if output::stdin_is_terminal() {
        return rpassword::prompt_password(prompt).ok();
    }
    None
}

/// Signs each changeset's `SHA256SUMS` with `source`. The role comes from the
/// keyring holding the signer's certificate (never from a flag), the bundle
/// must be intact, and every new signature is verified before it is written.
fn sign(ctx: &Context, changesets: &[String], source: &KeySource) -> anyhow::Result<ExitCode> {
    let keyrings = ctx.keyrings()?;
    let (mut signer, fingerprint, userid) = match (&source.key, &source.gpg) {
        (Some(path), _) => {
            let key = SigningKey::load(path, || {
                passphrase(&format!("passphrase for {}: ", path.display()))
            })?;
            let fpr = key.fingerprint();
            (Signer::Key(Box::new(key)), fpr, String::new())
        }
        (None, Some(key_id)) => {
            let (fpr, userid) = gpg_certificate(key_id)?;
            (Signer::Gpg(key_id.clone()), fpr, userid)
        }
        (None, None) => unreachable!("clap requires --key or --gpg"),
    };
    let role = keyrings
        .role_of(&fingerprint)
        .ok_or_else(|| {
            CommandError::usage(format!(
                "certificate {fingerprint}{} is in no role keyring ({})",
                if userid.is_empty() { String::new() } else { format!(" ({userid})") },
                keyrings.dirs()
            ))
            .with_hint("commit its public certificate to the keyring of its role first (`gpg --armor --export KEYID > keys/developers/NAME.asc`)")
        })?
        .to_owned();
    if role != SIGNING_ROLE {
        return Err(CommandError::usage(format!(
            "certificate {fingerprint} is in the {role} keyring; a {role} approves with a signed statement, not a signature over SHA256SUMS"
        ))
        .with_hint("promoter approve CHANGESET --key … (after testing it in the environment it was promoted to)")
        .into());
    }
    let mut views = Vec::new();
    for dir in ctx.select_dirs(changesets)? {
        let bundle = crate::changeset::source::load_dir(&dir)?;
        let (manifest_bytes, _) = bundle.sealed_manifest()?;
        let manifest_bytes = manifest_bytes.to_vec();
        refuse_modified(&bundle)?;
        let id = bundle.id.to_string();
        let hash = signing_hash(&manifest_bytes);
        let notations: Vec<(&str, &str)> = vec![(NOTATION_ROLE, &role), (NOTATION_CHANGESET, &id)];
        let armored = match &mut signer {
            Signer::Key(key) => key.sign(&manifest_bytes, &notations),
            Signer::Gpg(key_id) => gpg_sign(key_id, &manifest_bytes, &notations),
        }
        .with_context(|| {
            format!(
                "signing {}/SHA256SUMS as {role} {fingerprint}",
                bundle.location
            )
        })?;
        check_own_signature(&keyrings, &manifest_bytes, &id, &armored)?;
        let sig_dir = dir.path.join(SIGNATURES_DIR);
        std::fs::create_dir_all(&sig_dir)
            .map_err(|e| anyhow::anyhow!("{}: {e}", sig_dir.display()))?;
        let name = format!("{role}-{fingerprint}.asc");
        let path = sig_dir.join(&name);
        std::fs::write(&path, &armored).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        views.push(SignView {
            id,
            bundle_hash: hash.clone(),
            role: role.clone(),
            fingerprint: fingerprint.clone(),
            file: format!("{}/{SIGNATURES_DIR}/{name}", bundle.location),
        });
    }
    if ctx.json {
        /// JSON: `promoter --json sign` and `approve`.
        #[derive(Serialize)]
        struct SignedView<'a> {
            /// One signature per changeset, in id order.
            signatures: &'a [SignView],
        }
        output::print_json(&SignedView { signatures: &views })?;
    } else {
        for v in &views {
            output::print(&format!(
                "signed {}  {}  as {} {}",
                v.id, v.bundle_hash, v.role, v.fingerprint
            ))?;
            output::print(&format!("  wrote {}", v.file))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn signing_hash(manifest: &[u8]) -> String {
    crate::changeset::bundle_hash(manifest).to_hex()
}

/// Never sign a bundle whose files differ from its manifest.
pub(super) fn refuse_modified(bundle: &Bundle) -> anyhow::Result<()> {
    let problems = bundle.check_files()?;
    if problems.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = problems
        .iter()
        .map(|p| format!("  {}/{p}", bundle.location))
        .collect();
    Err(CommandError::usage(format!(
        "{}: files differ from SHA256SUMS; refusing to sign\n{}",
        bundle.id,
        list.join("\n")
    ))
    .with_hint(format!(
        "review the change, then `promoter seal {}`",
        bundle.id
    ))
    .into())
}

/// Verifies a signature we just made, so a broken gpg setup cannot write a useless file.
fn check_own_signature(
    keyrings: &Keyrings,
    manifest: &[u8],
    id: &str,
    armored: &[u8],
) -> anyhow::Result<()> {
    let reports = signing::verify_signatures(
        keyrings,
        manifest,
        id,
        &[("new signature", armored)],
        SystemTime::now(),
    );
    for r in &reports {
        if let Verdict::Bad(why) = &r.verdict {
            return Err(CommandError::usage(format!(
                "{id}: the new signature does not verify: {why}"
            ))
            .into());
        }
    }
    Ok(())
}
