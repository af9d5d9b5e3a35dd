"""The batch framing of `wit/FRAMING.md`: records laid end to end."""

import struct

KEY = 0x01
TIMESTAMP = 0x02
NAMESPACE = 0x04
PORT = 0x08
TOMBSTONE = 0x10

#: Port of records a decode stage could not decode.
DECODE_FAILURE_PORT = 0xFFFF_FFFF

_u32 = struct.Struct("<I")
_i64 = struct.Struct("<q")
_u32_from = _u32.unpack_from
_i64_from = _i64.unpack_from
_b_u32 = struct.Struct("<BI")
_b_i64_u32 = struct.Struct("<BqI")
_i64_u32 = struct.Struct("<qI")


class FrameError(Exception):
    pass


def read(batch):
    """Yields `(key, namespace, timestamp, port, value)` for every record.

    Absent fields are None (port 0 when absent)."""
    pos = 0
    end = len(batch)
    u32 = _u32_from
    try:
        while pos < end:
            flags = batch[pos]
            pos += 1
            key = ns = ts = None
            port = 0
            if flags & KEY:
                n = u32(batch, pos)[0]
                pos += 4
                key = batch[pos : pos + n]
                pos += n
            if flags & NAMESPACE:
                n = u32(batch, pos)[0]
                pos += 4
                ns = batch[pos : pos + n]
                pos += n
            if flags & TIMESTAMP:
                ts = _i64_from(batch, pos)[0]
                pos += 8
            if flags & PORT:
                port = u32(batch, pos)[0]
                pos += 4
            n = u32(batch, pos)[0]
            pos += 4
            if pos + n > end:
                raise FrameError("record value runs past the end of the batch")
            value = batch[pos : pos + n]
            pos += n
            yield key, ns, ts, port, value
    except struct.error as e:
        raise FrameError(f"truncated batch: {e}") from None


def values(batch):
    """The values of a framed list."""
    return [r[4] for r in read(batch)]


class Writer:
    """Builds a batch."""

    __slots__ = ("parts", "count")

    def __init__(self):
        self.parts = []
        self.count = 0

    def push(self, value, key=None, namespace=None, timestamp=None, port=0):
        parts = self.parts
        if namespace is None and not port:
            # The common shapes, in as few pieces as possible.
            if key is None:
                if timestamp is None:
                    parts += (_b_u32.pack(0, len(value)), value)
                else:
                    parts += (_b_i64_u32.pack(TIMESTAMP, timestamp, len(value)), value)
            elif timestamp is None:
                parts += (_b_u32.pack(KEY, len(key)), key, _u32.pack(len(value)), value)
            else:
                parts += (
                    _b_u32.pack(KEY | TIMESTAMP, len(key)),
                    key,
                    _i64_u32.pack(timestamp, len(value)),
                    value,
                )
            self.count += 1
            return
        flags = 0
        if key is not None:
            flags |= KEY
        if namespace is not None:
            flags |= NAMESPACE
        if timestamp is not None:
            flags |= TIMESTAMP
        if port:
            flags |= PORT
        parts.append(bytes((flags,)))
        if key is not None:
            parts.append(_u32.pack(len(key)))
            parts.append(key)
        if namespace is not None:
            parts.append(_u32.pack(len(namespace)))
            parts.append(namespace)
        if timestamp is not None:
            parts.append(_i64.pack(timestamp))
        if port:
            parts.append(_u32.pack(port))
        parts.append(_u32.pack(len(value)))
        parts.append(value)
        self.count += 1

    def tombstone(self, key, namespace):
        self.parts.append(bytes((KEY | NAMESPACE | TOMBSTONE,)))
        for b in (key, namespace):
            self.parts.append(_u32.pack(len(b)))
            self.parts.append(b)
        self.parts.append(_u32.pack(0))
        self.count += 1

    def bytes(self):
        return b"".join(self.parts)


def window_namespace(start, end):
    """A window's namespace: start and end with the sign bit flipped, big-endian."""
    return struct.pack(">QQ", (start & 0xFFFF_FFFF_FFFF_FFFF) ^ (1 << 63), (end & 0xFFFF_FFFF_FFFF_FFFF) ^ (1 << 63))


def window_bounds(ns):
    """`(start, end)` of a window namespace."""
    a, b = struct.unpack(">QQ", ns)

    def signed(x):
        x ^= 1 << 63
        return x - (1 << 64) if x >= 1 << 63 else x

    return signed(a), signed(b)
