//! `promoter trust pin|show|sign ENV`: the trust policy pinned in each
//! controlled environment's own database, derived from git. Also what
//! `apply` and `promote` need from git for trust: the keyrings, the
//! receipt-key certificates under `keys/environments/`, the policy git would
//! pin, and the environment's own receipt signer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;

use super::run::{self, StderrHooks};
use super::{CommandError, Context};
use crate::changeset::source;
use crate::cli::{TrustPinArgs, TrustShowArgs, TrustSignArgs};
use crate::config::{Config, Environment};
use crate::engine::{self, trust};
use crate::output;
use crate::policy::{PinnedKey, Policy, ReceiptKey};
use crate::signing::{self, Keyrings, Signer};

/// Where environments' receipt-key certificates are committed.
pub const RECEIPT_KEYS_DIR: &str = "keys/environments";

/// What git (or the work tree) says about trust.
pub struct GitTrust {
    pub config: Config,
    /// The role keyrings.
    pub keyrings: Keyrings,
    /// `keys/environments/<env>.asc`, each under the role `receipt:<env>`.
    pub receipt_certs: Keyrings,
}

impl GitTrust {
    /// Reads config, keyrings and receipt certificates from git at `commit`.
    pub fn at(ctx: &Context, commit: &str) -> anyhow::Result<Self> {
        let (config, keyrings) = super::promote::config_and_keyrings_at(ctx, commit)?;
        let files = source::read_dir_at(&ctx.root, commit, Path::new(RECEIPT_KEYS_DIR))?;
        let receipt_certs = receipt_keyrings(files)?;
        Ok(Self {
            config,
            keyrings,
            receipt_certs,
        })
    }

