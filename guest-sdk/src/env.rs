//! The execution environment a job function builds its graph in.

use crate::aggregate::AggregateOp;
use crate::plan::{
    Connector, Edge, Operator, OperatorKind, Partitioning, Plan, SourceSpec, StageKind,
    TimestampSource,
};
use crate::stage::{DecodeStage, Stage};
use crate::{DataStream, Error};
use serde::{Serialize, de::DeserializeOwned};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// A function the host can call, by operator index.
pub(crate) enum FnEntry {
    Stage(Box<dyn Stage>),
    /// Keyed aggregations and incremental window functions.
    Aggregate(Box<dyn AggregateOp>),
    /// Process-window functions.
    ProcessWindow(Box<dyn crate::window::ProcessWindowOp>),
    /// Keyed process functions.
    Process(Box<dyn crate::process::ProcessOp>),
}

/// Side output ports of an operator, by output tag id; shared with the
/// operator's function so that it can emit to them.
pub(crate) type SidePorts = Rc<RefCell<Vec<(String, u32)>>>;

type SaveHook = Box<dyn FnMut() -> Option<Vec<u8>>>;
type RestoreHook = Box<dyn FnMut(&str, &[u8]) -> Result<(), Error>>;

/// The explicit state hooks of a job.
pub(crate) struct StateHooks {
    pub save: SaveHook,
    pub restore: RestoreHook,
}

/// The graph under construction.
pub(crate) struct Graph {
    pub plan: Plan,
    pub fns: Vec<Option<FnEntry>>,
    pub hooks: Option<StateHooks>,
    /// The first mistake made while building, reported when `plan` returns.
    pub error: Option<Error>,
    /// Side output ports of operators that have them.
    pub side_ports: std::collections::HashMap<u32, SidePorts>,
    /// Operators that are part of another one (an interval join's
    /// timestamps): uid, name and parallelism set on them apply to it.
    pub owners: std::collections::HashMap<u32, u32>,
    /// Decode stages that can be made again, one per reader of a source.
    pub decoders: std::collections::HashMap<u32, Rc<dyn Fn() -> FnEntry>>,
}

impl Graph {
    pub fn add(&mut self, op: Operator, f: Option<FnEntry>) -> u32 {
        let id = u32::try_from(self.plan.operators.len()).expect("fewer than 2^32 operators");
        self.plan.operators.push(op);
        self.fns.push(f);
        id
    }

    pub fn fail(&mut self, e: Error) {
        self.error.get_or_insert(e);
    }

    /// The port of side output `tag` of operator `op`, allocated on first
    /// use when `allocate`.
    pub fn side_port(&mut self, op: u32, tag: &str, allocate: bool) -> Option<u32> {
        let ports = self.side_ports.get(&op)?.clone();
        if let Some((_, p)) = ports.borrow().iter().find(|(t, _)| t == tag) {
            return Some(*p);
        }
        if !allocate {
            return None;
        }
        let o = &mut self.plan.operators[op as usize];
        o.side_outputs += 1;
        let port = o.side_outputs;
        ports.borrow_mut().push((tag.to_owned(), port));
        Some(port)
    }
}

/// How bounded inputs are processed, as Flink's `execution.runtime-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeMode {
    /// Every update is emitted as it happens (running counts).
    Streaming,
    /// Keyed aggregations emit only their final results when input ends.
    Batch,
    /// Batch when every source is bounded, streaming otherwise (the default).
    Automatic,
}

impl RuntimeMode {
    fn as_str(self) -> &'static str {
        match self {
            RuntimeMode::Streaming => "STREAMING",
            RuntimeMode::Batch => "BATCH",
            RuntimeMode::Automatic => "AUTOMATIC",
        }
    }
}

/// The environment a job function adds sources and settings to, as Flink's
/// `StreamExecutionEnvironment`.
///
/// ```no_run
/// use weir_sdk::prelude::*;
///
/// #[weir_sdk::job]
/// fn job(env: &mut Env, _args: &Args) -> Result<(), Error> {
///     env.set_parallelism(2)
///         .enable_checkpointing(Duration::from_secs(10))
///         .set_runtime_mode(RuntimeMode::Streaming);
///     env.socket_text_stream("localhost", 9999).print();
///     Ok(())
/// }
/// # fn main() {}
/// ```
pub struct Env {
    pub(crate) g: Rc<RefCell<Graph>>,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("operators", &self.g.borrow().plan.operators.len())
            .finish()
    }
}

impl Env {
    pub(crate) fn new(name: &str) -> Env {
        Env {
            g: Rc::new(RefCell::new(Graph {
                plan: Plan {
                    name: name.to_owned(),
                    version: "1".to_owned(),
                    ..Plan::default()
                },
                fns: Vec::new(),
                hooks: None,
                error: None,
                side_ports: std::collections::HashMap::new(),
                owners: std::collections::HashMap::new(),
                decoders: std::collections::HashMap::new(),
            })),
        }
    }

