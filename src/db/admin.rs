//! Whole-database work for `promoter clone`: the PostgreSQL client tools
//! (`pg_dump`, `pg_restore`), found and checked against the servers'
//! versions and run with the password in their environment; and the
//! database-level statements (create, rename, drop, sessions, the
//! properties a database carries outside its dump).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Row};

use super::DbError;
use crate::masking;

/// A PostgreSQL client tool that failed, or could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error(
        "no {tool} of PostgreSQL {need} or newer found (looked in $PROMOTER_PG_BINDIR, PATH and /usr/lib/postgresql/*/bin{found})"
    )]
    NotFound {
        tool: &'static str,
        need: u32,
        found: String,
    },
    #[error("{tool} failed ({status}):\n{stderr}")]
    Failed {
        tool: &'static str,
        status: String,
        stderr: String,
    },
    #[error("{tool}: {message}")]
    Io { tool: &'static str, message: String },
}

/// The client tools of one PostgreSQL installation.
#[derive(Debug, Clone)]
pub struct Tools {
    pub pg_dump: PathBuf,
    pub pg_restore: PathBuf,
    /// `pg_dump --version`'s line, e.g. `pg_dump (PostgreSQL) 15.18`.
    pub version: String,
    pub major: u32,
}

/// The major version in a `--version` line (`pg_dump (PostgreSQL) 15.18 (Debian …)`).
fn major_of(line: &str) -> Option<u32> {
    let number = line
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?;
    let digits: String = number.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn version_of(pg_dump: &Path) -> Option<String> {
    let out = std::process::Command::new(pg_dump)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Finds `pg_dump` and `pg_restore` of major version `need` or newer: in
/// `$PROMOTER_PG_BINDIR`, then on `PATH`, then Debian's
/// `/usr/lib/postgresql/*/bin`, newest first. A dump must be made by a
/// `pg_dump` at least as new as the server it reads, and restored by the
/// `pg_restore` of the same installation.
pub fn find_tools(need: u32) -> Result<Tools, ToolError> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os("PROMOTER_PG_BINDIR").filter(|d| !d.is_empty()) {
        dirs.push(PathBuf::from(d));
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            Some((major, e.path().join("bin")))
        })
        .collect();
    debian.sort_by_key(|d| std::cmp::Reverse(d.0));
    dirs.extend(debian.into_iter().map(|(_, d)| d));
    let mut found = Vec::new();
    for dir in dirs {
        let (pg_dump, pg_restore) = (dir.join("pg_dump"), dir.join("pg_restore"));
        if !pg_dump.is_file() || !pg_restore.is_file() {
            continue;
        }
        let Some(version) = version_of(&pg_dump) else {
            continue;
        };
        let Some(major) = major_of(&version) else {
            continue;
        };
        if major >= need {
            return Ok(Tools {
                pg_dump,
                pg_restore,
                version,
                major,
            });
        }
        found.push(format!("{} is {major}", pg_dump.display()));
    }
    Err(ToolError::NotFound {
        tool: "pg_dump",
        need,
        found: if found.is_empty() {
            String::new()
        } else {
            format!("; found: {}", found.join(", "))
        },
    })
}

/// A table whose data a client tool started to dump or restore, from its
/// `--verbose` line (`pg_dump: dumping contents of table "public.a"`,
/// `pg_restore: processing data for table "public.a"`).
pub fn table_of_verbose_line(line: &str) -> Option<&str> {
    let rest = line
        .strip_prefix("pg_dump: dumping contents of table ")
        .or_else(|| line.strip_prefix("pg_restore: processing data for table "))?;
    Some(rest.trim_matches('"'))
}

/// Whether a `--verbose` line is only a report of progress (kept out of
/// the error text, which is the tool's errors and what follows them).
fn chatter(tool: &str, line: &str) -> bool {
    line.strip_prefix(tool)
        .and_then(|r| r.strip_prefix(": "))
        .is_some_and(|r| {
            !["error", "warning", "detail", "hint", "fatal"]
                .iter()
                .any(|w| r.to_ascii_lowercase().starts_with(w))
        })
}

