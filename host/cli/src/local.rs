//! `weir run --local`: runs a job in this process until its sources end or
//! it is stopped.

use crate::settings::Sources;
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use weir_core::{Config, JobGraph, JobId};
use weir_runtime::{CommandSender, JobCommand, JobOutcome, JobSpec, RestoreRequest};
use weir_wasm::{CompileCache, EngineOptions, InstanceLimits, JobModule, WasmEngine, WasmJob};

/// Arguments of `weir run`.
/// How a job is planned and restored: flags `run` and `savepoint check`
/// share.
#[derive(clap::Args, Debug)]
pub struct JobOptions {
    /// Default parallelism of the job's operators.
    #[arg(short = 'p', long)]
    pub parallelism: Option<u32>,
    /// Entry point: the job to run when the component holds several (Flink's -c).
    #[arg(long, short = 'c', visible_alias = "class", value_name = "NAME")]
    pub entry: Option<String>,
    /// Skips state of the savepoint that no operator of the job claims.
    #[arg(
        short = 'n',
        long = "allowNonRestoredState",
        visible_alias = "allow-non-restored-state"
    )]
    pub allow_non_restored: bool,
}

impl JobOptions {
    /// Loads the job with these options and `flags`.
    pub fn load(
        &self,
        sources: &Sources,
        job: &PathBuf,
        args: &[String],
        mut flags: Vec<(&str, String)>,
    ) -> Result<LoadedJob> {
        if let Some(p) = self.parallelism {
            if p == 0 {
                bail!("-p/--parallelism must be at least 1");
            }
            flags.push(("parallelism.default", p.to_string()));
        }
        load_job(sources, job, self.entry.as_deref(), args, &flags)
    }
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Runs the job in this process, with no cluster.
    #[arg(long)]
    pub local: bool,
    /// Returns once the job is submitted, without waiting for it to end.
    #[arg(short = 'd', long)]
    pub detached: bool,
    #[command(flatten)]
    pub job_options: JobOptions,
    /// Starts from a savepoint or checkpoint: a savepoint or chk-<n>
    /// directory, or a job's checkpoint directory (its latest usable
    /// checkpoint is taken).
    #[arg(
        short = 's',
        long = "fromSavepoint",
        visible_alias = "from-savepoint",
        value_name = "PATH"
    )]
    pub savepoint: Option<String>,
    /// Who owns the snapshot given with -s: NO_CLAIM (the default: it is
    /// never deleted, and the first checkpoint is self-contained) or CLAIM
    /// (the job takes it over and deletes it once newer checkpoints
    /// subsume it), as Flink's --claimMode.
    #[arg(
        long = "claimMode",
        visible_aliases = ["claim-mode", "restoreMode"],
        value_name = "MODE"
    )]
    pub claim_mode: Option<String>,
    /// Where savepoints of this run go (default: state.savepoints.dir).
    #[arg(long, value_name = "DIR")]
    pub savepoint_dir: Option<String>,
    /// On SIGTERM or Ctrl-C, stop the job with a savepoint instead of
    /// cancelling it. (SIGUSR1 takes a savepoint at any time.)
    #[arg(long)]
    pub stop_with_savepoint: bool,
    /// The job component (.wasm).
    pub job: PathBuf,
    /// Arguments for the job, after `--`.
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

/// The compile cache of `run --local` and task managers: the configured
/// directory, or `weir/compiled` in the user's cache directory.
pub(crate) fn compile_cache(config: &Config) -> CompileCache {
    let dir = match &config.compile_cache_dir {
        Some(d) => PathBuf::from(d),
        None => std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir)
            .join("weir")
            .join("compiled"),
    };
    CompileCache::new(dir).with_max_size(config.compile_cache_max_size)
}

pub fn limits(config: &Config) -> InstanceLimits {
    InstanceLimits::from_config(config)
}

/// A job loaded, planned and validated, ready to run or to check.
pub struct LoadedJob {
    pub factory: Arc<WasmJob>,
    pub config: Config,
}

/// Loads `job`, runs its plan with `args`, and validates the graph.
pub fn load_job(
    sources: &Sources,
    job: &PathBuf,
    entry: Option<&str>,
    args: &[String],
    flags: &[(&str, String)],
) -> Result<LoadedJob> {
    let bytes = std::fs::read(job)
        .with_context(|| format!("cannot read the job file {}", job.display()))?;
    let base = sources.resolve(None, flags)?;
    let engine = WasmEngine::new(EngineOptions {
        fuel: base.guest_fuel_per_call > 0,
    })?;
    let cache = compile_cache(&base);
    let module = JobModule::load(&engine, &bytes, Some(&cache))
        .with_context(|| format!("cannot load {}", job.display()))?;
    let module = Arc::new(module);
    let plan = weir_wasm::plan_job(&module, entry, args, limits(&base))
        .map_err(|f| anyhow::anyhow!("the job could not build its plan: {}", f.message))?;
    let config = sources
        .resolve(Some(&plan), flags)
        .context("in the job's configuration")?;
    let graph = JobGraph::from_plan(plan, &config)?;
    if config.memory_snapshots {
        module
            .check_memory_snapshots()
            .map_err(|e| anyhow::anyhow!(e))?;
    }
    let output = weir_wasm::JobOutput::new(
        if graph.name.is_empty() {
            "job"
        } else {
            graph.name.as_str()
        },
        config.guest_output_lines,
    );
    let factory = Arc::new(WasmJob::new(
        module,
        entry.map(str::to_owned),
        args.to_vec(),
        graph,
        limits(&config),
        output,
    ));
    Ok(LoadedJob { factory, config })
}

