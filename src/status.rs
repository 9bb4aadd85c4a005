//! The cells of `promoter status`: what one environment's ledger says of one
//! changeset. Pure, so each rule is a table-driven test.

use serde::Serialize;

use crate::changeset::Sha256Digest;
use crate::ledger::{Entry, Progress, Status};
use crate::signing::Shortfall;

/// The state of a changeset in an environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Applied, and the bundle is unchanged since.
    Applied,
    /// Applied, but the bundle changed since.
    Modified,
    /// Not applied yet.
    Pending,
    /// The last attempt failed (and was rolled back).
    Failed,
    /// A non-transactional changeset is being applied right now (a promoter
    /// holds the environment's lock).
    Running,
    /// Its last row says `running` but no promoter holds the lock: the
    /// process was killed. `promoter resolve` records what happened.
    Interrupted,
    /// A partial application was undone by hand.
    ResolvedRolledBack,
    /// Only a ledger knows it, and this ledger does not.
    Absent,
    /// The environment could not be read.
    Unreachable,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Modified => "modified",
            Self::Pending => "pending",
            Self::Failed => "failed",
            Self::Running => "running",
            Self::Interrupted => "interrupted",
            Self::ResolvedRolledBack => "resolved-rolled-back",
            Self::Absent => "absent",
            Self::Unreachable => "unreachable",
        }
    }

    /// Whether `status --exit-code` should fail on it: anything an operator
    /// must act on.
    pub fn needs_attention(self) -> bool {
        !matches!(self, Self::Applied | Self::Absent)
    }
}

/// One changeset in one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    pub state: State,
    /// When it was applied or last attempted (microseconds since the epoch).
    pub at: Option<i64>,
    /// `os_user@host` of that row.
    pub by: Option<String>,
    /// What is missing for a pending one, the first line of a failure, or why it is modified.
    pub detail: Option<String>,
}

impl Cell {
    fn bare(state: State) -> Self {
        Self {
            state,
            at: None,
            by: None,
            detail: None,
        }
    }

    fn of(state: State, row: &Entry, detail: Option<String>) -> Self {
        Self {
            state,
            at: Some(row.finished_at.unwrap_or(row.started_at)),
            by: Some(format!("{}@{}", row.os_user, row.host)),
            detail,
        }
    }
}

/// The cell of an unreachable environment.
pub fn unreachable() -> Cell {
    Cell::bare(State::Unreachable)
}

/// The cell of a changeset the project has: `rows` are its ledger rows in
/// this environment (in ledger order), `hash` its bundle hash now (`None`
/// if unsealed), `locked` whether a promoter holds the environment's lock,
/// `shortfalls` what signatures the environment still needs (asked only for
/// a pending changeset: checking signatures is the costly part).
pub fn cell(
    rows: &[&Entry],
    hash: Option<Sha256Digest>,
    locked: bool,
    progress: &Progress,
    shortfalls: impl FnOnce() -> Vec<Shortfall>,
) -> Cell {
    let rows = crate::ledger::live_rows(rows);
    if let Some(a) = rows.iter().rev().find(|e| e.status.is_applied()) {
        if Some(a.bundle_hash) == hash {
            return Cell::of(State::Applied, a, None);
        }
        let now = hash.map_or("unsealed".to_owned(), |h| h.short());
        let detail = format!("applied {}, now {now}", a.bundle_hash.short());
        return Cell::of(State::Modified, a, Some(detail));
    }
    match rows.last() {
        Some(l) if l.status == Status::Failed => {
            let first_line = l
                .error
                .as_deref()
                .map(|e| e.lines().next().unwrap_or("").to_owned());
            Cell::of(State::Failed, l, first_line)
        }
        Some(l) if l.status == Status::Running => {
            let state = if locked {
                State::Running
            } else {
                State::Interrupted
            };
            let done = progress.get(&l.seq).copied().unwrap_or(0);
            let detail = format!(
                "{done} statement{} committed; see `promoter resolve`",
                if done == 1 { "" } else { "s" }
            );
            Cell::of(state, l, (state == State::Interrupted).then_some(detail))
        }
        _ if hash.is_none() => Cell {
            detail: Some("not sealed".into()),
            ..Cell::bare(State::Pending)
        },
        _ => {
            let missing: Vec<String> = shortfalls()
                .iter()
                .map(|s| format!("{} {}", s.need - s.have, s.role))
                .collect();
            Cell {
                detail: (!missing.is_empty()).then(|| format!("needs {}", missing.join(", "))),
                ..Cell::bare(State::Pending)
            }
        }
    }
}

