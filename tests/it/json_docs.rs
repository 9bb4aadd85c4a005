//! `docs/json.md` is the contract of `--json`: this test runs every command
//! for real, flattens each JSON document into field paths, and checks them
//! against the tables in the document, both ways.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::common::TestContext;

/// `a.b[].c` for every leaf (and every empty array or object) of `v`.
fn paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, child) in map {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(p.clone());
                paths(child, &p, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                paths(item, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

/// Section title (`promoter status`) → documented field patterns (`*` is any key).
fn documented() -> BTreeMap<String, Vec<String>> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/json.md")).unwrap();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut section = None;
    for line in text.lines() {
        if let Some(title) = line.strip_prefix("## ") {
            section = Some(title.trim_matches('`').to_owned());
            out.entry(section.clone().unwrap()).or_default();
        } else if let (Some(s), Some(rest)) = (&section, line.strip_prefix("| `")) {
            let field = rest.split('`').next().unwrap().to_owned();
            out.get_mut(s).unwrap().push(field);
        }
    }
    out
}

fn matches(pattern: &str, path: &str) -> bool {
    let (p, q): (Vec<&str>, Vec<&str>) = (pattern.split('.').collect(), path.split('.').collect());
    p.len() == q.len()
        && p.iter().zip(&q).all(|(a, b)| {
            a == b || (a.starts_with('*') && a[1..] == b[b.find('[').unwrap_or(b.len())..])
        })
}

/// Section → the documented patterns some output had.
type Seen = std::cell::RefCell<BTreeMap<String, BTreeSet<String>>>;

/// Every field of `doc` is documented under `section`; returns the patterns seen.
#[track_caller]
fn check(docs: &BTreeMap<String, Vec<String>>, section: &str, doc: &str, seen: &Seen) {
    let v: Value = serde_json::from_str(doc).unwrap_or_else(|e| panic!("{section}: {e}\n{doc}"));
    assert_eq!(v["format_version"], 1, "{section}: {doc}");
    let mut found = BTreeSet::new();
    paths(&v, "", &mut found);
    if std::env::var_os("PROMOTER_JSON_DUMP").is_some() {
        for path in &found {
            eprintln!("DUMP {section} | {path}");
        }
        return;
    }
    let patterns = docs
        .get(section)
        .unwrap_or_else(|| panic!("docs/json.md has no section `{section}`"));
    for path in &found {
        let hit = patterns.iter().find(|p| matches(p, path));
        let Some(hit) = hit else {
            panic!("{section}: field `{path}` is not documented in docs/json.md\n{doc}");
        };
        seen.borrow_mut()
            .entry(section.to_owned())
            .or_default()
            .insert(hit.clone());
    }
}

#[test]
fn every_json_document_matches_docs_json_md() {
    let docs = documented();
    let seen = Seen::default();
    let t = TestContext::with_databases();
    let run = |section: &str, args: &[&str], ok: bool| {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let r = t.promoter(&full);
        assert_eq!(r.code == 0, ok, "{args:?}: {}", r.all());
        check(&docs, section, &r.stdout, &seen);
    };
    run("promoter init", &["init"], true);
    run("promoter completions", &["completions", "bash"], true);
    let man = t.dir.path().join("man");
    run(
        "promoter man",
        &["man", "--out", man.to_str().unwrap()],
        true,
    );
    let out = t.promoter(&["--json", "new", "customers"]).ok();
    check(&docs, "promoter new", &out, &seen);
    t.write(
        "changesets/0001-customers/001-customers.sql",
        "CREATE TABLE customers (id int PRIMARY KEY);\n",
    );
    let id = t.changeset_without_transaction("steps", "CREATE TABLE a (id int);\nSELECT 1 / 0;\n");
    run("promoter seal", &["seal"], true);
    let keys = t.dir.path().join("secret-keys");
    let generated = t
        .promoter(&[
            "--json",
            "keys",
            "generate",
            "--no-passphrase",
            "--name",
            "Dev <dev@example.com>",
            "--out",
            keys.to_str().unwrap(),
        ])
        .ok();
    check(&docs, "promoter keys generate", &generated, &seen);
    let g: Value = serde_json::from_str(&generated).unwrap();
    let fpr = g["fingerprint"].as_str().unwrap();
    std::fs::copy(
        g["public"].as_str().unwrap(),
        t.path(&format!("keys/developers/{fpr}.asc")),
    )
    .unwrap();
    let (_, customer) = t.promoter_key("Customer <c@example.com>", "keys/customers");
    // The revocation certificate copied along with the public one.
    std::fs::copy(
        g["revocation"].as_str().unwrap(),
        t.path(&format!("keys/developers/{fpr}.rev.asc")),
    )
    .unwrap();
    run("promoter keys list", &["keys", "list"], true);
    run(
        "promoter sign",
        &["sign", "1", "2", "--key", g["secret"].as_str().unwrap()],
        true,
    );
    run("promoter verify", &["verify", "--for", "prd"], false);
    run(
        "promoter apply",
        &["apply", "dev", "--to", "1", "--dry-run"],
        true,
    );
    run("promoter apply", &["apply", "dev", "--to", "1"], true);
    run("error", &["apply", "dev"], false);
    run("promoter status", &["status"], true);
    run("promoter ledger", &["ledger", "dev"], true);
    run(
        "promoter resolve",
        &["resolve", "dev", &id, "--rolled-back", "--note", "undone"],
        true,
    );
    // A branch of DEV (whole again after the resolve), listed and dropped.
    run(
        "promoter branch create",
        &["branch", "create", "develop", "--from", "dev", "--yes"],
        true,
    );
    run("promoter branch list", &["branch", "list"], true);
    run(
        "promoter branch drop",
        &["branch", "drop", "develop", "--yes"],
        true,
    );
    run(
        "promoter profile save",
        &["profile", "save", "user-generated", "--from", "dev"],
        true,
    );
    run("promoter profile list", &["profile", "list"], true);
    run(
        "promoter profile verify",
        &["profile", "verify", "user-generated"],
        true,
    );
    // Restored with 0002 (which always fails) out of the work tree for a moment.
    let steps = t.path(&format!("changesets/{id}"));
    let aside = t.dir.path().join("steps-aside");
    std::fs::rename(&steps, &aside).unwrap();
    run(
        "promoter profile restore",
        &[
            "profile",
            "restore",
            "user-generated",
            "--to",
            "dev",
            "--yes",
        ],
        true,
    );
    std::fs::rename(&aside, &steps).unwrap();
    t.commit_all("two changesets");
    run(
        "promoter trust pin",
        &["trust", "pin", "qat", "--yes"],
        true,
    );
    run(
        "promoter trust pin",
        &["trust", "pin", "prd", "--yes"],
        true,
    );
    run("promoter trust show", &["trust", "show", "prd"], true);
    run("promoter promote", &["promote", "dev", "qat"], true);
    run("error", &["promote", "qat", "prd", "--dry-run"], false);
    run(
        "promoter approve",
        &["approve", "1", "--yes", "--key", customer.to_str().unwrap()],
        true,
    );
    t.commit_all("approved");
    run(
        "promoter promote",
        &["promote", "qat", "prd", "--yes"],
        true,
    );
    run("promoter audit", &["audit", "prd"], true);
    run("promoter show", &["show", "1"], true);
    // An edited row: the audit fails and lists its problems.
    t.sql(
        "dev",
        "ALTER TABLE promoter.ledger DISABLE TRIGGER ledger_append_only; UPDATE promoter.ledger SET host = 'elsewhere' WHERE seq = 1",
    );
    run("promoter audit", &["audit", "dev"], false);
    run("promoter drift", &["drift", "qat", "prd"], true);
    // PRD as a fleet: its database as target `a`, a new one as `b`.
    let b = format!("{}_fleet_b", t.databases[2].1);
    crate::common::psql(
        crate::common::admin_url(),
        &format!("DROP DATABASE IF EXISTS {b}"),
    )
    .ok();
    crate::common::psql(crate::common::admin_url(), &format!("CREATE DATABASE {b}")).ok();
    let yaml = t.read("environments.yaml").replace(
        "    database_url: ${PRD_DATABASE_URL}\n",
        &format!(
            "    targets:\n      a: ${{PRD_DATABASE_URL}}\n      b: \"{}\"\n",
            crate::common::database_url(&b)
        ),
    );
    t.write("environments.yaml", &yaml);
    t.commit_all("prd is a fleet");
    t.promoter(&["trust", "pin", "prd/b", "--yes"]).ok();
    run(
        "promoter promote (fleet)",
        &["promote", "qat", "prd", "--yes"],
        true,
    );
    // QAT refreshed from one target of the fleet.
    run("promoter clone", &["clone", "prd/a", "qat", "--yes"], true);
    run("promoter ledger", &["ledger", "qat"], true);
    // The report's data (one fleet, a refresh, a tampered DEV), and the file it writes.
    let json = t.promoter(&["report", "--format", "json"]).ok();
    check(&docs, "promoter report --format json", &json, &seen);
    let page = t.dir.path().join("report.html");
    run(
        "promoter report",
        &["report", "--out", page.to_str().unwrap()],
        true,
    );
    // 0001 ran everywhere (0002 never will): it can be folded.
    run("promoter baseline", &["baseline", "--upto", "1"], true);
    crate::common::psql(
        crate::common::admin_url(),
        &format!("DROP DATABASE IF EXISTS {b} WITH (FORCE)"),
    )
    .ok();
    if std::env::var_os("PROMOTER_JSON_DUMP").is_some() {
        return;
    }
    // Every documented field was seen at least once.
    for (section, patterns) in &docs {
        for p in patterns {
            assert!(
                seen.borrow().get(section).is_some_and(|s| s.contains(p)),
                "docs/json.md documents `{p}` under `{section}`, but no output had it"
            );
        }
    }
}
