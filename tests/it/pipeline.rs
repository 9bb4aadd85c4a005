//! The database half against real PostgreSQL: apply, promote, approve,
//! status, ledger, audit — and every refusal leaving the target untouched.

use std::path::PathBuf;

use crate::common::TestContext;

/// Two changesets applied to DEV, signed, committed; keys for a developer and a customer.
struct Pipeline {
    t: TestContext,
    dev_key: PathBuf,
    customer_key: PathBuf,
}

impl Pipeline {
    fn new() -> Self {
        let t = TestContext::with_databases();
        t.changeset(
            "customers",
            "CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL);\n",
        );
        t.changeset(
            "seed",
            "INSERT INTO customers VALUES (1, 'Ada'), (2, 'Grace');\n",
        );
        t.promoter(&["seal"]).ok();
        let (_, dev_key) = t.promoter_key("Dev <dev@example.com>", "keys/developers");
        let (_, customer_key) = t.promoter_key("Customer <c@example.com>", "keys/customers");
        let out = t.promoter(&["apply", "dev"]).ok();
        assert!(
            out.contains("applied 0001-customers to dev")
                && out.contains("applied 0002-seed to dev"),
            "{out}"
        );
        t.promoter(&["sign", "1", "2", "--key", dev_key.to_str().unwrap()])
            .ok();
        t.commit_all("two changesets");
        t.pin("qat");
        t.pin("prd");
        Self {
            t,
            dev_key,
            customer_key,
        }
    }

    fn approve(&self) {
        self.t
            .promoter(&[
                "approve",
                "1",
                "2",
                "--yes",
                "--key",
                self.customer_key.to_str().unwrap(),
            ])
            .ok();
        self.t.commit_all("approved");
    }

    /// Schema and ledger of an environment, to prove a refusal changed nothing.
    fn snapshot(&self, env: &str) -> String {
        let tables = self.t.sql(
            env,
            "SELECT coalesce(string_agg(table_schema || '.' || table_name, ',' ORDER BY 1), '') \
             FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema', 'promoter')",
        );
        // Pinning the trust policy writes a ledger event; changesets write the rest.
        let rows = self.t.sql(
            env,
            "SELECT CASE WHEN to_regclass('promoter.ledger') IS NULL THEN 0 \
             ELSE (SELECT count(*) FROM promoter.ledger WHERE status <> 'trust-pinned') END",
        );
        assert_eq!(rows, "0\n", "{env} has ledger rows of changesets");
        tables
    }
}

