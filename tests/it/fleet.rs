//! One promotion to a fleet of PRD databases: bounded parallelism, a failing
//! target touching no other, the canary, and a rerun that does only what the
//! targets' own ledgers say is left.

use std::path::PathBuf;
use std::time::Duration;

use crate::common::{TestContext, admin_url, database_url, psql};

const TARGETS: usize = 6;

/// DEV and QAT as usual; PRD a fleet of [`TARGETS`] databases, each pinned.
/// Two changesets applied to DEV and QAT, signed and approved.
fn fleet() -> (TestContext, PathBuf) {
    let mut t = TestContext::with_databases();
    let base = t.databases[0].1.trim_end_matches("_dev").to_owned();
    let mut targets = String::from("    targets:\n");
    for k in 1..=TARGETS {
        let name = format!("{base}_t{k}");
        psql(admin_url(), &format!("DROP DATABASE IF EXISTS {name}")).ok();
        psql(admin_url(), &format!("CREATE DATABASE {name}")).ok();
        t.databases
            .push((format!("t{k}"), name.clone(), database_url(&name)));
        targets.push_str(&format!("      t{k}: ${{T{k}_DATABASE_URL}}\n"));
    }
    let yaml = t
        .read("environments.yaml")
        .replace("    database_url: ${PRD_DATABASE_URL}\n", &targets);
    t.write("environments.yaml", &yaml);
    t.changeset(
        "customers",
        "CREATE TABLE customers (id int PRIMARY KEY, name text);\n",
    );
    // Slow enough for a terminal's progress display to draw.
    t.changeset(
        "seed",
        "INSERT INTO customers VALUES (1, 'Ada');\nSELECT pg_sleep(0.4);\n",
    );
    t.promoter(&["seal"]).ok();
    let (_, dev_key) = t.promoter_key("Dev <dev@example.com>", "keys/developers");
    let (_, customer_key) = t.promoter_key("Customer <c@example.com>", "keys/customers");
    t.promoter(&["apply", "dev"]).ok();
    t.promoter(&["sign", "1", "2", "--key", dev_key.to_str().unwrap()])
        .ok();
    t.commit_all("two changesets");
    t.pin("qat");
    for k in 1..=TARGETS {
        t.pin(&format!("prd/t{k}"));
    }
    t.promoter(&["promote", "dev", "qat"]).ok();
    t.promoter(&[
        "approve",
        "1",
        "2",
        "--yes",
        "--key",
        customer_key.to_str().unwrap(),
    ])
    .ok();
    t.commit_all("approved");
    (t, customer_key)
}

fn applied(t: &TestContext, target: usize) -> String {
    t.sql(
        &format!("t{target}"),
        "SELECT coalesce(string_agg(changeset_id, ',' ORDER BY seq), '') FROM promoter.ledger WHERE status = 'applied'",
    )
}

