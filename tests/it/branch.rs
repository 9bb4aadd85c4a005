//! Branch databases: naming rules, the TEMPLATE path and the dump path, a
//! branch's ledger continuing its source's, and a controlled environment's
//! sessions never ended.

use crate::common::{TestContext, admin_url, database_url, psql};

/// Has `t` drop branch `name`'s database at the end, whatever happens.
fn cleanup(t: &mut TestContext, name: &str) {
    let db = format!("{}_{name}", t.databases[0].1);
    t.databases
        .push((format!("branch-{name}"), db.clone(), database_url(&db)));
}

fn exists(db: &str) -> bool {
    psql(
        admin_url(),
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{db}'"),
    )
    .ok()
    .trim()
        == "1"
}

fn statuses(t: &TestContext, env: &str) -> Vec<(String, String, String)> {
    let out = t.promoter(&["--json", "ledger", env]).ok();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["changeset_id"].as_str().unwrap().to_owned(),
                r["status"].as_str().unwrap().to_owned(),
                r["environment"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn branches_follow_the_practice_and_continue_their_sources_ledger() {
    let mut t = TestContext::with_databases();
    for b in ["develop", "feature_login", "master", "bugfix_y"] {
        cleanup(&mut t, b);
    }
    let dev_db = t.databases[0].1.clone();
    t.changeset("a", "CREATE TABLE a (id int);\n");
    t.promoter(&["seal"]).ok();
    t.promoter(&["apply", "dev"]).ok();

    // The names and sources of the practice, each refused with its rule.
    for (args, why) in [
        (
            vec!["branch", "create", "hotfix_x", "--from", "dev"],
            "branch names are master, develop",
        ),
        (
            vec!["branch", "create", "feature_Login"],
            "branch names are",
        ),
        (
            vec!["branch", "create", "feature_x"],
            "--from develop: no such environment or branch",
        ),
        (
            vec!["branch", "create", "master"],
            "say what to copy with --from",
        ),
        (
            vec!["branch", "create", "dev", "--from", "dev"],
            "branch names are",
        ),
    ] {
        let err = t.promoter(&args).fails();
        assert!(err.contains(why), "{args:?}: {err}");
    }

    // develop from DEV: a file copy, its ledger DEV's and a `branched` row.
    let out = t
        .promoter(&["--json", "branch", "create", "develop", "--from", "dev"])
        .ok();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["method"], "template", "{out}");
    assert_eq!(v["database"], format!("{dev_db}_develop"));
    assert_eq!(
        statuses(&t, "develop"),
        [
            ("0001-a".into(), "applied".into(), "dev".into()),
            ("branch".into(), "branched".into(), "develop".into())
        ]
    );
    let err = t
        .promoter(&["branch", "create", "bugfix_y", "--from", "develop"])
        .fails();
    assert!(err.contains("made from master"), "{err}");
    let err = t
        .promoter(&["branch", "create", "develop", "--from", "dev"])
        .fails();
    assert!(err.contains("branch develop exists"), "{err}");

    // feature_login from develop (the default), then work in it alone.
    let out = t.promoter(&["branch", "create", "feature_login"]).ok();
    assert!(
        out.contains("made from develop with CREATE DATABASE"),
        "{out}"
    );
    t.changeset("b", "CREATE TABLE b (id int);\n");
    t.promoter(&["seal"]).ok();
    let out = t.promoter(&["apply", "feature_login"]).ok();
    assert!(out.contains("applied 0002-b to feature_login"), "{out}");
    let rows = statuses(&t, "feature_login");
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert_eq!(rows[2].1, "branched");
    assert_eq!(
        rows[3],
        ("0002-b".into(), "applied".into(), "feature_login".into())
    );
    t.commit_all("two changesets");
    let audit = t.promoter(&["audit", "feature_login"]).ok();
    assert!(audit.contains("hash chain intact"), "{audit}");
    // DEV and develop are untouched by the branch's work.
    assert!(
        t.sql("dev", "SELECT to_regclass('b') IS NULL")
            .starts_with('t')
    );

    let list = t.promoter(&["--json", "branch", "list"]).ok();
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    let by_name = |n: &str| {
        v["branches"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(by_name("develop")["pending"], 1, "{list}");
    assert_eq!(by_name("feature_login")["pending"], 0, "{list}");
    assert_eq!(by_name("feature_login")["from"], "develop");
    assert!(by_name("feature_login")["bytes"].as_i64().unwrap() > 1_000_000);
    // Status shows branches after the pipeline, as environments.
    let status = t.promoter(&["status"]).ok();
    assert!(
        status.contains("DEVELOP") && status.contains("FEATURE_LOGIN"),
        "{status}"
    );
    let table = t.promoter(&["branch", "list"]).ok();
    assert!(
        table.contains("feature_login") && table.contains("PENDING"),
        "{table}"
    );

    // Reset: made again from develop, the branch's own work gone.
    let err = t.promoter(&["branch", "reset", "feature_login"]).fails();
    assert!(err.contains("no terminal"), "{err}");
    t.promoter(&["branch", "reset", "feature_login", "--yes"])
        .ok();
    let rows = statuses(&t, "feature_login");
    assert_eq!(rows.len(), 3, "{rows:?}");
    // Regression: the checkpoint of the database it replaced made the next
    // apply refuse ("the ledger was truncated"); work goes on after a reset.
    let out = t.promoter(&["apply", "feature_login", "--dry-run"]).ok();
    assert!(out.contains("0002-b"), "{out}");
    let login_db = format!("{dev_db}_feature_login");
    assert!(
        psql(&database_url(&login_db), "SELECT to_regclass('b') IS NULL")
            .ok()
            .starts_with('t')
    );

    // master from an environment, bugfix from master.
    t.promoter(&["branch", "create", "master", "--from", "dev"])
        .ok();
    t.promoter(&["branch", "create", "bugfix_y"]).ok();

    // Drop: the database goes, and so does the name.
    t.promoter(&["branch", "drop", "feature_login", "--yes"])
        .ok();
    assert!(!exists(&login_db));
    let err = t.promoter(&["ledger", "feature_login"]).fails();
    assert!(err.contains("unknown environment"), "{err}");
    // An edited record cannot aim `branch drop` at DEV's own database.
    let record = t.read(".promoter/branches.yaml");
    t.write(
        ".promoter/branches.yaml",
        &record.replace(&format!("{dev_db}_master"), &dev_db),
    );
    let err = t.promoter(&["branch", "drop", "master", "--yes"]).fails();
    assert!(err.contains("the record was edited"), "{err}");
    assert!(exists(&dev_db));
    t.write(".promoter/branches.yaml", &record);
    let err = t.promoter(&["branch", "drop", "dev", "--yes"]).fails();
    assert!(
        err.contains("promoter drops only databases it made"),
        "{err}"
    );
    assert!(exists(&dev_db));
}

#[test]
fn a_busy_or_controlled_source_is_copied_by_dump_and_its_sessions_survive() {
    let mut t = TestContext::with_databases();
    for b in ["test_busy", "test_ended", "test_qat"] {
        cleanup(&mut t, b);
    }
    t.changeset(
        "a",
        "CREATE TABLE a (id int);\nINSERT INTO a VALUES (1), (2);\n",
    );
    t.promoter(&["seal"]).ok();
    t.promoter(&["apply", "dev"]).ok();

    // DEV in use, no terminal, no --yes: copied by dump, the session lives.
    let held = t.hold(
        "dev",
        "SELECT pg_sleep(60)",
        "SELECT count(*) > 0 FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)'",
    );
    let run = t.promoter(&["--json", "branch", "create", "test_busy", "--from", "dev"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["method"], "dump", "{}", run.all());
    assert!(v["why_dump"].as_str().unwrap().contains("in use"), "{v}");
    assert!(
        t.sql(
            "dev",
            "SELECT count(*) > 0 FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)'"
        )
        .starts_with('t')
    );
    let busy = format!("{}_test_busy", t.databases[0].1);
    assert_eq!(
        psql(&database_url(&busy), "SELECT count(*) FROM a")
            .ok()
            .trim(),
        "2"
    );
    assert_eq!(statuses(&t, "test_busy").last().unwrap().1, "branched");
    // With --yes the session is ended for a file copy.
    let out = t
        .promoter(&[
            "--json",
            "branch",
            "create",
            "test_ended",
            "--from",
            "dev",
            "--yes",
        ])
        .ok();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["method"], "template", "{out}");
    assert_eq!(v["sessions_ended"], 1, "{out}");
    drop(held);

    // QAT is controlled: never in its cluster unless a branch cluster is named.
    let (_, dev_key) = t.promoter_key("Dev <dev@example.com>", "keys/developers");
    t.promoter(&["sign", "1", "--key", dev_key.to_str().unwrap()])
        .ok();
    t.commit_all("a, signed");
    t.pin("qat");
    t.promoter(&["promote", "dev", "qat"]).ok();
    let err = t
        .promoter(&["branch", "create", "test_qat", "--from", "qat"])
        .fails();
    assert!(
        err.contains("never creates databases in a controlled"),
        "{err}"
    );
    let yaml = t.read("environments.yaml");
    t.write(
        "environments.yaml",
        &format!("{yaml}branches:\n  database_url: \"{}\"\n", admin_url()),
    );
    let held = t.hold(
        "qat",
        "SELECT pg_sleep(60)",
        "SELECT count(*) > 0 FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)'",
    );
    let out = t
        .promoter(&[
            "--json", "branch", "create", "test_qat", "--from", "qat", "--yes",
        ])
        .ok();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["method"], "dump", "{out}");
    assert!(
        v["why_dump"].as_str().unwrap().contains("never ended"),
        "{v}"
    );
    assert!(
        t.sql(
            "qat",
            "SELECT count(*) > 0 FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)'"
        )
        .starts_with('t')
    );
    drop(held);
    // QAT's history, then the branch's own row; the branch applies freely.
    let rows = statuses(&t, "test_qat");
    assert_eq!(rows.last().unwrap().1, "branched", "{rows:?}");
    assert!(
        rows.iter().any(|r| r.1 == "applied" && r.2 == "qat"),
        "{rows:?}"
    );
    t.changeset("b", "CREATE TABLE b (id int);\n");
    t.promoter(&["seal"]).ok();
    let out = t.promoter(&["apply", "test_qat"]).ok();
    assert!(out.contains("applied 0002-b to test_qat"), "{out}");
    for b in ["test_busy", "test_ended", "test_qat"] {
        t.promoter(&["branch", "drop", b, "--yes"]).ok();
    }
}
