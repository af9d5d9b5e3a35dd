//! One Store and one component instance per task, behind the runtime's
//! [`Guest`] trait; and the factory that makes them for a job.

use crate::bindings::{JobWorld, wit};
use crate::console::{Console, OutputBudget};
use crate::convert;
use crate::memory::{self, MemoryHandle};
use crate::module::JobModule;
use crate::store::{HostSlot, Limiter, StoreData};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::{Store, Trap};
use wasmtime_wasi::WasiCtxBuilder;
use weir_core::guest::{MemoryImage, NoServices, ProcessContext, Services};
use weir_core::plan::Plan;
use weir_core::{Failure, Guest, GuestFactory, GuestOutput, JobGraph, TimeDomain};

/// Limits of one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceLimits {
    /// Largest linear memory, in bytes.
    pub memory_bytes: u64,
    /// Longest single call into the guest.
    pub call_timeout: Duration,
    /// Fuel per call when the engine meters fuel.
    pub fuel_per_call: u64,
}

impl InstanceLimits {
    /// The limits the configuration sets (`weir.guest.*`).
    pub fn from_config(c: &weir_core::Config) -> Self {
        InstanceLimits {
            memory_bytes: c.guest_memory_limit,
            call_timeout: c.guest_call_timeout,
            fuel_per_call: c.guest_fuel_per_call,
        }
    }
}

impl InstanceLimits {
    /// Fuel to give each call on an engine that meters fuel; 0 (no limit)
    /// gives as much as a call can use.
    fn fuel(&self) -> u64 {
        if self.fuel_per_call == 0 {
            u64::MAX
        } else {
            self.fuel_per_call
        }
    }
}

impl Default for InstanceLimits {
    fn default() -> Self {
        InstanceLimits {
            memory_bytes: 1 << 30,
            call_timeout: Duration::from_secs(10),
            fuel_per_call: 0,
        }
    }
}

/// Where the instances of one job send their standard output and error:
/// the host's log, naming the job, within the job's line budget.
#[derive(Debug, Clone)]
pub struct JobOutput {
    job: String,
    budget: Arc<OutputBudget>,
}

impl JobOutput {
    /// Output of job `job`, at most `lines_per_second` lines a second
    /// (`weir.guest.output-lines-per-second`).
    pub fn new(job: impl Into<String>, lines_per_second: u32) -> Self {
        let job = job.into();
        JobOutput {
            budget: OutputBudget::new(&job, lines_per_second),
            job,
        }
    }
}

/// A component instance in its own Store.
pub struct WasmGuest {
    store: Store<StoreData>,
    bindings: JobWorld,
    memories: Vec<Arc<MemoryHandle>>,
    limits: InstanceLimits,
    stdout: Console,
    stderr: Console,
    poisoned: bool,
}

impl std::fmt::Debug for WasmGuest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmGuest")
            .field("task", &self.store.data().task)
            .finish()
    }
}

fn fmt_bytes(n: u64) -> String {
    if n >= 1 << 30 && n.is_multiple_of(1 << 30) {
        format!("{} GiB", n >> 30)
    } else if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / f64::from(1 << 20))
    } else {
        format!("{n} bytes")
    }
}

impl WasmGuest {
    /// Instantiates `module` in a fresh Store, optionally writing a memory
    /// image of an instance of the same module into it.
    pub fn new(
        module: &JobModule,
        task: &str,
        limits: InstanceLimits,
        image: Option<&MemoryImage>,
        output: &JobOutput,
    ) -> Result<WasmGuest, Failure> {
        let stdout = Console::new(&output.job, task, "stdout", output.budget.clone());
        let stderr = Console::new(&output.job, task, "stderr", output.budget.clone());
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let data = StoreData {
            wasi,
            table: wasmtime_wasi::ResourceTable::new(),
            limiter: Limiter::new(limits.memory_bytes),
            host: HostSlot::default(),
            task: task.to_owned(),
            last_error: None,
        };
        let mut store = Store::new(&module.engine.engine, data);
        store.limiter(|d| &mut d.limiter);
        store.epoch_deadline_trap();
        let ticks =
            (limits.call_timeout.as_millis() / crate::engine::EPOCH_TICK.as_millis()).max(1);
        store.set_epoch_deadline(ticks as u64);
        if module.engine.options.fuel {
            store
                .set_fuel(limits.fuel())
                .map_err(|e| Failure::internal(e.to_string()))?;
        }
        memory::take_created();
        if let Some(img) = image {
            memory::presize(img.memories.iter().map(Vec::len));
        }
        let instantiated = module.pre.instantiate(&mut store);
        let memories = memory::take_created();
        let bindings = instantiated.map_err(|e| {
            let mut g_err = Failure::user(format!("cannot instantiate the job: {e:#}"));
            if let Some((desired, limit)) = store.data().limiter.denied {
                g_err = Failure::limit(format!(
                    "the job needs {} of memory and tables to start, above its limit of {} \
                     (weir.guest.memory-limit)",
                    fmt_bytes(desired),
                    fmt_bytes(limit)
                ));
            }
            g_err
        })?;
        let mut guest = WasmGuest {
            store,
            bindings,
            memories,
            limits,
            stdout,
            stderr,
            poisoned: false,
        };
        if let Some(img) = image {
            guest.write_image(img)?;
        }
        Ok(guest)
    }

