//! Schema fingerprint: sha256 of a normalized, sorted description of the
//! catalog (schemas, relations, columns, constraints, indexes, views,
//! routines, triggers, enums, extensions), leaving out system schemas and
//! promoter's own ledger schema. Names only, never OIDs, so two databases with
//! the same schema have the same fingerprint.
//!
//! A run of many changesets keeps the description it last read
//! ([`Tracked`]) and reads again only what changed since: every entry
//! belongs to one catalog object (its *owner*), and the next read finds the
//! owners whose catalog rows are newer than the snapshot the description
//! was taken in, everything that depends on them (an entry names the
//! objects it depends on, and PostgreSQL records those dependencies), and
//! which owners still exist. The result is the same text the whole catalog
//! gives; it costs a scan of the catalogs for new rows instead of printing
//! every definition again. Debug builds (the test suite) read both and
//! compare.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, OnceLock};

use sqlx::AssertSqlSafe;
use sqlx::postgres::PgConnection;
use sqlx::postgres::types::Oid;

use super::DbError;
use crate::changeset::Sha256Digest;

/// The catalog's entries, each with its owner (the catalog holding the
/// owner and its oid). `{CLASS:EXPR}` marks where a reading of some owners
/// restricts the branch to them; schemas are always read in full.
const ENTRIES: &str = r#"
SELECT 2615::oid AS cls, ns.oid AS obj, 'schema ' || nspname AS line FROM ns
UNION ALL
SELECT 1259::oid, c.oid, 'relation ' || ns.nspname || '.' || c.relname || ' ' || c.relkind::text
  FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c') AND {1259:c.oid}
UNION ALL
SELECT 1259::oid, c.oid, 'column ' || ns.nspname || '.' || c.relname || '.' || a.attname || ' '
       || format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
       || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
       || CASE WHEN a.attidentity <> '' THEN ' identity ' || a.attidentity::text ELSE '' END
       || CASE WHEN a.attgenerated <> '' THEN ' generated' ELSE '' END
  FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid
  JOIN ns ON ns.oid = c.relnamespace
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c') AND {1259:c.oid}
UNION ALL
SELECT 2606::oid, con.oid, 'constraint ' || ns.nspname || '.' || coalesce(c.relname, t.typname) || '.' || con.conname || ' '
       || pg_get_constraintdef(con.oid)
  FROM pg_constraint con JOIN ns ON ns.oid = con.connamespace
  LEFT JOIN pg_class c ON c.oid = con.conrelid
  LEFT JOIN pg_type t ON t.oid = con.contypid
 WHERE {2606:con.oid}
UNION ALL
SELECT 1259::oid, i.indexrelid, 'index ' || pg_get_indexdef(i.indexrelid)
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN ns ON ns.oid = c.relnamespace
 WHERE {1259:i.indexrelid}
UNION ALL
SELECT 1259::oid, c.oid, 'view ' || ns.nspname || '.' || c.relname || ' ' || pg_get_viewdef(c.oid)
  FROM pg_class c JOIN ns ON ns.oid = c.relnamespace WHERE c.relkind IN ('v', 'm') AND {1259:c.oid}
UNION ALL
SELECT 1255::oid, p.oid, 'routine ' || pg_get_functiondef(p.oid)
  FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
 WHERE p.prokind IN ('f', 'p')
   AND NOT EXISTS (SELECT 1 FROM pg_depend dep WHERE dep.objid = p.oid AND dep.deptype = 'e')
   AND {1255:p.oid}
UNION ALL
SELECT 2620::oid, t.oid, 'trigger ' || pg_get_triggerdef(t.oid)
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN ns ON ns.oid = c.relnamespace
 WHERE NOT t.tgisinternal AND {2620:t.oid}
UNION ALL
SELECT 1247::oid, t.oid, 'enum ' || ns.nspname || '.' || t.typname || ' ' || string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
  FROM pg_type t JOIN ns ON ns.oid = t.typnamespace JOIN pg_enum e ON e.enumtypid = t.oid
 WHERE {1247:t.oid}
 GROUP BY t.oid, ns.nspname, t.typname
UNION ALL
SELECT 3079::oid, x.oid, 'extension ' || extname || ' ' || extversion FROM pg_extension x WHERE {3079:x.oid}
"#;

/// The schemas the fingerprint covers (`$1`: the ledger schema).
const NAMESPACES: &str = r#"ns AS (
    SELECT oid, nspname FROM pg_namespace
     WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', $1)
       AND nspname NOT LIKE 'pg\_temp\_%' AND nspname NOT LIKE 'pg\_toast\_temp\_%'
)"#;

/// The session settings that change how definitions are printed (a
/// constant's date style, time zone, float digits, quoting). The search
/// path is not among them: a reading always sets its own ([`READING`]).
pub const SETTINGS: &str = "concat_ws(' | ', pg_catalog.current_setting('DateStyle'), pg_catalog.current_setting('IntervalStyle'), \
     pg_catalog.current_setting('TimeZone'), pg_catalog.current_setting('extra_float_digits'), pg_catalog.current_setting('bytea_output'), \
     pg_catalog.current_setting('quote_all_identifiers'), pg_catalog.current_setting('lc_monetary'), \
     pg_catalog.current_setting('standard_conforming_strings'))";

/// The row (kind 3) saying what a read saw: its snapshot, the transaction
/// id from which rows count as new (the reading transaction's own, or the
/// snapshot's xmax when it had none), and the settings.
fn meta_row() -> String {
    format!(
        "SELECT 3, NULL::oid, NULL::oid, pg_current_snapshot()::text, NULL::oid[], \
         coalesce(pg_current_xact_id_if_assigned(), pg_snapshot_xmax(pg_current_snapshot()))::text, {SETTINGS}"
    )
}

/// The owners that exist now, one row (kind 1) per catalog with their
/// oids: those [`ENTRIES`] gives at least one line for, found without
/// printing any (debug builds check the two agree on every whole reading).
/// Each row is `(owner class, the catalogs whose deleted rows can take an
/// owner away or, for routines, bring one, the SQL of its oids)`: an owner
/// goes when its row is deleted (DROP); a row updated in a way that takes
/// it out of the fingerprint is new and read again, and then gives no
/// entry. A routine taken out of an extension comes with no new row of its
/// own, only a deleted `pg_depend` one.
const PRESENT: [(u32, &[u32], &str); 7] = [
    (2615, &[2615], "SELECT oid FROM ns ORDER BY oid"),
    (
        1259,
        &[1259],
        "SELECT c.oid FROM pg_class c JOIN ns ON ns.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c', 'i', 'I') ORDER BY 1",
    ),
    (
        2606,
        &[2606],
        "SELECT con.oid FROM pg_constraint con JOIN ns ON ns.oid = con.connamespace ORDER BY 1",
    ),
    (
        1255,
        &[1255, 2608],
        "SELECT p.oid FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace \
         WHERE p.prokind IN ('f', 'p') AND NOT EXISTS (SELECT 1 FROM pg_depend dep WHERE dep.objid = p.oid AND dep.deptype = 'e') ORDER BY 1",
    ),
    (
        2620,
        &[2620],
        "SELECT t.oid FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
         JOIN ns ON ns.oid = c.relnamespace WHERE NOT t.tgisinternal ORDER BY 1",
    ),
    (
        1247,
        &[1247, 3501],
        "SELECT DISTINCT t.oid FROM pg_type t JOIN ns ON ns.oid = t.typnamespace \
         JOIN pg_enum e ON e.enumtypid = t.oid ORDER BY 1",
    ),
    (3079, &[3079], "SELECT oid FROM pg_extension ORDER BY 1"),
];