/// Runs a client tool to its end, with `password` in `PGPASSWORD`, handing
/// each line of its standard error to `on_line` as it comes (for progress).
/// The lines that are not progress chatter are kept (the last 8 KiB) and are
/// the error's text when it fails. The process is killed if the future is
/// dropped (an interrupt).
pub async fn run_tool(
    tool: &'static str,
    program: &Path,
    args: &[String],
    password: Option<&str>,
    on_line: &mut dyn FnMut(&str),
) -> Result<(), ToolError> {
    use tokio::io::AsyncBufReadExt;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .env_remove("PGPASSWORD");
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    let io = |e: std::io::Error| ToolError::Io {
        tool,
        message: e.to_string(),
    };
    let mut child = cmd.spawn().map_err(|e| ToolError::Io {
        tool,
        message: format!("{}: {e}", program.display()),
    })?;
    let stderr = child.stderr.take().expect("stderr is piped");
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let mut kept: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    let mut kept_bytes = 0;
    let mut cut = false;
    while let Some(line) = lines.next_line().await.map_err(io)? {
        on_line(&line);
        if chatter(tool, &line) {
            continue;
        }
        kept_bytes += line.len() + 1;
        kept.push_back(line);
        while kept_bytes > 8192 && kept.len() > 1 {
            kept_bytes -= kept.pop_front().map_or(0, |l| l.len() + 1);
            cut = true;
        }
    }
    let status = child.wait().await.map_err(io)?;
    if status.success() {
        return Ok(());
    }
    let text: Vec<String> = kept.into_iter().collect();
    Err(ToolError::Failed {
        tool,
        status: status.to_string(),
        stderr: format!("{}{}", if cut { "…\n" } else { "" }, text.join("\n"))
            .trim_end()
            .to_owned(),
    })
}

/// A name as an SQL identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A value as an SQL string literal.
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// What tells two databases apart even across URLs that differ (a host
/// name and its address, a socket and TCP): the server instance's start
/// time, the database's OID and name. Readable by any role.
pub async fn instance(conn: &mut PgConnection, env: &str) -> Result<String, DbError> {
    sqlx::query_scalar(
        "SELECT pg_postmaster_start_time()::text || '/' || d.oid::text || '/' || d.datname::text \
           FROM pg_database d WHERE d.datname = current_database()",
    )
    .fetch_one(conn)
    .await
    .map_err(|e| DbError::query(env, e))
}

/// The server's major version.
pub async fn server_major(conn: &mut PgConnection, env: &str) -> Result<u32, DbError> {
    let num: String = sqlx::query_scalar("SELECT current_setting('server_version_num')")
        .fetch_one(conn)
        .await
        .map_err(|e| DbError::query(env, e))?;
    Ok(num.parse::<u32>().unwrap_or(0) / 10000)
}

/// What a database carries outside its own dump: encoding and locale
/// (which a copy must share), and its owner, grants and per-database
/// settings (which stay the replaced database's).
#[derive(Debug, Clone)]
pub struct DatabaseProps {
    pub name: String,
    pub encoding: String,
    pub collate: String,
    pub ctype: String,
    pub owner: String,
    /// `GRANT`/`REVOKE` statements restoring its access list; `None` is
    /// the default access.
    pub grants: Option<Vec<(String, String)>>,
    /// (role or `None` for everyone, `name=value`) from `ALTER DATABASE … SET`.
    pub settings: Vec<(Option<String>, String)>,
}

