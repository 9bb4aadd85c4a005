//! What an operator automating promoter relies on: exit codes and `--json`
//! on failure, `--to`, interrupts that cancel the server's statement, a
//! closed pipe, TLS and libpq key/value connection strings.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{TestContext, psql, run};

/// Polls `probe` (a query on `env` returning `t` or `f`) until it says `t`.
#[track_caller]
pub(crate) fn wait_until(t: &TestContext, env: &str, probe: &str, what: &str) {
    let start = Instant::now();
    while !t.sql(env, probe).starts_with('t') {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what} never happened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `pattern` is running as a statement in this test's own database.
pub(crate) fn active(pattern: &str) -> String {
    format!(
        "SELECT count(*) > 0 FROM pg_stat_activity WHERE datname = current_database() \
         AND state = 'active' AND query LIKE '{pattern}%'"
    )
}

pub(crate) fn signal(child: &Child, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name} failed");
}

/// Waits for a child with a deadline; returns its exit code and output.
pub(crate) fn finish(child: Child, limit: Duration) -> (i32, String, String) {
    let start = Instant::now();
    let id = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    while !waiter.is_finished() {
        if start.elapsed() > limit {
            let _ = Command::new("kill").args(["-9", &id.to_string()]).status();
            panic!("promoter did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = waiter.join().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sleeps 60 s the first time (no failed row yet), not at all afterwards.
const SLEEPS_ONCE: &str = "SELECT pg_sleep(CASE WHEN (SELECT count(*) FROM promoter.ledger WHERE status = 'failed') = 0 THEN 60 ELSE 0 END);\n";

#[test]
fn sigint_cancels_the_running_statement_rolls_back_and_exits_130() {
    let t = TestContext::with_databases();
    t.changeset(
        "long",
        &format!("CREATE TABLE long_running (id int);\n{SLEEPS_ONCE}INSERT INTO long_running VALUES (1);\n"),
    );
    t.changeset("after", "CREATE TABLE after_it (id int);\n");
    t.promoter(&["seal"]).ok();
    let child = t
        .std_cmd()
        .args(["--json", "apply", "dev"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(&t, "dev", &active("SELECT pg_sleep(CASE"), "the sleep");
    let sent = Instant::now();
    signal(&child, "INT");
    let (code, stdout, stderr) = finish(child, Duration::from_secs(10));
    assert_eq!(code, 130, "{stdout}\n{stderr}");
    // Nothing is left running on the server once promoter has exited.
    assert_eq!(t.sql("dev", &active("SELECT pg_sleep(CASE")), "f\n");
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "took {:?}",
        sent.elapsed()
    );
    assert!(
        stderr.contains("cancelling the running statement of 0001-long"),
        "{stderr}"
    );
    assert!(
        stderr.contains("interrupted at 0001-long; it was rolled back"),
        "{stderr}"
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["error"]["kind"], "interrupted");
    assert_eq!(v["error"]["report"]["failed_at"], "0001-long");
    assert_eq!(
        v["error"]["report"]["not_started"],
        serde_json::json!(["0002-after"])
    );
    assert_eq!(
        t.sql("dev", "SELECT to_regclass('long_running') IS NULL"),
        "t\n"
    );
    assert_eq!(
        t.sql(
            "dev",
            "SELECT status || ' ' || statements || ' ' || error FROM promoter.ledger"
        ),
        "failed 0 interrupted (Ctrl-C or SIGTERM) at changesets/0001-long/001-long.sql:2\n"
    );
    // The lock was released: the next run starts at once and completes.
    let again = t.promoter(&["apply", "dev", "--lock-wait", "0"]).ok();
    assert!(again.contains("applied 0002-after to dev"), "{again}");
}

#[test]
fn sigterm_in_a_non_transactional_changeset_records_how_far_it_got() {
    let t = TestContext::with_databases();
    t.changeset_without_transaction(
        "steps",
        &format!(
            "CREATE TABLE first_step (id int);\n{SLEEPS_ONCE}CREATE TABLE last_step (id int);\n"
        ),
    );
    t.promoter(&["seal"]).ok();
    let child = t
        .std_cmd()
        .args(["apply", "dev"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(&t, "dev", &active("SELECT pg_sleep(CASE"), "the sleep");
    signal(&child, "TERM");
    let (code, _, stderr) = finish(child, Duration::from_secs(10));
    assert_eq!(code, 130, "{stderr}");
    assert!(
        stderr.contains("1 statement of this non-transactional changeset had already committed"),
        "{stderr}"
    );
    assert_eq!(
        t.sql(
            "dev",
            "SELECT status || ' ' || statements FROM promoter.ledger ORDER BY seq"
        ),
        "running 0\nfailed 1\n"
    );
    let status = t.promoter(&["status"]).ok();
    assert!(status.contains("failed"), "{status}");
    let refused = t.promoter(&["apply", "dev"]);
    assert_eq!(refused.code, 3, "{}", refused.all());
    assert!(
        refused
            .stderr
            .contains("dev is dirty: 0001-steps is partially applied after 1 statement"),
        "{}",
        refused.stderr
    );
}

#[test]
fn a_running_row_left_by_kill_9_shows_as_interrupted_and_resolve_handles_it() {
    let t = TestContext::with_databases();
    t.changeset_without_transaction(
        "steps",
        "CREATE TABLE first_step (id int);\nSELECT pg_sleep(60);\n",
    );
    t.promoter(&["seal"]).ok();
    let mut child = t
        .std_cmd()
        .args(["apply", "dev"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(&t, "dev", &active("SELECT pg_sleep(60)"), "the sleep");
    // While the promoter that holds dev's lock is alive, the row is running.
    let status: serde_json::Value =
        serde_json::from_str(&t.promoter(&["--json", "status"]).ok()).unwrap();
    assert_eq!(
        status["changesets"][0]["environments"]["dev"]["state"], "running",
        "{status:#}"
    );
    child.kill().unwrap();
    let _ = child.wait();
    psql(
        crate::common::admin_url(),
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}' AND query LIKE 'SELECT pg_sleep(60)%'",
            t.databases[0].1
        ),
    )
    .ok();
    let status: serde_json::Value =
        serde_json::from_str(&t.promoter(&["--json", "status"]).ok()).unwrap();
    let cell = &status["changesets"][0]["environments"]["dev"];
    assert_eq!(cell["state"], "interrupted", "{status:#}");
    // Exactly how far it got, though the process died without a word.
    assert_eq!(
        cell["detail"],
        "1 statement committed; see `promoter resolve`"
    );
    let attention = t.promoter(&["status", "--exit-code"]);
    assert_eq!(attention.code, 1, "{}", attention.all());
    let refused = t.promoter(&["apply", "dev"]).fails();
    assert!(
        refused.contains("0001-steps was interrupted (its row still says running)"),
        "{refused}"
    );
    assert!(
        refused.contains("promoter resolve dev 0001-steps"),
        "{refused}"
    );
    let usage = t.promoter(&["resolve", "dev", "1", "--note", "x"]);
    assert_eq!(usage.code, 2);
    assert!(
        usage.stderr.contains("--applied") && usage.stderr.contains("--rolled-back"),
        "{}",
        usage.stderr
    );
    t.promoter(&[
        "resolve",
        "dev",
        "1",
        "--rolled-back",
        "--note",
        "dropped first_step by hand",
    ])
    .ok();
    t.sql("dev", "DROP TABLE first_step");
    assert_eq!(
        t.promoter(&["status", "--exit-code"]).code,
        1,
        "still pending"
    );
}

#[test]
fn exit_codes_tell_refused_from_sql_failure_from_unreachable() {
    let t = TestContext::with_databases();
    t.changeset(
        "broken",
        "CREATE TABLE ok_table (id int);\nSELECT * FROM\n  no_such_table;\n",
    );
    t.promoter(&["seal"]).ok();
    let failed = t.promoter(&["--json", "apply", "dev"]);
    assert_eq!(failed.code, 4, "{}", failed.all());
    let v: serde_json::Value = serde_json::from_str(&failed.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "apply-failed");
    let stmt = &v["error"]["statement"];
    assert_eq!(stmt["file"], "changesets/0001-broken/001-broken.sql");
    assert_eq!(
        (stmt["line"].as_u64(), stmt["column"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(stmt["sqlstate"], "42P01");
    assert_eq!(v["error"]["report"]["rolled_back"], true);

    let unreachable = t.promoter_env(
        &["--json", "apply", "dev"],
        &[(
            "DEV_DATABASE_URL",
            "postgres://nobody@127.0.0.1:1/none?connect_timeout=2",
        )],
    );
    assert_eq!(unreachable.code, 5, "{}", unreachable.all());
    let v: serde_json::Value = serde_json::from_str(&unreachable.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "unreachable");

    let usage = t.promoter(&["--json", "apply", "nowhere"]);
    assert_eq!(usage.code, 2, "{}", usage.all());
    let v: serde_json::Value = serde_json::from_str(&usage.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "usage");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown environment `nowhere`")
    );
}

#[test]
fn to_stops_after_the_named_changeset_in_apply_and_promote() {
    let t = TestContext::with_databases();
    for slug in ["one", "two", "three"] {
        t.changeset(slug, &format!("CREATE TABLE {slug} (id int);\n"));
    }
    t.promoter(&["seal"]).ok();
    let out = t.promoter(&["apply", "dev", "--to", "2"]).ok();
    assert!(
        out.contains("applied 0002-two") && !out.contains("0003"),
        "{out}"
    );
    let out = t.promoter(&["apply", "dev", "--to", "two"]).ok();
    assert_eq!(out.trim(), "dev is up to date");
    let refused = t.promoter(&["apply", "dev", "--to", "nine"]);
    assert_eq!(refused.code, 3);
    assert!(
        refused
            .stderr
            .contains("--to nine: no such changeset is pending for dev"),
        "{}",
        refused.stderr
    );
    t.promoter(&["apply", "dev"]).ok();
    t.write(
        "environments.yaml",
        &t.read("environments.yaml")
            .replace("    require: { developer: 1 }\n", ""),
    );
    t.commit_all("three changesets");
    let out = t
        .promoter(&["promote", "dev", "qat", "--to", "0001-one"])
        .ok();
    assert!(
        out.contains("applied 0001-one to qat") && !out.contains("0002"),
        "{out}"
    );
    // Progress: a line as each changeset starts and ends, also without a terminal.
    let run = t.promoter(&["promote", "dev", "qat", "--to", "3"]);
    assert!(
        run.stderr.contains("[1/2] applying 0002-two to qat"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("[ok] 0003-three applied to qat in"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_closed_stdout_ends_status_quietly_with_zero() {
    let t = TestContext::with_databases();
    for i in 0..30 {
        t.changeset(&format!("c{i}"), "SELECT 1;\n");
    }
    t.promoter(&["seal"]).ok();
    let bin = assert_cmd::cargo::cargo_bin("promoter");
    // The reader is gone before promoter writes its first line.
    let out = t
        .std_cmd()
        .args(["-C", t.root().to_str().unwrap()])
        .arg("status")
        .stdout(Stdio::piped())
        .spawn()
        .map(|mut c| {
            drop(c.stdout.take());
            c.wait_with_output().unwrap()
        })
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    let head = Command::new("bash")
        .args([
            "-c",
            &format!(
                "'{}' status | head -1; echo \"exit=${{PIPESTATUS[0]}}\"",
                bin.display()
            ),
        ])
        .envs(t.std_cmd().get_envs().filter_map(|(k, v)| Some((k, v?))))
        .current_dir(t.root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&head.stdout);
    assert!(
        stdout.starts_with("CHANGESET") && stdout.contains("exit=0"),
        "{stdout}"
    );
    // With --exit-code the verdict still comes through a closed pipe.
    let code = Command::new("bash")
        .args([
            "-c",
            &format!(
                "'{}' status --exit-code | true; echo \"exit=${{PIPESTATUS[0]}}\"",
                bin.display()
            ),
        ])
        .envs(t.std_cmd().get_envs().filter_map(|(k, v)| Some((k, v?))))
        .current_dir(t.root())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&code.stdout).contains("exit=1"),
        "pending changesets"
    );
}

#[test]
fn the_lock_holder_named_is_the_one_in_this_database() {
    let t = TestContext::with_databases();
    t.changeset("a", "CREATE TABLE a (id int);\n");
    t.promoter(&["seal"]).ok();
    let key = promoter::db::lock::key("promoter");
    let hold = |env: &str, app: &str| {
        t.hold(
            env,
            &format!("SET application_name = '{app}'; SELECT pg_advisory_lock({key}); SELECT pg_sleep(20)"),
            &format!(
                "SELECT count(*) = 1 FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
                 WHERE d.datname = current_database() AND locktype = 'advisory' AND granted AND objid = ({key} & 4294967295)::oid"
            ),
        )
    };
    let _elsewhere = hold("qat", "holder-in-qat");
    let _here = hold("dev", "holder-in-dev");
    let err = t.promoter(&["apply", "dev", "--lock-wait", "1"]);
    assert_eq!(err.code, 3, "{}", err.all());
    assert!(
        err.stderr.contains("application holder-in-dev"),
        "{}",
        err.stderr
    );
}

/// A throw-away CA and a server certificate for `localhost` (only).
fn make_certificates(dir: &Path, cn: &str) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        &format!("/CN={cn} test CA"),
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A cluster started by the repo's script that listens on 127.0.0.1,
/// speaking TLS when given certificates.
struct LoopbackCluster {
    name: String,
    port: u16,
}

impl LoopbackCluster {
    fn tls(certs: &Path) -> Self {
        Self::start("tls", Some(certs))
    }

    fn plain() -> Self {
        Self::start("tcp", None)
    }

    fn start(kind: &str, certs: Option<&Path>) -> Self {
        let name = format!("{kind}-{}", std::process::id());
        let port = free_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-cluster");
        let mut start = Command::new(&script);
        start.args(["start", &name, &port.to_string()]);
        if let Some(certs) = certs {
            start.env("PG_CLUSTER_TLS", certs);
        }
        run(&mut start).ok();
        Self { name, port }
    }
}

impl Drop for LoopbackCluster {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-cluster");
        let _ = Command::new(script).args(["destroy", &self.name]).output();
    }
}

/// sqlx 0.9.0 stopped setting TCP_NODELAY on its sockets (0.9.1 sets it
/// again). Without it, a message sent right after another waits for the
/// server's delayed ACK: each COPY's closing CopyDone was held 40 ms
/// (measured in `scripts/bench copy`: a 10-row COPY took 42 ms of server
/// time, psql's 0.3 ms). Every TCP connection promoter opens to the target
/// (the session, the lock's) must ask for it.
#[test]
fn tcp_connections_set_nodelay_so_a_copy_is_not_held_by_nagle() {
    let t = TestContext::new();
    let cluster = LoopbackCluster::plain();
    t.changeset(
        "a",
        "CREATE TABLE nagle (id int);\nCOPY nagle (id) FROM stdin;\n1\n2\n\\.\n",
    );
    t.promoter(&["seal"]).ok();
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
        cluster.port
    );
    // strace is Debian's package of that name (scripts/test installs it).
    // One file per thread (-ff): no call is split across lines by another.
    let traces = t.dir.path().join("traces");
    std::fs::create_dir_all(&traces).unwrap();
    let run = run(t
        .wrapper("strace")
        .env("DEV_DATABASE_URL", &url)
        .args(["-ff", "-qq", "-e", "trace=connect,setsockopt", "-o"])
        .arg(traces.join("t"))
        .arg(t.std_cmd().get_program())
        .args(["apply", "dev"]));
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout.contains("applied 0001-a to dev"),
        "{}",
        run.all()
    );
    let mut trace = String::new();
    for file in std::fs::read_dir(&traces).unwrap() {
        trace += &std::fs::read_to_string(file.unwrap().path()).unwrap();
    }
    // The socket a call is about: `connect(12, …` gives 12.
    let fd = |line: &str| -> String {
        line.split_once('(')
            .and_then(|(_, rest)| rest.split_once(','))
            .map(|(fd, _)| fd.to_owned())
            .unwrap_or_default()
    };
    let port = format!("htons({})", cluster.port);
    let mut connected: Vec<String> = trace
        .lines()
        .filter(|l| l.starts_with("connect(") && l.contains(&port))
        .map(fd)
        .collect();
    let mut nodelay: Vec<String> = trace
        .lines()
        .filter(|l| {
            l.starts_with("setsockopt(") && l.contains("TCP_NODELAY, [1]") && l.ends_with("= 0")
        })
        .map(fd)
        .collect();
    connected.sort();
    nodelay.sort();
    assert!(
        !connected.is_empty(),
        "no connection to the server traced:\n{trace}"
    );
    assert_eq!(
        nodelay, connected,
        "each TCP connection to the server sets TCP_NODELAY:\n{trace}"
    );
    assert_eq!(psql(&url, "SELECT count(*) FROM nagle").ok().trim(), "2");
}

#[test]
fn tls_verify_full_connects_and_a_wrong_ca_or_host_is_refused() {
    let t = TestContext::new();
    let certs = t.dir.path().join("certs");
    let other = t.dir.path().join("other-ca");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::create_dir_all(&other).unwrap();
    make_certificates(&certs, "right");
    make_certificates(&other, "wrong");
    let cluster = LoopbackCluster::tls(&certs);
    t.changeset("a", "CREATE TABLE tls_table (id int);\n");
    t.promoter(&["seal"]).ok();
    let ca = certs.join("ca.crt");
    let url = |host: &str, ca: &Path, mode: &str| {
        format!(
            "postgres://postgres@{host}:{}/postgres?sslmode={mode}&sslrootcert={}",
            cluster.port,
            ca.display()
        )
    };
    let apply = |url: &str| t.promoter_env(&["apply", "dev"], &[("DEV_DATABASE_URL", url)]);

    let good = apply(&url("localhost", &ca, "verify-full"));
    assert_eq!(good.code, 0, "{}", good.all());
    assert!(
        good.stdout.contains("applied 0001-a to dev"),
        "{}",
        good.all()
    );

    let wrong_ca = apply(&url("localhost", &other.join("ca.crt"), "verify-full"));
    assert_eq!(wrong_ca.code, 5, "{}", wrong_ca.all());
    assert!(
        wrong_ca.stderr.contains("cannot connect"),
        "{}",
        wrong_ca.stderr
    );
    assert!(
        wrong_ca.stderr.to_lowercase().contains("certificate"),
        "{}",
        wrong_ca.stderr
    );

    // 127.0.0.1 is the same server, but not a name the certificate holds.
    let wrong_host = apply(&url("127.0.0.1", &ca, "verify-full"));
    assert_eq!(wrong_host.code, 5, "{}", wrong_host.all());

    // verify-ca checks the chain only: the same certificate via another name is fine.
    let ca_only = t.promoter_env(
        &["ledger", "dev"],
        &[("DEV_DATABASE_URL", &url("127.0.0.1", &ca, "verify-ca"))],
    );
    assert_eq!(ca_only.code, 0, "{}", ca_only.all());

    // The server refuses TCP without TLS; libpq's PGSSLMODE/PGSSLROOTCERT work too.
    let plain = apply(&format!(
        "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
        cluster.port
    ));
    assert_eq!(plain.code, 5, "{}", plain.all());
    let by_env = t.promoter_env(
        &["ledger", "dev"],
        &[
            (
                "DEV_DATABASE_URL",
                &format!("postgres://postgres@localhost:{}/postgres", cluster.port),
            ),
            ("PGSSLMODE", "verify-full"),
            ("PGSSLROOTCERT", ca.to_str().unwrap()),
        ],
    );
    assert_eq!(by_env.code, 0, "{}", by_env.all());

    // A libpq key/value string reaches the same database.
    let kv = format!(
        "host=localhost port={} dbname=postgres user=postgres sslmode=verify-full sslrootcert='{}'",
        cluster.port,
        ca.display()
    );
    let ledger = t.promoter_env(&["ledger", "dev"], &[("DEV_DATABASE_URL", &kv)]);
    assert_eq!(ledger.code, 0, "{}", ledger.all());
    assert!(ledger.stdout.contains("0001-a"), "{}", ledger.stdout);
}

#[test]
fn passwords_never_appear_in_messages_in_any_url_form() {
    let t = TestContext::new();
    t.changeset("a", "SELECT 1;\n");
    t.promoter(&["seal"]).ok();
    for url in [
        "postgres://u:s3cr%2Ft%3F%40x@127.0.0.1:1/db?connect_timeout=1",
        "host=127.0.0.1 port=1 user=u password='s3cr/t?@x' dbname=db",
        "postgres://u@127.0.0.1:1/db?password=s3cr%2Ft",
    ] {
        let run = t.promoter_env(&["apply", "dev"], &[("DEV_DATABASE_URL", url)]);
        assert_eq!(run.code, 5, "{}", run.all());
        let all = run.all();
        assert!(!all.contains("s3cr"), "{url} leaked: {all}");
        assert!(all.contains("***"), "{all}");
    }
}

#[test]
fn a_usage_error_under_json_is_a_json_object_too() {
    let t = TestContext::new();
    let run = t.promoter(&["--json", "promote", "qat"]);
    assert_eq!(run.code, 2, "{}", run.all());
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "usage");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("<TO>"),
        "{v}"
    );
    assert!(
        run.stderr.contains("Usage: promoter promote"),
        "{}",
        run.stderr
    );
    // Without --json, clap's text alone; --help is no error at all.
    let plain = t.promoter(&["promote", "qat"]);
    assert_eq!((plain.code, plain.stdout.as_str()), (2, ""));
    let help = t.promoter(&["--json", "--help"]);
    assert_eq!(help.code, 0);
    assert!(help.stdout.contains("Exit codes:"), "{}", help.stdout);
}

#[test]
fn a_dry_run_of_a_refused_plan_shows_every_check_and_marks_the_failing_ones() {
    let t = TestContext::with_databases();
    t.configure("dev", "require: { developer: 1 }");
    t.changeset("first", "CREATE TABLE first (id int);\n");
    t.changeset("second", "CREATE TABLE second (id int);\n");
    t.promoter(&["seal"]).ok();
    let (_, key) = t.promoter_key("Dev <dev@example.com>", "keys/developers");
    t.promoter(&["sign", "1", "--key", key.to_str().unwrap()])
        .ok();
    let run = t.promoter(&["apply", "dev", "--dry-run"]);
    assert_eq!(run.code, 3, "{}", run.all());
    assert!(
        run.stdout
            .contains("dry run: plan for 2 changesets to dev (1 refused):"),
        "{}",
        run.stdout
    );
    let first = run.stdout.find("0001-first").unwrap();
    let second = run.stdout.find("0002-second").unwrap();
    assert!(
        run.stdout[first..second].contains("ok    signatures: 1 developer"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout[second..].contains("FAIL  0002-second: needs 1 developer signature"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("hint: promoter sign 0002-second"),
        "{}",
        run.stderr
    );
    assert_eq!(
        t.sql("dev", "SELECT to_regclass('promoter.ledger') IS NULL"),
        "t\n"
    );
}

#[test]
fn a_service_name_from_pg_service_conf_works_as_database_url() {
    let t = TestContext::with_databases();
    let url = url::Url::parse(&t.url("dev")).unwrap();
    let host = url
        .query_pairs()
        .find(|(k, _)| k == "host")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let service = t.dir.path().join("pg_service.conf");
    std::fs::write(
        &service,
        format!(
            "# the team's services\n[shop_dev]\nhost={host}\nport={}\ndbname={}\nuser={}\n",
            url.port().unwrap_or(5432),
            url.path().trim_start_matches('/'),
            url.username()
        ),
    )
    .unwrap();
    let yaml = t.read("environments.yaml").replace(
        "${DEV_DATABASE_URL}",
        "\"service=shop_dev application_name=x\"",
    );
    t.write("environments.yaml", &yaml);
    t.changeset("customers", "CREATE TABLE customers (id int);\n");
    t.promoter(&["seal"]).ok();
    let file = service.to_str().unwrap();
    t.promoter_env(&["apply", "dev"], &[("PGSERVICEFILE", file)])
        .ok();
    assert_eq!(t.sql("dev", "SELECT count(*) FROM customers").trim(), "0");
    // An unknown service is an error that says where promoter looked.
    let yaml = t
        .read("environments.yaml")
        .replace("service=shop_dev", "service=shop_qa");
    t.write("environments.yaml", &yaml);
    let err = t
        .promoter_env(&["status"], &[("PGSERVICEFILE", file)])
        .all();
    assert!(
        err.contains("definition of service \"shop_qa\" not found"),
        "{err}"
    );
    assert!(err.contains(file), "{err}");
}

/// On a terminal (a pty from util-linux `script`), a long apply shows its
/// bar with the running script: bytes read of its size and statements sent.
/// Without one (the other tests) none of it appears.
#[test]
fn a_long_apply_on_a_terminal_shows_the_script_its_bytes_and_statements() {
    let t = TestContext::with_databases();
    // About 24 MiB of INSERTs, 120 statements of 2,000 rows each.
    let mut sql = String::from("CREATE TABLE big (id int, filler text);\n");
    let filler = "x".repeat(90);
    for s in 0..120 {
        sql.push_str("INSERT INTO big VALUES\n");
        let rows: Vec<String> = (0..2000)
            .map(|i| format!("({}, '{filler}')", s * 2000 + i))
            .collect();
        sql.push_str(&rows.join(",\n"));
        sql.push_str(";\n");
    }
    t.changeset("big", &sql);
    t.promoter(&["seal"]).ok();
    let (ok, screen) = t.in_terminal(&["apply", "dev"]);
    assert!(ok, "{screen}");
    assert!(screen.contains("applied 0001-big to dev"), "{screen}");
    for want in [
        "changesets",
        "script 1/1 001-big.sql: ",
        " MiB (",
        "statements",
    ] {
        assert!(screen.contains(want), "{want:?} not drawn:\n{screen}");
    }
    // The plain lines are there too, and the bar is cleared at the end.
    assert!(screen.contains("[ok] 0001-big applied to dev"), "{screen}");
}
