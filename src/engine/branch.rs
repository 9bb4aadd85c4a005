//! `promoter branch create`: a new database made as a copy of an
//! environment or another branch, its ledger continuing the source's with
//! a `branched` row.
//!
//! In the same cluster, from a source without `promote_from`, the copy is
//! `CREATE DATABASE … TEMPLATE` (a file copy: fast, whatever the size),
//! which needs the source idle: its sessions are ended only after asking.
//! Otherwise — another cluster, a controlled source (whose sessions are
//! never ended), declined, or refused by the server — it is `clone`'s dump
//! path, which never blocks or writes to the source.

use std::time::Duration;

use super::clone::{self, CloneError, CloneOptions};
use super::{Hooks, Target, Trust, who};
use crate::config::{Config, Environment};
use crate::db::{self, admin, fingerprint, ledger};
use crate::ledger::{BRANCH_EVENT, BranchNote, Entry, GENESIS, Status};

/// How a branch is made.
#[derive(Debug, Clone)]
pub struct BranchOptions {
    /// End the source's sessions without asking (the TEMPLATE path).
    pub assume_yes: bool,
    pub lock_wait: Duration,
    /// Parallel jobs of the dump path.
    pub jobs: u32,
    /// Mask the data on the way (always the dump path).
    pub mask: Option<crate::masking::Spec>,
}

/// What `create` did.
#[derive(Debug, Clone)]
pub struct Made {
    /// `template` or `dump`.
    pub method: &'static str,
    /// Why the dump path was taken, when it was.
    pub why_dump: Option<String>,
    /// Sessions of the source ended for the TEMPLATE path.
    pub sessions_ended: i64,
    /// The `branched` row.
    pub entry: Entry,
}

/// Makes `to` (a branch environment whose database does not exist yet) as
/// a copy of `from`. On failure nothing is left behind: a database this run
/// created is dropped.
pub async fn create(
    config: &Config,
    from: &Environment,
    to: &Environment,
    trust: &mut Trust<'_>,
    opts: &BranchOptions,
    hooks: &mut dyn Hooks,
) -> Result<Made, CloneError> {
    let schema = config.file.ledger_schema.as_str();
    let refused = |why: String| CloneError::Refused {
        to: to.name.clone(),
        why,
    };
    let database = database_of(to);

    // The source: its ledger must be whole and finished, as for a refresh.
    let mut source = super::connect(from).await?;
    let checked = async {
        let history = ledger::load(&mut source, &from.name, schema).await?;
        if let Some(b) = crate::ledger::check_chain(&history) {
            return Err(refused(format!(
                "{}'s ledger does not verify at row #{}: {} (run `promoter audit {}`)",
                from.name, b.seq, b.reason, from.name
            )));
        }
        let progress = ledger::load_progress(&mut source, &from.name, schema).await?;
        if let Some(d) = crate::ledger::dirty(&history, &progress).first() {
            return Err(refused(format!(
                "{}'s ledger shows {} left unfinished (row #{}); a branch would carry that state: resolve it first",
                from.name, d.row.changeset_id, d.row.seq
            )));
        }
        let instance = admin::instance(&mut source, &from.name).await?;
        let props = admin::props(&mut source, &from.name).await?;
        Ok((instance, props))
    }
    .await;
    db::close(source).await;
    let (source_instance, source_props) = checked?;

    let mut maint = maintenance(to).await?;
    let result = async {
        if admin::exists(&mut maint, &to.name, &database).await? {
            return Err(refused(format!(
                "database {database} already exists; `promoter branch drop {}` it, or name the branch otherwise",
                to.name
            )));
        }
        let maint_instance = admin::instance(&mut maint, &to.name).await?;
        let cluster = |i: &str| i.split('/').next().unwrap_or_default().to_owned();
        let why_not_template = if from.config.promote_from.is_some() {
            Some(format!(
                "{} is promoted from {}: its sessions are never ended, so it is copied with pg_dump",
                from.name,
                from.config.promote_from.as_deref().unwrap_or("?")
            ))
        } else if cluster(&source_instance) != cluster(&maint_instance) {
            Some(format!(
                "{} is in another cluster than the branch: copied with pg_dump",
                from.name
            ))
        } else {
            None
        };
        let mut sessions_ended = 0;
        let mut why_dump = why_not_template.or_else(|| {
            opts.mask
                .as_ref()
                .map(|m| format!("masked by {}: copied through the spec", m.path.display()))
        });
        if why_dump.is_none() {
            match template(&mut maint, from, to, &source_props.name, &database, opts, hooks).await? {
                Ok(ended) => sessions_ended = ended,
                Err(why) => why_dump = Some(why),
            }
        }
        let entry = match &why_dump {
            None => mark(config, from, to, trust, opts, hooks).await?,
            Some(why) => {
                hooks.event(super::Event::Step(&format!("{why} …")));
                admin::create_like(&mut maint, &to.name, &database, &source_props).await?;
                let copied = clone::clone(
                    config,
                    from,
                    to,
                    trust,
                    &CloneOptions {
                        jobs: opts.jobs,
                        assume_yes: true,
                        lock_wait: opts.lock_wait,
                        source_lock_timeout: "30s".into(),
                        no_owner: false,
                        mask: opts.mask.clone(),
                        strict: false,
                        branch: true,
                    },
                    hooks,
                )
                .await?;
                let mut target = Target::open(to, schema, opts.lock_wait, hooks).await?;
                let entries = target.entries().await;
                target.close().await;
                entries?
                    .into_iter()
                    .find(|e| e.seq == copied.ledger_seq)
                    .ok_or_else(|| CloneError::Failed {
                        to: to.name.clone(),
                        why: "the branched row is not in the copy's ledger".into(),
                    })?
            }
        };
        Ok(Made {
            method: if why_dump.is_none() { "template" } else { "dump" },
            why_dump,
            sessions_ended,
            entry,
        })
    }
    .await;
    if result.is_err() {
        // Whatever this run created goes; a database that was there before
        // (refused above) is never touched.
        let existed_before = matches!(&result, Err(CloneError::Refused { .. }));
        if !existed_before {
            let _ = admin::drop_database(&mut maint, &to.name, &database).await;
        }
    }
    db::close(maint).await;
    result
}

