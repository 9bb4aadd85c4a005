//! Runs a bundle's scripts the way `psql -X -v ON_ERROR_STOP=1 -f` would:
//! statement by statement as the splitter finds them, `COPY … FROM STDIN`
//! data through the COPY protocol, each script starting from the session's
//! default settings — except that, inside the changeset's transaction,
//! runs of constants-only INSERTs the server vouches for go in one message
//! (`batch`). The bytes executed are hashed as they stream and compared
//! with the manifest before the caller commits.

use std::fmt;
use std::io::{BufReader, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use sqlx::postgres::{PgConnection, PgDatabaseError, PgErrorPosition};
use sqlx::{AssertSqlSafe, Connection, Row};

use super::{DbError, batch, fingerprint, ledger};
use crate::changeset::{
    Bundle, BundleFile, HashingReader, Manifest, Sha256Digest, TransactionMode,
};
use crate::ledger::{Entry, Status};
use crate::sql::{Item, MetaAction, Splitter, Statement, Wrapper, accepted_meta};

/// Where and why a statement failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementError {
    /// `changesets/0001-x/001-y.sql`
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// First line of the failing statement.
    pub statement: String,
    pub sqlstate: Option<String>,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    pub context: Option<String>,
}

impl fmt::Display for StatementError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if let Some(code) = &self.sqlstate {
            write!(f, "[{code}] ")?;
        }
        write!(f, "{}", self.message)?;
        write!(f, "\n    statement: {}", self.statement)?;
        for (label, value) in [
            ("detail", &self.detail),
            ("hint", &self.hint),
            ("context", &self.context),
        ] {
            if let Some(v) = value {
                write!(f, "\n    {label}: {}", v.replace('\n', "\n      "))?;
            }
        }
        Ok(())
    }
}

/// Why applying a changeset failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{0}")]
    Statement(Box<StatementError>),
    #[error("{file}: {message}")]
    Script { file: String, message: String },
    #[error(
        "{file}: changed while it was being applied (its sha256 no longer matches SHA256SUMS); rolled back"
    )]
    Modified { file: String },
    /// The server left promoter's transaction before the changeset ended:
    /// something in it committed or rolled back (a statement the splitter
    /// and the server read differently). What ran after it is committed.
    #[error(
        "{}: the server left promoter's transaction in the middle of the changeset (statements after that point ran and committed on their own); the environment needs an operator",
        crate::ledger::TRANSACTION_BROKEN
    )]
    TransactionBroken,
    /// The changeset's own SQL changed the ledger schema or its rows.
    #[error(
        "{}: {why}; refused: a changeset's SQL must not touch the ledger",
        crate::ledger::LEDGER_TAMPERED
    )]
    LedgerTouched { why: String },
    /// Stopped by Ctrl-C or SIGTERM: the running statement was cancelled, or
    /// the next one was not started.
    #[error("interrupted (Ctrl-C or SIGTERM){}", at.as_ref().map(|a| format!(" at {a}")).unwrap_or_default())]
    Interrupted { at: Option<String> },
    #[error("{0}")]
    Db(#[from] DbError),
}

impl ExecError {
    /// Where the failing statement is, when a statement failed.
    pub fn statement(&self) -> Option<&StatementError> {
        match self {
            Self::Statement(s) => Some(s),
            _ => None,
        }
    }
}

/// One script ready to run: its name, its bytes, the digest the manifest expects.
pub struct ScriptSource {
    pub file: String,
    pub reader: Box<dyn Read + Send>,
    pub expected: Sha256Digest,
    /// Its size, when known without reading it (for progress).
    pub size: Option<u64>,
}

/// How far the running changeset has got, for a progress display: the
/// script being run (its position, name and size), the bytes of it read and
/// the statements sent. Written by the executor as it goes; read by
/// whatever draws progress, from another thread.
#[derive(Debug, Default)]
pub struct Meter {
    script: std::sync::Mutex<(usize, usize, String)>,
    size: AtomicU64,
    read: AtomicU64,
    pub(super) statements: AtomicU64,
}

/// What a [`Meter`] shows at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterReading {
    /// 1-based position of the script, and how many the changeset has.
    pub index: usize,
    pub scripts: usize,
    pub file: String,
    /// Its size (0 when unknown).
    pub size: u64,
    pub read: u64,
    /// Statements of the changeset sent so far (all its scripts).
    pub statements: u64,
}

impl Meter {
    fn start(&self, index: usize, scripts: usize, file: &str, size: Option<u64>) {
        if let Ok(mut s) = self.script.lock() {
            *s = (index, scripts, file.to_owned());
        }
        self.size.store(size.unwrap_or(0), Ordering::Relaxed);
        self.read.store(0, Ordering::Relaxed);
        if index == 1 {
            self.statements.store(0, Ordering::Relaxed);
        }
    }

    /// Forgets the last script (a new changeset starts).
    pub fn clear(&self) {
        if let Ok(mut s) = self.script.lock() {
            *s = (0, 0, String::new());
        }
    }

    pub fn reading(&self) -> MeterReading {
        let (index, scripts, file) = self.script.lock().map(|s| s.clone()).unwrap_or_default();
        MeterReading {
            index,
            scripts,
            file,
            size: self.size.load(Ordering::Relaxed),
            read: self.read.load(Ordering::Relaxed),
            statements: self.statements.load(Ordering::Relaxed),
        }
    }
}

/// Who watches a run: the interrupt flag it stops on, and the meter it
/// reports to, if any.
#[derive(Clone, Copy)]
pub struct Watch<'a> {
    pub stop: &'a AtomicBool,
    pub meter: Option<&'a Arc<Meter>>,
}

/// A reader that adds what it reads to a [`Meter`].
struct Metered<R> {
    inner: R,
    meter: Option<Arc<Meter>>,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(m) = &self.meter {
            m.read.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(n)
    }
}

/// Opens every script of `bundle` for streaming, with the digests from `manifest`.
pub fn stream_scripts(
    bundle: &Bundle,
    manifest: &Manifest,
) -> Result<Vec<ScriptSource>, ExecError> {
    bundle
        .scripts()
        .map(|s| source(bundle, manifest, s, None))
        .collect()
}

/// Reads and verifies every script of `bundle` before anything runs (for
/// changesets that cannot be rolled back).
pub fn preload_scripts(
    bundle: &Bundle,
    manifest: &Manifest,
) -> Result<Vec<ScriptSource>, ExecError> {
    bundle
        .scripts()
        .map(|s| {
            let file = format!("{}/{}", bundle.location, s.name);
            let bytes = s.read().map_err(|e| ExecError::Script {
                file: file.clone(),
                message: e.to_string(),
            })?;
            if Some(Sha256Digest::of(&bytes)) != manifest.get(&s.name) {
                return Err(ExecError::Modified { file });
            }
            source(bundle, manifest, s, Some(bytes))
        })
        .collect()
}

