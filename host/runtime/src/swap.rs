//! Replacing the module of a running job in place, at a barrier (`weir
//! upgrade` when the new plan keeps the job's shape).
//!
//! The barrier of one snapshot carries the new module. Each task, aligned,
//! takes its snapshot as for any checkpoint (the old module's state),
//! forwards the barrier, then swaps: the chain's steps are built again from
//! the new plan around what outlives the module — the source reader and its
//! position, the sinks' writers and their open transactions, the watermark
//! generators, the keyed state in RocksDB (states no keyed operator of the
//! new plan claims are dropped) — and a new guest instance takes the old
//! one's saved state through the job's restore hook. The task then goes on
//! with the record after the barrier: no source rewinds, no record is
//! processed twice.

use crate::chain::{ChainRunner, SnapshotMeta, Step, StepSettings, TaskError, build_steps};
use crate::execution::ExecutionGraph;
use crate::services::state_failure;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use weir_connectors::SinkWriter;
use weir_core::plan::{OperatorKind, StageKind};
use weir_core::{Failure, GuestFactory, JobGraph, OperatorNode};

/// A new module for a running job, planned and compiled before its
/// barrier is injected.
pub struct ModuleSwap {
    pub factory: Arc<dyn GuestFactory>,
}

impl std::fmt::Debug for ModuleSwap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleSwap")
            .field("module", &self.factory.code_hash())
            .finish()
    }
}

/// Why the job planned as `new` cannot replace the running `old` in place
/// (a restart from a savepoint can); None when it can. In place means the
/// same operators in the same chains with the same edges, parallelism and
/// key partitioning; sources and sinks unchanged (they keep running);
/// windows with the same assigner and trigger. Functions may change, and
/// keyed operators may change their uids and states.
pub fn swap_refusal(old: &JobGraph, new: &JobGraph) -> Option<String> {
    if old.operators.len() != new.operators.len() {
        return Some(format!(
            "the new plan has {} operators, the running job {}",
            new.operators.len(),
            old.operators.len()
        ));
    }
    if old.max_parallelism != new.max_parallelism {
        return Some(format!(
            "the maximum parallelism changes from {} to {}",
            old.max_parallelism, new.max_parallelism
        ));
    }
    for (o, n) in old.operators.iter().zip(&new.operators) {
        let what = |why: &str| Some(format!("operator {} ('{}') {why}", o.index, o.name));
        if o.parallelism != n.parallelism {
            return what(&format!(
                "changes its parallelism from {} to {}",
                o.parallelism, n.parallelism
            ));
        }
        if o.inputs != n.inputs || o.side_outputs != n.side_outputs {
            return what("changes its inputs or side outputs");
        }
        if !same_kind(&o.kind, &n.kind) {
            return what(&format!("becomes {} ('{}')", kind_name(&n.kind), n.name));
        }
        if (o.is_source() || matches!(o.kind, OperatorKind::Sink(_))) && o.uid != n.uid {
            return what(&format!(
                "changes its uid from '{}' to '{}' (sources and sinks keep running)",
                o.uid, n.uid
            ));
        }
    }
    let (a, b) = (ExecutionGraph::build(old), ExecutionGraph::build(new));
    let chains = |g: &ExecutionGraph| {
        g.chains
            .iter()
            .map(|c| (c.ops.clone(), c.parallelism))
            .collect::<Vec<_>>()
    };
    if chains(&a) != chains(&b) || a.edges != b.edges {
        return Some("the new plan chains its operators differently".into());
    }
    None
}

/// Whether an operator can change from `a` to `b` in place.
fn same_kind(a: &OperatorKind, b: &OperatorKind) -> bool {
    use StageKind::{Filter, FlatMap, Map};
    match (a, b) {
        // A function over records may become another.
        (
            OperatorKind::Stage(Map | FlatMap | Filter),
            OperatorKind::Stage(Map | FlatMap | Filter),
        ) => true,
        // Keyed state carries over: its function may change, not its layout.
        (OperatorKind::Window(x), OperatorKind::Window(y)) => x == y,
        _ => a == b,
    }
}

fn kind_name(k: &OperatorKind) -> &'static str {
    match k {
        OperatorKind::Source(_) => "a source",
        OperatorKind::Sink(_) => "a sink",
        OperatorKind::Stage(_) => "another function",
        OperatorKind::Aggregate => "an aggregation",
        OperatorKind::Window(_) => "a window",
        OperatorKind::Process => "a process function",
        OperatorKind::Watermarks(_) => "a watermark generator",
    }
}

/// Whether a chain of these operators calls a guest.
pub(crate) fn needs_guest(ops: &[&OperatorNode]) -> bool {
    ops.iter().any(|o| {
        matches!(
            o.kind,
            OperatorKind::Stage(_)
                | OperatorKind::Aggregate
                | OperatorKind::Window(_)
                | OperatorKind::Process
        )
    })
}

