//! Running a chain of operators inside one task.
//!
//! Consecutive guest stages become one step (one guest call per batch);
//! keyed aggregations and sinks are steps of their own. A batch enters at
//! the head and flows through the steps; what the last operator emits goes
//! to the task's output edges, and side outputs go to the edges of their
//! operator and port.

use crate::channel::{Barrier, Batch, Disconnected, EmitError, Message, OutputEdge, clone_batch};
use crate::metrics::JobMetrics;
use crate::process::ProcessStep;
use crate::services::{TaskHost, state_failure};
use crate::slots::SlotIndex;
use crate::snapshot::{LocalTaskSnapshot, SnapshotTarget};
use crate::watermark::{Emit, GeneratorState, MAX_WATERMARK, MIN_WATERMARK, WatermarkGenerator};
use crate::window::WindowStep;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_connectors::SinkWriter;
use weir_core::graph::OperatorNode;
use weir_core::guest::MemoryImage;
use weir_core::guest::ProcessContext;
use weir_core::plan::{OperatorKind, StateKind, TimeDomain, TimestampSource};
use weir_core::{CheckpointId, Failure, Guest, GuestOutput};
use weir_frame::{DECODE_FAILURE_PORT, Reader, Record, Writer};
use weir_state::StateId;

/// Why a task stopped early.
#[derive(Debug)]
pub(crate) enum TaskError {
    /// The task failed; the job fails or restarts.
    Failed(Failure),
    /// Downstream is gone because the job is stopping.
    Disconnected,
}

impl From<Failure> for TaskError {
    fn from(f: Failure) -> Self {
        TaskError::Failed(f)
    }
}

impl From<Disconnected> for TaskError {
    fn from(_: Disconnected) -> Self {
        TaskError::Disconnected
    }
}

impl From<EmitError> for TaskError {
    fn from(e: EmitError) -> Self {
        match e {
            EmitError::Disconnected => TaskError::Disconnected,
            EmitError::Failed(f) => TaskError::Failed(f),
        }
    }
}

/// What a task's snapshots record about it.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotMeta {
    /// Uid of every operator of the job, by index.
    pub uids: Vec<String>,
    pub chain_uids: Vec<String>,
    pub subtask: u32,
    pub parallelism: u32,
    pub local_dir: PathBuf,
    pub memory_snapshots: bool,
    pub has_state_hooks: bool,
    pub module_hash: String,
    pub job_version: String,
}

/// What to do with records a decode stage could not decode.
pub(crate) enum DecodePolicy {
    Fail,
    Skip,
    /// Send them to a dead-letter topic.
    DeadLetter(Box<dyn weir_connectors::DeadLetterSink>),
}

pub(crate) enum Step {
    /// Fused guest stages.
    Stages { ops: Vec<u32> },
    /// A keyed aggregation.
    Aggregate(AggregateStep),
    /// A window operator.
    Window(Box<WindowStep>),
    /// A keyed process function.
    Process(ProcessStep),
    /// Watermark generation: records pass through unchanged.
    Watermarks(WatermarksStep),
    Sink {
        op: u32,
        writer: Box<dyn SinkWriter>,
    },
}

impl Step {
    fn first_op(&self) -> u32 {
        match self {
            Step::Stages { ops } => ops[0],
            Step::Aggregate(a) => a.op,
            Step::Window(w) => w.op,
            Step::Process(p) => p.op,
            Step::Watermarks(w) => w.carries,
            Step::Sink { op, .. } => *op,
        }
    }

    /// The operator whose checkpointed state the step keeps.
    fn state_op(&self) -> u32 {
        match self {
            Step::Watermarks(w) => w.op,
            _ => self.first_op(),
        }
    }

    fn last_op(&self) -> u32 {
        match self {
            Step::Stages { ops } => *ops.last().expect("non-empty"),
            _ => self.first_op(),
        }
    }
}

/// Watermarks generated from the records that pass (a source's own, or an
/// `assign_timestamps_and_watermarks` operator's). Upstream watermarks stop
/// here, except the final one.
pub(crate) struct WatermarksStep {
    /// The operator whose state holds the generator's (a source's, or the
    /// watermark operator's).
    pub op: u32,
    /// The operator whose records pass through (what downstream reads).
    pub carries: u32,
    pub generator: WatermarkGenerator,
    interval: Duration,
    last: Option<Instant>,
}

