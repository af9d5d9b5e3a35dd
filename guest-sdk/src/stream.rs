//! `DataStream`: a stream of typed values and the operators on it.

use crate::env::{FnEntry, Graph};
use crate::plan::{
    Connector, Edge, Operator, OperatorKind, Partitioning, StageKind, TimestampSource,
};
use crate::stage::{
    ByRef, ByValue, EncodeStage, FilterPush, FlatMapPush, FlatMapWithPush, KeyByStage, MapPush,
    Stage, TimestampPush, TypedStage,
};
use crate::{Collector, Error, KeyedStream};
use serde::{Serialize, de::DeserializeOwned};
use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::rc::Rc;

/// A stream of values of type `T`, as Flink's `DataStream<T>`.
///
/// Values cross between operators encoded with postcard, so `T` implements
/// serde's `Serialize` and `Deserialize`.
///
/// ```no_run
/// use weir_sdk::prelude::*;
///
/// #[weir_sdk::job]
/// fn lengths(env: &mut Env, _args: &Args) -> Result<(), Error> {
///     env.socket_text_stream("localhost", 9999)
///         .filter(|line| !line.is_empty())
///         .map(|line: String| line.len() as u64)
///         .name("line length")
///         .print();
///     Ok(())
/// }
/// # fn main() {}
/// ```
pub struct DataStream<T> {
    pub(crate) g: Rc<RefCell<Graph>>,
    /// The operator output ports this stream reads from (several after a union).
    pub(crate) outputs: Vec<(u32, u32)>,
    /// How the next operator's input edge distributes records.
    pub(crate) partitioning: Partitioning,
    _t: PhantomData<fn() -> T>,
}

/// A stream can feed several operators: each reads every record. A
/// stream straight from a source whose decoder can be copied gets a decode
/// stage of its own, so that each reader decodes the source's raw records.
impl<T> Clone for DataStream<T> {
    fn clone(&self) -> Self {
        if let [(op, 0)] = self.outputs.as_slice() {
            let mut g = self.g.borrow_mut();
            if let Some(make) = g.decoders.get(op).cloned() {
                let decode = Operator {
                    uid: None,
                    ..g.plan.operators[*op as usize].clone()
                };
                let id = g.add(decode, Some(make()));
                g.decoders.insert(id, make);
                return DataStream {
                    g: self.g.clone(),
                    outputs: vec![(id, 0)],
                    partitioning: self.partitioning,
                    _t: PhantomData,
                };
            }
        }
        DataStream {
            g: self.g.clone(),
            outputs: self.outputs.clone(),
            partitioning: self.partitioning,
            _t: PhantomData,
        }
    }
}

impl<T> fmt::Debug for DataStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataStream")
            .field("type", &std::any::type_name::<T>())
            .field("outputs", &self.outputs)
            .finish()
    }
}

/// A sink, returned so that it can be given a uid, a name or a parallelism.
///
/// ```no_run
/// # use weir_sdk::prelude::*;
/// # fn f(s: DataStream<String>) {
/// s.write_as_text("/tmp/out.txt").uid("file-sink").parallelism(1);
/// # }
/// ```
pub struct SinkHandle {
    g: Rc<RefCell<Graph>>,
    op: u32,
}

impl fmt::Debug for SinkHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkHandle").field("op", &self.op).finish()
    }
}

fn set_uid(g: &RefCell<Graph>, op: u32, uid: &str) {
    let mut g = g.borrow_mut();
    if uid.is_empty() {
        g.fail(Error::new("an operator uid must not be empty"));
    }
    if g.plan
        .operators
        .iter()
        .any(|o| o.uid.as_deref() == Some(uid))
    {
        g.fail(Error::new(format!(
            "uid '{uid}' is used by two operators; uids must be unique within a job"
        )));
    }
    g.plan.operators[op as usize].uid = Some(uid.to_owned());
}

fn set_parallelism(g: &RefCell<Graph>, op: u32, p: u32) {
    let mut g = g.borrow_mut();
    if p == 0 {
        g.fail(Error::new("parallelism must be at least 1"));
    }
    g.plan.operators[op as usize].parallelism = Some(p);
}

