// Weir jobs in JavaScript: the DataStream API, shaped as Flink's.
//
//   import { job } from "@weir/sdk";
//
//   job("wordcount", (env, args) => {
//     env.readTextFile(args.required("input"))
//       .flatMap((line) => line.split(/\s+/).filter(Boolean).map((w) => [w, 1]))
//       .keyBy((pair) => pair[0])
//       .sum(1).uid("counts")
//       .print();
//   });
//
// Build it into a component with `weir-js build job.js -o job.wasm`.

/** An error in a job; the task fails with its message. */
export class WeirError extends Error {}

const FORWARD = "forward";
const REBALANCE = "rebalance";
const HASH = "hash";
const BROADCAST = "broadcast";

class Graph {
  constructor(name) {
    this.name = name;
    this.version = "1";
    this.config = new Map();
    this.ops = [];
    this.fns = new Map();
    this.hooks = null;
    this.tags = new Map(); // `${op}/${tag}` -> port
    // Operators that are part of another (an interval join's timestamps): name, uid and parallelism apply to it.
    this.owners = new Map();
  }

  add(op, fn) {
    this.ops.push(op);
    const i = this.ops.length - 1;
    if (fn !== undefined) this.fns.set(i, fn);
    return i;
  }

  sidePort(op, tag) {
    const k = `${op}/${tag.id}`;
    if (!this.tags.has(k)) {
      this.ops[op].sideOutputs += 1;
      this.tags.set(k, this.ops[op].sideOutputs);
    }
    return this.tags.get(k);
  }
}

function operator(name, inputs, kind) {
  return { uid: undefined, name, parallelism: undefined, inputs, kind, states: [], sideOutputs: 0 };
}

/** A connector and its options, as Flink SQL's `WITH ('key' = 'value')`. */
export class Connector {
  constructor(kind, options = {}) {
    this.kind = kind;
    this.options = Array.isArray(options)
      ? options.map(([k, v]) => [String(k), String(v)])
      : Object.entries(options).map(([k, v]) => [k, String(v)]);
  }

  set(key, value) {
    this.options = this.options.filter(([k]) => k !== key);
    this.options.push([key, String(value)]);
    return this;
  }
}

/** Durations in milliseconds, as Flink's `Time`. */
export const Time = {
  milliseconds: (n) => Math.trunc(n),
  seconds: (n) => Math.trunc(n * 1000),
  minutes: (n) => Math.trunc(n * 60_000),
  hours: (n) => Math.trunc(n * 3_600_000),
  days: (n) => Math.trunc(n * 86_400_000),
};

/** Job arguments: `--key value` pairs, as Flink's `ParameterTool`. */
export class Args {
  constructor(raw) {
    this.raw = [...raw];
    this.values = new Map();
    for (let i = 0; i < raw.length; i++) {
      const arg = raw[i];
      let key;
      if (arg.startsWith("--")) key = arg.slice(2);
      else if (arg.startsWith("-")) key = arg.slice(1);
      else throw new WeirError(`unexpected argument '${arg}': job arguments are --key value pairs`);
      if (!key) throw new WeirError("empty argument name '--'");
      if (i + 1 < raw.length && !raw[i + 1].startsWith("--")) {
        this.values.set(key, raw[i + 1]);
        i += 1;
      } else {
        this.values.set(key, "true");
      }
    }
  }

  get(key, fallback = undefined) {
    return this.values.has(key) ? this.values.get(key) : fallback;
  }

  has(key) {
    return this.values.has(key);
  }

  required(key) {
    if (!this.values.has(key)) throw new WeirError(`missing argument --${key}`);
    return this.values.get(key);
  }

  getNumber(key, fallback = undefined) {
    if (!this.values.has(key)) return fallback;
    const v = this.values.get(key);
    const n = Number(v);
    if (!Number.isFinite(n)) throw new WeirError(`--${key} ${v}: not a number`);
    return n;
  }
}

const utf8 = (raw) => new TextDecoder("utf-8", { fatal: true }).decode(raw);

/**
 * A record of the `nexmark` source as an object: a tag byte (0 person, 1 auction, 2 bid), the integer fields as
 * little-endian 64-bit integers, then the strings, each as a little-endian 16-bit length and its UTF-8 bytes.
 */