/// The TEMPLATE path: `Ok(Ok(sessions ended))`, or `Ok(Err(why))` when the
/// dump path must be taken instead (declined, or the server refused).
async fn template(
    maint: &mut db::Connection,
    from: &Environment,
    to: &Environment,
    source_db: &str,
    database: &str,
    opts: &BranchOptions,
    hooks: &mut dyn Hooks,
) -> Result<Result<i64, String>, CloneError> {
    let others: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(source_db)
    .fetch_one(&mut *maint)
    .await
    .map_err(|e| db::DbError::query(&to.name, e))?;
    let mut ended = 0;
    if others > 0 {
        let question = format!(
            "{} ({source_db}) has {others} other session{}; end {} to copy it with CREATE DATABASE … TEMPLATE? (no: copy it with pg_dump, which ends nothing) [y/N] ",
            from.name,
            if others == 1 { "" } else { "s" },
            if others == 1 { "it" } else { "them" }
        );
        let yes = opts.assume_yes || hooks.ask(&question).unwrap_or(false);
        if !yes {
            return Ok(Err(format!(
                "{} is in use ({others} session{}), and ending them was not confirmed: copied with pg_dump",
                from.name,
                if others == 1 { "" } else { "s" }
            )));
        }
        hooks.event(super::Event::Step(&format!(
            "ending {others} session{} of {} ({source_db}) for the copy",
            if others == 1 { "" } else { "s" },
            from.name
        )));
        ended = admin::terminate_sessions(maint, &to.name, source_db).await?;
    }
    let major = admin::server_major(maint, &to.name).await?;
    let sql = format!(
        "CREATE DATABASE {} TEMPLATE {}{}",
        admin::ident(database),
        admin::ident(source_db),
        if major >= 15 {
            " STRATEGY FILE_COPY"
        } else {
            ""
        }
    );
    hooks.event(super::Event::Step(&format!(
        "copying {} ({source_db}) into {database} with CREATE DATABASE … TEMPLATE …",
        from.name
    )));
    match sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut *maint)
        .await
    {
        Ok(_) => Ok(Ok(ended)),
        Err(e) => Ok(Err(format!(
            "CREATE DATABASE … TEMPLATE {source_db} was refused ({}): copied with pg_dump",
            db::describe(&e)
        ))),
    }
}

