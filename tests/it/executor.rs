//! The executor's promises, against real PostgreSQL: psql-like sessions per
//! script, non-transactional changesets and `resolve`, error positions.

use crate::common::TestContext;

#[test]
fn each_script_starts_from_the_session_defaults() {
    let t = TestContext::with_databases();
    let id = t.changeset(
        "paths",
        "CREATE SCHEMA other;\nSET search_path = other;\nCREATE TABLE t1 (id int);\n",
    );
    t.write(
        &format!("changesets/{id}/002-next.sql"),
        "CREATE TABLE t2 (id int);\n",
    );
    t.write(&format!("changesets/{id}/003-config.sql"), "SELECT pg_catalog.set_config('search_path', '', false);\nCREATE TABLE public.t3 (id int);\nSET ROLE pg_read_all_data;\n");
    t.write(
        &format!("changesets/{id}/004-last.sql"),
        "CREATE TABLE t4 (id int);\n",
    );
    t.promoter(&["seal"]).ok();
    t.promoter(&["apply", "dev"]).ok();
    let tables = t.sql("dev", "SELECT string_agg(schemaname || '.' || tablename, ',' ORDER BY tablename) FROM pg_tables WHERE tablename LIKE 't_'");
    assert_eq!(tables, "other.t1,public.t2,public.t3,public.t4\n");
}

#[test]
fn a_non_transactional_changeset_runs_create_index_concurrently_under_the_lock() {
    let t = TestContext::with_databases();
    t.changeset(
        "table",
        "CREATE TABLE big (id int);\nINSERT INTO big SELECT generate_series(1, 1000);\n",
    );
    t.changeset_without_transaction(
        "index",
        "CREATE INDEX CONCURRENTLY big_id ON big (id);\nVACUUM ANALYZE big;\n",
    );
    t.promoter(&["seal"]).ok();
    let out = t.promoter(&["apply", "dev"]).ok();
    assert!(
        out.contains("applied 0002-index to dev  (2 statements"),
        "{out}"
    );
    assert_eq!(
        t.sql(
            "dev",
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'big_id'::regclass"
        ),
        "t\n"
    );
    let rows = t.sql("dev", "SELECT status || ':' || statements FROM promoter.ledger WHERE changeset_id = '0002-index' ORDER BY seq");
    assert_eq!(rows, "running:0\napplied:2\n");
    t.promoter(&["audit", "dev"]).fails(); // not committed to git: audit says so
}

#[test]
fn a_partial_non_transactional_changeset_makes_the_environment_dirty_until_resolved() {
    let t = TestContext::with_databases();
    t.changeset_without_transaction(
        "steps",
        "CREATE TABLE p (id int);\nCREATE INDEX CONCURRENTLY p_idx ON p (id);\nSELECT 1 / 0;\nCREATE TABLE q (id int);\n",
    );
    t.changeset("after", "CREATE TABLE r (id int);\n");
    t.promoter(&["seal"]).ok();
    let err = t.promoter(&["apply", "dev"]).fails();
    assert!(
        err.contains("001-steps.sql:3:1: [22012] division by zero"),
        "{err}"
    );
    assert!(
        err.contains("2 statements of this non-transactional changeset had already committed"),
        "{err}"
    );
    assert_eq!(
        t.sql(
            "dev",
            "SELECT to_regclass('p') IS NOT NULL, to_regclass('q') IS NULL"
        ),
        "t|t\n"
    );

    let err = t.promoter(&["apply", "dev"]).fails();
    assert!(
        err.contains("dev is dirty")
            && err.contains("0001-steps is partially applied after 2 statements"),
        "{err}"
    );
    assert!(
        err.contains("promoter resolve dev 0001-steps --applied|--rolled-back"),
        "{err}"
    );

    // The operator finishes the job by hand and records it.
    t.sql("dev", "CREATE TABLE q (id int)");
    let out = t
        .promoter(&[
            "resolve",
            "dev",
            "1",
            "--applied",
            "--note",
            "ran the last CREATE TABLE by hand",
        ])
        .ok();
    assert!(
        out.contains("recorded 0001-steps as resolved-applied in dev"),
        "{out}"
    );
    let out = t.promoter(&["apply", "dev"]).ok();
    assert!(out.contains("applied 0002-after to dev"), "{out}");
    let ledger = t.promoter(&["ledger", "dev"]).ok();
    assert!(
        ledger.contains("resolved-applied")
            && ledger.contains("note: ran the last CREATE TABLE by hand"),
        "{ledger}"
    );
    let err = t
        .promoter(&["resolve", "dev", "1", "--rolled-back", "--note", "again"])
        .fails();
    assert!(err.contains("not partially applied"), "{err}");
}

