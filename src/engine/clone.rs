//! `promoter clone FROM TO`: make TO a copy of FROM (a refresh: QAT from
//! PRD at the start of a cycle), ledger history included.
//!
//! The source is only read: one repeatable-read, read-only transaction
//! exports its snapshot, in which promoter reads the ledger, the schema
//! fingerprint and the row counts, and `pg_dump -Fd -j N --snapshot` dumps
//! exactly that state; the transaction ends when the dump does. pg_dump's
//! share locks never wait longer than `--lock-wait-timeout`.
//!
//! The copy is restored into a new database next to TO, verified (schema
//! fingerprint and every table's row count equal to the source's), given
//! its ledger — the source's rows verbatim, TO's own ledger kept in
//! `ledger_replaced`, TO's own pinned trust policy, and a `refreshed` row
//! signed with TO's receipt key — and only then swapped in under TO's name,
//! both renames in one transaction. Until the swap TO is untouched and
//! holds its advisory lock, so no promotion can write to it meanwhile; a
//! failure or an interrupt drops the new database and leaves TO as it was.

use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::{Event, Hooks, Target, Trust, interrupt, now_micros, who};
use crate::changeset::Sha256Digest;
use crate::config::{Config, Environment};
use crate::db::admin::{self, DatabaseProps, ToolError};
use crate::db::{self, DbError, conninfo, fingerprint, ledger};
use crate::ledger::{
    BRANCH_EVENT, BranchNote, Entry, GENESIS, Head, REFRESH_EVENT, RefreshNote, ReplacedRow, Status,
};
use crate::masking::{self, Masker};

/// How to clone.
#[derive(Debug, Clone)]
pub struct CloneOptions {
    /// Parallel jobs of pg_dump and pg_restore.
    pub jobs: u32,
    /// Do not ask before replacing a `confirm: true` environment.
    pub assume_yes: bool,
    /// How long to wait for TO's advisory lock.
    pub lock_wait: Duration,
    /// How long pg_dump may wait for a table's share lock on the source
    /// (PostgreSQL interval text) before it gives up, rather than queue
    /// behind a long-running lock there.
    pub source_lock_timeout: String,
    /// Restore without the source's owners and grants (roles that exist
    /// in the source's cluster but not in TO's).
    pub no_owner: bool,
    /// Mask the data on the way (`clone prd dev --mask masking.yaml`).
    pub mask: Option<masking::Spec>,
    /// Treat every table as sensitive (deny-by-default everywhere).
    pub strict: bool,
    /// TO is a branch database just made (`promoter branch create`): any
    /// source may be copied into it, and its ledger continues the source's
    /// with a `branched` row rather than a `refreshed` one.
    pub branch: bool,
}

/// Seconds spent per phase.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Phases {
    pub dump: f64,
    pub restore: f64,
    pub verify: f64,
    pub total: f64,
}

/// What a clone did.
#[derive(Debug, Clone, Serialize)]
pub struct CloneReport {
    pub from: String,
    pub to: String,
    /// The source's ledger head that was copied (`None`: it had no ledger).
    pub source_head: Option<Head>,
    /// The head of TO's ledger that was replaced (kept in `ledger_replaced`).
    pub replaced: Option<Head>,
    /// TO's schema fingerprint before, and the copy's (equal to the source's).
    pub schema_before: Option<Sha256Digest>,
    pub schema_after: Sha256Digest,
    pub tables: u64,
    pub rows: u64,
    pub dump_bytes: u64,
    /// The `refreshed` row.
    pub ledger_seq: i64,
    pub entry_hash: Sha256Digest,
    /// Whether the `refreshed` row carries TO's receipt.
    pub receipt: bool,
    /// Other sessions of TO that the swap ended.
    pub sessions_ended: i64,
    /// `pg_dump --version`.
    pub tool: String,
    /// sha256 of the masking spec, when the data was masked.
    pub masking_sha256: Option<String>,
    /// `schema.table.column` of every masked column.
    pub masked_columns: Vec<String>,
    /// Transforms the spec did not name, carried along foreign keys.
    pub propagated: Vec<String>,
    pub seconds: Phases,
}

