//! `promoter clone`: QAT refreshed from PRD across two real clusters —
//! schema, data and ledger history copied, PRD never written, the next
//! promotion's drift check passing — and a failed or interrupted clone
//! leaving the target exactly as it was.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::{TestContext, psql};

/// 0001 promoted DEV → QAT → PRD with signatures, approvals, QAT receipts
/// and pinned policies; PRD on the second cluster, with data of its own;
/// QAT with test rows PRD does not have.
struct Setup {
    t: TestContext,
    dev_key: PathBuf,
    customer_key: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let mut t = TestContext::with_databases();
        t.move_to_second_cluster("prd");
        t.changeset(
            "customers",
            "CREATE TABLE customers (id int PRIMARY KEY, email text NOT NULL);\n\
             CREATE TABLE orders (id int PRIMARY KEY, customer int REFERENCES customers, total numeric);\n",
        );
        t.promoter(&["seal"]).ok();
        let (_, dev_key) = t.promoter_key("Dev <dev@example.com>", "keys/developers");
        let (_, customer_key) = t.promoter_key("Carl <carl@example.com>", "keys/customers");
        t.promoter(&["apply", "dev"]).ok();
        t.promoter(&["sign", "1", "--key", dev_key.to_str().unwrap()])
            .ok();
        t.commit_all("one changeset");
        t.pin("qat");
        t.pin("prd");
        t.promoter(&["promote", "dev", "qat"]).ok();
        let s = Self {
            t,
            dev_key,
            customer_key,
        };
        s.approve("1");
        s.t.promoter(&["promote", "qat", "prd", "--yes"]).ok();
        s.t.sql(
            "prd",
            "INSERT INTO customers SELECT g, 'c' || g || '@example.com' FROM generate_series(1, 500) g; \
             INSERT INTO orders SELECT g, 1 + g % 500, g * 1.5 FROM generate_series(1, 2000) g;",
        );
        s.t.sql("qat", "INSERT INTO customers VALUES (9999, 'test@qat')");
        s
    }

    fn approve(&self, id: &str) {
        self.t
            .promoter(&[
                "approve",
                id,
                "--yes",
                "--key",
                self.customer_key.to_str().unwrap(),
            ])
            .ok();
        self.t.commit_all("approved");
    }

    /// A new changeset through DEV and QAT, approved.
    fn another(&self, slug: &str, sql: &str) -> String {
        let id = self.t.changeset(slug, sql);
        self.t.promoter(&["seal", &id]).ok();
        self.t.promoter(&["apply", "dev"]).ok();
        self.t
            .promoter(&["sign", &id, "--key", self.dev_key.to_str().unwrap()])
            .ok();
        self.t.commit_all(slug);
        self.t.promoter(&["promote", "dev", "qat"]).ok();
        self.approve(&id);
        id
    }

    /// Everything of `env` a clone must not change or must copy: data,
    /// schema, ledger and pinned policy.
    fn state(&self, env: &str) -> String {
        self.t.sql(
            env,
            "SELECT (SELECT coalesce(string_agg(id || ':' || email, ',' ORDER BY id), '') FROM customers) || ' | ' || \
                    (SELECT count(*) || '/' || sum(total) FROM orders) || ' | ' || \
                    (SELECT string_agg(seq || ':' || changeset_id || ':' || entry_hash, ',' ORDER BY seq) FROM promoter.ledger) || ' | ' || \
                    (SELECT string_agg(seq || ':' || entry_hash, ',' ORDER BY seq) FROM promoter.policy)",
        )
    }

    /// What PRD's server counted as written to its database (flushed).
    fn writes(&self, env: &str) -> String {
        self.t.sql(
            env,
            "SELECT tup_inserted || '/' || tup_updated || '/' || tup_deleted FROM pg_stat_database WHERE datname = current_database()",
        )
    }

    /// Databases next to `env`'s that a clone of it left behind.
    fn leftovers(&self, env: &str) -> String {
        let name = self.t.sql(env, "SELECT current_database()");
        self.t
            .sql(
                env,
                &format!(
                    "SELECT coalesce(string_agg(datname, ','), '') FROM pg_database WHERE datname LIKE '{}\\_\\_promoter\\_%'",
                    name.trim()
                ),
            )
            .trim()
            .to_owned()
    }
}

