//! WIT plan values to the host's plan types.

use crate::bindings::wit;
use weir_core::plan as p;

pub(crate) fn plan(x: wit::JobPlan) -> p::Plan {
    p::Plan {
        name: x.name,
        version: x.version,
        config: x.config,
        operators: x.operators.into_iter().map(operator).collect(),
        has_state_hooks: x.has_state_hooks,
    }
}

fn operator(o: wit::Operator) -> p::Operator {
    p::Operator {
        uid: o.uid,
        name: o.name,
        parallelism: o.parallelism,
        inputs: o
            .inputs
            .into_iter()
            .map(|e| p::Edge {
                from: e.from,
                port: e.port,
                partitioning: match e.partitioning {
                    wit::Partitioning::Forward => p::Partitioning::Forward,
                    wit::Partitioning::Rebalance => p::Partitioning::Rebalance,
                    wit::Partitioning::Hash => p::Partitioning::Hash,
                    wit::Partitioning::Broadcast => p::Partitioning::Broadcast,
                },
            })
            .collect(),
        kind: kind(o.kind),
        states: o
            .states
            .into_iter()
            .map(|s| p::StateDescriptor {
                name: s.name,
                kind: match s.kind {
                    wit::StateKind::Value => p::StateKind::Value,
                    wit::StateKind::List => p::StateKind::List,
                    wit::StateKind::Map => p::StateKind::Map,
                },
            })
            .collect(),
        side_outputs: o.side_outputs,
    }
}

fn connector(c: wit::Connector) -> p::Connector {
    p::Connector {
        kind: c.kind,
        options: c.options,
    }
}

fn watermarks(w: wit::WatermarkSpec) -> p::WatermarkSpec {
    p::WatermarkSpec {
        max_out_of_orderness_ms: w.max_out_of_orderness_ms,
        idle_timeout_ms: w.idle_timeout_ms,
    }
}

pub(crate) fn domain(d: wit::TimeDomain) -> weir_core::TimeDomain {
    match d {
        wit::TimeDomain::EventTime => weir_core::TimeDomain::EventTime,
        wit::TimeDomain::ProcessingTime => weir_core::TimeDomain::ProcessingTime,
    }
}

pub(crate) fn to_wit_domain(d: weir_core::TimeDomain) -> wit::TimeDomain {
    match d {
        weir_core::TimeDomain::EventTime => wit::TimeDomain::EventTime,
        weir_core::TimeDomain::ProcessingTime => wit::TimeDomain::ProcessingTime,
    }
}

fn kind(k: wit::OperatorKind) -> p::OperatorKind {
    use wit::OperatorKind as K;
    match k {
        K::Source(s) => p::OperatorKind::Source(p::SourceSpec {
            connector: connector(s.connector),
            timestamps: match s.timestamps {
                wit::TimestampSource::None => p::TimestampSource::None,
                wit::TimestampSource::Connector => p::TimestampSource::Connector,
                wit::TimestampSource::Guest => p::TimestampSource::Guest,
            },
            watermarks: s.watermarks.map(watermarks),
        }),
        K::Sink(c) => p::OperatorKind::Sink(connector(c)),
        K::Stage(s) => p::OperatorKind::Stage(match s {
            wit::StageKind::Map => p::StageKind::Map,
            wit::StageKind::FlatMap => p::StageKind::FlatMap,
            wit::StageKind::Filter => p::StageKind::Filter,
            wit::StageKind::KeyBy => p::StageKind::KeyBy,
            wit::StageKind::Timestamps => p::StageKind::Timestamps,
            wit::StageKind::Encode => p::StageKind::Encode,
            wit::StageKind::Decode => p::StageKind::Decode,
        }),
        K::Aggregate => p::OperatorKind::Aggregate,
        K::Process => p::OperatorKind::Process,
        K::Watermarks(w) => p::OperatorKind::Watermarks(watermarks(w)),
        K::Window(w) => p::OperatorKind::Window(p::WindowSpec {
            assigner: match w.assigner {
                wit::WindowAssigner::Tumbling(t) => p::WindowAssigner::Tumbling {
                    size_ms: t.size_ms,
                    offset_ms: t.offset_ms,
                },
                wit::WindowAssigner::Sliding(s) => p::WindowAssigner::Sliding {
                    size_ms: s.size_ms,
                    slide_ms: s.slide_ms,
                    offset_ms: s.offset_ms,
                },
                wit::WindowAssigner::Session(s) => p::WindowAssigner::Session { gap_ms: s.gap_ms },
                wit::WindowAssigner::Global => p::WindowAssigner::Global,
            },
            domain: match w.domain {
                wit::TimeDomain::EventTime => p::TimeDomain::EventTime,
                wit::TimeDomain::ProcessingTime => p::TimeDomain::ProcessingTime,
            },
            trigger: match w.trigger {
                wit::Trigger::Default => p::Trigger::Default,
                wit::Trigger::Count(n) => p::Trigger::Count(n),
            },
            allowed_lateness_ms: w.allowed_lateness_ms,
            late_port: w.late_port,
            function: match w.function {
                wit::WindowFunction::Aggregate => p::WindowFunction::Aggregate,
                wit::WindowFunction::Process => p::WindowFunction::Process,
            },
            mergeable: w.mergeable,
        }),
    }
}