export function decodeNexmark(raw) {
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const fail = (why) => {
    throw new WeirError(`not a Nexmark event: ${why}`);
  };
  const ints = (n) => {
    if (raw.byteLength < 1 + 8 * n) fail("truncated");
    return Array.from({ length: n }, (_, i) => Number(dv.getBigInt64(1 + 8 * i, true)));
  };
  const strings = (off, n) => {
    const out = [];
    for (let i = 0; i < n; i++) {
      if (off + 2 > raw.byteLength) fail("truncated");
      const len = dv.getUint16(off, true);
      off += 2;
      if (off + len > raw.byteLength) fail("truncated");
      out.push(utf8(raw.subarray(off, off + len)));
      off += len;
    }
    if (off !== raw.byteLength) fail("bytes after the end");
    return out;
  };
  switch (raw[0]) {
    case 0: {
      const [id, dateTime] = ints(2);
      const [name, emailAddress, creditCard, city, state, extra] = strings(17, 6);
      return { kind: "person", id, name, emailAddress, creditCard, city, state, dateTime, extra };
    }
    case 1: {
      const [id, initialBid, reserve, dateTime, expires, seller, category] = ints(7);
      const [itemName, description, extra] = strings(57, 3);
      return { kind: "auction", id, itemName, description, initialBid, reserve, dateTime, expires, seller, category, extra };
    }
    case 2: {
      const [auction, bidder, price, dateTime] = ints(4);
      const [channel, url, extra] = strings(33, 3);
      return { kind: "bid", auction, bidder, price, channel, url, dateTime, extra };
    }
    default:
      return fail(`tag ${raw[0]}`);
  }
}

/** The job's environment, as Flink's `StreamExecutionEnvironment`. */
export class Env {
  constructor(name) {
    this._g = new Graph(name);
  }

  /** A setting with a Flink key, e.g. `env.set("restart-strategy.type", "fixed-delay")`. */
  set(key, value) {
    this._g.config.set(key, String(value));
    return this;
  }

  setParallelism(n) {
    return this.set("parallelism.default", n);
  }

  setMaxParallelism(n) {
    return this.set("pipeline.max-parallelism", n);
  }

  enableCheckpointing(intervalMs) {
    return this.set("execution.checkpointing.interval", `${Math.trunc(intervalMs)}ms`);
  }

  setJobName(name) {
    this._g.name = name;
    return this;
  }

  /** The job's own version, handed to the `restore` hook of later versions. */
  setVersion(version) {
    this._g.version = String(version);
    return this;
  }

  /** Snapshots the module's whole linear memory with every checkpoint. */
  snapshotMemory() {
    return this.set("weir.state.memory-snapshots", true);
  }

  /** Explicit state for upgrades: `save()` returns a Uint8Array (or undefined) at every snapshot; `restore(fromVersion, data)` takes it over in a later version. */
  stateHooks(save, restore) {
    this._g.hooks = { save, restore };
    return this;
  }

  /** Reads from any connector the host knows; `decode(raw: Uint8Array)` turns each raw record into a value (a throw follows the source's decode policy). */
  fromSource(connector, name, decode) {
    const g = this._g;
    const src = g.add(
      operator(name, [], {
        tag: "source",
        val: { connector: { kind: connector.kind, options: connector.options }, timestamps: "none", watermarks: undefined },
      }),
    );
    const dec = g.add(operator(`${name} (decode)`, [{ from: src, port: 0, partitioning: FORWARD }], { tag: "stage", val: "decode" }), [
      "decode",
      decode,
    ]);
    return new DataStream(g, dec);
  }

  /** Reads a text file line by line (bounded), as Flink's `readTextFile`. */
  readTextFile(path) {
    return this.fromSource(new Connector("file", { path }), "Source: file", utf8);
  }

  /** Reads lines from a TCP socket (unbounded), as Flink's `socketTextStream`. */
  socketTextStream(hostname, port) {
    return this.fromSource(new Connector("socket", { hostname, port }), "Source: socket", utf8);
  }

  /** Generates `f(0), f(1), ...`: `count` records in all (unbounded without), at most `rowsPerSecond`. */
  fromGenerator(f, { count, rowsPerSecond } = {}) {
    const options = {};
    if (count !== undefined) options["number-of-rows"] = count;
    if (rowsPerSecond !== undefined) options["rows-per-second"] = rowsPerSecond;
    return this.fromSource(new Connector("datagen", options), "Source: generator", (raw) => {
      const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
      return f(Number(dv.getBigUint64(0, true)));
    });
  }