#[test]
fn clone_prd_qat_copies_schema_data_and_history_and_the_next_promotion_passes_its_drift_check() {
    let s = Setup::new();
    let t = &s.t;
    let prd_before = s.state("prd");
    let qat_policy = t.sql(
        "qat",
        "SELECT string_agg(entry_hash, ',' ORDER BY seq) FROM promoter.policy",
    );
    let qat_ledger = t.sql(
        "qat",
        "SELECT string_agg(entry_hash, ',' ORDER BY seq) FROM promoter.ledger",
    );
    std::thread::sleep(Duration::from_millis(600)); // stats of earlier sessions flushed
    let prd_writes = s.writes("prd");

    let out = t.promoter(&["clone", "prd", "qat", "--yes"]).ok();
    assert!(out.contains("cloned prd into qat"), "{out}");
    assert!(out.contains("2 tables, 2500 rows"), "{out}");

    // PRD: read, never written.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(s.state("prd"), prd_before, "PRD changed");
    assert_eq!(s.writes("prd"), prd_writes, "PRD's server counted writes");
    // QAT: PRD's data and schema, PRD's ledger then a refreshed row, its own policy.
    let data = |env: &str| {
        t.sql(
            env,
            "SELECT (SELECT string_agg(id || ':' || email, ',' ORDER BY id) FROM customers) || (SELECT sum(total) FROM orders)",
        )
    };
    assert_eq!(data("qat"), data("prd"));
    t.promoter(&["drift", "qat", "prd"]).ok();
    let prd_rows = t.sql(
        "prd",
        "SELECT string_agg(entry_hash, ',' ORDER BY seq) FROM promoter.ledger",
    );
    let qat_rows = t.sql(
        "qat",
        "SELECT string_agg(entry_hash, ',' ORDER BY seq) FILTER (WHERE status <> 'refreshed') FROM promoter.ledger",
    );
    assert_eq!(qat_rows, prd_rows, "QAT holds PRD's history verbatim");
    let last = t.sql(
        "qat",
        "SELECT status || ' ' || environment || ' ' || promoted_from || ' ' || (receipt IS NOT NULL) FROM promoter.ledger ORDER BY seq DESC LIMIT 1",
    );
    assert_eq!(last.trim(), "refreshed qat prd true");
    assert_eq!(
        t.sql(
            "qat",
            "SELECT string_agg(entry_hash, ',' ORDER BY seq) FROM promoter.policy"
        ),
        qat_policy,
        "QAT keeps its own pinned policy"
    );
    assert_eq!(
        t.sql(
            "qat",
            "SELECT string_agg(entry_hash, ',' ORDER BY seq) FROM promoter.ledger_replaced"
        ),
        qat_ledger,
        "QAT's own earlier ledger is kept"
    );
    // Both audits hold: QAT's chain across the refresh, PRD's references
    // to QAT entries that now live in the kept ledger.
    t.promoter(&["audit", "qat"]).ok();
    t.promoter(&["audit", "prd"]).ok();
    let ledger = t.promoter(&["ledger", "qat"]).ok();
    assert!(ledger.contains("refreshed"), "{ledger}");

    // The next changeset goes DEV → QAT → PRD: drift check and receipts hold.
    let id = s.another("invoices", "CREATE TABLE invoices (id int PRIMARY KEY);\n");
    let out = t.promoter(&["promote", "qat", "prd", "--yes"]).ok();
    assert!(out.contains(&format!("applied {id} to prd")), "{out}");
    t.promoter(&["audit", "qat"]).ok();
    t.promoter(&["audit", "prd"]).ok();
    let status = t.promoter(&["status"]).ok();
    assert!(
        !status.contains("refresh"),
        "a refresh is no changeset:\n{status}"
    );

    // A second refresh keeps the first one's kept ledger under it.
    t.promoter(&["clone", "prd", "qat", "--yes"]).ok();
    t.promoter(&["audit", "qat"]).ok();
    t.promoter(&["audit", "prd"]).ok();
    assert_eq!(s.leftovers("qat"), "");
}

