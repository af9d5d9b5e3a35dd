// Types of the Weir JavaScript SDK (`@weir/sdk`).
//
// Values that cross operators and live in keyed state are encoded as JSON:
// use numbers, strings, booleans, null, arrays and plain objects.

/** A value that can travel between operators and live in keyed state. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** An error in a job; the task fails with its message. */
export declare class WeirError extends Error {}

/** A connector and its options, as Flink SQL's `WITH ('key' = 'value')`. */
export declare class Connector {
  constructor(kind: string, options?: Record<string, string | number | boolean> | [string, string][]);
  readonly kind: string;
  options: [string, string][];
  set(key: string, value: string | number | boolean): this;
}

/** Durations in milliseconds, as Flink's `Time`. */
export declare const Time: {
  milliseconds(n: number): number;
  seconds(n: number): number;
  minutes(n: number): number;
  hours(n: number): number;
  days(n: number): number;
};

/** Job arguments: `--key value` pairs, as Flink's `ParameterTool`. */
export declare class Args {
  readonly raw: string[];
  get(key: string): string | undefined;
  get(key: string, fallback: string): string;
  has(key: string): boolean;
  /** The value, or an error naming the missing `--key`. */
  required(key: string): string;
  getNumber(key: string): number | undefined;
  getNumber(key: string, fallback: number): number;
}

/** Receives the results of `flatMap`, `process` and timer functions. */
export interface Collector<T> {
  collect(value: T): void;
}

/** The job's environment, as Flink's `StreamExecutionEnvironment`. */
export declare class Env {
  /** A setting with a Flink key, e.g. `env.set("restart-strategy.type", "fixed-delay")`. */
  set(key: string, value: string | number | boolean): this;
  setParallelism(n: number): this;
  setMaxParallelism(n: number): this;
  enableCheckpointing(intervalMs: number): this;
  setJobName(name: string): this;
  /** The job's own version, handed to the `restore` hook of later versions. */
  setVersion(version: string): this;
  /** Snapshots the module's whole linear memory with every checkpoint. */
  snapshotMemory(): this;
  /** Explicit state for upgrades, kept per task: `save` runs at every snapshot, `restore` in a later version. */
  stateHooks(
    save: () => Uint8Array | string | undefined,
    restore: (fromVersion: string, data: Uint8Array) => void,
  ): this;
  fromSource<T>(connector: Connector, name: string, decode: (raw: Uint8Array) => T): DataStream<T>;
  /** Reads a text file line by line (bounded). */
  readTextFile(path: string): DataStream<string>;
  /** Reads lines from a TCP socket (unbounded). */
  socketTextStream(hostname: string, port: number): DataStream<string>;
  /** Generates `f(0), f(1), ...`: `count` in all (unbounded without), at most `rowsPerSecond`. */
  fromGenerator<T>(f: (index: number) => T, options?: { count?: number; rowsPerSecond?: number }): DataStream<T>;
  /** A bounded stream of the given values. */
  fromCollection<T>(values: Iterable<T>): DataStream<T>;
  /** Nexmark's events from the host's generator, with event times and watermarks 4 s behind. */
  nexmark(options?: { events?: number; eventsPerSecond?: number; eventTimeRate?: number }): DataStream<NexmarkEvent>;
}

export interface NexmarkPerson {
  kind: "person";
  id: number;
  name: string;
  emailAddress: string;
  creditCard: string;
  city: string;
  state: string;
  dateTime: number;
  extra: string;
}
export interface NexmarkAuction {
  kind: "auction";
  id: number;
  itemName: string;
  description: string;
  initialBid: number;
  reserve: number;
  dateTime: number;
  expires: number;
  seller: number;
  category: number;
  extra: string;
}
export interface NexmarkBid {
  kind: "bid";
  auction: number;
  bidder: number;
  price: number;
  channel: string;
  url: string;
  dateTime: number;
  extra: string;
}
export type NexmarkEvent = NexmarkPerson | NexmarkAuction | NexmarkBid;
/** A record of the `nexmark` source as an object. */
export declare function decodeNexmark(raw: Uint8Array): NexmarkEvent;

/** Names a side output, as Flink's `OutputTag`. */
export declare class OutputTag<T> {
  constructor(id: string);
  readonly id: string;
  /** Only for type inference. */
  readonly __type?: T;
}

