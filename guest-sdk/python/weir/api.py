"""The DataStream API: what a job builds in its job function.

The shape follows Flink's (and PyFlink's) DataStream API: an environment
creates sources, streams are transformed with `map`, `flat_map`, `filter`,
partitioned with `key_by`, aggregated with `sum`, `reduce`, `aggregate` or
windows, and end in sinks. `name`, `uid` and `parallelism` apply to the
operator created last.
"""

from . import nexmark as _nexmark
from .errors import WeirError

FORWARD, REBALANCE, HASH, BROADCAST = "forward", "rebalance", "hash", "broadcast"


class Op:
    """One operator of the plan (converted to the WIT `operator` by the runtime)."""

    __slots__ = ("uid", "name", "parallelism", "inputs", "kind", "states", "side_outputs")

    def __init__(self, name, inputs, kind):
        self.uid = None
        self.name = name
        self.parallelism = None
        self.inputs = inputs  # [(from, port, partitioning)]
        self.kind = kind  # ("source", connector, timestamps, watermarks) | ("sink", connector) | ...
        self.states = []  # [(name, "value" | "list" | "map")]
        self.side_outputs = 0


class Connector:
    """A connector and its options, as Flink SQL's `WITH ('key' = 'value')`."""

    def __init__(self, kind, options=None):
        self.kind = kind
        self.options = [(str(k), str(v)) for k, v in (options or {}).items()] if isinstance(options, dict) else list(options or [])

    def set(self, key, value):
        self.options = [(k, v) for k, v in self.options if k != key] + [(key, str(value))]


class Graph:
    def __init__(self, name):
        self.name = name
        self.version = "1"
        self.config = {}
        self.ops = []
        self.fns = {}
        self.hooks = None
        self.tags = {}  # (op, tag id) -> port
        # Operators that are part of another (an interval join's
        # timestamps): name, uid and parallelism apply to it.
        self.owners = {}

    def add(self, op, fn=None):
        self.ops.append(op)
        i = len(self.ops) - 1
        if fn is not None:
            self.fns[i] = fn
        return i

    def side_port(self, op, tag):
        key = (op, tag.id)
        if key not in self.tags:
            self.ops[op].side_outputs += 1
            self.tags[key] = self.ops[op].side_outputs
        return self.tags[key]


class Time:
    """Durations in milliseconds, as Flink's `Time`."""

    @staticmethod
    def milliseconds(n):
        return int(n)

    @staticmethod
    def seconds(n):
        return int(n * 1000)

    @staticmethod
    def minutes(n):
        return int(n * 60_000)

    @staticmethod
    def hours(n):
        return int(n * 3_600_000)

    @staticmethod
    def days(n):
        return int(n * 86_400_000)


