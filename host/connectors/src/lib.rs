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
mod nexmark;
mod pace;
mod print;
mod registry;
mod socket;

use weir_core::config::JobOwner;
use weir_core::plan::Connector;
use weir_core::{CheckpointId, Failure, JobId, SubtaskState};
use weir_frame::Writer;

pub use file::FileSource;
pub use file_sink::FileSink;
pub use registry::{ConnectorProvider, Connectors};

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
    /// The source operator's uid (names consumer groups and the like).
    pub uid: String,
    pub job_id: JobId,
    /// Whose job this is: how secrets resolve, what options may say.
    pub owner: JobOwner,
}

impl SourceContext {
    /// A context for subtask `subtask` of `parallelism` (tests, tools).
    pub fn new(subtask: u32, parallelism: u32, batch_size: usize) -> Self {
        SourceContext {
            subtask,
            parallelism,
            batch_size,
            uid: "source".into(),
            job_id: JobId::random(),
            owner: JobOwner::default(),
        }
    }
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
    /// Continues from the positions of the old subtasks: its own at the
    /// same parallelism, all of them otherwise (sources with splits take
    /// over the splits now theirs).
    fn restore(&mut self, positions: &[serde_json::Value]) -> Result<(), Failure> {
        match positions {
            [] => Ok(()),
            [p] => self.seek(p),
            _ => Err(Failure::user(
                "the source ran with another parallelism when the snapshot was taken, and \
                 cannot redistribute its positions; restore it at the old parallelism",
            )),
        }
    }
    /// Checkpoint `id` is complete (Kafka commits its offsets to the
    /// consumer group, for monitoring).
    fn checkpoint_complete(&mut self, _id: CheckpointId) -> Result<(), Failure> {
        Ok(())
    }
}

/// Where records a job could not decode go, under the source option
/// `'decode-errors' = 'dead-letter'`.
pub trait DeadLetterSink: Send {
    /// Sends a raw record with the reason it could not be decoded.
    fn send(&mut self, raw: &[u8], reason: &str) -> Result<(), Failure>;
    /// Makes sure everything sent is delivered (at checkpoints).
    fn flush(&mut self) -> Result<(), Failure>;
}

/// Where a sink subtask runs.
#[derive(Debug, Clone)]
pub struct SinkContext {
    pub subtask: u32,
    pub parallelism: u32,
    /// Whether the job takes checkpoints (transactional sinks then commit
    /// on checkpoint completion, otherwise when input ends).
    pub checkpointing: bool,
    /// The sink operator's uid (names its transactions).
    pub uid: String,
    /// A local directory the sink may keep files in.
    pub work_dir: std::path::PathBuf,
    pub job_id: JobId,
    /// What the sink's transaction ids are unique to: the job's id, or, for
    /// a job started from a snapshot, that snapshot — so that every run
    /// started from one snapshot (a run killed before its first
    /// checkpoint, and the one started after it) finds the transactions
    /// the others left.
    pub lineage: String,
    /// Whose job this is: how secrets resolve, what options may say.
    pub owner: JobOwner,
    /// Sync files and directories where durability depends on it
    /// (`weir.io.fsync`).
    pub fsync: bool,
    /// Checkpoints that may be in progress at once
    /// (`execution.checkpointing.max-concurrent-checkpoints`).
    pub max_concurrent_checkpoints: u32,
    /// The checkpoint the job was restored from, if it was: checkpoints
    /// after it that a sink finds committed were committed by an earlier
    /// run, and restoring would write their output again.
    pub restored: Option<weir_core::CheckpointId>,
}

impl SinkContext {
    /// A context for subtask `subtask` of `parallelism` (tests, tools).
    pub fn new(subtask: u32, parallelism: u32, uid: &str, work_dir: std::path::PathBuf) -> Self {
        SinkContext {
            subtask,
            parallelism,
            checkpointing: true,
            uid: uid.to_owned(),
            work_dir,
            job_id: JobId::random(),
            lineage: String::new(),
            owner: JobOwner::default(),
            fsync: true,
            max_concurrent_checkpoints: 1,
            restored: None,
        }
    }

