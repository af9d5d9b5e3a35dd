//! The validated job graph: a plan with every operator's uid and
//! parallelism resolved and every edge checked.

use crate::config::Config;
use crate::ids::OperatorUid;
use crate::plan::{self, OperatorKind, Partitioning, Plan, StageKind};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

/// Most operators a plan may have.
pub const MAX_OPERATORS: usize = 2_000;

/// A plan that cannot run, with what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid job plan: {0}")]
pub struct PlanError(pub String);

/// An operator of a validated graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorNode {
    /// Index in the plan; the guest's function id.
    pub index: u32,
    pub uid: OperatorUid,
    /// Whether the job set the uid itself (derived uids do not survive
    /// changes to the graph).
    pub uid_explicit: bool,
    pub name: String,
    pub parallelism: u32,
    pub inputs: Vec<plan::Edge>,
    pub kind: OperatorKind,
    pub states: Vec<plan::StateDescriptor>,
    pub side_outputs: u32,
}

impl OperatorNode {
    /// Whether the operator keeps keyed state (its inputs are hash-partitioned).
    pub fn is_keyed(&self) -> bool {
        matches!(
            self.kind,
            OperatorKind::Aggregate | OperatorKind::Window(_) | OperatorKind::Process
        )
    }

    pub fn is_source(&self) -> bool {
        matches!(self.kind, OperatorKind::Source(_))
    }

    pub fn is_sink(&self) -> bool {
        matches!(self.kind, OperatorKind::Sink(_))
    }

    /// The connector of a source or sink.
    pub fn connector(&self) -> Option<&plan::Connector> {
        match &self.kind {
            OperatorKind::Source(s) => Some(&s.connector),
            OperatorKind::Sink(c) => Some(c),
            _ => None,
        }
    }
}

/// A consumer of an operator's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consumer {
    pub port: u32,
    pub to: u32,
    /// Which input of `to` this is.
    pub input: u32,
    pub partitioning: Partitioning,
}

/// A job graph ready to be turned into tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobGraph {
    pub name: String,
    pub version: String,
    pub operators: Vec<OperatorNode>,
    pub max_parallelism: u32,
    pub has_state_hooks: bool,
    /// Warnings for the user (derived uids).
    pub warnings: Vec<String>,
}

/// Connectors that read from one place and so run with parallelism 1.
fn non_parallel_source(kind: &str) -> bool {
    matches!(kind, "socket" | "file")
}

/// Stage kinds that run with their input's parallelism unless set.
fn follows_input(kind: &OperatorKind) -> bool {
    matches!(
        kind,
        OperatorKind::Stage(
            StageKind::KeyBy | StageKind::Decode | StageKind::Encode | StageKind::Timestamps
        ) | OperatorKind::Watermarks(_)
    )
}

fn check_window(what: &str, w: &plan::WindowSpec, side_outputs: u32) -> Result<(), PlanError> {
    use plan::{Trigger, WindowAssigner};
    let bad = |m: String| Err(PlanError(format!("{what}: {m}")));
    match w.assigner {
        WindowAssigner::Tumbling { size_ms, offset_ms } => {
            if size_ms <= 0 {
                return bad(format!("window size must be positive, not {size_ms} ms"));
            }
            if offset_ms.abs() >= size_ms {
                return bad("a window's offset must be smaller than its size".into());
            }
        }
        WindowAssigner::Sliding {
            size_ms,
            slide_ms,
            offset_ms,
        } => {
            if size_ms <= 0 || slide_ms <= 0 {
                return bad(format!(
                    "window size and slide must be positive, not {size_ms} ms and {slide_ms} ms"
                ));
            }
            if offset_ms.abs() >= slide_ms {
                return bad("a window's offset must be smaller than its slide".into());
            }
        }
        WindowAssigner::Session { gap_ms } => {
            if gap_ms <= 0 {
                return bad(format!("session gap must be positive, not {gap_ms} ms"));
            }
        }
        WindowAssigner::Global => {
            if w.trigger == Trigger::Default {
                return bad(
                    "a global window never fires by itself; give it a trigger (CountTrigger) or \
                     use count_window"
                        .into(),
                );
            }
        }
    }
    if let Trigger::Count(0) = w.trigger {
        return bad("a count trigger needs a count of at least 1".into());
    }
    if w.allowed_lateness_ms < 0 {
        return bad("allowed lateness cannot be negative".into());
    }
    if w.late_port.is_some_and(|p| p == 0 || p > side_outputs) {
        return bad("its late-data port is not one of its side outputs".into());
    }
    Ok(())
}

