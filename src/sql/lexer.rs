//! A streaming splitter that finds statement boundaries the way psql does.
//!
//! It reads a script line by line (as psql does) and tracks: single-quoted
//! strings (`standard_conforming_strings` on), `E''` strings with backslash
//! escapes, dollar quotes with and without tags, double-quoted identifiers,
//! `--` comments, nested `/* */` comments, parentheses, and psql's heuristic
//! for SQL-standard function bodies (`BEGIN ATOMIC … END` inside
//! `CREATE [OR REPLACE] FUNCTION|PROCEDURE`). A backslash outside quotes
//! starts a psql meta-command that runs to the end of the line. After
//! `COPY … FROM STDIN`, the following lines up to `\.` are data.

use std::io::{self, BufRead};

/// One thing found in a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Statement(Statement),
    /// A psql meta-command such as `\c db` or `\restrict KEY`.
    Meta(MetaCommand),
}

/// A top-level SQL statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The statement as sent to the server (leading whitespace and `--`
    /// comments dropped, as psql drops them).
    pub text: String,
    /// 1-based line and column of its first byte in the script.
    pub line: usize,
    pub column: usize,
    /// Upper-cased top-level words, at most [`MAX_WORDS`], for classification.
    pub words: Vec<String>,
}

/// Words of a statement kept for classification.
pub const MAX_WORDS: usize = 24;

impl Statement {
    /// Whether this is `COPY … FROM STDIN`, whose data follows in the script.
    pub fn is_copy_from_stdin(&self) -> bool {
        self.words.first().is_some_and(|w| w == "COPY")
            && self
                .words
                .windows(2)
                .any(|w| w[0] == "FROM" && w[1] == "STDIN")
    }

    /// Whether this is `COPY … TO STDOUT`.
    pub fn is_copy_to_stdout(&self) -> bool {
        self.words.first().is_some_and(|w| w == "COPY")
            && self
                .words
                .windows(2)
                .any(|w| w[0] == "TO" && w[1] == "STDOUT")
    }

    /// The first line of the statement, for messages.
    pub fn first_line(&self) -> &str {
        self.text.lines().next().unwrap_or("")
    }
}

/// A psql meta-command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaCommand {
    /// The command without its backslash: `c`, `restrict`, `echo`, `.`.
    pub name: String,
    /// The rest of its line, trimmed.
    pub args: String,
    pub line: usize,
}

/// Errors while splitting.
#[derive(Debug, thiserror::Error)]
pub enum LexError {
    #[error("line {line}: {source}")]
    Io { line: usize, source: io::Error },
    #[error("line {line}: statement is not valid UTF-8")]
    NotUtf8 { line: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Normal,
    Quote {
        escapes: bool,
    },
    Ident,
    /// Inside a dollar quote; its delimiter is in `Splitter::dollar`.
    Dollar,
    Comment(u32),
}

/// Splits a script read from `reader` into statements and meta-commands.
pub struct Splitter<R> {
    reader: R,
    line: Vec<u8>,
    pos: usize,
    line_no: usize,
    eof: bool,
    state: State,
    stmt: Vec<u8>,
    stmt_line: usize,
    stmt_column: usize,
    words: Vec<String>,
    paren_depth: u32,
    begin_depth: u32,
    identifiers: [u8; 4],
    identifier_count: usize,
    /// Set after a `COPY … FROM STDIN` statement: the next lines are data.
    in_copy: bool,
    /// The rest of the line that held a `COPY … FROM STDIN` statement, and
    /// that line's number: psql runs it as SQL once the data has ended.
    replay: Option<(Vec<u8>, usize)>,
    /// The real line count while a replayed line is being read.
    resume_line_no: Option<usize>,
    /// The delimiter of the dollar quote being read (`$$`, `$tag$`).
    dollar: Vec<u8>,
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_char(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

impl<R: BufRead> Splitter<R> {
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            line: Vec::new(),
            pos: 0,
            line_no: 0,
            eof: false,
            state: State::Normal,
            stmt: Vec::new(),
            stmt_line: 0,
            stmt_column: 0,
            words: Vec::new(),
            paren_depth: 0,
            begin_depth: 0,
            identifiers: [0; 4],
            identifier_count: 0,
            in_copy: false,
            replay: None,
            resume_line_no: None,
            dollar: Vec::new(),
        }
    }