#[test]
fn clone_refuses_to_copy_over_the_stage_it_feeds_or_an_unrelated_one() {
    let t = TestContext::with_databases();
    for (from, to, why) in [
        ("qat", "prd", "not promoted into qat"),
        ("dev", "qat", "not promoted into dev"),
        ("prd", "prd", "the same environment"),
    ] {
        let run = t.promoter(&["clone", from, to, "--yes"]);
        assert_eq!(run.code, 3, "{from} → {to}: {}", run.all());
        assert!(run.all().contains(why), "{from} → {to}: {}", run.all());
    }
    // PRD's URL given to QAT by mistake: refused before anything is made.
    let run = t.promoter_env(
        &["clone", "prd", "qat", "--yes"],
        &[("QAT_DATABASE_URL", &t.url("prd"))],
    );
    assert_eq!(run.code, 3, "{}", run.all());
    assert!(run.all().contains("are the same database"), "{}", run.all());
}

#[test]
fn a_clone_whose_restore_fails_leaves_qat_as_it_was_and_drops_the_copy() {
    let s = Setup::new();
    let t = &s.t;
    // An object owned by a role that QAT's cluster does not have.
    let role = format!("owner_{}", std::process::id());
    t.sql(
        "prd",
        &format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN CREATE ROLE {role}; END IF; END $$; \
             CREATE TABLE owned (id int); ALTER TABLE owned OWNER TO {role};"
        ),
    );
    let qat_before = s.state("qat");
    let run = t.promoter(&["clone", "prd", "qat", "--yes"]);
    assert_eq!(run.code, 4, "{}", run.all());
    assert!(run.all().contains("qat was not changed"), "{}", run.all());
    assert!(
        run.all().contains(&role),
        "pg_restore's own message: {}",
        run.all()
    );
    assert_eq!(s.state("qat"), qat_before);
    assert_eq!(s.leftovers("qat"), "");
    // Without the source's owners the same clone goes through.
    t.promoter(&["clone", "prd", "qat", "--yes", "--no-owner"])
        .ok();
    t.promoter(&["drift", "qat", "prd"]).ok();
    t.sql("prd", &format!("DROP TABLE owned; DROP ROLE {role}"));
}

#[test]
fn an_interrupted_clone_leaves_qat_as_it_was() {
    let s = Setup::new();
    let t = &s.t;
    t.sql(
        "prd",
        "CREATE TABLE big AS SELECT g AS id, repeat('x', 200) AS filler FROM generate_series(1, 400000) g",
    );
    let qat_before = s.state("qat");
    let mut child = t
        .std_cmd()
        .args(["clone", "prd", "qat", "--yes", "--jobs", "1"])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let start = Instant::now();
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
        seen.push_str(&line);
        if line.contains("restoring into") || line.is_empty() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{seen}");
    }
    assert!(seen.contains("restoring into"), "{seen}");
    std::thread::sleep(Duration::from_millis(300));
    let pid = child.id().to_string();
    std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{seen}{rest}");
    assert!(rest.contains("interrupted; qat was not changed"), "{rest}");
    assert_eq!(s.state("qat"), qat_before);
    assert_eq!(s.leftovers("qat"), "");
    assert_eq!(
        psql(&t.url("qat"), "SELECT to_regclass('public.big') IS NULL")
            .ok()
            .trim(),
        "t"
    );
}

/// PRD gains contacts (email is a key that mail references) for masking.
fn with_contacts(s: &Setup) {
    s.t.sql(
        "prd",
        "CREATE TABLE contacts (email text PRIMARY KEY, phone text, notes text, \
                                 shout text GENERATED ALWAYS AS (upper(email)) STORED); \
         CREATE TABLE mail (id int PRIMARY KEY, to_email text REFERENCES contacts (email), subject text); \
         INSERT INTO contacts SELECT 'person' || g || '@corp.example', '+1 (555) ' || lpad(g::text, 3, '0') || '-0000', \
                'note\tnumber ' || g FROM generate_series(1, 300) g; \
         INSERT INTO mail SELECT g, 'person' || (1 + g % 300) || '@corp.example', 'hello ' || g FROM generate_series(1, 900) g;",
    );
}

