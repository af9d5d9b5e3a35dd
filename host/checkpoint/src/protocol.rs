//! The checkpoint protocol, without I/O.

pub mod aligner;
pub mod coordinator;
pub mod restore;
pub mod retention;

pub use aligner::{AlignAction, AlignmentMode, BarrierAligner};
pub use coordinator::{AckOutcome, CheckpointSettings, Coordinator, SnapshotKind, TooManyFailures};
pub use restore::{
    Decision, InFlightRestore, ReportLine, RestorePlan, TargetJob, TargetOperator, TaskRestore,
    plan_restore,
};
pub use retention::{Discard, Retention};
