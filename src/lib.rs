//! promoter: carry signed, hashed PostgreSQL changesets from DEV through QAT
//! to PRD, with an append-only, hash-chained ledger in every target.
//!
//! # Layout
//!
//! - [`cli`]: clap types; the doc comments are the `--help` text.
//! - [`commands`]: one file per subcommand; parse → resolved types → engine or core → render.
//! - [`error`]: error kinds, exit codes, and how an error is shown (also as JSON).
//! - [`engine`]: the async part of a run: target, lock, execution, interrupts → a typed report.
//! - [`config`]: `environments.yaml`, validated, with `${VAR}` interpolation.
//! - [`changeset`]: bundle discovery (work tree or git), `changeset.yaml`, the
//!   `SHA256SUMS` manifest and the bundle hash. Pure.
//! - [`signing`]: the only module that names sequoia: keyrings per role, sign,
//!   verify, thresholds.
//! - [`ledger`]: the ledger row, its canonical encoding and hash chain. Pure.
//! - [`check`]: the bundle check (files, scripts, signatures, requirements). Pure.
//! - [`plan`]: pure promotion planning: (bundles, ledgers, requirements) → plan and typed refusals.
//! - [`status`]: the cells of the status matrix. Pure.
//! - [`sql`]: a PostgreSQL-aware lexer that splits scripts the way psql does.
//! - [`db`]: the only module that names sqlx: connect, lock, ledger, executor, fingerprint.
//! - [`limits`]: size caps for files read whole, and YAML nesting.
//! - [`output`]: stdout/stderr conventions, times, JSON.

pub mod approval;
pub mod branch;
pub mod changeset;
pub mod check;
pub mod checkpoint;
pub mod cli;
pub mod commands;
pub mod config;
pub mod db;
pub mod engine;
pub mod error;
pub mod ledger;
pub mod limits;
pub mod masking;
pub mod output;
pub mod plan;
pub mod policy;
pub mod profile;
pub mod report;
pub mod signing;
pub mod sql;
pub mod status;
pub mod threads;

pub use commands::run;
pub use error::{CommandError, ErrorKind, report as report_error};
