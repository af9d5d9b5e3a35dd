//! Jobs run natively: the same SDK pipeline, called directly instead of
//! through a component. Used to measure what the WebAssembly boundary costs
//! and to test the runtime without compiling components.

use weir_core::guest::{NoServices, ProcessContext, Services};
use weir_core::plan::Plan;
use weir_core::{
    Failure, Guest, GuestFactory, GuestOutput, HostServices, JobGraph, LogLevel, TimeDomain,
};
use weir_sdk::native::{Host, Instance, Output};

/// Makes native instances of a job for the runtime.
pub struct NativeJob {
    jobs: weir_sdk::Jobs,
    entry: Option<String>,
    args: Vec<String>,
    graph: JobGraph,
}

impl NativeJob {
    /// Plans `entry` of `jobs` with `args`.
    pub fn plan(
        jobs: weir_sdk::Jobs,
        entry: Option<&str>,
        args: &[String],
    ) -> Result<Plan, Failure> {
        let mut inst = Instance::new(jobs);
        inst.plan(&mut Adapter(&mut NoServices), entry, args)
            .map_err(|e| Failure::user(e.message().to_owned()))
    }

    pub fn new(
        jobs: weir_sdk::Jobs,
        entry: Option<String>,
        args: Vec<String>,
        graph: JobGraph,
    ) -> Self {
        NativeJob {
            jobs,
            entry,
            args,
            graph,
        }
    }
}

impl GuestFactory for NativeJob {
    fn instantiate(
        &self,
        _task: &str,
        _image: Option<&weir_core::guest::MemoryImage>,
    ) -> Result<Box<dyn Guest>, Failure> {
        let mut inst = Instance::new(self.jobs);
        inst.plan(
            &mut Adapter(&mut NoServices),
            self.entry.as_deref(),
            &self.args,
        )
        .map_err(user)?;
        Ok(Box::new(NativeGuest { inst }))
    }

    fn code_hash(&self) -> String {
        "native".into()
    }

    fn graph(&self) -> &JobGraph {
        &self.graph
    }
}

struct NativeGuest {
    inst: Instance,
}

fn user(e: weir_sdk::Error) -> Failure {
    Failure::user(e.message().to_owned())
}

fn out(o: Output) -> GuestOutput {
    GuestOutput {
        main: o.main,
        records: o.records,
        side: o.side,
    }
}

/// Host services as the SDK's native backend sees them; a failure of the
/// host aborts the call, as a trap would.
struct Adapter<'a>(&'a mut dyn HostServices);

fn ok<T>(r: Result<T, Failure>) -> T {
    r.unwrap_or_else(|f| panic!("{f}"))
}

fn level(l: weir_sdk::LogLevel) -> LogLevel {
    match l {
        weir_sdk::LogLevel::Trace => LogLevel::Trace,
        weir_sdk::LogLevel::Debug => LogLevel::Debug,
        weir_sdk::LogLevel::Info => LogLevel::Info,
        weir_sdk::LogLevel::Warn => LogLevel::Warn,
        weir_sdk::LogLevel::Error => LogLevel::Error,
    }
}

fn domain(d: weir_sdk::TimeDomain) -> TimeDomain {
    match d {
        weir_sdk::TimeDomain::EventTime => TimeDomain::EventTime,
        weir_sdk::TimeDomain::ProcessingTime => TimeDomain::ProcessingTime,
    }
}

impl Host for Adapter<'_> {
    fn log(&mut self, l: weir_sdk::LogLevel, message: &str) {
        self.0.log(level(l), message)
    }
    fn state_get(&mut self, state: u32, key: &[u8], ns: &[u8]) -> Option<Vec<u8>> {
        ok(self.0.state_get(state, key, ns))
    }
    fn state_put(&mut self, state: u32, key: &[u8], ns: &[u8], value: &[u8]) {
        ok(self.0.state_put(state, key, ns, value))
    }
    fn state_delete(&mut self, state: u32, key: &[u8], ns: &[u8]) {
        ok(self.0.state_delete(state, key, ns))
    }
    fn state_append(&mut self, state: u32, key: &[u8], ns: &[u8], value: &[u8]) {
        ok(self.0.state_append(state, key, ns, value))
    }
    fn state_scan(&mut self, state: u32, key: &[u8], prefix: &[u8]) -> Vec<u8> {
        ok(self.0.state_scan(state, key, prefix))
    }
    fn state_write(&mut self, state: u32, writes: &[u8]) {
        ok(self.0.state_write(state, writes))
    }
    fn register_timer(&mut self, d: weir_sdk::TimeDomain, key: &[u8], ns: &[u8], ts: i64) {
        ok(self.0.register_timer(domain(d), key, ns, ts))
    }
    fn delete_timer(&mut self, d: weir_sdk::TimeDomain, key: &[u8], ns: &[u8], ts: i64) {
        ok(self.0.delete_timer(domain(d), key, ns, ts))
    }
}

