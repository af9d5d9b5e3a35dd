// The component's `job` export: builds the plan and runs the user's
// functions over framed batches for the host.

import * as host from "weir:stream/host@0.1.0";
import { Args, Env, TimeWindow, WeirError, __runtime, registeredJobs } from "./index.js";
import * as frame from "./frame.js";

const FRESH = 0x80000000;
const enc = new TextEncoder();
const dec = new TextDecoder();

/** Values cross operators and live in keyed state as JSON. */
const encode = (v) => enc.encode(v === undefined ? "null" : JSON.stringify(v));
const decode = (b) => JSON.parse(dec.decode(b));

let rt = null;
let currentKey = new Uint8Array(0);

function runtime() {
  if (!rt) throw new WeirError("internal error: the host called the job before plan()");
  return rt;
}

function guestError(e) {
  if (e instanceof WeirError) return { message: e.message };
  if (e instanceof Error) {
    // Stack frames read `name@file:line:column`; lines are the bundle's, so
    // only the function's name is worth reporting.
    const top = (e.stack || "").split("\n")[0] || "";
    const fn = top.slice(0, top.indexOf("@"));
    const where = fn ? ` (in ${fn})` : "";
    return { message: `${e.name}: ${e.message}${where}` };
  }
  return { message: String(e) };
}

function guard(f) {
  return (...a) => {
    try {
      return f(...a);
    } catch (e) {
      throw guestError(e);
    }
  };
}

function iterate(result, out, emit) {
  if (result === undefined || result === null) return;
  if (typeof result[Symbol.iterator] !== "function") {
    throw new WeirError("a function returned a value that is not iterable; return an array or use out.collect(value)");
  }
  for (const x of result) emit(x);
}

// ------------------------------------------------------------------ stages

function stage(kind, f, next) {
  switch (kind) {
    case "map":
      return (k, ts, v) => next(k, ts, f(v));
    case "flat_map":
      return (k, ts, v) => {
        const out = { collect: (x) => next(k, ts, x) };
        iterate(f(v, out), out, out.collect);
      };
    case "filter":
      return (k, ts, v) => {
        if (f(v)) next(k, ts, v);
      };
    case "key_by":
      return (k, ts, v) => next(encode(f(v)), ts, v);
    case "timestamps":
      return (k, ts, v) => next(k, Math.trunc(f(v, ts)), v);
    case "stamp":
      // [timestamp, value] pairs of a join: the value with that time.
      return (k, _ts, v) => next(k, v[0], v[1]);
    case "encode":
    case "decode":
      return (k, ts, v) => next(k, ts, f(v));
    default:
      throw new WeirError(`internal error: ${kind} is not a stage`);
  }
}

function chain(g, stages, last) {
  let next = last;
  for (let i = stages.length - 1; i >= 0; i--) {
    const [kind, f] = g.fns.get(stages[i]);
    next = stage(kind, f, next);
  }
  return next;
}

// ------------------------------------------------------------------ folds

function sumField(acc, v, field) {
  if (field === undefined) return acc + v;
  if (Array.isArray(acc)) {
    const a = acc.slice();
    a[field] += v[field];
    return a;
  }
  if (typeof acc === "object" && acc !== null) return { ...acc, [field]: acc[field] + v[field] };
  throw new WeirError(`sum(${field}): cannot sum a field of ${typeof acc}`);
}

function folder(spec) {
  const [kind, f] = spec;
  if (kind === "sum") {
    const add = (v, acc) => (acc === undefined ? v : sumField(acc, v, f));
    return { create: () => undefined, add, merge: (a, b) => (a === undefined ? b : b === undefined ? a : sumField(a, b, f)), result: null };
  }
  if (kind === "reduce") {
    return {
      create: () => undefined,
      add: (v, acc) => (acc === undefined ? v : f(acc, v)),
      merge: (a, b) => (a === undefined ? b : b === undefined ? a : f(a, b)),
      result: null,
    };
  }
  if (kind === "aggregate") {
    return {
      create: () => f.createAccumulator(),
      add: (v, acc) => f.add(v, acc),
      merge: (a, b) => {
        if (typeof f.merge !== "function") throw new WeirError("merging windows needs the aggregate function's merge(a, b)");
        return f.merge(a, b);
      },
      result: (acc) => f.getResult(acc),
    };
  }
  throw new WeirError(`internal error: unknown aggregation ${kind}`);
}

