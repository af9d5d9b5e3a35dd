//! The component glue: WIT bindings and the exports `#[weir_sdk::job]`
//! expands to. Compiled only for `wasm32`.

use crate::plan;
use crate::runtime::Runtime;
use crate::{Error, Jobs};
use std::cell::RefCell;

wit_bindgen::generate!({
    path: "../wit",
    world: "job-world",
    pub_export_macro: true,
    export_macro_name: "__export_wit_component",
    default_bindings_module: "weir_sdk::wit",
});

use weir::stream::types as t;

/// What every batch call returns.
pub type CallResult = Result<t::Output, t::GuestError>;

thread_local! {
    static RT: RefCell<Runtime> = RefCell::new(Runtime::new());
}

fn guest_error(e: Error) -> t::GuestError {
    t::GuestError {
        message: e.message().to_owned(),
    }
}

fn with_rt<R>(f: impl FnOnce(&mut Runtime) -> Result<R, Error>) -> Result<R, t::GuestError> {
    RT.with(|rt| f(&mut rt.borrow_mut())).map_err(guest_error)
}

fn with_rt_out(
    f: impl FnOnce(&mut Runtime) -> Result<crate::runtime::Output, Error>,
) -> CallResult {
    with_rt(f).map(|o| t::Output {
        main: o.main,
        records: o.records,
        side: o.side,
    })
}

fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            crate::host::log(crate::LogLevel::Error, &format!("guest panicked: {info}"));
        }));
    });
}

pub fn entries(jobs: Jobs) -> Vec<String> {
    crate::runtime::entries(jobs)
}

pub fn plan(
    jobs: Jobs,
    entry: Option<String>,
    args: Vec<String>,
) -> Result<t::JobPlan, t::GuestError> {
    install_panic_hook();
    with_rt(|rt| rt.plan(jobs, entry.as_deref(), &args)).map(to_wit)
}

pub fn run_stages(stages: Vec<u32>, batch: Vec<u8>) -> CallResult {
    with_rt_out(|rt| rt.run_stages(&stages, &batch))
}

pub fn aggregate(op: u32, batch: Vec<u8>, slots: Vec<u32>, emit: bool) -> CallResult {
    with_rt_out(|rt| rt.aggregate(op, &batch, &slots, emit))
}

pub fn fire(op: u32, batch: Vec<u8>, slots: Vec<u32>, purge: bool) -> CallResult {
    with_rt_out(|rt| rt.fire(op, &batch, &slots, purge))
}

pub fn process_window(op: u32, batch: Vec<u8>) -> CallResult {
    with_rt_out(|rt| rt.process_window(op, &batch))
}

pub fn process(op: u32, batch: Vec<u8>, cx: t::ProcessContext) -> CallResult {
    with_rt_out(|rt| rt.process(op, &batch, cx.current_watermark, cx.processing_time))
}

pub fn on_timer(op: u32, d: t::TimeDomain, timers: Vec<u8>, cx: t::ProcessContext) -> CallResult {
    let domain = match d {
        t::TimeDomain::EventTime => crate::TimeDomain::EventTime,
        t::TimeDomain::ProcessingTime => crate::TimeDomain::ProcessingTime,
    };
    with_rt_out(|rt| {
        rt.on_timer(
            op,
            domain,
            &timers,
            cx.current_watermark,
            cx.processing_time,
        )
    })
}

pub fn merge_windows(op: u32, batch: Vec<u8>, slots: Vec<u32>) -> Result<(), t::GuestError> {
    with_rt(|rt| rt.merge_windows(op, &batch, &slots))
}

pub fn flush(op: u32, forget: bool) -> Result<(), t::GuestError> {
    with_rt(|rt| rt.flush(op, forget))
}

pub fn save() -> Result<Option<Vec<u8>>, t::GuestError> {
    with_rt(|rt| rt.save())
}

pub fn restore(from_version: String, state: Vec<u8>) -> Result<(), t::GuestError> {
    with_rt(|rt| rt.restore(&from_version, &state))
}

fn to_wit(p: plan::Plan) -> t::JobPlan {
    t::JobPlan {
        name: p.name,
        version: p.version,
        config: p.config,
        operators: p.operators.into_iter().map(operator).collect(),
        has_state_hooks: p.has_state_hooks,
    }
}