    /// The line number last read (1-based).
    pub fn line_no(&self) -> usize {
        self.line_no
    }

    /// The reader, once splitting is done (to finish a hash over it).
    pub fn into_inner(self) -> R {
        self.reader
    }

    fn read_line(&mut self) -> Result<bool, LexError> {
        if let Some(n) = self.resume_line_no.take() {
            self.line_no = n;
        }
        if !self.in_copy
            && let Some((bytes, at)) = self.replay.take()
        {
            self.resume_line_no = Some(self.line_no);
            self.line = bytes;
            self.pos = 0;
            self.line_no = at;
            return Ok(true);
        }
        if self.eof {
            return Ok(false);
        }
        self.line.clear();
        self.pos = 0;
        let n = self
            .reader
            .read_until(b'\n', &mut self.line)
            .map_err(|source| LexError::Io {
                line: self.line_no + 1,
                source,
            })?;
        if n == 0 {
            self.eof = true;
            return Ok(false);
        }
        self.line_no += 1;
        Ok(true)
    }

    /// Reads the next chunk of COPY data after a `COPY … FROM STDIN`
    /// statement: whole lines, up to about `limit` bytes. Returns `None` once
    /// the `\.` line (or end of input, an error) is reached.
    pub fn next_copy_chunk(&mut self, limit: usize) -> Result<Option<Vec<u8>>, LexError> {
        if !self.in_copy {
            return Ok(None);
        }
        let mut chunk = Vec::new();
        // The rest of the line that held the COPY statement is not data:
        // psql runs it as SQL after the data (keep it for then).
        if self.pos < self.line.len() {
            let rest = self.line[self.pos..].to_vec();
            self.pos = self.line.len();
            if rest.iter().any(|b| !b.is_ascii_whitespace()) {
                self.replay = Some((rest, self.line_no));
            }
        }
        while chunk.len() < limit {
            if !self.read_line()? {
                // psql ends COPY data at the end of the file as well as at `\.`.
                self.in_copy = false;
                break;
            }
            let body = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
            let body = body.strip_suffix(b"\r").unwrap_or(body);
            if body == b"\\." {
                if !self.line.ends_with(b"\n") {
                    // psql 15 sends a final `\.` without newline as data, and
                    // the server refuses it ("end-of-copy marker corrupt").
                    chunk.extend_from_slice(&self.line);
                    self.pos = self.line.len();
                    self.in_copy = false;
                    break;
                }
                self.pos = self.line.len();
                self.in_copy = false;
                break;
            }
            chunk.extend_from_slice(&self.line);
            self.pos = self.line.len();
        }
        if chunk.is_empty() && !self.in_copy {
            return Ok(None);
        }
        Ok(Some(chunk))
    }

    /// Skips the remaining COPY data, if the caller did not consume it.
    fn skip_copy(&mut self) -> Result<(), LexError> {
        while self.next_copy_chunk(1 << 20)?.is_some() {}
        Ok(())
    }

    fn push(&mut self, bytes: &[u8]) {
        if self.stmt.is_empty() {
            self.stmt_line = self.line_no;
            self.stmt_column = self.pos + 1;
        }
        self.stmt.extend_from_slice(bytes);
    }

    /// Pushes `line[start..end]` (the current line) onto the statement.
    fn stmt_push_range(&mut self, start: usize, end: usize) {
        if self.stmt.is_empty() {
            self.stmt_line = self.line_no;
            self.stmt_column = start + 1;
        }
        self.stmt.extend_from_slice(&self.line[start..end]);
    }