/// A keyed aggregation: its accumulators are keyed state `state`, kept
/// decoded in the guest in slots numbered by `slots`.
pub(crate) struct AggregateStep {
    pub op: u32,
    /// Emit the updated result for every record (streaming) or only the
    /// final results when input ends (batch).
    pub emit: bool,
    pub state: StateId,
    pub slots: SlotIndex,
    /// Most slots before the guest writes back and forgets them.
    pub capacity: usize,
    scratch: Vec<u32>,
}

impl AggregateStep {
    pub fn new(op: u32, emit: bool, state: StateId, capacity: usize) -> Self {
        AggregateStep {
            op,
            emit,
            state,
            slots: SlotIndex::default(),
            capacity: capacity.max(1),
            scratch: Vec::new(),
        }
    }
}

/// Number of keys per `fire` call when keyed aggregations emit at the end.
const FINAL_KEYS_PER_CALL: usize = 4096;

pub(crate) struct ChainRunner {
    pub steps: Vec<Step>,
    pub guest: Option<Box<dyn Guest>>,
    pub host: TaskHost,
    pub outputs: Vec<OutputEdge>,
    pub metrics: Arc<JobMetrics>,
    pub decode_policy: DecodePolicy,
    pub source_name: String,
    pub buffer_timeout: Duration,
    last_flush: Instant,
    /// The task's input watermark: what its keyed operators go by.
    pub watermark: i64,
    /// The source split the batch being processed came from.
    pub current_split: usize,
    /// Bounded inputs in batch mode: no watermarks but the final one.
    pub batch_mode: bool,
    last_tick: Instant,
    /// On a task manager: whether it still hears from its coordinator.
    /// Sinks write nothing once it does not (the job runs elsewhere).
    pub gate: Option<CommitGate>,
}

/// Says whether this process may still commit what a checkpoint covers.
pub(crate) type CommitGate = std::sync::Arc<dyn Fn() -> bool + Send + Sync>;

/// Milliseconds since the Unix epoch: processing time.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// How often processing-time timers and idle watermark generators are
/// looked at while records flow.
const TICK: Duration = Duration::from_millis(10);

