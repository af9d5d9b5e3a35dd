//! From job graph to execution graph: operators chained into tasks, and the
//! channels between task subtasks.
//!
//! An operator is chained onto its input when it has exactly that one input,
//! the edge is `forward`, both run with the same parallelism, and the input
//! has no other consumer of its main output. Chains run as one task per
//! subtask; records pass between chained operators without channels.

use weir_core::JobGraph;
use weir_core::graph::Consumer;
use weir_core::plan::Partitioning;

/// Operators that run together, one task per subtask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub id: usize,
    /// Operator indices, head first.
    pub ops: Vec<u32>,
    pub parallelism: u32,
    pub name: String,
}

/// An edge between chains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainEdge {
    pub from_chain: usize,
    /// Operator (in `from_chain`) and port producing the records.
    pub from_op: u32,
    pub port: u32,
    pub to_chain: usize,
    /// Head operator of `to_chain` receiving them.
    pub to_op: u32,
    pub partitioning: Partitioning,
}

impl ChainEdge {
    /// Whether downstream subtask `to` reads from upstream subtask `from`.
    pub fn connects(&self, from: u32, to: u32) -> bool {
        self.partitioning != Partitioning::Forward || from == to
    }
}

/// The tasks of a job and how they connect.
#[derive(Debug, Clone)]
pub struct ExecutionGraph {
    pub chains: Vec<Chain>,
    /// Chains that start with a source.
    pub sources: Vec<usize>,
    pub edges: Vec<ChainEdge>,
    /// For each operator, its chain and position in it.
    pub placement: Vec<(usize, usize)>,
}

impl ExecutionGraph {
    pub fn build(graph: &JobGraph) -> ExecutionGraph {
        let consumers = graph.consumers();
        let mut chains: Vec<Chain> = Vec::new();
        let mut placement = vec![(usize::MAX, 0); graph.operators.len()];
        for op in &graph.operators {
            let chain_onto = match op.inputs.as_slice() {
                [e] if e.partitioning == Partitioning::Forward && e.port == 0 => {
                    let up = &graph.operators[e.from as usize];
                    let up_main_consumers = consumers[e.from as usize]
                        .iter()
                        .filter(|c| c.port == 0)
                        .count();
                    let (up_chain, up_pos) = placement[e.from as usize];
                    let up_is_tail = chains[up_chain].ops.len() == up_pos + 1;
                    (up.parallelism == op.parallelism
                        && up_main_consumers == 1
                        && up_is_tail
                        && !op.is_source())
                    .then_some(up_chain)
                }
                _ => None,
            };
            match chain_onto {
                Some(c) => {
                    placement[op.index as usize] = (c, chains[c].ops.len());
                    chains[c].ops.push(op.index);
                    chains[c].name.push_str(" -> ");
                    chains[c].name.push_str(&op.name);
                }
                None => {
                    placement[op.index as usize] = (chains.len(), 0);
                    chains.push(Chain {
                        id: chains.len(),
                        ops: vec![op.index],
                        parallelism: op.parallelism,
                        name: op.name.clone(),
                    });
                }
            }
        }
        let mut edges = Vec::new();
        for (from, cs) in consumers.iter().enumerate() {
            for &Consumer {
                port,
                to,
                partitioning,
                ..
            } in cs
            {
                let (fc, _) = placement[from];
                let (tc, tpos) = placement[to as usize];
                if fc == tc {
                    continue; // chained
                }
                debug_assert_eq!(tpos, 0, "only chain heads have external inputs");
                let forward_ok = chains[fc].parallelism == chains[tc].parallelism;
                let partitioning = match partitioning {
                    Partitioning::Forward if !forward_ok => Partitioning::Rebalance,
                    p => p,
                };
                edges.push(ChainEdge {
                    from_chain: fc,
                    from_op: from as u32,
                    port,
                    to_chain: tc,
                    to_op: to,
                    partitioning,
                });
            }
        }
        let sources = chains
            .iter()
            .filter(|c| graph.operators[c.ops[0] as usize].is_source())
            .map(|c| c.id)
            .collect();
        ExecutionGraph {
            chains,
            sources,
            edges,
            placement,
        }
    }

