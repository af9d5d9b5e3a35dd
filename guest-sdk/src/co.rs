//! Two streams into one operator, as Flink's `connect` (`CoMapFunction`,
//! `CoFlatMapFunction`, `KeyedCoProcessFunction`), `intervalJoin` and
//! window joins (`join` and `coGroup`).
//!
//! Both inputs become one stream of [`Either`] values: each value is tagged
//! with the input it came from right where it is produced, and the two
//! tagged streams are a union. The operator that reads them therefore sees
//! one input whose watermark is the smaller of the two inputs' watermarks,
//! as a two-input operator does in Flink, and its state and timers are those
//! of any keyed operator.

use crate::plan::{Partitioning, StageKind};
use crate::process::{Context, KeyedProcessFunction};
use crate::stage::{Cx, MapPush, Push, TypedStage};
use crate::window::{TimeWindow, WindowedStream, Windows};
use crate::{Collector, DataStream, Error, KeyedStream, MapState, StateDescriptor};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::marker::PhantomData;

/// A value of the first (`Left`) or the second (`Right`) input of connected
/// streams.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash)]
pub enum Either<A, B> {
    Left(A),
    Right(B),
}

/// Two streams, possibly of different types, read by one operator, as
/// Flink's `ConnectedStreams`.
///
/// ```no_run
/// use weir_sdk::prelude::*;
///
/// # fn f(words: DataStream<String>, lengths: DataStream<u64>) {
/// let texts = words.connect(lengths).map(|w: String| w, |n: u64| n.to_string());
/// # }
/// ```
pub struct ConnectedStreams<A, B> {
    first: DataStream<A>,
    second: DataStream<B>,
}

impl<A, B> std::fmt::Debug for ConnectedStreams<A, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectedStreams")
            .field("first", &std::any::type_name::<A>())
            .field("second", &std::any::type_name::<B>())
            .finish()
    }
}

/// What a connected stream's flat map does with each input, as Flink's
/// `CoFlatMapFunction`; both methods share `self`.
pub trait CoFlatMapFunction<A, B>: 'static {
    /// What the function emits.
    type Out: Serialize + DeserializeOwned + 'static;
    /// Called for each value of the first input.
    fn flat_map1(&mut self, value: A, out: &mut Collector<'_, Self::Out>);
    /// Called for each value of the second input.
    fn flat_map2(&mut self, value: B, out: &mut Collector<'_, Self::Out>);
}

/// What a keyed function over two connected inputs does with their records
/// and its timers, as Flink's `KeyedCoProcessFunction`. State and timers
/// are per key and shared by both inputs.
///
/// ```no_run
/// use weir_sdk::prelude::*;
///
/// /// Emits each order with the latest price of its item.
/// struct Enrich;
///
/// const PRICE: ValueState<i64> = ValueState::new("price");
///
/// impl KeyedCoProcessFunction<String, (String, u32), (String, i64)> for Enrich {
///     type Out = (String, u32, Option<i64>);
///
///     fn states(&self) -> Vec<StateDescriptor> {
///         vec![PRICE.descriptor()]
///     }
///
///     fn process_element1(&mut self, (item, n): (String, u32), ctx: &mut Context<'_, String>,
///                         out: &mut Collector<'_, Self::Out>) -> Result<(), Error> {
///         out.collect((item, n, ctx.value(&PRICE).get()?));
///         Ok(())
///     }
///
///     fn process_element2(&mut self, (_, price): (String, i64), ctx: &mut Context<'_, String>,
///                         _out: &mut Collector<'_, Self::Out>) -> Result<(), Error> {
///         ctx.value(&PRICE).set(&price)
///     }
/// }
/// # fn f(orders: DataStream<(String, u32)>, prices: DataStream<(String, i64)>) {
/// let enriched = orders
///     .connect(prices)
///     .key_by(|(item, _)| item.clone(), |(item, _)| item.clone())
///     .process(Enrich);
/// # }
/// ```
pub trait KeyedCoProcessFunction<K, A, B>: 'static {
    /// What the function emits.
    type Out: Serialize + DeserializeOwned + 'static;

    /// The keyed states the function uses.
    fn states(&self) -> Vec<StateDescriptor> {
        Vec::new()
    }

    /// Called for every record of the first input.
    fn process_element1(
        &mut self,
        value: A,
        ctx: &mut Context<'_, K>,
        out: &mut Collector<'_, Self::Out>,
    ) -> Result<(), Error>;

    /// Called for every record of the second input.
    fn process_element2(
        &mut self,
        value: B,
        ctx: &mut Context<'_, K>,
        out: &mut Collector<'_, Self::Out>,
    ) -> Result<(), Error>;

    /// Called when a timer the function registered fires.
    fn on_timer(
        &mut self,
        timestamp: i64,
        ctx: &mut Context<'_, K>,
        out: &mut Collector<'_, Self::Out>,
    ) -> Result<(), Error> {
        let _ = (timestamp, ctx, out);
        Ok(())
    }
}

