//! Counters a running job keeps per operator, read by the CLI, the REST API
//! and `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counters of one operator (summed over its subtasks).
#[derive(Debug, Default)]
pub struct OperatorMetrics {
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
    /// Time spent waiting for downstream channels (backpressure).
    pub backpressured_ns: AtomicU64,
    /// Time spent processing.
    pub busy_ns: AtomicU64,
    /// Records a decode stage could not decode and skipped.
    pub decode_failures: AtomicU64,
    /// Records dropped for arriving after their window closed.
    pub late_records_dropped: AtomicU64,
    /// Current watermark (ms), or i64::MIN.
    pub watermark: AtomicU64,
}

impl OperatorMetrics {
    pub fn add_in(&self, n: u64) {
        self.records_in.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_out(&self, n: u64) {
        self.records_out.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_backpressure(&self, d: Duration) {
        self.backpressured_ns
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    pub fn add_busy(&self, d: Duration) {
        self.busy_ns
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    pub fn get(v: &AtomicU64) -> u64 {
        v.load(Ordering::Relaxed)
    }
}

/// Counters of a whole job.
#[derive(Debug, Default)]
pub struct JobMetrics {
    pub operators: Vec<std::sync::Arc<OperatorMetrics>>,
    pub restarts: AtomicU64,
    /// Peak linear memory of any guest instance.
    pub guest_memory_peak: AtomicU64,
    pub checkpoints_completed: AtomicU64,
    pub last_checkpoint_id: AtomicU64,
    /// Bytes of state the last completed checkpoint refers to.
    pub last_checkpoint_size: AtomicU64,
    /// Bytes the last completed checkpoint uploaded (less than its size
    /// when incremental).
    pub last_checkpoint_uploaded: AtomicU64,
    /// Time from triggering the last completed checkpoint to completing it.
    pub last_checkpoint_duration_ms: AtomicU64,
}

impl JobMetrics {
    pub(crate) fn record_checkpoint(
        &self,
        id: weir_core::CheckpointId,
        size: u64,
        uploaded: u64,
        took: Duration,
    ) {
        self.checkpoints_completed.fetch_add(1, Ordering::Relaxed);
        self.last_checkpoint_id.store(id.0, Ordering::Relaxed);
        self.last_checkpoint_size.store(size, Ordering::Relaxed);
        self.last_checkpoint_uploaded
            .store(uploaded, Ordering::Relaxed);
        self.last_checkpoint_duration_ms
            .store(took.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn new(operators: usize) -> Self {
        JobMetrics {
            operators: (0..operators)
                .map(|_| {
                    std::sync::Arc::new(OperatorMetrics {
                        watermark: AtomicU64::new(i64::MIN as u64),
                        ..Default::default()
                    })
                })
                .collect(),
            ..Default::default()
        }
    }
}
