//! What people read: snapshots of the human output, with hashes,
//! fingerprints, times and paths filtered out (insta).

use crate::common::TestContext;

/// Replaces what changes from run to run.
fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path("snapshots");
    s.set_prepend_module_to_snapshot(false);
    for (pattern, replacement) in [
        (r"\b[0-9a-f]{64}\b", "[SHA256]"),
        (r"\b[0-9a-f]{40}\b", "[COMMIT]"),
        (r"\b[0-9A-F]{40}\b", "[FPR]"),
        (r"\b[0-9A-F]{8}\b", "[FPR8]"),
        (r"\b[0-9a-f]{12}\b", "[HASH12]"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "[TIME]"),
        (r"\d{4}-\d\d-\d\d", "[DATE]"),
        (r"\d+\.\d\d s", "[SECS] s"),
        (r"/tmp/[^ )\n]+", "[TMP]"),
        (r"[A-Za-z0-9_.-]+@[A-Za-z0-9.-]+ as", "[USER]@[HOST] as"),
        // Column widths follow the filtered values (host names differ by machine).
        (r" {2,}", "  "),
    ] {
        s.add_filter(pattern, replacement);
    }
    s
}

#[test]
fn help_lists_every_command() {
    let t = TestContext::new();
    let help = t.promoter(&["--help"]).ok();
    settings().bind(|| insta::assert_snapshot!("help", help));
}

#[test]
fn verify_output_reads_well() {
    let t = TestContext::new();
    let id = t.changeset("add-customers", "CREATE TABLE customers (id int);\n");
    t.promoter(&["seal"]).ok();
    let (_, key) = t.promoter_key("Dev <dev@example.com>", "keys/developers");
    t.promoter(&["sign", &id, "--key", key.to_str().unwrap()])
        .ok();
    t.write(
        &format!("changesets/{id}/signatures/junk.asc"),
        "not a signature\n",
    );
    let out = t.promoter(&["verify", "--for", "prd"]).fails();
    settings().bind(|| insta::assert_snapshot!("verify", out));
}

#[test]
fn status_and_ledger_read_well() {
    let t = TestContext::with_databases();
    t.changeset("customers", "CREATE TABLE customers (id int);\n");
    t.changeset("orders", "CREATE TABLE orders (id int);\n");
    t.promoter(&["seal"]).ok();
    t.promoter(&["apply", "dev", "1"]).ok();
    let status = t.promoter(&["status"]).ok();
    let ledger = t.promoter(&["ledger", "dev"]).ok();
    settings().bind(|| {
        insta::assert_snapshot!("status", status);
        insta::assert_snapshot!("ledger", ledger);
    });
}
