//! The schema fingerprint read incrementally within a run (only what
//! changed since the previous changeset, and what depends on it) must be
//! the fingerprint of the whole catalog. Debug builds, which the suite
//! runs, read both after every changeset and fail the run when they differ;
//! these changesets are the changes whose effect reaches entries of other
//! objects than the ones they touch.

use crate::common::TestContext;

/// Applies `steps` (slug, SQL) as changesets in one run and checks that
/// every fingerprint recorded equals a whole reading of that moment's
/// catalog: the last one is compared with a fresh run's reading, and the
/// debug build compares each one as it goes. On the quiet cluster, so that
/// every changeset after the first takes the narrowest reading it can
/// (only what its own transaction wrote, found through its locks).
fn apply_in_one_run(steps: &[(&str, &str)]) -> TestContext {
    let mut t = TestContext::with_databases();
    t.move_to_cluster("dev", crate::common::quiet_admin_url());
    for (slug, sql) in steps {
        t.changeset(slug, sql);
    }
    t.promoter(&["seal"]).ok();
    let out = t.promoter(&["apply", "dev"]).ok();
    assert!(
        out.contains(&format!(
            "applied {:04}-{}",
            steps.len(),
            steps[steps.len() - 1].0
        )),
        "{out}"
    );
    let rows = t.sql(
        "dev",
        "SELECT count(*) FILTER (WHERE schema_after IS NULL) FROM promoter.ledger WHERE status = 'applied'",
    );
    assert_eq!(rows, "0\n");
    // A new run reads the whole catalog first: its fingerprint before must
    // be the one the last changeset of the incremental run recorded after.
    t.changeset("next-run", "SELECT 1;\n");
    t.promoter(&["seal"]).ok();
    t.promoter(&["apply", "dev"]).ok();
    let same = t.sql(
        "dev",
        "SELECT (SELECT schema_before FROM promoter.ledger ORDER BY seq DESC LIMIT 1) = \
                (SELECT schema_after FROM promoter.ledger ORDER BY seq DESC LIMIT 1 OFFSET 1)",
    );
    assert_eq!(same, "t\n");
    t.commit_all("changesets");
    t.promoter(&["audit", "dev"]).ok();
    t
}

#[test]
fn renames_reach_the_indexes_constraints_views_and_defaults_that_print_the_name() {
    apply_in_one_run(&[
        (
            "base",
            "CREATE TABLE a (id int PRIMARY KEY, code text UNIQUE, n int CHECK (n > 0));\n\
             CREATE TABLE b (id int PRIMARY KEY, a_code text REFERENCES a (code));\n\
             CREATE INDEX a_lower ON a (lower(code));\n\
             CREATE VIEW v AS SELECT id, code FROM a WHERE n > 1;\n\
             CREATE VIEW w AS SELECT code FROM v;\n\
             CREATE SEQUENCE s;\n\
             CREATE TABLE c (id int DEFAULT nextval('s'), at date DEFAULT '2020-01-02');\n",
        ),
        (
            "rename-column",
            "ALTER TABLE a RENAME COLUMN code TO label;\n",
        ),
        ("rename-table", "ALTER TABLE a RENAME TO alpha;\n"),
        ("rename-sequence", "ALTER SEQUENCE s RENAME TO s2;\n"),
        ("rename-view", "ALTER VIEW v RENAME TO v2;\n"),
        (
            "replace-view",
            "CREATE OR REPLACE VIEW v2 AS SELECT id, label AS code FROM alpha WHERE n > 2;\n",
        ),
        (
            "rename-index",
            "ALTER INDEX a_lower RENAME TO alpha_lower;\n",
        ),
        (
            "column-type",
            "ALTER TABLE b ALTER COLUMN id TYPE bigint;\n",
        ),
    ]);
}

