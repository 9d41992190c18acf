"""What a class's pilots found, kept for every run, and which run is finding it now.

Two tables beside the angle library, in the intake database: ``angle_findings`` (one row
per set of pilots: their mean optimum, curvature and measured transfer loss, see
:class:`~pipeline.qaoa.angles.ClassAngles`) and ``angle_pilot_leases`` (one row per class
whose pilots a run is running now). A run that finds another holding a class's lease
waits, within a bounded time, for that run's finding instead of paying for pilots of its
own: across concurrent runs on one intake, one set of pilots per new class at a time.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.intake.leases import host_identity, process_alive
from pipeline.qaoa.angles import ClassAngles

log = logging.getLogger("qhopper.angles")
POLL_S = 0.1  # how often a waiting run looks for the finding it waits on

metadata = sa.MetaData()

angle_findings = sa.Table(
    "angle_findings",
    metadata,
    sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
    sa.Column("class_key", sa.String(300), nullable=False, index=True),
    sa.Column("gammas_json", sa.Text, nullable=False),
    sa.Column("betas_json", sa.Text, nullable=False),
    sa.Column("curvature_json", sa.Text, nullable=False),
    sa.Column("loss", sa.Float, nullable=True),  # None: not measured (one pilot)
    sa.Column("pilots", sa.Integer, nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

angle_pilot_leases = sa.Table(
    "angle_pilot_leases",
    metadata,
    sa.Column("class_key", sa.String(300), primary_key=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("taken_at", sa.DateTime, nullable=False),
    sa.Column("until", sa.DateTime, nullable=False),
    sa.Column("host", sa.String(255), nullable=False),  # the holder's host identity and
    sa.Column("pid", sa.Integer, nullable=False),  # process: a dead holder is overtaken
)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Findings:
    """The two tables on an engine (the intake's)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        try:
            metadata.create_all(engine)
        except sa.exc.DatabaseError:
            metadata.create_all(engine)  # another process created them in between

    def add(self, class_key: str, found: ClassAngles, pilots: int, run_id: str) -> None:
        with self.engine.begin() as tx:
            tx.execute(
                angle_findings.insert().values(
                    class_key=class_key,
                    gammas_json=json.dumps(found.gammas),
                    betas_json=json.dumps(found.betas),
                    curvature_json=json.dumps(found.curvature),
                    loss=found.loss if math.isfinite(found.loss) else None,
                    pilots=pilots,
                    run_id=run_id,
                    created_at=_now(),
                )
            )

    def latest(self, class_key: str, since: datetime | None = None) -> ClassAngles | None:
        """The class's newest finding (recorded at or after ``since``, when given)."""
        query = sa.select(angle_findings).where(angle_findings.c.class_key == class_key)
        if since is not None:
            query = query.where(angle_findings.c.created_at >= since)
        query = query.order_by(angle_findings.c.id.desc()).limit(1)
        with self.engine.connect() as connection:
            row = connection.execute(query).mappings().first()
        if row is None:
            return None
        return ClassAngles(
            tuple(json.loads(row["gammas_json"])),
            tuple(json.loads(row["betas_json"])),
            tuple(json.loads(row["curvature_json"])),
            math.inf if row["loss"] is None else row["loss"],
        )

    def take_lease(self, class_key: str, run_id: str, seconds: float) -> datetime | None:
        """Take the class's pilot lease for ``seconds``: None when this run holds it now,
        else since when to look for the holder's finding. A lease past its time, or whose
        holder is provably dead on this host, is taken over at once."""
        now = _now()
        mine = {
            "run_id": run_id,
            "taken_at": now,
            "until": now + timedelta(seconds=seconds),
            "host": host_identity(),
            "pid": os.getpid(),
        }
        try:
            with self.engine.begin() as tx:
                tx.execute(angle_pilot_leases.insert().values(class_key=class_key, **mine))
            return None
        except sa.exc.IntegrityError:
            pass
        holder = self._holder(class_key)
        if holder is None:  # released in between: its finding (if any) is the newest
            return datetime.min
        if holder.run_id == run_id:
            return None  # this run's own, from an earlier wave
        if holder.until >= now and not _dead(holder):
            return holder.taken_at
        lease = angle_pilot_leases.c
        with self.engine.begin() as tx:
            taken = tx.execute(
                angle_pilot_leases.update()
                .where(lease.class_key == class_key, lease.run_id == holder.run_id)
                .values(**mine)
            ).rowcount
        return None if taken else now  # another run took it over first: its pilots are new

    def release(self, class_key: str, run_id: str) -> None:
        lease = angle_pilot_leases.c
        with self.engine.begin() as tx:
            tx.execute(
                angle_pilot_leases.delete().where(
                    lease.class_key == class_key, lease.run_id == run_id
                )
            )

    def wait(self, class_key: str, since: datetime, timeout_s: float) -> ClassAngles | None:
        """The finding of the run that holds the class's lease, once it is recorded; None
        where there will be none to wait for (the holder released the lease without one, or
        died on this host) or not within ``timeout_s``: then this run pilots the class."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.latest(class_key, since)
            if found is not None:
                return found
            holder = self._holder(class_key)
            if holder is None:
                return self.latest(class_key, since)  # released: recorded just now, or none
            if _dead(holder) or time.monotonic() >= deadline:
                return None
            time.sleep(POLL_S)

    def _holder(self, class_key: str) -> _Lease | None:
        lease = angle_pilot_leases.c
        query = sa.select(lease.run_id, lease.taken_at, lease.until, lease.host, lease.pid)
        with self.engine.connect() as connection:
            row = connection.execute(query.where(lease.class_key == class_key)).first()
        return None if row is None else _Lease(*row)


@dataclass(frozen=True)
class _Lease:
    run_id: str
    taken_at: datetime
    until: datetime
    host: str
    pid: int


def _dead(holder: _Lease) -> bool:
    """Whether the lease's holder is certainly gone: a process of this host that no longer
    exists (one on another host is trusted until its lease runs out)."""
    return holder.host == host_identity() and not process_alive(holder.pid)
