//! When to trigger checkpoints, when one is complete, and when one fails;
//! all decisions, no I/O. Time is passed in as milliseconds.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use weir_core::CheckpointId;

/// Checkpoint settings, with Flink's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointSettings {
    pub interval: Duration,
    pub timeout: Duration,
    pub min_pause: Duration,
    pub max_concurrent: u32,
    pub tolerable_failures: u32,
}

/// What kind of snapshot a checkpoint is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SnapshotKind {
    /// Periodic.
    Checkpoint,
    /// Asked for by the user (Flink's `flink checkpoint`): a checkpoint like
    /// the periodic ones; with `full`, it shares no file with earlier ones.
    Manual { full: bool },
    /// The last checkpoint before a bounded job finishes, so that
    /// transactional sinks commit everything.
    Final,
    /// Asked for by the user, written to `dir`; with `stop`, the job
    /// stops after it, and with `drain` too, sources first emit the final
    /// watermark so that every event-time window fires (Flink's
    /// `stop --drain`).
    Savepoint {
        dir: String,
        stop: bool,
        drain: bool,
    },
}

/// A checkpoint waiting for acknowledgements.
#[derive(Debug, Clone)]
pub struct Pending<T> {
    pub id: CheckpointId,
    pub kind: SnapshotKind,
    pub started_ms: u64,
    awaiting: BTreeSet<usize>,
    pub acks: BTreeMap<usize, T>,
}

/// What an acknowledgement led to.
#[derive(Debug)]
pub enum AckOutcome<T> {
    /// More acks are needed.
    Waiting,
    /// Every task acknowledged: write the metadata.
    Complete(Pending<T>),
    /// The checkpoint is no longer pending (timed out, aborted).
    Unknown,
}

/// The consecutive failures exceeded `tolerable-failed-checkpoints`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooManyFailures {
    pub failures: u32,
    pub last_reason: String,
}

/// Checkpoint bookkeeping of one job attempt.
#[derive(Debug)]
pub struct Coordinator<T> {
    settings: CheckpointSettings,
    tasks: usize,
    next: CheckpointId,
    pending: BTreeMap<CheckpointId, Pending<T>>,
    last_trigger_ms: Option<u64>,
    last_end_ms: Option<u64>,
    consecutive_failures: u32,
}

impl<T> Coordinator<T> {
    /// Bookkeeping for `tasks` tasks, numbering checkpoints after `last`.
    pub fn new(settings: CheckpointSettings, tasks: usize, last: CheckpointId) -> Self {
        Coordinator {
            settings,
            tasks,
            next: last.next(),
            pending: BTreeMap::new(),
            last_trigger_ms: None,
            last_end_ms: None,
            consecutive_failures: 0,
        }
    }

    /// Whether a periodic checkpoint is due at `now_ms`.
    pub fn periodic_due(&self, now_ms: u64) -> bool {
        if self.pending.len() as u32 >= self.settings.max_concurrent {
            return false;
        }
        let interval = self.settings.interval.as_millis() as u64;
        let pause = self.settings.min_pause.as_millis() as u64;
        let since_trigger = self
            .last_trigger_ms
            .map_or(u64::MAX, |t| now_ms.saturating_sub(t));
        let since_end = self
            .last_end_ms
            .map_or(u64::MAX, |t| now_ms.saturating_sub(t));
        since_trigger >= interval && since_end >= pause
    }

    /// Milliseconds until the next periodic checkpoint could be due.
    pub fn next_due_in(&self, now_ms: u64) -> u64 {
        let interval = self.settings.interval.as_millis() as u64;
        let pause = self.settings.min_pause.as_millis() as u64;
        let a = self
            .last_trigger_ms
            .map_or(0, |t| (t + interval).saturating_sub(now_ms));
        let b = self
            .last_end_ms
            .map_or(0, |t| (t + pause).saturating_sub(now_ms));
        a.max(b)
    }

    /// Starts a checkpoint of `kind`; returns its id.
    pub fn trigger(&mut self, now_ms: u64, kind: SnapshotKind) -> CheckpointId {
        let id = self.next;
        self.next = id.next();
        self.last_trigger_ms = Some(now_ms);
        self.pending.insert(
            id,
            Pending {
                id,
                kind,
                started_ms: now_ms,
                awaiting: (0..self.tasks).collect(),
                acks: BTreeMap::new(),
            },
        );
        id
    }

    /// Task `task` acknowledged checkpoint `id` with its state.
    pub fn ack(&mut self, id: CheckpointId, task: usize, state: T, now_ms: u64) -> AckOutcome<T> {
        let Some(p) = self.pending.get_mut(&id) else {
            return AckOutcome::Unknown;
        };
        if !p.awaiting.remove(&task) {
            return AckOutcome::Waiting;
        }
        p.acks.insert(task, state);
        if !p.awaiting.is_empty() {
            return AckOutcome::Waiting;
        }
        let done = self.pending.remove(&id).expect("present");
        self.last_end_ms = Some(now_ms);
        AckOutcome::Complete(done)
    }

