//! `TestContext`: a temp project, a private GnuPG home, and the real binary
//! run with a cleared environment.
#![allow(dead_code)] // each test module uses a different part

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

pub struct TestContext {
    pub dir: tempfile::TempDir,
    pub gnupg: PathBuf,
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
        let ctx = Self { dir, gnupg };
        ctx.promoter(&["init"]).ok();
        ctx
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("project")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    /// The promoter binary, run in the project with a cleared environment.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::cargo_bin("promoter").unwrap();
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("GNUPGHOME", &self.gnupg)
            .env("LANG", "C")
            .current_dir(self.root());
        cmd
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

impl Drop for TestContext {
    fn drop(&mut self) {
        // Stop the gpg-agent this test's GnuPG home may have started.
        let _ = std::process::Command::new("gpgconf")
            .env("GNUPGHOME", &self.gnupg)
            .args(["--kill", "all"])
            .output();
    }
}

/// Files of a directory, for assertions.
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