impl<A: Serialize + DeserializeOwned + 'static> DataStream<A> {
    /// Connects two streams, possibly of different types, so that one
    /// operator reads both (and, keyed, shares state between them).
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(a: DataStream<String>, b: DataStream<i64>) {
    /// let both = a.connect(b).map(|s: String| s.len() as i64, |n: i64| n);
    /// # }
    /// ```
    pub fn connect<B: Serialize + DeserializeOwned + 'static>(
        self,
        other: DataStream<B>,
    ) -> ConnectedStreams<A, B> {
        ConnectedStreams {
            first: self,
            second: other,
        }
    }

    /// Joins the records of two streams with equal keys in the same window,
    /// as Flink's `join(..).where(..).equalTo(..).window(..)`: `apply` emits
    /// one result per pair, `co_group` sees both groups of each key and
    /// window at once (Flink's `coGroup`).
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(clicks: DataStream<(String, i64)>, views: DataStream<(String, i64)>) {
    /// let pairs = clicks
    ///     .join(views)
    ///     .where_key(|(user, _)| user.clone())
    ///     .equal_to(|(user, _)| user.clone())
    ///     .window(TumblingEventTimeWindows::of(Duration::from_secs(60)))
    ///     .apply(|c: &(String, i64), v: &(String, i64)| (c.0.clone(), c.1, v.1));
    /// # }
    /// ```
    pub fn join<B: Serialize + DeserializeOwned + 'static>(
        self,
        other: DataStream<B>,
    ) -> JoinedStreams<A, B> {
        JoinedStreams {
            first: self,
            second: other,
        }
    }
}

impl<A, B> ConnectedStreams<A, B>
where
    A: Serialize + DeserializeOwned + 'static,
    B: Serialize + DeserializeOwned + 'static,
{
    /// Both inputs as one stream, each value tagged with its input.
    fn tagged(self) -> DataStream<Either<A, B>> {
        let first = self.first.map(Either::<A, B>::Left).name("Connect (1)");
        let second = self.second.map(Either::<A, B>::Right).name("Connect (2)");
        first.union(second)
    }

    /// Maps each input with its own function into one stream, as Flink's
    /// `CoMapFunction`.
    pub fn map<U, F1, F2>(self, mut f1: F1, mut f2: F2) -> DataStream<U>
    where
        U: Serialize + DeserializeOwned + 'static,
        F1: FnMut(A) -> U + 'static,
        F2: FnMut(B) -> U + 'static,
    {
        self.tagged()
            .map(move |e: Either<A, B>| match e {
                Either::Left(a) => f1(a),
                Either::Right(b) => f2(b),
            })
            .name("Co-Map")
    }

    /// Runs a [`CoFlatMapFunction`] over both inputs.
    pub fn flat_map<F>(self, mut f: F) -> DataStream<F::Out>
    where
        F: CoFlatMapFunction<A, B>,
    {
        self.tagged()
            .flat_map_with(
                move |e: Either<A, B>, out: &mut Collector<'_, F::Out>| match e {
                    Either::Left(a) => f.flat_map1(a, out),
                    Either::Right(b) => f.flat_map2(b, out),
                },
            )
            .name("Co-Flat Map")
    }

    /// Partitions both inputs by a key, each with its own key selector.
    pub fn key_by<K, F1, F2>(self, k1: F1, k2: F2) -> ConnectedKeyedStreams<K, A, B>
    where
        K: Serialize + DeserializeOwned + 'static,
        F1: FnMut(&A) -> K + 'static,
        F2: FnMut(&B) -> K + 'static,
    {
        self.first.key_by(k1).connect(self.second.key_by(k2))
    }
}

