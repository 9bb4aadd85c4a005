//! A session-level advisory lock held for a whole run, on its own connection
//! that is never inside a transaction — so it cannot deadlock with
//! `CREATE INDEX CONCURRENTLY`, which waits for other transactions.

use std::time::{Duration, Instant};

use sqlx::postgres::PgConnection;

use super::DbError;
use crate::changeset::Sha256Digest;

/// The lock key for a ledger schema: the first 8 bytes of a sha256.
pub fn key(schema: &str) -> i64 {
    let digest = Sha256Digest::of(format!("promoter ledger lock {schema}").as_bytes());
    i64::from_be_bytes(digest.0[..8].try_into().expect("8 bytes"))
}

/// A held lock; release it with [`Lock::release`] (closing the connection releases it too).
pub struct Lock {
    conn: PgConnection,
    key: i64,
}

impl std::fmt::Debug for Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lock")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// The `pg_locks` rows (`l`) of the advisory lock with key `$1` held in
/// this database, for `concat!`.
macro_rules! held_lock {
    () => {
        "l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
         AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()) \
         AND l.classid = (($1 >> 32) & 4294967295)::oid AND l.objid = ($1 & 4294967295)::oid"
    };
}

/// Who holds an advisory lock.
async fn holder(conn: &mut PgConnection, key: i64) -> Option<(i32, String, String, String)> {
    sqlx::query_as::<_, (i32, String, String, String)>(concat!(
        "SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.usename::text, ''), \
                coalesce(to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '?') \
           FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid WHERE ",
        held_lock!(),
        " LIMIT 1"
    ))
    .bind(key)
    .fetch_optional(conn)
    .await
    .ok()
    .flatten()
}

/// Takes the lock, retrying until `timeout`. `waiting` is called once with a
/// description of the holder if the lock is busy.
pub async fn acquire(
    mut conn: PgConnection,
    env: &str,
    key: i64,
    timeout: Duration,
    waiting: impl FnOnce(&str),
) -> Result<Lock, DbError> {
    let start = Instant::now();
    let mut waiting = Some(waiting);
    loop {
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut conn)
            .await
            .map_err(|e| DbError::query(env, e))?;
        if got {
            return Ok(Lock { conn, key });
        }
        let who = holder(&mut conn, key).await;
        if start.elapsed() >= timeout {
            let (pid, application, user, since) =
                who.unwrap_or((0, "?".into(), "?".into(), "?".into()));
            super::close(conn).await;
            return Err(DbError::Locked {
                env: env.to_owned(),
                pid,
                application,
                user,
                since,
                waited: start.elapsed().as_secs(),
            });
        }
        if let (Some(w), Some((pid, app, user, since))) = (waiting.take(), &who) {
            w(&format!(
                "{env}: waiting for the lock held by pid {pid} ({app}, user {user}, since {since})"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether some session holds the lock in this database (read-only: for
/// `status`, which must never take it). Asks `pg_locks` alone: who holds
/// it is not needed here, and joining `pg_stat_activity` (a view the
/// server must plan each time a connection first asks) cost about 5 ms of
/// server time per environment and status.
pub async fn is_held(conn: &mut PgConnection, key: i64) -> bool {
    sqlx::query_scalar::<_, bool>(concat!(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_locks l WHERE ",
        held_lock!(),
        ")"
    ))
    .bind(key)
    .fetch_one(conn)
    .await
    .unwrap_or(false)
}

impl Lock {
    /// Asks the server to cancel the statement running in backend `pid` (the
    /// lock's connection is idle, so it can ask while the work connection is
    /// busy). Returns whether the request was delivered.
    pub async fn cancel(&mut self, pid: i32) -> bool {
        sqlx::query_scalar::<_, bool>("SELECT pg_cancel_backend($1)")
            .bind(pid)
            .fetch_one(&mut self.conn)
            .await
            .unwrap_or(false)
    }

    /// Whether backend `pid` is idle: not running a statement nor inside a
    /// transaction. The lock is released only then.
    pub async fn backend_idle(&mut self, pid: i32) -> bool {
        sqlx::query_scalar::<_, bool>(
            "SELECT coalesce((SELECT state = 'idle' FROM pg_stat_activity WHERE pid = $1), true)",
        )
        .bind(pid)
        .fetch_one(&mut self.conn)
        .await
        .unwrap_or(true)
    }

    /// Releases the lock and closes its connection.
    pub async fn release(mut self) {
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(self.key)
            .execute(&mut self.conn)
            .await;
        super::close(self.conn).await;
    }
}
