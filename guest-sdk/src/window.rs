//! Windows on keyed streams, as Flink's `WindowedStream`: which windows a
//! record belongs to (assigners), when they fire (triggers, allowed
//! lateness), and what they compute (incremental `reduce` / `aggregate`, or
//! a process-window function over all elements).
//!
//! The host assigns records to windows, keeps timers and fires windows; the
//! guest folds records into accumulators and computes results.

use crate::aggregate::{AggOp, AggregateFunction, Folder, Reduce, Sum, UserAggregate};
use crate::env::FnEntry;
use crate::plan::{self, OperatorKind, WindowSpec};
use crate::runtime::Output;
use crate::stage::Collector;
use crate::{DataStream, Error, KeyedStream, codec};
use serde::{Serialize, de::DeserializeOwned};
use std::marker::PhantomData;
use std::time::Duration;
use weir_frame::{Reader, Writer};

/// A time window `[start, end)` in milliseconds, as Flink's `TimeWindow`.
pub use weir_frame::Window as TimeWindow;

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Which windows records belong to, and in which time domain. Made by the
/// assigners below, as in Flink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    assigner: plan::WindowAssigner,
    domain: plan::TimeDomain,
    trigger: plan::Trigger,
}

impl Windows {
    fn new(assigner: plan::WindowAssigner, domain: plan::TimeDomain) -> Self {
        Windows {
            assigner,
            domain,
            trigger: plan::Trigger::Default,
        }
    }

    /// Shifts tumbling or sliding windows, e.g. by a time zone's offset.
    ///
    /// ```
    /// # use weir_sdk::prelude::*;
    /// // Days in UTC+8.
    /// let days = TumblingEventTimeWindows::of(Duration::from_secs(86_400))
    ///     .with_offset(Duration::from_secs(16 * 3600));
    /// ```
    pub fn with_offset(mut self, offset: Duration) -> Self {
        match &mut self.assigner {
            plan::WindowAssigner::Tumbling { offset_ms, .. }
            | plan::WindowAssigner::Sliding { offset_ms, .. } => *offset_ms = ms(offset),
            _ => {}
        }
        self
    }
}

/// Fixed-size, non-overlapping windows on event time.
#[derive(Debug)]
pub struct TumblingEventTimeWindows;

impl TumblingEventTimeWindows {
    /// Windows of `size`.
    ///
    /// ```
    /// # use weir_sdk::prelude::*;
    /// let w = TumblingEventTimeWindows::of(Duration::from_secs(15));
    /// ```
    pub fn of(size: Duration) -> Windows {
        Windows::new(
            plan::WindowAssigner::Tumbling {
                size_ms: ms(size),
                offset_ms: 0,
            },
            plan::TimeDomain::EventTime,
        )
    }
}

/// Fixed-size, non-overlapping windows on processing time (the clock of
/// the machine running the task).
#[derive(Debug)]
pub struct TumblingProcessingTimeWindows;

impl TumblingProcessingTimeWindows {
    /// Windows of `size`.
    ///
    /// ```
    /// # use weir_sdk::prelude::*;
    /// let w = TumblingProcessingTimeWindows::of(Duration::from_secs(5));
    /// ```
    pub fn of(size: Duration) -> Windows {
        Windows::new(
            plan::WindowAssigner::Tumbling {
                size_ms: ms(size),
                offset_ms: 0,
            },
            plan::TimeDomain::ProcessingTime,
        )
    }
}

/// Windows of a fixed size that start every `slide`, on event time; a
/// record belongs to `size / slide` of them.
#[derive(Debug)]
pub struct SlidingEventTimeWindows;

impl SlidingEventTimeWindows {
    /// Windows of `size` every `slide`.
    ///
    /// ```
    /// # use weir_sdk::prelude::*;
    /// let w = SlidingEventTimeWindows::of(Duration::from_secs(60), Duration::from_secs(10));
    /// ```
    pub fn of(size: Duration, slide: Duration) -> Windows {
        Windows::new(
            plan::WindowAssigner::Sliding {
                size_ms: ms(size),
                slide_ms: ms(slide),
                offset_ms: 0,
            },
            plan::TimeDomain::EventTime,
        )
    }
}

/// Sliding windows on processing time.
#[derive(Debug)]
pub struct SlidingProcessingTimeWindows;

impl SlidingProcessingTimeWindows {
    /// Windows of `size` every `slide`.
    ///
    /// ```
    /// # use weir_sdk::prelude::*;
    /// let w = SlidingProcessingTimeWindows::of(Duration::from_secs(60), Duration::from_secs(10));
    /// ```
    pub fn of(size: Duration, slide: Duration) -> Windows {
        Windows::new(
            plan::WindowAssigner::Sliding {
                size_ms: ms(size),
                slide_ms: ms(slide),
                offset_ms: 0,
            },
            plan::TimeDomain::ProcessingTime,
        )
    }
}

