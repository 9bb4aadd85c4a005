//! The ledger table `<schema>.ledger`: append-only (a trigger refuses UPDATE,
//! DELETE and TRUNCATE), hash-chained (see [`crate::ledger`]), and at most one
//! `applied` row per changeset, enforced by a unique index.

use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{AssertSqlSafe, Row};

use super::DbError;
use crate::changeset::Sha256Digest;
use crate::ledger::{Entry, Progress, ReplacedRow, Status};

/// Layout version this promoter writes and reads: the last of [`LAYOUTS`].
pub const LAYOUT_VERSION: i32 = LAYOUTS[LAYOUTS.len() - 1].0;

/// The ledger's DDL. `schema` is validated as `[a-z_][a-z0-9_]*` when the
/// configuration loads, so formatting it into SQL is safe; values never are.
/// Hashes are `char(64)` hex and times `timestamptz`, as the style guide asks;
/// `signers` is text, not jsonb, so the stored bytes are the hashed bytes.
fn ddl(schema: &str) -> String {
    format!(
        r#"
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.ledger_version (
    version      integer PRIMARY KEY,
    installed_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {s}.ledger (
    seq                 bigint PRIMARY KEY CHECK (seq > 0),
    changeset_id        text NOT NULL,
    bundle_hash         char(64) NOT NULL,
    environment         text NOT NULL,
    status              text NOT NULL CHECK (status IN ('applied', 'failed', 'running', 'resolved-applied', 'resolved-rolled-back')),
    signers             text NOT NULL,
    promoted_from       text,
    promoted_from_entry char(64),
    git_commit          text,
    os_user             text NOT NULL,
    host                text NOT NULL,
    db_role             text NOT NULL,
    started_at          timestamptz NOT NULL,
    finished_at         timestamptz,
    schema_before       char(64),
    schema_after        char(64),
    statements          bigint NOT NULL,
    error               text,
    note                text,
    prev_hash           char(64) NOT NULL UNIQUE,
    entry_hash          char(64) NOT NULL UNIQUE
);
COMMENT ON TABLE {s}.ledger IS 'promoter: every application of a changeset to this database; append-only and hash-chained (promoter audit)';
CREATE UNIQUE INDEX IF NOT EXISTS ledger_applied_once ON {s}.ledger (changeset_id)
    WHERE status IN ('applied', 'resolved-applied');
CREATE OR REPLACE FUNCTION {s}.ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'the promoter ledger is append-only: % refused', TG_OP;
END
$fn$;
DROP TRIGGER IF EXISTS ledger_append_only ON {s}.ledger;
CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON {s}.ledger
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.ledger_append_only();
INSERT INTO {s}.ledger_version (version) VALUES (1) ON CONFLICT DO NOTHING;
"#,
        s = schema
    ) + &progress_ddl(schema)
}

/// Layout 2: receipts on ledger rows, trust events, and the pinned trust
/// policy next to the ledger (append-only and hash-chained like it).
fn v2_ddl(schema: &str) -> String {
    format!(
        r#"
ALTER TABLE {s}.ledger ADD COLUMN IF NOT EXISTS receipt text;
ALTER TABLE {s}.ledger DROP CONSTRAINT IF EXISTS ledger_status_check;
ALTER TABLE {s}.ledger ADD CONSTRAINT ledger_status_check
    CHECK (status IN ('applied', 'failed', 'running', 'resolved-applied', 'resolved-rolled-back', 'trust-pinned'));
CREATE TABLE IF NOT EXISTS {s}.policy (
    seq          bigint PRIMARY KEY CHECK (seq > 0),
    environment  text NOT NULL,
    policy       text NOT NULL,
    policy_hash  char(64) NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('first-use', 'signed', 'break-glass')),
    reason       text,
    signers      text NOT NULL,
    certificates text NOT NULL,
    pinned_at    timestamptz NOT NULL,
    os_user      text NOT NULL,
    host         text NOT NULL,
    db_role      text NOT NULL,
    prev_hash    char(64) NOT NULL UNIQUE,
    entry_hash   char(64) NOT NULL UNIQUE
);
COMMENT ON TABLE {s}.policy IS 'promoter: the trust policy pinned for this environment; append-only and hash-chained (promoter trust show)';
DROP TRIGGER IF EXISTS policy_append_only ON {s}.policy;
CREATE TRIGGER policy_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON {s}.policy
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.ledger_append_only();
INSERT INTO {s}.ledger_version (version) VALUES (2) ON CONFLICT DO NOTHING;
"#,
        s = schema
    )
}

