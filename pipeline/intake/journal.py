"""The result journal: which batch's file is being written for which problems, and what
became of it.

A batch is journalled ``writing`` before its files are staged, and leaves that state once,
by one conditional UPDATE: to ``written`` (committed: its problems are final, its staged
files must be published) or to ``abandoned`` (its problems are claimable again, its staged
files must be deleted and never published). Writer and recoveries may race to decide; the
first decision stands and every later one returns it, so each party does to the files
what the batch's one decision says. An abandoned batch keeps its row as a tombstone: a
writer that resumes late learns that its batch is gone, not that it never existed.

A batch takes only the problems its run still holds, and a problem in a journalled batch is
settled by recovery, never re-claimed behind the journal's back. Fencing: each problem's
claim epoch is recorded when it joins a batch, and a batch commits only when every one of
its problems still has that epoch; otherwise it is abandoned, since its files would
answer for problems another run now holds.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pipeline.intake.database import server_now
from pipeline.intake.leases import dead_local_owners
from pipeline.intake.schema import (
    ID_SLICE,
    NO_LEASE,
    batch_problems,
    chunks,
    problems,
    record_events,
    result_batches,
    update_held,
)
from pipeline.intake.types import ProblemOutcome
from pipeline.vocabulary import ACTIVE_STATES


class BatchState(StrEnum):
    """A journalled batch: being written, or decided once and for all."""

    WRITING = "writing"
    WRITTEN = "written"
    ABANDONED = "abandoned"


class _Torn(Exception):
    """A batch some of whose problems moved on: it can never commit as its files say."""


class ResultJournal:
    """The journal half of the intake store (``IntakeStore.journal``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def begin_batch(
        self,
        run_id: str,
        batch_id: str,
        problem_ids: Sequence[str],
        result_path: str,
        lease_seconds: float | None = None,
    ) -> list[str]:
        """Journal that ``batch_id``'s result file is about to be written for these problems.

        Fenced: only problems ``run_id`` still holds (active, its lease, in no other batch)
        join the batch; their ids are returned, in the order given, and the caller writes
        rows for those alone. Nothing is journalled when none is held. ``lease_seconds``
        extends the leases, so the write has a whole lease to land.
        """
        with self.engine.begin() as tx:
            now = server_now(tx)
            values: dict[str, Any] = {"batch_id": batch_id}
            if lease_seconds is not None:
                values |= {
                    "lease_expires_at": now + timedelta(seconds=lease_seconds),
                    "updated_at": now,
                }
            unbatched = problems.c.batch_id.is_(None)
            held = set(update_held(tx, list(problem_ids), run_id, values, unbatched))
            if held:
                for chunk in chunks(sorted(held), ID_SLICE):  # each problem's epoch as it joins
                    tx.execute(
                        batch_problems.insert().from_select(
                            ["batch_id", "problem_id", "epoch"],
                            sa.select(
                                sa.literal(batch_id), problems.c.id, problems.c.claim_epoch
                            ).where(problems.c.id.in_(chunk)),
                        )
                    )
                tx.execute(
                    result_batches.insert().values(
                        batch_id=batch_id,
                        run_id=run_id,
                        state=BatchState.WRITING,
                        result_path=result_path,
                        created_at=now,
                    )
                )
        return [pid for pid in problem_ids if pid in held]

    def finish_batch(self, batch_id: str, outcomes: Sequence[ProblemOutcome]) -> BatchState:
        """Commit the batch: its problems final as ``outcomes`` say, the batch ``written``.

        Returns the batch's decided state: ``written`` by this call or by an earlier one (the
        same files: only its writer stages them), or ``abandoned`` when a recovery decided
        first or some problem's epoch moved since it joined (then nothing is finalised and
        the batch is abandoned now). Call it with the batch's files staged whole; publish
        them only when it returns ``written``.
        """
        try:
            with self.engine.begin() as tx:
                if not _decide(tx, batch_id, BatchState.WRITTEN):
                    return _state(tx, batch_id)
                _finalise(tx, batch_id, outcomes, server_now(tx))
        except _Torn:
            return self.abandon_batch(batch_id)
        return BatchState.WRITTEN

    def unfinished_batches(self) -> list[tuple[str, str]]:
        """Batches being written whose holders are gone: leases expired or processes dead."""
        with self.engine.begin() as tx:
            now = server_now(tx)
            dead = dead_local_owners(tx, now)
            conditions = [
                problems.c.batch_id == result_batches.c.batch_id,
                problems.c.state.in_(ACTIVE_STATES),
                problems.c.lease_expires_at >= now,
            ]
            if dead:
                conditions.append(problems.c.lease_owner.not_in(dead))
            held = sa.select(problems.c.id).where(*conditions)
            rows = tx.execute(
                sa.select(result_batches.c.batch_id, result_batches.c.result_path).where(
                    result_batches.c.state == BatchState.WRITING, ~sa.exists(held)
                )
            ).all()
        return [(r.batch_id, r.result_path) for r in rows]

    def batch_states(self, batch_ids: Sequence[str]) -> dict[str, BatchState]:
        """The journalled state of each of these batches (a batch not journalled is absent)."""
        found: dict[str, BatchState] = {}
        with self.engine.connect() as connection:
            for chunk in chunks(list(batch_ids)):
                rows = connection.execute(
                    sa.select(result_batches.c.batch_id, result_batches.c.state).where(
                        result_batches.c.batch_id.in_(chunk)
                    )
                )
                found |= {r.batch_id: BatchState(r.state) for r in rows}
        return found

    def abandon_batch(self, batch_id: str) -> BatchState:
        """Abandon a batch still being written: its problems claimable again, the batch a
        tombstone. Returns the decided state: ``abandoned``, or ``written`` when its writer
        (or another recovery) committed it first; then its files must be published."""
        with self.engine.begin() as tx:
            if not _decide(tx, batch_id, BatchState.ABANDONED):
                return _state(tx, batch_id)
            tx.execute(
                problems.update()
                .where(problems.c.batch_id == batch_id, problems.c.state.in_(ACTIVE_STATES))
                .values(batch_id=None)
            )
            tx.execute(batch_problems.delete().where(batch_problems.c.batch_id == batch_id))
        return BatchState.ABANDONED


def _decide(tx: Connection, batch_id: str, to: BatchState) -> bool:
    """Move the batch from ``writing`` to ``to``; False when someone decided first.

    One conditional UPDATE: SQLite runs it inside BEGIN IMMEDIATE, PostgreSQL re-checks the
    condition after waiting for a concurrent decider's row lock, so exactly one wins.
    """
    moved: int = tx.execute(
        result_batches.update()
        .where(result_batches.c.batch_id == batch_id, result_batches.c.state == BatchState.WRITING)
        .values(state=to)
    ).rowcount
    return moved == 1


def _state(tx: Connection, batch_id: str) -> BatchState:
    """The batch's state; a batch with no row (abandoned by a version that deleted its row,
    or never journalled) counts as abandoned: nobody may publish its files."""
    state = tx.execute(
        sa.select(result_batches.c.state).where(result_batches.c.batch_id == batch_id)
    ).scalar_one_or_none()
    return BatchState.ABANDONED if state is None else BatchState(state)


def _finalise(
    tx: Connection, batch_id: str, outcomes: Sequence[ProblemOutcome], now: datetime
) -> None:
    """Write every problem of the batch its final state; :class:`_Torn` (rolling the whole
    commit back) unless each one is still in the batch under the epoch it joined with."""
    path = tx.execute(
        sa.select(result_batches.c.result_path).where(result_batches.c.batch_id == batch_id)
    ).scalar_one()
    members = set(
        tx.execute(
            sa.select(batch_problems.c.problem_id).where(batch_problems.c.batch_id == batch_id)
        ).scalars()
    )
    current = sa.exists().where(
        batch_problems.c.batch_id == batch_id,
        batch_problems.c.problem_id == problems.c.id,
        batch_problems.c.epoch == problems.c.claim_epoch,
    )
    done = [o for o in outcomes if o.problem_id in members]
    # One UPDATE per distinct outcome (a batch has one or a few), not one per problem.
    groups: dict[tuple[Any, ...], list[str]] = defaultdict(list)
    for o in done:
        groups[(o.status, o.route, o.solver_path, o.fallback_reason)].append(o.problem_id)
    finalised: set[str] = set()
    for (status, route, solver_path, reason), ids in groups.items():
        for chunk in chunks(ids, ID_SLICE):
            finalised.update(
                tx.execute(
                    problems.update()
                    .where(problems.c.id.in_(chunk), problems.c.batch_id == batch_id, current)
                    .values(
                        state=status,
                        route=route,
                        solver_path=solver_path,
                        result_path=path,
                        last_error=reason,
                        **NO_LEASE,
                        updated_at=now,
                    )
                    .returning(problems.c.id)
                ).scalars()
            )
    if not members or finalised != members:
        raise _Torn(batch_id)
    for (status, _, _, _), ids in groups.items():
        record_events(tx, ids, status, now, f"batch={batch_id}")