/// Two streams partitioned by the same key, read by one keyed operator.
pub struct ConnectedKeyedStreams<K, A, B> {
    keyed: KeyedStream<K, Either<A, B>>,
}

impl<K, A, B> std::fmt::Debug for ConnectedKeyedStreams<K, A, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectedKeyedStreams")
            .field("key", &std::any::type_name::<K>())
            .field("first", &std::any::type_name::<A>())
            .field("second", &std::any::type_name::<B>())
            .finish()
    }
}

/// Tags a keyed stream's values with their input, keeping key and
/// partitioning. The tag runs with the key selector's parallelism, chained
/// to it.
fn tag_keyed<K, T, E>(stream: KeyedStream<K, T>, tag: fn(T) -> E, name: &str) -> DataStream<E>
where
    K: Serialize + DeserializeOwned + 'static,
    T: Serialize + DeserializeOwned + 'static,
    E: Serialize + DeserializeOwned + 'static,
{
    let mut tagged: DataStream<E> = stream.into_stream().stage(
        name,
        StageKind::KeyBy,
        TypedStage::<T, E>::new(move |next| Box::new(MapPush { f: tag, next })),
    );
    tagged.partitioning = Partitioning::Hash;
    tagged
}

impl<K, A> KeyedStream<K, A>
where
    K: Serialize + DeserializeOwned + 'static,
    A: Serialize + DeserializeOwned + 'static,
{
    /// Connects two streams keyed the same way: one keyed operator reads
    /// both, with state and timers per key shared by both inputs.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(a: KeyedStream<String, (String, i64)>, b: KeyedStream<String, String>) {
    /// let both = a.connect(b);
    /// # }
    /// ```
    pub fn connect<B: Serialize + DeserializeOwned + 'static>(
        self,
        other: KeyedStream<K, B>,
    ) -> ConnectedKeyedStreams<K, A, B> {
        let first = tag_keyed(self, Either::<A, B>::Left, "Connect (1)");
        let second = tag_keyed(other, Either::<A, B>::Right, "Connect (2)");
        ConnectedKeyedStreams {
            keyed: KeyedStream::new(first.union(second)),
        }
    }

    /// Joins each record of this stream with the records of `other` with the
    /// same key whose event time lies within bounds relative to its own, as
    /// Flink's `intervalJoin`: `b` joins `a` when `a.ts + lower <= b.ts <=
    /// a.ts + upper`. Both inputs need event time; records behind the
    /// watermark are dropped, and each buffered record is dropped once the
    /// watermark passes the last time it can join.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(orders: KeyedStream<String, (String, i64)>, shipments: KeyedStream<String, String>) {
    /// let shipped = orders
    ///     .interval_join(shipments)
    ///     .between(Duration::ZERO, Duration::from_secs(3600))
    ///     .process(|o: &(String, i64), s: &String, _ctx: &JoinContext, out: &mut Collector<String>| {
    ///         out.collect(format!("{} {s}", o.0));
    ///     });
    /// # }
    /// ```
    pub fn interval_join<B: Serialize + DeserializeOwned + 'static>(
        self,
        other: KeyedStream<K, B>,
    ) -> IntervalJoin<K, A, B> {
        IntervalJoin {
            streams: self.connect(other),
        }
    }
}

impl<K, A, B> ConnectedKeyedStreams<K, A, B>
where
    K: Serialize + DeserializeOwned + 'static,
    A: Serialize + DeserializeOwned + 'static,
    B: Serialize + DeserializeOwned + 'static,
{
    /// Runs a [`KeyedCoProcessFunction`] over both inputs.
    pub fn process<F>(self, f: F) -> DataStream<F::Out>
    where
        F: KeyedCoProcessFunction<K, A, B>,
    {
        self.keyed
            .process(CoProcess { f, _t: PhantomData })
            .name("KeyedCoProcess")
    }
}

