//! Reading bundles: from the work tree (`seal`, `sign`, `apply`) or from a git
//! revision (`promote`, `audit`), so that uncommitted edits cannot slip in.

use std::path::{Path, PathBuf};

use super::{
    Bundle, BundleError, BundleFile, CHANGESETS_DIR, ChangesetId, FileSource, MANIFEST_FILE,
    SIGNATURES_DIR, SignatureFile, validate_file_name,
};

/// A changeset directory found in the work tree, not yet read.
#[derive(Debug, Clone)]
pub struct BundleDir {
    pub id: ChangesetId,
    pub path: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A file in `changesets/` that is not a changeset (a README): ignored,
/// said once per process. A *directory* with such a name stays an error:
/// it may be a changeset with a mistyped name.
fn note_stray(shown: &str) {
    static SEEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut seen = SEEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let name = shown.split('@').next().unwrap_or(shown).to_owned();
    if !seen.contains(&name) {
        crate::output::eprint(&format!(
            "note: {name} is not a changeset (those are NNNN-slug directories); ignored"
        ));
        seen.push(name);
    }
}

/// Lists `changesets/*` in the work tree, ordered by number. Every
/// directory must be a changeset (hidden files such as `.gitkeep`, and other
/// files, with a note, are ignored); numbers must be unique.
pub fn discover(root: &Path) -> Result<Vec<BundleDir>, BundleError> {
    discover_in(root, Path::new(CHANGESETS_DIR))
}

/// Every bundle of the work tree, in order ([`discover`], then [`load_dir`]).
pub fn load_work_tree(root: &Path) -> Result<Vec<Bundle>, BundleError> {
    // On every core: at a thousand bundles, the file system's calls (a
    // directory listing and two or three reads each) are most of a
    // `status`. The first error in order is the one reported.
    crate::threads::parallel_map(&discover(root)?, load_dir)
        .into_iter()
        .collect()
}

/// Where a baseline's superseded changesets go: `changesets/archive/`.
/// They are never applied again, and stay verifiable (`verify`, `audit`).
pub const ARCHIVE_DIR: &str = "archive";

/// The changesets a baseline folded, in `changesets/archive/`.
pub fn discover_archive(root: &Path) -> Result<Vec<BundleDir>, BundleError> {
    discover_in(root, &Path::new(CHANGESETS_DIR).join(ARCHIVE_DIR))
}

fn discover_in(root: &Path, rel: &Path) -> Result<Vec<BundleDir>, BundleError> {
    let dir = root.join(rel);
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err(&dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err(&dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let file_type = entry.file_type().map_err(io_err(&entry.path()))?;
        if name == ARCHIVE_DIR && file_type.is_dir() {
            continue;
        }
        let id = match ChangesetId::parse(&name) {
            Ok(id) => id,
            Err(_) if file_type.is_file() => {
                note_stray(&format!("{CHANGESETS_DIR}/{name}"));
                continue;
            }
            Err(source) => {
                return Err(BundleError::BadDirectory {
                    location: CHANGESETS_DIR.to_owned(),
                    name: name.clone(),
                    source,
                });
            }
        };
        if file_type.is_symlink() {
            return Err(BundleError::Symlink {
                location: CHANGESETS_DIR.to_owned(),
                name,
            });
        }
        if !file_type.is_dir() {
            return Err(BundleError::NotRegular {
                location: CHANGESETS_DIR.to_owned(),
                name,
            });
        }
        out.push(BundleDir {
            id,
            path: entry.path(),
        });
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    super::check_unique_numbers(out.iter().map(|d| &d.id))?;
    Ok(out)
}

/// What a directory entry is, as the file system or a git tree says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryKind {
    File,
    Dir,
    Link,
    /// FIFOs, sockets, devices, git submodules.
    Other,
}

/// Where an accepted entry of a bundle directory goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Manifest,
    Signatures,
    File,
}

/// The bundle rules, shared by the work-tree and the git reader so that both
/// accept exactly the same bundles: regular files with valid names,
/// `SHA256SUMS`, and a `signatures/` directory; nothing else.
fn classify(location: &str, name: &str, kind: EntryKind) -> Result<Slot, BundleError> {
    let err =
        |make: fn(String, String) -> BundleError| Err(make(location.to_owned(), name.to_owned()));
    match kind {
        EntryKind::Link => err(|location, name| BundleError::Symlink { location, name }),
        EntryKind::Dir if name == SIGNATURES_DIR => Ok(Slot::Signatures),
        EntryKind::Dir => err(|location, name| BundleError::Subdirectory { location, name }),
        EntryKind::Other => err(|location, name| BundleError::NotRegular { location, name }),
        EntryKind::File if name == MANIFEST_FILE => Ok(Slot::Manifest),
        EntryKind::File if !validate_file_name(name) => {
            err(|location, name| BundleError::BadFileName { location, name })
        }
        EntryKind::File => Ok(Slot::File),
    }
}

/// The rules for an entry of `signatures/`: regular `*.asc` files (detached
/// signatures) and `approval-*.txt` files (approval statements) only.
fn classify_signature(location: &str, name: &str, kind: EntryKind) -> Result<(), BundleError> {
    let err =
        |make: fn(String, String) -> BundleError| Err(make(location.to_owned(), name.to_owned()));
    match kind {
        EntryKind::Link => err(|location, name| BundleError::Symlink { location, name }),
        EntryKind::Dir | EntryKind::Other => {
            err(|location, name| BundleError::NotRegular { location, name })
        }
        EntryKind::File
            if !(name.ends_with(".asc")
                || (name.starts_with("approval-") && name.ends_with(".txt"))) =>
        {
            err(|location, name| BundleError::BadSignatureName { location, name })
        }
        EntryKind::File => Ok(()),
    }
}

fn disk_kind(file_type: std::fs::FileType) -> EntryKind {
    if file_type.is_symlink() {
        EntryKind::Link
    } else if file_type.is_dir() {
        EntryKind::Dir
    } else if file_type.is_file() {
        EntryKind::File
    } else {
        EntryKind::Other
    }
}

fn git_kind(mode: i32) -> EntryKind {
    match mode {
        MODE_BLOB | MODE_BLOB_EXECUTABLE => EntryKind::File,
        MODE_TREE => EntryKind::Dir,
        MODE_LINK => EntryKind::Link,
        _ => EntryKind::Other,
    }
}

/// Reads one bundle from the work tree, refusing symlinks, subdirectories,
/// non-regular files and misnamed files.
pub fn load_dir(dir: &BundleDir) -> Result<Bundle, BundleError> {
    let archived = dir
        .path
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|n| n == ARCHIVE_DIR);
    let location = if archived {
        format!("{CHANGESETS_DIR}/{ARCHIVE_DIR}/{}", dir.id)
    } else {
        format!("{CHANGESETS_DIR}/{}", dir.id)
    };
    let mut files = Vec::new();
    let mut manifest = None;
    let mut signatures = Vec::new();
    let mut sealed_at = None;
    for entry in std::fs::read_dir(&dir.path).map_err(io_err(&dir.path))? {
        let entry = entry.map_err(io_err(&dir.path))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind = disk_kind(entry.file_type().map_err(io_err(&path))?);
        match classify(&location, &name, kind)? {
            Slot::Signatures => {
                signatures = read_signature_dir(&path, &format!("{location}/{SIGNATURES_DIR}"))?;
            }
            Slot::Manifest => {
                let (bytes, modified) = read_small(
                    &path,
                    &format!("{location}/{name}"),
                    crate::limits::MANIFEST,
                )?;
                sealed_at = modified;
                manifest = Some(bytes);
            }
            Slot::File => files.push(BundleFile {
                name,
                source: FileSource::Disk(path),
            }),
        }
    }
    files.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    Ok(Bundle {
        id: dir.id.clone(),
        location,
        dir: Some(dir.path.clone()),
        files,
        manifest,
        sealed_at,
        signatures,
    })
}