impl Guest for NativeGuest {
    fn plan(&mut self, entry: Option<&str>, args: &[String]) -> Result<Plan, Failure> {
        self.inst
            .plan(&mut Adapter(&mut NoServices), entry, args)
            .map_err(user)
    }

    fn run_stages(
        &mut self,
        host: Services<'_>,
        stages: &[u32],
        batch: &[u8],
    ) -> Result<GuestOutput, Failure> {
        self.inst
            .run_stages(&mut Adapter(host), stages, batch)
            .map(out)
            .map_err(user)
    }

    fn aggregate(
        &mut self,
        host: Services<'_>,
        op: u32,
        batch: &[u8],
        slots: &[u32],
        emit: bool,
    ) -> Result<GuestOutput, Failure> {
        self.inst
            .aggregate(&mut Adapter(host), op, batch, slots, emit)
            .map(out)
            .map_err(user)
    }

    fn fire(
        &mut self,
        host: Services<'_>,
        op: u32,
        batch: &[u8],
        slots: &[u32],
        purge: bool,
    ) -> Result<GuestOutput, Failure> {
        self.inst
            .fire(&mut Adapter(host), op, batch, slots, purge)
            .map(out)
            .map_err(user)
    }

    fn merge_windows(
        &mut self,
        host: Services<'_>,
        op: u32,
        batch: &[u8],
        slots: &[u32],
    ) -> Result<(), Failure> {
        self.inst
            .merge_windows(&mut Adapter(host), op, batch, slots)
            .map_err(user)
    }

    fn process_window(
        &mut self,
        host: Services<'_>,
        op: u32,
        batch: &[u8],
    ) -> Result<GuestOutput, Failure> {
        self.inst
            .process_window(&mut Adapter(host), op, batch)
            .map(out)
            .map_err(user)
    }

    fn process(
        &mut self,
        host: Services<'_>,
        op: u32,
        batch: &[u8],
        cx: ProcessContext,
    ) -> Result<GuestOutput, Failure> {
        self.inst
            .process(
                &mut Adapter(host),
                op,
                batch,
                cx.current_watermark,
                cx.processing_time,
            )
            .map(out)
            .map_err(user)
    }

    fn on_timer(
        &mut self,
        host: Services<'_>,
        op: u32,
        d: TimeDomain,
        timers: &[u8],
        cx: ProcessContext,
    ) -> Result<GuestOutput, Failure> {
        let d = match d {
            TimeDomain::EventTime => weir_sdk::TimeDomain::EventTime,
            TimeDomain::ProcessingTime => weir_sdk::TimeDomain::ProcessingTime,
        };
        self.inst
            .on_timer(
                &mut Adapter(host),
                op,
                d,
                timers,
                cx.current_watermark,
                cx.processing_time,
            )
            .map(out)
            .map_err(user)
    }

    fn flush(&mut self, host: Services<'_>, op: u32, forget: bool) -> Result<(), Failure> {
        self.inst
            .flush(&mut Adapter(host), op, forget)
            .map_err(user)
    }

    fn save(&mut self, host: Services<'_>) -> Result<Option<Vec<u8>>, Failure> {
        self.inst.save(&mut Adapter(host)).map_err(user)
    }

    fn restore(
        &mut self,
        host: Services<'_>,
        from_version: &str,
        state: &[u8],
    ) -> Result<(), Failure> {
        self.inst
            .restore(&mut Adapter(host), from_version, state)
            .map_err(user)
    }
}
