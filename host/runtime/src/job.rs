//! Running a job: deploy its tasks, coordinate checkpoints and savepoints,
//! restart it from its latest checkpoint when a task fails, and report how
//! it ended.

use crate::channel::{
    Barrier, CHANNEL_CAPACITY, CREDITED_CAPACITY, Lane, Message, OutputEdge, Priority, Target,
};
use crate::context::{CheckpointReport, JobContext, JobListener, NoListener, is_batch};
use crate::events::{TaskControl, TaskEvent, TaskId};
use crate::execution::ExecutionGraph;
use crate::metrics::JobMetrics;
use crate::net::Cluster;
use crate::net::DataPlane;
use crate::net::data::ChannelKey;
use crate::net::protocol::{Deploy, Owner, PrepareSwap, Restore};
use crate::restore::{self, Restored};
use crate::snapshot::{SnapshotTarget, task_index};
use crate::swap::ModuleSwap;
use crate::task::{self, TaskSetup, TaskStart};
use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use weir_checkpoint::metadata::{Kind, OperatorInfo, SnapshotMetadata};
use weir_checkpoint::protocol::{
    AckOutcome, CheckpointSettings, Coordinator, Retention, SnapshotKind,
};
use weir_checkpoint::{S3Options, Storage, TaskSnapshot, block_on, paths};
use weir_connectors::Connectors;
use weir_core::config::{ExternalizedRetention, RestartStrategyKind};
use weir_core::guest::GuestSpec;
use weir_core::{CheckpointId, Config, Failure, GuestFactory, JobId, Secrets};

/// A snapshot to start a job from (`weir run -s PATH [-n]`).
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    /// A `chk-<n>` or savepoint directory (or its `_metadata`), or a job's
    /// checkpoint directory (its latest usable checkpoint is taken).
    pub location: String,
    /// Skip state that no operator of the job claims.
    pub allow_non_restored: bool,
}

/// A job to run.
pub struct JobSpec {
    pub job_id: JobId,
    pub config: Config,
    pub factory: Arc<dyn GuestFactory>,
    /// Local directory for the job's working files (RocksDB).
    pub work_dir: PathBuf,
    pub restore: Option<RestoreRequest>,
    /// The snapshot the job was first started from, when it was (a
    /// session resuming the job restores elsewhere but keeps this): what
    /// the job's transaction ids are unique to, besides its id.
    pub lineage: Option<String>,
    /// Told about state changes and checkpoints.
    pub listener: Option<Arc<dyn JobListener>>,
    /// The connectors the job may use (`Connectors::builtin()` and
    /// whatever else the caller registers).
    pub connectors: Connectors,
    /// The cluster that places the job's slots on this process and on
    /// task managers; without one, every task runs in this process.
    pub cluster: Option<Arc<Cluster>>,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    Finished,
    Cancelled,
    /// Stopped with a savepoint at this location.
    Stopped {
        savepoint: String,
    },
    Failed(Failure),
}

/// Commands to a running job.
#[derive(Debug)]
pub enum JobCommand {
    Cancel,
    /// Take a savepoint into `dir` (or `state.savepoints.dir`); with
    /// `stop`, stop the job once it is complete. The reply is the
    /// savepoint's location.
    Savepoint {
        dir: Option<String>,
        stop: bool,
        /// With `stop`: emit the final watermark first (`stop --drain`).
        drain: bool,
        reply: Sender<Result<String, Failure>>,
    },
    /// Take a checkpoint now (Flink's `flink checkpoint`); with `full`, one
    /// that shares no file with earlier checkpoints. The reply is its id.
    Checkpoint {
        full: bool,
        reply: Sender<Result<CheckpointId, Failure>>,
    },
    /// Change the job's module in place at the barrier of a checkpoint.
    Swap(SwapRequest),
}

/// A new module for a running job whose plan has its shape (see
/// [`swap_refusal`](crate::swap_refusal)). Its barrier is a checkpoint's
/// (a savepoint's into `dir` when the job takes no checkpoints): each task
/// snapshots the old module's state at it, then changes modules. From then
/// on, restarts use the new module.
pub struct SwapRequest {
    factory: Arc<dyn GuestFactory>,
    dir: Option<String>,
    allow_non_restored: bool,
    done: Option<SwapDone>,
}

type SwapDone = Box<dyn FnOnce(Result<Swapped, Failure>) + Send>;

impl SwapRequest {
    /// A swap to `factory`'s module. `dir`: where the swap's savepoint goes
    /// when the job takes no checkpoints. `allow_non_restored`: restores
    /// after the swap skip state the new module does not claim. `done` is
    /// called on the job's coordinator thread once the barrier went out and
    /// its snapshot ended (before sinks commit what it covers, and before
    /// the next snapshot); or, with the cause, when the job stays on (or
    /// goes back to) its previous module — also when the job was not
    /// running to take the request.
    pub fn new(
        factory: Arc<dyn GuestFactory>,
        dir: Option<String>,
        allow_non_restored: bool,
        done: impl FnOnce(Result<Swapped, Failure>) + Send + 'static,
    ) -> Self {
        SwapRequest {
            factory,
            dir,
            allow_non_restored,
            done: Some(Box::new(done)),
        }
    }

    fn finish(mut self, result: Result<Swapped, Failure>) {
        if let Some(done) = self.done.take() {
            done(result);
        }
    }
}

impl Drop for SwapRequest {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            done(Err(Failure::user(
                "the job was not running to change modules (restarting or ending); try again",
            )));
        }
    }
}

impl std::fmt::Debug for SwapRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwapRequest")
            .field("module", &self.factory.code_hash())
            .field("dir", &self.dir)
            .finish()
    }
}

/// A module swap that took place.
#[derive(Debug, Clone)]
pub struct Swapped {
    /// The snapshot at whose barrier the tasks changed modules: the old
    /// module's state. None when the snapshot failed (the tasks changed
    /// modules all the same; the job's latest checkpoint is older).
    pub location: Option<String>,
    pub checkpoint: CheckpointId,
}

/// Who waits for a snapshot asked for by a command.
enum Reply {
    Location(Sender<Result<String, Failure>>),
    Id(Sender<Result<CheckpointId, Failure>>),
    Swap(SwapRequest),
}