#[test]
fn types_functions_and_enums_renamed_reach_what_uses_them() {
    apply_in_one_run(&[
        (
            "base",
            "CREATE DOMAIN posint AS int CHECK (VALUE > 0);\n\
             CREATE TYPE mood AS ENUM ('sad', 'ok');\n\
             CREATE TYPE pair AS (x int, y int);\n\
             CREATE FUNCTION twice(i posint) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT i * 2';\n\
             CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;\n\
             CREATE TABLE t (id posint, m mood DEFAULT 'ok', p pair, ms mood[], d int DEFAULT twice(1));\n\
             CREATE TRIGGER t_stamp BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION stamp();\n\
             CREATE VIEW happy AS SELECT id FROM t WHERE m = 'ok'::mood;\n\
             CREATE TABLE u (t_row t);\n",
        ),
        ("rename-domain", "ALTER DOMAIN posint RENAME TO positive;\n"),
        (
            "rename-enum-value",
            "ALTER TYPE mood RENAME VALUE 'ok' TO 'fine';\n",
        ),
        ("add-enum-value", "ALTER TYPE mood ADD VALUE 'glad';\n"),
        ("rename-enum", "ALTER TYPE mood RENAME TO feeling;\n"),
        ("rename-composite", "ALTER TYPE pair RENAME TO couple;\n"),
        (
            "rename-function",
            "ALTER FUNCTION twice(positive) RENAME TO double;\n",
        ),
        (
            "rename-trigger-function",
            "ALTER FUNCTION stamp() RENAME TO touch;\n",
        ),
        ("rename-row-type", "ALTER TABLE t RENAME TO things;\n"),
        (
            "replace-function",
            "CREATE OR REPLACE FUNCTION double(i positive) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT i + i';\n",
        ),
    ]);
}

#[test]
fn drops_schemas_moves_savepoints_and_extension_membership_read_as_a_whole_catalog() {
    apply_in_one_run(&[
        (
            "base",
            "CREATE TABLE keep (id int PRIMARY KEY, gone int, note text);\n\
             CREATE TABLE doomed (id int REFERENCES keep);\n\
             CREATE INDEX keep_note ON keep (note);\n\
             CREATE FUNCTION helper() RETURNS int LANGUAGE sql AS 'SELECT 1';\n",
        ),
        ("drop-column", "ALTER TABLE keep DROP COLUMN gone;\n"),
        ("drop-table", "DROP TABLE doomed;\n"),
        ("drop-index", "DROP INDEX keep_note;\n"),
        (
            "new-schema",
            "CREATE SCHEMA app;\nCREATE TABLE app.inside (id int);\n",
        ),
        ("move", "ALTER TABLE keep SET SCHEMA app;\n"),
        ("rename-schema", "ALTER SCHEMA app RENAME TO application;\n"),
        (
            "savepoints",
            "DO $$ BEGIN\n  BEGIN CREATE TABLE in_sub (id int); EXCEPTION WHEN others THEN NULL; END;\n  BEGIN CREATE TABLE failed_sub (id int); RAISE EXCEPTION 'undo'; EXCEPTION WHEN others THEN NULL; END;\nEND $$;\n",
        ),
        (
            "temp",
            "CREATE TEMP TABLE scratch (id int);\nCREATE TABLE after_temp (id int);\n",
        ),
        (
            "into-extension",
            "ALTER EXTENSION plpgsql ADD FUNCTION helper();\n",
        ),
        (
            "out-of-extension",
            "ALTER EXTENSION plpgsql DROP FUNCTION helper();\n",
        ),
        (
            "data-only",
            "INSERT INTO application.keep VALUES (1, 'x');\n",
        ),
        (
            "drop-default-and-not-null",
            "ALTER TABLE application.keep ALTER COLUMN note SET DEFAULT 'n';\nALTER TABLE application.keep ALTER COLUMN note DROP DEFAULT;\nALTER TABLE application.keep ALTER COLUMN note SET NOT NULL;\n",
        ),
    ]);
}

