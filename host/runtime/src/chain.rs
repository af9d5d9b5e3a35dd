//! Running a chain of operators inside one task.
//!
//! Consecutive guest stages become one step (one guest call per batch);
//! keyed aggregations and sinks are steps of their own. A batch enters at
//! the head and flows through the steps; what the last operator emits goes
//! to the task's output edges, and side outputs go to the edges of their
//! operator and port.

use crate::channel::{Batch, Disconnected, EmitError, Message, OutputEdge, clone_batch};
use crate::metrics::JobMetrics;
use crate::services::{TaskHost, state_failure};
use crate::slots::SlotIndex;
use crate::snapshot::{LocalTaskSnapshot, SnapshotTarget};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_connectors::SinkWriter;
use weir_core::graph::OperatorNode;
use weir_core::guest::MemoryImage;
use weir_core::plan::{OperatorKind, StateKind};
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodePolicy {
    Fail,
    Skip,
}

pub(crate) enum Step {
    /// Fused guest stages.
    Stages { ops: Vec<u32> },
    /// A keyed aggregation.
    Aggregate(AggregateStep),
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
            Step::Sink { op, .. } => *op,
        }
    }

    fn last_op(&self) -> u32 {
        match self {
            Step::Stages { ops } => *ops.last().expect("non-empty"),
            Step::Aggregate(a) => a.op,
            Step::Sink { op, .. } => *op,
        }
    }
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
        }
    }

    /// Runs a batch through the whole chain.
    pub fn process(&mut self, batch: Batch) -> Result<(), TaskError> {
        self.run_from(0, batch)
    }

    /// Runs a batch through the steps from `start` on.
    fn run_from(&mut self, start: usize, mut batch: Batch) -> Result<(), TaskError> {
        for i in start..self.steps.len() {
            if batch.is_empty() {
                return Ok(());
            }
            let t = Instant::now();
            let first = self.steps[i].first_op();
            let last = self.steps[i].last_op();
            self.metrics.operators[first as usize].add_in(u64::from(batch.records));
            let out = self.run_step(i, &batch)?;
            self.metrics.operators[last as usize].add_busy(t.elapsed());
            let Some(out) = out else {
                return Ok(());
            };
            self.metrics.operators[last as usize].add_out(u64::from(out.records));
            if !out.side.is_empty() {
                self.route_side(last, out.side)?;
            }
            batch = Batch::new(out.main, out.records);
        }
        let tail = self.steps.last().map(Step::last_op);
        if let Some(op) = tail {
            self.emit(op, 0, batch)?;
        }
        Ok(())
    }

    fn run_step(&mut self, i: usize, batch: &Batch) -> Result<Option<GuestOutput>, TaskError> {
        let ChainRunner {
            steps, guest, host, ..
        } = self;
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
            Step::Sink { writer, .. } => {
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
                match self.decode_policy {
                    DecodePolicy::Fail => {
                        return Err(Failure::user(format!(
                            "{} produced a record the job cannot decode: {why}. Set the \
                             source option 'decode-errors' = 'skip' to skip such records",
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
                    self.flush_guest_state(op)?;
                    if !emit {
                        self.emit_final(i)?;
                    }
                }
                Step::Sink { writer, .. } => writer.finish()?,
            }
        }
        Ok(())
    }

    /// Writes the guest's cached keyed state of `op` back to the backend.
    pub fn flush_guest_state(&mut self, op: u32) -> Result<(), TaskError> {
        let ChainRunner { guest, host, .. } = self;
        host.current_op = op;
        let g = guest
            .as_mut()
            .ok_or_else(|| Failure::internal("no guest"))?;
        g.flush(host, op, false)?;
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
        let mut operator_state = BTreeMap::new();
        for i in 0..self.steps.len() {
            let op = self.steps[i].first_op();
            match &mut self.steps[i] {
                Step::Stages { .. } => {}
                Step::Aggregate(a) => {
                    let op = a.op;
                    self.flush_guest_state(op)?;
                }
                Step::Sink { writer, .. } => {
                    if let Some(state) = writer.snapshot(target.id)? {
                        operator_state.insert(meta.uids[op as usize].clone(), state);
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

    /// Restores sinks from the state their operators checkpointed.
    pub fn restore_sinks(
        &mut self,
        uids: &[String],
        states: &BTreeMap<String, Vec<serde_json::Value>>,
    ) -> Result<(), TaskError> {
        for s in &mut self.steps {
            if let Step::Sink { op, writer } = s
                && let Some(values) = states.get(&uids[*op as usize])
            {
                writer.restore(values)?;
            }
        }
        Ok(())
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

    /// Sends a control message on every output edge.
    pub fn broadcast(&mut self, make: impl Fn() -> Message) -> Result<(), Disconnected> {
        for o in &mut self.outputs {
            o.control(&make)?;
        }
        self.last_flush = Instant::now();
        Ok(())
    }
}

/// Opens the writer of a sink operator.
pub(crate) type OpenSink<'a> =
    dyn FnMut(&OperatorNode) -> Result<Box<dyn SinkWriter>, Failure> + 'a;

/// Builds the steps of a chain (after its source, if any).
pub(crate) fn build_steps(
    ops: &[&OperatorNode],
    host: &mut TaskHost,
    batch_mode: bool,
    cached_keys: usize,
    open_sink: &mut OpenSink<'_>,
) -> Result<Vec<Step>, Failure> {
    let mut steps: Vec<Step> = Vec::new();
    for op in ops {
        match &op.kind {
            OperatorKind::Source(_) => {}
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
            OperatorKind::Window(_) | OperatorKind::Process | OperatorKind::Watermarks(_) => {
                return Err(Failure::user(format!(
                    "operator '{}' needs windows and timers, which this runtime does not run yet",
                    op.name
                )));
            }
        }
    }
    Ok(steps)
}
