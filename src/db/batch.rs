//! INSERTs sent together. psql sends every statement in a message of its
//! own and waits for the answer, so a script of 100,000 INSERTs costs
//! 100,000 round trips. Inside promoter's transaction, a run of
//! constants-only INSERTs (`sql::constant_insert`) goes to the server as
//! one simple-query message instead, when nothing the server would run for
//! them could tell the difference.
//!
//! What can tell: code that sees the text of the current query
//! (`current_query()`, `pg_stat_activity`), the time a message arrived
//! (`statement_timestamp()`, the same for every statement of a message), or
//! that changes how the rest of a message was parsed (the server parses a
//! whole message before running its first statement). Such code can only
//! be the target table's: a constants-only INSERT names no function,
//! operator, type or cast. So before a run is sent together, the server is
//! asked, in the script's own session, whether each target is a plain user
//! table with no trigger, rule or row security, whose columns have built-in
//! (or enum) types, and whose defaults, generated columns, constraints and
//! indexes call only immutable built-in functions (or a short list of
//! volatile ones that cannot see the query: `nextval`, `now`, …), with no
//! user-made cast between built-in types and no foreign key into a table
//! with row security. A target that fails, or any doubt, and its INSERTs go
//! one by one, as psql sends them.
//!
//! The data are then psql's; what differs is only what the server logs
//! (`log_statement` shows the run's message) and the timing.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::postgres::{PgConnection, PgDatabaseError, PgErrorPosition};
use sqlx::{AssertSqlSafe, Row};

use super::executor::{ExecError, Meter, script_error, send_alone, statement_error_at};
use crate::sql::{Item, LexError, Splitter, Statement, constant_insert};

/// At most this many statements, or about this many bytes, go in one message.
const MAX_STATEMENTS: usize = 1000;
const MAX_BYTES: usize = 512 * 1024;

/// An item as the splitter gave it, and, when it is a constants-only
/// INSERT that may go with others, where its target is named in its text
/// (classified once, whether read ahead or not).
pub(super) struct Read {
    pub item: Result<Option<Item>, LexError>,
    pub target: Option<Range<usize>>,
}

/// The next item of `splitter`; INSERTs are classified only when
/// `batching` (inside the changeset's transaction).
pub(super) fn read<R: std::io::BufRead>(splitter: &mut Splitter<R>, batching: bool) -> Read {
    let item = splitter.next_item();
    let target = match &item {
        Ok(Some(Item::Statement(s))) if batching => constant_insert(s),
        _ => None,
    };
    Read { item, target }
}

/// Reads up to a batch of items into `ahead`: constants-only INSERTs, and
/// the first item that is not one (which ends the run).
pub(super) fn read_ahead<R: std::io::BufRead>(
    splitter: &mut Splitter<R>,
    ahead: &mut VecDeque<Read>,
) {
    for _ in 0..MAX_STATEMENTS {
        let next = read(splitter, true);
        let more = next.target.is_some();
        ahead.push_back(next);
        if !more {
            return;
        }
    }
}

/// Consecutive constants-only INSERTs of one script, not yet sent.
#[derive(Default)]
pub(super) struct Batch {
    /// Each with where its target is named in its text.
    pending: Vec<(Statement, Range<usize>)>,
    bytes: usize,
    /// What the server said of each target (as written); good only until
    /// a statement it did not vouch for runs, which may run code that
    /// changes the answer, or until the run of INSERTs ends.
    vouched: HashMap<String, bool>,
}

impl Batch {
    /// Holds `stmt`, whose target is named at `target` in its text; true
    /// when the batch is full.
    pub(super) fn push(&mut self, stmt: Statement, target: Range<usize>) -> bool {
        self.bytes += stmt.text.len();
        self.pending.push((stmt, target));
        self.pending.len() >= MAX_STATEMENTS || self.bytes >= MAX_BYTES
    }

    /// Forgets what the server said: the run of INSERTs has ended, and what
    /// runs next may change the answers.
    pub(super) fn forget_answers(&mut self) {
        self.vouched.clear();
    }