class Env:
    """The job's environment, as Flink's `StreamExecutionEnvironment`."""

    def __init__(self, name):
        self._g = Graph(name)

    def set(self, key, value):
        """A setting with a Flink key, e.g. `env.set("restart-strategy.type", "fixed-delay")`."""
        if isinstance(value, bool):
            value = "true" if value else "false"
        self._g.config[key] = str(value)
        return self

    def set_parallelism(self, parallelism):
        return self.set("parallelism.default", int(parallelism))

    def set_max_parallelism(self, max_parallelism):
        return self.set("pipeline.max-parallelism", int(max_parallelism))

    def enable_checkpointing(self, interval_ms):
        return self.set("execution.checkpointing.interval", f"{int(interval_ms)}ms")

    def set_job_name(self, name):
        self._g.name = name
        return self

    def set_version(self, version):
        """The job's own version, handed to the `restore` hook of later versions."""
        self._g.version = str(version)
        return self

    def snapshot_memory(self):
        """Snapshots the module's whole linear memory with every checkpoint."""
        return self.set("weir.state.memory-snapshots", True)

    def state_hooks(self, save, restore):
        """Explicit state for upgrades: `save()` returns bytes (or None) at
        every snapshot; `restore(from_version, data)` takes them over in a
        later version of the job."""
        self._g.hooks = (save, restore)
        return self

    def from_source(self, connector, name, decode):
        """Reads from any connector the host knows; `decode(raw: bytes)` turns
        each raw record into a value (an exception follows the source's decode
        policy)."""
        g = self._g
        src = g.add(Op(name, [], ("source", connector, "none", None)))
        dec = g.add(Op(f"{name} (decode)", [(src, 0, FORWARD)], ("stage", "decode")), ("decode", decode))
        return DataStream(g, dec)

    def read_text_file(self, path):
        """Reads a text file line by line (bounded), as Flink's `readTextFile`."""
        return self.from_source(Connector("file", [("path", path)]), "Source: file", _utf8)

    def socket_text_stream(self, hostname, port):
        """Reads lines from a TCP socket (unbounded), as Flink's `socketTextStream`."""
        return self.from_source(
            Connector("socket", [("hostname", hostname), ("port", str(port))]), "Source: socket", _utf8
        )

    def from_generator(self, f, count=None, rows_per_second=None):
        """Generates `f(0), f(1), ...`: `count` records in all (unbounded
        without), at most `rows_per_second` (as fast as possible without)."""
        options = []
        if count is not None:
            options.append(("number-of-rows", str(int(count))))
        if rows_per_second is not None:
            options.append(("rows-per-second", str(rows_per_second)))

        def decode(raw):
            return f(int.from_bytes(raw, "little"))

        return self.from_source(Connector("datagen", options), "Source: generator", decode)

    def nexmark(self, events=None, events_per_second=None, event_time_rate=None):
        """Nexmark's persons, auctions and bids (`weir.nexmark`) from the
        host's generator, with their event times and watermarks 4 s behind:
        `events` in all (unbounded without), at most `events_per_second`,
        event time advancing at `event_time_rate` (10 M/s by default)."""
        options = []
        if events is not None:
            options.append(("events", str(int(events))))
        if events_per_second is not None:
            options.append(("events-per-second", str(events_per_second)))
        if event_time_rate is not None:
            options.append(("event-time-rate", str(int(event_time_rate))))
        return self.from_source(
            Connector("nexmark", options), "Source: nexmark", _nexmark.decode
        ).assign_timestamps_and_watermarks(WatermarkStrategy.for_bounded_out_of_orderness(4000))

    def from_collection(self, values):
        """A bounded stream of the given values."""
        values = list(values)
        return self.from_generator(lambda i: values[i], count=len(values))


def _utf8(raw):
    return raw.decode()


class OutputTag:
    """Names a side output, as Flink's `OutputTag`."""

    def __init__(self, tag_id):
        self.id = tag_id


class _Stream:
    def __init__(self, g, op, port=0, partitioning=FORWARD, edges=None):
        self._g = g
        self._op = op
        self._port = port
        self._partitioning = partitioning
        # Several upstream outputs after a union.
        self._edges = edges

    def _edge(self):
        if self._edges is not None:
            return list(self._edges)
        return [(self._op, self._port, self._partitioning)]

    def _last(self):
        if self._edges is not None:
            raise WeirError(
                "this stream is a union of several operators; set name, uid and "
                "parallelism on the operators before the union"
            )
        return self._g.ops[self._g.owners.get(self._op, self._op)]

    def name(self, name):
        """Names the operator created last."""
        self._last().name = name
        return self

    def uid(self, uid):
        """The stable identity of the operator created last; state is matched
        by uid when a savepoint is restored into a new version."""
        self._last().uid = uid
        return self

    def set_uid_hash(self, uid):
        return self.uid(uid)

    def parallelism(self, parallelism):
        self._last().parallelism = int(parallelism)
        return self

    set_parallelism = parallelism


