//! Watermark generation, as Flink's `WatermarkStrategy`: bounded
//! out-of-orderness (monotonous timestamps when the bound is zero), per
//! split of a source, with idleness detection.
//!
//! A split's watermark is the largest timestamp it has seen minus the bound
//! minus one; the generator's is the smallest over its splits, leaving out
//! splits idle for longer than the idle timeout. A split that has not
//! produced a record yet holds the watermark back, unless it turns idle.

use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use weir_core::Failure;
use weir_core::plan::WatermarkSpec;
use weir_frame::Reader;

/// The smallest watermark: nothing is known yet.
pub const MIN_WATERMARK: i64 = i64::MIN;
/// The watermark at the end of input: every event-time timer fires.
pub const MAX_WATERMARK: i64 = i64::MAX;

#[derive(Debug, Clone)]
struct Split {
    max_ts: Option<i64>,
    last_active: Instant,
}

/// What a generator has to say downstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Emit {
    Watermark(i64),
    /// Every split is idle.
    Idle,
}

/// What a generator keeps in checkpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct GeneratorState {
    /// The last watermark emitted.
    pub emitted: i64,
    /// Largest timestamp seen per split.
    pub splits: Vec<Option<i64>>,
}

#[derive(Debug)]
pub(crate) struct WatermarkGenerator {
    bound: i64,
    idle_timeout: Option<Duration>,
    splits: Vec<Split>,
    emitted: i64,
    idle: bool,
    /// Where records without timestamps are reported from.
    operator: String,
}

impl WatermarkGenerator {
    pub fn new(spec: &WatermarkSpec, splits: usize, operator: &str) -> Self {
        let now = Instant::now();
        WatermarkGenerator {
            bound: spec.max_out_of_orderness_ms.max(0),
            idle_timeout: spec
                .idle_timeout_ms
                .filter(|t| *t > 0)
                .map(|t| Duration::from_millis(t as u64)),
            splits: vec![
                Split {
                    max_ts: None,
                    last_active: now,
                };
                splits.max(1)
            ],
            emitted: MIN_WATERMARK,
            idle: false,
            operator: operator.to_owned(),
        }
    }

    /// Makes the generator track `n` splits (a source's assignment).
    pub fn set_splits(&mut self, n: usize) {
        let now = Instant::now();
        // A subtask without splits is idle from the start.
        self.splits.resize(
            n,
            Split {
                max_ts: None,
                last_active: now,
            },
        );
    }

    /// Notes the timestamps of a batch read from `split`.
    pub fn observe(&mut self, split: usize, batch: &[u8]) -> Result<(), Failure> {
        self.observe_at(split, batch, Instant::now())
    }

    fn observe_at(&mut self, split: usize, batch: &[u8], now: Instant) -> Result<(), Failure> {
        if split >= self.splits.len() {
            self.splits.resize(
                split + 1,
                Split {
                    max_ts: None,
                    last_active: now,
                },
            );
        }
        let mut max = self.splits[split].max_ts;
        let mut any = false;
        for rec in Reader::new(batch) {
            let rec = rec.map_err(|e| Failure::internal(format!("malformed batch: {e}")))?;
            let ts = rec.timestamp.ok_or_else(|| {
                Failure::user(format!(
                    "{}: a record has no event timestamp. Give the watermark strategy a \
                     timestamp assigner (with_timestamp_assigner), or read from a source \
                     whose records carry timestamps",
                    self.operator
                ))
            })?;
            max = Some(max.map_or(ts, |m: i64| m.max(ts)));
            any = true;
        }
        if any {
            let s = &mut self.splits[split];
            s.max_ts = max;
            s.last_active = now;
        }
        Ok(())
    }

    fn split_watermark(&self, s: &Split) -> i64 {
        match s.max_ts {
            Some(m) => m.saturating_sub(self.bound).saturating_sub(1),
            None => MIN_WATERMARK,
        }
    }

    /// What to send downstream now, if anything changed.
    pub fn poll(&mut self, now: Instant) -> Option<Emit> {
        let active: Vec<&Split> = self
            .splits
            .iter()
            .filter(|s| {
                self.idle_timeout
                    .is_none_or(|t| now.duration_since(s.last_active) < t)
            })
            .collect();
        if active.is_empty() {
            if self.idle {
                return None;
            }
            self.idle = true;
            return Some(Emit::Idle);
        }
        let wm = active
            .iter()
            .map(|s| self.split_watermark(s))
            .min()
            .unwrap_or(MIN_WATERMARK);
        if wm > self.emitted || (self.idle && wm >= self.emitted && wm > MIN_WATERMARK) {
            self.idle = false;
            self.emitted = self.emitted.max(wm);
            return Some(Emit::Watermark(self.emitted));
        }
        None
    }

