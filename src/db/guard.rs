//! What keeps a bundle's own SQL (and a DBA between runs) from rewriting
//! the audit trail: a digest of every catalog object of the ledger schema,
//! taken before a changeset and compared before its COMMIT; the rows the
//! transaction inserted, updated and deleted in the ledger tables (from
//! PostgreSQL's per-transaction statistics, so the check costs the same on a
//! ledger of ten rows or a million); and, before every run, that the
//! append-only triggers are there and enabled.

use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{AssertSqlSafe, Row};

use super::DbError;
use crate::changeset::Sha256Digest;

/// Every object of the ledger schema that a bundle could use to hide or
/// rewrite rows: the schema, its relations (with their storage: TRUNCATE
/// and VACUUM FULL give a new relfilenode), columns, constraints, triggers
/// and whether each is enabled, the code of trigger functions wherever they
/// live, functions in the schema, owners, grants, row-level security,
/// policies and rules. Names are the schema's own, so the text does not
/// depend on `search_path`. The ledger schema's few objects are read
/// through the catalogs' indexes, never by scanning a catalog, so the cost
/// does not grow with the rest of the database (at 500 tables a scan of
/// `pg_class` and `pg_proc` was most of 7 ms per changeset): its relations
/// and routines are those PostgreSQL records as depending on the schema
/// (every CREATE and SET SCHEMA records it; only an edit of `pg_catalog`
/// itself could leave one out), with the indexes of its tables; `OFFSET 0`
/// keeps the planner from turning the lookups into scans of every column
/// of the database (18 ms per changeset at 500 tables).
const CATALOG: &str = r#"
WITH ns AS (SELECT oid, nspname FROM pg_catalog.pg_namespace WHERE nspname = '{SCHEMA}'),
members AS MATERIALIZED (
    SELECT d.classid, d.objid FROM pg_catalog.pg_depend d
     WHERE d.refclassid = 'pg_catalog.pg_namespace'::pg_catalog.regclass AND d.refobjid = (SELECT oid FROM ns)
       AND d.refobjsubid = 0 AND d.deptype = 'n'
),
tables AS MATERIALIZED (
    SELECT c.* FROM members m
     CROSS JOIN LATERAL (SELECT c.* FROM pg_catalog.pg_class c WHERE c.oid = m.objid AND c.relnamespace = (SELECT oid FROM ns) OFFSET 0) c
     WHERE m.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
),
rels AS MATERIALIZED (
    SELECT * FROM tables
    UNION ALL
    SELECT c.* FROM tables t
     CROSS JOIN LATERAL (SELECT i.indexrelid FROM pg_catalog.pg_index i WHERE i.indrelid = t.oid OFFSET 0) i
     CROSS JOIN LATERAL (SELECT c.* FROM pg_catalog.pg_class c WHERE c.oid = i.indexrelid OFFSET 0) c
)
SELECT coalesce(string_agg(line, E'\n' ORDER BY line), '') FROM (
    SELECT 'schema ' || pg_catalog.pg_get_userbyid(n.nspowner) || ' ' || coalesce(n.nspacl::text, '') AS line
      FROM pg_catalog.pg_namespace n JOIN ns ON ns.oid = n.oid
    UNION ALL
    SELECT 'rel ' || r.relname || ' ' || r.relkind::text || ' ' || pg_catalog.pg_get_userbyid(r.relowner) || ' '
           || coalesce(r.relacl::text, '') || ' rls=' || r.relrowsecurity::text || '/' || r.relforcerowsecurity::text
           || ' node=' || r.relfilenode::text || ' ' || r.relpersistence::text
      FROM rels r
    UNION ALL
    SELECT 'col ' || r.relname || '.' || a.attname || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod)
           || ' notnull=' || a.attnotnull::text || ' ' || coalesce(pg_catalog.pg_get_expr(d.adbin, d.adrelid), '')
           || ' ' || coalesce(a.attacl::text, '')
      FROM rels r
     CROSS JOIN LATERAL (SELECT a.* FROM pg_catalog.pg_attribute a
                          WHERE a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped OFFSET 0) a
      LEFT JOIN LATERAL (SELECT d.* FROM pg_catalog.pg_attrdef d
                          WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum OFFSET 0) d ON true
    UNION ALL
    SELECT 'con ' || r.relname || '.' || c.conname || ' ' || pg_catalog.pg_get_constraintdef(c.oid) || ' ' || c.convalidated::text
      FROM rels r CROSS JOIN LATERAL (SELECT c.* FROM pg_catalog.pg_constraint c WHERE c.conrelid = r.oid OFFSET 0) c
    UNION ALL
    SELECT 'trg ' || r.relname || '.' || t.tgname || ' enabled=' || t.tgenabled::text || ' '
           || pg_catalog.pg_get_triggerdef(t.oid) || ' code=' || pg_catalog.md5(p.prosrc)
      FROM rels r
     CROSS JOIN LATERAL (SELECT t.* FROM pg_catalog.pg_trigger t WHERE t.tgrelid = r.oid OFFSET 0) t
      JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
    UNION ALL
    SELECT 'fn ' || p.proname || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ') '
           || pg_catalog.pg_get_userbyid(p.proowner) || ' ' || coalesce(p.proacl::text, '') || ' definer=' || p.prosecdef::text
           || ' code=' || pg_catalog.md5(p.prosrc)
      FROM members m
     CROSS JOIN LATERAL (SELECT p.* FROM pg_catalog.pg_proc p WHERE p.oid = m.objid AND p.pronamespace = (SELECT oid FROM ns) OFFSET 0) p
     WHERE m.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
    UNION ALL
    SELECT 'policy ' || r.relname || '.' || pol.polname || ' ' || pol.polcmd::text || ' '
           || coalesce(pg_catalog.pg_get_expr(pol.polqual, pol.polrelid), '')
      FROM rels r
     CROSS JOIN LATERAL (SELECT pol.* FROM pg_catalog.pg_policy pol WHERE pol.polrelid = r.oid OFFSET 0) pol
    UNION ALL
    SELECT 'rule ' || r.relname || '.' || rw.rulename
      FROM rels r
     CROSS JOIN LATERAL (SELECT rw.* FROM pg_catalog.pg_rewrite rw WHERE rw.ev_class = r.oid OFFSET 0) rw
) lines
"#;

