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

/// Memory and table limits of one instance, recording the first refusal so
/// that the failure can name the limit and the size asked for.
#[derive(Debug)]
pub(crate) struct Limiter {
    pub memory_limit: u64,
    pub denied: Option<(usize, u64)>,
    pub peak: usize,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.memory_limit {
            self.denied.get_or_insert((desired, self.memory_limit));
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
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
