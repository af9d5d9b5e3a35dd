//! `weir savepoint`: dispose of a savepoint, or check what a savepoint
//! would restore into a new version of a job before running it.

use crate::local::JobOptions;
use crate::settings::Sources;
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::ExitCode;
use weir_checkpoint::protocol::plan_restore;
use weir_checkpoint::storage::split_location;
use weir_checkpoint::{S3Options, Storage};
use weir_core::GuestFactory;

/// Arguments of `weir savepoint`.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SavepointArgs {
    #[command(subcommand)]
    pub command: Option<SavepointCommand>,
    /// Deletes the savepoint at PATH.
    #[arg(short = 'd', long, value_name = "PATH")]
    pub dispose: Option<String>,
    /// The job (on the cluster) to take a savepoint of.
    pub job_id: Option<String>,
    /// Where the savepoint goes (default: state.savepoints.dir).
    pub target_dir: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
pub enum SavepointCommand {
    /// Lists what a savepoint would restore, migrate, skip or reject when
    /// started with a (new) job module, without running anything.
    Check(CheckArgs),
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The savepoint (or checkpoint) directory.
    pub savepoint: String,
    /// The job component to restore into.
    pub job: PathBuf,
    /// As for `weir run`.
    #[command(flatten)]
    pub job_options: JobOptions,
    /// Arguments for the job, after `--`.
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

fn open(location: &str, sources: &Sources) -> Result<(Storage, String)> {
    let config = sources.resolve(None, &[])?;
    let (root, rel) = split_location(location).map_err(|e| anyhow::anyhow!(e.message))?;
    let storage = Storage::open(&root, &S3Options::from_config(&config))
        .map_err(|e| anyhow::anyhow!(e.message))?;
    Ok((storage, rel))
}

pub fn run(sources: &Sources, args: SavepointArgs) -> Result<ExitCode> {
    match (args.command, args.dispose) {
        (Some(SavepointCommand::Check(c)), _) => check(sources, c),
        (None, Some(path)) => dispose(sources, &path),
        (None, None) => bail!(
            "give a job id (`weir savepoint JOB_ID [DIR]`), --dispose PATH, or `check \
             SAVEPOINT JOB.wasm`"
        ),
    }
}

fn dispose(sources: &Sources, location: &str) -> Result<ExitCode> {
    let config = sources.resolve(None, &[])?;
    let url = weir_runtime::dispose_savepoint(location, &S3Options::from_config(&config))
        .map_err(|f| anyhow::anyhow!(f.message))?;
    eprintln!("Savepoint '{url}' disposed.");
    Ok(ExitCode::SUCCESS)
}

fn check(sources: &Sources, args: CheckArgs) -> Result<ExitCode> {
    let job = args
        .job_options
        .load(sources, &args.job, &args.args, Vec::new())?;
    let (storage, dir) = open(&args.savepoint, sources)?;
    let meta = weir_runtime::read_metadata(&storage, &dir)
        .map_err(|f| anyhow::anyhow!(f.message))
        .with_context(|| format!("cannot read the savepoint {}", args.savepoint))?;
    let target = weir_runtime::target_job(job.factory.as_ref());
    let plan = plan_restore(&meta, &target, args.job_options.allow_non_restored);
    println!(
        "Savepoint {} of job '{}' (version {}, checkpoint {}), into '{}' (version {}):",
        storage.url_of(&dir),
        meta.job_name,
        meta.job_version,
        meta.checkpoint_id,
        job.factory.graph().name,
        job.factory.graph().version
    );
    if meta.module_hash == target.module_hash {
        println!("  the module is identical to the one that took the savepoint");
    } else {
        println!("  the module differs from the one that took the savepoint");
    }
    println!(
        "  {:<10} {:<36} {:<28} DETAIL",
        "RESULT", "STATE", "OPERATOR(S)"
    );
    for line in &plan.report {
        let (result, detail) = line.decision.describe();
        println!(
            "  {result:<10} {:<36} {:<28} {detail}",
            line.what,
            line.uids.join(", ")
        );
    }
    for op in job
        .factory
        .graph()
        .operators
        .iter()
        .filter(|o| o.is_keyed() || !o.states.is_empty())
    {
        if !meta.stateful_uids().iter().any(|u| u == op.uid.as_str()) {
            println!(
                "  {:<10} {:<36} {:<28} no state in the savepoint",
                "new", "keyed state", op.uid
            );
        }
    }
    match plan.error() {
        Some(e) => {
            println!("\nThe job would not start: {e}");
            Ok(ExitCode::FAILURE)
        }
        None => {
            println!("\nThe job can start from this savepoint.");
            Ok(ExitCode::SUCCESS)
        }
    }
}
