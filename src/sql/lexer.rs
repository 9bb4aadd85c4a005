//! A streaming splitter that finds statement boundaries, and the exact text
//! of each statement, the way psql 15 does (`src/fe_utils/psqlscan.l` and
//! `src/bin/psql/mainloop.c` are the reference).
//!
//! It reads a script line by line, as psql does, and tracks: single-quoted
//! strings (`standard_conforming_strings` on), `E''` strings with backslash
//! escapes, quote continuation, dollar quotes with and without tags,
//! double-quoted identifiers, `--` comments, nested `/* */` comments,
//! parentheses, and psql's heuristic for SQL-standard function bodies
//! (`BEGIN ATOMIC … END` inside `CREATE [OR REPLACE] FUNCTION|PROCEDURE`).
//!
//! The text is what psql puts in its query buffer: whitespace and `--`
//! comments before a statement starts are dropped; an empty line outside
//! quotes and comments is skipped; lines are joined with one newline, added
//! only when the next line brings something; `\;` and `\:` put a bare `;` or
//! `:` in the buffer (so `SELECT 1\; SELECT 2;` is one query); a `;` with
//! nothing before it is a statement of its own (psql sends it). A backslash
//! outside quotes starts a psql meta-command; after `COPY … FROM STDIN`, the
//! following lines up to `\.` are data.

use std::io::{self, BufRead};

/// One thing found in a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Statement(Statement),
    /// A psql meta-command such as `\c db` or `\restrict KEY`.
    Meta(MetaCommand),
}

/// A top-level SQL statement: one query as psql sends it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Statement {
    /// The text exactly as psql sends it to the server.
    pub text: String,
    /// 1-based line and column of its first byte in the script.
    pub line: usize,
    pub column: usize,
    /// Upper-cased top-level words, at most [`MAX_WORDS`], for classification
    /// (of the first statement, when several are joined with `\;`).
    pub words: Vec<String>,
    /// The words of each further statement joined to the first with `\;`.
    pub joined: Vec<Vec<String>>,
    /// psql variable references outside quotes (`:name`, `:'name'`,
    /// `:"name"`, `:{?name}`), each with its line: psql would substitute
    /// the defined ones.
    pub variables: Vec<(Variable, usize)>,
    /// Byte offsets in `text` where the script had a backslash that psql
    /// drops (`\;`, `\:`), to map server positions back to columns.
    pub dropped: Vec<usize>,
    /// Nothing but `;`, whitespace and comments: the server does nothing.
    pub empty: bool,
}

/// A psql variable reference found in a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub name: String,
    /// As written: `:name`, `:'name'`, `:"name"` or `:{?name}`.
    pub written: String,
}

/// Words of a statement kept for classification.
pub const MAX_WORDS: usize = 24;

impl Statement {
    /// The words of every statement in this query: one list, or several
    /// when they are joined with `\;`.
    pub fn parts(&self) -> impl Iterator<Item = &[String]> {
        std::iter::once(self.words.as_slice()).chain(self.joined.iter().map(Vec::as_slice))
    }

    /// Whether this is `COPY … FROM STDIN`, whose data follows in the script.
    pub fn is_copy_from_stdin(&self) -> bool {
        self.parts().any(is_copy_from_stdin)
    }

    /// Whether this is `COPY … TO STDOUT`.
    pub fn is_copy_to_stdout(&self) -> bool {
        self.parts().any(|w| {
            w.first().is_some_and(|w| w == "COPY")
                && w.windows(2).any(|w| w[0] == "TO" && w[1] == "STDOUT")
        })
    }

    /// Whether several statements are joined into this query with `\;`.
    pub fn is_joined(&self) -> bool {
        !self.joined.is_empty()
    }

    /// The first line of the statement, for messages.
    pub fn first_line(&self) -> &str {
        self.text.lines().next().unwrap_or("")
    }
}

fn is_copy_from_stdin(words: &[String]) -> bool {
    words.first().is_some_and(|w| w == "COPY")
        && words.windows(2).any(|w| w[0] == "FROM" && w[1] == "STDIN")
}

