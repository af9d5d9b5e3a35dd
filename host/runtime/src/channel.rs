//! What travels between tasks, and how a task's output is partitioned over
//! the subtasks downstream.
//!
//! Channels are bounded: a full channel blocks the sender, so a slow task
//! slows its inputs down (backpressure) instead of buffering without limit.
//! Control messages (barriers, watermarks, end of input) travel in the same
//! channels as data, in order.

use crate::metrics::OperatorMetrics;
use crossbeam_channel::{Sender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};
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
    /// Unaligned checkpoints: how long (ms) a task waits for the barrier
    /// on every input, from when it first hears of it, before it
    /// snapshots without waiting; records still queued before the barrier
    /// then become part of the checkpoint. None: aligned (savepoints,
    /// module swaps, and jobs without unaligned checkpoints).
    #[serde(default)]
    pub aligned_timeout: Option<u64>,
}

/// Early notice of a barrier, ahead of the records queued in its channel:
/// `before` counts the messages (barriers aside) the sender put into the
/// channel before the barrier, so the receiver knows which of the
/// messages it has yet to read precede it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Priority {
    /// The channel's index among the receiving task's inputs.
    pub input: usize,
    pub barrier: Barrier,
    pub before: u64,
}

/// The priority lane of a receiving task, with the index of one channel
/// among its inputs.
#[derive(Debug, Clone)]
pub(crate) struct Lane {
    pub tx: Sender<Priority>,
    pub input: usize,
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
    /// The head operator of the chain it leads to.
    pub to_op: u32,
    partitioning: Partitioning,
    /// Senders indexed by downstream subtask (None where not connected).
    targets: Vec<Option<Target>>,
    buffers: Vec<Writer>,
    max_parallelism: u32,
    next: usize,
    metrics: Arc<OperatorMetrics>,
    /// Messages (barriers aside) put into each channel.
    sent: Vec<u64>,
    /// A barrier announced on a channel's priority lane, to be put into
    /// the channel itself before anything else.
    marker: Vec<Option<Barrier>>,
}

/// Where a channel leads: a task of this process, or of another one.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// With the channel's credits when its receiver takes messages off it
    /// before processing them (unaligned checkpoints).
    Local(Sender<Message>, Lane, Option<Sender<()>>),
    Remote(Arc<dyn RemoteChannel>),
}

/// The sending end of a channel to a task of another process
/// (`net::data`), used from the sending task's thread.
pub(crate) trait RemoteChannel: Send + Sync + std::fmt::Debug {
    /// Sends without waiting; gives the message back when the channel has
    /// no room.
    fn try_send(&self, msg: Message) -> Result<Option<Message>, Disconnected>;
    /// Sends, waiting for room (backpressure).
    fn send(&self, msg: Message) -> Result<(), Disconnected>;
    /// Announces `barrier` ahead of what the channel holds: `before`
    /// messages precede it.
    fn priority(&self, barrier: Barrier, before: u64) -> Result<(), Disconnected>;
    /// Whether a message can be sent without waiting.
    fn has_room(&self) -> bool;
}

/// Takes one of a channel's credits (one per message sent and not yet
/// processed), waiting for one if there is none; None when the receiver
/// is gone. Returns how long it waited.
pub(crate) fn take_credit(credits: &Sender<()>) -> Option<Duration> {
    match credits.try_send(()) {
        Ok(()) => Some(Duration::ZERO),
        Err(TrySendError::Full(())) => {
            let t = Instant::now();
            credits.send(()).ok().map(|()| t.elapsed())
        }
        Err(TrySendError::Disconnected(())) => None,
    }
}

/// Capacity of a channel whose receiver takes messages off it before it
/// processes them: its credits bound it to `CHANNEL_CAPACITY` messages, and
/// barriers need room beside them.
pub(crate) const CREDITED_CAPACITY: usize = 2 * CHANNEL_CAPACITY + 2;

/// The receiving task is gone; the job is stopping.
#[derive(Debug)]
pub(crate) struct Disconnected;

