"""Job arguments: `--key value` pairs, as Flink's `ParameterTool`."""

from .errors import WeirError


class Args:
    """The arguments given after `--` on the command line or `programArgs`."""

    def __init__(self, raw):
        self.raw = list(raw)
        self._values = {}
        i = 0
        while i < len(raw):
            arg = raw[i]
            if arg.startswith("--"):
                key = arg[2:]
            elif arg.startswith("-"):
                key = arg[1:]
            else:
                raise WeirError(f"unexpected argument '{arg}': job arguments are --key value pairs")
            if not key:
                raise WeirError("empty argument name '--'")
            if i + 1 < len(raw) and not raw[i + 1].startswith("--"):
                self._values[key] = raw[i + 1]
                i += 1
            else:
                self._values[key] = "true"
            i += 1

    def get(self, key, default=None):
        return self._values.get(key, default)

    def has(self, key):
        return key in self._values

    def required(self, key):
        if key not in self._values:
            raise WeirError(f"missing argument --{key}")
        return self._values[key]

    def get_int(self, key, default=None):
        v = self._values.get(key)
        if v is None:
            return default
        try:
            return int(v)
        except ValueError:
            raise WeirError(f"--{key} {v}: not an integer") from None

    def __contains__(self, key):
        return key in self._values

    def __repr__(self):
        return f"Args({self.raw!r})"
