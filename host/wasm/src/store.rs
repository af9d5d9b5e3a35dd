//! What each Store holds: WASI context, limits, and the task's host services
//! for the duration of a call; and the host side of `weir:stream/host`.

use crate::bindings::weir::stream::host as wit_host;
use crate::bindings::{weir::stream::types as wit_types, wit};
use std::ptr::NonNull;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxView, WasiView};
use weir_core::guest::log_to_host;
use weir_core::{Failure, HostServices, LogLevel};

/// Largest log message kept from a guest.
const MAX_LOG: usize = 4096;

/// Bytes one table element takes in the host.
const TABLE_ELEMENT: u64 = 16;
/// Most elements of one table.
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

/// The memory limit of one instance: all its linear memories and tables
/// together, plus the copy of its memories a memory snapshot keeps, must
/// stay within `memory_limit`. Records the first refusal so that the
/// failure can name the limit and the size asked for.
#[derive(Debug)]
pub(crate) struct Limiter {
    pub memory_limit: u64,
    /// (bytes the instance would have used, the limit).
    pub denied: Option<(u64, u64)>,
    /// Bytes of linear memory, all memories together.
    pub memories: u64,
    /// Bytes of table elements, all tables together.
    pub tables: u64,
    /// Bytes of the last memory image the task keeps.
    pub image: u64,
    /// Most bytes used at once.
    pub peak: u64,
}

impl Limiter {
    pub fn new(memory_limit: u64) -> Self {
        Limiter {
            memory_limit,
            denied: None,
            memories: 0,
            tables: 0,
            image: 0,
            peak: 0,
        }
    }

    pub fn used(&self) -> u64 {
        self.memories + self.tables + self.image
    }

    fn admit(&mut self, total: u64) -> bool {
        if total > self.memory_limit {
            self.denied.get_or_insert((total, self.memory_limit));
            return false;
        }
        self.peak = self.peak.max(total);
        true
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grow = (desired as u64).saturating_sub(current as u64);
        if !self.admit(self.used().saturating_add(grow)) {
            return Ok(false);
        }
        self.memories += grow;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        let grow = (desired.saturating_sub(current) as u64) * TABLE_ELEMENT;
        if !self.admit(self.used().saturating_add(grow)) {
            return Ok(false);
        }
        self.tables += grow;
        Ok(true)
    }
}

