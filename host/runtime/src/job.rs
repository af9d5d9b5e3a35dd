//! Running a job: deploy its tasks, watch them, and report how it ended.

use crate::channel::{CHANNEL_CAPACITY, Message, OutputEdge};
use crate::execution::ExecutionGraph;
use crate::metrics::JobMetrics;
use crate::task::{self, TaskControl, TaskEvent, TaskId, TaskSetup};
use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use weir_core::config::RuntimeMode;
use weir_core::{Config, Failure, GuestFactory, JobId};

/// What a job's tasks share.
pub(crate) struct JobContext {
    pub config: Config,
    pub factory: Arc<dyn GuestFactory>,
    pub metrics: Arc<JobMetrics>,
    pub work_dir: PathBuf,
    pub batch_mode: bool,
}

/// A job to run.
pub struct JobSpec {
    pub job_id: JobId,
    pub config: Config,
    pub factory: Arc<dyn GuestFactory>,
    /// Local directory for the job's working files (RocksDB).
    pub work_dir: PathBuf,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    Finished,
    Cancelled,
    Failed(Failure),
}

/// Commands to a running job.
#[derive(Debug)]
pub enum JobCommand {
    Cancel,
}

/// Sends commands to a running job.
pub type CommandSender = Sender<JobCommand>;

/// A job running in this process.
pub struct JobHandle {
    pub job_id: JobId,
    commands: Sender<JobCommand>,
    thread: Option<JoinHandle<JobOutcome>>,
    pub metrics: Arc<JobMetrics>,
}

impl std::fmt::Debug for JobHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobHandle")
            .field("job_id", &self.job_id)
            .finish()
    }
}

impl JobHandle {
    /// Asks the job to stop.
    pub fn cancel(&self) {
        let _ = self.commands.send(JobCommand::Cancel);
    }

    /// Waits for the job to end.
    pub fn wait(mut self) -> JobOutcome {
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(outcome)) => outcome,
            _ => JobOutcome::Failed(Failure::internal("the job coordinator panicked")),
        }
    }

    /// A sender for commands, usable from other threads (signal handlers).
    pub fn commands(&self) -> Sender<JobCommand> {
        self.commands.clone()
    }
}

/// Whether keyed aggregations emit only final results.
pub fn is_batch(config: &Config, graph: &weir_core::JobGraph) -> bool {
    match config.runtime_mode {
        RuntimeMode::Batch => true,
        RuntimeMode::Streaming => false,
        RuntimeMode::Automatic => graph.is_bounded(),
    }
}

/// Starts a job on its own coordinator thread.
pub fn start(spec: JobSpec) -> Result<JobHandle, Failure> {
    let graph = spec.factory.graph();
    let metrics = Arc::new(JobMetrics::new(graph.operators.len()));
    for w in &graph.warnings {
        tracing::warn!(job = %spec.job_id, "{w}");
    }
    let (tx, rx) = unbounded();
    let ctx = Arc::new(JobContext {
        batch_mode: is_batch(&spec.config, graph),
        config: spec.config,
        factory: spec.factory,
        metrics: metrics.clone(),
        work_dir: spec.work_dir.join(spec.job_id.to_string()),
    });
    let job_id = spec.job_id;
    let thread = std::thread::Builder::new()
        .name(format!("job-{}", job_id.short()))
        .spawn(move || coordinate(ctx, rx))
        .map_err(|e| Failure::internal(format!("cannot start the job thread: {e}")))?;
    Ok(JobHandle {
        job_id,
        commands: tx,
        thread: Some(thread),
        metrics,
    })
}

/// The running tasks of one attempt.
struct Deployment {
    controls: HashMap<TaskId, Sender<TaskControl>>,
    threads: Vec<JoinHandle<()>>,
    events: Receiver<TaskEvent>,
}

impl Deployment {
    fn cancel(&self) {
        for c in self.controls.values() {
            let _ = c.send(TaskControl::Cancel);
        }
    }

    fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn deploy(ctx: &Arc<JobContext>) -> Result<Deployment, Failure> {
    let graph = ctx.factory.graph();
    let exec = ExecutionGraph::build(graph);
    let (events_tx, events) = unbounded();
    // Channels: for each edge, (upstream subtask, downstream subtask).
    let mut inputs: HashMap<TaskId, Vec<Receiver<Message>>> = HashMap::new();
    let mut outputs: HashMap<TaskId, Vec<OutputEdge>> = HashMap::new();
    for e in &exec.edges {
        let up_p = exec.chains[e.from_chain].parallelism;
        let down_p = exec.chains[e.to_chain].parallelism;
        for u in 0..up_p {
            let mut targets = Vec::with_capacity(down_p as usize);
            for d in 0..down_p {
                if e.connects(u, d) {
                    let (tx, rx) = bounded(CHANNEL_CAPACITY);
                    targets.push(Some(tx));
                    inputs
                        .entry(TaskId {
                            chain: e.to_chain,
                            subtask: d,
                        })
                        .or_default()
                        .push(rx);
                } else {
                    targets.push(None);
                }
            }
            outputs
                .entry(TaskId {
                    chain: e.from_chain,
                    subtask: u,
                })
                .or_default()
                .push(OutputEdge::new(
                    e.from_op,
                    e.port,
                    e.partitioning,
                    targets,
                    graph.max_parallelism,
                    ctx.metrics.operators[e.from_op as usize].clone(),
                ));
        }
    }
    let mut controls = HashMap::new();
    let mut threads = Vec::new();
    for chain in &exec.chains {
        for s in 0..chain.parallelism {
            let id = TaskId {
                chain: chain.id,
                subtask: s,
            };
            let (ctl_tx, ctl_rx) = unbounded();
            controls.insert(id, ctl_tx);
            let setup = TaskSetup {
                id,
                chain: chain.clone(),
                inputs: inputs.remove(&id).unwrap_or_default(),
                outputs: outputs.remove(&id).unwrap_or_default(),
                control: ctl_rx,
                events: events_tx.clone(),
                ctx: ctx.clone(),
            };
            let name = format!("{} ({}/{})", chain.name, s + 1, chain.parallelism);
            let t = std::thread::Builder::new()
                .name(name.chars().take(60).collect())
                .spawn(move || task::run(setup))
                .map_err(|e| Failure::internal(format!("cannot start task thread: {e}")))?;
            threads.push(t);
        }
    }
    Ok(Deployment {
        controls,
        threads,
        events,
    })
}

fn coordinate(ctx: Arc<JobContext>, commands: Receiver<JobCommand>) -> JobOutcome {
    let dep = match deploy(&ctx) {
        Ok(d) => d,
        Err(f) => return JobOutcome::Failed(f),
    };
    let mut running = dep.controls.len();
    let outcome = loop {
        crossbeam_channel::select! {
            recv(dep.events) -> ev => match ev {
                Ok(TaskEvent::Finished(_)) => {
                    running -= 1;
                    if running == 0 {
                        break JobOutcome::Finished;
                    }
                }
                Ok(TaskEvent::Failed(id, f)) => {
                    tracing::error!(task = ?id, "task failed: {f}");
                    break JobOutcome::Failed(f);
                }
                Ok(TaskEvent::Stopped(_)) => {
                    running -= 1;
                    if running == 0 {
                        break JobOutcome::Cancelled;
                    }
                }
                Err(_) => break JobOutcome::Failed(Failure::internal("all tasks vanished")),
            },
            recv(commands) -> cmd => match cmd {
                Ok(JobCommand::Cancel) | Err(_) => break JobOutcome::Cancelled,
            },
        }
    };
    dep.cancel();
    dep.join();
    let _ = std::fs::remove_dir_all(&ctx.work_dir);
    outcome
}
