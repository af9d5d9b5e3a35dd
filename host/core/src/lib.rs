//! Shared vocabulary of the Weir host.
//!
//! Every other host crate speaks in these types: identifiers (`JobId`,
//! `OperatorUid`, `KeyGroup`, `CheckpointId`), the job plan a component
//! returns and the validated `JobGraph` built from it, the configuration with
//! Flink's keys, and the [`Guest`] trait through which the runtime calls user
//! functions — implemented by `weir-wasm` for components and by native
//! instances in benchmarks. It has no heavy dependencies.

pub mod config;
pub mod error;
pub mod fs;
pub mod graph;
pub mod guest;
pub mod ids;
pub mod keygroup;
pub mod options;
pub mod reference;
pub mod secrets;
pub mod state;

pub use config::Config;
pub use error::{ErrorDomain, Failure};
pub use graph::{JobGraph, OperatorNode};
pub use guest::{Guest, GuestFactory, GuestOutput, HostServices, LogLevel, TimeDomain};
pub use ids::{CheckpointId, JobId, OperatorUid};
pub use keygroup::{KeyGroup, KeyGroupRange};
pub use secrets::Secrets;
pub use state::SubtaskState;
pub use weir_frame::plan;
