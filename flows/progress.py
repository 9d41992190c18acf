"""How a run shows life: progress bars on a terminal, plain log lines everywhere else."""

from __future__ import annotations

import sys
import time
from typing import IO, Protocol


class ProgressSink(Protocol):
    """Receives a run's stages, its progress through one, and notes worth a line."""

    def stage(self, name: str, total: int) -> None: ...

    def advance(self, amount: int) -> None: ...

    def note(self, message: str) -> None: ...


class _Silent:
    def stage(self, name: str, total: int) -> None:
        return None

    def advance(self, amount: int) -> None:
        return None

    def note(self, message: str) -> None:
        return None


silent: ProgressSink = _Silent()


class LogProgress:
    """Progress as plain lines, for cron, CI and log collectors: at most one per ``every_s``."""

    def __init__(self, stream: IO[str] = sys.stderr, every_s: float = 5.0) -> None:
        self.stream = stream
        self.every_s = every_s
        self.name = ""
        self.total = 0
        self.done = 0
        self._last = 0.0

    def stage(self, name: str, total: int) -> None:
        self.name, self.total, self.done = name, total, 0
        self._line(f"{name}: {total} problems")
        self._last = time.monotonic()

    def advance(self, amount: int) -> None:
        self.done += amount
        now = time.monotonic()
        if self.done >= self.total or now - self._last >= self.every_s:
            self._line(f"{self.name}: {self.done}/{self.total} problems written")
            self._last = now

    def note(self, message: str) -> None:
        self._line(message)

    def _line(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        print(f"{stamp} qhopper: {text}", file=self.stream, flush=True)