#[test]
fn quiet_run_of_every_kind_of_change_reads_what_a_whole_catalog_gives() {
    apply_in_one_run(&[
        (
            "base",
            "CREATE TABLE p (id int, at date NOT NULL, v int) PARTITION BY RANGE (at);\n\
             CREATE TABLE p1 PARTITION OF p FOR VALUES FROM ('2020-01-01') TO ('2021-01-01');\n\
             CREATE TABLE parent (id int PRIMARY KEY);\n\
             CREATE TABLE child (extra int) INHERITS (parent);\n\
             CREATE TABLE t (id int GENERATED ALWAYS AS IDENTITY, a int, b int GENERATED ALWAYS AS (a * 2) STORED);\n\
             CREATE DOMAIN small AS int;\n\
             CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;\n",
        ),
        (
            "partition",
            "CREATE TABLE p2 (id int, at date NOT NULL, v int);\nALTER TABLE p ATTACH PARTITION p2 FOR VALUES FROM ('2021-01-01') TO ('2022-01-01');\n",
        ),
        (
            "inherited-column",
            "ALTER TABLE parent ADD COLUMN name text DEFAULT 'x';\n",
        ),
        (
            "domain-constraint",
            "ALTER DOMAIN small ADD CONSTRAINT small_positive CHECK (VALUE > 0);\n",
        ),
        (
            "check",
            "ALTER TABLE t ADD CONSTRAINT a_positive CHECK (a > 0) NOT VALID;\n",
        ),
        (
            "validate",
            "ALTER TABLE t VALIDATE CONSTRAINT a_positive;\n",
        ),
        (
            "foreign-key",
            "ALTER TABLE child ADD CONSTRAINT child_parent FOREIGN KEY (extra) REFERENCES parent (id);\n",
        ),
        (
            "trigger",
            "CREATE TRIGGER t_noop BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION noop();\n",
        ),
        ("disable-trigger", "ALTER TABLE t DISABLE TRIGGER t_noop;\n"),
        (
            "rename-trigger",
            "ALTER TRIGGER t_noop ON t RENAME TO t_nothing;\n",
        ),
        (
            "rule",
            "CREATE VIEW tv AS SELECT id, a FROM t;\nCREATE RULE tv_del AS ON DELETE TO tv DO INSTEAD NOTHING;\n",
        ),
        (
            "matview",
            "CREATE MATERIALIZED VIEW tm AS SELECT a FROM t;\nCREATE INDEX tm_a ON tm (a);\n",
        ),
        (
            "type-change",
            "ALTER TABLE child ALTER COLUMN extra TYPE bigint;\n",
        ),
        (
            "rename-column-under-views",
            "ALTER TABLE t RENAME COLUMN a TO alpha;\n",
        ),
        (
            "extension",
            "CREATE EXTENSION IF NOT EXISTS citext;\nCREATE TABLE names (n citext);\n",
        ),
        (
            "new-function",
            "CREATE FUNCTION plus1(i int) RETURNS int LANGUAGE sql AS 'SELECT i + 1';\n",
        ),
        (
            "sequence",
            "CREATE SEQUENCE s OWNED BY t.id;\nALTER SEQUENCE s RENAME TO s2;\n",
        ),
        (
            "detach",
            "ALTER TABLE p DETACH PARTITION p2;\nDROP TABLE p2;\n",
        ),
        ("data-only", "INSERT INTO t (alpha) VALUES (1);\n"),
        ("drop-function-cascade", "DROP FUNCTION noop() CASCADE;\n"),
    ]);
}

/// Another session changes the schema while a run is in the middle of a
/// changeset: its transaction is not the run's, and the next reading must
/// still see what it wrote (and what depends on it).
#[test]
fn another_sessions_change_during_a_run_is_in_the_next_reading() {
    let t = TestContext::with_databases();
    t.changeset(
        "base",
        "CREATE TABLE a (x int);\nCREATE VIEW v AS SELECT x FROM a;\nCREATE INDEX a_x ON a (x);\n",
    );
    t.changeset("wait", "SELECT pg_sleep(3);\n");
    t.changeset("after", "CREATE TABLE c (id int);\n");
    t.promoter(&["seal"]).ok();
    let url = t.url("dev");
    let other = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        crate::common::psql(&url, "ALTER TABLE a RENAME COLUMN x TO renamed").ok();
    });
    let out = t.promoter(&["apply", "dev"]).ok();
    other.join().unwrap();
    assert!(out.contains("applied 0003-after"), "{out}");
    // The rename is in what the run recorded last (the debug build has
    // compared every reading with the whole catalog on the way).
    t.changeset("next-run", "SELECT 1;\n");
    t.promoter(&["seal"]).ok();
    t.promoter(&["apply", "dev"]).ok();
    let same = t.sql(
        "dev",
        "SELECT (SELECT schema_before FROM promoter.ledger ORDER BY seq DESC LIMIT 1) = \
                (SELECT schema_after FROM promoter.ledger ORDER BY seq DESC LIMIT 1 OFFSET 1)",
    );
    assert_eq!(same, "t\n");
    assert_eq!(
        t.sql(
            "dev",
            "SELECT attname FROM pg_attribute WHERE attrelid = 'a'::regclass AND attnum = 1"
        ),
        "renamed\n"
    );
}