/// Layout 3: `refreshed` rows, and `ledger_replaced`, which keeps the
/// ledger of a database that `promoter clone` replaced, row for row, under
/// the `entry_hash` of the `refreshed` row that replaced it.
fn v3_ddl(schema: &str) -> String {
    format!(
        r#"
ALTER TABLE {s}.ledger DROP CONSTRAINT IF EXISTS ledger_status_check;
ALTER TABLE {s}.ledger ADD CONSTRAINT ledger_status_check
    CHECK (status IN ('applied', 'failed', 'running', 'resolved-applied', 'resolved-rolled-back', 'trust-pinned', 'refreshed'));
CREATE TABLE IF NOT EXISTS {s}.ledger_replaced (
    replaced_by         char(64) NOT NULL,
    seq                 bigint NOT NULL CHECK (seq > 0),
    changeset_id        text NOT NULL,
    bundle_hash         char(64) NOT NULL,
    environment         text NOT NULL,
    status              text NOT NULL,
    signers             text NOT NULL,
    promoted_from       text,
    promoted_from_entry char(64),
    git_commit          text,
    os_user             text NOT NULL,
    host                text NOT NULL,
    db_role             text NOT NULL,
    started_at          timestamptz NOT NULL,
    finished_at         timestamptz,
    schema_before       char(64),
    schema_after        char(64),
    statements          bigint NOT NULL,
    error               text,
    note                text,
    prev_hash           char(64) NOT NULL,
    entry_hash          char(64) NOT NULL,
    receipt             text,
    PRIMARY KEY (replaced_by, seq)
);
COMMENT ON TABLE {s}.ledger_replaced IS 'promoter: the ledgers of databases that promoter clone replaced, kept row for row under the refreshed row that replaced them';
DROP TRIGGER IF EXISTS ledger_replaced_append_only ON {s}.ledger_replaced;
CREATE TRIGGER ledger_replaced_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON {s}.ledger_replaced
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.ledger_append_only();
INSERT INTO {s}.ledger_version (version) VALUES (3) ON CONFLICT DO NOTHING;
"#,
        s = schema
    )
}

/// Layout 4: `forgotten` rows (a changeset undone by hand in DEV, so that
/// it can run again), `branched` rows (`promoter branch create`) and
/// `baseline-adopted` rows (`promoter baseline`). "Applied at most once" becomes "applied at most once
/// since it was last forgotten", which a unique index cannot say: a trigger
/// refuses an `applied` row while the changeset's newest applied-or-forgotten
/// row is applied. (Runs hold the environment's advisory lock, so two
/// inserts never race past it.)
fn v4_ddl(schema: &str) -> String {
    format!(
        r#"
ALTER TABLE {s}.ledger DROP CONSTRAINT IF EXISTS ledger_status_check;
ALTER TABLE {s}.ledger ADD CONSTRAINT ledger_status_check
    CHECK (status IN ('applied', 'failed', 'running', 'resolved-applied', 'resolved-rolled-back', 'trust-pinned', 'refreshed', 'forgotten', 'branched', 'baseline-adopted'));
DROP INDEX IF EXISTS {s}.ledger_applied_once;
CREATE OR REPLACE FUNCTION {s}.ledger_applied_once() RETURNS trigger LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    IF NEW.status IN ('applied', 'resolved-applied', 'baseline-adopted') AND (
        SELECT l.status FROM {s}.ledger l
        WHERE l.changeset_id = NEW.changeset_id
          AND l.status IN ('applied', 'resolved-applied', 'baseline-adopted', 'forgotten')
        ORDER BY l.seq DESC LIMIT 1
    ) IN ('applied', 'resolved-applied', 'baseline-adopted') THEN
        RAISE EXCEPTION 'ledger_applied_once: % is already applied here (only a forgotten row lets it run again)', NEW.changeset_id
            USING ERRCODE = 'unique_violation';
    END IF;
    RETURN NEW;
END
$fn$;
DROP TRIGGER IF EXISTS ledger_applied_once ON {s}.ledger;
CREATE TRIGGER ledger_applied_once BEFORE INSERT ON {s}.ledger
    FOR EACH ROW EXECUTE FUNCTION {s}.ledger_applied_once();
INSERT INTO {s}.ledger_version (version) VALUES (4) ON CONFLICT DO NOTHING;
"#,
        s = schema
    )
}

