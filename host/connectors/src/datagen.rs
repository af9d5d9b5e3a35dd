//! A generator source, as Flink's `DataGeneratorSource`: emits record
//! indices `0, 1, 2, ...` (split over subtasks) that the job's generator
//! function turns into values, optionally at a bounded rate.

use crate::pace::Sequence;
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
    numbers: Sequence,
}

impl Generator {
    pub fn new(o: GeneratorOptions, ctx: &SourceContext) -> Result<Self, Failure> {
        Ok(Generator {
            numbers: Sequence::new(ctx, o.rows, o.rate, "generator rows-per-second")?,
        })
    }
}

impl SourceReader for Generator {
    fn poll(&mut self, out: &mut Writer) -> Result<Poll, Failure> {
        Ok(self.numbers.poll(out, |i, out| {
            out.push(&Record::value(&i.to_le_bytes()));
        }))
    }

    fn position(&self) -> Option<serde_json::Value> {
        Some(self.numbers.position())
    }

    fn seek(&mut self, position: &serde_json::Value) -> Result<(), Failure> {
        let next = Sequence::next_of(position)
            .ok_or_else(|| Failure::user("generator position has no 'next' index"))?;
        self.numbers.seek(next);
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
