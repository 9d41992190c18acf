"""The result journal: which batch's file is being written for which problems.

A batch is recorded as ``writing`` before its result file is written and ``written`` once
its problems are final, so recovery after a crash can roll forward (file present) or
abandon the batch (file absent) and every problem ends with exactly one result row. A
batch takes only the problems its run still holds, and a problem in a journalled batch is
settled by recovery, never re-claimed behind the journal's back.

Fencing: each problem's claim epoch is recorded when it joins a batch, and
``finish_batch`` finalises only the problems whose epoch is still that one, in the same
transaction that marks the batch written. A writer that froze past its lease (its batch
abandoned, its problems claimed again) learns it from :class:`StaleBatch` and must not
publish its file; see ``finish_batch``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.errors import QhopperError
from pipeline.intake.database import server_now
from pipeline.intake.leases import dead_local_owners
from pipeline.intake.records import ProblemOutcome
from pipeline.intake.schema import (
    ACTIVE_STATES,
    NO_LEASE,
    batch_problems,
    chunks,
    problem_events,
    problems,
    result_batches,
    update_held,
)

WRITING, WRITTEN = "writing", "written"


class StaleBatch(QhopperError):
    """The batch can finalise none of its problems: it was abandoned, or every one of them
    was claimed again since it was journalled. Its result file must not become visible."""


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
                for chunk in chunks(sorted(held)):  # each problem's epoch as it joins
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
                        state=WRITING,
                        result_path=result_path,
                        created_at=now,
                    )
                )
        return [pid for pid in problem_ids if pid in held]

    def finish_batch(self, batch_id: str, outcomes: Sequence[ProblemOutcome]) -> list[str]:
        """Mark the batch's problems final; the ids it finalised, in the order given.

        Fenced: a problem is finalised only while it is still in this batch with the claim
        epoch it had when it joined, checked by the same transaction that writes its final
        state and marks the batch ``written``. Raises :class:`StaleBatch` (and changes
        nothing) when the batch is not journalled any more or none of ``outcomes`` can be
        finalised. A result writer calls this between writing its file under a temporary
        name and renaming it into place, and renames only on success.
        """
        with self.engine.begin() as tx:
            now = server_now(tx)
            path = tx.execute(
                sa.select(result_batches.c.result_path).where(
                    result_batches.c.batch_id == batch_id, result_batches.c.state == WRITING
                )
            ).scalar_one_or_none()
            if path is None:
                raise StaleBatch(f"batch {batch_id} is not being written (abandoned or finished)")
            current = sa.exists().where(
                batch_problems.c.batch_id == batch_id,
                batch_problems.c.problem_id == problems.c.id,
                batch_problems.c.epoch == problems.c.claim_epoch,
            )
            # One UPDATE per distinct outcome (a batch has one or a few), not one per problem.
            groups: dict[tuple[Any, ...], list[str]] = defaultdict(list)
            for o in outcomes:
                groups[(o.status, o.route, o.solver_path, o.fallback_reason)].append(o.problem_id)
            finalised: set[str] = set()
            for (status, route, solver_path, reason), ids in groups.items():
                for chunk in chunks(ids):
                    finalised.update(
                        tx.execute(
                            problems.update()
                            .where(
                                problems.c.id.in_(chunk),
                                problems.c.batch_id == batch_id,
                                current,
                            )
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
            if outcomes and not finalised:
                raise StaleBatch(
                    f"batch {batch_id}: none of its {len(outcomes)} problems is still held "
                    "under the epoch it was journalled with"
                )
            done = [o for o in outcomes if o.problem_id in finalised]
            if done:
                tx.execute(
                    problem_events.insert(),
                    [
                        {
                            "problem_id": o.problem_id,
                            "state": o.status,
                            "at": now,
                            "detail": f"batch={batch_id}",
                        }
                        for o in done
                    ],
                )
            tx.execute(
                result_batches.update()
                .where(result_batches.c.batch_id == batch_id)
                .values(state=WRITTEN)
            )
        return [o.problem_id for o in done]

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
                    result_batches.c.state == WRITING, ~sa.exists(held)
                )
            ).all()
        return [(r.batch_id, r.result_path) for r in rows]

    def is_written(self, batch_id: str) -> bool:
        """Whether the batch committed (its problems are final): its file may be published."""
        with self.engine.connect() as connection:
            state = connection.execute(
                sa.select(result_batches.c.state).where(result_batches.c.batch_id == batch_id)
            ).scalar_one_or_none()
        return state == WRITTEN

    def abandon_batch(self, batch_id: str) -> None:
        """Forget a batch whose file never landed: its problems stay claimable."""
        with self.engine.begin() as tx:
            tx.execute(
                problems.update()
                .where(problems.c.batch_id == batch_id, problems.c.state.in_(ACTIVE_STATES))
                .values(batch_id=None)
            )
            tx.execute(batch_problems.delete().where(batch_problems.c.batch_id == batch_id))
            tx.execute(result_batches.delete().where(result_batches.c.batch_id == batch_id))
