//! SQL scripts: splitting them as psql does, and the checks that refuse,
//! before anything runs, what promoter cannot execute faithfully.

mod insert;
pub mod lexer;

use std::fmt;

use crate::changeset::{
    Bundle, BundleError, ChangesetMeta, HashingReader, Manifest, Sha256Digest, TransactionMode,
};
pub use insert::constant_insert;
pub use lexer::{Item, LexError, MetaCommand, Splitter, Statement};

/// What promoter does with a meta-command it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaAction {
    /// Nothing: it changes nothing promoter runs.
    Ignore,
    /// Print this text in the run output (`\echo`, `\qecho`).
    Print(String),
}

/// The meta-commands promoter accepts, each handled as psql handles it,
/// because none of them can change what the server receives:
///
/// - `\restrict KEY` and `\unrestrict KEY`, which pg_dump writes (psql
///   refuses other meta-commands between them; promoter refuses them all);
/// - `\set ON_ERROR_STOP on` (or `1`, `true`, `yes`), which migration sets
///   written for psql start with: promoter always stops at the first error;
/// - `\echo` and `\qecho` with plain text: printed in the run output.
///
/// Everything else is refused, including other `\set`s (a variable changes
/// what psql sends), and these with anything psql would expand: a variable
/// (`:name`), a backquoted shell command, a backslash (an escape, or the
/// next meta-command on the same line).
pub fn accepted_meta(m: &MetaCommand) -> Option<MetaAction> {
    match m.name.as_str() {
        "restrict" | "unrestrict" => {
            let plain = !m.args.is_empty() && m.args.bytes().all(|b| b.is_ascii_alphanumeric());
            plain.then_some(MetaAction::Ignore)
        }
        "set" => {
            let mut args = m.args.split_whitespace();
            let (name, value, extra) = (args.next()?, args.next()?, args.next());
            let value = value.trim_matches('\'').to_ascii_lowercase();
            (name == "ON_ERROR_STOP"
                && extra.is_none()
                && matches!(value.as_str(), "on" | "1" | "true" | "yes"))
            .then_some(MetaAction::Ignore)
        }
        "echo" | "qecho" => {
            let words = echo_words(&m.args)?;
            let (newline, words) = match words.split_first() {
                Some((first, rest)) if first == "-n" => (false, rest),
                _ => (true, words.as_slice()),
            };
            let mut text = words.join(" ");
            if newline {
                text.push('\n');
            }
            Some(MetaAction::Print(text))
        }
        _ => None,
    }
}

/// The arguments of `\echo` as psql reads them, when they hold nothing it
/// would expand: words split at whitespace, `'…'` with `''` for a quote,
/// `"…"` kept as written.
fn echo_words(args: &str) -> Option<Vec<String>> {
    if args.contains(['\\', '`']) {
        return None;
    }
    let mut words = Vec::new();
    let mut chars = args.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Some(words);
        }
        let mut word = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
            match c {
                '\'' => loop {
                    match chars.next()? {
                        '\'' if chars.next_if_eq(&'\'').is_some() => word.push('\''),
                        '\'' => break,
                        c => word.push(c),
                    }
                },
                '"' => {
                    word.push('"');
                    loop {
                        let c = chars.next()?;
                        word.push(c);
                        if c == '"' {
                            break;
                        }
                    }
                }
                ':' if chars.peek().is_some_and(|&n| {
                    n.is_alphanumeric() || matches!(n, '_' | '\'' | '"' | '{')
                }) =>
                {
                    return None;
                }
                c => word.push(c),
            }
        }
        words.push(word);
    }
}

/// Whether promoter accepts the meta-command (see [`accepted_meta`]).
pub fn meta_is_harmless(m: &MetaCommand) -> bool {
    accepted_meta(m).is_some()
}