const MASKING: &str = "\
tables:
  customers:
    sensitive: true
    columns:
      id: { keep: \"surrogate key\" }
      email: email
  contacts:
    sensitive: true
    columns:
      email: email
      phone: phone
      notes: { sql: \"'(' || length(notes) || ' characters)'\" }
";

/// Every value of `column` in `table`, sorted.
fn values(
    t: &TestContext,
    env: &str,
    table: &str,
    column: &str,
) -> std::collections::BTreeSet<String> {
    t.sql(env, &format!("SELECT {column} FROM {table}"))
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_masked_clone_leaks_no_masked_value_and_keeps_foreign_keys_joining() {
    let s = Setup::new();
    let t = &s.t;
    with_contacts(&s);
    t.write("masking.yaml", MASKING);
    let salt = [("PROMOTER_MASK_SALT", "a salt of some length 1")];
    let out = t
        .promoter_env(&["clone", "prd", "dev", "--mask", "masking.yaml"], &salt)
        .ok();
    assert!(
        out.contains("mail.to_email: email (from its foreign key"),
        "{out}"
    );
    // None of PRD's values of a masked column is in DEV, anywhere it was masked.
    for (table, column) in [
        ("customers", "email"),
        ("contacts", "email"),
        ("contacts", "phone"),
        ("contacts", "notes"),
        ("mail", "to_email"),
    ] {
        let (prd, dev) = (
            values(t, "prd", table, column),
            values(t, "dev", table, column),
        );
        if column != "notes" {
            assert_eq!(
                dev.len(),
                prd.len(),
                "{table}.{column}: distinct values kept"
            );
        }
        let leaked: Vec<&String> = prd.intersection(&dev).collect();
        assert!(leaked.is_empty(), "{table}.{column} leaked {leaked:?}");
    }
    assert_eq!(
        values(t, "dev", "mail", "subject"),
        values(t, "prd", "mail", "subject")
    );
    let joined = "SELECT count(*) FROM mail JOIN contacts ON contacts.email = mail.to_email";
    assert_eq!(t.sql("dev", joined), t.sql("prd", joined));
    assert_eq!(t.sql("dev", joined).trim(), "900");
    let shout = t.sql(
        "dev",
        "SELECT count(*) FROM contacts WHERE shout = upper(email)",
    );
    assert_eq!(
        shout.trim(),
        "300",
        "generated columns follow the masked ones"
    );
    let phone = t.sql("dev", "SELECT phone FROM contacts LIMIT 1");
    assert!(phone.starts_with("+") && phone.contains(") "), "{phone}");
    t.promoter(&["drift", "dev", "prd"]).ok();
    let note = t.sql(
        "dev",
        "SELECT note FROM promoter.ledger WHERE status = 'refreshed'",
    );
    let sha = promoter::changeset::Sha256Digest::of(MASKING.as_bytes()).to_hex();
    assert!(note.contains(&sha), "{note}");

    // The same salt gives the same DEV; another salt another one.
    let digest = "SELECT md5(string_agg(email || phone, ',' ORDER BY email)) FROM contacts";
    let first = t.sql("dev", digest);
    t.promoter_env(&["clone", "prd", "dev", "--mask", "masking.yaml"], &salt)
        .ok();
    assert_eq!(t.sql("dev", digest), first);
    t.promoter_env(
        &["clone", "prd", "dev", "--mask", "masking.yaml"],
        &[("PROMOTER_MASK_SALT", "another salt, as long")],
    )
    .ok();
    assert_ne!(t.sql("dev", digest), first);
    assert_eq!(s.leftovers("dev"), "");
}

#[test]
fn an_unlisted_column_of_a_sensitive_table_refuses_the_clone_before_anything_is_written() {
    let s = Setup::new();
    let t = &s.t;
    with_contacts(&s);
    let dev_before = t.sql("dev", "SELECT count(*) FROM promoter.ledger");
    let salt = [("PROMOTER_MASK_SALT", "a salt of some length 1")];
    // A column added last week, not yet in the spec.
    t.write("masking.yaml", &MASKING.replace("      phone: phone\n", ""));
    let run = t.promoter_env(&["clone", "prd", "dev", "--mask", "masking.yaml"], &salt);
    assert_eq!(run.code, 3, "{}", run.all());
    assert!(
        run.all()
            .contains("table contacts is sensitive: column phone is neither transformed nor kept"),
        "{}",
        run.all()
    );
    assert!(
        !run.all().contains("dumping"),
        "nothing was copied: {}",
        run.all()
    );
    // No salt, a wrong type, an unknown column: each named.
    t.write("masking.yaml", MASKING);
    let run = t.promoter(&["clone", "prd", "dev", "--mask", "masking.yaml"]);
    assert_eq!(run.code, 3, "{}", run.all());
    assert!(
        run.all().contains("$PROMOTER_MASK_SALT, which is not set"),
        "{}",
        run.all()
    );
    t.write(
        "masking.yaml",
        "tables:\n  orders:\n    columns:\n      total: email\n      nope: hash\n",
    );
    let run = t.promoter_env(&["clone", "prd", "dev", "--mask", "masking.yaml"], &salt);
    assert!(
        run.all()
            .contains("table orders, column total (numeric): `email` makes text"),
        "{}",
        run.all()
    );
    assert!(
        run.all().contains("table orders: no column nope"),
        "{}",
        run.all()
    );
    assert_eq!(
        t.sql("dev", "SELECT count(*) FROM promoter.ledger"),
        dev_before
    );
    assert_eq!(s.leftovers("dev"), "");
}

#[test]
fn a_masked_unique_column_that_loses_uniqueness_fails_the_clone_naming_it() {
    let s = Setup::new();
    let t = &s.t;
    t.sql(
        "prd",
        "CREATE TABLE handles (id int PRIMARY KEY, nick text UNIQUE); \
         INSERT INTO handles SELECT g, 'nick' || g FROM generate_series(1, 2000) g;",
    );
    // 2,000 distinct nicks into 1,024 names: some must collide.
    t.write(
        "masking.yaml",
        "tables:\n  handles:\n    columns:\n      nick: name\n",
    );
    let dev_before = t.sql("dev", "SELECT count(*) FROM promoter.ledger");
    let run = t.promoter_env(
        &["clone", "prd", "dev", "--mask", "masking.yaml"],
        &[("PROMOTER_MASK_SALT", "a salt of some length 1")],
    );
    assert_eq!(run.code, 4, "{}", run.all());
    assert!(run.all().contains("handles_nick_key"), "{}", run.all());
    assert!(run.all().contains("Key (nick)="), "{}", run.all());
    assert!(run.all().contains("dev was not changed"), "{}", run.all());
    assert_eq!(
        t.sql("dev", "SELECT count(*) FROM promoter.ledger"),
        dev_before
    );
    assert_eq!(s.leftovers("dev"), "");
}

#[test]
fn clone_into_an_environment_that_asks_first_needs_yes_and_changes_nothing_unasked() {
    let s = Setup::new();
    let t = &s.t;
    t.configure("qat", "confirm: true");
    let qat_before = s.state("qat");
    // No terminal to ask on, no --yes: refused before anything is copied.
    let run = t.promoter(&["clone", "prd", "qat"]);
    assert_eq!(run.code, 3, "{}", run.all());
    assert!(run.all().contains("--yes"), "{}", run.all());
    assert!(!run.all().contains("dumping"), "{}", run.all());
    assert_eq!(s.state("qat"), qat_before);
    assert_eq!(s.leftovers("qat"), "");
    t.promoter(&["clone", "prd", "qat", "--yes"]).ok();
}
