//! `promoter report`: the page a customer or an auditor reads, checked as a
//! person sees it (headless Chromium renders it), and as an attacker would
//! try it (text that looks like markup stays text; tampering and drift show).

use std::path::{Path, PathBuf};

use crate::common::TestContext;

/// A description (and a failure) that would be markup if not escaped.
const HOSTILE: &str = "<script>alert('owned')</script> & <img src=x onerror=alert(1)>";

/// 0001 through DEV, QAT (approved by the customer) and PRD.
fn promoted() -> TestContext {
    let t = TestContext::with_databases();
    let id = t.changeset(
        "customers",
        "CREATE TABLE customers (id int PRIMARY KEY, name text);\n",
    );
    t.write(
        &format!("changesets/{id}/changeset.yaml"),
        &format!("id: {id}\ndescription: \"{HOSTILE}\"\ntransaction: per-changeset\n"),
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
    t.promoter(&[
        "approve",
        "1",
        "--yes",
        "--key",
        customer_key.to_str().unwrap(),
    ])
    .ok();
    t.commit_all("approved");
    t.promoter(&["promote", "qat", "prd", "--yes"]).ok();
    t
}

/// The headless Chromium `scripts/test` installs (or `$PROMOTER_TEST_CHROMIUM`).
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("PROMOTER_TEST_CHROMIUM") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "headless Chromium not found: `make test` installs it (Debian's chromium package), or set PROMOTER_TEST_CHROMIUM"
    );
}