/// A small file of a bundle ([`crate::limits::read_whole`]; `shown` names
/// it), with when it was modified.
fn read_small(
    path: &Path,
    shown: &str,
    limit: u64,
) -> Result<(Vec<u8>, Option<std::time::SystemTime>), BundleError> {
    use crate::limits::ReadError;
    match crate::limits::read_whole(path, shown, limit) {
        Ok((bytes, meta)) => Ok((bytes, meta.modified().ok())),
        Err(ReadError::TooLarge(message)) => Err(BundleError::TooLarge(message)),
        Err(ReadError::Io(e)) => Err(io_err(path)(e)),
    }
}

fn read_signature_dir(path: &Path, location: &str) -> Result<Vec<SignatureFile>, BundleError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io_err(path))? {
        let entry = entry.map_err(io_err(path))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        classify_signature(
            location,
            &name,
            disk_kind(entry.file_type().map_err(io_err(&entry.path()))?),
        )?;
        let limit = crate::limits::in_signatures_dir(&name);
        let (bytes, _) = read_small(&entry.path(), &format!("{location}/{name}"), limit)?;
        out.push(SignatureFile { name, bytes });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Every bundle under `changesets/` in the tree of one git commit.
pub struct GitSnapshot {
    /// The full commit id `rev` resolved to.
    pub commit: String,
    pub bundles: Vec<Bundle>,
    /// Those a baseline folded, in `changesets/archive/`.
    pub archived: Vec<Bundle>,
}

/// Reads all bundles at `rev` in the repository that contains `root`.
pub fn load_git(root: &Path, rev: &str) -> Result<GitSnapshot, BundleError> {
    let git = |message: String| BundleError::Git {
        location: format!("{} at {rev}", root.display()),
        message,
    };
    let (repo, prefix, commit_id) = open_at(root, rev)?;
    let commit = repo
        .find_commit(commit_id)
        .map_err(|e| git(e.message().to_owned()))?;
    let short = commit.id().to_string()[..12].to_owned();
    let tree = commit.tree().map_err(|e| git(e.message().to_owned()))?;
    let bundles = load_git_dir(
        &repo,
        &tree,
        &prefix.join(CHANGESETS_DIR),
        CHANGESETS_DIR,
        &short,
    )?;
    let archive_rel = format!("{CHANGESETS_DIR}/{ARCHIVE_DIR}");
    let archived = load_git_dir(
        &repo,
        &tree,
        &prefix.join(CHANGESETS_DIR).join(ARCHIVE_DIR),
        &archive_rel,
        &short,
    )?;
    Ok(GitSnapshot {
        commit: commit.id().to_string(),
        bundles,
        archived,
    })
}

/// The bundles of one directory of the commit's tree (`changesets/`, or
/// its `archive/`), in id order.
fn load_git_dir(
    repo: &git2::Repository,
    tree: &git2::Tree<'_>,
    path: &Path,
    shown: &str,
    short: &str,
) -> Result<Vec<Bundle>, BundleError> {
    let git = |message: String| BundleError::Git {
        location: format!("{shown}@{short}"),
        message,
    };
    let mut bundles = Vec::new();
    let entry = match tree.get_path(path) {
        Ok(entry) => entry,
        Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(bundles),
        Err(e) => return Err(git(e.message().to_owned())),
    };
    let changesets = entry
        .to_object(repo)
        .and_then(|o| o.peel_to_tree())
        .map_err(|e| git(e.message().to_owned()))?;
    for entry in changesets.iter() {
        let name = String::from_utf8_lossy(entry.name_bytes()).into_owned();
        if name.starts_with('.') {
            continue;
        }
        if name == ARCHIVE_DIR && entry.kind() == Some(git2::ObjectType::Tree) {
            continue;
        }
        let id = match ChangesetId::parse(&name) {
            Ok(id) => id,
            Err(_) if entry.kind() == Some(git2::ObjectType::Blob) => {
                note_stray(&format!("{shown}/{name}@{short}"));
                continue;
            }
            Err(source) => {
                return Err(BundleError::BadDirectory {
                    location: format!("{shown}@{short}"),
                    name: name.clone(),
                    source,
                });
            }
        };
        if entry.kind() != Some(git2::ObjectType::Tree) {
            return Err(BundleError::NotRegular {
                location: format!("{shown}@{short}"),
                name,
            });
        }
        let location = format!("{shown}/{name}@{short}");
        let subtree = repo
            .find_tree(entry.id())
            .map_err(|e| git(format!("{name}: {}", e.message())))?;
        bundles.push(load_git_bundle(repo, id, location, &subtree)?);
    }
    bundles.sort_by(|a, b| a.id.cmp(&b.id));
    super::check_unique_numbers(bundles.iter().map(|b| &b.id))?;
    Ok(bundles)
}

// Git tree entry modes. A bundle holds regular blobs only: a link (0o120000)
// could point anywhere once checked out, and a gitlink (submodule) has no
// content in this repository at all.
const MODE_BLOB: i32 = 0o100644;
const MODE_BLOB_EXECUTABLE: i32 = 0o100755;
const MODE_LINK: i32 = 0o120000;
const MODE_TREE: i32 = 0o040000;

/// Reads one bundle's tree with the same rules as [`load_dir`]; file
/// contents are left in git and streamed when opened.
fn load_git_bundle(
    repo: &git2::Repository,
    id: ChangesetId,
    location: String,
    tree: &git2::Tree<'_>,
) -> Result<Bundle, BundleError> {
    let blob = |oid: git2::Oid, name: &str, limit: u64| -> Result<Vec<u8>, BundleError> {
        let shown = format!("{location}/{name}");
        let size = repo
            .odb()
            .and_then(|odb| odb.read_header(oid))
            .map(|(size, _)| size as u64);
        if let Ok(size) = size {
            crate::limits::check(&shown, size, limit).map_err(BundleError::TooLarge)?;
        }
        repo.find_blob(oid)
            .map(|b| b.content().to_vec())
            .map_err(|e| BundleError::Git {
                location: format!("{location}/{name}"),
                message: e.message().to_owned(),
            })
    };
    let mut files = Vec::new();
    let mut manifest = None;
    let mut signatures = Vec::new();
    for entry in tree.iter() {
        let name = String::from_utf8_lossy(entry.name_bytes()).into_owned();
        match classify(&location, &name, git_kind(entry.filemode()))? {
            Slot::Signatures => {
                let sig_tree = repo.find_tree(entry.id()).map_err(|e| BundleError::Git {
                    location: format!("{location}/{name}"),
                    message: e.message().to_owned(),
                })?;
                let sig_location = format!("{location}/{SIGNATURES_DIR}");
                for sig in sig_tree.iter() {
                    let sig_name = String::from_utf8_lossy(sig.name_bytes()).into_owned();
                    classify_signature(&sig_location, &sig_name, git_kind(sig.filemode()))?;
                    let limit = crate::limits::in_signatures_dir(&sig_name);
                    let bytes = blob(sig.id(), &format!("{SIGNATURES_DIR}/{sig_name}"), limit)?;
                    signatures.push(SignatureFile {
                        name: sig_name,
                        bytes,
                    });
                }
            }
            Slot::Manifest => manifest = Some(blob(entry.id(), &name, crate::limits::MANIFEST)?),
            Slot::File => files.push(BundleFile {
                name,
                source: FileSource::Git(GitBlob {
                    git_dir: repo.path().to_owned(),
                    oid: entry.id().to_string(),
                }),
            }),
        }
    }
    files.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    signatures.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Bundle {
        id,
        location,
        dir: None,
        files,
        manifest,
        sealed_at: None,
        signatures,
    })
}

