"""The result journal: which batch's file is being written for which problems.

A batch is recorded as ``writing`` before its result file is written and ``written`` once
its problems are final, so recovery after a crash can roll forward (file present) or
abandon the batch (file absent) and every problem ends with exactly one result row. A
batch takes only the problems its run still holds, and a problem in a journalled batch is
settled by recovery, never re-claimed behind the journal's back.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.intake.leases import dead_local_owners
from pipeline.intake.records import ProblemOutcome
from pipeline.intake.schema import (
    ACTIVE_STATES,
    chunks,
    problem_events,
    problems,
    result_batches,
    update_held,
    utcnow,
)

WRITING, WRITTEN = "writing", "written"


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
        now = utcnow()
        values: dict[str, Any] = {"batch_id": batch_id}
        if lease_seconds is not None:
            values |= {
                "lease_expires_at": now + timedelta(seconds=lease_seconds),
                "updated_at": now,
            }
        with self.engine.begin() as tx:
            unbatched = problems.c.batch_id.is_(None)
            held = set(update_held(tx, list(problem_ids), run_id, values, unbatched))
            if held:
                tx.execute(
                    result_batches.insert().values(
                        batch_id=batch_id,
                        run_id=run_id,
                        state=WRITING,
                        result_path=result_path,
                        created_at=now,
                    )
                )
        return [pid for pid in problem_ids if pid in held]

    def finish_batch(self, batch_id: str, outcomes: Sequence[ProblemOutcome]) -> None:
        """Mark the batch's problems final, after its result file is in place."""
        now = utcnow()
        with self.engine.begin() as tx:
            path = tx.execute(
                sa.select(result_batches.c.result_path).where(result_batches.c.batch_id == batch_id)
            ).scalar_one()
            # One UPDATE per distinct outcome (a batch has one or a few), not one per problem.
            groups: dict[tuple[Any, ...], list[str]] = defaultdict(list)
            for o in outcomes:
                groups[(o.status, o.route, o.solver_path, o.fallback_reason)].append(o.problem_id)
            for (status, route, solver_path, reason), ids in groups.items():
                for chunk in chunks(ids):
                    tx.execute(
                        problems.update()
                        .where(problems.c.id.in_(chunk), problems.c.batch_id == batch_id)
                        .values(
                            state=status,
                            route=route,
                            solver_path=solver_path,
                            result_path=path,
                            last_error=reason,
                            lease_owner=None,
                            lease_expires_at=None,
                            lease_host=None,
                            lease_pid=None,
                            updated_at=now,
                        )
                    )
            if outcomes:
                tx.execute(
                    problem_events.insert(),
                    [
                        {
                            "problem_id": o.problem_id,
                            "state": o.status,
                            "at": now,
                            "detail": f"batch={batch_id}",
                        }
                        for o in outcomes
                    ],
                )
            tx.execute(
                result_batches.update()
                .where(result_batches.c.batch_id == batch_id)
                .values(state=WRITTEN)
            )

    def unfinished_batches(self) -> list[tuple[str, str]]:
        """Batches being written whose holders are gone: leases expired or processes dead."""
        now = utcnow()
        with self.engine.begin() as tx:
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
                    result_batches.c.state == WRITING, ~sa.exists(held)
                )
            ).all()
        return [(r.batch_id, r.result_path) for r in rows]

    def abandon_batch(self, batch_id: str) -> None:
        """Forget a batch whose file never landed: its problems stay claimable."""
        with self.engine.begin() as tx:
            tx.execute(
                problems.update()
                .where(problems.c.batch_id == batch_id, problems.c.state.in_(ACTIVE_STATES))
                .values(batch_id=None)
            )
            tx.execute(result_batches.delete().where(result_batches.c.batch_id == batch_id))