class DataStream(_Stream):
    """A stream of values, as Flink's `DataStream`."""

    def _stage(self, kind, fn, name):
        op = self._g.add(Op(name, self._edge(), ("stage", kind.replace("_", "-"))), (kind, fn))
        return DataStream(self._g, op)

    def map(self, f):
        """One value out for every value in."""
        return self._stage("map", f, "Map")

    def flat_map(self, f):
        """Any number of values out for every value in: `f` returns an
        iterable (a list, or a generator that yields)."""
        return self._stage("flat_map", f, "Flat Map")

    def filter(self, f):
        """Keeps the values for which `f` is true."""
        return self._stage("filter", f, "Filter")

    def key_by(self, key):
        """Partitions by key: `key` is a function of the value, or the index
        of a tuple field."""
        f = key if callable(key) else (lambda v, i=key: v[i])
        ks = self._stage("key_by", f, "Key By")
        return KeyedStream(self._g, ks._op)

    def _repartitioned(self, partitioning):
        if self._edges is not None:
            edges = [(op, port, partitioning) for op, port, _ in self._edges]
            return DataStream(self._g, self._op, self._port, partitioning, edges)
        return DataStream(self._g, self._op, self._port, partitioning)

    def rebalance(self):
        return self._repartitioned(REBALANCE)

    def broadcast(self):
        return self._repartitioned(BROADCAST)

    def union(self, *others):
        """Merges streams: the next operator reads all of them."""
        edges = self._edge()
        for o in others:
            if o._g is not self._g:
                raise WeirError("union of streams of different environments")
            if o._partitioning != self._partitioning:
                raise WeirError("union of streams with different partitioning; key or rebalance after the union")
            edges += o._edge()
        return DataStream(self._g, self._op, self._port, self._partitioning, edges)

    def connect(self, other):
        """Connects two streams, possibly of different types, so that one
        operator reads both: `map(CoMapFunction)`, `flat_map(CoFlatMapFunction)`,
        or `key_by(key1, key2).process(KeyedCoProcessFunction)`."""
        return ConnectedStreams(self, other)

    def join(self, other):
        """A window join: `join(other).where(key1).equal_to(key2)
        .window(assigner).apply(join_function)` emits `join_function(a, b)`
        (or calls its `join(a, b)`) for every pair with equal keys in the
        same window."""
        return JoinedStreams(self, other, cogroup=False)

    def co_group(self, other):
        """A window co-group: as `join`, but `apply(function)` is called once
        per key and window with both lists (`co_group(first, second)`)."""
        return JoinedStreams(self, other, cogroup=True)

    def _tag(self, tag):
        return self.map(lambda v, tag=tag: (tag, v)).name(f"Connect ({tag + 1})")

    def assign_timestamps_and_watermarks(self, strategy):
        """Event time, as Flink's `assignTimestampsAndWatermarks`."""
        g = self._g
        stream = self
        if strategy.assigner is not None:
            stream = self._stage("timestamps", strategy.assigner, "Timestamps")
        source = _source_of(g, self._op) if self._port == 0 else None
        if source is not None and g.ops[source].kind[3] is None:
            kind = g.ops[source].kind
            g.ops[source].kind = (
                "source",
                kind[1],
                "guest" if strategy.assigner is not None else "connector",
                strategy.spec(),
            )
            return stream
        op = g.add(Op("Watermarks", stream._edge(), ("watermarks", strategy.spec())))
        return DataStream(g, op)

    def get_side_output(self, tag):
        """The stream of a side output of the operator created last."""
        port = self._g.side_port(self._op, tag)
        return DataStream(self._g, self._op, port)

    def sink_to(self, connector, name, encode=None):
        """Writes to any connector the host knows; `encode(value)` gives the
        record's bytes (text is UTF-8; by default `str(value)`)."""
        from .codec import to_bytes

        enc = (lambda v: to_bytes(encode(v))) if encode is not None else to_bytes
        encoded = self._stage("encode", enc, f"{name} (encode)")
        op = self._g.add(Op(name, encoded._edge(), ("sink", connector)))
        return Sink(self._g, op)

    def print(self):
        """Prints every value to standard output, as Flink's `print()`."""
        return self.sink_to(Connector("print"), "Sink: Print to Std. Out", _repr)

    def write_as_text(self, path):
        """Writes `str(value)` lines to a file (or a directory of part files)."""
        return self.sink_to(Connector("file", [("path", path)]), "Sink: file")

    def discard(self):
        """Drops every value (the `blackhole` connector)."""
        return self.sink_to(Connector("blackhole"), "Sink: Discard", lambda v: b"")


