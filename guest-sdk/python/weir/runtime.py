"""The component's `job` export: builds the plan and runs the user's
functions over framed batches for the host."""

import dataclasses
import sys
import traceback

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host as _host
from wit_world.imports import types as t

from . import api, codec, frame, state
from .args import Args
from .errors import WeirError

FRESH = 0x8000_0000
#: The job's file as the user named it (the build bundles it as `weir_user_job`).
SOURCE_NAME = "job.py"
_encode = codec.encode
_decode = codec.decode


def _error(e):
    if isinstance(e, WeirError):
        return Err(t.GuestError(str(e)))
    if isinstance(e, frame.FrameError):
        return Err(t.GuestError(f"internal error: {e}"))
    tb = traceback.extract_tb(e.__traceback__)
    user = [f for f in tb if "/weir/" not in f.filename.replace("\\", "/")]
    where = ""
    if user:
        f = user[-1]
        name = f.filename.rsplit("/", 1)[-1]
        if name == "weir_user_job.py":
            name = SOURCE_NAME
        where = f" (at {name}:{f.lineno}, in {f.name})"
    return Err(t.GuestError(f"{type(e).__name__}: {e}{where}"))


def _guard(method):
    def call(self, *a):
        try:
            return method(self, *a)
        except Err:
            raise
        except BaseException as e:  # noqa: BLE001 - every failure becomes the task's error
            raise _error(e) from None

    call.__name__ = method.__name__
    return call


# ---------------------------------------------------------------- plan ----


def _wit_plan(g):
    ops = []
    for o in g.ops:
        ops.append(
            t.Operator(
                uid=o.uid,
                name=o.name,
                parallelism=o.parallelism,
                inputs=[t.Edge(f, p, t.Partitioning[part.upper()]) for f, p, part in o.inputs],
                kind=_wit_kind(o.kind),
                states=[t.StateDescriptor(n, t.StateKind[k.upper()]) for n, k in o.states],
                side_outputs=o.side_outputs,
            )
        )
    return t.JobPlan(
        name=g.name,
        version=g.version,
        config=list(g.config.items()),
        operators=ops,
        has_state_hooks=g.hooks is not None,
    )


def _connector(c):
    return t.Connector(c.kind, list(c.options))


def _watermarks(spec):
    return None if spec is None else t.WatermarkSpec(spec[0], spec[1])


def _wit_kind(kind):
    tag = kind[0]
    if tag == "source":
        ts = t.TimestampSource[kind[2].upper()]
        return t.OperatorKind_Source(t.SourceSpec(_connector(kind[1]), ts, _watermarks(kind[3])))
    if tag == "sink":
        return t.OperatorKind_Sink(_connector(kind[1]))
    if tag == "stage":
        return t.OperatorKind_Stage(t.StageKind[kind[1].upper().replace("-", "_")])
    if tag == "aggregate":
        return t.OperatorKind_Aggregate()
    if tag == "process":
        return t.OperatorKind_Process()
    if tag == "watermarks":
        return t.OperatorKind_Watermarks(_watermarks(kind[1]))
    if tag == "window":
        s = kind[1]
        a, p = s["assigner"]
        if a == "tumbling":
            assigner = t.WindowAssigner_Tumbling(t.TumblingWindow(p[0], p[1]))
        elif a == "sliding":
            assigner = t.WindowAssigner_Sliding(t.SlidingWindow(p[0], p[1], p[2]))
        elif a == "session":
            assigner = t.WindowAssigner_Session(t.SessionWindow(p[0]))
        else:
            assigner = t.WindowAssigner_Global()
        trig = s["trigger"]
        trigger = t.Trigger_Default() if trig == "default" else t.Trigger_Count(trig[1])
        return t.OperatorKind_Window(
            t.WindowSpec(
                assigner=assigner,
                domain=t.TimeDomain[s["domain"].upper().replace("-", "_")],
                trigger=trigger,
                allowed_lateness_ms=s["lateness"],
                late_port=s["late_port"],
                function=t.WindowFunction[s["function"].upper()],
                mergeable=s["mergeable"],
            )
        )
    raise WeirError(f"internal error: unknown operator kind {tag}")


# ---------------------------------------------------------------- stages ----