  /**
   * Nexmark's persons, auctions and bids from the host's generator, with their event times and watermarks 4 s
   * behind: `{ kind: "person" | "auction" | "bid", ... }` (see `decodeNexmark`). `events` in all (unbounded
   * without), at most `eventsPerSecond`, event time advancing at `eventTimeRate` (10 M/s by default).
   */
  nexmark({ events, eventsPerSecond, eventTimeRate } = {}) {
    const options = {};
    if (events !== undefined) options.events = events;
    if (eventsPerSecond !== undefined) options["events-per-second"] = eventsPerSecond;
    if (eventTimeRate !== undefined) options["event-time-rate"] = eventTimeRate;
    return this.fromSource(new Connector("nexmark", options), "Source: nexmark", decodeNexmark).assignTimestampsAndWatermarks(
      WatermarkStrategy.forBoundedOutOfOrderness(4000),
    );
  }

  /** A bounded stream of the given values. */
  fromCollection(values) {
    const all = [...values];
    return this.fromGenerator((i) => all[i], { count: all.length });
  }
}

/** Names a side output, as Flink's `OutputTag`. */
export class OutputTag {
  constructor(id) {
    this.id = id;
  }
}

class Stream {
  constructor(g, op, port = 0, partitioning = FORWARD, edges = undefined) {
    this._g = g;
    this._op = op;
    this._port = port;
    this._partitioning = partitioning;
    // Several upstream outputs after a union.
    this._edges = edges;
  }

  _edge() {
    if (this._edges !== undefined) return this._edges.map((e) => ({ ...e }));
    return [{ from: this._op, port: this._port, partitioning: this._partitioning }];
  }

  _last() {
    if (this._edges !== undefined) {
      throw new WeirError(
        "this stream is a union of several operators; set name, uid and parallelism on the operators before the union",
      );
    }
    const owner = this._g.owners.get(this._op);
    return this._g.ops[owner === undefined ? this._op : owner];
  }

  /** Names the operator created last. */
  name(name) {
    this._last().name = name;
    return this;
  }

  /** The stable identity of the operator created last; state is matched by uid on restore. */
  uid(uid) {
    this._last().uid = uid;
    return this;
  }

  setParallelism(n) {
    this._last().parallelism = n;
    return this;
  }
}

/** A stream of values, as Flink's `DataStream`. */
export class DataStream extends Stream {
  _stage(kind, fn, name) {
    const op = this._g.add(operator(name, this._edge(), { tag: "stage", val: kind.replace("_", "-") }), [kind, fn]);
    return new DataStream(this._g, op);
  }

  /** One value out for every value in. */
  map(f) {
    return this._stage("map", f, "Map");
  }

  /** Any number of values out for every value in: `f(value, out)` returns an iterable or calls `out.collect(v)`. */
  flatMap(f) {
    return this._stage("flat_map", f, "Flat Map");
  }

  /** Keeps the values for which `f` is true. */
  filter(f) {
    return this._stage("filter", f, "Filter");
  }

  /** Partitions by key: a function of the value, or the index or name of a field. */
  keyBy(key) {
    const f = typeof key === "function" ? key : (v) => v[key];
    const s = this._stage("key_by", f, "Key By");
    return new KeyedStream(this._g, s._op);
  }

  _repartitioned(partitioning) {
    const edges = this._edges === undefined ? undefined : this._edges.map((e) => ({ ...e, partitioning }));
    return new DataStream(this._g, this._op, this._port, partitioning, edges);
  }

  rebalance() {
    return this._repartitioned(REBALANCE);
  }

  broadcast() {
    return this._repartitioned(BROADCAST);
  }

  /** Merges streams: the next operator reads all of them. */
  union(...others) {
    const edges = this._edge();
    for (const o of others) {
      if (o._g !== this._g) throw new WeirError("union of streams of different environments");
      if (o._partitioning !== this._partitioning) {
        throw new WeirError("union of streams with different partitioning; key or rebalance after the union");
      }
      edges.push(...o._edge());
    }
    return new DataStream(this._g, this._op, this._port, this._partitioning, edges);
  }

