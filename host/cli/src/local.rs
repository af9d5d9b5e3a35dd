//! `weir run --local`: runs a job in this process until its sources end or
//! it is interrupted.

use crate::settings::Sources;
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use weir_core::{Config, JobGraph, JobId};
use weir_runtime::{JobCommand, JobOutcome, JobSpec};
use weir_wasm::{CompileCache, EngineOptions, InstanceLimits, JobModule, WasmEngine, WasmJob};

/// Arguments of `weir run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Runs the job in this process, with no cluster.
    #[arg(long)]
    pub local: bool,
    /// Default parallelism of the job's operators.
    #[arg(short = 'p', long)]
    pub parallelism: Option<u32>,
    /// Entry point: the job to run when the component holds several (Flink's -c).
    #[arg(long, short = 'c', visible_alias = "class", value_name = "NAME")]
    pub entry: Option<String>,
    /// The job component (.wasm).
    pub job: PathBuf,
    /// Arguments for the job, after `--`.
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

fn cache_dir(config: &Config) -> PathBuf {
    if let Some(d) = &config.compile_cache_dir {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("weir").join("compiled")
}

fn limits(config: &Config) -> InstanceLimits {
    InstanceLimits {
        memory_bytes: config.guest_memory_limit,
        call_timeout: config.guest_call_timeout,
        fuel_per_call: config.guest_fuel_per_call,
    }
}

pub fn run(sources: &Sources, args: RunArgs) -> Result<ExitCode> {
    if !args.local {
        bail!(
            "submitting to a session cluster is not available in this build; add --local to run the job in this process"
        );
    }
    let mut flags: Vec<(&str, String)> = Vec::new();
    if let Some(p) = args.parallelism {
        if p == 0 {
            bail!("-p/--parallelism must be at least 1");
        }
        flags.push(("parallelism.default", p.to_string()));
    }
    let bytes = std::fs::read(&args.job)
        .with_context(|| format!("cannot read the job file {}", args.job.display()))?;
    let base = sources.resolve(None, &flags)?;
    let engine = WasmEngine::new(EngineOptions {
        fuel: base.guest_fuel_per_call > 0,
    })?;
    let cache = CompileCache::new(cache_dir(&base));
    let module = JobModule::load(&engine, &bytes, Some(&cache))
        .with_context(|| format!("cannot load {}", args.job.display()))?;
    let module = Arc::new(module);
    let plan = weir_wasm::plan_job(&module, args.entry.as_deref(), &args.args, limits(&base))
        .map_err(|f| anyhow::anyhow!("the job could not build its plan: {}", f.message))?;
    let config = sources
        .resolve(Some(&plan), &flags)
        .context("in the job's configuration")?;
    let graph = JobGraph::from_plan(plan, &config)?;
    let job_id = JobId::random();
    let factory = Arc::new(WasmJob::new(
        module,
        args.entry.clone(),
        args.args.clone(),
        graph,
        limits(&config),
    ));
    let work_dir = std::env::temp_dir().join(format!("weir-{}", std::process::id()));
    let started = Instant::now();
    let handle = weir_runtime::start(JobSpec {
        job_id,
        config,
        factory,
        work_dir: work_dir.clone(),
    })?;
    eprintln!("Job has been submitted with JobID {job_id}");
    watch_signals(handle.commands())?;
    let outcome = handle.wait();
    let _ = std::fs::remove_dir_all(&work_dir);
    Ok(match outcome {
        JobOutcome::Finished => {
            eprintln!("Job with JobID {job_id} has finished.");
            eprintln!("Job Runtime: {} ms", started.elapsed().as_millis());
            ExitCode::SUCCESS
        }
        JobOutcome::Cancelled => {
            eprintln!("Job with JobID {job_id} was cancelled.");
            ExitCode::from(130)
        }
        JobOutcome::Failed(f) => {
            eprintln!("error: job {job_id} failed ({}): {}", f.domain, f.message);
            ExitCode::FAILURE
        }
    })
}

/// Cancels the job on Ctrl-C or SIGTERM.
fn watch_signals(commands: weir_runtime::CommandSender) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("cannot install signal handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if signals.forever().next().is_some() {
                eprintln!("Cancelling the job...");
                let _ = commands.send(JobCommand::Cancel);
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}
