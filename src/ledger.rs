//! The ledger row and its hash chain. Pure: `db::ledger` stores and loads
//! rows; this module defines what a row is and how its hash is computed.
//!
//! `entry_hash` = sha256 over the canonical encoding of the row:
//! the bytes `promoter-ledger-v1\n`, then each field below in this order as a
//! 4-byte big-endian length and the field's UTF-8 bytes, or the 4 bytes
//! `ff ff ff ff` for NULL. Integers are written in decimal; timestamps as
//! microseconds since the Unix epoch. `prev_hash` is the last field, so each
//! row commits to the one before it; the first row's `prev_hash` is 64 zeros.

use serde::Serialize;

use crate::changeset::Sha256Digest;

/// `prev_hash` of the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened to a changeset in an environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Applied,
    Failed,
    /// A non-transactional changeset has started; a later row says how it ended.
    Running,
    /// An operator recorded that a partial application was completed by hand.
    ResolvedApplied,
    /// An operator recorded that a partial application was undone by hand.
    ResolvedRolledBack,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Failed => "failed",
            Self::Running => "running",
            Self::ResolvedApplied => "resolved-applied",
            Self::ResolvedRolledBack => "resolved-rolled-back",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "applied" => Self::Applied,
            "failed" => Self::Failed,
            "running" => Self::Running,
            "resolved-applied" => Self::ResolvedApplied,
            "resolved-rolled-back" => Self::ResolvedRolledBack,
            _ => return None,
        })
    }

    /// Whether the changeset counts as applied after this row.
    pub fn is_applied(self) -> bool {
        matches!(self, Self::Applied | Self::ResolvedApplied)
    }
}

/// One signer recorded with an application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Signer {
    pub fingerprint: String,
    pub role: String,
    /// Signature creation time, RFC 3339.
    pub signed_at: String,
}

/// One ledger row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub seq: i64,
    pub changeset_id: String,
    pub bundle_hash: String,
    pub environment: String,
    pub status: Status,
    /// JSON array of [`Signer`], exactly as hashed.
    pub signers: String,
    pub promoted_from: Option<String>,
    pub promoted_from_entry: Option<String>,
    pub git_commit: Option<String>,
    pub os_user: String,
    pub host: String,
    pub db_role: String,
    /// Microseconds since the Unix epoch.
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub schema_before: Option<String>,
    pub schema_after: Option<String>,
    /// Statements executed (for non-transactional changesets: how far it got).
    pub statements: i64,
    pub error: Option<String>,
    pub note: Option<String>,
    pub prev_hash: String,
    pub entry_hash: String,
}

impl Entry {
    /// The canonical encoding hashed into `entry_hash` (see the module docs).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = b"promoter-ledger-v1\n".to_vec();
        let mut field = |value: Option<&str>| match value {
            Some(v) => {
                out.extend_from_slice(&(v.len() as u32).to_be_bytes());
                out.extend_from_slice(v.as_bytes());
            }
            None => out.extend_from_slice(&[0xff; 4]),
        };
        field(Some(&self.seq.to_string()));
        field(Some(&self.changeset_id));
        field(Some(&self.bundle_hash));
        field(Some(&self.environment));
        field(Some(self.status.as_str()));
        field(Some(&self.signers));
        field(self.promoted_from.as_deref());
        field(self.promoted_from_entry.as_deref());
        field(self.git_commit.as_deref());
        field(Some(&self.os_user));
        field(Some(&self.host));
        field(Some(&self.db_role));
        field(Some(&self.started_at.to_string()));
        field(self.finished_at.map(|t| t.to_string()).as_deref());
        field(self.schema_before.as_deref());
        field(self.schema_after.as_deref());
        field(Some(&self.statements.to_string()));
        field(self.error.as_deref());
        field(self.note.as_deref());
        field(Some(&self.prev_hash));
        out
    }

    /// The hash this row should carry.
    pub fn compute_hash(&self) -> String {
        Sha256Digest::of(&self.canonical_bytes()).to_hex()
    }

    /// Sets `prev_hash` (from the row before, or [`GENESIS`]) and `entry_hash`.
    pub fn seal(&mut self, prev: Option<&Entry>) {
        self.seq = prev.map_or(1, |p| p.seq + 1);
        self.prev_hash = prev.map_or_else(|| GENESIS.to_owned(), |p| p.entry_hash.clone());
        self.entry_hash = self.compute_hash();
    }
}