/// The variables psql defines by itself (versions 15 to 18), which it would
/// replace in a script's SQL: a script that uses one is refused, because
/// promoter sends the text as written. An undefined `:name` psql sends as
/// written too, so it is accepted.
pub const PSQL_VARIABLES: &[&str] = &[
    "AUTOCOMMIT",
    "COMP_KEYWORD_CASE",
    "DBNAME",
    "ECHO",
    "ECHO_HIDDEN",
    "ENCODING",
    "ERROR",
    "FETCH_COUNT",
    "HIDE_TABLEAM",
    "HIDE_TOAST_COMPRESSION",
    "HISTCONTROL",
    "HISTFILE",
    "HISTSIZE",
    "HOST",
    "IGNOREEOF",
    "LASTOID",
    "LAST_ERROR_MESSAGE",
    "LAST_ERROR_SQLSTATE",
    "ON_ERROR_ROLLBACK",
    "ON_ERROR_STOP",
    "PORT",
    "PROMPT1",
    "PROMPT2",
    "PROMPT3",
    "QUIET",
    "ROW_COUNT",
    "SERVER_VERSION_NAME",
    "SERVER_VERSION_NUM",
    "SERVICE",
    "SHELL_ERROR",
    "SHELL_EXIT_CODE",
    "SHOW_ALL_RESULTS",
    "SHOW_CONTEXT",
    "SINGLELINE",
    "SINGLESTEP",
    "SQLSTATE",
    "USER",
    "VERBOSITY",
    "VERSION",
    "VERSION_NAME",
    "VERSION_NUM",
    "WATCH_INTERVAL",
];

/// A reason a script cannot be executed faithfully, found before anything runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptProblem {
    /// `changesets/0001-x/001-y.sql`
    pub file: String,
    pub line: usize,
    pub kind: ProblemKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    MetaCommand(String),
    NotInTransaction(String),
    TransactionControl(String),
    /// A psql variable psql would replace (`:DBNAME`), as written.
    PsqlVariable(String),
    /// Something that cannot share a `\;`-joined query (COPY, transaction control).
    Joined(String),
    /// Changes how the server reads string literals (see [`string_syntax`]).
    StringSyntax,
    Lex(String),
}

impl fmt::Display for ScriptProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (file, line) = (&self.file, self.line);
        match &self.kind {
            ProblemKind::MetaCommand(name) => {
                write!(
                    f,
                    "{file}:{line}: psql meta-command \\{name} is not supported in a changeset"
                )
            }
            ProblemKind::NotInTransaction(what) => write!(
                f,
                "{file}:{line}: {what} cannot run inside a transaction block, and this changeset runs in one"
            ),
            ProblemKind::TransactionControl(what) => write!(
                f,
                "{file}:{line}: {what} would end promoter's transaction early (each changeset runs in one transaction with its ledger row)"
            ),
            ProblemKind::StringSyntax => write!(
                f,
                "{file}:{line}: turns standard_conforming_strings off (or sets it in a way promoter cannot follow): the server would then read backslashes in strings differently from how promoter splits statements"
            ),
            ProblemKind::PsqlVariable(written) => write!(
                f,
                "{file}:{line}: {written} is a psql variable: psql would send its value, promoter sends the text as written"
            ),
            ProblemKind::Joined(what) => write!(
                f,
                "{file}:{line}: {what} cannot be joined to other statements with \\;"
            ),
            ProblemKind::Lex(message) => write!(f, "{file}: {message}"),
        }
    }
}

impl ScriptProblem {
    /// What to do about it.
    pub fn hint(&self) -> String {
        match &self.kind {
            ProblemKind::MetaCommand(_) => {
                "changesets run in one connection chosen by environments.yaml; remove the meta-command (psql's \\c, \\i, \\set and the like have no place in a changeset)".into()
            }
            ProblemKind::NotInTransaction(_) => {
                "put it in its own changeset with `transaction: none` in changeset.yaml (`promoter new SLUG --no-transaction`)".into()
            }
            ProblemKind::TransactionControl(_) => {
                "remove it; use `transaction: none` if the scripts must manage their own transactions".into()
            }
            ProblemKind::PsqlVariable(_) => "write the value itself; promoter does not substitute psql variables".into(),
            ProblemKind::Joined(_) => "end the statement before it with a plain `;`".into(),
            ProblemKind::StringSyntax => "write strings with E'…' where backslash escapes are meant, and leave standard_conforming_strings on".into(),
            ProblemKind::Lex(_) => "fix the script".into(),
        }
    }
}

