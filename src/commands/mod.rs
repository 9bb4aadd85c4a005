//! One file per subcommand. Commands resolve arguments into loaded types
//! (config, keyrings, bundles), call the core, and print; they hold no rules.

mod apply;
mod approve;
mod baseline;
mod branch;
mod clone;
mod docs;
mod drift;
mod fleet;
mod init;
mod keys;
mod ledger;
mod new;
mod profile;
mod promote;
mod report;
mod resolve;
mod run;
mod seal;
mod show;
mod sign;
mod status;
pub mod trust;
mod verify;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::changeset::{self, source::BundleDir};
use crate::cli::{
    BranchCommand, Cli, Command, KeysCommand, ProfileCommand, ReceiptCommand, TrustCommand,
};
use crate::config::{self, Config};
pub use crate::error::{CommandError, ErrorKind};
use crate::signing::Keyrings;

/// What every command gets: the project root, the output mode, and the one
/// tokio runtime of the process.
#[derive(Debug)]
pub struct Context {
    /// The project: the nearest directory, from `cwd` up, that holds
    /// `environments.yaml` (like git and cargo find theirs); `cwd` if none.
    pub root: PathBuf,
    /// Where promoter runs (`-C DIR`, or the current directory): paths the
    /// user gives (`--out`, `--mask`) are relative to it.
    pub cwd: PathBuf,
    pub json: bool,
    runtime: tokio::runtime::Runtime,
}

impl Context {
    /// Runs a future on the process's runtime.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// The loaded `environments.yaml`; an error with a hint if there is none.
    pub fn config(&self) -> anyhow::Result<Config> {
        if !self.root.join(config::CONFIG_FILE).exists() {
            return Err(CommandError::usage(format!(
                "{} not found in {} or any directory above it",
                config::CONFIG_FILE,
                self.root.display()
            ))
            .with_hint("run `promoter init` to create it, or use -C DIR to point at the project")
            .into());
        }
        Ok(Config::load(&self.root)?)
    }

    /// Role keyrings from `environments.yaml`, or the default roles if the
    /// project has none yet. Fails if a certificate is in two roles.
    pub fn keyrings(&self) -> anyhow::Result<Keyrings> {
        let keyrings = self.keyrings_unchecked()?;
        keyrings.check_separation()?;
        Ok(keyrings)
    }

    fn keyrings_unchecked(&self) -> anyhow::Result<Keyrings> {
        let dirs = match Config::load_optional(&self.root)? {
            Some(c) => c.role_dirs(),
            None => config::role_dirs(&self.root, &config::default_roles()),
        };
        Ok(Keyrings::load(&dirs)?)
    }

    /// Changeset directories in the work tree selected by `args` (all if empty).
    pub fn select_dirs(&self, args: &[String]) -> anyhow::Result<Vec<BundleDir>> {
        let all = changeset::source::discover(&self.root)?;
        if all.is_empty() && args.is_empty() {
            return Err(CommandError::usage(format!(
                "no changesets in {}",
                changeset::changesets_dir(&self.root).display()
            ))
            .with_hint("create one with `promoter new SLUG`")
            .into());
        }
        Ok(changeset::select(&all, args, |d| &d.id)?
            .into_iter()
            .cloned()
            .collect())
    }

    /// Path relative to the project root, for messages.
    pub fn relative<'a>(&self, path: &'a Path) -> &'a Path {
        path.strip_prefix(&self.root).unwrap_or(path)
    }
}

/// The nearest directory from `dir` up that holds `environments.yaml`
/// (`dir` itself when none does).
fn project_root(dir: &Path) -> PathBuf {
    let absolute = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir().map_or_else(|_| dir.to_path_buf(), |c| c.join(dir))
    };
    absolute
        .ancestors()
        .find(|d| d.join(config::CONFIG_FILE).is_file())
        .map_or_else(|| dir.to_path_buf(), Path::to_path_buf)
}

/// Runs the parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let cwd = match &cli.directory {
        Some(dir) => dir.clone(),
        None => std::env::current_dir()?,
    };
    // `init` lays out a project where it is told; every other command finds
    // the one it is in.
    let root = if matches!(cli.command, Command::Init) {
        cwd.clone()
    } else {
        project_root(&cwd)
    };
    // One current-thread runtime for the whole process: promoter does one
    // thing at a time, and a signal handler needs a runtime to run on.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let ctx = Context {
        root,
        cwd,
        json: cli.json,
        runtime,
    };
    let result = match cli.command {
        Command::Init => init::run(&ctx),
        Command::New(args) => new::run(&ctx, &args),
        Command::Seal(args) => seal::run(&ctx, &args),
        Command::Sign(args) => sign::run_sign(&ctx, &args),
        Command::Approve(args) => approve::run(&ctx, &args),
        Command::Verify(args) => verify::run(&ctx, &args),
        Command::Keys(KeysCommand::Generate(args)) => keys::generate(&ctx, &args),
        Command::Keys(KeysCommand::List) => keys::list(&ctx),
        Command::Apply(args) => apply::run(&ctx, &args),
        Command::Promote(args) => promote::run(&ctx, &args),
        Command::Status(args) => status::run(&ctx, &args),
        Command::Ledger(args) => ledger::show(&ctx, &args),
        Command::Audit(args) => ledger::audit(&ctx, &args),
        Command::Resolve(args) => resolve::run(&ctx, &args),
        Command::Clone(args) => clone::run(&ctx, &args),
        Command::Drift(args) => drift::run(&ctx, &args),
        Command::Report(args) => report::run(&ctx, &args),
        Command::Trust(TrustCommand::Pin(args)) => trust::pin(&ctx, &args),
        Command::Trust(TrustCommand::Show(args)) => trust::show(&ctx, &args),
        Command::Trust(TrustCommand::Sign(args)) => trust::sign(&ctx, &args),
        Command::Receipt(ReceiptCommand::Export(args)) => approve::export_receipt(&ctx, &args),
        Command::Show(args) => show::run(&ctx, &args),
        Command::Baseline(args) => baseline::run(&ctx, &args),
        Command::Branch(BranchCommand::Create(args)) => branch::create(&ctx, &args),
        Command::Branch(BranchCommand::List) => branch::list(&ctx),
        Command::Branch(BranchCommand::Reset(args)) => branch::reset(&ctx, &args),
        Command::Branch(BranchCommand::Drop(args)) => branch::drop(&ctx, &args),
        Command::Profile(ProfileCommand::Save(args)) => profile::save(&ctx, &args),
        Command::Profile(ProfileCommand::Restore(args)) => profile::restore(&ctx, &args),
        Command::Profile(ProfileCommand::List) => profile::list(&ctx),
        Command::Profile(ProfileCommand::Verify(args)) => profile::verify(&ctx, &args),
        Command::Completions(args) => docs::completions(&ctx, &args),
        Command::Man(args) => docs::man(&ctx, &args),
    };
    // What this run verified, for the next `status` (see signing::memo).
    crate::signing::memo::save(&crate::checkpoint::state_dir());
    result
}

/// Exit code for "ran fine, but what was checked does not hold".
pub fn failed() -> ExitCode {
    ExitCode::from(ErrorKind::CheckFailed.exit_code())
}
