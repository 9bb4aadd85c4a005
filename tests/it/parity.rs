//! psql parity, checked by the server: the same scripts run through
//! `psql -X -v ON_ERROR_STOP=1 -f` and through `promoter apply` against a
//! cluster that logs the exact text of every statement it receives
//! (`scripts/pg-cluster` with `PG_CLUSTER_LOG_STATEMENTS=1`: csvlog,
//! `log_min_duration_statement = 0`, failing statements in the error's
//! `query` column). The two sequences must be byte-identical.
//!
//! The scripts run in `transaction: none` changesets, so promoter sends each
//! statement as psql does, with no wrapper of its own; promoter's own
//! statements (ledger, fingerprints, session reset) are told apart by their
//! text, the same filter on both sides. Further SQL, such as PostgreSQL's
//! regression suite, can be fed from a directory: `PROMOTER_PARITY_DIR=DIR
//! cargo nextest run parity` (see docs/parity.md).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::common::{Run, TestContext};
use promoter::changeset::TransactionMode;

/// The statement-logging cluster, started once per test process.
struct LogCluster {
    /// The URL of its `postgres` database.
    admin: String,
    log: PathBuf,
}

fn cluster() -> &'static LogCluster {
    static CLUSTER: OnceLock<LogCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-cluster");
        let out = std::process::Command::new(script)
            .args(["start", "parity"])
            .env("PG_CLUSTER_LOG_STATEMENTS", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "starting the parity cluster failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let admin = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let dir = PathBuf::from(admin.split_once("?host=").unwrap().1);
        assert!(
            dir.join(".log-statements").exists(),
            "the cluster in {} was made without statement logging: `scripts/pg-cluster destroy parity` and rerun",
            dir.display()
        );
        LogCluster {
            admin,
            log: dir.join("data/log/statements.csv"),
        }
    })
}

impl LogCluster {
    fn url(&self, db: &str) -> String {
        let (head, query) = self.admin.split_once('?').unwrap();
        format!("{}/{db}?{query}", &head[..head.rfind('/').unwrap()])
    }

    /// A fresh, empty database.
    fn database(&self, name: &str) -> String {
        crate::common::psql(&self.admin, &format!("DROP DATABASE IF EXISTS {name}")).ok();
        crate::common::psql(&self.admin, &format!("CREATE DATABASE {name}")).ok();
        self.url(name)
    }

    /// Every statement database `db` received since the last call (texts of
    /// simple queries, and of failing ones), once the logger has written
    /// them: a sentinel query marks the end.
    fn take(&self, db: &str, seen: &mut usize) -> Vec<String> {
        static SENTINEL: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        static LOG: std::sync::Mutex<LogReader> = std::sync::Mutex::new(LogReader::new());
        let n = SENTINEL.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let sentinel = format!("SELECT 'parity sentinel {} {n}'", std::process::id());
        crate::common::psql(&self.url(db), &sentinel).ok();
        for _ in 0..600 {
            let mut log = LOG.lock().unwrap();
            log.read(&self.log);
            let texts = log.texts.get(db).map(Vec::as_slice).unwrap_or_default();
            if let Some(end) = texts.iter().position(|t| *t == sentinel)
                && end >= *seen
            {
                let out = texts[*seen..end].to_vec();
                *seen = end + 1;
                return out;
            }
            drop(log);
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!(
            "the server log {} never showed {sentinel}",
            self.log.display()
        );
    }
}

/// Reads the csvlog as it grows: only new bytes, whole records.
struct LogReader {
    offset: u64,
    pending: Vec<u8>,
    /// Statement texts by database, in the order the server logged them.
    texts: std::collections::BTreeMap<String, Vec<String>>,
}

impl LogReader {
    const fn new() -> Self {
        Self {
            offset: 0,
            pending: Vec::new(),
            texts: std::collections::BTreeMap::new(),
        }
    }