    /// Reads them from the work tree (for `apply`, and `trust sign`).
    pub fn work_tree(ctx: &Context) -> anyhow::Result<Self> {
        let config = ctx.config()?;
        let keyrings = ctx.keyrings()?;
        let dir = ctx.root.join(RECEIPT_KEYS_DIR);
        let mut files = Vec::new();
        if dir.is_dir() {
            for entry in
                std::fs::read_dir(&dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?
            {
                let entry = entry.map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let bytes = crate::limits::read(&entry.path(), crate::limits::CERTIFICATE)
                    .map_err(CommandError::usage)?;
                files.push((name, bytes));
            }
        }
        Ok(Self {
            config,
            keyrings,
            receipt_certs: receipt_keyrings(files)?,
        })
    }

    /// The receipt-key fingerprints committed for `env`.
    pub fn receipt_fingerprints(&self, env: &str) -> Vec<String> {
        self.receipt_certs
            .members(&format!("receipt:{env}"))
            .into_iter()
            .map(|(fpr, _, _)| fpr)
            .collect()
    }
}

fn receipt_keyrings(files: Vec<(String, Vec<u8>)>) -> anyhow::Result<Keyrings> {
    let mut out = Vec::new();
    for (name, bytes) in files {
        let Some(env) = name.strip_suffix(".asc") else {
            return Err(CommandError::usage(format!(
                "{RECEIPT_KEYS_DIR}/{name}: receipt-key certificates are named <environment>.asc"
            ))
            .into());
        };
        out.push((
            format!("receipt:{env}"),
            PathBuf::from(format!("{RECEIPT_KEYS_DIR}/{name}")),
            bytes,
        ));
    }
    Ok(Keyrings::from_files(&[], out)?)
}

/// The policy git gives `env`: its `require`, its `promote_from`, the people
/// and certificates of every required role, and the receipt keys of its
/// source; with the armored certificates of every key in it. An environment
/// whose customers approve takes its evidence only from receipts, so its
/// source must have a committed receipt certificate.
pub fn derive(
    git: &GitTrust,
    env: &Environment,
) -> anyhow::Result<(Policy, BTreeMap<String, String>)> {
    let mut keys = Vec::new();
    let mut certs = BTreeMap::new();
    for (role, need) in &env.config.require {
        if *need == 0 {
            continue;
        }
        for (fpr, principal, _) in git.keyrings.members(role) {
            if let Some(armored) = git.keyrings.armored(&fpr) {
                certs.insert(fpr.clone(), String::from_utf8_lossy(&armored).into_owned());
            }
            keys.push(PinnedKey {
                role: role.clone(),
                principal,
                fingerprint: fpr,
            });
        }
    }
    let mut receipt_keys = Vec::new();
    if let Some(from) = &env.config.promote_from {
        for fpr in git.receipt_fingerprints(from) {
            if let Some(armored) = git.receipt_certs.armored(&fpr) {
                certs.insert(fpr.clone(), String::from_utf8_lossy(&armored).into_owned());
            }
            receipt_keys.push(ReceiptKey {
                environment: from.clone(),
                fingerprint: fpr,
            });
        }
        let approving = crate::policy::approving_roles(&env.config.require)
            .next()
            .is_some();
        if approving && receipt_keys.is_empty() {
            return Err(CommandError::refused(format!(
                "{} needs approvals, which rest on {from}'s signed receipts, and {from} has no receipt certificate in {RECEIPT_KEYS_DIR}/{from}.asc",
                env.name
            ))
            .with_hint(format!(
                "make {from} a receipt key: `promoter keys generate --name \"{from} receipts\" --out DIR`, commit DIR/<FPR>.asc as {RECEIPT_KEYS_DIR}/{from}.asc, and set {from}'s receipt_key to DIR/<FPR>.secret.asc"
            ))
            .into());
        }
    }
    let policy = Policy {
        environment: env.name.clone(),
        promote_from: env.config.promote_from.clone(),
        require: env.config.require.clone(),
        keys,
        receipt_keys,
    }
    .normalized();
    Ok((policy, certs))
}

/// The signer of `env`'s receipts, if it has a receipt key: it must be the
/// key of a certificate committed as `keys/environments/<env>.asc`, or the
/// environment refuses to write (a receipt nobody downstream can check
/// proves nothing).
pub fn receipt_signer(git: &GitTrust, env: &Environment) -> anyhow::Result<Option<Signer>> {
    let Some(spec) = env.receipt_key()? else {
        return Ok(None);
    };
    let signer = Signer::open(&spec, || {
        super::sign::passphrase(&format!("passphrase for {}'s receipt key: ", env.name))
    })?;
    let committed = git.receipt_fingerprints(&env.name);
    if !committed
        .iter()
        .any(|f| f.eq_ignore_ascii_case(&signer.fingerprint()))
    {
        return Err(CommandError::refused(format!(
            "{}: its receipt_key is {}, but {RECEIPT_KEYS_DIR}/{}.asc holds {}; refusing to write rows nobody can check",
            env.name,
            signer.fingerprint(),
            env.name,
            if committed.is_empty() {
                "no certificate".to_owned()
            } else {
                committed.join(", ")
            }
        ))
        .with_hint(format!(
            "commit the receipt key's public certificate as {RECEIPT_KEYS_DIR}/{}.asc",
            env.name
        ))
        .into());
    }
    Ok(Some(signer))
}

/// The signer `--key FILE` or `--gpg KEYID` names, its fingerprint, and the
/// role of the keyring that holds its certificate.
pub fn open_signer(
    key: &crate::cli::KeySource,
    keyrings: &Keyrings,
) -> anyhow::Result<(Signer, String, String)> {
    let signer = match (&key.key, &key.gpg) {
        (Some(path), _) => Signer::open(&path.display().to_string(), || {
            super::sign::passphrase(&format!("passphrase for {}: ", path.display()))
        })?,
        (None, Some(id)) => Signer::open(&format!("gpg:{id}"), || None)?,
        (None, None) => unreachable!("clap requires --key or --gpg"),
    };
    let fpr = signer.fingerprint();
    let role = keyrings
        .role_of(&fpr)
        .ok_or_else(|| {
            CommandError::usage(format!(
                "certificate {fpr} is in no role keyring ({})",
                keyrings.dirs()
            ))
            .with_hint("commit its public certificate to the keyring of its role first")
        })?
        .to_owned();
    Ok((signer, fpr, role))
}

/// The policy as people read it.
fn print_policy(policy: &Policy, git: Option<&GitTrust>) -> std::io::Result<()> {
    let name_of = |fpr: &str| -> String {
        git.and_then(|g| {
            g.keyrings
                .roles()
                .flat_map(|r| g.keyrings.members(r))
                .find(|(f, _, _)| f == fpr)
                .map(|(_, _, uid)| uid)
        })
        .unwrap_or_default()
    };
    output::print(&format!("  environment   {}", policy.environment))?;
    output::print(&format!(
        "  promoted from {}",
        policy
            .promote_from
            .as_deref()
            .unwrap_or("(nothing: apply only)")
    ))?;
    for (role, need) in &policy.require {
        output::print(&format!("  requires      {need} {role} (distinct people)"))?;
        for k in policy.keys_of(role) {
            output::print(&format!(
                "    {role:<10} {:<28} {}  {}",
                k.principal,
                k.fingerprint,
                name_of(&k.fingerprint)
            ))?;
        }
    }
    for r in &policy.receipt_keys {
        output::print(&format!(
            "  receipts of {} signed by {}",
            r.environment, r.fingerprint
        ))?;
    }
    if policy.receipt_keys.is_empty() && policy.promote_from.is_some() {
        output::print("  receipts      none pinned (the source's ledger is trusted as read)")?;
    }
    Ok(())
}

/// JSON: `promoter --json trust pin`.
#[derive(Serialize)]
struct PinView<'a> {
    environment: &'a str,
    /// `first-use`, `signed`, `break-glass`, or `unchanged`.
    result: &'a str,
    policy_hash: String,
    seq: i64,
    policy: &'a Policy,
}

