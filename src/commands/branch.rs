//! `promoter branch create|list|reset|drop`: branch databases, each an
//! environment without `promote_from` that every command knows by name.

use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;

use super::run::StderrHooks;
use super::{CommandError, Context};
use crate::branch::{self, Kind, Record, Registry};
use crate::changeset::Sha256Digest;
use crate::cli::{BranchCreateArgs, BranchDropArgs, BranchResetArgs};
use crate::config::Config;
use crate::engine::{self, branch::BranchOptions};
use crate::output;

/// JSON: `promoter --json branch create|reset`.
#[derive(Serialize)]
struct MadeView {
    branch: String,
    from: String,
    database: String,
    /// `template` or `dump`.
    method: &'static str,
    /// Why it was copied with pg_dump, when it was.
    why_dump: Option<String>,
    /// Sessions of the source ended for the TEMPLATE copy.
    sessions_ended: i64,
    /// The `branched` row.
    ledger_seq: i64,
    entry_hash: Sha256Digest,
}

/// JSON: one branch of `promoter --json branch list`.
#[derive(Serialize)]
struct BranchView {
    name: String,
    from: String,
    database: String,
    method: String,
    created_at: String,
    created_by: String,
    /// Why it could not be read, if it could not.
    unreachable: Option<String>,
    /// `#seq entry-hash` of its ledger's last row.
    head: Option<String>,
    applied: usize,
    /// Sealed changesets of the work tree it has not applied.
    pending: usize,
    bytes: Option<i64>,
}

/// JSON: `promoter --json branch list`.
#[derive(Serialize)]
struct ListView {
    branches: Vec<BranchView>,
}

/// JSON: `promoter --json branch drop`.
#[derive(Serialize)]
struct DroppedView {
    branch: String,
    database: String,
    /// Whether the database was there to drop.
    existed: bool,
}

fn usage(message: String) -> anyhow::Error {
    CommandError::usage(message).into()
}

fn registry(ctx: &Context) -> anyhow::Result<Registry> {
    Registry::load(&ctx.root).map_err(usage)
}