def _compile(g, stages, out, side):
    """One function per fused chain, `push(key, timestamp, value)`, and
    whether it takes the raw value (a decode stage comes first)."""

    def emit(k, ts, v):
        out.push(_encode(v), k, None, ts)

    def emit_raw(k, ts, v):
        out.push(v, k, None, ts)

    kinds = [g.fns[s][0] for s in stages]
    last = emit_raw if kinds and kinds[-1] == "encode" else emit
    if not kinds or kinds[0] != "decode":
        return _chain_from(g, stages, last), False
    inner = _chain_from(g, stages[1:], last)
    decode = g.fns[stages[0]][1]

    def push_raw(k, ts, raw):
        try:
            v = decode(raw)
        except Exception as e:  # noqa: BLE001 - the source's decode policy applies
            side.push(raw, k, f"{type(e).__name__}: {e}".encode(), ts, frame.DECODE_FAILURE_PORT)
            return
        inner(k, ts, v)

    return push_raw, True


def _chain_from(g, stages, last):
    nxt = last
    for s in reversed(stages):
        kind, f = g.fns[s]
        nxt = _stage(kind, f, nxt)
    return nxt


def _stage(kind, f, nxt):
    if kind == "map":
        return lambda k, ts, v: nxt(k, ts, f(v))
    if kind == "flat_map":

        def flat(k, ts, v):
            r = f(v)
            if r is not None:
                for x in r:
                    nxt(k, ts, x)

        return flat
    if kind == "filter":

        def keep(k, ts, v):
            if f(v):
                nxt(k, ts, v)

        return keep
    if kind == "key_by":
        return lambda k, ts, v: nxt(_encode(f(v)), ts, v)
    if kind == "timestamps":
        return lambda k, ts, v: nxt(k, int(f(v, ts)), v)
    if kind == "stamp":
        # (timestamp, value) pairs of a join: the value with that time.
        return lambda k, ts, v: nxt(k, v[0], v[1])
    if kind == "encode":
        return lambda k, ts, v: nxt(k, ts, f(v))
    if kind == "decode":
        return lambda k, ts, v: nxt(k, ts, f(v))
    raise WeirError(f"internal error: {kind} is not a stage")


# ---------------------------------------------------------------- folds ----


def _folder(spec):
    kind = spec[0]
    if kind == "sum":
        field = spec[1]
        return None, _sum_add(field), _sum_merge(field), None
    if kind == "reduce":
        f = spec[1]

        def add(v, acc):
            return v if acc is None else f(acc, v)

        return None, add, lambda a, b: b if a is None else (a if b is None else f(a, b)), None
    if kind == "aggregate":
        fn = spec[1]
        return fn.create_accumulator, fn.add, fn.merge, fn.get_result
    raise WeirError(f"internal error: unknown aggregation {kind}")


def _sum_field(acc, v, field):
    if field is None:
        return acc + v
    if type(acc) is tuple:
        if field == 1 and len(acc) == 2:  # (key, count), the usual shape
            return (acc[0], acc[1] + v[1])
        return acc[:field] + (acc[field] + v[field],) + acc[field + 1 :]
    if isinstance(acc, list):
        acc = list(acc)
        acc[field] += v[field]
        return acc
    if isinstance(acc, dict):
        acc = dict(acc)
        acc[field] += v[field]
        return acc
    if dataclasses.is_dataclass(acc):
        return dataclasses.replace(acc, **{field: getattr(acc, field) + getattr(v, field)})
    raise WeirError(f"sum({field!r}): cannot sum a field of {type(acc).__name__}")


def _sum_add(field):
    def add(v, acc):
        return v if acc is None else _sum_field(acc, v, field)

    return add


def _sum_merge(field):
    def merge(a, b):
        if a is None:
            return b
        if b is None:
            return a
        return _sum_field(a, b, field)

    return merge