    fn emit(&mut self) -> Result<Option<Item>, LexError> {
        let bytes = std::mem::take(&mut self.stmt);
        let words = std::mem::take(&mut self.words);
        self.paren_depth = 0;
        self.begin_depth = 0;
        self.identifier_count = 0;
        let text = String::from_utf8(bytes).map_err(|_| LexError::NotUtf8 {
            line: self.stmt_line,
        })?;
        if text.trim() == ";" || text.trim().is_empty() {
            return Ok(None);
        }
        let stmt = Statement {
            text,
            line: self.stmt_line,
            column: self.stmt_column,
            words,
        };
        if stmt.is_copy_from_stdin() {
            self.in_copy = true;
        }
        Ok(Some(Item::Statement(stmt)))
    }

    /// psql's heuristic for `BEGIN ATOMIC … END` bodies, fed one identifier.
    ///
    /// A real parser would be exact, but psql is the reference: when the
    /// statement starts `CREATE [OR REPLACE] FUNCTION|PROCEDURE`, count
    /// `BEGIN`/`CASE` … `END` outside parentheses, and let a `;` end the
    /// statement only at depth 0. Copying the heuristic, quirks included,
    /// is what makes promoter send the same statements psql sends.
    fn track_identifier(&mut self, word: &[u8]) {
        let lower = word.to_ascii_lowercase();
        if self.identifier_count == 0 {
            self.identifiers = [0; 4];
        }
        if matches!(
            lower.as_slice(),
            b"create" | b"function" | b"procedure" | b"or" | b"replace"
        ) && self.identifier_count < self.identifiers.len()
        {
            self.identifiers[self.identifier_count] = lower[0];
        }
        self.identifier_count += 1;
        let ids = self.identifiers;
        let in_routine = ids[0] == b'c'
            && (ids[1] == b'f'
                || ids[1] == b'p'
                || (ids[1] == b'o' && ids[2] == b'r' && (ids[3] == b'f' || ids[3] == b'p')));
        if in_routine && self.paren_depth == 0 {
            match lower.as_slice() {
                b"begin" => self.begin_depth += 1,
                b"case" if self.begin_depth >= 1 => self.begin_depth += 1,
                b"end" if self.begin_depth > 0 => self.begin_depth -= 1,
                _ => {}
            }
        }
        if self.paren_depth == 0 && self.words.len() < MAX_WORDS {
            self.words
                .push(String::from_utf8_lossy(word).to_ascii_uppercase());
        }
    }

