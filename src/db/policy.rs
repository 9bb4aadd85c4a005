//! The pinned-policy table `<schema>.policy` (created with ledger layout 2):
//! read, and appended to under the advisory lock.

use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{AssertSqlSafe, Row};

use super::DbError;
use crate::changeset::Sha256Digest;
use crate::policy::{PinKind, PinRecord};

const COLUMNS: &str = "seq, environment, policy, policy_hash, kind, reason, signers, certificates, \
    (extract(epoch FROM pinned_at) * 1000000)::bigint, os_user, host, db_role, prev_hash, entry_hash";

fn from_row(env: &str, schema: &str, row: &PgRow) -> Result<PinRecord, DbError> {
    let sql = |e: sqlx::Error| {
        DbError::query(
            env,
            format!("reading {schema}.policy: {}", super::describe(&e)),
        )
    };
    let seq: i64 = row.try_get(0).map_err(sql)?;
    let malformed = |reason: String| DbError::MalformedLedger {
        env: env.to_owned(),
        schema: format!("{schema}.policy"),
        seq,
        reason,
    };
    let digest = |i: usize, name: &str| -> Result<Sha256Digest, DbError> {
        let text: String = row.try_get(i).map_err(sql)?;
        Sha256Digest::from_hex(&text)
            .ok_or_else(|| malformed(format!("{name} is not a sha256 digest")))
    };
    let kind: String = row.try_get(4).map_err(sql)?;
    Ok(PinRecord {
        seq,
        environment: row.try_get(1).map_err(sql)?,
        policy: row.try_get(2).map_err(sql)?,
        policy_hash: digest(3, "policy_hash")?,
        kind: PinKind::parse(&kind).ok_or_else(|| malformed(format!("unknown kind {kind:?}")))?,
        reason: row.try_get(5).map_err(sql)?,
        signers: row.try_get(6).map_err(sql)?,
        certificates: row.try_get(7).map_err(sql)?,
        pinned_at: row.try_get(8).map_err(sql)?,
        os_user: row.try_get(9).map_err(sql)?,
        host: row.try_get(10).map_err(sql)?,
        db_role: row.try_get(11).map_err(sql)?,
        prev_hash: digest(12, "prev_hash")?,
        entry_hash: digest(13, "entry_hash")?,
    })
}

/// Every pin, in `seq` order; empty if nothing was ever pinned here.
pub async fn load(
    conn: &mut PgConnection,
    env: &str,
    schema: &str,
) -> Result<Vec<PinRecord>, DbError> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(format!("{schema}.policy"))
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| DbError::query(env, e))?;
    if !exists {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM {schema}.policy ORDER BY seq"
    )))
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| DbError::query(env, e))?;
    rows.iter().map(|r| from_row(env, schema, r)).collect()
}

/// Chains `record` to the last pin and inserts it (inside the caller's
/// transaction, together with the ledger's trust event).
pub async fn append(
    conn: &mut PgConnection,
    env: &str,
    schema: &str,
    record: &mut PinRecord,
    previous: Option<&PinRecord>,
) -> Result<(), DbError> {
    record.seal(previous);
    insert(conn, env, schema, record).await
}

/// Inserts a pin record exactly as it is (already chained).
pub async fn insert(
    conn: &mut PgConnection,
    env: &str,
    schema: &str,
    record: &PinRecord,
) -> Result<(), DbError> {
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {schema}.policy (seq, environment, policy, policy_hash, kind, reason, signers, certificates, \
         pinned_at, os_user, host, db_role, prev_hash, entry_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
         to_timestamp(0) + $9::bigint * interval '1 microsecond', $10, $11, $12, $13, $14)"
    )))
    .bind(record.seq)
    .bind(&record.environment)
    .bind(&record.policy)
    .bind(record.policy_hash.to_hex())
    .bind(record.kind.as_str())
    .bind(&record.reason)
    .bind(&record.signers)
    .bind(&record.certificates)
    .bind(record.pinned_at)
    .bind(&record.os_user)
    .bind(&record.host)
    .bind(&record.db_role)
    .bind(record.prev_hash.to_hex())
    .bind(record.entry_hash.to_hex())
    .execute(&mut *conn)
    .await
    .map(|_| ())
    .map_err(|e| DbError::query(env, format!("writing the pinned policy: {}", super::describe(&e))))
}
