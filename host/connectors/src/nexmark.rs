//! The Nexmark source: persons, auctions and bids from the standard
//! generator's rules (see `weir_frame::nexmark`), generated in the host and
//! split over the source's subtasks (event `n` goes to subtask
//! `n % parallelism`). Each record carries its event time; its value is the
//! event's flat encoding. Its position in checkpoints is the next event
//! number.

use crate::pace::Sequence;
use crate::{Poll, SourceContext, SourceReader};
use serde::Deserialize;
use weir_core::Failure;
use weir_core::options::opt_parsed;
use weir_frame::nexmark::GeneratorConfig;
use weir_frame::{Record, Writer};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NexmarkOptions {
    /// Events in all (unbounded without).
    #[serde(default, deserialize_with = "opt_parsed")]
    events: Option<u64>,
    /// Events per second in all, in processing time (as fast as possible
    /// without).
    #[serde(rename = "events-per-second", default, deserialize_with = "opt_parsed")]
    rate: Option<f64>,
    /// Events per second of event time (the standard 10 000 000 without).
    #[serde(rename = "event-time-rate", default, deserialize_with = "opt_parsed")]
    event_time_rate: Option<u64>,
    /// Event time of the first event, in milliseconds since the epoch.
    #[serde(rename = "base-time", default, deserialize_with = "opt_parsed")]
    base_time: Option<i64>,
}

/// One subtask of the Nexmark source.
#[derive(Debug)]
pub struct NexmarkSource {
    config: GeneratorConfig,
    numbers: Sequence,
    value: Vec<u8>,
}

impl NexmarkSource {
    pub fn new(o: NexmarkOptions, ctx: &SourceContext) -> Result<Self, Failure> {
        let defaults = GeneratorConfig::default();
        let ns_per_event = match o.event_time_rate {
            None => defaults.ns_per_event,
            Some(r) if (1..=1_000_000_000).contains(&r) => 1_000_000_000 / r,
            Some(r) => {
                return Err(Failure::user(format!(
                    "nexmark event-time-rate must be between 1 and 1000000000 events per \
                     second, not {r}"
                )));
            }
        };
        Ok(NexmarkSource {
            config: GeneratorConfig {
                base_time_ms: o.base_time.unwrap_or(defaults.base_time_ms),
                ns_per_event,
            },
            numbers: Sequence::new(ctx, o.events, o.rate, "nexmark events-per-second")?,
            value: Vec::with_capacity(512),
        })
    }
}

impl SourceReader for NexmarkSource {
    fn poll(&mut self, out: &mut Writer) -> Result<Poll, Failure> {
        let NexmarkSource { config, value, .. } = self;
        Ok(self.numbers.poll(out, |n, out| {
            value.clear();
            let ts = config.encode(n, value);
            out.push(&Record {
                timestamp: Some(ts),
                ..Record::value(value)
            });
        }))
    }

    fn position(&self) -> Option<serde_json::Value> {
        Some(self.numbers.position())
    }

    fn seek(&mut self, position: &serde_json::Value) -> Result<(), Failure> {
        let next = Sequence::next_of(position)
            .ok_or_else(|| Failure::user("nexmark position has no 'next' event number"))?;
        if !self.numbers.is_mine(next) {
            return Err(Failure::user(
                "the nexmark position belongs to another subtask; restore the source at its \
                 old parallelism",
            ));
        }
        self.numbers.seek(next);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_frame::Reader;
    use weir_frame::nexmark::Event;

    fn options(events: u64) -> NexmarkOptions {
        NexmarkOptions {
            events: Some(events),
            rate: None,
            event_time_rate: None,
            base_time: None,
        }
    }

    #[test]
    fn subtasks_split_the_events_with_their_times() {
        let g = GeneratorConfig::default();
        let mut seen = Vec::new();
        for s in 0..2 {
            let mut src = NexmarkSource::new(options(500), &SourceContext::new(s, 2, 64)).unwrap();
            let mut w = Writer::new();
            while src.poll(&mut w).unwrap() != Poll::Finished {}
            for r in Reader::new(w.as_bytes()) {
                let r = r.unwrap();
                let e = Event::decode(r.value).unwrap();
                assert_eq!(r.timestamp, Some(e.date_time()));
                seen.push(e);
            }
        }
        assert_eq!(seen.len(), 500);
        for n in 0..500u64 {
            assert!(seen.contains(&g.event(n)), "event {n}");
        }
    }

    #[test]
    fn resumes_where_it_was_and_refuses_bad_options() {
        let mut a = NexmarkSource::new(options(100), &SourceContext::new(1, 2, 10)).unwrap();
        let mut w = Writer::new();
        a.poll(&mut w).unwrap();
        let pos = a.position().unwrap();
        let mut b = NexmarkSource::new(options(100), &SourceContext::new(1, 2, 10)).unwrap();
        b.seek(&pos).unwrap();
        let (mut wa, mut wb) = (Writer::new(), Writer::new());
        a.poll(&mut wa).unwrap();
        b.poll(&mut wb).unwrap();
        assert_eq!(wa.as_bytes(), wb.as_bytes());
        let mut other = NexmarkSource::new(options(100), &SourceContext::new(0, 2, 10)).unwrap();
        assert!(other.seek(&pos).is_err());
        // Times at the end of the range saturate rather than overflow.
        let late = NexmarkOptions {
            base_time: Some(i64::MAX - 5),
            event_time_rate: Some(1),
            ..options(100)
        };
        let mut src = NexmarkSource::new(late, &SourceContext::new(0, 1, 100)).unwrap();
        let mut w = Writer::new();
        while src.poll(&mut w).unwrap() != Poll::Finished {}
        assert_eq!(Reader::new(w.as_bytes()).count(), 100);
        let bad = NexmarkOptions {
            event_time_rate: Some(0),
            ..options(1)
        };
        assert!(NexmarkSource::new(bad, &SourceContext::new(0, 1, 10)).is_err());
    }
}