def _repr(v):
    return v if isinstance(v, str) else repr(v)


def _source_of(g, op):
    while True:
        o = g.ops[op]
        if o.kind[0] == "source":
            return op
        if o.kind[0] != "stage" or len(o.inputs) != 1 or o.inputs[0][2] != FORWARD or o.inputs[0][1] != 0:
            return None
        op = o.inputs[0][0]


class Sink(_Stream):
    """The end of a stream."""

    def option(self, key, value):
        """Sets an option of the sink's connector."""
        self._last().kind[1].set(key, value)
        return self

    def sorted(self):
        """A file sink writes its lines sorted when the input ends."""
        return self.option("sort-lines", "true")


class KeyedStream(_Stream):
    """A stream partitioned by key, as Flink's `KeyedStream`."""

    def __init__(self, g, op, edges=None):
        super().__init__(g, op, 0, HASH, edges)

    def _agg(self, folder, name):
        op = self._g.add(Op(name, self._edge(), ("aggregate",)), folder)
        return DataStream(self._g, op)

    def sum(self, field=None):
        """A running sum per key of a field: a tuple index, a dict key, an
        attribute name, or the value itself when None."""
        return self._agg(("sum", field), "Sum")

    def reduce(self, f):
        """A running `f(accumulated, value)` per key."""
        return self._agg(("reduce", f), "Reduce")

    def aggregate(self, function):
        """A running `AggregateFunction` per key."""
        return self._agg(("aggregate", function), "Aggregate")

    def process(self, function):
        """A `KeyedProcessFunction` with keyed state and timers."""
        return _keyed_process(self._g, self._edge(), function, "KeyedProcess")

    def window(self, assigner):
        """Groups each key's records into windows."""
        return WindowedStream(self, assigner)

    def connect(self, other):
        """Connects two streams keyed the same way: `process(KeyedCoProcessFunction)`
        sees both, with state and timers per key shared by both inputs."""
        if not isinstance(other, KeyedStream):
            raise WeirError("connect a keyed stream to a keyed stream (key_by both)")
        return ConnectedKeyedStreams(_tag_keyed(self, 0), _tag_keyed(other, 1))

    def interval_join(self, other):
        """Joins each record with the records of `other` with the same key
        whose event time lies within `between(lower_ms, upper_ms)` of its own,
        as Flink's `intervalJoin`."""
        if not isinstance(other, KeyedStream):
            raise WeirError("interval_join joins two keyed streams (key_by both)")
        return IntervalJoin(self, other)

    def count_window(self, size):
        """Windows of `size` records per key."""
        return WindowedStream(self, GlobalWindows.create()).trigger(CountTrigger.of(size))


def _tag_keyed(keyed, tag):
    """A keyed stream's values tagged with their input, key kept; the tag
    runs with the key selector's parallelism."""
    g = keyed._g
    op = g.add(Op(f"Connect ({tag + 1})", [(keyed._op, 0, FORWARD)], ("stage", "key-by")), ("map", lambda v, tag=tag: (tag, v)))
    return KeyedStream(g, op)


class ConnectedStreams:
    """Two streams read by one operator, as Flink's `ConnectedStreams`."""

    def __init__(self, first, second):
        self._first = first
        self._second = second

    def _tagged(self):
        return self._first._tag(0).union(self._second._tag(1))

    def map(self, function):
        """A `CoMapFunction`: `map1` for the first input, `map2` for the second."""
        f = function

        def co_map(t):
            return f.map1(t[1]) if t[0] == 0 else f.map2(t[1])

        return self._tagged().map(co_map).name("Co-Map")

    def flat_map(self, function):
        """A `CoFlatMapFunction`: `flat_map1` and `flat_map2` return iterables."""
        f = function

        def co_flat_map(t):
            return f.flat_map1(t[1]) if t[0] == 0 else f.flat_map2(t[1])

        return self._tagged().flat_map(co_flat_map).name("Co-Flat Map")

    def key_by(self, key1, key2):
        """Partitions both inputs by key, each with its own key selector."""
        return self._first.key_by(key1).connect(self._second.key_by(key2))