impl Drop for ChainRunner {
    /// The instance's last size counts toward the job's high-water mark,
    /// also when the task ends by failing (a memory limit, a trap).
    fn drop(&mut self) {
        if let Some(g) = &self.guest {
            self.metrics
                .guest_memory_peak
                .fetch_max(g.memory_bytes(), std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl ChainRunner {
    #[allow(
        clippy::too_many_arguments,
        reason = "assembled in one place by the task builder"
    )]
    pub fn new(
        steps: Vec<Step>,
        guest: Option<Box<dyn Guest>>,
        host: TaskHost,
        outputs: Vec<OutputEdge>,
        metrics: Arc<JobMetrics>,
        decode_policy: DecodePolicy,
        source_name: String,
        buffer_timeout: Duration,
    ) -> Self {
        ChainRunner {
            steps,
            guest,
            host,
            outputs,
            metrics,
            decode_policy,
            source_name,
            buffer_timeout,
            last_flush: Instant::now(),
            watermark: MIN_WATERMARK,
            current_split: 0,
            batch_mode: false,
            last_tick: Instant::now(),
            gate: None,
        }
    }

    /// Sizes the source's watermark generator to its splits.
    pub fn set_source_splits(&mut self, splits: usize) {
        for s in &mut self.steps {
            if let Step::Watermarks(w) = s {
                w.generator.set_splits(splits);
            }
        }
    }

    /// A new input watermark reached the task.
    pub fn on_watermark(&mut self, wm: i64) -> Result<(), TaskError> {
        if wm <= self.watermark {
            return Ok(());
        }
        self.watermark = wm;
        self.advance(0, wm)
    }

    /// Input ended: the final watermark passes every generator.
    pub fn end_of_input_watermark(&mut self) -> Result<(), TaskError> {
        self.watermark = MAX_WATERMARK;
        self.advance(0, MAX_WATERMARK)
    }

    /// Carries watermark `wm` through the steps from `start`: keyed steps
    /// fire their due event-time timers, generators stop it (unless it is
    /// the final one), and what is left goes downstream.
    fn advance(&mut self, start: usize, wm: i64) -> Result<(), TaskError> {
        for i in start..self.steps.len() {
            if matches!(self.steps[i], Step::Watermarks(_)) && wm != MAX_WATERMARK {
                return Ok(());
            }
            self.fire_timers(i, TimeDomain::EventTime, wm, wm)?;
            self.metrics.operators[self.steps[i].last_op() as usize]
                .watermark
                .store(wm as u64, std::sync::atomic::Ordering::Relaxed);
        }
        self.broadcast(|| Message::Watermark(wm))?;
        Ok(())
    }

    /// Fires the timers of step `i` (a window or process function) due at
    /// `until` in domain `d`, in rounds of bounded size whose results go
    /// downstream before the next round is taken.
    fn fire_timers(
        &mut self,
        i: usize,
        d: TimeDomain,
        until: i64,
        watermark: i64,
    ) -> Result<(), TaskError> {
        loop {
            let (out, more) = {
                let ChainRunner {
                    steps, guest, host, ..
                } = self;
                match &mut steps[i] {
                    Step::Window(w) => w.on_time(host, guest_of(guest)?, d, until)?,
                    Step::Process(p) => {
                        let cx = ProcessContext {
                            current_watermark: watermark,
                            processing_time: now_ms(),
                        };
                        let d = match d {
                            TimeDomain::EventTime => weir_core::TimeDomain::EventTime,
                            TimeDomain::ProcessingTime => weir_core::TimeDomain::ProcessingTime,
                        };
                        p.on_time(host, guest_of(guest)?, d, until, cx)?
                    }
                    _ => return Ok(()),
                }
            };
            self.emit_step_output(i, out)?;
            if !more {
                return Ok(());
            }
        }
    }

    /// Sends what step `i` emitted on: side outputs to their edges, the
    /// main output through the rest of the chain.
    fn emit_step_output(&mut self, i: usize, out: GuestOutput) -> Result<(), TaskError> {
        let op = self.steps[i].last_op();
        self.metrics.operators[op as usize].add_out(u64::from(out.records));
        if !out.side.is_empty() {
            self.route_side(op, out.side)?;
        }
        if !out.main.is_empty() {
            self.run_from(i + 1, Batch::new(out.main, out.records))?;
        }
        Ok(())
    }

    /// Every input of the task is idle: say so downstream, unless a
    /// generator of this chain speaks for it.
    pub fn on_idle(&mut self) -> Result<(), TaskError> {
        if self.steps.iter().any(|s| matches!(s, Step::Watermarks(_))) {
            return Ok(());
        }
        self.broadcast(|| Message::Idle)?;
        Ok(())
    }

    /// Looks at processing-time timers and idle generators if it is time.
    pub fn maybe_tick(&mut self) -> Result<(), TaskError> {
        if self.last_tick.elapsed() >= TICK {
            self.tick()?;
        }
        Ok(())
    }

    /// Fires due processing-time timers; lets generators emit (idleness,
    /// watermarks held back by their interval).
    pub fn tick(&mut self) -> Result<(), TaskError> {
        self.last_tick = Instant::now();
        if let Some(g) = &self.guest {
            self.metrics
                .guest_memory_peak
                .fetch_max(g.memory_bytes(), std::sync::atomic::Ordering::Relaxed);
        }
        let now = now_ms();
        for i in 0..self.steps.len() {
            self.fire_timers(i, TimeDomain::ProcessingTime, now, self.watermark)?;
            self.generate(i)?;
        }
        Ok(())
    }

    /// Lets the generator of step `i` (if it is one) emit what it has.
    fn generate(&mut self, i: usize) -> Result<(), TaskError> {
        if self.batch_mode {
            return Ok(());
        }
        let emit = match &mut self.steps[i] {
            Step::Watermarks(w) => {
                let now = Instant::now();
                if w.last.is_some_and(|l| now.duration_since(l) < w.interval) {
                    return Ok(());
                }
                let e = w.generator.poll(now);
                if e.is_some() {
                    w.last = Some(now);
                }
                e
            }
            _ => None,
        };
        match emit {
            Some(Emit::Watermark(wm)) => self.advance(i + 1, wm),
            Some(Emit::Idle) => {
                // Nothing downstream in this chain keeps time.
                self.broadcast(|| Message::Idle)?;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Runs a batch through the whole chain.
    pub fn process(&mut self, batch: Batch) -> Result<(), TaskError> {
        self.run_from(0, batch)
    }

    /// Runs a batch through the steps from `start` on.
    fn run_from(&mut self, start: usize, mut batch: Batch) -> Result<(), TaskError> {
        let mut generators = Vec::new();
        for i in start..self.steps.len() {
            if batch.is_empty() {
                break;
            }
            if let Step::Watermarks(w) = &mut self.steps[i] {
                w.generator.observe(self.current_split, &batch.data)?;
                generators.push(i);
                continue;
            }
            let t = Instant::now();
            let first = self.steps[i].first_op();
            let last = self.steps[i].last_op();
            self.metrics.operators[first as usize].add_in(u64::from(batch.records));
            let out = self.run_step(i, &batch)?;
            self.metrics.operators[last as usize].add_busy(t.elapsed());
            let Some(out) = out else {
                batch = Batch::default();
                break;
            };
            self.metrics.operators[last as usize].add_out(u64::from(out.records));
            if !out.side.is_empty() {
                self.route_side(last, out.side)?;
            }
            batch = Batch::new(out.main, out.records);
        }
        if !batch.is_empty() {
            let tail = self.steps.last().map(Step::last_op);
            if let Some(op) = tail {
                self.emit(op, 0, batch)?;
            }
        }
        // Watermarks follow the records they were generated from.
        for i in generators {
            self.generate(i)?;
        }
        Ok(())
    }

    fn run_step(&mut self, i: usize, batch: &Batch) -> Result<Option<GuestOutput>, TaskError> {
        let ChainRunner {
            steps,
            guest,
            host,
            watermark,
            metrics,
            gate,
            ..
        } = self;
        let watermark = *watermark;
        match &mut steps[i] {
            Step::Stages { ops } => {
                host.current_op = ops[0];
                let g = guest
                    .as_mut()
                    .ok_or_else(|| Failure::internal("no guest"))?;
                Ok(Some(g.run_stages(host, ops, &batch.data)?))
            }
            Step::Aggregate(a) => {
                host.current_op = a.op;
                let g = guest
                    .as_mut()
                    .ok_or_else(|| Failure::internal("no guest"))?;
                a.slots.for_batch(&batch.data, &mut a.scratch)?;
                let out = g.aggregate(host, a.op, &batch.data, &a.scratch, a.emit)?;
                if a.slots.len() > a.capacity {
                    g.flush(host, a.op, true)?;
                    a.slots.clear();
                }
                Ok(Some(out))
            }
            Step::Window(w) => {
                let g = guest
                    .as_mut()
                    .ok_or_else(|| Failure::internal("no guest"))?;
                let out = w.process(host, g.as_mut(), &batch.data, watermark, now_ms())?;
                if out.dropped > 0 {
                    metrics.operators[w.op as usize]
                        .late_records_dropped
                        .fetch_add(out.dropped, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(Some(out.out))
            }
            Step::Process(p) => {
                let g = guest
                    .as_mut()
                    .ok_or_else(|| Failure::internal("no guest"))?;
                let cx = ProcessContext {
                    current_watermark: watermark,
                    processing_time: now_ms(),
                };
                Ok(Some(p.process(host, g.as_mut(), &batch.data, cx)?))
            }
            Step::Watermarks(_) => Err(Failure::internal("watermark steps pass batches on").into()),
            Step::Sink { writer, .. } => {
                if gate.as_ref().is_some_and(|g| !g()) {
                    return Err(Failure::external(
                        "not writing to the sink: this task manager no longer hears from its \
                         coordinator, which restarts the job elsewhere",
                    )
                    .into());
                }
                writer.write(&batch.data)?;
                Ok(None)
            }
        }
    }

    /// Sends a batch to the output edges of (op, port).
    fn emit(&mut self, op: u32, port: u32, batch: Batch) -> Result<(), TaskError> {
        let targets: Vec<usize> = self
            .outputs
            .iter()
            .enumerate()
            .filter(|(_, o)| o.from_op == op && o.port == port)
            .map(|(i, _)| i)
            .collect();
        let Some((&last, rest)) = targets.split_last() else {
            return Ok(());
        };
        for &i in rest {
            self.outputs[i].emit(clone_batch(&batch))?;
        }
        self.outputs[last].emit(batch)?;
        self.flush_if_due()?;
        Ok(())
    }

    /// Splits side output records by port; applies the decode policy to
    /// records that failed to decode.
    fn route_side(&mut self, op: u32, side: Vec<u8>) -> Result<(), TaskError> {
        let mut by_port: Vec<(u32, Writer)> = Vec::new();
        for rec in Reader::new(&side) {
            let rec = rec.map_err(|e| Failure::user(format!("malformed side output: {e}")))?;
            if rec.port == DECODE_FAILURE_PORT {
                let why = String::from_utf8_lossy(rec.namespace.unwrap_or_default());
                match &mut self.decode_policy {
                    DecodePolicy::Fail => {
                        return Err(Failure::user(format!(
                            "{} produced a record the job cannot decode: {why}. Set the \
                             source option 'decode-errors' to 'skip' to skip such records, or \
                             (Kafka) to 'dead-letter' to send them to 'dead-letter.topic'",
                            self.source_name
                        ))
                        .into());
                    }
                    DecodePolicy::Skip => {
                        self.metrics.operators[op as usize]
                            .decode_failures
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        continue;
                    }
                    DecodePolicy::DeadLetter(dlq) => {
                        dlq.send(rec.value, &why)?;
                        self.metrics.operators[op as usize]
                            .decode_failures
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        continue;
                    }
                }
            }
            let w = match by_port.iter_mut().find(|(p, _)| *p == rec.port) {
                Some((_, w)) => w,
                None => {
                    by_port.push((rec.port, Writer::new()));
                    &mut by_port.last_mut().expect("pushed").1
                }
            };
            w.push(&Record { port: 0, ..rec });
        }
        for (port, w) in by_port {
            let records = w.records() as u32;
            self.emit(op, port, Batch::new(w.into_bytes(), records))?;
        }
        Ok(())
    }

    /// Input ended: keyed aggregations in batch mode emit their results,
    /// sinks write out what they buffer.
    pub fn finish(&mut self) -> Result<(), TaskError> {
        for i in 0..self.steps.len() {
            match &mut self.steps[i] {
                Step::Stages { .. } => {}
                Step::Aggregate(a) => {
                    let (op, emit) = (a.op, a.emit);
                    self.flush_guest_state(op, false)?;
                    if !emit {
                        self.emit_final(i)?;
                    }
                }
                Step::Window(_) => {
                    // Processing-time windows still open fire now (event-time
                    // ones fired with the final watermark).
                    self.fire_timers(i, TimeDomain::ProcessingTime, i64::MAX, self.watermark)?;
                }
                Step::Process(_) | Step::Watermarks(_) => {}
                Step::Sink { writer, .. } => writer.finish()?,
            }
        }
        Ok(())
    }

    /// Writes the guest's cached keyed state of `op` back to the backend.
    pub fn flush_guest_state(&mut self, op: u32, forget: bool) -> Result<(), TaskError> {
        let ChainRunner { guest, host, .. } = self;
        host.current_op = op;
        let g = guest
            .as_mut()
            .ok_or_else(|| Failure::internal("no guest"))?;
        g.flush(host, op, forget)?;
        Ok(())
    }

    /// Emits the result of every key of aggregation step `i`.
    fn emit_final(&mut self, i: usize) -> Result<(), TaskError> {
        let Step::Aggregate(a) = &self.steps[i] else {
            return Err(
                Failure::internal("final results of a step that does not aggregate").into(),
            );
        };
        let (op, state) = (a.op, a.state);
        let mut keys: Vec<Vec<u8>> = Vec::new();
        {
            let backend = self
                .host
                .backend
                .as_mut()
                .ok_or_else(|| Failure::internal("aggregation without keyed state"))?;
            backend
                .for_each(state, |k, _, _| {
                    keys.push(k.to_vec());
                    Ok(())
                })
                .map_err(state_failure)?;
        }
        for chunk in keys.chunks(FINAL_KEYS_PER_CALL) {
            let mut w = Writer::new();
            for k in chunk {
                w.push(&Record::keyed(k, b""));
            }
            let out = {
                let ChainRunner {
                    guest, host, steps, ..
                } = self;
                let Step::Aggregate(a) = &mut steps[i] else {
                    unreachable!("checked above");
                };
                a.slots.for_batch(w.as_bytes(), &mut a.scratch)?;
                host.current_op = op;
                let g = guest
                    .as_mut()
                    .ok_or_else(|| Failure::internal("no guest"))?;
                g.fire(host, op, w.as_bytes(), &a.scratch, false)?
            };
            self.metrics.operators[op as usize].add_out(u64::from(out.records));
            self.run_from(i + 1, Batch::new(out.main, out.records))?;
        }
        Ok(())
    }

    /// Captures the chain's state for checkpoint `target` (the source's
    /// position is added by the source task). Synchronous and cheap: keyed
    /// state is a RocksDB checkpoint of hard links; uploads happen later.
    pub fn snapshot(
        &mut self,
        target: &SnapshotTarget,
        meta: &SnapshotMeta,
        reuse: Option<MemoryImage>,
    ) -> Result<LocalTaskSnapshot, TaskError> {
        if let DecodePolicy::DeadLetter(dlq) = &mut self.decode_policy {
            dlq.flush()?;
        }
        let mut operator_state = BTreeMap::new();
        let mut operator_files = BTreeMap::new();
        for i in 0..self.steps.len() {
            let op = self.steps[i].first_op();
            match &mut self.steps[i] {
                Step::Stages { .. } => {}
                Step::Aggregate(a) => {
                    let op = a.op;
                    self.flush_guest_state(op, false)?;
                }
                Step::Window(_) | Step::Process(_) => {
                    // A process function's cached values go too: its
                    // instance may be snapshotted with its memory, which
                    // must not restore values another subtask may own.
                    let forget = matches!(self.steps[i], Step::Process(_));
                    self.flush_guest_state(op, forget)?;
                    // Lateness after a restore is judged as before it.
                    operator_state.insert(
                        meta.uids[op as usize].clone(),
                        serde_json::json!({ "watermark": self.watermark }),
                    );
                }
                Step::Watermarks(w) => {
                    let state = serde_json::to_value(w.generator.state()).expect("serializable");
                    operator_state.insert(
                        meta.uids[w.op as usize].clone(),
                        serde_json::json!({ "watermarks": state }),
                    );
                }
                Step::Sink { writer, .. } => {
                    if let Some(state) = writer.snapshot(target.id)? {
                        operator_state.insert(meta.uids[op as usize].clone(), state);
                    }
                    let files = writer.snapshot_files();
                    if !files.is_empty() {
                        operator_files.insert(meta.uids[op as usize].clone(), files);
                    }
                }
            }
        }
        let keyed = match &mut self.host.backend {
            Some(b) => {
                let dir = meta.local_dir.join(format!("chk-{}", target.id));
                Some(b.snapshot(&dir).map_err(state_failure)?)
            }
            None => None,
        };
        let mut memory = None;
        let mut saved = None;
        if let Some(g) = self.guest.as_mut() {
            if meta.memory_snapshots
                && let Some(img) = g.memory_image(reuse)?
            {
                memory = Some((meta.module_hash.clone(), img));
            }
            if meta.has_state_hooks
                && let Some(bytes) = g.save(&mut self.host)?
            {
                saved = Some((meta.job_version.clone(), bytes));
            }
        }
        Ok(LocalTaskSnapshot {
            operators: meta.chain_uids.clone(),
            subtask: meta.subtask,
            parallelism: meta.parallelism,
            keyed,
            memory,
            saved,
            operator_state,
            operator_files,
            in_flight: Default::default(),
            outputs: self
                .outputs
                .iter()
                .map(|o| crate::execution::edge_name(&meta.uids, o.from_op, o.port, o.to_op))
                .collect(),
        })
    }

    /// Checkpoint `id` is complete: transactional sinks commit.
    pub fn commit(&mut self, id: CheckpointId) -> Result<(), TaskError> {
        for s in &mut self.steps {
            if let Step::Sink { writer, .. } = s {
                writer.commit(id)?;
            }
        }
        Ok(())
    }

    /// Restores sinks, watermark generators and keyed operators' watermarks
    /// from the state their operators checkpointed.
    pub fn restore_steps(
        &mut self,
        uids: &[String],
        states: &BTreeMap<String, Vec<weir_core::SubtaskState>>,
        files: &BTreeMap<String, weir_connectors::SinkFiles>,
    ) -> Result<(), TaskError> {
        let none = weir_connectors::SinkFiles::new();
        let mut watermark: Option<i64> = None;
        for s in &mut self.steps {
            let op = s.state_op();
            if let Step::Sink { writer, .. } = s {
                // Sinks hear of every start, restored or not (transactional
                // ones clean up after earlier runs).
                let values = states
                    .get(&uids[op as usize])
                    .map_or(&[][..], Vec::as_slice);
                writer.restore(values, files.get(&uids[op as usize]).unwrap_or(&none))?;
                continue;
            }
            let Some(values) = states.get(&uids[op as usize]) else {
                continue;
            };
            match s {
                Step::Window(_) | Step::Process(_) => {
                    // The smallest of the old subtasks' watermarks.
                    for v in values {
                        if let Some(w) =
                            v.value.get("watermark").and_then(serde_json::Value::as_i64)
                        {
                            watermark = Some(watermark.map_or(w, |m| m.min(w)));
                        }
                    }
                }
                Step::Watermarks(w) => {
                    let gens: Vec<GeneratorState> = values
                        .iter()
                        .filter_map(|v| v.value.get("watermarks"))
                        .map(|v| serde_json::from_value(v.clone()))
                        .collect::<Result<_, _>>()
                        .map_err(|e| Failure::internal(format!("watermark state: {e}")))?;
                    w.generator.restore(&gens);
                }
                _ => {}
            }
        }
        if let Some(w) = watermark {
            self.watermark = self.watermark.max(w);
        }
        Ok(())
    }

    /// How long the task may wait for input before time-driven work is due:
    /// buffered output, a processing-time timer, a watermark generator.
    /// Idle tasks wake rarely, so that many idle jobs cost little CPU.
    pub fn idle_wait(&self) -> Duration {
        let mut wait = Duration::from_millis(500);
        if self.outputs.iter().any(OutputEdge::has_buffered) {
            wait = wait.min(self.buffer_timeout);
        }
        if self.steps.iter().any(|s| matches!(s, Step::Watermarks(_))) {
            wait = wait.min(Duration::from_millis(50));
        }
        if let Some(next) = self.host.next_processing_timer() {
            let ms = next.saturating_sub(now_ms()).clamp(0, 500) as u64;
            wait = wait.min(Duration::from_millis(ms));
        }
        wait.max(Duration::from_millis(1))
    }

    /// Sends partially filled output buffers if the buffer timeout passed.
    pub fn flush_if_due(&mut self) -> Result<(), Disconnected> {
        if self.last_flush.elapsed() >= self.buffer_timeout {
            self.flush_outputs()?;
        }
        Ok(())
    }

    pub fn flush_outputs(&mut self) -> Result<(), Disconnected> {
        for o in &mut self.outputs {
            o.flush()?;
        }
        self.last_flush = Instant::now();
        Ok(())
    }

    /// Announces `barrier` on every output edge's priority lanes (see
    /// `OutputEdge::announce`); returns the records of partially filled
    /// buffers that follow it in the channels, by output edge.
    pub fn announce(
        &mut self,
        barrier: &Barrier,
        flush: bool,
    ) -> Result<Vec<(u32, Batch)>, Disconnected> {
        let mut unsent = Vec::new();
        for (i, o) in self.outputs.iter_mut().enumerate() {
            unsent.extend(
                o.announce(barrier, flush)?
                    .into_iter()
                    .map(|b| (i as u32, b)),
            );
        }
        if flush {
            self.last_flush = Instant::now();
        }
        Ok(unsent)
    }

    /// Whether every output channel has room for a message.
    pub fn outputs_ready(&self) -> bool {
        self.outputs.iter().all(OutputEdge::has_room)
    }

    /// Sends records a restored task had buffered but not sent.
    pub fn replay_output(&mut self, edge: u32, batch: Batch) -> Result<(), TaskError> {
        let out = self.outputs.get_mut(edge as usize).ok_or_else(|| {
            Failure::internal(format!(
                "in-flight records for output {edge}, which the task does not have"
            ))
        })?;
        out.emit(batch)?;
        Ok(())
    }

    /// Sends a control message on every output edge.
    pub fn broadcast(&mut self, make: impl Fn() -> Message) -> Result<(), Disconnected> {
        for o in &mut self.outputs {
            o.control(&make)?;
        }
        self.last_flush = Instant::now();
        Ok(())
    }
}

fn guest_of<'a>(
    g: &'a mut Option<Box<dyn Guest>>,
) -> Result<&'a mut (dyn Guest + 'static), Failure> {
    g.as_deref_mut()
        .ok_or_else(|| Failure::internal("no guest"))
}

/// Opens the writer of a sink operator.
pub(crate) type OpenSink<'a> =
    dyn FnMut(&OperatorNode) -> Result<Box<dyn SinkWriter>, Failure> + 'a;

/// Settings the steps of a chain are built with.
pub(crate) struct StepSettings {
    pub batch_mode: bool,
    pub cached_keys: usize,
    pub watermark_interval: Duration,
}

/// Builds the steps of a chain (after its source, if any).
pub(crate) fn build_steps(
    ops: &[&OperatorNode],
    host: &mut TaskHost,
    settings: &StepSettings,
    open_sink: &mut OpenSink<'_>,
) -> Result<Vec<Step>, Failure> {
    let (batch_mode, cached_keys) = (settings.batch_mode, settings.cached_keys);
    let generator = |op: &OperatorNode, carries: u32, spec: &weir_core::plan::WatermarkSpec| {
        Step::Watermarks(WatermarksStep {
            op: op.index,
            carries,
            generator: WatermarkGenerator::new(spec, 1, &op.name),
            interval: settings.watermark_interval,
            last: None,
        })
    };
    // A source's own watermarks are generated once its records have their
    // timestamps: after its timestamp assigner, or right away when they
    // come with the records.
    let mut source_watermarks: Option<(&OperatorNode, Option<u32>)> = None;
    let mut steps: Vec<Step> = Vec::new();
    for op in ops {
        match &op.kind {
            OperatorKind::Source(spec) => {
                if let Some(wm) = &spec.watermarks {
                    let after = match spec.timestamps {
                        TimestampSource::Guest => ops
                            .iter()
                            .find(|o| {
                                matches!(
                                    o.kind,
                                    OperatorKind::Stage(weir_core::plan::StageKind::Timestamps)
                                )
                            })
                            .map(|o| o.index),
                        TimestampSource::Connector | TimestampSource::None => None,
                    };
                    match after {
                        None => steps.push(generator(op, op.index, wm)),
                        Some(_) => source_watermarks = Some((op, after)),
                    }
                }
            }
            OperatorKind::Stage(_) => match steps.last_mut() {
                Some(Step::Stages { ops }) => ops.push(op.index),
                _ => steps.push(Step::Stages {
                    ops: vec![op.index],
                }),
            },
            OperatorKind::Aggregate => {
                let backend = host
                    .backend
                    .as_mut()
                    .ok_or_else(|| Failure::internal("aggregation without keyed state"))?;
                let state = backend
                    .register(op.uid.as_str(), "acc", StateKind::Value)
                    .map_err(state_failure)?;
                host.states.insert((op.index, 0), state);
                steps.push(Step::Aggregate(AggregateStep::new(
                    op.index,
                    !batch_mode,
                    state,
                    cached_keys,
                )));
            }
            OperatorKind::Sink(_) => steps.push(Step::Sink {
                op: op.index,
                writer: open_sink(op)?,
            }),
            OperatorKind::Window(spec) => steps.push(Step::Window(Box::new(WindowStep::new(
                op.index,
                op.uid.as_str(),
                &op.name,
                *spec,
                host,
                cached_keys,
            )?))),
            OperatorKind::Process => steps.push(Step::Process(ProcessStep::new(op, host)?)),
            OperatorKind::Watermarks(spec) => steps.push(generator(op, op.index, spec)),
        }
        if let Some((source, Some(after))) = source_watermarks
            && after == op.index
        {
            let OperatorKind::Source(spec) = &source.kind else {
                unreachable!("a source")
            };
            let wm = spec.watermarks.as_ref().expect("has watermarks");
            steps.push(generator(source, after, wm));
            source_watermarks = None;
        }
    }
    if let Some((source, _)) = source_watermarks {
        return Err(Failure::user(format!(
            "{}: its watermarks use the job's timestamp assigner, but the source's task \
             has none",
            source.name
        )));
    }
    Ok(steps)
}
