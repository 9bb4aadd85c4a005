//! Data profiles: saved from QAT, restored into DEV with the same schema and
//! data, pinned file by file (a tampered artifact is refused), `clean-db`
//! built from nothing, and never restored into a controlled environment.

use crate::common::TestContext;

fn rows(t: &TestContext, env: &str) -> String {
    t.sql(
        env,
        "SELECT string_agg(id || ':' || name, ',' ORDER BY id) FROM a",
    )
}

#[test]
fn a_profile_round_trips_and_a_tampered_artifact_is_refused() {
    let t = TestContext::with_databases();
    t.changeset(
        "a",
        "CREATE TABLE a (id int PRIMARY KEY, name text);\nINSERT INTO a VALUES (1, 'seed');\n",
    );
    t.promoter(&["seal"]).ok();
    let (_, dev_key) = t.promoter_key("Dev <dev@example.com>", "keys/developers");
    t.promoter(&["apply", "dev"]).ok();
    t.promoter(&["sign", "1", "--key", dev_key.to_str().unwrap()])
        .ok();
    t.commit_all("a");
    t.pin("qat");
    t.promoter(&["promote", "dev", "qat"]).ok();
    // Data only QAT has: what testers made there.
    t.sql(
        "qat",
        "INSERT INTO a VALUES (10, 'made in qat'), (11, 'also')",
    );

    let out = t
        .promoter(&[
            "--json",
            "profile",
            "save",
            "user-generated",
            "--from",
            "qat",
        ])
        .ok();
    let saved: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        saved["file"], "profiles/user-generated/profile.yaml",
        "{out}"
    );
    assert!(saved["files"].as_u64().unwrap() >= 2, "{out}");
    let pin = t.read("profiles/user-generated/profile.yaml");
    assert!(
        pin.contains("from: qat") && pin.contains("schema_fingerprint:"),
        "{pin}"
    );
    let again = t
        .promoter(&["profile", "save", "user-generated", "--from", "qat"])
        .fails();
    assert!(again.contains("--force"), "{again}");
    let verified = t.promoter(&["profile", "verify", "user-generated"]).ok();
    assert!(verified.contains("match their pins"), "{verified}");

    // Into DEV: QAT's schema, data and ledger, then a `branched` row.
    let out = t
        .promoter(&[
            "--json",
            "profile",
            "restore",
            "user-generated",
            "--to",
            "dev",
            "--yes",
        ])
        .ok();
    let restored: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(restored["applied"], serde_json::json!([]), "{out}");
    assert_eq!(rows(&t, "dev"), rows(&t, "qat"));
    let same = t.promoter(&["drift", "qat", "dev"]).ok();
    assert!(same.contains("have the same schema"), "{same}");
    let ledger = t.promoter(&["ledger", "dev"]).ok();
    assert!(
        ledger.contains("refreshed") && ledger.contains("profile user-generated"),
        "{ledger}"
    );
    // DEV's own history is kept, as a refresh keeps it.
    let audit = t.promoter(&["audit", "dev"]).ok();
    assert!(audit.contains("hash chain intact"), "{audit}");

    // A new changeset: the restore applies it, so tests run on today's schema.
    t.changeset("b", "ALTER TABLE a ADD COLUMN c int;\n");
    t.promoter(&["seal"]).ok();
    let out = t
        .promoter(&[
            "--json",
            "profile",
            "restore",
            "user-generated",
            "--to",
            "dev",
            "--yes",
        ])
        .ok();
    let restored: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(restored["applied"], serde_json::json!(["0002-b"]), "{out}");
    assert!(
        t.sql("dev", "SELECT count(*) FROM a WHERE c IS NULL")
            .starts_with('3')
    );

    // Tampered in the store: verify names the file, restore refuses and DEV stays.
    let store = t.path(".promoter/profiles/user-generated");
    let artifact = std::fs::read_dir(&store)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let data = std::fs::read_dir(&artifact)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "gz"))
        .unwrap();
    let mut bytes = std::fs::read(&data).unwrap();
    bytes.push(0);
    std::fs::write(&data, bytes).unwrap();
    let name = data.file_name().unwrap().to_str().unwrap().to_owned();
    let bad = t.promoter(&["profile", "verify", "user-generated"]).fails();
    assert!(bad.contains(&format!("{name}: modified")), "{bad}");
    t.sql("dev", "CREATE TABLE marker (id int)");
    let refused = t
        .promoter(&[
            "profile",
            "restore",
            "user-generated",
            "--to",
            "dev",
            "--yes",
        ])
        .fails();
    assert!(
        refused.contains(&name) && refused.contains("nothing was restored"),
        "{refused}"
    );
    assert!(
        t.sql("dev", "SELECT to_regclass('marker') IS NOT NULL")
            .starts_with('t')
    );
    // A restore that fails half-way (a role the dump needs is missing)
    // leaves DEV as it was: it is built beside DEV and swapped in only
    // when checked.
    let owner = "promoter_it_profile_owner";
    t.sql(
        "qat",
        &format!("DROP ROLE IF EXISTS {owner}; CREATE ROLE {owner}; CREATE TABLE owned (id int); ALTER TABLE owned OWNER TO {owner}"),
    );
    t.promoter(&["profile", "save", "owned", "--from", "qat"])
        .ok();
    t.sql("qat", &format!("DROP TABLE owned; DROP ROLE {owner}"));
    let failed = t
        .promoter(&["profile", "restore", "owned", "--to", "dev", "--yes"])
        .fails();
    assert!(failed.contains("pg_restore"), "{failed}");
    assert!(
        t.sql("dev", "SELECT to_regclass('marker') IS NOT NULL")
            .starts_with('t')
    );

    // Never into a controlled environment.
    let no = t
        .promoter(&["profile", "restore", "clean-db", "--to", "qat", "--yes"])
        .fails();
    assert!(
        no.contains("only into an environment without promote_from"),
        "{no}"
    );

    // clean-db: nothing, then every changeset; also as `branch reset dev`.
    let out = t
        .promoter(&[
            "--json", "profile", "restore", "clean-db", "--to", "dev", "--yes",
        ])
        .ok();
    let restored: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        restored["applied"],
        serde_json::json!(["0001-a", "0002-b"]),
        "{out}"
    );
    assert_eq!(rows(&t, "dev").trim(), "1:seed");
    assert!(
        t.sql("dev", "SELECT to_regclass('marker') IS NULL")
            .starts_with('t')
    );
    let out = t
        .promoter(&["branch", "reset", "dev", "--profile", "clean-db", "--yes"])
        .ok();
    assert!(out.contains("applied 2 changesets"), "{out}");
    let list = t.promoter(&["profile", "list"]).ok();
    assert!(
        list.contains("clean-db") && list.contains("user-generated"),
        "{list}"
    );
}