/// Sessions on event time: a key's records closer than `gap` to each
/// other share a window, which grows and merges as records arrive.
#[derive(Debug)]
pub struct EventTimeSessionWindows;

impl EventTimeSessionWindows {
    /// Sessions separated by at least `gap` of inactivity.
    ///
    /// ```
    /// # use weir_sdk::prelude::*;
    /// let w = EventTimeSessionWindows::with_gap(Duration::from_secs(30 * 60));
    /// ```
    pub fn with_gap(gap: Duration) -> Windows {
        Windows::new(
            plan::WindowAssigner::Session { gap_ms: ms(gap) },
            plan::TimeDomain::EventTime,
        )
    }
}

/// Sessions on processing time.
#[derive(Debug)]
pub struct ProcessingTimeSessionWindows;

impl ProcessingTimeSessionWindows {
    /// Sessions separated by at least `gap` of inactivity.
    ///
    /// ```
    /// # use weir_sdk::prelude::*;
    /// let w = ProcessingTimeSessionWindows::with_gap(Duration::from_secs(10));
    /// ```
    pub fn with_gap(gap: Duration) -> Windows {
        Windows::new(
            plan::WindowAssigner::Session { gap_ms: ms(gap) },
            plan::TimeDomain::ProcessingTime,
        )
    }
}

/// One window per key holding all its records; it fires only through a
/// trigger such as [`CountTrigger`].
#[derive(Debug)]
pub struct GlobalWindows;

impl GlobalWindows {
    /// The global window assigner.
    ///
    /// ```
    /// # use weir_sdk::prelude::*;
    /// let w = GlobalWindows::create();
    /// ```
    pub fn create() -> Windows {
        Windows::new(plan::WindowAssigner::Global, plan::TimeDomain::EventTime)
    }
}

/// When a window fires. Without one, a window fires when time passes its
/// end (and again for each late record within the allowed lateness).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trigger(plan::Trigger);

/// Fires a window every `n` records and purges it, as Flink's
/// `PurgingTrigger.of(CountTrigger.of(n))`.
#[derive(Debug)]
pub struct CountTrigger;

impl CountTrigger {
    /// Every `n` records.
    ///
    /// ```
    /// # use weir_sdk::prelude::*;
    /// let t = CountTrigger::of(100);
    /// ```
    pub fn of(n: u64) -> Trigger {
        Trigger(plan::Trigger::Count(n))
    }
}