fn operator(o: plan::Operator) -> t::Operator {
    t::Operator {
        uid: o.uid,
        name: o.name,
        parallelism: o.parallelism,
        inputs: o
            .inputs
            .into_iter()
            .map(|e| t::Edge {
                from: e.from,
                port: e.port,
                partitioning: match e.partitioning {
                    plan::Partitioning::Forward => t::Partitioning::Forward,
                    plan::Partitioning::Rebalance => t::Partitioning::Rebalance,
                    plan::Partitioning::Hash => t::Partitioning::Hash,
                    plan::Partitioning::Broadcast => t::Partitioning::Broadcast,
                },
            })
            .collect(),
        kind: kind(o.kind),
        states: o
            .states
            .into_iter()
            .map(|s| t::StateDescriptor {
                name: s.name,
                kind: match s.kind {
                    plan::StateKind::Value => t::StateKind::Value,
                    plan::StateKind::List => t::StateKind::List,
                    plan::StateKind::Map => t::StateKind::Map,
                },
            })
            .collect(),
        side_outputs: o.side_outputs,
    }
}

fn connector(c: plan::Connector) -> t::Connector {
    t::Connector {
        kind: c.kind,
        options: c.options,
    }
}

fn watermarks(w: plan::WatermarkSpec) -> t::WatermarkSpec {
    t::WatermarkSpec {
        max_out_of_orderness_ms: w.max_out_of_orderness_ms,
        idle_timeout_ms: w.idle_timeout_ms,
    }
}

fn domain(d: plan::TimeDomain) -> t::TimeDomain {
    match d {
        plan::TimeDomain::EventTime => t::TimeDomain::EventTime,
        plan::TimeDomain::ProcessingTime => t::TimeDomain::ProcessingTime,
    }
}

fn kind(k: plan::OperatorKind) -> t::OperatorKind {
    use plan::OperatorKind as K;
    match k {
        K::Source(s) => t::OperatorKind::Source(t::SourceSpec {
            connector: connector(s.connector),
            timestamps: match s.timestamps {
                plan::TimestampSource::None => t::TimestampSource::None,
                plan::TimestampSource::Connector => t::TimestampSource::Connector,
                plan::TimestampSource::Guest => t::TimestampSource::Guest,
            },
            watermarks: s.watermarks.map(watermarks),
        }),
        K::Sink(c) => t::OperatorKind::Sink(connector(c)),
        K::Stage(s) => t::OperatorKind::Stage(match s {
            plan::StageKind::Map => t::StageKind::Map,
            plan::StageKind::FlatMap => t::StageKind::FlatMap,
            plan::StageKind::Filter => t::StageKind::Filter,
            plan::StageKind::KeyBy => t::StageKind::KeyBy,
            plan::StageKind::Timestamps => t::StageKind::Timestamps,
            plan::StageKind::Encode => t::StageKind::Encode,
            plan::StageKind::Decode => t::StageKind::Decode,
        }),
        K::Aggregate => t::OperatorKind::Aggregate,
        K::Process => t::OperatorKind::Process,
        K::Watermarks(w) => t::OperatorKind::Watermarks(watermarks(w)),
        K::Window(w) => t::OperatorKind::Window(t::WindowSpec {
            assigner: match w.assigner {
                plan::WindowAssigner::Tumbling { size_ms, offset_ms } => {
                    t::WindowAssigner::Tumbling(t::TumblingWindow { size_ms, offset_ms })
                }
                plan::WindowAssigner::Sliding {
                    size_ms,
                    slide_ms,
                    offset_ms,
                } => t::WindowAssigner::Sliding(t::SlidingWindow {
                    size_ms,
                    slide_ms,
                    offset_ms,
                }),
                plan::WindowAssigner::Session { gap_ms } => {
                    t::WindowAssigner::Session(t::SessionWindow { gap_ms })
                }
                plan::WindowAssigner::Global => t::WindowAssigner::Global,
            },
            domain: domain(w.domain),
            trigger: match w.trigger {
                plan::Trigger::Default => t::Trigger::Default,
                plan::Trigger::Count(n) => t::Trigger::Count(n),
            },
            allowed_lateness_ms: w.allowed_lateness_ms,
            late_port: w.late_port,
            function: match w.function {
                plan::WindowFunction::Aggregate => t::WindowFunction::Aggregate,
                plan::WindowFunction::Process => t::WindowFunction::Process,
            },
            mergeable: w.mergeable,
        }),
    }
}
