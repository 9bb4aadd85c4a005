//! `promoter keys generate` and `promoter keys list`.

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::{CommandError, Context};
use crate::cli::GenerateArgs;
use crate::output;
use crate::signing;

/// JSON: `promoter --json keys generate`.
#[derive(Serialize)]
struct GeneratedView {
    /// Primary key fingerprint (40 upper-case hex digits).
    fingerprint: String,
    /// Path of the armored public certificate: commit it to a role keyring.
    public: String,
    /// Path of the armored secret key (mode 0600): keep it private.
    secret: String,
    /// Path of a revocation certificate, to publish if the key is lost.
    revocation: String,
}

/// Writes a new key's public certificate, secret key (mode 0600, encrypted
/// with `PROMOTER_PASSPHRASE` if set) and revocation certificate. Refuses to
/// overwrite files.
pub fn generate(ctx: &Context, args: &GenerateArgs) -> anyhow::Result<ExitCode> {
    let valid_for = (args.valid_days > 0).then(|| Duration::from_secs(args.valid_days * 86_400));
    let passphrase = std::env::var("PROMOTER_PASSPHRASE")
        .ok()
        .filter(|p| !p.is_empty());
    let key = signing::generate_key(&args.name, valid_for, passphrase)?;
    let out = if args.out.is_absolute() {
        args.out.clone()
    } else {
        ctx.root.join(&args.out)
    };
    std::fs::create_dir_all(&out).map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
    let files = [
        (format!("{}.asc", key.fingerprint), &key.public),
        (format!("{}.secret.asc", key.fingerprint), &key.secret),
        (format!("{}.rev.asc", key.fingerprint), &key.revocation),
    ];
    for (name, bytes) in &files {
        let path = out.join(name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            if name.ends_with(".secret.asc") {
                options.mode(0o600);
            }
        }
        let mut file = options
            .open(&path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        use std::io::Write;
        file.write_all(bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    let shown = |i: usize| out.join(&files[i].0).display().to_string();
    let view = GeneratedView {
        fingerprint: key.fingerprint.clone(),
        public: shown(0),
        secret: shown(1),
        revocation: shown(2),
    };
    if ctx.json {
        output::print_json(&view)?;
    } else {
        output::print(&format!("generated {} ({})", view.fingerprint, args.name))?;
        output::print(&format!("  public certificate  {}", view.public))?;
        output::print(&format!(
            "  secret key          {}   (keep it private)",
            view.secret
        ))?;
        output::print(&format!(
            "  revocation          {}   (keep it safe)",
            view.revocation
        ))?;
        output::print(
            "next: copy the public certificate into keys/developers/ or keys/customers/ and commit it",
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// JSON: one certificate of `keys list`.
#[derive(Serialize)]
struct CertView {
    /// The role keyring that holds it.
    role: String,
    /// Its file, relative to the project.
    file: String,
    /// Primary key fingerprint.
    fingerprint: String,
    /// Every user id on the certificate.
    userids: Vec<String>,
    /// Expiry of the primary key (RFC 3339), null if it never expires.
    expires: Option<String>,
    /// Whether the certificate is revoked.
    revoked: bool,
    /// Whether it can make signatures that count today.
    usable: bool,
    /// Why not, if not.
    problem: Option<String>,
}

/// JSON: `promoter --json keys list`.
#[derive(Serialize)]
struct ListView {
    /// Every certificate, by role then file.
    certificates: Vec<CertView>,
    /// Configuration errors (a certificate in two roles).
    errors: Vec<String>,
}

/// Lists certificates per role; a certificate in two roles is reported and
/// makes the command fail (separation of duties).
pub fn list(ctx: &Context) -> anyhow::Result<ExitCode> {
    let keyrings = ctx.keyrings_unchecked()?;
    let now = SystemTime::now();
    let view = ListView {
        certificates: keyrings
            .summaries(now)
            .into_iter()
            .map(|s| CertView {
                role: s.role,
                file: ctx.relative(&s.file).display().to_string(),
                fingerprint: s.fingerprint,
                userids: s.userids,
                expires: s.expires.map(output::format_time),
                revoked: s.revoked,
                usable: s.problem.is_none(),
                problem: s.problem,
            })
            .collect(),
        errors: keyrings
            .conflicts()
            .iter()
            .map(ToString::to_string)
            .collect(),
    };
    if ctx.json {
        output::print_json(&view)?;
    } else {
        let mut rows = vec![vec![
            "ROLE".to_owned(),
            "FINGERPRINT".to_owned(),
            "EXPIRES".to_owned(),
            "STATE".to_owned(),
            "USER IDS".to_owned(),
        ]];
        for c in &view.certificates {
            rows.push(vec![
                c.role.clone(),
                c.fingerprint.clone(),
                c.expires.clone().unwrap_or_else(|| "never".into()),
                c.problem.clone().unwrap_or_else(|| "ok".into()),
                c.userids.join(", "),
            ]);
        }
        if view.certificates.is_empty() {
            output::print(&format!("no certificates ({})", keyrings.dirs()))?;
        } else {
            for line in output::table(&rows) {
                output::print(&line)?;
            }
        }
        for e in &view.errors {
            output::eprint(&format!("error: {e}"));
        }
    }
    if let Some(conflict) = keyrings.conflicts().first() {
        return Err(
            CommandError::usage(format!("configuration error: {conflict}"))
                .with_hint("remove the certificate from one of the role keyrings")
                .into(),
        );
    }
    Ok(ExitCode::SUCCESS)
}
