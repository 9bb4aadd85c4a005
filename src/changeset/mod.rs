//! Changesets on disk or in git: discovery, the files of a bundle, its
//! `changeset.yaml`, and the rules that make a bundle sealable.
//!
//! Pure and synchronous: nothing here talks to a database or a terminal.

mod id;
pub mod manifest;
pub mod source;

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use id::{ChangesetId, IdError, validate_slug};
pub use manifest::{
    FileProblem, HashingReader, MANIFEST_FILE, Manifest, ManifestError, Sha256Digest, bundle_hash,
};

/// File name of the changeset's metadata.
pub const META_FILE: &str = "changeset.yaml";
/// Directory of detached signatures inside a bundle.
pub const SIGNATURES_DIR: &str = "signatures";
/// Directory of changesets in a project.
pub const CHANGESETS_DIR: &str = "changesets";

/// How a changeset's scripts are wrapped in transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum TransactionMode {
    /// All scripts and the ledger row in one transaction.
    #[default]
    #[serde(rename = "per-changeset")]
    PerChangeset,
    /// Statement by statement in autocommit, for `CREATE INDEX CONCURRENTLY` and the like.
    #[serde(rename = "none")]
    None,
}

impl fmt::Display for TransactionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::PerChangeset => "per-changeset",
            Self::None => "none",
        })
    }
}

/// `changeset.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangesetMeta {
    /// Repeats the directory name, so the id is covered by the manifest.
    pub id: String,
    /// What the change does, for people reading `status` and the ledger.
    #[serde(default)]
    pub description: String,
    /// `per-changeset` (default) or `none`.
    #[serde(default)]
    pub transaction: TransactionMode,
    /// For a baseline (`promoter baseline`): what it folds, and the schema it
    /// gives. Absent for every other changeset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineMeta>,
}

/// `baseline:` in a baseline's `changeset.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineMeta {
    /// The schema fingerprint a database has after applying it (and after
    /// applying every changeset it supersedes).
    pub schema_fingerprint: Sha256Digest,
    /// The changesets it folds, in order, with the bundles they had.
    pub supersedes: Vec<Superseded>,
}

/// One changeset a baseline folds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Superseded {
    pub id: String,
    pub bundle: Sha256Digest,
}

/// Everything that can be wrong with a bundle's files before any signature is looked at.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{0}")]
    TooLarge(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{location}: {message}")]
    Git { location: String, message: String },
    #[error("{location}/{name}: symbolic links are not allowed in a bundle")]
    Symlink { location: String, name: String },
    #[error("{location}/{name}: not a regular file (only regular files may be in a bundle)")]
    NotRegular { location: String, name: String },
    #[error("{location}/{name}: subdirectories are not allowed in a bundle (only `signatures/`)")]
    Subdirectory { location: String, name: String },
    #[error("{location}/{name}: file names may only use `0-9 a-z . _ -`")]
    BadFileName { location: String, name: String },
    #[error("{location}/{name}: starts with a UTF-8 byte-order mark; save it without BOM")]
    ByteOrderMark { location: String, name: String },
    #[error("{location}/{name}: signature files must be named `*.asc`")]
    BadSignatureName { location: String, name: String },
    #[error("{location}: {META_FILE} is missing")]
    MissingMeta { location: String },
    #[error("{location}/{META_FILE}: {message}")]
    BadMeta { location: String, message: String },
    #[error("{location}/{META_FILE}: id `{found}` does not match the directory name `{expected}`")]
    IdMismatch {
        location: String,
        expected: String,
        found: String,
    },
    #[error("{location}: has no *.sql scripts")]
    NoScripts { location: String },
    #[error("{location}/{MANIFEST_FILE}: {source}")]
    BadManifest {
        location: String,
        source: ManifestError,
    },
    #[error("{location}: not sealed (no {MANIFEST_FILE}); run `promoter seal {id}`")]
    NotSealed { location: String, id: String },
    #[error("{location}: {name} is not a changeset directory: {source}")]
    BadDirectory {
        location: String,
        name: String,
        source: IdError,
    },
    #[error("changeset number {number} is used twice: {first} and {second}")]
    DuplicateNumber {
        number: u64,
        first: String,
        second: String,
    },
    #[error("no changeset matches `{0}`")]
    NoSuchChangeset(String),
}