fn check_watermarks(what: &str, w: &plan::WatermarkSpec) -> Result<(), PlanError> {
    if w.max_out_of_orderness_ms < 0 {
        return Err(PlanError(format!(
            "{what}: the out-of-orderness bound cannot be negative"
        )));
    }
    if w.idle_timeout_ms.is_some_and(|t| t <= 0) {
        return Err(PlanError(format!(
            "{what}: the idle timeout must be positive"
        )));
    }
    Ok(())
}

fn slug(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let s = s
        .split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    if s.is_empty() { "operator".into() } else { s }
}

impl JobGraph {
    /// Validates `plan` under `config` (default parallelism, max parallelism).
    pub fn from_plan(plan: Plan, config: &Config) -> Result<JobGraph, PlanError> {
        let n = plan.operators.len();
        if n == 0 {
            return Err(PlanError("the plan has no operators".into()));
        }
        if n > MAX_OPERATORS {
            return Err(PlanError(format!(
                "the plan has {n} operators; at most {MAX_OPERATORS} are allowed. \
                 Fuse functions into fewer operators"
            )));
        }
        let max_parallelism = config.max_parallelism;
        let mut explicit = HashSet::new();
        for o in &plan.operators {
            if let Some(uid) = &o.uid {
                if uid.is_empty() {
                    return Err(PlanError(format!("operator '{}' has an empty uid", o.name)));
                }
                if !explicit.insert(uid.clone()) {
                    return Err(PlanError(format!(
                        "uid '{uid}' is used by more than one operator; uids must be unique"
                    )));
                }
            }
        }

        let mut nodes: Vec<OperatorNode> = Vec::with_capacity(n);
        let mut name_counts: HashMap<String, u32> = HashMap::new();
        let mut warnings = Vec::new();
        for (i, o) in plan.operators.into_iter().enumerate() {
            let index = i as u32;
            let what = format!("operator {index} '{}'", o.name);
            // Inputs.
            match (&o.kind, o.inputs.is_empty()) {
                (OperatorKind::Source(_), false) => {
                    return Err(PlanError(format!("{what} is a source but has inputs")));
                }
                (OperatorKind::Source(_), true) => {}
                (_, true) => return Err(PlanError(format!("{what} has no inputs"))),
                _ => {}
            }
            for e in &o.inputs {
                if e.from >= index {
                    return Err(PlanError(format!(
                        "{what} reads from operator {}, which does not come before it; \
                         plans must list operators in topological order",
                        e.from
                    )));
                }
                let up = &nodes[e.from as usize];
                if up.is_sink() {
                    return Err(PlanError(format!("{what} reads from sink '{}'", up.name)));
                }
                if e.port > up.side_outputs {
                    return Err(PlanError(format!(
                        "{what} reads port {} of '{}', which has {} side outputs",
                        e.port, up.name, up.side_outputs
                    )));
                }
            }
            let keyed_inputs = o
                .inputs
                .iter()
                .filter(|e| e.partitioning == Partitioning::Hash)
                .count();
            let node_is_keyed = matches!(
                o.kind,
                OperatorKind::Aggregate | OperatorKind::Window(_) | OperatorKind::Process
            );
            match &o.kind {
                OperatorKind::Window(w) => check_window(&what, w, o.side_outputs)?,
                OperatorKind::Watermarks(w) => check_watermarks(&what, w)?,
                OperatorKind::Source(s) => {
                    if let Some(w) = &s.watermarks {
                        check_watermarks(&what, w)?;
                    }
                }
                _ => {}
            }
            if node_is_keyed && keyed_inputs != o.inputs.len() {
                return Err(PlanError(format!(
                    "{what} keeps keyed state, so its inputs must be keyed (key_by before it)"
                )));
            }
            // Parallelism.
            let parallelism = match (o.parallelism, &o.kind) {
                (Some(0), _) => return Err(PlanError(format!("{what} has parallelism 0"))),
                (Some(p), OperatorKind::Source(s))
                    if p > 1 && non_parallel_source(&s.connector.kind) =>
                {
                    return Err(PlanError(format!(
                        "{what}: a '{}' source reads from one place and cannot run with parallelism {p}",
                        s.connector.kind
                    )));
                }
                (Some(p), _) => p,
                (None, OperatorKind::Source(s)) if non_parallel_source(&s.connector.kind) => 1,
                (None, k) if follows_input(k) && o.inputs.len() == 1 => {
                    nodes[o.inputs[0].from as usize].parallelism
                }
                (None, _) => config.parallelism,
            };
            if node_is_keyed && parallelism > max_parallelism {
                return Err(PlanError(format!(
                    "{what} has parallelism {parallelism}, above the maximum parallelism \
                     {max_parallelism} (pipeline.max-parallelism)"
                )));
            }
            // Uid.
            let count = name_counts.entry(o.name.clone()).or_default();
            *count += 1;
            let (uid, uid_explicit) = match o.uid {
                Some(u) => (u, true),
                None => {
                    let mut u = format!("{}-{}", slug(&o.name), count);
                    while explicit.contains(&u) {
                        u.push('_');
                    }
                    explicit.insert(u.clone());
                    let stateful = node_is_keyed || !o.states.is_empty();
                    if stateful {
                        warnings.push(format!(
                            "operator '{}' has no uid; using '{u}'. Set .uid(\"...\") so that \
                             its state survives changes to the job",
                            o.name
                        ));
                    }
                    (u, false)
                }
            };
            nodes.push(OperatorNode {
                index,
                uid: OperatorUid(uid),
                uid_explicit,
                name: o.name,
                parallelism,
                inputs: o.inputs,
                kind: o.kind,
                states: o.states,
                side_outputs: o.side_outputs,
            });
        }
        Ok(JobGraph {
            name: plan.name,
            version: plan.version,
            operators: nodes,
            max_parallelism,
            has_state_hooks: plan.has_state_hooks,
            warnings,
        })
    }