    /// Edges into `chain`.
    pub fn inputs(&self, chain: usize) -> impl Iterator<Item = (usize, &ChainEdge)> {
        self.edges
            .iter()
            .enumerate()
            .filter(move |(_, e)| e.to_chain == chain)
    }

    /// Edges out of `chain`.
    pub fn outputs(&self, chain: usize) -> impl Iterator<Item = (usize, &ChainEdge)> {
        self.edges
            .iter()
            .enumerate()
            .filter(move |(_, e)| e.from_chain == chain)
    }
}

/// How a snapshot names an output edge: `<from uid>:<port>-><to uid>`, with
/// `uids` the job's operator uids by index. In-flight output restores only
/// where the chain's edges have the same names in the same order.
pub(crate) fn edge_name(uids: &[String], from_op: u32, port: u32, to_op: u32) -> String {
    let uid = |o: u32| uids.get(o as usize).map(String::as_str).unwrap_or("?");
    format!("{}:{port}->{}", uid(from_op), uid(to_op))
}

impl ExecutionGraph {
    /// Whether a chain starts with a source.
    pub fn is_source_chain(&self, chain: usize) -> bool {
        self.sources.contains(&chain)
    }

    /// Number of task subtasks.
    pub fn task_count(&self) -> usize {
        self.chains.iter().map(|c| c.parallelism as usize).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::Config;
    use weir_core::plan::*;

    fn op(kind: OperatorKind, inputs: Vec<Edge>, p: Option<u32>) -> Operator {
        Operator {
            uid: None,
            name: format!("{kind:?}").chars().take(8).collect(),
            parallelism: p,
            inputs,
            kind,
            states: vec![],
            side_outputs: 0,
        }
    }

    fn fwd(from: u32) -> Edge {
        Edge {
            from,
            port: 0,
            partitioning: Partitioning::Forward,
        }
    }

    #[test]
    fn wordcount_chains_like_flink() {
        let file = Connector {
            kind: "file".into(),
            options: vec![],
        };
        let plan = Plan {
            operators: vec![
                op(
                    OperatorKind::Source(SourceSpec {
                        connector: file.clone(),
                        timestamps: TimestampSource::None,
                        watermarks: None,
                    }),
                    vec![],
                    None,
                ),
                op(OperatorKind::Stage(StageKind::Decode), vec![fwd(0)], None),
                op(OperatorKind::Stage(StageKind::FlatMap), vec![fwd(1)], None),
                op(OperatorKind::Stage(StageKind::KeyBy), vec![fwd(2)], None),
                op(
                    OperatorKind::Aggregate,
                    vec![Edge {
                        from: 3,
                        port: 0,
                        partitioning: Partitioning::Hash,
                    }],
                    None,
                ),
                op(OperatorKind::Stage(StageKind::Map), vec![fwd(4)], None),
                op(OperatorKind::Stage(StageKind::Encode), vec![fwd(5)], None),
                op(OperatorKind::Sink(file), vec![fwd(6)], Some(1)),
            ],
            ..Plan::default()
        };
        let mut c = Config {
            parallelism: 1,
            ..Config::default()
        };
        let g = JobGraph::from_plan(plan.clone(), &c).unwrap();
        let e = ExecutionGraph::build(&g);
        let ops: Vec<_> = e.chains.iter().map(|c| c.ops.clone()).collect();
        assert_eq!(ops, vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7]]);
        assert_eq!(e.edges.len(), 1);

        c.parallelism = 4;
        let g = JobGraph::from_plan(plan, &c).unwrap();
        let e = ExecutionGraph::build(&g);
        let ops: Vec<_> = e.chains.iter().map(|c| c.ops.clone()).collect();
        assert_eq!(ops, vec![vec![0, 1], vec![2, 3], vec![4, 5, 6], vec![7]]);
        let parts: Vec<_> = e.edges.iter().map(|e| e.partitioning).collect();
        assert_eq!(
            parts,
            vec![
                Partitioning::Rebalance,
                Partitioning::Hash,
                Partitioning::Rebalance
            ]
        );
        assert_eq!(e.task_count(), 1 + 4 + 4 + 1);
    }
}
