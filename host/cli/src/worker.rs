//! `weir worker --join URL`: a task manager. It offers its task slots to
//! the session at URL (its cluster endpoint, `weir.cluster.port`), runs the
//! tasks placed on them, and joins again should it lose the session.

use crate::settings::Sources;
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use weir_core::guest::GuestSpec;
use weir_core::{Config, Failure, GuestFactory, JobGraph, JobId};
use weir_wasm::{CompileCache, EngineOptions, JobModule, WasmEngine, WasmJob};

#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    /// The session's cluster endpoint (http://HOST:PORT, its
    /// weir.cluster.port).
    #[arg(long, value_name = "URL")]
    pub join: String,
    /// Task slots this task manager offers (taskmanager.numberOfTaskSlots).
    #[arg(long)]
    pub slots: Option<u32>,
    /// Port of this task manager's cluster endpoint (weir.cluster.port; 0,
    /// the default, picks a free one).
    #[arg(long)]
    pub port: Option<u16>,
    /// Directory under which the task manager keeps its working files, in
    /// a directory of its own that it removes when it stops (default: the
    /// system's temporary directory). Directories left there by task
    /// managers that were killed are removed when the next one starts.
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
}

/// Makes guests from modules with this process's engines (one metering
/// fuel, one not), keeping each module compiled once.
struct Loader {
    cache: CompileCache,
    engines: Mutex<HashMap<bool, WasmEngine>>,
    modules: Mutex<HashMap<(bool, String), Arc<JobModule>>>,
}

impl weir_runtime::GuestLoader for Loader {
    fn load(
        &self,
        module: &[u8],
        guest: &GuestSpec,
        graph: JobGraph,
        config: &Config,
        job: JobId,
    ) -> Result<Arc<dyn GuestFactory>, Failure> {
        let fuel = config.guest_fuel_per_call > 0;
        let key = (fuel, guest.module_hash.clone());
        let cached = self
            .modules
            .lock()
            .expect("modules lock")
            .get(&key)
            .cloned();
        let m = match cached {
            Some(m) => m,
            None => {
                let engine = {
                    let mut engines = self.engines.lock().expect("engines lock");
                    match engines.get(&fuel) {
                        Some(e) => e.clone(),
                        None => {
                            let e = WasmEngine::new(EngineOptions { fuel })
                                .map_err(|e| Failure::internal(e.to_string()))?;
                            engines.insert(fuel, e.clone());
                            e
                        }
                    }
                };
                let m = Arc::new(
                    JobModule::load(&engine, module, Some(&self.cache))
                        .map_err(|e| Failure::user(format!("the job's module: {e}")))?,
                );
                if m.hash() != guest.module_hash {
                    return Err(Failure::internal(format!(
                        "module {} arrived with hash {}",
                        guest.module_hash,
                        m.hash()
                    )));
                }
                self.modules
                    .lock()
                    .expect("modules lock")
                    .insert(key, m.clone());
                m
            }
        };
        Ok(Arc::new(WasmJob::new(
            m,
            guest.entry.clone(),
            guest.args.clone(),
            graph,
            weir_wasm::InstanceLimits::from_config(config),
            weir_wasm::JobOutput::new(job.to_string(), config.guest_output_lines),
        )))
    }
}

pub fn run(sources: &Sources, args: WorkerArgs) -> Result<ExitCode> {
    let env = weir_core::config::from_env(std::env::vars());
    let mut flags: weir_core::config::ConfigLayer = sources.defines()?.into_iter().collect();
    if let Some(s) = args.slots {
        if s == 0 {
            anyhow::bail!("--slots must be at least 1");
        }
        flags.insert("taskmanager.numberOfTaskSlots".into(), s.to_string());
    }
    if let Some(p) = args.port {
        flags.insert("weir.cluster.port".into(), p.to_string());
    }
    let config = Config::from_layers(&[&sources.file_keys()?, &env, &flags])
        .context("in the task manager's configuration")?;
    if config.task_slots == 0 {
        anyhow::bail!("a task manager offers at least one slot: set --slots");
    }
    let joins = weir_runtime::url_list(&args.join);
    if let Some(bad) = joins
        .iter()
        .find(|u| !u.starts_with("http://") && !u.starts_with("https://"))
    {
        anyhow::bail!(
            "--join takes the session's cluster endpoint as a URL, such as http://host:6123, \
             not {bad:?}"
        );
    }
    if joins.is_empty() {
        anyhow::bail!("--join takes the session's cluster endpoint, such as http://host:6123");
    }
    if config.cluster_secret.is_none() && !weir_runtime::is_loopback(&config.cluster_bind_address) {
        anyhow::bail!(
            "the task manager would listen on {} without a secret: set weir.cluster.secret \
             (the session's), or bind it to 127.0.0.1",
            config.cluster_bind_address
        );
    }
    weir_state::share_memory(config.managed_memory as usize, config.write_buffer_ratio);
    let bind = format!(
        "{}:{}",
        config.cluster_bind_address,
        config.cluster_port.unwrap_or(0)
    );
    let listener = weir_runtime::bind(&bind)
        .with_context(|| format!("cannot listen on {bind}; set weir.cluster.port (--port)"))?;
    let advertised =
        weir_runtime::advertised_url(&listener, config.cluster_advertised_address.as_deref());
    let base = args.work_dir.unwrap_or_else(std::env::temp_dir);
    let scratch = weir_runtime::ScratchDir::claim(&base, "weir-tm").with_context(|| {
        format!(
            "cannot make a working directory under {}; give --work-dir",
            base.display()
        )
    })?;
    let work_dir = scratch.path().to_owned();
    let scratch = Arc::new(Mutex::new(Some(scratch)));
    stop_on_signals(scratch.clone())?;
    eprintln!(
        "Weir task manager: {} slots, cluster endpoint {advertised}, joining {}",
        config.task_slots, args.join
    );
    let loader = Loader {
        cache: crate::local::compile_cache(&config),
        engines: Mutex::new(HashMap::new()),
        modules: Mutex::new(HashMap::new()),
    };
    let result = weir_runtime::run_worker(weir_runtime::WorkerOptions {
        join: args.join,
        slots: config.task_slots,
        listener,
        advertised: config.cluster_advertised_address.clone(),
        work_dir,
        auth: weir_runtime::Auth::new(config.cluster_secret.as_ref().map(|s| s.0.clone())),
        connectors: crate::connectors(),
        loader: Arc::new(loader),
    })
    .map_err(|f| anyhow::anyhow!(f.message));
    scratch.lock().unwrap_or_else(|e| e.into_inner()).take();
    result?;
    Ok(ExitCode::SUCCESS)
}

/// On SIGTERM or Ctrl-C the task manager removes its working directory and
/// exits; the session restarts the tasks it ran from their checkpoints.
fn stop_on_signals(scratch: Arc<Mutex<Option<weir_runtime::ScratchDir>>>) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("cannot install signal handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if signals.forever().next().is_some() {
                eprintln!("Task manager stopping");
                scratch.lock().unwrap_or_else(|e| e.into_inner()).take();
                std::process::exit(0);
            }
        })?;
    Ok(())
}
