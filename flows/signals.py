"""SIGTERM as Ctrl-C: a service manager's stop ends a run or ``serve`` cleanly.

Python's default for SIGTERM kills the process on the spot: the run's claims would wait out
their leases and count as a failed attempt. Raised as KeyboardInterrupt instead, the run
hands its claims back (the attempt not counted), writes its ``runs/`` row and exits.
"""

from __future__ import annotations

import signal
from types import FrameType


def stop_on_sigterm() -> None:
    """From now on, SIGTERM raises KeyboardInterrupt in the main thread."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