#[test]
fn copy_errors_name_the_data_line() {
    let t = TestContext::with_databases();
    t.changeset(
        "load",
        "CREATE TABLE n (id int, label text);\nCOPY n (id, label) FROM stdin;\n1\tone\n2\ttwo\nthree\t3\n\\.\n",
    );
    t.promoter(&["seal"]).ok();
    let err = t.promoter(&["apply", "dev"]).fails();
    assert!(
        err.contains("001-load.sql:5:1: [22P02] invalid input syntax for type integer: \"three\""),
        "{err}"
    );
    assert!(
        err.contains("statement: COPY n (id, label) FROM stdin;"),
        "{err}"
    );
    assert!(err.contains("context: COPY n, line 3"), "{err}");
}

#[test]
fn meta_commands_and_bad_scripts_are_refused_at_apply_before_anything_runs() {
    let t = TestContext::with_databases();
    let id = t.changeset("first", "CREATE TABLE first (id int);\n");
    t.changeset(
        "sneaky",
        "CREATE TABLE second (id int);\n\\c other_database\nCREATE TABLE third (id int);\n",
    );
    // Sealed behind promoter's back, with plain sha256sum.
    t.seal_with_sha256sum(&id);
    t.seal_with_sha256sum("0002-sneaky");
    let err = t.promoter(&["apply", "dev"]).fails();
    assert!(
        err.contains(
            "changesets/0002-sneaky/001-sneaky.sql:2: psql meta-command \\c is not supported"
        ),
        "{err}"
    );
    assert_eq!(
        t.sql("dev", "SELECT to_regclass('first') IS NULL"),
        "t\n",
        "not even the good changeset ran"
    );
}

#[test]
fn statement_timeout_from_environments_yaml_applies() {
    let t = TestContext::with_databases();
    t.configure("dev", "statement_timeout: 300ms");
    t.changeset("slow", "SELECT pg_sleep(2);\n");
    t.promoter(&["seal"]).ok();
    let err = t.promoter(&["apply", "dev"]).fails();
    assert!(
        err.contains("[57014] canceling statement due to statement timeout"),
        "{err}"
    );
}

