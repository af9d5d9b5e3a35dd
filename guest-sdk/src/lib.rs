//! Write Weir stream jobs in Rust.
//!
//! A Weir job is one WebAssembly component. This crate gives it a
//! DataStream-style builder, as Flink's: sources, `map`, `flat_map`,
//! `filter`, `key_by`, `reduce`, `sum`, `aggregate`, event time and
//! watermarks, windows, keyed process functions with state and timers,
//! sinks; each operator can be given a `uid`, a `name` and a `parallelism`. The job is one annotated
//! function; the host calls it to get the graph (`plan`), then calls back into
//! the component to run the functions over batches of records.
//!
//! ```no_run
//! use weir_sdk::prelude::*;
//!
//! #[weir_sdk::job]
//! fn wordcount(env: &mut Env, args: &Args) -> Result<(), Error> {
//!     env.read_text_file(args.required("input")?)
//!         .flat_map(|line: String| {
//!             line.split_whitespace().map(|w| (w.to_owned(), 1i64)).collect::<Vec<_>>()
//!         })
//!         .key_by(|(word, _)| word.clone())
//!         .sum(|(_, count)| count)
//!         .uid("counts")
//!         .print();
//!     Ok(())
//! }
//! # fn main() {}
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2 --release` and run the
//! resulting `.wasm` with `weir run`.
//!
//! Values travel between operators encoded with `postcard` (any type that
//! implements serde's `Serialize` and `Deserialize`); keys are encoded the
//! same way and hashed by the host into key groups.

mod aggregate;
#[doc(hidden)]
pub mod alloc;
mod args;
mod co;
mod codec;
pub mod connectors;
mod env;
mod error;
mod host;
mod keyed;
/// Nexmark's events and their encoding (see [`connectors::Nexmark`]).
pub use weir_frame::nexmark;
#[doc(hidden)]
pub use weir_frame::plan;
mod process;
mod runtime;
mod stage;
mod stream;
mod watermark;
mod window;

#[cfg(not(target_arch = "wasm32"))]
#[doc(hidden)]
pub mod native;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod wit;

pub use aggregate::AggregateFunction;
pub use args::Args;
pub use co::{
    CoFlatMapFunction, ConnectedKeyedStreams, ConnectedStreams, Either, IntervalJoin,
    IntervalJoined, JoinContext, JoinKeyed, JoinWhere, JoinWindowed, JoinedStreams,
    KeyedCoProcessFunction,
};
pub use env::{Env, RuntimeMode};
pub use error::Error;
pub use host::{LogLevel, TimeDomain};
pub use keyed::KeyedStream;
pub use plan::StateDescriptor;
pub use process::{
    Context, KeyedProcessFunction, ListHandle, ListState, MapHandle, MapState, TimerService,
    ValueHandle, ValueState,
};
pub use stage::Collector;
pub use stream::{DataStream, SinkHandle};
pub use watermark::WatermarkStrategy;
pub use weir_sdk_macros::job;
pub use window::{
    CountTrigger, EventTimeSessionWindows, GlobalWindows, OutputTag, ProcessingTimeSessionWindows,
    SlidingEventTimeWindows, SlidingProcessingTimeWindows, TimeWindow, Trigger,
    TumblingEventTimeWindows, TumblingProcessingTimeWindows, WindowedStream, Windows,
};

/// The signature of a job function: it adds operators to `env`.
pub type JobFn = fn(&mut Env, &Args) -> Result<(), Error>;

/// The jobs a component exports, by entry name; built by `#[weir_sdk::job]`.
#[derive(Clone, Copy)]
pub struct Jobs(pub &'static [(&'static str, JobFn)]);

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(n, _)| n))
            .finish()
    }
}

/// Everything a job function usually needs.
pub mod prelude {
    pub use crate::{
        AggregateFunction, Args, CoFlatMapFunction, Collector, Context, CountTrigger, DataStream,
        Either, Env, Error, EventTimeSessionWindows, GlobalWindows, JoinContext,
        KeyedCoProcessFunction, KeyedProcessFunction, KeyedStream, ListState, MapState, OutputTag,
        ProcessingTimeSessionWindows, RuntimeMode, SlidingEventTimeWindows,
        SlidingProcessingTimeWindows, StateDescriptor, TimeDomain, TimeWindow,
        TumblingEventTimeWindows, TumblingProcessingTimeWindows, ValueState, WatermarkStrategy,
    };
    pub use std::time::Duration;
}