/// `promoter trust pin ENV`.
pub fn pin(ctx: &Context, args: &TrustPinArgs) -> anyhow::Result<ExitCode> {
    let commit = source::resolve_rev(&ctx.root, &args.rev)?;
    let git = GitTrust::at(ctx, &commit)?;
    let env = git.config.environment(&args.env)?;
    let (policy, certs) = derive(&git, &env)?;
    if !ctx.json {
        output::print(&format!(
            "trust policy for {} from git at {commit} ({}):",
            env.name, args.rev
        ))?;
        print_policy(&policy, Some(&git))?;
        output::print(&format!("  policy hash   {}", policy.hash()))?;
    }
    let mode = match (args.break_glass, &args.reason) {
        (true, Some(reason)) => trust::PinMode::BreakGlass {
            reason: reason.clone(),
        },
        _ => {
            let dir = Path::new("policy").join(&env.name);
            let signatures = source::read_dir_at(&ctx.root, &commit, &dir)?
                .into_iter()
                .filter(|(name, _)| name.ends_with(".asc"))
                .collect();
            trust::PinMode::Normal { signatures }
        }
    };
    let mut receipt = receipt_signer(&git, &env)?;
    let mut signer_fn = receipt.as_mut().map(|s| {
        move |bytes: &[u8]| {
            s.sign(bytes, &[])
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .map_err(|e| e.to_string())
        }
    });
    let mut sign: crate::db::ledger::RowSigner<'_> = signer_fn
        .as_mut()
        .map(|f| f as &mut dyn FnMut(&[u8]) -> Result<String, String>);
    let mut hooks = StderrHooks {
        assume_yes: args.yes,
        ..StderrHooks::default()
    };
    let outcome = ctx
        .block_on(trust::pin(
            &env,
            &git.config.file.ledger_schema,
            &policy,
            &certs,
            mode,
            Duration::from_secs(args.lock_wait),
            &git.keyrings,
            &mut sign,
            &mut hooks,
        ))
        .map_err(|e| run::error(e, false, ctx.json))?;
    let (result, record) = match &outcome {
        trust::Pinned::Unchanged(r) => ("unchanged", r),
        trust::Pinned::New { record, .. } => (record.kind.as_str(), record),
    };
    if ctx.json {
        output::print_json(&PinView {
            environment: &env.name,
            result,
            policy_hash: record.policy_hash.to_hex(),
            seq: record.seq,
            policy: &policy,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let line = match &outcome {
        trust::Pinned::Unchanged(_) => format!(
            "{} already has exactly this policy pinned (#{})",
            env.name, record.seq
        ),
        trust::Pinned::New { previous: None, .. } => format!(
            "pinned {}'s policy as trust on first use (#{}): from now on git's environments.yaml and keys/ decide nothing for {} without a signed re-pin",
            env.name, record.seq, env.name
        ),
        trust::Pinned::New { .. } => format!(
            "pinned {}'s new policy ({}, #{})",
            env.name,
            record.kind.as_str(),
            record.seq
        ),
    };
    output::unless_closed(output::print(&line))?;
    Ok(ExitCode::SUCCESS)
}

/// JSON: `promoter --json trust show`.
#[derive(Serialize)]
struct ShowView<'a> {
    environment: &'a str,
    pinned: Option<Policy>,
    policy_hash: Option<String>,
    history: Vec<HistoryView>,
    git_policy: Option<&'a Policy>,
    /// Lines that differ: `- ` pinned only, `+ ` git only.
    diff: Vec<String>,
}

#[derive(Serialize)]
struct HistoryView {
    seq: i64,
    kind: &'static str,
    reason: Option<String>,
    policy_hash: String,
    pinned_at: String,
    by: String,
}

/// `promoter trust show ENV`.
pub fn show(ctx: &Context, args: &TrustShowArgs) -> anyhow::Result<ExitCode> {
    let commit = source::resolve_rev(&ctx.root, &args.rev)?;
    let git = GitTrust::at(ctx, &commit)?;
    let env = git.config.environment(&args.env)?;
    let git_policy = derive(&git, &env).ok().map(|(p, _)| p);
    let pins = ctx.block_on(async {
        let mut conn = engine::connect(&env).await?;
        let pins =
            crate::db::policy::load(&mut conn, &env.name, &git.config.file.ledger_schema).await;
        crate::db::close(conn).await;
        pins
    })?;
    let current = pins.last().and_then(|r| r.parsed().ok());
    let diff = match (&current, &git_policy) {
        (Some(p), Some(g)) => g.diff(p),
        _ => Vec::new(),
    };
    let view = ShowView {
        environment: &env.name,
        policy_hash: current.as_ref().map(|p| p.hash().to_hex()),
        pinned: current.clone(),
        history: pins
            .iter()
            .map(|r| HistoryView {
                seq: r.seq,
                kind: r.kind.as_str(),
                reason: r.reason.clone(),
                policy_hash: r.policy_hash.to_hex(),
                pinned_at: output::format_micros(r.pinned_at),
                by: format!("{}@{} as {}", r.os_user, r.host, r.db_role),
            })
            .collect(),
        git_policy: git_policy.as_ref(),
        diff,
    };
    if ctx.json {
        output::print_json(&view)?;
        return Ok(ExitCode::SUCCESS);
    }
    let printed = (|| {
        match &current {
            None => output::print(&format!(
                "{}: no trust policy is pinned{}",
                env.name,
                if env.config.require.is_empty() {
                    ""
                } else {
                    " (it has `require`: nothing is promoted to it until `promoter trust pin` runs)"
                }
            ))?,
            Some(p) => {
                output::print(&format!("{}: pinned policy {}", env.name, p.hash()))?;
                print_policy(p, Some(&git))?;
            }
        }
        for h in &view.history {
            output::print(&format!(
                "  #{} {} {} by {}{}",
                h.seq,
                h.kind,
                h.pinned_at,
                h.by,
                h.reason
                    .as_deref()
                    .map(|r| format!(" — {r}"))
                    .unwrap_or_default()
            ))?;
        }
        if current.is_some() {
            if view.diff.is_empty() {
                output::print(&format!(
                    "git at {} ({commit}) gives the same policy",
                    args.rev
                ))?;
            } else {
                output::print(&format!(
                    "git at {} ({commit}) differs (git does not decide; a signed re-pin does):",
                    args.rev
                ))?;
                for d in &view.diff {
                    output::print(&format!("  {d}"))?;
                }
            }
        }
        Ok(())
    })();
    output::unless_closed(printed)?;
    Ok(ExitCode::SUCCESS)
}

/// `promoter trust sign ENV`: signs the policy the work tree (or `--rev`)
/// gives ENV, for a re-pin; writes `policy/ENV/policy.txt` and the signature.
pub fn sign(ctx: &Context, args: &TrustSignArgs) -> anyhow::Result<ExitCode> {
    let git = match &args.rev {
        Some(rev) => GitTrust::at(ctx, &source::resolve_rev(&ctx.root, rev)?)?,
        None => GitTrust::work_tree(ctx)?,
    };
    let env = git.config.environment(&args.env)?;
    let (policy, _) = derive(&git, &env)?;
    let (mut signer, fpr, role) = open_signer(&args.key, &git.keyrings)?;
    let text = policy.canonical();
    let sig = signer.sign(text.as_bytes(), &[(signing::NOTATION_ROLE, &role)])?;
    let dir = ctx.root.join("policy").join(&env.name);
    std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    let policy_file = dir.join("policy.txt");
    std::fs::write(&policy_file, &text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", policy_file.display()))?;
    let sig_file = dir.join(format!("{role}-{fpr}.asc"));
    std::fs::write(&sig_file, &sig).map_err(|e| anyhow::anyhow!("{}: {e}", sig_file.display()))?;
    #[derive(Serialize)]
    struct SignedView<'a> {
        environment: &'a str,
        policy_hash: String,
        role: &'a str,
        fingerprint: &'a str,
        file: String,
    }
    let shown = ctx.relative(&sig_file).display().to_string();
    if ctx.json {
        output::print_json(&SignedView {
            environment: &env.name,
            policy_hash: policy.hash().to_hex(),
            role: &role,
            fingerprint: &fpr,
            file: shown,
        })?;
    } else {
        output::print(&format!(
            "signed {}'s policy {} as {role} {fpr}",
            env.name,
            policy.hash()
        ))?;
        output::print(&format!(
            "  wrote {} and {}",
            ctx.relative(&policy_file).display(),
            shown
        ))?;
        output::print(&format!(
            "  commit them; then `promoter trust pin {}`",
            env.name
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