    /// Sends what is held, in order: the runs whose targets the server
    /// vouches for together, everything else alone. `done` counts the
    /// statements that ran.
    pub(super) async fn send(
        &mut self,
        conn: &mut PgConnection,
        file: &str,
        stop: &AtomicBool,
        done: &mut i64,
        meter: Option<&Arc<Meter>>,
    ) -> Result<(), ExecError> {
        let pending = std::mem::take(&mut self.pending);
        self.bytes = 0;
        let vouched = &mut self.vouched;
        let mut rest = &pending[..];
        while let Some((first, _)) = rest.first() {
            if stop.load(Ordering::SeqCst) {
                return Err(ExecError::Interrupted {
                    at: Some(format!("{file}:{}", first.line)),
                });
            }
            if rest.len() > 1 {
                let unknown: BTreeSet<&str> = rest
                    .iter()
                    .map(|(s, t)| &s.text[t.clone()])
                    .filter(|t| !vouched.contains_key(*t))
                    .collect();
                if !unknown.is_empty() {
                    let unknown: Vec<String> = unknown.into_iter().map(str::to_owned).collect();
                    let answers = ask(conn, &unknown).await.map_err(|e| {
                        script_error(
                            &format!("{file}:{}", first.line),
                            "asking whether the INSERTs from here can be sent together",
                            &e,
                        )
                    })?;
                    vouched.extend(unknown.into_iter().zip(answers));
                }
            }
            // A lone INSERT is not asked about (it goes alone anyway), so
            // unless its target was vouched for it may have run code.
            let together = rest
                .iter()
                .take_while(|(s, t)| vouched.get(&s.text[t.clone()]) == Some(&true))
                .count();
            let n = if together > 1 {
                send_together(conn, file, &rest[..together], done).await?;
                together
            } else {
                if together == 0 {
                    vouched.clear();
                }
                send_alone(conn, file, first).await?;
                *done += 1;
                1
            };
            if let Some(m) = meter {
                m.statements.store(*done as u64, Ordering::Relaxed);
            }
            rest = &rest[n..];
        }
        Ok(())
    }
}

