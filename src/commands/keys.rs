//! `promoter keys generate` and `promoter keys list`.

use std::path::{Path, PathBuf};
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

/// The passphrase that protects a new secret key: `PROMOTER_PASSPHRASE`,
/// or asked twice on a terminal; `None` only with `--no-passphrase`.
fn new_passphrase(args: &GenerateArgs) -> anyhow::Result<Option<String>> {
    if args.no_passphrase {
        return Ok(None);
    }
    if let Some(p) = std::env::var("PROMOTER_PASSPHRASE")
        .ok()
        .filter(|p| !p.is_empty())
    {
        return Ok(Some(p));
    }
    if !output::stdin_is_terminal() {
        return Err(CommandError::refused(
            "refusing to write an unprotected secret key: there is no terminal to ask for a passphrase on, and $PROMOTER_PASSPHRASE is not set",
        )
        .with_hint("set PROMOTER_PASSPHRASE, run it on a terminal, or pass --no-passphrase for a throw-away key")
        .into());
    }
    let first = rpassword::prompt_password("passphrase for the new secret key: ")?;
    if first.is_empty() {
        return Err(CommandError::refused(
            "an empty passphrase protects nothing; nothing was written",
        )
        .with_hint("pass --no-passphrase if the key really is to be unprotected")
        .into());
    }
    let second = rpassword::prompt_password("the same passphrase again: ")?;
    if first != second {
        return Err(
            CommandError::refused("the two passphrases differ; nothing was written").into(),
        );
    }
    Ok(Some(first))
}

/// `path` made absolute and without `.`/`..`, as far as it exists resolved
/// through symlinks (the rest kept as written).
fn normalized(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent.to_path_buf();
            }
            _ => break,
        }
    }
    let mut out = existing.canonicalize().unwrap_or(existing);
    for part in rest.iter().rev() {
        match part.to_str() {
            Some("..") => {
                out.pop();
            }
            Some(".") => {}
            _ => out.push(part),
        }
    }
    out
}

/// Writes a new key's public certificate, secret key (mode 0600, encrypted
/// with a passphrase unless `--no-passphrase`) and revocation certificate.
/// Refuses to overwrite files, and to write inside the project's
/// repository, where a secret key is one `git add -A` from being published.
pub fn generate(ctx: &Context, args: &GenerateArgs) -> anyhow::Result<ExitCode> {
    let valid_for = (args.valid_days > 0).then(|| Duration::from_secs(args.valid_days * 86_400));
    let out = normalized(&if args.out.is_absolute() {
        args.out.clone()
    } else {
        ctx.cwd.join(&args.out)
    });
    let root = normalized(&ctx.root);
    let repo = crate::changeset::source::work_tree(&root).unwrap_or(root);
    if out.starts_with(&repo) {
        return Err(CommandError::refused(format!(
            "--out {} is inside the repository {}: a secret key there is one `git add -A` away from being published",
            out.display(),
            repo.display()
        ))
        .with_hint("write keys outside the project, e.g. --out ~/.promoter-keys, and copy only the public <FPR>.asc into keys/")
        .into());
    }
    let passphrase = new_passphrase(args)?;
    let protected = passphrase.is_some();
    let key = signing::generate_key(&args.name, valid_for, passphrase)?;
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
            "  secret key          {}   (keep it private{})",
            view.secret,
            if protected {
                "; protected by its passphrase"
            } else {
                "; NOT protected by a passphrase"
            }
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
    /// Files in the keyring directories that are not certificates.
    ignored: Vec<IgnoredView>,
}

/// JSON: a file `keys list` skipped.
#[derive(Serialize)]
struct IgnoredView {
    /// Relative to the project.
    file: String,
    /// What it is.
    what: String,
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
        ignored: keyrings
            .ignored()
            .iter()
            .map(|(file, what)| IgnoredView {
                file: ctx.relative(file).display().to_string(),
                what: what.clone(),
            })
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
        for i in &view.ignored {
            output::eprint(&format!("note: {} is {}", i.file, i.what));
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
