//! `promoter approve` and `promoter receipt export`: a customer approves
//! exactly the bundle that ran in the test environment, as that
//! environment's signed receipt shows it, for named environments, until a
//! date — by signing an approval statement, never `SHA256SUMS`.

use std::io::BufReader;
use std::process::ExitCode;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::run::StderrHooks;
use super::trust::GitTrust;
use super::{CommandError, Context, ErrorKind};
use crate::approval::Statement;
use crate::changeset::{Bundle, SIGNATURES_DIR, Sha256Digest};
use crate::cli::{ApproveArgs, ReceiptExportArgs};
use crate::config::{Config, Environment};
use crate::engine::{self, Hooks};
use crate::ledger::{Entry, check_chain};
use crate::output;
use crate::policy::SIGNING_ROLE;
use crate::signing::NOTATION_ROLE;

/// The format name of an exported receipt.
pub const RECEIPT_FORMAT: &str = "promoter-receipt-v1";

/// An exported receipt: a ledger row as stored, and its environment's
/// signature over the row's canonical bytes.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReceiptFile {
    pub format: String,
    pub environment: String,
    pub entry: Entry,
}

/// The environment whose `require` has approving roles (customers).
fn approving_env(config: &Config) -> anyhow::Result<Environment> {
    config
        .pipeline()
        .into_iter()
        .find(|e| {
            crate::policy::approving_roles(&e.config.require)
                .next()
                .is_some()
        })
        .ok_or_else(|| {
            CommandError::usage("no environment requires approvals; nothing to approve for")
                .with_hint("pass --for ENV")
                .into()
        })
}

/// Verifies a receipt against the certificates committed for `env`:
/// returns the fingerprint that signed it.
pub(super) fn verify_receipt(git: &GitTrust, env: &str, entry: &Entry) -> Result<String, String> {
    if entry.compute_hash() != entry.entry_hash {
        return Err(format!(
            "row #{}'s content does not match its entry_hash",
            entry.seq
        ));
    }
    let known = format!("committed for {env} (keys/environments/{env}.asc)");
    engine::trust::receipt_of(&git.receipt_certs, env, entry, &known, SystemTime::now()).map_err(
        |e| match e {
            engine::trust::ReceiptError::Unsigned => format!(
                "{env}'s ledger row #{} has no receipt: {env} needs a receipt_key, and rows written by hand have none",
                entry.seq
            ),
            engine::trust::ReceiptError::Invalid(why) => {
                format!("row #{}'s receipt does not verify: {why}", entry.seq)
            }
        },
    )
}

/// Statement count of a script, as promoter (and psql) splits it.
pub(super) fn statements(bytes: &[u8]) -> usize {
    let mut splitter = crate::sql::Splitter::new(BufReader::new(bytes));
    let mut n = 0;
    while let Ok(Some(item)) = splitter.next_item() {
        if matches!(item, crate::sql::Item::Statement(_)) {
            n += 1;
        }
    }
    n
}

/// What the customer is shown before signing.
fn show(
    view: &super::show::ShowView,
    bundle: &Bundle,
    statement: &Statement,
    entry: &Entry,
    receipt_key: &str,
) -> std::io::Result<()> {
    output::print(super::show::render(view, &[]).trim_end())?;
    output::print("")?;
    output::print(&format!(
        "the approval you are asked to sign (its SQL: promoter show {})",
        bundle.id
    ))?;
    output::print(&format!("  bundle       {}", statement.bundle))?;
    output::print(&format!(
        "  tested in    {} (ledger #{}, entry {}): ran {} by {}@{} as {}, {} statements",
        statement.tested_in,
        entry.seq,
        entry.entry_hash.short(),
        output::format_micros(entry.finished_at.unwrap_or(entry.started_at)),
        entry.os_user,
        entry.host,
        entry.db_role,
        entry.statements
    ))?;
    output::print(&format!(
        "  schema after {}",
        entry.schema_after.map_or("-".to_owned(), |h| h.to_hex())
    ))?;
    output::print(&format!(
        "  receipt      signed by {} key {receipt_key}",
        statement.tested_in
    ))?;
    output::print(&format!(
        "  opens        {} until {}",
        statement.opens.join(", "),
        output::format_unix(statement.expires)
    ))?;
    if !statement.comment.is_empty() {
        output::print(&format!("  comment      {}", statement.comment))?;
    }
    output::print("")
}

