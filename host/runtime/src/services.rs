//! The host services a task lends to its guest during calls: keyed state
//! of the operator being called, timers and logging.

use std::collections::HashMap;
use weir_core::guest::log_to_host;
use weir_core::plan::StateKind;
use weir_core::{Failure, HostServices, LogLevel, TimeDomain};
use weir_state::{KeyedStateBackend, StateError, StateId, Timer, TimerScan};

/// The timer services of one keyed operator: a column family per time
/// domain, and a lower bound of the earliest timer in each, so that asking
/// for due timers costs nothing until one may be due.
#[derive(Debug)]
pub(crate) struct OpTimers {
    event: DomainTimers,
    processing: DomainTimers,
}

/// The timers of one operator in one time domain.
#[derive(Debug)]
struct DomainTimers {
    id: StateId,
    /// At most the earliest timer.
    next: Option<i64>,
    /// The scan for due timers under way, and how many passes it made.
    scan: Option<(TimerScan, usize)>,
    /// The earliest timer registered while the scan was under way.
    registered: Option<i64>,
}

impl DomainTimers {
    fn new(id: StateId, next: Option<i64>) -> Self {
        DomainTimers {
            id,
            next,
            scan: None,
            registered: None,
        }
    }
}

impl OpTimers {
    fn of(&mut self, d: TimeDomain) -> &mut DomainTimers {
        match d {
            TimeDomain::EventTime => &mut self.event,
            TimeDomain::ProcessingTime => &mut self.processing,
        }
    }
}

/// Most passes one advance of time makes over the timers of an operator:
/// timers registered by timers for a time already passed, behind the scan,
/// are found by the next pass.
const MAX_TIMER_PASSES: usize = 1_000;

/// Per-task host services.
pub(crate) struct TaskHost {
    pub task: String,
    pub backend: Option<KeyedStateBackend>,
    /// The operator the task is calling into.
    pub current_op: u32,
    /// (operator, declared state index) -> backend state.
    pub states: HashMap<(u32, u32), StateId>,
    /// Timer services of keyed operators that have them.
    pub timers: HashMap<u32, OpTimers>,
}

pub(crate) fn state_failure(e: StateError) -> Failure {
    Failure::external(format!(
        "{e}; check the disk of the task's working directory"
    ))
}

fn no_timers() -> Failure {
    Failure::user("timers are only available in keyed process functions and windows")
}

impl TaskHost {
    pub fn new(task: String, backend: Option<KeyedStateBackend>) -> Self {
        TaskHost {
            task,
            backend,
            current_op: u32::MAX,
            states: HashMap::new(),
            timers: HashMap::new(),
        }
    }

    /// A lower bound of the earliest processing-time timer of any operator.
    pub fn next_processing_timer(&self) -> Option<i64> {
        self.timers.values().filter_map(|t| t.processing.next).min()
    }

    pub fn backend(&mut self) -> Result<&mut KeyedStateBackend, Failure> {
        self.backend
            .as_mut()
            .ok_or_else(|| Failure::internal("keyed operator without keyed state"))
    }

    /// Registers an internal state of operator `op` (window contents,
    /// session sets, counts), restored with the operator's uid.
    pub fn internal_state(
        &mut self,
        uid: &str,
        name: &str,
        kind: StateKind,
    ) -> Result<StateId, Failure> {
        self.backend()?
            .register(uid, name, kind)
            .map_err(state_failure)
    }

    /// Gives operator `op` (uid `uid`) timer services, picking up the
    /// timers of a restored backend.
    pub fn add_timers(&mut self, op: u32, uid: &str) -> Result<(), Failure> {
        let event = self.internal_state(uid, "weir.timers.event", StateKind::Value)?;
        let processing = self.internal_state(uid, "weir.timers.processing", StateKind::Value)?;
        let b = self.backend()?;
        let next_event = b.next_timer(event).map_err(state_failure)?;
        let next_processing = b.next_timer(processing).map_err(state_failure)?;
        self.timers.insert(
            op,
            OpTimers {
                event: DomainTimers::new(event, next_event),
                processing: DomainTimers::new(processing, next_processing),
            },
        );
        Ok(())
    }

    fn op_timers(&mut self, op: u32) -> Result<&mut OpTimers, Failure> {
        self.timers.get_mut(&op).ok_or_else(no_timers)
    }

    pub fn put_timer(
        &mut self,
        op: u32,
        d: TimeDomain,
        key: &[u8],
        ns: &[u8],
        ts: i64,
    ) -> Result<(), Failure> {
        let backend = self
            .backend
            .as_mut()
            .ok_or_else(|| Failure::internal("timers without keyed state"))?;
        let t = self.timers.get_mut(&op).ok_or_else(no_timers)?.of(d);
        t.next = Some(t.next.map_or(ts, |n| n.min(ts)));
        if let Some((scan, _)) = &t.scan
            && backend.timer_behind(scan, key, ns, ts)
        {
            t.registered = Some(t.registered.map_or(ts, |n| n.min(ts)));
        }
        backend.put_timer(t.id, key, ns, ts).map_err(state_failure)
    }

    /// Whether the scan for due timers of `op` under way has passed where a
    /// timer of `key` at `ts` sorts (or no scan is under way): every timer
    /// of the key at that time that was due is taken already, and one
    /// registered now would wait for another pass.
    pub fn scan_passed(
        &mut self,
        op: u32,
        d: TimeDomain,
        key: &[u8],
        ts: i64,
    ) -> Result<bool, Failure> {
        let backend = self
            .backend
            .as_mut()
            .ok_or_else(|| Failure::internal("timers without keyed state"))?;
        let t = self.timers.get_mut(&op).ok_or_else(no_timers)?.of(d);
        Ok(match &t.scan {
            Some((scan, _)) => backend.timer_behind(scan, key, b"", ts),
            None => true,
        })
    }