/// If a statement with these top-level `words` cannot run inside a
/// transaction block, what it is.
pub fn non_transactional(words: &[String]) -> Option<String> {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let has = |word: &str| w.contains(&word);
    let what = match w.as_slice() {
        ["CREATE", "INDEX", "CONCURRENTLY", ..]
        | ["CREATE", "UNIQUE", "INDEX", "CONCURRENTLY", ..] => "CREATE INDEX CONCURRENTLY",
        ["DROP", "INDEX", "CONCURRENTLY", ..] => "DROP INDEX CONCURRENTLY",
        ["REINDEX", ..] if has("CONCURRENTLY") => "REINDEX CONCURRENTLY",
        ["REINDEX", "DATABASE" | "SYSTEM", ..] => "REINDEX DATABASE/SYSTEM",
        ["REFRESH", "MATERIALIZED", "VIEW", "CONCURRENTLY", ..] => {
            "REFRESH MATERIALIZED VIEW CONCURRENTLY"
        }
        ["ALTER", "TABLE", ..] if has("DETACH") && has("CONCURRENTLY") => {
            "DETACH PARTITION CONCURRENTLY"
        }
        ["VACUUM", ..] => "VACUUM",
        ["CLUSTER"] | ["CLUSTER", "VERBOSE"] => "CLUSTER without a table",
        ["CREATE", "DATABASE", ..] => "CREATE DATABASE",
        ["DROP", "DATABASE", ..] => "DROP DATABASE",
        ["ALTER", "DATABASE", ..] if has("TABLESPACE") && has("SET") => {
            "ALTER DATABASE SET TABLESPACE"
        }
        ["CREATE", "TABLESPACE", ..] => "CREATE TABLESPACE",
        ["DROP", "TABLESPACE", ..] => "DROP TABLESPACE",
        ["ALTER", "SYSTEM", ..] => "ALTER SYSTEM",
        ["CREATE", "SUBSCRIPTION", ..] => "CREATE SUBSCRIPTION",
        ["DROP", "SUBSCRIPTION", ..] => "DROP SUBSCRIPTION",
        ["ALTER", "SUBSCRIPTION", ..] if has("REFRESH") => {
            "ALTER SUBSCRIPTION … REFRESH PUBLICATION"
        }
        _ => return None,
    };
    Some(what.to_owned())
}

/// Whether `stmt` touches `standard_conforming_strings` in any way other
/// than turning it on with a plain `SET` (which every pg_dump file does).
/// With it off the server reads `'a\'` differently from promoter's splitter
/// (and from psql's, which follows the server), so a script could hide a
/// `COMMIT` inside what the splitter takes for a string. The check is on the
/// whole text, string literals and function bodies included: any mention is
/// refused unless it is exactly that `SET`.
pub fn string_syntax(stmt: &Statement) -> bool {
    let lower = stmt.text.to_ascii_lowercase();
    if !lower.contains("standard_conforming_strings") {
        return false;
    }
    let words: Vec<&str> = lower
        .trim_end_matches(|c: char| c == ';' || c.is_whitespace())
        .split(|c: char| c.is_whitespace() || c == '=')
        .filter(|w| !w.is_empty())
        .collect();
    let plain_on = matches!(
        words.as_slice(),
        ["set", "standard_conforming_strings", "to", v] | ["set", "standard_conforming_strings", v]
        | ["set", "session" | "local", "standard_conforming_strings", "to", v]
        | ["set", "session" | "local", "standard_conforming_strings", v]
            if matches!(*v, "on" | "'on'" | "true" | "'true'")
    );
    !plain_on
}