    fn write_image(&mut self, img: &MemoryImage) -> Result<(), Failure> {
        if img.memories.len() != self.memories.len() {
            return Err(Failure::user(format!(
                "the memory image has {} memories but the instance has {}; it was taken \
                 from a different module",
                img.memories.len(),
                self.memories.len()
            )));
        }
        for (m, bytes) in self.memories.iter().zip(&img.memories) {
            if bytes.len() > m.len() {
                return Err(Failure::internal(format!(
                    "memory image of {} does not fit a memory of {}",
                    fmt_bytes(bytes.len() as u64),
                    fmt_bytes(m.len() as u64)
                )));
            }
            // SAFETY: no guest code runs; the store is alive (owned by self).
            unsafe { m.write(bytes) };
        }
        Ok(())
    }

    /// Calls into the guest with `host` lent to the store.
    fn call<R>(
        &mut self,
        host: Option<Services<'_>>,
        what: &str,
        f: impl FnOnce(&JobWorld, &mut Store<StoreData>) -> wasmtime::Result<Result<R, wit::GuestError>>,
    ) -> Result<R, Failure> {
        if self.poisoned {
            return Err(Failure::internal(
                "the job instance was used after it failed",
            ));
        }
        let ticks =
            (self.limits.call_timeout.as_millis() / crate::engine::EPOCH_TICK.as_millis()).max(1);
        self.store.set_epoch_deadline(ticks as u64);
        let mut none = NoServices;
        match host {
            Some(h) => self.store.data_mut().host.install(h),
            None => self.store.data_mut().host.install(&mut none),
        }
        if self.store.get_fuel().is_ok() {
            let _ = self.store.set_fuel(self.limits.fuel());
        }
        let result = f(&self.bindings, &mut self.store);
        self.store.data_mut().host.clear();
        match result {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Failure::user(e.message)),
            Err(trap) => {
                self.poisoned = true;
                Err(self.classify(trap, what))
            }
        }
    }

    fn classify(&mut self, e: wasmtime::Error, what: &str) -> Failure {
        if let Some(f) = e.downcast_ref::<Failure>() {
            return f.clone();
        }
        let data = self.store.data();
        if let Some((desired, limit)) = data.limiter.denied {
            return Failure::limit(format!(
                "the job's memory reached its limit of {} (weir.guest.memory-limit, for all its \
                 memories, tables and snapshot copy together) in {what}: growing to {} was \
                 refused",
                fmt_bytes(limit),
                fmt_bytes(desired)
            ));
        }
        match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => {
                return Failure::limit(format!(
                    "{what} ran longer than {:?} (weir.guest.call-timeout) in one call; \
                     does a function loop forever?",
                    self.limits.call_timeout
                ));
            }
            Some(Trap::OutOfFuel) => {
                return Failure::limit(format!(
                    "{what} used more than {} fuel (weir.guest.fuel-per-call) in one call",
                    self.limits.fuel_per_call
                ));
            }
            Some(Trap::StackOverflow) => {
                return Failure::user(format!(
                    "{what} overflowed the stack; is there unbounded recursion?"
                ));
            }
            _ => {}
        }
        let mut msg = match &data.last_error {
            Some(logged) => format!("{what} failed: {logged}"),
            None => format!("{what} trapped: {e:#}"),
        };
        let mut out = self.stdout.tail();
        out.extend(self.stderr.tail());
        if data.last_error.is_none() && !out.is_empty() {
            let tail = &out[out.len().saturating_sub(1024)..];
            msg.push_str(&format!(
                "\nlast output of the job:\n{}",
                String::from_utf8_lossy(tail)
            ));
        }
        Failure::user(msg)
    }

    /// Most memory (memories, tables, snapshot copy) the instance used.
    pub fn peak_memory(&self) -> u64 {
        self.store.data().limiter.peak
    }
}

