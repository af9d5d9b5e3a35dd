//! What the session knows about each job: its state with timestamps, its
//! checkpoint history, its exceptions and its savepoint operations. Kept
//! up to date by the job's coordinator through [`JobListener`].

use crate::ha::HaStore;
use crate::storage_use::{StorageQuota, StorageUse};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weir_core::{CheckpointId, Failure, JobId};
use weir_runtime::{CheckpointReport, JobListener};

/// Checkpoints kept in a job's history (Flink's `web.checkpoints.history`).
const HISTORY: usize = 10;
/// Exceptions kept per job.
const EXCEPTIONS: usize = 32;

/// Flink's job states (those a Weir job goes through).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    Initializing,
    Running,
    Restarting,
    Cancelling,
    Canceled,
    Finished,
    Failed,
}

impl JobState {
    pub fn name(self) -> &'static str {
        match self {
            JobState::Initializing => "INITIALIZING",
            JobState::Running => "RUNNING",
            JobState::Restarting => "RESTARTING",
            JobState::Cancelling => "CANCELLING",
            JobState::Canceled => "CANCELED",
            JobState::Finished => "FINISHED",
            JobState::Failed => "FAILED",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Canceled | JobState::Finished | JobState::Failed
        )
    }

    pub const ALL: [JobState; 7] = [
        JobState::Initializing,
        JobState::Running,
        JobState::Restarting,
        JobState::Cancelling,
        JobState::Canceled,
        JobState::Finished,
        JobState::Failed,
    ];
}

/// One failure of a job, as the exceptions route shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ExceptionEntry {
    #[serde(rename = "exceptionName")]
    pub name: String,
    pub stacktrace: String,
    pub timestamp: u64,
    #[serde(rename = "taskName")]
    pub task: Option<String>,
}

impl ExceptionEntry {
    pub fn new(f: &Failure, task: Option<&str>) -> Self {
        ExceptionEntry {
            name: f.domain.to_string(),
            stacktrace: f.message.clone(),
            timestamp: now_ms(),
            task: task.map(str::to_owned),
        }
    }
}

/// A checkpoint or savepoint of a job, as the checkpoints routes show it.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointEntry {
    pub id: u64,
    /// IN_PROGRESS, COMPLETED or FAILED.
    pub status: &'static str,
    pub is_savepoint: bool,
    pub checkpoint_type: &'static str,
    pub trigger_timestamp: u64,
    pub latest_ack_timestamp: Option<u64>,
    pub state_size: u64,
    pub checkpointed_size: u64,
    pub end_to_end_duration: u64,
    pub num_subtasks: usize,
    pub num_acknowledged_subtasks: usize,
    pub external_path: Option<String>,
    pub failure_message: Option<String>,
    pub failure_timestamp: Option<u64>,
}

/// Where an operation asked for through the API stands (a savepoint, a
/// checkpoint, a savepoint's disposal).
#[derive(Debug, Clone)]
pub enum Operation {
    InProgress,
    /// A savepoint, at this location; or a disposal, of it.
    Completed(String),
    /// A checkpoint, with its id.
    Checkpointed(u64),
    Failed(String),
}

/// Operations remembered per job (and disposals per session); the oldest
/// ended ones are forgotten first.
pub const OPERATIONS_KEPT: usize = 200;

/// Operations by trigger id, oldest first.
pub type Operations = indexmap::IndexMap<String, Operation>;

/// Records `op` under `trigger`, forgetting the oldest ended operations
/// beyond [`OPERATIONS_KEPT`].
pub fn remember<V>(
    ops: &mut indexmap::IndexMap<String, V>,
    trigger: String,
    op: V,
    ended: impl Fn(&V) -> bool,
) {
    ops.insert(trigger, op);
    while ops.len() > OPERATIONS_KEPT {
        match ops.values().position(&ended) {
            Some(i) => {
                ops.shift_remove_index(i);
            }
            None => break,
        }
    }
}

impl Operation {
    pub fn ended(&self) -> bool {
        !matches!(self, Operation::InProgress)
    }
}

/// The mutable part of a job's status.
#[derive(Debug)]
pub struct Status {
    pub state: JobState,
    pub start_ms: u64,
    pub end_ms: Option<u64>,
    pub timestamps: BTreeMap<JobState, u64>,
    pub exceptions: VecDeque<ExceptionEntry>,
    pub root_exception: Option<ExceptionEntry>,
    pub checkpoints: VecDeque<CheckpointEntry>,
    pub completed: u64,
    pub failed: u64,
    pub restored: Option<(u64, String)>,
    pub latest_completed: Option<CheckpointEntry>,
    pub latest_savepoint: Option<CheckpointEntry>,
    pub latest_failed: Option<CheckpointEntry>,
    /// Savepoints (and stops with a savepoint) by trigger id.
    pub operations: Operations,
    /// Checkpoints asked for through the API, by trigger id.
    pub checkpoint_operations: Operations,
    /// Where the job stopped with a savepoint.
    pub stopped_at: Option<String>,
}

impl Status {
    pub fn new() -> Self {
        let now = now_ms();
        Status {
            state: JobState::Initializing,
            start_ms: now,
            end_ms: None,
            timestamps: [(JobState::Initializing, now)].into(),
            exceptions: VecDeque::new(),
            root_exception: None,
            checkpoints: VecDeque::new(),
            completed: 0,
            failed: 0,
            restored: None,
            latest_completed: None,
            latest_savepoint: None,
            latest_failed: None,
            operations: Default::default(),
            checkpoint_operations: Default::default(),
            stopped_at: None,
        }
    }