class ConnectedKeyedStreams:
    """Two keyed streams read by one keyed operator."""

    def __init__(self, first, second):
        self._g = first._g
        self._edges = first._edge() + second._edge()

    def process(self, function):
        """A `KeyedCoProcessFunction`: `process_element1(value, ctx)`,
        `process_element2(value, ctx)` and `on_timer(timestamp, ctx)` return
        (or yield) results."""
        return _keyed_process(self._g, self._edges, _CoProcess(function), "KeyedCoProcess")


def _keyed_process(g, edges, function, name):
    op = g.add(Op(name, edges, ("process",)), ("process", function))
    ctx = RuntimeContext(g.ops[op])
    if hasattr(function, "open"):
        function.open(ctx)
    return DataStream(g, op)


class _CoProcess:
    def __init__(self, f):
        self._f = f

    def open(self, ctx):
        if hasattr(self._f, "open"):
            self._f.open(ctx)

    def process_element(self, value, ctx):
        tag, v = value
        if tag == 0:
            return self._f.process_element1(v, ctx)
        return self._f.process_element2(v, ctx)

    def on_timer(self, timestamp, ctx):
        if hasattr(self._f, "on_timer"):
            return self._f.on_timer(timestamp, ctx)
        return None


class CoMapFunction:
    """`map1(value)` for the first input, `map2(value)` for the second."""

    def map1(self, value):
        raise NotImplementedError

    def map2(self, value):
        raise NotImplementedError


class CoFlatMapFunction:
    """`flat_map1(value)` and `flat_map2(value)` return (or yield) results."""

    def flat_map1(self, value):
        raise NotImplementedError

    def flat_map2(self, value):
        raise NotImplementedError


class KeyedCoProcessFunction:
    """A keyed function over two connected inputs, as Flink's; declare
    states in `open(runtime_context)` as for `KeyedProcessFunction`."""

    def open(self, runtime_context):
        pass

    def process_element1(self, value, ctx):
        raise NotImplementedError

    def process_element2(self, value, ctx):
        raise NotImplementedError

    def on_timer(self, timestamp, ctx):
        return None


class ProcessJoinFunction:
    """`process_element(left, right, ctx)` returns (or yields) the results
    of a joined pair; `ctx.get_left_timestamp()`, `ctx.get_right_timestamp()`
    and `ctx.get_timestamp()` (the later) are the pair's event times."""

    def process_element(self, left, right, ctx):
        raise NotImplementedError


class _JoinContext:
    __slots__ = ("_l", "_r")

    def __init__(self, left, right):
        self._l = left
        self._r = right

    def get_left_timestamp(self):
        return self._l

    def get_right_timestamp(self):
        return self._r

    def get_timestamp(self):
        return max(self._l, self._r)


class IntervalJoin:
    def __init__(self, first, second):
        self._first = first
        self._second = second

    def between(self, lower_ms, upper_ms):
        """Joins `b` to `a` when `a.ts + lower_ms <= b.ts <= a.ts + upper_ms`."""
        lower, upper = int(lower_ms), int(upper_ms)
        if lower > upper:
            raise WeirError(f"interval join: the lower bound ({lower} ms) is after the upper bound ({upper} ms)")
        return IntervalJoined(self._first, self._second, lower, upper)


