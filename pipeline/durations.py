"""Durations as people read them, for plans, ETAs and summaries."""

from __future__ import annotations


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