/// The first problem in a ledger's hash chain, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub seq: i64,
    pub reason: String,
}

/// Recomputes the chain of `rows` (in `seq` order as stored).
pub fn check_chain(rows: &[Entry]) -> Option<ChainBreak> {
    let mut prev: Option<&Entry> = None;
    for row in rows {
        let expected_seq = prev.map_or(1, |p| p.seq + 1);
        let expected_prev = prev.map_or(GENESIS, |p| p.entry_hash.as_str());
        if row.entry_hash != row.compute_hash() {
            return Some(ChainBreak {
                seq: row.seq,
                reason: "row content does not match its entry_hash (edited after it was written)"
                    .into(),
            });
        }
        if row.seq != expected_seq || row.prev_hash != expected_prev {
            let reason = match prev {
                Some(p) if row.prev_hash != p.entry_hash => format!(
                    "prev_hash does not match row {}: a row was deleted, inserted or reordered before it",
                    p.seq
                ),
                None if row.prev_hash != GENESIS => {
                    "first row does not start the chain: rows before it were deleted".into()
                }
                _ => format!(
                    "sequence number {} where {expected_seq} was expected",
                    row.seq
                ),
            };
            return Some(ChainBreak {
                seq: row.seq,
                reason,
            });
        }
        prev = Some(row);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> Entry {
        Entry {
            seq: 0,
            changeset_id: id.into(),
            bundle_hash: "ab".repeat(32),
            environment: "qat".into(),
            status: Status::Applied,
            signers:
                r#"[{"fingerprint":"F","role":"developer","signed_at":"2026-01-01T00:00:00Z"}]"#
                    .into(),
            promoted_from: Some("dev".into()),
            promoted_from_entry: Some("cd".repeat(32)),
            git_commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
            os_user: "ops".into(),
            host: "bastion".into(),
            db_role: "deploy".into(),
            started_at: 1_795_392_245_000_000,
            finished_at: Some(1_795_392_246_500_000),
            schema_before: Some("11".repeat(32)),
            schema_after: Some("22".repeat(32)),
            statements: 7,
            error: None,
            note: None,
            prev_hash: String::new(),
            entry_hash: String::new(),
        }
    }

    /// Pinned: changing the encoding would make every existing ledger fail its audit.
    #[test]
    fn entry_hash_of_a_fixed_row_never_changes() {
        let mut e = entry("0001-create-customers");
        e.seal(None);
        assert_eq!(e.seq, 1);
        assert_eq!(e.prev_hash, GENESIS);
        // Cross-checked with an independent Python implementation of the encoding.
        assert_eq!(
            e.entry_hash,
            "afe266806ae9e143c770fa1c7e9c035f0d2e4908270fdd560b9bd498917e7bd7"
        );
    }

    #[test]
    fn null_and_empty_encode_differently() {
        let mut a = entry("x");
        let mut b = entry("x");
        a.error = None;
        b.error = Some(String::new());
        assert_ne!(a.compute_hash(), b.compute_hash());
        // Length prefixes keep field boundaries: moving a byte between fields changes the hash.
        let (mut c, mut d) = (entry("x"), entry("x"));
        c.os_user = "ab".into();
        c.host = "c".into();
        d.os_user = "a".into();
        d.host = "bc".into();
        assert_ne!(c.compute_hash(), d.compute_hash());
    }

    #[test]
    fn chain_detects_edits_deletions_and_reordering() {
        let mut rows: Vec<Entry> = Vec::new();
        for id in ["0001-a", "0002-b", "0003-c"] {
            let mut e = entry(id);
            e.seal(rows.last());
            rows.push(e);
        }
        assert_eq!(check_chain(&rows), None);

        let mut edited = rows.clone();
        edited[1].status = Status::Failed;
        assert_eq!(check_chain(&edited).unwrap().seq, 2);

        let mut deleted = rows.clone();
        deleted.remove(1);
        let brk = check_chain(&deleted).unwrap();
        assert_eq!(brk.seq, 3);
        assert!(brk.reason.contains("deleted"), "{}", brk.reason);

        let first_deleted = rows[1..].to_vec();
        assert_eq!(check_chain(&first_deleted).unwrap().seq, 2);

        let mut reordered = rows.clone();
        reordered.swap(1, 2);
        assert_eq!(check_chain(&reordered).unwrap().seq, 3);
    }
}
