//! `promoter baseline`: refused while an environment lags; folded into one
//! changeset proved to give the history's schema; adopted by databases
//! that ran the history, run by new ones, which cannot skip it; audit and
//! verify follow the archive.

use crate::common::{TestContext, run};

#[test]
fn a_baseline_folds_the_history_everywhere_and_a_fresh_database_cannot_skip_it() {
    let t = TestContext::with_databases();
    t.changeset(
        "countries",
        "CREATE TABLE countries (code char(2) PRIMARY KEY, name text NOT NULL);\n\
         INSERT INTO countries VALUES ('ch', 'Switzerland'), ('fr', 'France');\n\
         CREATE TABLE customers (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text, country char(2) REFERENCES countries);\n",
    );
    t.changeset(
        "email",
        "ALTER TABLE customers ADD COLUMN email text;\nALTER TABLE customers DROP COLUMN name;\n\
         CREATE INDEX customers_email ON customers (lower(email));\n",
    );
    t.changeset(
        "summary",
        "CREATE FUNCTION customer_count() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT count(*) FROM customers $$;\n\
         CREATE VIEW per_country AS SELECT country, count(*) AS n FROM customers GROUP BY country;\n",
    );
    t.promoter(&["seal"]).ok();
    let (_, dev_key) = t.promoter_key("Dev <dev@example.com>", "keys/developers");
    let (_, customer_key) = t.promoter_key("Carl <carl@example.com>", "keys/customers");
    let (dev_key, customer_key) = (dev_key.to_str().unwrap(), customer_key.to_str().unwrap());
    t.promoter(&["apply", "dev"]).ok();
    t.promoter(&["sign", "1", "2", "3", "--key", dev_key]).ok();
    t.commit_all("three changesets");
    t.pin("qat");
    t.pin("prd");
    t.promoter(&["promote", "dev", "qat"]).ok();

    // PRD has not run them: nothing is folded, and PRD is named.
    let refused = t.promoter(&["baseline", "--upto", "3"]).fails();
    assert!(
        refused.contains("prd: 0001-countries not applied"),
        "{refused}"
    );
    assert!(t.path("changesets/0001-countries").is_dir());

    t.promoter(&["approve", "1", "2", "3", "--yes", "--key", customer_key])
        .ok();
    t.commit_all("approved");
    t.promoter(&["promote", "qat", "prd", "--yes"]).ok();

    let out = t
        .promoter(&[
            "--json",
            "baseline",
            "--upto",
            "3",
            "--reference-data",
            "public.countries",
        ])
        .ok();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["changeset"], "0003-baseline", "{out}");
    assert_eq!(
        v["folds"],
        serde_json::json!(["0001-countries", "0002-email", "0003-summary"])
    );
    for id in ["0001-countries", "0002-email", "0003-summary"] {
        assert!(
            t.path(&format!("changesets/archive/{id}/SHA256SUMS"))
                .is_file()
        );
        assert!(!t.path(&format!("changesets/{id}")).exists());
    }
    let meta = t.read("changesets/0003-baseline/changeset.yaml");
    assert!(
        meta.contains("supersedes:") && meta.contains("schema_fingerprint:"),
        "{meta}"
    );
    assert!(
        t.read("changesets/0003-baseline/002-reference-data.sql")
            .contains("Switzerland")
    );
    let fp = v["schema_fingerprint"].as_str().unwrap().to_owned();

    // Signed and committed like any other; every database that ran the
    // history adopts it (its schema is the baseline's), PRD with approval.
    t.promoter(&["sign", "baseline", "--key", dev_key]).ok();
    t.commit_all("baseline");
    let verified = t.promoter(&["verify"]).ok();
    assert!(
        verified.contains("0001-countries"),
        "the archive is verified too: {verified}"
    );
    let out = t.promoter(&["apply", "dev"]).ok();
    assert!(out.contains("0003-baseline"), "{out}");
    t.promoter(&["promote", "dev", "qat"]).ok();
    t.promoter(&["approve", "baseline", "--yes", "--key", customer_key])
        .ok();
    t.commit_all("baseline approved");
    t.promoter(&["promote", "qat", "prd", "--yes"]).ok();
    // Status shows the baseline, not the history it folds.
    let status = t.promoter(&["status"]).ok();
    assert!(
        status.contains("0003-baseline") && !status.contains("0001-countries"),
        "{status}"
    );
    for env in ["dev", "qat", "prd"] {
        let out = t.promoter(&["--json", "ledger", env]).ok();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let last = v["rows"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["status"], "baseline-adopted", "{env}: {out}");
        assert_eq!(last["schema_after"], fp, "{env}");
        let audit = t.promoter(&["audit", env]).ok();
        assert!(audit.contains("hash chain intact"), "{env}: {audit}");
    }

    // A fresh database runs the baseline alone, and gets the same schema.
    t.changeset("later", "ALTER TABLE customers ADD COLUMN note text;\n");
    t.promoter(&["seal"]).ok();
    t.sql("dev", "SELECT 1");
    let out = t
        .promoter(&[
            "--json", "profile", "restore", "clean-db", "--to", "dev", "--yes",
        ])
        .ok();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["applied"],
        serde_json::json!(["0003-baseline", "0004-later"]),
        "{out}"
    );
    assert_eq!(
        t.sql(
            "dev",
            "SELECT string_agg(code, ',' ORDER BY code) FROM countries"
        )
        .trim(),
        "ch,fr"
    );
    // Without 0004, the two schemas are the same.
    std::fs::remove_dir_all(t.path("changesets/0004-later")).unwrap();
    t.promoter(&["profile", "restore", "clean-db", "--to", "dev", "--yes"])
        .ok();
    let same = t.promoter(&["drift", "prd", "dev"]).ok();
    assert!(same.contains("have the same schema"), "{same}");
    let audit = t.promoter(&["audit", "dev"]).ok();
    assert!(audit.contains("hash chain intact"), "{audit}");

    // And cannot skip it: 0005 alone is refused on an empty database.
    t.changeset("after", "CREATE TABLE after_base (id int);\n");
    t.promoter(&["seal"]).ok();
    t.sql("dev", "DROP SCHEMA promoter CASCADE; DROP VIEW per_country; DROP TABLE customers, countries; DROP FUNCTION customer_count()");
    let skipped = t.promoter(&["apply", "dev", "after"]).fails();
    assert!(skipped.contains("0003-baseline"), "{skipped}");
}