class _Aggregate:
    """Accumulators of one aggregate or window operator, cached in slots the
    host numbers and written back to keyed state on flush."""

    def __init__(self, spec):
        create, self.add, self.merge, self.result = _folder(spec)
        self.create = create or (lambda: None)
        self.window_fn = spec[2] if len(spec) > 2 else None
        self.slots = {}  # id -> [key, namespace, acc, dirty]

    def load(self, s, key, ns):
        i = s & ~FRESH
        e = self.slots.get(i)
        if s & FRESH or e is None:
            b = _host.state_get(0, key, ns)
            acc = self.create() if b is None else _decode(b)
            e = [key, ns, acc, False]
            self.slots[i] = e
        return i, e

    def fold(self, batch, slots, emit):
        out = frame.Writer()
        push = out.push
        add, result, cached = self.add, self.result, self.slots
        for (key, ns, ts, _, value), s in zip(frame.read(batch), slots):
            # The hot path: a slot the guest holds (no reload bit).
            e = cached.get(s) if s < FRESH else None
            if e is None:
                if key is None:
                    raise WeirError("internal error: a record without a key reached an aggregation")
                _, e = self.load(s, key, ns or b"")
            acc = e[2] = add(_decode(value), e[2])
            e[3] = True
            if emit:
                r = acc if result is None else result(acc)
                if r is not None:
                    push(_encode(r), key, None, ts)
        return out

    def fire(self, batch, slots, purge):
        out = frame.Writer()
        extra = iter(slots)
        for key, ns, ts, _, value in frame.read(batch):
            s = next(extra)
            ns = ns or b""
            i, e = self.load(s, key, ns)
            acc = e[2]
            if value and len(value) > 16:
                # The window, then further accumulators (panes) whose merge
                # is its result; they are merged as copies.
                if len(value) % 16:
                    raise WeirError("internal error: a window fire named a malformed window")
                acc = _decode(_encode(acc))
                for o in range(16, len(value), 16):
                    _, other = self.load(next(extra), key, value[o:o + 16])
                    acc = self.merge(acc, _decode(_encode(other[2])))
            r = acc if self.result is None else self.result(acc)
            if r is not None:
                if self.window_fn is not None:
                    start, end = frame.window_bounds(value[:16] if value else ns)
                    r = self.window_fn(_decode(key), api.TimeWindow(start, end), r)
                if r is not None:
                    out.push(_encode(r), key, None, ts)
            if purge:
                self.slots.pop(i, None)
        return out

    def merge_windows(self, batch, slots):
        it = iter(slots)
        for key, target, _, _, value in frame.read(batch):
            t_slot = next(it)
            merged = self.create()
            for src in frame.values(value):
                s = next(it)
                i, e = self.load(s, key, src)
                merged = self.merge(merged, e[2])
                self.slots.pop(i, None)
            _, e = self.load(t_slot, key, target or b"")
            e[2] = self.merge(e[2], merged)
            e[3] = True

    def flush(self, forget):
        w = frame.Writer()
        for e in self.slots.values():
            if e[3]:
                w.push(_encode(e[2]), e[0], e[1])
                e[3] = False
        if w.count:
            _host.state_write(0, w.bytes())
        if forget:
            self.slots.clear()


# ---------------------------------------------------------------- process ----


class _TimerService:
    def __init__(self, ctx):
        self._ctx = ctx

    def current_watermark(self):
        return self._ctx.current_watermark

    def current_processing_time(self):
        return self._ctx.processing_time

    def register_event_time_timer(self, ts):
        _host.register_timer(t.TimeDomain.EVENT_TIME, state.current.key, b"", int(ts))

    def register_processing_time_timer(self, ts):
        _host.register_timer(t.TimeDomain.PROCESSING_TIME, state.current.key, b"", int(ts))

    def delete_event_time_timer(self, ts):
        _host.delete_timer(t.TimeDomain.EVENT_TIME, state.current.key, b"", int(ts))

    def delete_processing_time_timer(self, ts):
        _host.delete_timer(t.TimeDomain.PROCESSING_TIME, state.current.key, b"", int(ts))


class _Context:
    """What `process_element` and `on_timer` see."""

    def __init__(self, runtime, op, wit_ctx, side):
        self._rt = runtime
        self._op = op
        self._wit = wit_ctx
        self._side = side
        self._key = None
        self._ts = None
        self._domain = None

    def get_current_key(self):
        return _decode(state.current.key)

    def timestamp(self):
        return self._ts

    def time_domain(self):
        return self._domain

    def timer_service(self):
        return _TimerService(self._wit)

    def output(self, tag, value):
        port = self._rt.graph.tags.get((self._op, tag.id))
        if port is not None:
            self._side.push(_encode(value), None, None, self._ts, port)


class _WindowContext:
    def __init__(self, window):
        self._w = window

    def window(self):
        return self._w


def _emit_all(out, results, key, ts):
    if results is None:
        return
    for r in results:
        out.push(_encode(r), key, None, ts)


# ---------------------------------------------------------------- export ----


class _Runtime:
    def __init__(self, graph):
        self.graph = graph
        self.aggs = {}

    def agg(self, op):
        a = self.aggs.get(op)
        if a is None:
            spec = self.graph.fns.get(op)
            if spec is None or spec[0] == "process_window":
                raise WeirError(f"internal error: operator {op} is not an aggregation")
            a = self.aggs[op] = _Aggregate(spec)
        return a


_rt = None


def _runtime():
    if _rt is None:
        raise WeirError("internal error: the host called the job before plan()")
    return _rt