    /// The next statement or meta-command; `None` at the end of the script.
    pub fn next_item(&mut self) -> Result<Option<Item>, LexError> {
        if self.in_copy {
            self.skip_copy()?;
        }
        loop {
            if self.pos >= self.line.len() && !self.read_line()? {
                // End of input: whatever is left is the last statement (psql sends it).
                if self.stmt.iter().any(|b| !b.is_ascii_whitespace()) {
                    return self.emit();
                }
                return Ok(None);
            }
            let b = self.line[self.pos];
            let next = self.line.get(self.pos + 1).copied();
            match self.state {
                State::Normal => {
                    match b {
                        b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => {
                            if !self.stmt.is_empty() {
                                self.push(&[b]);
                            }
                            self.pos += 1;
                        }
                        b'-' if next == Some(b'-') => {
                            // A line comment; dropped before a statement starts, as psql does.
                            let end = self.line.len();
                            if !self.stmt.is_empty() {
                                self.stmt_push_range(self.pos, end);
                            }
                            self.pos = end;
                        }
                        b'/' if next == Some(b'*') => {
                            self.push(b"/*");
                            self.pos += 2;
                            self.state = State::Comment(1);
                        }
                        b'\'' => {
                            let n = self.stmt.len();
                            let escapes = n >= 1
                                && matches!(self.stmt[n - 1], b'e' | b'E')
                                && (n == 1 || !is_ident_char(self.stmt[n - 2]));
                            self.push(b"'");
                            self.pos += 1;
                            self.state = State::Quote { escapes };
                        }
                        b'"' => {
                            self.push(b"\"");
                            self.pos += 1;
                            self.state = State::Ident;
                        }
                        b'$' => {
                            if let Some(tag) = dollar_tag(&self.line[self.pos..]) {
                                let end = self.pos + tag.len() + 2;
                                self.dollar.clear();
                                self.dollar.extend_from_slice(&self.line[self.pos..end]);
                                self.stmt_push_range(self.pos, end);
                                self.pos = end;
                                self.state = State::Dollar;
                            } else {
                                self.push(b"$");
                                self.pos += 1;
                            }
                        }
                        b'(' => {
                            self.paren_depth += 1;
                            self.push(b"(");
                            self.pos += 1;
                        }
                        b')' => {
                            self.paren_depth = self.paren_depth.saturating_sub(1);
                            self.push(b")");
                            self.pos += 1;
                        }
                        b';' => {
                            self.push(b";");
                            self.pos += 1;
                            if self.paren_depth == 0
                                && self.begin_depth == 0
                                && let Some(item) = self.emit()?
                            {
                                return Ok(Some(item));
                            }
                        }
                        b'\\' => {
                            // A psql meta-command: to the end of the line.
                            let start = self.pos + 1;
                            let mut end = start;
                            if self
                                .line
                                .get(start)
                                .is_some_and(|c| c.is_ascii_alphabetic())
                            {
                                while self
                                    .line
                                    .get(end)
                                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
                                {
                                    end += 1;
                                }
                            } else if start < self.line.len() {
                                end = start + 1;
                            }
                            let name = String::from_utf8_lossy(&self.line[start..end]).into_owned();
                            let args = String::from_utf8_lossy(&self.line[end..]).trim().to_owned();
                            self.pos = self.line.len();
                            return Ok(Some(Item::Meta(MetaCommand {
                                name,
                                args,
                                line: self.line_no,
                            })));
                        }
                        c if is_ident_start(c) => {
                            let start = self.pos;
                            let mut end = start + 1;
                            while self.line.get(end).copied().is_some_and(is_ident_char) {
                                end += 1;
                            }
                            let word = self.line[start..end].to_vec();
                            self.push(&word);
                            self.pos = end;
                            self.track_identifier(&word);
                        }
                        c if c.is_ascii_digit() => {
                            // Numbers, including `1e5` and `0x1f`, so that letters in them
                            // are not taken for identifiers.
                            let start = self.pos;
                            let mut end = start + 1;
                            while self.line.get(end).is_some_and(|c| {
                                c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.'
                            }) {
                                end += 1;
                            }
                            self.stmt_push_range(start, end);
                            self.pos = end;
                        }
                        _ => {
                            self.push(&[b]);
                            self.pos += 1;
                        }
                    }
                }
                State::Quote { escapes } => {
                    if escapes && b == b'\\' {
                        let end = (self.pos + 2).min(self.line.len());
                        let bytes = self.line[self.pos..end].to_vec();
                        self.push(&bytes);
                        self.pos = end;
                    } else if b == b'\'' {
                        if next == Some(b'\'') {
                            self.push(b"''");
                            self.pos += 2;
                        } else {
                            self.push(b"'");
                            self.pos += 1;
                            self.state = State::Normal;
                        }
                    } else {
                        self.push(&[b]);
                        self.pos += 1;
                        self.push_run(|c| c != b'\'' && c != b'\\');
                    }
                }
                State::Ident => {
                    if b == b'"' {
                        if next == Some(b'"') {
                            self.push(b"\"\"");
                            self.pos += 2;
                        } else {
                            self.push(b"\"");
                            self.pos += 1;
                            self.state = State::Normal;
                        }
                    } else {
                        self.push_run(|c| c != b'"');
                    }
                }
                State::Dollar => {
                    if self.line[self.pos..].starts_with(&self.dollar) {
                        let end = self.pos + self.dollar.len();
                        self.stmt_push_range(self.pos, end);
                        self.pos = end;
                        self.state = State::Normal;
                    } else {
                        self.push(&[b]);
                        self.pos += 1;
                        self.push_run(|c| c != b'$');
                    }
                }
                State::Comment(depth) => {
                    if b == b'/' && next == Some(b'*') {
                        self.push(b"/*");
                        self.pos += 2;
                        self.state = State::Comment(depth + 1);
                    } else if b == b'*' && next == Some(b'/') {
                        self.push(b"*/");
                        self.pos += 2;
                        self.state = if depth == 1 {
                            State::Normal
                        } else {
                            State::Comment(depth - 1)
                        };
                    } else {
                        self.push(&[b]);
                        self.pos += 1;
                        self.push_run(|c| c != b'*' && c != b'/');
                    }
                }
            }
        }
    }

