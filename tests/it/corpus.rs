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
