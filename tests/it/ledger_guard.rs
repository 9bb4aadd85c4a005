//! A bundle's own SQL cannot touch the ledger, and scripts cannot break
//! promoter's session: each attack is refused naming the changeset, and the
//! ledger still audits clean.

use crate::common::TestContext;

fn ledger_rows(t: &TestContext) -> String {
    t.sql(
        "dev",
        "SELECT string_agg(changeset_id || ':' || status, ',' ORDER BY seq) FROM promoter.ledger",
    )
}

#[test]
fn a_changeset_that_disables_the_trigger_and_deletes_ledger_rows_is_rolled_back() {
    let t = TestContext::with_databases();
    t.changeset("first", "CREATE TABLE first (id int);\n");
    t.changeset(
        "eraser",
        "ALTER TABLE promoter.ledger DISABLE TRIGGER ALL;\nDELETE FROM promoter.ledger;\nALTER TABLE promoter.ledger ENABLE TRIGGER ALL;\nCREATE TABLE erased (id int);\n",
    );
    t.promoter(&["seal"]).ok();
    t.promoter(&["apply", "dev", "--to", "1"]).ok();
    let run = t.promoter(&["apply", "dev"]);
    assert_eq!(run.code, 4, "{}", run.all());
    assert!(
        run.stderr.contains("failed at 0002-eraser")
            && run.stderr.contains("LEDGER TAMPERED: it wrote to the ledger tables: promoter.ledger 1 inserted (promoter wrote 1), 0 updated, 1 deleted"),
        "{}",
        run.stderr
    );
    assert_eq!(ledger_rows(&t), "0001-first:applied,0002-eraser:failed\n");
    assert_eq!(t.sql("dev", "SELECT to_regclass('erased') IS NULL"), "t\n");
    t.commit_all("changesets");
    let audit = t.promoter(&["audit", "dev"]);
    assert_eq!(audit.code, 0, "{}", audit.all());
}

#[test]
fn a_trigger_that_swallows_ledger_rows_is_refused() {
    let t = TestContext::with_databases();
    t.changeset(
        "swallow",
        "CREATE FUNCTION public.swallow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;\n\
         CREATE TRIGGER swallow BEFORE INSERT ON promoter.ledger FOR EACH ROW EXECUTE FUNCTION public.swallow();\n",
    );
    t.changeset("after", "CREATE TABLE after_it (id int);\n");
    t.promoter(&["seal"]).ok();
    let run = t.promoter(&["apply", "dev"]);
    assert_eq!(run.code, 4, "{}", run.all());
    assert!(
        run.stderr
            .contains("LEDGER TAMPERED: it changed the ledger schema promoter"),
        "{}",
        run.stderr
    );
    assert_eq!(
        t.sql(
            "dev",
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'swallow'"
        ),
        "0\n"
    );
    assert_eq!(ledger_rows(&t), "0001-swallow:failed\n");
}

#[test]
fn a_function_added_to_the_ledger_schema_is_refused() {
    let t = TestContext::with_databases();
    t.changeset("first", "SELECT 1;\n");
    t.changeset(
        "helper",
        "CREATE FUNCTION promoter.helper() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;\n",
    );
    t.promoter(&["seal"]).ok();
    t.promoter(&["apply", "dev", "--to", "1"]).ok();
    let run = t.promoter(&["apply", "dev"]);
    assert_eq!(run.code, 4, "{}", run.all());
    assert!(
        run.stderr.contains("it changed the ledger schema promoter"),
        "{}",
        run.stderr
    );
    assert_eq!(
        t.sql("dev", "SELECT to_regprocedure('promoter.helper()') IS NULL"),
        "t\n"
    );
}