/// Appends the `branched` row to a TEMPLATE copy, whose ledger is the
/// source's verbatim.
async fn mark(
    config: &Config,
    from: &Environment,
    to: &Environment,
    trust: &mut Trust<'_>,
    opts: &BranchOptions,
    hooks: &mut dyn Hooks,
) -> Result<Entry, CloneError> {
    let schema = config.file.ledger_schema.as_str();
    let mut target = Target::open(to, schema, opts.lock_wait, hooks).await?;
    let result = async {
        ledger::ensure(&mut target.conn, &to.name, schema).await?;
        // Trust is pinned per environment: the file copy brought the
        // source's pins, which say nothing about the branch.
        let q = |e: sqlx::Error| db::DbError::query(&to.name, e);
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "BEGIN; ALTER TABLE {schema}.policy DISABLE TRIGGER policy_append_only; \
             DELETE FROM {schema}.policy; \
             ALTER TABLE {schema}.policy ENABLE TRIGGER policy_append_only; COMMIT"
        )))
        .execute(&mut target.conn)
        .await
        .map_err(q)?;
        let entries = target.entries().await?;
        let fp = fingerprint::fingerprint(&mut target.conn, &to.name, schema).await?;
        let (os_user, host) = who();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        let head = entries.last();
        let mut entry = Entry {
            seq: 0,
            changeset_id: BRANCH_EVENT.to_owned(),
            bundle_hash: head.map_or(GENESIS, |h| h.entry_hash),
            environment: to.name.clone(),
            status: Status::Branched,
            signers: "[]".to_owned(),
            promoted_from: Some(from.label()),
            promoted_from_entry: head.map(|h| h.entry_hash),
            git_commit: None,
            os_user,
            host,
            db_role: ledger::current_role(&mut target.conn, &to.name).await?,
            started_at: now,
            finished_at: Some(now),
            schema_before: Some(fp),
            schema_after: Some(fp),
            statements: 0,
            error: None,
            note: Some(
                serde_json::to_string(&BranchNote {
                    from: from.label(),
                    method: "template".into(),
                    masking_sha256: None,
                })
                .unwrap_or_default(),
            ),
            prev_hash: GENESIS,
            entry_hash: GENESIS,
            receipt: None,
        };
        let mut signer = trust.row_signer();
        let mut sign: ledger::RowSigner<'_> = signer
            .as_mut()
            .map(|f| f as &mut dyn FnMut(&[u8]) -> Result<String, String>);
        crate::db::executor::append_alone(
            &mut target.conn,
            &to.name,
            schema,
            &mut entry,
            &mut sign,
        )
        .await?;
        Ok(entry)
    }
    .await;
    if result.is_ok() {
        target.save_checkpoint(hooks).await;
    }
    target.close().await;
    result
}

/// Drops branch `to`'s database, ending its sessions; returns whether it existed.
pub async fn drop(to: &Environment) -> Result<bool, db::DbError> {
    let database = database_of(to);
    let mut maint = maintenance(to).await?;
    let result = async {
        let existed = admin::exists(&mut maint, &to.name, &database).await?;
        if existed {
            admin::drop_database(&mut maint, &to.name, &database).await?;
        }
        Ok(existed)
    }
    .await;
    db::close(maint).await;
    result
}

/// The size of branch `to`'s database in bytes.
pub async fn size(to: &Environment) -> Result<i64, db::DbError> {
    let mut conn = super::connect(to).await?;
    let size = sqlx::query_scalar("SELECT pg_database_size(current_database())")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| db::DbError::query(&to.name, e));
    db::close(conn).await;
    size
}

