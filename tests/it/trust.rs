//! Trust, tried as an attacker would: every attack on "what runs in PRD is
//! what the customer approved after it ran in QAT" is refused with its
//! reason, and PRD's schema and ledger stay as they were.

use std::path::PathBuf;

use crate::common::{TestContext, psql};

/// DEV → QAT done for 0001, keys for a developer and a customer, QAT's
/// receipt key, QAT and PRD pinned. Not yet approved.
struct Setup {
    t: TestContext,
    dev_key: PathBuf,
    customer_key: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let t = TestContext::with_databases();
        t.changeset(
            "customers",
            "CREATE TABLE customers (id int PRIMARY KEY, name text);\n",
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
        Self {
            t,
            dev_key,
            customer_key,
        }
    }

    fn approve(&self, ids: &[&str], extra: &[&str]) -> crate::common::Run {
        let mut args = vec!["approve"];
        args.extend_from_slice(ids);
        args.extend_from_slice(&["--yes", "--key", self.customer_key.to_str().unwrap()]);
        args.extend_from_slice(extra);
        self.t.promoter(&args)
    }

    /// Adds a changeset, applies it to DEV and signs it (not committed).
    fn another(&self, slug: &str) -> String {
        let id = self.t.changeset(
            slug,
            &format!("CREATE TABLE {} (id int);\n", slug.replace('-', "_")),
        );
        self.t.promoter(&["seal", &id]).ok();
        self.t.promoter(&["apply", "dev"]).ok();
        self.t
            .promoter(&["sign", &id, "--key", self.dev_key.to_str().unwrap()])
            .ok();
        id
    }

    /// Asserts `promote qat prd` is refused saying `why`, PRD untouched.
    #[track_caller]
    fn refused(&self, args: &[&str], why: &str) -> String {
        let before = self.prd();
        let run = self.t.promoter(args);
        assert_ne!(run.code, 0, "{args:?} was not refused:\n{}", run.all());
        let all = run.all();
        assert!(all.contains(why), "{args:?}: wanted {why:?} in\n{all}");
        assert_eq!(self.prd(), before, "PRD changed");
        all
    }

    /// PRD's tables and its ledger rows other than trust events.
    fn prd(&self) -> String {
        self.t.sql(
            "prd",
            "SELECT (SELECT coalesce(string_agg(table_name, ',' ORDER BY 1), '') FROM information_schema.tables \
             WHERE table_schema = 'public') || ' / ' || \
             (SELECT count(*) FROM promoter.ledger WHERE status <> 'trust-pinned')",
        )
    }

    /// A ledger row of `env` for `id` as exported with its receipt (exact
    /// microsecond times), for forging rows the way an attacker would.
    fn exported(&self, env: &str, id: &str) -> promoter::ledger::Entry {
        let out = self.t.promoter(&["receipt", "export", env, id]).ok();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        serde_json::from_value(v["entry"].clone()).unwrap()
    }
}

/// INSERTs `e` into `env`'s ledger by hand, as a DBA could.
fn insert_row(t: &TestContext, env: &str, e: &promoter::ledger::Entry) {
    let lit = |s: &Option<String>| {
        s.as_ref().map_or("NULL".to_owned(), |v| {
            format!("'{}'", v.replace('\'', "''"))
        })
    };
    let hex = |d: Option<promoter::changeset::Sha256Digest>| {
        d.map_or("NULL".to_owned(), |h| format!("'{h}'"))
    };
    let sql = format!(
        "INSERT INTO promoter.ledger (seq, changeset_id, bundle_hash, environment, status, signers, promoted_from, \
         promoted_from_entry, git_commit, os_user, host, db_role, started_at, finished_at, schema_before, schema_after, \
         statements, error, note, prev_hash, entry_hash, receipt) VALUES ({}, '{}', '{}', '{}', '{}', '{}', {}, {}, {}, '{}', '{}', '{}', \
         to_timestamp(0) + {} * interval '1 microsecond', to_timestamp(0) + {} * interval '1 microsecond', {}, {}, {}, NULL, NULL, '{}', '{}', {})",
        e.seq,
        e.changeset_id,
        e.bundle_hash,
        e.environment,
        e.status.as_str(),
        e.signers.replace('\'', "''"),
        lit(&e.promoted_from),
        hex(e.promoted_from_entry),
        lit(&e.git_commit),
        e.os_user,
        e.host,
        e.db_role,
        e.started_at,
        e.finished_at.unwrap_or(e.started_at),
        hex(e.schema_before),
        hex(e.schema_after),
        e.statements,
        e.prev_hash,
        e.entry_hash,
        lit(&e.receipt),
    );
    t.sql(env, &sql);
}