/// Layout 5: an index for the check of layout 4's `ledger_applied_once`
/// trigger, which looked for the changeset's newest applied-or-forgotten
/// row through the whole ledger at every insert (measured: 0.25 ms per
/// insert at 400 rows, 0.9 ms at 2,000). The trigger's function plans its
/// query without sequential scans, so that a plan made while the ledger was
/// small does not scan it once it is not.
fn v5_ddl(schema: &str) -> String {
    format!(
        r#"
CREATE INDEX IF NOT EXISTS ledger_changeset ON {s}.ledger (changeset_id, seq)
    WHERE status IN ('applied', 'resolved-applied', 'baseline-adopted', 'forgotten');
ALTER FUNCTION {s}.ledger_applied_once() SET enable_seqscan = off;
INSERT INTO {s}.ledger_version (version) VALUES (5) ON CONFLICT DO NOTHING;
"#,
        s = schema
    )
}

/// The progress of non-transactional changesets: a row per statement that
/// committed, written right after it, so that a run killed half-way leaves
/// how far it got. Append-only like the ledger. Created also in ledgers made
/// before it existed (`IF NOT EXISTS`, under the lock).
fn progress_ddl(schema: &str) -> String {
    format!(
        r#"
CREATE TABLE IF NOT EXISTS {s}.ledger_progress (
    seq         bigint NOT NULL REFERENCES {s}.ledger (seq),
    statements  bigint NOT NULL CHECK (statements > 0),
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (seq, statements)
);
DROP TRIGGER IF EXISTS ledger_progress_append_only ON {s}.ledger_progress;
CREATE TRIGGER ledger_progress_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON {s}.ledger_progress
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.ledger_append_only();
"#,
        s = schema
    )
}

/// Records that statement `statements` of the non-transactional changeset
/// whose `running` row is `seq` committed. Inside a script's own
/// transaction block it commits or rolls back with that block.
pub async fn record_progress(
    conn: &mut PgConnection,
    env: &str,
    schema: &str,
    seq: i64,
    statements: i64,
) -> Result<(), DbError> {
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {schema}.ledger_progress (seq, statements) VALUES ($1, $2)"
    )))
    .bind(seq)
    .bind(statements)
    .execute(conn)
    .await
    .map(|_| ())
    .map_err(|e| DbError::query(env, format!("recording progress: {}", super::describe(&e))))
}

/// The statements recorded as committed, per `running` row.
pub async fn load_progress(
    conn: &mut PgConnection,
    env: &str,
    schema: &str,
) -> Result<Progress, DbError> {
    if !relation_exists(conn, env, &format!("{schema}.ledger_progress")).await? {
        return Ok(Progress::new());
    }
    let rows: Vec<(i64, i64)> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT seq, max(statements) FROM {schema}.ledger_progress GROUP BY seq"
    )))
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| DbError::query(env, e))?;
    Ok(rows.into_iter().collect())
}

/// Runs DDL in one transaction; `what` says what it was for in the error.
async fn run_ddl(conn: &mut PgConnection, env: &str, sql: &str, what: &str) -> Result<(), DbError> {
    let mut tx = sqlx::Connection::begin(&mut *conn)
        .await
        .map_err(|e| DbError::query(env, e))?;
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(&mut *tx)
        .await
        .map_err(|e| DbError::query(env, format!("{what}: {}", super::describe(&e))))?;
    tx.commit().await.map_err(|e| DbError::query(env, e))
}

/// Whether the ledger exists in this database.
pub async fn exists(conn: &mut PgConnection, env: &str, schema: &str) -> Result<bool, DbError> {
    relation_exists(conn, env, &format!("{schema}.ledger")).await
}

async fn relation_exists(conn: &mut PgConnection, env: &str, name: &str) -> Result<bool, DbError> {
    sqlx::query_scalar::<_, bool>("SELECT to_regclass($1) IS NOT NULL")
        .bind(name)
        .fetch_one(conn)
        .await
        .map_err(|e| DbError::query(env, e))
}

/// The DDL of one layout for a ledger schema.
pub type LayoutDdl = fn(&str) -> String;

