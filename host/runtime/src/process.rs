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

/// Most rounds of timers one advance of time fires: timers registered by
/// timers for a time already passed fire in the next round.
const MAX_TIMER_ROUNDS: usize = 1_000;

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

    /// Calls the guest for every timer of `d` due at `until`.
    pub fn on_time(
        &mut self,
        host: &mut TaskHost,
        guest: &mut dyn Guest,
        d: TimeDomain,
        until: i64,
        cx: ProcessContext,
    ) -> Result<GuestOutput, Failure> {
        let mut out = GuestOutput::default();
        for _ in 0..MAX_TIMER_ROUNDS {
            self.due.clear();
            host.take_due(self.op, d, until, &mut self.due)?;
            if self.due.is_empty() {
                return Ok(out);
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
            out.main.extend_from_slice(&o.main);
            out.records += o.records;
            out.side.extend_from_slice(&o.side);
        }
        Err(Failure::user(format!(
            "timers of operator {} kept registering timers that were already due, \
             {MAX_TIMER_ROUNDS} rounds in a row; register timers in the future",
            self.op
        )))
    }
}