/// Why a clone did not happen; in every case TO is as it was.
#[derive(Debug, thiserror::Error)]
pub enum CloneError {
    /// Refused before anything was created.
    #[error("{to} was not changed: {why}")]
    Refused { to: String, why: String },
    #[error("not confirmed; {to} was not changed")]
    NotConfirmed { to: String },
    /// The confirmation could not be asked (no terminal): the hooks' own
    /// error, with its hint.
    #[error(transparent)]
    CannotAsk(anyhow::Error),
    /// Failed while copying or verifying; the new database was dropped.
    #[error("{to} was not changed: {why}")]
    Failed { to: String, why: String },
    #[error("interrupted; {to} was not changed")]
    Interrupted { to: String },
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Whether `to` comes before `from` in the promotion pipeline (TO is
/// promoted, directly or through others, into FROM): data is copied only
/// from a later stage into an earlier one, never over the stage it feeds.
fn upstream_of(config: &Config, to: &Environment, from: &Environment) -> bool {
    let mut cur = from.config.promote_from.clone();
    for _ in 0..64 {
        let Some(name) = cur else { return false };
        if name == to.name {
            return true;
        }
        cur = config
            .environment(&name)
            .ok()
            .and_then(|e| e.config.promote_from.clone());
    }
    false
}

/// Checks what can be checked from the configuration alone.
pub fn check_pair(
    config: &Config,
    from: &Environment,
    to: &Environment,
    branch: bool,
) -> Result<(), CloneError> {
    let refuse = |why: String| {
        Err(CloneError::Refused {
            to: to.name.clone(),
            why,
        })
    };
    if from.name == to.name {
        return refuse("FROM and TO are the same environment".into());
    }
    if from.is_fleet() {
        return refuse(format!(
            "{} is a fleet; name the target to copy, as {}/TARGET",
            from.name, from.name
        ));
    }
    if to.is_fleet() {
        return refuse(format!(
            "{} is a fleet; clone into one target at a time, as {}/TARGET",
            to.name, to.name
        ));
    }
    if !branch && !upstream_of(config, to, from) {
        return refuse(format!(
            "a refresh copies a later stage into an earlier one (prd into qat or dev), and {} is not promoted into {} through the pipeline: copying {} over {} would overwrite what feeds it, or a stage unrelated to it",
            to.name,
            from.name,
            from.label(),
            to.label()
        ));
    }
    Ok(())
}

/// Copies FROM into TO (see the module docs). `trust.receipt` signs TO's
/// `refreshed` row.
pub async fn clone(
    config: &Config,
    from: &Environment,
    to: &Environment,
    trust: &mut Trust<'_>,
    opts: &CloneOptions,
    hooks: &mut dyn Hooks,
) -> Result<CloneReport, CloneError> {
    check_pair(config, from, to, opts.branch)?;
    let started = Instant::now();
    let started_at = now_micros();
    let schema = config.file.ledger_schema.as_str();
    let failed = |why: String| CloneError::Failed {
        to: to.name.clone(),
        why,
    };
    let from_url = from
        .database_url()
        .map_err(|e| DbError::Unconfigured(e.to_string()))?;
    let to_url = to
        .database_url()
        .map_err(|e| DbError::Unconfigured(e.to_string()))?;

    // TO first: its lock is held until the swap, so nothing writes to it
    // while the copy is made.
    let mut target = Target::open(to, schema, opts.lock_wait, hooks).await?;
    let result = async {
        let old = read_target(&mut target, schema).await?;
        let mut source = super::connect(from).await?;
        let result = copy(
            config,
            from,
            to,
            &from_url,
            &to_url,
            &mut source,
            &old,
            trust,
            opts,
            hooks,
            started,
            started_at,
        )
        .await;
        db::close(source).await;
        result
    }
    .await;
    match result {
        Ok((report, built)) => {
            let sessions_ended = swap(to, &to_url, &built, target)
                .await
                .map_err(|e| failed(e.to_string()))?;
            save_checkpoint(to, schema, hooks).await;
            Ok(CloneReport {
                sessions_ended,
                seconds: Phases {
                    total: started.elapsed().as_secs_f64(),
                    ..report.seconds
                },
                ..report
            })
        }
        Err(e) => {
            target.close().await;
            Err(e)
        }
    }
}

/// What TO holds now and must keep: its ledger (to be kept in
/// `ledger_replaced`), its pinned policy, its schema, its properties.
struct OldTarget {
    entries: Vec<Entry>,
    replaced: Vec<ReplacedRow>,
    pins: Vec<crate::policy::PinRecord>,
    fingerprint: Sha256Digest,
    props: DatabaseProps,
    major: u32,
    /// [`admin::instance`] of TO.
    instance: String,
}

async fn read_target(target: &mut Target, schema: &str) -> Result<OldTarget, CloneError> {
    let env = target.env.clone();
    let conn = &mut target.conn;
    Ok(OldTarget {
        entries: ledger::load(conn, &env, schema).await?,
        replaced: ledger::load_replaced(conn, &env, schema).await?,
        pins: db::policy::load(conn, &env, schema).await?,
        fingerprint: fingerprint::fingerprint(conn, &env, schema).await?,
        props: admin::props(conn, &env).await?,
        major: admin::server_major(conn, &env).await?,
        instance: admin::instance(conn, &env).await?,
    })
}

/// The new database, built and verified, waiting to be swapped in.
struct Built {
    database: String,
    /// TO's database now.
    current: String,
}

/// Names next to TO's: the copy under construction, and TO set aside
/// during the swap (PostgreSQL names are at most 63 bytes).
fn side_names(to_db: &str) -> (String, String) {
    let mut stem = to_db.to_owned();
    while stem.len() > 46 {
        stem.pop();
    }
    (
        format!("{stem}__promoter_clone"),
        format!("{stem}__promoter_old"),
    )
}

#[allow(clippy::too_many_arguments)]
async fn copy(
    config: &Config,
    from: &Environment,
    to: &Environment,
    from_url: &str,
    to_url: &str,
    source: &mut db::Connection,
    old: &OldTarget,
    trust: &mut Trust<'_>,
    opts: &CloneOptions,
    hooks: &mut dyn Hooks,
    started: Instant,
    started_at: i64,
) -> Result<(CloneReport, Built), CloneError> {
    let schema = config.file.ledger_schema.as_str();
    let failed = |why: String| CloneError::Failed {
        to: to.name.clone(),
        why,
    };
    let refused = |why: String| CloneError::Refused {
        to: to.name.clone(),
        why,
    };
    let q = |e: sqlx::Error| DbError::query(&from.name, e);

    // The source's snapshot: everything promoter reads about it, and what
    // pg_dump dumps, is this one moment.
    sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *source)
        .await
        .map_err(q)?;
    let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
        .fetch_one(&mut *source)
        .await
        .map_err(q)?;
    let history = ledger::load(source, &from.name, schema).await?;
    if let Some(b) = crate::ledger::check_chain(&history) {
        return Err(refused(format!(
            "{}'s ledger does not verify at row #{}: {} (run `promoter audit {}`)",
            from.name, b.seq, b.reason, from.name
        )));
    }
    let progress = ledger::load_progress(source, &from.name, schema).await?;
    if let Some(d) = crate::ledger::dirty(&history, &progress).first() {
        return Err(refused(format!(
            "{}'s ledger shows {} left unfinished (row #{}); a copy would carry that state: resolve it first (`promoter resolve {} {}`)",
            from.name, d.row.changeset_id, d.row.seq, from.name, d.row.changeset_id
        )));
    }
    // Two URLs for one database (a slip in environments.yaml) would make
    // this clone replace the source with a copy of itself.
    if admin::instance(source, &from.name).await? == old.instance {
        return Err(refused(format!(
            "{} and {} are the same database ({}): check their database_url",
            from.label(),
            to.label(),
            old.props.name
        )));
    }
    let source_fp = fingerprint::fingerprint(source, &from.name, schema).await?;
    let source_props = admin::props(source, &from.name).await?;
    let source_major = admin::server_major(source, &from.name).await?;
    let tables = admin::tables(source, &from.name, schema).await?;
    let counts = admin::row_counts(source, &from.name, &tables).await?;
    // A masking spec is checked against this very catalog before anything
    // is copied.
    let masking = match &opts.mask {
        None => None,
        Some(spec) => Some(
            mask_plan(source, from, spec, opts.strict, schema)
                .await
                .map_err(refused)?,
        ),
    };

    let tools =
        admin::find_tools(source_major.max(old.major)).map_err(|e| refused(e.to_string()))?;
    let question = format!(
        "replace {} ({}) with a copy of {} ({} table{}, {} rows)? Its sessions will be ended at the swap. [y/N] ",
        to.name,
        old.props.name,
        from.name,
        tables.len(),
        if tables.len() == 1 { "" } else { "s" },
        counts.iter().sum::<i64>()
    );
    if to.config.confirm
        && !opts.assume_yes
        && !hooks.ask(&question).map_err(CloneError::CannotAsk)?
    {
        return Err(CloneError::NotConfirmed {
            to: to.name.clone(),
        });
    }

    interrupt::install();
    let work = tempfile::Builder::new()
        .prefix("promoter-clone-")
        .tempdir()
        .map_err(|e| failed(format!("creating a directory for the dump: {e}")))?;
    let dump_dir = work.path().join("dump");
    let (from_tool_url, from_password) =
        conninfo::for_tool(from_url, None).map_err(|e| refused(format!("{}: {e}", from.name)))?;
    hooks.event(Event::Step(&format!(
        "dumping {} ({} jobs, {}) …",
        from.name, opts.jobs, tools.version
    )));
    let t = Instant::now();
    let mut dump_args = vec![
        "--format=directory".to_owned(),
        format!("--jobs={}", opts.jobs),
        format!("--file={}", dump_dir.display()),
        format!("--snapshot={snapshot}"),
        format!("--lock-wait-timeout={}", opts.source_lock_timeout),
        format!("--exclude-schema={schema}"),
        "--no-sync".to_owned(),
        format!("--dbname={from_tool_url}"),
    ];
    // Masked tables' rows never reach the dump: they are streamed later.
    for t in masking.iter().flat_map(|(plan, _)| &plan.tables) {
        dump_args.push(format!(
            "--exclude-table-data={}.{}",
            pattern(&t.schema),
            pattern(&t.name)
        ));
    }
    dump_args.push("--verbose".into());
    interruptible(
        &to.name,
        run_reporting(
            "pg_dump",
            &tools.pg_dump,
            &dump_args,
            from_password.as_deref(),
            "dumping",
            hooks,
        ),
    )
    .await?;
    // Without masking the snapshot is no longer needed: the source is left
    // alone from here. (Masked tables are still to be read in it.)
    if masking.is_none() {
        let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *source).await;
    }
    let dump_seconds = t.elapsed().as_secs_f64();
    let dump_bytes = admin::size_of(&dump_dir);