/// If a statement with these top-level `words` begins or ends a
/// transaction, what it is.
pub fn transaction_control(words: &[String]) -> Option<String> {
    let first = words.first().map(String::as_str)?;
    let second = words.get(1).map(String::as_str);
    let what = match (first, second) {
        ("BEGIN", _) => "BEGIN",
        ("START", Some("TRANSACTION")) => "START TRANSACTION",
        ("COMMIT", Some("PREPARED")) => "COMMIT PREPARED",
        ("COMMIT", _) => "COMMIT",
        ("END", _) => "END",
        ("ROLLBACK", Some("PREPARED")) => "ROLLBACK PREPARED",
        ("ROLLBACK", Some("TO")) => return None,
        ("ROLLBACK" | "ABORT", _) => "ROLLBACK",
        ("PREPARE", Some("TRANSACTION")) => "PREPARE TRANSACTION",
        _ => return None,
    };
    Some(what.to_owned())
}

/// Which part of a script's own transaction wrapper a statement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wrapper {
    /// A plain `BEGIN [WORK|TRANSACTION]` or `START TRANSACTION`, no options.
    Begin,
    /// A plain `COMMIT [WORK|TRANSACTION]` or `END [WORK|TRANSACTION]`.
    Commit,
}

/// Whether `stmt` is a plain transaction start or commit, the kind of
/// statement that wraps a whole migration written for psql.
pub fn wrapper(stmt: &Statement) -> Option<Wrapper> {
    if stmt.is_joined() {
        return None;
    }
    let w: Vec<&str> = stmt.words.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["BEGIN"] | ["BEGIN", "WORK" | "TRANSACTION"] | ["START", "TRANSACTION"] => {
            Some(Wrapper::Begin)
        }
        ["COMMIT" | "END"] | ["COMMIT" | "END", "WORK" | "TRANSACTION"] => Some(Wrapper::Commit),
        _ => None,
    }
}

/// Checks one script: meta-commands, and in a transactional changeset,
/// statements that cannot run in (or would end) the transaction.
///
/// A script wrapped whole in its own `BEGIN; … COMMIT;` is accepted: under
/// `psql -1` that wrapper changes nothing (the inner BEGIN only warns, and the
/// COMMIT ends the single transaction), so the executor skips those two
/// statements and the script runs in promoter's transaction, as psql would.
pub fn check_script(
    file: &str,
    reader: impl std::io::BufRead,
    mode: TransactionMode,
) -> Vec<ScriptProblem> {
    let mut problems = Vec::new();
    let mut splitter = Splitter::new(reader);
    // (statement index, line, wrapper kind, what) of every transaction-control statement.
    let mut control: Vec<(usize, usize, Option<Wrapper>, String)> = Vec::new();
    let mut index = 0;
    loop {
        let item = match splitter.next_item() {
            Ok(Some(item)) => item,
            Ok(None) => break,
            Err(e) => {
                problems.push(ScriptProblem {
                    file: file.to_owned(),
                    line: splitter.line_no(),
                    kind: ProblemKind::Lex(e.to_string()),
                });
                break;
            }
        };
        let problem = |line, kind| ScriptProblem {
            file: file.to_owned(),
            line,
            kind,
        };
        match item {
            Item::Meta(m) if meta_is_harmless(&m) => {}
            Item::Meta(m) => problems.push(problem(m.line, ProblemKind::MetaCommand(m.name))),
            Item::Statement(s) => {
                if string_syntax(&s) {
                    problems.push(problem(s.line, ProblemKind::StringSyntax));
                }
                for (variable, line) in &s.variables {
                    if variable.written.starts_with(":{")
                        || PSQL_VARIABLES.contains(&variable.name.as_str())
                    {
                        let kind = ProblemKind::PsqlVariable(variable.written.clone());
                        problems.push(problem(*line, kind));
                    }
                }
                if s.is_joined() && s.parts().any(|w| w.first().is_some_and(|w| w == "COPY")) {
                    problems.push(problem(s.line, ProblemKind::Joined("COPY".into())));
                }
                if mode == TransactionMode::PerChangeset {
                    for words in s.parts() {
                        if let Some(what) = non_transactional(words) {
                            problems.push(problem(s.line, ProblemKind::NotInTransaction(what)));
                        } else if let Some(what) = transaction_control(words) {
                            control.push((index, s.line, wrapper(&s), what));
                        }
                    }
                }
                // Empty statements (`;`) do nothing: a wrapper is still the
                // first and last statement around them.
                if !s.empty {
                    index += 1;
                }
            }
        }
    }
    let wrapped = matches!(
        control.as_slice(),
        [(0, _, Some(Wrapper::Begin), _), (last, _, Some(Wrapper::Commit), _)] if *last + 1 == index
    );
    if !wrapped {
        for (_, line, _, what) in control {
            problems.push(ScriptProblem {
                file: file.to_owned(),
                line,
                kind: ProblemKind::TransactionControl(what),
            });
        }
        problems.sort_by_key(|p| p.line);
    }
    problems
}

