//! `promoter drift A B`: the schema difference between two environments, as
//! the normalized catalog lines that the schema fingerprint hashes.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;

use super::{Context, target};
use crate::cli::DriftArgs;
use crate::db::{self, fingerprint};
use crate::output;

/// JSON: `promoter --json drift A B`.
#[derive(Serialize)]
struct DriftView {
    /// The reference environment.
    a: String,
    /// The environment compared with it.
    b: String,
    /// Schema fingerprint of `a`.
    a_fingerprint: String,
    /// Schema fingerprint of `b`.
    b_fingerprint: String,
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
    let texts = target::runtime()?.block_on(async {
        let mut out = Vec::new();
        for env in &envs {
            let mut conn = target::connect(env, Some(Duration::from_secs(15))).await?;
            let entries = fingerprint::catalog(&mut conn, env.name, &schema).await;
            db::close(conn).await;
            out.push(entries?);
        }
        anyhow::Ok(out)
    })?;
    let set = |entries: &[String]| entries.iter().cloned().collect::<BTreeSet<String>>();
    let (a, b) = (set(&texts[0]), set(&texts[1]));
    let view = DriftView {
        a: envs[0].name.to_owned(),
        b: envs[1].name.to_owned(),
        a_fingerprint: fingerprint::of_catalog(&texts[0]),
        b_fingerprint: fingerprint::of_catalog(&texts[1]),
        only_in_a: a.difference(&b).cloned().collect(),
        only_in_b: b.difference(&a).cloned().collect(),
    };
    let same = view.only_in_a.is_empty() && view.only_in_b.is_empty();
    if ctx.json {
        output::print_json(&view)?;
    } else if same {
        output::print(&format!(
            "{} and {} have the same schema (fingerprint {})",
            view.a,
            view.b,
            &view.a_fingerprint[..12]
        ));
    } else {
        output::print(&format!(
            "--- {} (fingerprint {})",
            view.a,
            &view.a_fingerprint[..12]
        ));
        output::print(&format!(
            "+++ {} (fingerprint {})",
            view.b,
            &view.b_fingerprint[..12]
        ));
        for entry in &view.only_in_a {
            output::print(&format!("- {}", entry.replace('\n', "\n  ")));
        }
        for entry in &view.only_in_b {
            output::print(&format!("+ {}", entry.replace('\n', "\n  ")));
        }
    }
    Ok(if same {
        ExitCode::SUCCESS
    } else {
        super::failed()
    })
}
