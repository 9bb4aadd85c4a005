//! OpenPGP: keyrings per role, detached signatures over `SHA256SUMS`, their
//! verification, and key generation. The only module that names sequoia; the
//! rest of promoter sees bytes, fingerprints, roles and verdicts.
//!
//! Trust rules: Sequoia's `StandardPolicy` evaluated at the signature's
//! creation time *and* now (an expired or revoked key counts for nothing, even
//! for signatures it made while valid: the signer chooses the signature time);
//! text-mode signatures are refused; the role comes only from the keyring
//! directory that holds the verified certificate, never from a file name.

mod gpg;
mod keyring;
pub mod memo;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use openpgp::cert::amalgamation::ValidAmalgamation;
use openpgp::packet::signature::SignatureBuilder;
use openpgp::packet::signature::subpacket::NotationDataFlags;
use openpgp::parse::Parse;
use openpgp::policy::{HashAlgoSecurity, Policy, StandardPolicy};
use openpgp::serialize::{Serialize, SerializeInto};
use openpgp::types::{RevocationStatus, SignatureType};
use openpgp::{Cert, KeyHandle, Packet, PacketPile};
use sequoia_openpgp as openpgp;

pub use gpg::{gpg_certificate, gpg_sign};
pub use keyring::{CertSummary, Keyrings, RoleConflict};

/// Notation that binds a promoter signature to the signer's role.
pub const NOTATION_ROLE: &str = "role@promoter";
/// Notation that binds a promoter signature to the changeset id.
pub const NOTATION_CHANGESET: &str = "changeset@promoter";

/// Errors of the signing module.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not an OpenPGP certificate: {message}")]
    BadCertificate {
        path: std::path::PathBuf,
        message: String,
    },
    #[error(
        "{path}: contains secret key material; keyrings hold public certificates only (export with `gpg --armor --export`)"
    )]
    SecretInKeyring { path: std::path::PathBuf },
    #[error("{0}")]
    Conflict(Box<RoleConflict>),
    #[error("{path}: {message}")]
    SecretKey { path: String, message: String },
    #[error(
        "{path}: the secret key is protected by a passphrase; set PROMOTER_PASSPHRASE or run on a terminal"
    )]
    PassphraseNeeded { path: String },
    #[error("{path}: wrong passphrase")]
    WrongPassphrase { path: String },
    #[error("gpg: {0}")]
    Gpg(String),
    #[error("OpenPGP: {0}")]
    OpenPgp(String),
}

fn pgp_err(e: impl std::fmt::Display) -> SigningError {
    SigningError::OpenPgp(e.to_string())
}

/// The verdict on one signature packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Good,
    Bad(String),
}

/// What was found about one signature in one file.
#[derive(Debug, Clone)]
pub struct SignatureReport {
    /// The signature file's name in `signatures/` (never trusted for anything).
    pub file: String,
    /// Issuer key handle as written in the signature.
    pub issuer: Option<String>,
    /// Primary fingerprint of the certificate that made it, if known.
    pub fingerprint: Option<String>,
    pub userid: Option<String>,
    /// The person behind the certificate: the normalized e-mail of its
    /// primary user id, or its fingerprint when it has none.
    pub principal: Option<String>,
    /// Role of the keyring that holds the certificate.
    pub role: Option<String>,
    pub created: Option<SystemTime>,
    pub verdict: Verdict,
}

impl SignatureReport {
    pub fn is_good(&self) -> bool {
        self.verdict == Verdict::Good
    }
}

/// Verifies every signature in `files` over `manifest` (the bytes of
/// `SHA256SUMS`) for changeset `changeset_id`, as of `now`.
pub fn verify_signatures(
    keyrings: &Keyrings,
    manifest: &[u8],
    changeset_id: &str,
    files: &[(&str, &[u8])],
    now: SystemTime,
) -> Vec<SignatureReport> {
    verify_detached(keyrings, manifest, Some(changeset_id), files, now)
}