  /**
   * Connects two streams, possibly of different types, so that one operator reads both:
   * `map({ map1, map2 })`, `flatMap({ flatMap1, flatMap2 })`, or
   * `keyBy(key1, key2).process({ processElement1, processElement2, onTimer })`.
   */
  connect(other) {
    return new ConnectedStreams(this, other);
  }

  /**
   * A window join: `join(other).where(key1).equalTo(key2).window(assigner).apply((a, b) => result)`
   * emits one result per pair with equal keys in the same window.
   */
  join(other) {
    return new JoinedStreams(this, other, false);
  }

  /** A window co-group: as `join`, but `apply((first, second, out) => ...)` sees both lists of each key and window. */
  coGroup(other) {
    return new JoinedStreams(this, other, true);
  }

  _tag(tag) {
    return this.map((v) => [tag, v]).name(`Connect (${tag + 1})`);
  }

  /** Event time, as Flink's `assignTimestampsAndWatermarks`. */
  assignTimestampsAndWatermarks(strategy) {
    const g = this._g;
    let stream = this;
    if (strategy.assigner) stream = this._stage("timestamps", strategy.assigner, "Timestamps");
    const src = this._port === 0 ? sourceOf(g, this._op) : undefined;
    if (src !== undefined && g.ops[src].kind.val.watermarks === undefined) {
      g.ops[src].kind.val.watermarks = strategy.spec();
      g.ops[src].kind.val.timestamps = strategy.assigner ? "guest" : "connector";
      return stream;
    }
    const op = g.add(operator("Watermarks", stream._edge(), { tag: "watermarks", val: strategy.spec() }));
    return new DataStream(g, op);
  }

  /** The stream of a side output of the operator created last. */
  getSideOutput(tag) {
    return new DataStream(this._g, this._op, this._g.sidePort(this._op, tag));
  }

  /** Writes to any connector the host knows; `encode(value)` gives the record's bytes or text. */
  sinkTo(connector, name, encode) {
    const enc = encode ? (v) => toBytes(encode(v)) : toBytes;
    const encoded = this._stage("encode", enc, `${name} (encode)`);
    const op = this._g.add(
      operator(name, encoded._edge(), { tag: "sink", val: { kind: connector.kind, options: connector.options } }),
    );
    return new Sink(this._g, op);
  }

  /** Prints every value to standard output, as Flink's `print()`. */
  print() {
    return this.sinkTo(new Connector("print"), "Sink: Print to Std. Out", show);
  }

  /** Writes `String(value)` lines to a file. */
  writeAsText(path) {
    return this.sinkTo(new Connector("file", { path }), "Sink: file");
  }

  /** Drops every value (the `blackhole` connector). */
  discard() {
    return this.sinkTo(new Connector("blackhole"), "Sink: Discard", () => new Uint8Array(0));
  }
}

function show(v) {
  return typeof v === "string" ? v : JSON.stringify(v);
}

export function toBytes(v) {
  if (v instanceof Uint8Array) return v;
  return new TextEncoder().encode(typeof v === "string" ? v : String(v));
}

function sourceOf(g, op) {
  for (;;) {
    const o = g.ops[op];
    if (o.kind.tag === "source") return op;
    if (o.kind.tag !== "stage" || o.inputs.length !== 1 || o.inputs[0].partitioning !== FORWARD || o.inputs[0].port !== 0)
      return undefined;
    op = o.inputs[0].from;
  }
}

/** The end of a stream. */
export class Sink extends Stream {
  /** Sets an option of the sink's connector. */
  option(key, value) {
    const c = this._last().kind.val;
    c.options = c.options.filter(([k]) => k !== key);
    c.options.push([key, String(value)]);
    return this;
  }

  /** A file sink writes its lines sorted when the input ends. */
  sorted() {
    return this.option("sort-lines", "true");
  }
}

/** A stream partitioned by key, as Flink's `KeyedStream`. */
export class KeyedStream extends Stream {
  constructor(g, op, edges = undefined) {
    super(g, op, 0, HASH, edges);
  }

  _agg(folder, name) {
    const op = this._g.add(operator(name, this._edge(), { tag: "aggregate" }), folder);
    return new DataStream(this._g, op);
  }

