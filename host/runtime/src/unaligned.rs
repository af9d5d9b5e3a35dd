//! Unaligned checkpoints (`execution.checkpointing.unaligned`).
//!
//! A barrier travels twice: once on the receiving task's priority lane,
//! ahead of everything its channel holds, saying how many messages the
//! sender put into the channel before it; and once in the channel itself,
//! where it marks the same position (and is put in as soon as that takes
//! no waiting, or before the next message). A task in an unaligned
//! checkpoint snapshots at the first notice of the barrier, without
//! waiting for the records queued before it; those records — the ones it
//! reads afterwards until it reaches the barrier's position on each input
//! — go into the checkpoint as its in-flight input, and are processed as
//! usual. What a sender had buffered but not yet sent when it snapshotted
//! goes into its checkpoint as in-flight output: the receiver takes those
//! records as following the barrier.
//!
//! A restored task sends its in-flight output first, then processes its
//! in-flight input, then reads its channels. At another parallelism, a
//! keyed task takes the in-flight input records of its key groups from
//! every old subtask; other in-flight data goes to one new subtask each.
//!
//! With `aligned-checkpoint-timeout`, a checkpoint starts aligned (inputs
//! that reached the barrier are held, nothing is recorded) and switches to
//! unaligned when the timeout passes.

use crate::channel::{Barrier, Batch};
use weir_core::{CheckpointId, Failure, KeyGroup, KeyGroupRange};
use weir_frame::{Reader, Writer};

/// What a task's gate asks of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GateAction {
    /// Every input reached the barrier before the task snapshotted: an
    /// aligned snapshot, with no in-flight input.
    Aligned(Barrier),
    /// Snapshot now; the records still to come before the barrier on each
    /// input are recorded.
    Unaligned(Barrier),
    /// Every input reached the barrier of this unaligned snapshot: its
    /// in-flight input is complete.
    Recorded(CheckpointId),
    /// A newer barrier overtook this checkpoint, or the task gave it up;
    /// `taken` when the task had snapshotted it.
    Abort { id: CheckpointId, taken: bool },
}

#[derive(Debug)]
struct Pending {
    barrier: Barrier,
    /// Per input: the number of messages before the barrier, once known.
    boundary: Vec<Option<u64>>,
    taken: bool,
    /// When the task first heard of the barrier (ms, its own clock).
    since: u64,
}

/// Which inputs of a task reached the barrier of its pending checkpoint.
///
/// Positions count the messages (barriers aside) of each input: those
/// taken off the channel (`read`, into the task's stash or straight to
/// processing) and those processed (`done`). An unaligned snapshot needs
/// every message before the barrier taken off the channel (and recorded);
/// an aligned one needs them processed.
#[derive(Debug)]
pub(crate) struct Gate {
    arrived: Vec<u64>,
    processed: Vec<u64>,
    ended: Vec<bool>,
    pending: Option<Pending>,
    /// The last checkpoint finished or aborted; older barriers are stale.
    last: Option<CheckpointId>,
    aborted: Option<(CheckpointId, bool)>,
}

impl Gate {
    pub fn new(inputs: usize) -> Self {
        Gate {
            arrived: vec![0; inputs],
            processed: vec![0; inputs],
            ended: vec![false; inputs],
            pending: None,
            last: None,
            aborted: None,
        }
    }

    fn reached(&self, p: &Pending, i: usize) -> bool {
        let at = match p.taken {
            true => self.arrived[i],
            false => self.processed[i],
        };
        self.ended[i] || p.boundary[i] == Some(at)
    }

    /// Input `i` reached the barrier of an aligned checkpoint in progress:
    /// its channel is not read until the others have.
    pub fn held(&self, i: usize) -> bool {
        self.pending
            .as_ref()
            .is_some_and(|p| !p.taken && !self.ended[i] && self.reached(p, i))
    }

    /// The next message of input `i` off its channel precedes the barrier
    /// of an unaligned snapshot the task took: it belongs to the
    /// checkpoint.
    pub fn records(&self, i: usize) -> bool {
        self.pending
            .as_ref()
            .is_some_and(|p| p.taken && !self.reached(p, i))
    }