/// The targets (as written in the INSERTs) the server vouches for, in the
/// session as the script has left it (its search path names the tables).
/// Every name is qualified, so nothing the script defined can answer.
async fn ask(conn: &mut PgConnection, tables: &[String]) -> Result<Vec<bool>, sqlx::Error> {
    let names: Vec<String> = tables
        .iter()
        .map(|t| format!("E'{}'", t.replace('\\', "\\\\").replace('\'', "''")))
        .collect();
    let sql = VOUCH_QUERY.replace("$TABLES", &names.join(", "));
    let rows = sqlx::raw_sql(AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await?;
    let mut answers = vec![false; tables.len()];
    for row in rows {
        let i: i64 = row.try_get(0)?;
        let ok: Option<bool> = row.try_get(1)?;
        if let Some(a) = usize::try_from(i - 1).ok().and_then(|i| answers.get_mut(i)) {
            *a = ok == Some(true);
        }
    }
    Ok(answers)
}

/// Sends `run` as one message. A failure names its own statement: the one
/// the server's position falls in, or else the first that did not finish.
async fn send_together(
    conn: &mut PgConnection,
    file: &str,
    run: &[(Statement, Range<usize>)],
    done: &mut i64,
) -> Result<(), ExecError> {
    let text: String = run.iter().map(|(s, _)| s.text.as_str()).collect();
    let mut finished = 0usize;
    let mut results = sqlx::raw_sql(AssertSqlSafe(text)).execute_many(&mut *conn);
    let mut failure = None;
    while let Some(r) = std::future::poll_fn(|cx| results.as_mut().poll_next(cx)).await {
        match r {
            Ok(_) => finished += 1,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    drop(results);
    *done += finished as i64;
    let Some(e) = failure else {
        return Ok(());
    };
    let position = match &e {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<PgDatabaseError>()
            .and_then(PgDatabaseError::position),
        _ => None,
    };
    // Where each statement starts, in characters (the server's positions):
    // counted only now, for an error.
    let starts: Vec<usize> = run
        .iter()
        .scan(0, |at, (s, _)| {
            let start = *at;
            *at += s.text.chars().count();
            Some(start)
        })
        .collect();
    let k = match position {
        Some(PgErrorPosition::Original(pos)) => {
            starts.partition_point(|&s| s < pos).saturating_sub(1)
        }
        _ => finished.min(run.len() - 1),
    };
    Err(statement_error_at(file, &run[k].0, &e, starts[k]))
}

/// What [`ask`] sends, with `$TABLES` replaced by the names as literals.
const VOUCH_QUERY: &str = r"SELECT n.i, c.oid IS NOT NULL
  AND c.oid OPERATOR(pg_catalog.>=) 16384
  AND c.relkind OPERATOR(pg_catalog.=) 'r'
  AND NOT c.relrowsecurity AND NOT c.relhasrules
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_trigger t
    WHERE t.tgrelid OPERATOR(pg_catalog.=) c.oid AND NOT t.tgisinternal)
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type y ON y.oid OPERATOR(pg_catalog.=) a.atttypid
    WHERE a.attrelid OPERATOR(pg_catalog.=) c.oid AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
      AND a.atttypid OPERATOR(pg_catalog.>=) 16384 AND y.typtype OPERATOR(pg_catalog.<>) 'e')
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class r ON r.oid OPERATOR(pg_catalog.=) k.confrelid
    WHERE k.conrelid OPERATOR(pg_catalog.=) c.oid AND r.relrowsecurity)
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d
    WHERE d.refobjid OPERATOR(pg_catalog.>=) 16384
      AND (d.refclassid OPERATOR(pg_catalog.=) ANY ('{pg_catalog.pg_proc,pg_catalog.pg_operator,pg_catalog.pg_opclass,pg_catalog.pg_opfamily}'::pg_catalog.regclass[])
        OR d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_type'::pg_catalog.regclass
          AND NOT EXISTS (SELECT FROM pg_catalog.pg_type e WHERE e.oid OPERATOR(pg_catalog.=) d.refobjid AND e.typtype OPERATOR(pg_catalog.=) 'e'))
      AND (d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
          AND (d.objid OPERATOR(pg_catalog.=) c.oid OR d.objid OPERATOR(pg_catalog.=) ANY (SELECT x.indexrelid FROM pg_catalog.pg_index x WHERE x.indrelid OPERATOR(pg_catalog.=) c.oid))
        OR d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_attrdef'::pg_catalog.regclass
          AND d.objid OPERATOR(pg_catalog.=) ANY (SELECT e.oid FROM pg_catalog.pg_attrdef e WHERE e.adrelid OPERATOR(pg_catalog.=) c.oid)
        OR d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_constraint'::pg_catalog.regclass
          AND d.objid OPERATOR(pg_catalog.=) ANY (SELECT k.oid FROM pg_catalog.pg_constraint k WHERE k.conrelid OPERATOR(pg_catalog.=) c.oid)))
  AND NOT EXISTS (SELECT FROM (
        SELECT e.adbin FROM pg_catalog.pg_attrdef e WHERE e.adrelid OPERATOR(pg_catalog.=) c.oid
        UNION ALL SELECT k.conbin FROM pg_catalog.pg_constraint k WHERE k.conrelid OPERATOR(pg_catalog.=) c.oid
        UNION ALL SELECT x.indexprs FROM pg_catalog.pg_index x WHERE x.indrelid OPERATOR(pg_catalog.=) c.oid
        UNION ALL SELECT x.indpred FROM pg_catalog.pg_index x WHERE x.indrelid OPERATOR(pg_catalog.=) c.oid) AS s (tree),
      pg_catalog.regexp_matches(s.tree::pg_catalog.text, ':funcid (\d+)', 'g') AS m (f)
      LEFT JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) m.f[1]::pg_catalog.oid
    WHERE p.oid IS NULL OR p.oid OPERATOR(pg_catalog.>=) 16384
      OR p.provolatile OPERATOR(pg_catalog.<>) 'i' AND NOT p.proname OPERATOR(pg_catalog.=) ANY ('{nextval,currval,now,transaction_timestamp,clock_timestamp,timeofday,random,gen_random_uuid,txid_current,pg_current_xact_id,current_setting,current_database,current_schema}'::pg_catalog.name[]))
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_cast k WHERE k.oid OPERATOR(pg_catalog.>=) 16384
    AND k.castsource OPERATOR(pg_catalog.<) 16384 AND k.casttarget OPERATOR(pg_catalog.<) 16384)
FROM pg_catalog.unnest(ARRAY[$TABLES]::pg_catalog.text[]) WITH ORDINALITY AS n (name, i)
LEFT JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(n.name)
ORDER BY n.i";