/// Names a side output of an operator, as Flink's `OutputTag`: records sent
/// to it are read with [`DataStream::get_side_output`].
///
/// ```
/// # use weir_sdk::prelude::*;
/// let late: OutputTag<(String, i64)> = OutputTag::new("late-clicks");
/// ```
#[derive(Debug)]
pub struct OutputTag<T> {
    pub(crate) id: String,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for OutputTag<T> {
    fn clone(&self) -> Self {
        OutputTag {
            id: self.id.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> OutputTag<T> {
    /// A tag with a name unique among the operator's side outputs.
    pub fn new(id: &str) -> Self {
        OutputTag {
            id: id.to_owned(),
            _t: PhantomData,
        }
    }
}

/// A keyed stream cut into windows, as Flink's `WindowedStream`.
///
/// ```no_run
/// use weir_sdk::prelude::*;
///
/// #[weir_sdk::job]
/// fn clicks(env: &mut Env, _args: &Args) -> Result<(), Error> {
///     env.from_generator(None, Some(1000.0), |i| (i as i64 * 10, format!("page-{}", i % 6)))
///         .assign_timestamps_and_watermarks(
///             WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_millis(200))
///                 .with_timestamp_assigner(|(ts, _), _| *ts),
///         )
///         .map(|(_, page)| (page, 1u64))
///         .key_by(|(page, _)| page.clone())
///         .window(TumblingEventTimeWindows::of(Duration::from_secs(15)))
///         .sum(|(_, n)| n)
///         .uid("clicks-per-page")
///         .print();
///     Ok(())
/// }
/// # fn main() {}
/// ```
pub struct WindowedStream<K, T> {
    stream: DataStream<T>,
    windows: Windows,
    lateness: i64,
    late: Option<String>,
    _k: PhantomData<fn() -> K>,
}

impl<K, T> std::fmt::Debug for WindowedStream<K, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowedStream")
            .field("windows", &self.windows)
            .finish()
    }
}

impl<K, T> KeyedStream<K, T>
where
    K: Serialize + DeserializeOwned + 'static,
    T: Serialize + DeserializeOwned + 'static,
{
    /// Cuts each key's records into windows.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(s: KeyedStream<String, (String, u64)>) {
    /// let per_minute = s
    ///     .window(TumblingEventTimeWindows::of(Duration::from_secs(60)))
    ///     .sum(|(_, n)| n);
    /// # }
    /// ```
    pub fn window(self, windows: Windows) -> WindowedStream<K, T> {
        WindowedStream {
            stream: self.into_stream(),
            windows,
            lateness: 0,
            late: None,
            _k: PhantomData,
        }
    }

    /// Windows of `n` records per key, as Flink's `countWindow(n)`.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(s: KeyedStream<String, (String, u64)>) {
    /// let every_100 = s.count_window(100).sum(|(_, n)| n);
    /// # }
    /// ```
    pub fn count_window(self, n: u64) -> WindowedStream<K, T> {
        self.window(GlobalWindows::create())
            .trigger(CountTrigger::of(n))
    }
}

impl<K, T> WindowedStream<K, T>
where
    K: Serialize + DeserializeOwned + 'static,
    T: Serialize + DeserializeOwned + 'static,
{
    /// Sets when windows fire.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(s: KeyedStream<String, (String, u64)>) {
    /// let w = s.window(GlobalWindows::create()).trigger(CountTrigger::of(10));
    /// # }
    /// ```
    pub fn trigger(mut self, trigger: Trigger) -> Self {
        self.windows.trigger = trigger.0;
        self
    }

    /// Keeps event-time windows for `lateness` after they fire: a late record
    /// within it updates the window and fires it again.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(s: KeyedStream<String, (String, u64)>) {
    /// let w = s
    ///     .window(TumblingEventTimeWindows::of(Duration::from_secs(60)))
    ///     .allowed_lateness(Duration::from_secs(10));
    /// # }
    /// ```
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.lateness = ms(lateness);
        self
    }

    /// Sends records too late for any window to a side output instead of
    /// dropping them (dropped records are counted in the metrics).
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(s: KeyedStream<String, (String, u64)>) {
    /// let late = OutputTag::<(String, u64)>::new("late");
    /// let counts = s
    ///     .window(TumblingEventTimeWindows::of(Duration::from_secs(60)))
    ///     .side_output_late_data(&late)
    ///     .sum(|(_, n)| n);
    /// let late_records = counts.get_side_output(&late);
    /// # }
    /// ```
    pub fn side_output_late_data(mut self, tag: &OutputTag<T>) -> Self {
        self.late = Some(tag.id.clone());
        self
    }

    fn add<U: Serialize + DeserializeOwned + 'static>(
        self,
        name: &str,
        function: plan::WindowFunction,
        entry: FnEntry,
    ) -> DataStream<U> {
        let spec = WindowSpec {
            assigner: self.windows.assigner,
            domain: self.windows.domain,
            trigger: self.windows.trigger,
            allowed_lateness_ms: self.lateness,
            late_port: None,
            function,
            // Aggregate functions, reduces and sums all merge.
            mergeable: function == plan::WindowFunction::Aggregate,
        };
        let out: DataStream<U> = self
            .stream
            .add_op(name, OperatorKind::Window(spec), Some(entry));
        let op = out.outputs[0].0;
        let mut g = out.g.borrow_mut();
        g.side_ports.insert(op, Default::default());
        if let Some(tag) = &self.late {
            let port = g.side_port(op, tag, true);
            if let OperatorKind::Window(spec) = &mut g.plan.operators[op as usize].kind {
                spec.late_port = port;
            }
        }
        drop(g);
        out
    }

    fn incremental<F: Folder, U: Serialize + DeserializeOwned + 'static>(
        self,
        name: &str,
        folder: F,
    ) -> DataStream<U> {
        self.add(
            name,
            plan::WindowFunction::Aggregate,
            FnEntry::Aggregate(Box::new(AggOp::new(folder))),
        )
    }

    /// Combines each window's records into one, keeping only the running
    /// value.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(s: KeyedStream<String, (String, u64)>) {
    /// let busiest = s
    ///     .window(TumblingEventTimeWindows::of(Duration::from_secs(60)))
    ///     .reduce(|a, b| if b.1 > a.1 { b } else { a });
    /// # }
    /// ```
    pub fn reduce<F>(self, f: F) -> DataStream<T>
    where
        F: FnMut(T, T) -> T + 'static,
    {
        self.incremental("Window(Reduce)", Reduce { f, _t: PhantomData })
    }