    // The new database, next to TO.
    let (new_db, _) = side_names(&old.props.name);
    let mut admin_conn = maintenance(to, to_url).await?;
    if admin::exists(&mut admin_conn, &to.name, &new_db).await? {
        hooks.event(Event::Warning(&format!(
            "dropping {new_db}, left by an earlier clone that did not finish"
        )));
        admin::drop_database(&mut admin_conn, &to.name, &new_db).await?;
    }
    admin::create_like(&mut admin_conn, &to.name, &new_db, &source_props).await?;
    let result = async {
        hooks.event(Event::Step(&format!(
            "restoring into {new_db} ({} jobs) …",
            opts.jobs
        )));
        let t = Instant::now();
        let (new_url, to_password) = conninfo::for_tool(to_url, Some(&new_db))
            .map_err(|e| refused(format!("{}: {e}", to.name)))?;
        let restore = |section: Option<&str>| {
            let mut args = vec![
                format!("--dbname={new_url}"),
                format!("--jobs={}", opts.jobs),
                "--exit-on-error".to_owned(),
            ];
            if let Some(s) = section {
                args.push(format!("--section={s}"));
            }
            args.push("--verbose".into());
            if opts.no_owner {
                args.push("--no-owner".into());
                args.push("--no-privileges".into());
            }
            args.push(dump_dir.display().to_string());
            args
        };
        let (program, password) = (tools.pg_restore.clone(), to_password.clone());
        let password = password.as_deref();
        macro_rules! pg_restore {
            ($section:expr) => {
                interruptible(
                    &to.name,
                    run_reporting("pg_restore", &program, &restore($section), password, "restoring", &mut *hooks),
                )
                .await?
            };
        }
        match &masking {
            None => pg_restore!(None),
            Some((plan, masker)) => {
                // Tables first, their unmasked rows, then the masked rows
                // streamed from the snapshot; indexes, constraints and
                // triggers last, built over the masked data.
                pg_restore!(Some("pre-data"));
                pg_restore!(Some("data"));
                let mut copy = db::connect_database(&to.name, to_url, Some(&new_db), &super::settings(to)).await?;
                let streamed = async {
                    for table in &plan.tables {
                        hooks.event(Event::Step(&format!("masking {} …", table.qualified())));
                        let t = Instant::now();
                        let rows = admin::stream_masked(source, &from.name, &mut copy, &to.name, table, masker, &interrupt::requested)
                            .await
                            .map_err(|e| match e {
                                admin::StreamError::Interrupted => CloneError::Interrupted { to: to.name.clone() },
                                other => failed(other.to_string()),
                            })?;
                        hooks.event(Event::Step(&format!(
                            "masked {}: {rows} rows in {:.1} s",
                            table.qualified(),
                            t.elapsed().as_secs_f64()
                        )));
                    }
                    Ok::<_, CloneError>(())
                }
                .await;
                db::close(copy).await;
                let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *source).await;
                streamed?;
                pg_restore!(Some("post-data"));
            }
        }
        let restore_seconds = t.elapsed().as_secs_f64();

