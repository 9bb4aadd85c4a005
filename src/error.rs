//! What can go wrong for the user, as kinds that pick the exit code, with
//! hints and the changesets concerned; and how an error is shown on stderr
//! or, under `--json`, as one JSON object on stdout.
//!
//! Exit codes are part of the interface (README, end of `--help`):
//!
//! | code | kind | meaning |
//! |---|---|---|
//! | 0 | | success |
//! | 1 | `check-failed` | ran, but what was checked does not hold (`verify`, `audit`, `drift`, `status --exit-code`) |
//! | 2 | `usage` | usage or configuration error: nothing was attempted |
//! | 3 | `refused` | refused before the target was touched |
//! | 4 | `apply-failed` | failed while applying; the ledger says what ran |
//! | 5 | `unreachable` | cannot connect to a database |
//! | 130 | `interrupted` | Ctrl-C or SIGTERM; what ran is in the ledger |

use std::process::ExitCode;

use serde::Serialize;

use crate::config::ConfigError;
use crate::db::DbError;
use crate::output;

/// The JSON format version every `--json` document carries.
pub const JSON_FORMAT_VERSION: u32 = 1;

/// What kind of failure, which picks the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// What was checked does not hold.
    CheckFailed,
    /// Bad arguments or configuration.
    Usage,
    /// Refused before the target was touched.
    Refused,
    /// Failed while applying.
    ApplyFailed,
    /// A database could not be reached.
    Unreachable,
    /// Stopped by Ctrl-C or SIGTERM.
    Interrupted,
}

impl ErrorKind {
    /// The process exit code for this kind.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::CheckFailed => 1,
            Self::Usage => 2,
            Self::Refused => 3,
            Self::ApplyFailed => 4,
            Self::Unreachable => 5,
            Self::Interrupted => 130,
        }
    }

    /// The kind of an error that was not raised as a [`CommandError`]: the
    /// module errors say what they are.
    pub fn of(err: &anyhow::Error) -> Self {
        if let Some(c) = err.downcast_ref::<CommandError>() {
            return c.kind;
        }
        if let Some(db) = err.downcast_ref::<DbError>() {
            return match db {
                DbError::Connect { .. } => Self::Unreachable,
                DbError::BadUrl { .. } | DbError::Unconfigured(_) => Self::Usage,
                _ => Self::Refused,
            };
        }
        if err.downcast_ref::<ConfigError>().is_some() {
            return Self::Usage;
        }
        Self::Usage
    }
}

/// Where in a script a statement failed, for `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct StatementView {
    /// `changesets/0001-x/001-y.sql`
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub sqlstate: Option<String>,
    pub message: String,
}

/// One reason something was refused, for `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct ReasonView {
    /// A stable kebab-case name, e.g. `missing-signatures`.
    pub kind: String,
    /// The changeset it concerns, if one.
    pub changeset: Option<String>,
    pub message: String,
    pub hint: Option<String>,
}

/// An error for the user: a kind, a message, hints, and what it concerns.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CommandError {
    pub kind: ErrorKind,
    pub message: String,
    pub hints: Vec<String>,
    /// The changesets it concerns.
    pub changesets: Vec<String>,
    /// Every reason, when there are several (a refused plan).
    pub reasons: Vec<ReasonView>,
    /// For an SQL failure: where.
    pub statement: Option<StatementView>,
    /// Partial progress of a run (what was applied, rolled back), as JSON.
    pub report: Option<serde_json::Value>,
}

impl CommandError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            hints: Vec::new(),
            changesets: Vec::new(),
            reasons: Vec::new(),
            statement: None,
            report: None,
        }
    }

    /// A usage or configuration error.
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Usage, message)
    }

    /// Refused before the target was touched.
    pub fn refused(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Refused, message)
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }

    pub fn with_changesets(mut self, ids: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.changesets.extend(ids.into_iter().map(Into::into));
        self
    }

    /// The first hint, if any.
    pub fn hint(&self) -> Option<&str> {
        self.hints.first().map(String::as_str)
    }
}

/// JSON: the document `--json` prints on stdout when a command fails.
#[derive(Serialize)]
struct ErrorDocument<'a> {
    format_version: u32,
    error: ErrorView<'a>,
}

/// JSON: the error itself.
#[derive(Serialize)]
struct ErrorView<'a> {
    kind: ErrorKind,
    exit_code: u8,
    message: String,
    hints: &'a [String],
    changesets: &'a [String],
    reasons: &'a [ReasonView],
    statement: Option<&'a StatementView>,
    report: Option<&'a serde_json::Value>,
}

