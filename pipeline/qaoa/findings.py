"""What a class's pilots found, kept for every run, and which run is finding it now.

Four tables beside the angle library, in the intake database: ``angle_findings`` (one row
per set of pilots: their mean optimum, curvature and measured transfer loss, see
:class:`~pipeline.qaoa.angles.ClassAngles`), ``angle_transfer_checks`` (one row per class a
run followed with steps: how many problems measured what following lost, and their mean,
see :class:`~pipeline.qaoa.angles.TransferCheck`), ``angle_models`` (one row per class a
run's followers fitted a model of their optima on: :mod:`pipeline.qaoa.angle_model`) and
``angle_pilot_leases`` (one row per class whose pilots a run is running now). A run that finds another holding a class's lease
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
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.intake.database import server_now
from pipeline.intake.leases import host_identity, process_alive
from pipeline.intake.schema import problems
from pipeline.qaoa.angle_model import AngleModel
from pipeline.qaoa.angles import ClassAngles, TransferCheck
from pipeline.vocabulary import ACTIVE_STATES

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

angle_transfer_checks = sa.Table(
    "angle_transfer_checks",
    metadata,
    sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
    sa.Column("class_key", sa.String(300), nullable=False, index=True),
    sa.Column("problems", sa.Integer, nullable=False),
    sa.Column("loss", sa.Float, nullable=False),  # their mean (TransferCheck)
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

angle_models = sa.Table(
    "angle_models",
    metadata,
    sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
    sa.Column("class_key", sa.String(300), nullable=False, index=True),
    sa.Column("model_json", sa.Text, nullable=False),  # AngleModel.to_json
    sa.Column("problems", sa.Integer, nullable=False),
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
                    created_at=server_now(tx),
                )
            )

    def add_check(self, class_key: str, check: TransferCheck, run_id: str) -> None:
        with self.engine.begin() as tx:
            tx.execute(
                angle_transfer_checks.insert().values(
                    class_key=class_key,
                    problems=check.problems,
                    loss=check.loss,
                    run_id=run_id,
                    created_at=server_now(tx),
                )
            )

    def add_model(self, class_key: str, model: AngleModel, run_id: str) -> None:
        with self.engine.begin() as tx:
            tx.execute(
                angle_models.insert().values(
                    class_key=class_key,
                    model_json=model.to_json(),
                    problems=model.problems,
                    run_id=run_id,
                    created_at=server_now(tx),
                )
            )

    def model(self, class_key: str) -> AngleModel | None:
        """The class's newest angle model; None where there is none or it is unreadable
        (logged: the class then follows its pilots as before, at their price)."""
        models = angle_models.c
        query = sa.select(models.model_json).where(models.class_key == class_key)
        with self.engine.connect() as connection:
            text = connection.execute(query.order_by(models.id.desc()).limit(1)).scalar()
        if text is None:
            return None
        try:
            return AngleModel.from_json(text)
        except ValueError as exc:
            log.warning("class %s: its angle model is ignored: %s", class_key, exc)
            return None

    def checked(self, class_key: str) -> TransferCheck | None:
        """Every check of the class together: the problems that measured and their mean loss."""
        checks = angle_transfer_checks.c
        query = sa.select(
            sa.func.sum(checks.problems), sa.func.sum(checks.problems * checks.loss)
        ).where(checks.class_key == class_key)
        with self.engine.connect() as connection:
            count, total = connection.execute(query).one()
        if not count:
            return None
        return TransferCheck(int(count), float(total) / int(count))

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
        else since when to look for the holder's finding. A lease whose holder is gone
        (:func:`_gone`) is taken over at once. Times are the database's, as the intake's."""
        with self.engine.begin() as tx:
            now = server_now(tx)
            holder = _holder(tx, class_key)
            if holder is not None and holder.run_id != run_id and not _gone(tx, holder, now):
                return holder.taken_at
            mine = {
                "run_id": run_id,
                "taken_at": now,
                "until": now + timedelta(seconds=seconds),
                "host": host_identity(),
                "pid": os.getpid(),
            }
            lease = angle_pilot_leases.c
            if holder is not None:  # its own, or a gone holder's: only if still theirs
                taken = tx.execute(
                    angle_pilot_leases.update()
                    .where(lease.class_key == class_key, lease.run_id == holder.run_id)
                    .values(**mine)
                ).rowcount
                return None if taken else now  # another run took it over first
        try:
            with self.engine.begin() as tx:
                tx.execute(angle_pilot_leases.insert().values(class_key=class_key, **mine))
            return None
        except sa.exc.IntegrityError:
            return now  # another run took it in between: its finding will be newer

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
        is gone) or not within ``timeout_s``: then this run pilots the class."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.latest(class_key, since)
            if found is not None:
                return found
            with self.engine.connect() as connection:
                holder = _holder(connection, class_key)
                gone = holder is not None and _gone(connection, holder, server_now(connection))
            if holder is None:
                return self.latest(class_key, since)  # released: recorded just now, or none
            if gone or time.monotonic() >= deadline:
                return None
            time.sleep(POLL_S)


@dataclass(frozen=True)
class _Lease:
    run_id: str
    taken_at: datetime
    until: datetime
    host: str
    pid: int


def _holder(connection: sa.Connection, class_key: str) -> _Lease | None:
    lease = angle_pilot_leases.c
    query = sa.select(lease.run_id, lease.taken_at, lease.until, lease.host, lease.pid)
    row = connection.execute(query.where(lease.class_key == class_key)).first()
    return None if row is None else _Lease(*row)


def _gone(connection: sa.Connection, holder: _Lease, now: datetime) -> bool:
    """Whether the lease's holder will record no finding: its lease ran out, its process is
    gone from this host, or it holds no live claim any more (a run frozen or dead on
    another host stops renewing its claims: the intake's own sign of a lost run)."""
    if holder.until < now:
        return True
    if holder.host == host_identity() and not process_alive(holder.pid):
        return True
    live = sa.select(problems.c.id).where(
        problems.c.lease_owner == holder.run_id,
        problems.c.state.in_(ACTIVE_STATES),
        problems.c.lease_expires_at >= now,
    )
    return connection.execute(live.limit(1)).first() is None