/// `weir run` without `--local`: uploads the job to the session cluster
/// and runs it there.
pub fn submit(
    client: &crate::client::Client,
    sources: &Sources,
    args: RunArgs,
) -> Result<ExitCode> {
    let opts = &args.job_options;
    if opts.allow_non_restored && args.savepoint.is_none() {
        bail!("-n/--allowNonRestoredState only applies with -s/--fromSavepoint");
    }
    if args.stop_with_savepoint {
        bail!(
            "--stop-with-savepoint is for --local runs; stop a cluster job with `weir stop JOB_ID`"
        );
    }
    if opts.parallelism == Some(0) {
        bail!("-p/--parallelism must be at least 1");
    }
    if !args.job.is_file() {
        bail!(
            "cannot read the job file {}: no such file",
            args.job.display()
        );
    }
    let mut config = sources.defines()?;
    if let Some(d) = &args.savepoint_dir {
        config.push(("state.savepoints.dir".into(), d.clone()));
    }
    if let Some(m) = &args.claim_mode {
        config.push(("execution.state-recovery.claim-mode".into(), m.clone()));
    }
    crate::client::run(
        client,
        crate::client::Submission {
            job: &args.job,
            entry: opts.entry.clone(),
            args: args.args.clone(),
            parallelism: opts.parallelism,
            savepoint: args.savepoint.clone(),
            allow_non_restored: opts.allow_non_restored,
            detached: args.detached,
            config,
        },
    )
}

pub fn run(sources: &Sources, args: RunArgs) -> Result<ExitCode> {
    let mut flags: Vec<(&str, String)> = Vec::new();
    if let Some(d) = &args.savepoint_dir {
        flags.push(("state.savepoints.dir", d.clone()));
    }
    if let Some(m) = &args.claim_mode {
        flags.push(("execution.state-recovery.claim-mode", m.clone()));
    }
    let opts = &args.job_options;
    if opts.allow_non_restored && args.savepoint.is_none() {
        bail!("-n/--allowNonRestoredState only applies with -s/--fromSavepoint");
    }
    let job = opts.load(sources, &args.job, &args.args, flags)?;
    if args.stop_with_savepoint && job.config.savepoints_dir.is_none() {
        bail!(
            "--stop-with-savepoint needs a savepoint directory: give --savepoint-dir or set state.savepoints.dir"
        );
    }
    let job_id = JobId::random();
    let base = job
        .config
        .rocksdb_local_dir
        .as_ref()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let scratch = weir_runtime::ScratchDir::claim(&base, "weir").with_context(|| {
        format!(
            "cannot make a working directory under {}; set state.backend.rocksdb.localdir",
            base.display()
        )
    })?;
    let started = Instant::now();
    let handle = weir_runtime::start(JobSpec {
        job_id,
        config: job.config.clone(),
        factory: job.factory,
        work_dir: scratch.path().to_owned(),
        lineage: args.savepoint.clone(),
        restore: args.savepoint.map(|location| RestoreRequest {
            location,
            allow_non_restored: opts.allow_non_restored,
        }),
        listener: None,
        connectors: crate::connectors(),
        cluster: None,
    })?;
    eprintln!("Job has been submitted with JobID {job_id}");
    watch_signals(handle.commands(), args.stop_with_savepoint)?;
    let outcome = handle.wait();
    drop(scratch);
    Ok(match outcome {
        JobOutcome::Finished => {
            eprintln!("Job with JobID {job_id} has finished.");
            eprintln!("Job Runtime: {} ms", started.elapsed().as_millis());
            ExitCode::SUCCESS
        }
        JobOutcome::Stopped { savepoint } => {
            eprintln!("Savepoint completed. Path: {savepoint}");
            eprintln!("Job with JobID {job_id} has been stopped.");
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

/// Ctrl-C and SIGTERM cancel the job (or stop it with a savepoint);
/// SIGUSR1 takes a savepoint.
fn watch_signals(commands: CommandSender, stop_with_savepoint: bool) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGUSR1])
        .context("cannot install signal handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let savepoint = |stop: bool| {
                    let (tx, rx) = crossbeam_channel::bounded(1);
                    let _ = commands.send(JobCommand::Savepoint {
                        dir: None,
                        stop,
                        drain: false,
                        reply: tx,
                    });
                    let commands = commands.clone();
                    std::thread::spawn(move || match rx.recv() {
                        Ok(Ok(path)) if !stop => eprintln!("Savepoint completed. Path: {path}"),
                        Ok(Ok(_)) => {}
                        Ok(Err(f)) => {
                            eprintln!("error: the savepoint failed: {}", f.message);
                            if stop {
                                eprintln!("Cancelling the job...");
                                let _ = commands.send(JobCommand::Cancel);
                            }
                        }
                        Err(_) => {}
                    });
                };
                match sig {
                    SIGUSR1 => savepoint(false),
                    _ if stop_with_savepoint => {
                        eprintln!("Stopping the job with a savepoint...");
                        savepoint(true);
                    }
                    _ => {
                        eprintln!("Cancelling the job...");
                        let _ = commands.send(JobCommand::Cancel);
                    }
                }
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}