    fn read(&mut self, path: &Path) {
        use std::io::{Read, Seek};
        let Ok(mut file) = std::fs::File::open(path) else {
            return;
        };
        file.seek(std::io::SeekFrom::Start(self.offset)).unwrap();
        let n = file.read_to_end(&mut self.pending).unwrap();
        self.offset += n as u64;
        // Whole records end at a newline outside quotes.
        let (mut quoted, mut start) = (false, 0);
        for i in 0..self.pending.len() {
            match self.pending[i] {
                b'"' => quoted = !quoted,
                b'\n' if !quoted => {
                    let record = csv_record(&self.pending[start..i]);
                    if record.len() > 19
                        && let Some(text) = statement_text(&record)
                    {
                        self.texts.entry(record[2].clone()).or_default().push(text);
                    }
                    start = i + 1;
                }
                _ => {}
            }
        }
        self.pending.drain(..start);
    }
}

/// The statement a csvlog record shows: a simple query's text, or the
/// query of an error.
fn statement_text(r: &[String]) -> Option<String> {
    if r[11] == "ERROR" {
        return Some(r[19].clone());
    }
    let rest = r[13].strip_prefix("duration: ")?;
    let (_, text) = rest.split_once(" ms  statement: ")?;
    Some(text.to_owned())
}

/// The fields of one csvlog record (RFC 4180: `"` quotes, `""` escapes).
fn csv_record(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut record = Vec::new();
    let mut field = String::new();
    let (mut quoted, mut chars) = (false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.next_if_eq(&'"').is_some() => field.push('"'),
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, c) => field.push(c),
        }
    }
    record.push(field);
    record
}

/// promoter's own statements, which psql does not send: its transactions,
/// the fingerprint's search path and JIT setting, the session reset between scripts, the
/// `UNLISTEN *` after each statement of a `transaction: none` changeset,
/// the check of its prepared statements, the ledger's DDL.
fn is_promoters_own(text: &str) -> bool {
    matches!(text, "BEGIN" | "COMMIT" | "ROLLBACK" | "UNLISTEN *")
        || text == RESET_SESSION
        || text == promoter::db::fingerprint::READING
        || text == promoter::db::fingerprint::READ
        || text == promoter::db::executor::END_OF_SCRIPTS
        || text == STATEMENTS_QUERY
        || text == FORGET_STATEMENTS
        || text.starts_with("CREATE SCHEMA IF NOT EXISTS promoter")
        || text.contains("promoter.ledger")
        || text.starts_with("SELECT 'parity sentinel ")
}

use promoter::db::executor::{FORGET_STATEMENTS, RESET_SESSION, STATEMENTS_QUERY};

/// What psql sends for each of `scripts` (one session each, in order, in
/// one database), and whether the last one it ran failed.
fn through_psql(db: &str, scripts: &[(String, Vec<u8>)]) -> (Vec<Vec<String>>, Vec<bool>) {
    let c = cluster();
    let url = c.database(db);
    let mut seen = 0;
    c.take(db, &mut seen);
    let dir = tempfile::tempdir().unwrap();
    let (mut sent, mut failed) = (Vec::new(), Vec::new());
    for (name, bytes) in scripts {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = std::process::Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
            .arg(&path)
            .arg(&url)
            .output()
            .unwrap();
        sent.push(
            c.take(db, &mut seen)
                .into_iter()
                .filter(|t| !is_promoters_own(t))
                .collect(),
        );
        failed.push(!out.status.success());
    }
    (sent, failed)
}

/// What promoter sends for `scripts`, as the scripts of one `transaction:
/// none` changeset applied with the real binary; and its run.
fn through_promoter(db: &str, scripts: &[(String, Vec<u8>)]) -> (Vec<Vec<String>>, Run) {
    let (sent, run, _) = logged_apply(db, |t| {
        let id = t.changeset_without_transaction("parity", "");
        std::fs::remove_file(t.path(&format!("changesets/{id}/001-parity.sql"))).unwrap();
        for (name, bytes) in scripts {
            std::fs::write(t.path(&format!("changesets/{id}/{name}")), bytes).unwrap();
        }
    });
    // Scripts end where promoter resets the session.
    let mut per_script = vec![Vec::new()];
    for text in sent {
        if text == RESET_SESSION {
            per_script.push(Vec::new());
        } else if !is_promoters_own(&text) {
            per_script.last_mut().unwrap().push(text);
        }
    }
    (per_script, run)
}