  /** A running sum per key of a field (an index or a property), or of the value itself. */
  sum(field) {
    return this._agg(["sum", field], "Sum");
  }

  /** A running `f(accumulated, value)` per key. */
  reduce(f) {
    return this._agg(["reduce", f], "Reduce");
  }

  /** A running aggregate per key: `{ createAccumulator, add(value, acc), getResult(acc), merge(a, b) }`. */
  aggregate(fn) {
    return this._agg(["aggregate", fn], "Aggregate");
  }

  /** A keyed process function: `{ open(ctx), processElement(value, ctx, out), onTimer(ts, ctx, out) }`. */
  process(fn) {
    const g = this._g;
    const op = g.add(operator("KeyedProcess", this._edge(), { tag: "process" }), ["process", fn]);
    if (typeof fn.open === "function") fn.open(new RuntimeContext(g.ops[op]));
    return new DataStream(g, op);
  }

  /** Groups each key's records into windows. */
  window(assigner) {
    return new WindowedStream(this, assigner);
  }

  /** Connects two streams keyed the same way: `process(fn)` sees both, with state and timers per key. */
  connect(other) {
    if (!(other instanceof KeyedStream)) throw new WeirError("connect a keyed stream to a keyed stream (keyBy both)");
    return new ConnectedKeyedStreams(tagKeyed(this, 0), tagKeyed(other, 1));
  }

  /**
   * Joins each record with the records of `other` with the same key whose event time lies within
   * `between(lowerMs, upperMs)` of its own, as Flink's `intervalJoin`.
   */
  intervalJoin(other) {
    if (!(other instanceof KeyedStream)) throw new WeirError("intervalJoin joins two keyed streams (keyBy both)");
    return new IntervalJoin(this, other);
  }

  /** Windows of `size` records per key. */
  countWindow(size) {
    return new WindowedStream(this, GlobalWindows.create()).trigger(CountTrigger.of(size));
  }
}

/** A keyed stream's values tagged with their input, key kept; runs with the key selector's parallelism. */
function tagKeyed(keyed, tag) {
  const g = keyed._g;
  const op = g.add(
    operator(`Connect (${tag + 1})`, [{ from: keyed._op, port: 0, partitioning: FORWARD }], { tag: "stage", val: "key-by" }),
    ["map", (v) => [tag, v]],
  );
  return new KeyedStream(g, op);
}

function keyedProcess(g, edges, fn, name) {
  const op = g.add(operator(name, edges, { tag: "process" }), ["process", fn]);
  if (typeof fn.open === "function") fn.open(new RuntimeContext(g.ops[op]));
  return new DataStream(g, op);
}

/** Two streams read by one operator, as Flink's `ConnectedStreams`. */
export class ConnectedStreams {
  constructor(first, second) {
    this._first = first;
    this._second = second;
  }

  _tagged() {
    return this._first._tag(0).union(this._second._tag(1));
  }

  /** `{ map1(value), map2(value) }`. */
  map(fn) {
    return this._tagged()
      .map(([tag, v]) => (tag === 0 ? fn.map1(v) : fn.map2(v)))
      .name("Co-Map");
  }

  /** `{ flatMap1(value, out), flatMap2(value, out) }`, each returning an iterable or calling `out.collect`. */
  flatMap(fn) {
    return this._tagged()
      .flatMap(([tag, v], out) => (tag === 0 ? fn.flatMap1(v, out) : fn.flatMap2(v, out)))
      .name("Co-Flat Map");
  }

  /** Partitions both inputs by key, each with its own key selector. */
  keyBy(key1, key2) {
    return this._first.keyBy(key1).connect(this._second.keyBy(key2));
  }
}

/** Two keyed streams read by one keyed operator. */
export class ConnectedKeyedStreams {
  constructor(first, second) {
    this._g = first._g;
    this._edges = [...first._edge(), ...second._edge()];
  }

  /** `{ open(ctx), processElement1(value, ctx, out), processElement2(value, ctx, out), onTimer(ts, ctx, out) }`. */
  process(fn) {
    const co = {
      open: (ctx) => {
        if (typeof fn.open === "function") fn.open(ctx);
      },
      processElement: ([tag, v], ctx, out) =>
        tag === 0 ? fn.processElement1(v, ctx, out) : fn.processElement2(v, ctx, out),
      onTimer: (ts, ctx, out) => (typeof fn.onTimer === "function" ? fn.onTimer(ts, ctx, out) : undefined),
    };
    return keyedProcess(this._g, this._edges, co, "KeyedCoProcess");
  }
}