/// Where a file's bytes come from.
#[derive(Debug, Clone)]
pub enum FileSource {
    /// A regular file in the work tree.
    Disk(PathBuf),
    /// A blob in a git repository, streamed when opened.
    Git(source::GitBlob),
}

/// One file of a bundle (not `SHA256SUMS`, not a signature).
#[derive(Debug, Clone)]
pub struct BundleFile {
    pub name: String,
    pub source: FileSource,
}

impl BundleFile {
    /// Reads the whole file.
    pub fn read(&self) -> Result<Vec<u8>, BundleError> {
        match &self.source {
            FileSource::Disk(path) => std::fs::read(path).map_err(|source| BundleError::Io {
                path: path.clone(),
                source,
            }),
            FileSource::Git(_) => {
                let mut out = Vec::new();
                self.open()?
                    .read_to_end(&mut out)
                    .map_err(|source| BundleError::Io {
                        path: self.display_path(),
                        source,
                    })?;
                Ok(out)
            }
        }
    }

    /// Opens the file for streaming.
    pub fn open(&self) -> Result<Box<dyn std::io::Read + Send>, BundleError> {
        match &self.source {
            FileSource::Disk(path) => {
                let file = std::fs::File::open(path).map_err(|source| BundleError::Io {
                    path: path.clone(),
                    source,
                })?;
                Ok(Box::new(file))
            }
            FileSource::Git(blob) => blob.open().map_err(|source| BundleError::Io {
                path: self.display_path(),
                source,
            }),
        }
    }

    /// The file's size in bytes, without reading it (`None` if it cannot be told).
    pub fn size(&self) -> Option<u64> {
        match &self.source {
            FileSource::Disk(path) => std::fs::metadata(path).ok().map(|m| m.len()),
            FileSource::Git(blob) => blob.size().ok(),
        }
    }

    /// Sha256 of the file, streamed.
    pub fn digest(&self) -> Result<Sha256Digest, BundleError> {
        let reader = self.open()?;
        Sha256Digest::of_reader(reader).map_err(|source| BundleError::Io {
            path: self.display_path(),
            source,
        })
    }

    fn display_path(&self) -> PathBuf {
        match &self.source {
            FileSource::Disk(p) => p.clone(),
            FileSource::Git(_) => PathBuf::from(&self.name),
        }
    }

    /// Whether this file is a script (`*.sql`).
    pub fn is_script(&self) -> bool {
        self.name.ends_with(".sql")
    }
}

/// A detached signature file found in `signatures/`.
#[derive(Debug, Clone)]
pub struct SignatureFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// A changeset bundle as found in the work tree or in git, not yet checked.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub id: ChangesetId,
    /// Where it lives, for messages: `changesets/0001-x` or `changesets/0001-x@abc1234`.
    pub location: String,
    /// The directory in the work tree, when read from there.
    pub dir: Option<PathBuf>,
    /// Every file but `SHA256SUMS` and `signatures/`, in byte-wise name order.
    pub files: Vec<BundleFile>,
    /// The bytes of `SHA256SUMS`, if sealed.
    pub manifest: Option<Vec<u8>>,
    /// When the work tree's `SHA256SUMS` was last written (from the stat
    /// taken as it was read).
    pub sealed_at: Option<std::time::SystemTime>,
    pub signatures: Vec<SignatureFile>,
}

/// An approval statement found in `signatures/`, with its detached signature.
#[derive(Debug, Clone, Copy)]
pub struct ApprovalFiles<'a> {
    /// `approval-<FPR>.txt`
    pub name: &'a str,
    pub statement: &'a [u8],
    /// `approval-<FPR>.txt.asc`, if present.
    pub signature: Option<&'a [u8]>,
}

