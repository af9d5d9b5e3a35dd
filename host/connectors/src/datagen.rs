//! A generator source, as Flink's `DataGeneratorSource`: emits record
//! indices `0, 1, 2, ...` (split over subtasks) that the job's generator
//! function turns into values, optionally at a bounded rate.

use crate::pace::Pace;
use crate::{Poll, SourceContext, SourceReader};
use serde::Deserialize;
use weir_core::Failure;
use weir_core::options::opt_parsed;
use weir_frame::{Record, Writer};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorOptions {
    #[serde(rename = "number-of-rows", default, deserialize_with = "opt_parsed")]
    rows: Option<u64>,
    #[serde(rename = "rows-per-second", default, deserialize_with = "opt_parsed")]
    rate: Option<f64>,
}

/// One subtask of a generator: indices `subtask, subtask + p, ...`.
#[derive(Debug)]
pub struct Generator {
    next: u64,
    step: u64,
    end: Option<u64>,
    pace: Pace,
    batch_size: usize,
}

impl Generator {
    pub fn new(o: GeneratorOptions, ctx: &SourceContext) -> Result<Self, Failure> {
        Ok(Generator {
            next: u64::from(ctx.subtask),
            step: u64::from(ctx.parallelism),
            end: o.rows,
            pace: Pace::new(o.rate, ctx.parallelism, "generator rows-per-second")?,
            batch_size: ctx.batch_size,
        })
    }
}

impl SourceReader for Generator {
    fn poll(&mut self, out: &mut Writer) -> Result<Poll, Failure> {
        if self.end.is_some_and(|e| self.next >= e) {
            return Ok(Poll::Finished);
        }
        let budget = self.pace.allowed(self.batch_size as u64);
        if budget == 0 {
            return Ok(Poll::Idle);
        }
        let mut n = 0;
        while n < budget && self.end.is_none_or(|e| self.next < e) {
            out.push(&Record::value(&self.next.to_le_bytes()));
            self.next += self.step;
            n += 1;
        }
        self.pace.emitted(n);
        Ok(Poll::Ready)
    }

    fn position(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "next": self.next }))
    }

    fn seek(&mut self, position: &serde_json::Value) -> Result<(), Failure> {
        self.next = position
            .get("next")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| Failure::user("generator position has no 'next' index"))?;
        self.pace.restart();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtasks_split_the_indices() {
        let mut all = Vec::new();
        for i in 0..3 {
            let ctx = SourceContext::new(i, 3, 4);
            let mut g = Generator::new(
                GeneratorOptions {
                    rows: Some(10),
                    rate: None,
                },
                &ctx,
            )
            .unwrap();
            let mut w = Writer::new();
            while g.poll(&mut w).unwrap() != Poll::Finished {}
            for r in weir_frame::Reader::new(w.as_bytes()) {
                all.push(u64::from_le_bytes(r.unwrap().value.try_into().unwrap()));
            }
        }
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
    }
}