/// Each layout and the DDL that makes it from the one before (layout 1:
/// from nothing). A ledger is at layout N when it ran them up to N.
pub const LAYOUTS: [(i32, LayoutDdl); 5] =
    [(1, ddl), (2, v2_ddl), (3, v3_ddl), (4, v4_ddl), (5, v5_ddl)];

/// Creates the ledger if needed and checks its layout version. Call only
/// while holding the advisory lock, so that two promoters never race here.
pub async fn ensure(conn: &mut PgConnection, env: &str, schema: &str) -> Result<(), DbError> {
    if !exists(conn, env, schema).await? {
        // A new ledger is made at the newest layout in one transaction: the
        // same statements as creating layout 1 and upgrading it, in order.
        let sql: String = LAYOUTS.iter().map(|(_, ddl)| ddl(schema)).collect();
        run_ddl(conn, env, &sql, &format!("creating {schema}.ledger")).await?;
    } else if !relation_exists(conn, env, &format!("{schema}.ledger_progress")).await? {
        run_ddl(
            conn,
            env,
            &progress_ddl(schema),
            &format!("creating {schema}.ledger_progress"),
        )
        .await?;
    }
    let version: i32 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT max(version) FROM {schema}.ledger_version"
    )))
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| DbError::query(env, e))?;
    // Each layout's upgrade in order, each in its own transaction.
    for (layout, upgrade) in LAYOUTS {
        if version < layout {
            let what = format!("upgrading {schema}.ledger to layout {layout}");
            run_ddl(conn, env, &upgrade(schema), &what).await?;
        }
    }
    if version > LAYOUT_VERSION {
        return Err(DbError::LedgerTooNew {
            env: env.to_owned(),
            schema: schema.to_owned(),
            found: version,
            known: LAYOUT_VERSION,
        });
    }
    Ok(())
}

const COLUMNS: &str = "seq, changeset_id, bundle_hash, environment, status, signers, promoted_from, \
    promoted_from_entry, git_commit, os_user, host, db_role, \
    (extract(epoch FROM started_at) * 1000000)::bigint, \
    (extract(epoch FROM finished_at) * 1000000)::bigint, \
    schema_before, schema_after, statements, error, note, prev_hash, entry_hash";

/// The columns to read: layout 1 ledgers (not yet upgraded: promoter
/// upgrades only under the lock, before writing) have no `receipt`.
async fn columns(conn: &mut PgConnection, env: &str, schema: &str) -> Result<String, DbError> {
    let has_receipt: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) \
         AND attname = 'receipt' AND NOT attisdropped)",
    )
    .bind(format!("{schema}.ledger"))
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| DbError::query(env, e))?;
    Ok(format!(
        "{COLUMNS}, {}",
        if has_receipt { "receipt" } else { "NULL::text" }
    ))
}

/// Why a stored row cannot be read as an [`Entry`].
#[derive(Debug)]
enum RowError {
    Sql(sqlx::Error),
    /// A value promoter never writes; names the row and column.
    Malformed {
        seq: i64,
        reason: String,
    },
}

impl From<sqlx::Error> for RowError {
    fn from(e: sqlx::Error) -> Self {
        Self::Sql(e)
    }
}

fn from_row(row: &PgRow) -> Result<Entry, RowError> {
    let seq: i64 = row.try_get(0)?;
    let malformed = |reason: String| RowError::Malformed { seq, reason };
    // char(64) pads a short value with spaces; a digest is exactly 64 hex digits.
    let digest = |index: usize, column: &str| -> Result<Option<Sha256Digest>, RowError> {
        let text: Option<String> = row.try_get(index)?;
        text.map(|t| {
            Sha256Digest::from_hex(&t).ok_or_else(|| {
                malformed(format!(
                    "{column} is not a sha256 digest (64 lower-case hex digits): {:?}",
                    t.chars().take(80).collect::<String>()
                ))
            })
        })
        .transpose()
    };
    let required = |index: usize, column: &str| -> Result<Sha256Digest, RowError> {
        digest(index, column)?.ok_or_else(|| malformed(format!("{column} is NULL")))
    };
    let status: String = row.try_get(4)?;
    Ok(Entry {
        seq,
        changeset_id: row.try_get(1)?,
        bundle_hash: required(2, "bundle_hash")?,
        environment: row.try_get(3)?,
        status: Status::parse(&status)
            .ok_or_else(|| malformed(format!("unknown status {status:?}")))?,
        signers: row.try_get(5)?,
        promoted_from: row.try_get(6)?,
        promoted_from_entry: digest(7, "promoted_from_entry")?,
        git_commit: row.try_get(8)?,
        os_user: row.try_get(9)?,
        host: row.try_get(10)?,
        db_role: row.try_get(11)?,
        started_at: row.try_get(12)?,
        finished_at: row.try_get(13)?,
        schema_before: digest(14, "schema_before")?,
        schema_after: digest(15, "schema_after")?,
        statements: row.try_get(16)?,
        error: row.try_get(17)?,
        note: row.try_get(18)?,
        prev_hash: required(19, "prev_hash")?,
        entry_hash: required(20, "entry_hash")?,
        receipt: row.try_get(21)?,
    })
}

