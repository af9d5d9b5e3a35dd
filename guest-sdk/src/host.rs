//! The host's services as the SDK sees them: logging, keyed state, timers.
//!
//! In a component these are the `weir:stream/host` imports; in a native
//! build (benchmarks, tests) they go to the [`crate::native::Host`] the
//! caller installed for the duration of a call.

/// Severity of a log message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the job survives.
    Warn,
    /// A failure.
    Error,
}

/// Event time or processing time, for timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeDomain {
    /// Timestamps carried by records, advanced by watermarks.
    EventTime,
    /// The wall clock of the machine running the task.
    ProcessingTime,
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::{LogLevel, TimeDomain};
    use crate::wit::weir::stream::host as h;
    use crate::wit::weir::stream::types as t;

    pub fn log(level: LogLevel, message: &str) {
        let level = match level {
            LogLevel::Trace => h::LogLevel::Trace,
            LogLevel::Debug => h::LogLevel::Debug,
            LogLevel::Info => h::LogLevel::Info,
            LogLevel::Warn => h::LogLevel::Warn,
            LogLevel::Error => h::LogLevel::Error,
        };
        h::log(level, message);
    }

    pub fn state_get(state: u32, key: &[u8], ns: &[u8]) -> Option<Vec<u8>> {
        h::state_get(state, key, ns)
    }

    pub fn state_put(state: u32, key: &[u8], ns: &[u8], value: &[u8]) {
        h::state_put(state, key, ns, value)
    }

    pub fn state_delete(state: u32, key: &[u8], ns: &[u8]) {
        h::state_delete(state, key, ns)
    }

    pub fn state_append(state: u32, key: &[u8], ns: &[u8], value: &[u8]) {
        h::state_append(state, key, ns, value)
    }

    pub fn state_scan(state: u32, key: &[u8], prefix: &[u8]) -> Vec<u8> {
        h::state_scan(state, key, prefix)
    }

    pub fn state_write(state: u32, writes: &[u8]) {
        h::state_write(state, writes)
    }

    fn domain(d: TimeDomain) -> t::TimeDomain {
        match d {
            TimeDomain::EventTime => t::TimeDomain::EventTime,
            TimeDomain::ProcessingTime => t::TimeDomain::ProcessingTime,
        }
    }

    pub fn register_timer(d: TimeDomain, key: &[u8], ns: &[u8], ts: i64) {
        h::register_timer(domain(d), key, ns, ts)
    }

    pub fn delete_timer(d: TimeDomain, key: &[u8], ns: &[u8], ts: i64) {
        h::delete_timer(domain(d), key, ns, ts)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::{LogLevel, TimeDomain};
    use crate::native::Host;
    use std::cell::Cell;

    thread_local! {
        static HOST: Cell<Option<*mut (dyn Host + 'static)>> = const { Cell::new(None) };
    }

    /// Installs `host` for the duration of `f`.
    pub fn with_host<R>(host: &mut dyn Host, f: impl FnOnce() -> R) -> R {
        // SAFETY: the pointer is only dereferenced by `call` while `f` runs,
        // on this thread, and `host` outlives `f`. The lifetime is erased so
        // that the pointer fits the thread-local; the guard restores the
        // previous value even if `f` panics.
        let ptr: *mut (dyn Host + '_) = host;
        let ptr: *mut (dyn Host + 'static) = unsafe { std::mem::transmute(ptr) };
        struct Restore(Option<*mut (dyn Host + 'static)>);
        impl Drop for Restore {
            fn drop(&mut self) {
                HOST.with(|h| h.set(self.0));
            }
        }
        let _restore = Restore(HOST.with(|h| h.replace(Some(ptr))));
        f()
    }

    fn call<R>(f: impl FnOnce(&mut dyn Host) -> R) -> R {
        let ptr = HOST
            .with(|h| h.get())
            .expect("weir host services used outside of a call from the host");
        // SAFETY: set by `with_host` for the duration of the current call.
        f(unsafe { &mut *ptr })
    }

    pub fn log(level: LogLevel, message: &str) {
        match HOST.with(|h| h.get()) {
            Some(_) => call(|h| h.log(level, message)),
            None => eprintln!("[{level:?}] {message}"),
        }
    }

    pub fn state_get(state: u32, key: &[u8], ns: &[u8]) -> Option<Vec<u8>> {
        call(|h| h.state_get(state, key, ns))
    }

    pub fn state_put(state: u32, key: &[u8], ns: &[u8], value: &[u8]) {
        call(|h| h.state_put(state, key, ns, value))
    }

    pub fn state_delete(state: u32, key: &[u8], ns: &[u8]) {
        call(|h| h.state_delete(state, key, ns))
    }

    pub fn state_append(state: u32, key: &[u8], ns: &[u8], value: &[u8]) {
        call(|h| h.state_append(state, key, ns, value))
    }

    pub fn state_scan(state: u32, key: &[u8], prefix: &[u8]) -> Vec<u8> {
        call(|h| h.state_scan(state, key, prefix))
    }

    pub fn state_write(state: u32, writes: &[u8]) {
        call(|h| h.state_write(state, writes))
    }

    pub fn register_timer(d: TimeDomain, key: &[u8], ns: &[u8], ts: i64) {
        call(|h| h.register_timer(d, key, ns, ts))
    }

    pub fn delete_timer(d: TimeDomain, key: &[u8], ns: &[u8], ts: i64) {
        call(|h| h.delete_timer(d, key, ns, ts))
    }
}

pub(crate) use imp::*;
