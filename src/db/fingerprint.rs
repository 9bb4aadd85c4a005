//! Schema fingerprint: sha256 of a normalized, sorted description of the
//! catalog (schemas, relations, columns, constraints, indexes, views,
//! routines, triggers, enums, extensions), leaving out system schemas and
//! promoter's own ledger schema. Names only, never OIDs, so two databases with
//! the same schema have the same fingerprint.

use sqlx::AssertSqlSafe;
use sqlx::postgres::PgConnection;

use super::DbError;
use crate::changeset::Sha256Digest;

const CATALOG: &str = r#"
WITH ns AS (
    SELECT oid, nspname FROM pg_namespace
     WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', $1)
       AND nspname NOT LIKE 'pg\_temp\_%' AND nspname NOT LIKE 'pg\_toast\_temp\_%'
)
SELECT line FROM (
    SELECT 'schema ' || nspname AS line FROM ns
    UNION ALL
    SELECT 'relation ' || ns.nspname || '.' || c.relname || ' ' || c.relkind::text
      FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
    UNION ALL
    SELECT 'column ' || ns.nspname || '.' || c.relname || '.' || a.attname || ' '
           || format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
           || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
           || CASE WHEN a.attidentity <> '' THEN ' identity ' || a.attidentity::text ELSE '' END
           || CASE WHEN a.attgenerated <> '' THEN ' generated' ELSE '' END
      FROM pg_attribute a
      JOIN pg_class c ON c.oid = a.attrelid
      JOIN ns ON ns.oid = c.relnamespace
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c')
    UNION ALL
    SELECT 'constraint ' || ns.nspname || '.' || coalesce(c.relname, t.typname) || '.' || con.conname || ' '
           || pg_get_constraintdef(con.oid)
      FROM pg_constraint con JOIN ns ON ns.oid = con.connamespace
      LEFT JOIN pg_class c ON c.oid = con.conrelid
      LEFT JOIN pg_type t ON t.oid = con.contypid
    UNION ALL
    SELECT 'index ' || pg_get_indexdef(i.indexrelid)
      FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN ns ON ns.oid = c.relnamespace
    UNION ALL
    SELECT 'view ' || ns.nspname || '.' || c.relname || ' ' || pg_get_viewdef(c.oid)
      FROM pg_class c JOIN ns ON ns.oid = c.relnamespace WHERE c.relkind IN ('v', 'm')
    UNION ALL
    SELECT 'routine ' || pg_get_functiondef(p.oid)
      FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
     WHERE p.prokind IN ('f', 'p')
       AND NOT EXISTS (SELECT 1 FROM pg_depend dep WHERE dep.objid = p.oid AND dep.deptype = 'e')
    UNION ALL
    SELECT 'trigger ' || pg_get_triggerdef(t.oid)
      FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN ns ON ns.oid = c.relnamespace
     WHERE NOT t.tgisinternal
    UNION ALL
    SELECT 'enum ' || ns.nspname || '.' || t.typname || ' ' || string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
      FROM pg_type t JOIN ns ON ns.oid = t.typnamespace JOIN pg_enum e ON e.enumtypid = t.oid
     GROUP BY ns.nspname, t.typname
    UNION ALL
    SELECT 'extension ' || extname || ' ' || extversion FROM pg_extension
) AS catalog
"#;

/// The normalized catalog of the current database: one entry per object,
/// sorted byte-wise (in Rust, so that databases with different collations
/// still agree). Entries may span lines (routine and view definitions).
pub async fn catalog(
    conn: &mut PgConnection,
    env: &str,
    ledger_schema: &str,
) -> Result<Vec<String>, DbError> {
    // A fixed search_path makes the *_def functions qualify names the same way everywhere.
    sqlx::raw_sql("SET search_path = pg_catalog")
        .execute(&mut *conn)
        .await
        .map_err(|e| DbError::query(env, e))?;
    let mut entries: Vec<String> = sqlx::query_scalar(AssertSqlSafe(CATALOG))
        .bind(ledger_schema)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| {
            DbError::query(env, format!("reading the catalog: {}", super::describe(&e)))
        })?;
    sqlx::raw_sql("RESET search_path")
        .execute(&mut *conn)
        .await
        .map_err(|e| DbError::query(env, e))?;
    entries.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(entries)
}

/// The schema fingerprint: sha256 of the [`catalog`] entries joined by line feeds.
pub async fn fingerprint(
    conn: &mut PgConnection,
    env: &str,
    ledger_schema: &str,
) -> Result<Sha256Digest, DbError> {
    Ok(of_catalog(&catalog(conn, env, ledger_schema).await?))
}

/// The fingerprint of catalog entries.
pub fn of_catalog(entries: &[String]) -> Sha256Digest {
    Sha256Digest::of(entries.join("\n").as_bytes())
}