fn row_error(env: &str, schema: &str, e: RowError) -> DbError {
    match e {
        RowError::Sql(e) => DbError::query(
            env,
            format!("reading {schema}.ledger: {}", super::describe(&e)),
        ),
        RowError::Malformed { seq, reason } => DbError::MalformedLedger {
            env: env.to_owned(),
            schema: schema.to_owned(),
            seq,
            reason,
        },
    }
}

/// Every row, in `seq` order; empty if the ledger does not exist yet.
pub async fn load(conn: &mut PgConnection, env: &str, schema: &str) -> Result<Vec<Entry>, DbError> {
    if !exists(conn, env, schema).await? {
        return Ok(Vec::new());
    }
    let columns = columns(conn, env, schema).await?;
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {columns} FROM {schema}.ledger ORDER BY seq"
    )))
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| DbError::query(env, e))?;
    rows.iter()
        .map(from_row)
        .collect::<Result<_, _>>()
        .map_err(|e| row_error(env, schema, e))
}

/// The last row, to chain the next one to.
pub async fn last(
    conn: &mut PgConnection,
    env: &str,
    schema: &str,
) -> Result<Option<Entry>, DbError> {
    Ok(last_with(conn, env, schema, "NULL").await?.0)
}

/// Where the columns of `extra` start in the row [`last_with`] returns.
pub const AFTER_LAST: usize = 22;

/// [`last`], and in the same statement (one round trip less at the end of
/// every changeset) the columns of `extra`, an SQL select list, from
/// column [`AFTER_LAST`] of the row returned.
pub async fn last_with(
    conn: &mut PgConnection,
    env: &str,
    schema: &str,
    extra: &str,
) -> Result<(Option<Entry>, PgRow), DbError> {
    // The receipt through the row's JSON, which has no `receipt` key on a
    // layout 1 ledger.
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT prev.*, {extra} FROM (SELECT) AS one LEFT JOIN LATERAL \
         (SELECT {COLUMNS}, pg_catalog.to_jsonb(l) ->> 'receipt' FROM {schema}.ledger l ORDER BY seq DESC LIMIT 1) AS prev ON true"
    )))
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| DbError::query(env, e))?;
    let seq: Option<i64> = row.try_get(0).map_err(|e| DbError::query(env, e))?;
    let last = match seq {
        None => None,
        Some(_) => Some(from_row(&row).map_err(|e| row_error(env, schema, e))?),
    };
    Ok((last, row))
}

/// Signs a row's canonical bytes with the environment's receipt key and
/// returns the armored signature (`None`: the environment has no receipt key).
pub type RowSigner<'a> = Option<&'a mut dyn FnMut(&[u8]) -> Result<String, String>>;

/// Chains `entry` to the last row, signs it if the environment has a
/// receipt key, and inserts it, on `conn` (inside the caller's transaction
/// when there is one).
// Chaining reads the last row and inserts the next one; the advisory lock
// makes this race-free between promoters, and the UNIQUE prev_hash would
// refuse a fork even from a writer that bypassed the lock.
pub async fn append(
    conn: &mut PgConnection,
    env: &str,
    schema: &str,
    entry: &mut Entry,
    sign: &mut RowSigner<'_>,
) -> Result<(), DbError> {
    let prev = last(conn, env, schema).await?;
    append_after(conn, env, schema, entry, sign, prev.as_ref()).await
}

