//! Data profiles (`promoter profile`): named datasets saved from an
//! environment and restored into DEV or a branch for tests.
//!
//! `profiles/<name>/profile.yaml` is committed: it pins the artifact (a
//! pg_dump directory in the profile store, outside git) file by file, and
//! records the schema fingerprint and ledger head it was taken at, so that
//! a restore can prove it is faithful. `clean-db` is no artifact at all: an
//! empty database, then every changeset.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::changeset::Sha256Digest;
use crate::ledger::Head;

/// The profile that is built, not saved: an empty database and the changesets.
pub const CLEAN_DB: &str = "clean-db";

/// Where profile files live in the repository.
pub const PROFILES_DIR: &str = "profiles";

/// The committed description of a profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    /// The environment (or branch) it was taken from.
    pub from: String,
    pub taken_at: String,
    pub taken_by: String,
    pub artifact: Artifact,
    /// The schema fingerprint of the source when it was taken.
    pub schema_fingerprint: Sha256Digest,
    /// The source's ledger head when it was taken (`None`: no ledger).
    pub ledger_head: Option<Head>,
    /// sha256 of the masking spec the data went through, if any.
    pub masking_sha256: Option<String>,
}

/// The dump a profile restores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// `pg_dump-directory`.
    pub format: String,
    /// Its directory, relative to the profile store.
    pub path: String,
    /// sha256 of its manifest (`<sha256>  <file>\n` per file, sorted).
    pub sha256: Sha256Digest,
    pub bytes: u64,
    /// Every file of the directory and its sha256.
    pub files: BTreeMap<String, Sha256Digest>,
}

/// Whether `name` may name a profile (a directory under `profiles/`).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "profile name `{name}` must match [a-z0-9][a-z0-9_-]* (at most 63 characters)"
        ))
    }
}

/// `profiles/<name>/profile.yaml` under the project root.
pub fn file(root: &Path, name: &str) -> PathBuf {
    root.join(PROFILES_DIR).join(name).join("profile.yaml")
}

impl Profile {
    pub fn load(root: &Path, name: &str) -> Result<Self, String> {
        let path = file(root, name);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!(
                    "no profile {name}: {} does not exist (`promoter profile list`)",
                    path.display()
                ));
            }
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        crate::limits::check(
            &path.display().to_string(),
            text.len() as u64,
            crate::limits::SMALL_FILE,
        )?;
        let profile: Self = serde_yaml_ng::from_slice(&text).map_err(|e| {
            format!(
                "{}: {}",
                path.display(),
                crate::config::describe_yaml_error(&e)
            )
        })?;
        if profile.name != name {
            return Err(format!(
                "{}: names profile {}, not {name}",
                path.display(),
                profile.name
            ));
        }
        if manifest_hash(&profile.artifact.files) != profile.artifact.sha256 {
            return Err(format!(
                "{}: artifact.sha256 is not the hash of artifact.files",
                path.display()
            ));
        }
        let p = Path::new(&profile.artifact.path);
        if p.is_absolute()
            || p.components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(format!(
                "{}: artifact.path must be relative to the profile store, without `..`",
                path.display()
            ));
        }
        Ok(profile)
    }

    pub fn render(&self) -> String {
        format!(
            "# promoter data profile {}: the artifact lives in the profile store, pinned here file by file\n{}",
            self.name,
            serde_yaml_ng::to_string(self).expect("plain data serializes")
        )
    }
}

/// The sha256 of the manifest text of `files`.
pub fn manifest_hash(files: &BTreeMap<String, Sha256Digest>) -> Sha256Digest {
    let text: String = files
        .iter()
        .map(|(name, h)| format!("{}  {name}\n", h.to_hex()))
        .collect();
    Sha256Digest::of(text.as_bytes())
}