#[test]
fn a_fleet_promotion_applies_every_target_and_reports_the_one_that_failed() {
    let (t, _) = fleet();
    // Target 4 cannot take the first changeset: its table already exists
    // (past the drift check, which would refuse it before it is touched).
    t.sql("t4", "CREATE TABLE customers (id int)");
    let run = t.promoter(&[
        "--json",
        "promote",
        "qat",
        "prd",
        "--yes",
        "--jobs",
        "3",
        "--allow-drift",
    ]);
    assert_eq!(run.code, 4, "{}", run.all());
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["environment"], "prd");
    assert_eq!(v["counts"]["applied"], TARGETS - 1, "{v}");
    assert_eq!(v["counts"]["failed"], 1, "{v}");
    let failed: Vec<&str> = v["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] == "failed")
        .map(|t| t["target"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["t4"]);
    assert!(
        run.stderr.contains("[prd/t4]"),
        "a line per target: {}",
        run.stderr
    );
    for k in (1..=TARGETS).filter(|&k| k != 4) {
        assert_eq!(applied(&t, k), "0001-customers,0002-seed\n", "t{k}");
    }
    assert_eq!(applied(&t, 4), "\n");
    // status: one column for the fleet, the target that needs attention named.
    let out = t.promoter(&["status"]).ok();
    assert!(out.contains("PRD (6 targets)"), "{out}");
    let first = out
        .lines()
        .find(|l| l.starts_with("0001-customers"))
        .unwrap();
    assert!(first.contains("applied 5, failed 1: t4"), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&t.promoter(&["--json", "status"]).ok()).unwrap();
    assert_eq!(
        v["changesets"][0]["environments"]["prd/t4"]["state"], "failed",
        "{v}"
    );

    // Fixed by hand, the rerun applies only what t4's own ledger lacks.
    t.sql("t4", "DROP TABLE customers");
    let out = t
        .promoter(&["promote", "qat", "prd", "--yes", "--resume"])
        .ok();
    assert!(out.contains("t4  applied"), "{out}");
    assert!(
        out.contains(&format!("{} up-to-date", TARGETS - 1)),
        "{out}"
    );
    assert_eq!(applied(&t, 4), "0001-customers,0002-seed\n");
}

/// A fleet listed in a file outside the repository (where the URLs of many
/// customers' databases are kept), in its own order: the canary is the
/// first line, and without the file the other environments still work.
#[test]
fn a_fleet_listed_in_a_targets_file_is_promoted_in_the_file_order() {
    let (mut t, _) = fleet();
    let yaml = t.read("environments.yaml");
    let start = yaml.find("    targets:\n").unwrap();
    let end = yaml[start..]
        .find("      t6: ${T6_DATABASE_URL}\n")
        .unwrap()
        + start;
    let yaml = format!(
        "{}    targets_file: ${{PRD_TARGETS}}\n{}",
        &yaml[..start],
        &yaml[end + "      t6: ${T6_DATABASE_URL}\n".len()..]
    );
    t.write("environments.yaml", &yaml);
    t.commit_all("prd's targets in a file");
    let list = t.dir.path().join("prd-targets.txt");
    std::fs::write(
        &list,
        "# the canary first\nt5 ${T5_DATABASE_URL}\nt2 ${T2_DATABASE_URL}\n",
    )
    .unwrap();
    let file = list.to_str().unwrap();
    // t5 has drifted: as the canary it stops the fleet before t2 starts.
    t.sql("t5", "CREATE TABLE customers (id int)");
    let out = t
        .promoter_env(
            &["promote", "qat", "prd", "--yes", "--canary", "1"],
            &[("PRD_TARGETS", file)],
        )
        .fails();
    assert!(out.contains("t5  refused"), "{out}");
    assert!(out.contains("t2  not-started"), "{out}");
    assert!(out.contains("stopped: canary target t5 failed"), "{out}");
    assert_eq!(applied(&t, 2), "\n");
    // Without the file, the fleet says why wherever it is needed, and
    // nothing else is affected.
    let status = t.promoter(&["status"]);
    assert!(
        status
            .all()
            .contains("targets_file: `${PRD_TARGETS}` refers to ${PRD_TARGETS}, which is not set"),
        "{}",
        status.all()
    );
    assert!(status.stdout.contains("0001-customers"), "{}", status.all());
    let err = t.promoter(&["promote", "qat", "prd", "--yes"]).fails();
    assert!(err.contains("which is not set"), "{err}");
    t.sql("t5", "DROP TABLE customers");
    // A line added for a database that is not there: that target alone is
    // unreachable (exit 5), the others are applied. And one for a database
    // nobody pinned: the file says where, never what may run there, so it
    // stays closed.
    let gone = crate::common::database_url("promoter_no_such_database");
    let newcomer = format!("{}_newcomer", t.databases[0].1.trim_end_matches("_dev"));
    psql(admin_url(), &format!("DROP DATABASE IF EXISTS {newcomer}")).ok();
    psql(admin_url(), &format!("CREATE DATABASE {newcomer}")).ok();
    let newcomer_url = database_url(&newcomer);
    t.databases
        .push(("newcomer".into(), newcomer.clone(), newcomer_url.clone()));
    std::fs::write(
        &list,
        format!(
            "t5 ${{T5_DATABASE_URL}}\ngone {gone}\nt2 ${{T2_DATABASE_URL}}\nnewcomer {newcomer_url}\n"
        ),
    )
    .unwrap();
    let run = t.promoter_env(
        &["promote", "qat", "prd", "--yes"],
        &[("PRD_TARGETS", file)],
    );
    assert_eq!(run.code, 5, "{}", run.all());
    let out = run.all();
    let row = |name: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .map(|l| l.split_whitespace().nth(1).unwrap_or_default().to_owned())
    };
    assert_eq!(row("t5").as_deref(), Some("applied"), "{out}");
    assert_eq!(row("gone").as_deref(), Some("unreachable"), "{out}");
    assert_eq!(row("t2").as_deref(), Some("applied"), "{out}");
    assert_eq!(row("newcomer").as_deref(), Some("refused"), "{out}");
    assert!(out.contains("no pinned trust policy"), "{out}");
    assert!(out.contains("2 applied, 1 refused, 1 unreachable"), "{out}");
    assert_eq!(
        t.sql("newcomer", "SELECT to_regclass('customers') IS NULL"),
        "t\n",
        "nothing ran in the database nobody pinned"
    );
    // Said once, not `prd/gone: prd: …`.
    assert!(out.contains("error: prd/gone: cannot connect to"), "{out}");
    assert_eq!(applied(&t, 5), "0001-customers,0002-seed\n");
    assert_eq!(applied(&t, 2), "0001-customers,0002-seed\n");
    assert_eq!(applied(&t, 1), "\n", "not in the file, not promoted");
}