/// Runs Chromium headless on `page`, with a fresh profile and nothing that
/// reaches a network; returns stdout.
fn browse(t: &TestContext, page: &Path, args: &[&str]) -> String {
    let profile = tempfile::tempdir_in(t.dir.path()).unwrap();
    let out = std::process::Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The text a reader sees: the rendered DOM without its tags.
fn visible_text(dom: &str) -> String {
    let body = &dom[dom.find("<body").unwrap_or(0)..];
    let mut text = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn the_report_page_shows_the_pipeline_as_a_person_sees_it_and_escapes_what_it_shows() {
    let t = promoted();
    let page = t.dir.path().join("report.html");
    let out = t
        .promoter(&["--json", "report", "--out", page.to_str().unwrap()])
        .ok();
    let written: serde_json::Value = serde_json::from_str(&out).unwrap();
    let hash = written["data_sha256"].as_str().unwrap().to_owned();
    assert_eq!(written["all_good"], true, "{out}");

    // The JSON's sha256 is the figure every format prints.
    let json = t.promoter(&["report", "--format", "json"]).ok();
    assert_eq!(
        promoter::changeset::Sha256Digest::of(json.as_bytes()).to_hex(),
        hash
    );
    let data: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(data["columns"], serde_json::json!(["DEV", "QAT", "PRD"]));
    assert_eq!(data["changesets"][0]["description"], HOSTILE);
    let runs = data["changesets"][0]["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3, "{json}");
    let qat = runs.iter().find(|r| r["environment"] == "qat").unwrap();
    assert!(
        qat["receipt"]["text"]
            .as_str()
            .unwrap()
            .starts_with("verified"),
        "{qat}"
    );

    let dom = browse(&t, &page, &["--dump-dom"]);
    // No element the data could have made: only the page's own markup.
    assert!(!dom.contains("<script"), "{dom}");
    assert!(!dom.contains("<img"), "{dom}");
    let text = visible_text(&dom);
    for want in [
        "promoter report: project",
        "Every environment reached, every ledger audited intact, no schema drift.",
        "0001-customers",
        "DEV QAT PRD",
        "applied",
        "same schema as qat",
        "intact",
        "carl@example.com",
        "opens prd",
        &hash,
    ] {
        assert!(text.contains(want), "{want:?} not shown in:\n{text}");
    }
    // The hostile description is shown, as the characters it is.
    assert!(
        dom.contains("&lt;script&gt;alert('owned')&lt;/script&gt; &amp; &lt;img src=x"),
        "{dom}"
    );

    // As printed on screen; kept for a person to look at.
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/report.png");
    let _ = std::fs::remove_file(&shot);
    browse(
        &t,
        &page,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,2000",
        ],
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{}",
        png.len()
    );

    // The Markdown summary: the same hash, and nothing that renders as markup.
    let md = t.promoter(&["report", "--format", "md"]).ok();
    assert!(md.contains(&format!("Data sha256 `{hash}`")), "{md}");
    assert!(
        md.contains("\\<script\\>alert('owned')\\</script\\> \\& \\<img"),
        "{md}"
    );
    assert!(md.contains("| 0001-customers |"), "{md}");

    // Equal state, equal hash: a second run (later) prints the same figure.
    let again = t.promoter(&["report", "--format", "json"]).ok();
    assert_eq!(again, json);
}

#[test]
fn the_report_shows_a_tampered_ledger_drift_and_an_unreachable_environment() {
    let t = promoted();
    // Someone edits PRD's ledger, and changes QAT's schema by hand.
    t.sql(
        "prd",
        "ALTER TABLE promoter.ledger DISABLE TRIGGER ledger_append_only; \
         UPDATE promoter.ledger SET host = '<b>elsewhere</b>' WHERE seq = 2; \
         ALTER TABLE promoter.ledger ENABLE TRIGGER ledger_append_only",
    );
    t.sql("qat", "CREATE TABLE sneaky (id int)");
    // And QAT's row of 0001 rewritten: its receipt no longer verifies.
    t.sql(
        "qat",
        "ALTER TABLE promoter.ledger DISABLE TRIGGER ledger_append_only; \
         UPDATE promoter.ledger SET os_user = 'someone' WHERE changeset_id = '0001-customers'; \
         ALTER TABLE promoter.ledger ENABLE TRIGGER ledger_append_only",
    );
    let page = t.dir.path().join("report.html");
    let run = t.promoter_env(
        &["--json", "report", "--out", page.to_str().unwrap()],
        &[(
            "DEV_DATABASE_URL",
            "postgresql:///nowhere?host=/nonexistent",
        )],
    );
    // Showing problems is the report's job, not a failure.
    let out = run.ok();
    let written: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(written["all_good"], false, "{out}");

    let json = t
        .promoter_env(
            &["report", "--format", "json"],
            &[(
                "DEV_DATABASE_URL",
                "postgresql:///nowhere?host=/nonexistent",
            )],
        )
        .ok();
    let data: serde_json::Value = serde_json::from_str(&json).unwrap();
    let env = |name: &str| {
        data["environments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap()
            .clone()
    };
    assert!(env("dev")["unreachable"].is_string(), "{json}");
    assert_eq!(data["matrix"][0]["cells"][0]["state"], "unreachable");
    let prd = env("prd");
    assert_eq!(prd["audit"]["ok"], false, "{prd}");
    assert!(prd["problems"][0].as_str().unwrap().contains("#2"), "{prd}");
    assert!(
        prd["ledger"][1]["problem"]
            .as_str()
            .unwrap()
            .contains("chain broken"),
        "{prd}"
    );
    let qat = env("qat");
    assert_eq!(qat["drift"]["ok"], false, "{qat}");
    assert!(
        qat["drift"]["text"]
            .as_str()
            .unwrap()
            .contains("changed outside promoter"),
        "{qat}"
    );
    assert_eq!(prd["source"]["ok"], false, "{prd}");
    let qat_run = data["changesets"][0]["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["environment"] == "qat")
        .unwrap()
        .clone();
    assert_eq!(qat_run["receipt"]["ok"], false, "{qat_run}");

    let text = visible_text(&browse(&t, &page, &["--dump-dom"]));
    for want in [
        "Attention needed",
        "unreachable:",
        "changed outside promoter",
        "chain broken",
        "PROBLEM:",
        "<b>elsewhere</b>",
    ] {
        assert!(text.contains(want), "{want:?} not shown in:\n{text}");
    }
}

#[test]
fn report_json_needs_a_file_and_a_failed_write_keeps_the_old_report() {
    let t = TestContext::with_databases();
    let err = t.promoter(&["--json", "report"]).fails();
    assert!(err.contains("--out FILE"), "{err}");
    let data = t.promoter(&["--json", "report", "--format", "json"]).ok();
    assert_eq!(data, t.promoter(&["report", "--format", "json"]).ok());
    let page = t.dir.path().join("old.html");
    std::fs::write(&page, "the old report").unwrap();
    let err = t
        .promoter(&[
            "report",
            "--out",
            page.to_str().unwrap(),
            "--rev",
            "no-such-rev",
        ])
        .fails();
    assert!(err.contains("no-such-rev"), "{err}");
    assert_eq!(std::fs::read_to_string(&page).unwrap(), "the old report");
    let err = t
        .promoter(&["report", "--out", "/nonexistent/dir/report.html"])
        .fails();
    assert!(err.contains("/nonexistent/dir"), "{err}");
}