    /// Sums a numeric field per window; the other fields keep the values of
    /// the window's first record.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(s: KeyedStream<String, (String, u64)>) {
    /// let per_minute = s
    ///     .window(TumblingEventTimeWindows::of(Duration::from_secs(60)))
    ///     .sum(|(_, n)| n);
    /// # }
    /// ```
    pub fn sum<N, F>(self, field: F) -> DataStream<T>
    where
        N: std::ops::AddAssign + Copy + 'static,
        F: Fn(&mut T) -> &mut N + 'static,
    {
        self.incremental(
            "Window(Sum)",
            Sum {
                field,
                scratch: None,
            },
        )
    }

    /// Aggregates each window with an [`AggregateFunction`]; only the
    /// accumulator is stored.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// struct Count;
    /// impl AggregateFunction<(String, u64)> for Count {
    ///     type Acc = u64;
    ///     type Out = u64;
    ///     fn create_accumulator(&self) -> u64 { 0 }
    ///     fn add(&self, acc: &mut u64, _v: (String, u64)) { *acc += 1 }
    ///     fn merge(&self, acc: &mut u64, other: u64) { *acc += other }
    ///     fn get_result(&self, acc: &u64) -> u64 { *acc }
    /// }
    /// # fn f(s: KeyedStream<String, (String, u64)>) {
    /// let counts = s.window(TumblingEventTimeWindows::of(Duration::from_secs(60))).aggregate(Count);
    /// # }
    /// ```
    pub fn aggregate<A>(self, f: A) -> DataStream<A::Out>
    where
        A: AggregateFunction<T>,
    {
        self.incremental(
            "Window(Aggregate)",
            UserAggregate {
                f,
                _in: PhantomData,
            },
        )
    }

    /// Aggregates each window incrementally, then turns the result into
    /// output with the key and the window, as Flink's
    /// `aggregate(aggregateFunction, windowFunction)`.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # struct Count;
    /// # impl AggregateFunction<(String, u64)> for Count {
    /// #     type Acc = u64; type Out = u64;
    /// #     fn create_accumulator(&self) -> u64 { 0 }
    /// #     fn add(&self, acc: &mut u64, _v: (String, u64)) { *acc += 1 }
    /// #     fn merge(&self, acc: &mut u64, other: u64) { *acc += other }
    /// #     fn get_result(&self, acc: &u64) -> u64 { *acc }
    /// # }
    /// # fn f(s: KeyedStream<String, (String, u64)>) {
    /// let stats = s
    ///     .window(TumblingEventTimeWindows::of(Duration::from_secs(15)))
    ///     .aggregate_with(Count, |page: &String, w: &TimeWindow, n: u64| {
    ///         (w.start, w.end, page.clone(), n)
    ///     });
    /// # }
    /// ```
    pub fn aggregate_with<A, W, O>(self, f: A, window_fn: W) -> DataStream<O>
    where
        A: AggregateFunction<T>,
        O: Serialize + DeserializeOwned + 'static,
        W: FnMut(&K, &TimeWindow, A::Out) -> O + 'static,
    {
        self.incremental(
            "Window(Aggregate)",
            WithWindow {
                inner: UserAggregate {
                    f,
                    _in: PhantomData,
                },
                window_fn,
                _k: PhantomData,
            },
        )
    }

    /// Runs `f` over all records of each window when it fires, with the key
    /// and the window, as Flink's `ProcessWindowFunction`. All elements are
    /// kept in keyed state until then.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(s: KeyedStream<String, (String, u64)>) {
    /// let medians = s
    ///     .window(TumblingEventTimeWindows::of(Duration::from_secs(60)))
    ///     .process(|page: &String, w: &TimeWindow, mut values: Vec<(String, u64)>, out: &mut Collector<(String, i64, u64)>| {
    ///         values.sort_by_key(|v| v.1);
    ///         out.collect((page.clone(), w.end, values[values.len() / 2].1));
    ///     });
    /// # }
    /// ```
    pub fn process<O, F>(self, f: F) -> DataStream<O>
    where
        O: Serialize + DeserializeOwned + 'static,
        F: for<'c> FnMut(&K, &TimeWindow, Vec<T>, &mut Collector<'c, O>) + 'static,
    {
        self.add(
            "Window(Process)",
            plan::WindowFunction::Process,
            FnEntry::ProcessWindow(Box::new(ProcessWindow::<K, T, O, F> { f, _t: PhantomData })),
        )
    }
}

/// An incremental function whose result goes through a window function.
struct WithWindow<F, W, K> {
    inner: F,
    window_fn: W,
    _k: PhantomData<fn(&K)>,
}