class IntervalJoined:
    def __init__(self, first, second, lower, upper):
        self._first = first
        self._second = second
        self._bounds = [lower, upper, True, True]

    def lower_bound_exclusive(self):
        self._bounds[2] = False
        return self

    def upper_bound_exclusive(self):
        self._bounds[3] = False
        return self

    def process(self, function):
        """A `ProcessJoinFunction` (or a function `f(left, right, ctx)`) for
        every joined pair; each result's event time is the later of the pair's."""
        call = function.process_element if hasattr(function, "process_element") else function
        connected = self._first.connect(self._second)
        joined = _keyed_process(connected._g, connected._edges, _IntervalJoin(call, *self._bounds), "IntervalJoin")
        stamped = joined._g.add(Op("Timestamps", joined._edge(), ("stage", "timestamps")), ("stamp", None))
        joined._g.owners[stamped] = joined._op
        return DataStream(joined._g, stamped)


class _IntervalJoin:
    """Buffers both sides by event time in map states until the watermark
    passes the last time they can join."""

    def __init__(self, call, lower, upper, lower_inclusive, upper_inclusive):
        self._call = call
        self._lower = lower
        self._upper = upper
        self._li = lower_inclusive
        self._ui = upper_inclusive

    def open(self, ctx):
        self._left = ctx.get_map_state(MapStateDescriptor("left"))
        self._right = ctx.get_map_state(MapStateDescriptor("right"))

    def _joins(self, lt, rt):
        lo, hi = lt + self._lower, lt + self._upper
        return (rt >= lo if self._li else rt > lo) and (rt <= hi if self._ui else rt < hi)

    def _left_expiry(self, ts):
        return ts + max(self._upper, 0)

    def _right_expiry(self, ts):
        return ts + max(-self._lower, 0)

    def process_element(self, value, ctx):
        ts = ctx.timestamp()
        if ts is None:
            raise WeirError("an interval join needs event time: assign timestamps and watermarks to both inputs")
        watermark = ctx.timer_service().current_watermark()
        if ts < watermark:
            return []
        tag, v = value
        results = []
        if tag == 0:
            for rt, rights in self._right.items():
                if self._joins(ts, rt):
                    for r in rights:
                        jc = _JoinContext(ts, rt)
                        results.extend((jc.get_timestamp(), o) for o in (self._call(v, r, jc) or ()))
            own, expiry = self._left, self._left_expiry(ts)
        else:
            for lt, lefts in self._left.items():
                if self._joins(lt, ts):
                    for left in lefts:
                        jc = _JoinContext(lt, ts)
                        results.extend((jc.get_timestamp(), o) for o in (self._call(left, v, jc) or ()))
            own, expiry = self._right, self._right_expiry(ts)
        if expiry >= watermark:
            at = own.get(ts) or []
            at.append(v)
            own.put(ts, at)
        ctx.timer_service().register_event_time_timer(expiry)
        return results

    def on_timer(self, timestamp, ctx):
        # Each buffered time registered a timer at its expiry: the timer
        # names the one entry per side that expires now.
        self._left.remove(timestamp - max(self._upper, 0))
        self._right.remove(timestamp - max(-self._lower, 0))
        return None


class JoinedStreams:
    """A window join or co-group being configured (see `DataStream.join`)."""

    def __init__(self, first, second, cogroup):
        self._first = first
        self._second = second
        self._cogroup = cogroup
        self._key1 = None
        self._key2 = None

    def where(self, key1):
        self._key1 = key1
        return self

    def equal_to(self, key2):
        self._key2 = key2
        return self

    def window(self, assigner):
        if self._key1 is None or self._key2 is None:
            raise WeirError("a window join needs both keys: join(other).where(key1).equal_to(key2)")
        keyed = self._first.key_by(self._key1).connect(self._second.key_by(self._key2))
        stream = KeyedStream(keyed._g, None, keyed._edges)
        return JoinWindowed(WindowedStream(stream, assigner), self._cogroup)


class JoinWindowed:
    def __init__(self, windowed, cogroup):
        self._windowed = windowed
        self._cogroup = cogroup

    def allowed_lateness(self, ms):
        self._windowed.allowed_lateness(ms)
        return self

    def apply(self, function):
        """Join: `function(a, b)` (or its `join(a, b)`) per pair. Co-group:
        `function(first, second)` (or its `co_group(first, second)`) per key
        and window, returning (or yielding) the results."""
        if self._cogroup:
            call = function.co_group if hasattr(function, "co_group") else function
        else:
            pair = function.join if hasattr(function, "join") else function

            def call(first, second):
                return [pair(a, b) for a in first for b in second]

        return self._windowed.process(_CoGroupWindow(call)).name("Window Join")