/// A keyed co-process function as a process function over tagged values.
struct CoProcess<F, A, B> {
    f: F,
    _t: PhantomData<fn(A, B)>,
}

impl<K, A, B, F> KeyedProcessFunction<K, Either<A, B>> for CoProcess<F, A, B>
where
    A: 'static,
    B: 'static,
    F: KeyedCoProcessFunction<K, A, B>,
{
    type Out = F::Out;

    fn states(&self) -> Vec<StateDescriptor> {
        self.f.states()
    }

    fn process_element(
        &mut self,
        value: Either<A, B>,
        ctx: &mut Context<'_, K>,
        out: &mut Collector<'_, F::Out>,
    ) -> Result<(), Error> {
        match value {
            Either::Left(a) => self.f.process_element1(a, ctx, out),
            Either::Right(b) => self.f.process_element2(b, ctx, out),
        }
    }

    fn on_timer(
        &mut self,
        timestamp: i64,
        ctx: &mut Context<'_, K>,
        out: &mut Collector<'_, F::Out>,
    ) -> Result<(), Error> {
        self.f.on_timer(timestamp, ctx, out)
    }
}

/// An interval join being configured (see [`KeyedStream::interval_join`]).
pub struct IntervalJoin<K, A, B> {
    streams: ConnectedKeyedStreams<K, A, B>,
}

impl<K, A, B> std::fmt::Debug for IntervalJoin<K, A, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IntervalJoin")
    }
}

/// The relative bounds of an interval join, in milliseconds; negative
/// bounds reach back in time.
#[derive(Debug, Clone, Copy)]
struct IntervalBounds {
    lower: i64,
    upper: i64,
    lower_inclusive: bool,
    upper_inclusive: bool,
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl<K, A, B> IntervalJoin<K, A, B>
where
    K: Serialize + DeserializeOwned + 'static,
    A: Serialize + DeserializeOwned + 'static,
    B: Serialize + DeserializeOwned + 'static,
{
    /// Joins `b` to `a` when `a.ts + lower <= b.ts <= a.ts + upper`, both
    /// after `a` in time.
    pub fn between(
        self,
        lower: std::time::Duration,
        upper: std::time::Duration,
    ) -> IntervalJoined<K, A, B> {
        self.between_millis(millis(lower), millis(upper))
    }

    /// As [`IntervalJoin::between`] with signed bounds in milliseconds
    /// (`-5000, 0`: the other record at most 5 s earlier).
    pub fn between_millis(self, lower: i64, upper: i64) -> IntervalJoined<K, A, B> {
        IntervalJoined {
            streams: self.streams,
            bounds: IntervalBounds {
                lower,
                upper,
                lower_inclusive: true,
                upper_inclusive: true,
            },
        }
    }
}

/// An interval join with its bounds (see [`KeyedStream::interval_join`]).
pub struct IntervalJoined<K, A, B> {
    streams: ConnectedKeyedStreams<K, A, B>,
    bounds: IntervalBounds,
}

impl<K, A, B> std::fmt::Debug for IntervalJoined<K, A, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntervalJoined")
            .field("bounds", &self.bounds)
            .finish()
    }
}

/// The times of a joined pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinContext {
    /// The first input's record's event time.
    pub left_timestamp: i64,
    /// The second input's record's event time.
    pub right_timestamp: i64,
}

impl JoinContext {
    /// The result's event time: the later of the two.
    pub fn timestamp(&self) -> i64 {
        self.left_timestamp.max(self.right_timestamp)
    }
}