impl Guest for WasmGuest {
    fn plan(&mut self, entry: Option<&str>, args: &[String]) -> Result<Plan, Failure> {
        let entry = entry.map(str::to_owned);
        let args = args.to_vec();
        self.call(None, "planning the job", |b, s| {
            b.weir_stream_job().call_plan(s, entry.as_deref(), &args)
        })
        .map(convert::plan)
    }

    fn run_stages(
        &mut self,
        host: Services<'_>,
        stages: &[u32],
        batch: &[u8],
    ) -> Result<GuestOutput, Failure> {
        self.call(Some(host), "a job function", |b, s| {
            b.weir_stream_job().call_run_stages(s, stages, batch)
        })
        .map(output)
    }

    fn aggregate(
        &mut self,
        host: Services<'_>,
        op: u32,
        batch: &[u8],
        slots: &[u32],
        emit: bool,
    ) -> Result<GuestOutput, Failure> {
        self.call(Some(host), "an aggregation", |b, s| {
            b.weir_stream_job()
                .call_aggregate(s, op, batch, slots, emit)
        })
        .map(output)
    }

    fn fire(
        &mut self,
        host: Services<'_>,
        op: u32,
        batch: &[u8],
        slots: &[u32],
        purge: bool,
    ) -> Result<GuestOutput, Failure> {
        self.call(Some(host), "an aggregation result", |b, s| {
            b.weir_stream_job().call_fire(s, op, batch, slots, purge)
        })
        .map(output)
    }

    fn merge_windows(
        &mut self,
        host: Services<'_>,
        op: u32,
        batch: &[u8],
        slots: &[u32],
    ) -> Result<(), Failure> {
        self.call(Some(host), "a window merge", |b, s| {
            b.weir_stream_job().call_merge_windows(s, op, batch, slots)
        })
    }

    fn process_window(
        &mut self,
        host: Services<'_>,
        op: u32,
        batch: &[u8],
    ) -> Result<GuestOutput, Failure> {
        self.call(Some(host), "a window function", |b, s| {
            b.weir_stream_job().call_process_window(s, op, batch)
        })
        .map(output)
    }

    fn process(
        &mut self,
        host: Services<'_>,
        op: u32,
        batch: &[u8],
        cx: ProcessContext,
    ) -> Result<GuestOutput, Failure> {
        let cx = wit::ProcessContext {
            current_watermark: cx.current_watermark,
            processing_time: cx.processing_time,
        };
        self.call(Some(host), "a process function", |b, s| {
            b.weir_stream_job().call_process(s, op, batch, cx)
        })
        .map(output)
    }

    fn on_timer(
        &mut self,
        host: Services<'_>,
        op: u32,
        domain: TimeDomain,
        timers: &[u8],
        cx: ProcessContext,
    ) -> Result<GuestOutput, Failure> {
        let cx = wit::ProcessContext {
            current_watermark: cx.current_watermark,
            processing_time: cx.processing_time,
        };
        let d = convert::to_wit_domain(domain);
        self.call(Some(host), "a timer", |b, s| {
            b.weir_stream_job().call_on_timer(s, op, d, timers, cx)
        })
        .map(output)
    }

    fn flush(&mut self, host: Services<'_>, op: u32, forget: bool) -> Result<(), Failure> {
        self.call(Some(host), "writing back cached state", |b, s| {
            b.weir_stream_job().call_flush(s, op, forget)
        })
    }

    fn save(&mut self, host: Services<'_>) -> Result<Option<Vec<u8>>, Failure> {
        self.call(Some(host), "the save hook", |b, s| {
            b.weir_stream_job().call_save(s)
        })
    }

    fn restore(
        &mut self,
        host: Services<'_>,
        from_version: &str,
        state: &[u8],
    ) -> Result<(), Failure> {
        self.call(Some(host), "the restore hook", |b, s| {
            b.weir_stream_job().call_restore(s, from_version, state)
        })
    }