declare class Stream {
  /** Names the operator created last. */
  name(name: string): this;
  /** The stable identity of the operator created last; state is matched by uid on restore. */
  uid(uid: string): this;
  setParallelism(n: number): this;
}

/** A stream of values, as Flink's `DataStream`. */
export declare class DataStream<T> extends Stream {
  map<U>(f: (value: T) => U): DataStream<U>;
  /** Returns an iterable of results, or calls `out.collect(result)`. */
  flatMap<U>(f: (value: T, out: Collector<U>) => Iterable<U> | void): DataStream<U>;
  filter(f: (value: T) => boolean): DataStream<T>;
  keyBy<K extends Json>(key: (value: T) => K): KeyedStream<T, K>;
  keyBy<I extends keyof T>(field: I): KeyedStream<T, T[I]>;
  rebalance(): DataStream<T>;
  broadcast(): DataStream<T>;
  /** Merges streams of the same type: the next operator reads all of them. */
  union(...others: DataStream<T>[]): DataStream<T>;
  /** Connects two streams so that one operator reads both (`map`, `flatMap`, or `keyBy(k1, k2).process`). */
  connect<U>(other: DataStream<U>): ConnectedStreams<T, U>;
  /** A window join: `join(other).where(k1).equalTo(k2).window(assigner).apply((a, b) => result)`. */
  join<U>(other: DataStream<U>): JoinedStreams<T, U, false>;
  /** A window co-group: as `join`, but `apply((first, second, out) => ...)` sees both lists of each key and window. */
  coGroup<U>(other: DataStream<U>): JoinedStreams<T, U, true>;
  assignTimestampsAndWatermarks(strategy: WatermarkStrategy<T>): DataStream<T>;
  getSideOutput<U>(tag: OutputTag<U>): DataStream<U>;
  sinkTo(connector: Connector, name: string, encode?: (value: T) => Uint8Array | string): Sink;
  /** Prints every value (strings as they are, anything else as JSON). */
  print(): Sink;
  /** Writes `String(value)` lines to a file. */
  writeAsText(path: string): Sink;
  discard(): Sink;
}

/** The end of a stream. */
export declare class Sink extends Stream {
  option(key: string, value: string | number | boolean): this;
  /** A file sink writes its lines sorted when the input ends. */
  sorted(): this;
}

/** An incremental aggregation, as Flink's `AggregateFunction`. */
export interface AggregateFunction<T, A, R> {
  createAccumulator(): A;
  add(value: T, accumulator: A): A;
  getResult(accumulator: A): R;
  /** Needed by session windows. */
  merge?(a: A, b: A): A;
}

export interface ValueState<V> {
  value(): V | undefined;
  update(value: V): void;
  clear(): void;
}

export interface ListState<V> {
  get(): V[];
  add(value: V): void;
  addAll(values: Iterable<V>): void;
  update(values: Iterable<V>): void;
  clear(): void;
}

export interface MapState<K, V> {
  get(key: K): V | undefined;
  contains(key: K): boolean;
  put(key: K, value: V): void;
  remove(key: K): void;
  entries(): [K, V][];
  keys(): K[];
  values(): V[];
  isEmpty(): boolean;
  clear(): void;
}

export declare class ValueStateDescriptor<V = Json> {
  constructor(name: string);
  readonly __type?: V;
}
export declare class ListStateDescriptor<V = Json> {
  constructor(name: string);
  readonly __type?: V;
}
export declare class MapStateDescriptor<K = Json, V = Json> {
  constructor(name: string);
  readonly __type?: [K, V];
}

/** Declares the keyed states of a process function, in its `open`. */
export declare class RuntimeContext {
  getState<V>(d: ValueStateDescriptor<V>): ValueState<V>;
  getListState<V>(d: ListStateDescriptor<V>): ListState<V>;
  getMapState<K, V>(d: MapStateDescriptor<K, V>): MapState<K, V>;
}

export interface TimerService {
  currentWatermark(): number;
  currentProcessingTime(): number;
  registerEventTimeTimer(time: number): void;
  registerProcessingTimeTimer(time: number): void;
  deleteEventTimeTimer(time: number): void;
  deleteProcessingTimeTimer(time: number): void;
}