impl OutputEdge {
    pub fn new(
        from_op: u32,
        port: u32,
        to_op: u32,
        partitioning: Partitioning,
        targets: Vec<Option<Target>>,
        max_parallelism: u32,
        metrics: Arc<OperatorMetrics>,
    ) -> Self {
        let n = targets.len();
        let buffers = (0..n).map(|_| Writer::new()).collect();
        OutputEdge {
            from_op,
            port,
            to_op,
            partitioning,
            targets,
            buffers,
            max_parallelism,
            next: 0,
            metrics,
            sent: vec![0; n],
            marker: vec![None; n],
        }
    }

    fn send(&mut self, target: usize, msg: Message) -> Result<(), Disconnected> {
        if let Some(b) = self.marker[target].take() {
            self.push(target, Message::Barrier(b))?;
        }
        let counts = !matches!(msg, Message::Barrier(_));
        self.push(target, msg)?;
        if counts {
            self.sent[target] += 1;
        }
        Ok(())
    }

    fn push(&self, target: usize, msg: Message) -> Result<(), Disconnected> {
        match self.targets[target].as_ref().ok_or(Disconnected)? {
            Target::Local(tx, _, Some(credits)) => {
                if !matches!(msg, Message::Barrier(_)) {
                    let waited = take_credit(credits).ok_or(Disconnected)?;
                    self.metrics.add_backpressure(waited);
                }
                tx.send(msg).map_err(|_| Disconnected)
            }
            Target::Local(tx, _, None) => match tx.try_send(msg) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(msg)) => {
                    let t = Instant::now();
                    let r = tx.send(msg).map_err(|_| Disconnected);
                    self.metrics.add_backpressure(t.elapsed());
                    r
                }
                Err(TrySendError::Disconnected(_)) => Err(Disconnected),
            },
            Target::Remote(tx) => match tx.try_send(msg)? {
                None => Ok(()),
                Some(msg) => {
                    let t = Instant::now();
                    let r = tx.send(msg);
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

    /// Whether every connected channel has room for a message, so that
    /// sending the next one takes no waiting (a closed channel counts as
    /// ready: sending on it fails at once).
    pub fn has_room(&self) -> bool {
        self.targets.iter().flatten().all(|t| match t {
            Target::Local(_, _, Some(credits)) => !credits.is_full(),
            Target::Local(tx, _, None) => !tx.is_full(),
            Target::Remote(tx) => tx.has_room(),
        })
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

    /// Announces `barrier` on every connected channel's priority lane,
    /// ahead of what the channels hold, and puts it into each channel as
    /// soon as that takes no waiting (or before the next message). With
    /// `flush`, partially filled buffers are sent first (an aligned
    /// barrier); otherwise they are sent after the barrier, and a copy of
    /// each is returned: records the snapshot must hold, since the
    /// receiver takes them as following the barrier.
    pub fn announce(&mut self, barrier: &Barrier, flush: bool) -> Result<Vec<Batch>, Disconnected> {
        let mut unsent = Vec::new();
        if flush {
            self.flush()?;
        } else {
            for b in &self.buffers {
                if !b.is_empty() {
                    unsent.push(Batch::new(b.as_bytes().to_vec(), b.records() as u32));
                }
            }
        }
        for t in self.connected().collect::<Vec<_>>() {
            let before = self.sent[t];
            match self.targets[t].as_ref().ok_or(Disconnected)? {
                Target::Local(tx, lane, _) => {
                    lane.tx
                        .send(Priority {
                            input: lane.input,
                            barrier: barrier.clone(),
                            before,
                        })
                        .map_err(|_| Disconnected)?;
                    match tx.try_send(Message::Barrier(barrier.clone())) {
                        Ok(()) => self.marker[t] = None,
                        Err(TrySendError::Full(_)) => self.marker[t] = Some(barrier.clone()),
                        Err(TrySendError::Disconnected(_)) => return Err(Disconnected),
                    }
                }
                Target::Remote(tx) => {
                    tx.priority(barrier.clone(), before)?;
                    self.marker[t] = tx
                        .try_send(Message::Barrier(barrier.clone()))?
                        .map(|_| barrier.clone());
                }
            }
        }
        Ok(unsent)
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
