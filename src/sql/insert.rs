//! The one statement shape promoter may send together with others of its
//! kind: `INSERT INTO name [(columns)] VALUES (constants), …;`, where every
//! value is a constant the parser folds itself (a number, possibly negated;
//! a string; `NULL`, `TRUE`, `FALSE`, `DEFAULT`) or the grammar's own
//! `N'…'` (a string as `pg_catalog.bpchar`), and at most `ON CONFLICT …
//! DO NOTHING` after them. Such a statement names no
//! function, operator, type or cast of its own, so whatever code it can run
//! is the target table's, which the server is asked about (see
//! `db::batch`).

use std::ops::Range;

use super::Statement;

/// Where `stmt` names its target table (a range of its text, the name as
/// written), when `stmt` is a constants-only INSERT that ends with its
/// semicolon.
pub fn constant_insert(stmt: &Statement) -> Option<Range<usize>> {
    if stmt.empty || stmt.is_joined() || !stmt.variables.is_empty() || !stmt.dropped.is_empty() {
        return None;
    }
    let mut c = Cursor {
        s: stmt.text.as_bytes(),
        i: 0,
    };
    c.keyword("INSERT")?;
    c.keyword("INTO")?;
    c.space()?;
    let start = c.i;
    c.identifier()?;
    if c.peek() == Some(b'.') {
        c.i += 1;
        c.identifier()?;
    }
    let name = start..c.i;
    c.space()?;
    if c.peek() == Some(b'(') {
        c.list(Cursor::column)?;
    }
    c.keyword("VALUES")?;
    loop {
        c.list(Cursor::constant)?;
        c.space()?;
        match c.peek()? {
            b',' => c.i += 1,
            b';' => break,
            // `ON CONFLICT [(columns) | ON CONSTRAINT name] DO NOTHING`:
            // the unique indexes decide, which are the table's (asked about).
            _ => {
                c.keyword("ON")?;
                c.keyword("CONFLICT")?;
                c.space()?;
                if c.peek() == Some(b'(') {
                    c.list(Cursor::column)?;
                } else if c.clone().keyword("ON").is_some() {
                    c.keyword("ON")?;
                    c.keyword("CONSTRAINT")?;
                    c.column()?;
                }
                c.keyword("DO")?;
                c.keyword("NOTHING")?;
                c.space()?;
                break;
            }
        }
    }
    (c.next()? == b';').then_some(())?;
    // Nothing after the semicolon (psql sends none): a comment there would
    // swallow the statement joined after it.
    (c.i == c.s.len()).then_some(name)
}

#[derive(Clone)]
struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

