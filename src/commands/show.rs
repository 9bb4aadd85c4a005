//! `promoter show CHANGESET`: everything a customer (or anyone) needs to
//! know about one changeset before trusting it — its files, its signatures,
//! every environment it ran in with that environment's receipt — and its SQL.

use std::io::Write;
use std::process::ExitCode;
use std::time::SystemTime;

use serde::Serialize;

use super::Context;
use crate::changeset::Sha256Digest;
use crate::check::{ApprovalView, SignatureView};
use crate::cli::ShowArgs;
use crate::engine;
use crate::output;

/// JSON: one file of the bundle.
#[derive(Serialize)]
pub(super) struct FileView {
    pub name: String,
    pub bytes: usize,
    /// Statements, as psql (and promoter) split the script; null for other files.
    pub statements: Option<usize>,
    pub sha256: Sha256Digest,
}

/// JSON: one ledger row of the changeset in an environment.
#[derive(Serialize)]
pub(super) struct RunView {
    pub seq: i64,
    /// The environment that wrote the row: another one for a row a
    /// refresh copied in.
    pub written_by: String,
    pub status: &'static str,
    pub finished_at: String,
    pub by: String,
    pub seconds: Option<f64>,
    pub statements: i64,
    pub schema_before: Option<Sha256Digest>,
    pub schema_after: Option<Sha256Digest>,
    /// `verified`, `absent`, or why it does not verify (checked only where
    /// the work tree holds the environment's receipt certificate).
    pub receipt: String,
    /// What `receipt` says, as a value.
    #[serde(skip)]
    pub checked: Receipt,
    pub error: Option<String>,
}

/// What was found of a row's receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Receipt {
    /// Signed by the receipt certificate committed for its environment.
    Verified,
    /// The row carries none.
    Absent,
    /// Present, with no certificate committed to check it against.
    Unchecked,
    /// Present, and it does not verify.
    Invalid,
}

/// JSON: what an environment's ledger says of the changeset.
#[derive(Serialize)]
struct EnvView {
    environment: String,
    /// Null when the ledger was read; why not otherwise.
    unreachable: Option<String>,
    rows: Vec<RunView>,
}

/// JSON: `promoter --json show CHANGESET`.
#[derive(Serialize)]
pub(super) struct ShowView {
    changeset: String,
    description: Option<String>,
    bundle_hash: Option<Sha256Digest>,
    files: Vec<FileView>,
    signatures: Vec<SignatureView>,
    /// Approval statements, what each binds, and whether it holds (offline).
    approvals: Vec<ApprovalView>,
    environments: Vec<EnvView>,
}

/// A script's name and text.
pub(super) type Script = (String, Vec<u8>);

/// Each file of the bundle, and the scripts' text.
pub(super) fn files(
    bundle: &crate::changeset::Bundle,
) -> anyhow::Result<(Vec<FileView>, Vec<Script>)> {
    let mut files = Vec::new();
    let mut sql = Vec::new();
    for f in &bundle.files {
        let bytes = f.read()?;
        files.push(FileView {
            name: f.name.clone(),
            bytes: bytes.len(),
            statements: f.is_script().then(|| super::approve::statements(&bytes)),
            sha256: Sha256Digest::of(&bytes),
        });
        if f.is_script() {
            sql.push((f.name.clone(), bytes));
        }
    }
    Ok((files, sql))
}

