//! Checkpoints outside the database: the last ledger head promoter saw for
//! each target, kept on the operator's side, so that a DBA who deletes the
//! newest rows, truncates the ledger or drops its schema is caught — a hash
//! chain alone cannot tell a short ledger from a shortened one.
//!
//! One JSON file per database under the state directory
//! (`$PROMOTER_STATE_DIR`, else `$XDG_STATE_HOME/promoter`, else
//! `~/.local/state/promoter`), in `checkpoints/`, named after the server's
//! system identifier and the database name, so that an environment whose URL
//! changes keeps its checkpoint and a look-alike database gets none.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::changeset::Sha256Digest;
use crate::ledger::{Entry, ReplacedRow};

/// A ledger head as promoter last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub environment: String,
    /// `system_identifier/database`, or the environment name when the
    /// server does not tell.
    pub database: String,
    pub seq: i64,
    pub entry_hash: Sha256Digest,
    /// RFC 3339.
    pub seen_at: String,
}

/// Where checkpoints live.
pub fn state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PROMOTER_STATE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("promoter");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/state/promoter")
}

fn file_for(dir: &Path, database: &str) -> PathBuf {
    let name: String = database
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join("checkpoints").join(format!("{name}.json"))
}

/// The checkpoint of `database`, if promoter has one.
pub fn load(dir: &Path, database: &str) -> Result<Option<Checkpoint>, String> {
    let path = file_for(dir, database);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Records `head` as the newest row seen (write to a temporary file, then
/// rename, so that a crash never leaves half a checkpoint).
pub fn save(dir: &Path, checkpoint: &Checkpoint) -> Result<(), String> {
    let path = file_for(dir, &checkpoint.database);
    let parent = path.parent().expect("checkpoints/ has a parent");
    std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    let tmp = tempfile::NamedTempFile::new_in(parent)
        .map_err(|e| format!("{}: {e}", parent.display()))?;
    std::fs::write(
        tmp.path(),
        serde_json::to_string_pretty(checkpoint).unwrap_or_default(),
    )
    .map_err(|e| format!("{}: {e}", tmp.path().display()))?;
    tmp.persist(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}

/// Whether `entries` still hold the checkpointed head: the row with that
/// `seq` and `entry_hash`, or, after a refresh replaced the database, a
/// row of the ledger it replaced (`replaced`, which must then verify
/// against its `refreshed` row). `Err` says what happened to it.
pub fn check(entries: &[Entry], replaced: &[ReplacedRow], cp: &Checkpoint) -> Result<(), String> {
    let kept = || {
        replaced
            .iter()
            .any(|k| k.entry.seq == cp.seq && k.entry.entry_hash == cp.entry_hash)
            && crate::ledger::check_replaced(entries, &cp.environment, replaced).is_empty()
    };
    match entries.iter().find(|e| e.seq == cp.seq) {
        Some(e) if e.entry_hash == cp.entry_hash => Ok(()),
        _ if kept() => Ok(()),
        Some(e) => Err(format!(
            "ledger row #{} was {} when promoter saw it on {}, and is {} now: the history was rewritten",
            cp.seq,
            cp.entry_hash.short(),
            cp.seen_at,
            e.entry_hash.short()
        )),
        None if entries.is_empty() => Err(format!(
            "the ledger is empty or gone, but promoter saw it reach row #{} ({}) on {}: it was truncated or dropped",
            cp.seq,
            cp.entry_hash.short(),
            cp.seen_at
        )),
        None => Err(format!(
            "the ledger ends at row #{}, but promoter saw row #{} ({}) on {}: newer rows were deleted",
            entries.last().map_or(0, |e| e.seq),
            cp.seq,
            cp.entry_hash.short(),
            cp.seen_at
        )),
    }
}

/// Rows of a downstream ledger (`downstream`, promoted from `env`) whose
/// `promoted_from_entry` is not in `env`'s ledger: (downstream seq, entry).
pub fn missing_references(
    env: &str,
    entries: &[Entry],
    downstream: &[Entry],
) -> Vec<(i64, Sha256Digest)> {
    downstream
        .iter()
        .filter(|d| d.promoted_from.as_deref() == Some(env))
        .filter_map(|d| d.promoted_from_entry.map(|h| (d.seq, h)))
        .filter(|(_, h)| !entries.iter().any(|e| e.entry_hash == *h))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{GENESIS, Status};

    fn row(seq: i64, h: u8) -> Entry {
        Entry {
            seq,
            changeset_id: format!("{seq:04}-x"),
            bundle_hash: GENESIS,
            environment: "prd".into(),
            status: Status::Applied,
            signers: "[]".into(),
            promoted_from: Some("qat".into()),
            promoted_from_entry: Some(Sha256Digest([h; 32])),
            git_commit: None,
            os_user: "u".into(),
            host: "h".into(),
            db_role: "r".into(),
            started_at: 0,
            finished_at: None,
            schema_before: None,
            schema_after: None,
            statements: 0,
            error: None,
            note: None,
            prev_hash: GENESIS,
            entry_hash: Sha256Digest([h; 32]),
            receipt: None,
        }
    }

    fn cp(seq: i64, h: u8) -> Checkpoint {
        Checkpoint {
            environment: "prd".into(),
            database: "1/prd".into(),
            seq,
            entry_hash: Sha256Digest([h; 32]),
            seen_at: "2026-12-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn a_checkpoint_catches_deletion_truncation_and_rewriting() {
        let rows = [row(1, 1), row(2, 2), row(3, 3)];
        assert_eq!(check(&rows, &[], &cp(3, 3)), Ok(()));
        assert_eq!(
            check(&rows, &[], &cp(2, 2)),
            Ok(()),
            "newer rows since are fine"
        );
        assert!(
            check(&rows[..2], &[], &cp(3, 3))
                .unwrap_err()
                .contains("newer rows were deleted")
        );
        assert!(
            check(&[], &[], &cp(3, 3))
                .unwrap_err()
                .contains("truncated or dropped")
        );
        assert!(
            check(&rows, &[], &cp(3, 9))
                .unwrap_err()
                .contains("rewritten")
        );
    }

    #[test]
    fn downstream_rows_must_find_the_entries_they_were_promoted_from() {
        let qat = [row(1, 1), row(2, 2)];
        let prd = [row(1, 1), row(2, 2), row(3, 7)];
        assert_eq!(
            missing_references("qat", &qat, &prd),
            [(3, Sha256Digest([7; 32]))]
        );
        assert!(missing_references("dev", &qat, &prd).is_empty());
    }

    #[test]
    fn checkpoints_round_trip_through_their_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path(), "1/prd").unwrap(), None);
        save(dir.path(), &cp(3, 3)).unwrap();
        assert_eq!(load(dir.path(), "1/prd").unwrap(), Some(cp(3, 3)));
    }
}