/// Verifies detached signatures over any `data` (a policy, an approval
/// statement, a ledger row): the same rules as for `SHA256SUMS`, and a
/// `changeset@promoter` notation, if present, must name `changeset_id`.
pub fn verify_detached(
    keyrings: &Keyrings,
    manifest: &[u8],
    changeset_id: Option<&str>,
    files: &[(&str, &[u8])],
    now: SystemTime,
) -> Vec<SignatureReport> {
    let mut out = Vec::new();
    for &(name, bytes) in files {
        let unreadable = |reason: String| SignatureReport {
            file: name.to_owned(),
            issuer: None,
            fingerprint: None,
            userid: None,
            principal: None,
            role: None,
            created: None,
            verdict: Verdict::Bad(reason),
        };
        // Every signature promoter checks passes here, whatever it came
        // from (a file, git, a ledger row's receipt): one size limit for all.
        if let Err(why) = crate::limits::check(name, bytes.len() as u64, crate::limits::SIGNATURE) {
            out.push(unreadable(why));
            continue;
        }
        let pile = match PacketPile::from_bytes(bytes) {
            Ok(pile) => pile,
            Err(e) => {
                out.push(unreadable(format!("not an OpenPGP signature: {e}")));
                continue;
            }
        };
        let mut found = 0;
        for packet in pile.descendants() {
            match packet {
                Packet::Signature(sig) => {
                    found += 1;
                    out.push(verify_one(keyrings, manifest, changeset_id, name, sig, now));
                }
                // A packet sequoia could not parse keeps its tag: a damaged
                // signature is "Unknown" with tag Signature, not another kind.
                Packet::Unknown(u) if u.tag() == openpgp::packet::Tag::Signature => {
                    out.push(unreadable(format!(
                        "damaged signature (the file was altered or truncated): {}",
                        u.error()
                    )));
                }
                other => {
                    out.push(unreadable(format!(
                        "contains a {} where only detached signatures belong",
                        other.tag()
                    )));
                }
            }
        }
        if found == 0 && !out.iter().any(|r| r.file == name) {
            out.push(unreadable("contains no signature".into()));
        }
    }
    out
}

