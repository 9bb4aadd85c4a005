//! `TestContext`: a temp project, a private GnuPG home, and the real binary
//! run with a cleared environment.
#![allow(dead_code)] // each test module uses a different part

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

pub struct TestContext {
    pub dir: tempfile::TempDir,
    pub gnupg: PathBuf,
    /// (environment, database name, URL) of this test's own databases.
    pub databases: Vec<(String, String, String)>,
    /// QAT's receipt key (secret key file), exported as QAT_RECEIPT_KEY.
    pub receipt_key: Option<PathBuf>,
}

/// The test cluster's admin URL: `PROMOTER_TEST_DATABASE_URL` (set by `make
/// test`), or a cluster started with `scripts/pg-cluster start test`.
pub fn admin_url() -> &'static str {
    static URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("PROMOTER_TEST_DATABASE_URL") {
            return url;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-cluster");
        let out = std::process::Command::new(script)
            .args(["start", "test"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "starting the test cluster failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    })
}

/// The admin URL of a second cluster (`scripts/pg-cluster start test2`),
/// for what must cross clusters (clone).
pub fn second_admin_url() -> &'static str {
    static URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    URL.get_or_init(|| start_cluster("test2"))
}

/// The admin URL of a cluster only one test at a time uses
/// (`scripts/pg-cluster start quiet`), for what must see no other
/// session's transactions (transaction ids are the cluster's).
pub fn quiet_admin_url() -> &'static str {
    static URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    URL.get_or_init(|| start_cluster("quiet"))
}

fn start_cluster(name: &str) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-cluster");
    let out = std::process::Command::new(script)
        .args(["start", name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "starting the test cluster {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The URL of database `name` on the test cluster.
pub fn database_url(name: &str) -> String {
    url_on(admin_url(), name)
}

/// The URL of database `name` on the cluster of `admin`.
pub fn url_on(admin: &str, name: &str) -> String {
    let (head, query) = admin.split_once('?').unwrap_or((admin, ""));
    let base = &head[..head.rfind('/').unwrap()];
    if query.is_empty() {
        format!("{base}/{name}")
    } else {
        format!("{base}/{name}?{query}")
    }
}

/// Runs SQL with psql against `url`; returns unaligned, tuples-only output.
pub fn psql(url: &str, sql: &str) -> Run {
    let out = std::process::Command::new("psql")
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            url,
            "-c",
            sql,
        ])
        .output()
        .unwrap();
    Run::from(out)
}

/// Runs `cmd` to its end, its output collected.
pub fn run(cmd: &mut std::process::Command) -> Run {
    Run::from(cmd.output().unwrap())
}

