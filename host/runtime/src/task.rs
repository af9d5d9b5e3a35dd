//! One subtask of a chain: a thread that reads its source or its input
//! channels, runs the chain, writes its outputs, and takes part in
//! checkpoints.

use crate::chain::{ChainRunner, DecodePolicy, SnapshotMeta, StepSettings, TaskError, build_steps};
use crate::channel::{Barrier, Batch, Message, OutputEdge, Priority};
use crate::context::JobContext;
use crate::events::{TaskControl, TaskEvent, TaskId};
use crate::execution::Chain;
use crate::services::{TaskHost, state_failure};
use crate::snapshot::{LocalTaskSnapshot, Prefetched, SnapshotTarget, Uploader};
use crate::swap;
use crate::unaligned::{self, Gate, GateAction};
use crate::watermark::MIN_WATERMARK;
use crossbeam_channel::{Receiver, Select, Sender};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use weir_checkpoint::protocol::{AlignAction, AlignmentMode, BarrierAligner, TaskRestore};
use weir_connectors::{Poll, SinkContext, SourceContext, SourceReader};
use weir_core::config::CheckpointingMode;
use weir_core::plan::OperatorKind;
use weir_core::{CheckpointId, Failure, KeyGroupRange};
use weir_frame::Writer;
use weir_state::{KeyedStateBackend, RestoreSource};

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
    /// Barriers announced ahead of what the inputs hold.
    pub priority: Option<Receiver<Priority>>,
    /// The inputs' credits (unaligned checkpoints): one given back per
    /// message processed.
    pub credits: Vec<Receiver<()>>,
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

/// A snapshot taken at a barrier that was forwarded, not yet uploaded.
struct Taken {
    target: Arc<SnapshotTarget>,
    snapshot: LocalTaskSnapshot,
    swap: Option<Arc<swap::ModuleSwap>>,
}

impl Checkpointing {
    /// Barriers go ahead on priority lanes (unaligned checkpoints).
    fn unaligned(&self) -> bool {
        self.ctx.config.unaligned
    }

    /// Snapshots the chain (and source position), forwards the barrier,
    /// and uploads in the background; then swaps the module if the
    /// barrier brings one.
    fn checkpoint(
        &mut self,
        runner: &mut ChainRunner,
        source: Option<(&dyn SourceReader, &str)>,
        barrier: Barrier,
    ) -> Result<(), TaskError> {
        match self.take(runner, source, barrier)? {
            Some(taken) => self.finish(runner, taken, Vec::new()),
            None => Ok(()),
        }
    }

    /// Sends the barrier on: in the channels, or (unaligned checkpoints)
    /// ahead of them, returning what the snapshot must hold of the
    /// records buffered for them.
    fn forward(&self, runner: &mut ChainRunner, barrier: &Barrier) -> Result<Vec<u8>, TaskError> {
        let mut unsent = Vec::new();
        if self.unaligned() {
            let aligned = barrier.aligned_timeout.is_none();
            for (edge, b) in runner.announce(barrier, aligned)? {
                unaligned::append(&mut unsent, edge, &b);
            }
        } else {
            runner.broadcast(|| Message::Barrier(barrier.clone()))?;
        }
        Ok(unsent)
    }

    /// Snapshots the chain (and source position) and forwards the
    /// barrier; None when the task declined the checkpoint.
    fn take(
        &mut self,
        runner: &mut ChainRunner,
        source: Option<(&dyn SourceReader, &str)>,
        barrier: Barrier,
    ) -> Result<Option<Taken>, TaskError> {
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
                self.forward(runner, &barrier)?;
                let _ = self.events.send(TaskEvent::Decline(self.id, barrier.id, f));
                return Ok(None);
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
        let mut snapshot = snapshot.map_err(|e| match e {
            TaskError::Failed(f) => {
                TaskError::Failed(f.context(format!("taking checkpoint {}", target.id)))
            }
            e => e,
        })?;
        snapshot.in_flight.1 = self.forward(runner, &barrier)?;
        Ok(Some(Taken {
            target,
            snapshot,
            swap,
        }))
    }