impl SinkHandle {
    /// Stable identity of the sink's state across job versions.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(s: DataStream<String>) {
    /// s.print().uid("printer");
    /// # }
    /// ```
    pub fn uid(self, uid: &str) -> Self {
        set_uid(&self.g, self.op, uid);
        self
    }

    /// The sink's name in logs and the web UI.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(s: DataStream<String>) {
    /// s.print().name("debug output");
    /// # }
    /// ```
    pub fn name(self, name: &str) -> Self {
        self.g.borrow_mut().plan.operators[self.op as usize].name = name.to_owned();
        self
    }

    /// Number of parallel sink subtasks.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(s: DataStream<String>) {
    /// s.print().parallelism(1);
    /// # }
    /// ```
    pub fn parallelism(self, parallelism: u32) -> Self {
        set_parallelism(&self.g, self.op, parallelism);
        self
    }

    /// Sets a connector option (`'key' = 'value'`).
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(s: DataStream<String>) {
    /// s.write_as_text("/tmp/out").option("rolling-policy.part-size", "64mb");
    /// # }
    /// ```
    pub fn option(self, key: &str, value: &str) -> Self {
        let mut g = self.g.borrow_mut();
        if let OperatorKind::Sink(c) = &mut g.plan.operators[self.op as usize].kind {
            match c.options.iter_mut().find(|(k, _)| k == key) {
                Some(e) => e.1 = value.to_owned(),
                None => c.options.push((key.to_owned(), value.to_owned())),
            }
        }
        drop(g);
        self
    }

    /// For file sinks: sort the lines of the file when input ends, so that
    /// the output of a bounded job does not depend on parallelism.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(s: DataStream<String>) {
    /// s.write_as_text("/tmp/counts.txt").sorted().parallelism(1);
    /// # }
    /// ```
    pub fn sorted(self) -> Self {
        self.option("sort-lines", "true")
    }
}

impl<T: Serialize + DeserializeOwned + 'static> DataStream<T> {
    pub(crate) fn new(g: Rc<RefCell<Graph>>, op: u32) -> Self {
        DataStream {
            g,
            outputs: vec![(op, 0)],
            partitioning: Partitioning::Forward,
            _t: PhantomData,
        }
    }

    /// The stream of side output `port` of operator `op`.
    pub(crate) fn from_port(g: Rc<RefCell<Graph>>, op: u32, port: u32) -> Self {
        DataStream {
            g,
            outputs: vec![(op, port)],
            partitioning: Partitioning::Forward,
            _t: PhantomData,
        }
    }

    pub(crate) fn edges(&self) -> Vec<Edge> {
        self.outputs
            .iter()
            .map(|&(from, port)| Edge {
                from,
                port,
                partitioning: self.partitioning,
            })
            .collect()
    }

    /// The single operator producing this stream, for uid/name/parallelism.
    fn last_op(&self, what: &str) -> Option<u32> {
        match self.outputs.as_slice() {
            [(op, _)] => Some(*op),
            _ => {
                self.g.borrow_mut().fail(Error::new(format!(
                    "{what} applies to one operator, but this stream is a union; \
                     set it on the operators before the union"
                )));
                None
            }
        }
    }