        hooks.event(Event::Step(&format!("verifying {new_db} …")));
        let t = Instant::now();
        let mut copy = db::connect_database(&to.name, to_url, Some(&new_db), &super::settings(to)).await?;
        let result = async {
            let copy_fp = fingerprint::fingerprint(&mut copy, &to.name, schema).await?;
            if copy_fp != source_fp {
                return Err(failed(format!(
                    "the copy's schema fingerprint is {}, the source's {}: the restore did not reproduce the schema (see `promoter drift`)",
                    copy_fp.short(),
                    source_fp.short()
                )));
            }
            let copy_tables = admin::tables(&mut copy, &to.name, schema).await?;
            if copy_tables != tables {
                return Err(failed(format!(
                    "the copy has tables {copy_tables:?}, the source {tables:?}"
                )));
            }
            let copy_counts = admin::row_counts(&mut copy, &to.name, &copy_tables).await?;
            for ((t, a), b) in tables.iter().zip(&counts).zip(&copy_counts) {
                if a != b {
                    return Err(failed(format!(
                        "{t} has {b} rows in the copy and {a} in the source's snapshot"
                    )));
                }
            }
            if interrupt::requested() {
                return Err(CloneError::Interrupted {
                    to: to.name.clone(),
                });
            }
            let entry = write_ledger(
                &mut copy, to, &from.name, schema, &history, old, copy_fp, trust, started_at,
                tables.len() as u64, counts.iter().sum::<i64>() as u64,
                opts.mask.as_ref().map(|m| m.sha256.to_hex()),
                opts.branch,
            )
            .await?;
            Ok(entry)
        }
        .await;
        db::close(copy).await;
        let entry = result?;
        admin::adopt_props(&mut admin_conn, &to.name, &new_db, &old.props).await?;
        let verify_seconds = t.elapsed().as_secs_f64();
        Ok::<_, CloneError>((
            CloneReport {
                from: from.name.clone(),
                to: to.name.clone(),
                source_head: history.last().map(Head::of),
                replaced: old.entries.last().map(Head::of),
                schema_before: Some(old.fingerprint),
                schema_after: source_fp,
                tables: tables.len() as u64,
                rows: counts.iter().sum::<i64>() as u64,
                dump_bytes,
                ledger_seq: entry.seq,
                entry_hash: entry.entry_hash,
                receipt: entry.receipt.is_some(),
                sessions_ended: 0,
                tool: tools.version.clone(),
                masking_sha256: opts.mask.as_ref().map(|m| m.sha256.to_hex()),
                masked_columns: masking
                    .as_ref()
                    .map(|(p, _)| masking::masked_columns(p).into_iter().collect())
                    .unwrap_or_default(),
                propagated: masking
                    .as_ref()
                    .map(|(p, _)| p.propagated.clone())
                    .unwrap_or_default(),
                seconds: Phases {
                    dump: dump_seconds,
                    restore: restore_seconds,
                    verify: verify_seconds,
                    total: started.elapsed().as_secs_f64(),
                },
            },
            Built {
                database: new_db.clone(),
                current: old.props.name.clone(),
            },
        ))
    }
    .await;
    if result.is_err() {
        // Whatever went wrong, the half-made copy goes; TO was never touched.
        if let Err(e) = admin::drop_database(&mut admin_conn, &to.name, &new_db).await {
            hooks.event(Event::Warning(&format!(
                "could not drop the unfinished copy {new_db}: {e}"
            )));
        }
    }
    db::close(admin_conn).await;
    result
}