#[test]
fn tables_views_sequences_and_indexes_moved_or_added_into_the_ledger_schema_are_refused() {
    // The guard finds the ledger schema's objects through the dependencies
    // PostgreSQL records on the schema, not by scanning the catalogs: each
    // way of putting a relation there must still be seen.
    for (slug, sql) in [
        (
            "moved-table",
            "CREATE TABLE decoy (seq bigint);\nALTER TABLE decoy SET SCHEMA promoter;\n",
        ),
        (
            "new-view",
            "CREATE VIEW promoter.recent AS SELECT 1 AS seq;\n",
        ),
        (
            "moved-sequence",
            "CREATE SEQUENCE counter;\nALTER SEQUENCE counter SET SCHEMA promoter;\n",
        ),
        (
            "new-index",
            "CREATE INDEX ledger_by_note ON promoter.ledger (note);\n",
        ),
    ] {
        let t = TestContext::with_databases();
        t.changeset("first", "SELECT 1;\n");
        t.changeset(slug, sql);
        t.promoter(&["seal"]).ok();
        t.promoter(&["apply", "dev", "--to", "1"]).ok();
        let run = t.promoter(&["apply", "dev"]);
        assert_eq!(run.code, 4, "{slug}: {}", run.all());
        assert!(
            run.stderr.contains("it changed the ledger schema promoter"),
            "{slug}: {}",
            run.stderr
        );
    }
}

#[test]
fn a_ledger_trigger_disabled_by_a_dba_between_runs_is_reported_before_the_next_apply() {
    let t = TestContext::with_databases();
    t.changeset("first", "SELECT 1;\n");
    t.changeset("second", "CREATE TABLE second (id int);\n");
    t.promoter(&["seal"]).ok();
    t.promoter(&["apply", "dev", "--to", "1"]).ok();
    t.sql(
        "dev",
        "ALTER TABLE promoter.ledger DISABLE TRIGGER ledger_append_only",
    );
    let run = t.promoter(&["apply", "dev"]);
    assert_eq!(run.code, 3, "{}", run.all());
    assert!(
        run.stderr.contains("dev's ledger is not protected: the append-only trigger ledger_append_only on promoter.ledger is disabled"),
        "{}",
        run.stderr
    );
    assert_eq!(t.sql("dev", "SELECT to_regclass('second') IS NULL"), "t\n");
    t.sql(
        "dev",
        "ALTER TABLE promoter.ledger ENABLE TRIGGER ledger_append_only",
    );
    t.promoter(&["apply", "dev"]).ok();
}

#[test]
fn a_non_transactional_statement_that_touches_the_ledger_marks_the_environment_tampered() {
    let t = TestContext::with_databases();
    t.changeset("first", "SELECT 1;\n");
    t.changeset_without_transaction(
        "sneaky",
        "CREATE TABLE sneaky (id int);\nALTER TABLE promoter.ledger DISABLE TRIGGER ALL;\nCREATE TABLE never (id int);\n",
    );
    t.promoter(&["seal"]).ok();
    t.promoter(&["apply", "dev", "--to", "1"]).ok();
    let run = t.promoter(&["apply", "dev"]);
    assert_eq!(run.code, 4, "{}", run.all());
    assert!(
        run.stderr
            .contains("LEDGER TAMPERED: a statement changed the ledger schema"),
        "{}",
        run.stderr
    );
    assert_eq!(t.sql("dev", "SELECT to_regclass('never') IS NULL"), "t\n");
    // Nothing runs until an operator has looked.
    let refused = t.promoter(&["apply", "dev"]);
    assert_eq!(refused.code, 3, "{}", refused.all());
    assert!(
        refused.stderr.contains("0002-sneaky touched the ledger")
            || refused.stderr.contains("not protected"),
        "{}",
        refused.stderr
    );
}

#[test]
fn scripts_cannot_break_promoters_own_session() {
    let t = TestContext::with_databases();
    t.changeset(
        "hostile",
        "PREPARE p AS SELECT 1;\nDEALLOCATE ALL;\nSET search_path = nowhere;\nLISTEN ch;\nNOTIFY ch, 'x';\nCREATE TEMP TABLE leak (id int);\n",
    );
    t.changeset("isolated", "CREATE TABLE isolated AS SELECT count(*) AS n FROM pg_class WHERE relname = 'leak' AND relpersistence = 't';\n");
    t.changeset_without_transaction(
        "discard",
        "DISCARD ALL;\nLISTEN other;\nNOTIFY other, 'x';\nSELECT 1;\n",
    );
    t.promoter(&["seal"]).ok();
    let out = t.promoter(&["apply", "dev"]).ok();
    assert!(
        out.contains("applied 0001-hostile")
            && out.contains("applied 0002-isolated")
            && out.contains("applied 0003-discard"),
        "{out}"
    );
    assert_eq!(
        t.sql("dev", "SELECT n FROM isolated"),
        "0\n",
        "temp tables do not leak into the next changeset"
    );
    t.commit_all("changesets");
    t.promoter(&["audit", "dev"]).ok();
}