    /// Messages of input `i` known to precede the barrier of an unaligned
    /// snapshot the task took, still in the channel: the task takes them
    /// off (and records them) before it processes them.
    pub fn owed(&self, i: usize) -> u64 {
        match &self.pending {
            Some(p) if p.taken && !self.ended[i] => p.boundary[i]
                .map(|b| b.saturating_sub(self.arrived[i]))
                .unwrap_or(0),
            _ => 0,
        }
    }

    /// The checkpoint whose in-flight input is being recorded.
    #[cfg(test)]
    pub fn recording(&self) -> Option<CheckpointId> {
        self.pending
            .as_ref()
            .filter(|p| p.taken)
            .map(|p| p.barrier.id)
    }

    /// When the pending checkpoint stops waiting for alignment.
    pub fn deadline(&self) -> Option<u64> {
        self.pending
            .as_ref()
            .filter(|p| !p.taken)
            .and_then(|p| Some(p.since + p.barrier.aligned_timeout?))
    }

    /// `barrier` arrived for input `i` at `now_ms`: on the priority lane
    /// with the number of messages `before` it, or in the channel itself
    /// (None: at the position read so far).
    pub fn on_barrier(&mut self, i: usize, barrier: &Barrier, before: Option<u64>, now_ms: u64) {
        let id = barrier.id;
        if self.last.is_some_and(|l| id <= l) {
            return;
        }
        match &self.pending {
            Some(p) if p.barrier.id > id => return,
            Some(p) if p.barrier.id < id => {
                self.aborted = Some((p.barrier.id, p.taken));
                self.last = Some(p.barrier.id);
                self.pending = None;
            }
            _ => {}
        }
        let n = self.arrived.len();
        let arrived = self.arrived[i];
        let p = self.pending.get_or_insert_with(|| Pending {
            barrier: barrier.clone(),
            boundary: vec![None; n],
            taken: false,
            since: now_ms,
        });
        if p.boundary[i].is_none() {
            // A position already read past cannot precede the barrier:
            // the barrier in the channel would have been read first.
            p.boundary[i] = Some(before.unwrap_or(arrived).max(arrived));
        }
    }

    /// A message other than a barrier was taken off input `i`'s channel.
    pub fn read(&mut self, i: usize) {
        self.arrived[i] += 1;
    }

    /// A message other than a barrier of input `i` was processed.
    pub fn done(&mut self, i: usize) {
        self.processed[i] += 1;
    }

    /// Input `i` ended: nothing more comes from it.
    pub fn on_end(&mut self, i: usize) {
        self.ended[i] = true;
    }

    /// Gives the pending checkpoint up.
    pub fn give_up(&mut self) {
        if let Some(p) = self.pending.take() {
            self.aborted = Some((p.barrier.id, p.taken));
            self.last = Some(p.barrier.id);
        }
    }

    /// What the task must do next, at wall-clock time `now_ms`; call until
    /// None.
    pub fn next(&mut self, now_ms: u64) -> Option<GateAction> {
        if let Some((id, taken)) = self.aborted.take() {
            return Some(GateAction::Abort { id, taken });
        }
        let p = self.pending.as_ref()?;
        if (0..self.arrived.len()).all(|i| self.reached(p, i)) {
            let p = self.pending.take().expect("pending");
            self.last = Some(p.barrier.id);
            return Some(match p.taken {
                true => GateAction::Recorded(p.barrier.id),
                false => GateAction::Aligned(p.barrier),
            });
        }
        let due = self.deadline().is_some_and(|at| now_ms >= at);
        let p = self.pending.as_mut().expect("pending");
        if !p.taken && due {
            p.taken = true;
            return Some(GateAction::Unaligned(p.barrier.clone()));
        }
        None
    }
}

const MAGIC: &[u8; 4] = b"WIF1";

/// Appends `batch`, for output edge `edge` (0 for input), to an in-flight
/// file being built.
pub(crate) fn append(file: &mut Vec<u8>, edge: u32, batch: &Batch) {
    if file.is_empty() {
        file.extend_from_slice(MAGIC);
    }
    file.extend_from_slice(&edge.to_le_bytes());
    file.extend_from_slice(&batch.records.to_le_bytes());
    file.extend_from_slice(&(batch.data.len() as u64).to_le_bytes());
    file.extend_from_slice(&batch.data);
}

