//! Signing through the `gpg` binary, so keys held by gpg-agent or on a
//! smartcard work without promoter ever seeing them.

use std::io::Write;
use std::process::{Command, Stdio};

use openpgp::Cert;
use openpgp::parse::Parse;
use sequoia_openpgp as openpgp;

use super::SigningError;

fn gpg() -> Command {
    Command::new(std::env::var_os("PROMOTER_GPG").unwrap_or_else(|| "gpg".into()))
}

/// Exports the public certificate of `key_id` from gpg and returns its primary
/// fingerprint and first user id.
pub fn gpg_certificate(key_id: &str) -> Result<(String, String), SigningError> {
    let out = gpg()
        .args(["--batch", "--export", "--", key_id])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| SigningError::Gpg(format!("cannot run gpg: {e}")))?;
    if !out.status.success() || out.stdout.is_empty() {
        return Err(SigningError::Gpg(format!(
            "no public key for `{key_id}` in gpg's keyring{}",
            stderr_suffix(&out.stderr)
        )));
    }
    let cert = Cert::from_bytes(&out.stdout).map_err(|e| {
        SigningError::Gpg(format!("`{key_id}` matches more than one key or none: {e}"))
    })?;
    let userid = cert
        .userids()
        .next()
        .map(|u| String::from_utf8_lossy(u.userid().value()).into_owned())
        .unwrap_or_default();
    Ok((cert.fingerprint().to_hex(), userid))
}

/// Makes a detached, armored, binary-mode signature over `data` with gpg,
/// with non-critical notations.
pub fn gpg_sign(
    key_id: &str,
    data: &[u8],
    notations: &[(&str, &str)],
) -> Result<Vec<u8>, SigningError> {
    let mut cmd = gpg();
    cmd.args([
        "--armor",
        "--detach-sign",
        "--output",
        "-",
        "--local-user",
        key_id,
    ]);
    for (name, value) in notations {
        cmd.arg("--sig-notation").arg(format!("{name}={value}"));
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| SigningError::Gpg(format!("cannot run gpg: {e}")))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child
        .wait_with_output()
        .map_err(|e| SigningError::Gpg(format!("gpg failed: {e}")))?;
    let _ = writer.join();
    if !out.status.success() {
        return Err(SigningError::Gpg(format!(
            "signing with `{key_id}` failed{}",
            stderr_suffix(&out.stderr)
        )));
    }
    Ok(out.stdout)
}

fn stderr_suffix(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}
