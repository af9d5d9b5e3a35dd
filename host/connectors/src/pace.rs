//! Generated sources: record numbers split over subtasks (subtask `s` of
//! `p` takes `s, s + p, s + 2p, ...`), at most so many per second, with the
//! next number as the checkpointed position.

use crate::{Poll, SourceContext};
use std::time::{Duration, Instant};
use weir_core::Failure;
use weir_frame::Writer;

/// The record numbers of one subtask of a generated source.
#[derive(Debug)]
pub(crate) struct Sequence {
    next: u64,
    step: u64,
    end: Option<u64>,
    pace: Pace,
    batch_size: u64,
}

impl Sequence {
    /// Numbers below `end` (all without), `rate` per second in all
    /// (`option` names it in errors).
    pub fn new(
        ctx: &SourceContext,
        end: Option<u64>,
        rate: Option<f64>,
        option: &str,
    ) -> Result<Self, Failure> {
        Ok(Sequence {
            next: u64::from(ctx.subtask),
            step: u64::from(ctx.parallelism.max(1)),
            end,
            pace: Pace::new(rate, ctx.parallelism, option)?,
            batch_size: ctx.batch_size.max(1) as u64,
        })
    }

    /// Writes the records of the numbers due now with `push`.
    pub fn poll(&mut self, out: &mut Writer, mut push: impl FnMut(u64, &mut Writer)) -> Poll {
        if self.end.is_some_and(|e| self.next >= e) {
            return Poll::Finished;
        }
        let budget = self.pace.allowed(self.batch_size);
        if budget == 0 {
            return Poll::Idle;
        }
        let mut n = 0;
        while n < budget && self.end.is_none_or(|e| self.next < e) {
            push(self.next, out);
            self.next += self.step;
            n += 1;
        }
        self.pace.emitted(n);
        Poll::Ready
    }

    /// Whether number `n` is one of this subtask's.
    pub fn is_mine(&self, n: u64) -> bool {
        n % self.step == self.next % self.step
    }

    pub fn position(&self) -> serde_json::Value {
        serde_json::json!({ "next": self.next })
    }

    /// The next number of a position, if it has one.
    pub fn next_of(position: &serde_json::Value) -> Option<u64> {
        position.get("next").and_then(serde_json::Value::as_u64)
    }

    /// Goes on from number `next`.
    pub fn seek(&mut self, next: u64) {
        self.next = next;
        self.pace.restart();
    }
}

/// The rate of one subtask of a generated source.
#[derive(Debug)]
struct Pace {
    /// Records per second for this subtask; as fast as possible without.
    rate: Option<f64>,
    started: Instant,
    emitted: u64,
}

impl Pace {
    /// `rate` records per second in all (`option` names it in errors),
    /// shared by `parallelism` subtasks.
    pub fn new(rate: Option<f64>, parallelism: u32, option: &str) -> Result<Self, Failure> {
        if let Some(r) = rate
            && !(r > 0.0 && r.is_finite())
        {
            return Err(Failure::user(format!(
                "{option} must be a positive number, not {r}"
            )));
        }
        Ok(Pace {
            rate: rate.map(|r| r / f64::from(parallelism.max(1))),
            started: Instant::now(),
            emitted: 0,
        })
    }

    /// How many of `want` records may go now; 0 after a short wait, when
    /// none is due yet (the source then says it is idle).
    pub fn allowed(&mut self, want: u64) -> u64 {
        let Some(rate) = self.rate else {
            return want;
        };
        let due = (self.started.elapsed().as_secs_f64() * rate) as u64;
        let allowed = due.saturating_sub(self.emitted);
        if allowed == 0 {
            // At most 50 ms, so that the task hears of barriers; a tiny
            // rate must not make a duration out of range.
            std::thread::sleep(Duration::from_secs_f64((1.0 / rate).min(0.05)));
        }
        allowed.min(want)
    }

    pub fn emitted(&mut self, n: u64) {
        self.emitted += n;
    }

    /// Counts from now (after a restore).
    pub fn restart(&mut self) {
        self.started = Instant::now();
        self.emitted = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_checked_and_tiny_ones_wait_briefly() {
        assert!(Pace::new(Some(0.0), 1, "rate").is_err());
        assert!(Pace::new(Some(f64::NAN), 1, "rate").is_err());
        let mut p = Pace::new(Some(1e-300), 2, "rate").unwrap();
        let t = Instant::now();
        assert_eq!(p.allowed(10), 0);
        assert!(t.elapsed() < Duration::from_millis(500));
        let mut fast = Pace::new(None, 1, "rate").unwrap();
        assert_eq!(fast.allowed(10), 10);
    }
}