/// Shows an error (stderr; and a JSON object on stdout under `--json`) and
/// returns its exit code. A closed stdout ends the program quietly with 0
/// only when nothing had failed: the reader went away, not the work.
pub fn report(err: &anyhow::Error, json: bool) -> ExitCode {
    if is_closed_pipe(err) {
        return ExitCode::SUCCESS;
    }
    let kind = ErrorKind::of(err);
    let command = err.downcast_ref::<CommandError>();
    let mut message = format!("error: {err}");
    for cause in err.chain().skip(1) {
        message.push_str(&format!("\n  caused by: {cause}"));
    }
    for hint in command.map_or(&[][..], |c| &c.hints) {
        message.push_str(&format!("\nhint: {hint}"));
    }
    output::eprint(&message);
    if json {
        let empty: Vec<String> = Vec::new();
        let chain: Vec<String> = err.chain().map(ToString::to_string).collect();
        let doc = ErrorDocument {
            format_version: JSON_FORMAT_VERSION,
            error: ErrorView {
                kind,
                exit_code: kind.exit_code(),
                message: chain.join(": "),
                hints: command.map_or(&empty[..], |c| &c.hints),
                changesets: command.map_or(&empty[..], |c| &c.changesets),
                reasons: command.map_or(&[][..], |c| &c.reasons),
                statement: command.and_then(|c| c.statement.as_ref()),
                report: command.and_then(|c| c.report.as_ref()),
            },
        };
        if let Ok(text) = serde_json::to_string_pretty(&doc) {
            let _ = output::print(&text);
        }
    }
    ExitCode::from(kind.exit_code())
}

/// A command line clap refused (or `--help`/`--version`, which clap reports
/// the same way): clap's own text and exit code, plus, when `--json` is among
/// the arguments, the usage error as a JSON object on stdout.
pub fn usage(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind as Clap;
    let informational = matches!(
        e.kind(),
        Clap::DisplayHelp | Clap::DisplayVersion | Clap::DisplayHelpOnMissingArgumentOrSubcommand
    );
    let json = std::env::args_os().skip(1).any(|a| a == "--json");
    if informational || !json {
        e.exit();
    }
    let message = e.render().to_string();
    let _ = e.print();
    // clap's message up to its usage line, on one line.
    let text: Vec<&str> = message
        .lines()
        .take_while(|l| !l.starts_with("Usage:"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let text = text.join(" ");
    let err = CommandError::usage(text.trim_start_matches("error: ").to_owned())
        .with_hint("see `promoter --help`");
    let kind = ErrorKind::Usage;
    let doc = ErrorDocument {
        format_version: JSON_FORMAT_VERSION,
        error: ErrorView {
            kind,
            exit_code: kind.exit_code(),
            message: err.message.clone(),
            hints: &err.hints,
            changesets: &[],
            reasons: &[],
            statement: None,
            report: None,
        },
    };
    if let Ok(text) = serde_json::to_string_pretty(&doc) {
        let _ = output::print(&text);
    }
    ExitCode::from(kind.exit_code())
}

/// Whether the error is stdout having been closed by its reader.
fn is_closed_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct_and_documented() {
        let kinds = [
            ErrorKind::CheckFailed,
            ErrorKind::Usage,
            ErrorKind::Refused,
            ErrorKind::ApplyFailed,
            ErrorKind::Unreachable,
            ErrorKind::Interrupted,
        ];
        let codes: Vec<u8> = kinds.iter().map(|k| k.exit_code()).collect();
        assert_eq!(codes, [1, 2, 3, 4, 5, 130]);
        let help = crate::cli::EXIT_CODES_HELP;
        for k in kinds {
            assert!(
                help.contains(&format!("  {:<4}", k.exit_code())),
                "{k:?} missing from --help"
            );
        }
    }

    #[test]
    fn module_errors_pick_their_kind() {
        let connect: anyhow::Error = DbError::Connect {
            env: "prd".into(),
            url: "postgres://h/db".into(),
            message: "refused".into(),
        }
        .into();
        assert_eq!(ErrorKind::of(&connect), ErrorKind::Unreachable);
        let locked: anyhow::Error = DbError::Locked {
            env: "prd".into(),
            pid: 1,
            application: "x".into(),
            user: "u".into(),
            since: "now".into(),
            waited: 1,
        }
        .into();
        assert_eq!(ErrorKind::of(&locked), ErrorKind::Refused);
        let pipe: anyhow::Error = std::io::Error::from(std::io::ErrorKind::BrokenPipe).into();
        assert!(is_closed_pipe(&pipe));
    }
}