#[test]
fn passwords_never_appear_in_messages_and_unreachable_environments_are_shown() {
    let t = TestContext::with_databases();
    t.changeset("a", "SELECT 1;\n");
    t.promoter(&["seal"]).ok();
    let run = t
        .cmd()
        .env(
            "DEV_DATABASE_URL",
            "postgres://deploy:s3cr3t-pw@127.0.0.1:1/shop",
        )
        .env(
            "QAT_DATABASE_URL",
            "postgres://deploy@127.0.0.1:1/shop?password=s3cr3t-pw",
        )
        .args(["apply", "dev"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        err.contains("dev: cannot connect to postgres://deploy:***@127.0.0.1:1/shop"),
        "{err}"
    );
    assert!(!err.contains("s3cr3t"), "{err}");
    let run = t
        .cmd()
        .env(
            "QAT_DATABASE_URL",
            "postgres://deploy@127.0.0.1:1/shop?password=s3cr3t-pw",
        )
        .args(["--json", "status"])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(status["environments"][1]["name"], "qat");
    assert_eq!(status["environments"][1]["reachable"], false);
    assert_eq!(
        status["changesets"][0]["environments"]["qat"]["state"],
        "unreachable"
    );
    assert_eq!(
        status["changesets"][0]["environments"]["dev"]["state"],
        "pending"
    );
    assert!(!String::from_utf8_lossy(&run.stdout).contains("s3cr3t"));

    let err = t
        .cmd()
        .env_remove("PRD_DATABASE_URL")
        .args(["ledger", "prd"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&err.stderr).contains(
        "environment `prd`: database_url refers to ${PRD_DATABASE_URL}, which is not set"
    ));
}

#[test]
fn pg_dump_restrict_lines_are_accepted_and_ignored() {
    let t = TestContext::with_databases();
    t.changeset(
        "dump",
        "\\restrict Zx8ABCDEF\n-- pg_dump output\nSET client_min_messages = warning;\nCREATE TABLE d (id int);\nCOPY public.d (id) FROM stdin;\n1\n2\n\\.\n\\unrestrict Zx8ABCDEF\n",
    );
    t.promoter(&["seal"]).ok();
    let out = t.promoter(&["apply", "dev"]).ok();
    assert!(
        out.contains("applied 0001-dump to dev  (3 statements"),
        "{out}"
    );
    assert_eq!(t.sql("dev", "SELECT sum(id) FROM d"), "3\n");
}

/// Regression: a non-transactional script that failed inside its own BEGIN
/// block left the session aborted, so the failed ledger row could not be written.
#[test]
fn a_failure_inside_a_scripts_own_transaction_block_is_still_recorded() {
    let t = TestContext::with_databases();
    t.changeset_without_transaction(
        "own-tx",
        "CREATE TABLE kept (id int);\nBEGIN;\nINSERT INTO kept VALUES (1);\nSELECT 1 / 0;\nCOMMIT;\n",
    );
    t.promoter(&["seal"]).ok();
    let err = t.promoter(&["apply", "dev"]).fails();
    assert!(
        err.contains("001-own-tx.sql:4:1: [22012] division by zero"),
        "{err}"
    );
    assert!(err.contains("(ledger #2 records the failure)"), "{err}");
    assert_eq!(
        t.sql("dev", "SELECT count(*) FROM kept"),
        "0\n",
        "the script's own transaction was rolled back"
    );
    let rows = t.sql(
        "dev",
        "SELECT status || ':' || statements FROM promoter.ledger ORDER BY seq",
    );
    // Regression: BEGIN and the INSERT were counted as committed (3); only
    // the CREATE TABLE before the script's own block stayed.
    assert_eq!(rows, "running:0\nfailed:1\n");
    assert!(
        err.contains("1 statement of this non-transactional changeset had already committed"),
        "{err}"
    );
}

#[test]
fn pgpassfile_and_sslmode_in_the_url_work_as_in_libpq() {
    let t = TestContext::with_databases();
    let admin = crate::common::admin_url();
    // The test cluster asks this one role for a password (scripts/pg-cluster).
    crate::common::psql(
        admin,
        "DO $$ BEGIN CREATE ROLE promoter_password LOGIN PASSWORD 'pw-from-pgpass'; \
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$",
    )
    .ok();
    crate::common::psql(
        admin,
        "ALTER ROLE promoter_password PASSWORD 'pw-from-pgpass'",
    )
    .ok();
    crate::common::psql(
        admin,
        &format!(
            "ALTER DATABASE {} OWNER TO promoter_password",
            t.databases[0].1
        ),
    )
    .ok();
    let url = format!(
        "{}&sslmode=disable",
        t.url("dev").replacen("postgres@", "promoter_password@", 1)
    );
    t.changeset("a", "CREATE TABLE a (id int);\n");
    t.promoter(&["seal"]).ok();

    let run = t
        .cmd()
        .env("DEV_DATABASE_URL", &url)
        .args(["apply", "dev"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        err.contains("dev: cannot connect to") && err.contains("password"),
        "{err}"
    );

    let pgpass = t.dir.path().join("pgpass");
    std::fs::write(&pgpass, "*:*:*:promoter_password:pw-from-pgpass\n").unwrap();
    std::fs::set_permissions(&pgpass, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let run = t
        .cmd()
        .env("DEV_DATABASE_URL", &url)
        .env("PGPASSFILE", &pgpass)
        .args(["apply", "dev"])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        t.sql("dev", "SELECT db_role FROM promoter.ledger"),
        "promoter_password\n"
    );
}

#[test]
fn a_migration_wrapped_in_its_own_begin_commit_runs_in_promoters_transaction() {
    let t = TestContext::with_databases();
    t.changeset("wrapped", "-- written for psql\nBEGIN;\nCREATE TABLE w (id int);\nINSERT INTO w VALUES (1);\nCOMMIT;\n");
    t.changeset(
        "wrapped-and-failing",
        "START TRANSACTION;\nINSERT INTO w VALUES (2);\nSELECT 1 / 0;\nEND;\n",
    );
    t.promoter(&["seal"]).ok();
    let err = t.promoter(&["apply", "dev"]).fails();
    assert!(
        err.contains(
            "dev: applied 0001-wrapped; failed at 0002-wrapped-and-failing; it was rolled back"
        ),
        "{err}"
    );
    assert!(
        err.contains("001-wrapped-and-failing.sql:3:1: [22012] division by zero"),
        "{err}"
    );
    assert_eq!(
        t.sql("dev", "SELECT string_agg(id::text, ',') FROM w"),
        "1\n",
        "the failing one rolled back as a whole"
    );
    let rows = t.sql("dev", "SELECT changeset_id || ':' || status || ':' || statements FROM promoter.ledger ORDER BY seq");
    assert_eq!(
        rows, "0001-wrapped:applied:2\n0002-wrapped-and-failing:failed:0\n",
        "the wrapper itself does not run"
    );

    // Anything but a whole-script wrapper is still refused, naming the line.
    t.changeset(
        "half",
        "CREATE TABLE h (id int);\nCOMMIT;\nCREATE TABLE i (id int);\n",
    );
    let err = t.promoter(&["seal", "3"]).fails();
    assert!(
        err.contains("001-half.sql:2: COMMIT would end promoter's transaction early"),
        "{err}"
    );
}

#[test]
fn lock_timeout_from_environments_yaml_applies() {
    let t = TestContext::with_databases();
    t.configure("dev", "lock_timeout: 300ms");
    t.sql("dev", "CREATE TABLE busy (id int)");
    t.changeset("alter", "ALTER TABLE busy ADD COLUMN note text;\n");
    t.promoter(&["seal"]).ok();
    let held = t.hold(
        "dev",
        "BEGIN; LOCK TABLE busy; SELECT pg_sleep(20);",
        "SELECT count(*) = 1 FROM pg_locks WHERE database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND relation = 'busy'::regclass AND mode = 'AccessExclusiveLock'",
    );
    let err = t.promoter(&["apply", "dev"]).fails();
    drop(held);
    assert!(
        err.contains("[55P03] canceling statement due to lock timeout"),
        "{err}"
    );
    assert!(err.contains("001-alter.sql:1:1"), "{err}");
}

/// Regression: connection and ledger errors ended in sqlx's " at line N",
/// the line in PostgreSQL's C source, which reads like a line of a script.
#[test]
fn database_errors_show_sqlstate_not_postgres_source_lines() {
    let t = TestContext::with_databases();
    t.changeset("a", "SELECT 1;\n");
    t.promoter(&["seal"]).ok();
    let url = t.url("dev").replacen("postgres@", "no_such_role@", 1);
    let run = t
        .cmd()
        .env("DEV_DATABASE_URL", &url)
        .args(["apply", "dev"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        err.contains("[28000] role \"no_such_role\" does not exist"),
        "{err}"
    );
    assert!(!err.contains(" at line "), "{err}");
}

/// Regression: the rest of a `COPY … FROM stdin;` line was sent as COPY
/// data; psql runs it as SQL after the data. And a final `\.` without a
/// newline loaded, where psql 15 gets the server's "end-of-copy marker
/// corrupt".
#[test]
fn copy_edge_cases_behave_as_in_psql_15() {
    let t = TestContext::with_databases();
    t.changeset(
        "same-line",
        "CREATE TABLE t (i int);\nCOPY t FROM stdin; CREATE TABLE x(i int);\n1\n2\n\\.\n",
    );
    t.changeset(
        "no-newline",
        "CREATE TABLE t2 (i int);\nCOPY t2 FROM stdin;\n1\n\\.",
    );
    t.promoter(&["seal"]).ok();
    let run = t.promoter(&["apply", "dev"]);
    assert_eq!(run.code, 4, "{}", run.all());
    assert_eq!(t.sql("dev", "SELECT count(*) FROM t"), "2\n");
    assert_eq!(t.sql("dev", "SELECT to_regclass('x') IS NOT NULL"), "t\n");
    assert!(
        run.stderr.contains("0002-no-newline") && run.stderr.contains("end-of-copy marker corrupt"),
        "{}",
        run.stderr
    );
    assert_eq!(t.sql("dev", "SELECT to_regclass('t2') IS NULL"), "t\n");
}

#[test]
fn a_script_written_for_psql_with_set_on_error_stop_applies() {
    let t = TestContext::with_databases();
    t.changeset(
        "psql-style",
        "\\set ON_ERROR_STOP on\nCREATE TABLE styled (id int);\n",
    );
    t.promoter(&["seal"]).ok();
    t.promoter(&["apply", "dev"]).ok();
    assert_eq!(
        t.sql("dev", "SELECT to_regclass('styled') IS NOT NULL"),
        "t\n"
    );
    t.changeset("variables", "\\set x 1\nSELECT :x;\n");
    let refused = t.promoter(&["seal"]).fails();
    assert!(
        refused.contains("001-variables.sql:1: psql meta-command \\set is not supported"),
        "{refused}"
    );
}

/// Regression: between two statements of a `transaction: none` changeset
/// promoter checked and recorded its ledger as whatever role the script had
/// switched to ("permission denied for schema promoter"), and under the
/// script's search path, where a function of its own could stand in for
/// pg_catalog's. The checks now run as promoter, and the script continues
/// with its role and search path.
#[test]
fn a_non_transactional_script_keeps_its_role_and_search_path_between_statements() {
    let t = TestContext::with_databases();
    let role = format!("it_role_{}", std::process::id());
    t.sql(
        "dev",
        &format!("DROP ROLE IF EXISTS {role}; CREATE ROLE {role}"),
    );
    t.changeset_without_transaction(
        "roles",
        &format!(
            "CREATE SCHEMA mine;\nGRANT USAGE, CREATE ON SCHEMA mine TO {role};\n\
             SET search_path = mine, pg_catalog;\nSET ROLE {role};\n\
             CREATE TABLE t (who text DEFAULT current_user);\nINSERT INTO t DEFAULT VALUES;\n\
             SET SESSION AUTHORIZATION {role};\nINSERT INTO t DEFAULT VALUES;\n"
        ),
    );
    t.promoter(&["seal"]).ok();
    let out = t.promoter(&["apply", "dev"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let rows = t.sql(
        "dev",
        "SELECT string_agg(who || '@' || (SELECT nspname FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid WHERE c.relname = 't'), ',') FROM mine.t",
    );
    t.sql("dev", &format!("DROP OWNED BY {role}; DROP ROLE {role}"));
    out.ok();
    assert_eq!(rows, format!("{role}@mine,{role}@mine\n"));
    let rows = t.sql("dev", "SELECT status || ':' || statements FROM promoter.ledger WHERE changeset_id = '0001-roles' ORDER BY seq");
    assert_eq!(rows, "running:0\napplied:8\n");
}

#[test]
fn echo_and_copy_to_stdout_print_in_the_run_output_never_in_json() {
    let t = TestContext::with_databases();
    t.changeset(
        "show",
        "\\set ON_ERROR_STOP on\n\\echo loading 'the  data'\nCREATE TABLE t (a int, b text);\n\
         INSERT INTO t VALUES (1, 'x'), (2, E'esc\\x1b[31m');\n\
         COPY (SELECT a, b FROM t ORDER BY a) TO STDOUT;\n\\qecho -n done\n",
    );
    t.promoter(&["seal"]).ok();
    let run = t.promoter(&["--json", "apply", "dev"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("stdout is only JSON");
    assert_eq!(v["applied"][0]["statements"], 3, "{v}");
    assert!(
        run.stderr
            .contains("loading the  data\n1\tx\n2\tesc\u{1b}[31m\ndone"),
        "{}",
        run.stderr
    );
}

#[test]
fn statements_joined_with_backslash_semicolon_run_as_one_query_and_errors_name_the_column() {
    let t = TestContext::with_databases();
    t.changeset(
        "joined",
        "CREATE TABLE t (a int);\nINSERT INTO t VALUES (1)\\; INSERT INTO t VALUES (2);\n",
    );
    t.changeset(
        "broken",
        "SELECT 1;\nINSERT INTO t VALUES (3)\\; SELECT nope;\n",
    );
    t.promoter(&["seal"]).ok();
    let err = t.promoter(&["apply", "dev"]).fails();
    assert!(
        err.contains(
            "changesets/0002-broken/001-broken.sql:2:35: [42703] column \"nope\" does not exist"
        ),
        "{err}"
    );
    assert_eq!(
        t.sql("dev", "SELECT string_agg(a::text, ',' ORDER BY a) FROM t"),
        "1,2\n"
    );
    let rows = t.sql("dev", "SELECT changeset_id || ':' || status || ':' || statements FROM promoter.ledger ORDER BY seq");
    assert_eq!(rows, "0001-joined:applied:2\n0002-broken:failed:0\n");
}

/// Regression: inside a `transaction: none` script's own `BEGIN` block,
/// promoter ran its ledger checks between statements, so they were the
/// block's first query: `SET TRANSACTION ISOLATION LEVEL` then failed
/// ("must be called before any query"), where psql runs it. And a block
/// left open at the end of a script was committed by promoter's next
/// ledger row, where psql's session end rolls it back.
#[test]
fn a_scripts_own_transaction_block_is_left_to_the_script() {
    let t = TestContext::with_databases();
    t.changeset_without_transaction(
        "blocks",
        "CREATE TABLE t (a int);\nBEGIN;\nSET TRANSACTION ISOLATION LEVEL SERIALIZABLE;\n\
         INSERT INTO t VALUES (1);\nCOMMIT;\nBEGIN;\nINSERT INTO t VALUES (2);\n",
    );
    t.promoter(&["seal"]).ok();
    let run = t.promoter(&["apply", "dev"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stderr
            .contains("ended inside its own transaction block, which was rolled back"),
        "{}",
        run.stderr
    );
    assert_eq!(
        t.sql("dev", "SELECT string_agg(a::text, ',') FROM t"),
        "1\n"
    );
    let rows = t.sql("dev", "SELECT status || ':' || statements FROM promoter.ledger WHERE changeset_id = '0001-blocks' ORDER BY seq");
    assert_eq!(rows, "running:0\napplied:7\n");
}

/// The fingerprint after a changeset is the schema it committed, deferred
/// triggers included (they fire before it is taken), and the next changeset
/// of the run starts from exactly that (read again or carried over).
#[test]
fn schema_fingerprints_chain_through_a_run_and_include_deferred_triggers() {
    let t = TestContext::with_databases();
    t.changeset(
        "deferred",
        "CREATE TABLE a (id int);\n\
         CREATE FUNCTION make() RETURNS trigger LANGUAGE plpgsql AS $$\n\
         BEGIN CREATE TABLE made_at_commit (id int); RETURN NULL; END $$;\n\
         CREATE CONSTRAINT TRIGGER later AFTER INSERT ON a DEFERRABLE INITIALLY DEFERRED\n\
           FOR EACH ROW EXECUTE FUNCTION make();\n\
         INSERT INTO a VALUES (1);\n",
    );
    t.changeset("next", "CREATE TABLE b (id int);\n");
    t.changeset("data", "INSERT INTO b VALUES (1);\n");
    t.promoter(&["seal"]).ok();
    // The schema right after the first changeset, as drift reads it.
    t.promoter(&["apply", "dev", "--to", "1"]).ok();
    let out = t.promoter(&["--json", "drift", "dev", "qat"]).stdout;
    let after_first: serde_json::Value = serde_json::from_str(&out).unwrap();
    t.promoter(&["apply", "dev"]).ok();
    assert_eq!(
        t.sql("dev", "SELECT to_regclass('made_at_commit') IS NOT NULL"),
        "t\n"
    );
    let rows = t.sql(
        "dev",
        "SELECT schema_before || ' ' || schema_after FROM promoter.ledger WHERE status = 'applied' ORDER BY seq",
    );
    let pairs: Vec<(&str, &str)> = rows.lines().map(|l| l.split_once(' ').unwrap()).collect();
    assert_eq!(pairs.len(), 3, "{rows}");
    for w in pairs.windows(2) {
        assert_eq!(w[0].1, w[1].0, "{rows}");
    }
    assert_eq!(
        pairs[2].0, pairs[2].1,
        "a data-only changeset leaves the schema: {rows}"
    );
    assert_eq!(
        after_first["a_fingerprint"], pairs[0].1,
        "the fingerprint after the first changeset includes what its deferred trigger made: {rows}"
    );
    let out = t.promoter(&["--json", "drift", "dev", "qat"]).stdout;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["a_fingerprint"], pairs[2].1,
        "the last fingerprint is the schema dev has: {rows}"
    );
}

/// A deferred constraint that fails when promoter fires it, after the
/// scripts and before the fingerprint, fails the changeset under its own
/// name and rolls it back whole.
#[test]
fn a_deferred_constraint_failing_at_the_end_fails_its_changeset_and_keeps_nothing() {
    let t = TestContext::with_databases();
    t.changeset("parent", "CREATE TABLE parent (id int PRIMARY KEY);\n");
    t.changeset(
        "orphan",
        "CREATE TABLE child (id int, parent int REFERENCES parent DEFERRABLE INITIALLY DEFERRED);\n\
         INSERT INTO child VALUES (1, 42);\n",
    );
    t.promoter(&["seal"]).ok();
    let err = t.promoter(&["apply", "dev"]).fails();
    assert!(
        err.contains("0002-orphan")
            && err.contains("a deferred constraint failed at the end of the changeset")
            && err.contains("child_parent_fkey"),
        "{err}"
    );
    assert_eq!(t.sql("dev", "SELECT to_regclass('child') IS NULL"), "t\n");
    let rows = t.sql(
        "dev",
        "SELECT changeset_id || ':' || status FROM promoter.ledger ORDER BY seq",
    );
    assert_eq!(rows, "0001-parent:applied\n0002-orphan:failed\n");
}

/// Deferred constraint triggers fire as at the COMMIT of `psql -1 -f`:
/// under the session the script left (here its search path), not after
/// promoter has reset it. psql runs this script; promoter used to fail it
/// with `relation "audit" does not exist`.
#[test]
fn deferred_triggers_fire_under_the_session_the_script_left() {
    let t = TestContext::with_databases();
    t.changeset(
        "deferred",
        "CREATE SCHEMA app;\n\
         SET search_path = app;\n\
         CREATE TABLE items (id int);\n\
         CREATE TABLE audit (n int);\n\
         CREATE FUNCTION note() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO audit VALUES (1); RETURN NULL; END $$;\n\
         CREATE CONSTRAINT TRIGGER later AFTER INSERT ON items DEFERRABLE INITIALLY DEFERRED\n\
           FOR EACH ROW EXECUTE FUNCTION note();\n\
         INSERT INTO items VALUES (1);\n",
    );
    t.changeset(
        "after",
        "CREATE TABLE seen AS SELECT current_setting('search_path') AS path;\n",
    );
    t.promoter(&["seal"]).ok();
    t.promoter(&["apply", "dev"]).ok();
    assert_eq!(t.sql("dev", "SELECT count(*) FROM app.audit"), "1\n");
    // The next changeset starts from the session's defaults again.
    assert_eq!(
        t.sql("dev", "SELECT path FROM public.seen"),
        "\"$user\", public\n"
    );
}

/// A run reads the work tree while it goes on: a changeset.yaml rewritten
/// after the run checked it against SHA256SUMS (here by the changeset before
/// it, through the server's `COPY … TO` a file) must not decide how the
/// changeset runs. It used to be read again just before running.
#[test]
fn a_changeset_yaml_rewritten_after_the_check_does_not_decide_how_it_runs() {
    let t = TestContext::with_databases();
    let yaml = rewriting_changeset(
        &t,
        "changesets/0002-atomic/changeset.yaml",
        "SELECT pg_catalog.unnest(ARRAY['id: 0002-atomic', 'description: atomic', 'transaction: none'])",
    );
    t.changeset("atomic", "CREATE TABLE half (id int);\nSELECT 1 / 0;\n");
    let err = seal_and_apply_letting_the_server_write(&t, &yaml);
    assert!(
        t.read("changesets/0002-atomic/changeset.yaml")
            .contains("transaction: none"),
        "the first changeset rewrote the second's changeset.yaml"
    );
    assert!(
        err.contains("dev: applied 0001-rewrite; failed at 0002-atomic; it was rolled back"),
        "{err}"
    );
    assert_eq!(
        t.sql("dev", "SELECT to_regclass('public.half') IS NULL"),
        "t\n",
        "it ran as signed, in one transaction: its table went with its failure"
    );
}

/// Makes `0001-rewrite`, whose script overwrites the project's file `rel`
/// (of a changeset made after it) with the rows of `select`, through the
/// server's `COPY … TO`; returns the file's path.
fn rewriting_changeset(t: &TestContext, rel: &str, select: &str) -> std::path::PathBuf {
    let file = t.path(rel);
    t.changeset(
        "rewrite",
        &format!("COPY ({select}) TO '{}';\n", file.display()),
    );
    file
}

/// Seals, lets the server write `file` (see [`let_the_server_write`]), and
/// runs `apply dev`, which must fail; returns its output.
fn seal_and_apply_letting_the_server_write(t: &TestContext, file: &std::path::Path) -> String {
    t.promoter(&["seal"]).ok();
    let_the_server_write(t, file);
    t.promoter(&["apply", "dev"]).fails()
}

/// Lets the test cluster's server (its own OS user: postgres, when the
/// tests run as root) write `file` of the project with `COPY … TO`.
fn let_the_server_write(t: &TestContext, file: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path, m| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        let mut dir = file.parent();
        while let Some(d) = dir.filter(|d| d.starts_with(t.dir.path())) {
            mode(d, 0o755);
            dir = d.parent();
        }
        mode(file, 0o666);
    }
}

/// The next changeset's scripts are opened while the server commits the one
/// before: one that changed on disk in between (here rewritten by that one,
/// through `COPY … TO`) is still read as it is then, hashed as it is sent,
/// refused, and rolled back with whatever of it ran.
#[test]
fn a_script_rewritten_by_the_changeset_before_it_is_refused_and_rolled_back() {
    let t = TestContext::with_databases();
    let script = rewriting_changeset(
        &t,
        "changesets/0002-second/001-second.sql",
        "SELECT 'CREATE TABLE injected (id int);'",
    );
    t.changeset("second", "CREATE TABLE second (id int);\n");
    let err = seal_and_apply_letting_the_server_write(&t, &script);
    assert_eq!(
        t.read("changesets/0002-second/001-second.sql"),
        "CREATE TABLE injected (id int);\n"
    );
    assert!(
        err.contains("001-second.sql: changed while it was being applied"),
        "{err}"
    );
    assert_eq!(
        t.sql(
            "dev",
            "SELECT to_regclass('public.injected') IS NULL AND to_regclass('public.second') IS NULL"
        ),
        "t\n",
        "neither the rewritten script nor the signed one is left"
    );
    assert_eq!(
        t.sql("dev", "SELECT string_agg(changeset_id || ':' || status, ',' ORDER BY seq) FROM promoter.ledger"),
        "0001-rewrite:applied,0002-second:failed\n"
    );
}
