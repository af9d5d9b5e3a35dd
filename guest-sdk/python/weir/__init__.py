"""Weir jobs in Python.

A job is a function decorated with `@weir.job` that builds a dataflow on an
environment, as in Flink's DataStream API:

    import weir

    @weir.job
    def wordcount(env, args):
        (env.read_text_file(args.required("input"))
            .flat_map(lambda line: ((w, 1) for w in line.split()))
            .key_by(lambda pair: pair[0])
            .sum(1).uid("counts")
            .print())

Build it into a component with `weir-py build job.py -o job.wasm`.
"""

from .api import (
    AggregateFunction,
    CoFlatMapFunction,
    CoMapFunction,
    ConnectedKeyedStreams,
    ConnectedStreams,
    Connector,
    CountTrigger,
    DataStream,
    Env,
    EventTimeSessionWindows,
    GlobalWindows,
    IntervalJoin,
    JoinedStreams,
    KeyedCoProcessFunction,
    KeyedProcessFunction,
    KeyedStream,
    ListStateDescriptor,
    MapStateDescriptor,
    OutputTag,
    ProcessJoinFunction,
    ProcessWindowFunction,
    ProcessingTimeSessionWindows,
    SlidingEventTimeWindows,
    SlidingProcessingTimeWindows,
    Time,
    TimeWindow,
    TumblingEventTimeWindows,
    TumblingProcessingTimeWindows,
    ValueStateDescriptor,
    WatermarkStrategy,
    WindowedStream,
    job,)
from .args import Args
from .errors import WeirError

__all__ = [
    "AggregateFunction",
    "Args",
    "CoFlatMapFunction",
    "CoMapFunction",
    "ConnectedKeyedStreams",
    "ConnectedStreams",
    "Connector",
    "CountTrigger",
    "DataStream",
    "Env",
    "EventTimeSessionWindows",
    "GlobalWindows",
    "IntervalJoin",
    "JoinedStreams",
    "KeyedCoProcessFunction",
    "KeyedProcessFunction",
    "KeyedStream",
    "ListStateDescriptor",
    "MapStateDescriptor",
    "OutputTag",
    "ProcessJoinFunction",
    "ProcessWindowFunction",
    "ProcessingTimeSessionWindows",
    "SlidingEventTimeWindows",
    "SlidingProcessingTimeWindows",
    "Time",
    "TimeWindow",
    "TumblingEventTimeWindows",
    "TumblingProcessingTimeWindows",
    "ValueStateDescriptor",
    "WatermarkStrategy",
    "WeirError",
    "WindowedStream",
    "job",
    "log",]


def log(level, message):
    """Writes to the task's log ("trace", "debug", "info", "warn", "error")."""
    from .runtime import log as _log

    _log(level, message)