/// The ledger rows of changeset `id`, with each receipt checked where the
/// work tree holds the writing environment's receipt certificate.
pub(super) fn runs(
    id: &str,
    entries: &[crate::ledger::Entry],
    git: Option<&super::trust::GitTrust>,
) -> Vec<RunView> {
    entries
        .iter()
        .filter(|e| e.changeset_id == id)
        .map(|e| {
            let (checked, receipt) = match (&e.receipt, git) {
                (None, _) => (Receipt::Absent, "absent".into()),
                (Some(_), Some(g)) if !g.receipt_fingerprints(&e.environment).is_empty() => {
                    match super::approve::verify_receipt(g, &e.environment, e) {
                        Ok(fpr) => (Receipt::Verified, format!("verified ({fpr})")),
                        Err(why) => (Receipt::Invalid, why),
                    }
                }
                (Some(_), _) => (
                    Receipt::Unchecked,
                    "present (no receipt certificate committed to check it)".into(),
                ),
            };
            RunView {
                seq: e.seq,
                written_by: e.environment.clone(),
                status: e.status.as_str(),
                finished_at: output::format_micros(e.finished_at.unwrap_or(e.started_at)),
                by: format!("{}@{} as {}", e.os_user, e.host, e.db_role),
                seconds: e.finished_at.map(|f| (f - e.started_at) as f64 / 1e6),
                statements: e.statements,
                schema_before: e.schema_before,
                schema_after: e.schema_after,
                receipt,
                checked,
                error: e.error.clone(),
            }
        })
        .collect()
}

/// Everything `show` says of `bundle`, and its scripts' text (`approve`
/// starts from the same view).
pub(super) fn view(
    ctx: &Context,
    bundle: &crate::changeset::Bundle,
) -> anyhow::Result<(ShowView, Vec<Script>)> {
    let keyrings = ctx.keyrings()?;
    let check = crate::check::check_bundle(&keyrings, bundle, None, None, SystemTime::now());
    let (files, sql) = files(bundle)?;
    let git = super::trust::GitTrust::work_tree(ctx).ok();
    let mut environments = Vec::new();
    if let Ok(config) = ctx.config() {
        for env in config.pipeline() {
            let targets = if env.is_fleet() {
                env.targets()
            } else {
                vec![env.clone()]
            };
            for target in targets {
                let label = target.label();
                match ctx.block_on(engine::read_ledger(&target, &config.file.ledger_schema)) {
                    Err(e) => environments.push(EnvView {
                        environment: label,
                        unreachable: Some(e.to_string()),
                        rows: Vec::new(),
                    }),
                    Ok(l) => {
                        let rows = runs(bundle.id.as_str(), &l.entries, git.as_ref());
                        environments.push(EnvView {
                            environment: label,
                            unreachable: None,
                            rows,
                        });
                    }
                }
            }
        }
    }
    let view = ShowView {
        changeset: bundle.id.to_string(),
        description: bundle.meta().ok().map(|m| m.description),
        bundle_hash: bundle.hash(),
        files,
        signatures: check.signatures,
        approvals: check.approvals,
        environments,
    };
    Ok((view, sql))
}

/// Prints one changeset; its SQL follows unless `--no-sql`, through
/// `$PAGER` (default `less`) when stdout is a terminal.
pub fn run(ctx: &Context, args: &ShowArgs) -> anyhow::Result<ExitCode> {
    let dirs = ctx.select_dirs(std::slice::from_ref(&args.changeset))?;
    let dir = dirs
        .first()
        .ok_or_else(|| super::CommandError::usage(format!("no changeset {}", args.changeset)))?;
    let bundle = crate::changeset::source::load_dir(dir)?;
    let (view, sql) = view(ctx, &bundle)?;
    if ctx.json {
        output::print_json(&view)?;
        return Ok(ExitCode::SUCCESS);
    }
    let text = render(&view, if args.no_sql { &[] } else { &sql });
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) && !args.no_sql {
        let pager = std::env::var("PAGER")
            .ok()
            .filter(|p| !p.trim().is_empty())
            .unwrap_or_else(|| "less -FRX".into());
        let mut parts = pager.split_whitespace();
        if let Some(program) = parts.next()
            && let Ok(mut child) = std::process::Command::new(program)
                .args(parts)
                .stdin(std::process::Stdio::piped())
                .spawn()
        {
            if let Some(mut stdin) = child.stdin.take() {
                let _ = stdin.write_all(text.as_bytes());
            }
            let _ = child.wait();
            return Ok(ExitCode::SUCCESS);
        }
    }
    output::unless_closed(output::print(text.trim_end()))?;
    Ok(ExitCode::SUCCESS)
}