const decodeAcc = (b) => {
  const v = decode(b);
  return v === null ? undefined : v;
};

const copyAcc = (acc) => decodeAcc(encode(acc === undefined ? null : acc));

class Aggregate {
  constructor(spec) {
    Object.assign(this, folder(spec));
    this.windowFn = spec[2];
    this.slots = new Map(); // id -> {key, ns, acc, dirty}
  }

  load(s, key, ns) {
    const id = (s & ~FRESH) >>> 0;
    let e = this.slots.get(id);
    if (s & FRESH || e === undefined) {
      const b = host.stateGet(0, key, ns);
      e = { key: key.slice(), ns: ns.slice(), acc: b === undefined ? this.create() : decodeAcc(b), dirty: false };
      this.slots.set(id, e);
    }
    return [id, e];
  }

  fold(batch, slots, emit) {
    const out = new frame.Writer();
    let i = 0;
    frame.forEach(batch, (key, ns, ts, _p, value) => {
      if (key === undefined) throw new WeirError("internal error: a record without a key reached an aggregation");
      const [, e] = this.load(slots[i++], key, ns || new Uint8Array(0));
      e.acc = this.add(decode(value), e.acc);
      e.dirty = true;
      if (emit) {
        const r = this.result ? this.result(e.acc) : e.acc;
        if (r !== undefined) out.push(encode(r), key, undefined, ts);
      }
    });
    return out;
  }

  fire(batch, slots, purge) {
    const out = new frame.Writer();
    let i = 0;
    frame.forEach(batch, (key, ns, ts, _p, value) => {
      ns = ns || new Uint8Array(0);
      const [id, e] = this.load(slots[i++], key, ns);
      // The request may name the window and further accumulators (panes)
      // whose merge is its result; they are merged as copies.
      let acc = e.acc;
      if (value.length > 16) {
        if (value.length % 16 !== 0) throw new WeirError("internal error: a window fire named a malformed window");
        acc = copyAcc(acc);
        for (let o = 16; o < value.length; o += 16) {
          const [, other] = this.load(slots[i++], key, value.subarray(o, o + 16));
          acc = this.merge(acc, copyAcc(other.acc));
        }
      }
      let r = this.result ? this.result(acc) : acc;
      if (r !== undefined && this.windowFn) {
        const [start, end] = frame.windowBounds(value.length ? value.subarray(0, 16) : ns);
        r = this.windowFn(decode(key), new TimeWindow(start, end), r);
      }
      if (r !== undefined) out.push(encode(r), key, undefined, ts);
      if (purge) this.slots.delete(id);
    });
    return out;
  }

  mergeWindows(batch, slots) {
    let i = 0;
    frame.forEach(batch, (key, target, _t, _p, value) => {
      const t = slots[i++];
      let merged = this.create();
      for (const src of frame.values(value)) {
        const [id, e] = this.load(slots[i++], key, src);
        merged = this.merge(merged, e.acc);
        this.slots.delete(id);
      }
      const [, e] = this.load(t, key, target || new Uint8Array(0));
      e.acc = this.merge(e.acc, merged);
      e.dirty = true;
    });
  }

  flush(forget) {
    const w = new frame.Writer();
    for (const e of this.slots.values()) {
      if (e.dirty) {
        w.push(encode(e.acc), e.key, e.ns);
        e.dirty = false;
      }
    }
    if (w.count) host.stateWrite(0, w.bytes());
    if (forget) this.slots.clear();
  }
}

// ------------------------------------------------------------------ state

const EMPTY = new Uint8Array(0);

class ValueState {
  constructor(i) {
    this.i = i;
  }
  value() {
    const b = host.stateGet(this.i, currentKey, EMPTY);
    return b === undefined ? undefined : decode(b);
  }
  update(v) {
    host.statePut(this.i, currentKey, EMPTY, encode(v));
  }
  clear() {
    host.stateDelete(this.i, currentKey, EMPTY);
  }
}

