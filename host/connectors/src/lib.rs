//! Connectors: where records come from and where they go.
//!
//! A source produces batches of raw records (framed, see `wit/FRAMING.md`)
//! that the job's `decode` stage turns into values; a sink receives batches
//! whose values the job's `encode` stage has put into the sink's format.
//! Connectors are chosen by the plan's connector kind and configured by its
//! options, Flink-SQL style.

mod datagen;
mod file;
mod file_sink;
mod print;
mod socket;

use weir_core::plan::Connector;
use weir_core::{CheckpointId, Failure};
use weir_frame::Writer;

pub use file::FileSource;
pub use file_sink::FileSink;

/// What a poll of a source produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// Records were written.
    Ready,
    /// Nothing now; poll again.
    Idle,
    /// The source is exhausted (bounded sources).
    Finished,
}

/// Where a source subtask runs.
#[derive(Debug, Clone)]
pub struct SourceContext {
    pub subtask: u32,
    pub parallelism: u32,
    /// Most records one poll should return.
    pub batch_size: usize,
}

/// One subtask of a source.
pub trait SourceReader: Send {
    /// Appends up to `ctx.batch_size` raw records to `out`.
    fn poll(&mut self, out: &mut Writer) -> Result<Poll, Failure>;
    /// The read position, for checkpoints; `None` for sources that cannot
    /// be replayed (sockets).
    fn position(&self) -> Option<serde_json::Value> {
        None
    }
    /// Number of splits (partitions) this subtask reads; watermarks are
    /// generated per split.
    fn splits(&self) -> usize {
        1
    }
    /// The split the records of the last poll came from (one per poll).
    fn current_split(&self) -> usize {
        0
    }
    /// Continues from a position returned by [`SourceReader::position`].
    fn seek(&mut self, _position: &serde_json::Value) -> Result<(), Failure> {
        Err(Failure::user("this source cannot resume from a checkpoint"))
    }
}

/// Where a sink subtask runs.
#[derive(Debug, Clone)]
pub struct SinkContext {
    pub subtask: u32,
    pub parallelism: u32,
    /// Whether the job takes checkpoints (transactional sinks then commit
    /// on checkpoint completion, otherwise when input ends).
    pub checkpointing: bool,
}

/// One subtask of a sink.
///
/// Transactional sinks follow two-phase commit: `snapshot` at a checkpoint
/// barrier prepares what was written (and returns the state to recover
/// it), `commit` makes it visible once the checkpoint is complete, and
/// `restore` finishes the transactions of the checkpoint a job restarts
/// from and discards what came after it.
pub trait SinkWriter: Send {
    /// Writes a batch of records (values in the sink's format).
    fn write(&mut self, batch: &[u8]) -> Result<(), Failure>;
    /// Input ended: write out anything buffered.
    fn finish(&mut self) -> Result<(), Failure>;
    /// Prepares everything written so far for checkpoint `id`.
    fn snapshot(&mut self, _id: CheckpointId) -> Result<Option<serde_json::Value>, Failure> {
        Ok(None)
    }
    /// Checkpoint `id` is complete.
    fn commit(&mut self, _id: CheckpointId) -> Result<(), Failure> {
        Ok(())
    }
    /// Recovers from the states the old subtasks snapshotted (in subtask
    /// order), before anything is written.
    fn restore(&mut self, _states: &[serde_json::Value]) -> Result<(), Failure> {
        Ok(())
    }
}

fn options<T: serde::de::DeserializeOwned>(c: &Connector) -> Result<T, Failure> {
    weir_core::options::from_options(&format!("connector '{}'", c.kind), &c.options)
        .map_err(Failure::user)
}

/// Opens a source subtask for `connector`.
pub fn open_source(
    connector: &Connector,
    ctx: &SourceContext,
) -> Result<Box<dyn SourceReader>, Failure> {
    match connector.kind.as_str() {
        "file" => Ok(Box::new(FileSource::open(options(connector)?, ctx)?)),
        "socket" => Ok(Box::new(socket::SocketSource::open(
            options(connector)?,
            ctx,
        )?)),
        "datagen" => Ok(Box::new(datagen::Generator::new(options(connector)?, ctx)?)),
        other => Err(unknown("source", other, &["file", "socket", "datagen"])),
    }
}

/// Opens a sink subtask for `connector`.
pub fn open_sink(connector: &Connector, ctx: &SinkContext) -> Result<Box<dyn SinkWriter>, Failure> {
    match connector.kind.as_str() {
        "print" => Ok(Box::new(print::PrintSink::new(options(connector)?, ctx))),
        "file" => Ok(Box::new(FileSink::open(options(connector)?, ctx)?)),
        "blackhole" => {
            options::<NoOptions>(connector)?;
            Ok(Box::new(Blackhole))
        }
        other => Err(unknown("sink", other, &["print", "file", "blackhole"])),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NoOptions {}

/// Flink's `blackhole` connector: accepts every record and keeps none.
struct Blackhole;

impl SinkWriter for Blackhole {
    fn write(&mut self, _batch: &[u8]) -> Result<(), Failure> {
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Failure> {
        Ok(())
    }
}

fn unknown(what: &str, kind: &str, known: &[&str]) -> Failure {
    Failure::user(format!(
        "unknown {what} connector '{kind}'; this Weir knows {}",
        known.join(", ")
    ))
}