/// Swaps the module of one task's chain (operators `chain_ops`), right
/// after the task snapshotted for the swap's barrier; `saved` is what the
/// old instance's save hook returned for that snapshot.
pub(crate) fn swap_chain(
    runner: &mut ChainRunner,
    swap: &ModuleSwap,
    chain_ops: &[u32],
    task: &str,
    settings: &StepSettings,
    meta: &mut SnapshotMeta,
    saved: Option<(String, Vec<u8>)>,
) -> Result<(), TaskError> {
    let graph = swap.factory.graph();
    let ops: Vec<&OperatorNode> = chain_ops
        .iter()
        .map(|&i| {
            graph
                .operators
                .get(i as usize)
                .ok_or_else(|| Failure::internal(format!("the new module has no operator {i}")))
        })
        .collect::<Result<_, _>>()?;
    // What outlives the module: sinks (open transactions) and watermark
    // generators (their state), by operator.
    let mut writers: BTreeMap<u32, Box<dyn SinkWriter>> = BTreeMap::new();
    let mut generators = BTreeMap::new();
    for step in std::mem::take(&mut runner.steps) {
        match step {
            Step::Sink { op, writer } => {
                writers.insert(op, writer);
            }
            Step::Watermarks(w) => {
                generators.insert((w.op, w.carries), w);
            }
            _ => {}
        }
    }
    if let Some(g) = runner.guest.take() {
        runner
            .metrics
            .guest_memory_peak
            .fetch_max(g.memory_bytes(), std::sync::atomic::Ordering::Relaxed);
    }
    // Keyed state stays where it is; what no keyed operator of the new
    // plan claims goes (the pre-flight check allowed it).
    let host = &mut runner.host;
    host.states.clear();
    host.timers.clear();
    if let Some(b) = host.backend.as_mut() {
        let keyed: BTreeSet<&str> = graph
            .operators
            .iter()
            .filter(|o| o.is_keyed())
            .map(|o| o.uid.as_str())
            .collect();
        b.retain_states(|uid, _| keyed.contains(uid))
            .map_err(state_failure)?;
    }
    let mut open_sink = |op: &OperatorNode| {
        writers
            .remove(&op.index)
            .ok_or_else(|| Failure::internal(format!("operator {} has no running sink", op.name)))
    };
    let mut steps = build_steps(&ops, host, settings, &mut open_sink)?;
    for s in &mut steps {
        if let Step::Watermarks(w) = s
            && let Some(old) = generators.remove(&(w.op, w.carries))
        {
            *w = old;
        }
    }
    runner.steps = steps;
    if needs_guest(&ops) {
        let mut g = swap.factory.instantiate(task, None)?;
        if graph.has_state_hooks
            && let Some((version, bytes)) = &saved
        {
            g.restore(&mut runner.host, version, bytes)?;
        }
        runner.guest = Some(g);
    }
    meta.uids = graph.operators.iter().map(|o| o.uid.0.clone()).collect();
    meta.chain_uids = chain_ops
        .iter()
        .map(|&o| meta.uids[o as usize].clone())
        .collect();
    meta.has_state_hooks = graph.has_state_hooks;
    meta.module_hash = swap.factory.instance_hash();
    meta.job_version = graph.version.clone();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::OperatorUid;
    use weir_core::plan::{Connector, Edge, Partitioning, SourceSpec, TimestampSource};

    fn op(
        index: u32,
        uid: &str,
        kind: OperatorKind,
        from: Option<(u32, Partitioning)>,
    ) -> OperatorNode {
        OperatorNode {
            index,
            uid: OperatorUid(uid.into()),
            uid_explicit: true,
            name: uid.into(),
            parallelism: 2,
            inputs: from
                .map(|(from, partitioning)| Edge {
                    from,
                    port: 0,
                    partitioning,
                })
                .into_iter()
                .collect(),
            kind,
            states: vec![],
            side_outputs: 0,
        }
    }

    fn job(map: StageKind, counts_uid: &str, sink: &str, parallelism: u32) -> JobGraph {
        let connector = |kind: &str| Connector {
            kind: kind.into(),
            options: vec![],
        };
        let mut operators = vec![
            op(
                0,
                "source",
                OperatorKind::Source(SourceSpec {
                    connector: connector("datagen"),
                    timestamps: TimestampSource::None,
                    watermarks: None,
                }),
                None,
            ),
            op(
                1,
                "map",
                OperatorKind::Stage(map),
                Some((0, Partitioning::Forward)),
            ),
            op(
                2,
                counts_uid,
                OperatorKind::Aggregate,
                Some((1, Partitioning::Hash)),
            ),
            op(
                3,
                "sink",
                OperatorKind::Sink(connector(sink)),
                Some((2, Partitioning::Forward)),
            ),
        ];
        operators[2].parallelism = parallelism;
        operators[3].parallelism = parallelism;
        JobGraph {
            name: "job".into(),
            version: "1".into(),
            operators,
            max_parallelism: 128,
            has_state_hooks: false,
            warnings: vec![],
        }
    }

    #[test]
    fn what_changes_in_place() {
        let running = job(StageKind::Map, "counts", "print", 2);
        // Other functions and other keyed state: in place.
        assert_eq!(swap_refusal(&running, &running), None);
        assert_eq!(
            swap_refusal(&running, &job(StageKind::FlatMap, "tally", "print", 2)),
            None
        );
        // Anything else restarts, and says why.
        let why = |new: JobGraph| swap_refusal(&running, &new).expect("refused");
        assert!(
            why(job(StageKind::KeyBy, "counts", "print", 2)).contains("operator 1 ('map') becomes")
        );
        assert!(why(job(StageKind::Map, "counts", "print", 3)).contains("parallelism from 2 to 3"));
        assert!(why(job(StageKind::Map, "counts", "blackhole", 2)).contains("operator 3 ('sink')"));
        let mut renamed = job(StageKind::Map, "counts", "print", 2);
        renamed.operators[3].uid = OperatorUid("out".into());
        assert!(why(renamed).contains("uid from 'sink' to 'out'"));
        let mut longer = job(StageKind::Map, "counts", "print", 2);
        longer.operators.pop();
        assert!(why(longer).contains("3 operators, the running job 4"));
        let mut wider = running.clone();
        wider.max_parallelism = 256;
        assert!(why(wider).contains("maximum parallelism"));
    }
}