/// Reads a file of the project at git revision `rev` (`None` if absent).
pub fn read_file_at(root: &Path, rev: &str, rel: &Path) -> Result<Option<Vec<u8>>, BundleError> {
    with_tree(root, rev, |repo, tree, prefix| {
        match tree.get_path(&prefix.join(rel)) {
            Ok(entry) => {
                small_enough(repo, entry.id(), &rel.display().to_string())?;
                let blob = repo
                    .find_blob(entry.id())
                    .map_err(|e| format!("{}: {}", rel.display(), e.message()))?;
                Ok(Some(blob.content().to_vec()))
            }
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e.message().to_owned()),
        }
    })
}

/// Reads the regular files of a directory of the project at `rev`, as (name, bytes).
pub fn read_dir_at(
    root: &Path,
    rev: &str,
    rel: &Path,
) -> Result<Vec<(String, Vec<u8>)>, BundleError> {
    with_tree(root, rev, |repo, tree, prefix| {
        let entry = match tree.get_path(&prefix.join(rel)) {
            Ok(entry) => entry,
            Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.message().to_owned()),
        };
        match entry.filemode() {
            MODE_TREE => {}
            MODE_LINK => {
                return Err(format!(
                    "{}: is a symbolic link in git; a keyring must be a directory of certificates committed as such",
                    rel.display()
                ));
            }
            _ => {
                return Err(format!(
                    "{}: is a file in git, not a directory",
                    rel.display()
                ));
            }
        }
        let dir = repo
            .find_tree(entry.id())
            .map_err(|e| format!("{}: {}", rel.display(), e.message()))?;
        let mut out = Vec::new();
        for e in dir.iter() {
            let name = String::from_utf8_lossy(e.name_bytes()).into_owned();
            if e.filemode() != MODE_BLOB && e.filemode() != MODE_BLOB_EXECUTABLE {
                return Err(format!("{}/{name}: not a regular file", rel.display()));
            }
            small_enough(repo, e.id(), &format!("{}/{name}", rel.display()))?;
            let blob = repo.find_blob(e.id()).map_err(|e| e.message().to_owned())?;
            out.push((name, blob.content().to_vec()));
        }
        Ok(out)
    })
}