impl<K, A, B> IntervalJoined<K, A, B>
where
    K: Serialize + DeserializeOwned + 'static,
    A: Serialize + DeserializeOwned + 'static,
    B: Serialize + DeserializeOwned + 'static,
{
    /// Excludes pairs exactly at the lower bound.
    pub fn lower_bound_exclusive(mut self) -> Self {
        self.bounds.lower_inclusive = false;
        self
    }

    /// Excludes pairs exactly at the upper bound.
    pub fn upper_bound_exclusive(mut self) -> Self {
        self.bounds.upper_inclusive = false;
        self
    }

    /// Calls `f` for every joined pair, as Flink's `ProcessJoinFunction`;
    /// each result's event time is the later of the pair's.
    pub fn process<O, F>(self, f: F) -> DataStream<O>
    where
        O: Serialize + DeserializeOwned + 'static,
        F: for<'c> FnMut(&A, &B, &JoinContext, &mut Collector<'c, O>) + 'static,
    {
        let bounds = self.bounds;
        let stamped = self.streams.keyed.into_stream();
        if bounds.lower > bounds.upper {
            stamped.g.borrow_mut().fail(Error::new(format!(
                "interval join: the lower bound ({} ms) is after the upper bound ({} ms)",
                bounds.lower, bounds.upper
            )));
        }
        let joined: DataStream<(i64, O)> = KeyedStream::<K, Either<A, B>>::new(stamped)
            .process(IntervalJoinOp::<A, B, O, F> {
                f,
                bounds,
                _t: PhantomData,
            })
            .name("IntervalJoin");
        let join_op = joined.outputs[0].0;
        let stamped = joined.stamp();
        stamped
            .g
            .borrow_mut()
            .owners
            .insert(stamped.outputs[0].0, join_op);
        stamped
    }
}

impl<O: Serialize + DeserializeOwned + 'static> DataStream<(i64, O)> {
    /// Sets each value's event time from its first field and drops it.
    fn stamp(self) -> DataStream<O> {
        self.stage(
            "Timestamps",
            StageKind::Timestamps,
            TypedStage::<(i64, O), O>::new(move |next| Box::new(StampPush { next })),
        )
    }
}

struct StampPush<O> {
    next: Box<dyn Push<O>>,
}

impl<O> Push<(i64, O)> for StampPush<O> {
    #[inline]
    fn push(&mut self, (ts, value): (i64, O), cx: &mut Cx<'_>) -> Result<(), Error> {
        cx.ts = Some(ts);
        self.next.push(value, cx)
    }
}

/// Records of each side waiting for partners, by event time.
const LEFT: &str = "left";
const RIGHT: &str = "right";

struct IntervalJoinOp<A, B, O, F> {
    f: F,
    bounds: IntervalBounds,
    _t: PhantomData<fn(A, B) -> O>,
}

impl<A, B, O, F> IntervalJoinOp<A, B, O, F> {
    /// Whether `right_ts` joins a left record at `left_ts`.
    fn joins(&self, left_ts: i64, right_ts: i64) -> bool {
        let b = &self.bounds;
        let lo = left_ts.saturating_add(b.lower);
        let hi = left_ts.saturating_add(b.upper);
        (if b.lower_inclusive {
            right_ts >= lo
        } else {
            right_ts > lo
        }) && (if b.upper_inclusive {
            right_ts <= hi
        } else {
            right_ts < hi
        })
    }

    /// When a left record at `ts` can no longer join.
    fn left_expiry(&self, ts: i64) -> i64 {
        ts.saturating_add(self.bounds.upper.max(0))
    }

    /// When a right record at `ts` can no longer join.
    fn right_expiry(&self, ts: i64) -> i64 {
        ts.saturating_add(self.bounds.lower.saturating_neg().max(0))
    }
}

fn event_time<K>(ctx: &Context<'_, K>) -> Result<i64, Error> {
    ctx.timestamp().ok_or_else(|| {
        Error::new(
            "an interval join needs event time: assign timestamps and watermarks to both inputs",
        )
    })
}

/// Adds `value` to the buffer at `ts`.
fn buffer<K, T: Serialize + DeserializeOwned>(
    ctx: &Context<'_, K>,
    state: &MapState<i64, Vec<T>>,
    ts: i64,
    value: T,
) -> Result<(), Error> {
    let map = ctx.map(state);
    let mut at = map.get(&ts)?.unwrap_or_default();
    at.push(value);
    map.put(&ts, &at)
}

