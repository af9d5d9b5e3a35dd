//! The contract between the runtime and user code: what a task can ask a
//! job instance to do ([`Guest`]), and what the instance can ask the task's
//! host for ([`HostServices`]).
//!
//! `weir-wasm` implements [`Guest`] for component instances; the benchmark
//! and tests also implement it for native instances of the same SDK code.

use crate::error::Failure;
use crate::graph::JobGraph;
use crate::plan::Plan;

/// Severity of a guest log message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Event time or processing time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum TimeDomain {
    EventTime,
    ProcessingTime,
}

/// Time as seen by a keyed process function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcessContext {
    pub current_watermark: i64,
    pub processing_time: i64,
}

/// What a guest can ask of the task it runs in, during a call. Keyed state
/// calls refer to the operator the runtime is calling.
pub trait HostServices: Send {
    fn log(&mut self, level: LogLevel, message: &str);
    fn state_get(&mut self, state: u32, key: &[u8], ns: &[u8]) -> Result<Option<Vec<u8>>, Failure>;
    fn state_put(&mut self, state: u32, key: &[u8], ns: &[u8], value: &[u8])
    -> Result<(), Failure>;
    fn state_delete(&mut self, state: u32, key: &[u8], ns: &[u8]) -> Result<(), Failure>;
    fn state_append(
        &mut self,
        state: u32,
        key: &[u8],
        ns: &[u8],
        value: &[u8],
    ) -> Result<(), Failure>;
    fn state_scan(&mut self, state: u32, key: &[u8], prefix: &[u8]) -> Result<Vec<u8>, Failure>;
    fn state_write(&mut self, state: u32, writes: &[u8]) -> Result<(), Failure>;
    fn register_timer(
        &mut self,
        domain: TimeDomain,
        key: &[u8],
        ns: &[u8],
        ts: i64,
    ) -> Result<(), Failure>;
    fn delete_timer(
        &mut self,
        domain: TimeDomain,
        key: &[u8],
        ns: &[u8],
        ts: i64,
    ) -> Result<(), Failure>;
}

/// Host services for calls that have no task behind them (planning): state
/// is unavailable and logs go to the host log.
#[derive(Debug, Default)]
pub struct NoServices;

fn no_state() -> Failure {
    Failure::user("keyed state is only available inside keyed operators, not while planning")
}

impl HostServices for NoServices {
    fn log(&mut self, level: LogLevel, message: &str) {
        crate::guest::log_to_host(level, "plan", message);
    }
    fn state_get(&mut self, _: u32, _: &[u8], _: &[u8]) -> Result<Option<Vec<u8>>, Failure> {
        Err(no_state())
    }
    fn state_put(&mut self, _: u32, _: &[u8], _: &[u8], _: &[u8]) -> Result<(), Failure> {
        Err(no_state())
    }
    fn state_delete(&mut self, _: u32, _: &[u8], _: &[u8]) -> Result<(), Failure> {
        Err(no_state())
    }
    fn state_append(&mut self, _: u32, _: &[u8], _: &[u8], _: &[u8]) -> Result<(), Failure> {
        Err(no_state())
    }
    fn state_scan(&mut self, _: u32, _: &[u8], _: &[u8]) -> Result<Vec<u8>, Failure> {
        Err(no_state())
    }
    fn state_write(&mut self, _: u32, _: &[u8]) -> Result<(), Failure> {
        Err(no_state())
    }
    fn register_timer(&mut self, _: TimeDomain, _: &[u8], _: &[u8], _: i64) -> Result<(), Failure> {
        Err(no_state())
    }
    fn delete_timer(&mut self, _: TimeDomain, _: &[u8], _: &[u8], _: i64) -> Result<(), Failure> {
        Err(no_state())
    }
}

/// Writes a guest's log line to the host log.
pub fn log_to_host(level: LogLevel, task: &str, message: &str) {
    match level {
        LogLevel::Trace => tracing::trace!(target: "weir::guest", task, "{message}"),
        LogLevel::Debug => tracing::debug!(target: "weir::guest", task, "{message}"),
        LogLevel::Info => tracing::info!(target: "weir::guest", task, "{message}"),
        LogLevel::Warn => tracing::warn!(target: "weir::guest", task, "{message}"),
        LogLevel::Error => tracing::error!(target: "weir::guest", task, "{message}"),
    }
}

