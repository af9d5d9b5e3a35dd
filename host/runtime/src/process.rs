//! Keyed process functions, as Flink's `KeyedProcessFunction`: the guest
//! sees each record with its key, keeps declared keyed state, and
//! registers event-time and processing-time timers that call it back.

use crate::services::{TaskHost, state_failure};
use weir_core::graph::OperatorNode;
use weir_core::guest::{Guest, GuestOutput, ProcessContext};
use weir_core::{Failure, TimeDomain};
use weir_frame::{Record, Writer};
use weir_state::Timer;

pub(crate) struct ProcessStep {
    pub op: u32,
    due: Vec<Timer>,
}

/// Timers fired in one guest call.
pub(crate) const TIMERS_PER_CALL: usize = 4096;

impl ProcessStep {
    pub fn new(op: &OperatorNode, host: &mut TaskHost) -> Result<Self, Failure> {
        for (i, s) in op.states.iter().enumerate() {
            let id = host
                .backend()?
                .register(op.uid.as_str(), &s.name, s.kind)
                .map_err(state_failure)?;
            host.states.insert((op.index, i as u32), id);
        }
        host.add_timers(op.index, op.uid.as_str())?;
        Ok(ProcessStep {
            op: op.index,
            due: Vec::new(),
        })
    }

    pub fn process(
        &mut self,
        host: &mut TaskHost,
        guest: &mut dyn Guest,
        batch: &[u8],
        cx: ProcessContext,
    ) -> Result<GuestOutput, Failure> {
        host.current_op = self.op;
        guest.process(host, self.op, batch, cx)
    }

    /// Calls the guest for the next timers of `d` due at `until`, a bounded
    /// number at a time; true when more may be due (call again).
    pub fn on_time(
        &mut self,
        host: &mut TaskHost,
        guest: &mut dyn Guest,
        d: TimeDomain,
        until: i64,
        cx: ProcessContext,
    ) -> Result<(GuestOutput, bool), Failure> {
        self.due.clear();
        let more = host.take_due(self.op, d, until, TIMERS_PER_CALL, &mut self.due)?;
        if self.due.is_empty() {
            return Ok((GuestOutput::default(), more));
        }
        let mut w = Writer::new();
        for t in &self.due {
            w.push(&Record {
                key: Some(&t.key),
                namespace: Some(&t.namespace),
                timestamp: Some(t.timestamp),
                ..Record::default()
            });
        }
        host.current_op = self.op;
        let o = guest.on_timer(host, self.op, d, w.as_bytes(), cx)?;
        Ok((o, more))
    }
}