class _CoGroupWindow:
    def __init__(self, call):
        self._call = call

    def process(self, key, context, elements):
        first = [v for tag, v in elements if tag == 0]
        second = [v for tag, v in elements if tag == 1]
        return self._call(first, second)


class AggregateFunction:
    """An incremental aggregation, as PyFlink's `AggregateFunction`."""

    def create_accumulator(self):
        raise NotImplementedError

    def add(self, value, accumulator):
        """Returns the accumulator with `value` added."""
        raise NotImplementedError

    def get_result(self, accumulator):
        raise NotImplementedError

    def merge(self, a, b):
        """Returns the merge of two accumulators (session windows)."""
        raise NotImplementedError


def _merges(fn):
    """Whether a window function merges accumulators: a reduce or a sum, or
    an aggregate function with its own merge."""
    if fn[0] in ("reduce", "sum"):
        return True
    if fn[0] != "aggregate":
        return False
    merge = getattr(type(fn[1]), "merge", None) or getattr(fn[1], "merge", None)
    return callable(merge) and merge is not AggregateFunction.merge


class ProcessWindowFunction:
    """Sees all elements of a window: `process(key, context, elements)`
    returns (or yields) the results; `context.window()` is the window."""

    def process(self, key, context, elements):
        raise NotImplementedError


class KeyedProcessFunction:
    """A keyed function with state and timers, as PyFlink's.

    `open(runtime_context)` declares states with
    `runtime_context.get_state(ValueStateDescriptor("name"))` and the like;
    `process_element(value, ctx)` and `on_timer(timestamp, ctx)` return (or
    yield) results."""

    def open(self, runtime_context):
        pass

    def process_element(self, value, ctx):
        raise NotImplementedError

    def on_timer(self, timestamp, ctx):
        return None


class ValueStateDescriptor:
    kind = "value"

    def __init__(self, name, type_info=None):
        self.name = name


class ListStateDescriptor(ValueStateDescriptor):
    kind = "list"


class MapStateDescriptor(ValueStateDescriptor):
    kind = "map"

    def __init__(self, name, key_type_info=None, value_type_info=None):
        self.name = name


class RuntimeContext:
    """Declares the keyed states of a process function."""

    def __init__(self, op):
        self._op = op

    def _declare(self, d):
        from . import state

        for i, (name, kind) in enumerate(self._op.states):
            if name == d.name:
                if kind != d.kind:
                    raise WeirError(f"state '{d.name}' is declared twice with different kinds")
                return state.handle(d.kind, i)
        self._op.states.append((d.name, d.kind))
        return state.handle(d.kind, len(self._op.states) - 1)

    def get_state(self, descriptor):
        return self._declare(descriptor)

    def get_list_state(self, descriptor):
        return self._declare(descriptor)

    def get_map_state(self, descriptor):
        return self._declare(descriptor)


class WatermarkStrategy:
    """How event timestamps are taken and how far watermarks trail them."""

    def __init__(self, max_out_of_orderness_ms):
        self.max_out_of_orderness_ms = int(max_out_of_orderness_ms)
        self.idle_timeout_ms = None
        self.assigner = None

    @staticmethod
    def for_bounded_out_of_orderness(max_out_of_orderness_ms):
        return WatermarkStrategy(max_out_of_orderness_ms)

    @staticmethod
    def for_monotonous_timestamps():
        return WatermarkStrategy(0)

    def with_timestamp_assigner(self, f):
        """`f(value, record_timestamp)` returns the event time in ms."""
        self.assigner = f
        return self

    def with_idleness(self, timeout_ms):
        self.idle_timeout_ms = int(timeout_ms)
        return self

    def spec(self):
        return (self.max_out_of_orderness_ms, self.idle_timeout_ms)