fn source(
    bundle: &Bundle,
    manifest: &Manifest,
    script: &BundleFile,
    bytes: Option<Vec<u8>>,
) -> Result<ScriptSource, ExecError> {
    let file = format!("{}/{}", bundle.location, script.name);
    let expected = manifest
        .get(&script.name)
        .ok_or_else(|| ExecError::Modified { file: file.clone() })?;
    let size = match &bytes {
        Some(b) => Some(b.len() as u64),
        None => script.size(),
    };
    let reader: Box<dyn Read + Send> = match bytes {
        Some(b) => Box::new(std::io::Cursor::new(b)),
        None => script.open().map_err(|e| ExecError::Script {
            file: file.clone(),
            message: e.to_string(),
        })?,
    };
    Ok(ScriptSource {
        file,
        reader,
        expected,
        size,
    })
}

/// Size of the COPY data chunks sent to the server: large enough to keep the
/// socket busy, small enough that memory stays flat whatever the data size.
const COPY_CHUNK: usize = 256 * 1024;

/// Where a run's own output goes: what `\echo` prints and the rows of
/// `COPY … TO STDOUT` (never stdout, which belongs to `--json`).
pub type RunOutput = Box<dyn Write + Send>;

/// Runs `scripts` on `conn` in order, counting executed statements in
/// `done`. Inside a transaction when the caller opened one; in autocommit
/// otherwise. Each script starts from the session defaults. What psql would
/// print (`\echo`, `COPY … TO STDOUT`) goes to `out`.
///
/// With `in_transaction`, a script's own wrapper — a plain `BEGIN` as its first
/// statement and `COMMIT` as its last, which the checks have already verified —
/// is skipped: under `psql -1` it changes nothing, and run here it would end
/// promoter's transaction early.
pub async fn run_scripts(
    conn: &mut PgConnection,
    scripts: Vec<ScriptSource>,
    in_transaction: bool,
    done: &mut i64,
    watch: Watch<'_>,
    progress: Option<&Progress<'_>>,
    out: &mut (dyn Write + Send),
) -> Result<(), ExecError> {
    // Every script ends with `reset_session`, which vets promoter's
    // prepared statements; a run that stops early forgets them all (the
    // session may be in a failed transaction, where nothing can be asked).
    let run = async {
        let Watch { stop, meter } = watch;
        let count = scripts.len();
        for (i, script) in scripts.into_iter().enumerate() {
            let file = script.file;
            if let Some(m) = meter {
                m.start(i + 1, count, &file, script.size);
            }
            let hashing = HashingReader::new(Metered {
                inner: script.reader,
                meter: meter.cloned(),
            });
            let mut splitter = Splitter::new(BufReader::with_capacity(64 * 1024, hashing));
            let mut index = 0usize;
            // Whether the script has opened a transaction block of its own
            // (only possible in a `transaction: none` changeset).
            let mut in_block = false;
            // Constants-only INSERTs held to be sent together (see `batch`).
            let mut batch = batch::Batch::default();
            // Items read while the server ran a batch, to take before the splitter's.
            let mut ahead = std::collections::VecDeque::new();
            'statements: loop {
                let batch::Read { item, target } = ahead
                    .pop_front()
                    .unwrap_or_else(|| batch::read(&mut splitter, in_transaction));
                let item = item.map_err(|e| ExecError::Script {
                    file: file.clone(),
                    message: e.to_string(),
                })?;
                let item = match (item, target) {
                    (Some(Item::Statement(stmt)), Some(target)) => {
                        index += 1;
                        if batch.push(stmt, target) {
                            // While the server runs this batch, read the next.
                            let mut sending =
                                std::pin::pin!(batch.send(conn, &file, stop, done, meter));
                            match poll_once(sending.as_mut()).await {
                                Some(sent) => sent?,
                                None => {
                                    batch::read_ahead(&mut splitter, &mut ahead);
                                    sending.await?;
                                }
                            }
                        }
                        continue;
                    }
                    (item, _) => item,
                };
                batch.send(conn, &file, stop, done, meter).await?;
                batch.forget_answers();
                match item {
                    None => break,
                    Some(Item::Meta(m)) => match accepted_meta(&m) {
                        Some(MetaAction::Ignore) => {}
                        Some(MetaAction::Print(text)) => {
                            write_output(out, &file, text.as_bytes())?;
                        }
                        None => {
                            return Err(ExecError::Script {
                                file: format!("{file}:{}", m.line),
                                message: format!(
                                    "psql meta-command \\{} is not supported in a changeset",
                                    m.name
                                ),
                            });
                        }
                    },
                    Some(Item::Statement(stmt)) => {
                        if !stmt.empty {
                            index += 1;
                        }
                        match (in_transaction, crate::sql::wrapper(&stmt)) {
                            (true, Some(Wrapper::Begin)) if index == 1 => continue,
                            (true, Some(Wrapper::Commit)) => {
                                // Only the script's last statement may be its
                                // wrapper's COMMIT (empty statements after it do
                                // nothing, there or here).
                                loop {
                                    match splitter.next_item() {
                                        Ok(None) => break 'statements,
                                        Ok(Some(Item::Statement(s))) if s.empty => {}
                                        Ok(Some(Item::Meta(m))) if crate::sql::meta_is_harmless(&m) => {
                                        }
                                        _ => {
                                            return Err(ExecError::Script {
                                                file: format!("{file}:{}", stmt.line),
                                                message: "COMMIT before the end of the script would end promoter's transaction".into(),
                                            });
                                        }
                                    }
                                }
                            }
                            _ => {}
                        }
                        let at = || Some(format!("{file}:{}", stmt.line));
                        if stop.load(Ordering::SeqCst) {
                            return Err(ExecError::Interrupted { at: at() });
                        }
                        let ran = if stmt.is_copy_from_stdin() {
                            copy_in(conn, &file, &stmt, &mut splitter).await
                        } else if stmt.is_copy_to_stdout() {
                            copy_out(conn, &file, &stmt, out).await
                        } else {
                            send_alone(conn, &file, &stmt).await
                        };
                        match ran {
                            // A cancel that arrives as the statement ends lets it
                            // finish: it counts, and the run stops before the next.
                            Ok(()) => {
                                *done += 1;
                                if let Some(m) = meter {
                                    m.statements.store(*done as u64, Ordering::Relaxed);
                                }
                                in_block = block_after(&stmt, in_block);
                                // Inside the script's own transaction block nothing
                                // has committed yet, and a query of promoter's
                                // would be the block's first (taking its snapshot,
                                // refusing a later SET TRANSACTION): progress is
                                // checked and recorded once the block ends.
                                if let Some(p) = progress.filter(|_| !in_block) {
                                    // Outside a transaction a LISTEN takes effect at
                                    // once, and a notification would arrive in the
                                    // middle of promoter's next exchange with the
                                    // server: a changeset listens to nothing.
                                    sqlx::raw_sql("UNLISTEN *")
                                        .execute(&mut *conn)
                                        .await
                                        .map_err(|e| DbError::query(p.env, e))?;
                                    vet_statements(conn)
                                        .await
                                        .map_err(|e| DbError::query(p.env, e))?;
                                    let script = ScriptContext::set_aside(conn, p.env).await?;
                                    check_untouched(conn, p).await?;
                                    ledger::record_progress(conn, p.env, p.schema, p.seq, *done)
                                        .await?;
                                    script.restore(conn, p.env).await?;
                                }
                            }
                            Err(_) if stop.load(Ordering::SeqCst) => {
                                return Err(ExecError::Interrupted { at: at() });
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
            if in_block && !in_transaction {
                // psql ends its session at the end of the file, and the server
                // rolls the open block back; so does promoter.
                sqlx::raw_sql("ROLLBACK")
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| {
                        script_error(
                            &file,
                            "rolling back the transaction block the script left open",
                            &e,
                        )
                    })?;
                write_output(
                    out,
                    &file,
                    format!("promoter: {file} ended inside its own transaction block, which was rolled back (as psql's session end does)\n").as_bytes(),
                )?;
            }
            // Hash whatever the splitter did not need (nothing, normally) and compare.
            let mut hashing = splitter.into_inner().into_inner();
            std::io::copy(&mut hashing, &mut std::io::sink()).map_err(|e| ExecError::Script {
                file: file.clone(),
                message: e.to_string(),
            })?;
            if hashing.finish() != script.expected {
                return Err(ExecError::Modified { file });
            }
            if in_transaction && i + 1 == count {
                end_scripts(conn, &file).await?;
            } else {
                reset_session(conn).await.map_err(|e| reset_error(&file, &e))?;
            }
        }
        if in_transaction && count == 0 {
            end_scripts(conn, "(no script)").await?;
        }
        Ok(())
    }
    .await;
    if run.is_err() {
        forget_statements(conn).await;
    }
    run
}

/// Sends `stmt` as psql does: a simple query of its own.
pub(super) async fn send_alone(
    conn: &mut PgConnection,
    file: &str,
    stmt: &Statement,
) -> Result<(), ExecError> {
    sqlx::raw_sql(AssertSqlSafe(stmt.text.as_str()))
        .execute(&mut *conn)
        .await
        .map(|_| ())
        .map_err(|e| statement_error(file, stmt, &e, None))
}

/// Polls `f` once: its output if it is ready, `None` if it waits (having
/// done what it could, such as writing its query to the socket).
async fn poll_once<F: Future>(mut f: std::pin::Pin<&mut F>) -> Option<F::Output> {
    use std::task::Poll;
    std::future::poll_fn(|cx| match f.as_mut().poll(cx) {
        Poll::Ready(out) => Poll::Ready(Some(out)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// The text of [`STATEMENTS_QUERY`], for `concat!`.
macro_rules! statements_query {
    () => {
        "SELECT pg_catalog.count(*) FILTER (WHERE from_sql), pg_catalog.count(*) FILTER (WHERE NOT from_sql) FROM pg_catalog.pg_prepared_statements"
    };
}

/// What [`vet_statements`] asks: prepared statements made by SQL
/// (`PREPARE`, a script's) and by the protocol (promoter's own).
pub const STATEMENTS_QUERY: &str = statements_query!();

/// After SQL that is not promoter's ran on `conn`, and before any of
/// promoter's prepared statements runs again: a script may have deallocated
/// one and prepared its own under the same name, which would then answer
/// promoter's question (the ledger guard's, the fingerprint's) with whatever
/// it likes. Statements a script makes are `from_sql`; promoter's are
/// prepared through the protocol, which a script cannot speak. So: if any
/// statement was made by SQL, or any of promoter's is missing, every
/// statement goes and promoter prepares its own again. Asked in the simple
/// protocol, which no prepared statement can intercept.
async fn vet_statements(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    let rows = sqlx::raw_sql(STATEMENTS_QUERY)
        .fetch_all(&mut *conn)
        .await?;
    keep_only_ours(conn, rows.first()).await
}

/// The session's prepared statements, as [`STATEMENTS_QUERY`] counts them.
#[derive(Debug, Clone, Copy)]
struct Statements {
    /// Made by SQL (`PREPARE`): never promoter's.
    by_sql: i64,
    /// Made through the protocol: promoter's (SQL cannot make one).
    by_protocol: i64,
}

impl Statements {
    fn of(row: &sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row;
        Ok(Self {
            by_sql: row.try_get(0)?,
            by_protocol: row.try_get(1)?,
        })
    }

    /// Exactly the `cached` statements promoter keeps, and no other.
    fn all_ours(self, cached: usize) -> bool {
        self.by_sql == 0 && usize::try_from(self.by_protocol).ok() == Some(cached)
    }

    /// Some made by SQL, or some of promoter's `cached` gone: SQL's doing.
    /// (More of the protocol's than promoter keeps is not: a DEALLOCATE ALL
    /// refused in an aborted transaction leaves them after promoter forgot
    /// its own.)
    fn replaced(self, cached: usize) -> bool {
        self.by_sql > 0 || usize::try_from(self.by_protocol).is_ok_and(|n| n < cached)
    }
}

/// Given the answer to [`STATEMENTS_QUERY`], drops every prepared statement
/// unless all are promoter's own and none of those is missing.
async fn keep_only_ours(
    conn: &mut PgConnection,
    row: Option<&sqlx::postgres::PgRow>,
) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    let keep = match row {
        Some(row) => Statements::of(row)?.all_ours(conn.cached_statements_size()),
        None => false,
    };
    if !keep {
        sqlx::raw_sql(FORGET_STATEMENTS).execute(&mut *conn).await?;
        conn.clear_cached_statements().await?;
    }
    Ok(())
}

/// Whether the session's prepared statements are still promoter's (none
/// made by SQL, none of its own missing), asked in the simple protocol
/// ([`STATEMENTS_QUERY`]),
/// after promoter's own statements that touch the ledger's relations and
/// before the ledger guard asks its question. A trigger, rule, policy or
/// index expression the bundle put on a ledger table runs inside those
/// statements, after [`END_OF_SCRIPTS`] checked the statements, and could
/// replace the guard's own prepared statement with one that answers
/// "untouched". `Err`: what was found, which is tampering (the guard's
/// catalog check would find what carried the code, but only if it can be
/// trusted to ask).
async fn statements_still_ours(
    conn: &mut PgConnection,
    env: &str,
) -> Result<Result<(), String>, DbError> {
    use sqlx::Connection;
    let rows = sqlx::raw_sql(STATEMENTS_QUERY)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| DbError::query(env, e))?;
    let row = rows.first().ok_or_else(|| {
        DbError::query(
            env,
            "the prepared statements query returned no row".to_owned(),
        )
    })?;
    let now = Statements::of(row).map_err(|e| DbError::query(env, e))?;
    let cached = conn.cached_statements_size();
    if now.replaced(cached) {
        return Ok(Err(format!(
            "code ran inside promoter's own statements and replaced its prepared statements \
             ({} made by SQL; {} of promoter's {cached} left): something the changeset \
             put on the ledger's tables (a trigger, rule, policy or index)",
            now.by_sql, now.by_protocol
        )));
    }
    Ok(Ok(()))
}

/// An error of one of promoter's own statements after the scripts, once
/// the transaction is rolled back: prepared statements outlive a ROLLBACK,
/// so if the session's are no longer promoter's, code the bundle hung on
/// the ledger replaced them (and broke the statement, rather than answer
/// for it): that is tampering, and every prepared statement goes before
/// the failure is written. Any other error is returned as it is.
async fn own_error(
    conn: &mut PgConnection,
    env: &str,
    error: ExecError,
) -> Result<ExecError, DbError> {
    if !matches!(error, ExecError::Db(_)) {
        return Ok(error);
    }
    match statements_still_ours(conn, env).await? {
        Ok(()) => Ok(error),
        Err(why) => {
            forget_statements(conn).await;
            Ok(ExecError::LedgerTouched {
                why: format!("{why}; {error}"),
            })
        }
    }
}

/// What [`vet_statements`] sends when it finds a statement it did not make.
pub const FORGET_STATEMENTS: &str = "DEALLOCATE ALL";

/// Drops every prepared statement, promoter's own with the rest, when the
/// session cannot be asked which there are: promoter prepares its own again
/// under new names (a name a script took makes that fail, never answer).
async fn forget_statements(conn: &mut PgConnection) {
    use sqlx::Connection;
    let _ = sqlx::raw_sql(FORGET_STATEMENTS).execute(&mut *conn).await;
    // The client's cache goes first, whatever the server then says.
    let _ = conn.clear_cached_statements().await;
}

/// Whether the session is inside a transaction block of the script's own
/// after `stmt` ran, given whether it was before: BEGIN opens one; COMMIT,
/// END, ROLLBACK, ABORT and PREPARE TRANSACTION end it, unless `AND CHAIN`
/// starts the next at once.
fn block_after(stmt: &Statement, mut in_block: bool) -> bool {
    for words in stmt.parts() {
        let chain = words.windows(2).any(|w| w[0] == "AND" && w[1] == "CHAIN");
        match crate::sql::transaction_control(words).as_deref() {
            Some("BEGIN" | "START TRANSACTION") => in_block = true,
            Some("COMMIT" | "END" | "ROLLBACK") => in_block = chain,
            Some("PREPARE TRANSACTION") => in_block = false,
            _ => {}
        }
    }
    in_block
}

/// Where a non-transactional run records each committed statement.
#[derive(Debug, Clone)]
pub struct Progress<'a> {
    pub env: &'a str,
    pub schema: &'a str,
    /// The `running` row's `seq`.
    pub seq: i64,
    /// The ledger schema's catalog digest before the first statement.
    pub catalog: Sha256Digest,
    /// The ledger head after the `running` row: (rows, last seq, last entry hash).
    pub head: (i64, i64, Option<String>),
}

/// What a script may have set that promoter's own queries between two of
/// its statements must not run under: its role and session authorization
/// (which may not read the ledger) and its search path (where a function
/// or operator of its own could stand in for pg_catalog's in the checks).
/// Set aside before the checks, restored after them as the script left it.
struct ScriptContext {
    search_path: String,
    role: String,
    authorization: Option<String>,
}

impl ScriptContext {
    async fn set_aside(conn: &mut PgConnection, env: &str) -> Result<Self, DbError> {
        let (search_path, role, authorization): (String, String, String) = sqlx::query_as(
            "SELECT pg_catalog.current_setting('search_path'), pg_catalog.current_setting('role'), \
             pg_catalog.current_setting('session_authorization')",
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| DbError::query(env, e))?;
        // Extended-protocol queries: nothing here is a statement of the script.
        sqlx::query("SET SESSION AUTHORIZATION DEFAULT")
            .execute(&mut *conn)
            .await
            .map_err(|e| DbError::query(env, e))?;
        let (_, _, default): (String, String, String) = sqlx::query_as(
            "SELECT pg_catalog.set_config('role', 'none', false), \
             pg_catalog.set_config('search_path', 'pg_catalog', false), \
             pg_catalog.current_setting('session_authorization')",
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| DbError::query(env, e))?;
        Ok(Self {
            search_path,
            role,
            authorization: (authorization != default).then_some(authorization),
        })
    }

    async fn restore(self, conn: &mut PgConnection, env: &str) -> Result<(), DbError> {
        if let Some(user) = &self.authorization {
            sqlx::query("SELECT pg_catalog.set_config('session_authorization', $1, false)")
                .bind(user)
                .execute(&mut *conn)
                .await
                .map_err(|e| DbError::query(env, e))?;
        }
        sqlx::query(
            "SELECT pg_catalog.set_config('role', $1, false), pg_catalog.set_config('search_path', $2, false)",
        )
        .bind(&self.role)
        .bind(&self.search_path)
        .execute(&mut *conn)
        .await
        .map(|_| ())
        .map_err(|e| DbError::query(env, e))
    }
}

/// After each statement of a non-transactional changeset: the ledger
/// schema and head must be as before it (the statement has committed by
/// then; a violation stops the run and marks the environment tampered).
async fn check_untouched(conn: &mut PgConnection, p: &Progress<'_>) -> Result<(), ExecError> {
    if super::guard::catalog(conn, p.env, p.schema).await? != p.catalog {
        return Err(ExecError::LedgerTouched {
            why: format!("a statement changed the ledger schema {}", p.schema),
        });
    }
    if super::guard::head(conn, p.env, p.schema).await? != p.head {
        return Err(ExecError::LedgerTouched {
            why: format!(
                "a statement added, changed or deleted rows of {}.ledger",
                p.schema
            ),
        });
    }
    Ok(())
}

/// What a fresh `psql -f` session would have: default settings and role,
/// no temporary tables, cursors, LISTEN registrations, prepared statements
/// or sequence state. `DISCARD ALL` would do all of it but cannot run in a
/// transaction; these can. Its last statement is [`STATEMENTS_QUERY`]:
/// the script's prepared statements go, promoter's stay when they are all
/// there (see [`vet_statements`]).
pub async fn reset_session(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    let rows = sqlx::raw_sql(RESET_SESSION).fetch_all(&mut *conn).await?;
    keep_only_ours(conn, rows.first()).await
}

/// A statement of promoter's own about `file` failed while `doing`.
pub(super) fn script_error(file: &str, doing: &str, e: &sqlx::Error) -> ExecError {
    ExecError::Script {
        file: file.to_owned(),
        message: format!("{doing}: {}", super::describe(e)),
    }
}

fn reset_error(file: &str, e: &sqlx::Error) -> ExecError {
    script_error(file, "resetting the session after the script", e)
}

/// After the last script of a changeset's transaction, in one query
/// ([`END_OF_SCRIPTS`]): the deferred constraint triggers fire, as at the
/// COMMIT of `psql -1 -f` — under the session the script left (its role,
/// its search path), and now rather than at COMMIT so that what they do is
/// in the schema fingerprint after; then the session is reset as after
/// every script; then promoter's own statements that follow get the
/// settings of a narrowed catalog reading, to the end of the transaction
/// (see [`fingerprint::READING_NARROWED`]). Only the first can fail: the
/// resets cannot once nothing is pending (`DISCARD TEMP` refuses a table
/// with pending trigger events, and none is left), nor can a `SET LOCAL`
/// of a constant.
async fn end_scripts(conn: &mut PgConnection, file: &str) -> Result<(), ExecError> {
    let rows = sqlx::raw_sql(END_OF_SCRIPTS)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| {
            script_error(
                file,
                "a deferred constraint failed at the end of the changeset",
                &e,
            )
        })?;
    keep_only_ours(conn, rows.first())
        .await
        .map_err(|e| reset_error(file, &e))
}

/// The statements of [`RESET_SESSION`] before its question.
macro_rules! reset_statements {
    () => {
        "RESET SESSION AUTHORIZATION; RESET ROLE; RESET ALL; CLOSE ALL; UNLISTEN *; \
         DISCARD SEQUENCES; DISCARD TEMP; "
    };
}

/// What [`end_scripts`] sends (tests/it/parity.rs knows it as promoter's).
pub const END_OF_SCRIPTS: &str = concat!(
    "SET CONSTRAINTS ALL IMMEDIATE; ",
    reset_statements!(),
    fingerprint::reading_narrowed!(),
    "; ",
    statements_query!()
);

/// What [`reset_session`] sends after each script (tests/it/parity.rs tells
/// it apart from the scripts' own statements by this text).
pub const RESET_SESSION: &str = concat!(reset_statements!(), statements_query!());

/// Writes run output; a closed output (a pipe whose reader left) is an error.
fn write_output(out: &mut (dyn Write + Send), file: &str, bytes: &[u8]) -> Result<(), ExecError> {
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| ExecError::Script {
            file: file.to_owned(),
            message: format!("writing the run output: {e}"),
        })
}

/// `COPY … TO STDOUT`: the rows go to the run output as they arrive.
async fn copy_out(
    conn: &mut PgConnection,
    file: &str,
    stmt: &Statement,
    out: &mut (dyn Write + Send),
) -> Result<(), ExecError> {
    let mut rows = conn
        .copy_out_raw(&stmt.text)
        .await
        .map_err(|e| statement_error(file, stmt, &e, None))?;
    while let Some(chunk) = std::future::poll_fn(|cx| rows.as_mut().poll_next(cx)).await {
        let chunk = chunk.map_err(|e| statement_error(file, stmt, &e, None))?;
        // The output failing must not leave the connection in COPY: read to the end.
        if let Err(e) = write_output(out, file, &chunk) {
            while std::future::poll_fn(|cx| rows.as_mut().poll_next(cx))
                .await
                .is_some()
            {}
            return Err(e);
        }
    }
    Ok(())
}

async fn copy_in<R: std::io::BufRead>(
    conn: &mut PgConnection,
    file: &str,
    stmt: &Statement,
    splitter: &mut Splitter<R>,
) -> Result<(), ExecError> {
    let data_start = splitter.line_no();
    let mut copy = conn
        .copy_in_raw(&stmt.text)
        .await
        .map_err(|e| statement_error(file, stmt, &e, None))?;
    loop {
        match splitter.next_copy_chunk(COPY_CHUNK) {
            Ok(Some(chunk)) => {
                if let Err(e) = copy.send(chunk).await {
                    return Err(statement_error(file, stmt, &e, Some(data_start)));
                }
            }
            Ok(None) => break,
            Err(e) => {
                let _ = copy.abort(e.to_string()).await;
                return Err(ExecError::Script {
                    file: file.to_owned(),
                    message: e.to_string(),
                });
            }
        }
    }
    copy.finish()
        .await
        .map(|_| ())
        .map_err(|e| statement_error(file, stmt, &e, Some(data_start)))
}

/// Maps a server error to the script: the statement's line plus the server's
/// character position inside it; for COPY data, the data line from the context.
pub(super) fn statement_error(
    file: &str,
    stmt: &Statement,
    e: &sqlx::Error,
    copy_data_start: Option<usize>,
) -> ExecError {
    statement_error_in(file, stmt, e, copy_data_start, 0)
}

/// [`statement_error`] for `stmt` sent after `shift` characters of others
/// in the same message (the server's position counts from the message's start).
pub(super) fn statement_error_at(
    file: &str,
    stmt: &Statement,
    e: &sqlx::Error,
    shift: usize,
) -> ExecError {
    statement_error_in(file, stmt, e, None, shift)
}

fn statement_error_in(
    file: &str,
    stmt: &Statement,
    e: &sqlx::Error,
    copy_data_start: Option<usize>,
    shift: usize,
) -> ExecError {
    let pg = match e {
        sqlx::Error::Database(db) => db.try_downcast_ref::<PgDatabaseError>(),
        _ => None,
    };
    let (mut line, mut column) = (stmt.line, stmt.column);
    if let Some(PgErrorPosition::Original(pos)) = pg.and_then(PgDatabaseError::position) {
        (line, column) = position_in_script(stmt, pos.saturating_sub(shift));
    }
    if let (Some(start), Some(ctx)) = (copy_data_start, pg.and_then(PgDatabaseError::r#where)) {
        // "COPY actor, line 5, column last_name: ..."
        if let Some(n) = ctx
            .split(", line ")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse::<usize>().ok())
        {
            line = start + n;
            column = 1;
        }
    }
    ExecError::Statement(Box::new(StatementError {
        file: file.to_owned(),
        line,
        column,
        statement: stmt.first_line().to_owned(),
        sqlstate: pg.map(|p| p.code().to_owned()),
        message: pg.map_or_else(|| e.to_string(), |p| p.message().to_owned()),
        detail: pg.and_then(|p| p.detail()).map(str::to_owned),
        hint: pg.and_then(|p| p.hint()).map(str::to_owned),
        context: pg.and_then(|p| p.r#where()).map(str::to_owned),
    }))
}

/// Line and column in the script of the 1-based character `pos` of `stmt`
/// (counting the backslashes of `\;` and `\:`, which psql does not send).
pub fn position_in_script(stmt: &Statement, pos: usize) -> (usize, usize) {
    let target = stmt
        .text
        .char_indices()
        .nth(pos.saturating_sub(1))
        .map_or(stmt.text.len(), |(i, _)| i);
    let before = &stmt.text[..target];
    let line = stmt.line + before.matches('\n').count();
    let line_start = before.rfind('\n').map(|i| i + 1);
    let column = match line_start {
        Some(start) => 1 + before[start..].chars().count(),
        None => stmt.column + before.chars().count(),
    };
    let dropped = stmt
        .dropped
        .iter()
        .filter(|&&d| d >= line_start.unwrap_or(0) && d <= target)
        .count();
    (line, column + dropped)
}

/// What the caller knows about an application before it starts.
#[derive(Debug, Clone)]
pub struct Application {
    pub ledger_schema: String,
    /// The ledger schema's catalog digest as the run found it (taken once,
    /// under the lock): every changeset must leave it so.
    pub ledger_catalog: Sha256Digest,
    /// And its shape (`guard::Shape`), taken with it.
    pub ledger_shape: super::guard::Shape,
    /// A ledger row with everything but status, times, counts and hashes filled in.
    pub entry: Entry,
    pub mode: TransactionMode,
    /// What the previous changeset of this run left, if it can be trusted.
    pub previous: Option<SchemaMark>,
    /// The catalog as the previous changeset of this run left it, to read
    /// only what changes (see `fingerprint::Tracked`).
    pub tracked: Option<fingerprint::Tracked>,
    /// Where to show how far its scripts have got, if anyone watches.
    pub meter: Option<Arc<Meter>>,
}

/// What runs a changeset from outside [`apply`]: the flag that stops it
/// (a signal), where its scripts' output goes, and the caller's own work to
/// do while the server commits it (the next changeset's files opened).
pub struct Driver<'a> {
    pub stop: &'a AtomicBool,
    pub out: &'a mut (dyn Write + Send),
    pub while_committing: &'a mut (dyn FnMut() + Send),
}

/// The outcome of applying one changeset: its ledger row, and the error if it failed.
#[derive(Debug)]
pub struct Outcome {
    pub entry: Entry,
    pub error: Option<ExecError>,
    /// After a committed transactional changeset: what the next one in the
    /// same run may start from without reading the catalog again.
    pub mark: Option<SchemaMark>,
    /// After a committed transactional changeset: the catalog as it left it.
    pub tracked: Option<fingerprint::Tracked>,
}

/// The schema fingerprint a transactional changeset ended with, and what
/// proves the next changeset of the run starts from exactly that schema.
///
/// Every catalog change needs a transaction id. The fingerprint after
/// changeset N is taken inside N's transaction (xid `n`), from a snapshot in
/// which no older transaction was still running. If the next changeset's
/// transaction then gets xid `n + 1`, no other transaction got an id in
/// between, so none can have committed a change the fingerprint misses
/// (an aborted one only costs a recomputation). Otherwise — a busy
/// database, a script with savepoints — the fingerprint is read again. This
/// halves the catalog reads of a quiet run without trusting anything that
/// could have changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaMark {
    fingerprint: Sha256Digest,
    xid: u64,
    /// No older transaction was running when the fingerprint was taken.
    alone: bool,
}

impl SchemaMark {
    fn new(fingerprint: Sha256Digest, xid: &str, snapshot_xmin: &str) -> Option<Self> {
        let xid: u64 = xid.parse().ok()?;
        let xmin: u64 = snapshot_xmin.parse().ok()?;
        Some(Self {
            fingerprint,
            xid,
            alone: xmin >= xid,
        })
    }

    /// The schema fingerprint before the changeset whose transaction has
    /// `xid`, if this mark proves it.
    pub fn before(&self, xid: &str) -> Option<Sha256Digest> {
        let next: u64 = xid.parse().ok()?;
        (self.alone && next == self.xid + 1).then_some(self.fingerprint)
    }
}

/// At the start of a changeset's transaction: its id, and what it has
/// written in the catalogs so far.
fn starting_columns() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "pg_catalog.pg_current_xact_id()::text, {}",
            fingerprint::writes_sql()
        )
    })
}