/// The properties of the current database.
pub async fn props(conn: &mut PgConnection, env: &str) -> Result<DatabaseProps, DbError> {
    let q = |e| DbError::query(env, e);
    let row = sqlx::query(
        "SELECT datname::text, pg_encoding_to_char(encoding)::text, datcollate::text, datctype::text, \
                pg_get_userbyid(datdba)::text, datacl IS NULL \
           FROM pg_database WHERE datname = current_database()",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(q)?;
    let default_acl: bool = row.try_get(5).map_err(q)?;
    let grants = if default_acl {
        None
    } else {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END, a.privilege_type \
               FROM pg_database d, aclexplode(d.datacl) a \
              WHERE d.datname = current_database() AND a.grantee <> d.datdba ORDER BY 1, 2",
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(q)?;
        Some(rows)
    };
    let settings: Vec<(Option<String>, String)> = sqlx::query_as(
        "SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole)::text END, c \
           FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase, unnest(s.setconfig) c \
          WHERE d.datname = current_database() ORDER BY 1 NULLS FIRST, 2",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(q)?;
    Ok(DatabaseProps {
        name: row.try_get(0).map_err(q)?,
        encoding: row.try_get(1).map_err(q)?,
        collate: row.try_get(2).map_err(q)?,
        ctype: row.try_get(3).map_err(q)?,
        owner: row.try_get(4).map_err(q)?,
        grants,
        settings,
    })
}

/// Creates an empty database `name` with the encoding and locale of `like`.
pub async fn create_like(
    conn: &mut PgConnection,
    env: &str,
    name: &str,
    like: &DatabaseProps,
) -> Result<(), DbError> {
    let sql = format!(
        "CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}",
        ident(name),
        literal(&like.encoding),
        literal(&like.collate),
        literal(&like.ctype)
    );
    execute(conn, env, sql, &format!("creating database {name}")).await
}

/// Gives database `name` the owner, access list and settings of `from`.
pub async fn adopt_props(
    conn: &mut PgConnection,
    env: &str,
    name: &str,
    from: &DatabaseProps,
) -> Result<(), DbError> {
    let db = ident(name);
    let mut sql = vec![format!(
        "ALTER DATABASE {db} OWNER TO {}",
        ident(&from.owner)
    )];
    if let Some(grants) = &from.grants {
        sql.push(format!("REVOKE ALL ON DATABASE {db} FROM PUBLIC"));
        for (grantee, privilege) in grants {
            let to = if grantee == "PUBLIC" {
                "PUBLIC".to_owned()
            } else {
                ident(grantee)
            };
            sql.push(format!("GRANT {privilege} ON DATABASE {db} TO {to}"));
        }
    }
    for (role, setting) in &from.settings {
        let Some((key, value)) = setting.split_once('=') else {
            continue;
        };
        let target = match role {
            Some(r) => format!("ROLE {} IN DATABASE {db}", ident(r)),
            None => format!("DATABASE {db}"),
        };
        sql.push(format!(
            "ALTER {target} SET {} TO {}",
            ident(key),
            literal(value)
        ));
    }
    for statement in sql {
        let what = statement.clone();
        execute(conn, env, statement, &what).await?;
    }
    Ok(())
}

/// Runs one statement; `what` says what it was for in the error.
async fn execute(
    conn: &mut PgConnection,
    env: &str,
    sql: String,
    what: &str,
) -> Result<(), DbError> {
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(|e| DbError::query(env, format!("{what}: {}", super::describe(&e))))
}

/// Whether database `name` exists.
pub async fn exists(conn: &mut PgConnection, env: &str, name: &str) -> Result<bool, DbError> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(conn)
        .await
        .map_err(|e| DbError::query(env, e))
}

/// Drops database `name` if it exists, ending its sessions.
pub async fn drop_database(conn: &mut PgConnection, env: &str, name: &str) -> Result<(), DbError> {
    let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(name));
    execute(conn, env, sql, &format!("dropping database {name}")).await
}

/// Allows or refuses new connections to database `name`.
pub async fn allow_connections(
    conn: &mut PgConnection,
    env: &str,
    name: &str,
    allow: bool,
) -> Result<(), DbError> {
    let sql = format!(
        "ALTER DATABASE {} WITH ALLOW_CONNECTIONS {allow}",
        ident(name)
    );
    execute(conn, env, sql, &format!("ALTER DATABASE {name}")).await
}

/// Ends every other session connected to database `name`; returns how many.
pub async fn terminate_sessions(
    conn: &mut PgConnection,
    env: &str,
    name: &str,
) -> Result<i64, DbError> {
    sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
          WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(name)
    .fetch_one(conn)
    .await
    .map_err(|e| {
        DbError::query(
            env,
            format!("ending the sessions of {name}: {}", super::describe(&e)),
        )
    })
}

/// Renames `current` to `aside` and `new` to `current` in one transaction:
/// either both renames happen or neither.
pub async fn swap(
    conn: &mut PgConnection,
    env: &str,
    current: &str,
    aside: &str,
    new: &str,
) -> Result<(), DbError> {
    let sql = format!(
        "BEGIN; ALTER DATABASE {} RENAME TO {}; ALTER DATABASE {} RENAME TO {}; COMMIT;",
        ident(current),
        ident(aside),
        ident(new),
        ident(current)
    );
    let result = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *conn).await;
    if let Err(e) = result {
        let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
        return Err(DbError::query(
            env,
            format!("swapping in the new {current}: {}", super::describe(&e)),
        ));
    }
    Ok(())
}

/// The tables whose rows a copy must carry (ordinary tables, partitions
/// included, outside system schemas and `skip_schema`), qualified and quoted.
pub async fn tables(
    conn: &mut PgConnection,
    env: &str,
    skip_schema: &str,
) -> Result<Vec<String>, DbError> {
    sqlx::query_scalar(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c \
           JOIN pg_namespace n ON n.oid = c.relnamespace \
          WHERE c.relkind = 'r' AND c.relpersistence <> 't' \
            AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', $1) \
            AND n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%' \
            AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
                            AND d.objid = c.oid AND d.deptype = 'e') \
          ORDER BY 1",
    )
    .bind(skip_schema)
    .fetch_all(conn)
    .await
    .map_err(|e| DbError::query(env, e))
}

