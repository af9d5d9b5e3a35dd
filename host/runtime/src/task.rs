//! One subtask of a chain: a thread that reads its source or its input
//! channels, runs the chain, writes its outputs, and takes part in
//! checkpoints.

use crate::chain::{ChainRunner, DecodePolicy, SnapshotMeta, StepSettings, TaskError, build_steps};
use crate::channel::{Barrier, Batch, Message, OutputEdge};
use crate::execution::Chain;
use crate::job::JobContext;
use crate::services::{TaskHost, state_failure};
use crate::snapshot::{Prefetched, Uploader};
use crate::swap;
use crate::watermark::MIN_WATERMARK;
use crossbeam_channel::{Receiver, Select, Sender};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use weir_checkpoint::TaskSnapshot;
use weir_checkpoint::protocol::{AlignAction, AlignmentMode, BarrierAligner, TaskRestore};
use weir_connectors::{Poll, SinkContext, SourceContext, SourceReader};
use weir_core::config::CheckpointingMode;
use weir_core::plan::OperatorKind;
use weir_core::{CheckpointId, Failure, KeyGroupRange};
use weir_frame::Writer;
use weir_state::{KeyedStateBackend, RestoreSource};

/// Identifies a subtask of a chain.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct TaskId {
    pub chain: usize,
    pub subtask: u32,
}

/// Commands from the job to a task.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum TaskControl {
    Cancel,
    /// Sources: take a checkpoint and inject its barrier.
    Trigger(Barrier),
    /// A checkpoint is complete: commit what it covers.
    Complete(CheckpointId),
    /// Sources whose data ended: close the stream.
    Finish,
}

/// What a task reports to its job.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum TaskEvent {
    /// The task restored its state and started processing.
    Running(TaskId),
    /// The task processed all its data (it stays for the final checkpoint).
    DataEnded(TaskId),
    Finished(TaskId),
    Failed(TaskId, Failure),
    /// Stopped because the job is stopping.
    Stopped(TaskId),
    /// The task's state for a checkpoint is uploaded.
    Ack(TaskId, CheckpointId, Box<TaskSnapshot>),
    /// The task could not take or upload its part of a checkpoint.
    Decline(TaskId, CheckpointId, Failure),
}

impl TaskEvent {
    /// The task that reports it.
    pub fn task(&self) -> TaskId {
        match self {
            TaskEvent::Running(t)
            | TaskEvent::DataEnded(t)
            | TaskEvent::Finished(t)
            | TaskEvent::Failed(t, _)
            | TaskEvent::Stopped(t)
            | TaskEvent::Ack(t, _, _)
            | TaskEvent::Decline(t, _, _) => *t,
        }
    }
}

/// State a task starts from.
pub(crate) struct TaskStart {
    pub restore: TaskRestore,
    pub files: Arc<Prefetched>,
    /// The restored checkpoint's directory, when the job owns it (its
    /// files may be referred to by the next checkpoints).
    pub reusable_from: Option<String>,
    /// The restored snapshot's checkpoint id.
    pub checkpoint: CheckpointId,
}

/// Everything a task needs to start.
pub(crate) struct TaskSetup {
    pub id: TaskId,
    pub index: usize,
    pub chain: Chain,
    pub inputs: Vec<Receiver<Message>>,
    pub outputs: Vec<OutputEdge>,
    pub control: Receiver<TaskControl>,
    pub events: Sender<TaskEvent>,
    pub ctx: Arc<JobContext>,
    pub start: Option<TaskStart>,
}

/// Runs a task to completion and reports how it ended.
pub(crate) fn run(setup: TaskSetup) {
    let id = setup.id;
    let name = task_name(&setup.chain, id);
    let events = setup.events.clone();
    let event = match run_task(setup) {
        Ok(()) => TaskEvent::Finished(id),
        Err(TaskError::Disconnected) => TaskEvent::Stopped(id),
        Err(TaskError::Failed(f)) => TaskEvent::Failed(id, f.context(format!("task {name}"))),
    };
    let _ = events.send(event);
}

fn task_name(chain: &Chain, id: TaskId) -> String {
    format!("{} ({}/{})", chain.name, id.subtask + 1, chain.parallelism)
}