/// A masked profile of QAT: the data goes through the spec into a scratch
/// branch database (never in QAT's cluster unless a branch cluster is
/// named), which is dumped and dropped; no original e-mail reaches DEV.
#[test]
fn a_masked_profile_never_carries_the_originals() {
    let t = TestContext::with_databases();
    t.changeset(
        "people",
        "CREATE TABLE people (id int PRIMARY KEY, email text NOT NULL);\n",
    );
    t.promoter(&["seal"]).ok();
    let (_, dev_key) = t.promoter_key("Dev <dev@example.com>", "keys/developers");
    t.promoter(&["apply", "dev"]).ok();
    t.promoter(&["sign", "1", "--key", dev_key.to_str().unwrap()])
        .ok();
    t.commit_all("people");
    t.pin("qat");
    t.promoter(&["promote", "dev", "qat"]).ok();
    t.sql(
        "qat",
        "INSERT INTO people SELECT i, 'person' || i || '@customer.example' FROM generate_series(1, 50) i",
    );
    t.write(
        "masking.yaml",
        "tables:\n  people:\n    sensitive: true\n    columns:\n      id: { keep: \"surrogate key\" }\n      email: email\n",
    );
    let salt = [("PROMOTER_MASK_SALT", "a salt of some length 1")];
    let args = [
        "profile",
        "save",
        "masked",
        "--from",
        "qat",
        "--mask",
        "masking.yaml",
    ];
    let refused = t.promoter_env(&args, &salt).fails();
    assert!(
        refused.contains("never creates databases in a controlled"),
        "{refused}"
    );
    let yaml = t.read("environments.yaml");
    t.write(
        "environments.yaml",
        &format!(
            "{yaml}branches:\n  database_url: \"{}\"\n",
            crate::common::admin_url()
        ),
    );
    t.promoter_env(&args, &salt).ok();
    let pin = t.read("profiles/masked/profile.yaml");
    assert!(!pin.contains("masking_sha256: null"), "{pin}");
    // The scratch database is gone.
    let scratch = format!("{}_profile_masked", t.databases[1].1);
    assert_eq!(
        crate::common::psql(
            crate::common::admin_url(),
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{scratch}'")
        )
        .ok()
        .trim(),
        "0"
    );
    t.promoter(&["profile", "restore", "masked", "--to", "dev", "--yes"])
        .ok();
    assert_eq!(t.sql("dev", "SELECT count(*) FROM people").trim(), "50");
    assert!(
        t.sql(
            "dev",
            "SELECT count(*) FROM people WHERE email LIKE '%@customer.example'"
        )
        .starts_with('0')
    );
}