impl Reply {
    fn send(self, result: Result<(CheckpointId, String), Failure>) {
        match self {
            Reply::Location(r) => {
                let _ = r.send(result.map(|(_, location)| location));
            }
            Reply::Id(r) => {
                let _ = r.send(result.map(|(id, _)| id));
            }
            Reply::Swap(s) => s.finish(result.map(|(checkpoint, location)| Swapped {
                location: Some(location),
                checkpoint,
            })),
        }
    }
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

/// Starts a job on its own coordinator thread.
pub fn start(spec: JobSpec) -> Result<JobHandle, Failure> {
    // The first job of a process sizes the memory its RocksDB instances
    // share, unless the process did (a session does, for all its jobs).
    weir_state::share_memory(
        spec.config.managed_memory as usize,
        spec.config.write_buffer_ratio,
    );
    let graph = spec.factory.graph();
    let metrics = Arc::new(JobMetrics::new(graph.operators.len()));
    for w in &graph.warnings {
        tracing::warn!(job = %spec.job_id, "{w}");
    }
    let (tx, rx) = unbounded();
    let lineage = spec
        .lineage
        .as_deref()
        .map(|l| {
            let l = l.trim_end_matches('/');
            let l = l.strip_suffix("/_metadata").unwrap_or(l);
            l.strip_prefix("file://").unwrap_or(l).to_owned()
        })
        .unwrap_or_default();
    let ctx = Arc::new(JobContext {
        job_id: spec.job_id,
        lineage,
        batch_mode: is_batch(&spec.config, graph),
        config: spec.config,
        factory: RwLock::new(spec.factory),
        metrics: metrics.clone(),
        work_dir: spec.work_dir.join(spec.job_id.to_string()),
        listener: spec.listener.unwrap_or_else(|| Arc::new(NoListener)),
        connectors: spec.connectors,
        storages: Mutex::new(HashMap::new()),
        swaps: Mutex::new(HashMap::new()),
        cluster: spec.cluster,
        commit_gate: None,
    });
    let job_id = spec.job_id;
    let restore = spec.restore;
    let thread = std::thread::Builder::new()
        .name(format!("job-{}", job_id.short()))
        .spawn(move || Master::new(ctx).run(rx, restore))
        .map_err(|e| Failure::internal(format!("cannot start the job thread: {e}")))?;
    Ok(JobHandle {
        job_id,
        commands: tx,
        thread: Some(thread),
        metrics,
    })
}

/// Where a task's controls go.
enum Control {
    Local(Sender<TaskControl>),
    /// A task on the task manager at this cluster URL.
    Remote(String),
}

/// The running tasks of one attempt.
struct Deployment {
    exec: ExecutionGraph,
    controls: BTreeMap<TaskId, Control>,
    threads: Vec<JoinHandle<()>>,
    events: Receiver<TaskEvent>,
    /// Set when some tasks run on task managers.
    remote: Option<RemoteAttempt>,
}

/// An attempt placed by the cluster: ended (its remote tasks cancelled,
/// its slots given back) when dropped.
struct RemoteAttempt {
    cluster: Arc<Cluster>,
    job: JobId,
    attempt: u32,
}

impl Drop for RemoteAttempt {
    fn drop(&mut self) {
        self.cluster.end_attempt(self.job, self.attempt);
    }
}

impl Deployment {
    fn send_to(&self, ctl: impl Fn() -> TaskControl, which: impl Fn(&TaskId) -> bool) {
        let mut remote: BTreeMap<&str, Vec<(TaskId, TaskControl)>> = BTreeMap::new();
        for (id, c) in self.controls.iter().filter(|(id, _)| which(id)) {
            match c {
                Control::Local(tx) => {
                    let _ = tx.send(ctl());
                }
                Control::Remote(address) => remote.entry(address).or_default().push((*id, ctl())),
            }
        }
        if let Some(r) = &self.remote {
            for (address, controls) in remote {
                r.cluster.control(address, r.job, r.attempt, controls);
            }
        }
    }

    fn send_all(&self, ctl: impl Fn() -> TaskControl) {
        self.send_to(ctl, |_| true);
    }

    fn send_sources(&self, ctl: impl Fn() -> TaskControl) {
        self.send_to(ctl, |id| self.exec.is_source_chain(id.chain));
    }

    fn stop(mut self) {
        self.send_all(|| TaskControl::Cancel);
        // Remote tasks first: local ones may wait on their channels.
        drop(self.remote.take());
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Where each slot of an attempt runs, as seen by one process.
pub(crate) struct Placement<'a> {
    /// The cluster URL of each slot; empty when every slot is here.
    pub slots: &'a [String],
    /// This process's cluster URL.
    pub me: &'a str,
}

impl Placement<'_> {
    pub fn here(&self, subtask: u32) -> bool {
        self.slots.is_empty() || self.slots[subtask as usize] == self.me
    }