impl Bundle {
    /// The detached signatures over `SHA256SUMS`: every `*.asc` except the
    /// signatures of approval statements (`*.txt.asc`).
    pub fn manifest_signatures(&self) -> impl Iterator<Item = &SignatureFile> {
        self.signatures
            .iter()
            .filter(|s| s.name.ends_with(".asc") && !s.name.ends_with(".txt.asc"))
    }

    /// The approval statements and their signatures.
    pub fn approvals(&self) -> Vec<ApprovalFiles<'_>> {
        self.signatures
            .iter()
            .filter(|s| s.name.ends_with(".txt"))
            .map(|s| ApprovalFiles {
                name: &s.name,
                statement: &s.bytes,
                signature: self
                    .signatures
                    .iter()
                    .find(|sig| sig.name == format!("{}.asc", s.name))
                    .map(|sig| sig.bytes.as_slice()),
            })
            .collect()
    }

    /// The scripts, in execution order (byte-wise by file name).
    pub fn scripts(&self) -> impl Iterator<Item = &BundleFile> {
        self.files.iter().filter(|f| f.is_script())
    }

    /// Parses `changeset.yaml` and checks that its id matches the directory.
    pub fn meta(&self) -> Result<ChangesetMeta, BundleError> {
        self.meta_of(&self.meta_bytes()?)
    }

    /// The bytes of `changeset.yaml`, refused before they are read when
    /// the file is larger than [`crate::limits::CHANGESET_YAML`] (and never
    /// read past it, should it grow meanwhile).
    pub fn meta_bytes(&self) -> Result<Vec<u8>, BundleError> {
        let limit = crate::limits::CHANGESET_YAML;
        let file = self
            .files
            .iter()
            .find(|f| f.name == META_FILE)
            .ok_or_else(|| BundleError::MissingMeta {
                location: self.location.clone(),
            })?;
        if let Some(size) = file.size()
            && let Err(message) = crate::limits::within(size, limit)
        {
            return Err(BundleError::BadMeta {
                location: self.location.clone(),
                message,
            });
        }
        let mut bytes = Vec::new();
        file.open()?
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| BundleError::Io {
                path: file.display_path(),
                source,
            })?;
        Ok(bytes)
    }

    /// [`Bundle::meta`] of these bytes of `changeset.yaml` (read once by
    /// whoever also hashes them: what decides how a changeset runs must be
    /// the bytes its manifest was checked against).
    pub fn meta_of(&self, bytes: &[u8]) -> Result<ChangesetMeta, BundleError> {
        let meta = parse_meta(bytes).map_err(|message| BundleError::BadMeta {
            location: self.location.clone(),
            message,
        })?;
        if meta.id != self.id.as_str() {
            return Err(BundleError::IdMismatch {
                location: self.location.clone(),
                expected: self.id.to_string(),
                found: meta.id,
            });
        }
        // Baselines are known by name before their changeset.yaml is read
        // (planning reads only theirs); a `baseline:` elsewhere is refused.
        if meta.baseline.is_some() && !self.is_baseline_named() {
            return Err(BundleError::BadMeta {
                location: self.location.clone(),
                message: "`baseline:` belongs only to a changeset named NNNN-baseline (written by `promoter baseline`)".into(),
            });
        }
        Ok(meta)
    }

    /// Whether the id is `NNNN-baseline`, the name `promoter baseline` gives.
    pub fn is_baseline_named(&self) -> bool {
        self.id
            .as_str()
            .split_once('-')
            .is_some_and(|(_, slug)| slug == "baseline")
    }

    /// What a baseline folds (`None` for any other changeset; its
    /// changeset.yaml is read only when the name says baseline).
    pub fn baseline(&self) -> Option<BaselineMeta> {
        if !self.is_baseline_named() {
            return None;
        }
        self.meta().ok()?.baseline
    }

    /// Hashes every file: the manifest these files would be sealed with.
    pub fn compute_manifest(&self) -> Result<Manifest, BundleError> {
        let mut entries = Vec::with_capacity(self.files.len());
        for file in &self.files {
            entries.push((file.name.clone(), file.digest()?));
        }
        Ok(Manifest::from_entries(entries))
    }

    /// The sealed manifest bytes, or `NotSealed`.
    pub fn sealed_manifest(&self) -> Result<(&[u8], Manifest), BundleError> {
        let bytes = self
            .manifest
            .as_deref()
            .ok_or_else(|| BundleError::NotSealed {
                location: self.location.clone(),
                id: self.id.to_string(),
            })?;
        let manifest = Manifest::parse(bytes).map_err(|source| BundleError::BadManifest {
            location: self.location.clone(),
            source,
        })?;
        Ok((bytes, manifest))
    }

    /// The bundle hash, if sealed.
    pub fn hash(&self) -> Option<Sha256Digest> {
        self.manifest.as_deref().map(bundle_hash)
    }

    /// Checks that the files are exactly what `SHA256SUMS` lists and that
    /// `changeset.yaml` is valid. Returns the manifest problems (empty when intact).
    /// Whether a file of this work-tree bundle was written after its
    /// `SHA256SUMS` (or is newer than it by its modification time): a cheap
    /// test by `stat` before [`Bundle::check_files`] hashes anything.
    pub fn touched_since_sealed(&self) -> bool {
        let Some(sealed) = self.sealed_at else {
            return false;
        };
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        self.files.iter().any(|f| match &f.source {
            FileSource::Disk(path) => mtime(path).is_none_or(|t| t > sealed),
            FileSource::Git(_) => false,
        })
    }

    pub fn check_files(&self) -> Result<Vec<FileProblem>, BundleError> {
        let (_, sealed) = self.sealed_manifest()?;
        let actual = self.compute_manifest()?;
        Ok(sealed.check(&actual))
    }

    /// Rules checked before sealing: metadata, scripts present, no BOM.
    pub fn check_sealable(&self) -> Result<(), BundleError> {
        self.meta()?;
        if self.scripts().next().is_none() {
            return Err(BundleError::NoScripts {
                location: self.location.clone(),
            });
        }
        for file in &self.files {
            let mut head = [0u8; 3];
            let mut reader = file.open()?;
            let n = read_up_to(&mut reader, &mut head).map_err(|source| BundleError::Io {
                path: file.display_path(),
                source,
            })?;
            if n == 3 && head == [0xEF, 0xBB, 0xBF] {
                return Err(BundleError::ByteOrderMark {
                    location: self.location.clone(),
                    name: file.name.clone(),
                });
            }
        }
        Ok(())
    }
}