/// A task's part in checkpoints (and in module swaps, which ride on them).
struct Checkpointing {
    id: TaskId,
    meta: SnapshotMeta,
    uploader: Uploader,
    events: Sender<TaskEvent>,
    enabled: bool,
    /// The task's name and operators, and how its steps are built: what a
    /// module swap builds them again with.
    name: String,
    chain_ops: Vec<u32>,
    settings: StepSettings,
    /// Where snapshots go and the modules swaps bring, by checkpoint.
    ctx: Arc<JobContext>,
}

impl Checkpointing {
    /// Snapshots the chain (and source position), forwards the barrier,
    /// and uploads in the background; then swaps the module if the
    /// barrier brings one.
    fn checkpoint(
        &mut self,
        runner: &mut ChainRunner,
        source: Option<(&dyn SourceReader, &str)>,
        barrier: Barrier,
    ) -> Result<(), TaskError> {
        let swap = match barrier.swap {
            false => None,
            true => Some(self.ctx.swap_at(barrier.id).ok_or_else(|| {
                Failure::internal(format!(
                    "the barrier of checkpoint {} brings a module the job does not know",
                    barrier.id
                ))
            })?),
        };
        let target = match self.ctx.barrier_target(&barrier) {
            Ok(t) => Arc::new(t),
            // The other tasks change modules at this barrier: so must this
            // one, or the job fails and restarts on its previous module.
            Err(f) if swap.is_some() => {
                return Err(TaskError::Failed(
                    f.context("the snapshot of a module swap"),
                ));
            }
            Err(f) => {
                // This task cannot take part: the checkpoint is declined,
                // and the barrier goes on so that the tasks downstream align.
                runner.broadcast(|| Message::Barrier(barrier.clone()))?;
                let _ = self.events.send(TaskEvent::Decline(self.id, barrier.id, f));
                return Ok(());
            }
        };
        let reuse = self.uploader.spare_image();
        let snapshot = runner.snapshot(&target, &self.meta, reuse).map(|mut s| {
            if let Some((reader, uid)) = source
                && let Some(pos) = reader.position()
            {
                // Beside the source's watermark generator, if it has one.
                let entry = s
                    .operator_state
                    .entry(uid.to_owned())
                    .or_insert_with(|| serde_json::json!({}));
                entry["position"] = pos;
            }
            s
        });
        // A failure while taking the snapshot fails the task, as in Flink:
        // sinks hand their buffers to the snapshot as they take it, so
        // carrying on would lose what they held. (A failed upload only
        // declines the checkpoint: the state is still here.)
        let snapshot = snapshot.map_err(|e| match e {
            TaskError::Failed(f) => {
                TaskError::Failed(f.context(format!("taking checkpoint {}", target.id)))
            }
            e => e,
        })?;
        runner.broadcast(|| Message::Barrier(barrier.clone()))?;
        let saved = swap.as_ref().and_then(|_| snapshot.saved.clone());
        let uploader = self.uploader.clone();
        let events = self.events.clone();
        let id = self.id;
        weir_checkpoint::storage::io_runtime().spawn(async move {
            let event = match uploader.upload(&target, snapshot).await {
                Ok(s) => TaskEvent::Ack(id, target.id, Box::new(s)),
                Err(f) => TaskEvent::Decline(id, target.id, f),
            };
            let _ = events.send(event);
        });
        if let Some(swap) = &swap {
            swap::swap_chain(
                runner,
                swap,
                &self.chain_ops,
                &self.name,
                &self.settings,
                &mut self.meta,
                saved,
            )
            .map_err(|e| match e {
                TaskError::Failed(f) => TaskError::Failed(f.context("changing to the new module")),
                e => e,
            })?;
        }
        Ok(())
    }
}