    fn at(&self, subtask: u32) -> &str {
        &self.slots[subtask as usize]
    }
}

/// The channels of this process's tasks.
pub(crate) struct Wiring {
    pub inputs: HashMap<TaskId, Vec<Receiver<Message>>>,
    /// Each receiving task's priority lane: barriers announced ahead of
    /// what its channels hold.
    pub lanes: HashMap<TaskId, (Sender<Priority>, Receiver<Priority>)>,
    /// Each receiving task's channels' credits, by input (unaligned
    /// checkpoints: the task gives one back per message processed).
    pub credits: HashMap<TaskId, Vec<Receiver<()>>>,
    pub outputs: HashMap<TaskId, Vec<OutputEdge>>,
}

/// Connects this process's tasks of an attempt: channels in the process
/// between its own tasks, network channels to and from other processes'.
pub(crate) fn wire(
    ctx: &JobContext,
    exec: &ExecutionGraph,
    placement: &Placement<'_>,
    attempt: u32,
    events: &Sender<TaskEvent>,
    plane: Option<&Arc<DataPlane>>,
) -> Result<Wiring, Failure> {
    let max_parallelism = ctx.factory().graph().max_parallelism;
    let mut inputs: HashMap<TaskId, Vec<Receiver<Message>>> = HashMap::new();
    let mut lanes: HashMap<TaskId, (Sender<Priority>, Receiver<Priority>)> = HashMap::new();
    let mut credits: HashMap<TaskId, Vec<Receiver<()>>> = HashMap::new();
    let credited = ctx.config.unaligned;
    let mut outputs: HashMap<TaskId, Vec<OutputEdge>> = HashMap::new();
    let need_plane =
        || plane.ok_or_else(|| Failure::internal("a network channel without a data plane"));
    for (ei, e) in exec.edges.iter().enumerate() {
        let up_p = exec.chains[e.from_chain].parallelism;
        let down_p = exec.chains[e.to_chain].parallelism;
        for u in 0..up_p {
            let up = TaskId {
                chain: e.from_chain,
                subtask: u,
            };
            let up_here = placement.here(u);
            let mut targets = Vec::with_capacity(down_p as usize);
            for d in 0..down_p {
                let down = TaskId {
                    chain: e.to_chain,
                    subtask: d,
                };
                let down_here = placement.here(d);
                if !e.connects(u, d) || !(up_here || down_here) {
                    targets.push(None);
                    continue;
                }
                let key = ChannelKey {
                    job: ctx.job_id,
                    attempt,
                    edge: ei,
                    from: u,
                    to: d,
                };
                let mut lane = || {
                    let ins = inputs.entry(down).or_default();
                    let lane = Lane {
                        tx: lanes.entry(down).or_insert_with(unbounded).0.clone(),
                        input: ins.len(),
                    };
                    let (tx, rx) = match credited {
                        true => bounded(CREDITED_CAPACITY),
                        false => bounded(CHANNEL_CAPACITY),
                    };
                    ins.push(rx);
                    let credit = credited.then(|| {
                        let (tx, rx) = bounded(CHANNEL_CAPACITY);
                        credits.entry(down).or_default().push(rx);
                        tx
                    });
                    (tx, lane, credit)
                };
                if up_here && down_here {
                    let (tx, lane, credit) = lane();
                    targets.push(Some(Target::Local(tx, lane, credit)));
                } else if up_here {
                    let tx = need_plane()?.open(placement.at(d), key, events.clone(), up);
                    targets.push(Some(Target::Remote(Arc::new(tx))));
                } else {
                    let (tx, lane, credit) = lane();
                    need_plane()?.expect(key, tx, lane, credit, events.clone(), down);
                    targets.push(None);
                }
            }
            if up_here {
                outputs.entry(up).or_default().push(OutputEdge::new(
                    e.from_op,
                    e.port,
                    e.to_op,
                    e.partitioning,
                    targets,
                    max_parallelism,
                    ctx.metrics.operators[e.from_op as usize].clone(),
                ));
            }
        }
    }
    Ok(Wiring {
        inputs,
        lanes,
        credits,
        outputs,
    })
}

/// Tasks started: their controls and threads.
pub(crate) type Started = (BTreeMap<TaskId, Sender<TaskControl>>, Vec<JoinHandle<()>>);

/// Starts this process's tasks `tasks` of an attempt, each on its thread.
pub(crate) fn spawn_tasks(
    ctx: &Arc<JobContext>,
    exec: &ExecutionGraph,
    tasks: &[TaskId],
    mut wiring: Wiring,
    events: &Sender<TaskEvent>,
    mut start_of: impl FnMut(TaskId) -> Option<TaskStart>,
) -> Result<Started, Failure> {
    let mut controls = BTreeMap::new();
    let mut threads = Vec::new();
    for &id in tasks {
        let chain = &exec.chains[id.chain];
        let (ctl_tx, ctl_rx) = unbounded();
        controls.insert(id, ctl_tx);
        let setup = TaskSetup {
            id,
            index: task_index(&exec.chains, id),
            chain: chain.clone(),
            inputs: wiring.inputs.remove(&id).unwrap_or_default(),
            priority: wiring.lanes.remove(&id).map(|(_, rx)| rx),
            credits: wiring.credits.remove(&id).unwrap_or_default(),
            outputs: wiring.outputs.remove(&id).unwrap_or_default(),
            control: ctl_rx,
            events: events.clone(),
            ctx: ctx.clone(),
            start: start_of(id),
        };
        let name = format!("{} ({}/{})", chain.name, id.subtask + 1, chain.parallelism);
        let t = std::thread::Builder::new()
            .name(name.chars().take(60).collect())
            .spawn(move || task::run(setup))
            .map_err(|e| Failure::internal(format!("cannot start task thread: {e}")))?;
        threads.push(t);
    }
    Ok((controls, threads))
}

/// Every task of an execution graph.
pub(crate) fn all_tasks(exec: &ExecutionGraph) -> Vec<TaskId> {
    exec.chains
        .iter()
        .flat_map(|c| {
            (0..c.parallelism).map(|s| TaskId {
                chain: c.id,
                subtask: s,
            })
        })
        .collect()
}

/// The state a task of this process starts from.
fn local_start(restored: Option<&Restored>, id: TaskId) -> Option<TaskStart> {
    restored.map(|r| TaskStart {
        restore: r
            .plan
            .tasks
            .get(&(id.chain, id.subtask))
            .cloned()
            .unwrap_or_default(),
        files: r.files.clone(),
        reusable_from: r.reusable.then(|| r.dir.clone()),
        checkpoint: r.metadata.checkpoint_id,
    })
}

/// Runs `f` on every item of `items` at once, each on a thread of its
/// own (requests to several task managers); the first failure, if any.
fn in_parallel<I: Send>(
    items: impl IntoIterator<Item = I>,
    what: &str,
    f: impl Fn(I) -> Result<(), Failure> + Sync,
) -> Result<(), Failure> {
    std::thread::scope(|scope| {
        let running: Vec<_> = items
            .into_iter()
            .map(|item| {
                let f = &f;
                scope.spawn(move || f(item))
            })
            .collect();
        running.into_iter().try_for_each(|r| {
            r.join()
                .unwrap_or_else(|_| Err(Failure::internal(format!("{what} panicked"))))
        })
    })
}

/// What the task manager running `tasks` of an attempt is sent.
fn deployment_message(
    ctx: &JobContext,
    attempt: u32,
    guest: &GuestSpec,
    slots: &[String],
    tasks: &[TaskId],
    restored: Option<&Restored>,
) -> Deploy {
    let owner = &ctx.config.owner;
    let (secrets_key, secrets) = match &owner.secrets {
        Secrets::Environment => (None, BTreeMap::new()),
        Secrets::Named { owner_key, values } => (Some(owner_key.clone()), (**values).clone()),
    };
    Deploy {
        job: ctx.job_id,
        attempt,
        config: ctx.config.to_layer(),
        owner: Owner {
            tenant: owner.tenant.clone(),
            secrets_key,
            secrets,
            restricted: owner.restricted,
            files: owner.files.clone(),
        },
        guest: guest.clone(),
        graph: ctx.factory().graph().clone(),
        lineage: ctx.lineage.clone(),
        slots: slots.to_vec(),
        tasks: tasks.to_vec(),
        restore: restored.map(|r| Restore {
            storage: r.storage.url().to_owned(),
            dir: r.dir.clone(),
            checkpoint: r.metadata.checkpoint_id,
            reusable: r.reusable,
            tasks: tasks
                .iter()
                .map(|t| {
                    let restore = r.plan.tasks.get(&(t.chain, t.subtask)).cloned();
                    (*t, restore.unwrap_or_default())
                })
                .collect(),
        }),
    }
}

fn deploy(
    ctx: &Arc<JobContext>,
    restored: Option<&Restored>,
    attempt: u32,
    slots: &[String],
) -> Result<Deployment, Failure> {
    let factory = ctx.factory();
    let exec = ExecutionGraph::build(factory.graph());
    let (events_tx, events) = unbounded();
    let cluster = ctx.cluster.as_ref().filter(|_| !slots.is_empty());
    let me = cluster.map(|c| c.address().to_owned()).unwrap_or_default();
    let placement = Placement { slots, me: &me };
    let tasks = all_tasks(&exec);
    let (here, away): (Vec<TaskId>, Vec<TaskId>) =
        tasks.iter().partition(|t| placement.here(t.subtask));
    let mut remote = None;
    let mut controls = BTreeMap::new();
    if let Some(cluster) = cluster {
        let mut by_worker: BTreeMap<String, Vec<TaskId>> = BTreeMap::new();
        for t in &away {
            by_worker
                .entry(placement.at(t.subtask).to_owned())
                .or_default()
                .push(*t);
            controls.insert(*t, Control::Remote(placement.at(t.subtask).to_owned()));
        }
        cluster.begin_attempt(
            ctx.job_id,
            attempt,
            events_tx.clone(),
            ctx.metrics.clone(),
            &by_worker,
        );
        // From here on, dropping it ends the attempt everywhere.
        remote = Some(RemoteAttempt {
            cluster: cluster.clone(),
            job: ctx.job_id,
            attempt,
        });
        if !by_worker.is_empty() {
            let guest = factory
                .spec()
                .ok_or_else(|| Failure::internal("this job's guest cannot run on task managers"))?;
            if ctx.config.checkpoint_interval.is_some() && ctx.config.checkpoints_dir.is_none() {
                return Err(Failure::user(
                    "a job with tasks on task managers needs state.checkpoints.dir on storage \
                     they share (s3:// or a shared file:// path) to take checkpoints",
                ));
            }
            // In parallel: each task manager prepares its tasks (module,
            // restored state) at once.
            in_parallel(&by_worker, "a deployment", |(address, tasks)| {
                let message = deployment_message(ctx, attempt, &guest, slots, tasks, restored);
                cluster.deploy(address, &message)
            })?;
        }
    }
    let wiring = wire(
        ctx,
        &exec,
        &placement,
        attempt,
        &events_tx,
        cluster.map(|c| c.plane()),
    )?;
    let (local, threads) = spawn_tasks(ctx, &exec, &here, wiring, &events_tx, |id| {
        local_start(restored, id)
    })?;
    controls.extend(local.into_iter().map(|(id, c)| (id, Control::Local(c))));
    Ok(Deployment {
        exec,
        controls,
        threads,
        events,
        remote,
    })
}

/// How one attempt ended.
enum AttemptEnd {
    Finished,
    Cancelled,
    Stopped(String),
    Failed(Failure),
}

/// Completed checkpoints of the job, across attempts.
struct Completed {
    storage: Option<Storage>,
    /// Retained checkpoints (oldest first) and the shared files they use.
    retention: Retention,
    last: CheckpointId,
}

/// Coordinates one job across attempts.
struct Master {
    ctx: Arc<JobContext>,
    settings: Option<CheckpointSettings>,
    completed: Completed,
    started: Instant,
    /// When the current attempt began (before restoring its state).
    attempt_began: Instant,
    /// Restores skip state the job's module does not claim.
    allow_non_restored: bool,
}

fn now_ms(started: Instant) -> u64 {
    started.elapsed().as_millis() as u64
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

impl Master {
    fn new(ctx: Arc<JobContext>) -> Self {
        let c = &ctx.config;
        let settings = c.checkpoint_interval.map(|interval| CheckpointSettings {
            interval,
            timeout: c.checkpoint_timeout,
            min_pause: c.checkpoint_min_pause,
            max_concurrent: c.max_concurrent_checkpoints,
            tolerable_failures: c.tolerable_failed_checkpoints,
        });
        let keep = c.num_retained as usize;
        Master {
            completed: Completed {
                storage: None,
                retention: Retention::new(keep),
                last: CheckpointId(0),
            },
            ctx,
            settings,
            started: Instant::now(),
            attempt_began: Instant::now(),
            allow_non_restored: false,
        }
    }

    fn s3(&self) -> S3Options {
        S3Options::from_config(&self.ctx.config)
    }

    fn checkpoint_storage(&mut self) -> Result<Option<Storage>, Failure> {
        if self.settings.is_none() {
            return Ok(None);
        }
        if self.completed.storage.is_none() {
            // Without a directory, checkpoints stay in this process, as with
            // Flink's JobManager checkpoint storage: restarts after a task
            // failure use them, a new process cannot.
            let url = self.ctx.checkpoints_url();
            self.completed.storage = Some(self.ctx.storage(&url, "state.checkpoints.dir")?);
        }
        Ok(self.completed.storage.clone())
    }

    fn run(
        mut self,
        commands: Receiver<JobCommand>,
        request: Option<RestoreRequest>,
    ) -> JobOutcome {
        let outcome = self.run_attempts(&commands, request);
        let _ = std::fs::remove_dir_all(&self.ctx.work_dir);
        if let JobOutcome::Finished = outcome {
            self.discard_all();
        }
        if let JobOutcome::Cancelled = outcome
            && self.ctx.config.externalized_retention != ExternalizedRetention::RetainOnCancellation
        {
            self.discard_all();
        }
        outcome
    }

    /// Deletes the job's checkpoints, with those it claimed elsewhere.
    fn discard_all(&mut self) {
        if let Some(s) = self.completed.storage.clone() {
            let owned = self.completed.retention.clear();
            let dir = self.ctx.job_id.to_string();
            let result = block_on(async {
                for d in &owned.checkpoints {
                    s.delete_dir(d).await?;
                }
                for f in &owned.shared_files {
                    s.delete(f).await?;
                }
                s.delete_dir(&dir).await
            });
            if let Err(e) = result {
                tracing::warn!(
                    "cannot delete the checkpoints of job {}: {e}",
                    self.ctx.job_id
                );
            }
        }
    }

    fn run_attempts(
        &mut self,
        commands: &Receiver<JobCommand>,
        request: Option<RestoreRequest>,
    ) -> JobOutcome {
        self.allow_non_restored = request.as_ref().is_some_and(|r| r.allow_non_restored);
        let mut candidates = match &request {
            Some(r) => match restore::candidates(&r.location, &self.s3()) {
                Ok(c) => c,
                Err(f) => return JobOutcome::Failed(f),
            },
            None => vec![],
        };
        let mut restarts = 0u32;
        let mut backoff_streak = 0u32;
        loop {
            self.attempt_began = Instant::now();
            let restored = if candidates.is_empty() {
                None
            } else {
                match restore::load(
                    &self.ctx,
                    &candidates,
                    self.allow_non_restored,
                    &self.ctx.work_dir.join("restore"),
                ) {
                    Ok(mut r) => {
                        self.completed.last = self.completed.last.max(r.metadata.checkpoint_id);
                        self.ctx
                            .listener
                            .restored(&r.location, r.metadata.checkpoint_id);
                        if let Err(f) = self.own_restored(&mut r) {
                            return JobOutcome::Failed(f);
                        }
                        Some(r)
                    }
                    Err(f) => return JobOutcome::Failed(f),
                }
            };
            let attempt_started = Instant::now();
            // Too few slots in time fails the attempt, under the restart
            // strategy, as in Flink.
            let end = match self.slots(commands) {
                Err(JobOutcome::Failed(f)) => AttemptEnd::Failed(f),
                Err(end) => return end,
                Ok(slots) => {
                    // Unique among the job's runs (a rescale or an upgrade
                    // starts the same job id again), so that a task manager
                    // never takes one attempt's messages for another's.
                    let attempt = rand::random::<u32>();
                    match deploy(&self.ctx, restored.as_ref(), attempt, &slots) {
                        Ok(dep) => self.run_attempt(dep, commands),
                        Err(f) => AttemptEnd::Failed(f),
                    }
                }
            };
            drop(restored);
            let failure = match end {
                AttemptEnd::Finished => return JobOutcome::Finished,
                AttemptEnd::Cancelled => return JobOutcome::Cancelled,
                AttemptEnd::Stopped(savepoint) => return JobOutcome::Stopped { savepoint },
                AttemptEnd::Failed(f) => f,
            };
            restarts += 1;
            if attempt_started.elapsed() >= self.ctx.config.restart_reset_threshold {
                backoff_streak = 0;
            }
            backoff_streak += 1;
            let Some(delay) = restart_delay(&self.ctx.config, restarts, backoff_streak) else {
                let failure = if restarts > 1 {
                    failure.context(format!("the job failed after {} restarts", restarts - 1))
                } else {
                    failure
                };
                return JobOutcome::Failed(failure);
            };
            tracing::warn!(
                job = %self.ctx.job_id,
                "job failed ({failure}); restarting in {delay:?} (restart {restarts})"
            );
            self.ctx
                .metrics
                .restarts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.ctx.listener.restarting(&failure, delay);
            if let Ok(JobCommand::Cancel) = commands.recv_timeout(delay) {
                return JobOutcome::Cancelled;
            }
            // Restart from the latest retained checkpoint, falling back to
            // older ones, then to what the job was started from.
            if let Some(storage) = &self.completed.storage {
                let mut newer: Vec<(Storage, String)> = self
                    .completed
                    .retention
                    .retained()
                    .rev()
                    .map(|dir| (storage.clone(), dir.to_owned()))
                    .collect();
                for c in candidates.drain(..) {
                    if !newer.iter().any(|(s, d)| s.url() == c.0.url() && *d == c.1) {
                        newer.push(c);
                    }
                }
                candidates = newer;
            }
        }
    }

    /// The slots of the next attempt, from the cluster: waits for enough
    /// of them to be free (task managers to join), up to
    /// `slot.request.timeout`. Empty without a cluster.
    fn slots(&self, commands: &Receiver<JobCommand>) -> Result<Vec<String>, JobOutcome> {
        let Some(cluster) = &self.ctx.cluster else {
            return Ok(Vec::new());
        };
        let exec = ExecutionGraph::build(self.ctx.factory().graph());
        let needed = exec.chains.iter().map(|c| c.parallelism).max().unwrap_or(1);
        let began = Instant::now();
        let mut said = false;
        loop {
            if let Some(slots) = cluster.place(self.ctx.job_id, needed) {
                return Ok(slots);
            }
            let waited = began.elapsed();
            if waited >= self.ctx.config.slot_request_timeout {
                return Err(JobOutcome::Failed(Failure::external(format!(
                    "not enough task slots: the job needs {needed}, {} are free after waiting \
                     {waited:?} (slot.request.timeout); start task managers (weir worker \
                     --join), or lower the job's parallelism",
                    cluster.free_slots()
                ))));
            }
            if !said {
                said = true;
                tracing::warn!(
                    job = %self.ctx.job_id,
                    "waiting for {needed} task slots ({} free)",
                    cluster.free_slots()
                );
            }
            match commands.recv_timeout(Duration::from_millis(100)) {
                Ok(JobCommand::Cancel) | Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    return Err(JobOutcome::Cancelled);
                }
                Ok(JobCommand::Savepoint { reply, .. }) => {
                    let _ = reply.send(Err(not_running()));
                }
                Ok(JobCommand::Checkpoint { reply, .. }) => {
                    let _ = reply.send(Err(not_running()));
                }
                Ok(JobCommand::Swap(s)) => s.finish(Err(not_running())),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// Takes ownership of the checkpoint a job restored, where it owns it:
    /// its own checkpoint (a restart, or a session resuming the job), or
    /// any checkpoint in the checkpoint storage in CLAIM mode. The
    /// checkpoint then joins the retained ones (deleted once subsumed),
    /// and the tasks' first checkpoint refers to its files instead of
    /// uploading them again. In NO_CLAIM mode the snapshot is left alone
    /// and the first checkpoint is self-contained, as in Flink.
    fn own_restored(&mut self, r: &mut restore::Restored) -> Result<(), Failure> {
        use weir_checkpoint::metadata::Kind;
        let Some(storage) = self.checkpoint_storage()? else {
            return Ok(());
        };
        let own = r.dir.starts_with(&format!("{}/", self.ctx.job_id));
        let claim = self.ctx.config.claim_mode == weir_core::config::ClaimMode::Claim;
        if !(own || claim) || r.metadata.kind != Kind::Checkpoint {
            if claim {
                tracing::info!(
                    job = %self.ctx.job_id,
                    "CLAIM mode: {} is a savepoint; it is left as it is", r.location
                );
            }
            return Ok(());
        }
        if r.storage.url() != storage.url() {
            if claim {
                tracing::info!(
                    job = %self.ctx.job_id,
                    "CLAIM mode: {} is outside state.checkpoints.dir; it is left as it is",
                    r.location
                );
            }
            return Ok(());
        }
        let shared: Vec<String> = r
            .metadata
            .files()
            .filter(|f| f.path.starts_with("../"))
            .filter_map(|f| paths::join(&r.dir, &f.path))
            .collect();
        let discard = self.completed.retention.add(r.dir.clone(), shared);
        self.discard(&storage, discard);
        r.reusable = true;
        Ok(())
    }

    /// Deletes checkpoints no longer retained, and shared files no
    /// retained checkpoint uses, in the background.
    fn discard(&self, storage: &Storage, discard: weir_checkpoint::protocol::Discard) {
        let storage = storage.clone();
        weir_checkpoint::storage::io_runtime().spawn(async move {
            for dir in discard.checkpoints {
                if let Err(e) = storage.delete_dir(&dir).await {
                    tracing::warn!("cannot delete checkpoint {dir}: {e}");
                }
            }
            for f in discard.shared_files {
                if let Err(e) = storage.delete(&f).await {
                    tracing::warn!("cannot delete {f}: {e}");
                }
            }
        });
    }

    fn target(&mut self, id: CheckpointId, kind: SnapshotKind) -> Result<SnapshotTarget, Failure> {
        if !matches!(kind, SnapshotKind::Savepoint { .. }) && self.checkpoint_storage()?.is_none() {
            return Err(Failure::internal("checkpoint without checkpoint storage"));
        }
        self.ctx.snapshot_target(id, kind)
    }

    fn run_attempt(&mut self, dep: Deployment, commands: &Receiver<JobCommand>) -> AttemptEnd {
        // Swaps of an earlier attempt: its tasks are gone.
        self.ctx.swaps.lock().expect("swaps lock").clear();
        let tasks = dep.controls.len();
        let settings = self.settings.unwrap_or(CheckpointSettings {
            interval: Duration::MAX,
            timeout: self.ctx.config.checkpoint_timeout,
            min_pause: Duration::ZERO,
            max_concurrent: u32::MAX,
            tolerable_failures: u32::MAX,
        });
        let mut coord: Coordinator<TaskSnapshot> =
            Coordinator::new(settings, tasks, self.completed.last);
        let mut targets: HashMap<CheckpointId, Arc<SnapshotTarget>> = HashMap::new();
        let mut replies: HashMap<CheckpointId, Reply> = HashMap::new();
        let mut running = tasks;
        let mut initializing = tasks;
        let mut data_ended = 0usize;
        let mut final_id: Option<CheckpointId> = None;
        // The final checkpoint, due once every task's data ended.
        let mut final_due = false;
        // Savepoints asked for while a checkpoint was in progress: one
        // snapshot at a time, so that a transactional sink never takes a
        // barrier while its previous transaction still waits to commit.
        let mut queued: std::collections::VecDeque<(SnapshotKind, Reply)> =
            std::collections::VecDeque::new();
        let mut stopping = false;
        // How often time-driven work is looked at (periodic checkpoints,
        // expired ones); events and commands wake the loop at once. A job
        // without checkpoints has little to time: a thousand idle ones
        // should not keep a core busy.
        let tick = if self.settings.is_some() {
            Duration::from_millis(20)
        } else {
            Duration::from_millis(200)
        };
        let end = 'attempt: loop {
            let now = now_ms(self.started);
            crossbeam_channel::select! {
                recv(dep.events) -> ev => match ev {
                    Ok(TaskEvent::Running(_)) => {
                        initializing -= 1;
                        if initializing == 0 {
                            self.ctx.listener.running(tasks);
                            tracing::info!(
                                job = %self.ctx.job_id,
                                "running: {tasks} tasks started in {} ms",
                                self.attempt_began.elapsed().as_millis()
                            );
                        }
                    }
                    Ok(TaskEvent::DataEnded(_)) => {
                        data_ended += 1;
                        if data_ended == tasks && self.settings.is_some() && final_id.is_none() {
                            final_due = true;
                        }
                    }
                    Ok(TaskEvent::Finished(_)) => {
                        running -= 1;
                        if running == 0 {
                            break AttemptEnd::Finished;
                        }
                    }
                    Ok(TaskEvent::Stopped(_)) => {
                        running -= 1;
                        if running == 0 {
                            break AttemptEnd::Cancelled;
                        }
                    }
                    Ok(TaskEvent::Failed(id, f)) => {
                        tracing::error!(task = ?id, "{f}");
                        let chain = &dep.exec.chains[id.chain];
                        self.ctx.listener.task_failed(
                            &format!("{} ({}/{})", chain.name, id.subtask + 1, chain.parallelism),
                            &f,
                        );
                        break AttemptEnd::Failed(f);
                    }
                    Ok(TaskEvent::Ack(task, id, snapshot)) => {
                        let index = task_index(&dep.exec.chains, task);
                        if let AckOutcome::Complete(pending) = coord.ack(id, index, *snapshot, now) {
                            let target = targets.remove(&id).expect("target of a pending checkpoint");
                            let took = Duration::from_millis(now.saturating_sub(pending.started_ms));
                            match self.complete(&dep, &mut coord, &target, pending.acks.into_values().collect(), took) {
                                Ok(location) => {
                                    if let Some(r) = replies.remove(&id) {
                                        self.answer(r, id, Ok((id, location.clone())));
                                    }
                                    if let SnapshotKind::Savepoint { stop: true, .. } = target.kind {
                                        break AttemptEnd::Stopped(location);
                                    }
                                    if final_id == Some(id) {
                                        dep.send_sources(|| TaskControl::Finish);
                                    }
                                }
                                Err(f) => {
                                    self.ctx.listener.checkpoint_failed(id, &f.message);
                                    if let Some(r) = replies.remove(&id) {
                                        self.answer(r, id, Err(f.clone()));
                                    }
                                    if f.domain == weir_core::ErrorDomain::Limit {
                                        // A quota the job's state outgrew.
                                        break AttemptEnd::Failed(f);
                                    }
                                    if let Err(e) = coord.failed(id, &f.message, now) {
                                        break AttemptEnd::Failed(too_many(e));
                                    }
                                }
                            }
                        }
                    }
                    Ok(TaskEvent::Decline(task, id, f)) => {
                        tracing::warn!(task = ?task, "checkpoint {id} declined: {f}");
                        self.ctx.listener.checkpoint_failed(id, &f.message);
                        targets.remove(&id);
                        if let Some(r) = replies.remove(&id) {
                            self.answer(r, id, Err(f.clone()));
                        }
                        if coord.kind(id).is_some()
                            && let Err(e) = coord.failed(id, &f.message, now)
                        {
                            break AttemptEnd::Failed(too_many(e));
                        }
                        if final_id == Some(id) {
                            // Try the final checkpoint again.
                            final_id = None;
                            final_due = true;
                        }
                    }
                    Err(_) => break AttemptEnd::Failed(Failure::internal("all tasks vanished")),
                },
                recv(commands) -> cmd => match cmd {
                    Ok(JobCommand::Cancel) | Err(_) => break AttemptEnd::Cancelled,
                    Ok(JobCommand::Savepoint { dir, stop, drain, reply }) => {
                        let dir = dir.or_else(|| self.ctx.config.savepoints_dir.clone());
                        let Some(dir) = dir else {
                            let _ = reply.send(Err(Failure::user(
                                "no savepoint directory: give one, or set state.savepoints.dir",
                            )));
                            continue;
                        };
                        if data_ended == tasks {
                            let _ = reply.send(Err(Failure::user(
                                "the job has processed all its input; there is nothing to save",
                            )));
                            continue;
                        }
                        stopping |= stop;
                        queued.push_back((
                            SnapshotKind::Savepoint { dir, stop, drain: stop && drain },
                            Reply::Location(reply),
                        ));
                    }
                    Ok(JobCommand::Checkpoint { full, reply }) => {
                        let refusal = if self.settings.is_none() {
                            Some(
                                "checkpointing is not enabled for this job; set \
                                 execution.checkpointing.interval to take checkpoints",
                            )
                        } else if stopping {
                            Some("the job is stopping with a savepoint")
                        } else if data_ended == tasks {
                            Some("the job has processed all its input; there is nothing to checkpoint")
                        } else {
                            None
                        };
                        match refusal {
                            Some(why) => {
                                let _ = reply.send(Err(Failure::user(why)));
                            }
                            None => queued.push_back((SnapshotKind::Manual { full }, Reply::Id(reply))),
                        }
                    }
                    Ok(JobCommand::Swap(req)) => {
                        let swapping = replies.values().chain(queued.iter().map(|(_, r)| r))
                            .any(|r| matches!(r, Reply::Swap(_)));
                        let refusal = if stopping {
                            Some("the job is stopping with a savepoint")
                        } else if data_ended == tasks {
                            Some("the job has processed all its input")
                        } else if swapping {
                            Some("the job is changing modules already")
                        } else {
                            None
                        };
                        if let Some(why) = refusal {
                            req.finish(Err(Failure::user(why)));
                            continue;
                        }
                        let kind = if self.settings.is_some() {
                            SnapshotKind::Manual { full: false }
                        } else {
                            match req.dir.clone().or_else(|| self.ctx.config.savepoints_dir.clone()) {
                                Some(dir) => SnapshotKind::Savepoint { dir, stop: false, drain: false },
                                None => {
                                    req.finish(Err(Failure::user(
                                        "the job takes no checkpoints, so its module changes at \
                                         a savepoint's barrier: give a savepoint directory, or set \
                                         state.savepoints.dir",
                                    )));
                                    continue;
                                }
                            }
                        };
                        queued.push_back((kind, Reply::Swap(req)));
                    }
                },
                default(tick) => {}
            }
            let now = now_ms(self.started);
            for id in coord.expired(now) {
                let f = Failure::external(format!(
                    "checkpoint {id} did not complete within {:?} (execution.checkpointing.timeout)",
                    self.ctx.config.checkpoint_timeout
                ));
                targets.remove(&id);
                self.ctx.listener.checkpoint_failed(id, &f.message);
                if let Some(r) = replies.remove(&id) {
                    self.answer(r, id, Err(f.clone()));
                }
                if let Err(e) = coord.failed(id, &f.message, now) {
                    break 'attempt AttemptEnd::Failed(too_many(e));
                }
                if final_id == Some(id) {
                    final_id = None;
                    final_due = true;
                }
            }
            // One snapshot at a time: what waits goes when none is in
            // progress, savepoints first.
            if coord.pending_ids().next().is_none() {
                if let Some((kind, reply)) = queued.pop_front() {
                    let swap = match &reply {
                        Reply::Swap(s) => Some(Arc::new(ModuleSwap {
                            factory: s.factory.clone(),
                        })),
                        _ => None,
                    };
                    match self.trigger(&dep, &mut coord, &mut targets, kind, swap) {
                        Ok(id) => {
                            replies.insert(id, reply);
                        }
                        Err(f) => reply.send(Err(f)),
                    }
                    continue;
                }
                if final_due && !stopping {
                    final_due = false;
                    match self.trigger(&dep, &mut coord, &mut targets, SnapshotKind::Final, None) {
                        Ok(id) => final_id = Some(id),
                        Err(f) => break AttemptEnd::Failed(f),
                    }
                    continue;
                }
            }
            // Tasks whose input ended still take part in checkpoints (their
            // state and positions are final), until every task has ended.
            if self.settings.is_some()
                && !stopping
                && final_id.is_none()
                && !final_due
                && queued.is_empty()
                && data_ended < tasks
                // The next checkpoint follows a module swap's: it is the new
                // module's.
                && !replies.values().any(|r| matches!(r, Reply::Swap(_)))
                && coord.periodic_due(now)
                && let Err(f) =
                    self.trigger(&dep, &mut coord, &mut targets, SnapshotKind::Checkpoint, None)
            {
                break AttemptEnd::Failed(f);
            }
        };
        // A module swap whose barrier did not pass: the next attempt runs
        // the previous module.
        let why = match &end {
            AttemptEnd::Failed(f) => format!(
                "the job failed before every task changed modules, and restarts on its previous \
                 module: {f}"
            ),
            _ => "the job stopped before every task changed modules".to_owned(),
        };
        for r in replies
            .into_values()
            .chain(queued.into_iter().map(|(_, r)| r))
        {
            if let Reply::Swap(s) = r {
                s.finish(Err(Failure::external(why.clone())));
            }
        }
        self.stop_with(dep, end)
    }

    /// Answers who waits for snapshot `id`, whose barrier went out. A module
    /// swap took place whether or not the snapshot completed: the tasks
    /// change modules at the barrier.
    fn answer(
        &mut self,
        r: Reply,
        id: CheckpointId,
        result: Result<(CheckpointId, String), Failure>,
    ) {
        let Reply::Swap(s) = r else {
            r.send(result);
            return;
        };
        let location = match result {
            Ok((_, location)) => Some(location),
            Err(f) => {
                tracing::warn!(
                    job = %self.ctx.job_id,
                    "the snapshot of the module swap failed ({f}); the tasks change modules all the same"
                );
                None
            }
        };
        tracing::info!(job = %self.ctx.job_id, "changed modules at checkpoint {id}");
        self.ctx.set_factory(s.factory.clone());
        self.allow_non_restored |= s.allow_non_restored;
        s.finish(Ok(Swapped {
            location,
            checkpoint: id,
        }));
    }

    fn stop_with(&self, dep: Deployment, end: AttemptEnd) -> AttemptEnd {
        dep.stop();
        end
    }

    fn trigger(
        &mut self,
        dep: &Deployment,
        coord: &mut Coordinator<TaskSnapshot>,
        targets: &mut HashMap<CheckpointId, Arc<SnapshotTarget>>,
        kind: SnapshotKind,
        swap: Option<Arc<ModuleSwap>>,
    ) -> Result<CheckpointId, Failure> {
        let id = coord.trigger(now_ms(self.started), kind.clone());
        self.ctx.listener.checkpoint_triggered(
            id,
            matches!(kind, SnapshotKind::Savepoint { .. }),
            dep.controls.len(),
        );
        let target = match self.target(id, kind) {
            Ok(t) => Arc::new(t),
            Err(f) => {
                self.ctx.listener.checkpoint_failed(id, &f.message);
                // No task will take part: the snapshot is over, and the
                // next may start. (The caller decides what the failure
                // means for the job.)
                let _ = coord.failed(id, &f.message, now_ms(self.started));
                return Err(f);
            }
        };
        // Savepoints and module swaps stay aligned, as in Flink: they
        // carry no records in flight.
        let config = &self.ctx.config;
        let unaligned = config.unaligned
            && swap.is_none()
            && !matches!(target.kind, SnapshotKind::Savepoint { .. });
        let barrier = Barrier {
            id,
            kind: target.kind.clone(),
            dir: target.dir.clone(),
            swap: swap.is_some(),
            aligned_timeout: unaligned
                .then_some(config.aligned_checkpoint_timeout.as_millis() as u64),
        };
        if let Some(swap) = swap {
            // Task managers load the new module before the barrier reaches
            // their tasks.
            if let Err(f) = self.prepare_swap(dep, id, &swap) {
                self.ctx.listener.checkpoint_failed(id, &f.message);
                let _ = coord.failed(id, &f.message, now_ms(self.started));
                // The job runs on its previous module, never stopped.
                return Err(Failure::user(format!(
                    "{}; the job runs on its previous module",
                    f.message
                )));
            }
            self.ctx.add_swap(id, swap);
        }
        targets.insert(id, target);
        dep.send_sources(|| TaskControl::Trigger(barrier.clone()));
        Ok(id)
    }

    /// Sends the module of a swap at checkpoint `id` to every task manager
    /// running tasks of the attempt, and waits until each loaded it.
    fn prepare_swap(
        &self,
        dep: &Deployment,
        id: CheckpointId,
        swap: &ModuleSwap,
    ) -> Result<(), Failure> {
        let (Some(remote), Some(cluster)) = (&dep.remote, &self.ctx.cluster) else {
            return Ok(());
        };
        let addresses: std::collections::BTreeSet<&str> = dep
            .controls
            .values()
            .filter_map(|c| match c {
                Control::Remote(a) => Some(a.as_str()),
                Control::Local(_) => None,
            })
            .collect();
        if addresses.is_empty() {
            return Ok(());
        }
        let guest = swap.factory.spec().ok_or_else(|| {
            Failure::user("the new module cannot run on task managers (it has no module hash)")
        })?;
        let message = PrepareSwap {
            job: self.ctx.job_id,
            attempt: remote.attempt,
            checkpoint: id,
            guest,
            graph: swap.factory.graph().clone(),
        };
        in_parallel(&addresses, "a swap preparation", |a| {
            cluster.prepare_swap(a, &message)
        })
    }

    /// Every task acknowledged: writes `_metadata` (the checkpoint is then
    /// complete), retires old checkpoints and notifies the tasks.
    fn complete(
        &mut self,
        dep: &Deployment,
        coord: &mut Coordinator<TaskSnapshot>,
        target: &SnapshotTarget,
        tasks: Vec<TaskSnapshot>,
        took: Duration,
    ) -> Result<String, Failure> {
        let factory = self.ctx.factory();
        let graph = factory.graph();
        let meta = SnapshotMetadata {
            job_id: self.ctx.job_id,
            checkpoint_id: target.id,
            kind: match target.kind {
                SnapshotKind::Savepoint { .. } => Kind::Savepoint,
                _ => Kind::Checkpoint,
            },
            timestamp_ms: wall_ms(),
            job_name: graph.name.clone(),
            job_version: graph.version.clone(),
            module_hash: factory.code_hash(),
            max_parallelism: graph.max_parallelism,
            operators: graph
                .operators
                .iter()
                .map(|o| OperatorInfo {
                    uid: o.uid.0.clone(),
                    name: o.name.clone(),
                    parallelism: o.parallelism,
                })
                .collect(),
            tasks,
        };
        let size: u64 = meta.files().map(|f| f.size).sum();
        // What this checkpoint uploaded: its own files and shared files no
        // retained checkpoint had.
        let uploaded: u64 = meta
            .files()
            .filter(|f| {
                !f.path.starts_with("../")
                    || paths::join(&target.dir, &f.path)
                        .is_none_or(|p| !self.completed.retention.is_referenced(&p))
            })
            .map(|f| f.size)
            .sum();
        // A coordinator that no longer leads writes no snapshot: the one
        // that does may take the same checkpoint number.
        self.ctx.listener.may_complete(target.id)?;
        let metadata_path = format!("{}/{}", target.dir, paths::METADATA);
        block_on(target.storage.put(&metadata_path, meta.encode().into()))
            .map_err(|e| Failure::external(e.message).context("writing checkpoint metadata"))?;
        let savepoint = matches!(target.kind, SnapshotKind::Savepoint { .. });
        let commits = !matches!(target.kind, SnapshotKind::Savepoint { stop: false, .. });
        let location = target.storage.url_of(&target.dir);
        let report = CheckpointReport {
            id: target.id,
            savepoint,
            duration: took,
            state_size: size,
            uploaded,
            location: location.clone(),
            commits,
        };
        // The listener records the checkpoint (the HA pointer) before any
        // sink commits it.
        self.ctx.listener.checkpoint_completed(&report)?;
        coord.completed(target.id);
        tracing::info!(
            job = %self.ctx.job_id,
            "completed {location} in {} ms ({size} bytes of state, {uploaded} bytes uploaded)",
            took.as_millis()
        );
        if !savepoint {
            self.completed.last = self.completed.last.max(target.id);
            let shared: Vec<String> = meta
                .files()
                .filter(|f| f.path.starts_with("../"))
                .filter_map(|f| paths::join(&target.dir, &f.path))
                .collect();
            let discard = self.completed.retention.add(target.dir.clone(), shared);
            self.discard(&target.storage, discard);
        }
        self.ctx
            .metrics
            .record_checkpoint(target.id, size, uploaded, took);
        if commits {
            dep.send_all(|| TaskControl::Complete(target.id));
        }
        Ok(location)
    }
}

fn not_running() -> Failure {
    Failure::user("the job waits for task slots and is not running; try again once it runs")
}

fn too_many(e: weir_checkpoint::protocol::TooManyFailures) -> Failure {
    Failure::external(format!(
        "{} checkpoints failed in a row, more than execution.checkpointing.\
         tolerable-failed-checkpoints allows; the last failure: {}",
        e.failures, e.last_reason
    ))
}

/// The delay before restart number `restarts`, or None to give up.
fn restart_delay(c: &Config, restarts: u32, streak: u32) -> Option<Duration> {
    match c.restart_strategy {
        RestartStrategyKind::None => None,
        RestartStrategyKind::FixedDelay => {
            (restarts <= c.restart_attempts).then_some(c.restart_delay)
        }
        RestartStrategyKind::ExponentialDelay => {
            if streak > c.restart_exponential_attempts {
                return None;
            }
            let factor = c
                .restart_backoff_multiplier
                .powi(streak.saturating_sub(1) as i32);
            let delay = c.restart_initial_backoff.mul_f64(factor.max(1.0));
            Some(delay.min(c.restart_max_backoff))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_strategies() {
        let mut c = Config::default();
        assert_eq!(restart_delay(&c, 1, 1), None);
        c.restart_strategy = RestartStrategyKind::FixedDelay;
        c.restart_attempts = 2;
        c.restart_delay = Duration::from_millis(5);
        assert_eq!(restart_delay(&c, 2, 2), Some(Duration::from_millis(5)));
        assert_eq!(restart_delay(&c, 3, 3), None);
        c.restart_strategy = RestartStrategyKind::ExponentialDelay;
        c.restart_initial_backoff = Duration::from_millis(10);
        c.restart_backoff_multiplier = 2.0;
        c.restart_max_backoff = Duration::from_millis(50);
        c.restart_exponential_attempts = 5;
        assert_eq!(restart_delay(&c, 1, 1), Some(Duration::from_millis(10)));
        assert_eq!(restart_delay(&c, 3, 3), Some(Duration::from_millis(40)));
        assert_eq!(restart_delay(&c, 4, 4), Some(Duration::from_millis(50)));
        assert_eq!(restart_delay(&c, 6, 6), None);
    }
}