/// Runs `cases` (name, script) through both and asserts each sent the same
/// statements. The cases on which psql fails then run alone, in a database
/// of their own, since both stop there; the others run together, in order.
/// Returns how many statements psql sent.
fn assert_parity(tag: &str, cases: &[(String, Vec<u8>)]) -> usize {
    compare_parity(tag, cases).unwrap_or_else(|e| panic!("{e}"))
}

/// [`assert_parity`], returning the first difference as an error.
fn compare_parity(tag: &str, cases: &[(String, Vec<u8>)]) -> Result<usize, String> {
    let (_, failed) = through_psql(&format!("par_{tag}_probe"), cases);
    let (alone, together): (Vec<usize>, Vec<usize>) = (0..cases.len()).partition(|&i| failed[i]);
    let mut groups = vec![together];
    groups.extend(alone.into_iter().map(|i| vec![i]));
    let mut dbs = vec![format!("par_{tag}_probe")];
    let mut total = 0;
    for (g, indices) in groups.iter().enumerate() {
        if indices.is_empty() {
            continue;
        }
        let scripts: Vec<(String, Vec<u8>)> = indices.iter().map(|&i| cases[i].clone()).collect();
        let (psql_db, promoter_db) = (format!("par_{tag}_{g}_psql"), format!("par_{tag}_{g}_prom"));
        let (psql, psql_failed) = through_psql(&psql_db, &scripts);
        let (sent, run) = through_promoter(&promoter_db, &scripts);
        dbs.extend([psql_db, promoter_db]);
        let fails = g > 0;
        let result = if psql_failed.iter().any(|&f| f) != fails {
            Err(format!(
                "{}: psql failed differently when run apart from the other cases",
                scripts[0].0
            ))
        } else if (run.code != 0) != fails {
            Err(format!(
                "{}: psql and promoter disagree on failing\n{}",
                scripts[0].0,
                run.all()
            ))
        } else {
            Ok(())
        };
        if let Err(e) = result {
            drop_databases(dbs);
            return Err(e);
        }
        for (k, (name, _)) in scripts.iter().enumerate() {
            let got = sent.get(k).cloned().unwrap_or_default();
            if got != psql[k] {
                drop_databases(dbs);
                return Err(format!(
                    "{name}: promoter sent other statements than psql\n{}\n{}",
                    first_difference(&got, &psql[k]),
                    run.all()
                ));
            }
            total += psql[k].len();
        }
    }
    drop_databases(dbs);
    Ok(total)
}

fn drop_databases(dbs: Vec<String>) {
    for db in dbs {
        crate::common::psql(
            &cluster().admin,
            &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
        )
        .ok();
    }
}

/// Where two sequences of statements first differ, around the first byte
/// that differs.
fn first_difference(promoter: &[String], psql: &[String]) -> String {
    let k = (0..promoter.len().max(psql.len()))
        .find(|&k| promoter.get(k) != psql.get(k))
        .unwrap_or(0);
    let (a, b) = (
        promoter.get(k).map_or("(nothing)", String::as_str),
        psql.get(k).map_or("(nothing)", String::as_str),
    );
    let at = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    let around = |t: &str| {
        let mut start = at.saturating_sub(80);
        while !t.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = (at + 80).min(t.len());
        while !t.is_char_boundary(end) {
            end += 1;
        }
        format!("{:?}", &t[start.min(t.len())..end.max(start.min(t.len()))])
    };
    format!(
        "statement {} of {} (promoter) / {} (psql), from byte {at}:\n  promoter: {}\n  psql:     {}",
        k + 1,
        promoter.len(),
        psql.len(),
        around(a),
        around(b)
    )
}