fn catalog_error(env: &str, e: &sqlx::Error) -> DbError {
    DbError::query(
        env,
        format!(
            "reading the ledger schema's catalog: {}",
            super::describe(e)
        ),
    )
}

/// The digest of the ledger schema's catalog (see [`CATALOG`]).
pub async fn catalog(
    conn: &mut PgConnection,
    env: &str,
    schema: &str,
) -> Result<Sha256Digest, DbError> {
    // The schema's name is in the text (a lower-case identifier, checked
    // when the configuration is read), not a parameter: a statement without
    // parameters is planned once per connection, not at every changeset.
    debug_assert!(
        schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    );
    let sql = CATALOG.replace("{SCHEMA}", schema);
    let text: String = sqlx::query_scalar(AssertSqlSafe(sql))
        .fetch_one(conn)
        .await
        .map_err(|e| catalog_error(env, &e))?;
    Ok(Sha256Digest::of(text.as_bytes()))
}

/// The catalog rows [`CATALOG`] is made of, without printing them: per kind
/// (the schema, its members, relations, indexes, columns, defaults,
/// constraints, triggers, trigger functions, routines, policies, rules),
/// how many there are and whether this transaction wrote one (a new row
/// version has its id as `xmin`); and whether [`super::fingerprint::ONLY_OURS`]
/// holds. Whether a row is this transaction's is told by `age(xmin) <= 0`
/// (its id, or a later one: its subtransactions'), which says so only
/// while no later transaction has finished, and that is what the flag is
/// read with: a row of another transaction with a later id is visible
/// only once that one finished. (Asking `pg_locks` for the transaction's
/// ids costs a copy of the whole lock table, a quarter of this query.)
/// Read through the same indexes. Role names (owners, grants) are left out: `pg_authid` is not readable by every role, and renaming one
/// gives nobody a right on the ledger.
const SHAPE: &str = r#"
WITH ns AS (SELECT oid, xmin FROM pg_catalog.pg_namespace WHERE nspname = '{SCHEMA}'),
members AS MATERIALIZED (
    SELECT d.classid, d.objid, d.xmin FROM pg_catalog.pg_depend d
     WHERE d.refclassid = 'pg_catalog.pg_namespace'::pg_catalog.regclass AND d.refobjid = (SELECT oid FROM ns)
       AND d.refobjsubid = 0 AND d.deptype = 'n'
),
tables AS MATERIALIZED (
    SELECT c.oid, c.xmin FROM members m
     CROSS JOIN LATERAL (SELECT c.oid, c.xmin FROM pg_catalog.pg_class c WHERE c.oid = m.objid AND c.relnamespace = (SELECT oid FROM ns) OFFSET 0) c
     WHERE m.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
),
indexes AS MATERIALIZED (
    SELECT c.oid, c.xmin, i.xmin AS index_xmin FROM tables t
     CROSS JOIN LATERAL (SELECT i.indexrelid, i.xmin FROM pg_catalog.pg_index i WHERE i.indrelid = t.oid OFFSET 0) i
     CROSS JOIN LATERAL (SELECT c.oid, c.xmin FROM pg_catalog.pg_class c WHERE c.oid = i.indexrelid OFFSET 0) c
),
rels AS MATERIALIZED (SELECT oid, xmin FROM tables UNION ALL SELECT oid, xmin FROM indexes),
triggers AS MATERIALIZED (
    SELECT t.tgfoid, t.xmin FROM rels r
     CROSS JOIN LATERAL (SELECT t.tgfoid, t.xmin FROM pg_catalog.pg_trigger t WHERE t.tgrelid = r.oid OFFSET 0) t
),
described(kind, xmin) AS (
    SELECT 'schema', xmin FROM ns
    UNION ALL SELECT 'member', xmin FROM members
    UNION ALL SELECT 'relation', xmin FROM rels
    UNION ALL SELECT 'index', index_xmin FROM indexes
    UNION ALL SELECT 'column', a.xmin FROM rels r
     CROSS JOIN LATERAL (SELECT a.xmin FROM pg_catalog.pg_attribute a WHERE a.attrelid = r.oid OFFSET 0) a
    UNION ALL SELECT 'default', d.xmin FROM rels r
     CROSS JOIN LATERAL (SELECT d.xmin FROM pg_catalog.pg_attrdef d WHERE d.adrelid = r.oid OFFSET 0) d
    UNION ALL SELECT 'constraint', c.xmin FROM rels r
     CROSS JOIN LATERAL (SELECT c.xmin FROM pg_catalog.pg_constraint c WHERE c.conrelid = r.oid OFFSET 0) c
    UNION ALL SELECT 'trigger', xmin FROM triggers
    UNION ALL SELECT 'trigger function', p.xmin FROM triggers t
     CROSS JOIN LATERAL (SELECT p.xmin FROM pg_catalog.pg_proc p WHERE p.oid = t.tgfoid OFFSET 0) p
    UNION ALL SELECT 'routine', p.xmin FROM members m
     CROSS JOIN LATERAL (SELECT p.xmin FROM pg_catalog.pg_proc p WHERE p.oid = m.objid OFFSET 0) p
     WHERE m.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
    UNION ALL SELECT 'policy', pol.xmin FROM rels r
     CROSS JOIN LATERAL (SELECT pol.xmin FROM pg_catalog.pg_policy pol WHERE pol.polrelid = r.oid OFFSET 0) pol
    UNION ALL SELECT 'rule', rw.xmin FROM rels r
     CROSS JOIN LATERAL (SELECT rw.xmin FROM pg_catalog.pg_rewrite rw WHERE rw.ev_class = r.oid OFFSET 0) rw
)
SELECT kind, count(*), coalesce(bool_or(pg_catalog.age(xmin) <= 0), false) FROM described GROUP BY kind
UNION ALL SELECT 'alone', 0, coalesce({ONLY_OURS}, false)
ORDER BY 1
"#;

