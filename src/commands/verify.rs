//! `promoter verify`: files against the manifest, every signature, and
//! optionally an environment's signature requirements.

use std::process::ExitCode;
use std::time::SystemTime;

use serde::Serialize;

use super::Context;
use crate::check::{BundleCheck, check_bundle};
use crate::cli::VerifyArgs;
use crate::output;

/// A bundle check for people, a line each (`out`).
fn check_lines(out: &mut Vec<String>, check: &BundleCheck, for_env: Option<&str>) {
    out.push(format!(
        "{}  {}",
        check.id,
        check
            .bundle_hash
            .map_or("(not sealed)".to_owned(), |h| h.to_hex())
    ));
    if let Some(e) = &check.error {
        out.push(format!("  FAIL  {e}"));
        return;
    }
    if check.file_problems.is_empty() {
        out.push("  ok    files match SHA256SUMS".to_owned());
    } else {
        for p in &check.file_problems {
            out.push(format!("  FAIL  {p}"));
        }
    }
    for p in &check.script_problems {
        out.push(format!("  FAIL  {p}"));
    }
    if check.signatures.is_empty() {
        out.push("  --    no signatures".to_owned());
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
            None => out.push(format!(
                "  good  signatures/{}: {who}, made {}",
                s.file,
                s.created.as_deref().unwrap_or("-")
            )),
            Some(why) => {
                out.push(format!("  BAD   signatures/{}: {who}{sep}{why}", s.file));
            }
        }
    }
    for a in &check.approvals {
        let who = match (&a.role, &a.fingerprint) {
            (Some(role), Some(fpr)) => format!(
                "{role} {fpr}{}",
                a.principal
                    .as_deref()
                    .map(|p| format!(" ({p})"))
                    .unwrap_or_default()
            ),
            _ => String::new(),
        };
        let binds = format!(
            "rests on {} entry {} (receipt key {}), opens {} until {}",
            a.tested_in.as_deref().unwrap_or("?"),
            a.entry.map_or("?".to_owned(), |e| e.short()),
            a.receipt_key.as_deref().unwrap_or("?"),
            if a.opens.is_empty() {
                "?".to_owned()
            } else {
                a.opens.join(", ")
            },
            a.expires.as_deref().unwrap_or("?")
        );
        match &a.reason {
            None => out.push(format!(
                "  good  signatures/{}: approval by {who}; {binds}",
                a.file
            )),
            Some(why) => out.push(format!(
                "  BAD   signatures/{}: {who}{}{why}",
                a.file,
                if who.is_empty() { "" } else { ": " }
            )),
        }
    }
    let Some(env) = for_env else {
        return;
    };
    if !check.file_problems.is_empty() {
        // The shortfalls would only repeat that nothing counts for a modified bundle.
        out.push(format!(
            "  FAIL  not ready for {env}: its files differ from SHA256SUMS, so no signature counts"
        ));
        return;
    }
    if check.unmet.is_empty() {
        out.push(format!("  ok    meets {env}'s requirements"));
        return;
    }
    for u in &check.unmet {
        let what = if u.role == "customer" {
            "missing customer approval: "
        } else {
            ""
        };
        out.push(format!("  FAIL  not ready for {env}: {what}{u}"));
    }
    let verb = if check.unmet.iter().all(|u| u.role == "customer") {
        "approve"
    } else {
        "sign"
    };
    out.push(format!("  hint  promoter {verb} {}", check.id));
}

/// JSON: `promoter --json verify`.
#[derive(Serialize)]
struct VerifyView<'a> {
    /// Whether every changeset passed.
    ok: bool,
    /// The environment whose requirements were checked (`--for`), if any.
    for_env: Option<&'a str>,
    /// One check per changeset, in id order.
    changesets: &'a [BundleCheck],
}

/// Verifies changesets; exit 0 only if every file, script and signature is
/// good and, with `--for`, the environment's requirements are met.
pub fn run(ctx: &Context, args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let require = match &args.for_env {
        Some(env) => Some(ctx.config()?.environment(env)?.config.require.clone()),
        None => None,
    };
    let keyrings = ctx.keyrings()?;
    let now = SystemTime::now();
    // What baselines folded stays verifiable: files and signatures (the
    // environments' requirements were met when they ran).
    let mut dirs: Vec<(crate::changeset::source::BundleDir, bool)> = ctx
        .select_dirs(&args.changesets)?
        .into_iter()
        .map(|d| (d, false))
        .collect();
    if args.changesets.is_empty() {
        dirs.extend(
            crate::changeset::source::discover_archive(&ctx.root)?
                .into_iter()
                .map(|d| (d, true)),
        );
    }
    let check = |(dir, archived): &(crate::changeset::source::BundleDir, bool)| {
        match crate::changeset::source::load_dir(dir) {
            Ok(bundle) if *archived => check_bundle(&keyrings, &bundle, None, None, now),
            Ok(bundle) => check_bundle(
                &keyrings,
                &bundle,
                require.as_ref(),
                args.for_env.as_deref(),
                now,
            ),
            Err(e) => BundleCheck::unreadable(dir.id.as_str(), e.to_string()),
        }
    };
    // Signature checks are most of the time: every core, results in order.
    let checks: Vec<BundleCheck> = crate::engine::parallel_map(&dirs, check);
    let all_ok = checks.iter().all(BundleCheck::ok);
    let code = if all_ok {
        ExitCode::SUCCESS
    } else {
        super::failed()
    };
    if ctx.json {
        output::print_json(&VerifyView {
            ok: all_ok,
            for_env: args.for_env.as_deref(),
            changesets: &checks,
        })?;
        return Ok(code);
    }
    // Written at once: a line a write is thousands of them at 500 bundles.
    let mut lines = Vec::new();
    for c in &checks {
        check_lines(&mut lines, c, args.for_env.as_deref());
    }
    let printed = output::print_all(&lines);
    // The verdict is the exit code, whether or not anyone read the lines.
    output::unless_closed(printed)?;
    let bad = checks.iter().filter(|c| !c.ok()).count();
    if bad > 0 {
        output::eprint(&format!(
            "{bad} of {} changesets failed verification",
            checks.len()
        ));
    }
    Ok(code)
}