#[test]
fn the_legitimate_path_opens_prd_and_records_who_approved() {
    let s = Setup::new();
    s.approve(&["1"], &[]).ok();
    s.t.commit_all("approved");
    let out = s.t.promoter(&["promote", "qat", "prd", "--yes"]).ok();
    assert!(out.contains("applied 0001-customers to prd"), "{out}");
    let ledger = s.t.promoter(&["ledger", "prd"]).ok();
    assert!(ledger.contains("(approved)"), "{ledger}");
    s.t.promoter(&["audit", "qat"]).ok();
    s.t.promoter(&["audit", "prd"]).ok();
}

#[test]
fn a_commit_that_lowers_prds_require_on_any_rev_decides_nothing() {
    let s = Setup::new();
    let t = &s.t;
    t.git(&["checkout", "-q", "-b", "unreviewed"]).ok();
    t.write(
        "environments.yaml",
        &t.read("environments.yaml").replace(
            "require: { developer: 1, customer: 1 }",
            "require: { developer: 1 }",
        ),
    );
    t.commit_all("customers are slow");
    let all = s.refused(
        &["promote", "qat", "prd", "--yes", "--rev", "unreviewed"],
        "0001-customers: needs 1 customer approval",
    );
    assert!(
        all.contains("git's trust policy for prd differs from the pinned one"),
        "{all}"
    );
    assert!(all.contains("- require: customer=1 developer=1"), "{all}");
}

#[test]
fn the_attackers_own_certificate_in_keys_customers_counts_for_nothing() {
    let s = Setup::new();
    let t = &s.t;
    let (_, mallory) = t.promoter_key("Mallory <mallory@example.com>", "keys/customers");
    t.commit_all("mallory is a customer now");
    t.promoter(&["approve", "1", "--yes", "--key", mallory.to_str().unwrap()])
        .ok();
    t.commit_all("approved by mallory");
    s.refused(&["promote", "qat", "prd", "--yes"], "unknown signer");
}

#[test]
fn a_commit_that_feeds_prd_from_dev_is_refused_by_the_pinned_source() {
    let s = Setup::new();
    let t = &s.t;
    t.write(
        "environments.yaml",
        &t.read("environments.yaml")
            .replace("    promote_from: qat\n", "    promote_from: dev\n"),
    );
    t.commit_all("skip qat");
    s.refused(
        &["promote", "dev", "prd", "--yes"],
        "prd's pinned policy says it is fed from qat, not from dev",
    );
}

#[test]
fn replace_refs_are_refused_before_anything_is_read() {
    let s = Setup::new();
    let t = &s.t;
    t.write("README", "x\n");
    t.commit_all("second commit");
    t.git(&["replace", "HEAD", "HEAD~1"]).ok();
    s.refused(
        &["promote", "qat", "prd", "--yes"],
        "the repository has replace refs (refs/replace/",
    );
    t.git(&["replace", "-d", "HEAD"]).ok();
    std::fs::write(t.root().join(".git/info/grafts"), "").unwrap();
    s.refused(
        &["promote", "qat", "prd", "--yes"],
        "the repository has grafts",
    );
}

#[test]
fn a_look_alike_qat_holding_a_copy_of_devs_ledger_has_no_receipts() {
    let s = Setup::new();
    let t = &s.t;
    s.approve(&["1"], &[]).ok();
    t.commit_all("approved");
    // A database with DEV's ledger, behind a committed URL.
    let fake = format!("{}_fake", t.databases[1].1);
    psql(
        crate::common::admin_url(),
        &format!("CREATE DATABASE {fake} TEMPLATE {}", t.databases[0].1),
    )
    .ok();
    let url = crate::common::database_url(&fake);
    t.write(
        "environments.yaml",
        &t.read("environments.yaml").replace(
            "database_url: ${QAT_DATABASE_URL}",
            &format!("database_url: \"{url}\""),
        ),
    );
    t.commit_all("qat moved");
    s.refused(
        &["promote", "qat", "prd", "--yes"],
        "qat's ledger row has no valid receipt",
    );
    psql(
        crate::common::admin_url(),
        &format!("DROP DATABASE {fake} WITH (FORCE)"),
    )
    .ok();
}