/// What [`SHAPE`] counts, per kind of catalog row (see there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape(Vec<(String, i64)>);

/// One reading of [`SHAPE`].
struct Look {
    shape: Shape,
    /// This transaction wrote one of the rows (told only when `alone`).
    written: bool,
    /// No later transaction has finished (see `fingerprint::ONLY_OURS`).
    alone: bool,
}

async fn look(conn: &mut PgConnection, env: &str, schema: &str) -> Result<Look, DbError> {
    Ok(look_with(conn, env, schema, None).await?.0)
}

/// What [`look_with`] adds: the ledger tables' counters (`None` when the
/// server does not count), and whether promoter's row is there.
type Counted = (Option<[(i64, i64, i64); 4]>, bool);

/// [`look`], and with `row` (promoter's row: seq, entry hash) in the same
/// statement, the counters of [`touched`] (when the server counts) and
/// whether that row is in the ledger as written: what the end of a quiet
/// changeset asks, in one round trip.
async fn look_with(
    conn: &mut PgConnection,
    env: &str,
    schema: &str,
    row: Option<(i64, Sha256Digest)>,
) -> Result<(Look, Option<Counted>), DbError> {
    let mut sql = SHAPE
        .replace("{SCHEMA}", schema)
        .replace("{ONLY_OURS}", super::fingerprint::ONLY_OURS);
    if row.is_some() {
        sql = format!(
            "{}\nUNION ALL {}",
            sql.trim_end().trim_end_matches("ORDER BY 1").trim_end(),
            counted_rows(schema)
        );
    }
    let mut query = sqlx::query_as(AssertSqlSafe(sql));
    if let Some((seq, hash)) = row {
        query = query.bind(seq).bind(hash.to_hex());
    }
    let rows: Vec<(String, i64, bool)> = query
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| catalog_error(env, &e))?;
    let mut look = Look {
        shape: Shape(Vec::new()),
        written: false,
        alone: false,
    };
    let mut counters = [0i64; 12];
    let (mut counting, mut ours) = (false, false);
    for (kind, count, flag) in rows {
        if kind == "alone" {
            look.alone = flag;
        } else if kind == "~ours" {
            ours = count == 1;
        } else if let Some(n) = kind.strip_prefix('~') {
            // `~N`: counter N of counted_rows.
            let slot = n.parse::<usize>().ok().and_then(|n| counters.get_mut(n));
            *slot.ok_or_else(|| catalog_error_text(env, &kind))? = count;
            counting = flag;
        } else {
            look.written |= flag;
            look.shape.0.push((kind, count));
        }
    }
    // In Rust, not by the database's collation: every reading the same.
    look.shape.0.sort();
    let tables =
        std::array::from_fn(|t| (counters[3 * t], counters[3 * t + 1], counters[3 * t + 2]));
    Ok((look, row.map(|_| (counting.then_some(tables), ours))))
}

