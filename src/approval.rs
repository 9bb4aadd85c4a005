//! Approval statements: what a customer signs instead of `SHA256SUMS`.
//! A statement names exactly what it approves — the changeset, its bundle,
//! the QAT ledger entry it ran as and the key that signed QAT's receipt for
//! it, the environments it opens, until when — so that it counts for that
//! and nothing else. Pure: the canonical text, its parser, and the rule that
//! matches a statement against a candidate.
//!
//! Canonical text (UTF-8, LF, fields in this order, each exactly once):
//!
//! ```text
//! promoter approval v1
//! changeset: 0001-create-customers
//! bundle: <64 hex: sha256 of SHA256SUMS>
//! tested-in: qat
//! entry: <64 hex: the entry_hash of QAT's ledger row>
//! receipt-key: <40 hex: the fingerprint that signed QAT's receipt>
//! opens: prd
//! expires: 2026-12-16T10:00:00Z
//! comment: tested the invoice run with the March data
//! ```
//!
//! `opens` is one or more environment names separated by single spaces, in
//! byte-wise order; `comment` may be empty but is one line. It is stored as
//! `signatures/approval-<FPR>.txt` next to its detached signature
//! `approval-<FPR>.txt.asc`; `gpg --armor --detach-sign` of the file works.

use std::fmt;

use crate::changeset::Sha256Digest;

/// The first line of a statement.
pub const HEADER: &str = "promoter approval v1";

/// A parsed approval statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub changeset: String,
    pub bundle: Sha256Digest,
    pub tested_in: String,
    /// The source ledger row's `entry_hash`.
    pub entry: Sha256Digest,
    /// The fingerprint of the key that signed the source row's receipt.
    pub receipt_key: String,
    /// The environments it opens, sorted.
    pub opens: Vec<String>,
    /// Seconds since the Unix epoch.
    pub expires: i64,
    pub comment: String,
}

impl Statement {
    /// The canonical text: what is signed.
    pub fn canonical(&self) -> String {
        let mut opens = self.opens.clone();
        opens.sort();
        opens.dedup();
        format!(
            "{HEADER}\nchangeset: {}\nbundle: {}\ntested-in: {}\nentry: {}\nreceipt-key: {}\nopens: {}\nexpires: {}\ncomment: {}\n",
            self.changeset,
            self.bundle,
            self.tested_in,
            self.entry,
            self.receipt_key,
            opens.join(" "),
            crate::output::format_unix(self.expires),
            self.comment
        )
    }

    /// Parses canonical text; anything that would not render back to the
    /// same bytes is refused.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut lines = text.split_inclusive('\n');
        if lines.next() != Some(&format!("{HEADER}\n")[..]) {
            return Err(format!(
                "not a promoter approval (first line must be `{HEADER}`)"
            ));
        }
        let mut next = |name: &str| -> Result<String, String> {
            let line = lines
                .next()
                .ok_or_else(|| format!("missing `{name}:` line"))?;
            line.strip_suffix('\n')
                .and_then(|l| l.strip_prefix(&format!("{name}: ")))
                .map(str::to_owned)
                .ok_or_else(|| format!("expected `{name}: …`, found {:?}", line.trim_end()))
        };
        let digest = |name: &str, v: String| {
            Sha256Digest::from_hex(&v).ok_or_else(|| format!("{name}: not a sha256 digest: {v:?}"))
        };
        let changeset = next("changeset")?;
        let bundle = digest("bundle", next("bundle")?)?;
        let tested_in = next("tested-in")?;
        let entry = digest("entry", next("entry")?)?;
        let receipt_key = next("receipt-key")?;
        let opens: Vec<String> = next("opens")?.split(' ').map(str::to_owned).collect();
        let expires_text = next("expires")?;
        let expires = parse_utc(&expires_text)
            .ok_or_else(|| format!("expires: not an RFC 3339 UTC time: {expires_text:?}"))?;
        let comment = next("comment")?;
        if comment.trim() != comment || comment.chars().any(char::is_control) {
            return Err("comment: leading or trailing spaces or control characters".into());
        }
        let statement = Self {
            changeset,
            bundle,
            tested_in,
            entry,
            receipt_key,
            opens,
            expires,
            comment,
        };
        if statement.canonical() != text {
            return Err(
                "not in canonical form (order, spacing, case or line endings differ)".into(),
            );
        }
        Ok(statement)
    }
}

impl fmt::Display for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

/// `2026-12-16T10:00:00Z` → seconds since the epoch (UTC, `Z` only).
pub fn parse_utc(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    // Howard Hinnant's days-from-civil.
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    // Refuse dates that do not exist (Feb 30): they would not render back.
    (crate::output::format_unix(secs) == text).then_some(secs)
}

/// Why a statement does not count for a candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    Changeset(String),
    Bundle(Sha256Digest),
    TestedIn(String),
    Entry(Sha256Digest),
    ReceiptKey(String),
    NotForTarget(Vec<String>),
    Expired(i64),
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Changeset(c) => write!(f, "approves changeset {c}"),
            Self::Bundle(b) => write!(f, "approves bundle {}, not this one", b.short()),
            Self::TestedIn(e) => write!(f, "rests on a test in {e}, not in the pinned source"),
            Self::Entry(e) => write!(
                f,
                "rests on ledger entry {} of the test environment, which is not the entry this bundle ran as (was the test environment rebuilt?)",
                e.short()
            ),
            Self::ReceiptKey(k) => write!(
                f,
                "rests on a receipt by key {k}, not the one on the test environment's row"
            ),
            Self::NotForTarget(opens) => write!(f, "opens {} only", opens.join(", ")),
            Self::Expired(t) => write!(f, "expired at {}", crate::output::format_unix(*t)),
        }
    }
}

