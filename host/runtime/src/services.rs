//! The host services a task lends to its guest during calls: keyed state
//! of the operator being called, timers and logging.

use std::collections::HashMap;
use weir_core::guest::log_to_host;
use weir_core::{Failure, HostServices, LogLevel, TimeDomain};
use weir_state::{KeyedStateBackend, StateError, StateId};

/// Per-task host services.
pub(crate) struct TaskHost {
    pub task: String,
    pub backend: Option<KeyedStateBackend>,
    /// The operator the task is calling into.
    pub current_op: u32,
    /// (operator, declared state index) -> backend state.
    pub states: HashMap<(u32, u32), StateId>,
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

    fn register_timer(&mut self, _: TimeDomain, _: &[u8], _: &[u8], _: i64) -> Result<(), Failure> {
        Err(Failure::user(
            "timers are only available in keyed process functions and windows",
        ))
    }

    fn delete_timer(&mut self, _: TimeDomain, _: &[u8], _: &[u8], _: i64) -> Result<(), Failure> {
        Err(Failure::user(
            "timers are only available in keyed process functions and windows",
        ))
    }
}