/// Refuses to read a blob larger than [`crate::limits::SMALL_FILE`] whole
/// (environments.yaml, certificates, policy files), asking git for its size
/// first.
fn small_enough(repo: &git2::Repository, oid: git2::Oid, shown: &str) -> Result<(), String> {
    let size = repo
        .odb()
        .and_then(|odb| odb.read_header(oid))
        .map_err(|e| format!("{shown}: {}", e.message()))?
        .0 as u64;
    crate::limits::check(shown, size, crate::limits::SMALL_FILE)
}

fn with_tree<T>(
    root: &Path,
    rev: &str,
    f: impl FnOnce(&git2::Repository, &git2::Tree<'_>, &Path) -> Result<T, String>,
) -> Result<T, BundleError> {
    let git = |message: String| BundleError::Git {
        location: format!("{} at {rev}", root.display()),
        message,
    };
    let (repo, prefix, commit) = open_at(root, rev)?;
    let tree = repo
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(|e| git(e.message().to_owned()))?;
    f(&repo, &tree, &prefix).map_err(git)
}

/// Opens the repository holding `root`: the repository, `root`'s path inside
/// its work tree, and the commit `rev` resolves to.
fn open_at(root: &Path, rev: &str) -> Result<(git2::Repository, PathBuf, git2::Oid), BundleError> {
    let git = |message: String| BundleError::Git {
        location: format!("{} at {rev}", root.display()),
        message,
    };
    let repo = git2::Repository::discover(root).map_err(|e| git(e.message().to_owned()))?;
    refuse_substitutions(&repo).map_err(git)?;
    let workdir = repo
        .workdir()
        .ok_or_else(|| git("bare repositories are not supported".into()))?
        .canonicalize()
        .map_err(|e| git(e.to_string()))?;
    let root = root.canonicalize().map_err(|e| git(e.to_string()))?;
    let prefix = root
        .strip_prefix(&workdir)
        .map_err(|e| git(e.to_string()))?
        .to_owned();
    let commit = repo
        .revparse_single(rev)
        .and_then(|o| o.peel_to_commit())
        .map_err(|e| git(format!("cannot resolve revision: {}", e.message())))?
        .id();
    Ok((repo, prefix, commit))
}

/// Refuses a repository whose objects git itself would show differently:
/// replace refs (`git replace`) and grafts make `git show` print one tree
/// while libgit2 reads another, so a reviewer could approve what promoter
/// never reads.
fn refuse_substitutions(repo: &git2::Repository) -> Result<(), String> {
    let replaced: Vec<String> = repo
        .references_glob("refs/replace/*")
        .map_err(|e| e.message().to_owned())?
        .names()
        .filter_map(Result::ok)
        .map(str::to_owned)
        .collect();
    if let Some(first) = replaced.first() {
        return Err(format!(
            "the repository has replace refs ({first}{}): git would show other objects than promoter reads; remove them (`git replace -d`) before promoting",
            if replaced.len() > 1 {
                format!(" and {} more", replaced.len() - 1)
            } else {
                String::new()
            }
        ));
    }
    if repo.path().join("info/grafts").exists() {
        return Err(
            "the repository has grafts (.git/info/grafts): git would show other history than promoter reads; remove them before promoting"
                .into(),
        );
    }
    Ok(())
}

/// Resolves `rev` to a commit id once, so that everything a run reads comes
/// from the same commit even if a branch moves meanwhile.
pub fn resolve_rev(root: &Path, rev: &str) -> Result<String, BundleError> {
    let (_, _, commit) = open_at(root, rev)?;
    Ok(commit.to_string())
}

/// The commit `HEAD` points to, if the project is in a git repository.
pub fn head_commit(root: &Path) -> Option<String> {
    let repo = git2::Repository::discover(root).ok()?;
    let commit = repo.head().ok()?.peel_to_commit().ok()?;
    Some(commit.id().to_string())
}

/// The work tree of the git repository `dir` lies in, if any (as git finds
/// it: `.git` directories and files, `GIT_DIR` not consulted).
pub fn work_tree(dir: &Path) -> Option<PathBuf> {
    git2::Repository::discover(dir)
        .ok()?
        .workdir()
        .map(|w| w.canonicalize().unwrap_or_else(|_| w.to_path_buf()))
}

/// Files in the work tree's `changesets/ID/signatures/` that `snapshot`
/// (a commit) does not hold with the same bytes, sorted: signed but not
/// committed. Hidden files are left out; unreadable ones count as missing.
pub fn uncommitted_signatures(root: &Path, snapshot: &GitSnapshot, id: &str) -> Vec<String> {
    let dir = root.join(CHANGESETS_DIR).join(id).join("signatures");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let in_git = snapshot.bundles.iter().find(|b| b.id.as_str() == id);
    let mut missing: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                return None;
            }
            let limit = crate::limits::in_signatures_dir(&name);
            let bytes = crate::limits::read(&e.path(), limit).ok();
            let committed = in_git.is_some_and(|b| {
                b.signatures
                    .iter()
                    .any(|s| s.name == name && Some(&s.bytes) == bytes.as_ref())
            });
            (!committed).then_some(name)
        })
        .collect();
    missing.sort();
    missing
}