/// The row count of each of `tables` (as [`tables`] names them).
pub async fn row_counts(
    conn: &mut PgConnection,
    env: &str,
    tables: &[String],
) -> Result<Vec<i64>, DbError> {
    let mut out = Vec::with_capacity(tables.len());
    for t in tables {
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM ONLY {t}")))
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| {
                DbError::query(
                    env,
                    format!("counting the rows of {t}: {}", super::describe(&e)),
                )
            })?;
        out.push(n);
    }
    Ok(out)
}

/// Bytes in the files under `dir` (a dump directory).
pub fn size_of(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => size_of(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The source's tables with their columns, and its foreign keys, as the
/// masking plan checks a spec against them.
pub async fn mask_catalog(
    conn: &mut PgConnection,
    env: &str,
    skip_schema: &str,
) -> Result<(Vec<masking::Table>, Vec<masking::ForeignKey>), DbError> {
    let q = |e| DbError::query(env, e);
    type ColumnRow = (
        String,
        String,
        String,
        String,
        String,
        String,
        Option<i32>,
        bool,
        bool,
    );
    let rows: Vec<ColumnRow> = sqlx::query_as(
        "SELECT n.nspname::text, c.relname::text, c.relkind::text, a.attname::text, \
                format_type(a.atttypid, a.atttypmod), t.typcategory::text, \
                CASE WHEN a.atttypid IN ('varchar'::regtype, 'bpchar'::regtype) AND a.atttypmod > 4 \
                     THEN a.atttypmod - 4 END, \
                a.attnotnull, a.attgenerated <> '' \
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
           JOIN pg_type t ON t.oid = a.atttypid \
          WHERE c.relkind IN ('r', 'p') \
            AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', $1) \
            AND n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%' \
          ORDER BY 1, 2, a.attnum",
    )
    .bind(skip_schema)
    .fetch_all(&mut *conn)
    .await
    .map_err(q)?;
    let mut tables: Vec<masking::Table> = Vec::new();
    for (schema, name, kind, column, type_name, category, max_chars, not_null, generated) in rows {
        if tables
            .last()
            .is_none_or(|t| t.schema != schema || t.name != name)
        {
            tables.push(masking::Table {
                schema: schema.clone(),
                name: name.clone(),
                kind: kind.chars().next().unwrap_or('r'),
                columns: Vec::new(),
            });
        }
        tables
            .last_mut()
            .expect("pushed")
            .columns
            .push(masking::Column {
                name: column,
                type_name,
                category: category.chars().next().unwrap_or(' '),
                max_chars: max_chars.and_then(|n| usize::try_from(n).ok()),
                not_null,
                generated,
            });
    }
    type FkRow = (
        String,
        String,
        String,
        Vec<String>,
        String,
        String,
        Vec<String>,
    );
    let fks: Vec<FkRow> = sqlx::query_as(
        "SELECT con.conname::text, fn.nspname::text, fc.relname::text, \
                (SELECT array_agg(a.attname::text ORDER BY k.i) FROM unnest(con.conkey) WITH ORDINALITY k(n, i) \
                   JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n), \
                rn.nspname::text, rc.relname::text, \
                (SELECT array_agg(a.attname::text ORDER BY k.i) FROM unnest(con.confkey) WITH ORDINALITY k(n, i) \
                   JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n) \
           FROM pg_constraint con \
           JOIN pg_class fc ON fc.oid = con.conrelid JOIN pg_namespace fn ON fn.oid = fc.relnamespace \
           JOIN pg_class rc ON rc.oid = con.confrelid JOIN pg_namespace rn ON rn.oid = rc.relnamespace \
          WHERE con.contype = 'f' ORDER BY 2, 3, 1",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(q)?;
    let fks = fks
        .into_iter()
        .map(
            |(name, s, t, columns, rs, rt, ref_columns)| masking::ForeignKey {
                name,
                table: (s, t),
                columns,
                ref_table: (rs, rt),
                ref_columns,
            },
        )
        .collect();
    Ok((tables, fks))
}

/// Why streaming a masked table stopped.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("{env}: {table}: {message}")]
    Sql {
        env: String,
        table: String,
        message: String,
    },
    #[error("{0}")]
    Row(String),
    #[error("interrupted")]
    Interrupted,
}

/// How many bytes of masked rows are sent to the copy at once.
const SEND_CHUNK: usize = 256 * 1024;

/// Streams one table from `source` (inside its snapshot) through the
/// masker into `target`: `COPY (SELECT …) TO STDOUT` → transform →
/// `COPY … FROM STDIN`, a bounded buffer at a time. `sql:` transforms are
/// the SELECT's own expressions. Returns the rows copied.
pub async fn stream_masked(
    source: &mut PgConnection,
    from: &str,
    target: &mut PgConnection,
    to: &str,
    table: &masking::MaskedTable,
    masker: &masking::Masker,
    stop: &dyn Fn() -> bool,
) -> Result<u64, StreamError> {
    let qualified = format!("{}.{}", ident(&table.schema), ident(&table.name));
    let select: Vec<String> = table
        .columns
        .iter()
        .map(|(c, t)| match t {
            masking::Transform::Sql(expr) => format!("({expr})::{}", c.type_name),
            _ => ident(&c.name),
        })
        .collect();
    let names: Vec<String> = table.columns.iter().map(|(c, _)| ident(&c.name)).collect();
    let shown = table.qualified();
    let sql_err = |env: &str, e: &sqlx::Error| StreamError::Sql {
        env: env.to_owned(),
        table: shown.clone(),
        message: super::describe(e),
    };
    let mut copy_in = target
        .copy_in_raw(&format!(
            "COPY {qualified} ({}) FROM STDIN",
            names.join(", ")
        ))
        .await
        .map_err(|e| sql_err(to, &e))?;
    let mut rows = match source
        .copy_out_raw(&format!(
            "COPY (SELECT {} FROM ONLY {qualified}) TO STDOUT",
            select.join(", ")
        ))
        .await
    {
        Ok(r) => r,
        Err(e) => {
            let _ = copy_in.abort("the source could not be read").await;
            return Err(sql_err(from, &e));
        }
    };
    let mut pending: Vec<u8> = Vec::new();
    let mut out: Vec<u8> = Vec::with_capacity(SEND_CHUNK + 4096);
    let mut count = 0u64;
    let mut failure: Option<StreamError> = None;
    while let Some(chunk) = std::future::poll_fn(|cx| rows.as_mut().poll_next(cx)).await {
        if failure.is_some() {
            continue; // read to the end: the source connection must leave COPY
        }
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                failure = Some(sql_err(from, &e));
                continue;
            }
        };
        pending.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(end) = pending[start..].iter().position(|b| *b == b'\n') {
            if let Err(why) =
                masking::mask_row(masker, table, &pending[start..start + end], &mut out)
            {
                failure = Some(StreamError::Row(why));
                break;
            }
            count += 1;
            start += end + 1;
        }
        pending.drain(..start);
        if failure.is_none() && stop() {
            failure = Some(StreamError::Interrupted);
        }
        if failure.is_none()
            && out.len() >= SEND_CHUNK
            && let Err(e) = copy_in.send(std::mem::take(&mut out)).await
        {
            failure = Some(sql_err(to, &e));
        }
    }
    drop(rows);
    if let Some(f) = failure {
        let _ = copy_in.abort("promoter stopped the masked copy").await;
        return Err(f);
    }
    if !pending.is_empty() {
        let _ = copy_in.abort("the source's COPY ended inside a row").await;
        return Err(StreamError::Row(format!(
            "{shown}: the source's COPY ended inside a row"
        )));
    }
    if !out.is_empty() {
        copy_in.send(out).await.map_err(|e| sql_err(to, &e))?;
    }
    copy_in.finish().await.map_err(|e| sql_err(to, &e))?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn major_versions_are_read_from_every_form_of_version_line() {
        for (line, want) in [
            (
                "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)",
                Some(15),
            ),
            ("pg_dump (PostgreSQL) 17.2", Some(17)),
            ("pg_dump (PostgreSQL) 9.6.24", Some(9)),
            ("pg_dump (PostgreSQL) 18beta1", Some(18)),
            ("something else", None),
        ] {
            assert_eq!(major_of(line), want, "{line}");
        }
    }

    #[test]
    fn verbose_lines_say_which_table_and_are_kept_out_of_errors() {
        assert_eq!(
            table_of_verbose_line("pg_dump: dumping contents of table \"public.a b\""),
            Some("public.a b")
        );
        assert_eq!(
            table_of_verbose_line("pg_restore: processing data for table \"app.t\""),
            Some("app.t")
        );
        assert_eq!(
            table_of_verbose_line("pg_restore: finished item 3 TABLE DATA a"),
            None
        );
        assert!(chatter(
            "pg_restore",
            "pg_restore: launching item 3342 TABLE DATA a"
        ));
        assert!(!chatter(
            "pg_restore",
            "pg_restore: error: could not execute query"
        ));
        assert!(!chatter("pg_restore", "Command was: CREATE TABLE a ();"));
        assert!(!chatter("pg_dump", "pg_dump: warning: errors ignored"));
    }

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(ident("qat"), "\"qat\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
    }
}