    /// Moves to `state` unless the job already ended.
    pub fn set(&mut self, state: JobState) {
        if self.state.is_terminal() || self.state == state {
            return;
        }
        // A cancel in progress stays visible until the job ends.
        if self.state == JobState::Cancelling && !state.is_terminal() {
            return;
        }
        let now = now_ms();
        self.state = state;
        self.timestamps.insert(state, now);
        if state.is_terminal() {
            self.end_ms = Some(now);
        }
    }

    pub fn add_exception(&mut self, e: ExceptionEntry) {
        self.root_exception = Some(e.clone());
        self.exceptions.push_front(e);
        self.exceptions.truncate(EXCEPTIONS);
    }

    fn checkpoint_mut(&mut self, id: CheckpointId) -> Option<&mut CheckpointEntry> {
        self.checkpoints.iter_mut().find(|c| c.id == id.0)
    }

    pub fn in_progress(&self) -> usize {
        self.checkpoints
            .iter()
            .filter(|c| c.status == "IN_PROGRESS")
            .count()
    }
}

/// A job's status, shared between the REST handlers and the job's
/// coordinator.
#[derive(Debug)]
pub struct StatusCell {
    pub job_id: JobId,
    pub inner: Mutex<Status>,
    ha: HaStore,
    /// The owning tenant's storage quota and use.
    quota: Option<(StorageQuota, Arc<StorageUse>)>,
}

impl StatusCell {
    pub fn new(job_id: JobId, ha: HaStore) -> Self {
        StatusCell {
            job_id,
            inner: Mutex::new(Status::new()),
            ha,
            quota: None,
        }
    }

    /// Holds the job's checkpoints to its tenant's storage quota.
    pub(crate) fn with_quota(mut self, q: StorageQuota, used: Arc<StorageUse>) -> Self {
        self.quota = Some((q, used));
        self
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Status> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl JobListener for StatusCell {
    fn running(&self, _tasks: usize) {
        self.lock().set(JobState::Running);
    }

    fn task_failed(&self, task: &str, failure: &Failure) {
        self.lock()
            .add_exception(ExceptionEntry::new(failure, Some(task)));
    }

    fn restarting(&self, _failure: &Failure, _delay: Duration) {
        self.lock().set(JobState::Restarting);
    }

    fn restored(&self, location: &str, _id: CheckpointId) {
        self.lock().restored = Some((now_ms(), location.to_owned()));
    }

    fn checkpoint_triggered(&self, id: CheckpointId, savepoint: bool, tasks: usize) {
        let mut s = self.lock();
        s.checkpoints.push_front(CheckpointEntry {
            id: id.0,
            status: "IN_PROGRESS",
            is_savepoint: savepoint,
            checkpoint_type: if savepoint { "SAVEPOINT" } else { "CHECKPOINT" },
            trigger_timestamp: now_ms(),
            latest_ack_timestamp: None,
            state_size: 0,
            checkpointed_size: 0,
            end_to_end_duration: 0,
            num_subtasks: tasks,
            num_acknowledged_subtasks: 0,
            external_path: None,
            failure_message: None,
            failure_timestamp: None,
        });
        s.checkpoints.truncate(HISTORY);
    }

    fn may_complete(&self, id: weir_core::CheckpointId) -> Result<(), Failure> {
        self.ha
            .fenced()
            .map_err(|e| Failure::external(format!("checkpoint {id} is not completed: {e:#}")))
    }

    fn checkpoint_completed(&self, r: &CheckpointReport) -> Result<(), Failure> {
        if let Some((q, used)) = &self.quota
            && !r.savepoint
        {
            used.checkpoint(q, self.job_id, r.state_size)?;
        }
        // The pointer is written before the tasks learn that the
        // checkpoint is complete (and commit their transactions), so a
        // restarted session never resumes from an older checkpoint than
        // the sinks committed; when it cannot be written, they do not
        // commit. (A savepoint that stops the job commits too, so it
        // becomes the pointer.)
        if r.commits
            && let Err(e) = self
                .ha
                .set_latest_checkpoint(self.job_id, &r.location)
                // Deposed while the write was on its way: no sink commits.
                .and_then(|()| self.ha.fenced())
        {
            tracing::error!(job = %self.job_id, "{e:#}");
            return Err(Failure::external(format!(
                "checkpoint {} is complete, but the HA store cannot record it ({e:#}); its \
                 data is committed with a later checkpoint",
                r.id
            )));
        }
        let mut s = self.lock();
        let now = now_ms();
        let entry = match s.checkpoint_mut(r.id) {
            Some(e) => e,
            None => return Ok(()),
        };
        entry.status = "COMPLETED";
        entry.latest_ack_timestamp = Some(now);
        entry.state_size = r.state_size;
        entry.checkpointed_size = r.uploaded;
        entry.end_to_end_duration = r.duration.as_millis() as u64;
        entry.num_acknowledged_subtasks = entry.num_subtasks;
        entry.external_path = Some(r.location.clone());
        let e = entry.clone();
        s.completed += 1;
        if r.savepoint {
            s.latest_savepoint = Some(e);
        } else {
            s.latest_completed = Some(e);
        }
        Ok(())
    }

    fn checkpoint_failed(&self, id: CheckpointId, reason: &str) {
        let mut s = self.lock();
        let now = now_ms();
        let Some(entry) = s.checkpoint_mut(id) else {
            return;
        };
        if entry.status != "IN_PROGRESS" {
            return;
        }
        entry.status = "FAILED";
        entry.failure_message = Some(reason.to_owned());
        entry.failure_timestamp = Some(now);
        entry.end_to_end_duration = now.saturating_sub(entry.trigger_timestamp);
        let e = entry.clone();
        s.failed += 1;
        s.latest_failed = Some(e);
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}
