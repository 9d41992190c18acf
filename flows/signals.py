"""SIGTERM and SIGINT as Ctrl-C: a service manager's stop, or a `kill -INT`, ends a run or
``serve`` cleanly.

Python's default for SIGTERM kills the process on the spot, and a process started in the
background of a script has SIGINT ignored (or, once a library resets it, fatal): the run's
claims would wait out their leases and count as a failed attempt. Raised as
KeyboardInterrupt instead, the run hands its claims back (the attempt not counted), writes
its ``runs/`` row and exits.
"""

from __future__ import annotations

import signal
from types import FrameType


def stop_on_signals() -> None:
    """From now on, SIGTERM and SIGINT raise KeyboardInterrupt in the main thread."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, interrupt)