fn case(n: usize, script: &[u8]) -> (String, Vec<u8>) {
    (format!("{n:03}-case.sql"), script.to_vec())
}

/// One case per rule of psql's main loop and lexer that decides the bytes
/// sent, checked by the server against psql itself.
#[test]
fn promoter_sends_what_psql_sends_for_every_rule() {
    let scripts: &[&[u8]] = &[
        // Empty lines outside quotes and comments are dropped ...
        b"/* c */\n\nSELECT 1;\n",
        b"SELECT 1\n\n+ 1;\n",
        b"SELECT (1\n\n);\n",
        b"SELECT 'a'\n\n'b';\n",
        b"CREATE FUNCTION pf() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n\n  SELECT 1;\n\n  SELECT 2;\nEND;\n",
        b"CREATE SCHEMA ps\n\n  CREATE TABLE t (a int)\n\n  CREATE VIEW v AS SELECT a FROM t;\n",
        // ... and kept inside quotes, dollar quotes, comments, identifiers.
        b"SELECT 'a\n\nb';\nSELECT $$x\n\ny$$;\nSELECT /* a\n\nb */ 1;\nSELECT 1 AS \"a\n\nb\";\n",
        // Lines of whitespace are not empty.
        b"SELECT 1\n  \n+ 1;\nSELECT 1\n\t\n+ 2;\nSELECT 1\n\x0c\n+ 3;\n",
        // Line endings: CR stays content, and ends a -- comment.
        b"SELECT 1\r\n\r\n+ 1;\r\nSELECT 2;\r\n",
        b"SELECT 1; -- c\rSELECT 2;\nSELECT 1 -- c\r, 3;\n",
        b"SELECT E'a'\r'\\''; SELECT 4;\nSELECT 'a' -- c\r 'b;'; SELECT 5;\n",
        // The last statement without a semicolon, and what follows it.
        b"SELECT 1\n\n\n",
        b"SELECT 2\n-- trailing comment\n",
        b"SELECT 3; /* c */\n",
        b"SELECT 4; -- c\n",
        b"-- only a comment\n\n",
        b"SELECT 5",
        // Empty statements.
        b"SELECT 1;;\n;\n\t\n;\n-- c\n;\n",
        b"/* a */ ; /* b */ ;\n",
        // Whitespace and comments inside a statement.
        b"  \t SELECT 1 -- trailing\n+ 2; -- after\n   SELECT 3;\n",
        // `\;` and `\:`.
        b"SELECT 1\\; SELECT 2;\n",
        b"\\; SELECT 3;\n",
        b"SELECT 1\\;\n\nSELECT 2;\n",
        b"SELECT 1 \\:x;\n",
        b"SELECT 1\\; SELECT 2\\; SELECT 3",
        // Meta-commands promoter accepts, alone on their line or after text.
        b"\\set ON_ERROR_STOP on\nSELECT 1;\n\\set ON_ERROR_STOP 1\n",
        b"SELECT 1\n\\echo hi\n+1;\n",
        b"SELECT 1 \\echo hi\n+1;\n",
        b"SELECT 1\n  \\echo hi\n+1;\n",
        b"\\echo one two\n\\qecho 'a  b' c\nSELECT 1;\n",
        // Variables psql does not define are sent as written.
        b"SELECT 1 AS \":nope\", ':nope', $$:nope$$, '{1,2,3}'::int[], ARRAY[1,2,3][1:2];\n",
        // Lexical corners: strings with prefixes, escapes, dollar quotes,
        // nested comments, numbers with junk before BEGIN ATOMIC words.
        b"SELECT E'\\'; still', e'a\\\\'; SELECT U&'d\\0061t; a', N'x;', B'1;'='1', X'1F';\n",
        b"SELECT $_$a;$$;b$_$, $BODY$ x; $body$ y; $BODY$; SELECT $1;\n",
        b"/* a; /* nested; */ still; */ SELECT 1;\n",
        b"CREATE FUNCTION pg() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; SELECT 1ebegin; END; SELECT 3;\nEND;\n",
        b"CREATE FUNCTION ph() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1e+begin; END; SELECT 0x1f;\nEND;\n",
        b"CREATE OR REPLACE PROCEDURE pp() BEGIN ATOMIC SELECT 1; END;\nSELECT 2;\n",
        b"SELECT 1 AS abe'\\'; SELECT 6;\n",
        // COPY from the script, with the rest of its line, and to stdout.
        b"CREATE TABLE ct (a int, b text);\nCOPY ct FROM stdin; SELECT 7;\n1\tx;y\n2\t\\N\n\\.\nSELECT count(*) FROM ct;\n",
        b"COPY (SELECT 1, 'two') TO STDOUT;\nCOPY ct TO STDOUT WITH (FORMAT csv);\n",
        // Errors: both stop at the same statement.
        b"SELECT 1;\nSELECT nope;\nSELECT 2;\n",
        b"SELECT 1;\nSELECT 'unterminated;\nSELECT 2;\n",
        b"SELECT 1;\nSELECT 1\\; SELECT nope\\; SELECT 3;\nSELECT 4;\n",
    ];
    let cases: Vec<(String, Vec<u8>)> = scripts
        .iter()
        .enumerate()
        .map(|(n, s)| case(n + 1, s))
        .collect();
    let sent = assert_parity(&format!("rules_{}", std::process::id()), &cases);
    assert!(sent >= 60, "psql sent only {sent} statements");
}