pub(super) fn render(v: &ShowView, sql: &[Script]) -> String {
    let mut out = Vec::new();
    out.push(format!(
        "{}{}",
        v.changeset,
        v.description
            .as_ref()
            .map(|d| format!(": {d}"))
            .unwrap_or_default()
    ));
    out.push(format!(
        "  bundle  {}",
        v.bundle_hash
            .map_or("not sealed".to_owned(), |h| h.to_hex())
    ));
    out.push("  files".into());
    for f in &v.files {
        out.push(format!(
            "    {:<32} {:>9} bytes{}  sha256 {}",
            f.name,
            f.bytes,
            f.statements
                .map(|n| format!(", {n:>4} statements"))
                .unwrap_or_else(|| " ".repeat(17)),
            f.sha256.short()
        ));
    }
    out.push("  signatures".into());
    if v.signatures.is_empty() {
        out.push("    none".into());
    }
    for s in &v.signatures {
        out.push(format!(
            "    {:<10} {} {} at {}: {}",
            s.role.as_deref().unwrap_or("?"),
            s.userid
                .as_deref()
                .or(s.principal.as_deref())
                .unwrap_or("unknown key"),
            s.fingerprint
                .as_deref()
                .or(s.issuer.as_deref())
                .unwrap_or("?"),
            s.created.as_deref().unwrap_or("?"),
            if s.good {
                "good".to_owned()
            } else {
                format!("DOES NOT COUNT: {}", s.reason.as_deref().unwrap_or("?"))
            }
        ));
    }
    out.push("  approvals".into());
    if v.approvals.is_empty() {
        out.push("    none".into());
    }
    for a in &v.approvals {
        out.push(format!(
            "    {:<10} {} opens {} until {}, resting on {}'s entry {}: {}",
            a.role.as_deref().unwrap_or("?"),
            a.principal
                .as_deref()
                .or(a.fingerprint.as_deref())
                .unwrap_or("unknown key"),
            a.opens.join(", "),
            a.expires.as_deref().unwrap_or("?"),
            a.tested_in.as_deref().unwrap_or("?"),
            a.entry.map_or("?".into(), |h| h.short()),
            if a.good {
                "holds".to_owned()
            } else {
                format!("DOES NOT COUNT: {}", a.reason.as_deref().unwrap_or("?"))
            }
        ));
    }
    out.push("  environments".into());
    for e in &v.environments {
        if let Some(why) = &e.unreachable {
            out.push(format!("    {:<10} unreachable: {why}", e.environment));
            continue;
        }
        if e.rows.is_empty() {
            out.push(format!("    {:<10} not run", e.environment));
        }
        for r in &e.rows {
            let copied = if e.environment.split('/').next() == Some(r.written_by.as_str()) {
                String::new()
            } else {
                format!(" ({}'s row, copied by a refresh)", r.written_by)
            };
            out.push(format!(
                "    {:<10} #{} {}{copied} {} by {}{}, {} statements",
                e.environment,
                r.seq,
                r.status,
                r.finished_at,
                r.by,
                r.seconds
                    .map(|s| format!(" in {s:.2} s"))
                    .unwrap_or_default(),
                r.statements
            ));
            out.push(format!(
                "               schema {} → {}; receipt {}",
                r.schema_before.map_or("-".into(), |h| h.short()),
                r.schema_after.map_or("-".into(), |h| h.short()),
                r.receipt
            ));
            if let Some(err) = &r.error {
                out.push(format!(
                    "               error: {}",
                    err.lines().next().unwrap_or("")
                ));
            }
        }
    }
    for (name, bytes) in sql {
        out.push(String::new());
        out.push(format!("── {name} ──"));
        out.push(String::from_utf8_lossy(bytes).trim_end().to_owned());
    }
    out.join("\n") + "\n"
}