/// Makes branch NAME from `--from` (or its kind's default).
pub fn create(ctx: &Context, args: &BranchCreateArgs) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let kind = Kind::of(&args.name).map_err(usage)?;
    if config.file.environments.contains_key(&args.name) {
        return Err(usage(format!(
            "{} is an environment in environments.yaml, not a branch",
            args.name
        )));
    }
    let mut reg = registry(ctx)?;
    if reg.branches.contains_key(&args.name) {
        return Err(CommandError::usage(format!("branch {} exists", args.name))
            .with_hint(format!(
                "`promoter branch reset {}` makes it again from its source",
                args.name
            ))
            .into());
    }
    let from = match (&args.from, kind.default_from()) {
        (Some(f), _) => f.clone(),
        (None, Some(d)) => d.to_owned(),
        (None, None) => {
            return Err(usage(format!(
                "{}: say what to copy with --from (an environment, e.g. --from prd, or a branch)",
                args.name
            )));
        }
    };
    let base = from.split('/').next().unwrap_or(&from);
    let from_is_env = config.file.environments.contains_key(base);
    if !from_is_env && !reg.branches.contains_key(&from) {
        let mut known: Vec<&String> = reg.branches.keys().collect();
        known.extend(config.file.environments.keys());
        return Err(usage(format!(
            "--from {from}: no such environment or branch (known: {})",
            known
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    kind.check_from(&args.name, &from, from_is_env)
        .map_err(usage)?;
    let record = plan_record(&config, &reg, &args.name, &from, from_is_env)?;
    let made = make(
        ctx,
        &config,
        &args.name,
        &from,
        &record,
        args.yes,
        args.jobs,
        args.lock_wait,
        None,
    )?;
    reg.branches.insert(
        args.name.clone(),
        Record {
            method: made.method.into(),
            ..record
        },
    );
    reg.save(&ctx.root).map_err(|e| anyhow::anyhow!(e))?;
    report(ctx, &args.name, &from, &reg.branches[&args.name], &made)
}

/// Where the branch will live, and under what name.
pub(super) fn plan_record(
    config: &Config,
    reg: &Registry,
    name: &str,
    from: &str,
    from_is_env: bool,
) -> anyhow::Result<Record> {
    let root = if from_is_env {
        from.to_owned()
    } else {
        reg.branches[from].root.clone()
    };
    let root_env = config.environment(&root)?;
    let in_branch_cluster = config.file.branches.database_url.is_some();
    if !in_branch_cluster && root_env.config.promote_from.is_some() {
        return Err(CommandError::usage(format!(
            "{name} would be made in {root}'s cluster, and promoter never creates databases in a controlled environment's cluster"
        ))
        .with_hint("name a cluster for branches in environments.yaml: `branches: { database_url: ${BRANCH_DATABASE_URL} }`")
        .into());
    }
    let root_db = crate::db::conninfo::dbname(&root_env.database_url()?)
        .map_err(usage)?
        .ok_or_else(|| usage(format!("{root}'s database_url names no database")))?;
    let database = branch::database_name(&root_db, name).map_err(usage)?;
    let (user, host) = (
        whoami::username().unwrap_or_else(|_| "unknown".into()),
        whoami::hostname().unwrap_or_else(|_| "unknown".into()),
    );
    Ok(Record {
        from: from.to_owned(),
        root,
        database,
        in_branch_cluster,
        method: String::new(),
        created_at: output::format_time(std::time::SystemTime::now()),
        created_by: format!("{user}@{host}"),
    })
}

/// Runs the engine: the copy and its `branched` row.
#[allow(clippy::too_many_arguments)]
pub(super) fn make(
    ctx: &Context,
    config: &Config,
    name: &str,
    from: &str,
    record: &Record,
    yes: bool,
    jobs: u32,
    lock_wait: u64,
    mask: Option<crate::masking::Spec>,
) -> anyhow::Result<engine::branch::Made> {
    let to = branch::environment(config, name, record).map_err(usage)?;
    make_into(ctx, config, from, &to, yes, jobs, lock_wait, mask)
}

/// Copies `from` into the (not yet existing) database of `to`.
#[allow(clippy::too_many_arguments)]
fn make_into(
    ctx: &Context,
    config: &Config,
    from: &str,
    to: &crate::config::Environment,
    yes: bool,
    jobs: u32,
    lock_wait: u64,
    mask: Option<crate::masking::Spec>,
) -> anyhow::Result<engine::branch::Made> {
    let from_env = config.environment(from)?;
    if from_env.is_fleet() {
        return Err(usage(format!(
            "{from} is a fleet; name the target to copy, as {from}/TARGET"
        )));
    }
    let keyrings = ctx.keyrings()?;
    let mut trust = engine::Trust {
        git_keyrings: &keyrings,
        git_policy: None,
        receipt: None,
    };
    let mut hooks = StderrHooks {
        assume_yes: false,
        ..StderrHooks::default()
    };
    ctx.block_on(engine::branch::create(
        config,
        &from_env,
        to,
        &mut trust,
        &BranchOptions {
            assume_yes: yes,
            lock_wait: Duration::from_secs(lock_wait),
            jobs,
            mask,
        },
        &mut hooks,
    ))
    .map_err(super::clone::error)
}

fn report(
    ctx: &Context,
    name: &str,
    from: &str,
    record: &Record,
    made: &engine::branch::Made,
) -> anyhow::Result<ExitCode> {
    if ctx.json {
        output::print_json(&MadeView {
            branch: name.to_owned(),
            from: from.to_owned(),
            database: record.database.clone(),
            method: made.method,
            why_dump: made.why_dump.clone(),
            sessions_ended: made.sessions_ended,
            ledger_seq: made.entry.seq,
            entry_hash: made.entry.entry_hash,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let how = match made.method {
        "template" => "CREATE DATABASE … TEMPLATE".to_owned(),
        _ => "pg_dump and pg_restore".to_owned(),
    };
    output::print(&format!(
        "branch {name}: database {} made from {from} with {how}; ledger continues {from}'s, `branched` #{}",
        record.database, made.entry.seq
    ))?;
    if let Some(why) = &made.why_dump {
        output::eprint(&format!("note: {why}"));
    }
    if made.sessions_ended > 0 {
        output::eprint(&format!(
            "note: {} of {from} ended for the copy",
            output::plural(made.sessions_ended as usize, "session")
        ));
    }
    output::eprint(&format!(
        "next: `promoter apply {name}` applies the work tree's pending changesets to it"
    ));
    Ok(ExitCode::SUCCESS)
}

/// Lists every branch with what its ledger says, read at once.
pub fn list(ctx: &Context) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let reg = registry(ctx)?;
    let bundles: Vec<crate::changeset::Bundle> = crate::changeset::source::discover(&ctx.root)?
        .iter()
        .map(crate::changeset::source::load_dir)
        .collect::<Result<_, _>>()?;
    let schema = &config.file.ledger_schema;
    let mut views = Vec::new();
    for (name, record) in &reg.branches {
        let mut view = BranchView {
            name: name.clone(),
            from: record.from.clone(),
            database: record.database.clone(),
            method: record.method.clone(),
            created_at: record.created_at.clone(),
            created_by: record.created_by.clone(),
            unreachable: None,
            head: None,
            applied: 0,
            pending: 0,
            bytes: None,
        };
        let read = branch::environment(&config, name, record)
            .map_err(|e| e.to_string())
            .and_then(|env| {
                ctx.block_on(async {
                    let l = engine::read_ledger(&env, schema)
                        .await
                        .map_err(|e| e.to_string())?;
                    let size = engine::branch::size(&env)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok::<_, String>((l, size))
                })
            });
        match read {
            Err(why) => view.unreachable = Some(why),
            Ok((l, size)) => {
                let applied = crate::ledger::applied(&l.entries);
                view.head = l
                    .entries
                    .last()
                    .map(|e| format!("#{} {}", e.seq, e.entry_hash.short()));
                view.applied = applied.len();
                view.pending = bundles
                    .iter()
                    .filter(|b| b.hash().is_some())
                    .filter(|b| !applied.iter().any(|a| a.changeset_id == b.id.as_str()))
                    .count();
                view.bytes = Some(size);
            }
        }
        views.push(view);
    }
    if ctx.json {
        output::print_json(&ListView { branches: views })?;
        return Ok(ExitCode::SUCCESS);
    }
    if views.is_empty() {
        output::print("no branches yet: `promoter branch create develop --from dev` makes one")?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![
        [
            "BRANCH", "FROM", "DATABASE", "MADE BY", "HEAD", "APPLIED", "PENDING", "SIZE",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for v in &views {
        match &v.unreachable {
            Some(why) => rows.push(vec![
                v.name.clone(),
                v.from.clone(),
                v.database.clone(),
                v.method.clone(),
                format!("unreachable: {why}"),
                "-".into(),
                "-".into(),
                "-".into(),
            ]),
            None => rows.push(vec![
                v.name.clone(),
                v.from.clone(),
                v.database.clone(),
                v.method.clone(),
                v.head.clone().unwrap_or_else(|| "empty".into()),
                v.applied.to_string(),
                v.pending.to_string(),
                v.bytes
                    .map_or("-".into(), |b| format!("{:.1} MiB", b as f64 / 1_048_576.0)),
            ]),
        }
    }
    let printed = output::table(&rows)
        .iter()
        .try_for_each(|l| output::print(l));
    output::unless_closed(printed)?;
    Ok(ExitCode::SUCCESS)
}

/// Asks before dropping (or `--yes`); refused without a terminal.
fn confirm(question: &str, yes: bool) -> anyhow::Result<()> {
    let mut hooks = StderrHooks {
        assume_yes: yes,
        ..StderrHooks::default()
    };
    if engine::Hooks::ask(&mut hooks, question)? {
        Ok(())
    } else {
        Err(CommandError::refused("not confirmed; nothing was dropped").into())
    }
}

/// Drops NAME's database and makes it again from its source.
pub fn reset(ctx: &Context, args: &BranchResetArgs) -> anyhow::Result<ExitCode> {
    // From a data profile: DEV too (`branch reset dev --profile clean-db`).
    if let Some(profile) = &args.profile {
        return super::profile::restore_into(
            ctx,
            profile,
            &args.name,
            args.yes,
            args.jobs,
            false,
            args.lock_wait,
        );
    }
    let config = ctx.config()?;
    let mut reg = registry(ctx)?;
    let record = reg.branches.get(&args.name).cloned().ok_or_else(|| {
        usage(format!(
            "no branch {} (see `promoter branch list`)",
            args.name
        ))
    })?;
    let to = branch::environment(&config, &args.name, &record).map_err(usage)?;
    confirm(
        &format!(
            "drop {} (database {}, its sessions ended) and make it again from {}? [y/N] ",
            args.name, record.database, record.from
        ),
        args.yes,
    )?;
    // The new copy is made beside the branch and swapped in when whole: a
    // copy that fails leaves the branch as it was.
    let fresh = Record {
        created_at: output::format_time(std::time::SystemTime::now()),
        ..record.clone()
    };
    let mut beside = to.clone();
    beside.config.database = Some(format!(
        "{}__promoter_reset",
        record.database.chars().take(40).collect::<String>()
    ));
    let _ = ctx.block_on(engine::branch::drop(&beside));
    let made = make_into(
        ctx,
        &config,
        &record.from,
        &beside,
        args.yes,
        args.jobs,
        args.lock_wait,
        None,
    )?;
    ctx.block_on(engine::branch::swap_in(
        &to,
        &beside,
        &config.file.ledger_schema,
        &mut StderrHooks::default(),
    ))?;
    reg.branches.insert(
        args.name.clone(),
        Record {
            method: made.method.into(),
            ..fresh
        },
    );
    reg.save(&ctx.root).map_err(|e| anyhow::anyhow!(e))?;
    report(
        ctx,
        &args.name,
        &record.from,
        &reg.branches[&args.name],
        &made,
    )
}

/// Drops NAME's database and its record.
pub fn drop(ctx: &Context, args: &BranchDropArgs) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let mut reg = registry(ctx)?;
    let record = reg.branches.get(&args.name).cloned().ok_or_else(|| {
        usage(format!(
            "no branch {} (see `promoter branch list`); promoter drops only databases it made as branches",
            args.name
        ))
    })?;
    let to = branch::environment(&config, &args.name, &record).map_err(usage)?;
    confirm(
        &format!(
            "drop branch {} (database {}, its sessions ended)? [y/N] ",
            args.name, record.database
        ),
        args.yes,
    )?;
    let existed = ctx.block_on(engine::branch::drop(&to))?;
    reg.branches.remove(&args.name);
    reg.save(&ctx.root).map_err(|e| anyhow::anyhow!(e))?;
    if ctx.json {
        output::print_json(&DroppedView {
            branch: args.name.clone(),
            database: record.database,
            existed,
        })?;
    } else if existed {
        output::print(&format!(
            "dropped branch {} (database {})",
            args.name, record.database
        ))?;
    } else {
        output::print(&format!(
            "forgot branch {}: its database {} was already gone",
            args.name, record.database
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
