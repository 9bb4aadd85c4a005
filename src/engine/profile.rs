//! `promoter profile save|restore`: a pg_dump directory of one consistent
//! moment of an environment, and its restore into DEV or a branch, checked
//! against the schema fingerprint and ledger head it was taken at.

use std::path::Path;
use std::time::Duration;

use super::clone::{self, CloneError};
use super::{Hooks, Target, Trust, who};
use crate::config::{Config, Environment};
use crate::db::{self, admin, conninfo, fingerprint, ledger};
use crate::ledger::{Entry, GENESIS, Head, REFRESH_EVENT, RefreshNote, Status};
use crate::profile::Profile;

/// What a save found at the moment it dumped.
#[derive(Debug, Clone)]
pub struct Saved {
    pub schema_fingerprint: crate::changeset::Sha256Digest,
    pub ledger_head: Option<Head>,
}

/// Dumps `from` into `dir` (which must not exist) in one snapshot: the
/// ledger head and schema fingerprint recorded are those of the data dumped.
/// Read-only on the source: pg_dump takes share locks, and waits at most
/// `lock_timeout` for one.
pub async fn save(
    config: &Config,
    from: &Environment,
    dir: &Path,
    jobs: u32,
    hooks: &mut dyn Hooks,
) -> Result<Saved, CloneError> {
    let schema = config.file.ledger_schema.as_str();
    let refused = |why: String| CloneError::Refused {
        to: from.name.clone(),
        why,
    };
    let url = from
        .database_url()
        .map_err(|e| db::DbError::Unconfigured(e.to_string()))?;
    let mut source = super::connect(from).await?;
    let result = async {
        let q = |e: sqlx::Error| db::DbError::query(&from.name, e);
        sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut source)
            .await
            .map_err(q)?;
        let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
            .fetch_one(&mut source)
            .await
            .map_err(q)?;
        let history = ledger::load(&mut source, &from.name, schema).await?;
        if let Some(b) = crate::ledger::check_chain(&history) {
            return Err(refused(format!(
                "{}'s ledger does not verify at row #{}: {}",
                from.name, b.seq, b.reason
            )));
        }
        let progress = ledger::load_progress(&mut source, &from.name, schema).await?;
        if let Some(d) = crate::ledger::dirty(&history, &progress).first() {
            return Err(refused(format!(
                "{}'s ledger shows {} left unfinished (row #{}); a profile would carry that state",
                from.name, d.row.changeset_id, d.row.seq
            )));
        }
        let fp = fingerprint::fingerprint(&mut source, &from.name, schema).await?;
        let major = admin::server_major(&mut source, &from.name).await?;
        let tools = admin::find_tools(major).map_err(|e| refused(e.to_string()))?;
        let (tool_url, password) =
            conninfo::for_tool(&url, None).map_err(|e| refused(format!("{}: {e}", from.name)))?;
        hooks.event(super::Event::Step(&format!(
            "dumping {} ({jobs} jobs, {}) …",
            from.name, tools.version
        )));
        let args = vec![
            "--format=directory".to_owned(),
            format!("--jobs={jobs}"),
            format!("--file={}", dir.display()),
            format!("--snapshot={snapshot}"),
            "--lock-wait-timeout=30s".to_owned(),
            "--no-sync".to_owned(),
            // Trust is pinned per environment: a profile never carries it.
            format!("--exclude-table-data={schema}.policy"),
            format!("--dbname={tool_url}"),
        ];
        admin::run_tool(
            "pg_dump",
            &tools.pg_dump,
            &args,
            password.as_deref(),
            &mut |_| {},
        )
        .await
        .map_err(|e| CloneError::Failed {
            to: from.name.clone(),
            why: e.to_string(),
        })?;
        let _ = sqlx::raw_sql("COMMIT").execute(&mut source).await;
        Ok(Saved {
            schema_fingerprint: fp,
            ledger_head: history.last().map(Head::of),
        })
    }
    .await;
    db::close(source).await;
    result
}

/// How a restore goes.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// End the target's sessions without asking.
    pub assume_yes: bool,
    pub jobs: u32,
    pub lock_wait: Duration,
    /// Restore without the dump's owners and grants.
    pub no_owner: bool,
}

