//! The wasmtime engine shared by every job of a process.

use crate::memory::SnapshotMemoryCreator;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::{Config, Engine, OptLevel};

/// How often the engine's epoch advances; call timeouts are counted in ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Settings that shape compiled code; instances of one engine share them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EngineOptions {
    /// Count fuel in guest code (deterministic CPU metering).
    pub fuel: bool,
}

/// A wasmtime engine with epoch interruption and snapshot-capable memories,
/// and the thread that advances its epoch.
#[derive(Clone)]
pub struct WasmEngine {
    pub(crate) engine: Engine,
    pub(crate) options: EngineOptions,
}

impl std::fmt::Debug for WasmEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmEngine")
            .field("options", &self.options)
            .finish()
    }
}

impl WasmEngine {
    pub fn new(options: EngineOptions) -> Result<WasmEngine, crate::WasmError> {
        let mut c = Config::new();
        c.wasm_component_model(true);
        c.epoch_interruption(true);
        c.consume_fuel(options.fuel);
        c.cranelift_opt_level(OptLevel::Speed);
        c.parallel_compilation(true);
        c.wasm_backtrace_max_frames(std::num::NonZeroUsize::new(20));
        // Host memories are plain mappings; data segments are copied in.
        c.memory_init_cow(false);
        // Indirect calls (every `dyn` call in a guest) skip the lazy-init
        // check; the tables of job modules are small.
        c.table_lazy_init(false);
        c.with_host_memory(Arc::new(SnapshotMemoryCreator));
        let engine = Engine::new(&c).map_err(|e| crate::WasmError::Engine(e.to_string()))?;
        start_ticker(&engine);
        Ok(WasmEngine { engine, options })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Identifies compiled code this engine can load.
    pub fn compatibility_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        use std::hash::Hash;
        struct H(Sha256);
        impl std::hash::Hasher for H {
            fn finish(&self) -> u64 {
                0
            }
            fn write(&mut self, bytes: &[u8]) {
                self.0.update(bytes);
            }
        }
        let mut h = H(Sha256::new());
        self.engine.precompile_compatibility_hash().hash(&mut h);
        hex::encode(&h.0.finalize()[..12])
    }
}

/// Advances the engine's epoch until the engine is dropped.
fn start_ticker(engine: &Engine) {
    let engine = engine.weak();
    std::thread::Builder::new()
        .name("weir-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                match engine.upgrade() {
                    Some(e) => e.increment_epoch(),
                    None => break,
                }
            }
        })
        .expect("spawning the epoch thread");
}
