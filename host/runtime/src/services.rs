//! The host services a task lends to its guest during calls: keyed state
//! of the operator being called, timers and logging.

use std::collections::HashMap;
use weir_core::guest::log_to_host;
use weir_core::plan::StateKind;
use weir_core::{Failure, HostServices, LogLevel, TimeDomain};
use weir_state::{KeyedStateBackend, StateError, StateId, Timer};

/// The timer services of one keyed operator: a column family per time
/// domain, and a lower bound of the earliest timer in each, so that asking
/// for due timers costs nothing until one may be due.
#[derive(Debug)]
pub(crate) struct OpTimers {
    event: StateId,
    processing: StateId,
    next_event: Option<i64>,
    next_processing: Option<i64>,
}

impl OpTimers {
    fn of(&mut self, d: TimeDomain) -> (StateId, &mut Option<i64>) {
        match d {
            TimeDomain::EventTime => (self.event, &mut self.next_event),
            TimeDomain::ProcessingTime => (self.processing, &mut self.next_processing),
        }
    }
}

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
        self.timers.values().filter_map(|t| t.next_processing).min()
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
                event,
                processing,
                next_event,
                next_processing,
            },
        );
        Ok(())
    }

    fn op_timers(&mut self, op: u32) -> Result<&mut OpTimers, Failure> {
        self.timers.get_mut(&op).ok_or_else(|| {
            Failure::user("timers are only available in keyed process functions and windows")
        })
    }

    pub fn put_timer(
        &mut self,
        op: u32,
        d: TimeDomain,
        key: &[u8],
        ns: &[u8],
        ts: i64,
    ) -> Result<(), Failure> {
        let (id, next) = self.op_timers(op)?.of(d);
        *next = Some(next.map_or(ts, |n| n.min(ts)));
        self.backend()?
            .put_timer(id, key, ns, ts)
            .map_err(state_failure)
    }

    pub fn remove_timer(
        &mut self,
        op: u32,
        d: TimeDomain,
        key: &[u8],
        ns: &[u8],
        ts: i64,
    ) -> Result<(), Failure> {
        let (id, _) = self.op_timers(op)?.of(d);
        self.backend()?
            .delete_timer(id, key, ns, ts)
            .map_err(state_failure)
    }

    /// Removes and returns the timers of `op` due at `until`.
    pub fn take_due(
        &mut self,
        op: u32,
        d: TimeDomain,
        until: i64,
        due: &mut Vec<Timer>,
    ) -> Result<(), Failure> {
        let (id, next) = self.op_timers(op)?.of(d);
        let Some(from) = *next else {
            return Ok(());
        };
        if from > until {
            return Ok(());
        }
        let backend = self
            .backend
            .as_mut()
            .ok_or_else(|| Failure::internal("timers without keyed state"))?;
        let left = backend
            .take_due_timers(id, from, until, due)
            .map_err(state_failure)?;
        let (_, next) = self.op_timers(op)?.of(d);
        *next = left;
        Ok(())
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