/// Replaces `to`'s database with `profile`'s artifact in `dir` (already
/// verified against the profile), or with an empty one for `clean-db`
/// (`None`). A restored database must show the schema fingerprint and
/// ledger head the profile recorded; its ledger then continues with a
/// `refreshed` row naming the profile, the replaced ledger kept in
/// `ledger_replaced` (rows downstream were promoted from it).
pub async fn restore(
    config: &Config,
    to: &Environment,
    profile: Option<(&Profile, &Path)>,
    trust: &mut Trust<'_>,
    opts: &RestoreOptions,
    hooks: &mut dyn Hooks,
) -> Result<Option<Entry>, CloneError> {
    let schema = config.file.ledger_schema.as_str();
    let to_url = to
        .database_url()
        .map_err(|e| db::DbError::Unconfigured(e.to_string()))?;
    // What the database holds now goes to `ledger_replaced` in the new one,
    // as a refresh keeps it: rows downstream were promoted from it.
    let mut conn = super::connect(to).await?;
    let read = async {
        let props = admin::props(&mut conn, &to.name).await?;
        let old = ledger::load(&mut conn, &to.name, schema).await?;
        let kept = ledger::load_replaced(&mut conn, &to.name, schema).await?;
        Ok::<_, db::DbError>((props, old, kept))
    }
    .await;
    db::close(conn).await;
    let (props, old_entries, old_kept) = read?;
    let mut maint = clone::maintenance(to, &to_url).await?;
    let replaced = async {
        let others: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&props.name)
        .fetch_one(&mut maint)
        .await
        .map_err(|e| db::DbError::query(&to.name, e))?;
        let question = format!(
            "replace {} ({}) with {}{}? [y/N] ",
            to.name,
            props.name,
            profile.map_or("an empty database".to_owned(), |(p, _)| format!(
                "profile {}",
                p.name
            )),
            if others > 0 {
                format!(
                    "; its {others} other session{} will be ended",
                    if others == 1 { "" } else { "s" }
                )
            } else {
                String::new()
            }
        );
        if !opts.assume_yes && !hooks.ask(&question).map_err(CloneError::CannotAsk)? {
            return Err(CloneError::NotConfirmed {
                to: to.name.clone(),
            });
        }
        // Built beside the current database and checked there; swapped in
        // only then, so a failed restore leaves the database as it was.
        let side = side_name(&props.name);
        admin::drop_database(&mut maint, &to.name, &side).await?;
        admin::create_like(&mut maint, &to.name, &side, &props).await?;
        let mut side_env = to.clone();
        side_env.config.database = Some(side.clone());
        let side_url = side_env
            .database_url()
            .map_err(|e| db::DbError::Unconfigured(e.to_string()))?;
        let built = build_side(&side_env, &side_url, profile, opts, schema, hooks).await;
        if let Err(e) = built {
            let _ = admin::drop_database(&mut maint, &to.name, &side).await;
            return Err(e);
        }
        let aside = format!("{side}_old");
        admin::drop_database(&mut maint, &to.name, &aside).await?;
        admin::allow_connections(&mut maint, &to.name, &props.name, false).await?;
        admin::terminate_sessions(&mut maint, &to.name, &props.name).await?;
        let swapped = admin::swap(&mut maint, &to.name, &props.name, &aside, &side).await;
        if let Err(e) = swapped {
            let _ = admin::allow_connections(&mut maint, &to.name, &props.name, true).await;
            let _ = admin::drop_database(&mut maint, &to.name, &side).await;
            return Err(e.into());
        }
        admin::drop_database(&mut maint, &to.name, &aside).await?;
        admin::adopt_props(&mut maint, &to.name, &props.name, &props).await?;
        Ok(())
    }
    .await;
    db::close(maint).await;
    replaced?;
    let mut target = Target::open(to, schema, opts.lock_wait, hooks).await?;
    let result = async {
        let fp = fingerprint::fingerprint(&mut target.conn, &to.name, schema).await?;
        let entries = target.entries().await?;
        ledger::ensure(&mut target.conn, &to.name, schema).await?;
        let (name, from, masking) = match profile {
            Some((p, _)) => (p.name.as_str(), p.from.as_str(), p.masking_sha256.clone()),
            None => (crate::profile::CLEAN_DB, "nothing", None),
        };
        let (os_user, host) = who();
        let tables = admin::tables(&mut target.conn, &to.name, schema).await?;
        let rows: i64 = admin::row_counts(&mut target.conn, &to.name, &tables)
            .await?
            .iter()
            .sum();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        let last = entries.last();
        let note = RefreshNote {
            replaced: old_entries.last().map(Head::of),
            masking_sha256: masking,
            tables: tables.len() as u64,
            rows: rows as u64,
        };
        let mut entry = Entry {
            seq: 0,
            changeset_id: REFRESH_EVENT.to_owned(),
            bundle_hash: last.map_or(GENESIS, |h| h.entry_hash),
            environment: to.name.clone(),
            status: Status::Refreshed,
            signers: "[]".to_owned(),
            promoted_from: Some(format!("profile {name} (taken from {from})")),
            promoted_from_entry: last.map(|h| h.entry_hash),
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
            note: Some(serde_json::to_string(&note).unwrap_or_default()),
            prev_hash: GENESIS,
            entry_hash: GENESIS,
            receipt: None,
        };
        entry.seal(last);
        if let Some(mut sign) = trust.row_signer() {
            entry.receipt =
                Some(
                    sign(&entry.canonical_bytes()).map_err(|e| CloneError::Failed {
                        to: to.name.clone(),
                        why: format!(
                            "signing the refreshed row with {}'s receipt key: {e}",
                            to.name
                        ),
                    })?,
                );
        }
        let mut tx = db::begin(&mut target.conn, &to.name).await?;
        for k in &old_kept {
            ledger::insert(&mut tx, &to.name, schema, &k.entry, Some(k.replaced_by)).await?;
        }
        for row in &old_entries {
            ledger::insert(&mut tx, &to.name, schema, row, Some(entry.entry_hash)).await?;
        }
        ledger::insert(&mut tx, &to.name, schema, &entry, None).await?;
        db::commit(tx, &to.name).await?;
        // The row as stored, with its sequence number.
        let stored = target
            .entries()
            .await?
            .into_iter()
            .find(|e| e.entry_hash == entry.entry_hash)
            .unwrap_or(entry);
        let entry = stored;
        Ok(entry)
    }
    .await;
    if result.is_ok() {
        target.save_checkpoint(hooks).await;
    }
    target.close().await;
    result.map(Some)
}

