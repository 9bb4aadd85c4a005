//! `promoter report`: one page of everything promoter knows about a project
//! — the status matrix, every changeset's files, signatures, approvals and
//! receipts, every environment's ledger, drift and audit — for a customer or
//! an auditor to read.
//!
//! The data is a plain [`Report`], hashed as the JSON `--format json`
//! writes; the page shows that hash so that two copies can be compared. The
//! templates (`templates/report.*`) are compiled into the binary: no file on
//! disk can change what a reader sees, and everything shown is escaped.

use askama::Template;
use serde::Serialize;

use crate::changeset::Sha256Digest;

/// A finding shown with its verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub ok: bool,
    pub text: String,
}

/// One cell of the status matrix.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// The state (`applied`, `pending`, …; for a fleet the worst one), a
    /// CSS class in the page.
    pub state: String,
    pub text: String,
}

/// One changeset row of the status matrix.
#[derive(Debug, Clone, Serialize)]
pub struct MatrixRow {
    pub changeset: String,
    /// Short bundle hash, `-` when unsealed or known only to a ledger.
    pub bundle: String,
    /// Whether the page describes it in full (links to it).
    pub detailed: bool,
    pub cells: Vec<Cell>,
}

/// One ledger row as the page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LedgerRow {
    pub seq: i64,
    pub changeset: String,
    pub status: String,
    pub bundle: String,
    pub finished: String,
    pub by: String,
    pub from: String,
    pub signers: String,
    pub receipt: String,
    pub entry: String,
    /// What is wrong with the row (chain, receipt), if anything.
    pub problem: Option<String>,
    /// Its error, note, or what its refresh did.
    pub note: Option<String>,
}

/// One environment (or fleet target).
#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    pub name: String,
    /// Why its ledger could not be read, if it could not.
    pub unreachable: Option<String>,
    pub rows: usize,
    pub applied: usize,
    /// `#seq entry-hash` of the last row, or `empty`.
    pub head: String,
    /// The live schema fingerprint, if it could be read.
    pub schema: Option<String>,
    /// The live schema against the last one its ledger recorded.
    pub drift: Option<Finding>,
    /// The live schema against the environment it is promoted from.
    pub source: Option<Finding>,
    /// The audit's verdict and every problem it found.
    pub audit: Option<Finding>,
    pub problems: Vec<String>,
    /// How many more problems the audit found than are listed.
    pub problems_omitted: usize,
    /// The newest rows, oldest first.
    pub ledger: Vec<LedgerRow>,
    /// How many older rows the page leaves out.
    pub ledger_omitted: usize,
}

/// One file of a bundle.
#[derive(Debug, Clone, Serialize)]
pub struct File {
    pub name: String,
    pub bytes: usize,
    pub statements: Option<usize>,
    pub sha256: Sha256Digest,
}

/// One signature or approval, with its binding and verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Signature {
    pub role: String,
    pub who: String,
    pub key: String,
    /// For a signature when it was made; for an approval what it opens,
    /// until when, and the tested ledger entry it rests on.
    pub binds: String,
    pub verdict: Finding,
}

/// One ledger row of a changeset, in one environment.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub environment: String,
    pub seq: i64,
    pub status: String,
    pub at: String,
    pub by: String,
    pub seconds: Option<String>,
    pub statements: i64,
    pub schema: String,
    pub receipt: Finding,
    pub error: Option<String>,
}

/// One changeset of the work tree (or revision).
#[derive(Debug, Clone, Serialize)]
pub struct Changeset {
    pub id: String,
    pub description: Option<String>,
    pub bundle_hash: Option<Sha256Digest>,
    pub files: Vec<File>,
    pub signatures: Vec<Signature>,
    pub approvals: Vec<Signature>,
    pub runs: Vec<Run>,
}

/// Everything the page shows, and nothing else: hashed as its JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `1`, as every JSON document promoter writes.
    pub format_version: u32,
    /// The project's directory name.
    pub project: String,
    /// Where the bundles were read from: `the work tree` or a revision.
    pub bundles_from: String,
    /// What the audits compared the ledgers with (`HEAD (1a2b3c4d5e6f)`),
    /// or why they did not run.
    pub audited_against: String,
    /// The matrix's columns: environments, a fleet's targets in one.
    pub columns: Vec<String>,
    pub matrix: Vec<MatrixRow>,
    pub environments: Vec<Environment>,
    pub changesets: Vec<Changeset>,
    /// How many older changesets are in the matrix only.
    pub changesets_omitted: usize,
}

impl Report {
    /// The report's data as `--format json` writes it.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plain data serializes") + "\n"
    }

    /// sha256 of [`Report::json`]: equal for equal data, whenever and
    /// wherever the report is made.
    pub fn data_hash(&self) -> Sha256Digest {
        Sha256Digest::of(self.json().as_bytes())
    }

    /// Whether every audit passed, every environment was reached and none drifted.
    pub fn all_good(&self) -> bool {
        self.environments.iter().all(|e| {
            e.unreachable.is_none() && [&e.drift, &e.audit].into_iter().flatten().all(|f| f.ok)
        })
    }
}