/// What one read of a bundle's files finds.
#[derive(Debug)]
pub struct BundleScan {
    /// The manifest the files have now (to seal, or to compare with `SHA256SUMS`).
    pub manifest: Manifest,
    /// `changeset.yaml`, parsed from the bytes hashed into `manifest`.
    pub meta: ChangesetMeta,
    /// Script problems, by file then line.
    pub problems: Vec<ScriptProblem>,
    /// Scripts with CR LF line endings.
    pub crlf: Vec<String>,
}

/// Reads every file of `bundle` once: each script is split and checked while
/// it is hashed and scanned for CR LF; other files are only hashed. A
/// gigabyte dump is therefore read once here, not once per check.
pub fn scan_bundle(bundle: &Bundle) -> Result<BundleScan, BundleError> {
    // changeset.yaml is read once: the bytes parsed are the bytes hashed.
    let meta_bytes = bundle.meta_bytes()?;
    let meta = bundle.meta_of(&meta_bytes)?;
    let mode = meta.transaction;
    let mut digests = Vec::with_capacity(bundle.files.len());
    let mut problems = Vec::new();
    let mut crlf = Vec::new();
    for file in &bundle.files {
        if file.name == crate::changeset::META_FILE {
            digests.push((file.name.clone(), Sha256Digest::of(&meta_bytes)));
            continue;
        }
        if !file.is_script() {
            digests.push((file.name.clone(), file.digest()?));
            continue;
        }
        let io_error = |source| BundleError::Io {
            path: format!("{}/{}", bundle.location, file.name).into(),
            source,
        };
        let mut reader = std::io::BufReader::with_capacity(64 * 1024, Scanned::new(file.open()?));
        problems.extend(check_script(
            &format!("{}/{}", bundle.location, file.name),
            &mut reader,
            mode,
        ));
        // A script the splitter gave up on still has to be hashed to its end.
        std::io::copy(&mut reader, &mut std::io::sink()).map_err(io_error)?;
        let scanned = reader.into_inner();
        if scanned.crlf {
            crlf.push(file.name.clone());
        }
        digests.push((file.name.clone(), scanned.inner.finish()));
    }
    Ok(BundleScan {
        manifest: Manifest::from_entries(digests),
        meta,
        problems,
        crlf,
    })
}

/// A hashing reader that also notices CR LF pairs, including pairs that
/// straddle two reads.
struct Scanned<R> {
    inner: HashingReader<R>,
    after_cr: bool,
    crlf: bool,
}

impl<R> Scanned<R> {
    fn new(inner: R) -> Self {
        Self {
            inner: HashingReader::new(inner),
            after_cr: false,
            crlf: false,
        }
    }
}