/// The [`PRESENT`] rows: all of them, or those whose bit is in `only`.
fn present(only: Option<u32>) -> Vec<String> {
    PRESENT
        .iter()
        .enumerate()
        .filter(|(i, _)| only.is_none_or(|m| m & (1 << i) != 0))
        .map(|(_, (class, _, sql))| {
            format!("SELECT 1, {class}::oid, NULL, NULL, ARRAY({sql}), NULL, NULL")
        })
        .collect()
}

/// How a reading narrowed to what the reading transaction wrote (see
/// [`Written`]) finds a catalog's new rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Narrow {
    /// Scans it when the transaction wrote to it.
    Scan,
    /// Scans it only when the transaction updated a row of it: no entry is
    /// made of its rows, so a new one matters only to objects that depend
    /// on it, and those are new themselves (a new enum's labels are new
    /// `pg_enum` rows).
    Updated,
    /// Looks up, through the catalog's index, the rows of the relations
    /// (`locked`) or other objects (`locked_objects`) the transaction holds
    /// a lock on: every statement that creates or alters a relation, a
    /// rule, a trigger, a column, an index or a constraint on one locks it,
    /// and ALTER EXTENSION … ADD locks its member. Domain constraints
    /// (no relation) are few and read by their index. `{W}` stands for the
    /// writers.
    Locked(&'static str),
}

/// The catalogs a reading of changes looks at for new rows: (its oid, the
/// class of the owner a row belongs to, the column naming the owner, the
/// catalog, how a narrowed reading finds them). The last is `pg_depend`,
/// where only extension memberships count (a routine in an extension has
/// no entry); it is scanned whenever an extension was created or altered.
const SCANNED: [(u32, u32, &str, &str, Narrow); 19] = [
    (
        1259,
        1259,
        "oid",
        "pg_class",
        Narrow::Locked(
            "SELECT 1259::oid, c.oid FROM locked l CROSS JOIN LATERAL \
         (SELECT c.oid FROM pg_class c WHERE c.oid = l.oid AND c.xmin = ANY({W}) OFFSET 0) c",
        ),
    ),
    (
        1249,
        1259,
        "attrelid",
        "pg_attribute",
        Narrow::Locked(
            "SELECT 1259::oid, l.oid FROM locked l \
         WHERE EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = l.oid AND a.xmin = ANY({W}))",
        ),
    ),
    (
        2604,
        1259,
        "adrelid",
        "pg_attrdef",
        Narrow::Locked(
            "SELECT 1259::oid, l.oid FROM locked l \
         WHERE EXISTS (SELECT 1 FROM pg_attrdef d WHERE d.adrelid = l.oid AND d.xmin = ANY({W}))",
        ),
    ),
    (
        2606,
        2606,
        "oid",
        "pg_constraint",
        Narrow::Locked(
            "SELECT 2606::oid, c.oid FROM locked l CROSS JOIN LATERAL \
         (SELECT c.oid FROM pg_constraint c WHERE c.conrelid = l.oid AND c.xmin = ANY({W}) OFFSET 0) c \
         UNION ALL SELECT 2606::oid, c.oid FROM pg_constraint c WHERE c.conrelid = 0 AND c.xmin = ANY({W})",
        ),
    ),
    (
        2610,
        1259,
        "indexrelid",
        "pg_index",
        Narrow::Locked(
            "SELECT 1259::oid, i.indexrelid FROM locked l CROSS JOIN LATERAL \
         (SELECT i.indexrelid FROM pg_index i WHERE i.indrelid = l.oid AND i.xmin = ANY({W}) OFFSET 0) i",
        ),
    ),
    (
        2618,
        1259,
        "ev_class",
        "pg_rewrite",
        Narrow::Locked(
            "SELECT 1259::oid, l.oid FROM locked l \
         WHERE EXISTS (SELECT 1 FROM pg_rewrite r WHERE r.ev_class = l.oid AND r.xmin = ANY({W}))",
        ),
    ),
    (1255, 1255, "oid", "pg_proc", Narrow::Scan),
    (
        2620,
        2620,
        "oid",
        "pg_trigger",
        Narrow::Locked(
            "SELECT 2620::oid, t.oid FROM locked l CROSS JOIN LATERAL \
         (SELECT t.oid FROM pg_trigger t WHERE t.tgrelid = l.oid AND t.xmin = ANY({W}) OFFSET 0) t",
        ),
    ),
    (1247, 1247, "oid", "pg_type", Narrow::Updated),
    (3501, 1247, "enumtypid", "pg_enum", Narrow::Scan),
    (2615, 2615, "oid", "pg_namespace", Narrow::Updated),
    (3079, 3079, "oid", "pg_extension", Narrow::Scan),
    (2617, 2617, "oid", "pg_operator", Narrow::Updated),
    (2616, 2616, "oid", "pg_opclass", Narrow::Updated),
    (3456, 3456, "oid", "pg_collation", Narrow::Updated),
    (2612, 2612, "oid", "pg_language", Narrow::Updated),
    (3602, 3602, "oid", "pg_ts_config", Narrow::Updated),
    (3600, 3600, "oid", "pg_ts_dict", Narrow::Updated),
    (
        2608,
        0,
        "",
        "pg_depend",
        Narrow::Locked(
            "SELECT d.classid, d.objid FROM locked_objects o CROSS JOIN LATERAL \
         (SELECT d.classid, d.objid FROM pg_depend d WHERE d.classid = o.classid AND d.objid = o.objid \
          AND d.deptype = 'e' AND d.xmin = ANY({W}) OFFSET 0) d",
        ),
    ),
];

