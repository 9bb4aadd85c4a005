//! Output conventions: results on stdout, diagnostics on stderr, `--json`
//! from dedicated view structs (each document an object carrying
//! `format_version`), times as RFC 3339 UTC. Writing to a closed stdout
//! (`promoter status | head`) is an error the caller sees: it decides
//! whether that loses anything (see [`crate::error::report`]).

use std::io::{self, IsTerminal, Write};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// Writes one line of results to stdout.
pub fn print(line: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush())
}

/// Prints `lines` in one write (stdout is line-buffered: a line at a time
/// is a system call each), for results computed before they are shown.
pub fn print_all<S: AsRef<str>>(lines: &[S]) -> io::Result<()> {
    let mut text = String::with_capacity(lines.iter().map(|l| l.as_ref().len() + 1).sum());
    for line in lines {
        text.push_str(line.as_ref());
        text.push('\n');
    }
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush())
}

/// Treats a closed stdout as done: for results printed after the work, whose
/// outcome (and exit code) does not depend on anyone reading them.
pub fn unless_closed(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// A changeset's own output (`\echo`, `COPY … TO STDOUT` rows) on stderr.
/// On a terminal, control characters other than tab and newline are shown
/// as `\xNN`: data from the database must not drive the operator's terminal.
pub struct RunOutput {
    escape: bool,
}

impl RunOutput {
    pub fn stderr() -> Self {
        Self {
            escape: stderr_is_terminal(),
        }
    }
}

impl Write for RunOutput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut err = io::stderr().lock();
        if !self.escape {
            return err.write(buf);
        }
        let mut start = 0;
        for (i, &b) in buf.iter().enumerate() {
            if (b < 0x20 && b != b'\t' && b != b'\n') || b == 0x7f {
                err.write_all(&buf[start..i])?;
                write!(err, "\\x{b:02x}")?;
                start = i + 1;
            }
        }
        err.write_all(&buf[start..])?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// Writes a diagnostic line to stderr.
pub fn eprint(line: &str) {
    let line = if colour(Stream::Stderr) {
        let tone = [
            ("error: ", Tone::Bad),
            ("warning: ", Tone::Warn),
            ("hint: ", Tone::Note),
            ("note: ", Tone::Note),
        ];
        let mut painted = String::with_capacity(line.len() + 16);
        for l in line.split_inclusive('\n') {
            match tone.iter().find(|(p, _)| l.starts_with(p)) {
                Some((p, t)) => {
                    painted.push_str(&paint(p.trim_end(), *t));
                    painted.push(' ');
                    painted.push_str(&l[p.len()..]);
                }
                None => painted.push_str(l),
            }
        }
        painted
    } else {
        line.to_owned()
    };
    // One write: stderr is unbuffered, and `writeln!` would make two.
    let mut line = line;
    line.push('\n');
    let _ = io::stderr().lock().write_all(line.as_bytes());
}

/// Which output a colour decision is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Whether to colour `stream`: a terminal, `NO_COLOR` unset or empty,
/// `TERM` not `dumb`.
///
/// Asked once per process (a run prints a few lines per changeset).
pub fn colour(stream: Stream) -> bool {
    static DECIDED: [OnceLock<bool>; 2] = [OnceLock::new(), OnceLock::new()];
    *DECIDED[stream as usize].get_or_init(|| {
        let terminal = match stream {
            Stream::Stdout => io::stdout().is_terminal(),
            Stream::Stderr => io::stderr().is_terminal(),
        };
        terminal
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
    })
}

/// What a coloured word says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Applied, ok.
    Good,
    /// Pending, waiting on someone.
    Waiting,
    /// Failed, refused, modified, an error.
    Bad,
    Warn,
    Note,
}

/// `text` in its tone's colour (call only after [`colour`] said yes).
pub fn paint(text: &str, tone: Tone) -> String {
    use anstyle::{AnsiColor, Style};
    let style = match tone {
        Tone::Good => Style::new().fg_color(Some(AnsiColor::Green.into())),
        Tone::Waiting => Style::new().fg_color(Some(AnsiColor::Yellow.into())),
        Tone::Bad => Style::new().fg_color(Some(AnsiColor::Red.into())).bold(),
        Tone::Warn => Style::new().fg_color(Some(AnsiColor::Yellow.into())).bold(),
        Tone::Note => Style::new().fg_color(Some(AnsiColor::Cyan.into())),
    };
    format!("{}{text}{}", style.render(), style.render_reset())
}

/// `s` without its terminal escape sequences (as [`paint`] writes them).
fn strip_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Characters of `s` as a terminal shows them: escape sequences take none.
fn visible_width(s: &str) -> usize {
    if s.contains('\x1b') {
        strip_escapes(s).chars().count()
    } else {
        s.chars().count()
    }
}

/// A `--json` document: the view's fields after `format_version`.
#[derive(serde::Serialize)]
struct Document<'a, T> {
    format_version: u32,
    #[serde(flatten)]
    view: &'a T,
}

/// Prints a view (a struct: every document is an object) as pretty JSON on
/// stdout, with the format version first.
pub fn print_json<T: serde::Serialize>(view: &T) -> anyhow::Result<()> {
    let doc = Document {
        format_version: crate::error::JSON_FORMAT_VERSION,
        view,
    };
    print(&serde_json::to_string_pretty(&doc)?)?;
    Ok(())
}

/// Whether stderr is a terminal (progress is shown only then).
pub fn stderr_is_terminal() -> bool {
    static TERMINAL: OnceLock<bool> = OnceLock::new();
    *TERMINAL.get_or_init(|| io::stderr().is_terminal())
}