    fn memory_image(&mut self, reuse: Option<MemoryImage>) -> Result<Option<MemoryImage>, Failure> {
        if self.poisoned {
            return Err(Failure::internal("cannot snapshot a failed instance"));
        }
        // The copy the task keeps counts toward the instance's limit.
        let size: u64 = self.memories.iter().map(|m| m.len() as u64).sum();
        let limiter = &mut self.store.data_mut().limiter;
        let total = limiter.memories + limiter.tables + size;
        if total > limiter.memory_limit {
            return Err(Failure::limit(format!(
                "the job's memory ({}) and the copy a memory snapshot keeps ({}) reach {}, above \
                 its limit of {} (weir.guest.memory-limit); raise the limit or turn off \
                 weir.state.memory-snapshots",
                fmt_bytes(limiter.memories + limiter.tables),
                fmt_bytes(size),
                fmt_bytes(total),
                fmt_bytes(limiter.memory_limit)
            )));
        }
        limiter.image = size;
        limiter.peak = limiter.peak.max(total);
        let mut buffers = reuse.map(|r| r.memories).unwrap_or_default().into_iter();
        let memories = self
            .memories
            .iter()
            .map(|m| {
                let mut buf = buffers.next().unwrap_or_default();
                // SAFETY: called between guest calls on the thread owning the store.
                unsafe { m.read_into(&mut buf) };
                buf
            })
            .collect();
        Ok(Some(MemoryImage { memories }))
    }

    fn memory_bytes(&self) -> u64 {
        self.store.data().limiter.used()
    }
}

fn output(o: wit::Output) -> GuestOutput {
    GuestOutput {
        main: o.main,
        records: o.records,
        side: o.side,
    }
}

/// Makes instances of one job (module, entry, arguments) for its tasks.
pub struct WasmJob {
    module: Arc<JobModule>,
    entry: Option<String>,
    args: Vec<String>,
    graph: JobGraph,
    limits: InstanceLimits,
    output: JobOutput,
}

impl std::fmt::Debug for WasmJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmJob")
            .field("module", &self.module)
            .field("entry", &self.entry)
            .finish()
    }
}

impl WasmJob {
    pub fn new(
        module: Arc<JobModule>,
        entry: Option<String>,
        args: Vec<String>,
        graph: JobGraph,
        limits: InstanceLimits,
        output: JobOutput,
    ) -> Self {
        WasmJob {
            module,
            entry,
            args,
            graph,
            limits,
            output,
        }
    }

    pub fn module(&self) -> &Arc<JobModule> {
        &self.module
    }
}

/// Plans a job: instantiates the module once and calls `plan`.
/// The names of the jobs a component holds (its entries).
pub fn job_entries(module: &JobModule, limits: InstanceLimits) -> Result<Vec<String>, Failure> {
    let output = JobOutput::new("upload", 100);
    let mut g = WasmGuest::new(module, "entries", limits, None, &output)?;
    g.call(None, "listing the job's entries", |b, s| {
        b.weir_stream_job().call_entries(s).map(Ok)
    })
}

pub fn plan_job(
    module: &JobModule,
    entry: Option<&str>,
    args: &[String],
    limits: InstanceLimits,
) -> Result<Plan, Failure> {
    let output = JobOutput::new("plan", 100);
    let mut g = WasmGuest::new(module, "plan", limits, None, &output)?;
    g.plan(entry, args)
}

impl GuestFactory for WasmJob {
    fn instantiate(
        &self,
        task: &str,
        image: Option<&MemoryImage>,
    ) -> Result<Box<dyn Guest>, Failure> {
        let mut g = WasmGuest::new(&self.module, task, self.limits, image, &self.output)?;
        if image.is_none() {
            g.plan(self.entry.as_deref(), &self.args)?;
        }
        Ok(Box::new(g))
    }

    fn code_hash(&self) -> String {
        self.module.hash().to_owned()
    }

    /// The module and the plan its instances run, connectors aside (where
    /// records come from and go is the host's business, so a job restored
    /// on another port or broker keeps its memory image); arguments that
    /// change the operators, their functions or their state change it.
    fn instance_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        use weir_core::plan::OperatorKind;
        let mut graph = self.graph.clone();
        for op in &mut graph.operators {
            match &mut op.kind {
                OperatorKind::Source(spec) => spec.connector.options.clear(),
                OperatorKind::Sink(c) => c.options.clear(),
                _ => {}
            }
        }
        graph.warnings.clear();
        let mut h = Sha256::new();
        h.update(self.module.hash().as_bytes());
        h.update(self.entry.as_deref().unwrap_or_default().as_bytes());
        h.update(serde_json::to_vec(&graph).unwrap_or_default());
        hex::encode(h.finalize())
    }

    fn graph(&self) -> &JobGraph {
        &self.graph
    }

    fn spec(&self) -> Option<weir_core::guest::GuestSpec> {
        Some(weir_core::guest::GuestSpec {
            module_hash: self.module.hash().to_owned(),
            entry: self.entry.clone(),
            args: self.args.clone(),
        })
    }
}
