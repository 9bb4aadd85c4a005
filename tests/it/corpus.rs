//! Real-world SQL from `../shared/corpora`: the splitter must find exactly the
//! statements psql sends (counts recorded in `expected/*.files.tsv`).

use std::path::PathBuf;

use promoter::sql::{Item, Splitter};

pub fn corpora() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpora");
    assert!(
        dir.is_dir(),
        "the shared corpora are missing: {}",
        dir.display()
    );
    dir
}

pub fn pg_sharedir() -> PathBuf {
    let out = std::process::Command::new("pg_config")
        .arg("--sharedir")
        .output()
        .expect("pg_config");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// (path, statements psql sent) for every corpus file.
pub fn corpus_files() -> Vec<(PathBuf, usize)> {
    let dir = corpora();
    let mut out = Vec::new();
    for corpus in ["pagila", "chinook", "pgcore"] {
        let tsv =
            std::fs::read_to_string(dir.join(format!("expected/{corpus}.files.tsv"))).unwrap();
        for line in tsv.lines().skip(1) {
            let cols: Vec<&str> = line.split('\t').collect();
            let path = match cols[2] {
                "chinook/body/Chinook_PostgreSql.body.sql" => {
                    dir.join("chinook/Chinook_PostgreSql.body.sql")
                }
                "pgcore/001_information_schema.sql" => pg_sharedir().join("information_schema.sql"),
                "pgcore/002_system_functions.sql" => pg_sharedir().join("system_functions.sql"),
                other => dir.join(other),
            };
            out.push((path, cols[5].parse().unwrap()));
        }
    }
    out
}

/// Chinook's data is the shape that goes to the server together: every one
/// of its INSERTs is constants only (the corpus hashes then prove the data
/// psql's, sent so).
#[test]
fn every_insert_of_chinook_is_constants_only() {
    let bytes = std::fs::read(corpora().join("chinook/Chinook_PostgreSql.body.sql")).unwrap();
    let items = promoter::sql::lexer::split_all(&bytes).unwrap();
    let inserts: Vec<_> = items
        .iter()
        .filter_map(|i| match i {
            Item::Statement(s) if s.words.first().is_some_and(|w| w == "INSERT") => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(inserts.len(), 24);
    for s in inserts {
        assert!(
            promoter::sql::constant_insert(s).is_some(),
            "line {}: {}",
            s.line,
            s.first_line()
        );
    }
}

#[test]
fn splitter_sends_as_many_statements_as_psql_for_every_corpus_file() {
    for (path, want) in corpus_files() {
        let file = std::fs::File::open(&path).unwrap();
        let mut splitter = Splitter::new(std::io::BufReader::new(file));
        let mut statements = 0;
        while let Some(item) = splitter.next_item().unwrap() {
            if let Item::Statement(_) = item {
                statements += 1;
            }
        }
        assert_eq!(statements, want, "{}", path.display());
    }
}

/// Applies `files` as one changeset each (in order) to an empty DEV with
/// `promoter apply`, then returns the corpus hashes of that database.
fn apply_corpus(files: &[(&str, Vec<u8>)], schema_args: &[&str]) -> (String, String) {
    let t = crate::common::TestContext::with_databases();
    for (slug, bytes) in files {
        let id = t.changeset(slug, "");
        std::fs::write(t.path(&format!("changesets/{id}/001-{slug}.sql")), bytes).unwrap();
    }
    t.promoter(&["seal"]).ok();
    let out = t.promoter(&["apply", "dev"]).ok();
    assert_eq!(out.matches("applied ").count(), files.len(), "{out}");
    let dir = corpora();
    let run = |script: &str, args: &[&str]| {
        let out = std::process::Command::new("bash")
            .arg(dir.join(script))
            .arg(t.url("dev"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let schema = run("schema-hash.sh", schema_args);
    (
        schema.split_whitespace().next().unwrap().to_owned(),
        data_hash_without_ledger(&t.url("dev")),
    )
}

/// `data-hash.sh`'s result with promoter's own ledger tables left out: the
/// script writes its per-table listing to `$DATA_OUT`; this recomputes the
/// same sha256, table count and row count over the listing minus `promoter.*`.
fn data_hash_without_ledger(url: &str) -> String {
    let listing = tempfile::NamedTempFile::new().unwrap();
    let out = std::process::Command::new("bash")
        .arg(corpora().join("data-hash.sh"))
        .arg(url)
        .env("DATA_OUT", listing.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "data-hash.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(listing.path()).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with("promoter."))
        .collect();
    let body = format!("{}\n", kept.join("\n"));
    let rows: u64 = kept
        .iter()
        .map(|l| l.split('\t').nth(1).unwrap().parse::<u64>().unwrap())
        .sum();
    let digest = promoter::changeset::Sha256Digest::of(body.as_bytes());
    format!("{digest}  {}  {rows}", kept.len())
}

fn read(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn pagila_applies_exactly_as_psql_applies_it() {
    let dir = corpora();
    let (schema, data) = apply_corpus(
        &[
            ("pagila-schema", read(dir.join("pagila/pagila-schema.sql"))),
            ("pagila-data", read(dir.join("pagila/pagila-data.sql"))),
        ],
        &["-N", "promoter"],
    );
    assert_eq!(
        schema,
        "81e5435e3a9da81a8d885908fe8538faf3737d836f13236ba79e132a33c10361"
    );
    assert_eq!(
        data,
        "3ce66b2ce4c002281c245f04e0faa985a692ee8191ae92780e6f96fe7072a2c9  21  49636"
    );
}

#[test]
fn chinook_applies_exactly_as_psql_applies_it() {
    let dir = corpora();
    let (schema, data) = apply_corpus(
        &[(
            "chinook",
            read(dir.join("chinook/Chinook_PostgreSql.body.sql")),
        )],
        &["-N", "promoter"],
    );
    assert_eq!(
        schema,
        "332293a2b1a87e679e88cc64dad1ec87f3931b9a2a4a50ae789e7f6fa67f6cd8"
    );
    assert_eq!(
        data,
        "33d8e20f0ca3c6debef4a80cc1459b05ce824596820b910665c344ebb1812580  11  15607"
    );
}

#[test]
fn pgcore_begin_atomic_bodies_apply_exactly_as_psql_applies_them() {
    let share = pg_sharedir();
    let (schema, _) = apply_corpus(
        &[
            (
                "drop-information-schema",
                b"DROP SCHEMA IF EXISTS information_schema CASCADE;\n".to_vec(),
            ),
            (
                "information-schema",
                read(share.join("information_schema.sql")),
            ),
            ("system-functions", read(share.join("system_functions.sql"))),
        ],
        &["-n", "public", "-n", "information_schema"],
    );
    assert_eq!(
        schema,
        "49a956e3deefb4dabfde67e94abf13046da9806a0bb3ff5edb1d8cb62dc70d12"
    );
}