/// promoter keeps its own queries prepared between changesets; a script
/// that swaps each of them for a statement of its own under the same name
/// (so that the ledger guard or the fingerprint would get its answers) is
/// found out after the script, and promoter prepares its own again.
#[test]
fn a_script_cannot_swap_promoters_prepared_statements_for_its_own() {
    let t = TestContext::with_databases();
    let swap = "DO $$ DECLARE n text; BEGIN\n  FOR n IN SELECT name FROM pg_prepared_statements WHERE NOT from_sql LOOP\n    EXECUTE format('DEALLOCATE %I', n);\n    EXECUTE format('PREPARE %I AS SELECT 1', n);\n  END LOOP;\nEND $$;\n";
    t.changeset("first", "CREATE TABLE first (id int);\n");
    t.changeset("swap", &format!("CREATE TABLE second (id int);\n{swap}"));
    t.changeset_without_transaction(
        "swap-again",
        &format!("CREATE TABLE third (id int);\n{swap}CREATE TABLE fourth (id int);\n{swap}"),
    );
    t.changeset(
        "after",
        "CREATE TABLE seen AS SELECT count(*) AS n FROM pg_prepared_statements WHERE from_sql;\n",
    );
    t.promoter(&["seal"]).ok();
    let out = t.promoter(&["apply", "dev"]).ok();
    assert!(out.contains("applied 0004-after"), "{out}");
    assert_eq!(
        t.sql("dev", "SELECT n FROM seen"),
        "0\n",
        "a script's prepared statements do not outlive it"
    );
    let ledger = t.sql(
        "dev",
        "SELECT string_agg(changeset_id || ' ' || status, ',' ORDER BY seq) FROM promoter.ledger",
    );
    assert_eq!(
        ledger,
        "0001-first applied,0002-swap applied,0003-swap-again running,0003-swap-again applied,0004-after applied\n"
    );
    t.commit_all("changesets");
    t.promoter(&["audit", "dev"]).ok();
}

/// A data-only changeset applied, then a DBA's edit: deleting the newest
/// rows, truncating, dropping the schema. The checkpoint promoter keeps
/// outside the database catches each; nothing is applied twice.
#[test]
fn checkpoints_catch_deleted_rows_truncation_and_a_dropped_ledger() {
    let t = TestContext::with_databases();
    t.changeset("table", "CREATE TABLE money (amount int);\n");
    t.changeset("deposit", "INSERT INTO money VALUES (100);\n");
    t.promoter(&["seal"]).ok();
    t.promoter(&["apply", "dev"]).ok();
    t.commit_all("two");
    t.promoter(&["audit", "dev"]).ok();
    // Delete the newest row behind the trigger's back.
    t.sql(
        "dev",
        "SET session_replication_role = replica; DELETE FROM promoter.ledger WHERE seq = 2",
    );
    let replay = t.promoter(&["apply", "dev"]);
    assert_eq!(replay.code, 3, "{}", replay.all());
    assert!(
        replay
            .stderr
            .contains("the ledger ends at row #1, but promoter saw row #2"),
        "{}",
        replay.stderr
    );
    assert_eq!(
        t.sql("dev", "SELECT sum(amount) FROM money"),
        "100\n",
        "not deposited twice"
    );
    let audit = t.promoter(&["audit", "dev"]);
    assert_eq!(audit.code, 1, "{}", audit.all());
    assert!(
        audit.stderr.contains("newer rows were deleted"),
        "{}",
        audit.stderr
    );
    // Truncated, then dropped.
    t.sql(
        "dev",
        "SET session_replication_role = replica; TRUNCATE promoter.ledger CASCADE",
    );
    let audit = t.promoter(&["audit", "dev"]);
    assert_eq!(audit.code, 1, "{}", audit.all());
    assert!(
        audit.stderr.contains("truncated or dropped"),
        "{}",
        audit.stderr
    );
    t.sql("dev", "DROP SCHEMA promoter CASCADE");
    let audit = t.promoter(&["audit", "dev"]);
    assert_eq!(audit.code, 1, "{}", audit.all());
    assert!(
        audit.stderr.contains("truncated or dropped"),
        "{}",
        audit.stderr
    );
    let replay = t.promoter(&["apply", "dev"]);
    assert_eq!(replay.code, 3, "{}", replay.all());
    assert_eq!(t.sql("dev", "SELECT sum(amount) FROM money"), "100\n");
    // An auditor's own record of the head works the same.
    let given = t.dir.path().join("head.json");
    std::fs::write(
        &given,
        format!("{{\"seq\": 1, \"entry_hash\": \"{}\"}}", "ab".repeat(32)),
    )
    .unwrap();
    let audit = t.promoter(&["audit", "dev", "--checkpoint", given.to_str().unwrap()]);
    assert_eq!(audit.code, 1);
    assert!(audit.stderr.contains("head.json"), "{}", audit.stderr);
}