/// What a candidate is, as an approval must name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub changeset: &'a str,
    pub bundle: Sha256Digest,
    pub tested_in: &'a str,
    pub entry: Sha256Digest,
    /// The fingerprint whose receipt on that entry verified.
    pub receipt_key: &'a str,
    pub target: &'a str,
}

/// Every field of `s` must match the candidate, the target and the time.
pub fn matches(s: &Statement, c: &Candidate<'_>, now: i64) -> Result<(), Mismatch> {
    if s.changeset != c.changeset {
        return Err(Mismatch::Changeset(s.changeset.clone()));
    }
    if s.bundle != c.bundle {
        return Err(Mismatch::Bundle(s.bundle));
    }
    if s.tested_in != c.tested_in {
        return Err(Mismatch::TestedIn(s.tested_in.clone()));
    }
    if s.entry != c.entry {
        return Err(Mismatch::Entry(s.entry));
    }
    if !s.receipt_key.eq_ignore_ascii_case(c.receipt_key) {
        return Err(Mismatch::ReceiptKey(s.receipt_key.clone()));
    }
    if !s.opens.iter().any(|o| o == c.target) {
        return Err(Mismatch::NotForTarget(s.opens.clone()));
    }
    if s.expires <= now {
        return Err(Mismatch::Expired(s.expires));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: &str) -> Sha256Digest {
        Sha256Digest::from_hex(&c.repeat(64)).unwrap()
    }

    fn statement() -> Statement {
        Statement {
            changeset: "0001-create-customers".into(),
            bundle: digest("b"),
            tested_in: "qat".into(),
            entry: digest("e"),
            receipt_key: "A".repeat(40),
            opens: vec!["prd".into()],
            expires: 1_797_415_200,
            comment: "tested with the March data".into(),
        }
    }

    /// Pinned: customers sign these bytes.
    #[test]
    fn canonical_text_of_a_fixed_statement_never_changes() {
        let text = statement().canonical();
        assert_eq!(
            text,
            format!(
                "promoter approval v1\nchangeset: 0001-create-customers\nbundle: {b}\ntested-in: qat\nentry: {e}\n\
                 receipt-key: {a}\nopens: prd\nexpires: 2026-12-16T10:00:00Z\ncomment: tested with the March data\n",
                b = "b".repeat(64),
                e = "e".repeat(64),
                a = "A".repeat(40)
            )
        );
        // Cross-checked with `printf … | sha256sum`.
        assert_eq!(
            Sha256Digest::of(text.as_bytes()).to_hex(),
            "ca0dced3b658d44e032cd2f1c6fd5768c5f3d514f6a7a1bbdd6d9ebc7e05e8f9"
        );
        assert_eq!(Statement::parse(&text).unwrap(), statement());
    }

    #[test]
    fn parse_refuses_what_canonical_never_writes() {
        let text = statement().canonical();
        for bad in [
            text.replace('\n', "\r\n"),
            text.replace("opens: prd", "opens: prd prd"),
            text.replace("2026-12-16T10:00:00Z", "2026-12-16 10:00:00"),
            text.replace("2026-12-16T10:00:00Z", "2026-02-30T10:00:00Z"),
            text.replace("bundle: bbbb", "bundle: BBBB"),
            text.replace("comment: tested", "comment:  tested"),
            format!("{text}extra: 1\n"),
            text.trim_end().to_owned(),
            String::new(),
        ] {
            assert!(Statement::parse(&bad).is_err(), "accepted:\n{bad:?}");
        }
    }

    #[test]
    fn a_statement_counts_only_for_exactly_what_it_names() {
        let s = statement();
        let key = "A".repeat(40);
        let ok = Candidate {
            changeset: "0001-create-customers",
            bundle: digest("b"),
            tested_in: "qat",
            entry: digest("e"),
            receipt_key: &key,
            target: "prd",
        };
        let now = 1_797_000_000;
        assert_eq!(matches(&s, &ok, now), Ok(()));
        let other_key = "F".repeat(40);
        let cases: Vec<(Candidate<'_>, i64, &str)> = vec![
            (
                Candidate {
                    changeset: "0002-x",
                    ..ok.clone()
                },
                now,
                "approves changeset",
            ),
            (
                Candidate {
                    bundle: digest("c"),
                    ..ok.clone()
                },
                now,
                "approves bundle",
            ),
            (
                Candidate {
                    entry: digest("f"),
                    ..ok.clone()
                },
                now,
                "rebuilt",
            ),
            (
                Candidate {
                    receipt_key: &other_key,
                    ..ok.clone()
                },
                now,
                "receipt by key",
            ),
            (
                Candidate {
                    target: "prd2",
                    ..ok.clone()
                },
                now,
                "opens prd only",
            ),
            (
                Candidate {
                    tested_in: "uat",
                    ..ok.clone()
                },
                now,
                "rests on a test in qat",
            ),
            (ok.clone(), 1_797_415_200, "expired at 2026-12-16T10:00:00Z"),
        ];
        for (c, at, want) in cases {
            let why = matches(&s, &c, at).unwrap_err().to_string();
            assert!(why.contains(want), "{want}: {why}");
        }
    }
}