/// The cell of a changeset only ledgers know (it left the work tree or rev):
/// the state of its last row here, or absent.
pub fn orphan(last: Option<&Entry>, locked: bool) -> Cell {
    let Some(row) = last else {
        return Cell::bare(State::Absent);
    };
    let state = match row.status {
        Status::Applied | Status::ResolvedApplied | Status::BaselineAdopted => State::Applied,
        Status::Failed => State::Failed,
        Status::Running if locked => State::Running,
        Status::Running => State::Interrupted,
        Status::ResolvedRolledBack | Status::TrustPinned | Status::Refreshed | Status::Branched => {
            State::ResolvedRolledBack
        }
        Status::Forgotten => State::Absent,
    };
    Cell::of(state, row, Some("not in the work tree".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::GENESIS;

    fn digest(c: &str) -> Sha256Digest {
        Sha256Digest::from_hex(&c.repeat(64)).unwrap()
    }

    fn row(status: Status, hash: &str) -> Entry {
        Entry {
            seq: 1,
            changeset_id: "0001-a".into(),
            bundle_hash: digest(hash),
            environment: "qat".into(),
            status,
            signers: "[]".into(),
            promoted_from: None,
            promoted_from_entry: None,
            git_commit: None,
            os_user: "ops".into(),
            host: "bastion".into(),
            db_role: "deploy".into(),
            started_at: 10,
            finished_at: Some(20),
            schema_before: None,
            schema_after: None,
            statements: 2,
            error: Some("001.sql:3:1: [42P01] boom\n    statement: x".into()),
            note: None,
            prev_hash: GENESIS,
            entry_hash: GENESIS,
            receipt: None,
        }
    }

    fn short(role: &str) -> Vec<Shortfall> {
        vec![Shortfall {
            role: role.into(),
            need: 1,
            have: 0,
        }]
    }

    #[test]
    fn cells_follow_the_last_rows() {
        let applied = row(Status::Applied, "a");
        let failed = row(Status::Failed, "a");
        let running = row(Status::Running, "a");
        // (rows, bundle hash now, lock held, state, detail)
        type Case<'a> = (
            Vec<&'a Entry>,
            Option<&'a str>,
            bool,
            State,
            Option<&'a str>,
        );
        let cases: Vec<Case<'_>> = vec![
            (vec![&applied], Some("a"), false, State::Applied, None),
            (
                vec![&applied],
                Some("b"),
                false,
                State::Modified,
                Some("applied aaaaaaaaaaaa, now bbbbbbbbbbbb"),
            ),
            (
                vec![&applied],
                None,
                false,
                State::Modified,
                Some("applied aaaaaaaaaaaa, now unsealed"),
            ),
            (
                vec![&failed],
                Some("a"),
                false,
                State::Failed,
                Some("001.sql:3:1: [42P01] boom"),
            ),
            (
                vec![&failed, &applied],
                Some("a"),
                false,
                State::Applied,
                None,
            ),
            (vec![&running], Some("a"), true, State::Running, None),
            (
                vec![&running],
                Some("a"),
                false,
                State::Interrupted,
                Some("3 statements committed; see `promoter resolve`"),
            ),
            (
                vec![],
                Some("a"),
                false,
                State::Pending,
                Some("needs 1 customer"),
            ),
            (vec![], None, false, State::Pending, Some("not sealed")),
        ];
        for (rows, hash, locked, state, detail) in cases {
            let progress = Progress::from([(1, 3)]);
            let c = cell(&rows, hash.map(digest), locked, &progress, || {
                short("customer")
            });
            assert_eq!(
                (c.state, c.detail.as_deref()),
                (state, detail),
                "{rows:?} {hash:?}"
            );
        }
        let signed = cell(&[], Some(digest("a")), false, &Progress::new(), Vec::new);
        assert_eq!((signed.state, signed.detail), (State::Pending, None));
    }

    #[test]
    fn orphans_show_their_last_row_and_what_needs_attention() {
        assert_eq!(orphan(None, false).state, State::Absent);
        let r = row(Status::Running, "a");
        assert_eq!(orphan(Some(&r), false).state, State::Interrupted);
        assert_eq!(
            orphan(Some(&r), false).detail.as_deref(),
            Some("not in the work tree")
        );
        for (state, attention) in [
            (State::Applied, false),
            (State::Absent, false),
            (State::Pending, true),
            (State::Interrupted, true),
            (State::Unreachable, true),
            (State::Modified, true),
        ] {
            assert_eq!(state.needs_attention(), attention, "{state:?}");
        }
    }
}