    /// The consumers of every operator, in plan order.
    pub fn consumers(&self) -> Vec<Vec<Consumer>> {
        let mut out = vec![Vec::new(); self.operators.len()];
        for o in &self.operators {
            for (i, e) in o.inputs.iter().enumerate() {
                out[e.from as usize].push(Consumer {
                    port: e.port,
                    to: o.index,
                    input: i as u32,
                    partitioning: e.partitioning,
                });
            }
        }
        out
    }

    /// Whether every source is bounded (reads a finite input).
    pub fn is_bounded(&self) -> bool {
        self.operators.iter().all(|o| match &o.kind {
            OperatorKind::Source(s) => match s.connector.kind.as_str() {
                "file" => true,
                "datagen" => s
                    .connector
                    .options
                    .iter()
                    .any(|(k, _)| k == "number-of-rows"),
                "nexmark" => s.connector.options.iter().any(|(k, _)| k == "events"),
                "kafka" => s
                    .connector
                    .options
                    .iter()
                    .any(|(k, v)| k == "scan.bounded.mode" && v != "unbounded"),
                _ => false,
            },
            _ => true,
        })
    }

    pub fn operator_by_uid(&self, uid: &str) -> Option<&OperatorNode> {
        self.operators.iter().find(|o| o.uid.as_str() == uid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::*;

    fn op(name: &str, kind: OperatorKind, inputs: Vec<Edge>) -> Operator {
        Operator {
            uid: None,
            name: name.into(),
            parallelism: None,
            inputs,
            kind,
            states: vec![],
            side_outputs: 0,
        }
    }

    fn edge(from: u32, partitioning: Partitioning) -> Edge {
        Edge {
            from,
            port: 0,
            partitioning,
        }
    }

    fn wordcount() -> Plan {
        let file = Connector {
            kind: "file".into(),
            options: vec![("path".into(), "x".into())],
        };
        Plan {
            name: "wc".into(),
            version: "1".into(),
            config: vec![],
            operators: vec![
                op(
                    "Source: file",
                    OperatorKind::Source(SourceSpec {
                        connector: file.clone(),
                        timestamps: TimestampSource::None,
                        watermarks: None,
                    }),
                    vec![],
                ),
                op(
                    "decode",
                    OperatorKind::Stage(StageKind::Decode),
                    vec![edge(0, Partitioning::Forward)],
                ),
                op(
                    "tokenizer",
                    OperatorKind::Stage(StageKind::FlatMap),
                    vec![edge(1, Partitioning::Forward)],
                ),
                op(
                    "Key By",
                    OperatorKind::Stage(StageKind::KeyBy),
                    vec![edge(2, Partitioning::Forward)],
                ),
                op(
                    "counts",
                    OperatorKind::Aggregate,
                    vec![edge(3, Partitioning::Hash)],
                ),
                op(
                    "Sink",
                    OperatorKind::Sink(file),
                    vec![edge(4, Partitioning::Forward)],
                ),
            ],
            has_state_hooks: false,
        }
    }

    fn config(p: u32) -> Config {
        Config {
            parallelism: p,
            ..Config::default()
        }
    }

    #[test]
    fn parallelism_and_uids_resolve() {
        let g = JobGraph::from_plan(wordcount(), &config(4)).unwrap();
        let ps: Vec<u32> = g.operators.iter().map(|o| o.parallelism).collect();
        assert_eq!(ps, vec![1, 1, 4, 4, 4, 4]);
        assert_eq!(g.operators[4].uid.as_str(), "counts-1");
        assert!(!g.operators[4].uid_explicit);
        assert_eq!(g.warnings.len(), 1, "{:?}", g.warnings);
        assert!(g.warnings[0].contains("counts"));
        assert!(g.is_bounded());
        let consumers = g.consumers();
        assert_eq!(consumers[3][0].partitioning, Partitioning::Hash);
    }

    #[test]
    fn invalid_plans_say_why() {
        let mut p = wordcount();
        p.operators[4].inputs[0].partitioning = Partitioning::Forward;
        let e = JobGraph::from_plan(p, &config(1)).unwrap_err();
        assert!(e.0.contains("key_by"), "{e}");

        let mut p = wordcount();
        p.operators[2].inputs[0].from = 5;
        assert!(
            JobGraph::from_plan(p, &config(1))
                .unwrap_err()
                .0
                .contains("topological")
        );

        let mut p = wordcount();
        p.operators[0].parallelism = Some(3);
        assert!(
            JobGraph::from_plan(p, &config(1))
                .unwrap_err()
                .0
                .contains("parallelism 3")
        );

        let mut p = wordcount();
        p.operators[2].uid = Some("x".into());
        p.operators[4].uid = Some("x".into());
        assert!(
            JobGraph::from_plan(p, &config(1))
                .unwrap_err()
                .0
                .contains("'x'")
        );

        let mut p = wordcount();
        p.operators[4].parallelism = Some(200);
        assert!(
            JobGraph::from_plan(p, &config(1))
                .unwrap_err()
                .0
                .contains("maximum parallelism")
        );
    }
}
