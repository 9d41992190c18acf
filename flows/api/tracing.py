"""W3C trace context: accept a caller's ``traceparent`` or start a trace, so every problem
can be followed from the caller's request to its result row."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


@dataclass(frozen=True)
class TraceContext:
    """The trace this request belongs to, and the span this service opened in it."""

    trace_id: str
    span_id: str
    sampled: bool

    def header(self) -> str:
        """The ``traceparent`` to hand back (and to pass on): our span as the parent."""
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"


def trace_from(header: str | None) -> TraceContext:
    """The caller's trace when its ``traceparent`` is valid, else a new one (W3C rules:
    version ff and all-zero ids are invalid; unknown future versions keep the first fields)."""
    span = secrets.token_hex(8)
    if header:
        match = _TRACEPARENT.match(header.strip().lower())
        if match:
            version, trace_id, parent, flags = match.groups()
            exact = len(header.strip()) == 55
            if (
                version != "ff"
                and (exact or version != "00")
                and trace_id != "0" * 32
                and parent != "0" * 16
            ):
                return TraceContext(trace_id, span, bool(int(flags, 16) & 1))
    return TraceContext(secrets.token_hex(16), span, False)
