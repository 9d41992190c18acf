"""Durations as people write and read them: ``500ms``, ``30s``, ``5m`` in; ``3 min 20 s`` out.

Why one parser: the command line's intervals and timeouts and the fault-injecting backend's
options are all a number and an optional unit; each caller names the units it takes and
says in its own words what went wrong.
"""

from __future__ import annotations

import re
from collections.abc import Collection

SECONDS_PER_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}
# A sign (so a caller can say "must not be negative" rather than "not a duration"), digits
# with an optional fraction, an optional unit; spaces around any of them.
_DURATION = re.compile(r"\s*(?P<sign>[+-]?)(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>ms|[smhd])?\s*")


def parse_duration(text: str, units: Collection[str], *, signed: bool = False) -> float:
    """``text`` in seconds: a number with one of ``units`` (``SECONDS_PER_UNIT``'s keys), or
    a bare number of seconds. ValueError if it is not one, or carries a sign it may not."""
    match = _DURATION.fullmatch(text)
    if match is None or (match["sign"] and not signed):
        raise ValueError(f"{text!r} is not a duration")
    unit = match["unit"] or "s"
    if match["unit"] and unit not in units:
        raise ValueError(f"{text!r}: the unit {unit!r} is not one of {', '.join(units)}")
    value = float(match["number"]) * SECONDS_PER_UNIT[unit]
    return -value if match["sign"] == "-" else value


def duration(seconds: float) -> str:
    """Seconds as a person reads them: 45 s, 3 min 20 s, 1 h 05 min."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 1 else f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