/// The login name of this process's user, as promoter records it.
pub fn os_user() -> String {
    let out = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// What a command printed, with its exit code.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Self {
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(self) -> String {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self.stdout
    }

    /// Asserts failure and returns stdout + stderr.
    #[track_caller]
    pub fn fails(self) -> String {
        assert_ne!(
            self.code, 0,
            "expected failure\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        format!("{}{}", self.stdout, self.stderr)
    }

    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl TestContext {
    /// An empty project directory after `promoter init`.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("promoter-it-")
            .tempdir()
            .unwrap();
        let gnupg = dir.path().join("gnupg");
        std::fs::create_dir(&gnupg).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&gnupg, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        std::fs::create_dir(dir.path().join("project")).unwrap();
        let ctx = Self {
            dir,
            gnupg,
            databases: Vec::new(),
            receipt_key: None,
        };
        ctx.promoter(&["init"]).ok();
        ctx
    }

    /// A project with its own empty DEV, QAT and PRD databases.
    pub fn with_databases() -> Self {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let mut ctx = Self::new();
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        for env in ["dev", "qat", "prd"] {
            let name = format!("it_{}_{n}_{env}", std::process::id());
            psql(admin_url(), &format!("DROP DATABASE IF EXISTS {name}")).ok();
            psql(admin_url(), &format!("CREATE DATABASE {name}")).ok();
            ctx.databases
                .push((env.to_owned(), name.clone(), database_url(&name)));
        }
        // QAT signs its ledger rows: a receipt key, its certificate committed
        // where PRD's trust pin reads it.
        let out_dir = ctx.dir.path().join("receipt-keys");
        let out = ctx
            .promoter(&[
                "--json",
                "keys",
                "generate",
                "--no-passphrase",
                "--name",
                "QAT receipts <qat@example.com>",
                "--out",
                out_dir.to_str().unwrap(),
            ])
            .ok();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        std::fs::create_dir_all(ctx.path("keys/environments")).unwrap();
        std::fs::copy(
            v["public"].as_str().unwrap(),
            ctx.path("keys/environments/qat.asc"),
        )
        .unwrap();
        ctx.receipt_key = Some(PathBuf::from(v["secret"].as_str().unwrap()));
        ctx
    }

    /// Moves `env`'s (still empty) database to the second cluster.
    pub fn move_to_second_cluster(&mut self, env: &str) {
        self.move_to_cluster(env, second_admin_url());
    }

    /// Moves `env`'s (still empty) database to the cluster of `admin`.
    pub fn move_to_cluster(&mut self, env: &str, admin: &str) {
        let entry = self
            .databases
            .iter_mut()
            .find(|(e, _, _)| e == env)
            .unwrap();
        psql(admin_url(), &format!("DROP DATABASE IF EXISTS {}", entry.1)).ok();
        psql(admin, &format!("DROP DATABASE IF EXISTS {}", entry.1)).ok();
        psql(admin, &format!("CREATE DATABASE {}", entry.1)).ok();
        entry.2 = url_on(admin, &entry.1);
    }

    /// `promoter trust pin ENV --yes` (the policy comes from git at HEAD).
    #[track_caller]
    pub fn pin(&self, env: &str) -> String {
        self.promoter(&["trust", "pin", env, "--yes"]).ok()
    }

    /// The URL of this test's database for `env`.
    pub fn url(&self, env: &str) -> String {
        self.databases
            .iter()
            .find(|(e, _, _)| e == env)
            .map(|(_, _, u)| u.clone())
            .unwrap()
    }

    /// psql against this test's database for `env`; asserts success.
    #[track_caller]
    pub fn sql(&self, env: &str, sql: &str) -> String {
        psql(&self.url(env), sql).ok()
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("project")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    /// The promoter binary, run in the project with a cleared environment.
    pub fn std_cmd(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("promoter"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("GNUPGHOME", &self.gnupg)
            .env("LANG", "C")
            .env("USER", "tester")
            .current_dir(self.root());
        for (env, _, url) in &self.databases {
            cmd.env(format!("{}_DATABASE_URL", env.to_uppercase()), url);
        }
        if let Some(key) = &self.receipt_key {
            cmd.env("QAT_RECEIPT_KEY", key);
        }
        cmd
    }

    /// [`TestContext::std_cmd`] as an assert_cmd command.
    pub fn cmd(&self) -> Command {
        Command::from_std(self.std_cmd())
    }

    /// A command for `program` that runs promoter itself (a pty's `script`,
    /// `strace`), with [`TestContext::std_cmd`]'s environment and directory.
    pub fn wrapper(&self, program: &str) -> std::process::Command {
        let mut cmd = std::process::Command::new(program);
        cmd.env_clear();
        for (k, v) in self.std_cmd().get_envs() {
            if let Some(v) = v {
                cmd.env(k, v);
            }
        }
        cmd.current_dir(self.root());
        cmd
    }

    /// Runs promoter on a terminal (a pty from util-linux `script`, stdin
    /// closed); returns whether it succeeded and everything it drew.
    pub fn in_terminal(&self, args: &[&str]) -> (bool, String) {
        let bin = assert_cmd::cargo::cargo_bin("promoter");
        let mut cmd = self.wrapper("script");
        let line = std::iter::once(bin.display().to_string())
            .chain(args.iter().map(|a| format!("'{a}'")))
            .collect::<Vec<_>>()
            .join(" ");
        let out = cmd
            .env("TERM", "xterm")
            .args(["-q", "-e", "-c", &line, "/dev/null"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    pub fn promoter(&self, args: &[&str]) -> Run {
        Run::from(self.cmd().args(args).output().unwrap())
    }

    pub fn promoter_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = self.cmd();
        for (k, v) in env {
            cmd.env(k, v);
        }
        Run::from(cmd.args(args).output().unwrap())
    }

    /// Runs gpg with the test's GnuPG home.
    pub fn gpg(&self, args: &[&str]) -> Run {
        let out = std::process::Command::new("gpg")
            .env("GNUPGHOME", &self.gnupg)
            .args([
                "--batch",
                "--quiet",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ])
            .args(args)
            .current_dir(self.root())
            .output()
            .unwrap();
        Run::from(out)
    }

    /// Generates a gpg key (ed25519, signing) and returns its fingerprint.
    pub fn gpg_key(&self, userid: &str, extra: &[&str]) -> String {
        let mut args = extra.to_vec();
        args.extend(["--quick-gen-key", userid, "ed25519", "sign", "1y"]);
        self.gpg(&args).ok();
        self.gpg_fingerprint(userid)
    }

    pub fn gpg_fingerprint(&self, userid: &str) -> String {
        let listing = self.gpg(&["--with-colons", "--list-keys", userid]).ok();
        listing
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .unwrap()
            .to_owned()
    }

    /// Exports a gpg certificate into a role keyring.
    pub fn trust_gpg_key(&self, fingerprint: &str, role_dir: &str) {
        let cert = self.gpg(&["--armor", "--export", fingerprint]).ok();
        self.write(&format!("{role_dir}/{fingerprint}.asc"), &cert);
    }

    /// Generates a key with promoter; returns (fingerprint, secret key path).
    pub fn promoter_key(&self, name: &str, role_dir: &str) -> (String, PathBuf) {
        let out_dir = self.dir.path().join("secret-keys");
        let out = self
            .promoter(&[
                "--json",
                "keys",
                "generate",
                "--no-passphrase",
                "--name",
                name,
                "--out",
                out_dir.to_str().unwrap(),
            ])
            .ok();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let fpr = v["fingerprint"].as_str().unwrap().to_owned();
        std::fs::copy(
            v["public"].as_str().unwrap(),
            self.path(&format!("{role_dir}/{fpr}.asc")),
        )
        .unwrap();
        (fpr, PathBuf::from(v["secret"].as_str().unwrap()))
    }

    pub fn write(&self, rel: &str, content: &str) {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap()
    }

    /// `promoter new SLUG` and replaces the first script with `sql`; returns the id.
    pub fn changeset(&self, slug: &str, sql: &str) -> String {
        let out = self.promoter(&["--json", "new", slug]).ok();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let id = v["id"].as_str().unwrap().to_owned();
        self.write(&format!("changesets/{id}/001-{slug}.sql"), sql);
        id
    }

    /// Like [`TestContext::changeset`], with `transaction: none`.
    pub fn changeset_without_transaction(&self, slug: &str, sql: &str) -> String {
        let out = self
            .promoter(&["--json", "new", slug, "--no-transaction"])
            .ok();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let id = v["id"].as_str().unwrap().to_owned();
        self.write(&format!("changesets/{id}/001-{slug}.sql"), sql);
        id
    }

    /// Seals a bundle with plain `sha256sum`, behind promoter's back (so none
    /// of `seal`'s checks run).
    pub fn seal_with_sha256sum(&self, id: &str) {
        run(std::process::Command::new("sh")
            .args([
                "-c",
                "LC_ALL=C sha256sum $(LC_ALL=C ls | grep -v SHA256SUMS) > SHA256SUMS",
            ])
            .current_dir(self.path(&format!("changesets/{id}"))))
        .ok();
    }

    /// Adds `line` (e.g. `statement_timeout: 300ms`) to environment `env` in
    /// the `environments.yaml` that `promoter init` wrote.
    pub fn configure(&self, env: &str, line: &str) {
        let var = format!("    database_url: ${{{}_DATABASE_URL}}", env.to_uppercase());
        let text = self.read("environments.yaml");
        let start = text
            .find(&var)
            .unwrap_or_else(|| panic!("no {env} in environments.yaml"));
        let end = start + text[start..].find('\n').unwrap() + 1;
        self.write(
            "environments.yaml",
            &format!("{}    {line}\n{}", &text[..end], &text[end..]),
        );
    }

    /// Runs `sql` in a background psql session on `env` until the returned
    /// guard is dropped, once `ready` (a query) returns `t`.
    pub fn hold(&self, env: &str, sql: &str, ready: &str) -> Held {
        let child = std::process::Command::new("psql")
            .args(["-X", "-q", &self.url(env), "-c", sql])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        while !self.sql(env, ready).starts_with('t') {
            assert!(
                start.elapsed().as_secs() < 10,
                "the background session never got ready: {ready}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Held(child)
    }

    /// Writes an approval statement for changeset `id` (bundle hash from its
    /// SHA256SUMS) resting on a made-up test entry, and signs it with plain
    /// gpg as `gpg_key`: what a customer without promoter would do.
    pub fn gpg_approval(&self, id: &str, gpg_key: &str, opens: &[&str], expires: i64) -> String {
        let sums = std::fs::read(self.path(&format!("changesets/{id}/SHA256SUMS"))).unwrap();
        let statement = promoter::approval::Statement {
            changeset: id.to_owned(),
            bundle: promoter::changeset::Sha256Digest::of(&sums),
            tested_in: "qat".into(),
            entry: promoter::changeset::Sha256Digest::of(b"a qat ledger entry"),
            receipt_key: "A".repeat(40),
            opens: opens.iter().map(|o| (*o).to_owned()).collect(),
            expires,
            comment: "tested by hand".into(),
        };
        let file = format!("changesets/{id}/signatures/approval-{gpg_key}.txt");
        self.write(&file, &statement.canonical());
        let _ = std::fs::remove_file(self.path(&format!("{file}.asc")));
        self.gpg(&[
            "--local-user",
            gpg_key,
            "--armor",
            "--detach-sign",
            "--output",
            &format!("{file}.asc"),
            &file,
        ])
        .ok();
        file
    }

    /// Runs `git` in the project.
    pub fn git(&self, args: &[&str]) -> Run {
        let out = std::process::Command::new("git")
            .args([
                "-c",
                "user.name=Test",
                "-c",
                "user.email=test@example.com",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .current_dir(self.root())
            .env("HOME", self.dir.path())
            .output()
            .unwrap();
        Run::from(out)
    }

    pub fn commit_all(&self, message: &str) {
        if !self.root().join(".git").exists() {
            self.git(&["init", "-q"]).ok();
        }
        self.git(&["add", "-A"]).ok();
        self.git(&["commit", "-q", "-m", message]).ok();
    }
}

/// A background psql session, ended when dropped.
pub struct Held(std::process::Child);

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for TestContext {
    fn drop(&mut self) {
        for (_, name, url) in &self.databases {
            let admin = url.replacen(&format!("/{name}"), "/postgres", 1);
            let _ = psql(
                &admin,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            );
        }
        // Stop the gpg-agent this test's GnuPG home may have started.
        let _ = std::process::Command::new("gpgconf")
            .env("GNUPGHOME", &self.gnupg)
            .args(["--kill", "all"])
            .output();
    }
}

/// Files of a directory, for assertions.
/// `text` without its terminal escape sequences (colours, cursor moves).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'[') {
            chars.next();
            // Parameters, then one final byte in @..~.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            chars.next();
        }
    }
    out
}

pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
