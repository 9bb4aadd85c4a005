//! Role keyrings: `keys/<role>/*.asc`, public certificates only.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use openpgp::cert::CertParser;
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::types::RevocationStatus;
use openpgp::{Cert, KeyHandle};
use sequoia_openpgp as openpgp;

use super::SigningError;

/// A certificate and the role keyring it came from.
#[derive(Debug, Clone)]
pub struct RoleCert {
    pub role: String,
    pub file: PathBuf,
    /// The person: normalized e-mail of the primary user id, or the fingerprint.
    pub principal: String,
    pub(super) cert: Cert,
}

/// A person in two role keyrings — one certificate in both, or one
/// certificate in each with the same e-mail: a separation-of-duties violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleConflict {
    pub fingerprint: String,
    /// Set when two different certificates share this principal.
    pub principal: Option<String>,
    pub first: (String, PathBuf),
    pub second: (String, PathBuf),
}

impl fmt::Display for RoleConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.principal {
            None => write!(
                f,
                "certificate {} is in two role keyrings, {} ({}) and {} ({}): one person cannot sign in two roles (separation of duties)",
                self.fingerprint,
                self.first.0,
                self.first.1.display(),
                self.second.0,
                self.second.1.display()
            ),
            Some(who) => write!(
                f,
                "{who} has certificates in two role keyrings, {} ({}) and {} ({}): one person cannot sign in two roles (separation of duties)",
                self.first.0,
                self.first.1.display(),
                self.second.0,
                self.second.1.display()
            ),
        }
    }
}

/// All role keyrings of a project.
#[derive(Debug, Clone, Default)]
pub struct Keyrings {
    certs: Vec<RoleCert>,
    conflicts: Vec<RoleConflict>,
    dirs: Vec<(String, PathBuf)>,
    /// Files in a keyring directory that are not certificates, and what they are.
    ignored: Vec<(PathBuf, String)>,
}

/// What `keys list` shows about one certificate.
#[derive(Debug, Clone)]
pub struct CertSummary {
    pub role: String,
    pub file: PathBuf,
    pub fingerprint: String,
    pub userids: Vec<String>,
    pub expires: Option<SystemTime>,
    pub revoked: bool,
    /// Why the certificate cannot sign now, if it cannot.
    pub problem: Option<String>,
}

