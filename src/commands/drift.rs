//! `promoter drift A B`: the schema difference between two environments, as
//! the normalized catalog lines that the schema fingerprint hashes.

use std::collections::BTreeSet;
use std::process::ExitCode;

use serde::Serialize;

use super::Context;
use crate::changeset::Sha256Digest;
use crate::cli::DriftArgs;
use crate::db::{self, fingerprint};
use crate::engine;
use crate::output;

/// JSON: `promoter --json drift A B`.
#[derive(Serialize)]
struct DriftView {
    /// The reference environment.
    a: String,
    /// The environment compared with it.
    b: String,
    /// Whether the two schemas are the same.
    same: bool,
    /// Schema fingerprint of `a`.
    a_fingerprint: Sha256Digest,
    /// Schema fingerprint of `b`.
    b_fingerprint: Sha256Digest,
    /// Catalog entries only `a` has.
    only_in_a: Vec<String>,
    /// Catalog entries only `b` has.
    only_in_b: Vec<String>,
}

/// Prints the catalog entries only one of the two environments has; exit 1
/// when they differ. Read-only on both.
pub fn run(ctx: &Context, args: &DriftArgs) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let schema = config.file.ledger_schema.clone();
    let envs = [config.environment(&args.a)?, config.environment(&args.b)?];
    let texts = ctx.block_on(async {
        let mut out = Vec::new();
        for env in &envs {
            let mut conn = engine::connect(env).await?;
            let entries = fingerprint::catalog(&mut conn, &env.name, &schema).await;
            db::close(conn).await;
            out.push(entries?);
        }
        anyhow::Ok(out)
    })?;
    let set = |entries: &[String]| entries.iter().cloned().collect::<BTreeSet<String>>();
    let (a, b) = (set(&texts[0]), set(&texts[1]));
    let same = a == b;
    let view = DriftView {
        a: envs[0].name.clone(),
        b: envs[1].name.clone(),
        same,
        a_fingerprint: fingerprint::of_catalog(&texts[0]),
        b_fingerprint: fingerprint::of_catalog(&texts[1]),
        only_in_a: a.difference(&b).cloned().collect(),
        only_in_b: b.difference(&a).cloned().collect(),
    };
    if ctx.json {
        output::print_json(&view)?;
    } else {
        output::unless_closed(print_diff(&view))?;
    }
    Ok(if same {
        ExitCode::SUCCESS
    } else {
        super::failed()
    })
}

fn print_diff(view: &DriftView) -> std::io::Result<()> {
    if view.same {
        return output::print(&format!(
            "{} and {} have the same schema (fingerprint {})",
            view.a,
            view.b,
            view.a_fingerprint.short()
        ));
    }
    output::print(&format!(
        "--- {} (fingerprint {})",
        view.a,
        view.a_fingerprint.short()
    ))?;
    output::print(&format!(
        "+++ {} (fingerprint {})",
        view.b,
        view.b_fingerprint.short()
    ))?;
    for entry in &view.only_in_a {
        output::print(&format!("- {}", entry.replace('\n', "\n  ")))?;
    }
    for entry in &view.only_in_b {
        output::print(&format!("+ {}", entry.replace('\n', "\n  ")))?;
    }
    Ok(())
}
