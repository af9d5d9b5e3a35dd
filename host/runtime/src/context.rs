//! What a job's tasks share, wherever they run, and what a job reports
//! while it runs.

use crate::chain::CommitGate;
use crate::channel::Barrier;
use crate::metrics::JobMetrics;
use crate::net::Cluster;
use crate::snapshot::SnapshotTarget;
use crate::swap::ModuleSwap;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use weir_checkpoint::protocol::SnapshotKind;
use weir_checkpoint::{S3Options, Storage, paths};
use weir_connectors::Connectors;
use weir_core::config::RuntimeMode;
use weir_core::{CheckpointId, Config, Failure, GuestFactory, JobId};

/// What a job's tasks share.
pub(crate) struct JobContext {
    pub job_id: JobId,
    /// See [`JobSpec::lineage`](crate::JobSpec::lineage) (normalized; empty
    /// when none).
    pub lineage: String,
    pub config: Config,
    /// The module the job runs: replaced when it changes modules in place.
    pub(crate) factory: RwLock<Arc<dyn GuestFactory>>,
    pub metrics: Arc<JobMetrics>,
    pub work_dir: PathBuf,
    pub batch_mode: bool,
    pub listener: Arc<dyn JobListener>,
    /// The connectors the job's sources and sinks are opened with.
    pub connectors: Connectors,
    /// Snapshot storage opened so far, by URL.
    pub(crate) storages: Mutex<HashMap<String, Storage>>,
    /// Module swaps, by the checkpoint whose barrier brings them.
    pub(crate) swaps: Mutex<HashMap<CheckpointId, Arc<ModuleSwap>>>,
    /// The cluster that places the job's slots, in a coordinator.
    pub cluster: Option<Arc<Cluster>>,
    /// On a task manager: whether it still hears from its coordinator.
    /// A sink commits only while it does.
    pub(crate) commit_gate: Option<CommitGate>,
}

impl JobContext {
    /// The context of a job's tasks on a task manager.
    pub(crate) fn for_worker(
        job_id: JobId,
        lineage: String,
        config: Config,
        factory: Arc<dyn GuestFactory>,
        work_dir: PathBuf,
        connectors: Connectors,
        commit_gate: CommitGate,
    ) -> JobContext {
        let graph = factory.graph();
        JobContext {
            job_id,
            lineage,
            batch_mode: is_batch(&config, graph),
            metrics: Arc::new(JobMetrics::new(graph.operators.len())),
            config,
            factory: RwLock::new(factory),
            work_dir,
            listener: Arc::new(NoListener),
            connectors,
            storages: Mutex::new(HashMap::new()),
            swaps: Mutex::new(HashMap::new()),
            cluster: None,
            commit_gate: Some(commit_gate),
        }
    }

    /// Whether the tasks may commit a completed checkpoint now: always in
    /// a coordinator's process (fenced by its lease), on a task manager
    /// only while it hears from its coordinator, which would otherwise
    /// have restarted the job elsewhere.
    pub fn may_commit(&self) -> bool {
        self.commit_gate.as_ref().is_none_or(|g| g())
    }

    /// The gate sinks go by (none in a coordinator's process).
    pub(crate) fn commit_gate(&self) -> Option<CommitGate> {
        self.commit_gate.clone()
    }

    /// Where snapshot `id` of `kind` goes: a new directory of its own for a
    /// savepoint, `chk-<id>` in the job's checkpoint storage
    /// (`state.checkpoints.dir`; without one, in this process, as Flink's
    /// JobManager checkpoint storage) for a checkpoint.
    pub fn snapshot_target(
        &self,
        id: CheckpointId,
        kind: SnapshotKind,
    ) -> Result<SnapshotTarget, Failure> {
        let dir = match kind {
            SnapshotKind::Savepoint { .. } => paths::savepoint_dir(self.job_id),
            _ => paths::checkpoint_dir(self.job_id, id),
        };
        self.target_at(id, kind, dir)
    }

    /// Where the snapshot of `barrier` goes, as the coordinator chose it.
    pub fn barrier_target(&self, barrier: &Barrier) -> Result<SnapshotTarget, Failure> {
        self.target_at(barrier.id, barrier.kind.clone(), barrier.dir.clone())
    }

    fn target_at(
        &self,
        id: CheckpointId,
        kind: SnapshotKind,
        dir: String,
    ) -> Result<SnapshotTarget, Failure> {
        let (storage, shared) = match &kind {
            SnapshotKind::Savepoint { dir, .. } => {
                (self.storage(dir, "savepoint directory")?, None)
            }
            _ => (
                self.storage(&self.checkpoints_url(), "state.checkpoints.dir")?,
                // Full checkpoints are self-contained: every file goes into
                // the checkpoint's own directory.
                (self.config.incremental && !matches!(kind, SnapshotKind::Manual { full: true }))
                    .then(|| paths::shared_dir(self.job_id)),
            ),
        };
        Ok(SnapshotTarget {
            id,
            storage,
            dir,
            shared,
            kind,
        })
    }