fn run_task(setup: TaskSetup) -> Result<(), TaskError> {
    let TaskSetup {
        id,
        index,
        chain,
        inputs,
        outputs,
        control,
        events,
        ctx,
        start,
    } = setup;
    let name = task_name(&chain, id);
    let factory = ctx.factory();
    let graph = factory.graph();
    let ops: Vec<_> = chain
        .ops
        .iter()
        .map(|&i| &graph.operators[i as usize])
        .collect();
    let needs_guest = swap::needs_guest(&ops);
    let keyed = ops.iter().any(|o| o.is_keyed());
    let task_dir = ctx
        .work_dir
        .join(format!("task-{}-{}", id.chain, id.subtask));
    let restore = start.as_ref().map(|s| &s.restore);

    let keyed_range =
        KeyGroupRange::for_subtask(graph.max_parallelism, chain.parallelism, id.subtask);
    let backend = if keyed {
        let range = keyed_range;
        let dir = task_dir.join("db");
        Some(
            match start.as_ref().filter(|s| !s.restore.keyed.is_empty()) {
                None => KeyedStateBackend::open(&dir, graph.max_parallelism, range, 100_000),
                Some(s) => {
                    let mut sources = Vec::new();
                    for (i, h) in s.restore.keyed.iter().enumerate() {
                        let d = task_dir.join(format!("restore-{i}"));
                        s.files.keyed_dir(h, &d)?;
                        sources.push(RestoreSource {
                            dir: d,
                            key_groups: h.key_groups,
                            states: h.states.clone(),
                        });
                    }
                    let keep = &s.restore.keep_states;
                    KeyedStateBackend::restore(
                        &dir,
                        graph.max_parallelism,
                        range,
                        100_000,
                        &sources,
                        |uid, n| keep.iter().any(|(u, k)| u == uid && k == n),
                    )
                }
            }
            .map_err(state_failure)?,
        )
    } else {
        None
    };
    let mut host = TaskHost::new(name.clone(), backend);
    let guest = if needs_guest {
        let image = match restore.and_then(|r| r.memory.as_ref()) {
            Some(m) => Some(start.as_ref().expect("restoring").files.memory(m)?),
            None => None,
        };
        let mut g = factory.instantiate(&name, image.as_ref())?;
        if let (Some(r), Some(s)) = (restore, start.as_ref()) {
            for saved in &r.saved {
                let bytes = s.files.bytes(&saved.file)?;
                g.restore(&mut host, &saved.version, &bytes)?;
            }
        }
        Some(g)
    } else {
        None
    };
    let checkpointing = ctx.config.checkpoint_interval.is_some();
    let mut open_sink = |op: &weir_core::OperatorNode| {
        let c = ctx.config.connector_for(
            op.uid.as_str(),
            op.connector().expect("sinks have connectors"),
        );
        let c = &c;
        let sink_ctx = SinkContext {
            subtask: id.subtask,
            parallelism: chain.parallelism,
            checkpointing,
            uid: op.uid.0.clone(),
            work_dir: task_dir.join(format!("sink-{}", op.index)),
            job_id: ctx.job_id,
            lineage: ctx.lineage.clone(),
            owner: ctx.config.owner.clone(),
            fsync: ctx.config.fsync,
            max_concurrent_checkpoints: ctx.config.max_concurrent_checkpoints,
            restored: start.as_ref().map(|s| s.checkpoint),
        };
        ctx.connectors
            .open_sink(c, &sink_ctx)
            .map_err(|f| f.context(&op.name))
    };
    let settings = StepSettings {
        batch_mode: ctx.batch_mode,
        cached_keys: ctx.config.cached_keys,
        watermark_interval: ctx.config.watermark_interval,
    };
    let steps = build_steps(&ops, &mut host, &settings, &mut open_sink)?;

    let head = ops[0];
    let (source, decode_policy) = match &head.kind {
        OperatorKind::Source(spec) => {
            let (connector, policy) = source_connector(
                &ctx.connectors,
                &ctx.config.connector_for(head.uid.as_str(), &spec.connector),
                &ctx.config.owner,
            )?;
            let sctx = SourceContext {
                subtask: id.subtask,
                parallelism: chain.parallelism,
                batch_size: ctx.config.batch_size,
                uid: head.uid.0.clone(),
                job_id: ctx.job_id,
                owner: ctx.config.owner.clone(),
            };
            let mut reader = ctx
                .connectors
                .open_source(&connector, &sctx)
                .map_err(|f| f.context(&head.name))?;
            if let Some(states) = restore.and_then(|r| r.operator_state.get(head.uid.as_str())) {
                let positions: Vec<serde_json::Value> = states
                    .iter()
                    .filter_map(|s| s.value.get("position").cloned())
                    .collect();
                reader
                    .restore(&positions)
                    .map_err(|f| f.context(&head.name))?;
            }
            (Some(reader), policy)
        }
        _ => (None, DecodePolicy::Fail),
    };
    let mut runner = ChainRunner::new(
        steps,
        guest,
        host,
        outputs,
        ctx.metrics.clone(),
        decode_policy,
        head.name.clone(),
        ctx.config.buffer_timeout,
    );
    runner.batch_mode = ctx.batch_mode;
    runner.gate = ctx.commit_gate();
    if let Some(reader) = &source {
        runner.set_source_splits(reader.splits());
    }
    let uids: Vec<String> = graph.operators.iter().map(|o| o.uid.0.clone()).collect();
    match (restore, start.as_ref()) {
        (Some(r), Some(s)) => {
            let mut files = BTreeMap::new();
            for (uid, refs) in &r.operator_files {
                files.insert(uid.clone(), s.files.named(refs)?);
            }
            runner.restore_steps(&uids, &r.operator_state, &files)?;
        }
        _ => runner.restore_steps(&uids, &BTreeMap::new(), &BTreeMap::new())?,
    }
    let mut cp = Checkpointing {
        id,
        meta: SnapshotMeta {
            chain_uids: chain
                .ops
                .iter()
                .map(|&o| uids[o as usize].clone())
                .collect(),
            uids,
            subtask: id.subtask,
            parallelism: chain.parallelism,
            local_dir: task_dir.join("snapshots"),
            memory_snapshots: ctx.config.memory_snapshots,
            has_state_hooks: graph.has_state_hooks,
            module_hash: factory.instance_hash(),
            job_version: graph.version.clone(),
        },
        uploader: match start.as_ref().and_then(|s| reusable_keyed(s, keyed_range)) {
            Some(files) => Uploader::with_files(index, files),
            None => Uploader::new(index),
        },
        events,
        enabled: checkpointing,
        name,
        chain_ops: chain.ops.clone(),
        settings,
        ctx: ctx.clone(),
    };
    let _ = cp.events.send(TaskEvent::Running(id));
    match source {
        Some(reader) => run_source(&mut runner, reader, &control, head, &ctx, &mut cp),
        None => run_inputs(&mut runner, &inputs, &control, &ctx, &mut cp),
    }
}