export interface ProcessContext<K> {
  getCurrentKey(): K;
  /** The record's (or timer's) event time. */
  timestamp(): number | undefined;
  /** In `onTimer`: "event-time" or "processing-time". */
  timeDomain(): "event-time" | "processing-time" | undefined;
  timerService(): TimerService;
  output<U>(tag: OutputTag<U>, value: U): void;
}

/** A keyed function with state and timers, as Flink's `KeyedProcessFunction`. */
export interface KeyedProcessFunction<K, T, R> {
  open?(ctx: RuntimeContext): void;
  processElement(value: T, ctx: ProcessContext<K>, out: Collector<R>): Iterable<R> | void;
  onTimer?(timestamp: number, ctx: ProcessContext<K>, out: Collector<R>): Iterable<R> | void;
}

/** A window `[start, end)`. */
export declare class TimeWindow {
  readonly start: number;
  readonly end: number;
  maxTimestamp(): number;
}

export interface ProcessWindowFunction<K, T, R> {
  process(key: K, context: { window(): TimeWindow }, elements: T[], out: Collector<R>): Iterable<R> | void;
}

/** A stream partitioned by key, as Flink's `KeyedStream`. */
export declare class KeyedStream<T, K> extends Stream {
  /** A running sum of a field (an index or a property), or of the value itself. */
  sum(field?: keyof T | number): DataStream<T>;
  reduce(f: (accumulated: T, value: T) => T): DataStream<T>;
  aggregate<A, R>(fn: AggregateFunction<T, A, R>): DataStream<R>;
  process<R>(fn: KeyedProcessFunction<K, T, R>): DataStream<R>;
  window(assigner: WindowAssigner): WindowedStream<T, K>;
  countWindow(size: number): WindowedStream<T, K>;
  /** Connects two streams keyed the same way: one keyed operator reads both, with state and timers per key. */
  connect<U>(other: KeyedStream<U, K>): ConnectedKeyedStreams<T, U, K>;
  /** Joins records of both streams with equal keys whose event times lie within `between(lowerMs, upperMs)`. */
  intervalJoin<U>(other: KeyedStream<U, K>): IntervalJoin<T, U>;
}

/** What a connected stream's map does with each input, as Flink's `CoMapFunction`. */
export interface CoMapFunction<A, B, R> {
  map1(value: A): R;
  map2(value: B): R;
}

/** As Flink's `CoFlatMapFunction`: each returns an iterable of results or calls `out.collect(result)`. */
export interface CoFlatMapFunction<A, B, R> {
  flatMap1(value: A, out: Collector<R>): Iterable<R> | void;
  flatMap2(value: B, out: Collector<R>): Iterable<R> | void;
}

/** Two streams read by one operator, as Flink's `ConnectedStreams`. */
export declare class ConnectedStreams<A, B> {
  map<R>(fn: CoMapFunction<A, B, R>): DataStream<R>;
  flatMap<R>(fn: CoFlatMapFunction<A, B, R>): DataStream<R>;
  keyBy<K extends Json>(key1: (value: A) => K, key2: (value: B) => K): ConnectedKeyedStreams<A, B, K>;
}

/** A keyed function over two connected inputs, as Flink's `KeyedCoProcessFunction`. */
export interface KeyedCoProcessFunction<K, A, B, R> {
  open?(ctx: RuntimeContext): void;
  processElement1(value: A, ctx: ProcessContext<K>, out: Collector<R>): Iterable<R> | void;
  processElement2(value: B, ctx: ProcessContext<K>, out: Collector<R>): Iterable<R> | void;
  onTimer?(timestamp: number, ctx: ProcessContext<K>, out: Collector<R>): Iterable<R> | void;
}

/** Two keyed streams read by one keyed operator. */
export declare class ConnectedKeyedStreams<A, B, K> {
  process<R>(fn: KeyedCoProcessFunction<K, A, B, R>): DataStream<R>;
}

/** The event times of a joined pair; `timestamp` (the later) is the result's. */
export interface JoinContext {
  readonly leftTimestamp: number;
  readonly rightTimestamp: number;
  readonly timestamp: number;
}

/** As Flink's `ProcessJoinFunction`. */
export interface ProcessJoinFunction<A, B, R> {
  processElement(left: A, right: B, ctx: JoinContext, out: Collector<R>): Iterable<R> | void;
}

