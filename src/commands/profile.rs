//! `promoter profile save|restore|list|verify`: data profiles.

use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;

use super::run::StderrHooks;
use super::{CommandError, Context, ErrorKind};
use crate::changeset::Sha256Digest;
use crate::cli::{ProfileRestoreArgs, ProfileSaveArgs, ProfileVerifyArgs};
use crate::engine::{self, profile::RestoreOptions};
use crate::ledger::Head;
use crate::output;
use crate::profile::{self, Artifact, CLEAN_DB, Profile};

/// JSON: `promoter --json profile save`.
#[derive(Serialize)]
struct SavedView {
    profile: String,
    /// The committed pin, relative to the project.
    file: String,
    /// The artifact's directory.
    artifact: String,
    artifact_sha256: Sha256Digest,
    bytes: u64,
    files: usize,
    schema_fingerprint: Sha256Digest,
    ledger_head: Option<Head>,
}

/// JSON: `promoter --json profile restore`.
#[derive(Serialize)]
struct RestoredView {
    profile: String,
    to: String,
    /// The `refreshed` row naming the profile.
    ledger_seq: Option<i64>,
    /// Changesets applied after the restore, in order.
    applied: Vec<String>,
}

/// JSON: one profile of `promoter --json profile list`.
#[derive(Serialize)]
struct ProfileView {
    name: String,
    from: Option<String>,
    taken_at: Option<String>,
    taken_by: Option<String>,
    bytes: Option<u64>,
    /// Whether its artifact is in the store (always true for clean-db).
    in_store: bool,
    /// Why profile.yaml could not be read, if it could not.
    error: Option<String>,
}

/// JSON: `promoter --json profile list`.
#[derive(Serialize)]
struct ListView {
    store: String,
    profiles: Vec<ProfileView>,
}

/// JSON: `promoter --json profile verify`.
#[derive(Serialize)]
struct VerifyView {
    profile: String,
    ok: bool,
    /// Every file that differs from its pin.
    problems: Vec<String>,
}

fn usage(message: String) -> anyhow::Error {
    CommandError::usage(message).into()
}