    /// The default prefix of the sink's transaction ids: unique to the job
    /// and the operator, so that two jobs never touch each other's
    /// transactions. At most 40 characters.
    pub fn default_transaction_prefix(&self) -> String {
        let uid = weir_core::fs::safe_name(&self.uid);
        let scope = if self.lineage.is_empty() {
            self.job_id.to_string()[..16].to_owned()
        } else {
            format!(
                "{:016x}",
                xxhash_rust::xxh3::xxh3_64(self.lineage.as_bytes())
            )
        };
        let prefix = format!("weir-{scope}-{uid}");
        if prefix.len() <= 40 {
            return prefix;
        }
        let h = xxhash_rust::xxh3::xxh3_64(self.uid.as_bytes());
        format!("weir-{scope}-{h:016x}")
    }

    /// The transaction prefix a job set itself, confined to its tenant's
    /// namespace (a tenant cannot name, and so fence or roll back, another
    /// tenant's transactions).
    pub fn own_transaction_prefix(&self, prefix: &str) -> String {
        match &self.owner.tenant {
            Some(t) if self.owner.restricted && !prefix.starts_with(&format!("{t}-")) => {
                format!("{t}-{prefix}")
            }
            _ => prefix.to_owned(),
        }
    }
}

/// Files a sink keeps in a snapshot, by name, and where they are locally.
pub type SinkFiles = std::collections::BTreeMap<String, std::path::PathBuf>;

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
    /// Files that belong to the snapshot just taken (uploaded with it);
    /// their names must be unique among the sink's subtasks.
    fn snapshot_files(&mut self) -> SinkFiles {
        SinkFiles::new()
    }
    /// Recovers from the states old subtasks snapshotted (its own
    /// predecessor's at the same parallelism, every old subtask's after a
    /// rescale: see [`SubtaskState::belongs_to`]) and the files they kept,
    /// before anything is written. Also called, with no states, when a job
    /// starts afresh.
    fn restore(&mut self, _states: &[SubtaskState], _files: &SinkFiles) -> Result<(), Failure> {
        Ok(())
    }
}

fn options<T: serde::de::DeserializeOwned>(c: &Connector) -> Result<T, Failure> {
    weir_core::options::from_options(&format!("connector '{}'", c.kind), &c.options)
        .map_err(Failure::user)
}

/// A file-valued option of a restricted (tenant's) job must name a place
/// inside the tenant's folder, with symbolic links resolved.
pub fn confine(owner: &JobOwner, option: &str, path: &std::path::Path) -> Result<(), Failure> {
    if !owner.restricted {
        return Ok(());
    }
    let tenant = owner.tenant.as_deref().unwrap_or("this tenant");
    match &owner.files {
        Some(root) if weir_core::fs::within(path, root) => Ok(()),
        Some(root) => Err(Failure::user(format!(
            "option '{option}' names {}, outside tenant {tenant}'s folder {} \
             (weir.tenants.{tenant}.files; links resolved); use a path inside it",
            path.display(),
            root.display()
        ))),
        None => Err(Failure::user(format!(
            "option '{option}' names a file, but tenant {tenant} has no folder for files \
             (weir.tenants.{tenant}.files)"
        ))),
    }
}

/// The connectors of this crate.
pub(crate) struct Builtin;

impl ConnectorProvider for Builtin {
    fn sources(&self) -> &'static [&'static str] {
        &["file", "socket", "datagen", "nexmark"]
    }

    fn sinks(&self) -> &'static [&'static str] {
        &["print", "file", "blackhole"]
    }

    fn open_source(
        &self,
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
            "nexmark" => Ok(Box::new(nexmark::NexmarkSource::new(
                options(connector)?,
                ctx,
            )?)),
            other => Err(Failure::internal(format!("no built-in source '{other}'"))),
        }
    }

    fn open_sink(
        &self,
        connector: &Connector,
        ctx: &SinkContext,
    ) -> Result<Box<dyn SinkWriter>, Failure> {
        match connector.kind.as_str() {
            "print" => Ok(Box::new(print::PrintSink::new(options(connector)?, ctx))),
            "file" => Ok(Box::new(FileSink::open(options(connector)?, ctx)?)),
            "blackhole" => {
                options::<NoOptions>(connector)?;
                Ok(Box::new(Blackhole))
            }
            other => Err(Failure::internal(format!("no built-in sink '{other}'"))),
        }
    }

    /// Files a tenant names stay in its folder.
    fn check_options(&self, c: &Connector, owner: &JobOwner) -> Result<(), Failure> {
        for (k, v) in &c.options {
            if k == "path" {
                confine(owner, k, std::path::Path::new(v))?;
            }
        }
        Ok(())
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