fn catalog_error_text(env: &str, kind: &str) -> DbError {
    DbError::query(
        env,
        format!("reading the ledger schema's catalog: an unexpected row {kind:?}"),
    )
}

/// Rows for [`look_with`]: `~N` with counter N (table N / 3 of [`TABLES`];
/// inserted, updated, deleted by N % 3) and whether the server counts;
/// `~ours` with 1 when promoter's row (`$1`, `$2`) is there.
fn counted_rows(schema: &str) -> String {
    let mut rows = Vec::new();
    for (t, table) in TABLES.iter().enumerate() {
        for (c, f) in ["inserted", "updated", "deleted"].iter().enumerate() {
            let n = 3 * t + c;
            rows.push(format!(
                "SELECT '~{n}', coalesce(pg_catalog.pg_stat_get_xact_tuples_{f}(pg_catalog.to_regclass('{schema}.{table}')), 0), \
                 pg_catalog.current_setting('track_counts')::bool"
            ));
        }
    }
    rows.push(format!(
        "SELECT '~ours', (SELECT count(*) FROM {schema}.ledger WHERE seq = $1 AND entry_hash = $2), false"
    ));
    rows.join("\nUNION ALL ")
}

/// The ledger schema's [`Shape`] now, taken with its [`catalog`] digest at
/// the start of a run.
pub async fn shape(conn: &mut PgConnection, env: &str, schema: &str) -> Result<Shape, DbError> {
    Ok(look(conn, env, schema).await?.shape)
}

/// The ledger tables, in the order of [`Touched`].
const TABLES: [&str; 4] = ["ledger", "ledger_progress", "policy", "ledger_replaced"];

/// What the ledger tables look like to one transaction, to tell at its end
/// what it wrote to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Touched {
    /// Rows inserted, updated and deleted in each ledger table (ledger,
    /// ledger_progress, policy, ledger_replaced), as this backend counts
    /// them. PostgreSQL 15 flushes these counters only between transactions
    /// and not every time, so they can include earlier transactions: take
    /// them at the start of a transaction and compare the difference at
    /// its end.
    Counted([(i64, i64, i64); 4]),
    /// Without those counters (`track_counts` off): each table's rows, and
    /// how many of them this transaction wrote (inserted or updated).
    /// Costs a count of each table.
    Rows([(i64, i64); 4]),
}