/// The database a restore is built in, beside `db` (at most 63 bytes with
/// the `_old` the swap gives the replaced one).
fn side_name(db: &str) -> String {
    let mut stem = db.to_owned();
    while stem.len() > 39 {
        stem.pop();
    }
    format!("{stem}__promoter_restore")
}

/// Restores the artifact into the side database and checks it there: the
/// schema and ledger head the profile recorded. Nothing for clean-db.
async fn build_side(
    side: &Environment,
    side_url: &str,
    profile: Option<(&Profile, &Path)>,
    opts: &RestoreOptions,
    schema: &str,
    hooks: &mut dyn Hooks,
) -> Result<(), CloneError> {
    let failed = |why: String| CloneError::Failed {
        to: side.name.clone(),
        why,
    };
    let Some((p, dir)) = profile else {
        return Ok(());
    };
    let mut conn = super::connect(side).await?;
    let major = admin::server_major(&mut conn, &side.name).await;
    db::close(conn).await;
    let tools = admin::find_tools(major?).map_err(|e| failed(e.to_string()))?;
    let (tool_url, password) =
        conninfo::for_tool(side_url, None).map_err(|e| failed(format!("{}: {e}", side.name)))?;
    hooks.event(super::Event::Step(&format!(
        "restoring profile {} for {} ({} jobs) …",
        p.name, side.name, opts.jobs
    )));
    let mut args = vec![
        "--format=directory".to_owned(),
        format!("--jobs={}", opts.jobs),
        "--exit-on-error".to_owned(),
        format!("--dbname={tool_url}"),
    ];
    if opts.no_owner {
        args.push("--no-owner".into());
        args.push("--no-privileges".into());
    }
    args.push(dir.display().to_string());
    admin::run_tool(
        "pg_restore",
        &tools.pg_restore,
        &args,
        password.as_deref(),
        &mut |_| {},
    )
    .await
    .map_err(|e| failed(e.to_string()))?;
    let mut conn = super::connect(side).await?;
    let checked = async {
        let fp = fingerprint::fingerprint(&mut conn, &side.name, schema).await?;
        let entries = ledger::load(&mut conn, &side.name, schema).await?;
        check_restored(side, p, fp, &entries)
    }
    .await;
    db::close(conn).await;
    checked
}

/// A restored artifact must show the schema and ledger head its profile
/// recorded; otherwise the restore is not the profile.
fn check_restored(
    to: &Environment,
    p: &Profile,
    fp: crate::changeset::Sha256Digest,
    entries: &[Entry],
) -> Result<(), CloneError> {
    let failed = |why: String| CloneError::Failed {
        to: to.name.clone(),
        why,
    };
    if fp != p.schema_fingerprint {
        return Err(failed(format!(
            "the restored schema (fingerprint {}) is not the one profile {} was taken with ({}); the database holds the restore as it came out",
            fp.short(),
            p.name,
            p.schema_fingerprint.short()
        )));
    }
    let head = entries.last().map(Head::of);
    if head != p.ledger_head {
        let show = |h: Option<Head>| {
            h.map_or("no row".into(), |h| {
                format!("#{} {}", h.seq, h.entry_hash.short())
            })
        };
        return Err(failed(format!(
            "the restored ledger ends at {}, not at the head profile {} recorded ({})",
            show(head),
            p.name,
            show(p.ledger_head)
        )));
    }
    Ok(())
}