impl<In, A, W, K, O> Folder for WithWindow<UserAggregate<In, A>, W, K>
where
    In: DeserializeOwned + 'static,
    A: AggregateFunction<In>,
    K: DeserializeOwned + 'static,
    O: Serialize,
    W: FnMut(&K, &TimeWindow, A::Out) -> O + 'static,
{
    type In = In;
    type Acc = A::Acc;
    type Memo = ();

    fn create(&mut self) -> A::Acc {
        self.inner.create()
    }

    fn add(&mut self, acc: &mut A::Acc, value: In) {
        self.inner.add(acc, value)
    }

    fn merge(&mut self, acc: &mut A::Acc, other: A::Acc) {
        self.inner.merge(acc, other)
    }

    fn emit(&mut self, _acc: &A::Acc, _out: &mut Vec<u8>) -> bool {
        false
    }

    fn emit_keyed(
        &mut self,
        key: &[u8],
        window: &[u8],
        acc: &A::Acc,
        out: &mut Vec<u8>,
    ) -> Result<bool, Error> {
        let k: K = codec::decode(key).map_err(|e| e.context("cannot decode a window's key"))?;
        let w = TimeWindow::from_namespace(window)
            .ok_or_else(|| Error::new("internal error: a window result without a window"))?;
        let result = self.inner.f.get_result(acc);
        codec::encode(&(self.window_fn)(&k, &w, result), out);
        Ok(true)
    }
}

/// Calls of the host for process-window operators.
pub(crate) trait ProcessWindowOp {
    /// Each record: key, window namespace, and the framed list of the
    /// window's elements.
    fn process_window(&mut self, batch: &[u8]) -> Result<Output, Error>;
}

struct ProcessWindow<K, T, O, F> {
    f: F,
    _t: PhantomData<fn(K, T) -> O>,
}

impl<K, T, O, F> ProcessWindowOp for ProcessWindow<K, T, O, F>
where
    K: DeserializeOwned,
    T: DeserializeOwned,
    O: Serialize,
    F: for<'c> FnMut(&K, &TimeWindow, Vec<T>, &mut Collector<'c, O>),
{
    fn process_window(&mut self, batch: &[u8]) -> Result<Output, Error> {
        let mut out = Writer::new();
        for rec in Reader::new(batch) {
            let rec = rec?;
            let key = rec
                .key
                .ok_or_else(|| Error::new("internal error: a window without a key"))?;
            let k: K = codec::decode(key).map_err(|e| e.context("cannot decode a window's key"))?;
            let w = rec
                .namespace
                .and_then(TimeWindow::from_namespace)
                .ok_or_else(|| Error::new("internal error: a window without its bounds"))?;
            let mut elements = Vec::new();
            for e in Reader::new(rec.value) {
                elements.push(
                    codec::decode(e?.value)
                        .map_err(|e| e.context("cannot decode a window element"))?,
                );
            }
            let ts = rec.timestamp;
            let mut emit = |v: O| {
                let mut b = out.begin(None, None, ts, 0);
                codec::encode(&v, b.value_buf());
                b.finish();
                Ok(())
            };
            let mut c = Collector::new(&mut emit);
            (self.f)(&k, &w, elements, &mut c);
            c.finish()?;
        }
        Ok(Output::main(out))
    }
}

impl<T: Serialize + DeserializeOwned + 'static> DataStream<T> {
    /// The records an operator sent to side output `tag` (late records of a
    /// window, or what a process function sent there).
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(s: KeyedStream<String, (String, u64)>) {
    /// let late = OutputTag::<(String, u64)>::new("late");
    /// let counts = s
    ///     .window(TumblingEventTimeWindows::of(Duration::from_secs(60)))
    ///     .side_output_late_data(&late)
    ///     .sum(|(_, n)| n);
    /// counts.get_side_output(&late).print();
    /// # }
    /// ```
    pub fn get_side_output<U: Serialize + DeserializeOwned + 'static>(
        &self,
        tag: &OutputTag<U>,
    ) -> DataStream<U> {
        let op = self.outputs.first().map_or(0, |o| o.0);
        let port = {
            let mut g = self.g.borrow_mut();
            let port = g.side_port(op, &tag.id, true);
            if port.is_none() {
                let name = g.plan.operators[op as usize].name.clone();
                g.fail(Error::new(format!(
                    "operator '{name}' has no side output '{}'; side outputs come from \
                     windows (side_output_late_data) and process functions",
                    tag.id
                )));
            }
            port.unwrap_or(0)
        };
        DataStream::from_port(self.g.clone(), op, port)
    }
}