class ListState {
  constructor(i) {
    this.i = i;
  }
  get() {
    const b = host.stateGet(this.i, currentKey, EMPTY);
    return b === undefined ? [] : frame.values(b).map(decode);
  }
  add(v) {
    host.stateAppend(this.i, currentKey, EMPTY, encode(v));
  }
  addAll(vs) {
    for (const v of vs) this.add(v);
  }
  update(vs) {
    this.clear();
    this.addAll(vs);
  }
  clear() {
    host.stateDelete(this.i, currentKey, EMPTY);
  }
}

class MapState {
  constructor(i) {
    this.i = i;
  }
  get(k) {
    const b = host.stateGet(this.i, currentKey, encode(k));
    return b === undefined ? undefined : decode(b);
  }
  contains(k) {
    return host.stateGet(this.i, currentKey, encode(k)) !== undefined;
  }
  put(k, v) {
    host.statePut(this.i, currentKey, encode(k), encode(v));
  }
  remove(k) {
    host.stateDelete(this.i, currentKey, encode(k));
  }
  entries() {
    const out = [];
    frame.forEach(host.stateScan(this.i, currentKey, EMPTY), (k, _n, _t, _p, v) => out.push([decode(k), decode(v)]));
    return out;
  }
  keys() {
    return this.entries().map(([k]) => k);
  }
  values() {
    return this.entries().map(([, v]) => v);
  }
  isEmpty() {
    return this.entries().length === 0;
  }
  clear() {
    for (const k of this.keys()) this.remove(k);
  }
}

__runtime.stateHandle = (kind, i) => (kind === "value" ? new ValueState(i) : kind === "list" ? new ListState(i) : new MapState(i));

// ------------------------------------------------------------------ process

class Context {
  constructor(op, wit, side) {
    this.op = op;
    this.wit = wit;
    this.side = side;
    this.ts = undefined;
    this.domain = undefined;
  }
  getCurrentKey() {
    return decode(currentKey);
  }
  timestamp() {
    return this.ts;
  }
  timeDomain() {
    return this.domain;
  }
  timerService() {
    const wit = this.wit;
    const reg = (domain, ts) => host.registerTimer(domain, currentKey, EMPTY, BigInt(Math.trunc(ts)));
    const del = (domain, ts) => host.deleteTimer(domain, currentKey, EMPTY, BigInt(Math.trunc(ts)));
    return {
      // s64 values can arrive as their unsigned reading (the watermark
      // before the first one is the smallest s64).
      currentWatermark: () => Number(BigInt.asIntN(64, BigInt(wit.currentWatermark))),
      currentProcessingTime: () => Number(BigInt.asIntN(64, BigInt(wit.processingTime))),
      registerEventTimeTimer: (ts) => reg("event-time", ts),
      registerProcessingTimeTimer: (ts) => reg("processing-time", ts),
      deleteEventTimeTimer: (ts) => del("event-time", ts),
      deleteProcessingTimeTimer: (ts) => del("processing-time", ts),
    };
  }
  output(tag, value) {
    const port = runtime().graph.tags.get(`${this.op}/${tag.id}`);
    if (port !== undefined) this.side.push(encode(value), undefined, undefined, this.ts, port);
  }
}

function output(out, side) {
  return { main: out.bytes(), records: out.count, side: side ? side.bytes() : new Uint8Array(0) };
}

function keyedCall(out, key, ts, call) {
  const emit = (x) => out.push(encode(x), key, undefined, ts);
  const collector = { collect: emit };
  iterate(call(collector), collector, emit);
}

// ------------------------------------------------------------------ export

function planOf(g) {
  return {
    name: g.name,
    version: g.version,
    config: [...g.config.entries()],
    operators: g.ops,
    hasStateHooks: g.hooks !== null,
  };
}

