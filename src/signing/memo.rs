//! A memo of signature arithmetic for `status`, the one command that only
//! shows and checks many signatures at a time (one per pending bundle and
//! environment; at 1,000 bundles the Ed25519 checks were most of its time).
//!
//! Sequoia keeps, per process, the set of signature checks that held: a
//! 32-byte digest of the signature's numbers, the digest of what it signs
//! and the public key's numbers. That is a fact of arithmetic, true
//! whenever it was once true, and says nothing about which key it was,
//! whether the key was valid then or now, revoked, in which role, or what
//! the signature's notations say: every one of those is decided again on
//! every run. The memo keeps the set in the state directory between runs.
//!
//! Only `status` reads it. Every command may add to it what it verified
//! itself; no command that opens an environment, writes a ledger row,
//! makes a report or checks for CI (`apply`, `promote`, `approve`,
//! `verify`, `report`, `audit`) ever reads it, so a forged entry can change
//! what a `status` cell says is missing, never what happens. See
//! docs/decisions.md.

use std::io::Write;
use std::path::{Path, PathBuf};

use openpgp::packet::signature::cache::SignatureVerificationCache;
use sequoia_openpgp as openpgp;

/// What the file starts with; a file without it is not read (and is
/// replaced when the memo is next written).
const MAGIC: &[u8] = b"promoter signature memo v1\n";

/// The size of one entry (sequoia's, checked when read).
const ENTRY: usize = 32;

/// The most entries kept: those used or added by the run that writes it
/// first, then the others, up to 6 MiB.
const MOST: usize = 200_000;

fn file_in(dir: &Path) -> PathBuf {
    dir.join("signature-memo")
}

/// Reads the memo into this process's cache, if there is one, and waits
/// until it is in. A missing, unreadable or damaged file is no memo.
pub fn restore(dir: &Path) {
    let Some(entries) = read(&file_in(dir)) else {
        return;
    };
    let (done, wait) = std::sync::mpsc::channel();
    SignatureVerificationCache::restore(entries.into_iter(), move || {
        let _ = done.send(());
    });
    let _ = wait.recv();
}

fn read(path: &Path) -> Option<Vec<Vec<u8>>> {
    // No larger than promoter writes it: a bigger file is not read at all.
    let size = std::fs::metadata(path).ok()?.len();
    if size > (MAGIC.len() + MOST * ENTRY) as u64 {
        return None;
    }
    let bytes = std::fs::read(path).ok()?;
    let body = bytes.strip_prefix(MAGIC)?;
    if body.len() % ENTRY != 0 {
        return None;
    }
    Some(body.chunks(ENTRY).map(<[u8]>::to_vec).collect())
}

/// Adds what this process verified to the memo (when it verified
/// anything new): read, merged, written whole to a temporary file and
/// renamed over it. A memo that cannot be written is no error: the next
/// run checks the arithmetic again.
pub fn save(dir: &Path) {
    if SignatureVerificationCache::insertions() == 0 {
        return;
    }
    let mut fresh: Vec<Vec<u8>> = Vec::new();
    let mut kept: Vec<Vec<u8>> = Vec::new();
    for e in SignatureVerificationCache::dump() {
        if e.value().len() != ENTRY {
            continue;
        }
        if e.inserted() || e.accessed() {
            fresh.push(e.value().to_vec());
        } else {
            kept.push(e.value().to_vec());
        }
    }
    // What the file holds now (another run may have written since).
    let mut file = read(&file_in(dir)).unwrap_or_default();
    file.sort();
    fresh.sort();
    fresh.dedup();
    // Nothing the file lacks: no write (every command saves, most add nothing).
    if fresh.iter().all(|v| file.binary_search(v).is_ok()) {
        return;
    }
    kept.extend(file);
    kept.sort();
    kept.dedup();
    kept.retain(|v| fresh.binary_search(v).is_err());
    let room = MOST.saturating_sub(fresh.len());
    kept.truncate(room);
    fresh.truncate(MOST);
    let _ = write(dir, fresh.iter().chain(kept.iter()));
}

fn write<'a>(dir: &Path, entries: impl Iterator<Item = &'a Vec<u8>>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    let mut out = std::io::BufWriter::new(tmp.as_file_mut());
    out.write_all(MAGIC)?;
    for e in entries {
        out.write_all(e)?;
    }
    out.flush()?;
    drop(out);
    tmp.persist(file_in(dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_or_foreign_memo_is_no_memo() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_in(dir.path());
        for (bytes, entries) in [
            (b"".to_vec(), None),
            (b"something else\n".to_vec(), None),
            ([MAGIC, &[7u8; 31]].concat(), None),
            ([MAGIC, &[7u8; 32]].concat(), Some(1)),
            ([MAGIC, &[7u8; 64]].concat(), Some(2)),
            (MAGIC.to_vec(), Some(0)),
            // Larger than promoter ever writes it.
            ([MAGIC, &vec![7u8; (MOST + 1) * ENTRY]].concat(), None),
        ] {
            std::fs::write(&path, &bytes).unwrap();
            assert_eq!(read(&path).map(|e| e.len()), entries, "{bytes:?}");
        }
    }
}