/// Ctrl-C in a fleet: the running target's statement is cancelled on its
/// server, its changeset rolled back and recorded as interrupted, and no
/// other target is started.
#[test]
fn sigint_stops_a_fleet_the_running_target_rolled_back_and_none_started() {
    use crate::operator::{active, finish, signal, wait_until};
    use std::io::Write;
    let (t, _) = fleet();
    // Another session's table of the same name, not yet committed: t1's
    // CREATE TABLE waits for it (the drift check cannot see it).
    let mut blocker = std::process::Command::new("psql")
        .args(["-X", "-q", &t.url("t1")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut input = blocker.stdin.take().unwrap();
    input
        .write_all(b"BEGIN;\nCREATE TABLE customers (id int);\n")
        .unwrap();
    input.flush().unwrap();
    wait_until(
        &t,
        "t1",
        "SELECT count(*) > 0 FROM pg_stat_activity WHERE datname = current_database() \
         AND state = 'idle in transaction'",
        "the blocking transaction",
    );
    let child = t
        .std_cmd()
        .args(["--json", "promote", "qat", "prd", "--yes", "--jobs", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(
        &t,
        "t1",
        &active("CREATE TABLE customers"),
        "t1's CREATE TABLE",
    );
    signal(&child, "INT");
    let (code, stdout, stderr) = finish(child, Duration::from_secs(15));
    drop(input);
    let _ = blocker.wait();
    assert_eq!(code, 130, "{stdout}\n{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["stopped"], "interrupted (Ctrl-C or SIGTERM)", "{v}");
    let statuses: Vec<(&str, &str)> = v["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["target"].as_str().unwrap(), t["status"].as_str().unwrap()))
        .collect();
    assert_eq!(statuses[0], ("t1", "interrupted"), "{v}");
    for (name, status) in &statuses[1..] {
        assert_eq!(*status, "not-started", "{name}: {v}");
    }
    assert_eq!(
        t.sql(
            "t1",
            "SELECT status || ' ' || statements FROM promoter.ledger WHERE status <> 'trust-pinned'"
        ),
        "failed 0\n"
    );
    assert_eq!(
        t.sql("t1", "SELECT to_regclass('customers') IS NULL"),
        "t\n"
    );
    for k in 2..=TARGETS {
        assert_eq!(applied(&t, k), "\n", "t{k} was not started");
    }
}

/// On a terminal each running target has its own bar line, named, under
/// the prefixed plain lines.
#[test]
fn a_fleet_promotion_on_a_terminal_draws_a_line_per_target() {
    let (t, _) = fleet();
    let (ok, screen) = t.in_terminal(&["promote", "qat", "prd", "--yes", "--jobs", "3"]);
    assert!(ok, "{screen}");
    for k in 1..=TARGETS {
        assert!(
            screen.contains(&format!("[prd/t{k}] [ok] 0002-seed applied")),
            "t{k}: {screen}"
        );
    }
    // Bars of three targets at once: each named, with its own count.
    let plain = crate::common::strip_ansi(&screen);
    let drawn = (1..=TARGETS)
        .filter(|k| {
            let label = format!("prd/t{k} ");
            plain.contains(&format!("{label}\u{2588}"))
                || plain.contains(&format!("{label}\u{2591}"))
        })
        .count();
    assert!(drawn >= 3, "{drawn} targets drew a bar:\n{screen}");
    assert!(
        plain.contains("/2  0002-seed  script 1/1 001-seed.sql: "),
        "{plain}"
    );
}

#[test]
fn a_failing_canary_stops_the_fleet_and_max_failures_stops_scheduling() {
    let (t, _) = fleet();
    // t1 has drifted: the drift check refuses it, before it is touched.
    t.sql("t1", "CREATE TABLE customers (id int)");
    let out = t
        .promoter(&["promote", "qat", "prd", "--yes", "--canary", "2"])
        .fails();
    assert!(out.contains("t1  refused"), "{out}");
    assert!(out.contains("stopped: canary target t1 failed"), "{out}");
    for k in 3..=TARGETS {
        assert_eq!(applied(&t, k), "\n", "t{k} was not started");
    }
    // One at a time, stopping after the first failure: t1 fails, nothing else starts.
    let out = t
        .promoter(&[
            "promote",
            "qat",
            "prd",
            "--yes",
            "--jobs",
            "1",
            "--max-failures",
            "1",
            "--target",
            "t1",
            "--target",
            "t3",
        ])
        .fails();
    assert!(out.contains("t3  not-started"), "{out}");
    assert!(out.contains("stopped: 1 target failed"), "{out}");
    // A dry run says what each target would get, and changes nothing.
    let out = t
        .promoter(&["promote", "qat", "prd", "--dry-run", "--target", "t5"])
        .ok();
    assert!(out.contains("t5  planned"), "{out}");
    assert_eq!(applied(&t, 5), "\n");
    // One target by name works like any environment.
    t.promoter(&["promote", "qat", "prd/t3", "--yes"]).ok();
    assert_eq!(applied(&t, 3), "0001-customers,0002-seed\n");
    // One job of an indexed job engine: the target at that place. (And,
    // regression: a fleet took its ledger schema from the work tree's
    // environments.yaml, uncommitted edits included, not from git.)
    let committed = t.read("environments.yaml");
    t.write(
        "environments.yaml",
        &committed.replace("ledger_schema: promoter", "ledger_schema: elsewhere"),
    );
    let out = t
        .promoter(&["promote", "qat", "prd", "--target-index", "3", "--yes"])
        .ok();
    t.write("environments.yaml", &committed);
    assert!(out.contains("t4  applied"), "{out}");
    assert_eq!(
        t.sql("t4", "SELECT to_regnamespace('elsewhere') IS NULL"),
        "t\n"
    );
    assert_eq!(applied(&t, 4), "0001-customers,0002-seed\n");
    assert_eq!(applied(&t, 6), "\n");
    let err = t
        .promoter(&["promote", "qat", "prd", "--target-index", "6"])
        .fails();
    assert!(
        err.contains("--target-index 6: prd has 6 targets, at places 0 to 5"),
        "{err}"
    );
    let err = t
        .promoter(&[
            "promote",
            "qat",
            "prd",
            "--target-index",
            "1",
            "--target",
            "t2",
        ])
        .fails();
    assert!(err.contains("cannot be used with"), "{err}");
    let err = t.promoter(&["ledger", "prd"]).fails();
    assert!(err.contains("`prd` is a fleet"), "{err}");
    let err = t
        .promoter(&["promote", "qat", "prd", "--target", "nope"])
        .fails();
    assert!(err.contains("fleet `prd` has no target `nope`"), "{err}");
}

/// Regression: with the source unreachable, every target's line said only
/// "its source qat could not be read", not why.
#[test]
fn a_fleet_whose_source_cannot_be_read_says_why_for_each_target() {
    let (mut t, _) = fleet();
    let qat = t.databases.iter_mut().find(|d| d.0 == "qat").unwrap();
    qat.2 = database_url("promoter_no_such_database");
    let run = t.promoter(&["promote", "qat", "prd", "--yes", "--target", "t2"]);
    assert_eq!(run.code, 5, "unreachable: {}", run.all());
    let line = run
        .stderr
        .lines()
        .find(|l| l.starts_with("error: prd/t2: "))
        .unwrap_or_else(|| panic!("{}", run.stderr));
    assert!(
        line.contains("its source qat could not be read: ")
            && line.contains("database \"promoter_no_such_database\" does not exist"),
        "{line}"
    );
    let run = t.promoter(&["--json", "promote", "qat", "prd", "--yes", "--target", "t2"]);
    assert_eq!(run.code, 5, "unreachable: {}", run.all());
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let error = v["targets"][0]["error"].as_str().unwrap();
    assert!(error.contains("promoter_no_such_database"), "{v}");
    assert_eq!(applied(&t, 2), "\n");
}