#[test]
fn full_pipeline_dev_to_qat_to_prd_with_ledger_and_audit() {
    let p = Pipeline::new();
    let t = &p.t;
    let out = t.promoter(&["promote", "dev", "qat"]).ok();
    assert!(
        out.contains("applied 0001-customers to qat") && out.contains("applied 0002-seed to qat"),
        "{out}"
    );

    // The customer approves what QAT ran; the approval binds QAT's ledger entry.
    p.approve();
    let statement = std::fs::read_dir(t.path("changesets/0001-customers/signatures"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("approval-") && name.ends_with(".txt")
        })
        .unwrap();
    let text = std::fs::read_to_string(&statement).unwrap();
    let qat_rows: serde_json::Value =
        serde_json::from_str(&t.promoter(&["--json", "ledger", "qat"]).ok()).unwrap();
    let qat_entry = qat_rows["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["changeset_id"] == "0001-customers")
        .unwrap()["entry_hash"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        text.starts_with("promoter approval v1\nchangeset: 0001-customers\n")
            && text.contains(&format!("entry: {qat_entry}\n"))
            && text.contains("opens: prd\n"),
        "{text}"
    );
    // The statement's signature verifies with plain gpg too.
    let customer_cert = t
        .path("keys/customers")
        .read_dir()
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "asc"))
        .unwrap();
    t.gpg(&["--import", customer_cert.to_str().unwrap()]).ok();
    let gpg = t.gpg(&[
        "--verify",
        &format!("{}.asc", statement.display()),
        statement.to_str().unwrap(),
    ]);
    assert_eq!(gpg.code, 0, "{}", gpg.all());

    let out = t.promoter(&["promote", "qat", "prd", "--yes"]).ok();
    assert!(out.contains("applied 0002-seed to prd"), "{out}");
    assert_eq!(
        t.sql(
            "prd",
            "SELECT string_agg(name, ',' ORDER BY id) FROM customers"
        ),
        "Ada,Grace\n"
    );

    let ledger: serde_json::Value =
        serde_json::from_str(&t.promoter(&["--json", "ledger", "prd"]).ok()).unwrap();
    let all = ledger["rows"].as_array().unwrap();
    // The trust pin is the first event in PRD's ledger, then the two changesets.
    assert_eq!(all[0]["status"], "trust-pinned");
    assert_eq!(all[0]["note"], "first-use");
    let rows: Vec<&serde_json::Value> = all.iter().skip(1).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["changeset_id"], "0002-seed");
    assert_eq!(rows[1]["status"], "applied");
    assert_eq!(rows[1]["promoted_from"], "qat");
    // The OS account of the process, not $USER (which anyone can set).
    assert_eq!(rows[1]["os_user"], crate::common::os_user());
    assert!(
        rows[1]["started_at"].as_str().unwrap().ends_with('Z'),
        "RFC 3339 times: {}",
        rows[1]["started_at"]
    );
    assert_eq!(rows[1]["prev_hash"], rows[0]["entry_hash"]);
    let signers = rows[0]["signers"].as_array().unwrap();
    let roles: Vec<&str> = signers
        .iter()
        .map(|s| s["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["customer", "developer"]);
    let qat: serde_json::Value =
        serde_json::from_str(&t.promoter(&["--json", "ledger", "qat"]).ok()).unwrap();
    let qat: Vec<&serde_json::Value> = qat["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] != "trust-pinned")
        .collect();
    // Every QAT row carries QAT's receipt; PRD has no receipt key.
    assert!(
        qat[0]["receipt"]
            .as_str()
            .unwrap()
            .contains("BEGIN PGP SIGNATURE"),
        "{}",
        qat[0]
    );
    assert!(rows[0]["receipt"].is_null());
    assert_eq!(rows[0]["promoted_from_entry"], qat[0]["entry_hash"]);
    assert_eq!(rows[0]["schema_before"], qat[0]["schema_before"]);
    assert_eq!(rows[1]["schema_after"], qat[1]["schema_after"]);

    let status: serde_json::Value =
        serde_json::from_str(&t.promoter(&["--json", "status"]).ok()).unwrap();
    for env in ["dev", "qat", "prd"] {
        assert_eq!(
            status["changesets"][1]["environments"][env]["state"], "applied",
            "{status:#}"
        );
    }
    let audit = t.promoter(&["audit", "prd"]).ok();
    assert!(
        audit.contains("3 ledger rows, hash chain intact; 2 applied bundles identical to git"),
        "{audit}"
    );
    assert!(
        t.promoter(&["promote", "qat", "prd"])
            .ok()
            .contains("prd is up to date with qat")
    );
    assert!(
        t.promoter(&["apply", "dev"])
            .ok()
            .contains("dev is up to date")
    );
}

#[test]
fn refusals_leave_the_target_untouched() {
    let p = Pipeline::new();
    let t = &p.t;
    t.promoter(&["promote", "dev", "qat"]).ok();
    let before = p.snapshot("prd");
    assert_eq!(before, "\n", "prd starts empty");

    // PRD without the customer's approval.
    let err = t.promoter(&["promote", "qat", "prd", "--yes"]).fails();
    assert!(err.contains("nothing was applied to prd"), "{err}");
    assert!(
        err.contains(
            "0001-customers: needs 1 customer approval that matches this bundle, its test and this environment, has 0"
        ),
        "{err}"
    );
    assert_eq!(p.snapshot("prd"), before);

    // Confirmation is required without --yes and without a terminal.
    p.approve();
    let err = t.promoter(&["promote", "qat", "prd"]).fails();
    assert!(
        err.contains("asks for confirmation") && err.contains("--yes"),
        "{err}"
    );
    assert_eq!(p.snapshot("prd"), before);

    // A bundle changed after QAT ran it.
    t.write(
        "changesets/0002-seed/001-seed.sql",
        "INSERT INTO customers VALUES (1, 'Ada'), (3, 'Eve');\n",
    );
    t.promoter(&["seal", "--force", "2"]).ok();
    t.promoter(&["sign", "2", "--key", p.dev_key.to_str().unwrap()])
        .ok();
    t.commit_all("changed after QAT");
    let err = t.promoter(&["promote", "qat", "prd", "--yes"]).fails();
    assert!(
        err.contains("0002-seed changed since it was applied to qat: qat has"),
        "{err}"
    );
    assert_eq!(p.snapshot("prd"), before);
    t.git(&["reset", "-q", "--hard", "HEAD~1"]).ok();

    // Approving a bundle that QAT did not run is refused.
    t.write(
        "changesets/0002-seed/001-seed.sql",
        "INSERT INTO customers VALUES (9, 'Zed');\n",
    );
    t.promoter(&["seal", "--force", "2"]).ok();
    let err = t
        .promoter(&[
            "approve",
            "2",
            "--yes",
            "--key",
            p.customer_key.to_str().unwrap(),
        ])
        .fails();
    assert!(
        err.contains("0002-seed: qat tested bundle")
            && err.contains("refusing to approve an untested bundle"),
        "{err}"
    );
    t.git(&["checkout", "-q", "--", "."]).ok();

    // A dirty work tree does not matter: promote reads git.
    t.write(
        "changesets/0001-customers/001-customers.sql",
        "DROP TABLE everything;\n",
    );
    // QAT unreachable: nothing happens to PRD.
    let unreachable = t
        .cmd()
        .env(
            "QAT_DATABASE_URL",
            crate::common::database_url("no_such_database"),
        )
        .args(["promote", "qat", "prd", "--yes"])
        .output()
        .unwrap();
    assert!(!unreachable.status.success());
    let err = String::from_utf8_lossy(&unreachable.stderr);
    assert!(
        err.contains("qat: cannot connect") && err.contains("nothing was applied to prd"),
        "{err}"
    );
    assert_eq!(p.snapshot("prd"), before);

    // Unknown environment.
    let err = t.promoter(&["promote", "qat", "uat"]).fails();
    assert!(
        err.contains("unknown environment `uat` (environments.yaml defines: dev, prd, qat)"),
        "{err}"
    );

    // And after all that, the real promotion works from git despite the dirty work tree.
    let out = t.promoter(&["promote", "qat", "prd", "--yes"]).ok();
    assert!(out.contains("applied 0002-seed to prd"), "{out}");
}

#[test]
fn a_diverged_target_is_refused_listing_both_histories() {
    let p = Pipeline::new();
    let t = &p.t;
    t.promoter(&["promote", "dev", "qat"]).ok();
    p.approve();
    t.promoter(&["promote", "qat", "prd", "--yes"]).ok();
    // PRD now has 0001 and 0002; point QAT at an environment that has only 0001.
    let other = crate::common::database_url(&format!("{}_other", t.databases[1].1));
    crate::common::psql(
        crate::common::admin_url(),
        &format!("CREATE DATABASE {}_other", t.databases[1].1),
    )
    .ok();
    let pinned = t
        .cmd()
        .env("QAT_DATABASE_URL", &other)
        .args(["trust", "pin", "qat", "--yes"])
        .output()
        .unwrap();
    assert!(
        pinned.status.success(),
        "{}",
        String::from_utf8_lossy(&pinned.stderr)
    );
    let run = t
        .cmd()
        .env("QAT_DATABASE_URL", &other)
        .env("DEV_DATABASE_URL", t.url("dev"))
        .args(["promote", "dev", "qat"])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let err = t
        .cmd()
        .env("QAT_DATABASE_URL", &other)
        .args(["promote", "qat", "prd", "--yes"])
        .output()
        .unwrap();
    // Both have the same two: up to date. Now make PRD diverge by its ledger having more.
    assert!(err.status.success());
    let fresh = format!("{}_fresh", t.databases[1].1);
    crate::common::psql(
        crate::common::admin_url(),
        &format!("CREATE DATABASE {fresh}"),
    )
    .ok();
    let run = t
        .cmd()
        .env("QAT_DATABASE_URL", crate::common::database_url(&fresh))
        .args(["promote", "qat", "prd", "--yes"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{stderr}");
    assert!(stderr.contains("prd has diverged from qat"), "{stderr}");
    assert!(
        stderr.contains("qat: (nothing)") && stderr.contains("prd: 0001-customers"),
        "{stderr}"
    );
    for db in [format!("{}_other", t.databases[1].1), fresh] {
        crate::common::psql(
            crate::common::admin_url(),
            &format!("DROP DATABASE {db} WITH (FORCE)"),
        )
        .ok();
    }
}

#[test]
fn a_sql_error_names_file_line_and_column_and_records_a_failed_row() {
    let t = TestContext::with_databases();
    t.changeset("good", "CREATE TABLE a (id int);\n");
    t.changeset(
        "bad",
        "-- a comment\nINSERT INTO a VALUES (1);\n\nSELECT id,\n       nope FROM a;\n",
    );
    t.changeset("never", "CREATE TABLE c (id int);\n");
    t.promoter(&["seal"]).ok();
    let err = t.promoter(&["apply", "dev"]).fails();
    assert!(
        err.contains("dev: applied 0001-good; failed at 0002-bad; it was rolled back"),
        "{err}"
    );
    assert!(
        err.contains("changesets/0002-bad/001-bad.sql:5:8: [42703] column \"nope\" does not exist"),
        "{err}"
    );
    assert!(err.contains("statement: SELECT id,"), "{err}");
    assert_eq!(
        t.sql("dev", "SELECT count(*) FROM a"),
        "0\n",
        "the INSERT was rolled back"
    );
    assert_eq!(
        t.sql("dev", "SELECT to_regclass('c') IS NULL"),
        "t\n",
        "nothing after the failure ran"
    );
    let rows = t.sql(
        "dev",
        "SELECT seq, changeset_id, status, statements FROM promoter.ledger ORDER BY seq",
    );
    assert_eq!(rows, "1|0001-good|applied|1\n2|0002-bad|failed|0\n");
    let error = t.sql("dev", "SELECT error FROM promoter.ledger WHERE seq = 2");
    assert!(error.contains("001-bad.sql:5:8"), "{error}");
    // A runtime error has no position: the statement's own line is named.
    t.write(
        "changesets/0002-bad/001-bad.sql",
        "SELECT 1;\nSELECT 1 / 0;\n",
    );
    t.promoter(&["seal", "2"]).ok();
    let err = t.promoter(&["apply", "dev"]).fails();
    assert!(
        err.contains("001-bad.sql:2:1: [22012] division by zero"),
        "{err}"
    );
}

#[test]
fn audit_detects_an_update_a_delete_and_a_reordering() {
    let p = Pipeline::new();
    let t = &p.t;
    t.changeset("third", "CREATE TABLE third (id int);\n");
    t.promoter(&["seal"]).ok();
    t.promoter(&["apply", "dev"]).ok();
    t.promoter(&["sign", "3", "--key", p.dev_key.to_str().unwrap()])
        .ok();
    t.commit_all("third");
    t.promoter(&["audit", "dev"]).ok();

    // The ledger refuses edits outright …
    let refused = crate::common::psql(&t.url("dev"), "UPDATE promoter.ledger SET db_role = 'x'");
    assert!(refused.stderr.contains("append-only"), "{}", refused.stderr);
    // … so an attacker with superuser rights disables the trigger first.
    let tamper = |sql: &str| {
        t.sql("dev", &format!("ALTER TABLE promoter.ledger DISABLE TRIGGER ledger_append_only; {sql}; ALTER TABLE promoter.ledger ENABLE TRIGGER ledger_append_only"))
    };
    let backup = t.sql("dev", "SELECT count(*) FROM promoter.ledger");
    assert_eq!(backup, "3\n");
    t.sql(
        "dev",
        "CREATE TABLE ledger_copy AS SELECT * FROM promoter.ledger",
    );
    let restore = || {
        tamper("DELETE FROM promoter.ledger; INSERT INTO promoter.ledger SELECT * FROM ledger_copy")
    };

    tamper("UPDATE promoter.ledger SET os_user = 'someone-else' WHERE seq = 2");
    let err = t.promoter(&["audit", "dev"]).fails();
    assert!(
        err.contains("ledger row #2: row content does not match its entry_hash"),
        "{err}"
    );
    restore();

    tamper("DELETE FROM promoter.ledger WHERE seq = 2");
    let err = t.promoter(&["audit", "dev"]).fails();
    assert!(
        err.contains("ledger row #3: prev_hash does not match row 1"),
        "{err}"
    );
    restore();

    tamper(
        "UPDATE promoter.ledger SET seq = seq + 100 WHERE seq IN (2, 3); UPDATE promoter.ledger SET seq = 3 WHERE seq = 102; UPDATE promoter.ledger SET seq = 2 WHERE seq = 103",
    );
    let rows = t.sql(
        "dev",
        "SELECT string_agg(changeset_id, ',' ORDER BY seq) FROM promoter.ledger",
    );
    assert_eq!(rows, "0001-customers,0003-third,0002-seed\n");
    let err = t.promoter(&["audit", "dev"]).fails();
    assert!(err.contains("ledger row #2"), "{err}");
    restore();
    t.promoter(&["audit", "dev"]).ok();

    // A bundle edited in git after it was applied.
    t.write(
        "changesets/0003-third/001-third.sql",
        "CREATE TABLE third (id bigint);\n",
    );
    t.promoter(&["seal", "--force", "3"]).ok();
    t.commit_all("rewrite history");
    let err = t.promoter(&["audit", "dev"]).fails();
    assert!(
        err.contains("ledger row #3 (0003-third): applied bundle"),
        "{err}"
    );
}

#[test]
fn apply_refuses_promoted_environments_and_out_of_order_changesets() {
    let t = TestContext::with_databases();
    t.changeset("a", "CREATE TABLE a (id int);\n");
    t.promoter(&["seal"]).ok();
    let err = t.promoter(&["apply", "qat"]).fails();
    assert!(
        err.contains("qat is fed by dev") && err.contains("promoter promote dev qat"),
        "{err}"
    );
    t.changeset("b", "CREATE TABLE b (id int);\n");
    t.changeset("c", "CREATE TABLE c (id int);\n");
    t.promoter(&["seal"]).ok();
    let err = t.promoter(&["apply", "dev", "3"]).fails();
    assert!(
        err.contains("0003-c is not next in line for dev: 0001-a must be applied first"),
        "{err}"
    );
    let out = t.promoter(&["apply", "dev", "1", "--dry-run"]).ok();
    assert!(
        out.contains("would apply 1 changeset to dev") && out.contains("nothing was changed"),
        "{out}"
    );
    assert_eq!(
        t.sql("dev", "SELECT to_regclass('promoter.ledger') IS NULL"),
        "t\n",
        "a dry run writes nothing"
    );
    t.promoter(&["apply", "dev", "1"]).ok();
    t.promoter(&["apply", "dev"]).ok();
    // An applied changeset edited afterwards is refused, naming both hashes.
    t.write(
        "changesets/0002-b/001-b.sql",
        "CREATE TABLE b (id bigint);\n",
    );
    t.promoter(&["seal", "2"]).ok();
    let err = t.promoter(&["apply", "dev"]).fails();
    assert!(
        err.contains("0002-b changed since it was applied to dev: dev has"),
        "{err}"
    );
}

#[test]
fn a_held_lock_names_its_holder_and_times_out() {
    let t = TestContext::with_databases();
    t.changeset("a", "CREATE TABLE a (id int);\n");
    t.promoter(&["seal"]).ok();
    let key = promoter::db::lock::key("promoter");
    let held = t.hold(
        "dev",
        &format!("SET application_name = 'held-by-test'; SELECT pg_advisory_lock({key}); SELECT pg_sleep(20)"),
        &format!("SELECT count(*) = 1 FROM pg_locks WHERE database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND locktype = 'advisory' AND granted AND objid = ({key} & 4294967295)::oid"),
    );
    let err = t.promoter(&["apply", "dev", "--lock-wait", "1"]).fails();
    drop(held);
    assert!(
        err.contains("another promoter is applying to this database"),
        "{err}"
    );
    assert!(err.contains("application held-by-test"), "{err}");
    assert_eq!(t.sql("dev", "SELECT to_regclass('a') IS NULL"), "t\n");
}

#[test]
fn two_concurrent_promotions_apply_each_changeset_exactly_once() {
    let p = Pipeline::new();
    let t = &p.t;
    t.changeset("slow", "CREATE TABLE slow (id int);\nSELECT pg_sleep(1);\n");
    t.promoter(&["seal"]).ok();
    t.promoter(&["apply", "dev"]).ok();
    t.promoter(&["sign", "3", "--key", p.dev_key.to_str().unwrap()])
        .ok();
    t.commit_all("slow");
    let spawn = || {
        t.std_cmd()
            .args(["promote", "dev", "qat"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let outs: Vec<String> = [&a, &b]
        .iter()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .collect();
    assert!(
        a.status.success() && b.status.success(),
        "{outs:?} {:?} {:?}",
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr)
    );
    assert_eq!(
        outs.iter()
            .filter(|o| o.contains("applied 0003-slow to qat"))
            .count(),
        1,
        "{outs:?}"
    );
    assert_eq!(
        outs.iter()
            .filter(|o| o.contains("qat is up to date with dev"))
            .count(),
        1,
        "{outs:?}"
    );
    assert_eq!(
        t.sql(
            "qat",
            "SELECT count(*) FROM promoter.ledger WHERE status <> 'trust-pinned'"
        ),
        "3\n"
    );
    t.promoter(&["audit", "qat"]).ok();
}

#[test]
fn kill_9_during_a_changeset_leaves_nothing_half_applied() {
    let t = TestContext::with_databases();
    t.changeset("long", "CREATE TABLE long_running (id int);\nSELECT pg_sleep(3);\nINSERT INTO long_running VALUES (1);\n");
    t.promoter(&["seal"]).ok();
    let mut child = t.std_cmd().args(["apply", "dev"]).spawn().unwrap();
    // Wait until the sleep is running, then kill promoter without warning.
    let start = std::time::Instant::now();
    while !t
        .sql(
            "dev",
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'SELECT pg_sleep(3)%'",
        )
        .starts_with('1')
    {
        assert!(
            start.elapsed().as_secs() < 20,
            "the changeset never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(
        t.sql("dev", "SELECT to_regclass('long_running') IS NULL"),
        "t\n",
        "uncommitted work is invisible"
    );
    assert_eq!(t.sql("dev", "SELECT count(*) FROM promoter.ledger"), "0\n");
    let out = t.promoter(&["apply", "dev"]).ok();
    assert!(out.contains("applied 0001-long to dev"), "{out}");
    assert_eq!(t.sql("dev", "SELECT count(*) FROM long_running"), "1\n");
    t.promoter(&["ledger", "dev"]).ok();
}

#[test]
fn promoting_to_prd_refuses_a_schema_that_drifted_from_qat() {
    let p = Pipeline::new();
    let t = &p.t;
    t.promoter(&["promote", "dev", "qat"]).ok();
    p.approve();
    t.sql("prd", "CREATE TABLE hotfix_made_by_hand (id int)");
    let err = t.promoter(&["promote", "qat", "prd", "--yes"]).fails();
    assert!(err.contains("nothing was applied to prd:\n  - prd's schema differs from qat's when qat applied 0001-customers"), "{err}");
    assert!(err.contains("--allow-drift"), "{err}");
    assert_eq!(p.snapshot("prd"), "public.hotfix_made_by_hand\n");
    assert!(err.contains("promoter drift qat prd"), "{err}");
    let diff = t.promoter(&["drift", "qat", "prd"]).fails();
    assert!(diff.contains("- relation public.customers r"), "{diff}");
    assert!(
        diff.contains("+ relation public.hotfix_made_by_hand r"),
        "{diff}"
    );
    assert!(
        diff.contains("+ column public.hotfix_made_by_hand.id integer"),
        "{diff}"
    );
    let same = t.promoter(&["drift", "dev", "qat"]).ok();
    assert!(same.contains("dev and qat have the same schema"), "{same}");
    let out = t
        .promoter(&["promote", "qat", "prd", "--yes", "--allow-drift"])
        .ok();
    assert!(out.contains("applied 0002-seed to prd"), "{out}");
}

#[test]
fn the_database_itself_refuses_a_second_applied_row_for_a_changeset() {
    let t = TestContext::with_databases();
    t.changeset("a", "CREATE TABLE a (id int);\n");
    t.promoter(&["seal"]).ok();
    t.promoter(&["apply", "dev"]).ok();
    let copy = "INSERT INTO promoter.ledger SELECT seq + 1, changeset_id, bundle_hash, environment, status, signers, \
        promoted_from, promoted_from_entry, git_commit, os_user, host, db_role, started_at, finished_at, schema_before, \
        schema_after, statements, error, note, entry_hash, repeat('f', 64) FROM promoter.ledger";
    let refused = crate::common::psql(&t.url("dev"), copy);
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("ledger_applied_once"),
        "{}",
        refused.stderr
    );
}

#[test]
fn apply_and_promote_print_json_when_asked() {
    let t = TestContext::with_databases();
    t.changeset("a", "CREATE TABLE a (id int);\n");
    t.promoter(&["seal"]).ok();
    let plan: serde_json::Value =
        serde_json::from_str(&t.promoter(&["--json", "apply", "dev", "--dry-run"]).ok()).unwrap();
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["planned"][0]["changeset_id"], "0001-a");
    assert_eq!(plan["applied"].as_array().unwrap().len(), 0);
    let applied: serde_json::Value =
        serde_json::from_str(&t.promoter(&["--json", "apply", "dev"]).ok()).unwrap();
    let applied = &applied["applied"];
    assert_eq!(applied[0]["changeset_id"], "0001-a");
    assert_eq!(applied[0]["ledger_seq"], 1);
    assert_eq!(applied[0]["statements"], 1);
    let again: serde_json::Value =
        serde_json::from_str(&t.promoter(&["--json", "apply", "dev"]).ok()).unwrap();
    assert_eq!(again["applied"], serde_json::json!([]));
    assert_eq!(again["planned"], serde_json::json!([]));
    t.commit_all("a");
    t.pin("qat");
    // Refused: one JSON object on stdout with the error kind, and exit code 3.
    let refused = t.promoter(&["--json", "promote", "dev", "qat"]);
    assert_eq!(refused.code, 3, "{}", refused.all());
    let v: serde_json::Value = serde_json::from_str(&refused.stdout).unwrap();
    assert_eq!(v["format_version"], 1);
    assert_eq!(v["error"]["kind"], "refused");
    assert_eq!(v["error"]["exit_code"], 3);
    assert_eq!(v["error"]["changesets"], serde_json::json!(["0001-a"]));
    assert_eq!(v["error"]["reasons"][0]["kind"], "missing-signatures");
    assert_eq!(v["error"]["hints"][0], "promoter sign 0001-a");
}

#[test]
fn status_shows_ledger_entries_whose_changeset_left_the_work_tree() {
    let t = TestContext::with_databases();
    t.changeset("kept", "CREATE TABLE kept (id int);\n");
    t.changeset("gone", "CREATE TABLE gone (id int);\n");
    t.promoter(&["seal"]).ok();
    t.promoter(&["apply", "dev"]).ok();
    std::fs::remove_dir_all(t.path("changesets/0002-gone")).unwrap();
    let status: serde_json::Value =
        serde_json::from_str(&t.promoter(&["--json", "status"]).ok()).unwrap();
    let gone = &status["changesets"][1];
    assert_eq!(gone["id"], "0002-gone");
    assert_eq!(gone["environments"]["dev"]["state"], "applied");
    assert_eq!(
        gone["environments"]["dev"]["detail"],
        "not in the work tree"
    );
    assert_eq!(gone["environments"]["qat"]["state"], "absent");
    let table = t.promoter(&["status"]).ok();
    assert!(table.contains("(not in the work tree)"), "{table}");
}

/// `make demo` is the newcomer's first command: it must run to the end, twice.
#[test]
fn the_demo_runs_to_the_end_twice() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for run in 1..=2 {
        let out = std::process::Command::new(root.join("scripts/demo"))
            .env("PROMOTER", assert_cmd::cargo::cargo_bin("promoter"))
            .env("PROMOTER_DEMO_DIR", root.join("target/it-demo"))
            .env("PROMOTER_DEMO_CLUSTERS", "it-demo")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "run {run}:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("applied 0004-order-summary-view to prd"),
            "run {run}:\n{stdout}"
        );
        assert!(
            stdout.contains("audit prd: 5 ledger rows, hash chain intact"),
            "run {run}:\n{stdout}"
        );
        assert!(
            stdout.contains("(exit code 3: refused before the target was touched)"),
            "run {run}:\n{stdout}"
        );
    }
    for env in ["dev", "qat", "prd"] {
        let _ = std::process::Command::new(root.join("scripts/pg-cluster"))
            .args(["stop", &format!("it-demo-{env}")])
            .output();
    }
}

#[test]
fn ledger_filters_by_changeset_and_time_and_keeps_marking_the_chain() {
    let t = TestContext::with_databases();
    t.changeset("customers", "CREATE TABLE customers (id int);\n");
    t.changeset("orders", "CREATE TABLE orders (id int);\n");
    t.promoter(&["seal"]).ok();
    t.promoter(&["apply", "dev"]).ok();
    let rows = |args: &[&str]| -> Vec<String> {
        let mut full = vec!["--json", "ledger", "dev"];
        full.extend_from_slice(args);
        let v: serde_json::Value = serde_json::from_str(&t.promoter(&full).ok()).unwrap();
        v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["changeset_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(rows(&[]), ["0001-customers", "0002-orders"]);
    assert_eq!(rows(&["--changeset", "2"]), ["0002-orders"]);
    assert_eq!(rows(&["--changeset", "customers"]), ["0001-customers"]);
    assert_eq!(rows(&["--since", "2000-01-01"]).len(), 2);
    assert!(rows(&["--since", "2999-01-01T00:00:00+02:00"]).is_empty());
    let run = t.promoter(&["ledger", "dev", "--since", "last tuesday"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.all().contains("--since"), "{}", run.all());
    // An edited row is still marked when only it is shown.
    t.sql(
        "dev",
        "ALTER TABLE promoter.ledger DISABLE TRIGGER ledger_append_only; UPDATE promoter.ledger SET host = 'x' WHERE seq = 2",
    );
    let out = t.promoter(&["ledger", "dev", "--changeset", "2"]).ok();
    assert!(out.contains("#2 PROBLEM: chain broken"), "{out}");
}

/// A developer fixes a changeset already applied to DEV: apply says the
/// edited script will not run again, the reseal says where the old bundle
/// ran, `resolve dev --forget` lets the fixed one run, and the ledger keeps
/// both runs. QAT never forgets, and a forgotten row written there by hand
/// fails its audit.
#[test]
fn a_changeset_applied_to_dev_can_be_forgotten_fixed_and_applied_again() {
    let t = TestContext::with_databases();
    let id = t.changeset("a", "CREATE TABLE a (id int);\n");
    t.promoter(&["seal"]).ok();
    t.promoter(&["apply", "dev"]).ok();
    t.commit_all("a");

    // Edited, not resealed: nothing runs, and apply says why.
    std::thread::sleep(std::time::Duration::from_millis(20));
    t.write(
        &format!("changesets/{id}/001-a.sql"),
        "CREATE TABLE a (id int, name text);\n",
    );
    let run = t.promoter(&["apply", "dev"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stderr.contains("will not run again") && run.stderr.contains("--forget"),
        "{}",
        run.stderr
    );
    // Resealed: the old bundle ran in DEV, which the reseal says.
    let sealed = t.promoter(&["seal", "1"]);
    assert_eq!(sealed.code, 0, "{}", sealed.all());
    assert!(
        sealed.stderr.contains("already applied to dev"),
        "{}",
        sealed.stderr
    );
    let refused = t.promoter(&["apply", "dev"]).fails();
    assert!(refused.contains("resolve dev 0001-a --forget"), "{refused}");

    // Forgetting is for DEV only; QAT's record stays as it is.
    let before = t.sql(
        "qat",
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'promoter'",
    );
    let no = t
        .promoter(&["resolve", "qat", "1", "--forget", "--note", "x"])
        .fails();
    assert!(no.contains("never forgotten"), "{no}");
    assert_eq!(
        t.sql(
            "qat",
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'promoter'"
        ),
        before
    );
    let nothing = t
        .promoter(&["resolve", "dev", "2", "--forget", "--note", "x"])
        .fails();
    assert!(nothing.contains("not applied here"), "{nothing}");

    // Undone by hand, forgotten, applied again.
    t.sql("dev", "DROP TABLE a");
    let out = t
        .promoter(&[
            "resolve",
            "dev",
            "1",
            "--forget",
            "--note",
            "dropped to redo it",
        ])
        .ok();
    assert!(out.contains("recorded 0001-a as forgotten in dev"), "{out}");
    let status = t.promoter(&["status"]).ok();
    assert!(status.contains("pending"), "{status}");
    let out = t.promoter(&["apply", "dev"]).ok();
    assert!(out.contains("applied 0001-a to dev"), "{out}");
    assert_eq!(
        t.sql(
            "dev",
            "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'a'::regclass AND attnum > 0"
        )
        .trim(),
        "id,name"
    );
    let ledger = t.promoter(&["--json", "ledger", "dev"]).ok();
    let v: serde_json::Value = serde_json::from_str(&ledger).unwrap();
    let statuses: Vec<&str> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["applied", "forgotten", "applied"], "{ledger}");
    assert_ne!(v["rows"][0]["bundle_hash"], v["rows"][2]["bundle_hash"]);
    // The database still refuses a second applied row without a forget.
    let again = crate::common::psql(
        &t.url("dev"),
        "INSERT INTO promoter.ledger SELECT seq + 10, changeset_id, bundle_hash, environment, status, signers, \
         promoted_from, promoted_from_entry, git_commit, os_user, host, db_role, started_at, finished_at, schema_before, \
         schema_after, statements, error, note, entry_hash, repeat('e', 64) FROM promoter.ledger WHERE seq = 3",
    );
    assert_ne!(again.code, 0);
    assert!(
        again.stderr.contains("ledger_applied_once"),
        "{}",
        again.stderr
    );
    t.commit_all("a fixed");
    let audit = t.promoter(&["audit", "dev"]).ok();
    assert!(audit.contains("hash chain intact"), "{audit}");

    // A forgotten row slipped into QAT's ledger by hand fails QAT's audit.
    t.pin("qat");
    t.sql(
        "qat",
        "INSERT INTO promoter.ledger (seq, changeset_id, bundle_hash, environment, status, signers, os_user, host, \
         db_role, started_at, statements, prev_hash, entry_hash) \
         SELECT 2, '0001-a', repeat('a', 64), 'qat', 'forgotten', '[]', 'x', 'y', 'z', now(), 0, entry_hash, repeat('b', 64) \
         FROM promoter.ledger WHERE seq = 1",
    );
    let audit = t.promoter(&["audit", "qat"]).fails();
    assert!(audit.contains("forgets 0001-a"), "{audit}");
}

/// `make practice` walks the rest of the environment practice (branches, a
/// profile, a baseline, a redo) on 30 changesets: it must run to the end.
#[test]
fn the_practice_runs_to_the_end() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(root.join("scripts/practice"))
        .env("PROMOTER", assert_cmd::cargo::cargo_bin("promoter"))
        .env("PROMOTER_PRACTICE_DIR", root.join("target/it-practice"))
        .env("PROMOTER_PRACTICE_CLUSTERS", "it-practice")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    for env in ["dev", "qat", "prd"] {
        let _ = std::process::Command::new(root.join("scripts/pg-cluster"))
            .args(["stop", &format!("it-practice-{env}")])
            .output();
    }
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "branch master: database shop_master made from prd with pg_dump and pg_restore",
        "into 0020-baseline",
        "applied 0020-baseline to prd  (0 statements",
        "prd and develop have the same schema",
        "audit prd: 32 ledger rows, hash chain intact",
        "0031-wrong-column  forgotten",
    ] {
        assert!(stdout.contains(want), "{want:?} not in:\n{stdout}");
    }
}

/// `status` keeps the signature checks that held (signing::memo) and
/// still decides again which key made each one and what it counts for.
#[test]
fn status_remembers_signature_checks_but_decides_keys_and_roles_again() {
    let t = TestContext::with_databases();
    let (fpr, dev_key) = t.promoter_key("Dev <dev@example.com>", "keys/developers");
    let id = t.changeset("a", "CREATE TABLE a (id int);\n");
    t.promoter(&["seal"]).ok();
    t.promoter(&["sign", "--key", dev_key.to_str().unwrap(), &id])
        .ok();
    let memo = t.dir.path().join(".local/state/promoter/signature-memo");
    let first = t.promoter(&["--json", "status"]).ok();
    let bytes = std::fs::read(&memo).expect("status wrote the memo");
    assert!(bytes.starts_with(b"promoter signature memo v1\n"));
    assert_eq!((bytes.len() - 27) % 32, 0, "{}", bytes.len());
    assert!(bytes.len() > 27, "the checks that held are in it");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&memo).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");
    // With the memo read, the same answers.
    assert_eq!(t.promoter(&["--json", "status"]).ok(), first);
    // A command that verifies only what the memo already holds leaves it
    // as it is (every command saves; a rewrite would cost each of them).
    use std::os::unix::fs::MetadataExt;
    let inode = std::fs::metadata(&memo).unwrap().ino();
    t.promoter(&["verify"]).ok();
    assert_eq!(std::fs::metadata(&memo).unwrap().ino(), inode);
    let v: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(
        v["changesets"][0]["environments"]["qat"]["state"],
        "pending"
    );
    assert_eq!(
        v["changesets"][0]["environments"]["qat"]["detail"],
        serde_json::Value::Null,
        "{first}"
    );
    // The key left the developers' keyring: the remembered arithmetic does
    // not make its signature count.
    std::fs::remove_file(t.path(&format!("keys/developers/{fpr}.asc"))).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&t.promoter(&["--json", "status"]).ok()).unwrap();
    let detail = v["changesets"][0]["environments"]["qat"]["detail"].to_string();
    assert!(detail.contains("needs 1 developer"), "{detail}");
    // A damaged memo is no memo, and is written again whole.
    std::fs::write(&memo, b"promoter signature memo v1\nshort").unwrap();
    std::fs::copy(
        t.dir.path().join(format!("secret-keys/{fpr}.asc")),
        t.path(&format!("keys/developers/{fpr}.asc")),
    )
    .unwrap();
    assert_eq!(t.promoter(&["--json", "status"]).ok(), first);
    let bytes = std::fs::read(&memo).unwrap();
    assert_eq!((bytes.len() - 27) % 32, 0, "{}", bytes.len());
}

/// `apply` reads the bundles while it connects; what is wrong with them
/// is still what it says first, even when the database is unreachable.
#[test]
fn apply_names_a_broken_bundle_before_an_unreachable_database() {
    let t = TestContext::with_databases();
    let id = t.changeset("a", "CREATE TABLE a (id int);\n");
    t.promoter(&["seal"]).ok();
    std::fs::create_dir(t.path(&format!("changesets/{id}/extra"))).unwrap();
    let run = t.promoter_env(
        &["apply", "dev"],
        &[("DEV_DATABASE_URL", "postgres://nobody@127.0.0.1:9/none")],
    );
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains(&format!("changesets/{id}")) && run.stderr.contains("extra"),
        "{}",
        run.stderr
    );
    // Reachable, the same error.
    let run = t.promoter(&["apply", "dev"]);
    assert!(
        run.stderr.contains(&format!("changesets/{id}")) && run.stderr.contains("extra"),
        "{}",
        run.stderr
    );
}

/// Issue 10's promise: QAT applies a batch in one run, each changeset's
/// schema before taken from the one before it (not read again), and a
/// promotion to PRD that starts in the middle of that batch is still
/// checked for drift against what QAT really had before that changeset.
#[test]
fn a_promotion_starting_inside_a_batch_qat_ran_together_checks_drift_there() {
    let mut t = TestContext::with_databases();
    // A quiet cluster, so that QAT's run takes the reused and narrowed path.
    t.move_to_cluster("qat", crate::common::quiet_admin_url());
    t.changeset("a", "CREATE TABLE a (id int PRIMARY KEY);\n");
    t.changeset("b", "ALTER TABLE a ADD COLUMN name text;\n");
    t.changeset("c", "CREATE INDEX a_name ON a (name);\n");
    t.promoter(&["seal"]).ok();
    let (_, dev_key) = t.promoter_key("Dev <dev@example.com>", "keys/developers");
    let (_, customer_key) = t.promoter_key("Customer <c@example.com>", "keys/customers");
    t.promoter(&["apply", "dev"]).ok();
    t.promoter(&["sign", "1", "2", "3", "--key", dev_key.to_str().unwrap()])
        .ok();
    t.commit_all("three changesets");
    t.pin("qat");
    t.pin("prd");
    let run = t.promoter_env(
        &["promote", "dev", "qat"],
        &[("PROMOTER_TRACE_FINGERPRINT", "1")],
    );
    let stderr = run.stderr.clone();
    run.ok();
    assert!(
        stderr.contains("schema fingerprint read: changes, in the "),
        "QAT's run took the narrowed path: {stderr}"
    );
    t.promoter(&[
        "approve",
        "1",
        "2",
        "3",
        "--yes",
        "--key",
        customer_key.to_str().unwrap(),
    ])
    .ok();
    t.commit_all("approved");
    t.promoter(&["promote", "qat", "prd", "--yes", "--to", "1"])
        .ok();
    // PRD drifts between the two promotions: the second one starts at
    // 0002-b, whose schema before QAT took from 0001-a's after.
    t.sql("prd", "CREATE TABLE made_by_hand (id int)");
    let err = t.promoter(&["promote", "qat", "prd", "--yes"]).fails();
    assert!(
        err.contains("prd's schema differs from qat's when qat applied 0002-b"),
        "{err}"
    );
    t.sql("prd", "DROP TABLE made_by_hand");
    let out = t.promoter(&["promote", "qat", "prd", "--yes"]).ok();
    assert!(out.contains("applied 0003-c to prd"), "{out}");
    let before = "SELECT schema_before FROM promoter.ledger WHERE changeset_id = '0002-b' AND status = 'applied'";
    assert_eq!(t.sql("prd", before), t.sql("qat", before));
}