/// The HTML page: self-contained (styles inline, no scripts, no external
/// references), readable without a network.
#[derive(Template)]
#[template(path = "report.html")]
struct Html<'a> {
    r: &'a Report,
    generated: &'a str,
    version: &'a str,
    hash: String,
    good: bool,
}

/// The Markdown summary, for pasting into a ticket.
#[derive(Template)]
#[template(path = "report.md", escape = "none")]
struct Markdown<'a> {
    r: &'a Report,
    generated: &'a str,
    version: &'a str,
    hash: String,
    good: bool,
}

/// The page as HTML.
pub fn html(r: &Report, generated: &str) -> String {
    Html {
        r,
        generated,
        version: env!("CARGO_PKG_VERSION"),
        hash: r.data_hash().to_hex(),
        good: r.all_good(),
    }
    .render()
    .expect("the template renders plain data")
}

/// The summary as Markdown.
pub fn markdown(r: &Report, generated: &str) -> String {
    Markdown {
        r,
        generated,
        version: env!("CARGO_PKG_VERSION"),
        hash: r.data_hash().to_hex(),
        good: r.all_good(),
    }
    .render()
    .expect("the template renders plain data")
}

mod filters {
    /// Text made safe for a Markdown table cell: one line, no markup.
    #[askama::filter_fn]
    pub fn md<T: std::fmt::Display>(s: T, _: &dyn askama::Values) -> askama::Result<String> {
        Ok(super::md_text(&s.to_string()))
    }
}

/// Text as literal Markdown: on one line, with every character that could
/// start markup (or end a table cell) escaped.
pub fn md_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' | '\r' | '\t' => out.push(' '),
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' | '!' | '~' | '&' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        Report {
            format_version: 1,
            project: "shop".into(),
            bundles_from: "the work tree".into(),
            audited_against: "HEAD (1a2b3c4d5e6f)".into(),
            columns: vec!["DEV".into(), "PRD (2 targets)".into()],
            matrix: vec![MatrixRow {
                changeset: "0001-a".into(),
                bundle: "abcd".into(),
                detailed: true,
                cells: vec![
                    Cell {
                        state: "applied".into(),
                        text: "applied 2026-12-01".into(),
                    },
                    Cell {
                        state: "failed".into(),
                        text: "failed 1, applied 1: eu".into(),
                    },
                ],
            }],
            environments: vec![Environment {
                name: "dev".into(),
                unreachable: None,
                rows: 1,
                applied: 1,
                head: "#1 abcd".into(),
                schema: Some("ef01".into()),
                drift: Some(Finding {
                    ok: true,
                    text: "none".into(),
                }),
                source: None,
                audit: Some(Finding {
                    ok: false,
                    text: "1 problem".into(),
                }),
                problems: vec!["#1: <b>chain</b> | broken".into()],
                problems_omitted: 0,
                ledger: Vec::new(),
                ledger_omitted: 0,
            }],
            changesets: vec![Changeset {
                id: "0001-a".into(),
                description: Some("<script>alert(1)</script>".into()),
                bundle_hash: None,
                files: Vec::new(),
                signatures: Vec::new(),
                approvals: Vec::new(),
                runs: Vec::new(),
            }],
            changesets_omitted: 0,
        }
    }

    #[test]
    fn html_escapes_everything_it_shows_and_references_nothing() {
        let page = html(&sample(), "2026-12-02T00:00:00Z");
        assert!(!page.contains("<script"), "{page}");
        assert!(
            page.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
            "{page}"
        );
        assert!(page.contains("&#60;b&#62;chain"), "{page}");
        for external in ["src=", "href=\"http", "@import", "url("] {
            assert!(!page.contains(external), "{external} in\n{page}");
        }
        assert!(page.contains(&sample().data_hash().to_hex()));
    }

    #[test]
    fn the_data_hash_is_the_hash_of_the_json_and_changes_with_the_data() {
        let a = sample();
        assert_eq!(a.data_hash(), Sha256Digest::of(a.json().as_bytes()));
        let mut b = sample();
        b.environments[0].rows = 2;
        assert_ne!(a.data_hash(), b.data_hash());
    }

    #[test]
    fn markdown_cells_cannot_break_the_table_or_add_markup() {
        for (text, want) in [
            ("a|b", "a\\|b"),
            ("two\nlines", "two lines"),
            ("<img src=x>", "\\<img src=x\\>"),
            ("[link](http://x)", "\\[link\\](http://x)"),
            ("*bold* _it_ `code`", "\\*bold\\* \\_it\\_ \\`code\\`"),
            ("plain text 1.0", "plain text 1.0"),
        ] {
            assert_eq!(md_text(text), want, "{text:?}");
        }
        let page = markdown(&sample(), "2026-12-02T00:00:00Z");
        assert!(page.contains("\\<b\\>chain\\</b\\> \\| broken"), "{page}");
        assert!(!page.contains("<script>"), "{page}");
    }
}