/// What a guest call emitted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GuestOutput {
    /// Main output records (port 0), framed.
    pub main: Vec<u8>,
    /// Number of records in `main`.
    pub records: u32,
    /// Side output and decode-failure records, framed, each with its port.
    pub side: Vec<u8>,
}

/// The services handed to a guest call.
pub type Services<'a> = &'a mut dyn HostServices;

/// One instance of a job's code, owned by one task. A failed call leaves
/// the instance unusable; the task fails and is rebuilt from a checkpoint.
pub trait Guest {
    fn plan(&mut self, entry: Option<&str>, args: &[String]) -> Result<Plan, Failure>;
    fn run_stages(
        &mut self,
        host: Services<'_>,
        stages: &[u32],
        batch: &[u8],
    ) -> Result<GuestOutput, Failure>;
    fn aggregate(
        &mut self,
        host: Services<'_>,
        op: u32,
        batch: &[u8],
        slots: &[u32],
        emit: bool,
    ) -> Result<GuestOutput, Failure>;
    fn fire(
        &mut self,
        host: Services<'_>,
        op: u32,
        batch: &[u8],
        slots: &[u32],
        purge: bool,
    ) -> Result<GuestOutput, Failure>;
    fn merge_windows(
        &mut self,
        host: Services<'_>,
        op: u32,
        batch: &[u8],
        slots: &[u32],
    ) -> Result<(), Failure>;
    fn process_window(
        &mut self,
        host: Services<'_>,
        op: u32,
        batch: &[u8],
    ) -> Result<GuestOutput, Failure>;
    fn process(
        &mut self,
        host: Services<'_>,
        op: u32,
        batch: &[u8],
        cx: ProcessContext,
    ) -> Result<GuestOutput, Failure>;
    fn on_timer(
        &mut self,
        host: Services<'_>,
        op: u32,
        domain: TimeDomain,
        timers: &[u8],
        cx: ProcessContext,
    ) -> Result<GuestOutput, Failure>;
    /// Writes back cached keyed state of `op`; with `forget`, the guest also
    /// drops its slots.
    fn flush(&mut self, host: Services<'_>, op: u32, forget: bool) -> Result<(), Failure>;
    fn save(&mut self, host: Services<'_>) -> Result<Option<Vec<u8>>, Failure>;
    fn restore(
        &mut self,
        host: Services<'_>,
        from_version: &str,
        state: &[u8],
    ) -> Result<(), Failure>;

    /// A copy of the instance's linear memories, taken between calls; None
    /// when the instance cannot be snapshotted (native instances). `reuse`
    /// is an earlier image whose buffers the copy may reuse.
    fn memory_image(&mut self, reuse: Option<MemoryImage>) -> Result<Option<MemoryImage>, Failure> {
        let _ = reuse;
        Ok(None)
    }

    /// Current size of the instance's memories, for metrics.
    fn memory_bytes(&self) -> u64 {
        0
    }
}

/// The linear memories of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemoryImage {
    /// One entry per memory, in instantiation order.
    pub memories: Vec<Vec<u8>>,
}

/// Creates guest instances for the tasks of one job.
pub trait GuestFactory: Send + Sync {
    /// A new instance that has run `plan` (so its function table is built),
    /// or, with `image`, an instance whose memory is restored from a
    /// snapshot of an instance of the identical module.
    fn instantiate(
        &self,
        task: &str,
        image: Option<&MemoryImage>,
    ) -> Result<Box<dyn Guest>, Failure>;

    /// Content hash of the job's code.
    fn code_hash(&self) -> String;

    /// Identifies the instances this factory makes: the code and the plan
    /// they run. Memory images restore only into instances with the same
    /// identity, since `plan` is not run again in a restored instance.
    fn instance_hash(&self) -> String {
        self.code_hash()
    }

    /// The validated graph the instances were planned with.
    fn graph(&self) -> &JobGraph;

    /// How another process makes the same guest, when it can: a job
    /// whose guest has none runs in this process only.
    fn spec(&self) -> Option<GuestSpec> {
        None
    }
}

/// A job's guest as another process makes it again: its module, and the
/// entry and arguments the job was planned with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GuestSpec {
    pub module_hash: String,
    pub entry: Option<String>,
    pub args: Vec<String>,
}
