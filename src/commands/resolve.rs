//! `promoter resolve ENV CHANGESET --applied|--rolled-back --note "…"`: an
//! operator records how a partial, non-transactional application ended.

use std::process::ExitCode;

use super::target::{self, Target};
use super::{CommandError, Context};
use crate::cli::{ResolveArgs, RunArgs};
use crate::db::{executor, ledger};
use crate::ledger::Status;
use crate::output;

/// Appends a `resolved-applied` or `resolved-rolled-back` row for a changeset
/// left partially applied, with the operator's note; the environment is then
/// clean again.
pub fn run(ctx: &Context, args: &ResolveArgs) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let env = config.environment(&args.env)?;
    let run = RunArgs {
        dry_run: false,
        yes: true,
        lock_timeout: 30,
        allow_drift: false,
    };
    target::runtime()?.block_on(async {
        let mut target = Target::open(&config, &env, &run).await?;
        let result = async {
            let entries = target.entries().await?;
            let dirty = target::dirty(&entries);
            let Some(row) = dirty.iter().find(|e| {
                crate::changeset::ChangesetId::parse(&e.changeset_id)
                    .is_ok_and(|id| id.matches(&args.changeset))
            }) else {
                return Err(CommandError::new(format!(
                    "{}: `{}` is not partially applied; nothing to resolve",
                    env.name, args.changeset
                ))
                .into());
            };
            let mut entry = (*row).clone();
            let (os_user, host) = target::who();
            entry.status = if args.applied {
                Status::ResolvedApplied
            } else {
                Status::ResolvedRolledBack
            };
            entry.os_user = os_user;
            entry.host = host;
            entry.db_role = ledger::current_role(&mut target.conn, env.name).await?;
            entry.error = None;
            entry.note = Some(args.note.clone());
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as i64);
            entry.started_at = now;
            entry.finished_at = Some(now);
            executor::append_alone(&mut target.conn, env.name, &target.schema, &mut entry).await?;
            output::print(&format!(
                "recorded {} as {} in {} (ledger #{})",
                entry.changeset_id,
                entry.status.as_str(),
                env.name,
                entry.seq
            ));
            Ok(ExitCode::SUCCESS)
        }
        .await;
        target.close().await;
        result
    })
}