pub fn save(ctx: &Context, args: &ProfileSaveArgs) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    profile::check_name(&args.name).map_err(usage)?;
    if args.name == CLEAN_DB {
        return Err(usage(format!(
            "{CLEAN_DB} is built from an empty database and the changesets, never saved"
        )));
    }
    let pin = profile::file(&ctx.root, &args.name);
    if pin.exists() && !args.force {
        return Err(CommandError::usage(format!(
            "profile {} exists ({})",
            args.name,
            pin.display()
        ))
        .with_hint("pass --force to replace it")
        .into());
    }
    let from = config.environment(&args.from)?;
    if from.is_fleet() {
        return Err(usage(format!(
            "{} is a fleet; name the target, as {}/TARGET",
            from.name, from.name
        )));
    }
    let store = config.file.profiles.store_dir(&ctx.root);
    let taken_at = output::format_time(std::time::SystemTime::now());
    let rel = format!(
        "{}/{}",
        args.name,
        taken_at.replace([':', '-'], "").trim_end_matches('Z')
    );
    let dir = store.join(&rel);
    if dir.exists() {
        return Err(usage(format!(
            "{} exists already; try again in a second",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir.parent().expect("the artifact has a parent"))
        .map_err(|e| anyhow::anyhow!("{}: {e}", store.display()))?;
    let mut hooks = StderrHooks::default();
    let (saved, masking_sha256) = match &args.mask {
        None => (
            ctx.block_on(engine::profile::save(
                &config, &from, &dir, args.jobs, &mut hooks,
            )),
            None,
        ),
        Some(path) => {
            let spec = crate::masking::Spec::load(&ctx.cwd.join(path))
                .map_err(|e| usage(e.to_string()))?;
            let sha = spec.sha256.to_hex();
            (masked(ctx, &config, args, &dir, spec)?, Some(sha))
        }
    };
    let saved = match saved {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(super::clone::error(e));
        }
    };
    let (files, bytes) = profile::hash_dir(&dir).map_err(|e| anyhow::anyhow!(e))?;
    let (user, host) = (
        whoami::username().unwrap_or_else(|_| "unknown".into()),
        whoami::hostname().unwrap_or_else(|_| "unknown".into()),
    );
    let record = Profile {
        name: args.name.clone(),
        from: from.label(),
        taken_at,
        taken_by: format!("{user}@{host}"),
        artifact: Artifact {
            format: "pg_dump-directory".into(),
            path: rel,
            sha256: profile::manifest_hash(&files),
            bytes,
            files,
        },
        schema_fingerprint: saved.schema_fingerprint,
        ledger_head: saved.ledger_head,
        masking_sha256,
    };
    std::fs::create_dir_all(pin.parent().expect("profile.yaml has a directory"))
        .map_err(|e| anyhow::anyhow!("{}: {e}", pin.display()))?;
    std::fs::write(&pin, record.render()).map_err(|e| anyhow::anyhow!("{}: {e}", pin.display()))?;
    let shown = pin
        .strip_prefix(&ctx.root)
        .unwrap_or(&pin)
        .display()
        .to_string();
    if ctx.json {
        output::print_json(&SavedView {
            profile: record.name.clone(),
            file: shown,
            artifact: dir.display().to_string(),
            artifact_sha256: record.artifact.sha256,
            bytes,
            files: record.artifact.files.len(),
            schema_fingerprint: record.schema_fingerprint,
            ledger_head: record.ledger_head,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    output::print(&format!(
        "saved profile {} from {}: {}, {:.1} MiB, schema {}, ledger {}",
        record.name,
        record.from,
        output::plural(record.artifact.files.len(), "file"),
        bytes as f64 / 1_048_576.0,
        record.schema_fingerprint.short(),
        record.ledger_head.map_or("empty".into(), |h| format!(
            "at #{} {}",
            h.seq,
            h.entry_hash.short()
        ))
    ))?;
    output::eprint(&format!(
        "next: commit {shown} (the pins; the artifact stays in {})",
        store.display()
    ));
    Ok(ExitCode::SUCCESS)
}

/// A masked save: the source copied through the spec into a scratch branch
/// database (the dump path, in the branch cluster or a DEV-like root's),
/// which is dumped and then dropped, whatever happened.
fn masked(
    ctx: &Context,
    config: &crate::config::Config,
    args: &ProfileSaveArgs,
    dir: &std::path::Path,
    spec: crate::masking::Spec,
) -> anyhow::Result<Result<engine::profile::Saved, engine::clone::CloneError>> {
    let reg = crate::branch::Registry::load(&ctx.root).map_err(usage)?;
    let scratch_name = format!("profile_{}", args.name.replace('-', "_"));
    let base = args.from.split('/').next().unwrap_or(&args.from);
    let from_is_env = config.file.environments.contains_key(base);
    let record = super::branch::plan_record(config, &reg, &scratch_name, &args.from, from_is_env)?;
    let scratch = crate::branch::environment(config, &scratch_name, &record).map_err(usage)?;
    // A scratch left by an interrupted save is ours to drop.
    let _ = ctx.block_on(engine::branch::drop(&scratch));
    let made = super::branch::make(
        ctx,
        config,
        &scratch_name,
        &args.from,
        &record,
        false,
        args.jobs,
        30,
        Some(spec),
    );
    let saved = made.map(|_| {
        let mut hooks = StderrHooks::default();
        ctx.block_on(engine::profile::save(
            config, &scratch, dir, args.jobs, &mut hooks,
        ))
    });
    let dropped = ctx.block_on(engine::branch::drop(&scratch));
    let saved = saved?;
    dropped?;
    Ok(saved)
}

/// The profile and its verified artifact directory, or `None` for clean-db.
fn checked(
    ctx: &Context,
    config: &crate::config::Config,
    name: &str,
) -> anyhow::Result<Option<(Profile, std::path::PathBuf)>> {
    if name == CLEAN_DB {
        return Ok(None);
    }
    profile::check_name(name).map_err(usage)?;
    let p = Profile::load(&ctx.root, name).map_err(usage)?;
    let dir = config
        .file
        .profiles
        .store_dir(&ctx.root)
        .join(&p.artifact.path);
    let problems = profile::verify(&p, &dir).map_err(usage)?;
    if !problems.is_empty() {
        return Err(CommandError::new(
            ErrorKind::Refused,
            format!(
                "profile {name}: its artifact ({}) is not what profiles/{name}/profile.yaml pins; nothing was restored:\n  {}",
                dir.display(),
                problems.join("\n  ")
            ),
        )
        .into());
    }
    Ok(Some((p, dir)))
}

/// Replaces `to` with profile `name`, then applies the pending changesets.
/// Shared with `branch reset NAME --profile P`.
#[allow(clippy::too_many_arguments)]
pub(super) fn restore_into(
    ctx: &Context,
    name: &str,
    to_name: &str,
    yes: bool,
    jobs: u32,
    no_owner: bool,
    lock_wait: u64,
) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let to = config.environment(to_name)?;
    if let Some(from) = &to.config.promote_from {
        return Err(CommandError::refused(format!(
            "{} is promoted from {from}: a profile is restored only into an environment without promote_from (DEV) or a branch; what a controlled environment holds arrives by promotion (or `promoter clone`)",
            to.name
        ))
        .into());
    }
    if to.is_fleet() {
        return Err(usage(format!("{} is a fleet", to.name)));
    }
    let found = checked(ctx, &config, name)?;
    let git = super::trust::GitTrust::work_tree(ctx)?;
    let mut receipt = super::trust::receipt_signer(&git, &to)?;
    let mut trust = engine::Trust {
        git_keyrings: &git.keyrings,
        git_policy: None,
        receipt: receipt.as_mut(),
    };
    let mut hooks = StderrHooks {
        assume_yes: yes,
        ..StderrHooks::default()
    };
    let entry = ctx
        .block_on(engine::profile::restore(
            &config,
            &to,
            found.as_ref().map(|(p, d)| (p, d.as_path())),
            &mut trust,
            &RestoreOptions {
                assume_yes: yes,
                jobs,
                lock_wait: Duration::from_secs(lock_wait),
                no_owner,
            },
            &mut hooks,
        ))
        .map_err(super::clone::error)?;
    let opts = engine::RunOptions {
        dry_run: false,
        assume_yes: true,
        lock_wait: Duration::from_secs(lock_wait),
        allow_drift: false,
        upto: None,
        only: Vec::new(),
    };
    let report = super::apply::work_tree(
        ctx,
        &config,
        &to,
        &opts,
        &mut StderrHooks::interactive(ctx.json, true),
    )?
    .map_err(|e| super::run::error(e, false, ctx.json))?;
    let applied: Vec<String> = report
        .applied
        .iter()
        .map(|s| s.changeset_id.clone())
        .collect();
    if ctx.json {
        output::print_json(&RestoredView {
            profile: name.to_owned(),
            to: to.name.clone(),
            ledger_seq: entry.as_ref().map(|e| e.seq),
            applied,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    output::print(&format!(
        "restored {} into {}{}; then applied {}",
        if name == CLEAN_DB {
            "an empty database (clean-db)".to_owned()
        } else {
            format!("profile {name}")
        },
        to.name,
        entry
            .as_ref()
            .map(|e| if name == CLEAN_DB {
                format!(
                    " (a new ledger from `refreshed` #{}; the old one kept in ledger_replaced)",
                    e.seq
                )
            } else {
                format!(
                    " (its ledger, then `refreshed` #{}; the old one kept in ledger_replaced)",
                    e.seq
                )
            })
            .unwrap_or_default(),
        if applied.is_empty() {
            "nothing (no changeset pending)".to_owned()
        } else {
            format!(
                "{}: {}",
                output::plural(applied.len(), "changeset"),
                applied.join(", ")
            )
        }
    ))?;
    Ok(ExitCode::SUCCESS)
}

pub fn restore(ctx: &Context, args: &ProfileRestoreArgs) -> anyhow::Result<ExitCode> {
    restore_into(
        ctx,
        &args.name,
        &args.to,
        args.yes,
        args.jobs,
        args.no_owner,
        args.lock_wait,
    )
}

pub fn list(ctx: &Context) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let store = config.file.profiles.store_dir(&ctx.root);
    let mut views = vec![ProfileView {
        name: CLEAN_DB.into(),
        from: None,
        taken_at: None,
        taken_by: None,
        bytes: None,
        in_store: true,
        error: None,
    }];
    let dir = ctx.root.join(profile::PROFILES_DIR);
    let mut names: Vec<String> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("profile.yaml").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    for name in names {
        views.push(match Profile::load(&ctx.root, &name) {
            Ok(p) => ProfileView {
                in_store: store.join(&p.artifact.path).is_dir(),
                name,
                from: Some(p.from),
                taken_at: Some(p.taken_at),
                taken_by: Some(p.taken_by),
                bytes: Some(p.artifact.bytes),
                error: None,
            },
            Err(e) => ProfileView {
                name,
                from: None,
                taken_at: None,
                taken_by: None,
                bytes: None,
                in_store: false,
                error: Some(e),
            },
        });
    }
    if ctx.json {
        output::print_json(&ListView {
            store: store.display().to_string(),
            profiles: views,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![
        ["PROFILE", "FROM", "TAKEN", "BY", "SIZE", "ARTIFACT"]
            .map(String::from)
            .to_vec(),
    ];
    for v in &views {
        rows.push(vec![
            v.name.clone(),
            v.from.clone().unwrap_or_else(|| "-".into()),
            v.taken_at.clone().unwrap_or_else(|| "-".into()),
            v.taken_by.clone().unwrap_or_else(|| "-".into()),
            v.bytes
                .map_or("-".into(), |b| format!("{:.1} MiB", b as f64 / 1_048_576.0)),
            match (&v.error, v.name == CLEAN_DB, v.in_store) {
                (Some(e), _, _) => format!("unreadable: {e}"),
                (None, true, _) => "built: empty database, then every changeset".into(),
                (None, false, true) => "in the store".into(),
                (None, false, false) => format!("not in {}", store.display()),
            },
        ]);
    }
    let printed = output::table(&rows)
        .iter()
        .try_for_each(|l| output::print(l));
    output::unless_closed(printed)?;
    Ok(ExitCode::SUCCESS)
}

pub fn verify(ctx: &Context, args: &ProfileVerifyArgs) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    if args.name == CLEAN_DB {
        return Err(usage(format!("{CLEAN_DB} has no artifact to verify")));
    }
    profile::check_name(&args.name).map_err(usage)?;
    let p = Profile::load(&ctx.root, &args.name).map_err(usage)?;
    let dir = config
        .file
        .profiles
        .store_dir(&ctx.root)
        .join(&p.artifact.path);
    let problems = profile::verify(&p, &dir).map_err(usage)?;
    let ok = problems.is_empty();
    if ctx.json {
        output::print_json(&VerifyView {
            profile: p.name.clone(),
            ok,
            problems,
        })?;
    } else if ok {
        output::print(&format!(
            "profile {}: {} in {} match their pins (artifact {})",
            p.name,
            output::plural(p.artifact.files.len(), "file"),
            dir.display(),
            p.artifact.sha256.short()
        ))?;
    } else {
        return Err(CommandError::new(
            ErrorKind::CheckFailed,
            format!(
                "profile {}: {} does not match its pins:\n  {}",
                p.name,
                dir.display(),
                problems.join("\n  ")
            ),
        )
        .into());
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        super::failed()
    })
}