/// Regression: with standard_conforming_strings off, the server and the
/// splitter disagreed about where a string ended, and a COMMIT hidden in
/// what the splitter took for a string committed half a changeset.
#[test]
fn a_commit_smuggled_past_the_splitter_is_refused_or_caught() {
    let t = TestContext::with_databases();
    let smuggle =
        "SELECT 'x\\' || '; COMMIT; CREATE TABLE smuggled (); SELECT 1 --';\nSELECT 1 / 0;\n";
    // Turning it off plainly is refused at seal, naming the line.
    t.changeset(
        "plain",
        &format!("SET standard_conforming_strings = off;\n{smuggle}"),
    );
    let sealed = t.promoter(&["seal"]);
    assert_ne!(sealed.code, 0);
    assert!(
        sealed
            .stderr
            .contains("001-plain.sql:1: turns standard_conforming_strings off"),
        "{}",
        sealed.stderr
    );
    // Turning it off where no check can read it is caught at run time: the
    // server left promoter's transaction.
    std::fs::remove_dir_all(t.path("changesets/0001-plain")).unwrap();
    t.changeset(
        "hidden",
        &format!(
            "DO $$ BEGIN EXECUTE 'SET standard_conforming' || '_strings = off'; END $$;\n{smuggle}"
        ),
    );
    t.promoter(&["seal"]).ok();
    let run = t.promoter(&["apply", "dev"]);
    assert_eq!(run.code, 4, "{}", run.all());
    assert!(
        run.stderr
            .contains("TRANSACTION BROKEN: the server left promoter's transaction"),
        "{}",
        run.stderr
    );
    let refused = t.promoter(&["apply", "dev"]);
    assert_eq!(
        refused.code,
        3,
        "the environment waits for an operator: {}",
        refused.all()
    );
    // What ran after the hidden COMMIT did commit; the ledger says so.
    assert_eq!(
        t.sql("dev", "SELECT to_regclass('smuggled') IS NOT NULL"),
        "t\n"
    );
    assert!(
        t.sql(
            "dev",
            "SELECT error FROM promoter.ledger WHERE status = 'failed'"
        )
        .starts_with("TRANSACTION BROKEN"),
    );
}