export class IntervalJoin {
  constructor(first, second) {
    this._first = first;
    this._second = second;
  }

  /** Joins `b` to `a` when `a.ts + lowerMs <= b.ts <= a.ts + upperMs`. */
  between(lowerMs, upperMs) {
    const lower = Math.trunc(lowerMs);
    const upper = Math.trunc(upperMs);
    if (!Number.isFinite(lower) || !Number.isFinite(upper)) throw new WeirError("interval join: the bounds must be numbers of milliseconds");
    if (lower > upper) {
      throw new WeirError(`interval join: the lower bound (${lower} ms) is after the upper bound (${upper} ms)`);
    }
    return new IntervalJoined(this._first, this._second, lower, upper);
  }
}

export class IntervalJoined {
  constructor(first, second, lower, upper) {
    this._first = first;
    this._second = second;
    this._bounds = { lower, upper, lowerInclusive: true, upperInclusive: true };
  }

  lowerBoundExclusive() {
    this._bounds.lowerInclusive = false;
    return this;
  }

  upperBoundExclusive() {
    this._bounds.upperInclusive = false;
    return this;
  }

  /**
   * `{ processElement(left, right, ctx, out) }` (or such a function) for every joined pair;
   * `ctx.leftTimestamp`, `ctx.rightTimestamp` and `ctx.timestamp` (the later) are the pair's event times.
   */
  process(fn) {
    const call = typeof fn === "function" ? fn : (l, r, c, o) => fn.processElement(l, r, c, o);
    const connected = this._first.connect(this._second);
    const joined = keyedProcess(connected._g, connected._edges, intervalJoinFunction(call, this._bounds), "IntervalJoin");
    const g = joined._g;
    const op = g.add(operator("Timestamps", joined._edge(), { tag: "stage", val: "timestamps" }), ["stamp", undefined]);
    g.owners.set(op, joined._op);
    return new DataStream(g, op);
  }
}

/** Buffers both sides by event time in map states until the watermark passes the last time they can join. */
function intervalJoinFunction(call, b) {
  let left;
  let right;
  const joins = (lt, rt) => {
    const lo = lt + b.lower;
    const hi = lt + b.upper;
    return (b.lowerInclusive ? rt >= lo : rt > lo) && (b.upperInclusive ? rt <= hi : rt < hi);
  };
  const leftExpiry = (ts) => ts + Math.max(b.upper, 0);
  const rightExpiry = (ts) => ts + Math.max(-b.lower, 0);
  const pair = (l, r, lt, rt, results) => {
    const ctx = { leftTimestamp: lt, rightTimestamp: rt, timestamp: Math.max(lt, rt) };
    const out = {
      collect: (x) => {
        results.push([ctx.timestamp, x]);
      },
    };
    const r2 = call(l, r, ctx, out);
    if (r2 !== undefined && r2 !== null) {
      if (typeof r2[Symbol.iterator] !== "function") {
        throw new WeirError("a join function returned a value that is not iterable; return an array or use out.collect(value)");
      }
      for (const x of r2) out.collect(x);
    }
  };
  return {
    open(ctx) {
      left = ctx.getMapState(new MapStateDescriptor("left"));
      right = ctx.getMapState(new MapStateDescriptor("right"));
    },
    processElement([tag, v], ctx) {
      const ts = ctx.timestamp();
      if (ts === undefined || ts === null) {
        throw new WeirError("an interval join needs event time: assign timestamps and watermarks to both inputs");
      }
      const watermark = ctx.timerService().currentWatermark();
      if (ts < watermark) return [];
      const results = [];
      let own;
      let expiry;
      if (tag === 0) {
        for (const [rt, rs] of right.entries()) if (joins(ts, rt)) for (const r of rs) pair(v, r, ts, rt, results);
        own = left;
        expiry = leftExpiry(ts);
      } else {
        for (const [lt, ls] of left.entries()) if (joins(lt, ts)) for (const l of ls) pair(l, v, lt, ts, results);
        own = right;
        expiry = rightExpiry(ts);
      }
      if (expiry >= watermark) {
        const at = own.get(ts) || [];
        at.push(v);
        own.put(ts, at);
      }
      ctx.timerService().registerEventTimeTimer(expiry);
      return results;
    },
    onTimer(timestamp) {
      // Each buffered time registered a timer at its expiry: the timer names the one entry per side that expires now.
      left.remove(timestamp - Math.max(b.upper, 0));
      right.remove(timestamp - Math.max(-b.lower, 0));
    },
  };
}