fn ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn ident_char(b: u8) -> bool {
    ident_start(b) || b.is_ascii_digit() || b == b'$'
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        Some(b)
    }

    /// Whitespace and comments (`--` to the line's end, nested `/* */`);
    /// `None` for a comment that never ends.
    fn space(&mut self) -> Option<()> {
        loop {
            match (self.peek(), self.s.get(self.i + 1)) {
                (Some(b' ' | b'\t' | b'\n' | b'\r' | b'\x0c'), _) => self.i += 1,
                (Some(b'-'), Some(b'-')) => {
                    while !matches!(self.peek(), None | Some(b'\n' | b'\r')) {
                        self.i += 1;
                    }
                }
                (Some(b'/'), Some(b'*')) => {
                    let mut depth = 0usize;
                    loop {
                        match (self.peek()?, self.s.get(self.i + 1)) {
                            (b'/', Some(b'*')) => {
                                depth += 1;
                                self.i += 2;
                            }
                            (b'*', Some(b'/')) => {
                                depth -= 1;
                                self.i += 2;
                                if depth == 0 {
                                    break;
                                }
                            }
                            _ => self.i += 1,
                        }
                    }
                }
                _ => return Some(()),
            }
        }
    }

    /// A bare word, whatever its case.
    fn word(&mut self) -> Option<&[u8]> {
        self.space()?;
        let start = self.i;
        if !self.peek().is_some_and(ident_start) {
            return None;
        }
        while self.peek().is_some_and(ident_char) {
            self.i += 1;
        }
        Some(&self.s[start..self.i])
    }

    fn keyword(&mut self, kw: &str) -> Option<()> {
        self.word()?
            .eq_ignore_ascii_case(kw.as_bytes())
            .then_some(())
    }

    /// A plain or quoted identifier, with nothing around it.
    fn identifier(&mut self) -> Option<()> {
        if self.peek() == Some(b'"') {
            self.i += 1;
            let start = self.i;
            loop {
                match self.next()? {
                    b'"' if self.peek() == Some(b'"') => self.i += 1,
                    b'"' => break,
                    _ => {}
                }
            }
            // `""` is no identifier.
            return (self.i - start > 1).then_some(());
        }
        let start = self.i;
        while self.peek().is_some_and(ident_char) {
            self.i += 1;
        }
        (self.i > start && ident_start(self.s[start])).then_some(())
    }

    fn column(&mut self) -> Option<()> {
        self.space()?;
        self.identifier()
    }

    /// `( item, … )`.
    fn list(&mut self, item: fn(&mut Self) -> Option<()>) -> Option<()> {
        self.space()?;
        (self.next()? == b'(').then_some(())?;
        loop {
            item(self)?;
            self.space()?;
            match self.next()? {
                b',' => {}
                b')' => return Some(()),
                _ => return None,
            }
        }
    }

    /// A constant the grammar folds: `-` directly before a number is
    /// folded into it (`+` is an operator, and is refused).
    fn constant(&mut self) -> Option<()> {
        self.space()?;
        match self.peek()? {
            b'-' if self
                .s
                .get(self.i + 1)
                .is_some_and(|b| b.is_ascii_digit() || *b == b'.') =>
            {
                self.i += 1;
                self.number()
            }
            b'0'..=b'9' | b'.' => self.number(),
            b'\'' => self.string(false),
            b'E' | b'e' if self.s.get(self.i + 1) == Some(&b'\'') => {
                self.i += 1;
                self.string(true)
            }
            // `N'…'`: the grammar's own cast of a plain string to
            // `pg_catalog.bpchar` (no name to look up, a built-in cast).
            b'N' | b'n' if self.s.get(self.i + 1) == Some(&b'\'') => {
                self.i += 1;
                self.string(false)
            }
            _ => {
                let w = self.word()?;
                ["NULL", "TRUE", "FALSE", "DEFAULT"]
                    .iter()
                    .any(|k| w.eq_ignore_ascii_case(k.as_bytes()))
                    .then_some(())
            }
        }
    }

    /// Digits, a fraction, an exponent, and nothing glued after them.
    fn number(&mut self) -> Option<()> {
        let digits = |c: &mut Self| {
            let start = c.i;
            while c.peek().is_some_and(|b| b.is_ascii_digit()) {
                c.i += 1;
            }
            c.i - start
        };
        let mut n = digits(self);
        if self.peek() == Some(b'.') {
            self.i += 1;
            n += digits(self);
        }
        if n == 0 {
            return None;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if digits(self) == 0 {
                return None;
            }
        }
        (!self.peek().is_some_and(|b| ident_char(b) || b == b'.')).then_some(())
    }

    /// `'…'` (with `standard_conforming_strings` on, which promoter
    /// requires) or, with `escapes`, `E'…'`.
    fn string(&mut self, escapes: bool) -> Option<()> {
        (self.next()? == b'\'').then_some(())?;
        loop {
            match self.next()? {
                b'\'' if self.peek() == Some(b'\'') => self.i += 1,
                b'\'' => return Some(()),
                b'\\' if escapes => {
                    self.next()?;
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_constants_only_inserts_are_recognised() {
        let cases: &[(&str, Option<&str>)] = &[
            ("INSERT INTO t VALUES (1);", Some("t")),
            (
                "INSERT INTO public.pgbench_accounts VALUES (1, 1, 0, '   ');",
                Some("public.pgbench_accounts"),
            ),
            (
                "insert into \"My \"\"T\"\" \".x (a, \"B\") values (-1.5e3, E'\\'', NULL), (DEFAULT, 'it''s', true);",
                Some("\"My \"\"T\"\" \".x"),
            ),
            (
                "-- c\nINSERT /* a /* b */ */ INTO t VALUES ('x') ; -- end",
                Some("t"),
            ),
            ("INSERT INTO t VALUES (.5, 5., 1e-3, -.5);", Some("t")),
            (
                "INSERT INTO t (a) VALUES\n    (1, N'Rock'),\n    (2, n'it''s');",
                Some("t"),
            ),
            ("INSERT INTO t VALUES (N 'x');", None),
            // Not a constant the parser folds, or not this shape.
            ("INSERT INTO t VALUES (+1);", None),
            ("INSERT INTO t VALUES (now());", None),
            ("INSERT INTO t VALUES ('1'::int);", None),
            ("INSERT INTO t VALUES (DATE '2020-01-01');", None),
            ("INSERT INTO t VALUES (0x1f);", None),
            ("INSERT INTO t VALUES (1e);", None),
            ("INSERT INTO t VALUES (12abc);", None),
            ("INSERT INTO t VALUES ($$x$$);", None),
            ("INSERT INTO t VALUES (U&'x');", None),
            ("INSERT INTO t VALUES ('a' 'b');", None),
            ("INSERT INTO t VALUES ('a'\n'b');", None),
            ("INSERT INTO t VALUES (- 1);", None),
            (
                "INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING;",
                Some("t"),
            ),
            (
                "INSERT INTO t VALUES (1) on conflict (a, \"B\") do nothing;",
                Some("t"),
            ),
            (
                "INSERT INTO t VALUES (1) ON CONFLICT ON CONSTRAINT t_pkey DO NOTHING;",
                Some("t"),
            ),
            (
                "INSERT INTO t VALUES (1) ON CONFLICT (a) DO UPDATE SET a = 2;",
                None,
            ),
            (
                "INSERT INTO t VALUES (1) ON CONFLICT ((a + 1)) DO NOTHING;",
                None,
            ),
            (
                "INSERT INTO t VALUES (1) ON CONFLICT (a) WHERE a > 0 DO NOTHING;",
                None,
            ),
            (
                "INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING RETURNING a;",
                None,
            ),
            (
                "INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING, (2);",
                None,
            ),
            ("INSERT INTO t VALUES (1) RETURNING a;", None),
            ("INSERT INTO t SELECT 1;", None),
            ("INSERT INTO t DEFAULT VALUES;", None),
            ("INSERT INTO t (a.b) VALUES (1);", None),
            ("INSERT INTO d.s.t VALUES (1);", None),
            ("INSERT INTO s . t VALUES (1);", None),
            ("INSERT INTO \"\" VALUES (1);", None),
            ("INSERT INTO t VALUES (1)", None),
            // The splitter sends each statement alone.
            ("INSERT INTO t VALUES (1); SELECT 2;", Some("t")),
            ("INSERT INTO t VALUES ();", None),
            ("INSERT INTO t VALUES (1),;", None),
            ("INSERT INTO t VALUES ('open);", None),
            ("INSERT INTO t AS x VALUES (1);", None),
            ("WITH x AS (SELECT 1) INSERT INTO t VALUES (1);", None),
            ("UPDATE t SET a = 1;", None),
        ];
        for (text, want) in cases {
            let items = crate::sql::lexer::split_all(text.as_bytes()).unwrap();
            let stmt = items
                .iter()
                .find_map(|i| match i {
                    crate::sql::Item::Statement(s) if !s.empty => Some(s),
                    _ => None,
                })
                .unwrap();
            assert_eq!(
                constant_insert(stmt).map(|r| &stmt.text[r]),
                *want,
                "{text:?} (sent as {:?})",
                stmt.text
            );
        }
        // A comment after the semicolon would swallow what is joined after it.
        let items = crate::sql::lexer::split_all(b"INSERT INTO t VALUES (1);").unwrap();
        let Some(crate::sql::Item::Statement(mut stmt)) = items.into_iter().next() else {
            panic!("no statement")
        };
        assert_eq!(constant_insert(&stmt), Some(12..13));
        stmt.text.push_str(" -- c");
        assert_eq!(constant_insert(&stmt), None);
    }
}