#[test]
fn a_row_inserted_into_qats_ledger_with_a_recomputed_hash_opens_nothing() {
    let s = Setup::new();
    let t = &s.t;
    let id = s.another("never-in-qat");
    t.commit_all("second changeset");
    // Forge QAT's row for 0002 from its row for 0001, chained and hashed
    // exactly as promoter would, but without QAT's receipt key.
    let mut row = s.exported("qat", "1");
    let head = row.clone();
    row.seq = head.seq + 1;
    row.changeset_id = id.clone();
    let sums = std::fs::read(t.path(&format!("changesets/{id}/SHA256SUMS"))).unwrap();
    row.bundle_hash = promoter::changeset::Sha256Digest::of(&sums);
    row.prev_hash = head.entry_hash;
    row.receipt = None;
    row.entry_hash = row.compute_hash();
    insert_row(t, "qat", &row);
    // The hash chain alone would pass; the receipts do not.
    let audit = t.promoter(&["audit", "qat"]).fails();
    assert!(
        audit.contains(&format!(
            "ledger row #{}: no valid receipt: the row is not signed",
            row.seq
        )),
        "{audit}"
    );
    let listed = t.promoter(&["ledger", "qat"]).ok();
    assert!(
        listed.contains(&format!(
            "#{} PROBLEM: not signed by the environment's receipt key",
            row.seq
        )),
        "{listed}"
    );
    let approve = s.approve(&[&id], &[]).fails();
    assert!(approve.contains("has no receipt"), "{approve}");
    s.refused(
        &["promote", "qat", "prd", "--yes", "--to", &id],
        "has no valid receipt",
    );
}

#[test]
fn a_receipt_over_a_row_edited_later_does_not_verify() {
    let s = Setup::new();
    let t = &s.t;
    s.approve(&["1"], &[]).ok();
    t.commit_all("approved");
    let row = s.exported("qat", "1");
    // Edit the row and recompute its hash (it is the last row, so the chain still verifies).
    let mut edited = row.clone();
    edited.os_user = "someone-else".into();
    edited.entry_hash = edited.compute_hash();
    t.sql(
        "qat",
        &format!(
            "ALTER TABLE promoter.ledger DISABLE TRIGGER ledger_append_only; \
             UPDATE promoter.ledger SET os_user = 'someone-else', entry_hash = '{}' WHERE seq = {}; \
             ALTER TABLE promoter.ledger ENABLE TRIGGER ledger_append_only",
            edited.entry_hash, row.seq
        ),
    );
    let all = s.refused(
        &["promote", "qat", "prd", "--yes"],
        "qat's ledger row has no valid receipt",
    );
    assert!(all.contains("BAD signature"), "{all}");
    let audit = t.promoter(&["audit", "qat"]).fails();
    assert!(audit.contains("no valid receipt"), "{audit}");
}

#[test]
fn an_approval_resting_on_a_qat_that_was_rebuilt_counts_for_nothing() {
    let s = Setup::new();
    let t = &s.t;
    s.approve(&["1"], &[]).ok();
    t.commit_all("approved");
    // QAT is rebuilt and the changeset promoted again: a new ledger entry.
    let qat = &t.databases[1].1;
    psql(
        crate::common::admin_url(),
        &format!("DROP DATABASE {qat} WITH (FORCE)"),
    )
    .ok();
    psql(
        crate::common::admin_url(),
        &format!("CREATE DATABASE {qat}"),
    )
    .ok();
    t.pin("qat");
    t.promoter(&["promote", "dev", "qat"]).ok();
    s.refused(
        &["promote", "qat", "prd", "--yes"],
        "was the test environment rebuilt?",
    );
}

