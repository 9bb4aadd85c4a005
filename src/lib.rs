//! promoter: carry signed, hashed PostgreSQL changesets from DEV through QAT
//! to PRD, with an append-only, hash-chained ledger in every target.
//!
//! # Layout
//!
//! - [`cli`]: clap types; the doc comments are the `--help` text.
//! - [`commands`]: one file per subcommand; parse → resolved types → core → print.
//! - [`config`]: `environments.yaml`, validated, with `${VAR}` interpolation.
//! - [`changeset`]: bundle discovery (work tree or git), `changeset.yaml`, the
//!   `SHA256SUMS` manifest and the bundle hash. Pure.
//! - [`signing`]: the only module that names sequoia: keyrings per role, sign,
//!   verify, thresholds.
//! - [`ledger`]: the ledger row, its canonical encoding and hash chain. Pure.
//! - [`plan`]: pure promotion planning: (bundles, ledgers, requirements) → plan or reasons.
//! - [`sql`]: a PostgreSQL-aware lexer that splits scripts the way psql does.
//! - [`db`]: the only module that names sqlx: connect, lock, ledger, executor, fingerprint.
//! - [`output`]: stdout/stderr conventions, times, JSON.

pub mod changeset;
pub mod cli;
pub mod commands;
pub mod config;
pub mod db;
pub mod ledger;

pub mod output;
pub mod plan;

pub mod signing;
pub mod sql;

use std::process::ExitCode;

pub use commands::{CommandError, run};

/// Prints an error chain (and any hint) on stderr and picks the exit code.
pub fn report_error(err: &anyhow::Error) -> ExitCode {
    let mut message = format!("error: {err}");
    for cause in err.chain().skip(1) {
        message.push_str(&format!("\n  caused by: {cause}"));
    }
    if let Some(hint) = err
        .downcast_ref::<CommandError>()
        .and_then(CommandError::hint)
    {
        message.push_str(&format!("\nhint: {hint}"));
    }
    output::eprint(&message);
    ExitCode::from(1)
}