/// After its scripts: its id (the same, or a script ended it), the
/// snapshot's oldest running transaction (see [`SchemaMark`]), what it has
/// written in the catalogs, whether every id given out since its own is
/// its own, and the settings definitions print with.
fn finishing_columns() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "pg_catalog.pg_current_xact_id()::text, \
             pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())::text, {}, {}, {}",
            fingerprint::writes_sql(),
            fingerprint::ONLY_OURS,
            fingerprint::SETTINGS
        )
    })
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Applies one changeset and writes its ledger row. In a transactional
/// changeset the scripts and the `applied` row commit together; on failure
/// everything rolls back and a `failed` row is written in its own transaction.
/// A non-transactional changeset writes a `running` row first, then runs
/// statement by statement, then an `applied` or `failed` row with the count.
pub async fn apply(
    conn: &mut PgConnection,
    env: &str,
    app: Application,
    scripts: Vec<ScriptSource>,
    sign: &mut ledger::RowSigner<'_>,
    driver: Driver<'_>,
) -> Result<Outcome, DbError> {
    let Driver {
        stop,
        out,
        while_committing,
    } = driver;
    let schema = app.ledger_schema.as_str();
    let mut entry = app.entry;
    entry.started_at = now_micros();
    let mut done = 0i64;
    let mut mark = None;
    // Only a committed transaction's catalog may be carried on: one that
    // rolled back would leave entries of rows that are gone.
    let mut tracked = app.tracked;
    let mut committed = None;
    let result = match app.mode {
        TransactionMode::PerChangeset => {
            let mut tx = conn.begin().await.map_err(|e| DbError::query(env, e))?;
            let catalog = app.ledger_catalog;
            // Our transaction's id: if it differs before COMMIT, the script
            // ended the transaction behind the splitter's back.
            // With what it has written in the catalogs so far (see
            // `fingerprint::Writes`), and the ledger tables' counters.
            let (counted, row) =
                super::guard::touched_with(&mut tx, env, schema, Some(starting_columns())).await?;
            let xid: String = row.try_get(13).map_err(|e| DbError::query(env, e))?;
            let writes = fingerprint::Writes(row.try_get(14).map_err(|e| DbError::query(env, e))?);
            let reused = app.previous.as_ref().and_then(|m| m.before(&xid));
            entry.schema_before = Some(match reused {
                Some(fingerprint) => fingerprint,
                None => {
                    fingerprint::tracked_fingerprint(&mut tx, env, schema, &mut tracked, None)
                        .await?
                }
            });
            let run = run_scripts(
                &mut tx,
                scripts,
                true,
                &mut done,
                Watch {
                    stop,
                    meter: app.meter.as_ref(),
                },
                None,
                &mut *out,
            )
            .await;
            // The deferred constraint triggers have fired (see `end_scripts`).
            let run = match run {
                Ok(()) => 'own: {
                    // From here promoter's own statements touch the ledger's
                    // relations, where a bundle may have hung code: an error
                    // of one, or an answer that does not decode, fails the
                    // changeset (rolled back, recorded) and is then looked
                    // at for that code's work (see `own_error`).
                    macro_rules! own {
                        ($label:lifetime, $e:expr) => {
                            match $e {
                                Ok(v) => v,
                                Err(e) => break $label Err(ExecError::Db(e)),
                            }
                        };
                    }
                    // With the ledger's last row, to chain promoter's to.
                    let (prev, row) = own!(
                        'own,
                        ledger::last_with(&mut tx, env, schema, finishing_columns()).await
                    );
                    type Finishing = (String, String, Option<Vec<i64>>, Option<bool>, String);
                    let finishing = || -> Result<Finishing, sqlx::Error> {
                        let col = |i: usize| ledger::AFTER_LAST + i;
                        Ok((
                            row.try_get(col(0))?,
                            row.try_get(col(1))?,
                            row.try_get(col(2))?,
                            row.try_get(col(3))?,
                            row.try_get(col(4))?,
                        ))
                    };
                    let (still, xmin, now, ours, settings) =
                        own!('own, finishing().map_err(|e| DbError::query(env, e)));
                    if still != xid {
                        let _ = tx.rollback().await;
                        return finish_broken(conn, env, schema, entry, done, sign).await;
                    }
                    // The catalog as the previous changeset left it, and no
                    // transaction but this one got an id since: the
                    // catalogs this one did not write need no reading.
                    let only = (reused.is_some() && ours == Some(true))
                        .then(|| fingerprint::Writes(now).since(&writes))
                        .flatten()
                        .map(|w| (w, settings.as_str()));
                    let after = own!(
                        'own,
                        fingerprint::tracked_fingerprint(&mut tx, env, schema, &mut tracked, only)
                            .await
                    );
                    entry.schema_after = Some(after);
                    mark = SchemaMark::new(after, &xid, &xmin);
                    entry.status = Status::Applied;
                    entry.statements = done;
                    entry.finished_at = Some(now_micros());
                    own!(
                        'own,
                        ledger::append_after(&mut tx, env, schema, &mut entry, sign, prev.as_ref())
                            .await
                    );
                    // Code the bundle hung on the ledger's relations runs
                    // inside promoter's own statements since the scripts'
                    // check of the prepared statements: the guard asks
                    // only once they are still promoter's.
                    if let Err(why) = statements_still_ours(&mut tx, env).await? {
                        forget_statements(&mut tx).await;
                        Err(ExecError::LedgerTouched { why })
                    } else {
                        // Before COMMIT, in the same transaction: the bundle left
                        // the ledger exactly as it found it, plus promoter's row.
                        match super::guard::check_transaction(
                            &mut tx,
                            env,
                            schema,
                            (catalog, &app.ledger_shape),
                            reused.is_some(),
                            counted,
                            entry.seq,
                            entry.entry_hash,
                        )
                        .await?
                        {
                            Ok(()) => Ok(()),
                            Err(why) => Err(ExecError::LedgerTouched { why }),
                        }
                    }
                }
                Err(e) => {
                    // After an error our transaction is aborted, and asking
                    // for its id fails; if the question succeeds with another
                    // id, the transaction had already ended behind us.
                    let still: Result<String, _> =
                        sqlx::query_scalar("SELECT pg_catalog.pg_current_xact_id()::text")
                            .fetch_one(&mut *tx)
                            .await;
                    if still.is_ok_and(|x| x != xid) {
                        let _ = tx.rollback().await;
                        return finish_broken(conn, env, schema, entry, done, sign).await;
                    }
                    Err(e)
                }
            };
            match run {
                Ok(()) => {
                    // Sent first (polled first): the caller's work runs
                    // while the server commits.
                    let (committing, ()) = tokio::join!(tx.commit(), async { while_committing() });
                    committing.map_err(|e| {
                        DbError::query(env, format!("COMMIT: {}", super::describe(&e)))
                    })?;
                    committed = tracked.take();
                    Ok(())
                }
                Err(e) => {
                    tx.rollback().await.map_err(|e| {
                        DbError::query(env, format!("ROLLBACK: {}", super::describe(&e)))
                    })?;
                    // Nothing persisted: the failed row records 0 statements.
                    done = 0;
                    Err(own_error(conn, env, e).await?)
                }
            }
        }
        TransactionMode::None => {
            entry.schema_before = Some(fingerprint::fingerprint(conn, env, schema).await?);
            let mut running = entry.clone();
            running.status = Status::Running;
            append_alone(conn, env, schema, &mut running, sign).await?;
            let progress = Progress {
                env,
                schema,
                seq: running.seq,
                catalog: app.ledger_catalog,
                head: super::guard::head(conn, env, schema).await?,
            };
            let run = run_scripts(
                conn,
                scripts,
                false,
                &mut done,
                Watch {
                    stop,
                    meter: app.meter.as_ref(),
                },
                Some(&progress),
                &mut *out,
            )
            .await;
            if run.is_err() {
                // A script may have failed inside its own BEGIN block; end it so
                // the session can record the failure. What that block did is
                // rolled back, its progress rows with it: what remains is
                // exactly what committed.
                let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
                done = ledger::load_progress(conn, env, schema)
                    .await?
                    .get(&running.seq)
                    .copied()
                    .unwrap_or(0);
            }
            if run.is_ok() {
                entry.schema_after = Some(fingerprint::fingerprint(conn, env, schema).await?);
                entry.status = Status::Applied;
                entry.statements = done;
                entry.finished_at = Some(now_micros());
                append_alone(conn, env, schema, &mut entry, sign).await?;
            }
            run
        }
    };
    match result {
        Ok(()) => Ok(Outcome {
            entry,
            error: None,
            mark,
            tracked: committed,
        }),
        Err(error) => record_failure(conn, env, schema, entry, done, error, sign).await,
    }
}