/// The attack the between-statement checks of a `transaction: none`
/// changeset must survive: a script that puts an aggregate of its own in
/// front of pg_catalog's on its search path, where the ledger guard's
/// `string_agg` would resolve to it. The guard runs under `pg_catalog`
/// only, so the script's aggregate never runs, and the script keeps its
/// search path for its own statements.
#[test]
fn a_script_cannot_shadow_the_guards_functions_with_its_search_path() {
    let t = TestContext::with_databases();
    t.changeset_without_transaction(
        "shadow",
        "CREATE SCHEMA evil;\n\
         CREATE FUNCTION evil.boom(text, text, text) RETURNS text LANGUAGE plpgsql AS\n\
           $$BEGIN RAISE EXCEPTION 'the shadowing string_agg ran'; END$$;\n\
         CREATE AGGREGATE evil.string_agg(text, text) (SFUNC = evil.boom, STYPE = text);\n\
         SET search_path = evil, pg_catalog;\n\
         CREATE TABLE public.after (path text DEFAULT current_setting('search_path'));\n\
         INSERT INTO public.after DEFAULT VALUES;\n",
    );
    t.promoter(&["seal"]).ok();
    let run = t.promoter(&["apply", "dev"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(
        t.sql("dev", "SELECT path FROM public.after"),
        "evil, pg_catalog\n"
    );
}

#[test]
fn a_changeset_that_plants_rows_in_ledger_replaced_is_rolled_back() {
    let t = TestContext::with_databases();
    t.changeset("first", "CREATE TABLE first (id int);\n");
    // Kept rows under a made-up refresh, to pose as history a refresh replaced.
    t.changeset(
        "planter",
        "INSERT INTO promoter.ledger_replaced SELECT repeat('a', 64), * FROM promoter.ledger;\n",
    );
    t.promoter(&["seal"]).ok();
    t.promoter(&["apply", "dev", "--to", "1"]).ok();
    let run = t.promoter(&["apply", "dev"]);
    assert_eq!(run.code, 4, "{}", run.all());
    assert!(
        run.stderr.contains("failed at 0002-planter")
            && run.stderr.contains("promoter.ledger_replaced 1/0/0"),
        "{}",
        run.stderr
    );
    assert_eq!(
        t.sql("dev", "SELECT count(*) FROM promoter.ledger_replaced"),
        "0\n"
    );
}

#[test]
fn without_row_counts_changesets_apply_and_one_that_writes_the_ledger_is_still_rolled_back() {
    // Regression: with `track_counts = off` (a server setting some DBAs
    // choose) the row counters stay at zero, and every changeset was
    // refused as having deleted promoter's own ledger row.
    let t = TestContext::with_databases();
    t.sql(
        "dev",
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET track_counts = off', current_database()); END $$",
    );
    t.changeset("first", "CREATE TABLE first (id int);\n");
    t.changeset(
        "planter",
        "INSERT INTO promoter.ledger_replaced SELECT repeat('a', 64), * FROM promoter.ledger;\n",
    );
    t.promoter(&["seal"]).ok();
    t.promoter(&["apply", "dev", "--to", "1"]).ok();
    let run = t.promoter(&["apply", "dev"]);
    assert_eq!(run.code, 4, "{}", run.all());
    assert!(
        run.stderr.contains("failed at 0002-planter")
            && run.stderr.contains(
                "promoter.ledger_replaced has 1 rows (0 before) of which this transaction wrote 1 (promoter wrote 0)"
            ),
        "{}",
        run.stderr
    );
    assert_eq!(
        t.sql("dev", "SELECT count(*) FROM promoter.ledger_replaced"),
        "0\n"
    );
}

#[test]
fn tampering_in_a_quiet_run_is_caught_without_printing_the_digest_first() {
    // In a quiet run the guard first asks which of the ledger schema's
    // catalog rows this transaction wrote and how many there are; each way
    // of changing the schema must still reach the digest and be refused.
    for (slug, sql) in [
        (
            "drop-trigger",
            "DROP TRIGGER ledger_progress_append_only ON promoter.ledger_progress;\n",
        ),
        (
            "disable-trigger",
            "ALTER TABLE promoter.ledger DISABLE TRIGGER ledger_append_only;\n",
        ),
        (
            "policy",
            "CREATE POLICY hide ON promoter.ledger USING (false);\n",
        ),
        ("grant", "GRANT DELETE ON promoter.ledger TO PUBLIC;\n"),
        // A subtransaction's rows carry its own id, not the transaction's.
        (
            "in-a-savepoint",
            "SAVEPOINT s;\nGRANT DELETE ON promoter.ledger TO PUBLIC;\nRELEASE SAVEPOINT s;\n",
        ),
        (
            "default",
            "ALTER TABLE promoter.ledger ALTER COLUMN note SET DEFAULT 'x';\n",
        ),
        (
            "drop-unique",
            "ALTER TABLE promoter.ledger DROP CONSTRAINT ledger_prev_hash_key;\n",
        ),
    ] {
        let mut t = TestContext::with_databases();
        t.move_to_cluster("dev", crate::common::quiet_admin_url());
        t.changeset("first", "CREATE TABLE a (x int);\n");
        t.changeset("rows", "INSERT INTO a VALUES (1);\n");
        t.changeset(slug, sql);
        t.promoter(&["seal"]).ok();
        let run = t.promoter_env(&["apply", "dev"], &[("PROMOTER_TRACE_FINGERPRINT", "1")]);
        assert_eq!(run.code, 4, "{slug}: {}", run.all());
        assert!(
            run.stderr.contains("failed at 0003-")
                && run.stderr.contains("it changed the ledger schema promoter"),
            "{slug}: {}",
            run.stderr
        );
        // The second changeset took the quiet path (so the third could).
        assert!(
            run.stderr
                .contains("ledger schema checked: none of its rows written"),
            "{slug}: {}",
            run.stderr
        );
    }
}

#[test]
fn rows_written_to_the_ledger_tables_in_a_quiet_run_are_counted_with_the_shape() {
    // In a quiet run the counters and promoter's own row are read in the
    // statement that reads the ledger schema's shape.
    let mut t = TestContext::with_databases();
    t.move_to_cluster("dev", crate::common::quiet_admin_url());
    t.changeset("first", "CREATE TABLE a (x int);\n");
    t.changeset("rows", "INSERT INTO a VALUES (1);\n");
    t.changeset(
        "progress",
        "INSERT INTO promoter.ledger_progress (seq, statements) VALUES (1, 99);\n",
    );
    t.promoter(&["seal"]).ok();
    let run = t.promoter_env(&["apply", "dev"], &[("PROMOTER_TRACE_FINGERPRINT", "1")]);
    assert_eq!(run.code, 4, "{}", run.all());
    assert!(
        run.stderr.contains("failed at 0003-progress")
            && run.stderr.contains(
                "it wrote to the ledger tables: promoter.ledger 1 inserted (promoter wrote 1), 0 updated, 0 deleted; promoter.ledger_progress 1/0/0"
            ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("ledger schema checked: none of its rows written"),
        "{}",
        run.stderr
    );
    assert_eq!(
        ledger_rows(&t),
        "0001-first:applied,0002-rows:applied,0003-progress:failed\n"
    );
}

/// A new ledger is made at the newest layout in one transaction; it must be
/// exactly what an old ledger becomes when promoter upgrades it, layout by
/// layout (pg_dump of the ledger schema, the same in both).
#[test]
fn a_new_ledger_has_the_layout_an_upgraded_one_has() {
    let t = TestContext::with_databases();
    // QAT: a ledger made as the first promoter made it (layout 1), upgraded
    // by the next run under the lock.
    let first = (promoter::db::ledger::LAYOUTS[0].1)("promoter");
    // Every layout, newest included, recorded in order.
    let versions = |env: &str| {
        t.sql(
            env,
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM promoter.ledger_version",
        )
    };
    t.sql("qat", &first);
    t.commit_all("keys and environments");
    t.pin("qat");
    assert_eq!(versions("qat"), "1,2,3,4,5\n");
    // DEV: a new ledger.
    t.changeset("first", "SELECT 1;\n");
    t.promoter(&["seal"]).ok();
    t.promoter(&["apply", "dev"]).ok();
    assert_eq!(versions("dev"), "1,2,3,4,5\n");
    let dump = |env: &str| {
        let out = crate::common::run(std::process::Command::new("pg_dump").args([
            "--schema-only",
            "--schema=promoter",
            "--no-owner",
            &t.url(env),
        ]))
        .ok();
        // Without the random key of pg_dump's `\restrict` lines.
        out.lines()
            .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let (dev, qat) = (dump("dev"), dump("qat"));
    assert!(
        dev.contains("CREATE TABLE promoter.ledger_replaced"),
        "{dev}"
    );
    assert!(
        dev == qat,
        "a new ledger differs from an upgraded one:\n{dev}\n---\n{qat}"
    );
}

/// A function that swaps every prepared statement promoter made through
/// the protocol for `SELECT 1` under the same name, for code a bundle hangs
/// on the ledger to call.
const SWAP: &str = "CREATE FUNCTION public.swap() RETURNS boolean LANGUAGE plpgsql AS $$\n\
         DECLARE n text; BEGIN\n\
           FOR n IN SELECT name FROM pg_prepared_statements WHERE NOT from_sql LOOP\n\
             EXECUTE format('DEALLOCATE %I', n);\n\
             EXECUTE format('PREPARE %I AS SELECT 1', n);\n\
           END LOOP;\n\
           RETURN true;\n\
         END $$;\n";

/// Calls [`SWAP`] from a row-level security policy on the ledger.
const HANG_SWAP_ON_A_POLICY: &str = "ALTER TABLE promoter.ledger ENABLE ROW LEVEL SECURITY;\n\
     ALTER TABLE promoter.ledger FORCE ROW LEVEL SECURITY;\n\
     CREATE POLICY swap ON promoter.ledger USING (public.swap());\n";

/// Code the bundle hangs on the ledger (a trigger runs inside promoter's
/// INSERT of its row, a policy inside its read of the last row) runs after
/// the check of promoter's prepared statements that follows the scripts;
/// if it swaps them for statements of its own (the ledger guard's check
/// would then answer whatever it is told), the guard must not take their
/// answers: the changeset is refused as tampering, nothing of it stays, and
/// its failure is recorded with promoter's own statements again. (The test
/// runs as a superuser, whom row-level security never applies to: there
/// the policy's code does not run, and the guard finds the policy.)
#[test]
fn code_the_bundle_hangs_on_the_ledger_cannot_swap_the_guards_statements() {
    let hangers = [
        (
            "trigger",
            "code ran inside promoter's own statements",
            "CREATE FUNCTION public.swap_trigger() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM public.swap(); RETURN NULL; END $$;\n\
             CREATE TRIGGER swap AFTER INSERT ON promoter.ledger FOR EACH ROW EXECUTE FUNCTION public.swap_trigger();\n",
        ),
        (
            "policy",
            "it changed the ledger schema promoter",
            HANG_SWAP_ON_A_POLICY,
        ),
    ];
    for (slug, why, hang) in hangers {
        let t = TestContext::with_databases();
        t.changeset(slug, &format!("{SWAP}{hang}"));
        t.changeset("after", "CREATE TABLE after_it (id int);\n");
        t.promoter(&["seal"]).ok();
        let run = t.promoter(&["apply", "dev"]);
        assert_eq!(run.code, 4, "{slug}: {}", run.all());
        assert!(
            run.stderr.contains(&format!("LEDGER TAMPERED: {why}")),
            "{slug}: {}",
            run.stderr
        );
        assert_eq!(
            t.sql(
                "dev",
                "SELECT (SELECT count(*) FROM pg_trigger WHERE tgname = 'swap') + (SELECT count(*) FROM pg_policy WHERE polname = 'swap')"
            ),
            "0\n",
            "{slug}"
        );
        assert_eq!(ledger_rows(&t), format!("0001-{slug}:failed\n"), "{slug}");
    }
}

/// The same code run as a role that row-level security applies to (the
/// ledger's owner, under FORCE): the policy runs inside promoter's read of
/// the ledger's last row, before any question about the prepared
/// statements, and its swap breaks promoter's next statement outright.
/// That is still reported as tampering (prepared statements outlive the
/// ROLLBACK, and they are no longer promoter's), with the failure recorded.
#[test]
fn a_policy_that_swaps_promoters_statements_as_the_owner_is_tampering() {
    let t = TestContext::with_databases();
    let owner = format!("owner_{}", t.databases[0].1);
    crate::common::psql(
        crate::common::admin_url(),
        &format!(
            "DROP ROLE IF EXISTS {owner}; CREATE ROLE {owner} LOGIN; ALTER DATABASE {} OWNER TO {owner}",
            t.databases[0].1
        ),
    )
    .ok();
    t.sql("dev", &format!("ALTER SCHEMA public OWNER TO {owner}"));
    let url = t.url("dev").replacen("postgres@", &format!("{owner}@"), 1);
    t.changeset("first", "CREATE TABLE first (id int);\n");
    t.changeset("policy", &format!("{SWAP}{HANG_SWAP_ON_A_POLICY}"));
    t.promoter(&["seal"]).ok();
    let run = t.promoter_env(&["apply", "dev"], &[("DEV_DATABASE_URL", &url)]);
    assert_eq!(run.code, 4, "{}", run.all());
    assert!(
        run.stderr
            .contains("LEDGER TAMPERED: code ran inside promoter's own statements"),
        "{}",
        run.stderr
    );
    assert_eq!(
        t.sql(
            "dev",
            "SELECT count(*) FROM pg_policy WHERE polname = 'swap'"
        ),
        "0\n"
    );
    assert_eq!(ledger_rows(&t), "0001-first:applied,0002-policy:failed\n");
    // The role owns the database: both go (each statement on its own, as
    // DROP DATABASE runs outside a transaction).
    let admin = crate::common::admin_url();
    let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", t.databases[0].1);
    crate::common::psql(admin, &drop).ok();
    crate::common::psql(admin, &format!("DROP ROLE IF EXISTS {owner}")).ok();
}
