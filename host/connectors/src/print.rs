//! The print sink, as Flink's `print()`.

use crate::{SinkContext, SinkWriter};
use serde::Deserialize;
use std::io::Write;
use weir_core::Failure;
use weir_frame::Reader;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrintOptions {
    /// Printed before every line, as Flink's `print(identifier)`.
    #[serde(default)]
    identifier: Option<String>,
}

/// Prints each value on its own line of standard output; with several
/// subtasks, prefixed `n> ` (n counting from 1), as Flink does.
#[derive(Debug)]
pub struct PrintSink {
    prefix: String,
}

impl PrintSink {
    pub fn new(o: PrintOptions, ctx: &SinkContext) -> Self {
        let mut prefix = o.identifier.map(|i| format!("{i}:")).unwrap_or_default();
        if ctx.parallelism > 1 {
            prefix.push_str(&format!("{}> ", ctx.subtask + 1));
        } else if !prefix.is_empty() {
            prefix.push(' ');
        }
        PrintSink { prefix }
    }
}

impl SinkWriter for PrintSink {
    fn write(&mut self, batch: &[u8]) -> Result<(), Failure> {
        let mut buf = Vec::with_capacity(batch.len());
        for rec in Reader::new(batch) {
            let rec = rec.map_err(|e| Failure::internal(e.to_string()))?;
            buf.extend_from_slice(self.prefix.as_bytes());
            buf.extend_from_slice(rec.value);
            buf.push(b'\n');
        }
        let mut out = std::io::stdout().lock();
        out.write_all(&buf)
            .and_then(|_| out.flush())
            .map_err(|e| Failure::external(format!("writing to standard output: {e}")))
    }

    fn finish(&mut self) -> Result<(), Failure> {
        Ok(())
    }
}