/// Checks a masking spec against the source's catalog (in its snapshot)
/// and reads the salt: every problem at once, before anything is copied.
async fn mask_plan(
    source: &mut db::Connection,
    from: &Environment,
    spec: &masking::Spec,
    strict: bool,
    schema: &str,
) -> Result<(masking::Plan, Masker), String> {
    let (catalog, fks) = admin::mask_catalog(source, &from.name, schema)
        .await
        .map_err(|e| e.to_string())?;
    let plan = masking::plan(spec, &catalog, &fks, strict).map_err(|problems| {
        format!(
            "{} does not fit {}'s live catalog:\n  - {}",
            spec.path.display(),
            from.label(),
            problems.join("\n  - ")
        )
    })?;
    let salt = if spec.needs_salt() {
        let salt = std::env::var(&spec.salt_env).unwrap_or_default();
        if salt.len() < masking::MIN_SALT_BYTES {
            return Err(format!(
                "{}: the salt is read from ${}, which is {}: set it to a secret of at least {} bytes (the same salt gives the same masked values, so keep it to refresh consistently)",
                spec.path.display(),
                spec.salt_env,
                if salt.is_empty() {
                    "not set".to_owned()
                } else {
                    format!("only {} bytes", salt.len())
                },
                masking::MIN_SALT_BYTES
            ));
        }
        salt.into_bytes()
    } else {
        Vec::new()
    };
    Ok((plan, Masker::new(&salt)))
}