impl<K, A, B, O, F> KeyedProcessFunction<K, Either<A, B>> for IntervalJoinOp<A, B, O, F>
where
    A: Serialize + DeserializeOwned + 'static,
    B: Serialize + DeserializeOwned + 'static,
    O: Serialize + DeserializeOwned + 'static,
    F: for<'c> FnMut(&A, &B, &JoinContext, &mut Collector<'c, O>) + 'static,
{
    type Out = (i64, O);

    fn states(&self) -> Vec<StateDescriptor> {
        vec![
            MapState::<i64, Vec<A>>::new(LEFT).descriptor(),
            MapState::<i64, Vec<B>>::new(RIGHT).descriptor(),
        ]
    }

    fn process_element(
        &mut self,
        value: Either<A, B>,
        ctx: &mut Context<'_, K>,
        out: &mut Collector<'_, (i64, O)>,
    ) -> Result<(), Error> {
        let ts = event_time(ctx)?;
        let watermark = ctx.timer_service().current_watermark();
        if ts < watermark {
            // Late: it could miss partners already dropped.
            return Ok(());
        }
        let left: MapState<i64, Vec<A>> = MapState::new(LEFT);
        let right: MapState<i64, Vec<B>> = MapState::new(RIGHT);
        // Each pair's results carry the later of the pair's times.
        let mut emit = |a: &A, b: &B, jc: JoinContext, f: &mut F| {
            let at = jc.timestamp();
            let mut push = |o: O| {
                out.collect((at, o));
                Ok(())
            };
            let mut c = Collector::new(&mut push);
            f(a, b, &jc, &mut c);
            c.finish()
        };
        let expiry = match value {
            Either::Left(a) => {
                for (rt, bs) in ctx.map(&right).entries()? {
                    if self.joins(ts, rt) {
                        for b in &bs {
                            let jc = JoinContext {
                                left_timestamp: ts,
                                right_timestamp: rt,
                            };
                            emit(&a, b, jc, &mut self.f)?;
                        }
                    }
                }
                let expiry = self.left_expiry(ts);
                if expiry >= watermark {
                    buffer(ctx, &left, ts, a)?;
                }
                expiry
            }
            Either::Right(b) => {
                for (lt, as_) in ctx.map(&left).entries()? {
                    if self.joins(lt, ts) {
                        for a in &as_ {
                            let jc = JoinContext {
                                left_timestamp: lt,
                                right_timestamp: ts,
                            };
                            emit(a, &b, jc, &mut self.f)?;
                        }
                    }
                }
                let expiry = self.right_expiry(ts);
                if expiry >= watermark {
                    buffer(ctx, &right, ts, b)?;
                }
                expiry
            }
        };
        ctx.timer_service().register_event_time_timer(expiry);
        Ok(())
    }

    fn on_timer(
        &mut self,
        timestamp: i64,
        ctx: &mut Context<'_, K>,
        _out: &mut Collector<'_, (i64, O)>,
    ) -> Result<(), Error> {
        // Each buffered time registered a timer at its expiry: the timer
        // names the one entry per side that expires now.
        let left: MapState<i64, Vec<A>> = MapState::new(LEFT);
        let right: MapState<i64, Vec<B>> = MapState::new(RIGHT);
        let b = &self.bounds;
        if let Some(ts) = timestamp.checked_sub(b.upper.max(0)) {
            ctx.map(&left).remove(&ts)?;
        }
        if let Some(ts) = timestamp.checked_sub(b.lower.saturating_neg().max(0)) {
            ctx.map(&right).remove(&ts)?;
        }
        Ok(())
    }
}

/// Two streams to join per window (see [`DataStream::join`]).
pub struct JoinedStreams<A, B> {
    first: DataStream<A>,
    second: DataStream<B>,
}

impl<A, B> std::fmt::Debug for JoinedStreams<A, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JoinedStreams")
    }
}

impl<A, B> JoinedStreams<A, B>
where
    A: Serialize + DeserializeOwned + 'static,
    B: Serialize + DeserializeOwned + 'static,
{
    /// The key of the first stream's records.
    pub fn where_key<K, F1>(self, k1: F1) -> JoinWhere<K, A, B>
    where
        K: Serialize + DeserializeOwned + 'static,
        F1: FnMut(&A) -> K + 'static,
    {
        JoinWhere {
            first: self.first.key_by(k1),
            second: self.second,
        }
    }
}

/// A window join with the first stream's key (see [`DataStream::join`]).
pub struct JoinWhere<K, A, B> {
    first: KeyedStream<K, A>,
    second: DataStream<B>,
}

