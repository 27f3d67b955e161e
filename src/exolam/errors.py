"""The one error type for bad user input (a value out of range, a missing file, NaN data).

The CLI turns it into one line on stderr and exit code 2; nothing half-written is left behind.
`note` says, once, what was assumed where the input was unambiguous but unusual.
"""

import sys


class ConfigError(ValueError):
    """Bad input, with a message that names the field or file and what is allowed."""


def check_range(name: str, value, lo=None, hi=None, *, lo_open=False, hi_open=False) -> None:
    """Raise ConfigError unless `value` is finite and inside [lo, hi] (bounds optional/open)."""
    import math

    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} = {value!r} must be a finite number")
    low_bad = lo is not None and (value <= lo if lo_open else value < lo)
    high_bad = hi is not None and (value >= hi if hi_open else value > hi)
    if low_bad or high_bad:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        lo_s = "-inf" if lo is None else f"{lo:g}"
        hi_s = "inf" if hi is None else f"{hi:g}"
        raise ConfigError(f"{name} = {value!r} is outside the allowed range {left}{lo_s}, {hi_s}{right}")


def check_positive_int(name: str, value) -> None:
    """Raise ConfigError unless `value` is an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} = {value!r} must be a positive integer")


_NOTED: set[tuple[str, str]] = set()


def note(where, message: str) -> None:
    """One stderr line `exolam: note: WHERE: MESSAGE`, once per process: input read by an assumption that
    the data left unambiguous (e.g. a writer's convention), said rather than refused or kept silent."""
    key = (str(where), message)
    if key not in _NOTED:
        _NOTED.add(key)
        print(f"exolam: note: {where}: {message}", file=sys.stderr, flush=True)


class Degenerate(Exception):
    """Training stopped because the model learned no latent action (`exolam train --stop-if-degenerate`):
    the CLI prints one line and exits with code 3 (not 2: the input was fine)."""