#[test]
fn an_approval_for_prd_does_not_open_prd2() {
    let s = Setup::new();
    let t = &s.t;
    let prd2 = format!("{}_2", t.databases[2].1);
    psql(
        crate::common::admin_url(),
        &format!("CREATE DATABASE {prd2}"),
    )
    .ok();
    t.write(
        "environments.yaml",
        &t.read("environments.yaml").replace(
            "roles:",
            &format!(
                "  prd2:\n    database_url: \"{}\"\n    promote_from: qat\n    require: {{ developer: 1, customer: 1 }}\nroles:",
                crate::common::database_url(&prd2)
            ),
        ),
    );
    t.commit_all("a second production");
    t.pin("prd2");
    s.approve(&["1"], &["--for", "prd"]).ok();
    t.commit_all("approved for prd");
    let run = t.promoter(&["promote", "qat", "prd2", "--yes"]);
    assert_ne!(run.code, 0);
    assert!(run.all().contains("opens prd only"), "{}", run.all());
    t.promoter(&["promote", "qat", "prd", "--yes"]).ok();
    psql(
        crate::common::admin_url(),
        &format!("DROP DATABASE {prd2} WITH (FORCE)"),
    )
    .ok();
}

#[test]
fn one_person_in_two_roles_is_a_configuration_error_everywhere() {
    let s = Setup::new();
    let t = &s.t;
    // Carol: one certificate in each keyring, one e-mail.
    t.promoter_key("Carol <carol@example.com>", "keys/developers");
    t.promoter_key("Carol C. <Carol@Example.com>", "keys/customers");
    t.commit_all("carol twice");
    for args in [
        vec!["keys", "list"],
        vec!["verify"],
        vec!["trust", "pin", "prd", "--yes"],
        vec!["promote", "qat", "prd", "--yes"],
    ] {
        let run = t.promoter(&args);
        assert_ne!(run.code, 0, "{args:?}: {}", run.all());
        assert!(
            run.all()
                .contains("carol@example.com has certificates in two role keyrings"),
            "{args:?}: {}",
            run.all()
        );
    }
}

#[test]
fn two_certificates_of_one_person_count_once() {
    let s = Setup::new();
    let t = &s.t;
    let (_, second) = t.promoter_key("Carl again <CARL@example.com>", "keys/customers");
    t.write(
        "environments.yaml",
        &t.read("environments.yaml").replace(
            "require: { developer: 1, customer: 1 }",
            "require: { developer: 1, customer: 2 }",
        ),
    );
    t.commit_all("two customers needed");
    t.promoter(&[
        "trust",
        "pin",
        "prd",
        "--yes",
        "--break-glass",
        "--reason",
        "test setup",
    ])
    .ok();
    s.approve(&["1"], &[]).ok();
    t.promoter(&["approve", "1", "--yes", "--key", second.to_str().unwrap()])
        .ok();
    t.commit_all("approved twice by carl");
    s.refused(
        &["promote", "qat", "prd", "--yes"],
        "needs 2 customer approvals that match this bundle, its test and this environment, has 1",
    );
}

#[test]
fn a_dsa_signature_counts_for_nothing() {
    let t = TestContext::new();
    let id = t.changeset("x", "SELECT 1;\n");
    t.promoter(&["seal"]).ok();
    std::fs::create_dir_all(t.path(&format!("changesets/{id}/signatures"))).unwrap();
    // gpg still makes DSA keys on request; promoter's floor refuses them.
    let old = t.gpg(&[
        "--quick-gen-key",
        "Dsa <dsa@example.com>",
        "dsa2048",
        "sign",
        "1y",
    ]);
    assert_eq!(old.code, 0, "{}", old.all());
    let dsa_fpr = t.gpg_fingerprint("Dsa <dsa@example.com>");
    t.trust_gpg_key(&dsa_fpr, "keys/developers");
    t.gpg(&[
        "--local-user",
        &dsa_fpr,
        "--armor",
        "--detach-sign",
        "--output",
        &format!("changesets/{id}/signatures/developer-dsa.asc"),
        &format!("changesets/{id}/SHA256SUMS"),
    ])
    .ok();
    let out = t.promoter(&["verify", "--for", "qat"]).fails();
    assert!(
        out.contains("weak algorithm: DSA keys count for nothing"),
        "{out}"
    );
    assert!(
        out.contains("needs 1 developer signature from distinct people, has 0"),
        "{out}"
    );
}