/// Real-world history: pagila's schema and data as two changesets, folded.
/// The baseline alone gives a database whose pg_dump schema (the corpus's
/// own normalized hash, independent of promoter's fingerprint) is the one
/// the full history gives.
#[test]
fn pagila_folded_into_a_baseline_gives_the_schema_of_its_history() {
    let t = TestContext::with_databases();
    t.write(
        "environments.yaml",
        "environments:\n  dev:\n    database_url: ${DEV_DATABASE_URL}\n",
    );
    let dir = crate::corpus::corpora();
    for (slug, file) in [
        ("pagila-schema", "pagila/pagila-schema.sql"),
        ("pagila-data", "pagila/pagila-data.sql"),
    ] {
        let id = t.changeset(slug, "");
        std::fs::copy(
            dir.join(file),
            t.path(&format!("changesets/{id}/001-{slug}.sql")),
        )
        .unwrap();
    }
    t.promoter(&["seal"]).ok();
    t.promoter(&["apply", "dev"]).ok();
    let hash = || {
        run(std::process::Command::new("bash")
            .arg(dir.join("schema-hash.sh"))
            .arg(t.url("dev"))
            .args(["-N", "promoter"]))
        .ok()
    };
    let history = hash();
    t.commit_all("pagila");
    let out = t.promoter(&["baseline", "--upto", "2"]).ok();
    assert!(out.contains("into 0002-baseline"), "{out}");
    t.promoter(&["apply", "dev"]).ok();
    let ledger = t.promoter(&["ledger", "dev"]).ok();
    assert!(ledger.contains("baseline-adopted"), "{ledger}");
    // From nothing: the baseline alone.
    let out = t
        .promoter(&["profile", "restore", "clean-db", "--to", "dev", "--yes"])
        .ok();
    assert!(out.contains("applied 1 changeset: 0002-baseline"), "{out}");
    assert_eq!(hash(), history);
}

/// Regression: adoption compared the live schema with the baseline's, so a
/// database that had run changesets after the folded ones (the normal case)
/// could never adopt it. What counts is the schema its ledger recorded
/// right after the last folded changeset.
#[test]
fn a_database_that_ran_later_changesets_still_adopts_the_baseline() {
    let t = TestContext::with_databases();
    t.write(
        "environments.yaml",
        "environments:\n  dev:\n    database_url: ${DEV_DATABASE_URL}\n",
    );
    t.changeset("a", "CREATE TABLE a (id int);\n");
    t.changeset("b", "ALTER TABLE a ADD COLUMN b text;\n");
    t.changeset("c", "CREATE TABLE c (id int);\n");
    t.promoter(&["seal"]).ok();
    t.promoter(&["apply", "dev"]).ok();
    t.commit_all("three");
    t.promoter(&["baseline", "--upto", "2"]).ok();
    let out = t.promoter(&["apply", "dev"]).ok();
    assert!(out.contains("0002-baseline"), "{out}");
    // 0003 ran after the folded ones; the baseline is adopted after it.
    let ledger = t.promoter(&["--json", "ledger", "dev"]).ok();
    let v: serde_json::Value = serde_json::from_str(&ledger).unwrap();
    let statuses: Vec<&str> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["applied", "applied", "applied", "baseline-adopted"]
    );
}

/// Planning reads changeset.yaml only for changesets named NNNN-baseline;
/// a `baseline:` anywhere else would be read by some commands and not by
/// others, so it is refused outright.
#[test]
fn a_baseline_section_in_a_changeset_not_named_baseline_is_refused() {
    let t = TestContext::with_databases();
    let id = t.changeset("sneaky", "CREATE TABLE s (id int);\n");
    t.write(
        &format!("changesets/{id}/changeset.yaml"),
        &format!(
            "id: {id}\ndescription: x\ntransaction: per-changeset\nbaseline:\n  schema_fingerprint: {}\n  supersedes: []\n",
            "a".repeat(64)
        ),
    );
    let err = t.promoter(&["seal"]).fails();
    assert!(
        err.contains("belongs only to a changeset named NNNN-baseline"),
        "{err}"
    );
}