fn read_up_to(reader: &mut dyn std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Parses `changeset.yaml`; the error names line and column.
pub fn parse_meta(bytes: &[u8]) -> Result<ChangesetMeta, String> {
    // Every caller names the file (`BundleError::BadMeta`).
    crate::limits::within(bytes.len() as u64, crate::limits::CHANGESET_YAML)?;
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    crate::limits::yaml_depth(text)?;
    serde_yaml_ng::from_str(text).map_err(|e| crate::config::describe_yaml_error(&e))
}

/// Renders `changeset.yaml` for a new changeset.
pub fn render_meta(meta: &ChangesetMeta) -> String {
    let mut out = format!("id: {}\n", meta.id);
    out.push_str(&format!(
        "description: {}\n",
        yaml_scalar(&meta.description)
    ));
    out.push_str(&format!(
        "transaction: {}{}\n",
        meta.transaction,
        match meta.transaction {
            TransactionMode::PerChangeset =>
                "   # per-changeset: all scripts in one transaction; none: statement by statement",
            TransactionMode::None =>
                "   # statement by statement in autocommit (CREATE INDEX CONCURRENTLY, ...)",
        }
    ));
    out
}

fn yaml_scalar(s: &str) -> String {
    serde_yaml_ng::to_string(s)
        .map(|y| y.trim_end().to_owned())
        .unwrap_or_else(|_| format!("{s:?}"))
}

/// Whether `name` is a valid bundle file name: `[0-9a-z._-]+`, not `.` or `..`.
pub fn validate_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

/// Picks the changesets named by `args` (id, number or slug) from `all`;
/// every argument must match exactly one changeset. No arguments selects all.
pub fn select<'a, T>(
    all: &'a [T],
    args: &[String],
    id_of: impl Fn(&T) -> &ChangesetId,
) -> Result<Vec<&'a T>, BundleError> {
    if args.is_empty() {
        return Ok(all.iter().collect());
    }
    let mut out: Vec<&T> = Vec::new();
    for arg in args {
        let found = all
            .iter()
            .find(|t| id_of(t).matches(arg))
            .ok_or_else(|| BundleError::NoSuchChangeset(arg.clone()))?;
        if !out.iter().any(|t| id_of(t) == id_of(found)) {
            out.push(found);
        }
    }
    out.sort_by(|a, b| id_of(a).cmp(id_of(b)));
    Ok(out)
}