/// The counters of the four tables (`$1`–`$4`: their qualified names), and
/// whether the server counts at all.
const TOUCHED: &str = "WITH t(o) AS (VALUES (pg_catalog.to_regclass($1)), (pg_catalog.to_regclass($2)), (pg_catalog.to_regclass($3)), (pg_catalog.to_regclass($4))) \
     SELECT coalesce(max(ins) FILTER (WHERE n = 1), 0), coalesce(max(upd) FILTER (WHERE n = 1), 0), coalesce(max(del) FILTER (WHERE n = 1), 0), \
            coalesce(max(ins) FILTER (WHERE n = 2), 0), coalesce(max(upd) FILTER (WHERE n = 2), 0), coalesce(max(del) FILTER (WHERE n = 2), 0), \
            coalesce(max(ins) FILTER (WHERE n = 3), 0), coalesce(max(upd) FILTER (WHERE n = 3), 0), coalesce(max(del) FILTER (WHERE n = 3), 0), \
            coalesce(max(ins) FILTER (WHERE n = 4), 0), coalesce(max(upd) FILTER (WHERE n = 4), 0), coalesce(max(del) FILTER (WHERE n = 4), 0), \
            pg_catalog.current_setting('track_counts')::bool \
       FROM (SELECT row_number() OVER () AS n, pg_catalog.pg_stat_get_xact_tuples_inserted(o) AS ins, \
                    pg_catalog.pg_stat_get_xact_tuples_updated(o) AS upd, pg_catalog.pg_stat_get_xact_tuples_deleted(o) AS del FROM t) c";

/// The counters now (see [`Touched`]).
pub async fn touched(conn: &mut PgConnection, env: &str, schema: &str) -> Result<Touched, DbError> {
    Ok(touched_with(conn, env, schema, None).await?.0)
}

/// [`touched`], and in the same statement (one round trip: this runs at
/// the start of every changeset) the columns of `extra`, an SQL select
/// list, from column 13 of the row returned.
pub async fn touched_with(
    conn: &mut PgConnection,
    env: &str,
    schema: &str,
    extra: Option<&str>,
) -> Result<(Touched, PgRow), DbError> {
    let sql = match extra {
        Some(extra) => format!("SELECT c.*, {extra} FROM ({TOUCHED}) c"),
        None => TOUCHED.to_owned(),
    };
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(format!("{schema}.ledger"))
        .bind(format!("{schema}.ledger_progress"))
        .bind(format!("{schema}.policy"))
        .bind(format!("{schema}.ledger_replaced"))
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| DbError::query(env, e))?;
    let count = |i: usize| row.try_get::<i64, _>(i).map_err(|e| DbError::query(env, e));
    let counts = [
        (count(0)?, count(1)?, count(2)?),
        (count(3)?, count(4)?, count(5)?),
        (count(6)?, count(7)?, count(8)?),
        (count(9)?, count(10)?, count(11)?),
    ];
    let counting: bool = row.try_get(12).map_err(|e| DbError::query(env, e))?;
    let touched = if counting {
        Touched::Counted(counts)
    } else {
        rows(conn, env, schema).await?
    };
    Ok((touched, row))
}

