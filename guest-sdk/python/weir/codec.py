"""How values cross between operators and into keyed state.

Values are pickled, so any picklable Python value is a record: numbers,
strings, tuples, dicts, and dataclasses defined in the job's module (the
build always names that module `weir_user_job`, so a new version of the job
reads the records and state of the old one). Keys are encoded the same way;
equal keys always encode to equal bytes.
"""

import pickle

PROTOCOL = 4

_dumps = pickle.dumps
_loads = pickle.loads


def encode(value):
    return _dumps(value, PROTOCOL)


def decode(data):
    return _loads(data)


def to_bytes(value):
    """A sink's wire format: bytes as they are, text as UTF-8, anything else as its str()."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    return str(value).encode()