/// A blob of a git repository, opened for streaming.
#[derive(Debug, Clone)]
pub struct GitBlob {
    pub git_dir: PathBuf,
    pub oid: String,
}

/// Blobs up to this size are read in-process through libgit2; larger ones
/// stream through `git cat-file`, so memory stays flat whatever a script's
/// size. (A process per file read was most of `promote`'s time at many
/// small changesets.)
const IN_PROCESS_BLOB: usize = 4 << 20;

thread_local! {
    /// The repository last read from, kept open for the next blob.
    static REPO: std::cell::RefCell<Option<(PathBuf, git2::Repository)>> =
        const { std::cell::RefCell::new(None) };
}

impl GitBlob {
    /// Opens the blob for reading: in memory when small, streamed through
    /// `git cat-file` otherwise (libgit2 cannot stream packed objects);
    /// without a `git` binary, read whole through libgit2.
    pub fn open(&self) -> std::io::Result<Box<dyn std::io::Read + Send>> {
        if let Some(bytes) = self.read_small()? {
            return Ok(Box::new(std::io::Cursor::new(bytes)));
        }
        let spawned = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(&self.git_dir)
            .args(["cat-file", "blob", &self.oid])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn();
        match spawned {
            Ok(mut child) => {
                let stdout = child.stdout.take().expect("stdout is piped");
                Ok(Box::new(CatFile { child, stdout }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let repo = git2::Repository::open(&self.git_dir).map_err(std::io::Error::other)?;
                let oid = git2::Oid::from_str(&self.oid).map_err(std::io::Error::other)?;
                let blob = repo.find_blob(oid).map_err(std::io::Error::other)?;
                Ok(Box::new(std::io::Cursor::new(blob.content().to_vec())))
            }
            Err(e) => Err(e),
        }
    }
}

impl GitBlob {
    /// Runs `f` on the blob's repository (kept open for the next blob) and oid.
    fn with_repo<T>(
        &self,
        f: impl FnOnce(&git2::Repository, git2::Oid) -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        REPO.with_borrow_mut(|cached| {
            if cached.as_ref().is_none_or(|(dir, _)| *dir != self.git_dir) {
                let repo = git2::Repository::open(&self.git_dir).map_err(std::io::Error::other)?;
                *cached = Some((self.git_dir.clone(), repo));
            }
            let (_, repo) = cached.as_ref().expect("just opened");
            let oid = git2::Oid::from_str(&self.oid).map_err(std::io::Error::other)?;
            f(repo, oid)
        })
    }

    /// The blob's size, read from the object's header (nothing is inflated).
    pub fn size(&self) -> std::io::Result<u64> {
        self.with_repo(|repo, oid| {
            let (size, _) = repo
                .odb()
                .and_then(|odb| odb.read_header(oid))
                .map_err(std::io::Error::other)?;
            Ok(size as u64)
        })
    }

    /// The blob's bytes if it is at most [`IN_PROCESS_BLOB`] long (its size
    /// is read from the object's header, before anything is inflated).
    fn read_small(&self) -> std::io::Result<Option<Vec<u8>>> {
        self.with_repo(|repo, oid| {
            let (size, _) = repo
                .odb()
                .and_then(|odb| odb.read_header(oid))
                .map_err(std::io::Error::other)?;
            if size > IN_PROCESS_BLOB {
                return Ok(None);
            }
            let blob = repo.find_blob(oid).map_err(std::io::Error::other)?;
            Ok(Some(blob.content().to_vec()))
        })
    }
}

/// The output of `git cat-file blob`; fails at the end if git did.
struct CatFile {
    child: std::process::Child,
    stdout: std::process::ChildStdout,
}

impl std::io::Read for CatFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.stdout.read(buf)?;
        if n == 0 && !buf.is_empty() {
            let status = self.child.wait()?;
            if !status.success() {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                return Err(std::io::Error::other(format!(
                    "git cat-file failed: {}",
                    err.trim()
                )));
            }
        }
        Ok(n)
    }
}