/// [`Touched::Rows`]: counted in the tables, for a server that does not count.
async fn rows(conn: &mut PgConnection, env: &str, schema: &str) -> Result<Touched, DbError> {
    let ours = "(SELECT transactionid FROM pg_catalog.pg_locks \
                 WHERE pid = pg_catalog.pg_backend_pid() AND locktype = 'transactionid')";
    let columns = TABLES
        .iter()
        .map(|t| {
            format!(
                "(SELECT count(*) FROM {schema}.{t}), (SELECT count(*) FROM {schema}.{t} WHERE xmin IN {ours})"
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    type Row = (i64, i64, i64, i64, i64, i64, i64, i64);
    let r: Row = sqlx::query_as(AssertSqlSafe(format!("SELECT {columns}")))
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| DbError::query(env, e))?;
    Ok(Touched::Rows([
        (r.0, r.1),
        (r.2, r.3),
        (r.4, r.5),
        (r.6, r.7),
    ]))
}

/// Checks, inside a changeset's transaction and after promoter appended its
/// ledger row `seq`, that the ledger schema is as it was (`before`) and that
/// the only row written to the ledger tables is that one. `Err` says what
/// the bundle did.
///
/// `quiet`: the caller's proof that no other transaction got an id since
/// the previous changeset of the run was checked (the proof that lets it
/// reuse that changeset's schema fingerprint). Then, if this transaction
/// wrote none of the rows the digest is made of, none is gone, and no
/// later transaction finished, the digest is the one the previous check
/// found (the run's, `before`) without printing it again.
#[allow(clippy::too_many_arguments)]
pub async fn check_transaction(
    conn: &mut PgConnection,
    env: &str,
    schema: &str,
    before: (Sha256Digest, &Shape),
    quiet: bool,
    counted: Touched,
    seq: i64,
    entry_hash: Sha256Digest,
) -> Result<Result<(), String>, DbError> {
    // Quiet, the counters and promoter's row come in the same statement.
    let (unchanged, pre) = if quiet {
        let (l, pre) = look_with(conn, env, schema, Some((seq, entry_hash))).await?;
        (l.alone && !l.written && &l.shape == before.1, pre)
    } else {
        (false, None)
    };
    super::fingerprint::trace(
        env,
        if unchanged {
            "ledger schema checked: none of its rows written"
        } else {
            "ledger schema checked: digest"
        },
    );
    if unchanged
        && super::fingerprint::check_increments()
        && catalog(conn, env, schema).await? != before.0
    {
        return Err(DbError::query(
            env,
            "internal error: the ledger schema's digest changed though none of its catalog rows did".to_owned(),
        ));
    }
    if !unchanged && catalog(conn, env, schema).await? != before.0 {
        return Ok(Err(format!(
            "it changed the ledger schema {schema} (a table, column, constraint, trigger or its state, function, owner, grant, policy or rule)"
        )));
    }
    let now = match pre {
        Some((Some(counters), _)) => Touched::Counted(counters),
        _ => touched(conn, env, schema).await?,
    };
    let present = pre.map(|(_, present)| present);
    let (counted, now) = match (counted, now) {
        (Touched::Counted(before), Touched::Counted(now)) => (before, now),
        (Touched::Rows(before), now) => {
            let now = match now {
                Touched::Rows(now) => now,
                Touched::Counted(_) => match rows(conn, env, schema).await? {
                    Touched::Rows(now) => now,
                    Touched::Counted(_) => unreachable!("rows() counts rows"),
                },
            };
            // Promoter's row is the one new row of the ledger and the only
            // one this transaction wrote; the other tables are as they were.
            let expected = |i: usize| (before[i].0 + i64::from(i == 0), i64::from(i == 0));
            if let Some(i) = (0..TABLES.len()).find(|&i| now[i] != expected(i)) {
                return Ok(Err(format!(
                    "it wrote to the ledger tables: {schema}.{} has {} rows ({} before) of which this transaction wrote {} (promoter wrote {})",
                    TABLES[i],
                    now[i].0,
                    before[i].0,
                    now[i].1,
                    expected(i).1
                )));
            }
            return ours(conn, env, schema, seq, entry_hash, present).await;
        }
        (Touched::Counted(_), Touched::Rows(_)) => {
            return Ok(Err(
                "PostgreSQL stopped counting row changes (track_counts) during the changeset, so what it wrote to the ledger tables cannot be known".to_owned(),
            ));
        }
    };
    let delta = |i: usize| {
        (
            now[i].0 - counted[i].0,
            now[i].1 - counted[i].1,
            now[i].2 - counted[i].2,
        )
    };
    let (ledger, progress, policy, replaced) = (delta(0), delta(1), delta(2), delta(3));
    if ledger != (1, 0, 0) || progress != (0, 0, 0) || policy != (0, 0, 0) || replaced != (0, 0, 0)
    {
        return Ok(Err(format!(
            "it wrote to the ledger tables: {schema}.ledger {} inserted (promoter wrote 1), {} updated, {} deleted; \
             {schema}.ledger_progress {}/{}/{}; {schema}.policy {}/{}/{}; {schema}.ledger_replaced {}/{}/{}",
            ledger.0,
            ledger.1,
            ledger.2,
            progress.0,
            progress.1,
            progress.2,
            policy.0,
            policy.1,
            policy.2,
            replaced.0,
            replaced.1,
            replaced.2
        )));
    }
    ours(conn, env, schema, seq, entry_hash, present).await
}

/// Whether promoter's row `seq` is in the ledger as it was written.
async fn ours(
    conn: &mut PgConnection,
    env: &str,
    schema: &str,
    seq: i64,
    entry_hash: Sha256Digest,
    present: Option<bool>,
) -> Result<Result<(), String>, DbError> {
    let ours: i64 = match present {
        Some(present) => i64::from(present),
        None => ours_count(conn, env, schema, seq, entry_hash).await?,
    };
    if ours != 1 {
        return Ok(Err(format!(
            "promoter's ledger row #{seq} is not in the ledger after its INSERT"
        )));
    }
    Ok(Ok(()))
}

async fn ours_count(
    conn: &mut PgConnection,
    env: &str,
    schema: &str,
    seq: i64,
    entry_hash: Sha256Digest,
) -> Result<i64, DbError> {
    sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM {schema}.ledger WHERE seq = $1 AND entry_hash = $2"
    )))
    .bind(seq)
    .bind(entry_hash.to_hex())
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| DbError::query(env, e))
}