    pub fn remove_timer(
        &mut self,
        op: u32,
        d: TimeDomain,
        key: &[u8],
        ns: &[u8],
        ts: i64,
    ) -> Result<(), Failure> {
        let id = self.op_timers(op)?.of(d).id;
        self.backend()?
            .delete_timer(id, key, ns, ts)
            .map_err(state_failure)
    }

    /// Removes timers of `op` due at `until` and appends them to `due`:
    /// about `limit` at a time, so that a time that makes millions of timers
    /// due (the final watermark) fires them in rounds of bounded memory.
    /// While `more`, the caller fires these and asks again with the same
    /// `until`. Timers registered meanwhile that are due already are taken
    /// too, in a later pass if they sort behind the scan.
    pub fn take_due(
        &mut self,
        op: u32,
        d: TimeDomain,
        until: i64,
        limit: usize,
        due: &mut Vec<Timer>,
    ) -> Result<bool, Failure> {
        let Self {
            backend, timers, ..
        } = self;
        let backend = backend
            .as_mut()
            .ok_or_else(|| Failure::internal("timers without keyed state"))?;
        let t = timers.get_mut(&op).ok_or_else(no_timers)?.of(d);
        let (mut scan, mut passes) = match t.scan.take() {
            Some(s) => s,
            None => match t.next {
                Some(from) if from <= until => {
                    t.registered = None;
                    (TimerScan::new(from), 1)
                }
                _ => return Ok(false),
            },
        };
        loop {
            let first = due.len();
            let finished = backend
                .take_due_timers(t.id, &mut scan, until, limit, due)
                .map_err(state_failure)?;
            if !finished || due.len() > first {
                // These fire first; the timers they register that are due
                // already are taken by the next call (a finished pass sees
                // every new timer as behind it).
                t.scan = Some((scan, passes));
                return Ok(true);
            }
            match t.registered.take() {
                // Timers registered behind the scan that are due already:
                // another pass.
                Some(from) if from <= until => {
                    passes += 1;
                    if passes > MAX_TIMER_PASSES {
                        return Err(Failure::user(format!(
                            "timers of operator {op} kept registering timers that were \
                             already due, {MAX_TIMER_PASSES} rounds in a row; register \
                             timers in the future"
                        )));
                    }
                    let later = scan.later;
                    scan = TimerScan::new(from);
                    scan.later = later;
                }
                registered => {
                    t.next = match (scan.later, registered) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    return Ok(false);
                }
            }
        }
    }

    fn resolve(&mut self, state: u32) -> Result<(StateId, &mut KeyedStateBackend), Failure> {
        let id = *self.states.get(&(self.current_op, state)).ok_or_else(|| {
            Failure::user(format!(
                "operator {} used keyed state {state}, which it did not declare",
                self.current_op
            ))
        })?;
        let backend = self.backend.as_mut().ok_or_else(|| {
            Failure::internal("keyed state used in a task without keyed operators")
        })?;
        Ok((id, backend))
    }
}

impl HostServices for TaskHost {
    fn log(&mut self, level: LogLevel, message: &str) {
        log_to_host(level, &self.task, message);
    }

    fn state_get(&mut self, state: u32, key: &[u8], ns: &[u8]) -> Result<Option<Vec<u8>>, Failure> {
        let (id, b) = self.resolve(state)?;
        b.get(id, key, ns).map_err(state_failure)
    }

    fn state_put(
        &mut self,
        state: u32,
        key: &[u8],
        ns: &[u8],
        value: &[u8],
    ) -> Result<(), Failure> {
        let (id, b) = self.resolve(state)?;
        b.put(id, key, ns, value).map_err(state_failure)
    }

    fn state_delete(&mut self, state: u32, key: &[u8], ns: &[u8]) -> Result<(), Failure> {
        let (id, b) = self.resolve(state)?;
        b.delete(id, key, ns).map_err(state_failure)
    }

    fn state_append(
        &mut self,
        state: u32,
        key: &[u8],
        ns: &[u8],
        value: &[u8],
    ) -> Result<(), Failure> {
        let (id, b) = self.resolve(state)?;
        b.append(id, key, ns, value).map_err(state_failure)
    }

    fn state_scan(&mut self, state: u32, key: &[u8], prefix: &[u8]) -> Result<Vec<u8>, Failure> {
        let (id, b) = self.resolve(state)?;
        b.scan(id, key, prefix).map_err(state_failure)
    }

    fn state_write(&mut self, state: u32, writes: &[u8]) -> Result<(), Failure> {
        let (id, b) = self.resolve(state)?;
        b.write_framed(id, writes).map_err(state_failure)
    }

    fn register_timer(
        &mut self,
        d: TimeDomain,
        key: &[u8],
        ns: &[u8],
        ts: i64,
    ) -> Result<(), Failure> {
        self.put_timer(self.current_op, d, key, ns, ts)
    }

    fn delete_timer(
        &mut self,
        d: TimeDomain,
        key: &[u8],
        ns: &[u8],
        ts: i64,
    ) -> Result<(), Failure> {
        self.remove_timer(self.current_op, d, key, ns, ts)
    }
}