fn verify_one(
    keyrings: &Keyrings,
    manifest: &[u8],
    changeset_id: Option<&str>,
    file: &str,
    sig: &openpgp::packet::Signature,
    now: SystemTime,
) -> SignatureReport {
    let policy = StandardPolicy::new();
    let issuers = sig.get_issuers();
    let mut report = SignatureReport {
        file: file.to_owned(),
        issuer: issuers.first().map(|h| h.to_hex()),
        fingerprint: None,
        userid: None,
        principal: None,
        role: None,
        created: sig.signature_creation_time(),
        verdict: Verdict::Good,
    };
    let bad = |mut r: SignatureReport, why: String| {
        r.verdict = Verdict::Bad(why);
        r
    };
    let notation = |name: &str| {
        sig.notation(name)
            .next()
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    let Some(created) = report.created else {
        return bad(report, "signature has no creation time".into());
    };
    let Some(entry) = keyrings.find(&issuers) else {
        let issuer = report.issuer.clone().unwrap_or_else(|| "unknown".into());
        return bad(
            report,
            format!(
                "unknown signer: key {issuer} is in no role keyring ({})",
                keyrings.dirs()
            ),
        );
    };
    report.fingerprint = Some(entry.cert.fingerprint().to_hex());
    report.role = Some(entry.role.clone());
    report.userid = primary_userid(&entry.cert, &policy);
    report.principal = Some(entry.principal.clone());

    match sig.typ() {
        SignatureType::Binary => {}
        SignatureType::Text => {
            return bad(
                report,
                "text-mode signature refused (made with --textmode or --clearsign); sign in binary mode".into(),
            );
        }
        other => return bad(report, format!("not a document signature (type {other})")),
    }
    // Which key made it, valid at the signature's creation time.
    let vc_then = match entry.cert.with_policy(&policy, created) {
        Ok(vc) => vc,
        Err(e) => {
            return bad(
                report,
                format!("certificate not valid at signature time: {e}"),
            );
        }
    };
    let Some(key_then) = vc_then
        .keys()
        .key_handles(issuers.iter().cloned())
        .for_signing()
        .next()
    else {
        return bad(
            report,
            "the issuing key is not a valid signing key at signature time".into(),
        );
    };
    if let Err(why) = floor(key_then.key(), sig) {
        return bad(report, why);
    }
    if let Err(e) = sig.verify_message(key_then.key(), manifest) {
        let mut why = format!("BAD signature: does not match these bytes ({e})");
        if let (Some(other), Some(id)) = (notation(NOTATION_CHANGESET), changeset_id)
            && other != id
        {
            why = format!("BAD signature: made for changeset {other}, not {id}");
        }
        return bad(report, why);
    }
    if let Err(e) = policy.signature(sig, HashAlgoSecurity::CollisionResistance) {
        return bad(report, format!("rejected by policy: {e}"));
    }
    if let Err(e) = sig.signature_alive(now, Duration::from_secs(300)) {
        return bad(report, format!("signature not alive now: {e}"));
    }
    if let Err(e) = key_then.alive() {
        return bad(report, format!("key was not alive when it signed: {e}"));
    }
    if let RevocationStatus::Revoked(_) = vc_then.revocation_status() {
        return bad(report, "certificate is revoked".into());
    }
    if let RevocationStatus::Revoked(_) = key_then.revocation_status() {
        return bad(report, "signing key is revoked".into());
    }
    // And now: expired or revoked keys count for nothing.
    let vc_now = match entry.cert.with_policy(&policy, now) {
        Ok(vc) => vc,
        Err(e) => return bad(report, format!("certificate not valid now: {e}")),
    };
    if let RevocationStatus::Revoked(_) = vc_now.revocation_status() {
        return bad(report, "certificate is revoked".into());
    }
    if let Err(e) = vc_now.alive() {
        return bad(report, format!("certificate has expired: {e}"));
    }
    match vc_now
        .keys()
        .key_handles(issuers.iter().cloned())
        .for_signing()
        .next()
    {
        None => return bad(report, "signing key is no longer valid".into()),
        Some(k) => {
            if let RevocationStatus::Revoked(_) = k.revocation_status() {
                return bad(report, "signing key is revoked".into());
            }
            if let Err(e) = k.alive() {
                return bad(report, format!("signing key has expired: {e}"));
            }
        }
    }
    if let (Some(other), Some(id)) = (notation(NOTATION_CHANGESET), changeset_id)
        && other != id
    {
        return bad(report, format!("made for changeset {other}, not {id}"));
    }
    if let Some(claimed) = notation(NOTATION_ROLE).filter(|r| r != &entry.role) {
        let role = entry.role.clone();
        return bad(
            report,
            format!("signed as {claimed}, but the certificate is in the {role} keyring"),
        );
    }
    report
}

fn primary_userid(cert: &Cert, policy: &dyn Policy) -> Option<String> {
    let from_valid = cert.with_policy(policy, None).ok().and_then(|vc| {
        vc.primary_userid()
            .ok()
            .map(|u| u.userid().value().to_vec())
    });
    from_valid
        .or_else(|| cert.userids().next().map(|u| u.userid().value().to_vec()))
        .map(|v| String::from_utf8_lossy(&v).into_owned())
}

/// promoter's floor on top of Sequoia's StandardPolicy, which still accepts
/// them: no DSA keys, no RSA keys below 2048 bits, no SHA-1 digests. It does
/// not depend on time, so it holds at signing time and now alike.
fn floor(
    key: &openpgp::packet::Key<
        openpgp::packet::key::PublicParts,
        openpgp::packet::key::UnspecifiedRole,
    >,
    sig: &openpgp::packet::Signature,
) -> Result<(), String> {
    use openpgp::types::{HashAlgorithm, PublicKeyAlgorithm};
    match key.pk_algo() {
        #[allow(deprecated)]
        PublicKeyAlgorithm::DSA => {
            return Err("weak algorithm: DSA keys count for nothing".into());
        }
        #[allow(deprecated)]
        PublicKeyAlgorithm::RSAEncryptSign | PublicKeyAlgorithm::RSASign => {
            let bits = key.mpis().bits().unwrap_or(0);
            if bits < 2048 {
                return Err(format!(
                    "weak algorithm: RSA-{bits} (at least 2048 bits are needed)"
                ));
            }
        }
        _ => {}
    }
    if sig.hash_algo() == HashAlgorithm::SHA1 {
        return Err("weak algorithm: SHA-1 digest".into());
    }
    Ok(())
}

/// The principal of a certificate: the normalized e-mail of its primary
/// user id (valid under the standard policy), or its own fingerprint when it
/// has none. Thresholds count principals, so two certificates of one person
/// count once.
pub(crate) fn principal_of(cert: &Cert) -> String {
    let policy = StandardPolicy::new();
    let email = cert
        .with_policy(&policy, None)
        .ok()
        .and_then(|vc| vc.primary_userid().ok().map(|u| u.userid().clone()))
        .or_else(|| cert.userids().next().map(|u| u.userid().clone()))
        .and_then(|u| u.email_normalized().ok().flatten());
    email.unwrap_or_else(|| cert.fingerprint().to_hex())
}

/// How many distinct principals (people) made a good signature, per role.
/// Copies of a signature, signatures by several subkeys of one certificate,
/// and signatures by two certificates of one person count once.
pub fn signers_by_role(reports: &[SignatureReport]) -> BTreeMap<String, usize> {
    let mut sets: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for r in reports.iter().filter(|r| r.is_good()) {
        if let (Some(role), Some(who)) = (&r.role, r.principal.as_ref().or(r.fingerprint.as_ref()))
        {
            sets.entry(role).or_default().insert(who);
        }
    }
    sets.into_iter()
        .map(|(role, fprs)| (role.to_owned(), fprs.len()))
        .collect()
}

/// A requirement that is not met: `need` distinct signers of `role`, `have` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    pub role: String,
    pub need: u32,
    pub have: u32,
}