/// The head of the ledger as a non-transactional run expects it: (rows, last seq, last entry hash).
pub async fn head(
    conn: &mut PgConnection,
    env: &str,
    schema: &str,
) -> Result<(i64, i64, Option<String>), DbError> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT (SELECT count(*) FROM {schema}.ledger), coalesce((SELECT max(seq) FROM {schema}.ledger), 0), \
         (SELECT entry_hash::text FROM {schema}.ledger ORDER BY seq DESC LIMIT 1)"
    )))
    .fetch_one(conn)
    .await
    .map_err(|e| DbError::query(env, e))
}

/// Whether the ledger's protections are in place before a run: the
/// append-only triggers exist and are enabled, and nothing was added that
/// could hide rows (rules, row-level security, other triggers).
pub async fn protected(
    conn: &mut PgConnection,
    env: &str,
    schema: &str,
) -> Result<Result<(), String>, DbError> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT c.relname::text, t.tgname::text, t.tgenabled::text FROM pg_catalog.pg_trigger t \
         JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND NOT t.tgisinternal ORDER BY 1, 2",
    )
    .bind(schema)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| DbError::query(env, e))?;
    if rows.is_empty() {
        return Ok(Ok(())); // no ledger yet
    }
    let expected = [
        ("ledger", "ledger_append_only"),
        ("ledger_progress", "ledger_progress_append_only"),
        ("policy", "policy_append_only"),
        ("ledger_replaced", "ledger_replaced_append_only"),
        ("ledger", "ledger_applied_once"),
    ];
    for (table, trigger, enabled) in &rows {
        if !expected.contains(&(table.as_str(), trigger.as_str())) {
            return Ok(Err(format!(
                "{schema}.{table} has a trigger promoter did not create: {trigger}"
            )));
        }
        if enabled != "O" {
            return Ok(Err(format!(
                "the append-only trigger {trigger} on {schema}.{table} is {}",
                if enabled == "D" {
                    "disabled"
                } else {
                    "not enabled for ordinary sessions"
                }
            )));
        }
    }
    for (table, trigger) in expected {
        let table_exists = rows.iter().any(|(t, _, _)| t == table);
        let present = rows.iter().any(|(t, g, _)| t == table && g == trigger);
        if table_exists && !present {
            // Layout 4 made "applied once" a trigger; an older ledger not
            // yet upgraded has the unique index instead.
            if trigger == "ledger_applied_once" {
                let layout: Option<i32> = sqlx::query_scalar(AssertSqlSafe(format!(
                    "SELECT max(version) FROM {schema}.ledger_version"
                )))
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| DbError::query(env, e))?;
                if layout.unwrap_or(0) < 4 {
                    continue;
                }
            }
            return Ok(Err(format!(
                "the trigger {trigger} on {schema}.{table} is missing"
            )));
        }
    }
    let (rules, rls): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM pg_catalog.pg_rewrite rw JOIN pg_catalog.pg_class c ON c.oid = rw.ev_class \
                  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1), \
                (SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                  WHERE n.nspname = $1 AND (c.relrowsecurity OR c.relforcerowsecurity))",
    )
    .bind(schema)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| DbError::query(env, e))?;
    if rules > 0 {
        return Ok(Err(format!(
            "{schema} has rewrite rules, which can hide or redirect ledger rows"
        )));
    }
    if rls > 0 {
        return Ok(Err(format!(
            "{schema} has row-level security enabled, which can hide ledger rows"
        )));
    }
    Ok(Ok(()))
}