impl<R: std::io::Read> std::io::Read for Scanned<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            let chunk = &buf[..n];
            // `contains` is a memchr, and most scripts have no CR at all.
            self.crlf |= (self.after_cr && chunk[0] == b'\n')
                || (!self.crlf && chunk.contains(&b'\r') && chunk.windows(2).any(|w| w == b"\r\n"));
            self.after_cr = chunk[n - 1] == b'\r';
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(script: &str, mode: TransactionMode) -> Vec<String> {
        check_script("f.sql", script.as_bytes(), mode)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Regression: the CRLF warning once read each script whole, so sealing a
    /// 1 GB dump took 1 GB of memory. The scan now notices CR LF while it
    /// streams, also when a pair straddles two reads.
    #[test]
    fn crlf_detection_streams_and_sees_pairs_across_reads() {
        use std::io::Read;
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                // One byte at a time: every CR LF pair straddles two reads.
                if self.0.is_empty() || buf.is_empty() {
                    return Ok(0);
                }
                buf[0] = self.0[0];
                self.0 = &self.0[1..];
                Ok(1)
            }
        }
        let cases: &[(&[u8], bool)] = &[
            (b"SELECT 1;\r\n", true),
            (b"SELECT 1;\n", false),
            (b"a\rb\nc", false),
            (b"", false),
            (b"\r", false),
        ];
        let crlf = |reader: &mut dyn Read| {
            let mut scanned = Scanned::new(reader);
            std::io::copy(&mut scanned, &mut std::io::sink()).unwrap();
            scanned.crlf
        };
        for (bytes, want) in cases {
            assert_eq!(crlf(&mut Trickle(bytes)), *want, "{bytes:?}");
            assert_eq!(crlf(&mut &bytes[..]), *want, "{bytes:?}");
        }
    }

    #[test]
    fn refuses_meta_commands_but_ignores_restrict() {
        let got = check(
            "\\restrict k\nSELECT 1;\n\\unrestrict k\n\\c chinook;\n",
            TransactionMode::PerChangeset,
        );
        assert_eq!(
            got,
            ["f.sql:4: psql meta-command \\c is not supported in a changeset"]
        );
        let got = check(
            "\\echo Use \"CREATE EXTENSION x\" \\quit\n",
            TransactionMode::None,
        );
        assert_eq!(
            got,
            ["f.sql:1: psql meta-command \\echo is not supported in a changeset"]
        );
    }

    #[test]
    fn echo_prints_what_psql_prints_and_refuses_what_psql_would_expand() {
        let meta = |args: &str| MetaCommand {
            name: "echo".into(),
            args: args.into(),
            line: 1,
        };
        for (args, want) in [
            ("hi", Some("hi\n")),
            ("one   two", Some("one two\n")),
            ("'a  b' c", Some("a  b c\n")),
            ("'it''s'", Some("it's\n")),
            ("\"a  b\"", Some("\"a  b\"\n")),
            ("", Some("\n")),
            ("-n hi", Some("hi")),
            ("hi -n", Some("hi -n\n")),
            ("note: x", Some("note: x\n")),
            ("a::b", None),
            (":DBNAME", None),
            (":'x'", None),
            ("':x'", Some(":x\n")),
            ("`date`", None),
            ("'\\n'", None),
            ("Use it \\quit", None),
            ("a \\\\ SELECT 1;", None),
            ("'unterminated", None),
        ] {
            let got = accepted_meta(&meta(args));
            let want = want.map(|w| MetaAction::Print(w.to_owned()));
            assert_eq!(got, want, "\\echo {args}");
        }
    }

    #[test]
    fn restrict_keys_are_one_plain_word() {
        for (args, ok) in [
            ("abc123XYZ", true),
            ("", false),
            ("abc \\! rm -rf /", false),
            ("abc def", false),
        ] {
            let m = MetaCommand {
                name: "restrict".into(),
                args: args.into(),
                line: 1,
            };
            assert_eq!(accepted_meta(&m).is_some(), ok, "\\restrict {args}");
        }
    }

    #[test]
    fn psql_variables_psql_would_replace_are_refused() {
        let got = check(
            "SELECT 1;\nSELECT :DBNAME, :undefined, arr[1:2];\nSELECT :'USER';\nSELECT :{?x};\n",
            TransactionMode::None,
        );
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(
            got[0].starts_with("f.sql:2: :DBNAME is a psql variable"),
            "{got:?}"
        );
        assert!(got[1].starts_with("f.sql:3: :'USER'"), "{got:?}");
        assert!(got[2].starts_with("f.sql:4: :{?x}"), "{got:?}");
    }

    #[test]
    fn joined_statements_are_checked_one_by_one() {
        let tx = TransactionMode::PerChangeset;
        assert!(check("SELECT 1\\; SELECT 2;", tx).is_empty());
        let got = check("SELECT 1\\; COMMIT;", tx);
        assert!(
            got.len() == 1 && got[0].contains("COMMIT would end"),
            "{got:?}"
        );
        let got = check("SELECT 1\\; VACUUM;", tx);
        assert!(got.len() == 1 && got[0].contains("VACUUM"), "{got:?}");
        // A joined BEGIN/COMMIT is no wrapper.
        let got = check("BEGIN\\; SELECT 1;\nCOMMIT;\n", tx);
        assert_eq!(got.len(), 2, "{got:?}");
        for mode in [TransactionMode::None, tx] {
            let got = check("SELECT 1\\; COPY t FROM STDIN;\n\\.\n", mode);
            assert!(
                got.iter().any(|p| p.contains("COPY cannot be joined")),
                "{got:?}"
            );
        }
        assert!(check("SELECT 1\\; COMMIT;", TransactionMode::None).is_empty());
    }

    #[test]
    fn empty_statements_do_not_hide_a_wrapper() {
        let tx = TransactionMode::PerChangeset;
        assert!(check(";\nBEGIN;\nSELECT 1;;\nCOMMIT;\n;\n", tx).is_empty());
        assert!(check("COPY (SELECT 1) TO STDOUT;", tx).is_empty());
    }

    #[test]
    fn set_on_error_stop_is_accepted_and_every_other_set_refused() {
        for (script, refused) in [
            ("\\set ON_ERROR_STOP on\n", false),
            ("\\set ON_ERROR_STOP 1\n", false),
            ("\\set ON_ERROR_STOP true\n", false),
            ("\\set ON_ERROR_STOP off\n", true),
            ("\\set ON_ERROR_STOP\n", true),
            ("\\set AUTOCOMMIT on\n", true),
            ("\\set x 1\n", true),
            ("\\set ON_ERROR_STOP on extra\n", true),
        ] {
            let got = check(
                &format!("{script}SELECT 1;\n"),
                TransactionMode::PerChangeset,
            );
            assert_eq!(!got.is_empty(), refused, "{script:?}: {got:?}");
        }
    }

    #[test]
    fn string_syntax_changes_are_refused_except_turning_it_on() {
        for (script, refused) in [
            ("SET standard_conforming_strings = on;\n", false),
            ("SET standard_conforming_strings TO on;\n", false),
            ("set local standard_conforming_strings = 'on';\n", false),
            ("SET standard_conforming_strings = off;\n", true),
            (
                "SELECT set_config('standard_conforming_strings', 'off', false);\n",
                true,
            ),
            (
                "ALTER ROLE x SET standard_conforming_strings = off;\n",
                true,
            ),
            (
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET standard_conforming_strings = off AS 'SELECT 1';\n",
                true,
            ),
        ] {
            let got = check(script, TransactionMode::PerChangeset);
            assert_eq!(!got.is_empty(), refused, "{script:?}: {got:?}");
        }
    }

    #[test]
    fn non_transactional_statements_need_transaction_none() {
        let cases = [
            (
                "CREATE INDEX CONCURRENTLY i ON t (a);",
                Some("CREATE INDEX CONCURRENTLY"),
            ),
            (
                "create unique index concurrently if not exists i on t (a);",
                Some("CREATE INDEX CONCURRENTLY"),
            ),
            (
                "DROP INDEX CONCURRENTLY i;",
                Some("DROP INDEX CONCURRENTLY"),
            ),
            (
                "REINDEX TABLE CONCURRENTLY t;",
                Some("REINDEX CONCURRENTLY"),
            ),
            (
                "REFRESH MATERIALIZED VIEW CONCURRENTLY v;",
                Some("REFRESH MATERIALIZED VIEW CONCURRENTLY"),
            ),
            (
                "ALTER TABLE p DETACH PARTITION c CONCURRENTLY;",
                Some("DETACH PARTITION CONCURRENTLY"),
            ),
            ("VACUUM ANALYZE t;", Some("VACUUM")),
            ("ALTER SYSTEM SET work_mem = '8MB';", Some("ALTER SYSTEM")),
            (
                "CREATE SUBSCRIPTION s CONNECTION 'x' PUBLICATION p;",
                Some("CREATE SUBSCRIPTION"),
            ),
            ("CREATE INDEX i ON t (a);", None),
            ("REFRESH MATERIALIZED VIEW v;", None),
            ("SELECT 'CREATE INDEX CONCURRENTLY';", None),
            (
                "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'VACUUM'; END $$;",
                None,
            ),
            ("-- VACUUM;\nSELECT 1;", None),
        ];
        for (sql, want) in cases {
            let got = check(sql, TransactionMode::PerChangeset);
            match want {
                Some(what) => {
                    assert_eq!(got.len(), 1, "{sql}: {got:?}");
                    assert!(
                        got[0].contains(what) && got[0].starts_with("f.sql:1:"),
                        "{sql}: {got:?}"
                    );
                }
                None => assert!(got.is_empty(), "{sql}: {got:?}"),
            }
            assert!(
                check(sql, TransactionMode::None).is_empty(),
                "{sql} in transaction: none"
            );
        }
    }

    #[test]
    fn transaction_control_is_refused_in_a_transactional_changeset() {
        let got = check(
            "SELECT 0;\nBEGIN;\nSELECT 1;\nCOMMIT;\n",
            TransactionMode::PerChangeset,
        );
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].starts_with("f.sql:2: BEGIN would end"), "{got:?}");
        assert!(got[1].starts_with("f.sql:4: COMMIT"), "{got:?}");
        let refused = [
            "BEGIN;\nSELECT 1;\n",
            "SELECT 1;\nCOMMIT;\n",
            "BEGIN;\nCOMMIT;\nSELECT 1;\n",
            "BEGIN ISOLATION LEVEL SERIALIZABLE;\nSELECT 1;\nCOMMIT;\n",
            "BEGIN;\nSELECT 1;\nROLLBACK;\n",
            "BEGIN;\nCOMMIT;\nBEGIN;\nCOMMIT;\n",
        ];
        for script in refused {
            assert!(
                !check(script, TransactionMode::PerChangeset).is_empty(),
                "{script:?}"
            );
        }
        assert!(
            check(
                "SAVEPOINT a; ROLLBACK TO a; RELEASE a;",
                TransactionMode::PerChangeset
            )
            .is_empty()
        );
        let atomic = "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END;";
        assert!(check(atomic, TransactionMode::PerChangeset).is_empty());
        // A script wrapped whole in its own transaction is what psql -1 runs atomically anyway.
        for wrapped in [
            "BEGIN;\nCREATE TABLE t (id int);\nCOMMIT;\n",
            "-- a migration\nstart transaction;\nSELECT 1;\nSELECT 2;\nend;\n",
            "BEGIN WORK;\nSELECT 1;\nCOMMIT TRANSACTION;",
        ] {
            assert!(
                check(wrapped, TransactionMode::PerChangeset).is_empty(),
                "{wrapped:?}"
            );
        }
    }
}
