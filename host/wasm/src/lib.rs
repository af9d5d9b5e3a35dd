//! The wasmtime side of Weir: turns a `.wasm` job into instances the
//! runtime can call.
//!
//! A job component is checked ([`module::classify`], the exported
//! `weir:stream/job` interface), compiled once per content hash and engine
//! (cached on disk), linked against WASI (with no filesystem, network or
//! environment) and the `weir:stream/host` imports, and pre-instantiated.
//! Each task then gets its own [`WasmGuest`]: one Store, one instance, a
//! memory limit and a per-call CPU deadline (epoch interruption). A trap
//! fails only that task, with the guest's message. Linear memories are
//! provided by the host ([`memory`]) so that a task can snapshot and restore
//! them between calls at no cost to guest code.

mod bindings;
mod console;
mod convert;
mod engine;
mod instance;
mod memory;
mod module;
mod outside_memory;
mod store;

pub use engine::{EPOCH_TICK, EngineOptions, WasmEngine};
pub use instance::{InstanceLimits, JobOutput, WasmGuest, WasmJob, job_entries, plan_job};
pub use module::{
    CompileCache, JOB_INTERFACE, JobModule, WasmKind, classify, compile_isolated, compile_to_cache,
    component_imports, module_hash,
};

/// Why a `.wasm` file cannot be used as a job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WasmError {
    #[error(
        "the file is not WebAssembly (it does not start with the \\0asm header); \
         give the .wasm component built from your job"
    )]
    NotWasm,
    #[error(
        "the file is a core WebAssembly module, not a component; build the job with \
         `cargo build --target wasm32-wasip2` (which produces a component) or wrap the \
         module with `wasm-tools component new`"
    )]
    CoreModule,
    #[error("the component does not compile: {0}")]
    Compile(String),
    #[error(
        "the component is not a Weir job: it must export {JOB_INTERFACE}, but {0}. \
         Build it with the weir-sdk crate (#[weir_sdk::job])"
    )]
    WrongWorld(String),
    #[error(
        "the component was built for {0}, but this Weir runs {JOB_INTERFACE}; rebuild it \
         with a weir-sdk matching this Weir"
    )]
    WrongVersion(String),
    #[error("the component needs imports Weir does not provide: {0}")]
    Link(String),
    #[error("cannot start the WebAssembly engine: {0}")]
    Engine(String),
    #[error(
        "compiling the component took longer than {0:?} (weir.compile.timeout) and was \
         stopped; a job this large or complex needs a longer timeout"
    )]
    CompileTimeout(std::time::Duration),
    /// [`JobModule::load_precompiled`] found no usable compiled component.
    #[error("the component is not in the compile cache")]
    NotCompiled,
}