/// The files of the restored keyed state the task's backend uses as they
/// are (one handle covering exactly its key groups, restored without
/// rewriting), where the job owns them: by name, where they are in the
/// checkpoint storage, their size and checksum.
fn reusable_keyed(
    start: &TaskStart,
    range: KeyGroupRange,
) -> Option<Vec<(String, crate::snapshot::UploadedFile)>> {
    let dir = start.reusable_from.as_ref()?;
    let [handle] = start.restore.keyed.as_slice() else {
        return None;
    };
    if handle.key_groups != range {
        return None;
    }
    Some(
        handle
            .files
            .iter()
            .filter(|f| f.name.ends_with(".sst") || f.name.ends_with(".blob"))
            .filter_map(|f| {
                let path = weir_checkpoint::paths::join(dir, &f.path)?;
                Some((f.name.clone(), (path, f.size, f.crc32c)))
            })
            .collect(),
    )
}

/// Splits the runtime's own options off a source connector.
fn source_connector(
    connectors: &weir_connectors::Connectors,
    c: &weir_core::plan::Connector,
    owner: &weir_core::config::JobOwner,
) -> Result<(weir_core::plan::Connector, DecodePolicy), Failure> {
    let mut policy = DecodePolicy::Fail;
    let mut options = Vec::new();
    for (k, v) in &c.options {
        if k == "decode-errors" {
            policy = match v.as_str() {
                "fail" => DecodePolicy::Fail,
                "skip" => DecodePolicy::Skip,
                "dead-letter" => DecodePolicy::DeadLetter(connectors.dead_letter(c, owner)?),
                other => {
                    return Err(Failure::user(format!(
                        "source option 'decode-errors' is '{other}'; use 'fail', 'skip' or \
                         'dead-letter'"
                    )));
                }
            };
        } else if !k.starts_with("dead-letter.") {
            options.push((k.clone(), v.clone()));
        }
    }
    Ok((
        weir_core::plan::Connector {
            kind: c.kind.clone(),
            options,
        },
        policy,
    ))
}

/// Handles a command; true when the task must stop.
fn on_control(
    ctl: TaskControl,
    runner: &mut ChainRunner,
    source: Option<(&mut dyn SourceReader, &str)>,
    cp: &mut Checkpointing,
) -> Result<bool, TaskError> {
    match ctl {
        TaskControl::Cancel => return Err(TaskError::Disconnected),
        TaskControl::Trigger(b) => {
            if source.is_some()
                && let weir_checkpoint::protocol::SnapshotKind::Savepoint { drain: true, .. } =
                    &b.kind
            {
                runner.end_of_input_watermark()?;
            }
            let source = source
                .as_ref()
                .map(|(r, u)| (&**r as &dyn SourceReader, *u));
            cp.checkpoint(runner, source, b)?
        }
        TaskControl::Complete(n) => {
            if !cp.ctx.may_commit() {
                return Err(TaskError::Failed(Failure::external(format!(
                    "not committing checkpoint {n}: this task manager no longer hears from its \
                     coordinator, which restarts the job elsewhere"
                ))));
            }
            runner.commit(n)?;
            if let Some((reader, _)) = source {
                reader.checkpoint_complete(n)?;
            }
        }
        TaskControl::Finish => return Ok(true),
    }
    Ok(false)
}