    /// Pushes bytes of the current line while `keep` holds (a fast path for string bodies).
    fn push_run(&mut self, keep: impl Fn(u8) -> bool) {
        let start = self.pos;
        let mut end = start;
        while end < self.line.len() && keep(self.line[end]) {
            end += 1;
        }
        if end > start {
            self.stmt_push_range(start, end);
            self.pos = end;
        }
    }
}

/// If `s` starts with a dollar-quote delimiter (`$$`, `$tag$`), its tag.
fn dollar_tag(s: &[u8]) -> Option<&[u8]> {
    debug_assert_eq!(s.first(), Some(&b'$'));
    let rest = &s[1..];
    let mut i = 0;
    while i < rest.len() && rest[i] != b'$' {
        let ok = if i == 0 {
            is_ident_start(rest[i])
        } else {
            is_ident_start(rest[i]) || rest[i].is_ascii_digit()
        };
        if !ok {
            return None;
        }
        i += 1;
    }
    (i < rest.len()).then(|| &rest[..i])
}

/// Splits a whole script held in memory (for tests and checks).
pub fn split_all(script: &[u8]) -> Result<Vec<Item>, LexError> {
    let mut splitter = Splitter::new(script);
    let mut out = Vec::new();
    while let Some(item) = splitter.next_item()? {
        out.push(item);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statements(script: &str) -> Vec<String> {
        split_all(script.as_bytes())
            .unwrap()
            .into_iter()
            .filter_map(|i| match i {
                Item::Statement(s) => Some(s.text),
                Item::Meta(_) => None,
            })
            .collect()
    }

    #[test]
    fn splits_like_psql() {
        let cases: &[(&str, &[&str])] = &[
            ("SELECT 1; SELECT 2;", &["SELECT 1;", "SELECT 2;"]),
            ("SELECT 1", &["SELECT 1"]),
            (
                "-- leading comment; with a semicolon\nSELECT 1;\n",
                &["SELECT 1;"],
            ),
            (
                "SELECT 1 -- trailing; comment\n, 2;",
                &["SELECT 1 -- trailing; comment\n, 2;"],
            ),
            ("SELECT ';';", &["SELECT ';';"]),
            ("SELECT 'it''s; fine';", &["SELECT 'it''s; fine';"]),
            ("SELECT E'\\'; still';", &["SELECT E'\\'; still';"]),
            (
                "SELECT e'a\\\\'; SELECT 2;",
                &["SELECT e'a\\\\';", "SELECT 2;"],
            ),
            ("SELECT '\\'; SELECT 2;", &["SELECT '\\';", "SELECT 2;"]),
            ("SELECT U&'d\\0061t; a';", &["SELECT U&'d\\0061t; a';"]),
            (
                "SELECT \"a;b\"\"c\" FROM t;",
                &["SELECT \"a;b\"\"c\" FROM t;"],
            ),
            ("SELECT $$a;b$$;", &["SELECT $$a;b$$;"]),
            ("SELECT $_$a;$$;b$_$;", &["SELECT $_$a;$$;b$_$;"]),
            (
                "SELECT $BODY$ x; $body$ y; $BODY$;",
                &["SELECT $BODY$ x; $body$ y; $BODY$;"],
            ),
            ("SELECT $1; SELECT 2;", &["SELECT $1;", "SELECT 2;"]),
            ("SELECT a$b; SELECT 2;", &["SELECT a$b;", "SELECT 2;"]),
            (
                "/* a; /* nested; */ still; */ SELECT 1;",
                &["/* a; /* nested; */ still; */ SELECT 1;"],
            ),
            ("SELECT (1; 2);", &["SELECT (1; 2);"]),
            (
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END; SELECT 3;",
                &[
                    "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;",
                    "SELECT 3;",
                ],
            ),
            (
                "CREATE OR REPLACE PROCEDURE p() BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; END; SELECT 3;",
                &[
                    "CREATE OR REPLACE PROCEDURE p() BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; END;",
                    "SELECT 3;",
                ],
            ),
            ("BEGIN; SELECT 1; END;", &["BEGIN;", "SELECT 1;", "END;"]),
            ("SELECT 1;;\n;\nSELECT 2;", &["SELECT 1;", "SELECT 2;"]),
            ("  \n-- only a comment\n", &[]),
            ("SELECT 1e5; SELECT 0x1F;", &["SELECT 1e5;", "SELECT 0x1F;"]),
        ];
        for (script, want) in cases {
            assert_eq!(statements(script), *want, "{script:?}");
        }
    }

    #[test]
    fn reports_line_and_column_of_each_statement() {
        let items = split_all(b"SELECT 1;\n\n  SELECT\n 2; SELECT 3;").unwrap();
        let pos: Vec<(usize, usize)> = items
            .iter()
            .map(|i| match i {
                Item::Statement(s) => (s.line, s.column),
                Item::Meta(m) => (m.line, 0),
            })
            .collect();
        assert_eq!(pos, [(1, 1), (3, 3), (4, 5)]);
    }

    #[test]
    fn finds_meta_commands_outside_quotes_only() {
        let items = split_all(
            b"\\restrict abc\nSELECT '\\c x';\n\\c other\n\\echo hi \\quit\nSELECT $$ \\i $$;\n",
        )
        .unwrap();
        let metas: Vec<(String, usize)> = items
            .iter()
            .filter_map(|i| match i {
                Item::Meta(m) => Some((m.name.clone(), m.line)),
                Item::Statement(_) => None,
            })
            .collect();
        assert_eq!(
            metas,
            [("restrict".into(), 1), ("c".into(), 3), ("echo".into(), 4)]
        );
    }

    #[test]
    fn copy_data_runs_to_the_terminator() {
        let script = b"COPY t (a, b) FROM stdin;\n1\tx;y\n2\t\\N\n\\.\nSELECT 1;\n";
        let mut s = Splitter::new(&script[..]);
        let Some(Item::Statement(copy)) = s.next_item().unwrap() else {
            panic!()
        };
        assert!(copy.is_copy_from_stdin());
        assert_eq!(
            s.next_copy_chunk(1 << 20).unwrap().unwrap(),
            b"1\tx;y\n2\t\\N\n"
        );
        assert_eq!(s.next_copy_chunk(1 << 20).unwrap(), None);
        let Some(Item::Statement(next)) = s.next_item().unwrap() else {
            panic!()
        };
        assert_eq!((next.text.as_str(), next.line), ("SELECT 1;", 5));
        assert!(s.next_item().unwrap().is_none());
    }

    #[test]
    fn copy_data_skipped_by_the_caller_is_not_parsed_as_sql() {
        let items = split_all(b"COPY t FROM STDIN;\n'unbalanced; quote\n\\.\nSELECT 2;\n").unwrap();
        assert_eq!(items.len(), 2);
    }

    #[test]
    fn the_rest_of_a_copy_line_runs_after_the_data_as_in_psql() {
        let script = b"COPY t FROM stdin; CREATE TABLE x(i int);\n1\n2\n\\.\nSELECT 1;\n";
        let mut s = Splitter::new(&script[..]);
        let Some(Item::Statement(copy)) = s.next_item().unwrap() else {
            panic!("no COPY")
        };
        assert_eq!(copy.text, "COPY t FROM stdin;");
        assert_eq!(s.next_copy_chunk(1 << 20).unwrap().unwrap(), b"1\n2\n");
        assert_eq!(s.next_copy_chunk(1 << 20).unwrap(), None);
        let Some(Item::Statement(rest)) = s.next_item().unwrap() else {
            panic!("the rest of the COPY line was lost")
        };
        assert_eq!((rest.text.trim(), rest.line), ("CREATE TABLE x(i int);", 1));
        let Some(Item::Statement(last)) = s.next_item().unwrap() else {
            panic!("no SELECT")
        };
        assert_eq!((last.text.as_str(), last.line), ("SELECT 1;", 5));
    }

    #[test]
    fn a_final_terminator_without_newline_is_sent_as_data_as_psql_does() {
        let mut s = Splitter::new(&b"COPY t FROM STDIN;\n1\n\\."[..]);
        s.next_item().unwrap();
        assert_eq!(s.next_copy_chunk(1 << 20).unwrap().unwrap(), b"1\n\\.");
        assert_eq!(s.next_copy_chunk(1 << 20).unwrap(), None);
    }

    #[test]
    fn copy_data_ends_at_end_of_file_as_in_psql() {
        let mut s = Splitter::new(&b"COPY t FROM STDIN;\n1\n2"[..]);
        assert!(matches!(s.next_item().unwrap(), Some(Item::Statement(_))));
        assert_eq!(s.next_copy_chunk(1 << 20).unwrap().unwrap(), b"1\n2");
        assert_eq!(s.next_copy_chunk(1 << 20).unwrap(), None);
        assert!(s.next_item().unwrap().is_none());
    }

    #[test]
    fn words_classify_statements() {
        let items = split_all(b"create unique index concurrently i on t (a);").unwrap();
        let Item::Statement(s) = &items[0] else {
            panic!()
        };
        assert_eq!(
            s.words,
            ["CREATE", "UNIQUE", "INDEX", "CONCURRENTLY", "I", "ON", "T"]
        );
    }

    /// A cheap, deterministic cousin of the cargo-fuzz target (fuzz/): random
    /// scripts built from the tokens that change the lexer's state.
    #[test]
    fn random_scripts_never_panic_and_positions_only_go_forward() {
        const PIECES: &[&str] = &[
            "'", "''", "E'", "\\", "\"", "$$", "$a$", "$1", "--", "/*", "*/", "(", ")", ";", "\n",
            "\r\n", " ", "BEGIN", "ATOMIC", "END", "CASE", "CREATE", "FUNCTION", "OR", "REPLACE",
            "COPY", "FROM", "STDIN", "\\.", "\\c", "é", "x", "1e5", "U&'",
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            let script: String = (0..len)
                .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                .collect();
            let mut splitter = Splitter::new(script.as_bytes());
            // Statements go forward, and so do meta-commands; a meta-command in
            // the middle of a statement comes before it, as in psql.
            let (mut last_statement, mut last_meta) = (0, 0);
            while let Ok(Some(item)) = splitter.next_item() {
                let (line, last) = match item {
                    Item::Statement(s) => (s.line, &mut last_statement),
                    Item::Meta(m) => (m.line, &mut last_meta),
                };
                assert!(line >= *last, "{script:?}");
                *last = line;
            }
        }
    }

    #[test]
    fn never_panics_on_odd_input() {
        for script in [
            "'",
            "\"",
            "$a$",
            "/*",
            "\\",
            "E'\\",
            "$",
            "$$",
            "(((",
            ")))",
            "COPY x FROM stdin",
            "\u{feff};",
            "\\\n",
        ] {
            let _ = split_all(script.as_bytes());
        }
    }
}