    /// Sets a configuration value with a Flink-like key; the command line
    /// and the cluster configuration can override it.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(env: &mut Env) {
    /// env.set("restart-strategy.type", "fixed-delay");
    /// # }
    /// ```
    pub fn set(&mut self, key: &str, value: impl ToString) -> &mut Self {
        let value = value.to_string();
        let mut g = self.g.borrow_mut();
        let config = &mut g.plan.config;
        match config.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => config.push((key.to_owned(), value)),
        }
        drop(g);
        self
    }

    /// Default parallelism of operators that do not set their own.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(env: &mut Env) {
    /// env.set_parallelism(4);
    /// # }
    /// ```
    pub fn set_parallelism(&mut self, parallelism: u32) -> &mut Self {
        self.set("parallelism.default", parallelism)
    }

    /// Upper bound of parallelism for keyed state (number of key groups).
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(env: &mut Env) {
    /// env.set_max_parallelism(256);
    /// # }
    /// ```
    pub fn set_max_parallelism(&mut self, max: u32) -> &mut Self {
        self.set("pipeline.max-parallelism", max)
    }

    /// Takes a checkpoint every `interval`.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(env: &mut Env) {
    /// env.enable_checkpointing(Duration::from_secs(5));
    /// # }
    /// ```
    pub fn enable_checkpointing(&mut self, interval: Duration) -> &mut Self {
        self.set(
            "execution.checkpointing.interval",
            format!("{}ms", interval.as_millis()),
        )
    }

    /// Streaming or batch processing of bounded inputs.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(env: &mut Env) {
    /// env.set_runtime_mode(RuntimeMode::Batch);
    /// # }
    /// ```
    pub fn set_runtime_mode(&mut self, mode: RuntimeMode) -> &mut Self {
        self.set("execution.runtime-mode", mode.as_str())
    }

    /// The job's name, shown by `weir list` and the web UI.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(env: &mut Env) {
    /// env.set_job_name("Word Count");
    /// # }
    /// ```
    pub fn set_job_name(&mut self, name: &str) -> &mut Self {
        self.g.borrow_mut().plan.name = name.to_owned();
        self
    }

    /// The job's own version, handed to the restore hook of later versions.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(env: &mut Env) {
    /// env.set_version("2");
    /// # }
    /// ```
    pub fn set_version(&mut self, version: &str) -> &mut Self {
        self.g.borrow_mut().plan.version = version.to_owned();
        self
    }

    /// How many keys each keyed operator keeps decoded in the component's
    /// memory before writing them back to keyed state
    /// (`weir.state.cached-keys`).
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(env: &mut Env) {
    /// env.set_state_cache_capacity(10_000);
    /// # }
    /// ```
    pub fn set_state_cache_capacity(&mut self, keys: usize) -> &mut Self {
        self.set("weir.state.cached-keys", keys.max(1))
    }

    /// Snapshots the component's linear memory at every checkpoint, so that
    /// state the job keeps in its own memory (statics, caches, models)
    /// survives failures and restores from savepoints — into the identical
    /// module; other versions take state over through [`Env::state_hooks`].
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(env: &mut Env) {
    /// env.snapshot_memory();
    /// # }
    /// ```
    pub fn snapshot_memory(&mut self) -> &mut Self {
        self.set("weir.state.memory-snapshots", true)
    }

    /// Explicit state for upgrades: `save` runs at every snapshot; when a
    /// savepoint is restored into a *different* version of the module,
    /// `restore` receives the saved bytes with the version that saved them
    /// (state kept in the component's memory carries over by itself only
    /// into the identical module).
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// static SEEN: AtomicU64 = AtomicU64::new(0);
    /// # fn f(env: &mut Env) {
    /// env.state_hooks(
    ///     || Some(SEEN.load(Ordering::Relaxed).to_le_bytes().to_vec()),
    ///     |_from_version, bytes| {
    ///         let n = u64::from_le_bytes(bytes.try_into().map_err(|_| Error::new("bad state"))?);
    ///         SEEN.store(n, Ordering::Relaxed);
    ///         Ok(())
    ///     },
    /// );
    /// # }
    /// ```
    pub fn state_hooks(
        &mut self,
        save: impl FnMut() -> Option<Vec<u8>> + 'static,
        restore: impl FnMut(&str, &[u8]) -> Result<(), Error> + 'static,
    ) -> &mut Self {
        let mut g = self.g.borrow_mut();
        g.hooks = Some(StateHooks {
            save: Box::new(save),
            restore: Box::new(restore),
        });
        g.plan.has_state_hooks = true;
        drop(g);
        self
    }

    /// Reads a text file line by line (bounded), as Flink's `readTextFile`.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(env: &mut Env) {
    /// let lines: DataStream<String> = env.read_text_file("/data/input.txt");
    /// # }
    /// ```
    pub fn read_text_file(&mut self, path: &str) -> DataStream<String> {
        self.text_source("file", "Source: file", vec![("path".into(), path.into())])
    }

    /// Reads lines from a TCP socket (unbounded), as Flink's
    /// `socketTextStream`; try it with `nc -lk 9999`.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(env: &mut Env) {
    /// let lines = env.socket_text_stream("localhost", 9999);
    /// # }
    /// ```
    pub fn socket_text_stream(&mut self, hostname: &str, port: u16) -> DataStream<String> {
        self.text_source(
            "socket",
            "Source: socket",
            vec![
                ("hostname".into(), hostname.into()),
                ("port".into(), port.to_string()),
            ],
        )
    }

    fn text_source(
        &mut self,
        kind: &str,
        name: &str,
        options: Vec<(String, String)>,
    ) -> DataStream<String> {
        self.from_source(
            Connector {
                kind: kind.into(),
                options,
            },
            name,
            |raw: &[u8]| {
                String::from_utf8(raw.to_vec()).map_err(|e| format!("line is not valid UTF-8: {e}"))
            },
        )
    }

    /// Generates records from their index `0, 1, 2, ...`, as Flink's
    /// `DataGeneratorSource`: `count` records in all (unbounded without),
    /// at most `rows_per_second` (as fast as possible without).
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(env: &mut Env) {
    /// let squares = env.from_generator(Some(1_000), Some(100.0), |i| i * i);
    /// # }
    /// ```
    pub fn from_generator<T, F>(
        &mut self,
        count: Option<u64>,
        rows_per_second: Option<f64>,
        mut f: F,
    ) -> DataStream<T>
    where
        T: Serialize + DeserializeOwned + 'static,
        F: FnMut(u64) -> T + 'static,
    {
        let mut options = Vec::new();
        if let Some(n) = count {
            options.push(("number-of-rows".to_owned(), n.to_string()));
        }
        if let Some(r) = rows_per_second {
            options.push(("rows-per-second".to_owned(), r.to_string()));
        }
        self.from_source(
            Connector {
                kind: "datagen".into(),
                options,
            },
            "Source: generator",
            move |raw: &[u8]| {
                let index: [u8; 8] = raw
                    .try_into()
                    .map_err(|_| "generator record is not a u64 index".to_owned())?;
                Ok(f(u64::from_le_bytes(index)))
            },
        )
    }

    /// Reads from any connector the host knows; `decode` turns each raw
    /// record into a value (a failure follows the source's decode policy).
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// use weir_sdk::plan::Connector;
    /// # fn f(env: &mut Env) {
    /// let numbers = env.from_source(
    ///     Connector { kind: "file".into(), options: vec![("path".into(), "n.txt".into())] },
    ///     "Source: numbers",
    ///     |raw: &[u8]| std::str::from_utf8(raw).map_err(|e| e.to_string())?
    ///         .trim().parse::<i64>().map_err(|e| e.to_string()),
    /// );
    /// # }
    /// ```
    pub fn from_source<T, D>(
        &mut self,
        connector: Connector,
        name: &str,
        decode: D,
    ) -> DataStream<T>
    where
        T: Serialize + DeserializeOwned + 'static,
        D: FnMut(&[u8]) -> Result<T, String> + 'static,
    {
        self.source_decoded(
            connector,
            name,
            FnEntry::Stage(Box::new(DecodeStage::new(decode))),
        )
    }

    /// As [`Env::from_source`] with a decoder that can be copied: every
    /// operator reading the stream gets its own decode stage, chained to
    /// it, and the source hands all of them its raw records (rather than
    /// values decoded and encoded once, then decoded by each reader).
    pub(crate) fn shared_source<T, D>(
        &mut self,
        connector: Connector,
        name: &str,
        decode: D,
    ) -> DataStream<T>
    where
        T: Serialize + DeserializeOwned + 'static,
        D: FnMut(&[u8]) -> Result<T, String> + Clone + 'static,
    {
        let make: Rc<dyn Fn() -> FnEntry> =
            Rc::new(move || FnEntry::Stage(Box::new(DecodeStage::new(decode.clone()))));
        let stream = self.source_decoded(connector, name, make());
        let op = stream.outputs[0].0;
        self.g.borrow_mut().decoders.insert(op, make);
        stream
    }

    fn source_decoded<T>(
        &mut self,
        connector: Connector,
        name: &str,
        decode: FnEntry,
    ) -> DataStream<T>
    where
        T: Serialize + DeserializeOwned + 'static,
    {
        let mut g = self.g.borrow_mut();
        let source = g.add(
            Operator {
                uid: None,
                name: name.to_owned(),
                parallelism: None,
                inputs: vec![],
                kind: OperatorKind::Source(SourceSpec {
                    connector,
                    timestamps: TimestampSource::None,
                    watermarks: None,
                }),
                states: vec![],
                side_outputs: 0,
            },
            None,
        );
        let decode = g.add(
            Operator {
                uid: None,
                name: format!("{name} (decode)"),
                parallelism: None,
                inputs: vec![Edge {
                    from: source,
                    port: 0,
                    partitioning: Partitioning::Forward,
                }],
                kind: OperatorKind::Stage(StageKind::Decode),
                states: vec![],
                side_outputs: 0,
            },
            Some(decode),
        );
        drop(g);
        DataStream::new(self.g.clone(), decode)
    }
}