fn run_source(
    runner: &mut ChainRunner,
    mut reader: Box<dyn SourceReader>,
    control: &Receiver<TaskControl>,
    head: &weir_core::OperatorNode,
    ctx: &JobContext,
    cp: &mut Checkpointing,
) -> Result<(), TaskError> {
    let mut w = Writer::with_capacity(64 * 1024);
    let metrics = ctx.metrics.operators[head.index as usize].clone();
    let uid = head.uid.as_str();
    let mut data_ended = false;
    loop {
        if data_ended {
            // Wait for the final checkpoint and the order to finish.
            match control.recv() {
                Ok(ctl) => {
                    if on_control(ctl, runner, Some((reader.as_mut(), uid)), cp)? {
                        runner.broadcast(|| Message::EndOfPartition)?;
                        return Ok(());
                    }
                }
                Err(_) => return Err(TaskError::Disconnected),
            }
            continue;
        }
        while let Ok(ctl) = control.try_recv() {
            if on_control(ctl, runner, Some((reader.as_mut(), uid)), cp)? {
                return Err(
                    Failure::internal("a source was told to finish before its data ended").into(),
                );
            }
        }
        match reader.poll(&mut w)? {
            Poll::Ready => {
                let records = w.records() as u32;
                metrics.add_out(u64::from(records));
                runner.current_split = reader.current_split();
                runner.process(Batch::new(w.take(), records))?;
                runner.maybe_tick()?;
            }
            Poll::Idle => {
                runner.tick()?;
                runner.flush_outputs()?;
            }
            Poll::Finished => {
                // The final watermark fires every event-time window.
                runner.end_of_input_watermark()?;
                runner.finish()?;
                runner.broadcast(|| Message::EndOfData)?;
                data_ended = true;
                let _ = cp.events.send(TaskEvent::DataEnded(cp.id));
                if !cp.enabled {
                    runner.broadcast(|| Message::EndOfPartition)?;
                    return Ok(());
                }
            }
        }
    }
}

/// Input channels of a task: which are held for alignment or ended, and
/// each one's watermark.
struct Inputs<'a> {
    channels: &'a [Receiver<Message>],
    held: Vec<bool>,
    ended: Vec<bool>,
    data_ended: Vec<bool>,
    watermarks: Vec<i64>,
    idle: Vec<bool>,
    /// Whether the task told downstream it is idle.
    idle_said: bool,
}

impl Inputs<'_> {
    fn open(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.channels.len()).filter(|&i| !self.held[i] && !self.ended[i])
    }

    /// The smallest watermark of the inputs that are neither idle nor
    /// ended; None when there are none.
    fn combined(&self) -> Option<i64> {
        (0..self.channels.len())
            .filter(|&i| !self.idle[i] && !self.ended[i])
            .map(|i| self.watermarks[i])
            .min()
    }

    /// Passes the combined watermark on when it advanced, and idleness
    /// when every input is idle.
    fn update(&mut self, runner: &mut ChainRunner) -> Result<(), TaskError> {
        match self.combined() {
            Some(wm) => {
                self.idle_said = false;
                if wm > runner.watermark && wm > MIN_WATERMARK {
                    runner.on_watermark(wm)?;
                }
            }
            None => {
                let any_open = (0..self.channels.len()).any(|i| !self.ended[i]);
                if any_open && !self.idle_said {
                    self.idle_said = true;
                    runner.on_idle()?;
                }
            }
        }
        Ok(())
    }
}