    /// The metadata of checkpoint `id` was written: it is complete. Older
    /// pending checkpoints are subsumed and dropped; they are returned.
    pub fn completed(&mut self, id: CheckpointId) -> Vec<CheckpointId> {
        self.consecutive_failures = 0;
        let older: Vec<CheckpointId> = self.pending.range(..id).map(|(k, _)| *k).collect();
        for k in &older {
            self.pending.remove(k);
        }
        older
    }

    /// Checkpoint `id` failed (a task declined, storage failed, or it timed
    /// out). Errs when the job must fail.
    pub fn failed(
        &mut self,
        id: CheckpointId,
        reason: &str,
        now_ms: u64,
    ) -> Result<(), TooManyFailures> {
        let was_pending = self.pending.remove(&id);
        self.last_end_ms = Some(now_ms);
        let user_requested = matches!(
            was_pending.map(|p| p.kind),
            Some(SnapshotKind::Savepoint { .. } | SnapshotKind::Manual { .. })
        );
        if user_requested {
            return Ok(()); // a failed savepoint is reported to whoever asked
        }
        self.consecutive_failures += 1;
        if self.consecutive_failures > self.settings.tolerable_failures {
            return Err(TooManyFailures {
                failures: self.consecutive_failures,
                last_reason: reason.to_owned(),
            });
        }
        Ok(())
    }

    /// Pending checkpoints older than the timeout at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> Vec<CheckpointId> {
        let timeout = self.settings.timeout.as_millis() as u64;
        self.pending
            .values()
            .filter(|p| now_ms.saturating_sub(p.started_ms) > timeout)
            .map(|p| p.id)
            .collect()
    }

    pub fn pending_ids(&self) -> impl Iterator<Item = CheckpointId> + '_ {
        self.pending.keys().copied()
    }

    pub fn kind(&self, id: CheckpointId) -> Option<&SnapshotKind> {
        self.pending.get(&id).map(|p| &p.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> CheckpointSettings {
        CheckpointSettings {
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(1000),
            min_pause: Duration::from_millis(30),
            max_concurrent: 1,
            tolerable_failures: 1,
        }
    }

    #[test]
    fn completes_when_every_task_acks() {
        let mut c: Coordinator<&str> = Coordinator::new(settings(), 2, CheckpointId(0));
        assert!(c.periodic_due(0));
        let id = c.trigger(0, SnapshotKind::Checkpoint);
        assert_eq!(id, CheckpointId(1));
        assert!(!c.periodic_due(500), "max concurrent reached");
        assert!(matches!(c.ack(id, 0, "a", 10), AckOutcome::Waiting));
        assert!(matches!(c.ack(id, 0, "dup", 11), AckOutcome::Waiting));
        match c.ack(id, 1, "b", 20) {
            AckOutcome::Complete(p) => {
                assert_eq!(p.acks.values().copied().collect::<Vec<_>>(), vec!["a", "b"])
            }
            other => panic!("{other:?}"),
        }
        assert!(c.completed(id).is_empty());
        assert!(!c.periodic_due(40), "interval not elapsed");
        assert!(c.periodic_due(100));
        assert!(matches!(c.ack(id, 1, "late", 30), AckOutcome::Unknown));
    }

    #[test]
    fn min_pause_counts_from_the_end_of_the_last_checkpoint() {
        let mut c: Coordinator<()> = Coordinator::new(settings(), 1, CheckpointId(0));
        let id = c.trigger(0, SnapshotKind::Checkpoint);
        assert!(matches!(c.ack(id, 0, (), 95), AckOutcome::Complete(_)));
        c.completed(id);
        assert!(!c.periodic_due(100), "only 5 ms since the last one ended");
        assert_eq!(c.next_due_in(100), 25);
        assert!(c.periodic_due(125));
    }

    #[test]
    fn timeouts_and_tolerable_failures() {
        let mut c: Coordinator<()> = Coordinator::new(settings(), 1, CheckpointId(7));
        let id = c.trigger(0, SnapshotKind::Checkpoint);
        assert_eq!(id, CheckpointId(8));
        assert!(c.expired(500).is_empty());
        assert_eq!(c.expired(1001), vec![id]);
        assert!(c.failed(id, "timed out", 1001).is_ok());
        let id2 = c.trigger(1200, SnapshotKind::Checkpoint);
        let err = c.failed(id2, "disk full", 1300).unwrap_err();
        assert_eq!(err.failures, 2);
        assert_eq!(err.last_reason, "disk full");
    }

    #[test]
    fn savepoint_failures_do_not_count_and_success_resets() {
        let mut c: Coordinator<()> = Coordinator::new(settings(), 1, CheckpointId(0));
        let sp = c.trigger(
            0,
            SnapshotKind::Savepoint {
                dir: "x".into(),
                stop: false,
                drain: false,
            },
        );
        assert!(c.failed(sp, "no", 1).is_ok());
        let a = c.trigger(10, SnapshotKind::Checkpoint);
        assert!(c.failed(a, "no", 11).is_ok());
        let b = c.trigger(200, SnapshotKind::Checkpoint);
        assert!(matches!(c.ack(b, 0, (), 201), AckOutcome::Complete(_)));
        c.completed(b);
        let d = c.trigger(400, SnapshotKind::Checkpoint);
        assert!(c.failed(d, "again", 401).is_ok(), "success reset the count");
    }
}
