//! What a job and its tasks tell each other: commands to tasks and the
//! events they report, by task.

use crate::channel::Barrier;
use weir_checkpoint::TaskSnapshot;
use weir_core::{CheckpointId, Failure};

/// Identifies a subtask of a chain.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct TaskId {
    pub chain: usize,
    pub subtask: u32,
}

/// Commands from the job to a task.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum TaskControl {
    Cancel,
    /// Sources: take a checkpoint and inject its barrier.
    Trigger(Barrier),
    /// A checkpoint is complete: commit what it covers.
    Complete(CheckpointId),
    /// Sources whose data ended: close the stream.
    Finish,
}

/// What a task reports to its job.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum TaskEvent {
    /// The task restored its state and started processing.
    Running(TaskId),
    /// The task processed all its data (it stays for the final checkpoint).
    DataEnded(TaskId),
    Finished(TaskId),
    Failed(TaskId, Failure),
    /// Stopped because the job is stopping.
    Stopped(TaskId),
    /// The task's state for a checkpoint is uploaded.
    Ack(TaskId, CheckpointId, Box<TaskSnapshot>),
    /// The task could not take or upload its part of a checkpoint.
    Decline(TaskId, CheckpointId, Failure),
}

impl TaskEvent {
    /// The task that reports it.
    pub fn task(&self) -> TaskId {
        match self {
            TaskEvent::Running(t)
            | TaskEvent::DataEnded(t)
            | TaskEvent::Finished(t)
            | TaskEvent::Failed(t, _)
            | TaskEvent::Stopped(t)
            | TaskEvent::Ack(t, _, _)
            | TaskEvent::Decline(t, _, _) => *t,
        }
    }
}
