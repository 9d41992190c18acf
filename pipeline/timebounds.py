"""The times and durations qhopper accepts, checked where they come in.

Python's datetime spans the years 1 to 9999. A time near either end with a UTC offset
(``0001-01-01T00:00:00+01:00``), or a long duration added to now, falls outside that span
once converted, and the conversion raises OverflowError deep inside a submit or a run: a
500 from the service, a traceback from the command line. So every time and duration a
user gives (a problem's deadline, a ``since``, a cursor, a timeout, an interval, a lease)
is checked here first and refused by name.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

# Ten years: longer than any lease, timeout or interval means, and far from the end of time.
LONGEST_DURATION_S = 10 * 366 * 86_400
RANGE = "between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z"


def utc_issue(when: datetime) -> str | None:
    """Why ``when`` cannot be used as a moment, or None: no time zone, or out of range in UTC."""
    if when.utcoffset() is None:
        return "has no time zone: give one, e.g. 2026-01-31T12:00:00Z or +01:00"
    try:
        when.astimezone(UTC)
    except OverflowError:
        return f"out of range: in UTC it must fall {RANGE}"
    return None


def duration_issue(seconds: float) -> str | None:
    """Why ``seconds`` cannot be used as a duration, or None: not positive, or too long."""
    if not math.isfinite(seconds) or seconds <= 0:
        return "must be a positive number of seconds"
    if seconds > LONGEST_DURATION_S:
        return f"must be at most {LONGEST_DURATION_S} seconds (ten years)"
    return None
