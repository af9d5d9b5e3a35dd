//! The dataflow executor.
//!
//! A [`JobGraph`](weir_core::JobGraph) becomes an [`ExecutionGraph`]: operators
//! chained into tasks, one thread per task subtask, connected by bounded
//! channels (backpressure). A task loops over its source or input channels,
//! runs its chain — guest stages fused into one call per batch, keyed
//! aggregations, windows and process functions over RocksDB keyed state,
//! watermark generators, sinks — and partitions its output to the next
//! tasks (forward, rebalance, broadcast, or by key group). Control messages
//! (end of input, barriers, watermarks, idleness) travel in-band.
//! Connectors come from the [`Connectors`] registry the job is started
//! with, as the guest comes from its `GuestFactory`.

mod chain;
mod channel;
mod context;
mod events;
mod execution;
mod job;
mod metrics;
mod net;
mod process;
mod restore;
mod scratch;
mod services;
mod slots;
mod snapshot;
mod swap;
mod task;
mod unaligned;
mod watermark;
mod window;
mod worker;

pub use channel::{Barrier, Batch, Message};
pub use context::{CheckpointReport, JobListener, is_batch};
pub use events::{TaskEvent, TaskId};
pub use execution::{Chain, ChainEdge, ExecutionGraph};
pub use job::{
    CommandSender, JobCommand, JobHandle, JobOutcome, JobSpec, RestoreRequest, SwapRequest,
    Swapped, start,
};
pub use metrics::{JobMetrics, OperatorMetrics};
pub use net::measure as exchange;
pub use net::{
    Auth, Cluster, ClusterOptions, DataPlane, GuestLoader, WorkerView, advertised_url, bind,
    is_loopback, url_list,
};
pub use restore::{
    candidates as snapshot_candidates, dispose_savepoint, read_metadata, target_job,
};
pub use scratch::ScratchDir;
pub use snapshot::SnapshotTarget;
pub use swap::{ModuleSwap, swap_refusal};
pub use weir_connectors::{ConnectorProvider, Connectors};
pub use worker::{WorkerOptions, run_worker};