/** A window join or co-group being configured (see `DataStream.join`). */
export class JoinedStreams {
  constructor(first, second, coGroup) {
    this._first = first;
    this._second = second;
    this._coGroup = coGroup;
  }

  where(key1) {
    this._key1 = key1;
    return this;
  }

  equalTo(key2) {
    this._key2 = key2;
    return this;
  }

  window(assigner) {
    if (this._key1 === undefined || this._key2 === undefined) {
      throw new WeirError("a window join needs both keys: join(other).where(key1).equalTo(key2)");
    }
    const keyed = this._first.keyBy(this._key1).connect(this._second.keyBy(this._key2));
    const stream = new KeyedStream(keyed._g, undefined, keyed._edges);
    return new JoinWindowed(new WindowedStream(stream, assigner), this._coGroup);
  }
}

export class JoinWindowed {
  constructor(windowed, coGroup) {
    this._windowed = windowed;
    this._coGroup = coGroup;
  }

  allowedLateness(ms) {
    this._windowed.allowedLateness(ms);
    return this;
  }

  /** Join: `(a, b) => result` per pair. Co-group: `(first, second, out) => iterable | void` per key and window. */
  apply(fn) {
    const coGroup = this._coGroup;
    return this._windowed
      .process({
        process(_key, _context, elements, out) {
          const first = [];
          const second = [];
          for (const [tag, v] of elements) (tag === 0 ? first : second).push(v);
          if (coGroup) return fn(first, second, out);
          for (const a of first) for (const b of second) out.collect(fn(a, b));
          return undefined;
        },
      })
      .name(coGroup ? "Window CoGroup" : "Window Join");
  }
}

export class ValueStateDescriptor {
  constructor(name) {
    this.name = name;
    this.kind = "value";
  }
}

export class ListStateDescriptor {
  constructor(name) {
    this.name = name;
    this.kind = "list";
  }
}

export class MapStateDescriptor {
  constructor(name) {
    this.name = name;
    this.kind = "map";
  }
}

/** Declares the keyed states of a process function (in its `open`). */
export class RuntimeContext {
  constructor(op) {
    this._op = op;
  }

  _declare(d) {
    let i = this._op.states.findIndex((s) => s.name === d.name);
    if (i >= 0) {
      if (this._op.states[i].kind !== d.kind) throw new WeirError(`state '${d.name}' is declared twice with different kinds`);
    } else {
      this._op.states.push({ name: d.name, kind: d.kind });
      i = this._op.states.length - 1;
    }
    return stateHandle(d.kind, i);
  }

  getState(d) {
    return this._declare(d);
  }

  getListState(d) {
    return this._declare(d);
  }

  getMapState(d) {
    return this._declare(d);
  }
}

// Filled in by the runtime (internal): makes state handles bound to the
// key being processed.
export const __runtime = { stateHandle: null };

function stateHandle(kind, index) {
  if (!__runtime.stateHandle) throw new WeirError("keyed state is only available inside a component");
  return __runtime.stateHandle(kind, index);
}

/** How event timestamps are taken and how far watermarks trail them. */
export class WatermarkStrategy {
  constructor(maxOutOfOrdernessMs) {
    this.maxOutOfOrdernessMs = Math.trunc(maxOutOfOrdernessMs);
    this.idleTimeoutMs = undefined;
    this.assigner = undefined;
  }

  static forBoundedOutOfOrderness(ms) {
    return new WatermarkStrategy(ms);
  }

  static forMonotonousTimestamps() {
    return new WatermarkStrategy(0);
  }

  /** `f(value, recordTimestamp)` returns the event time in ms. */
  withTimestampAssigner(f) {
    this.assigner = f;
    return this;
  }

  withIdleness(ms) {
    this.idleTimeoutMs = Math.trunc(ms);
    return this;
  }