/// The task's host services, lent to the store for one call.
///
/// The pointer is set by [`crate::instance`] right before calling into the
/// guest and cleared right after; import functions only run inside that
/// call, on the same thread. The lifetime is erased because a `Store`'s data
/// must be `'static`.
#[derive(Default)]
pub(crate) struct HostSlot(Option<NonNull<dyn HostServices + 'static>>);

// SAFETY: the pointer is only dereferenced on the thread running the call
// that installed it; `HostServices: Send`.
unsafe impl Send for HostSlot {}

impl HostSlot {
    pub fn install(&mut self, host: &mut dyn HostServices) {
        let ptr: NonNull<dyn HostServices + '_> = NonNull::from(host);
        // SAFETY: lifetime erasure only; `clear` runs before the borrow ends.
        self.0 = Some(unsafe {
            std::mem::transmute::<NonNull<dyn HostServices + '_>, NonNull<dyn HostServices + 'static>>(
                ptr,
            )
        });
    }

    pub fn clear(&mut self) {
        self.0 = None;
    }

    fn get(&mut self) -> wasmtime::Result<&mut dyn HostServices> {
        match self.0 {
            // SAFETY: installed for the call now running (see type docs).
            Some(mut p) => Ok(unsafe { p.as_mut() }),
            None => Err(wasmtime::Error::new(Failure::internal(
                "a guest called the host outside of a call",
            ))),
        }
    }
}

pub(crate) struct StoreData {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: Limiter,
    pub host: HostSlot,
    pub task: String,
    /// The last error the guest logged (a panic message, typically).
    pub last_error: Option<String>,
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn trap(f: Failure) -> wasmtime::Error {
    wasmtime::Error::new(f)
}

fn domain(d: wit::TimeDomain) -> weir_core::TimeDomain {
    crate::convert::domain(d)
}

impl wit_types::Host for StoreData {}

impl wit_host::Host for StoreData {
    fn log(&mut self, level: wit_host::LogLevel, message: String) -> wasmtime::Result<()> {
        let mut message = message;
        if message.len() > MAX_LOG {
            let mut cut = MAX_LOG;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let level = match level {
            wit_host::LogLevel::Trace => LogLevel::Trace,
            wit_host::LogLevel::Debug => LogLevel::Debug,
            wit_host::LogLevel::Info => LogLevel::Info,
            wit_host::LogLevel::Warn => LogLevel::Warn,
            wit_host::LogLevel::Error => LogLevel::Error,
        };
        if level == LogLevel::Error {
            self.last_error = Some(message.clone());
        }
        match self.host.get() {
            Ok(h) => h.log(level, &message),
            Err(_) => log_to_host(level, &self.task, &message),
        }
        Ok(())
    }

    fn state_get(
        &mut self,
        state: u32,
        key: Vec<u8>,
        namespace: Vec<u8>,
    ) -> wasmtime::Result<Option<Vec<u8>>> {
        self.host
            .get()?
            .state_get(state, &key, &namespace)
            .map_err(trap)
    }

    fn state_put(
        &mut self,
        state: u32,
        key: Vec<u8>,
        namespace: Vec<u8>,
        value: Vec<u8>,
    ) -> wasmtime::Result<()> {
        self.host
            .get()?
            .state_put(state, &key, &namespace, &value)
            .map_err(trap)
    }

    fn state_delete(
        &mut self,
        state: u32,
        key: Vec<u8>,
        namespace: Vec<u8>,
    ) -> wasmtime::Result<()> {
        self.host
            .get()?
            .state_delete(state, &key, &namespace)
            .map_err(trap)
    }

    fn state_append(
        &mut self,
        state: u32,
        key: Vec<u8>,
        namespace: Vec<u8>,
        value: Vec<u8>,
    ) -> wasmtime::Result<()> {
        self.host
            .get()?
            .state_append(state, &key, &namespace, &value)
            .map_err(trap)
    }

    fn state_scan(
        &mut self,
        state: u32,
        key: Vec<u8>,
        prefix: Vec<u8>,
    ) -> wasmtime::Result<Vec<u8>> {
        self.host
            .get()?
            .state_scan(state, &key, &prefix)
            .map_err(trap)
    }

    fn state_write(&mut self, state: u32, writes: Vec<u8>) -> wasmtime::Result<()> {
        self.host.get()?.state_write(state, &writes).map_err(trap)
    }

    fn register_timer(
        &mut self,
        d: wit::TimeDomain,
        key: Vec<u8>,
        namespace: Vec<u8>,
        timestamp: i64,
    ) -> wasmtime::Result<()> {
        self.host
            .get()?
            .register_timer(domain(d), &key, &namespace, timestamp)
            .map_err(trap)
    }

    fn delete_timer(
        &mut self,
        d: wit::TimeDomain,
        key: Vec<u8>,
        namespace: Vec<u8>,
        timestamp: i64,
    ) -> wasmtime::Result<()> {
        self.host
            .get()?
            .delete_timer(domain(d), &key, &namespace, timestamp)
            .map_err(trap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::{Engine, Instance, Module, Store};

    fn instantiate(wat: &str, limit: u64) -> Result<Limiter, Limiter> {
        let engine = Engine::default();
        let module = Module::new(&engine, wat).unwrap();
        let mut store = Store::new(&engine, Limiter::new(limit));
        store.limiter(|l| l);
        match Instance::new(&mut store, &module, &[]) {
            Ok(_) => Ok(std::mem::replace(store.data_mut(), Limiter::new(0))),
            Err(_) => Err(std::mem::replace(store.data_mut(), Limiter::new(0))),
        }
    }

    #[test]
    fn the_limit_holds_for_all_memories_and_tables_together() {
        // Two memories of 40 MiB each: each fits a 64 MiB limit, both do not.
        let two = "(module (memory 640) (memory 640))";
        let denied = instantiate(two, 64 << 20).unwrap_err();
        assert_eq!(denied.denied, Some((80 << 20, 64 << 20)));
        let fits = instantiate(two, 100 << 20).unwrap();
        assert_eq!(fits.memories, 80 << 20);
        // A big table counts too.
        let table = "(module (memory 640) (table 1000000 funcref))";
        assert!(instantiate(table, 48 << 20).is_err());
        assert!(instantiate(table, 64 << 20).is_ok());
    }
}