impl<K, A, B> std::fmt::Debug for JoinWhere<K, A, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JoinWhere")
    }
}

impl<K, A, B> JoinWhere<K, A, B>
where
    K: Serialize + DeserializeOwned + 'static,
    A: Serialize + DeserializeOwned + 'static,
    B: Serialize + DeserializeOwned + 'static,
{
    /// The key of the second stream's records, equal to the first's for a
    /// pair to join.
    pub fn equal_to<F2>(self, k2: F2) -> JoinKeyed<K, A, B>
    where
        F2: FnMut(&B) -> K + 'static,
    {
        JoinKeyed {
            keyed: self.first.connect(self.second.key_by(k2)).keyed,
        }
    }
}

/// A window join with both keys (see [`DataStream::join`]).
pub struct JoinKeyed<K, A, B> {
    keyed: KeyedStream<K, Either<A, B>>,
}

impl<K, A, B> std::fmt::Debug for JoinKeyed<K, A, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JoinKeyed")
    }
}

impl<K, A, B> JoinKeyed<K, A, B>
where
    K: Serialize + DeserializeOwned + 'static,
    A: Serialize + DeserializeOwned + 'static,
    B: Serialize + DeserializeOwned + 'static,
{
    /// The windows both streams' records are grouped in.
    pub fn window(self, windows: Windows) -> JoinWindowed<K, A, B> {
        JoinWindowed {
            windowed: self.keyed.window(windows),
        }
    }
}

/// A window join ready to run (see [`DataStream::join`]).
pub struct JoinWindowed<K, A, B> {
    windowed: WindowedStream<K, Either<A, B>>,
}

impl<K, A, B> std::fmt::Debug for JoinWindowed<K, A, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JoinWindowed")
    }
}

impl<K, A, B> JoinWindowed<K, A, B>
where
    K: Serialize + DeserializeOwned + 'static,
    A: Serialize + DeserializeOwned + 'static,
    B: Serialize + DeserializeOwned + 'static,
{
    /// Keeps records up to `lateness` behind the watermark (see
    /// [`WindowedStream::allowed_lateness`]).
    pub fn allowed_lateness(self, lateness: std::time::Duration) -> Self {
        JoinWindowed {
            windowed: self.windowed.allowed_lateness(lateness),
        }
    }

    /// Emits `f(a, b)` for every pair of records with equal keys in the same
    /// window, as Flink's `JoinFunction`; results carry the window's last
    /// millisecond as their event time.
    pub fn apply<O, F>(self, mut f: F) -> DataStream<O>
    where
        O: Serialize + DeserializeOwned + 'static,
        F: FnMut(&A, &B) -> O + 'static,
    {
        self.co_group_named(
            "Window Join",
            move |_: &K, _: &TimeWindow, left: Vec<A>, right: Vec<B>, out: &mut Collector<O>| {
                for a in &left {
                    for b in &right {
                        out.collect(f(a, b));
                    }
                }
            },
        )
    }

    /// Calls `f` once per key and window with the records of both streams,
    /// either list possibly empty, as Flink's `CoGroupFunction`.
    pub fn co_group<O, F>(self, f: F) -> DataStream<O>
    where
        O: Serialize + DeserializeOwned + 'static,
        F: for<'c> FnMut(&K, &TimeWindow, Vec<A>, Vec<B>, &mut Collector<'c, O>) + 'static,
    {
        self.co_group_named("Window CoGroup", f)
    }

    fn co_group_named<O, F>(self, name: &str, mut f: F) -> DataStream<O>
    where
        O: Serialize + DeserializeOwned + 'static,
        F: for<'c> FnMut(&K, &TimeWindow, Vec<A>, Vec<B>, &mut Collector<'c, O>) + 'static,
    {
        self.windowed
            .process(
                move |k: &K, w: &TimeWindow, all: Vec<Either<A, B>>, out: &mut Collector<O>| {
                    let mut left = Vec::new();
                    let mut right = Vec::new();
                    for e in all {
                        match e {
                            Either::Left(a) => left.push(a),
                            Either::Right(b) => right.push(b),
                        }
                    }
                    f(k, w, left, right, out);
                },
            )
            .name(name)
    }
}