/// A name as an exact pg_dump pattern (quoted: no wildcards, case kept).
fn pattern(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Runs a client tool, reporting each table it starts on as progress.
async fn run_reporting(
    tool: &'static str,
    program: &std::path::Path,
    args: &[String],
    password: Option<&str>,
    doing: &str,
    hooks: &mut dyn Hooks,
) -> Result<(), ToolError> {
    admin::run_tool(tool, program, args, password, &mut |line| {
        if let Some(table) = admin::table_of_verbose_line(line) {
            hooks.event(Event::Progress(&format!("  {doing} {table}")));
        }
    })
    .await
}

/// Runs a client tool unless a signal arrives first (then the tool is
/// killed, as its future is dropped). A tool that dies of the same Ctrl-C
/// (it is in the terminal's process group) counts as interrupted too.
async fn interruptible(
    to: &str,
    work: impl std::future::Future<Output = Result<(), ToolError>>,
) -> Result<(), CloneError> {
    let interrupted = || CloneError::Interrupted { to: to.to_owned() };
    tokio::select! {
        out = work => match out {
            Ok(()) => Ok(()),
            Err(_) if interrupt::requested() => Err(interrupted()),
            Err(e) => Err(CloneError::Failed { to: to.to_owned(), why: e.to_string() }),
        },
        () = interrupt::wait() => Err(interrupted()),
    }
}

/// A connection to TO's cluster outside TO (for CREATE, ALTER, DROP DATABASE).
pub(super) async fn maintenance(to: &Environment, to_url: &str) -> Result<db::Connection, DbError> {
    let settings = super::settings(to);
    match db::connect_database(&to.name, to_url, Some("postgres"), &settings).await {
        Ok(c) => Ok(c),
        Err(_) => db::connect_database(&to.name, to_url, Some("template1"), &settings).await,
    }
}

/// Writes the copy's ledger: the source's history verbatim, TO's replaced
/// ledger (and the ledgers it had replaced) in `ledger_replaced`, TO's own
/// pinned policy, and the `refreshed` row, chained to the source's head
/// and signed with TO's receipt key. One transaction.
#[allow(clippy::too_many_arguments)]
async fn write_ledger(
    copy: &mut db::Connection,
    to: &Environment,
    from: &str,
    schema: &str,
    history: &[Entry],
    old: &OldTarget,
    copy_fp: Sha256Digest,
    trust: &mut Trust<'_>,
    started_at: i64,
    tables: u64,
    rows: u64,
    mask_sha256: Option<String>,
    branch: bool,
) -> Result<Entry, CloneError> {
    let env = to.name.as_str();
    ledger::ensure(copy, env, schema).await?;
    let (os_user, host) = who();
    let db_role = ledger::current_role(copy, env).await?;
    let note = RefreshNote {
        replaced: old.entries.last().map(Head::of),
        masking_sha256: mask_sha256.clone(),
        tables,
        rows,
    };
    let mut entry = Entry {
        seq: 0,
        changeset_id: REFRESH_EVENT.to_owned(),
        bundle_hash: history.last().map_or(GENESIS, |h| h.entry_hash),
        environment: env.to_owned(),
        status: Status::Refreshed,
        signers: "[]".to_owned(),
        promoted_from: Some(from.to_owned()),
        promoted_from_entry: history.last().map(|h| h.entry_hash),
        git_commit: None,
        os_user,
        host,
        db_role,
        started_at,
        finished_at: Some(now_micros()),
        schema_before: Some(old.fingerprint),
        schema_after: Some(copy_fp),
        statements: 0,
        error: None,
        note: Some(serde_json::to_string(&note).unwrap_or_default()),
        prev_hash: GENESIS,
        entry_hash: GENESIS,
        receipt: None,
    };
    if branch {
        entry.changeset_id = BRANCH_EVENT.to_owned();
        entry.status = Status::Branched;
        entry.note = Some(
            serde_json::to_string(&BranchNote {
                from: from.to_owned(),
                method: "dump".into(),
                masking_sha256: mask_sha256.clone(),
            })
            .unwrap_or_default(),
        );
    }
    entry.seal(history.last());
    if let Some(mut sign) = trust.row_signer() {
        entry.receipt = Some(
            sign(&entry.canonical_bytes()).map_err(|e| CloneError::Failed {
                to: env.to_owned(),
                why: format!("signing the refreshed row with {env}'s receipt key: {e}"),
            })?,
        );
    }
    let mut tx = db::begin(copy, env).await?;
    for row in history {
        ledger::insert(&mut tx, env, schema, row, None).await?;
    }
    for kept in &old.replaced {
        ledger::insert(&mut tx, env, schema, &kept.entry, Some(kept.replaced_by)).await?;
    }
    for row in &old.entries {
        ledger::insert(&mut tx, env, schema, row, Some(entry.entry_hash)).await?;
    }
    for pin in &old.pins {
        db::policy::insert(&mut tx, env, schema, pin).await?;
    }
    ledger::insert(&mut tx, env, schema, &entry, None).await?;
    db::commit(tx, env).await?;
    Ok(entry)
}

/// Puts the built copy in TO's place. While this run still holds TO's
/// lock, new connections to TO are refused and its sessions (this run's
/// own lock among them) are ended, so no promotion can slip in between;
/// then both renames happen in one transaction and the old database is
/// dropped. If the renames fail, TO is opened again, unchanged.
async fn swap(
    to: &Environment,
    to_url: &str,
    built: &Built,
    target: Target,
) -> Result<i64, DbError> {
    let mut conn = maintenance(to, to_url).await?;
    let current = built.current.as_str();
    let (_, aside) = side_names(current);
    let result = async {
        admin::drop_database(&mut conn, &to.name, &aside).await?;
        admin::allow_connections(&mut conn, &to.name, current, false).await?;
        let ended = admin::terminate_sessions(&mut conn, &to.name, current).await?;
        // Terminated backends leave asynchronously; a rename waits for none.
        let mut tries = 0;
        loop {
            match admin::swap(&mut conn, &to.name, current, &aside, &built.database).await {
                Ok(()) => break,
                Err(_) if tries < 50 => {
                    tries += 1;
                    admin::terminate_sessions(&mut conn, &to.name, current).await?;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        }
        // Two of the sessions ended were this run's own.
        Ok((ended - 2).max(0))
    }
    .await;
    // Its sessions are gone (or, on failure, still hold the lock: closed here).
    drop(target);
    match result {
        Ok(ended) => {
            admin::drop_database(&mut conn, &to.name, &aside).await?;
            db::close(conn).await;
            Ok(ended)
        }
        Err(e) => {
            let _ = admin::allow_connections(&mut conn, &to.name, current, true).await;
            let _ = admin::drop_database(&mut conn, &to.name, &built.database).await;
            db::close(conn).await;
            Err(e)
        }
    }
}

/// Records TO's new head as seen, so the next run does not take the
/// refresh for a rewritten history.
pub(super) async fn save_checkpoint(to: &Environment, schema: &str, hooks: &mut dyn Hooks) {
    let Ok(mut conn) = super::connect(to).await else {
        return;
    };
    let identity = db::identity(&mut conn, &to.name).await;
    if let Ok(Some(head)) = ledger::last(&mut conn, &to.name, schema).await {
        let cp = crate::checkpoint::Checkpoint {
            environment: to.name.clone(),
            database: identity,
            seq: head.seq,
            entry_hash: head.entry_hash,
            seen_at: crate::output::format_time(SystemTime::now()),
        };
        if let Err(e) = crate::checkpoint::save(&crate::checkpoint::state_dir(), &cp) {
            hooks.event(Event::Warning(&format!(
                "could not save {}'s ledger checkpoint: {e}",
                to.name
            )));
        }
    }
    db::close(conn).await;
}