export const job = {
  entries: guard(() => registeredJobs().map(([n]) => n)),

  plan: guard((entry, args) => {
    const jobs = registeredJobs();
    if (jobs.length === 0) throw new WeirError("the module defines no job: register one with job(name, (env, args) => ...)");
    let found = entry === undefined ? jobs[0] : jobs.find(([n]) => n === entry);
    if (!found) throw new WeirError(`no job named '${entry}'; this module has: ${jobs.map(([n]) => n).join(", ")}`);
    const [name, f] = found;
    const env = new Env(name);
    f(env, new Args(args));
    if (env._g.ops.length === 0) throw new WeirError(`job '${name}' defines no operators`);
    rt = { graph: env._g, aggs: new Map() };
    return planOf(env._g);
  }),

  runStages: guard((stages, batch) => {
    const g = runtime().graph;
    const out = new frame.Writer();
    const side = new frame.Writer();
    const kinds = Array.from(stages, (s) => g.fns.get(s)[0]);
    const last =
      kinds[kinds.length - 1] === "encode" ? (k, ts, v) => out.push(v, k, undefined, ts) : (k, ts, v) => out.push(encode(v), k, undefined, ts);
    if (kinds[0] === "decode") {
      const decodeFn = g.fns.get(stages[0])[1];
      const inner = chain(g, Array.from(stages).slice(1), last);
      frame.forEach(batch, (k, _n, ts, _p, raw) => {
        let v;
        try {
          v = decodeFn(raw);
        } catch (e) {
          side.push(raw.slice(), k, enc.encode(guestError(e).message), ts, frame.DECODE_FAILURE_PORT);
          return;
        }
        inner(k, ts, v);
      });
    } else {
      const push = chain(g, Array.from(stages), last);
      frame.forEach(batch, (k, _n, ts, _p, v) => push(k, ts, decode(v)));
    }
    return output(out, side);
  }),

  aggregate: guard((op, batch, slots, emit) => output(agg(op).fold(batch, slots, emit))),

  fire: guard((op, batch, slots, purge) => output(agg(op).fire(batch, slots, purge))),

  mergeWindows: guard((op, batch, slots) => {
    agg(op).mergeWindows(batch, slots);
  }),

  processWindow: guard((op, batch) => {
    const spec = runtime().graph.fns.get(op);
    if (!spec || spec[0] !== "process_window") throw new WeirError(`internal error: operator ${op} is not a process window`);
    const fn = spec[1];
    const out = new frame.Writer();
    frame.forEach(batch, (key, ns, ts, _p, value) => {
      const [start, end] = frame.windowBounds(ns);
      const elements = frame.values(value).map(decode);
      const context = { window: () => new TimeWindow(start, end) };
      keyedCall(out, key, ts, (c) => fn.process(decode(key), context, elements, c));
    });
    return output(out);
  }),

  process: guard((op, batch, context) => {
    const fn = runtime().graph.fns.get(op)[1];
    const out = new frame.Writer();
    const side = new frame.Writer();
    const ctx = new Context(op, context, side);
    frame.forEach(batch, (key, _n, ts, _p, value) => {
      currentKey = key;
      ctx.ts = ts;
      keyedCall(out, key, ts, (c) => fn.processElement(decode(value), ctx, c));
    });
    return output(out, side);
  }),

  onTimer: guard((op, domain, timers, context) => {
    const fn = runtime().graph.fns.get(op)[1];
    const out = new frame.Writer();
    const side = new frame.Writer();
    const ctx = new Context(op, context, side);
    ctx.domain = domain;
    frame.forEach(timers, (key, _n, ts, _p) => {
      currentKey = key;
      ctx.ts = ts;
      if (typeof fn.onTimer === "function") keyedCall(out, key, ts, (c) => fn.onTimer(ts, ctx, c));
    });
    return output(out, side);
  }),

  flush: guard((op, forget) => {
    const a = runtime().aggs.get(op);
    if (a) a.flush(forget);
  }),

  save: guard(() => {
    const h = runtime().graph.hooks;
    if (!h) return undefined;
    const data = h.save();
    if (data === undefined || data === null) return undefined;
    if (typeof data === "string") return enc.encode(data);
    if (!(data instanceof Uint8Array)) throw new WeirError("the save hook must return a Uint8Array, a string or undefined");
    return data;
  }),

  restore: guard((fromVersion, data) => {
    const h = runtime().graph.hooks;
    if (h) h.restore(fromVersion, data);
  }),
};

function agg(op) {
  const r = runtime();
  let a = r.aggs.get(op);
  if (!a) {
    const spec = r.graph.fns.get(op);
    if (!spec || spec[0] === "process_window" || spec[0] === "process") throw new WeirError(`internal error: operator ${op} is not an aggregation`);
    a = new Aggregate(spec);
    r.aggs.set(op, a);
  }
  return a;
}

/** Writes to the task's log ("trace", "debug", "info", "warn", "error"). */
export function log(level, message) {
  host.log(level, String(message));
}