/// Every regular file of an artifact directory (flat, as pg_dump's
/// directory format writes it) with its sha256, and their total size.
pub fn hash_dir(dir: &Path) -> Result<(BTreeMap<String, Sha256Digest>, u64), String> {
    let mut files = BTreeMap::new();
    let mut bytes = 0;
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = entry.path();
        let meta =
            std::fs::symlink_metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if !meta.is_file() {
            return Err(format!(
                "{}: not a regular file; an artifact holds only pg_dump's files",
                path.display()
            ));
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let f = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        // Streamed: a table's data file may be larger than memory.
        let digest = Sha256Digest::of_reader(std::io::BufReader::with_capacity(1 << 20, f))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        bytes += meta.len();
        files.insert(name, digest);
    }
    Ok((files, bytes))
}

/// What differs between the artifact directory and the profile's pins:
/// every file changed, missing or added, by name.
pub fn verify(profile: &Profile, dir: &Path) -> Result<Vec<String>, String> {
    if !dir.is_dir() {
        return Err(format!(
            "the artifact of profile {} is not in the store: {} does not exist",
            profile.name,
            dir.display()
        ));
    }
    let (actual, _) = hash_dir(dir)?;
    let mut problems = Vec::new();
    for (name, want) in &profile.artifact.files {
        match actual.get(name) {
            None => problems.push(format!("{name}: missing")),
            Some(h) if h != want => problems.push(format!(
                "{name}: modified (sha256 {}, the profile pins {})",
                h.short(),
                want.short()
            )),
            Some(_) => {}
        }
    }
    for name in actual.keys() {
        if !profile.artifact.files.contains_key(name) {
            problems.push(format!("{name}: not in the profile"));
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_names_are_directory_safe() {
        for (name, ok) in [
            ("user-generated", true),
            ("customer1", true),
            ("clean-db", true),
            ("a_b", true),
            ("", false),
            ("-x", false),
            ("../x", false),
            ("X", false),
            ("a/b", false),
        ] {
            assert_eq!(check_name(name).is_ok(), ok, "{name:?}");
        }
    }

    #[test]
    fn an_artifact_is_pinned_file_by_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("toc.dat"), b"toc").unwrap();
        std::fs::write(dir.path().join("3001.dat.gz"), b"rows").unwrap();
        let (files, bytes) = hash_dir(dir.path()).unwrap();
        assert_eq!(bytes, 7);
        let profile = Profile {
            name: "p".into(),
            from: "qat".into(),
            taken_at: "t".into(),
            taken_by: "u@h".into(),
            artifact: Artifact {
                format: "pg_dump-directory".into(),
                path: "p/1".into(),
                sha256: manifest_hash(&files),
                bytes,
                files,
            },
            schema_fingerprint: Sha256Digest::of(b"s"),
            ledger_head: None,
            masking_sha256: None,
        };
        assert!(verify(&profile, dir.path()).unwrap().is_empty());
        std::fs::write(dir.path().join("3001.dat.gz"), b"rowz").unwrap();
        std::fs::write(dir.path().join("extra"), b"").unwrap();
        std::fs::remove_file(dir.path().join("toc.dat")).unwrap();
        let problems = verify(&profile, dir.path()).unwrap();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("3001.dat.gz: modified"));
        assert_eq!(problems[1], "toc.dat: missing");
        assert_eq!(problems[2], "extra: not in the profile");
        // The text round-trips, and a file that lies about its hash is refused.
        let root = tempfile::tempdir().unwrap();
        let path = file(root.path(), "p");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, profile.render()).unwrap();
        assert_eq!(Profile::load(root.path(), "p").unwrap(), profile);
        let mut bad = profile.clone();
        bad.artifact.sha256 = Sha256Digest::of(b"x");
        std::fs::write(&path, bad.render()).unwrap();
        assert!(
            Profile::load(root.path(), "p")
                .unwrap_err()
                .contains("artifact.sha256")
        );
        let mut escape = profile;
        escape.artifact.path = "../../etc".into();
        std::fs::write(&path, escape.render()).unwrap();
        assert!(
            Profile::load(root.path(), "p")
                .unwrap_err()
                .contains("without `..`")
        );
    }
}
