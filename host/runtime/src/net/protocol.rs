//! What the coordinator and its task managers say to each other.

use crate::events::{TaskControl, TaskEvent, TaskId};
use crate::metrics::JobMetrics;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use weir_checkpoint::protocol::TaskRestore;
use weir_core::config::Secret;
use weir_core::guest::GuestSpec;
use weir_core::{CheckpointId, Config, Failure, GuestFactory, JobGraph, JobId};

/// Makes a job's guest from its module on a task manager (the process's
/// WebAssembly engine, which the runtime does not know).
pub trait GuestLoader: Send + Sync {
    fn load(
        &self,
        module: &[u8],
        guest: &GuestSpec,
        graph: JobGraph,
        config: &Config,
        job: JobId,
    ) -> Result<Arc<dyn GuestFactory>, Failure>;
}

/// `POST /v1/cluster/workers`: a task manager offers its slots.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Register {
    pub id: String,
    /// Its cluster URL (data and control).
    pub address: String,
    pub slots: u32,
    pub cores: u32,
    pub memory: i64,
}

/// The coordinator's answer to a registration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Registered {
    pub heartbeat_interval_ms: u64,
    pub heartbeat_timeout_ms: u64,
}

/// Who a job belongs to, for its connectors (the fields of `JobOwner`
/// that are not part of a configuration).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Owner {
    pub tenant: Option<String>,
    /// `None`: the process environment (`weir run --local` only).
    pub secrets_key: Option<String>,
    pub secrets: BTreeMap<String, Secret>,
    pub restricted: bool,
    pub files: Option<std::path::PathBuf>,
}

/// `POST /v1/cluster/deploy`: tasks of one attempt of a job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Deploy {
    pub job: JobId,
    pub attempt: u32,
    /// The job's configuration as its keys (`Config::to_layer`).
    pub config: weir_core::config::ConfigLayer,
    pub owner: Owner,
    pub guest: GuestSpec,
    pub graph: JobGraph,
    pub lineage: String,
    /// The cluster URL of each slot of the job.
    pub slots: Vec<String>,
    /// The tasks to run here.
    pub tasks: Vec<TaskId>,
    pub restore: Option<Restore>,
}

/// The snapshot an attempt starts from, as far as some tasks are concerned.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Restore {
    /// Storage URL and the snapshot's directory in it.
    pub storage: String,
    pub dir: String,
    pub checkpoint: CheckpointId,
    /// Set when the job owns the snapshot (see `TaskStart`).
    pub reusable: bool,
    pub tasks: Vec<(TaskId, TaskRestore)>,
}

/// `POST /v1/cluster/control`: controls for tasks of one attempt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Controls {
    pub job: JobId,
    pub attempt: u32,
    pub controls: Vec<(TaskId, TaskControl)>,
}

/// `POST /v1/cluster/swap`: the module an attempt's tasks change to at
/// the barrier of `checkpoint` (a module swap in place).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PrepareSwap {
    pub job: JobId,
    pub attempt: u32,
    pub checkpoint: CheckpointId,
    pub guest: GuestSpec,
    pub graph: JobGraph,
}

/// `POST /v1/cluster/cancel`: stop an attempt's tasks here.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Cancel {
    pub job: JobId,
    pub attempt: u32,
}

/// `POST /v1/cluster/events`: what tasks reported, and how their
/// counters grew since the last report.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Events {
    pub worker: String,
    pub job: JobId,
    pub attempt: u32,
    /// Numbers the reports of an attempt on a task manager, from 1, so
    /// that a report sent again is not taken twice.
    pub seq: u64,
    pub events: Vec<TaskEvent>,
    #[serde(default)]
    pub metrics: Option<MetricsDelta>,
}

/// Growth of an attempt's counters on one task manager.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct MetricsDelta {
    /// Per operator: records in, records out, backpressured ns, busy ns,
    /// decode failures, late records dropped.
    pub operators: Vec<[u64; 6]>,
    /// Per operator, the watermark its subtasks here reached last.
    pub watermarks: Vec<u64>,
    pub guest_memory_peak: u64,
}

impl MetricsDelta {
    /// The counters of `m` as they are.
    pub fn of(m: &JobMetrics) -> MetricsDelta {
        let g = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed);
        MetricsDelta {
            operators: m
                .operators
                .iter()
                .map(|o| {
                    [
                        g(&o.records_in),
                        g(&o.records_out),
                        g(&o.backpressured_ns),
                        g(&o.busy_ns),
                        g(&o.decode_failures),
                        g(&o.late_records_dropped),
                    ]
                })
                .collect(),
            watermarks: m.operators.iter().map(|o| g(&o.watermark)).collect(),
            guest_memory_peak: g(&m.guest_memory_peak),
        }
    }

    /// What grew from `before` to `self`.
    pub fn since(&self, before: &MetricsDelta) -> MetricsDelta {
        let mut d = self.clone();
        for (o, b) in d.operators.iter_mut().zip(&before.operators) {
            for (x, y) in o.iter_mut().zip(b) {
                *x = x.saturating_sub(*y);
            }
        }
        d
    }

    /// Adds the growth to the coordinator's counters of the job.
    pub fn apply(&self, m: &JobMetrics) {
        for ((o, d), w) in m
            .operators
            .iter()
            .zip(&self.operators)
            .zip(&self.watermarks)
        {
            let add = |v: &std::sync::atomic::AtomicU64, n: u64| {
                v.fetch_add(n, Ordering::Relaxed);
            };
            add(&o.records_in, d[0]);
            add(&o.records_out, d[1]);
            add(&o.backpressured_ns, d[2]);
            add(&o.busy_ns, d[3]);
            add(&o.decode_failures, d[4]);
            add(&o.late_records_dropped, d[5]);
            if *w != i64::MIN as u64 {
                o.watermark.store(*w, Ordering::Relaxed);
            }
        }
        m.guest_memory_peak
            .fetch_max(self.guest_memory_peak, Ordering::Relaxed);
    }
}
