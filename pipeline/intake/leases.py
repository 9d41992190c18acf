"""Who holds a lease: host identity, process liveness, and the thread that keeps leases alive."""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
from datetime import datetime
from pathlib import Path
from typing import Protocol

import psutil
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipeline.intake.schema import problems
from pipeline.vocabulary import ACTIVE_STATES

log = logging.getLogger("qhopper.intake")


@functools.cache
def host_identity() -> str:
    """This host as its processes see it: host name, boot and PID namespace.

    Two processes with the same identity share one process table, so one can tell for
    certain whether the other is alive.
    """
    parts = [socket.gethostname()]
    try:
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8])
        parts.append(os.readlink("/proc/self/ns/pid"))
    except OSError:
        pass
    return ":".join(parts)[:255]


def process_alive(pid: int) -> bool:
    """True unless ``pid`` is certainly gone from this host (zombies count as gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True  # cannot tell: assume alive, the lease decides


def dead_local_owners(connection: Connection, now: datetime) -> list[str]:
    """Owners of unexpired leases whose holding process no longer exists on this host."""
    rows = connection.execute(
        sa.select(problems.c.lease_owner, problems.c.lease_pid)
        .where(
            problems.c.state.in_(ACTIVE_STATES),
            problems.c.lease_host == host_identity(),
            problems.c.lease_expires_at >= now,
            problems.c.lease_pid.is_not(None),
        )
        .distinct()
    ).all()
    return dead_among([(owner, pid) for owner, pid in rows])


def dead_among(holders: list[tuple[str | None, int | None]]) -> list[str]:
    """The owners among local ``(owner, pid)`` holders whose process is gone (one check per pid)."""
    alive = {pid: process_alive(int(pid)) for pid in {pid for _, pid in holders if pid is not None}}
    return sorted({owner for owner, pid in holders if owner and pid is not None and not alive[pid]})


class Renews(Protocol):
    def renew(self, owner: str, lease_seconds: float) -> int: ...


class LeaseKeeper:
    """Renews one owner's leases every third of a lease on a daemon thread, until stopped.

    A live run keeps what it claimed however long a batch takes; a dead one stops renewing
    and its problems become claimable when the lease runs out (at once, on its own host).
    """

    def __init__(self, store: Renews, owner: str, lease_seconds: float) -> None:
        self.store = store
        self.owner = owner
        self.lease_seconds = lease_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-keeper-{owner}", daemon=True)

    def start(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.lease_seconds / 3):
            try:
                self.store.renew(self.owner, self.lease_seconds)
            except Exception as exc:  # the next beat tries again; the lease has slack
                log.warning("renewing the leases of %s failed: %s", self.owner, exc)

    @property
    def running(self) -> bool:
        """Whether the renewing thread is alive."""
        return self._thread.is_alive()

    def stop(self, timeout: float = 60) -> None:
        """Stop renewing and wait (at most ``timeout`` s) for a renewal in flight to end."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)