/// Checks that changeset numbers are unique across the project.
pub fn check_unique_numbers<'a>(
    ids: impl IntoIterator<Item = &'a ChangesetId>,
) -> Result<(), BundleError> {
    let mut sorted: Vec<&ChangesetId> = ids.into_iter().collect();
    sorted.sort();
    for pair in sorted.windows(2) {
        if pair[0].number() == pair[1].number() {
            return Err(BundleError::DuplicateNumber {
                number: pair[0].number(),
                first: pair[0].to_string(),
                second: pair[1].to_string(),
            });
        }
    }
    Ok(())
}

/// Path of a project's changesets directory.
pub fn changesets_dir(root: &Path) -> PathBuf {
    root.join(CHANGESETS_DIR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_follow_the_rule() {
        for ok in [
            "001-schema.sql",
            "changeset.yaml",
            "readme.md",
            "data_1.csv",
            ".gitkeep",
        ] {
            assert!(validate_file_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "Schema.sql",
            "a b.sql",
            "a/b.sql",
            "é.sql",
            "x~",
        ] {
            assert!(!validate_file_name(bad), "{bad}");
        }
    }

    #[test]
    fn meta_rejects_unknown_fields_and_bad_modes() {
        assert_eq!(
            parse_meta(b"id: 0001-a\n").unwrap(),
            ChangesetMeta {
                id: "0001-a".into(),
                description: String::new(),
                transaction: TransactionMode::PerChangeset,
                baseline: None,
            }
        );
        assert_eq!(
            parse_meta(b"id: 0001-a\ntransaction: none\n")
                .unwrap()
                .transaction,
            TransactionMode::None
        );
        let err = parse_meta(b"id: 0001-a\ntransactions: none\n").unwrap_err();
        assert!(
            err.contains("line 2") && err.contains("unknown field `transactions`"),
            "{err}"
        );
        let err = parse_meta(b"id: 0001-a\ntransaction: sometimes\n").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn rendered_meta_parses_back() {
        let meta = ChangesetMeta {
            id: "0003-x".into(),
            description: "Add: an index # not a comment".into(),
            transaction: TransactionMode::None,
            baseline: None,
        };
        assert_eq!(parse_meta(render_meta(&meta).as_bytes()).unwrap(), meta);
    }

    #[test]
    fn duplicate_numbers_are_refused() {
        let ids = [
            ChangesetId::parse("0001-a").unwrap(),
            ChangesetId::parse("00001-b").unwrap(),
        ];
        assert!(matches!(
            check_unique_numbers(&ids),
            Err(BundleError::DuplicateNumber { number: 1, .. })
        ));
    }
}
