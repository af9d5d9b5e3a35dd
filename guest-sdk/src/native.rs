//! Running a job natively, without a component: the same plan and the same
//! functions, called directly. The host uses this to measure what the
//! WebAssembly boundary costs, and to test its runtime without compiling
//! components.

use crate::host::{LogLevel, TimeDomain};
use crate::plan::Plan;
pub use crate::runtime::Output;
use crate::runtime::Runtime;
use crate::{Error, Jobs};

/// The host services a native instance calls back into.
pub trait Host {
    fn log(&mut self, level: LogLevel, message: &str);
    fn state_get(&mut self, state: u32, key: &[u8], ns: &[u8]) -> Option<Vec<u8>>;
    fn state_put(&mut self, state: u32, key: &[u8], ns: &[u8], value: &[u8]);
    fn state_delete(&mut self, state: u32, key: &[u8], ns: &[u8]);
    fn state_append(&mut self, state: u32, key: &[u8], ns: &[u8], value: &[u8]);
    fn state_scan(&mut self, state: u32, key: &[u8], prefix: &[u8]) -> Vec<u8>;
    fn state_write(&mut self, state: u32, writes: &[u8]);
    fn register_timer(&mut self, domain: TimeDomain, key: &[u8], ns: &[u8], ts: i64);
    fn delete_timer(&mut self, domain: TimeDomain, key: &[u8], ns: &[u8], ts: i64);
}

/// One native instance of a job: what one component instance is.
pub struct Instance {
    jobs: Jobs,
    rt: Runtime,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("jobs", &self.jobs)
            .finish()
    }
}

fn guarded<R>(host: &mut dyn Host, f: impl FnOnce() -> Result<R, Error>) -> Result<R, Error> {
    crate::host::with_host(host, || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_owned());
            Err(Error::new(format!("guest panicked: {msg}")))
        })
    })
}

impl Instance {
    /// A new instance of the jobs in `jobs`.
    pub fn new(jobs: Jobs) -> Self {
        Instance {
            jobs,
            rt: Runtime::new(),
        }
    }

    pub fn entries(&self) -> Vec<String> {
        crate::runtime::entries(self.jobs)
    }

    pub fn plan(
        &mut self,
        host: &mut dyn Host,
        entry: Option<&str>,
        args: &[String],
    ) -> Result<Plan, Error> {
        let (jobs, rt) = (self.jobs, &mut self.rt);
        guarded(host, || rt.plan(jobs, entry, args))
    }

    pub fn run_stages(
        &mut self,
        host: &mut dyn Host,
        stages: &[u32],
        batch: &[u8],
    ) -> Result<Output, Error> {
        guarded(host, || self.rt.run_stages(stages, batch))
    }

    pub fn aggregate(
        &mut self,
        host: &mut dyn Host,
        op: u32,
        batch: &[u8],
        slots: &[u32],
        emit: bool,
    ) -> Result<Output, Error> {
        guarded(host, || self.rt.aggregate(op, batch, slots, emit))
    }

    pub fn fire(
        &mut self,
        host: &mut dyn Host,
        op: u32,
        batch: &[u8],
        slots: &[u32],
        purge: bool,
    ) -> Result<Output, Error> {
        guarded(host, || self.rt.fire(op, batch, slots, purge))
    }

    pub fn merge_windows(
        &mut self,
        host: &mut dyn Host,
        op: u32,
        batch: &[u8],
        slots: &[u32],
    ) -> Result<(), Error> {
        guarded(host, || self.rt.merge_windows(op, batch, slots))
    }

    pub fn process_window(
        &mut self,
        host: &mut dyn Host,
        op: u32,
        batch: &[u8],
    ) -> Result<Output, Error> {
        guarded(host, || self.rt.process_window(op, batch))
    }

    pub fn process(
        &mut self,
        host: &mut dyn Host,
        op: u32,
        batch: &[u8],
        watermark: i64,
        now: i64,
    ) -> Result<Output, Error> {
        guarded(host, || self.rt.process(op, batch, watermark, now))
    }

    pub fn on_timer(
        &mut self,
        host: &mut dyn Host,
        op: u32,
        domain: TimeDomain,
        timers: &[u8],
        watermark: i64,
        now: i64,
    ) -> Result<Output, Error> {
        guarded(host, || {
            self.rt.on_timer(op, domain, timers, watermark, now)
        })
    }

    pub fn flush(&mut self, host: &mut dyn Host, op: u32, forget: bool) -> Result<(), Error> {
        guarded(host, || self.rt.flush(op, forget))
    }

    pub fn save(&mut self, host: &mut dyn Host) -> Result<Option<Vec<u8>>, Error> {
        guarded(host, || self.rt.save())
    }

    pub fn restore(
        &mut self,
        host: &mut dyn Host,
        from_version: &str,
        state: &[u8],
    ) -> Result<(), Error> {
        guarded(host, || self.rt.restore(from_version, state))
    }
}
