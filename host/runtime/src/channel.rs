//! What travels between tasks, and how a task's output is partitioned over
//! the subtasks downstream.
//!
//! Channels are bounded: a full channel blocks the sender, so a slow task
//! slows its inputs down (backpressure) instead of buffering without limit.
//! Control messages (barriers, watermarks, end of input) travel in the same
//! channels as data, in order.

use crate::metrics::OperatorMetrics;
use crate::net::data::RemoteSender;
use crossbeam_channel::{Sender, TrySendError};
use std::sync::Arc;
use std::time::Instant;
use weir_checkpoint::protocol::SnapshotKind;
use weir_core::plan::Partitioning;
use weir_core::{CheckpointId, Failure, KeyGroup};
use weir_frame::{Reader, Writer};

/// Messages between tasks.
#[derive(Debug)]
pub enum Message {
    Batch(Batch),
    /// Checkpoint barrier: the records before it belong to the checkpoint.
    Barrier(Barrier),
    /// No record with a smaller event timestamp follows.
    Watermark(i64),
    /// The upstream subtask has no records for now; its watermark does not
    /// hold others back until it sends records or a watermark again.
    Idle,
    /// The upstream subtask has no more records (barriers may still follow,
    /// for the final checkpoint of a bounded job).
    EndOfData,
    /// The upstream subtask is done; nothing follows.
    EndOfPartition,
}

/// A framed batch of records.
#[derive(Debug, Default)]
pub struct Batch {
    pub data: Vec<u8>,
    pub records: u32,
}

impl Batch {
    pub fn new(data: Vec<u8>, records: u32) -> Self {
        Batch { data, records }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// A checkpoint barrier: plain data, as it would cross a network. The
/// storage its snapshot goes to follows from the job and the kind
/// (`JobContext::barrier_target`); the module a swap brings is found by
/// the checkpoint's id (`JobContext::swap_at`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Barrier {
    pub id: CheckpointId,
    pub kind: SnapshotKind,
    /// The snapshot's directory, relative to its storage's root (a
    /// savepoint's is chosen anew for each).
    pub dir: String,
    /// The job changes modules at this barrier.
    pub swap: bool,
}

/// Channel capacity in messages; with batches of a few tens of KiB this
/// bounds the memory in flight per channel.
pub const CHANNEL_CAPACITY: usize = 16;

/// Bytes a partition buffer collects before it is sent.
pub const BUFFER_BYTES: usize = 64 * 1024;

/// The downstream side of one chain edge, as seen by one upstream subtask.
pub(crate) struct OutputEdge {
    pub from_op: u32,
    pub port: u32,
    partitioning: Partitioning,
    /// Senders indexed by downstream subtask (None where not connected).
    targets: Vec<Option<Target>>,
    buffers: Vec<Writer>,
    max_parallelism: u32,
    next: usize,
    metrics: Arc<OperatorMetrics>,
}

/// Where a channel leads: a task of this process, or of another one.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Local(Sender<Message>),
    Remote(RemoteSender),
}

/// The receiving task is gone; the job is stopping.
#[derive(Debug)]
pub(crate) struct Disconnected;

impl OutputEdge {
    pub fn new(
        from_op: u32,
        port: u32,
        partitioning: Partitioning,
        targets: Vec<Option<Target>>,
        max_parallelism: u32,
        metrics: Arc<OperatorMetrics>,
    ) -> Self {
        let buffers = (0..targets.len()).map(|_| Writer::new()).collect();
        OutputEdge {
            from_op,
            port,
            partitioning,
            targets,
            buffers,
            max_parallelism,
            next: 0,
            metrics,
        }
    }

    fn send(&self, target: usize, msg: Message) -> Result<(), Disconnected> {
        match self.targets[target].as_ref().ok_or(Disconnected)? {
            Target::Local(tx) => match tx.try_send(msg) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(msg)) => {
                    let t = Instant::now();
                    let r = tx.send(msg).map_err(|_| Disconnected);
                    self.metrics.add_backpressure(t.elapsed());
                    r
                }
                Err(TrySendError::Disconnected(_)) => Err(Disconnected),
            },
            Target::Remote(tx) => match tx.try_send(msg).map_err(|_| Disconnected)? {
                None => Ok(()),
                Some(msg) => {
                    let t = Instant::now();
                    let r = tx.send(msg).map_err(|_| Disconnected);
                    self.metrics.add_backpressure(t.elapsed());
                    r
                }
            },
        }
    }

    fn connected(&self) -> impl Iterator<Item = usize> + '_ {
        self.targets
            .iter()
            .enumerate()
            .filter(|(_, t)| t.is_some())
            .map(|(i, _)| i)
    }

    /// Sends a batch downstream according to the partitioning.
    pub fn emit(&mut self, batch: Batch) -> Result<(), EmitError> {
        if batch.is_empty() {
            return Ok(());
        }
        match self.partitioning {
            Partitioning::Forward => {
                let t = self.connected().next().ok_or(EmitError::Disconnected)?;
                self.send(t, Message::Batch(batch))?;
            }
            Partitioning::Rebalance => {
                let n = self.targets.len();
                let t = self.next % n;
                self.next = self.next.wrapping_add(1);
                self.send(t, Message::Batch(batch))?;
            }
            Partitioning::Broadcast => {
                let targets: Vec<usize> = self.connected().collect();
                for t in targets {
                    self.send(t, Message::Batch(clone_batch(&batch)))?;
                }
            }
            Partitioning::Hash => {
                let n = self.targets.len() as u32;
                if n == 1 {
                    self.send(0, Message::Batch(batch))?;
                    return Ok(());
                }
                for rec in Reader::new(&batch.data) {
                    let rec =
                        rec.map_err(|e| EmitError::Failed(Failure::internal(e.to_string())))?;
                    let key = rec.key.ok_or_else(|| {
                        EmitError::Failed(Failure::internal(
                            "a record without a key reached a keyed exchange",
                        ))
                    })?;
                    let t = KeyGroup::of(key, self.max_parallelism).subtask(self.max_parallelism, n)
                        as usize;
                    self.buffers[t].push(&rec);
                    if self.buffers[t].len() >= BUFFER_BYTES {
                        self.flush_one(t)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn flush_one(&mut self, t: usize) -> Result<(), Disconnected> {
        if self.buffers[t].is_empty() {
            return Ok(());
        }
        let records = self.buffers[t].records() as u32;
        let data = self.buffers[t].take();
        self.send(t, Message::Batch(Batch::new(data, records)))
    }

    /// Whether records wait in a partially filled buffer.
    pub fn has_buffered(&self) -> bool {
        self.buffers.iter().any(|b| !b.is_empty())
    }

    /// Sends partially filled buffers.
    pub fn flush(&mut self) -> Result<(), Disconnected> {
        for t in 0..self.buffers.len() {
            self.flush_one(t)?;
        }
        Ok(())
    }

    /// Sends a control message to every connected subtask, after the data
    /// before it.
    pub fn control(&mut self, make: impl Fn() -> Message) -> Result<(), Disconnected> {
        self.flush()?;
        for t in self.connected().collect::<Vec<_>>() {
            self.send(t, make())?;
        }
        Ok(())
    }
}

pub(crate) fn clone_batch(b: &Batch) -> Batch {
    Batch::new(b.data.clone(), b.records)
}

/// Why a batch could not be sent.
#[derive(Debug)]
pub(crate) enum EmitError {
    Disconnected,
    Failed(Failure),
}

impl From<Disconnected> for EmitError {
    fn from(_: Disconnected) -> Self {
        EmitError::Disconnected
    }
}