  spec() {
    return { maxOutOfOrdernessMs: BigInt(this.maxOutOfOrdernessMs), idleTimeoutMs: this.idleTimeoutMs === undefined ? undefined : BigInt(this.idleTimeoutMs) };
  }
}

const assigner = (kind, domain, params) => ({ kind, domain, params });

export const TumblingEventTimeWindows = { of: (size, offset = 0) => assigner("tumbling", "event-time", [size, offset]) };
export const TumblingProcessingTimeWindows = { of: (size, offset = 0) => assigner("tumbling", "processing-time", [size, offset]) };
export const SlidingEventTimeWindows = { of: (size, slide, offset = 0) => assigner("sliding", "event-time", [size, slide, offset]) };
export const SlidingProcessingTimeWindows = {
  of: (size, slide, offset = 0) => assigner("sliding", "processing-time", [size, slide, offset]),
};
export const EventTimeSessionWindows = { withGap: (gap) => assigner("session", "event-time", [gap]) };
export const ProcessingTimeSessionWindows = { withGap: (gap) => assigner("session", "processing-time", [gap]) };
export const GlobalWindows = { create: () => assigner("global", "event-time", []) };
export const CountTrigger = { of: (n) => ({ tag: "count", val: BigInt(n) }) };

/** A window `[start, end)`. */
export class TimeWindow {
  constructor(start, end) {
    this.start = start;
    this.end = end;
  }

  maxTimestamp() {
    return this.end - 1;
  }
}

/** A keyed stream grouped into windows, as Flink's `WindowedStream`. */
export class WindowedStream {
  constructor(keyed, assigner) {
    this._keyed = keyed;
    this._assigner = assigner;
    this._trigger = { tag: "default" };
    this._lateness = 0;
    this._lateTag = undefined;
  }

  trigger(t) {
    this._trigger = t;
    return this;
  }

  allowedLateness(ms) {
    this._lateness = Math.trunc(ms);
    return this;
  }

  sideOutputLateData(tag) {
    this._lateTag = tag;
    return this;
  }

  _window(fnKind, fn, name) {
    const g = this._keyed._g;
    const a = this._assigner;
    const p = a.params.map((x) => BigInt(Math.trunc(x)));
    const assignerVal =
      a.kind === "tumbling"
        ? { tag: "tumbling", val: { sizeMs: p[0], offsetMs: p[1] } }
        : a.kind === "sliding"
          ? { tag: "sliding", val: { sizeMs: p[0], slideMs: p[1], offsetMs: p[2] } }
          : a.kind === "session"
            ? { tag: "session", val: { gapMs: p[0] } }
            : { tag: "global" };
    const spec = {
      assigner: assignerVal,
      domain: a.domain,
      trigger: this._trigger,
      allowedLatenessMs: BigInt(this._lateness),
      latePort: undefined,
      function: fnKind,
      // Reduces, sums and aggregate functions with a merge: the host may
      // slice sliding windows into panes.
      mergeable: fn[0] === "reduce" || fn[0] === "sum" || (fn[0] === "aggregate" && typeof fn[1]?.merge === "function"),
    };
    const op = g.add(operator(name, this._keyed._edge(), { tag: "window", val: spec }), fn);
    if (this._lateTag !== undefined) spec.latePort = g.sidePort(op, this._lateTag);
    return new DataStream(g, op);
  }

  /** Aggregates each window incrementally; `windowFunction(key, window, result)`, when given, makes the output. */
  aggregate(fn, windowFunction) {
    return this._window("aggregate", ["aggregate", fn, windowFunction], "Window(Aggregate)");
  }

  reduce(f, windowFunction) {
    return this._window("aggregate", ["reduce", f, windowFunction], "Window(Reduce)");
  }

  sum(field) {
    return this._window("aggregate", ["sum", field], "Window(Sum)");
  }

  /** Hands all elements of each window to `{ process(key, context, elements, out) }`. */
  process(fn) {
    return this._window("process", ["process_window", fn], "Window(Process)");
  }
}

const jobs = [];

/** Registers a job function `f(env, args)`; a module may hold several (`weir run --entry NAME`). */
export function job(name, f) {
  if (typeof name === "function") {
    f = name;
    name = f.name || "job";
  }
  jobs.push([name, f]);
  return f;
}

export function registeredJobs() {
  return jobs;
}
