"""A process-local hook through which a flow run reports progress to whoever shows it."""

from __future__ import annotations

from typing import Protocol


class ProgressSink(Protocol):
    def stage(self, name: str, total: int) -> None: ...

    def advance(self, amount: int) -> None: ...


class _Silent:
    def stage(self, name: str, total: int) -> None:
        return None

    def advance(self, amount: int) -> None:
        return None


_sink: ProgressSink = _Silent()


def set_sink(sink: ProgressSink | None) -> None:
    global _sink  # noqa: PLW0603  (one reporter per process, set by the CLI)
    _sink = sink or _Silent()


def sink() -> ProgressSink:
    return _sink