impl Drop for CatFile {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_readers_share_one_set_of_bundle_rules() {
        use EntryKind::*;
        let cases: &[(&str, EntryKind, Result<Slot, &str>)] = &[
            ("001-schema.sql", File, Ok(Slot::File)),
            ("changeset.yaml", File, Ok(Slot::File)),
            ("SHA256SUMS", File, Ok(Slot::Manifest)),
            ("signatures", Dir, Ok(Slot::Signatures)),
            ("001-link.sql", Link, Err("symbolic links are not allowed")),
            ("signatures", Link, Err("symbolic links are not allowed")),
            ("data", Dir, Err("subdirectories are not allowed")),
            ("001-fifo.sql", Other, Err("not a regular file")),
            ("001-Upper.sql", File, Err("file names may only use")),
        ];
        for (name, kind, want) in cases {
            let got = classify("changesets/0001-x", name, *kind).map_err(|e| e.to_string());
            match want {
                Ok(slot) => assert_eq!(got, Ok(*slot), "{name} {kind:?}"),
                Err(text) => {
                    let e = got.unwrap_err();
                    assert!(
                        e.starts_with(&format!("changesets/0001-x/{name}: {text}")),
                        "{name} {kind:?}: {e}"
                    );
                }
            }
        }
        let sig = |name, kind| classify_signature("s", name, kind).map_err(|e| e.to_string());
        assert_eq!(sig("developer-AB.asc", File), Ok(()));
        assert!(
            sig("developer-AB.sig", File)
                .unwrap_err()
                .contains("must be named `*.asc`")
        );
        assert!(sig("x.asc", Link).unwrap_err().contains("symbolic links"));
        assert!(
            sig("x.asc", Dir)
                .unwrap_err()
                .contains("not a regular file")
        );
    }