/// Whether stdin is a terminal (prompts are allowed only then).
pub fn stdin_is_terminal() -> bool {
    io::stdin().is_terminal()
}

/// `2026-11-22T10:04:05Z` for a system time.
pub fn format_time(t: SystemTime) -> String {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => format_unix(d.as_secs() as i64),
        Err(e) => format_unix(-(e.duration().as_secs() as i64)),
    }
}

/// `2026-11-22T10:04:05.123456Z` for microseconds since the Unix epoch (ledger times).
pub fn format_micros(micros: i64) -> String {
    let secs = format_unix(micros.div_euclid(1_000_000));
    format!(
        "{}.{:06}Z",
        &secs[..secs.len() - 1],
        micros.rem_euclid(1_000_000)
    )
}

/// `2026-11-22T10:04:05Z` for seconds since the Unix epoch.
pub fn format_unix(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

// The inverse: days since 1970-01-01 of a civil date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Microseconds since the Unix epoch of an RFC 3339 time
/// (`2026-12-01T10:00:00Z`, `…+01:00`, fractions allowed) or a date
/// (`2026-12-01`, meaning its start in UTC).
pub fn parse_time(text: &str) -> Result<i64, String> {
    let bad = || {
        format!("{text:?} is not a date (2026-12-01) or an RFC 3339 time (2026-12-01T10:00:00Z)")
    };
    let num = |s: &str| -> Result<i64, String> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    let (date, time) = match text.split_once(['T', 't', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (text, None),
    };
    let parts: Vec<&str> = date.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return Err(bad());
    };
    let (y, m, d) = (num(y)?, num(m)?, num(d)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let days = days_from_civil(y, m as u32, d as u32);
    if civil_from_days(days) != (y, m as u32, d as u32) {
        return Err(bad());
    }
    let mut micros = days * 86_400_000_000;
    if let Some(t) = time {
        let (clock, offset) = if let Some(c) = t.strip_suffix(['Z', 'z']) {
            (c, 0)
        } else if let Some(i) = t.rfind(['+', '-']) {
            let (c, o) = t.split_at(i);
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let (oh, om) = o[1..].split_once(':').ok_or_else(bad)?;
            (c, sign * (num(oh)? * 3600 + num(om)? * 60))
        } else {
            return Err(bad());
        };
        let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
        let hms: Vec<&str> = hms.split(':').collect();
        let [h, mi, se] = hms.as_slice() else {
            return Err(bad());
        };
        let (h, mi, se) = (num(h)?, num(mi)?, num(se)?);
        if h > 23 || mi > 59 || se > 60 {
            return Err(bad());
        }
        let frac_micros = if frac.is_empty() {
            0
        } else {
            let digits: String = frac.chars().chain("000000".chars()).take(6).collect();
            num(&digits)?
        };
        micros += ((h * 3600 + mi * 60 + se) - offset) * 1_000_000 + frac_micros;
    }
    Ok(micros)
}

/// `1 changeset`, `2 changesets`.
pub fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// Pads `cells` into aligned columns separated by two spaces.
pub fn table(rows: &[Vec<String>]) -> Vec<String> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| visible_width(s))
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|r| {
            let mut line = String::new();
            for (i, cell) in r.iter().enumerate() {
                if i + 1 == r.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(widths[i] - visible_width(cell) + 2));
                }
            }
            line.trim_end().to_owned()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn painted_cells_keep_the_table_aligned() {
        let rows = vec![
            vec!["A".to_owned(), "B".to_owned(), "C".to_owned()],
            vec![
                paint("applied", Tone::Good),
                "x".to_owned(),
                "end".to_owned(),
            ],
        ];
        let lines = table(&rows);
        let plain: Vec<String> = lines.iter().map(|l| strip_escapes(l)).collect();
        assert_eq!(plain, ["A        B  C", "applied  x  end"]);
        assert_eq!(visible_width(&paint("abc", Tone::Bad)), 3);
    }

    #[test]
    fn times_parse_as_rfc_3339_or_dates_and_round_trip() {
        for (text, micros) in [
            ("1970-01-01", 0),
            ("2026-12-01", 1_796_083_200_000_000),
            (
                "2026-12-01T10:00:00Z",
                1_796_083_200_000_000 + 36_000_000_000,
            ),
            (
                "2026-12-01T11:00:00+01:00",
                1_796_083_200_000_000 + 36_000_000_000,
            ),
            (
                "2026-12-01T10:00:00.5Z",
                1_796_083_200_000_000 + 36_000_500_000,
            ),
        ] {
            assert_eq!(parse_time(text), Ok(micros), "{text}");
        }
        assert_eq!(
            format_micros(parse_time("2026-12-01T10:00:00.123456Z").unwrap()),
            "2026-12-01T10:00:00.123456Z"
        );
        for bad in [
            "yesterday",
            "2026-13-01",
            "2026-02-30",
            "2026-12-01T10:00",
            "2026-12-01T25:00:00Z",
            "",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_unix_times() {
        let cases = [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_795_392_245, "2026-11-23T00:04:05Z"),
            (-1, "1969-12-31T23:59:59Z"),
        ];
        for (secs, want) in cases {
            assert_eq!(format_unix(secs), want);
        }
        assert_eq!(format_micros(1_500_000), "1970-01-01T00:00:01.500000Z");
        assert_eq!(format_micros(-1), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn table_aligns_columns() {
        let rows = vec![
            vec!["a".to_owned(), "bb".to_owned(), "c".to_owned()],
            vec!["aaa".to_owned(), "b".to_owned(), "".to_owned()],
        ];
        assert_eq!(table(&rows), ["a    bb  c", "aaa  b"]);
    }
}