/// JSON: one approval written.
#[derive(Serialize)]
struct ApprovedView {
    id: String,
    bundle_hash: Sha256Digest,
    role: String,
    fingerprint: String,
    /// The statement file written.
    file: String,
    /// The test environment's ledger entry it rests on.
    entry: Sha256Digest,
    opens: Vec<String>,
    expires: String,
}

/// `promoter approve CHANGESET… [--for ENV]`.
pub fn run(ctx: &Context, args: &ApproveArgs) -> anyhow::Result<ExitCode> {
    let git = GitTrust::work_tree(ctx)?;
    let target = match &args.for_env {
        Some(name) => git.config.environment(name)?,
        None => approving_env(&git.config)?,
    };
    let tested_in = target.config.promote_from.clone().ok_or_else(|| {
        CommandError::usage(format!(
            "{} is not promoted from anywhere: approvals rest on a test environment",
            target.name
        ))
    })?;
    if args.comment.contains(['\n', '\r']) || args.comment.trim() != args.comment {
        return Err(CommandError::usage(
            "--comment must be one line without leading or trailing spaces",
        )
        .into());
    }
    let lasts = crate::config::parse_duration(&args.expires).ok_or_else(|| {
        CommandError::usage(format!(
            "--expires {}: not a duration (e.g. 14d, 48h)",
            args.expires
        ))
    })?;
    let (mut signer, fpr, role) = super::trust::open_signer(&args.key, &git.keyrings)?;
    if role == SIGNING_ROLE {
        return Err(CommandError::usage(format!(
            "certificate {fpr} is in the {role} keyring; approvals come from the people who test and accept (keys/customers/)"
        ))
        .with_hint("a developer signs with `promoter sign`")
        .into());
    }
    // The rows that were tested: from an exported receipt, or the live ledger.
    let (rows, from_file): (Vec<Entry>, bool) = match &args.receipt {
        Some(path) => {
            let size = std::fs::metadata(path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
                .len();
            crate::limits::check(&path.display().to_string(), size, crate::limits::RECEIPT)
                .map_err(CommandError::usage)?;
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let file: ReceiptFile = serde_json::from_str(&text).map_err(|e| {
                CommandError::usage(format!("{}: not a promoter receipt: {e}", path.display()))
            })?;
            if file.format != RECEIPT_FORMAT || file.environment != tested_in {
                return Err(CommandError::usage(format!(
                    "{}: a {} receipt of {}, not a {RECEIPT_FORMAT} of {tested_in}",
                    path.display(),
                    file.format,
                    file.environment
                ))
                .into());
            }
            (vec![file.entry], true)
        }
        None => {
            let env = git.config.environment(&tested_in)?;
            let ledger = ctx
                .block_on(engine::read_ledger(&env, &git.config.file.ledger_schema))
                .map_err(|e| {
                    let kind = match e {
                        crate::db::DbError::Connect { .. } => ErrorKind::Unreachable,
                        _ => ErrorKind::Refused,
                    };
                    CommandError::new(kind, format!("cannot read {tested_in}'s ledger to check what was tested: {e}"))
                        .with_hint(format!("approve from an exported receipt: `promoter receipt export {tested_in} CHANGESET --out FILE` where {tested_in} is reachable, then `approve --receipt FILE`"))
                })?;
            (ledger.entries, false)
        }
    };
    let now = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut hooks = StderrHooks {
        assume_yes: args.yes,
        ..StderrHooks::default()
    };
    let mut views = Vec::new();
    for dir in ctx.select_dirs(&args.changesets)? {
        let bundle = crate::changeset::source::load_dir(&dir)?;
        super::sign::refuse_modified(&bundle)?;
        let (_, _) = bundle.sealed_manifest()?;
        let hash = bundle.hash().expect("sealed");
        let id = bundle.id.to_string();
        let Some(idx) = rows
            .iter()
            .rposition(|e| e.changeset_id == id && e.status.is_applied())
        else {
            return Err(CommandError::refused(format!(
                "{id} is not applied to {tested_in}: a customer approves what was tested there"
            ))
            .with_hint(format!("promote it to {tested_in} and test it first"))
            .into());
        };
        let entry = &rows[idx];
        if !from_file && let Some(brk) = check_chain(&rows[..=idx]) {
            return Err(CommandError::refused(format!(
                "{tested_in}'s ledger does not verify at row #{}: {}; refusing to approve on it",
                brk.seq, brk.reason
            ))
            .into());
        }
        if entry.bundle_hash != hash {
            return Err(CommandError::refused(format!(
                "{id}: {tested_in} tested bundle {}, but the work tree has {hash}; refusing to approve an untested bundle",
                entry.bundle_hash
            ))
            .into());
        }
        let receipt_key = verify_receipt(&git, &tested_in, entry).map_err(|why| {
            CommandError::refused(format!(
                "{id}: {why}; refusing to approve what {tested_in} cannot vouch for"
            ))
        })?;
        let statement = Statement {
            changeset: id.clone(),
            bundle: hash,
            tested_in: tested_in.clone(),
            entry: entry.entry_hash,
            receipt_key: receipt_key.clone(),
            opens: vec![target.name.clone()],
            expires: now + lasts.as_secs() as i64,
            comment: args.comment.clone(),
        };
        if !ctx.json {
            // What `promoter show` says of it, then the statement.
            let (view, _) = super::show::view(ctx, &bundle)?;
            output::unless_closed(show(&view, &bundle, &statement, entry, &receipt_key))?;
        }
        if !hooks.ask(&format!(
            "sign this approval of {id} as {role} {fpr}? [y/N] "
        ))? {
            return Err(CommandError::refused(format!("not approved: {id}")).into());
        }
        let text = statement.canonical();
        let sig = signer.sign(text.as_bytes(), &[(NOTATION_ROLE, &role)])?;
        let sig_dir = dir.path.join(SIGNATURES_DIR);
        std::fs::create_dir_all(&sig_dir)
            .map_err(|e| anyhow::anyhow!("{}: {e}", sig_dir.display()))?;
        let name = format!("approval-{fpr}.txt");
        let path = sig_dir.join(&name);
        std::fs::write(&path, &text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let sig_path = sig_dir.join(format!("{name}.asc"));
        std::fs::write(&sig_path, &sig)
            .map_err(|e| anyhow::anyhow!("{}: {e}", sig_path.display()))?;
        views.push(ApprovedView {
            id,
            bundle_hash: hash,
            role: role.clone(),
            fingerprint: fpr.clone(),
            file: format!("{}/{SIGNATURES_DIR}/{name}", bundle.location),
            entry: entry.entry_hash,
            opens: statement.opens.clone(),
            expires: output::format_unix(statement.expires),
        });
    }
    if ctx.json {
        #[derive(Serialize)]
        struct View<'a> {
            approvals: &'a [ApprovedView],
        }
        output::print_json(&View { approvals: &views })?;
    } else {
        let printed = views.iter().try_for_each(|v| {
            output::print(&format!(
                "approved {} for {} until {} as {} {}\n  wrote {} (+ .asc)",
                v.id,
                v.opens.join(", "),
                v.expires,
                v.role,
                v.fingerprint,
                v.file
            ))
        });
        output::unless_closed(printed)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `promoter receipt export ENV CHANGESET`.
pub fn export_receipt(ctx: &Context, args: &ReceiptExportArgs) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let env = config.environment(&args.env)?;
    let ledger = ctx.block_on(engine::read_ledger(&env, &config.file.ledger_schema))?;
    let entry = ledger
        .entries
        .iter()
        .rev()
        .find(|e| {
            e.status.is_applied()
                && crate::changeset::ChangesetId::parse(&e.changeset_id)
                    .is_ok_and(|id| id.matches(&args.changeset))
        })
        .ok_or_else(|| {
            CommandError::usage(format!(
                "{}: no applied row for `{}`",
                env.name, args.changeset
            ))
        })?;
    if entry.receipt.is_none() {
        return Err(CommandError::refused(format!(
            "{}'s row #{} for {} carries no receipt ({} has no receipt_key, or the row was not written by promoter)",
            env.name, entry.seq, entry.changeset_id, env.name
        ))
        .into());
    }
    let file = ReceiptFile {
        format: RECEIPT_FORMAT.to_owned(),
        environment: env.name.clone(),
        entry: entry.clone(),
    };
    let text = serde_json::to_string_pretty(&file)?;
    match &args.out {
        Some(path) => {
            std::fs::write(path, format!("{text}\n"))
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            output::eprint(&format!(
                "wrote {}'s receipt for {} (ledger #{}) to {}",
                env.name,
                entry.changeset_id,
                entry.seq,
                path.display()
            ));
        }
        None => output::print(&text)?,
    }
    Ok(ExitCode::SUCCESS)
}
