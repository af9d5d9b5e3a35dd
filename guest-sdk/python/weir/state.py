"""Keyed state of process functions, read and written in the host's RocksDB.

A handle always acts on the state of the key being processed."""

from . import codec, frame

try:
    from wit_world.imports import host as _host
except ImportError:  # building the plan outside a component (tests, tools)
    _host = None


class _Current:
    key = b""


current = _Current()


class ValueState:
    def __init__(self, index):
        self._i = index

    def value(self):
        b = _host.state_get(self._i, current.key, b"")
        return None if b is None else codec.decode(b)

    def update(self, value):
        _host.state_put(self._i, current.key, b"", codec.encode(value))

    def clear(self):
        _host.state_delete(self._i, current.key, b"")


class ListState:
    def __init__(self, index):
        self._i = index

    def get(self):
        b = _host.state_get(self._i, current.key, b"")
        return [] if b is None else [codec.decode(v) for v in frame.values(b)]

    def add(self, value):
        _host.state_append(self._i, current.key, b"", codec.encode(value))

    def add_all(self, values):
        for v in values:
            self.add(v)

    def update(self, values):
        self.clear()
        self.add_all(values)

    def clear(self):
        _host.state_delete(self._i, current.key, b"")


class MapState:
    def __init__(self, index):
        self._i = index

    def get(self, key):
        b = _host.state_get(self._i, current.key, codec.encode(key))
        return None if b is None else codec.decode(b)

    def contains(self, key):
        return _host.state_get(self._i, current.key, codec.encode(key)) is not None

    def put(self, key, value):
        _host.state_put(self._i, current.key, codec.encode(key), codec.encode(value))

    def remove(self, key):
        _host.state_delete(self._i, current.key, codec.encode(key))

    def items(self):
        scanned = _host.state_scan(self._i, current.key, b"")
        return [(codec.decode(k), codec.decode(v)) for k, _, _, _, v in frame.read(scanned)]

    def keys(self):
        return [k for k, _ in self.items()]

    def values(self):
        return [v for _, v in self.items()]

    def is_empty(self):
        return not self.items()

    def clear(self):
        for k, _ in self.items():
            self.remove(k)


def handle(kind, index):
    return {"value": ValueState, "list": ListState, "map": MapState}[kind](index)