/// The batches of an in-flight file, each with its output edge.
pub(crate) fn decode(file: &[u8]) -> Result<Vec<(u32, Batch)>, Failure> {
    let bad = |why: &str| {
        Failure::internal(format!(
            "the in-flight records of an unaligned checkpoint are unreadable ({why})"
        ))
    };
    let mut rest = file.strip_prefix(MAGIC).ok_or_else(|| bad("no header"))?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        if rest.len() < 16 {
            return Err(bad("truncated"));
        }
        let edge = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes"));
        let records = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        let len = u64::from_le_bytes(rest[8..16].try_into().expect("8 bytes"));
        rest = &rest[16..];
        if len > rest.len() as u64 {
            return Err(bad("truncated"));
        }
        let (data, tail) = rest.split_at(len as usize);
        out.push((edge, Batch::new(data.to_vec(), records)));
        rest = tail;
    }
    Ok(out)
}

/// Splits `batch` into batches of at most `records` records each (so that
/// a task takes barriers between them), without decoding the records.
pub(crate) fn split(batch: Batch, records: u32) -> Result<Vec<Batch>, Failure> {
    if batch.records <= records {
        return Ok(vec![batch]);
    }
    let mut out = Vec::new();
    let mut reader = Reader::new(&batch.data);
    let (mut start, mut count) = (0, 0);
    while let Some(rec) = reader.next() {
        rec.map_err(|e| Failure::internal(e.to_string()))?;
        count += 1;
        if count == records {
            let end = reader.position();
            out.push(Batch::new(batch.data[start..end].to_vec(), count));
            (start, count) = (end, 0);
        }
    }
    if count > 0 {
        out.push(Batch::new(batch.data[start..].to_vec(), count));
    }
    Ok(out)
}