/// Makes `to`'s database empty: dropped if it exists, then created with
/// the encoding and locale of `like`'s (for scratch databases).
pub async fn create_empty(like: &Environment, to: &Environment) -> Result<(), db::DbError> {
    let mut conn = super::connect(like).await?;
    let props = admin::props(&mut conn, &like.name).await;
    db::close(conn).await;
    let props = props?;
    let database = database_of(to);
    let mut maint = maintenance(to).await?;
    let result = async {
        admin::drop_database(&mut maint, &to.name, &database).await?;
        admin::create_like(&mut maint, &to.name, &database, &props).await
    }
    .await;
    db::close(maint).await;
    result
}

/// `pg_dump` of `env` in plain SQL with `args` (e.g. `--schema-only`),
/// without the psql-only `\restrict` lines recent pg_dump versions write
/// (promoter never runs meta-commands, which is what they guard against).
pub async fn dump_sql(env: &Environment, args: &[String]) -> Result<String, CloneError> {
    let failed = |why: String| CloneError::Failed {
        to: env.name.clone(),
        why,
    };
    let url = env
        .database_url()
        .map_err(|e| db::DbError::Unconfigured(e.to_string()))?;
    let mut conn = super::connect(env).await?;
    let major = admin::server_major(&mut conn, &env.name).await;
    db::close(conn).await;
    let tools = admin::find_tools(major?).map_err(|e| failed(e.to_string()))?;
    let (tool_url, password) = crate::db::conninfo::for_tool(&url, None)
        .map_err(|e| failed(format!("{}: {e}", env.name)))?;
    let dir = tempfile::tempdir().map_err(|e| failed(e.to_string()))?;
    let file = dir.path().join("dump.sql");
    let mut all = vec![
        "--format=plain".to_owned(),
        format!("--file={}", file.display()),
        format!("--dbname={tool_url}"),
    ];
    all.extend(args.iter().cloned());
    admin::run_tool(
        "pg_dump",
        &tools.pg_dump,
        &all,
        password.as_deref(),
        &mut |_| {},
    )
    .await
    .map_err(|e| failed(e.to_string()))?;
    let text =
        std::fs::read_to_string(&file).map_err(|e| failed(format!("{}: {e}", file.display())))?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with("\\restrict ") && !l.starts_with("\\unrestrict "))
        .map(|l| format!("{l}\n"))
        .collect())
}

/// Puts `beside`'s database in the place of `to`'s (same server): `to`'s
/// sessions are ended, both renames happen in one transaction, and the
/// old database is dropped.
pub async fn swap_in(
    to: &Environment,
    beside: &Environment,
    schema: &str,
    hooks: &mut dyn Hooks,
) -> Result<(), db::DbError> {
    let (current, new) = (database_of(to), database_of(beside));
    let aside = format!("{new}_old");
    let mut maint = maintenance(to).await?;
    let result = async {
        admin::drop_database(&mut maint, &to.name, &aside).await?;
        if admin::exists(&mut maint, &to.name, &current).await? {
            admin::allow_connections(&mut maint, &to.name, &current, false).await?;
            admin::terminate_sessions(&mut maint, &to.name, &current).await?;
            if let Err(e) = admin::swap(&mut maint, &to.name, &current, &aside, &new).await {
                let _ = admin::allow_connections(&mut maint, &to.name, &current, true).await;
                return Err(e);
            }
            admin::drop_database(&mut maint, &to.name, &aside).await
        } else {
            let sql = format!(
                "ALTER DATABASE {} RENAME TO {}",
                admin::ident(&new),
                admin::ident(&current)
            );
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut maint)
                .await
                .map(|_| ())
                .map_err(|e| db::DbError::query(&to.name, e))
        }
    }
    .await;
    db::close(maint).await;
    result?;
    // The checkpoint goes with the name: the head promoter saw of the old
    // database is not this one's.
    clone::save_checkpoint(to, schema, hooks).await;
    Ok(())
}

/// The database a branch environment names (set by `branch::environment`).
fn database_of(env: &Environment) -> String {
    env.config
        .database
        .clone()
        .expect("a branch environment names its database")
}

/// A connection to the maintenance database of `env`'s server.
async fn maintenance(env: &Environment) -> Result<db::Connection, db::DbError> {
    let url = env
        .database_url()
        .map_err(|e| db::DbError::Unconfigured(e.to_string()))?;
    clone::maintenance(env, &url).await
}