impl std::fmt::Display for Shortfall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "needs {} {} {}{} from distinct people, has {}",
            self.need,
            self.role,
            if self.role == crate::policy::SIGNING_ROLE {
                "signature"
            } else {
                "approval"
            },
            if self.need == 1 { "" } else { "s" },
            self.have
        )
    }
}

/// Every role in `require` whose count of distinct good signers is short.
pub fn shortfalls(
    require: &BTreeMap<String, u32>,
    signers: &BTreeMap<String, usize>,
) -> Vec<Shortfall> {
    require
        .iter()
        .filter_map(|(role, &need)| {
            let have = signers.get(role).map_or(0, |&n| n as u32);
            (have < need).then(|| Shortfall {
                role: role.clone(),
                need,
                have,
            })
        })
        .collect()
}

/// A secret key ready to sign.
pub struct SigningKey {
    cert: Cert,
    keypair: openpgp::crypto::KeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("fingerprint", &self.cert.fingerprint().to_hex())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads an armored secret key from `path`. `passphrase` is asked only if
    /// the signing key is encrypted.
    pub fn load(
        path: &std::path::Path,
        passphrase: impl FnOnce() -> Option<String>,
    ) -> Result<Self, SigningError> {
        let shown = path.display().to_string();
        let secret_err = |message: String| SigningError::SecretKey {
            path: shown.clone(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|source| SigningError::Io {
            path: path.to_owned(),
            source,
        })?;
        let cert =
            Cert::from_bytes(&bytes).map_err(|e| secret_err(format!("not an OpenPGP key: {e}")))?;
        let policy = StandardPolicy::new();
        let vc = cert
            .with_policy(&policy, None)
            .map_err(|e| secret_err(format!("certificate not valid now: {e}")))?;
        let key = vc
            .keys()
            .for_signing()
            .alive()
            .revoked(false)
            .secret()
            .next()
            .ok_or_else(|| {
                secret_err("has no valid, unexpired signing key with secret material".into())
            })?
            .key()
            .clone();
        let key = if key.has_unencrypted_secret() {
            key
        } else {
            let pass = passphrase().ok_or_else(|| SigningError::PassphraseNeeded {
                path: shown.clone(),
            })?;
            key.decrypt_secret(&pass.into())
                .map_err(|_| SigningError::WrongPassphrase {
                    path: shown.clone(),
                })?
        };
        let keypair = key.into_keypair().map_err(|e| secret_err(e.to_string()))?;
        Ok(Self { cert, keypair })
    }

    /// Primary fingerprint of the certificate.
    pub fn fingerprint(&self) -> String {
        self.cert.fingerprint().to_hex()
    }

    /// Makes a detached, armored, binary-mode signature over `data` with
    /// non-critical notations (GnuPG rejects unknown critical ones).
    pub fn sign(
        &mut self,
        data: &[u8],
        notations: &[(&str, &str)],
    ) -> Result<Vec<u8>, SigningError> {
        let mut builder = SignatureBuilder::new(SignatureType::Binary);
        for (name, value) in notations {
            builder = builder
                .add_notation(
                    *name,
                    value.as_bytes(),
                    NotationDataFlags::empty().set_human_readable(),
                    false,
                )
                .map_err(pgp_err)?;
        }
        let sig = builder
            .sign_message(&mut self.keypair, data)
            .map_err(pgp_err)?;
        armor_signature(sig)
    }
}

fn armor_signature(sig: openpgp::packet::Signature) -> Result<Vec<u8>, SigningError> {
    let mut w = openpgp::armor::Writer::new(Vec::new(), openpgp::armor::Kind::Signature)
        .map_err(pgp_err)?;
    Packet::from(sig).serialize(&mut w).map_err(pgp_err)?;
    w.finalize().map_err(pgp_err)
}

/// Whoever signs: a secret key file, or a key held by gpg (agent, smartcard).
pub enum Signer {
    Key(Box<SigningKey>),
    Gpg { key_id: String, fingerprint: String },
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// `gpg:KEYID` signs through gpg; anything else is an armored secret key
    /// file (`passphrase` is asked only if it is encrypted).
    pub fn open(
        spec: &str,
        passphrase: impl FnOnce() -> Option<String>,
    ) -> Result<Self, SigningError> {
        match spec.strip_prefix("gpg:") {
            Some(key_id) => {
                let (fingerprint, _) = gpg_certificate(key_id)?;
                Ok(Self::Gpg {
                    key_id: key_id.to_owned(),
                    fingerprint,
                })
            }
            None => Ok(Self::Key(Box::new(SigningKey::load(
                std::path::Path::new(spec),
                passphrase,
            )?))),
        }
    }