    pub fn state(&self) -> GeneratorState {
        GeneratorState {
            emitted: self.emitted,
            splits: self.splits.iter().map(|s| s.max_ts).collect(),
        }
    }

    /// Continues from the states of the old subtasks: exactly where one
    /// left off, or from the smallest of several (rescaled).
    pub fn restore(&mut self, states: &[GeneratorState]) {
        match states {
            [] => {}
            [one] => {
                self.emitted = one.emitted;
                for (i, m) in one.splits.iter().enumerate() {
                    if i >= self.splits.len() {
                        self.splits.push(self.splits[0].clone());
                    }
                    self.splits[i].max_ts = *m;
                }
            }
            many => {
                self.emitted = many
                    .iter()
                    .map(|s| s.emitted)
                    .min()
                    .unwrap_or(MIN_WATERMARK);
            }
        }
    }

    #[cfg(test)]
    pub fn emitted(&self) -> i64 {
        self.emitted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_frame::{Record, Writer};

    fn batch(ts: &[i64]) -> Vec<u8> {
        let mut w = Writer::new();
        for &t in ts {
            w.push(&Record {
                timestamp: Some(t),
                value: b"x",
                ..Record::default()
            });
        }
        w.into_bytes()
    }

    fn spec(bound: i64, idle: Option<i64>) -> WatermarkSpec {
        WatermarkSpec {
            max_out_of_orderness_ms: bound,
            idle_timeout_ms: idle,
        }
    }

    #[test]
    fn bounded_out_of_orderness_trails_the_largest_timestamp() {
        let mut g = WatermarkGenerator::new(&spec(200, None), 1, "src");
        assert_eq!(g.poll(Instant::now()), None);
        g.observe(0, &batch(&[1000, 1500, 1200])).unwrap();
        assert_eq!(g.poll(Instant::now()), Some(Emit::Watermark(1299)));
        g.observe(0, &batch(&[900])).unwrap();
        assert_eq!(g.poll(Instant::now()), None, "watermarks never go back");
        let mut mono = WatermarkGenerator::new(&spec(0, None), 1, "src");
        mono.observe(0, &batch(&[10])).unwrap();
        assert_eq!(mono.poll(Instant::now()), Some(Emit::Watermark(9)));
    }

    #[test]
    fn the_slowest_split_holds_the_watermark_until_it_idles() {
        let mut g = WatermarkGenerator::new(&spec(0, Some(50)), 2, "src");
        let c = Instant::now();
        let at = |ms: u64| c + Duration::from_millis(ms);
        g.observe_at(0, &batch(&[5000]), at(0)).unwrap();
        assert_eq!(g.poll(at(10)), None, "split 1 has no data yet");
        g.observe_at(0, &batch(&[6000]), at(40)).unwrap();
        // Split 1 never had data and is idle by 60 ms; split 0 is not.
        assert_eq!(g.poll(at(60)), Some(Emit::Watermark(5999)));
        assert_eq!(g.poll(at(100)), Some(Emit::Idle));
        assert_eq!(g.poll(at(101)), None, "idleness is said once");
        g.observe_at(1, &batch(&[7000]), at(110)).unwrap();
        assert_eq!(g.poll(at(111)), Some(Emit::Watermark(6999)));
    }

    #[test]
    fn records_without_timestamps_are_an_error() {
        let mut g = WatermarkGenerator::new(&spec(0, None), 1, "Source: clicks");
        let mut w = Writer::new();
        w.push(&Record::value(b"x"));
        let e = g.observe(0, w.as_bytes()).unwrap_err();
        assert!(e.message.contains("Source: clicks") && e.message.contains("timestamp"));
    }

    #[test]
    fn state_round_trips_and_rescaled_takes_the_minimum() {
        let mut g = WatermarkGenerator::new(&spec(0, None), 1, "src");
        g.observe(0, &batch(&[100])).unwrap();
        g.poll(Instant::now());
        let s = g.state();
        let mut h = WatermarkGenerator::new(&spec(0, None), 1, "src");
        h.restore(std::slice::from_ref(&s));
        assert_eq!(h.emitted(), 99);
        h.observe(0, &batch(&[50])).unwrap();
        assert_eq!(
            h.poll(Instant::now()),
            None,
            "the restored maximum still counts"
        );
        let mut r = WatermarkGenerator::new(&spec(0, None), 1, "src");
        r.restore(&[
            s.clone(),
            GeneratorState {
                emitted: 40,
                splits: vec![Some(41)],
            },
        ]);
        assert_eq!(r.emitted(), 40);
    }
}