    /// The job's checkpoint storage URL.
    pub(crate) fn checkpoints_url(&self) -> String {
        self.config
            .checkpoints_dir
            .clone()
            .unwrap_or_else(|| format!("memory://{}", self.job_id))
    }

    /// The storage at `url`, opened once.
    pub(crate) fn storage(&self, url: &str, what: &str) -> Result<Storage, Failure> {
        let mut opened = self.storages.lock().expect("storages lock");
        if let Some(s) = opened.get(url) {
            return Ok(s.clone());
        }
        let s = Storage::open(url, &S3Options::from_config(&self.config))
            .map_err(|e| Failure::external(e.message).context(what))?;
        // Each savepoint may name another directory: the cache stays small.
        if opened.len() >= MAX_OPEN_STORAGES {
            opened.clear();
        }
        opened.insert(url.to_owned(), s.clone());
        Ok(s)
    }

    /// The barrier of checkpoint `id` brings `swap`.
    pub(crate) fn add_swap(&self, id: CheckpointId, swap: Arc<ModuleSwap>) {
        self.swaps.lock().expect("swaps lock").insert(id, swap);
    }

    /// The module the barrier of checkpoint `id` brings.
    pub fn swap_at(&self, id: CheckpointId) -> Option<Arc<ModuleSwap>> {
        self.swaps.lock().expect("swaps lock").get(&id).cloned()
    }

    /// The module the job runs now.
    pub fn factory(&self) -> Arc<dyn GuestFactory> {
        self.factory.read().expect("factory lock").clone()
    }

    pub(crate) fn set_factory(&self, f: Arc<dyn GuestFactory>) {
        *self.factory.write().expect("factory lock") = f;
    }
}

/// Snapshot storages a job keeps open (its checkpoints', and recent
/// savepoints' directories).
const MAX_OPEN_STORAGES: usize = 8;

/// A completed checkpoint or savepoint, as reported to a [`JobListener`].
#[derive(Debug, Clone)]
pub struct CheckpointReport {
    pub id: CheckpointId,
    pub savepoint: bool,
    pub duration: Duration,
    /// Bytes of state it refers to.
    pub state_size: u64,
    /// Bytes it uploaded.
    pub uploaded: u64,
    pub location: String,
    /// Whether sinks commit what it covers (checkpoints, and savepoints
    /// that stop the job; an intermediate savepoint commits nothing, as
    /// in Flink, since recovery never restores from it).
    pub commits: bool,
}

/// What a job reports while it runs; the session cluster keeps job status,
/// checkpoint history and HA pointers with it. Called on the job's
/// coordinator thread: implementations return quickly.
pub trait JobListener: Send + Sync {
    /// Every task of an attempt is running.
    fn running(&self, _tasks: usize) {}
    /// A task failed (the attempt ends).
    fn task_failed(&self, _task: &str, _failure: &Failure) {}
    /// The job restarts after `delay`.
    fn restarting(&self, _failure: &Failure, _delay: Duration) {}
    /// An attempt restored the snapshot at `location`.
    fn restored(&self, _location: &str, _id: CheckpointId) {}
    fn checkpoint_triggered(&self, _id: CheckpointId, _savepoint: bool, _tasks: usize) {}
    /// Called before a snapshot's `_metadata` is written: an error (this
    /// coordinator was deposed) leaves it incomplete.
    fn may_complete(&self, _id: CheckpointId) -> Result<(), Failure> {
        Ok(())
    }
    /// Called after `_metadata` is written and before the tasks are told
    /// (and commit their transactions). An error (the HA store cannot
    /// record the checkpoint) keeps the sinks from committing it: the
    /// checkpoint counts as failed, and a later one commits its data.
    fn checkpoint_completed(&self, _report: &CheckpointReport) -> Result<(), Failure> {
        Ok(())
    }
    fn checkpoint_failed(&self, _id: CheckpointId, _reason: &str) {}
}

pub(crate) struct NoListener;
impl JobListener for NoListener {}

/// Whether keyed aggregations emit only final results.
pub fn is_batch(config: &Config, graph: &weir_core::JobGraph) -> bool {
    match config.runtime_mode {
        RuntimeMode::Batch => true,
        RuntimeMode::Streaming => false,
        RuntimeMode::Automatic => graph.is_bounded(),
    }
}