    /// Primary fingerprint of the signer's certificate.
    pub fn fingerprint(&self) -> String {
        match self {
            Self::Key(k) => k.fingerprint(),
            Self::Gpg { fingerprint, .. } => fingerprint.clone(),
        }
    }

    /// A detached, armored, binary-mode signature over `data`.
    pub fn sign(
        &mut self,
        data: &[u8],
        notations: &[(&str, &str)],
    ) -> Result<Vec<u8>, SigningError> {
        match self {
            Self::Key(k) => k.sign(data, notations),
            Self::Gpg { key_id, .. } => gpg_sign(key_id, data, notations),
        }
    }
}

/// A freshly generated key.
#[derive(Debug)]
pub struct GeneratedKey {
    pub fingerprint: String,
    pub public: Vec<u8>,
    pub secret: Vec<u8>,
    pub revocation: Vec<u8>,
}

/// Generates an ed25519 certificate with a signing subkey for `userid`,
/// valid for `valid_for` (forever if `None`), its secret optionally encrypted.
pub fn generate_key(
    userid: &str,
    valid_for: Option<Duration>,
    passphrase: Option<String>,
) -> Result<GeneratedKey, SigningError> {
    let (cert, revocation) = openpgp::cert::CertBuilder::new()
        .add_userid(userid)
        .set_cipher_suite(openpgp::cert::CipherSuite::Cv25519)
        .set_validity_period(valid_for)
        .add_signing_subkey()
        .set_password(passphrase.map(Into::into))
        .generate()
        .map_err(pgp_err)?;
    let public = cert.armored().to_vec().map_err(pgp_err)?;
    let secret = cert.as_tsk().armored().to_vec().map_err(pgp_err)?;
    let revocation = armor_signature(revocation)?;
    Ok(GeneratedKey {
        fingerprint: cert.fingerprint().to_hex(),
        public,
        secret,
        revocation,
    })
}

/// Whether `handles` (issuer ids) name any key of `cert`.
fn cert_has_key(cert: &Cert, handles: &[KeyHandle]) -> bool {
    cert.keys()
        .key_handles(handles.iter().cloned())
        .next()
        .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(role: &str, fpr: &str, good: bool) -> SignatureReport {
        SignatureReport {
            file: "x.asc".into(),
            issuer: None,
            fingerprint: Some(fpr.into()),
            userid: None,
            // Two certificates of one person share the principal.
            principal: Some(fpr.trim_end_matches('2').to_lowercase()),
            role: Some(role.into()),
            created: None,
            verdict: if good {
                Verdict::Good
            } else {
                Verdict::Bad("no".into())
            },
        }
    }

    #[test]
    fn thresholds_count_distinct_good_certificates() {
        let reports = [
            report("developer", "A", true),
            report("developer", "A", true), // the same signature copied, or a second subkey
            report("developer", "B", false),
            report("customer", "C", true),
            report("customer", "C2", true), // a second certificate of the same person
        ];
        let signers = signers_by_role(&reports);
        let require = BTreeMap::from([("developer".to_owned(), 2), ("customer".to_owned(), 1)]);
        assert_eq!(
            shortfalls(&require, &signers),
            [Shortfall {
                role: "developer".into(),
                need: 2,
                have: 1
            }]
        );
        let require = BTreeMap::from([("developer".to_owned(), 1), ("auditor".to_owned(), 1)]);
        assert_eq!(shortfalls(&require, &signers)[0].role, "auditor");
    }

    #[test]
    fn generated_key_signs_and_verifies_with_notations() {
        let dir = tempfile::tempdir().unwrap();
        let dev_dir = dir.path().join("developers");
        std::fs::create_dir(&dev_dir).unwrap();
        let key = generate_key("Dev <dev@example.com>", None, None).unwrap();
        std::fs::write(dev_dir.join("dev.asc"), &key.public).unwrap();
        let secret = dir.path().join("dev.secret.asc");
        std::fs::write(&secret, &key.secret).unwrap();
        let keyrings = Keyrings::load(&[("developer".into(), dev_dir)]).unwrap();

        let mut signer = SigningKey::load(&secret, || None).unwrap();
        assert_eq!(signer.fingerprint(), key.fingerprint);
        let data = b"abc  001.sql\n";
        let sig = signer
            .sign(
                data,
                &[(NOTATION_ROLE, "developer"), (NOTATION_CHANGESET, "0001-a")],
            )
            .unwrap();
        let files = [("developer-x.asc", sig.as_slice())];
        let now = SystemTime::now();
        let good = verify_signatures(&keyrings, data, "0001-a", &files, now);
        assert_eq!(good.len(), 1);
        assert_eq!(good[0].verdict, Verdict::Good);
        assert_eq!(good[0].role.as_deref(), Some("developer"));
        assert_eq!(good[0].userid.as_deref(), Some("Dev <dev@example.com>"));

        let other_data = verify_signatures(&keyrings, b"other\n", "0001-a", &files, now);
        assert!(
            matches!(&other_data[0].verdict, Verdict::Bad(w) if w.starts_with("BAD signature"))
        );
        let other_id = verify_signatures(&keyrings, b"other\n", "0002-b", &files, now);
        assert!(
            matches!(&other_id[0].verdict, Verdict::Bad(w) if w.contains("made for changeset 0001-a")),
            "{other_id:?}"
        );
    }

    #[test]
    fn encrypted_key_needs_the_right_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let key = generate_key("Enc <enc@example.com>", None, Some("s3cret".into())).unwrap();
        let secret = dir.path().join("k.asc");
        std::fs::write(&secret, &key.secret).unwrap();
        assert!(matches!(
            SigningKey::load(&secret, || None),
            Err(SigningError::PassphraseNeeded { .. })
        ));
        assert!(matches!(
            SigningKey::load(&secret, || Some("wrong".into())),
            Err(SigningError::WrongPassphrase { .. })
        ));
        assert!(SigningKey::load(&secret, || Some("s3cret".into())).is_ok());
    }
}
