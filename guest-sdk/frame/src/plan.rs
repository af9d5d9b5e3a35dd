//! The job plan as a job builds it; mirrors `weir:stream/types` one to one.
//!
//! The Rust SDK builds these and converts them to WIT values; the host
//! converts WIT values back (or takes them directly from native instances)
//! and validates them into its job graph. Field meanings are documented in
//! `wit/weir.wit`.

#![allow(missing_docs, reason = "documented in wit/weir.wit")]

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Partitioning {
    Forward,
    Rebalance,
    Hash,
    Broadcast,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Edge {
    pub from: u32,
    pub port: u32,
    pub partitioning: Partitioning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Connector {
    pub kind: String,
    pub options: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum TimestampSource {
    None,
    Connector,
    Guest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct WatermarkSpec {
    pub max_out_of_orderness_ms: i64,
    pub idle_timeout_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SourceSpec {
    pub connector: Connector,
    pub timestamps: TimestampSource,
    pub watermarks: Option<WatermarkSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum StageKind {
    Map,
    FlatMap,
    Filter,
    KeyBy,
    Timestamps,
    Encode,
    Decode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum TimeDomain {
    EventTime,
    ProcessingTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum WindowAssigner {
    Tumbling {
        size_ms: i64,
        offset_ms: i64,
    },
    Sliding {
        size_ms: i64,
        slide_ms: i64,
        offset_ms: i64,
    },
    Session {
        gap_ms: i64,
    },
    Global,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Trigger {
    Default,
    Count(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum WindowFunction {
    Aggregate,
    Process,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct WindowSpec {
    pub assigner: WindowAssigner,
    pub domain: TimeDomain,
    pub trigger: Trigger,
    pub allowed_lateness_ms: i64,
    pub late_port: Option<u32>,
    pub function: WindowFunction,
    /// The function merges accumulators, so the host may slice sliding
    /// windows into panes.
    #[cfg_attr(feature = "serde", serde(default))]
    pub mergeable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum OperatorKind {
    Source(SourceSpec),
    Sink(Connector),
    Stage(StageKind),
    Aggregate,
    Window(WindowSpec),
    Process,
    Watermarks(WatermarkSpec),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum StateKind {
    Value,
    List,
    Map,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct StateDescriptor {
    pub name: String,
    pub kind: StateKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Operator {
    pub uid: Option<String>,
    pub name: String,
    pub parallelism: Option<u32>,
    pub inputs: Vec<Edge>,
    pub kind: OperatorKind,
    pub states: Vec<StateDescriptor>,
    pub side_outputs: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Plan {
    pub name: String,
    pub version: String,
    pub config: Vec<(String, String)>,
    pub operators: Vec<Operator>,
    pub has_state_hooks: bool,
}