    #[test]
    fn git_blobs_read_the_same_in_process_and_streamed() {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init(dir.path()).unwrap();
        let small = b"SELECT 1;\n".to_vec();
        let large: Vec<u8> = b"INSERT INTO t VALUES (1);\n"
            .iter()
            .copied()
            .cycle()
            .take(IN_PROCESS_BLOB + 1000)
            .collect();
        for bytes in [small, large] {
            let oid = repo.blob(&bytes).unwrap();
            let blob = GitBlob {
                git_dir: repo.path().to_path_buf(),
                oid: oid.to_string(),
            };
            assert_eq!(
                blob.read_small().unwrap().is_some(),
                bytes.len() <= IN_PROCESS_BLOB
            );
            let mut read = Vec::new();
            std::io::Read::read_to_end(&mut blob.open().unwrap(), &mut read).unwrap();
            assert!(
                read == bytes,
                "{} bytes read back as {}",
                bytes.len(),
                read.len()
            );
        }
    }

    #[test]
    fn git_modes_map_to_entry_kinds() {
        assert_eq!(git_kind(0o100644), EntryKind::File);
        assert_eq!(git_kind(0o100755), EntryKind::File);
        assert_eq!(git_kind(0o040000), EntryKind::Dir);
        assert_eq!(git_kind(0o120000), EntryKind::Link);
        assert_eq!(git_kind(0o160000), EntryKind::Other, "a submodule");
    }
}