/// An SQL expression: for each of the [`SCANNED`] catalogs, the rows this
/// transaction inserted, updated and deleted, as PostgreSQL counts them
/// for the transaction (`int8[]`, three per catalog); NULL when it does
/// not count (`track_counts` off). The counts can include earlier
/// transactions of the session (PostgreSQL 15 does not flush them after
/// every one): only the difference between two within one transaction
/// means anything ([`Writes::since`]).
pub fn writes_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let counts = SCANNED
            .iter()
            .map(|(oid, ..)| {
                format!(
                    "pg_catalog.pg_stat_get_xact_tuples_inserted({oid}::oid), pg_catalog.pg_stat_get_xact_tuples_updated({oid}::oid), \
                     pg_catalog.pg_stat_get_xact_tuples_deleted({oid}::oid)"
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "CASE WHEN pg_catalog.current_setting('track_counts')::bool THEN ARRAY[{counts}]::int8[] END"
        )
    })
}

/// An SQL condition: no transaction with a later id than the current
/// one's has finished (a snapshot's `xmax` is one past the latest finished
/// transaction), so none that started after it can have written a row its
/// snapshot sees. With the caller's proof that no other transaction got an
/// id between the previous reading and this transaction, only this one
/// can have written what is new. NULL without a transaction id.
pub const ONLY_OURS: &str = "(pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot()) <= pg_catalog.pg_current_xact_id_if_assigned())";

/// What [`writes_sql`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Writes(pub Option<Vec<i64>>);

/// The catalogs one transaction wrote, from two [`Writes`] in it: bit `i`
/// of `fresh` when `SCANNED[i]` is to be looked at for new rows (see
/// [`Narrow`]), of `locked` when through the transaction's locks; bit `i`
/// of `present` for deleted rows in the catalogs of `PRESENT[i]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    fresh: u32,
    locked: u32,
    present: u32,
}

impl Written {
    /// Nothing in the catalogs a fingerprint is made of.
    pub fn nothing(&self) -> bool {
        self.fresh == 0 && self.present == 0
    }
}

impl Writes {
    /// What was written between `earlier` and these counts; `None` when
    /// either was not counted or they do not fit (a count went down).
    pub fn since(&self, earlier: &Writes) -> Option<Written> {
        let (now, then) = (self.0.as_ref()?, earlier.0.as_ref()?);
        if now.len() != 3 * SCANNED.len() || then.len() != now.len() {
            return None;
        }
        let mut w = Written {
            fresh: 0,
            locked: 0,
            present: 0,
        };
        let delta = |i: usize| now[i] - then[i];
        let extension = SCANNED
            .iter()
            .position(|s| s.0 == 3079)
            .expect("pg_extension");
        let extensions_written = delta(3 * extension) + delta(3 * extension + 1) > 0;
        for (i, (oid, _, _, _, narrow)) in SCANNED.iter().enumerate() {
            let (inserted, updated, gone) = (delta(3 * i), delta(3 * i + 1), delta(3 * i + 2));
            if inserted < 0 || updated < 0 || gone < 0 {
                return None;
            }
            let look = match narrow {
                Narrow::Updated => updated > 0,
                Narrow::Scan | Narrow::Locked(_) => inserted + updated > 0,
            };
            if look {
                w.fresh |= 1 << i;
                // Extension scripts make members without ALTER EXTENSION … ADD.
                if matches!(narrow, Narrow::Locked(_)) && !(*oid == 2608 && extensions_written) {
                    w.locked |= 1 << i;
                }
            }
            if gone > 0 {
                for (j, (_, catalogs, _)) in PRESENT.iter().enumerate() {
                    if catalogs.contains(oid) {
                        w.present |= 1 << j;
                    }
                }
            }
        }
        Some(w)
    }
}

/// The whole catalog: (kind 0, cls, obj, line) per entry, then one row of
/// kind 3 with the snapshot, the threshold and the settings; with
/// `checked`, the [`PRESENT`] rows too.
fn full_query(checked: bool) -> &'static str {
    static PLAIN: OnceLock<String> = OnceLock::new();
    static CHECKED: OnceLock<String> = OnceLock::new();
    let make = |checked: bool| {
        format!(
            "WITH {NAMESPACES}\n\
             SELECT 0 AS kind, cls, obj, line, NULL::oid[] AS oids, NULL::text AS threshold, NULL::text AS settings FROM ({}) AS entries\n\
             {}UNION ALL {}",
            filtered(|_, _| "TRUE".to_owned()),
            if checked {
                format!("UNION ALL {}\n", present(None).join("\nUNION ALL "))
            } else {
                String::new()
            },
            meta_row(),
        )
    };
    if checked {
        CHECKED.get_or_init(|| make(true))
    } else {
        PLAIN.get_or_init(|| make(false))
    }
}

/// More transaction ids than this between two readings (a busy server),
/// and the catalog is read whole.
const MAX_WRITERS: u32 = 10_000;