/// The shared corpora (pg_dump output, a hand-written data load, the
/// server's own catalog SQL) and the other SQL files PostgreSQL installs.
#[test]
fn promoter_sends_what_psql_sends_for_the_corpora() {
    // Each corpus in a database of its own, as expected/ was made.
    let files = crate::corpus::corpus_files();
    let corpus = |prefix: &str| -> Vec<(String, Vec<u8>)> {
        files
            .iter()
            .filter(|(path, _)| path.to_string_lossy().contains(prefix))
            .enumerate()
            .map(|(n, (path, _))| case(n + 1, &std::fs::read(path).unwrap()))
            .collect()
    };
    let mut sent = assert_parity(&format!("pagila_{}", std::process::id()), &corpus("pagila"));
    sent += assert_parity(
        &format!("chinook_{}", std::process::id()),
        &corpus("chinook"),
    );
    let mut pgcore = vec![(
        "000-drop-information-schema.sql".to_owned(),
        b"DROP SCHEMA IF EXISTS information_schema CASCADE;\n".to_vec(),
    )];
    pgcore.extend(
        [files.len() - 2, files.len() - 1].map(|i| case(i, &std::fs::read(&files[i].0).unwrap())),
    );
    sent += assert_parity(&format!("pgcore_{}", std::process::id()), &pgcore);
    let want: usize = files.iter().map(|(_, n)| n).sum();
    assert_eq!(
        sent,
        want + 1,
        "psql sent other counts than expected/*.files.tsv"
    );
    // The other SQL the server installs, each in a database of its own
    // (they define what already exists).
    let share = crate::corpus::pg_sharedir();
    for name in ["system_views.sql", "snowball_create.sql"] {
        let bytes = std::fs::read(share.join(name)).unwrap();
        let tag = format!(
            "share_{}_{}",
            name.trim_end_matches(".sql"),
            std::process::id()
        );
        assert_parity(&tag, &[case(1, &bytes)]);
    }
}