/// How each changeset's fingerprint after was read, from the trace.
fn readings(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("promoter: dev: schema fingerprint read: "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_quiet_run_reads_only_the_catalogs_each_changeset_wrote_and_none_after_data_only_ones() {
    // Other tests' transactions on the shared cluster would take ids in
    // between and (rightly) make every reading scan everything.
    let mut t = TestContext::with_databases();
    t.move_to_cluster("dev", crate::common::quiet_admin_url());
    t.changeset("base", "CREATE TABLE a (id int PRIMARY KEY, name text);\n");
    t.changeset("rows", "INSERT INTO a VALUES (1, 'one'), (2, 'two');\n");
    t.changeset("rename", "ALTER TABLE a RENAME COLUMN name TO label;\n");
    t.changeset("more-rows", "UPDATE a SET label = 'uno' WHERE id = 1;\n");
    t.changeset("drop", "CREATE TABLE b (x int);\nDROP TABLE b;\n");
    t.promoter(&["seal"]).ok();
    let run = t.promoter_env(&["apply", "dev"], &[("PROMOTER_TRACE_FINGERPRINT", "1")]);
    let stderr = run.stderr.clone();
    run.ok();
    let seen = readings(&stderr);
    // The first changeset reads the whole catalog before and its changes
    // after; from then on each one starts where the previous one ended.
    assert_eq!(seen.len(), 6, "{stderr}");
    assert_eq!(seen[0], "whole");
    assert_eq!(seen[1], "changes");
    assert_eq!(seen[2], "unchanged: nothing written in the catalogs");
    assert!(seen[3].starts_with("changes, in the "), "{stderr}");
    assert_eq!(seen[4], "unchanged: nothing written in the catalogs");
    assert!(seen[5].starts_with("changes, in the "), "{stderr}");
    // The ledger schema's digest is printed for the first changeset only:
    // after it, each one shows it wrote none of the rows it is made of.
    let checks: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("promoter: dev: ledger schema checked: "))
        .collect();
    assert_eq!(
        checks,
        [
            "digest",
            "none of its rows written",
            "none of its rows written",
            "none of its rows written",
            "none of its rows written"
        ],
        "{stderr}"
    );
    // The debug build compared each with the whole catalog; the last one
    // is what a new run finds.
    t.changeset("next-run", "SELECT 1;\n");
    t.promoter(&["seal"]).ok();
    t.promoter(&["apply", "dev"]).ok();
    let same = t.sql(
        "dev",
        "SELECT (SELECT schema_before FROM promoter.ledger ORDER BY seq DESC LIMIT 1) = \
                (SELECT schema_after FROM promoter.ledger ORDER BY seq DESC LIMIT 1 OFFSET 1)",
    );
    assert_eq!(same, "t\n");
}

#[test]
fn without_row_counts_every_reading_scans_every_catalog() {
    let t = TestContext::with_databases();
    t.sql(
        "dev",
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET track_counts = off', current_database()); END $$",
    );
    t.changeset("base", "CREATE TABLE a (id int PRIMARY KEY, name text);\n");
    t.changeset("rows", "INSERT INTO a VALUES (1, 'one');\n");
    t.changeset("rename", "ALTER TABLE a RENAME COLUMN name TO label;\n");
    t.promoter(&["seal"]).ok();
    let run = t.promoter_env(&["apply", "dev"], &[("PROMOTER_TRACE_FINGERPRINT", "1")]);
    let stderr = run.stderr.clone();
    run.ok();
    // Other tests' transactions may take ids in between (then a changeset
    // reads before as well as after): every reading after the first scans
    // every catalog either way.
    let seen = readings(&stderr);
    assert_eq!(seen[0], "whole", "{stderr}");
    assert!(
        seen.len() >= 4 && seen[1..].iter().all(|r| r == "changes"),
        "{stderr}"
    );
}

/// The narrowed reading plans with its own settings (search path, no JIT,
/// generic plans, no sequential scans), kept to the end of its changeset's
/// transaction: the next changeset's scripts must still start from the
/// session's defaults, as under psql.
#[test]
fn the_readings_planner_settings_end_with_their_changeset() {
    let mut t = TestContext::with_databases();
    t.move_to_cluster("dev", crate::common::quiet_admin_url());
    let defaults = t.sql(
        "dev",
        "SELECT concat_ws(' | ', current_setting('search_path'), current_setting('jit'), current_setting('plan_cache_mode'), current_setting('enable_seqscan'))",
    );
    t.changeset("first", "CREATE TABLE a (id int PRIMARY KEY);\n");
    t.changeset("second", "CREATE TABLE b (id int PRIMARY KEY);\n");
    t.changeset(
        "third",
        "CREATE TABLE seen AS SELECT concat_ws(' | ', current_setting('search_path'), current_setting('jit'), \
         current_setting('plan_cache_mode'), current_setting('enable_seqscan')) AS settings;\n",
    );
    t.promoter(&["seal"]).ok();
    let run = t.promoter_env(&["apply", "dev"], &[("PROMOTER_TRACE_FINGERPRINT", "1")]);
    let stderr = run.stderr.clone();
    run.ok();
    // The second changeset's reading was the narrowed one.
    assert!(
        readings(&stderr)
            .iter()
            .any(|r| r.starts_with("changes, in the ")),
        "{stderr}"
    );
    assert_eq!(t.sql("dev", "SELECT settings FROM seen"), defaults);
}