/// Writes the `failed` row of a changeset (in its own transaction) and
/// returns the outcome carrying the error.
async fn record_failure(
    conn: &mut PgConnection,
    env: &str,
    schema: &str,
    mut entry: Entry,
    statements: i64,
    error: ExecError,
    sign: &mut ledger::RowSigner<'_>,
) -> Result<Outcome, DbError> {
    entry.status = Status::Failed;
    entry.statements = statements;
    entry.finished_at = Some(now_micros());
    entry.schema_after = None;
    entry.error = Some(error.to_string());
    append_alone(conn, env, schema, &mut entry, sign).await?;
    Ok(Outcome {
        entry,
        error: Some(error),
        mark: None,
        tracked: None,
    })
}

/// Records a changeset whose transaction the server left mid-way: the
/// statements after that point committed on their own, so the row counts
/// them as committed and marks the environment.
async fn finish_broken(
    conn: &mut PgConnection,
    env: &str,
    schema: &str,
    entry: Entry,
    done: i64,
    sign: &mut ledger::RowSigner<'_>,
) -> Result<Outcome, DbError> {
    let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
    let error = ExecError::TransactionBroken;
    record_failure(conn, env, schema, entry, done.max(1), error, sign).await
}

/// Appends a row in its own transaction.
pub async fn append_alone(
    conn: &mut PgConnection,
    env: &str,
    schema: &str,
    entry: &mut Entry,
    sign: &mut ledger::RowSigner<'_>,
) -> Result<(), DbError> {
    let mut tx = conn.begin().await.map_err(|e| DbError::query(env, e))?;
    ledger::append(&mut tx, env, schema, entry, sign).await?;
    tx.commit().await.map_err(|e| DbError::query(env, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_reset_ends_by_asking_for_prepared_statements() {
        assert!(RESET_SESSION.ends_with(STATEMENTS_QUERY));
        assert!(!RESET_SESSION.contains(FORGET_STATEMENTS));
    }

    #[test]
    fn a_schema_mark_counts_only_when_nothing_else_could_have_changed_the_catalog() {
        let f = Sha256Digest::of(b"catalog");
        let mark = |xid: &str, xmin: &str| SchemaMark::new(f, xid, xmin).unwrap();
        // Alone, and the very next transaction id: the same schema.
        assert_eq!(mark("100", "100").before("101"), Some(f));
        assert_eq!(mark("100", "101").before("101"), Some(f));
        // Another transaction got an id in between (or a savepoint did).
        assert_eq!(mark("100", "100").before("102"), None);
        // An older transaction was still running: it may commit later.
        assert_eq!(mark("100", "97").before("101"), None);
        assert_eq!(mark("100", "100").before("100"), None);
        assert_eq!(mark("100", "100").before("not a number"), None);
        assert_eq!(SchemaMark::new(f, "x", "1"), None);
    }

    #[test]
    fn a_scripts_own_transaction_blocks_are_followed() {
        let block = |sql: &str, before: bool| {
            let items = crate::sql::lexer::split_all(sql.as_bytes()).unwrap();
            let Some(Item::Statement(stmt)) = items.into_iter().next() else {
                panic!("{sql}")
            };
            block_after(&stmt, before)
        };
        for (sql, before, after) in [
            ("BEGIN;", false, true),
            (
                "start transaction isolation level serializable;",
                false,
                true,
            ),
            ("SELECT 1;", true, true),
            ("SELECT 1;", false, false),
            ("COMMIT;", true, false),
            ("end;", true, false),
            ("ROLLBACK;", true, false),
            ("ABORT;", true, false),
            ("ROLLBACK TO SAVEPOINT a;", true, true),
            ("COMMIT AND CHAIN;", true, true),
            ("COMMIT AND NO CHAIN;", true, false),
            ("PREPARE TRANSACTION 'x';", true, false),
            ("SELECT 1\\; BEGIN;", false, true),
            ("BEGIN\\; SELECT 1\\; COMMIT;", false, false),
        ] {
            assert_eq!(block(sql, before), after, "{sql} after {before}");
        }
    }

    #[test]
    fn server_positions_map_to_script_lines_and_columns() {
        let stmt = Statement {
            text: "SELECT 1,\n  2,\n  nope FROM t;".into(),
            line: 10,
            column: 5,
            ..Statement::default()
        };
        assert_eq!(position_in_script(&stmt, 1), (10, 5));
        assert_eq!(position_in_script(&stmt, 8), (10, 12));
        assert_eq!(position_in_script(&stmt, 18), (12, 3));
        let unicode = Statement {
            text: "SELECT 'é', x".into(),
            line: 1,
            column: 1,
            ..Statement::default()
        };
        assert_eq!(position_in_script(&unicode, 13), (1, 13));
        // `SELECT 1\; SELECT x` is sent as `SELECT 1; SELECT x`: the column
        // of `x` in the script counts the backslash.
        let joined = Statement {
            text: "SELECT 1; SELECT x".into(),
            line: 3,
            column: 1,
            dropped: vec![8],
            ..Statement::default()
        };
        assert_eq!(position_in_script(&joined, 18), (3, 19));
        assert_eq!(position_in_script(&joined, 8), (3, 8));
    }
}