#[test]
fn an_expired_approval_or_one_for_another_changeset_counts_for_nothing() {
    let s = Setup::new();
    let t = &s.t;
    let id = s.another("second");
    t.commit_all("second");
    t.promoter(&["promote", "dev", "qat"]).ok();
    s.approve(&["1"], &["--expires", "1s"]).ok();
    // 0001's approval copied into 0002.
    let from = t.path("changesets/0001-customers/signatures");
    let to = t.path(&format!("changesets/{id}/signatures"));
    for e in std::fs::read_dir(&from).unwrap() {
        let p = e.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("approval-")
        {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
    t.commit_all("approved, briefly");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let all = s.refused(
        &["promote", "qat", "prd", "--yes"],
        "0001-customers: needs 1 customer approval",
    );
    assert!(all.contains("expired at"), "{all}");
    assert!(all.contains("approves changeset 0001-customers"), "{all}");
}

#[test]
fn a_receipt_by_a_key_prd_did_not_pin_counts_for_nothing() {
    let s = Setup::new();
    let t = &s.t;
    s.approve(&["1"], &[]).ok();
    // QAT's receipt key is swapped for another, committed as if legitimate.
    let out = t
        .promoter(&[
            "--json",
            "keys",
            "generate",
            "--no-passphrase",
            "--name",
            "Other QAT <q2@example.com>",
            "--out",
            t.dir.path().join("q2").to_str().unwrap(),
        ])
        .ok();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    std::fs::copy(
        v["public"].as_str().unwrap(),
        t.path("keys/environments/qat.asc"),
    )
    .unwrap();
    let id = s.another("later");
    t.commit_all("a new qat key");
    let other = v["secret"].as_str().unwrap().to_owned();
    let promoted = t.promoter_env(&["promote", "dev", "qat"], &[("QAT_RECEIPT_KEY", &other)]);
    assert_eq!(promoted.code, 0, "{}", promoted.all());
    t.promoter(&[
        "approve",
        &id,
        "--yes",
        "--key",
        s.customer_key.to_str().unwrap(),
    ])
    .ok();
    t.commit_all("approved");
    let all = s.refused(
        &["promote", "qat", "prd", "--yes", "--to", &id],
        "no valid receipt",
    );
    assert!(all.contains("not a receipt key pinned for qat"), "{all}");
}

#[test]
fn a_qat_whose_receipt_key_is_not_the_committed_one_refuses_to_write() {
    let s = Setup::new();
    let t = &s.t;
    s.another("later");
    t.commit_all("later");
    let out = t
        .promoter(&[
            "--json",
            "keys",
            "generate",
            "--no-passphrase",
            "--name",
            "Stray <s@example.com>",
            "--out",
            t.dir.path().join("stray").to_str().unwrap(),
        ])
        .ok();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let run = t.promoter_env(
        &["promote", "dev", "qat"],
        &[("QAT_RECEIPT_KEY", v["secret"].as_str().unwrap())],
    );
    assert_eq!(run.code, 3, "{}", run.all());
    assert!(
        run.stderr
            .contains("refusing to write rows nobody can check"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_repin_needs_the_pinned_peoples_signatures_and_break_glass_is_always_reported() {
    let s = Setup::new();
    let t = &s.t;
    let (_, second_dev) = t.promoter_key("Dora <dora@example.com>", "keys/developers");
    t.commit_all("a second developer");
    let unsigned = t.promoter(&["trust", "pin", "prd", "--yes"]);
    assert_eq!(unsigned.code, 3, "{}", unsigned.all());
    assert!(
        unsigned.stderr.contains("the new policy differs from the pinned one and is not signed by the people pinned now: needs 1 customer (has 0), 1 developer (has 0)"),
        "{}",
        unsigned.stderr
    );
    // The new developer alone cannot sign herself in.
    t.promoter(&[
        "trust",
        "sign",
        "prd",
        "--key",
        second_dev.to_str().unwrap(),
    ])
    .ok();
    t.commit_all("dora signs");
    let refused = t.promoter(&["trust", "pin", "prd", "--yes"]);
    assert_eq!(refused.code, 3, "{}", refused.all());
    // The pinned developer (with promoter) and the pinned customer (with plain gpg) do.
    t.promoter(&["trust", "sign", "prd", "--key", s.dev_key.to_str().unwrap()])
        .ok();
    let customer_cert = std::fs::read_dir(t.path("keys/customers"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "asc"))
        .unwrap();
    t.gpg(&["--import", s.customer_key.to_str().unwrap()]).ok();
    let fpr = customer_cert
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    t.gpg(&[
        "--local-user",
        &fpr,
        "--armor",
        "--detach-sign",
        "--output",
        &format!("policy/prd/customer-{fpr}.asc"),
        "policy/prd/policy.txt",
    ])
    .ok();
    t.commit_all("signed by the pinned people");
    let pinned = t.pin("prd");
    assert!(
        pinned.contains("pinned prd's new policy (signed"),
        "{pinned}"
    );
    // Break glass: recorded, and every audit says so.
    t.write(
        "environments.yaml",
        &t.read("environments.yaml").replace(
            "require: { developer: 1, customer: 1 }",
            "require: { developer: 2, customer: 1 }",
        ),
    );
    t.commit_all("two developers");
    t.promoter(&[
        "trust",
        "pin",
        "prd",
        "--yes",
        "--break-glass",
        "--reason",
        "carl lost his key",
    ])
    .ok();
    let audit = t.promoter(&["audit", "prd"]);
    assert_eq!(audit.code, 0, "{}", audit.all());
    let audit = audit.all();
    assert!(
        audit.contains("re-pinned by BREAK GLASS") && audit.contains("carl lost his key"),
        "{audit}"
    );
    let show = t.promoter(&["trust", "show", "prd"]).ok();
    assert!(
        show.contains("#1 first-use")
            && show.contains("#2 signed")
            && show.contains("#3 break-glass"),
        "{show}"
    );
}

#[test]
fn a_controlled_environment_without_a_pin_refuses_everything() {
    let t = TestContext::with_databases();
    t.changeset("a", "CREATE TABLE a (id int);\n");
    t.promoter(&["seal"]).ok();
    let (_, key) = t.promoter_key("Dev <dev@example.com>", "keys/developers");
    t.promoter(&["apply", "dev"]).ok();
    t.promoter(&["sign", "1", "--key", key.to_str().unwrap()])
        .ok();
    t.commit_all("a");
    let run = t.promoter(&["promote", "dev", "qat"]);
    assert_eq!(run.code, 3, "{}", run.all());
    assert!(
        run.stderr
            .contains("qat has `require` but no pinned trust policy"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("promoter trust pin qat"),
        "{}",
        run.stderr
    );
    assert_eq!(t.sql("qat", "SELECT to_regclass('a') IS NULL"), "t\n");
    // Pinning PRD needs QAT's receipts: without a receipt certificate it is refused.
    std::fs::remove_file(t.path("keys/environments/qat.asc")).unwrap();
    t.commit_all("no receipts");
    let run = t.promoter(&["trust", "pin", "prd", "--yes"]);
    assert_eq!(run.code, 3, "{}", run.all());
    assert!(
        run.stderr.contains("rest on qat's signed receipts"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_customer_without_qat_credentials_approves_from_an_exported_receipt() {
    let s = Setup::new();
    let t = &s.t;
    let file = t.dir.path().join("receipt.json");
    t.promoter(&[
        "receipt",
        "export",
        "qat",
        "1",
        "--out",
        file.to_str().unwrap(),
    ])
    .ok();
    // QAT is unreachable from the customer's desk.
    let approved = t.promoter_env(
        &[
            "approve",
            "1",
            "--yes",
            "--receipt",
            file.to_str().unwrap(),
            "--key",
            s.customer_key.to_str().unwrap(),
        ],
        &[("QAT_DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")],
    );
    assert_eq!(approved.code, 0, "{}", approved.all());
    t.commit_all("approved offline");
    t.promoter(&["promote", "qat", "prd", "--yes"]).ok();
    // A tampered receipt file is refused.
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("\"os_user\": \"", "\"os_user\": \"x");
    std::fs::write(&file, text).unwrap();
    let refused = t.promoter(&[
        "approve",
        "1",
        "--yes",
        "--receipt",
        file.to_str().unwrap(),
        "--key",
        s.customer_key.to_str().unwrap(),
    ]);
    assert_eq!(refused.code, 3, "{}", refused.all());
    assert!(
        refused.stderr.contains("does not match its entry_hash"),
        "{}",
        refused.stderr
    );
}

#[test]
fn qat_can_sign_its_receipts_through_gpg() {
    let t = TestContext::with_databases();
    let qat = t.gpg_key("QAT via gpg <qat-gpg@example.com>", &[]);
    let cert = t.gpg(&["--armor", "--export", &qat]).ok();
    t.write("keys/environments/qat.asc", &cert);
    t.changeset("a", "CREATE TABLE a (id int);\n");
    t.promoter(&["seal"]).ok();
    let (_, key) = t.promoter_key("Dev <dev@example.com>", "keys/developers");
    t.promoter(&["apply", "dev"]).ok();
    t.promoter(&["sign", "1", "--key", key.to_str().unwrap()])
        .ok();
    t.commit_all("a");
    let via_gpg = format!("gpg:{qat}");
    let run = t.promoter_env(
        &["trust", "pin", "qat", "--yes"],
        &[("QAT_RECEIPT_KEY", &via_gpg)],
    );
    assert_eq!(run.code, 0, "{}", run.all());
    let run = t.promoter_env(&["promote", "dev", "qat"], &[("QAT_RECEIPT_KEY", &via_gpg)]);
    assert_eq!(run.code, 0, "{}", run.all());
    let out = t.promoter(&["receipt", "export", "qat", "1"]).ok();
    assert!(out.contains("BEGIN PGP SIGNATURE"), "{out}");
    t.promoter(&["audit", "qat"]).ok();
}

#[test]
fn audit_finds_upstream_entries_that_downstream_rows_were_promoted_from() {
    let s = Setup::new();
    let t = &s.t;
    s.approve(&["1"], &[]).ok();
    t.commit_all("approved");
    t.promoter(&["promote", "qat", "prd", "--yes"]).ok();
    // A DBA removes QAT's newest row; an auditor on another machine has no checkpoint.
    t.sql(
        "qat",
        "SET session_replication_role = replica; DELETE FROM promoter.ledger WHERE seq = (SELECT max(seq) FROM promoter.ledger)",
    );
    let fresh = t.dir.path().join("auditor-state");
    let audit = t.promoter_env(
        &["audit", "qat"],
        &[("PROMOTER_STATE_DIR", fresh.to_str().unwrap())],
    );
    assert_eq!(audit.code, 1, "{}", audit.all());
    assert!(
        audit
            .stderr
            .contains("prd's ledger row #2 was promoted from entry")
            && audit.stderr.contains("rows were deleted"),
        "{}",
        audit.stderr
    );
}

#[test]
fn an_oversized_receipt_in_a_ledger_row_is_refused_without_parsing_it() {
    let s = Setup::new();
    let t = &s.t;
    t.sql(
        "qat",
        "ALTER TABLE promoter.ledger DISABLE TRIGGER ledger_append_only; \
         UPDATE promoter.ledger SET receipt = repeat('x', 200000) WHERE changeset_id = '0001-customers'; \
         ALTER TABLE promoter.ledger ENABLE TRIGGER ledger_append_only",
    );
    let audit = t.promoter(&["audit", "qat"]);
    assert_eq!(audit.code, 1, "{}", audit.all());
    assert!(
        audit
            .stderr
            .contains("receipt: 200000 bytes, more than the 65536 bytes allowed"),
        "{}",
        audit.stderr
    );
}

/// approve and trust pin ask before signing or pinning; without a terminal
/// and without --yes they sign and pin nothing.
#[test]
fn approve_and_trust_pin_ask_first_and_do_nothing_unasked() {
    let s = Setup::new();
    let t = &s.t;
    let run = t.promoter(&["approve", "1", "--key", s.customer_key.to_str().unwrap()]);
    assert_eq!(run.code, 3, "{}", run.all());
    assert!(
        run.stdout.contains("tested in    qat"),
        "shows what is approved first: {}",
        run.stdout
    );
    // It starts from `promoter show`'s view: who signed it, where it ran.
    for want in [
        "  signatures\n    developer  Dev <dev@example.com>",
        "receipt verified",
        "prd        not run",
    ] {
        assert!(run.stdout.contains(want), "{want:?} in\n{}", run.stdout);
    }
    assert!(
        run.stderr.contains("no terminal to ask on") && run.stderr.contains("--yes"),
        "{}",
        run.stderr
    );
    let approvals: Vec<String> =
        crate::common::names(&t.path("changesets/0001-customers/signatures"))
            .into_iter()
            .filter(|n| n.starts_with("approval-"))
            .collect();
    assert!(approvals.is_empty(), "{approvals:?}");
    t.promoter_key("Dora <dora@example.com>", "keys/developers");
    t.commit_all("another developer");
    let pin = t.promoter(&["trust", "pin", "prd", "--break-glass", "--reason", "test"]);
    assert_eq!(pin.code, 3, "{}", pin.all());
    assert!(
        pin.stderr.contains("no terminal to ask on"),
        "{}",
        pin.stderr
    );
    let show = t.promoter(&["trust", "show", "prd"]).ok();
    assert!(!show.contains("break-glass"), "nothing was pinned: {show}");
}

#[test]
fn an_approval_signed_but_not_committed_is_named_in_the_refusal() {
    let s = Setup::new();
    s.approve(&["1"], &[]).ok();
    // Not committed: promote reads git.
    let all = s.refused(&["promote", "qat", "prd", "--yes"], "customer");
    assert!(
        all.contains(
            "changesets/0001-customers/signatures/ holds 2 signature files not committed at HEAD"
        ),
        "{all}"
    );
    assert!(all.contains("promote reads git"), "{all}");
    s.t.commit_all("approved");
    s.t.promoter(&["promote", "qat", "prd", "--yes"]).ok();
}

#[test]
fn show_gives_the_customer_files_signatures_receipts_and_the_sql() {
    let s = Setup::new();
    s.approve(&["1"], &[]).ok();
    s.t.commit_all("approved");
    s.t.promoter(&["promote", "qat", "prd", "--yes"]).ok();
    let out = s.t.promoter(&["show", "1"]).ok();
    for want in [
        "0001-customers",
        "001-customers.sql",
        "1 statements",
        "developer",
        "Dev <dev@example.com>",
        "customer",
        "good",
        "dev        #1 applied",
        "prd        #2 applied",
        "receipt verified (",
        "── 001-customers.sql ──",
        "CREATE TABLE customers",
    ] {
        assert!(out.contains(want), "wanted {want:?} in\n{out}");
    }
    let brief = s.t.promoter(&["show", "customers", "--no-sql"]).ok();
    assert!(!brief.contains("CREATE TABLE"), "{brief}");
    let err = s.t.promoter(&["show", "9"]).fails();
    assert!(err.contains('9'), "{err}");
}

#[test]
fn a_refreshed_row_inserted_into_qat_by_hand_has_no_receipt_and_audit_says_so() {
    let s = Setup::new();
    let t = &s.t;
    // A DBA poses as a refresh, hoping rows before it stop needing receipts.
    let head = s.exported("qat", "1");
    let mut forged = head.clone();
    forged.changeset_id = promoter::ledger::REFRESH_EVENT.into();
    forged.status = promoter::ledger::Status::Refreshed;
    forged.promoted_from = Some("prd".into());
    forged.note = Some(r#"{"replaced":null,"masking_sha256":null,"tables":0,"rows":0}"#.into());
    forged.receipt = None;
    forged.seal(Some(&head));
    insert_row(t, "qat", &forged);
    let out = t.promoter(&["audit", "qat"]).fails();
    assert!(
        out.contains(&format!("ledger row #{}: no valid receipt", forged.seq)),
        "{out}"
    );
}

/// A pinned policy belongs to the environment it was pinned for: copied by
/// hand into another environment's database (a restore of QAT's dump into
/// PRD, say), it opens nothing there.
#[test]
fn a_policy_copied_from_another_environments_database_opens_nothing() {
    let s = Setup::new();
    let t = &s.t;
    s.approve(&["1"], &[]).ok();
    t.commit_all("approved");
    // PRD's own pins replaced by QAT's, rows and all, as a copy would bring.
    let rows = crate::common::psql(&t.url("qat"), "COPY promoter.policy TO STDOUT").ok();
    let mut copy = std::process::Command::new("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            &t.url("prd"),
            "-c",
            "ALTER TABLE promoter.policy DISABLE TRIGGER policy_append_only; DELETE FROM promoter.policy; \
             ALTER TABLE promoter.policy ENABLE TRIGGER policy_append_only",
            "-c",
            "COPY promoter.policy FROM STDIN",
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    copy.stdin
        .take()
        .unwrap()
        .write_all(rows.as_bytes())
        .unwrap();
    assert!(copy.wait().unwrap().success());
    let err = s.refused(
        &["promote", "qat", "prd", "--yes"],
        "the pinned policy is qat's, not prd's",
    );
    assert!(err.contains("another environment's trust"), "{err}");
}