/// The branches of [`ENTRIES`] with each `{CLASS:EXPR}` replaced by `f`.
fn filtered(f: impl Fn(&str, &str) -> String) -> String {
    let mut out = String::with_capacity(ENTRIES.len() * 2);
    let mut rest = ENTRIES;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = start + rest[start..].find('}').expect("closed filter");
        let (class, expr) = rest[start + 1..end].split_once(':').expect("CLASS:EXPR");
        out.push_str(&f(class, expr));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The text of [`make_changes_query`] for each mask seen (few: a run's
/// changesets tend to write the same catalogs), by (fresh, locked, present).
type Masks = Option<(u32, u32, u32)>;

/// A read of what changed since a snapshot (`$2`, with threshold `$3`):
///
/// - `writers`: every transaction that may have written a row that snapshot
///   did not see: those it saw running, every one from the threshold (the
///   reading transaction's own id) up to the first not yet finished, and
///   this session's own transaction and subtransactions (which hold a lock
///   on their ids). More than [`MAX_WRITERS`] and the catalog is read
///   whole instead;
/// - `gate`: which of the [`SCANNED`] catalogs to look at (`$4`), which
///   [`PRESENT`] lists to give (`$5`) and which catalogs to look up through
///   this session's locks (`$6`; `locked`, `locked_objects`) instead of
///   scanning, bit masks; all scanned (-1, -1, 0) unless [`ONLY_OURS`]
///   holds in this snapshot (see [`tracked_fingerprint`]);
/// - `fresh`: owners of catalog rows those transactions wrote, in every
///   catalog whose rows an entry prints or is made of; a function newly a
///   member of an extension (which takes its routine out);
/// - `closure`: every object that depends on one of them, transitively (an
///   entry prints the names of what it depends on: a renamed column changes
///   the indexes, constraints and views over it);
/// - the entries of those owners (kind 0), every object read (kind 2), the
///   owners that exist now, per catalog (kind 1), and the snapshot (kind 3).
fn changes_query(narrow: Option<Written>) -> String {
    static SQL: Mutex<BTreeMap<Masks, String>> = Mutex::new(BTreeMap::new());
    let key = narrow.map(|w| (w.fresh, w.locked, w.present));
    let mut cache = SQL.lock().unwrap_or_else(|e| e.into_inner());
    cache
        .entry(key)
        .or_insert_with(|| make_changes_query(narrow))
        .clone()
}

fn make_changes_query(narrow: Option<Written>) -> String {
    let writers = "(SELECT xs FROM writers)::xid[]";
    // Narrowed, a branch runs only if the snapshot proves no other
    // transaction can have written (else the reading says so, kind 5, and
    // is made again in full).
    let gated = |sql: String| match narrow {
        Some(_) => format!("SELECT * FROM ({sql}) AS x WHERE (SELECT ok FROM alone)"),
        None => sql,
    };
    let mut fresh: Vec<String> = SCANNED
        .iter()
        .enumerate()
        .filter_map(|(i, (_, class, column, catalog, how))| {
            let bit = 1u32 << i;
            let (look, locked) =
                narrow.map_or((true, false), |w| (w.fresh & bit != 0, w.locked & bit != 0));
            if !look {
                return None;
            }
            Some(gated(match (how, locked) {
                (Narrow::Locked(sql), true) => sql.replace("{W}", writers),
                _ => {
                    let (select, only) = if *class == 0 {
                        ("classid, objid".to_owned(), "deptype = 'e' AND ")
                    } else {
                        (format!("{class}::oid, {column}"), "")
                    };
                    format!("SELECT {select} FROM {catalog} WHERE {only}xmin = ANY({writers})")
                }
            }))
        })
        .collect();
    if fresh.is_empty() {
        fresh.push("SELECT NULL::oid, NULL::oid WHERE false".to_owned());
    }
    let mut rows = vec![
        format!(
            "SELECT 0 AS kind, cls, obj, line, NULL::oid[] AS oids, NULL::text AS threshold, NULL::text AS settings FROM ({}) AS entries",
            filtered(|class, expr| format!(
                "{expr} IN (SELECT obj FROM targets WHERE cls = {class})"
            ))
        ),
        "SELECT 2, cls, obj, NULL, NULL, NULL, NULL FROM targets".to_owned(),
    ];
    rows.extend(present(narrow.map(|w| w.present)));
    rows.push(format!(
        "SELECT 4, NULL, NULL, NULL, NULL, NULL, NULL FROM span WHERE to_xid - from_xid > {MAX_WRITERS} \
         OR (SELECT count(*) FROM pg_snapshot_xip($2::pg_snapshot)) > {MAX_WRITERS}"
    ));
    if narrow.is_some() {
        rows.push(
            "SELECT 5, NULL, NULL, NULL, NULL, NULL, NULL FROM alone WHERE NOT ok".to_owned(),
        );
    }
    rows.push(meta_row());
    format!(
        "WITH RECURSIVE {NAMESPACES},\n\
         span AS (\n\
             SELECT $3::xid8::text::bigint AS from_xid,\n\
                    pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS to_xid\n\
         ),\n\
         writers AS (\n\
             SELECT ARRAY(\n\
                 SELECT (x::text::bigint % 4294967296)::text::xid FROM pg_snapshot_xip($2::pg_snapshot) AS x\n\
                 UNION SELECT (x % 4294967296)::text::xid FROM span, generate_series(from_xid, least(to_xid, from_xid + {MAX_WRITERS}) - 1) AS x\n\
                 UNION SELECT transactionid FROM my_locks WHERE locktype = 'transactionid'\n\
             ) AS xs\n\
         ),\n\
         alone AS (SELECT coalesce({ONLY_OURS}, false) AS ok),\n\
         my_locks AS MATERIALIZED (\n\
             SELECT locktype, database, relation, classid, objid, transactionid, granted\n\
               FROM pg_locks WHERE pid = pg_backend_pid()\n\
         ),\n\
         locked AS MATERIALIZED (\n\
             SELECT DISTINCT relation AS oid FROM my_locks\n\
              WHERE locktype = 'relation' AND granted AND relation >= 16384\n\
                AND database = (SELECT oid FROM pg_database WHERE datname = current_database())\n\
         ),\n\
         locked_objects AS MATERIALIZED (\n\
             SELECT DISTINCT classid, objid FROM my_locks\n\
              WHERE locktype = 'object' AND granted AND objid >= 16384\n\
                AND database = (SELECT oid FROM pg_database WHERE datname = current_database())\n\
         ),\n\
         fresh(cls, obj) AS (\n    {fresh}\n),\n\
         closure(cls, obj) AS (\n\
             SELECT cls, obj FROM fresh\n\
             UNION\n\
             SELECT m.cls, m.obj FROM closure c\n\
              CROSS JOIN LATERAL (SELECT d.classid, d.objid FROM pg_depend d\n\
                    WHERE d.refclassid = c.cls AND d.refobjid = c.obj OFFSET 0) AS d\n\
              CROSS JOIN LATERAL (VALUES (d.classid, d.objid),\n\
                    (1259::oid, CASE d.classid\n\
                         WHEN 2604 THEN (SELECT adrelid FROM pg_attrdef WHERE oid = d.objid)\n\
                         WHEN 2618 THEN (SELECT ev_class FROM pg_rewrite WHERE oid = d.objid) END)) AS m(cls, obj)\n\
              WHERE m.obj IS NOT NULL\n\
         ),\n\
         targets AS (SELECT DISTINCT cls, obj FROM closure)\n\
         {rows}",
        fresh = fresh.join("\n    UNION ALL "),
        rows = rows.join("\nUNION ALL "),
    )
}

type Row = (
    i32,
    Option<Oid>,
    Option<Oid>,
    Option<String>,
    Option<Vec<Oid>>,
    Option<String>,
    Option<String>,
);

/// An owner: the catalog it is in and its oid.
type Owner = (u32, u32);

/// The catalog as a run last read it, and the snapshot it was read in.
#[derive(Debug, Clone)]
pub struct Tracked {
    ledger_schema: String,
    entries: HashMap<Owner, Vec<String>>,
    /// The same lines, kept in byte order as entries come and go (each
    /// with how many owners print it): the order of the text a fingerprint
    /// hashes, never sorted again.
    lines: BTreeMap<String, usize>,
    /// The lines as the last fingerprint hashed them (`lines` as it was
    /// then), and per line the copies added since (taken out, when
    /// negative): the next fingerprint merges those few into one contiguous
    /// text instead of walking every line again (measured at 2,000 tables:
    /// about 1 ms a changeset, most of it copying the scattered lines into
    /// the hash).
    joined: Option<Joined>,
    pending: BTreeMap<String, i64>,
    snapshot: String,
    threshold: String,
    settings: String,
}

/// Lines in byte order, each followed by a line feed: the bytes a
/// fingerprint hashes (without the last line feed), and where each line
/// starts (a line may hold line feeds of its own: a routine, a view).
#[derive(Debug, Clone, Default)]
struct Joined {
    text: Vec<u8>,
    starts: Vec<usize>,
    /// Its digest, once taken.
    digest: Option<Sha256Digest>,
}

impl Joined {
    fn of(lines: &BTreeMap<String, usize>) -> Self {
        let mut joined = Self::default();
        for (line, &n) in lines {
            for _ in 0..n {
                joined.push(line.as_bytes());
            }
        }
        joined
    }

    fn push(&mut self, line: &[u8]) {
        self.starts.push(self.text.len());
        self.text.extend_from_slice(line);
        self.text.push(b'\n');
    }

    fn start(&self, i: usize) -> usize {
        self.starts.get(i).copied().unwrap_or(self.text.len())
    }

    /// Line `i`, without its line feed.
    fn line(&self, i: usize) -> &[u8] {
        &self.text[self.starts[i]..self.start(i + 1) - 1]
    }

    /// The first line from `from` on that is not below `line`.
    fn lower_bound(&self, from: usize, line: &[u8]) -> usize {
        let (mut lo, mut hi) = (from, self.starts.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.line(mid) < line {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Lines `from..to`, appended to `out` as they are.
    fn copy_to(&self, from: usize, to: usize, out: &mut Self) {
        if from >= to {
            return;
        }
        let (a, b) = (self.starts[from], self.start(to));
        let base = out.text.len();
        out.starts
            .extend(self.starts[from..to].iter().map(|&s| s - a + base));
        out.text.extend_from_slice(&self.text[a..b]);
    }

    /// These lines with `changes` made (per line, how many copies to add,
    /// or to take out when negative), in one pass; `None` if a line to take
    /// out is not there.
    fn merged(&self, changes: &BTreeMap<String, i64>) -> Option<Self> {
        let mut out = Self {
            text: Vec::with_capacity(self.text.len() + 4096),
            starts: Vec::with_capacity(self.starts.len() + 64),
            digest: None,
        };
        let mut next = 0;
        for (line, &n) in changes.iter().filter(|(_, n)| **n != 0) {
            let line = line.as_bytes();
            let at = self.lower_bound(next, line);
            self.copy_to(next, at, &mut out);
            next = at;
            if n > 0 {
                for _ in 0..n {
                    out.push(line);
                }
            } else {
                for _ in 0..n.unsigned_abs() {
                    if next >= self.starts.len() || self.line(next) != line {
                        return None;
                    }
                    next += 1;
                }
            }
        }
        self.copy_to(next, self.starts.len(), &mut out);
        Some(out)
    }

    fn digest(&mut self) -> Sha256Digest {
        let end = self.text.len().saturating_sub(1);
        *self
            .digest
            .get_or_insert_with(|| Sha256Digest::of(&self.text[..end]))
    }
}

impl Tracked {
    /// The fingerprint of the description.
    fn fingerprint(&mut self) -> Sha256Digest {
        let pending = std::mem::take(&mut self.pending);
        let joined = self.joined.take().and_then(|joined| {
            if pending.is_empty() {
                return Some(joined);
            }
            joined.merged(&pending)
        });
        let mut joined = joined.unwrap_or_else(|| Joined::of(&self.lines));
        let digest = joined.digest();
        debug_assert_eq!(
            digest,
            of_lines(
                self.lines
                    .iter()
                    .flat_map(|(line, &n)| std::iter::repeat_n(line.as_str(), n))
            ),
            "the joined lines are the lines"
        );
        self.joined = Some(joined);
        digest
    }

    /// Every entry, sorted byte-wise (in Rust, so that databases with
    /// different collations still agree).
    fn sorted(&self) -> Vec<&str> {
        self.lines
            .iter()
            .flat_map(|(line, &n)| std::iter::repeat_n(line.as_str(), n))
            .collect()
    }

    fn new(
        ledger_schema: &str,
        entries: HashMap<Owner, Vec<String>>,
        snapshot: String,
        threshold: String,
        settings: String,
    ) -> Self {
        let mut lines = BTreeMap::new();
        for line in entries.values().flatten() {
            *lines.entry(line.clone()).or_insert(0) += 1;
        }
        Self {
            ledger_schema: ledger_schema.to_owned(),
            entries,
            lines,
            joined: None,
            pending: BTreeMap::new(),
            snapshot,
            threshold,
            settings,
        }
    }

    /// Takes `owner`'s entries out.
    fn remove(&mut self, owner: &Owner) {
        if let Some(old) = self.entries.remove(owner) {
            self.forget(&old);
        }
    }

    /// Sets `owner`'s entries.
    fn insert(&mut self, owner: Owner, new: Vec<String>) {
        for line in &new {
            *self.lines.entry(line.clone()).or_insert(0) += 1;
            if self.joined.is_some() {
                *self.pending.entry(line.clone()).or_insert(0) += 1;
            }
        }
        if let Some(old) = self.entries.insert(owner, new) {
            self.forget(&old);
        }
    }

    fn forget(&mut self, old: &[String]) {
        for line in old {
            if let Some(n) = self.lines.get_mut(line) {
                *n -= 1;
                if *n == 0 {
                    self.lines.remove(line);
                }
                if self.joined.is_some() {
                    *self.pending.entry(line.clone()).or_insert(0) -= 1;
                }
            }
        }
    }

    /// With the [`PRESENT`] rows of the same reading: whether they name
    /// exactly the owners the entries came from.
    fn check_present(&self, env: &str, present: &[(u32, BTreeSet<u32>)]) -> Result<(), DbError> {
        for (cls, oids) in present {
            let owners: BTreeSet<u32> = self
                .entries
                .keys()
                .filter(|&&(c, _)| c == *cls)
                .map(|&(_, o)| o)
                .collect();
            if &owners != oids {
                return Err(DbError::query(
                    env,
                    format!(
                        "internal error: the objects of catalog {cls} that exist are not those the schema's entries come from (only existing: {:?}; only in entries: {:?})",
                        oids.difference(&owners).take(5).collect::<Vec<_>>(),
                        owners.difference(oids).take(5).collect::<Vec<_>>()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// What a reading of the catalog sets first: the search path every
/// definition is printed under (so the *_def functions qualify names the
/// same way everywhere), and no JIT compilation, which the planner's
/// estimates for these queries can ask for and which then costs seconds
/// where the query takes milliseconds (measured: 4.9 s against 15 ms).
pub const READING: &str =
    "SET search_path = pg_catalog; SET jit = off; SET plan_cache_mode = force_generic_plan";

/// What it resets after.
pub const READ: &str = "RESET search_path; RESET jit; RESET plan_cache_mode";

/// [`READING`] for a narrowed reading, which finds rows through indexes
/// (from the relations this transaction locked): no sequential scans. Its
/// generic plan is made once, at the first changeset of a run, when the
/// catalogs may be small enough for a scan of one to look cheaper than its
/// index; as a run adds tables that plan would scan them again at every
/// changeset (measured: from 0.8 to 1.2 ms a reading over 500 tables).
/// Only the planner sees the setting; a catalog with no index to use (a
/// scan for new rows of `pg_proc`) is still read whole.
///
/// A narrowed reading is only ever made inside a changeset's transaction,
/// after its scripts, and these are `SET LOCAL`: they end with that
/// transaction, so nothing resets them, and the next changeset's scripts
/// start from the session's defaults. The executor sends them with the
/// session reset after the last script (see
/// [`super::executor::END_OF_SCRIPTS`]): two round trips fewer per
/// changeset than a SET before the reading and a RESET after it. The
/// ledger guard's check that follows ([`super::guard`], SHAPE), a
/// statement of the same kind, plans under them too; with the session's
/// defaults it got its generic plan with scans at the run's sixth
/// changeset, and kept it (measured: 0.6 ms at the start of a 500-table
/// run, 1.0 at its end). So do the ledger row's INSERT and the query for
/// the ledger's last row.
macro_rules! reading_narrowed {
    () => {
        "SET LOCAL search_path = pg_catalog; SET LOCAL jit = off; \
         SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL enable_seqscan = off"
    };
}
pub(crate) use reading_narrowed;

/// The text of [`reading_narrowed!`].
pub const READING_NARROWED: &str = reading_narrowed!();

/// Sends [`READING`] or [`READ`].
async fn settings(conn: &mut PgConnection, env: &str, sql: &'static str) -> Result<(), DbError> {
    sqlx::raw_sql(sql)
        .execute(&mut *conn)
        .await
        .map(|_| ())
        .map_err(|e| DbError::query(env, e))
}

async fn rows(
    conn: &mut PgConnection,
    env: &str,
    sql: String,
    ledger_schema: &str,
    since: Option<&Tracked>,
    narrowed: bool,
) -> Result<Vec<Row>, DbError> {
    // A narrowed reading's settings are in force already (see
    // [`READING_NARROWED`]).
    if !narrowed {
        settings(conn, env, READING).await?;
    }
    let mut query = sqlx::query_as::<_, Row>(AssertSqlSafe(sql)).bind(ledger_schema);
    if let Some(t) = since {
        query = query.bind(&t.snapshot).bind(&t.threshold);
    }
    let rows = query.fetch_all(&mut *conn).await.map_err(|e| {
        DbError::query(env, format!("reading the catalog: {}", super::describe(&e)))
    })?;
    if !narrowed {
        settings(conn, env, READ).await?;
    }
    Ok(rows)
}

/// What one reading returned, by kind of row.
struct Reading {
    /// Kind 0: entries, by owner.
    lines: HashMap<Owner, Vec<String>>,
    /// Kind 2: every object the reading looked at again.
    targets: Vec<Owner>,
    /// Kind 1: per catalog, the owners that exist.
    present: Vec<(u32, BTreeSet<u32>)>,
    /// Kind 3: the snapshot, the threshold and the settings.
    snapshot: String,
    threshold: String,
    settings: String,
    /// Kind 4: too many transactions in between to read only changes.
    too_busy: bool,
    /// Kind 5: a narrowed reading whose snapshot does not prove that only
    /// this transaction wrote (see [`ONLY_OURS`]).
    not_alone: bool,
}

fn parse(env: &str, rows: Vec<Row>) -> Result<Reading, DbError> {
    let unexpected = || DbError::query(env, "reading the catalog: an unexpected row".to_owned());
    let mut r = Reading {
        lines: HashMap::new(),
        targets: Vec::new(),
        present: Vec::new(),
        snapshot: String::new(),
        threshold: String::new(),
        settings: String::new(),
        too_busy: false,
        not_alone: false,
    };
    let mut meta = false;
    for (kind, cls, obj, line, oids, threshold, settings) in rows {
        match (kind, cls, obj) {
            (0, Some(cls), Some(obj)) => r
                .lines
                .entry((cls.0, obj.0))
                .or_default()
                .push(line.ok_or_else(unexpected)?),
            (2, Some(cls), Some(obj)) => r.targets.push((cls.0, obj.0)),
            (1, Some(cls), None) => r.present.push((
                cls.0,
                oids.unwrap_or_default().into_iter().map(|o| o.0).collect(),
            )),
            (3, None, None) => {
                r.snapshot = line.ok_or_else(unexpected)?;
                r.threshold = threshold.ok_or_else(unexpected)?;
                r.settings = settings.ok_or_else(unexpected)?;
                meta = true;
            }
            (4, None, None) => r.too_busy = true,
            (5, None, None) => r.not_alone = true,
            _ => return Err(unexpected()),
        }
    }
    if meta { Ok(r) } else { Err(unexpected()) }
}

/// Reads the whole catalog (and, in debug builds, checks [`PRESENT`]
/// against it). `narrowed`: the settings of a narrowed reading are in
/// force ([`READING_NARROWED`]), and the reading sends none of its own, so
/// that what follows in the transaction runs as it would without it.
async fn read_all(
    conn: &mut PgConnection,
    env: &str,
    ledger_schema: &str,
    narrowed: bool,
) -> Result<Tracked, DbError> {
    let check = check_increments();
    let r = parse(
        env,
        rows(
            conn,
            env,
            full_query(check).to_owned(),
            ledger_schema,
            None,
            narrowed,
        )
        .await?,
    )?;
    let tracked = Tracked::new(ledger_schema, r.lines, r.snapshot, r.threshold, r.settings);
    if check {
        tracked.check_present(env, &r.present)?;
    }
    Ok(tracked)
}

/// Brings `tracked` up to date, reading only what changed since it was
/// taken; `None` when that cannot be done exactly (a schema created,
/// renamed or dropped, a system object changed, other settings, an object
/// that appeared without a catalog row of its own changing, a busy
/// server), and the whole catalog must be read.
async fn read_changes(
    conn: &mut PgConnection,
    env: &str,
    mut tracked: Tracked,
    only: Option<Written>,
) -> Result<Option<Tracked>, DbError> {
    let schema = tracked.ledger_schema.clone();
    let mut r = parse(
        env,
        rows(
            conn,
            env,
            changes_query(only),
            &schema,
            Some(&tracked),
            only.is_some(),
        )
        .await?,
    )?;
    if r.not_alone {
        r = parse(
            env,
            rows(
                conn,
                env,
                changes_query(None),
                &schema,
                Some(&tracked),
                only.is_some(),
            )
            .await?,
        )?;
    }
    if r.too_busy || r.settings != tracked.settings {
        return Ok(None);
    }
    // Objects of the system (oids below FirstNormalObjectId) record no
    // dependencies on them, and a schema names everything in it.
    if r.targets
        .iter()
        .any(|&(cls, obj)| cls == 2615 || obj < 16384)
    {
        return Ok(None);
    }
    for owner in &r.targets {
        tracked.remove(owner);
    }
    for (owner, lines) in r.lines {
        tracked.insert(owner, lines);
    }
    for (cls, now) in &r.present {
        let gone: Vec<Owner> = tracked
            .entries
            .keys()
            .filter(|&&(c, o)| c == *cls && !now.contains(&o))
            .copied()
            .collect();
        for owner in &gone {
            tracked.remove(owner);
        }
        let known = tracked.entries.keys().filter(|&&(c, _)| c == *cls).count();
        if known != now.len() {
            // Something exists that was neither read nor known.
            return Ok(None);
        }
    }
    tracked.snapshot = r.snapshot;
    tracked.threshold = r.threshold;
    Ok(Some(tracked))
}

/// The schema fingerprint, read incrementally from `tracked` when it is
/// there (see the module comment) and leaving there what was read.
///
/// `only`: the caller's proof that no transaction but the current one, and
/// ones that wrote nothing in the catalogs, got an id since `tracked` was
/// read, and what the current one wrote ([`Writes::since`]). The reading
/// then scans only the catalogs it wrote (if the reading's own snapshot
/// confirms no other transaction got an id), and none when it wrote
/// nothing the fingerprint is made of and printed definitions the same
/// way (`settings`, the value of [`SETTINGS`] now).
pub async fn tracked_fingerprint(
    conn: &mut PgConnection,
    env: &str,
    ledger_schema: &str,
    tracked: &mut Option<Tracked>,
    only: Option<(Written, &str)>,
) -> Result<Sha256Digest, DbError> {
    let known = tracked.take().filter(|t| t.ledger_schema == ledger_schema);
    if let (Some(t), Some((written, settings))) = (&known, only)
        && written.nothing()
        && t.settings == settings
    {
        trace(
            env,
            "schema fingerprint read: unchanged: nothing written in the catalogs",
        );
        let mut now = if check_increments() {
            let all = read_all(conn, env, ledger_schema, only.is_some()).await?;
            if compare(env, t, &all).is_err() {
                // Another session's transaction may have finished since the
                // caller's proof; then the whole reading is simply newer.
                let alone: Option<bool> =
                    sqlx::query_scalar(AssertSqlSafe(format!("SELECT {ONLY_OURS}")))
                        .fetch_one(&mut *conn)
                        .await
                        .map_err(|e| DbError::query(env, e))?;
                if alone == Some(true) {
                    compare(env, t, &all)?;
                }
                all
            } else {
                known.expect("checked above")
            }
        } else {
            known.expect("checked above")
        };
        let fingerprint = now.fingerprint();
        *tracked = Some(now);
        return Ok(fingerprint);
    }
    let mut now = match known {
        Some(t) => match read_changes(conn, env, t, only.map(|(w, _)| w)).await? {
            Some(t) => {
                trace(
                    env,
                    &match only {
                        Some((w, _)) => format!(
                            "schema fingerprint read: changes, in the {} catalogs this transaction wrote ({} through its locks)",
                            w.fresh.count_ones(),
                            w.locked.count_ones()
                        ),
                        None => "schema fingerprint read: changes".to_owned(),
                    },
                );
                if check_increments() {
                    let all = read_all(conn, env, ledger_schema, only.is_some()).await?;
                    // A transaction that finished between the two readings
                    // (their snapshots differ) makes the whole one newer,
                    // not the incremental one wrong.
                    if all.snapshot != t.snapshot && compare(env, &t, &all).is_err() {
                        all
                    } else {
                        compare(env, &t, &all)?;
                        t
                    }
                } else {
                    t
                }
            }
            None => {
                trace(
                    env,
                    "schema fingerprint read: whole (changes could not be read exactly)",
                );
                read_all(conn, env, ledger_schema, only.is_some()).await?
            }
        },
        None => {
            trace(env, "schema fingerprint read: whole");
            read_all(conn, env, ledger_schema, only.is_some()).await?
        }
    };
    let fingerprint = now.fingerprint();
    *tracked = Some(now);
    Ok(fingerprint)
}

/// With `PROMOTER_TRACE_FINGERPRINT=1`, says on stderr how a run read
/// the catalog and checked the ledger schema (the tests check which way
/// was taken; a benchmark can too).
pub(crate) fn trace(env: &str, how: &str) {
    if std::env::var_os("PROMOTER_TRACE_FINGERPRINT").is_some_and(|v| v == "1") {
        eprintln!("promoter: {env}: {how}");
    }
}

/// Whether every incremental read is checked against a whole one: in debug
/// builds (the test suite), and with `PROMOTER_CHECK_FINGERPRINT=1`.
pub(crate) fn check_increments() -> bool {
    cfg!(debug_assertions)
        || std::env::var_os("PROMOTER_CHECK_FINGERPRINT").is_some_and(|v| v == "1")
}

fn compare(env: &str, incremental: &Tracked, all: &Tracked) -> Result<(), DbError> {
    let (a, b) = (incremental.sorted(), all.sorted());
    if a == b {
        return Ok(());
    }
    let (sa, sb): (BTreeSet<&str>, BTreeSet<&str>) =
        (a.into_iter().collect(), b.into_iter().collect());
    let only = |x: &BTreeSet<&str>, y: &BTreeSet<&str>| {
        x.difference(y)
            .take(5)
            .copied()
            .collect::<Vec<_>>()
            .join(" | ")
    };
    Err(DbError::query(
        env,
        format!(
            "internal error: the schema read incrementally differs from the whole catalog; only incremental: {}; only whole: {}",
            only(&sa, &sb),
            only(&sb, &sa)
        ),
    ))
}

/// The normalized catalog of the current database: one entry per object,
/// sorted byte-wise (in Rust, so that databases with different collations
/// still agree). Entries may span lines (routine and view definitions).
pub async fn catalog(
    conn: &mut PgConnection,
    env: &str,
    ledger_schema: &str,
) -> Result<Vec<String>, DbError> {
    let tracked = read_all(conn, env, ledger_schema, false).await?;
    Ok(tracked.sorted().into_iter().map(str::to_owned).collect())
}

/// The schema fingerprint: sha256 of the [`catalog`] entries joined by line feeds.
pub async fn fingerprint(
    conn: &mut PgConnection,
    env: &str,
    ledger_schema: &str,
) -> Result<Sha256Digest, DbError> {
    Ok(read_all(conn, env, ledger_schema, false)
        .await?
        .fingerprint())
}

/// The fingerprint of catalog entries.
pub fn of_catalog(entries: &[String]) -> Sha256Digest {
    of_lines(entries.iter().map(String::as_str))
}

/// sha256 of `lines` joined by line feeds, without joining them.
fn of_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> Sha256Digest {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for (i, line) in lines.into_iter().enumerate() {
        if i > 0 {
            hasher.update(b"\n");
        }
        hasher.update(line.as_bytes());
    }
    Sha256Digest(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text a fingerprint hashes is kept between fingerprints and
    /// merged with what changed: whatever changes, at either end, in the
    /// middle, duplicated, with line feeds inside a line or a line printed
    /// again unchanged, it hashes as the lines walked afresh do.
    #[test]
    fn the_joined_text_merged_with_changes_hashes_as_the_lines_do() {
        let lines = |v: &[&str]| v.iter().map(|l| (*l).to_owned()).collect::<Vec<_>>();
        let steps: [(Owner, Option<&[&str]>); 12] = [
            ((1, 1), Some(&["m", "a"])),
            ((1, 2), Some(&["z", "0"])),
            ((1, 3), Some(&["routine f\nbegin\nend", "view v\nselect 1"])),
            ((1, 1), Some(&["m", "a"])),
            ((1, 4), Some(&["m", "m", ""])),
            ((1, 2), None),
            ((1, 5), Some(&["routine f\nbegin\nend"])),
            ((1, 3), Some(&["view v\nselect 2"])),
            ((1, 4), Some(&["m"])),
            ((1, 6), Some(&["0", "zz", "a\n"])),
            ((1, 1), None),
            ((1, 5), None),
        ];
        let mut t = Tracked::new(
            "promoter",
            HashMap::new(),
            String::new(),
            String::new(),
            String::new(),
        );
        t.fingerprint();
        for (step, (owner, now)) in steps.iter().enumerate() {
            match now {
                Some(l) => t.insert(*owner, lines(l)),
                None => t.remove(owner),
            }
            // The merge itself, not the walk it falls back on.
            let merged = t.joined.as_ref().unwrap().merged(&t.pending);
            let merged = merged.unwrap_or_else(|| panic!("no merge after step {step}"));
            assert_eq!(merged.text, Joined::of(&t.lines).text, "after step {step}");
            let walked = of_lines(t.sorted());
            assert_eq!(t.fingerprint(), walked, "after step {step}");
            let joined = t.joined.as_ref().unwrap();
            assert_eq!(joined.text, Joined::of(&t.lines).text, "after step {step}");
            assert_eq!(
                joined.starts,
                Joined::of(&t.lines).starts,
                "after step {step}"
            );
            assert!(t.pending.is_empty());
        }
        // A line to take out that the text lacks: no merge.
        let joined = Joined::of(&BTreeMap::from([("a".to_owned(), 1)]));
        assert!(
            joined
                .merged(&BTreeMap::from([("b".to_owned(), -1)]))
                .is_none()
        );
        assert!(
            joined
                .merged(&BTreeMap::from([("a".to_owned(), -2)]))
                .is_none()
        );
    }

    #[test]
    fn kept_lines_stay_sorted_and_counted_as_entries_come_and_go() {
        let lines = |v: &[&str]| v.iter().map(|l| (*l).to_owned()).collect::<Vec<_>>();
        let naive = |t: &Tracked| {
            let mut all: Vec<String> = t.entries.values().flatten().cloned().collect();
            all.sort();
            all
        };
        let mut t = Tracked::new(
            "promoter",
            HashMap::from([
                (
                    (1259, 1),
                    lines(&["relation public.b r", "column public.b.x int"]),
                ),
                // The same line from two owners counts twice.
                (
                    (1259, 2),
                    lines(&["relation public.b r", "relation public.a r"]),
                ),
            ]),
            String::new(),
            String::new(),
            String::new(),
        );
        assert_eq!(t.sorted(), naive(&t));
        for step in 0..4 {
            match step {
                0 => t.remove(&(1259, 1)),
                1 => t.insert((1259, 2), lines(&["relation public.c r"])),
                2 => t.insert((1255, 9), lines(&["routine f", "routine f"])),
                _ => t.remove(&(1255, 7)),
            }
            assert_eq!(t.sorted(), naive(&t), "after step {step}");
            assert_eq!(
                t.fingerprint(),
                of_lines(naive(&t).iter().map(String::as_str)),
                "after step {step}"
            );
        }
        t.remove(&(1259, 2));
        t.remove(&(1255, 9));
        assert!(t.lines.is_empty());
    }

    #[test]
    fn lines_hash_as_if_joined_by_line_feeds() {
        for lines in [vec![], vec!["a"], vec!["a", "b\nc", ""]] {
            let owned: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
            assert_eq!(
                of_catalog(&owned),
                Sha256Digest::of(lines.join("\n").as_bytes())
            );
        }
    }

    #[test]
    fn every_branch_is_filtered_by_its_owner() {
        let all = filtered(|_, _| "TRUE".to_owned());
        assert!(!all.contains('{'), "{all}");
        assert_eq!(
            all.matches("AND TRUE").count() + all.matches("WHERE TRUE").count(),
            9
        );
        let some = changes_query(None);
        for class in ["1259", "2606", "1255", "2620", "1247", "3079"] {
            assert!(
                some.contains(&format!("targets WHERE cls = {class})")),
                "{class}"
            );
        }
    }

    #[test]
    fn a_narrowed_reading_has_only_the_branches_its_changeset_needs() {
        let all = changes_query(None);
        // A table, an index and two rows: classes, columns, a default, a
        // constraint, an index (looked up through locks), types (only
        // inserted), dependencies; nothing deleted.
        let bit = |name: &str| 1u32 << SCANNED.iter().position(|s| s.3 == name).unwrap();
        let relations = [
            "pg_class",
            "pg_attribute",
            "pg_attrdef",
            "pg_constraint",
            "pg_index",
        ];
        let mut w = Written {
            fresh: 0,
            locked: 0,
            present: 0,
        };
        for name in relations {
            w.fresh |= bit(name);
            w.locked |= bit(name);
        }
        let narrow = changes_query(Some(w));
        assert_eq!(all.matches(" WHERE xmin = ANY(").count(), 18);
        assert_eq!(narrow.matches(" WHERE xmin = ANY(").count(), 0);
        assert!(!narrow.contains("FROM pg_proc WHERE") && all.contains("FROM pg_proc WHERE xmin"));
        assert!(!narrow.contains("ARRAY(SELECT") && all.contains("ARRAY(SELECT"));
        assert!(narrow.contains("FROM locked l") && !all.contains("FROM locked l"));
        assert!(narrow.contains("SELECT 5,") && !all.contains("SELECT 5,"));
        // Nothing to look at still makes a query.
        let none = changes_query(Some(Written {
            fresh: 0,
            locked: 0,
            present: 0,
        }));
        assert!(none.contains("WHERE false"), "{none}");
    }
}