fn run_inputs(
    runner: &mut ChainRunner,
    channels: &[Receiver<Message>],
    control: &Receiver<TaskControl>,
    ctx: &JobContext,
    cp: &mut Checkpointing,
) -> Result<(), TaskError> {
    let n = channels.len();
    let mode = match ctx.config.checkpointing_mode {
        CheckpointingMode::ExactlyOnce => AlignmentMode::ExactlyOnce,
        CheckpointingMode::AtLeastOnce => AlignmentMode::AtLeastOnce,
    };
    let mut aligner = BarrierAligner::new(n, mode);
    let mut pending_barrier: Option<Barrier> = None;
    let mut inputs = Inputs {
        channels,
        held: vec![false; n],
        ended: vec![false; n],
        data_ended: vec![false; n],
        watermarks: vec![MIN_WATERMARK; n],
        idle: vec![false; n],
        idle_said: false,
    };
    let mut data_ended = false;
    loop {
        // (Re)built each round: cheap next to processing a batch, and it
        // leaves out held and ended channels.
        let mut sel = Select::new();
        let open: Vec<usize> = inputs.open().collect();
        for &i in &open {
            sel.recv(&channels[i]);
        }
        let control_index = sel.recv(control);
        let op = match sel.select_timeout(runner.idle_wait()) {
            Ok(op) => op,
            Err(_) => {
                runner.tick()?;
                runner.flush_if_due()?;
                continue;
            }
        };
        if op.index() == control_index {
            let ctl = op.recv(control).map_err(|_| TaskError::Disconnected)?;
            on_control(ctl, runner, None, cp)?;
            continue;
        }
        let i = open[op.index()];
        let msg = op.recv(&channels[i]).map_err(|_| TaskError::Disconnected)?;
        let action = match msg {
            Message::Batch(b) => {
                inputs.idle[i] = false;
                runner.process(b)?;
                runner.maybe_tick()?;
                AlignAction::Continue
            }
            Message::Barrier(b) => {
                // The completion of the checkpoint before this barrier was
                // sent before it: take it (and the commits it brings)
                // first, or a sink would snapshot while its previous
                // transaction still holds the locks its new rows need.
                while let Ok(ctl) = control.try_recv() {
                    on_control(ctl, runner, None, cp)?;
                }
                let id = b.id;
                if pending_barrier.as_ref().is_none_or(|p| p.id < id) {
                    pending_barrier = Some(b);
                }
                aligner.on_barrier(i, id)
            }
            Message::Watermark(wm) => {
                inputs.idle[i] = false;
                inputs.watermarks[i] = inputs.watermarks[i].max(wm);
                inputs.update(runner)?;
                AlignAction::Continue
            }
            Message::Idle => {
                inputs.idle[i] = true;
                inputs.update(runner)?;
                AlignAction::Continue
            }
            Message::EndOfData => {
                inputs.data_ended[i] = true;
                if !data_ended && inputs.data_ended.iter().all(|&e| e) {
                    data_ended = true;
                    runner.finish()?;
                    runner.broadcast(|| Message::EndOfData)?;
                    let _ = cp.events.send(TaskEvent::DataEnded(cp.id));
                }
                AlignAction::Continue
            }
            Message::EndOfPartition => {
                inputs.ended[i] = true;
                inputs.update(runner)?;
                let action = aligner.on_end(i);
                if inputs.ended.iter().all(|&e| e) {
                    apply(action, runner, cp, &mut inputs, &mut pending_barrier)?;
                    // Commit notifications sent before the end must not be lost.
                    while let Ok(ctl) = control.recv_timeout(Duration::from_millis(0)) {
                        on_control(ctl, runner, None, cp)?;
                    }
                    if !data_ended {
                        runner.finish()?;
                        runner.broadcast(|| Message::EndOfData)?;
                    }
                    runner.broadcast(|| Message::EndOfPartition)?;
                    return Ok(());
                }
                action
            }
        };
        apply(action, runner, cp, &mut inputs, &mut pending_barrier)?;
    }
}

fn apply(
    action: AlignAction,
    runner: &mut ChainRunner,
    cp: &mut Checkpointing,
    inputs: &mut Inputs<'_>,
    pending: &mut Option<Barrier>,
) -> Result<(), TaskError> {
    match action {
        AlignAction::Continue => {}
        AlignAction::Hold(i) => inputs.held[i] = true,
        AlignAction::Snapshot(id) => {
            inputs.held.iter_mut().for_each(|h| *h = false);
            if let Some(b) = pending.take().filter(|b| b.id == id) {
                cp.checkpoint(runner, None, b)?;
            }
        }
        AlignAction::Abort { then, .. } => {
            inputs.held.iter_mut().for_each(|h| *h = false);
            apply(*then, runner, cp, inputs, pending)?;
        }
    }
    Ok(())
}