export declare class IntervalJoin<A, B> {
  /** Joins `b` to `a` when `a.ts + lowerMs <= b.ts <= a.ts + upperMs`. */
  between(lowerMs: number, upperMs: number): IntervalJoined<A, B>;
}

export declare class IntervalJoined<A, B> {
  lowerBoundExclusive(): this;
  upperBoundExclusive(): this;
  process<R>(
    fn: ProcessJoinFunction<A, B, R> | ((left: A, right: B, ctx: JoinContext, out: Collector<R>) => Iterable<R> | void),
  ): DataStream<R>;
}

/** A window join or co-group being configured. */
export declare class JoinedStreams<A, B, G extends boolean> {
  where<K extends Json>(key1: (value: A) => K): JoinedStreams<A, B, G> & { equalTo(key2: (value: B) => K): JoinKeyed<A, B, G> };
}

export declare class JoinKeyed<A, B, G extends boolean> {
  window(assigner: WindowAssigner): JoinWindowed<A, B, G>;
}

export declare class JoinWindowed<A, B, G extends boolean> {
  allowedLateness(ms: number): this;
  /** Join: `(a, b) => result` per pair. Co-group: `(first, second, out) => results` per key and window. */
  apply<R>(
    fn: G extends true ? (first: A[], second: B[], out: Collector<R>) => Iterable<R> | void : (a: A, b: B) => R,
  ): DataStream<R>;
}

export interface WindowAssigner {
  readonly kind: "tumbling" | "sliding" | "session" | "global";
  readonly domain: "event-time" | "processing-time";
}

export declare const TumblingEventTimeWindows: { of(sizeMs: number, offsetMs?: number): WindowAssigner };
export declare const TumblingProcessingTimeWindows: { of(sizeMs: number, offsetMs?: number): WindowAssigner };
export declare const SlidingEventTimeWindows: { of(sizeMs: number, slideMs: number, offsetMs?: number): WindowAssigner };
export declare const SlidingProcessingTimeWindows: { of(sizeMs: number, slideMs: number, offsetMs?: number): WindowAssigner };
export declare const EventTimeSessionWindows: { withGap(gapMs: number): WindowAssigner };
export declare const ProcessingTimeSessionWindows: { withGap(gapMs: number): WindowAssigner };
export declare const GlobalWindows: { create(): WindowAssigner };
export interface Trigger {
  readonly tag: "default" | "count";
}
export declare const CountTrigger: { of(n: number): Trigger };

/** A keyed stream grouped into windows, as Flink's `WindowedStream`. */
export declare class WindowedStream<T, K> {
  trigger(trigger: Trigger): this;
  allowedLateness(ms: number): this;
  sideOutputLateData(tag: OutputTag<T>): this;
  aggregate<A, R>(fn: AggregateFunction<T, A, R>): DataStream<R>;
  aggregate<A, R, O>(fn: AggregateFunction<T, A, R>, windowFunction: (key: K, window: TimeWindow, result: R) => O): DataStream<O>;
  reduce(f: (accumulated: T, value: T) => T): DataStream<T>;
  reduce<O>(f: (accumulated: T, value: T) => T, windowFunction: (key: K, window: TimeWindow, result: T) => O): DataStream<O>;
  sum(field?: keyof T | number): DataStream<T>;
  process<R>(fn: ProcessWindowFunction<K, T, R>): DataStream<R>;
}

/** How event timestamps are taken and how far watermarks trail them. */
export declare class WatermarkStrategy<T> {
  static forBoundedOutOfOrderness<T>(maxOutOfOrdernessMs: number): WatermarkStrategy<T>;
  static forMonotonousTimestamps<T>(): WatermarkStrategy<T>;
  /** `f(value, recordTimestamp)` returns the event time in ms. */
  withTimestampAssigner(f: (value: T, recordTimestamp: number | undefined) => number): this;
  withIdleness(timeoutMs: number): this;
}

/** Registers a job function; a module may hold several (`weir run --entry NAME`). */
export declare function job(name: string, f: (env: Env, args: Args) => void): (env: Env, args: Args) => void;
export declare function job(f: (env: Env, args: Args) => void): (env: Env, args: Args) => void;