class _Assigner:
    def __init__(self, kind, domain, params):
        self.kind = kind
        self.domain = domain
        self.params = params


class TumblingEventTimeWindows:
    @staticmethod
    def of(size_ms, offset_ms=0):
        return _Assigner("tumbling", "event-time", (int(size_ms), int(offset_ms)))


class TumblingProcessingTimeWindows:
    @staticmethod
    def of(size_ms, offset_ms=0):
        return _Assigner("tumbling", "processing-time", (int(size_ms), int(offset_ms)))


class SlidingEventTimeWindows:
    @staticmethod
    def of(size_ms, slide_ms, offset_ms=0):
        return _Assigner("sliding", "event-time", (int(size_ms), int(slide_ms), int(offset_ms)))


class SlidingProcessingTimeWindows:
    @staticmethod
    def of(size_ms, slide_ms, offset_ms=0):
        return _Assigner("sliding", "processing-time", (int(size_ms), int(slide_ms), int(offset_ms)))


class EventTimeSessionWindows:
    @staticmethod
    def with_gap(gap_ms):
        return _Assigner("session", "event-time", (int(gap_ms),))


class ProcessingTimeSessionWindows:
    @staticmethod
    def with_gap(gap_ms):
        return _Assigner("session", "processing-time", (int(gap_ms),))


class GlobalWindows:
    @staticmethod
    def create():
        return _Assigner("global", "event-time", ())


class CountTrigger:
    @staticmethod
    def of(n):
        return ("count", int(n))


class TimeWindow:
    """A window `[start, end)`; `max_timestamp()` is its last millisecond."""

    __slots__ = ("start", "end")

    def __init__(self, start, end):
        self.start = start
        self.end = end

    def max_timestamp(self):
        return self.end - 1

    def __eq__(self, other):
        return isinstance(other, TimeWindow) and (self.start, self.end) == (other.start, other.end)

    def __hash__(self):
        return hash((self.start, self.end))

    def __repr__(self):
        return f"TimeWindow(start={self.start}, end={self.end})"


class WindowedStream:
    """A keyed stream grouped into windows, as Flink's `WindowedStream`."""

    def __init__(self, keyed, assigner):
        self._keyed = keyed
        self._assigner = assigner
        self._trigger = "default"
        self._lateness = 0
        self._late_tag = None

    def trigger(self, trigger):
        self._trigger = trigger
        return self

    def allowed_lateness(self, ms):
        self._lateness = int(ms)
        return self

    def side_output_late_data(self, tag):
        self._late_tag = tag
        return self

    def _window(self, function_kind, fn, name):
        g = self._keyed._g
        spec = {
            "assigner": (self._assigner.kind, self._assigner.params),
            "domain": self._assigner.domain,
            "trigger": self._trigger,
            "lateness": self._lateness,
            "late_port": None,
            "function": function_kind,
            "mergeable": _merges(fn),
        }
        op = g.add(Op(name, self._keyed._edge(), ("window", spec)), fn)
        if self._late_tag is not None:
            spec["late_port"] = g.side_port(op, self._late_tag)
        return DataStream(g, op)

    def aggregate(self, function, window_function=None):
        """Aggregates each window incrementally; `window_function(key,
        window, result)`, when given, turns the result into the output."""
        return self._window("aggregate", ("aggregate", function, window_function), "Window(Aggregate)")

    def reduce(self, f, window_function=None):
        return self._window("aggregate", ("reduce", f, window_function), "Window(Reduce)")

    def sum(self, field=None):
        return self._window("aggregate", ("sum", field, None), "Window(Sum)")

    def process(self, function):
        """Hands all elements of each window to a `ProcessWindowFunction`."""
        return self._window("process", ("process_window", function), "Window(Process)")


_jobs = []


def job(f=None, *, name=None):
    """Registers a job function `f(env, args)`; a module may hold several
    (`weir run --entry NAME`)."""

    def register(fn):
        _jobs.append((name or fn.__name__, fn))
        return fn

    return register(f) if f is not None else register


def registered_jobs():
    return list(_jobs)