/// [`append`] after `prev`, the last row as read in this transaction.
pub async fn append_after(
    conn: &mut PgConnection,
    env: &str,
    schema: &str,
    entry: &mut Entry,
    sign: &mut RowSigner<'_>,
    prev: Option<&Entry>,
) -> Result<(), DbError> {
    entry.seal(prev);
    entry.receipt = match sign {
        Some(sign) => Some(sign(&entry.canonical_bytes()).map_err(|e| {
            DbError::query(
                env,
                format!("signing the receipt for {}: {e}", entry.changeset_id),
            )
        })?),
        None => None,
    };
    insert(conn, env, schema, entry, None).await
}

/// Inserts `entry` exactly as it is (already chained and signed): into the
/// ledger, or with `replaced_by` into `ledger_replaced`.
pub async fn insert(
    conn: &mut PgConnection,
    env: &str,
    schema: &str,
    entry: &Entry,
    replaced_by: Option<Sha256Digest>,
) -> Result<(), DbError> {
    let (table, extra, first) = match replaced_by {
        None => ("ledger", "", 1),
        Some(_) => ("ledger_replaced", "replaced_by, ", 2),
    };
    let n = |i: usize| format!("${}", i + first - 1);
    let placeholders: Vec<String> = (1..=22)
        .map(|i| match i {
            13 | 14 => format!(
                "to_timestamp(0) + {}::bigint * interval '1 microsecond'",
                n(i)
            ),
            _ => n(i),
        })
        .collect();
    let sql = format!(
        "INSERT INTO {schema}.{table} ({extra}seq, changeset_id, bundle_hash, environment, status, signers, \
         promoted_from, promoted_from_entry, git_commit, os_user, host, db_role, started_at, finished_at, \
         schema_before, schema_after, statements, error, note, prev_hash, entry_hash, receipt) \
         VALUES ({}{})",
        if replaced_by.is_some() { "$1, " } else { "" },
        placeholders.join(", ")
    );
    let mut query = sqlx::query(AssertSqlSafe(sql));
    if let Some(by) = replaced_by {
        query = query.bind(by.to_hex());
    }
    query
        .bind(entry.seq)
        .bind(&entry.changeset_id)
        .bind(entry.bundle_hash.to_hex())
        .bind(&entry.environment)
        .bind(entry.status.as_str())
        .bind(&entry.signers)
        .bind(&entry.promoted_from)
        .bind(entry.promoted_from_entry.map(Sha256Digest::to_hex))
        .bind(&entry.git_commit)
        .bind(&entry.os_user)
        .bind(&entry.host)
        .bind(&entry.db_role)
        .bind(entry.started_at)
        .bind(entry.finished_at)
        .bind(entry.schema_before.map(Sha256Digest::to_hex))
        .bind(entry.schema_after.map(Sha256Digest::to_hex))
        .bind(entry.statements)
        .bind(&entry.error)
        .bind(&entry.note)
        .bind(entry.prev_hash.to_hex())
        .bind(entry.entry_hash.to_hex())
        .bind(&entry.receipt)
        .execute(&mut *conn)
        .await
        .map_err(|e| {
            DbError::query(
                env,
                format!(
                    "writing the {table} row for {}: {}",
                    entry.changeset_id,
                    super::describe(&e)
                ),
            )
        })?;
    Ok(())
}

/// Every row of `ledger_replaced`, by replacing row and `seq` (empty if the
/// table does not exist yet).
pub async fn load_replaced(
    conn: &mut PgConnection,
    env: &str,
    schema: &str,
) -> Result<Vec<ReplacedRow>, DbError> {
    if !relation_exists(conn, env, &format!("{schema}.ledger_replaced")).await? {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS}, receipt, replaced_by FROM {schema}.ledger_replaced ORDER BY replaced_by, seq"
    )))
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| DbError::query(env, e))?;
    rows.iter()
        .map(|row| {
            let entry = from_row(row)?;
            let by: String = row.try_get(22)?;
            let replaced_by = Sha256Digest::from_hex(&by).ok_or_else(|| RowError::Malformed {
                seq: entry.seq,
                reason: format!("{schema}.ledger_replaced: replaced_by is not a sha256 digest"),
            })?;
            Ok(ReplacedRow { replaced_by, entry })
        })
        .collect::<Result<_, RowError>>()
        .map_err(|e| row_error(env, schema, e))
}

/// The database role promoter is connected as.
pub async fn current_role(conn: &mut PgConnection, env: &str) -> Result<String, DbError> {
    sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(conn)
        .await
        .map_err(|e| DbError::query(env, e))
}