/// SQL from outside the repository, when `PROMOTER_PARITY_DIR` names a
/// directory of `.sql` files (PostgreSQL's `src/test/regress/sql`, say):
/// each file promoter accepts is compared up to its first error. Without the
/// variable there is nothing to compare, and the test says so.
#[test]
fn promoter_sends_what_psql_sends_for_sql_from_parity_dir() {
    let Some(dir) = std::env::var_os("PROMOTER_PARITY_DIR") else {
        eprintln!("PROMOTER_PARITY_DIR is not set: no further SQL to compare");
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    let (mut compared, mut refused, mut differ) = (0, Vec::new(), Vec::new());
    for path in files {
        let bytes = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let problems = promoter::sql::check_script(&name, &bytes[..], TransactionMode::None);
        if let Some(p) = problems.first() {
            refused.push(format!("{p}"));
            continue;
        }
        let tag = format!(
            "dir_{}_{}",
            name.trim_end_matches(".sql")
                .replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            std::process::id()
        );
        match compare_parity(&tag, &[("001-case.sql".into(), bytes)]) {
            Ok(_) => compared += 1,
            Err(e) => differ.push(format!("{name}: {e}")),
        }
    }
    eprintln!(
        "compared {compared} files byte for byte; {} refused by promoter:\n  {}",
        refused.len(),
        refused.join("\n  ")
    );
    assert!(
        differ.is_empty(),
        "{} files differ:\n{}",
        differ.len(),
        differ.join("\n\n")
    );
    assert!(
        compared > 0,
        "no file in {} was compared",
        Path::new(&dir).display()
    );
}

/// Seals and applies what `write` puts in a project to a fresh database
/// `db` of the logging cluster; returns every statement the server received
/// for it, the run, and the database's URL.
fn logged_apply(db: &str, write: impl FnOnce(&TestContext)) -> (Vec<String>, Run, String) {
    let c = cluster();
    let mut t = TestContext::new();
    let url = c.database(db);
    t.databases.push(("dev".into(), db.into(), url.clone()));
    write(&t);
    let mut seen = 0;
    c.take(db, &mut seen);
    t.promoter(&["seal"]).ok();
    let run = t.promoter(&["apply", "dev"]);
    // The database is the parity cluster's, not the test cluster's.
    t.databases.clear();
    (c.take(db, &mut seen), run, url)
}

/// Applies `sql` as one transactional changeset to a fresh database of the
/// logging cluster; returns the statements the server received (promoter's
/// own left out), the run, and the database's URL.
fn transactional_run(db: &str, sql: &str) -> (Vec<String>, Run, String) {
    let (sent, run, url) = logged_apply(db, |t| {
        t.changeset("inserts", sql);
    });
    let sent = sent
        .into_iter()
        .filter(|t| !is_promoters_own(t) && !t.contains("pg_catalog.to_regclass"))
        .collect();
    (sent, run, url)
}

/// Constants-only INSERTs into a table where no code can see the query go
/// to the server in one message; into a table whose trigger, default,
/// check, rule or row security could, each alone, as psql sends them — and
/// what the code recorded is then what psql gives.
#[test]
fn constant_inserts_go_together_only_where_no_code_can_tell() {
    let tables = [
        (
            "plain",
            "CREATE TABLE plain (id serial PRIMARY KEY, v text DEFAULT 'x', t timestamptz DEFAULT now(), c int CHECK (c > 0))",
        ),
        (
            "trig",
            "CREATE TABLE trig (a int); CREATE TRIGGER t AFTER INSERT ON trig FOR EACH ROW EXECUTE FUNCTION seen()",
        ),
        (
            "cq",
            "CREATE TABLE cq (a int, q text DEFAULT current_query())",
        ),
        (
            "st",
            "CREATE TABLE st (a int, t timestamptz DEFAULT statement_timestamp())",
        ),
        ("uf", "CREATE TABLE uf (a int CHECK (noted(a)))"),
        (
            "rul",
            "CREATE TABLE rul (a int); CREATE RULE r AS ON INSERT TO rul DO ALSO INSERT INTO audit VALUES (current_query())",
        ),
        (
            "rls",
            "CREATE TABLE rls (a int); ALTER TABLE rls ENABLE ROW LEVEL SECURITY; ALTER TABLE rls FORCE ROW LEVEL SECURITY; CREATE POLICY p ON rls WITH CHECK (noted(a))",
        ),
        (
            "dom",
            "CREATE DOMAIN checked AS int CHECK (noted(VALUE)); CREATE TABLE dom (a checked)",
        ),
    ];
    let mut sql = String::from(
        "CREATE TABLE audit (q text);\n\
         CREATE FUNCTION seen() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN INSERT INTO audit VALUES (current_query()); RETURN NULL; END$$;\n\
         CREATE FUNCTION noted(int) RETURNS bool LANGUAGE plpgsql AS $$BEGIN INSERT INTO audit VALUES (current_query()); RETURN true; END$$;\n",
    );
    for (_, ddl) in tables {
        sql.push_str(ddl);
        sql.push_str(";\n");
    }
    let inserts = |table: &str| -> Vec<String> {
        (1..=3)
            .map(|i| {
                if table == "plain" {
                    format!("INSERT INTO plain (c) VALUES ({i}) ON CONFLICT DO NOTHING;")
                } else {
                    format!("INSERT INTO {table} VALUES ({i});")
                }
            })
            .collect()
    };
    for (table, _) in tables {
        for stmt in inserts(table) {
            sql.push_str(&stmt);
            sql.push('\n');
        }
    }
    let db = format!("par_batch_{}", std::process::id());
    let (sent, run, url) = transactional_run(&db, &sql);
    assert_eq!(run.code, 0, "{}", run.all());
    for (table, _) in tables {
        let want = inserts(table);
        if table == "plain" {
            assert!(
                sent.contains(&want.concat()),
                "the INSERTs into plain did not go together:\n{sent:#?}"
            );
            assert!(!sent.iter().any(|s| *s == want[0]), "{sent:#?}");
        } else {
            for stmt in &want {
                assert!(sent.contains(stmt), "{stmt} was not sent alone:\n{sent:#?}");
            }
        }
    }
    // What the code saw is each statement alone, as under psql (the
    // superuser running the test bypasses even forced row security).
    let audit = crate::common::psql(&url, "SELECT q FROM audit ORDER BY q").ok();
    let mut want: Vec<String> = ["trig", "uf", "rul", "dom"]
        .iter()
        .flat_map(|t| inserts(t))
        .collect();
    want.sort();
    let got: Vec<String> = audit.lines().map(str::to_owned).collect();
    assert_eq!(got, want);
    let cq = crate::common::psql(&url, "SELECT q FROM cq ORDER BY a").ok();
    assert_eq!(cq.lines().collect::<Vec<_>>(), inserts("cq"));
    let plain = crate::common::psql(
        &url,
        "SELECT string_agg(c::text, ',' ORDER BY id) FROM plain",
    )
    .ok();
    assert_eq!(plain.trim(), "1,2,3");
    let distinct = crate::common::psql(&url, "SELECT count(DISTINCT t) FROM st").ok();
    assert_eq!(distinct.trim(), "3");
    drop_databases(vec![db]);
}

/// A failure inside INSERTs sent together names its own statement: by the
/// server's position (a bad value), or as the first that did not finish (a
/// duplicate key); nothing of the changeset stays.
#[test]
fn an_insert_failing_among_others_sent_together_names_its_own_line() {
    let mut sql = String::from("CREATE TABLE t (id int PRIMARY KEY, v int);\n");
    for i in 1..=50 {
        sql.push_str(&format!("INSERT INTO t VALUES ({i}, {i});\n"));
    }
    let cases = [
        (
            "INSERT INTO t VALUES (51, 'nope');\n",
            52,
            "invalid input syntax for type integer",
            Some(27),
        ),
        (
            "INSERT INTO t VALUES (7, 7);\n",
            52,
            "duplicate key value violates unique constraint",
            None,
        ),
    ];
    for (n, (bad, line, message, column)) in cases.into_iter().enumerate() {
        let script = format!("{sql}{bad}INSERT INTO t VALUES (99, 99);\n");
        let db = format!("par_batch_fail_{n}_{}", std::process::id());
        let (sent, run, url) = transactional_run(&db, &script);
        assert_ne!(run.code, 0, "{}", run.all());
        let out = run.all();
        let at = match column {
            Some(c) => format!("001-inserts.sql:{line}:{c}"),
            None => format!("001-inserts.sql:{line}"),
        };
        assert!(out.contains(&at), "no {at} in:\n{out}");
        assert!(out.contains(message), "{out}");
        assert!(
            sent.iter().any(|s| s.matches("INSERT INTO t").count() > 2),
            "nothing went together:\n{sent:#?}"
        );
        let left = crate::common::psql(&url, "SELECT to_regclass('t') IS NULL").ok();
        assert_eq!(left.trim(), "t", "the failed changeset left its table");
        drop_databases(vec![db]);
    }
}

/// More INSERTs than one message holds: the next are read while the server
/// runs the last, and what follows them (a meta-command's output, a failing
/// statement's line) comes in its place.
#[test]
fn inserts_read_ahead_of_the_server_keep_their_order_and_lines() {
    let mut sql = String::from("CREATE TABLE t (id int PRIMARY KEY);\n");
    for i in 1..=2500 {
        sql.push_str(&format!("INSERT INTO t VALUES ({i});\n"));
    }
    sql.push_str("\\echo after the inserts\nSELECT 1;\n");
    let db = format!("par_batch_ahead_{}", std::process::id());
    let (sent, run, url) = transactional_run(&db, &sql);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.all().contains("after the inserts"), "{}", run.all());
    assert!(
        sent.len() < 100,
        "{} messages for 2,500 INSERTs",
        sent.len()
    );
    let n = crate::common::psql(&url, "SELECT count(*), sum(id) FROM t").ok();
    assert_eq!(n.trim(), "2500|3126250");
    drop_databases(vec![db]);
    // The 1,700th INSERT (line 1,701), in the second message, read ahead.
    let sql = sql.replacen(
        "INSERT INTO t VALUES (1700);",
        "INSERT INTO t VALUES (1);",
        1,
    );
    let db = format!("par_batch_ahead_fail_{}", std::process::id());
    let (_, run, _) = transactional_run(&db, &sql);
    assert!(
        run.all().contains("001-inserts.sql:1701:1: [23505]"),
        "{}",
        run.all()
    );
    drop_databases(vec![db]);
}

