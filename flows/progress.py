"""How a run shows life: progress bars on a terminal, plain log lines everywhere else; both
with an ETA that starts from the run's own estimate and moves to the rate it sees."""

from __future__ import annotations

import sys
import time
from typing import IO, Protocol

from pipeline.durations import duration


class ProgressSink(Protocol):
    """Receives a run's stages, its progress through one, and notes worth a line."""

    def stage(self, name: str, total: int, estimate_s: float | None = None) -> None: ...

    def advance(self, amount: int) -> None: ...

    def note(self, message: str) -> None: ...


class _Silent:
    def stage(self, name: str, total: int, estimate_s: float | None = None) -> None:
        return None

    def advance(self, amount: int) -> None:
        return None

    def note(self, message: str) -> None:
        return None


silent: ProgressSink = _Silent()


class Eta:
    """Time left in a stage: the estimate at first, the observed rate as work is done (each
    weighted by how much of the stage is behind it)."""

    def __init__(self, total: int, estimate_s: float | None) -> None:
        self.total = total
        self.estimate_s = estimate_s
        self.started = time.monotonic()

    def remaining(self, done: int) -> float | None:
        elapsed = time.monotonic() - self.started
        left = max(0, self.total - done)
        planned = None if self.estimate_s is None else max(0.0, self.estimate_s - elapsed)
        if not done or not self.total:
            return planned
        observed = elapsed / done * left
        if planned is None:
            return observed
        weight = min(1.0, done / self.total)
        return weight * observed + (1 - weight) * planned

    def text(self, done: int) -> str:
        left = self.remaining(done)
        return "ETA unknown" if left is None else f"ETA {duration(left)}"


class LogProgress:
    """Progress as plain lines, for cron, CI and log collectors: at most one per ``every_s``."""

    def __init__(self, stream: IO[str] = sys.stderr, every_s: float = 5.0) -> None:
        self.stream = stream
        self.every_s = every_s
        self.name = ""
        self.total = 0
        self.done = 0
        self.eta = Eta(0, None)
        self._last = 0.0

    def stage(self, name: str, total: int, estimate_s: float | None = None) -> None:
        self.name, self.total, self.done = name, total, 0
        self.eta = Eta(total, estimate_s)
        self._line(f"{name}: {total} problems, {self.eta.text(0)}")
        self._last = time.monotonic()

    def advance(self, amount: int) -> None:
        self.done += amount
        now = time.monotonic()
        if self.done >= self.total or now - self._last >= self.every_s:
            left = "" if self.done >= self.total else f", {self.eta.text(self.done)}"
            self._line(f"{self.name}: {self.done}/{self.total} problems written{left}")
            self._last = now

    def note(self, message: str) -> None:
        self._line(message)

    def _line(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        print(f"{stamp} qhopper: {text}", file=self.stream, flush=True)
