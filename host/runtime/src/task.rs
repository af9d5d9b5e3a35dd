//! One subtask of a chain: a thread that reads its source or its input
//! channels, runs the chain, and writes its outputs.

use crate::chain::{ChainRunner, DecodePolicy, TaskError, build_steps};
use crate::channel::{Batch, Message, OutputEdge};
use crate::execution::Chain;
use crate::job::JobContext;
use crate::services::{TaskHost, state_failure};
use crossbeam_channel::{Receiver, Select, Sender};
use std::sync::Arc;
use weir_connectors::{Poll, SinkContext, SourceContext, SourceReader};
use weir_core::plan::OperatorKind;
use weir_core::{Failure, KeyGroupRange};
use weir_frame::Writer;
use weir_state::KeyedStateBackend;

/// Identifies a subtask of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TaskId {
    pub chain: usize,
    pub subtask: u32,
}

/// Commands from the job to a task.
#[derive(Debug, Clone)]
pub enum TaskControl {
    Cancel,
}

/// What a task reports to its job.
#[derive(Debug)]
pub enum TaskEvent {
    Finished(TaskId),
    Failed(TaskId, Failure),
    /// Stopped because the job is stopping.
    Stopped(TaskId),
}

/// Everything a task needs to start.
pub(crate) struct TaskSetup {
    pub id: TaskId,
    pub chain: Chain,
    pub inputs: Vec<Receiver<Message>>,
    pub outputs: Vec<OutputEdge>,
    pub control: Receiver<TaskControl>,
    pub events: Sender<TaskEvent>,
    pub ctx: Arc<JobContext>,
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

fn run_task(setup: TaskSetup) -> Result<(), TaskError> {
    let TaskSetup {
        id,
        chain,
        inputs,
        outputs,
        control,
        ctx,
        ..
    } = setup;
    let name = task_name(&chain, id);
    let graph = ctx.factory.graph();
    let ops: Vec<_> = chain
        .ops
        .iter()
        .map(|&i| &graph.operators[i as usize])
        .collect();
    let needs_guest = ops.iter().any(|o| {
        matches!(
            o.kind,
            OperatorKind::Stage(_)
                | OperatorKind::Aggregate
                | OperatorKind::Window(_)
                | OperatorKind::Process
        )
    });
    let keyed = ops.iter().any(|o| o.is_keyed());

    let backend = if keyed {
        let range =
            KeyGroupRange::for_subtask(graph.max_parallelism, chain.parallelism, id.subtask);
        let dir = ctx
            .work_dir
            .join(format!("task-{}-{}", id.chain, id.subtask));
        Some(
            KeyedStateBackend::open(&dir, graph.max_parallelism, range, 100_000)
                .map_err(state_failure)?,
        )
    } else {
        None
    };
    let mut host = TaskHost::new(name.clone(), backend);
    let guest = if needs_guest {
        Some(ctx.factory.instantiate(&name, None)?)
    } else {
        None
    };
    let sink_ctx = SinkContext {
        subtask: id.subtask,
        parallelism: chain.parallelism,
        checkpointing: ctx.config.checkpoint_interval.is_some(),
    };
    let mut open_sink = |op: &weir_core::OperatorNode| {
        let c = op.connector().expect("sinks have connectors");
        weir_connectors::open_sink(c, &sink_ctx).map_err(|f| f.context(&op.name))
    };
    let steps = build_steps(
        &ops,
        &mut host,
        ctx.batch_mode,
        ctx.config.cached_keys,
        &mut open_sink,
    )?;

    let head = ops[0];
    let (source, decode_policy) = match &head.kind {
        OperatorKind::Source(spec) => {
            let (connector, policy) = source_connector(&spec.connector)?;
            let sctx = SourceContext {
                subtask: id.subtask,
                parallelism: chain.parallelism,
                batch_size: ctx.config.batch_size,
            };
            let reader = weir_connectors::open_source(&connector, &sctx)
                .map_err(|f| f.context(&head.name))?;
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
    match source {
        Some(reader) => run_source(&mut runner, reader, &control, head.index, &ctx),
        None => run_inputs(&mut runner, &inputs, &control),
    }
}

/// Splits the runtime's own options off a source connector.
fn source_connector(
    c: &weir_core::plan::Connector,
) -> Result<(weir_core::plan::Connector, DecodePolicy), Failure> {
    let mut policy = DecodePolicy::Fail;
    let mut options = Vec::new();
    for (k, v) in &c.options {
        if k == "decode-errors" {
            policy = match v.as_str() {
                "fail" => DecodePolicy::Fail,
                "skip" => DecodePolicy::Skip,
                other => {
                    return Err(Failure::user(format!(
                        "source option 'decode-errors' is '{other}'; use 'fail' or 'skip'"
                    )));
                }
            };
        } else {
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

fn cancelled(control: &Receiver<TaskControl>) -> bool {
    matches!(control.try_recv(), Ok(TaskControl::Cancel))
}

fn run_source(
    runner: &mut ChainRunner,
    mut reader: Box<dyn SourceReader>,
    control: &Receiver<TaskControl>,
    source_op: u32,
    ctx: &JobContext,
) -> Result<(), TaskError> {
    let mut w = Writer::with_capacity(64 * 1024);
    let metrics = ctx.metrics.operators[source_op as usize].clone();
    loop {
        if cancelled(control) {
            return Err(TaskError::Disconnected);
        }
        match reader.poll(&mut w)? {
            Poll::Ready => {
                let records = w.records() as u32;
                metrics.add_out(u64::from(records));
                let batch = Batch::new(w.take(), records);
                runner.process(batch)?;
            }
            Poll::Idle => runner.flush_outputs()?,
            Poll::Finished => {
                if !w.is_empty() {
                    let records = w.records() as u32;
                    metrics.add_out(u64::from(records));
                    runner.process(Batch::new(w.take(), records))?;
                }
                runner.finish()?;
                runner.broadcast(|| Message::EndOfInput)?;
                return Ok(());
            }
        }
    }
}

fn run_inputs(
    runner: &mut ChainRunner,
    inputs: &[Receiver<Message>],
    control: &Receiver<TaskControl>,
) -> Result<(), TaskError> {
    let mut sel = Select::new();
    for r in inputs {
        sel.recv(r);
    }
    let control_index = sel.recv(control);
    let mut open = inputs.len();
    loop {
        let op = match sel.select_timeout(runner.buffer_timeout) {
            Ok(op) => op,
            Err(_) => {
                runner.flush_outputs()?;
                continue;
            }
        };
        let i = op.index();
        if i == control_index {
            match op.recv(control) {
                Ok(TaskControl::Cancel) | Err(_) => return Err(TaskError::Disconnected),
            }
        }
        let msg = match op.recv(&inputs[i]) {
            Ok(m) => m,
            Err(_) => return Err(TaskError::Disconnected),
        };
        match msg {
            Message::Batch(b) => runner.process(b)?,
            Message::EndOfInput => {
                sel.remove(i);
                open -= 1;
                if open == 0 {
                    runner.finish()?;
                    runner.broadcast(|| Message::EndOfInput)?;
                    return Ok(());
                }
            }
            Message::Barrier(_) | Message::Watermark(_) => {}
        }
    }
}