/// A script cannot answer promoter's question itself: functions and
/// operators it puts ahead of pg_catalog in its search path, which an
/// unqualified question would call, leave INSERTs into a table with a
/// trigger alone.
#[test]
fn a_script_shadowing_pg_catalog_cannot_get_its_inserts_sent_together() {
    let mut sql = String::from(
        "CREATE TABLE audit (q text);\n\
         CREATE FUNCTION seen() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN INSERT INTO audit VALUES (current_query()); RETURN NULL; END$$;\n\
         CREATE TABLE trig (a int);\n\
         CREATE TRIGGER t AFTER INSERT ON trig FOR EACH ROW EXECUTE FUNCTION seen();\n\
         CREATE TABLE plain (a int);\n\
         CREATE FUNCTION public.to_regclass(text) RETURNS pg_catalog.regclass LANGUAGE sql AS $$SELECT 'public.plain'::pg_catalog.regclass$$;\n\
         CREATE FUNCTION public.always(oid, oid) RETURNS bool LANGUAGE sql AS $$SELECT true$$;\n\
         CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = public.always);\n\
         CREATE OPERATOR public.>= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = public.always);\n\
         SET search_path = public, pg_catalog;\n",
    );
    let inserts: Vec<String> = (1..=3)
        .map(|i| format!("INSERT INTO trig VALUES ({i});"))
        .collect();
    for stmt in &inserts {
        sql.push_str(stmt);
        sql.push('\n');
    }
    let db = format!("par_batch_shadow_{}", std::process::id());
    let (sent, run, url) = transactional_run(&db, &sql);
    assert_eq!(run.code, 0, "{}", run.all());
    for stmt in &inserts {
        assert!(sent.contains(stmt), "{stmt} was not sent alone:\n{sent:#?}");
    }
    let audit = crate::common::psql(&url, "SELECT q FROM audit ORDER BY q").ok();
    assert_eq!(audit.lines().collect::<Vec<_>>(), inserts);
    drop_databases(vec![db]);
}