    pub(crate) fn add_op<U: Serialize + DeserializeOwned + 'static>(
        &self,
        name: &str,
        kind: OperatorKind,
        f: Option<FnEntry>,
    ) -> DataStream<U> {
        let op = Operator {
            uid: None,
            name: name.to_owned(),
            parallelism: None,
            inputs: self.edges(),
            kind,
            states: vec![],
            side_outputs: 0,
        };
        let id = self.g.borrow_mut().add(op, f);
        DataStream::new(self.g.clone(), id)
    }

    pub(crate) fn stage<U: Serialize + DeserializeOwned + 'static>(
        &self,
        name: &str,
        kind: StageKind,
        stage: impl Stage + 'static,
    ) -> DataStream<U> {
        self.add_op(
            name,
            OperatorKind::Stage(kind),
            Some(FnEntry::Stage(Box::new(stage))),
        )
    }

    /// Transforms every value.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(s: DataStream<String>) {
    /// let upper = s.map(|line: String| line.to_uppercase());
    /// # }
    /// ```
    pub fn map<U, F>(self, f: F) -> DataStream<U>
    where
        U: Serialize + DeserializeOwned + 'static,
        F: FnMut(T) -> U + 'static,
    {
        self.stage(
            "Map",
            StageKind::Map,
            TypedStage::<T, U>::new(move |next| Box::new(MapPush { f, next })),
        )
    }

    /// Turns every value into zero or more values.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(s: DataStream<String>) {
    /// let words = s.flat_map(|line: String| {
    ///     line.split_whitespace().map(str::to_owned).collect::<Vec<_>>()
    /// });
    /// # }
    /// ```
    pub fn flat_map<U, I, F>(self, f: F) -> DataStream<U>
    where
        U: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = U> + 'static,
        F: FnMut(T) -> I + 'static,
    {
        self.stage(
            "Flat Map",
            StageKind::FlatMap,
            TypedStage::<T, U>::new(move |next| Box::new(FlatMapPush { f, next })),
        )
    }

    /// Turns every value into zero or more values emitted through a
    /// [`Collector`], as Flink's `FlatMapFunction`; unlike
    /// [`DataStream::flat_map`] nothing is collected in between.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(s: DataStream<String>) {
    /// let words = s.flat_map_with(|line: String, out: &mut Collector<(String, i64)>| {
    ///     for w in line.split_whitespace() {
    ///         out.collect((w.to_owned(), 1));
    ///     }
    /// });
    /// # }
    /// ```
    pub fn flat_map_with<U, F>(self, f: F) -> DataStream<U>
    where
        U: Serialize + DeserializeOwned + 'static,
        F: for<'c> FnMut(T, &mut Collector<'c, U>) + 'static,
    {
        self.stage(
            "Flat Map",
            StageKind::FlatMap,
            TypedStage::<T, U>::new(move |next| Box::new(FlatMapWithPush { f, next })),
        )
    }

    /// Keeps the values for which `f` is true.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(s: DataStream<i64>) {
    /// let positive = s.filter(|n| *n > 0);
    /// # }
    /// ```
    pub fn filter<F>(self, f: F) -> DataStream<T>
    where
        F: FnMut(&T) -> bool + 'static,
    {
        self.stage(
            "Filter",
            StageKind::Filter,
            TypedStage::<T, T>::new(move |next| Box::new(FilterPush { f, next })),
        )
    }

    /// Partitions the stream by a key: values with equal keys go to the same
    /// subtask of the next operator, which can keep state per key.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(s: DataStream<(String, i64)>) {
    /// let by_word = s.key_by(|(word, _)| word.clone());
    /// # }
    /// ```
    pub fn key_by<K, F>(self, f: F) -> KeyedStream<K, T>
    where
        K: Serialize + DeserializeOwned + 'static,
        F: FnMut(&T) -> K + 'static,
    {
        let mut keyed: DataStream<T> =
            self.stage("Key By", StageKind::KeyBy, KeyByStage::new(ByValue(f)));
        keyed.partitioning = Partitioning::Hash;
        KeyedStream::new(keyed)
    }

    /// Partitions the stream by a key borrowed from each value, as
    /// [`DataStream::key_by`] but without copying the key.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(s: DataStream<(String, i64)>) {
    /// let by_word = s.key_by_ref(|(word, _)| word);
    /// # }
    /// ```
    pub fn key_by_ref<K, F>(self, f: F) -> KeyedStream<K, T>
    where
        K: Serialize + DeserializeOwned + 'static,
        F: FnMut(&T) -> &K + 'static,
    {
        let mut keyed: DataStream<T> = self.stage(
            "Key By",
            StageKind::KeyBy,
            KeyByStage::new(ByRef(f, PhantomData)),
        );
        keyed.partitioning = Partitioning::Hash;
        KeyedStream::new(keyed)
    }

    /// Sets each value's event timestamp (milliseconds); `f` also sees the
    /// timestamp the record already has (a Kafka record's, say).
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(s: DataStream<(i64, String)>) {
    /// let timed = s.assign_timestamps(|(ts, _), _previous| *ts);
    /// # }
    /// ```
    pub fn assign_timestamps<F>(self, f: F) -> DataStream<T>
    where
        F: FnMut(&T, Option<i64>) -> i64 + 'static,
    {
        self.stage(
            "Timestamps",
            StageKind::Timestamps,
            TypedStage::<T, T>::new(move |next| Box::new(TimestampPush { f, next })),
        )
    }

    /// Gives records event timestamps and generates watermarks, as Flink's
    /// `assignTimestampsAndWatermarks`. Right after a source, watermarks are
    /// generated inside the source, per split (Kafka partition), as Flink's
    /// `fromSource(source, strategy, name)` does; elsewhere by an operator
    /// of their own.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(s: DataStream<(i64, String)>) {
    /// let timed = s.assign_timestamps_and_watermarks(
    ///     WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_millis(200))
    ///         .with_timestamp_assigner(|(ts, _), _| *ts)
    ///         .with_idleness(Duration::from_secs(5)),
    /// );
    /// # }
    /// ```
    pub fn assign_timestamps_and_watermarks(
        self,
        strategy: crate::WatermarkStrategy<T>,
    ) -> DataStream<T> {
        let (spec, assigner) = strategy.into_parts();
        // Straight from a source: the source generates the watermarks.
        let source = match self.outputs.as_slice() {
            [(op, 0)] => self.source_of(*op).filter(|s| {
                matches!(
                    &self.g.borrow().plan.operators[*s as usize].kind,
                    OperatorKind::Source(spec) if spec.watermarks.is_none()
                )
            }),
            _ => None,
        };
        let guest_timestamps = assigner.is_some();
        let stream = match assigner {
            Some(f) => self.stage(
                "Timestamps",
                StageKind::Timestamps,
                TypedStage::<T, T>::new(move |next| Box::new(TimestampPush { f, next })),
            ),
            None => self,
        };
        match source {
            Some(src) => {
                let mut g = stream.g.borrow_mut();
                if let OperatorKind::Source(s) = &mut g.plan.operators[src as usize].kind {
                    s.watermarks = Some(spec);
                    s.timestamps = if guest_timestamps {
                        TimestampSource::Guest
                    } else {
                        TimestampSource::Connector
                    };
                }
                drop(g);
                stream
            }
            None => stream.add_op("Watermarks", OperatorKind::Watermarks(spec), None),
        }
    }

    /// Merges streams of the same type.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(a: DataStream<String>, b: DataStream<String>) {
    /// let both = a.union(b);
    /// # }
    /// ```
    pub fn union(mut self, other: DataStream<T>) -> DataStream<T> {
        if self.partitioning != other.partitioning {
            self.g.borrow_mut().fail(Error::new(
                "union of streams with different partitioning; key or rebalance after the union",
            ));
        }
        self.outputs.extend(other.outputs);
        self
    }

    /// Distributes values round-robin over the next operator's subtasks.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(s: DataStream<String>) {
    /// let spread = s.rebalance().map(|l: String| l.len());
    /// # }
    /// ```
    pub fn rebalance(mut self) -> DataStream<T> {
        self.partitioning = Partitioning::Rebalance;
        self
    }

    /// Sends every value to every subtask of the next operator.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(s: DataStream<String>) {
    /// let everywhere = s.broadcast();
    /// # }
    /// ```
    pub fn broadcast(mut self) -> DataStream<T> {
        self.partitioning = Partitioning::Broadcast;
        self
    }

    /// Stable identity of the operator's state across job versions. Without
    /// one, the host derives a uid from the name and position and warns:
    /// upgrades that move operators then lose their state.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(s: DataStream<String>) {
    /// let m = s.map(|l: String| l.len()).uid("lengths");
    /// # }
    /// ```
    pub fn uid(self, uid: &str) -> Self {
        if let Some(op) = self.last_op("uid") {
            // Right after a source, the uid is the source's (its decoding
            // is part of it, as in Flink).
            let op = self.source_of(op).unwrap_or(op);
            set_uid(&self.g, op, uid);
        }
        self
    }

    /// The operator that `op` is part of: the source feeding decode stage
    /// `op` directly, or the join whose timestamps `op` sets.
    fn source_of(&self, op: u32) -> Option<u32> {
        let g = self.g.borrow();
        if let Some(owner) = g.owners.get(&op) {
            return Some(*owner);
        }
        let o = &g.plan.operators[op as usize];
        match (&o.kind, o.inputs.as_slice()) {
            (OperatorKind::Stage(StageKind::Decode), [e])
                if e.partitioning == Partitioning::Forward
                    && matches!(
                        g.plan.operators[e.from as usize].kind,
                        OperatorKind::Source(_)
                    ) =>
            {
                Some(e.from)
            }
            _ => None,
        }
    }

    /// The operator's name in logs, metrics and the web UI.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(s: DataStream<String>) {
    /// let m = s.map(|l: String| l.len()).name("line length");
    /// # }
    /// ```
    pub fn name(self, name: &str) -> Self {
        if let Some(op) = self.last_op("name") {
            let owner = self.g.borrow().owners.get(&op).copied();
            let op = owner.unwrap_or(op);
            self.g.borrow_mut().plan.operators[op as usize].name = name.to_owned();
        }
        self
    }

    /// Number of parallel subtasks of the operator.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(s: DataStream<String>) {
    /// let m = s.map(|l: String| l.len()).parallelism(4);
    /// # }
    /// ```
    pub fn parallelism(self, parallelism: u32) -> Self {
        if let Some(op) = self.last_op("parallelism") {
            if let Some(source) = self.source_of(op) {
                set_parallelism(&self.g, source, parallelism);
            }
            set_parallelism(&self.g, op, parallelism);
        }
        self
    }

    /// Writes values to any sink connector the host knows; `encode` writes
    /// a value in the sink's format.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// use weir_sdk::plan::Connector;
    /// # fn f(s: DataStream<String>) {
    /// s.sink_to(
    ///     Connector { kind: "print".into(), options: vec![] },
    ///     "Sink: shout",
    ///     |line: &String, out: &mut Vec<u8>| out.extend_from_slice(line.to_uppercase().as_bytes()),
    /// );
    /// # }
    /// ```
    pub fn sink_to<E>(self, connector: Connector, name: &str, encode: E) -> SinkHandle
    where
        E: FnMut(&T, &mut Vec<u8>) + 'static,
    {
        let encoded: DataStream<Vec<u8>> = self.stage(
            &format!("{name} (encode)"),
            StageKind::Encode,
            EncodeStage::new(encode),
        );
        let sink: DataStream<Vec<u8>> = encoded.add_op(name, OperatorKind::Sink(connector), None);
        SinkHandle {
            g: sink.g,
            op: sink.outputs[0].0,
        }
    }

    /// Prints every value to standard output, as Flink's `print()`: with
    /// more than one sink subtask, each line starts with `n> `.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(s: DataStream<(String, i64)>) {
    /// s.print();
    /// # }
    /// ```
    pub fn print(self) -> SinkHandle
    where
        T: fmt::Debug,
    {
        self.sink_to(
            Connector {
                kind: "print".into(),
                options: vec![],
            },
            "Sink: Print to Std. Out",
            |v: &T, out: &mut Vec<u8>| {
                use std::io::Write;
                let _ = write!(out, "{v:?}");
            },
        )
    }

    /// Drops every value, as Flink's `DiscardingSink` (the `blackhole`
    /// connector): for jobs whose effect is their state, and benchmarks.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(s: DataStream<u64>) {
    /// s.discard();
    /// # }
    /// ```
    pub fn discard(self) -> SinkHandle {
        self.sink_to(
            Connector {
                kind: "blackhole".into(),
                options: vec![],
            },
            "Sink: Discard",
            |_: &T, _: &mut Vec<u8>| {},
        )
    }

    /// Writes every value as a line of text (its `Display` form), as Flink's
    /// `writeAsText`. With one sink subtask `path` is a file; otherwise a
    /// directory of part files.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(s: DataStream<String>) {
    /// s.write_as_text("/tmp/out.txt").parallelism(1);
    /// # }
    /// ```
    pub fn write_as_text(self, path: &str) -> SinkHandle
    where
        T: fmt::Display,
    {
        self.sink_to(
            Connector {
                kind: "file".into(),
                options: vec![("path".into(), path.into())],
            },
            "Sink: file",
            |v: &T, out: &mut Vec<u8>| {
                use std::io::Write;
                let _ = write!(out, "{v}");
            },
        )
    }
}
