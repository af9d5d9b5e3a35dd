//! Generated sources that emit at most so many records per second.

use std::time::{Duration, Instant};
use weir_core::Failure;

/// The rate of one subtask of a generated source.
#[derive(Debug)]
pub(crate) struct Pace {
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