    /// Uploads a snapshot taken, with the records in flight into the task
    /// (`input`), and swaps the module if its barrier brings one.
    fn finish(
        &mut self,
        runner: &mut ChainRunner,
        taken: Taken,
        input: Vec<u8>,
    ) -> Result<(), TaskError> {
        let Taken {
            target,
            mut snapshot,
            swap,
        } = taken;
        snapshot.in_flight.0 = input;
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
        priority,
        credits,
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
    if let (Some(r), Some(s)) = (restore, start.as_ref()) {
        let range = keyed.then_some(keyed_range);
        replay_in_flight(
            &mut runner,
            &r.in_flight,
            &s.files,
            range,
            graph.max_parallelism,
        )?;
    }
    match source {
        Some(reader) => run_source(&mut runner, reader, &control, head, &ctx, &mut cp),
        None => {
            let lanes = Lanes {
                priority: priority.as_ref(),
                credits: &credits,
            };
            run_inputs(&mut runner, &inputs, lanes, &control, &ctx, &mut cp)
        }
    }
}

/// Sends the records a restored task had buffered but not sent, then
/// processes those it had yet to read (an unaligned checkpoint's), before
/// it reads its channels.
fn replay_in_flight(
    runner: &mut ChainRunner,
    files: &[weir_checkpoint::protocol::InFlightRestore],
    files_here: &Prefetched,
    range: Option<KeyGroupRange>,
    max_parallelism: u32,
) -> Result<(), TaskError> {
    for output in [true, false] {
        for f in files.iter().filter(|f| f.output == output) {
            for (edge, batch) in unaligned::decode(&files_here.bytes(&f.file)?)? {
                if output {
                    runner.replay_output(edge, batch)?;
                    continue;
                }
                let batch = match range {
                    Some(range) if f.by_key_group => {
                        unaligned::in_key_groups(&batch, range, max_parallelism)?
                    }
                    _ => batch,
                };
                if !batch.is_empty() {
                    runner.process(batch)?;
                }
            }
        }
    }
    runner.flush_outputs()?;
    Ok(())
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
    let mut output_wait = OutputWait::default();
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
        // With unaligned checkpoints, a source whose outputs are full
        // waits for room here rather than inside a send, so that a
        // checkpoint's trigger is taken at once.
        let room = !cp.unaligned() || runner.outputs_ready();
        let wait = match room {
            true => Duration::ZERO,
            false => output_wait.next(),
        };
        if room {
            output_wait = OutputWait::default();
        }
        while let Ok(ctl) = control.recv_timeout(wait) {
            if on_control(ctl, runner, Some((reader.as_mut(), uid)), cp)? {
                return Err(
                    Failure::internal("a source was told to finish before its data ended").into(),
                );
            }
        }
        if !room {
            continue;
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

fn wall_ms() -> u64 {
    crate::chain::now_ms() as u64
}

/// How long a task with unaligned checkpoints whose outputs are full
/// waits before it looks for room again, taking barriers and commands
/// meanwhile: 1 ms, doubling up to 8 ms while they stay full.
#[derive(Default)]
struct OutputWait(u32);

impl OutputWait {
    fn next(&mut self) -> Duration {
        let wait = Duration::from_millis(1 << self.0.min(3));
        self.0 = self.0.saturating_add(1);
        wait
    }
}

/// Records a task with unaligned checkpoints processes at once: it takes
/// barriers between such parts of a batch.
const PART: u32 = 256;

/// Largest in-flight input a task records for one unaligned checkpoint;
/// past it, the task gives the checkpoint up.
const MAX_IN_FLIGHT: usize = 512 << 20;

/// An unaligned snapshot taken, and the records in flight into the task
/// recorded since.
struct Recording {
    id: CheckpointId,
    taken: Option<Taken>,
    input: Vec<u8>,
}

/// What a task with unaligned checkpoints has beside its input channels.
struct Lanes<'a> {
    priority: Option<&'a Receiver<Priority>>,
    credits: &'a [Receiver<()>],
}

fn run_inputs(
    runner: &mut ChainRunner,
    channels: &[Receiver<Message>],
    lanes: Lanes<'_>,
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
    // Unaligned checkpoints: barriers are announced on the priority lane;
    // the records queued before one are taken off their channels into the
    // stash (and recorded) at once, and processed from there.
    let mut priority = lanes.priority.filter(|_| cp.unaligned());
    // A credit goes back once a message is processed, so that what a
    // channel and the stash hold together stays bounded.
    let give_credit = |i: usize| {
        if let Some(c) = lanes.credits.get(i) {
            let _ = c.try_recv();
        }
    };
    let mut gate = priority.map(|_| Gate::new(n));
    let mut recording: Option<Recording> = None;
    // Messages taken off their channels, not yet processed, each with
    // whether it ends a message of its channel (batches are processed in
    // parts).
    let mut stash: VecDeque<(usize, Message, bool)> = VecDeque::new();
    let mut output_wait = OutputWait::default();
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
        if let Some(g) = gate.as_mut() {
            // Barriers and commands go ahead of the stash, and of records
            // that could not be sent on now.
            while let Some(p) = priority.and_then(|p| p.try_recv().ok()) {
                announced(g, p, &mut recording, &stash, runner, control, cp)?;
            }
            while let Ok(ctl) = control.try_recv() {
                on_control(ctl, runner, None, cp)?;
            }
            for (i, channel) in channels.iter().enumerate() {
                while g.owed(i) > 0 {
                    let Ok(msg) = channel.try_recv() else {
                        break;
                    };
                    if arrive(g, i, &msg, &mut recording, runner, control, cp)? {
                        stash.push_back((i, msg, true));
                    }
                }
            }
            drive(g, &mut recording, &stash, runner, cp)?;
        }
        let room = gate.is_none() || runner.outputs_ready();
        let next = match room {
            true => stash.pop_front(),
            false => None,
        };
        let (i, msg, whole) = match next {
            Some(m) => m,
            None => {
                // (Re)built each round: cheap next to processing a batch,
                // and it leaves out held and ended channels.
                let mut sel = Select::new();
                let open: Vec<usize> = match &gate {
                    // Full outputs: only barriers and commands.
                    Some(_) if !room => Vec::new(),
                    Some(g) => (0..n).filter(|&i| !inputs.ended[i] && !g.held(i)).collect(),
                    None => inputs.open().collect(),
                };
                for &i in &open {
                    sel.recv(&channels[i]);
                }
                let control_index = sel.recv(control);
                let priority_index = priority.map(|p| sel.recv(p));
                let mut wait = match room {
                    true => {
                        output_wait = OutputWait::default();
                        runner.idle_wait()
                    }
                    false => output_wait.next(),
                };
                if let Some(at) = gate.as_ref().and_then(Gate::deadline) {
                    wait = wait.min(Duration::from_millis(at.saturating_sub(wall_ms())));
                }
                let op = match sel.select_timeout(wait) {
                    Ok(op) => op,
                    Err(_) => {
                        if let Some(g) = gate.as_mut() {
                            drive(g, &mut recording, &stash, runner, cp)?;
                        }
                        if room {
                            runner.tick()?;
                            runner.flush_if_due()?;
                        }
                        continue;
                    }
                };
                if op.index() == control_index {
                    let ctl = op.recv(control).map_err(|_| TaskError::Disconnected)?;
                    on_control(ctl, runner, None, cp)?;
                    continue;
                }
                if let (Some(pi), Some(lane), Some(g)) = (priority_index, priority, gate.as_mut())
                    && op.index() == pi
                {
                    let Ok(p) = op.recv(lane) else {
                        // Every sender ended; what they sent is in the
                        // channels.
                        priority = None;
                        continue;
                    };
                    announced(g, p, &mut recording, &stash, runner, control, cp)?;
                    continue;
                }
                let i = open[op.index()];
                let msg = op.recv(&channels[i]).map_err(|_| TaskError::Disconnected)?;
                if let Some(g) = gate.as_mut()
                    && !arrive(g, i, &msg, &mut recording, runner, control, cp)?
                {
                    drive(g, &mut recording, &stash, runner, cp)?;
                    continue;
                }
                (i, msg, true)
            }
        };
        let (msg, whole) = match msg {
            Message::Batch(b) if gate.is_some() && b.records > PART => {
                let mut parts = unaligned::split(b, PART)?.into_iter();
                let first = parts.next().expect("a part");
                let rest: Vec<Batch> = parts.collect();
                let n_rest = rest.len();
                for (k, part) in rest.into_iter().enumerate().rev() {
                    stash.push_front((i, Message::Batch(part), whole && k + 1 == n_rest));
                }
                (Message::Batch(first), false)
            }
            msg => (msg, whole),
        };
        if let Some(g) = gate.as_mut()
            && whole
        {
            match &msg {
                Message::EndOfPartition => g.on_end(i),
                _ => g.done(i),
            }
            give_credit(i);
        }
        let action = match msg {
            Message::Batch(b) => {
                inputs.idle[i] = false;
                runner.process(b)?;
                runner.maybe_tick()?;
                AlignAction::Continue
            }
            Message::Barrier(b) => {
                take_commits(runner, control, cp)?;
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
                    match gate.as_mut() {
                        Some(g) => drive(g, &mut recording, &stash, runner, cp)?,
                        None => apply(action, runner, cp, &mut inputs, &mut pending_barrier)?,
                    }
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
        match gate.as_mut() {
            Some(g) => drive(g, &mut recording, &stash, runner, cp)?,
            None => apply(action, runner, cp, &mut inputs, &mut pending_barrier)?,
        }
    }
}

/// The completion of the checkpoint before a barrier was sent before it:
/// take it (and the commits it brings) first, or a sink would snapshot
/// while its previous transaction still holds the locks its new rows need.
fn take_commits(
    runner: &mut ChainRunner,
    control: &Receiver<TaskControl>,
    cp: &mut Checkpointing,
) -> Result<(), TaskError> {
    while let Ok(ctl) = control.try_recv() {
        on_control(ctl, runner, None, cp)?;
    }
    Ok(())
}

/// A barrier announced on the priority lane: the commits before it go
/// first, then the gate decides.
fn announced(
    gate: &mut Gate,
    p: Priority,
    recording: &mut Option<Recording>,
    stash: &VecDeque<(usize, Message, bool)>,
    runner: &mut ChainRunner,
    control: &Receiver<TaskControl>,
    cp: &mut Checkpointing,
) -> Result<(), TaskError> {
    take_commits(runner, control, cp)?;
    gate.on_barrier(p.input, &p.barrier, Some(p.before), wall_ms());
    drive(gate, recording, stash, runner, cp)
}

/// A message taken off input `i`'s channel, in a task with unaligned
/// checkpoints: a barrier goes to the gate; other messages are counted,
/// and recorded when they precede the barrier of an unaligned snapshot
/// taken. True when the message is to be processed.
fn arrive(
    gate: &mut Gate,
    i: usize,
    msg: &Message,
    recording: &mut Option<Recording>,
    runner: &mut ChainRunner,
    control: &Receiver<TaskControl>,
    cp: &mut Checkpointing,
) -> Result<bool, TaskError> {
    if let Message::Barrier(b) = msg {
        take_commits(runner, control, cp)?;
        gate.on_barrier(i, b, None, wall_ms());
        return Ok(false);
    }
    if gate.records(i)
        && let (Message::Batch(b), Some(r)) = (msg, recording.as_mut())
    {
        unaligned::append(&mut r.input, 0, b);
        if r.input.len() > MAX_IN_FLIGHT {
            gate.give_up();
        }
    }
    gate.read(i);
    Ok(true)
}

/// Does what the gate of an unaligned-checkpointing task asks; `stash`
/// holds the records taken off the channels and not yet processed.
fn drive(
    gate: &mut Gate,
    recording: &mut Option<Recording>,
    stash: &VecDeque<(usize, Message, bool)>,
    runner: &mut ChainRunner,
    cp: &mut Checkpointing,
) -> Result<(), TaskError> {
    while let Some(action) = gate.next(wall_ms()) {
        match action {
            GateAction::Aligned(b) => cp.checkpoint(runner, None, b)?,
            GateAction::Unaligned(b) => {
                let id = b.id;
                let taken = cp.take(runner, None, b)?;
                // Records taken off the channels but not yet processed
                // precede the barrier: the snapshot does not hold them.
                let mut input = Vec::new();
                for (_, msg, _) in stash {
                    if let Message::Batch(b) = msg {
                        unaligned::append(&mut input, 0, b);
                    }
                }
                *recording = Some(Recording { id, taken, input });
            }
            GateAction::Recorded(id) => {
                if let Some(r) = recording.take().filter(|r| r.id == id)
                    && let Some(taken) = r.taken
                {
                    cp.finish(runner, taken, r.input)?;
                }
            }
            GateAction::Abort { id, taken } => {
                let ours = recording.as_ref().is_some_and(|r| r.id == id);
                let dropped = match taken && ours {
                    true => recording.take().and_then(|r| r.taken),
                    false => None,
                };
                if let Some(t) = dropped {
                    // Its RocksDB checkpoint (hard links) is never uploaded.
                    if let Some(k) = &t.snapshot.keyed {
                        let _ = std::fs::remove_dir_all(&k.dir);
                    }
                    let _ = cp.events.send(TaskEvent::Decline(
                        cp.id,
                        id,
                        Failure::external(format!(
                            "checkpoint {id} was given up: a newer one overtook it, or more \
                             than {} MiB of records were in flight into one task",
                            MAX_IN_FLIGHT >> 20
                        )),
                    ));
                }
            }
        }
    }
    Ok(())
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