class Job(exports.Job):
    @_guard
    def entries(self):
        return [name for name, _ in api.registered_jobs()]

    @_guard
    def plan(self, entry, args):
        global _rt
        jobs = api.registered_jobs()
        if not jobs:
            raise WeirError("the module defines no job: decorate a function with @weir.job")
        if entry is None:
            name, fn = jobs[0]
        else:
            found = [j for j in jobs if j[0] == entry]
            if not found:
                names = ", ".join(n for n, _ in jobs)
                raise WeirError(f"no job named '{entry}'; this module has: {names}")
            name, fn = found[0]
        env = api.Env(name)
        fn(env, Args(args))
        if not env._g.ops:
            raise WeirError(f"job '{name}' defines no operators")
        _rt = _Runtime(env._g)
        return _wit_plan(env._g)

    @_guard
    def run_stages(self, stages, batch):
        rt = _runtime()
        out = frame.Writer()
        side = frame.Writer()
        # Compiled per batch around its writers: a few closures per call.
        push, raw = _compile(rt.graph, stages, out, side)
        if raw:
            for k, _, ts, _, v in frame.read(batch):
                push(k, ts, v)
        else:
            for k, _, ts, _, v in frame.read(batch):
                push(k, ts, _decode(v))
        return t.Output(main=out.bytes(), records=out.count, side=side.bytes())

    @_guard
    def aggregate(self, op, batch, slots, emit):
        out = _runtime().agg(op).fold(batch, slots, emit)
        return t.Output(main=out.bytes(), records=out.count, side=b"")

    @_guard
    def fire(self, op, batch, slots, purge):
        out = _runtime().agg(op).fire(batch, slots, purge)
        return t.Output(main=out.bytes(), records=out.count, side=b"")

    @_guard
    def merge_windows(self, op, batch, slots):
        _runtime().agg(op).merge_windows(batch, slots)

    @_guard
    def process_window(self, op, batch):
        rt = _runtime()
        spec = rt.graph.fns.get(op)
        if spec is None or spec[0] != "process_window":
            raise WeirError(f"internal error: operator {op} is not a process window")
        fn = spec[1]
        out = frame.Writer()
        for key, ns, ts, _, value in frame.read(batch):
            start, end = frame.window_bounds(ns)
            elements = [_decode(v) for v in frame.values(value)]
            _emit_all(out, fn.process(_decode(key), _WindowContext(api.TimeWindow(start, end)), elements), key, ts)
        return t.Output(main=out.bytes(), records=out.count, side=b"")

    @_guard
    def process(self, op, batch, context):
        rt = _runtime()
        fn = rt.graph.fns[op][1]
        out = frame.Writer()
        side = frame.Writer()
        ctx = _Context(rt, op, context, side)
        for key, _, ts, _, value in frame.read(batch):
            state.current.key = key
            ctx._ts = ts
            _emit_all(out, fn.process_element(_decode(value), ctx), key, ts)
        return t.Output(main=out.bytes(), records=out.count, side=side.bytes())

    @_guard
    def on_timer(self, op, domain, timers, context):
        rt = _runtime()
        fn = rt.graph.fns[op][1]
        out = frame.Writer()
        side = frame.Writer()
        ctx = _Context(rt, op, context, side)
        ctx._domain = "event-time" if domain == t.TimeDomain.EVENT_TIME else "processing-time"
        for key, _, ts, _, _ in frame.read(timers):
            state.current.key = key
            ctx._ts = ts
            _emit_all(out, fn.on_timer(ts, ctx), key, ts)
        return t.Output(main=out.bytes(), records=out.count, side=side.bytes())

    @_guard
    def flush(self, op, forget):
        rt = _runtime()
        a = rt.aggs.get(op)
        if a is not None:
            a.flush(forget)

    @_guard
    def save(self):
        hooks = _runtime().graph.hooks
        if hooks is None:
            return None
        data = hooks[0]()
        if data is not None and not isinstance(data, (bytes, bytearray)):
            raise WeirError("the save hook must return bytes or None")
        return None if data is None else bytes(data)

    @_guard
    def restore(self, from_version, data):
        hooks = _runtime().graph.hooks
        if hooks is not None:
            hooks[1](from_version, data)


def log(level, message):
    """Writes to the task's log: level is "trace", "debug", "info", "warn" or "error"."""
    _host.log(_host.LogLevel[level.upper()], str(message))


sys.setrecursionlimit(max(sys.getrecursionlimit(), 2000))