/// A psql meta-command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaCommand {
    /// The command without its backslash, up to whitespace or the next
    /// backslash, as psql reads it: `c`, `restrict`, `echo`, `.`.
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
    #[error(
        "line 1: this is a pg_dump archive in custom format, not a SQL script (psql refuses it too; restore it with pg_restore, or dump with --format=plain)"
    )]
    CustomDump,
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
    /// The current line as read, its newline included (COPY data is sent so).
    line: Vec<u8>,
    /// Where the line's content ends: its length without the newline.
    end: usize,
    pos: usize,
    line_no: usize,
    eof: bool,
    state: State,
    stmt: Vec<u8>,
    stmt_line: usize,
    stmt_column: usize,
    /// Where the newline that joined the current line to the statement
    /// ends, while nothing else has been added: a meta-command alone on its
    /// line takes it back, as psql does.
    added_newline: Option<usize>,
    words: Vec<String>,
    joined: Vec<Vec<String>>,
    variables: Vec<(Variable, usize)>,
    dropped: Vec<usize>,
    /// Whether the statement has anything but `;`, whitespace and comments.
    has_token: bool,
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

/// The whole lines of COPY data at the start of `buf`, up to about `limit`
/// bytes: how many, where they end, and, when one of them is the end of
/// the data (`\.`, with LF or CR LF), where the data before it ends (the
/// lines counted and the end then include that line).
fn whole_copy_lines(buf: &[u8], limit: usize) -> (usize, usize, Option<usize>) {
    let (mut lines, mut end) = (0, 0);
    for nl in memchr::memchr_iter(b'\n', buf) {
        let line = &buf[end..nl];
        let body = line.strip_suffix(b"\r").unwrap_or(line);
        if body == b"\\." {
            return (lines + 1, nl + 1, Some(end));
        }
        lines += 1;
        end = nl + 1;
        if end >= limit {
            break;
        }
    }
    (lines, end, None)
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_char(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

/// A character of a psql variable name.
fn is_variable_char(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit()
}

/// psql 15's whitespace (`\v` is not: it is sent as a character).
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')
}

/// Where a number token ends, by PostgreSQL 15's rules: digits, an
/// optional fraction and exponent, and trailing junk — a whole identifier
/// glued to it (`123abc`, `0x1f`, `1ebegin` are one token each). Only its
/// end matters: an identifier after it is one the `BEGIN ATOMIC` heuristic
/// counts. (Checked against psql by tests/it/parity.rs.)
fn number_end(s: &[u8], start: usize) -> usize {
    let digits = |mut i: usize| {
        while s.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let mut i = digits(start);
    // `1..10` is the integer 1 and `..`.
    if s.get(i) == Some(&b'.') && s.get(i + 1) != Some(&b'.') {
        i = digits(i + 1);
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        let sign = matches!(s.get(i + 1), Some(b'+' | b'-'));
        let j = i + 1 + usize::from(sign);
        if s.get(j).is_some_and(u8::is_ascii_digit) {
            i = digits(j);
        } else if sign {
            // `1e+` is a token of its own; what follows is not junk.
            return j;
        }
    }
    if s.get(i).copied().is_some_and(is_ident_start) {
        i += 1;
        while s.get(i).copied().is_some_and(is_ident_char) {
            i += 1;
        }
    }
    i
}

/// After a closing quote, a continuation of the same string on the same
/// line: whitespace or a comment, a line break (a CR, inside a line), any
/// whitespace, and a quote. Returns the length up to and including that
/// quote. (Across lines psql never sees one: it scans each line alone.)
fn quote_continuation(s: &[u8]) -> Option<usize> {
    let comment_end = |mut i: usize| {
        while i < s.len() && !matches!(s[i], b'\n' | b'\r') {
            i += 1;
        }
        i
    };
    let mut i = 0;
    loop {
        match s.get(i) {
            Some(b' ' | b'\t' | b'\x0c') => i += 1,
            Some(b'-') if s.get(i + 1) == Some(&b'-') => i = comment_end(i + 2),
            _ => break,
        }
    }
    if !matches!(s.get(i), Some(b'\n' | b'\r')) {
        return None;
    }
    i += 1;
    loop {
        match s.get(i) {
            Some(&c) if is_space(c) => i += 1,
            Some(b'-') if s.get(i + 1) == Some(&b'-') => {
                let end = comment_end(i + 2);
                if end < s.len() {
                    i = end + 1;
                } else {
                    return None;
                }
            }
            _ => break,
        }
    }
    (s.get(i) == Some(&b'\'')).then_some(i + 1)
}

impl<R: BufRead> Splitter<R> {
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            line: Vec::new(),
            end: 0,
            pos: 0,
            line_no: 0,
            eof: false,
            state: State::Normal,
            stmt: Vec::new(),
            stmt_line: 0,
            stmt_column: 0,
            added_newline: None,
            words: Vec::new(),
            joined: Vec::new(),
            variables: Vec::new(),
            dropped: Vec::new(),
            has_token: false,
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

    /// The byte at `i` of the current line's content.
    fn at(&self, i: usize) -> Option<u8> {
        (i < self.end).then(|| self.line[i])
    }

    /// Reads the next line, raw. Returns whether it was a replayed rest of a
    /// COPY line, or `None` at the end of the input.
    fn read_line(&mut self) -> Result<Option<bool>, LexError> {
        if let Some(n) = self.resume_line_no.take() {
            self.line_no = n;
        }
        if !self.in_copy
            && let Some((bytes, at)) = self.replay.take()
        {
            self.resume_line_no = Some(self.line_no);
            self.end = bytes.len();
            self.line = bytes;
            self.pos = 0;
            self.line_no = at;
            return Ok(Some(true));
        }
        if self.eof {
            return Ok(None);
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
            self.end = 0;
            return Ok(None);
        }
        self.line_no += 1;
        if self.line_no == 1 && !self.in_copy {
            // psql ignores a UTF-8 byte-order mark, and refuses a pg_dump
            // archive before sending anything.
            if self.line.starts_with(b"\xef\xbb\xbf") {
                self.line.drain(..3);
            }
            if self.line.starts_with(b"PGDMP") {
                return Err(LexError::CustomDump);
            }
        }
        self.end = self.line.len() - usize::from(self.line.ends_with(b"\n"));
        Ok(Some(false))
    }

    /// Reads the next line of SQL as psql's main loop does: an empty line
    /// outside quotes and comments is skipped, and a newline joins the line
    /// to a statement already begun. Returns false at the end of the input.
    fn next_sql_line(&mut self) -> Result<bool, LexError> {
        loop {
            match self.read_line()? {
                None => return Ok(false),
                Some(true) => return Ok(true),
                Some(false) if self.end == 0 && self.state == State::Normal => {}
                Some(false) => {
                    if !self.stmt.is_empty() {
                        self.stmt.push(b'\n');
                        self.added_newline = Some(self.stmt.len());
                    }
                    return Ok(true);
                }
            }
        }
    }

    /// Reads the next chunk of COPY data after a `COPY … FROM STDIN`
    /// statement: whole lines, up to about `limit` bytes. Returns `None` once
    /// the `\.` line (or end of input, an error) is reached.
    pub fn next_copy_chunk(&mut self, limit: usize) -> Result<Option<Vec<u8>>, LexError> {
        let mut chunk = Vec::new();
        Ok(self.copy_data(limit, Some(&mut chunk))?.then_some(chunk))
    }

    /// [`Self::next_copy_chunk`], into `chunk` (or, without one, only
    /// skipped): false once the data has ended and nothing was read.
    ///
    /// Whole lines are taken from the reader's buffer at once, found by
    /// their newlines; a line that is not whole in the buffer (longer than
    /// it, or the last one without a newline) is read alone, as SQL is.
    fn copy_data(
        &mut self,
        limit: usize,
        mut chunk: Option<&mut Vec<u8>>,
    ) -> Result<bool, LexError> {
        if !self.in_copy {
            return Ok(false);
        }
        let mut taken = 0usize;
        // The rest of the line that held the COPY statement is not data:
        // psql runs it as SQL after the data (keep it for then).
        if self.pos < self.end {
            let rest = self.line[self.pos..self.end].to_vec();
            self.pos = self.end;
            if rest.iter().any(|b| !b.is_ascii_whitespace()) {
                self.replay = Some((rest, self.line_no));
            }
        }
        while taken < limit {
            if self.resume_line_no.is_none() && !self.eof {
                let buf = self.reader.fill_buf().map_err(|source| LexError::Io {
                    line: self.line_no + 1,
                    source,
                })?;
                let (lines, end, marker) = whole_copy_lines(buf, limit - taken);
                if lines > 0 {
                    let data = marker.unwrap_or(end);
                    if let Some(chunk) = chunk.as_deref_mut() {
                        chunk.extend_from_slice(&buf[..data]);
                    }
                    taken += data;
                    self.reader.consume(end);
                    self.line_no += lines;
                    self.line.clear();
                    (self.pos, self.end) = (0, 0);
                    if marker.is_some() {
                        self.in_copy = false;
                        break;
                    }
                    continue;
                }
            }
            if self.read_line()?.is_none() {
                // psql ends COPY data at the end of the file as well as at `\.`.
                self.in_copy = false;
                break;
            }
            let body = &self.line[..self.end];
            let body = body.strip_suffix(b"\r").unwrap_or(body);
            self.pos = self.end;
            if body == b"\\." {
                if self.end == self.line.len() {
                    // psql 15 sends a final `\.` without newline as data, and
                    // the server refuses it ("end-of-copy marker corrupt").
                    if let Some(chunk) = chunk.as_deref_mut() {
                        chunk.extend_from_slice(&self.line);
                    }
                    taken += self.line.len();
                }
                self.in_copy = false;
                break;
            }
            if let Some(chunk) = chunk.as_deref_mut() {
                chunk.extend_from_slice(&self.line);
            }
            taken += self.line.len();
        }
        Ok(taken > 0 || self.in_copy)
    }

    /// Skips the remaining COPY data, if the caller did not consume it.
    fn skip_copy(&mut self) -> Result<(), LexError> {
        while self.copy_data(1 << 20, None)? {}
        Ok(())
    }

    /// Pushes bytes that are whitespace or comment (dropped before a statement starts).
    fn push_space(&mut self, start: usize, end: usize) {
        if !self.stmt.is_empty() {
            self.stmt.extend_from_slice(&self.line[start..end]);
        }
        self.pos = end;
    }

    /// Pushes `line[start..end]` of the current line onto the statement.
    fn push(&mut self, start: usize, end: usize) {
        if self.stmt.is_empty() {
            self.stmt_line = self.line_no;
            self.stmt_column = start + 1;
        }
        self.stmt.extend_from_slice(&self.line[start..end]);
        self.pos = end;
    }

    /// Pushes a token of the statement proper (not `;`, space or comment).
    fn push_token(&mut self, start: usize, end: usize) {
        self.has_token = true;
        self.push(start, end);
    }

    fn emit(&mut self) -> Result<Item, LexError> {
        let bytes = std::mem::take(&mut self.stmt);
        let mut words = std::mem::take(&mut self.words);
        let mut joined = std::mem::take(&mut self.joined);
        if !joined.is_empty() {
            // Parts are collected first to last; the first is `words`.
            joined.push(words);
            words = joined.remove(0);
        }
        self.paren_depth = 0;
        self.begin_depth = 0;
        self.identifier_count = 0;
        self.added_newline = None;
        let text = String::from_utf8(bytes).map_err(|_| LexError::NotUtf8 {
            line: self.stmt_line,
        })?;
        let stmt = Statement {
            text,
            line: self.stmt_line,
            column: self.stmt_column,
            words,
            joined,
            variables: std::mem::take(&mut self.variables),
            dropped: std::mem::take(&mut self.dropped),
            empty: !std::mem::take(&mut self.has_token),
        };
        if stmt.is_copy_from_stdin() {
            self.in_copy = true;
        }
        Ok(Item::Statement(stmt))
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

    /// A psql variable reference at `pos` (a `:`), if there is one: its end.
    fn variable_at(&self, pos: usize) -> Option<(usize, usize, usize)> {
        let name_end = |mut i: usize| {
            while self.at(i).is_some_and(is_variable_char) {
                i += 1;
            }
            i
        };
        match self.at(pos + 1)? {
            c if is_variable_char(c) => Some((pos + 1, name_end(pos + 1), name_end(pos + 1))),
            q @ (b'\'' | b'"') => {
                let end = name_end(pos + 2);
                (end > pos + 2 && self.at(end) == Some(q)).then_some((pos + 2, end, end + 1))
            }
            b'{' if self.at(pos + 2) == Some(b'?') => {
                let end = name_end(pos + 3);
                (end > pos + 3 && self.at(end) == Some(b'}')).then_some((pos + 3, end, end + 1))
            }
            _ => None,
        }
    }

    /// The next statement or meta-command; `None` at the end of the script.
    pub fn next_item(&mut self) -> Result<Option<Item>, LexError> {
        if self.in_copy {
            self.skip_copy()?;
        }
        loop {
            if self.pos >= self.end {
                if !self.next_sql_line()? {
                    // End of input: whatever is in the buffer is the last
                    // statement (psql sends it).
                    if !self.stmt.is_empty() {
                        return self.emit().map(Some);
                    }
                    return Ok(None);
                }
                continue;
            }
            let pos = self.pos;
            let b = self.line[pos];
            let next = self.at(pos + 1);
            match self.state {
                State::Normal => match b {
                    c if is_space(c) => self.push_space(pos, pos + 1),
                    b'-' if next == Some(b'-') => {
                        // A line comment, to the end of the line or a CR.
                        let mut end = pos + 2;
                        while self.at(end).is_some_and(|c| c != b'\r') {
                            end += 1;
                        }
                        self.push_space(pos, end);
                    }
                    b'/' if next == Some(b'*') => {
                        self.push(pos, pos + 2);
                        self.state = State::Comment(1);
                    }
                    b'\'' => {
                        self.push_token(pos, pos + 1);
                        self.state = State::Quote { escapes: false };
                    }
                    b'"' => {
                        self.push_token(pos, pos + 1);
                        self.state = State::Ident;
                    }
                    b'$' => {
                        if let Some(tag) = dollar_tag(&self.line[pos..self.end]) {
                            let end = pos + tag.len() + 2;
                            self.dollar.clear();
                            self.dollar.extend_from_slice(&self.line[pos..end]);
                            self.push_token(pos, end);
                            self.state = State::Dollar;
                        } else {
                            self.push_token(pos, pos + 1);
                        }
                    }
                    b'(' => {
                        self.paren_depth += 1;
                        self.push_token(pos, pos + 1);
                    }
                    b')' => {
                        self.paren_depth = self.paren_depth.saturating_sub(1);
                        self.push_token(pos, pos + 1);
                    }
                    b';' => {
                        self.push(pos, pos + 1);
                        if self.paren_depth == 0 && self.begin_depth == 0 {
                            return self.emit().map(Some);
                        }
                    }
                    b':' => match next {
                        Some(b':' | b'=') => self.push_token(pos, pos + 2),
                        _ => {
                            if let Some((start, end, stop)) = self.variable_at(pos) {
                                let variable = Variable {
                                    name: String::from_utf8_lossy(&self.line[start..end])
                                        .into_owned(),
                                    written: String::from_utf8_lossy(&self.line[pos..stop])
                                        .into_owned(),
                                };
                                self.variables.push((variable, self.line_no));
                                self.push_token(pos, stop);
                            } else {
                                self.push_token(pos, pos + 1);
                            }
                        }
                    },
                    b'\\' if matches!(next, Some(b';' | b':')) => {
                        // psql puts a bare `;` or `:` in the buffer; a `;` so
                        // placed does not end the query, it joins the next
                        // statement to it.
                        if self.stmt.is_empty() {
                            self.stmt_line = self.line_no;
                            self.stmt_column = pos + 1;
                        }
                        self.dropped.push(self.stmt.len());
                        self.stmt.push(self.line[pos + 1]);
                        self.pos = pos + 2;
                        if next == Some(b';') {
                            self.identifier_count = 0;
                            self.joined.push(std::mem::take(&mut self.words));
                        } else {
                            self.has_token = true;
                        }
                    }
                    b'\\' => return Ok(Some(Item::Meta(self.meta_command(pos)))),
                    c if is_ident_start(c) => {
                        let mut end = pos + 1;
                        while self.at(end).is_some_and(is_ident_char) {
                            end += 1;
                        }
                        let word = &self.line[pos..end];
                        // A string's prefix (E'', N'', B'', X'', U&'', U&""),
                        // not an identifier.
                        let prefix = match (word, self.at(end), self.at(end + 1)) {
                            ([b'e' | b'E'], Some(b'\''), _) => Some(State::Quote { escapes: true }),
                            ([b'n' | b'N' | b'b' | b'B' | b'x' | b'X'], Some(b'\''), _) => {
                                Some(State::Quote { escapes: false })
                            }
                            ([b'u' | b'U'], Some(b'&'), Some(b'\'')) => {
                                Some(State::Quote { escapes: false })
                            }
                            ([b'u' | b'U'], Some(b'&'), Some(b'"')) => Some(State::Ident),
                            // `U&` without a quote: psql echoes the U, and
                            // does not count it as an identifier.
                            ([b'u' | b'U'], Some(b'&'), _) => Some(State::Normal),
                            _ => None,
                        };
                        match prefix {
                            Some(State::Normal) => self.push_token(pos, end),
                            Some(state) => {
                                let quote = end + usize::from(self.at(end) == Some(b'&'));
                                self.push_token(pos, quote + 1);
                                self.state = state;
                            }
                            None => {
                                let word = word.to_vec();
                                self.push_token(pos, end);
                                self.track_identifier(&word);
                            }
                        }
                    }
                    c if c.is_ascii_digit() => {
                        let end = number_end(&self.line[..self.end], pos);
                        self.push_token(pos, end);
                    }
                    _ => self.push_token(pos, pos + 1),
                },
                State::Quote { escapes } => {
                    if escapes && b == b'\\' {
                        self.push(pos, (pos + 2).min(self.end));
                    } else if b == b'\'' {
                        if next == Some(b'\'') {
                            self.push(pos, pos + 2);
                        } else if let Some(n) = quote_continuation(&self.line[pos + 1..self.end]) {
                            self.push(pos, pos + 1 + n);
                        } else {
                            self.push(pos, pos + 1);
                            self.state = State::Normal;
                        }
                    } else {
                        self.push_run(pos, |c| c != b'\'' && c != b'\\');
                    }
                }
                State::Ident => {
                    if b == b'"' {
                        if next == Some(b'"') {
                            self.push(pos, pos + 2);
                        } else {
                            self.push(pos, pos + 1);
                            self.state = State::Normal;
                        }
                    } else {
                        self.push_run(pos, |c| c != b'"');
                    }
                }
                State::Dollar => {
                    if self.line[pos..self.end].starts_with(&self.dollar) {
                        self.push(pos, pos + self.dollar.len());
                        self.state = State::Normal;
                    } else {
                        self.push_run(pos + 1, |c| c != b'$');
                    }
                }
                State::Comment(depth) => {
                    if b == b'/' && next == Some(b'*') {
                        self.push(pos, pos + 2);
                        self.state = State::Comment(depth + 1);
                    } else if b == b'*' && next == Some(b'/') {
                        self.push(pos, pos + 2);
                        self.state = if depth == 1 {
                            State::Normal
                        } else {
                            State::Comment(depth - 1)
                        };
                    } else {
                        self.push_run(pos + 1, |c| c != b'*' && c != b'/');
                    }
                }
            }
        }
    }

    /// The meta-command starting at the backslash at `pos`: its name runs to
    /// whitespace or the next backslash, as psql reads it; its arguments are
    /// the rest of the line. A newline that only joined this line to the
    /// statement is taken back, as psql does.
    fn meta_command(&mut self, pos: usize) -> MetaCommand {
        if self.added_newline == Some(self.stmt.len()) {
            self.stmt.pop();
        }
        self.added_newline = None;
        let start = pos + 1;
        let mut end = start;
        if self.at(start) == Some(b'\\') {
            end += 1;
        }
        while self.at(end).is_some_and(|c| !is_space(c) && c != b'\\') {
            end += 1;
        }
        let name = String::from_utf8_lossy(&self.line[start..end]).into_owned();
        let args = String::from_utf8_lossy(&self.line[end..self.end])
            .trim()
            .to_owned();
        self.pos = self.end;
        MetaCommand {
            name,
            args,
            line: self.line_no,
        }
    }

    /// Pushes bytes of the current line from `self.pos` while `keep` holds,
    /// starting no earlier than `from` (a fast path for string bodies).
    fn push_run(&mut self, from: usize, keep: impl Fn(u8) -> bool) {
        let start = self.pos;
        let mut end = from.min(self.end);
        while end < self.end && keep(self.line[end]) {
            end += 1;
        }
        self.push(start, end.max(start + 1));
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
            (
                "SELECT 1;;\n;\nSELECT 2;",
                &["SELECT 1;", ";", ";", "SELECT 2;"],
            ),
            ("  \n-- only a comment\n", &[]),
            ("SELECT 1e5; SELECT 0x1F;", &["SELECT 1e5;", "SELECT 0x1F;"]),
        ];
        for (script, want) in cases {
            assert_eq!(statements(script), *want, "{script:?}");
        }
    }

    /// Each case was checked against psql 15.18 by the server's own log of
    /// what it received (tests/it/parity.rs repeats that check on every run).
    #[test]
    fn sends_exactly_the_text_psql_sends() {
        let cases: &[(&str, &[&str])] = &[
            // An empty line outside quotes and comments is skipped.
            ("/* c */\n\nSELECT 1;", &["/* c */\nSELECT 1;"]),
            ("SELECT 1\n\n+ 1;", &["SELECT 1\n+ 1;"]),
            ("SELECT (1\n\n);", &["SELECT (1\n);"]),
            ("SELECT 'a'\n\n'b';", &["SELECT 'a'\n'b';"]),
            ("SELECT 1 -- c\n\n;", &["SELECT 1 -- c\n;"]),
            // ... but kept inside quotes, comments and dollar quotes.
            ("SELECT 'a\n\nb';", &["SELECT 'a\n\nb';"]),
            ("SELECT $$a\n\nb$$;", &["SELECT $$a\n\nb$$;"]),
            ("SELECT /* a\n\nb */ 1;", &["SELECT /* a\n\nb */ 1;"]),
            ("SELECT \"a\n\nb\";", &["SELECT \"a\n\nb\";"]),
            // A line of whitespace is not empty.
            ("SELECT 1\n  \n+ 1;", &["SELECT 1\n  \n+ 1;"]),
            ("SELECT 1\n\r\n+ 1;", &["SELECT 1\n\r\n+ 1;"]),
            // An unterminated last statement goes without its trailing newlines.
            ("SELECT 1\n\n\n", &["SELECT 1"]),
            ("SELECT 1\n-- c\n", &["SELECT 1\n-- c"]),
            ("SELECT 1; /* c */\n", &["SELECT 1;", "/* c */"]),
            ("-- only\n\n", &[]),
            // Empty statements are sent.
            ("SELECT 2;;", &["SELECT 2;", ";"]),
            ("\t\n;", &[";"]),
            ("-- c\n;", &[";"]),
            // `\;` joins statements into one query; `\:` is a colon.
            ("SELECT 1\\; SELECT 2;", &["SELECT 1; SELECT 2;"]),
            ("\\; SELECT 3;", &["; SELECT 3;"]),
            ("SELECT 1\\;\n\nSELECT 2;", &["SELECT 1;\nSELECT 2;"]),
            ("SELECT '\\;';", &["SELECT '\\;';"]),
            ("SELECT 1 \\:x;", &["SELECT 1 :x;"]),
            // A meta-command alone on its line takes back the joining newline.
            ("SELECT 1\n\\echo hi\n+1;", &["SELECT 1\n+1;"]),
            ("SELECT 1 \\echo hi\n+1;", &["SELECT 1 \n+1;"]),
            ("SELECT 1\n  \\echo hi\n+1;", &["SELECT 1\n  \n+1;"]),
            // Whitespace and comments are kept once a statement has begun.
            (
                "SELECT 1 -- trailing\n+ 2;",
                &["SELECT 1 -- trailing\n+ 2;"],
            ),
            // A CR ends a line comment, as the server reads it.
            ("SELECT 1; -- c\rSELECT 2;\n", &["SELECT 1;", "SELECT 2;"]),
            ("SELECT 1 -- c\r, 2;", &["SELECT 1 -- c\r, 2;"]),
            // A quote continued after a CR on the same line is one string.
            (
                "SELECT E'a'\r'\\''; SELECT 4;",
                &["SELECT E'a'\r'\\'';", "SELECT 4;"],
            ),
            (
                "SELECT 'a' -- c\r 'b;'; SELECT 5;",
                &["SELECT 'a' -- c\r 'b;';", "SELECT 5;"],
            ),
            // Escapes only after a lone E: `abe'\'` is an identifier and a plain string.
            (
                "SELECT abe'\\'; SELECT 6;",
                &["SELECT abe'\\';", "SELECT 6;"],
            ),
            ("SELECT \"x\"e'\\';';", &["SELECT \"x\"e'\\';';"]),
            // Typecasts and assignments are not variables.
            ("SELECT 1::int, a := 2;", &["SELECT 1::int, a := 2;"]),
            // A UTF-8 byte-order mark is ignored, as psql does.
            ("\u{feff}SELECT 1;", &["SELECT 1;"]),
            ("\u{feff}\nSELECT 1;\n\u{feff}", &["SELECT 1;", "\u{feff}"]),
            // `\v` is not whitespace to psql 15: it starts a statement.
            ("\x0b\nSELECT 1;", &["\x0b\nSELECT 1;"]),
        ];
        for (script, want) in cases {
            assert_eq!(statements(script), *want, "{script:?}");
        }
    }

    #[test]
    fn empty_statements_are_marked_empty() {
        let items = split_all(b"SELECT 1;;\n/* c */ ;\n(SELECT 2);\n\\;;").unwrap();
        let empty: Vec<bool> = items
            .iter()
            .map(|i| match i {
                Item::Statement(s) => s.empty,
                Item::Meta(_) => panic!("{i:?}"),
            })
            .collect();
        assert_eq!(empty, [false, true, true, false, true]);
    }

    #[test]
    fn joined_statements_keep_the_words_of_each() {
        let items = split_all(b"SELECT 1\\; COMMIT\\;\nBEGIN;").unwrap();
        let Item::Statement(s) = &items[0] else {
            panic!()
        };
        assert_eq!(s.words, ["SELECT"]);
        assert_eq!(
            s.joined,
            [vec!["COMMIT".to_owned()], vec!["BEGIN".to_owned()]]
        );
        assert!(s.is_joined());
        assert_eq!(s.dropped, [8, 16]);
    }

    #[test]
    fn psql_variables_are_found_outside_quotes() {
        let items = split_all(
            b"SELECT :DBNAME, :'USER', :\"HOST\", :{?x}, ':no', $$:no$$, 1::int, arr[1:2];",
        )
        .unwrap();
        let Item::Statement(s) = &items[0] else {
            panic!()
        };
        let found: Vec<&str> = s
            .variables
            .iter()
            .map(|(v, _)| v.written.as_str())
            .collect();
        assert_eq!(found, [":DBNAME", ":'USER'", ":\"HOST\"", ":{?x}", ":2"]);
        assert_eq!(s.variables[1].0.name, "USER");
    }

    #[test]
    fn numbers_end_where_postgresql_15_ends_them() {
        for (s, end) in [
            ("123", 3),
            ("1.5", 3),
            ("1..2", 1),
            ("1e5", 3),
            ("1e+5x", 5),
            ("1e+5xy$z", 8),
            ("1ebegin", 7),
            ("1e+", 3),
            ("1e+x", 3),
            ("12x", 3),
            ("0x1f", 4),
            ("1.x", 3),
            ("1.5e", 4),
        ] {
            assert_eq!(number_end(s.as_bytes(), 0), end, "{s}");
        }
        // So `1ebegin` is no BEGIN to psql's heuristic, but `1e+begin` is.
        let sql = "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1ebegin; END; SELECT 3;";
        assert_eq!(statements(sql).len(), 2, "{:?}", statements(sql));
        let sql = "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1e+begin; END; SELECT 3;";
        assert_eq!(statements(sql).len(), 1, "{:?}", statements(sql));
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

    /// COPY data is taken a buffer of whole lines at a time: whatever the
    /// buffer's size and the chunk limit, the data, the terminator, the
    /// line numbers and the SQL after it come out as line by line.
    #[test]
    fn copy_data_is_the_same_whatever_the_buffer_and_chunk_sizes() {
        let cases: [(&[u8], &[u8], &str, usize); 6] = [
            (b"COPY t FROM stdin;\n1\tx\n22\t\\N\n\\.\nSELECT 1;\n", b"1\tx\n22\t\\N\n", "SELECT 1;", 5),
            (b"COPY t FROM stdin;\r\na\r\n\\.\r\nSELECT 2;\r\n", b"a\r\n", "SELECT 2;", 4),
            (b"COPY t FROM stdin;\n\\.\nSELECT 3;\n", b"", "SELECT 3;", 3),
            (b"COPY t FROM stdin;\n\\.x\n\\\\.\n \\.\n\\.\nSELECT 4;\n", b"\\.x\n\\\\.\n \\.\n", "SELECT 4;", 6),
            (b"COPY t FROM stdin;\nlong line of data, longer than a small buffer\n\n\\.\nSELECT 5;\n", b"long line of data, longer than a small buffer\n\n", "SELECT 5;", 5),
            (b"COPY t FROM stdin;\n1\n\\.", b"1\n\\.", "", 0),
        ];
        for (script, data, next, line) in cases {
            for capacity in [1, 2, 3, 5, 8, 13, 64, 8192] {
                for limit in [1, 4, 16, 1 << 20] {
                    let reader = std::io::BufReader::with_capacity(capacity, script);
                    let mut s = Splitter::new(reader);
                    assert!(
                        matches!(s.next_item().unwrap(), Some(Item::Statement(c)) if c.is_copy_from_stdin())
                    );
                    let mut got = Vec::new();
                    while let Some(chunk) = s.next_copy_chunk(limit).unwrap() {
                        assert!(!chunk.is_empty() || data.is_empty());
                        got.extend_from_slice(&chunk);
                    }
                    let why = format!(
                        "{:?}, capacity {capacity}, limit {limit}",
                        String::from_utf8_lossy(script)
                    );
                    assert_eq!(got, data, "{why}");
                    match s.next_item().unwrap() {
                        Some(Item::Statement(n)) => {
                            assert_eq!((n.text.as_str(), n.line), (next, line), "{why}")
                        }
                        None => assert_eq!(next, "", "{why}"),
                        Some(other) => panic!("{other:?}: {why}"),
                    }
                }
            }
        }
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
            "PGDMP\x01\x0e",
        ] {
            let _ = split_all(script.as_bytes());
        }
    }
}
