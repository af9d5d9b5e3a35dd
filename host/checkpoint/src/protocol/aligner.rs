//! Barrier alignment in a task with several input channels.
//!
//! Exactly-once: when barrier *n* arrives on a channel, that channel is held
//! (no more records are read from it) until barrier *n* has arrived on every
//! open channel; then the task snapshots, forwards the barrier and releases
//! all channels. Records after the barrier thus never reach state that the
//! snapshot *n* describes. At-least-once: no channel is held; the snapshot
//! is taken when the last barrier arrives, so records of faster channels may
//! be counted again after a recovery.

use std::collections::BTreeSet;
use weir_core::CheckpointId;

/// How barriers are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlignmentMode {
    ExactlyOnce,
    AtLeastOnce,
}

/// What the task must do after a barrier or the end of a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlignAction {
    /// Keep going.
    Continue,
    /// Stop reading this channel until the alignment completes.
    Hold(usize),
    /// Every channel delivered the barrier: snapshot, forward the barrier,
    /// then read all channels again.
    Snapshot(CheckpointId),
    /// A newer barrier overtook checkpoint `aborted`, which can no longer
    /// complete here; release held channels and start aligning `started`.
    Abort {
        aborted: CheckpointId,
        then: Box<AlignAction>,
    },
}

/// Alignment state of one task.
#[derive(Debug, Clone)]
pub struct BarrierAligner {
    mode: AlignmentMode,
    channels: usize,
    ended: BTreeSet<usize>,
    pending: Option<CheckpointId>,
    arrived: BTreeSet<usize>,
    /// The last checkpoint snapshotted or aborted; older barriers are stale.
    last: Option<CheckpointId>,
}

impl BarrierAligner {
    pub fn new(channels: usize, mode: AlignmentMode) -> Self {
        BarrierAligner {
            mode,
            channels,
            ended: BTreeSet::new(),
            pending: None,
            arrived: BTreeSet::new(),
            last: None,
        }
    }

    /// Channels currently held.
    pub fn held(&self) -> impl Iterator<Item = usize> + '_ {
        let hold = self.mode == AlignmentMode::ExactlyOnce;
        self.arrived.iter().copied().filter(move |_| hold)
    }

    pub fn is_held(&self, channel: usize) -> bool {
        self.mode == AlignmentMode::ExactlyOnce && self.arrived.contains(&channel)
    }

    /// The checkpoint being aligned.
    pub fn pending(&self) -> Option<CheckpointId> {
        self.pending
    }

    fn open_channels(&self) -> usize {
        self.channels - self.ended.len()
    }

    fn complete_if_ready(&mut self) -> Option<AlignAction> {
        let id = self.pending?;
        if self.arrived.len() >= self.open_channels() {
            self.pending = None;
            self.arrived.clear();
            self.last = Some(id);
            Some(AlignAction::Snapshot(id))
        } else {
            None
        }
    }

    /// Barrier `id` arrived on `channel`.
    pub fn on_barrier(&mut self, channel: usize, id: CheckpointId) -> AlignAction {
        if self.last.is_some_and(|l| id <= l) {
            return AlignAction::Continue; // stale: already snapshotted or aborted
        }
        let mut aborted = None;
        match self.pending {
            Some(p) if id < p => return AlignAction::Continue,
            Some(p) if id > p => {
                aborted = Some(p);
                self.arrived.clear();
                self.pending = Some(id);
            }
            Some(_) => {}
            None => self.pending = Some(id),
        }
        self.arrived.insert(channel);
        let action = match self.complete_if_ready() {
            Some(a) => a,
            None if self.mode == AlignmentMode::ExactlyOnce => AlignAction::Hold(channel),
            None => AlignAction::Continue,
        };
        match aborted {
            Some(a) => AlignAction::Abort {
                aborted: a,
                then: Box::new(action),
            },
            None => action,
        }
    }

    /// `channel` delivered its last record; a pending alignment may now
    /// complete without it.
    pub fn on_end(&mut self, channel: usize) -> AlignAction {
        self.ended.insert(channel);
        self.arrived.remove(&channel);
        self.complete_if_ready().unwrap_or(AlignAction::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(n: u64) -> CheckpointId {
        CheckpointId(n)
    }

    #[test]
    fn exactly_once_holds_until_all_arrive() {
        let mut a = BarrierAligner::new(3, AlignmentMode::ExactlyOnce);
        assert_eq!(a.on_barrier(0, c(1)), AlignAction::Hold(0));
        assert!(a.is_held(0));
        assert_eq!(a.on_barrier(2, c(1)), AlignAction::Hold(2));
        assert_eq!(a.held().collect::<Vec<_>>(), vec![0, 2]);
        assert_eq!(a.on_barrier(1, c(1)), AlignAction::Snapshot(c(1)));
        assert_eq!(a.held().count(), 0);
        // A duplicate of an old barrier is ignored.
        assert_eq!(a.on_barrier(1, c(1)), AlignAction::Continue);
    }

    #[test]
    fn single_channel_snapshots_at_once() {
        let mut a = BarrierAligner::new(1, AlignmentMode::ExactlyOnce);
        assert_eq!(a.on_barrier(0, c(5)), AlignAction::Snapshot(c(5)));
    }

    #[test]
    fn at_least_once_never_holds() {
        let mut a = BarrierAligner::new(2, AlignmentMode::AtLeastOnce);
        assert_eq!(a.on_barrier(0, c(1)), AlignAction::Continue);
        assert!(!a.is_held(0));
        assert_eq!(a.on_barrier(1, c(1)), AlignAction::Snapshot(c(1)));
    }

    #[test]
    fn ended_channels_do_not_block_alignment() {
        let mut a = BarrierAligner::new(3, AlignmentMode::ExactlyOnce);
        assert_eq!(a.on_barrier(0, c(1)), AlignAction::Hold(0));
        assert_eq!(a.on_end(2), AlignAction::Continue);
        assert_eq!(a.on_end(1), AlignAction::Snapshot(c(1)));
        assert_eq!(a.on_barrier(0, c(2)), AlignAction::Snapshot(c(2)));
    }

    #[test]
    fn newer_barrier_aborts_the_pending_one() {
        let mut a = BarrierAligner::new(2, AlignmentMode::ExactlyOnce);
        assert_eq!(a.on_barrier(0, c(1)), AlignAction::Hold(0));
        assert_eq!(
            a.on_barrier(1, c(2)),
            AlignAction::Abort {
                aborted: c(1),
                then: Box::new(AlignAction::Hold(1))
            }
        );
        assert_eq!(a.on_barrier(0, c(1)), AlignAction::Continue);
        assert_eq!(a.on_barrier(0, c(2)), AlignAction::Snapshot(c(2)));
    }
}