impl Keyrings {
    /// Loads every `*.asc` / `*.pgp` file of every role directory. Hidden files
    /// are ignored; any other file is an error. A certificate in two roles is
    /// recorded as a conflict (see [`Keyrings::check_separation`]).
    pub fn load(dirs: &[(String, PathBuf)]) -> Result<Self, SigningError> {
        let mut files = Vec::new();
        for (role, dir) in dirs {
            let entries = match std::fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(SigningError::Io {
                        path: dir.clone(),
                        source,
                    });
                }
            };
            for entry in entries {
                let entry = entry.map_err(|source| SigningError::Io {
                    path: dir.clone(),
                    source,
                })?;
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let bytes =
                    crate::limits::read(&path, crate::limits::CERTIFICATE).map_err(|message| {
                        SigningError::BadCertificate {
                            path: path.clone(),
                            message,
                        }
                    })?;
                files.push((role.clone(), path, bytes));
            }
        }
        Self::from_files(dirs, files)
    }

    /// Builds keyrings from files already read (from the work tree or from
    /// git): (role, path for messages, bytes). Hidden files must be left out
    /// by the caller; any other file not named `*.asc` or `*.pgp` is an error.
    pub fn from_files(
        dirs: &[(String, PathBuf)],
        mut files: Vec<(String, PathBuf, Vec<u8>)>,
    ) -> Result<Self, SigningError> {
        let mut keyrings = Self {
            dirs: dirs.to_vec(),
            ..Self::default()
        };
        let order = |role: &str| dirs.iter().position(|(r, _)| r == role);
        files.sort_by(|a, b| (order(&a.0), &a.1).cmp(&(order(&b.0), &b.1)));
        for (role, path, bytes) in files {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            // A revocation certificate next to its key is no key: say so in
            // `keys list`, count nothing.
            if name.ends_with(".rev.asc") {
                keyrings.ignored.push((
                    path,
                    "a revocation certificate (publish it if the key is lost); not a signing key"
                        .into(),
                ));
                continue;
            }
            if !(name.ends_with(".asc") || name.ends_with(".pgp")) {
                return Err(SigningError::BadCertificate {
                    path,
                    message: "keyring files must be named *.asc or *.pgp".into(),
                });
            }
            crate::limits::check(
                &path.display().to_string(),
                bytes.len() as u64,
                crate::limits::CERTIFICATE,
            )
            .map_err(|message| SigningError::BadCertificate {
                path: path.clone(),
                message,
            })?;
            keyrings.load_file(&role, &path, &bytes)?;
        }
        Ok(keyrings)
    }

    /// Files the keyrings skipped, and what each is.
    pub fn ignored(&self) -> &[(PathBuf, String)] {
        &self.ignored
    }

    fn load_file(&mut self, role: &str, path: &Path, bytes: &[u8]) -> Result<(), SigningError> {
        let bad = |message: String| SigningError::BadCertificate {
            path: path.to_owned(),
            message,
        };
        let parser = CertParser::from_bytes(bytes).map_err(|e| bad(e.to_string()))?;
        let mut count = 0;
        for cert in parser {
            let cert = cert.map_err(|e| bad(e.to_string()))?;
            count += 1;
            if cert.is_tsk() {
                return Err(SigningError::SecretInKeyring {
                    path: path.to_owned(),
                });
            }
            let fpr = cert.fingerprint();
            if let Some(existing) = self.certs.iter_mut().find(|c| c.cert.fingerprint() == fpr) {
                if existing.role == role {
                    existing.cert = existing
                        .cert
                        .clone()
                        .merge_public(cert)
                        .map_err(|e| bad(e.to_string()))?;
                } else {
                    self.conflicts.push(RoleConflict {
                        fingerprint: fpr.to_hex(),
                        principal: None,
                        first: (existing.role.clone(), existing.file.clone()),
                        second: (role.to_owned(), path.to_owned()),
                    });
                }
                continue;
            }
            let principal = super::principal_of(&cert);
            if let Some(other) = self
                .certs
                .iter()
                .find(|c| c.principal == principal && c.role != role)
            {
                self.conflicts.push(RoleConflict {
                    fingerprint: fpr.to_hex(),
                    principal: Some(principal.clone()),
                    first: (other.role.clone(), other.file.clone()),
                    second: (role.to_owned(), path.to_owned()),
                });
            }
            self.certs.push(RoleCert {
                role: role.to_owned(),
                file: path.to_owned(),
                principal,
                cert,
            });
        }
        if count == 0 {
            return Err(bad("contains no certificate".into()));
        }
        Ok(())
    }

    /// Fails on the first certificate that is in two roles.
    pub fn check_separation(&self) -> Result<(), SigningError> {
        match self.conflicts.first() {
            Some(c) => Err(SigningError::Conflict(Box::new(c.clone()))),
            None => Ok(()),
        }
    }

    pub fn conflicts(&self) -> &[RoleConflict] {
        &self.conflicts
    }

    /// The certificate that holds any of the keys `handles`.
    pub(super) fn find(&self, handles: &[KeyHandle]) -> Option<&RoleCert> {
        self.certs
            .iter()
            .find(|c| super::cert_has_key(&c.cert, handles))
    }

    /// The role of the certificate with primary fingerprint `fingerprint`.
    pub fn role_of(&self, fingerprint: &str) -> Option<&str> {
        self.certs
            .iter()
            .find(|c| {
                c.cert
                    .fingerprint()
                    .to_hex()
                    .eq_ignore_ascii_case(fingerprint)
            })
            .map(|c| c.role.as_str())
    }

    /// The certificates of `role`: (fingerprint, principal, primary user id).
    pub fn members(&self, role: &str) -> Vec<(String, String, String)> {
        self.certs
            .iter()
            .filter(|c| c.role == role)
            .map(|c| {
                let userid = c
                    .cert
                    .userids()
                    .next()
                    .map(|u| String::from_utf8_lossy(u.userid().value()).into_owned())
                    .unwrap_or_default();
                (c.cert.fingerprint().to_hex(), c.principal.clone(), userid)
            })
            .collect()
    }

    /// The armored public certificate with primary fingerprint `fingerprint`.
    pub fn armored(&self, fingerprint: &str) -> Option<Vec<u8>> {
        use openpgp::serialize::SerializeInto;
        self.certs
            .iter()
            .find(|c| {
                c.cert
                    .fingerprint()
                    .to_hex()
                    .eq_ignore_ascii_case(fingerprint)
            })
            .and_then(|c| c.cert.armored().to_vec().ok())
    }

    /// The role directories, for messages.
    pub fn dirs(&self) -> String {
        self.dirs
            .iter()
            .map(|(role, dir)| format!("{role}: {}", dir.display()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Role names in configuration order.
    pub fn roles(&self) -> impl Iterator<Item = &str> {
        self.dirs.iter().map(|(r, _)| r.as_str())
    }

    /// One summary per certificate, in role then file order.
    pub fn summaries(&self, now: SystemTime) -> Vec<CertSummary> {
        let policy = StandardPolicy::new();
        let mut out: Vec<CertSummary> = self
            .certs
            .iter()
            .map(|rc| {
                let cert = &rc.cert;
                let userids = cert
                    .userids()
                    .map(|u| String::from_utf8_lossy(u.userid().value()).into_owned())
                    .collect();
                let revoked = matches!(
                    cert.revocation_status(&policy, now),
                    RevocationStatus::Revoked(_)
                );
                let (expires, problem) = match cert.with_policy(&policy, now) {
                    Ok(vc) => {
                        let expires = vc.primary_key().key_expiration_time();
                        let problem = if revoked {
                            Some("revoked".to_owned())
                        } else if let Err(e) = vc.alive() {
                            Some(format!("expired: {e}"))
                        } else if vc
                            .keys()
                            .for_signing()
                            .alive()
                            .revoked(false)
                            .next()
                            .is_none()
                        {
                            Some("no valid signing key".to_owned())
                        } else {
                            None
                        };
                        (expires, problem)
                    }
                    Err(e) => (
                        None,
                        Some(format!("not valid under the standard policy: {e}")),
                    ),
                };
                CertSummary {
                    role: rc.role.clone(),
                    file: rc.file.clone(),
                    fingerprint: cert.fingerprint().to_hex(),
                    userids,
                    expires,
                    revoked,
                    problem,
                }
            })
            .collect();
        let order: Vec<&str> = self.roles().collect();
        out.sort_by_key(|s| (order.iter().position(|r| *r == s.role), s.file.clone()));
        out
    }
}