/// The records of `batch` whose keys fall in `range`.
pub(crate) fn in_key_groups(
    batch: &Batch,
    range: KeyGroupRange,
    max_parallelism: u32,
) -> Result<Batch, Failure> {
    let mut w = Writer::new();
    for rec in Reader::new(&batch.data) {
        let rec = rec.map_err(|e| Failure::internal(e.to_string()))?;
        let Some(key) = rec.key else {
            return Err(Failure::internal(
                "an in-flight record of a keyed task has no key",
            ));
        };
        if range.contains(KeyGroup::of(key, max_parallelism)) {
            w.push(&rec);
        }
    }
    let records = w.records() as u32;
    Ok(Batch::new(w.into_bytes(), records))
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_checkpoint::protocol::SnapshotKind;

    trait Concat {
        fn concat_data(&self) -> Vec<u8>;
    }

    impl Concat for Vec<Batch> {
        fn concat_data(&self) -> Vec<u8> {
            self.iter().flat_map(|b| b.data.iter().copied()).collect()
        }
    }

    fn barrier(id: u64, aligned_timeout: Option<u64>) -> Barrier {
        Barrier {
            id: CheckpointId(id),
            kind: SnapshotKind::Checkpoint,
            dir: format!("j/chk-{id}"),
            swap: false,
            aligned_timeout,
        }
    }

    #[test]
    fn unaligned_snapshots_at_the_first_notice_and_records_until_each_input_reaches_the_barrier() {
        let mut g = Gate::new(2);
        let b = barrier(1, Some(0));
        // Input 0 had two messages read; the sender put 5 before the
        // barrier.
        for _ in 0..2 {
            g.read(0);
            g.done(0);
        }
        g.on_barrier(0, &b, Some(5), 0);
        assert_eq!(g.next(10), Some(GateAction::Unaligned(b.clone())));
        assert_eq!(g.next(10), None);
        assert_eq!(g.recording(), Some(CheckpointId(1)));
        // Messages 2, 3, 4 of input 0 precede the barrier: the task takes
        // them off the channel before processing them. Input 1's all do
        // until its barrier is known.
        assert_eq!(g.owed(0), 3);
        assert_eq!(g.owed(1), 0);
        for _ in 0..3 {
            assert!(g.records(0));
            g.read(0);
        }
        assert_eq!(g.owed(0), 0);
        assert!(!g.records(0), "message 5 follows the barrier");
        assert!(g.records(1));
        g.read(1);
        assert_eq!(g.next(10), None);
        // Input 1's barrier, in the channel: nothing more to record.
        g.on_barrier(1, &b, None, 0);
        assert_eq!(g.next(10), Some(GateAction::Recorded(CheckpointId(1))));
        assert_eq!(g.recording(), None);
        // The late copies are stale.
        g.on_barrier(0, &b, None, 0);
        assert_eq!(g.next(10), None);
    }

    #[test]
    fn aligned_until_the_timeout_then_unaligned() {
        let mut g = Gate::new(2);
        let b = barrier(1, Some(1_000));
        g.on_barrier(0, &b, Some(0), 100);
        assert!(g.held(0), "input 0 reached the barrier: held while aligned");
        assert!(!g.records(1));
        assert_eq!(g.next(500), None);
        assert_eq!(g.deadline(), Some(1_100), "from when it first heard of it");
        assert_eq!(g.next(1_099), None);
        assert_eq!(g.next(1_100), Some(GateAction::Unaligned(b.clone())));
        assert!(!g.held(0), "released once unaligned");
        assert!(!g.records(0));
        assert!(g.records(1));
        g.on_barrier(1, &b, Some(2), 0);
        g.read(1);
        assert_eq!(g.next(1_001), None);
        g.read(1);
        assert_eq!(
            g.next(1_001),
            Some(GateAction::Recorded(CheckpointId(1))),
            "taken off the channel and recorded is enough, processed or not"
        );
    }

    #[test]
    fn aligned_barriers_complete_without_recording() {
        let mut g = Gate::new(2);
        let b = barrier(3, None);
        g.on_barrier(1, &b, Some(1), 0);
        assert!(!g.held(1));
        g.read(1);
        assert!(!g.held(1), "read but not yet processed");
        assert_eq!(g.next(u64::MAX), None);
        g.done(1);
        assert!(g.held(1));
        g.on_end(0);
        assert_eq!(g.next(u64::MAX), Some(GateAction::Aligned(b)));
        assert!(!g.held(1));
    }

    #[test]
    fn a_newer_barrier_aborts_the_pending_one() {
        let mut g = Gate::new(2);
        g.on_barrier(0, &barrier(1, Some(0)), Some(4), 0);
        assert!(matches!(g.next(0), Some(GateAction::Unaligned(_))));
        g.on_barrier(1, &barrier(2, Some(0)), Some(0), 0);
        assert_eq!(
            g.next(0),
            Some(GateAction::Abort {
                id: CheckpointId(1),
                taken: true
            })
        );
        assert!(matches!(g.next(0), Some(GateAction::Unaligned(b)) if b.id == CheckpointId(2)));
        g.on_barrier(0, &barrier(1, Some(0)), Some(4), 0);
        assert_eq!(g.recording(), Some(CheckpointId(2)));
    }

    #[test]
    fn files_round_trip_and_keyed_records_split_by_key_group() {
        let mut w = Writer::new();
        for k in 0..100u32 {
            w.push(&weir_frame::Record {
                key: Some(&k.to_be_bytes()),
                value: b"v",
                ..Default::default()
            });
        }
        let batch = Batch::new(w.take(), 100);
        let mut file = Vec::new();
        append(&mut file, 2, &batch);
        append(&mut file, 0, &Batch::new(Vec::new(), 0));
        let back = decode(&file).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].0, 2);
        assert_eq!(back[0].1.data, batch.data);
        assert!(decode(&file[..file.len() - 1]).is_err());
        assert!(decode(&file[..20]).is_err());
        let parts = split(Batch::new(batch.data.clone(), 100), 30).unwrap();
        assert_eq!(
            parts.iter().map(|b| b.records).collect::<Vec<_>>(),
            [30, 30, 30, 10]
        );
        assert_eq!(parts.concat_data(), batch.data);
        assert!(decode(b"nope").is_err());
        let total: u32 = (0..3)
            .map(|s| {
                in_key_groups(&batch, KeyGroupRange::for_subtask(128, 3, s), 128)
                    .unwrap()
                    .records
            })
            .sum();
        assert_eq!(total, 100, "every record goes to exactly one new subtask");
    }
}