/// Logs a message through the host (it appears in the host's log with the
/// task that wrote it).
///
/// ```no_run
/// weir_sdk::log(weir_sdk::LogLevel::Info, "starting");
/// ```
pub fn log(level: LogLevel, message: &str) {
    host::log(level, message);
}

#[doc(hidden)]
pub mod __rt {
    //! Entry points used by the code `#[weir_sdk::job]` generates.
    pub use crate::runtime::*;
}

/// Generates the component export glue for a list of jobs; used by
/// `#[weir_sdk::job]`.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_jobs {
    ($jobs:path) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct WeirComponent;
            impl $crate::wit::exports::weir::stream::job::Guest for WeirComponent {
                fn entries() -> ::std::vec::Vec<::std::string::String> {
                    $crate::wit::entries($jobs)
                }
                fn plan(
                    entry: ::std::option::Option<::std::string::String>,
                    args: ::std::vec::Vec<::std::string::String>,
                ) -> ::std::result::Result<
                    $crate::wit::weir::stream::types::JobPlan,
                    $crate::wit::weir::stream::types::GuestError,
                > {
                    $crate::wit::plan($jobs, entry, args)
                }
                fn run_stages(
                    stages: ::std::vec::Vec<u32>,
                    batch: ::std::vec::Vec<u8>,
                ) -> $crate::wit::CallResult {
                    $crate::wit::run_stages(stages, batch)
                }
                fn aggregate(
                    op: u32,
                    batch: ::std::vec::Vec<u8>,
                    slots: ::std::vec::Vec<u32>,
                    emit: bool,
                ) -> $crate::wit::CallResult {
                    $crate::wit::aggregate(op, batch, slots, emit)
                }
                fn fire(
                    op: u32,
                    batch: ::std::vec::Vec<u8>,
                    slots: ::std::vec::Vec<u32>,
                    purge: bool,
                ) -> $crate::wit::CallResult {
                    $crate::wit::fire(op, batch, slots, purge)
                }
                fn process_window(op: u32, batch: ::std::vec::Vec<u8>) -> $crate::wit::CallResult {
                    $crate::wit::process_window(op, batch)
                }
                fn process(
                    op: u32,
                    batch: ::std::vec::Vec<u8>,
                    context: $crate::wit::weir::stream::types::ProcessContext,
                ) -> $crate::wit::CallResult {
                    $crate::wit::process(op, batch, context)
                }
                fn on_timer(
                    op: u32,
                    domain: $crate::wit::weir::stream::types::TimeDomain,
                    timers: ::std::vec::Vec<u8>,
                    context: $crate::wit::weir::stream::types::ProcessContext,
                ) -> $crate::wit::CallResult {
                    $crate::wit::on_timer(op, domain, timers, context)
                }
                fn merge_windows(
                    op: u32,
                    batch: ::std::vec::Vec<u8>,
                    slots: ::std::vec::Vec<u32>,
                ) -> ::std::result::Result<(), $crate::wit::weir::stream::types::GuestError>
                {
                    $crate::wit::merge_windows(op, batch, slots)
                }
                fn flush(
                    op: u32,
                    forget: bool,
                ) -> ::std::result::Result<(), $crate::wit::weir::stream::types::GuestError>
                {
                    $crate::wit::flush(op, forget)
                }
                fn save() -> ::std::result::Result<
                    ::std::option::Option<::std::vec::Vec<u8>>,
                    $crate::wit::weir::stream::types::GuestError,
                > {
                    $crate::wit::save()
                }
                fn restore(
                    from_version: ::std::string::String,
                    state: ::std::vec::Vec<u8>,
                ) -> ::std::result::Result<(), $crate::wit::weir::stream::types::GuestError>
                {
                    $crate::wit::restore(from_version, state)
                }
            }
    $crate::wit::__export_wit_component!(WeirComponent with_types_in $crate::wit);

            #[global_allocator]
            static WEIR_ALLOCATOR: $crate::alloc::Allocator = $crate::alloc::Allocator::new();
        };
    };
}
