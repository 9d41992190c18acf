"""The queue: submit, claim, renew, advance, release, and what is in it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.crash import fault_point
from pipeline.intake.claims import claimable, claimed, record_claims, take
from pipeline.intake.database import (
    check_connection,
    create_intake_engine,
    server_now,
    server_now_sql,
)
from pipeline.intake.enqueue import submit_specs
from pipeline.intake.journal import ResultJournal
from pipeline.intake.leases import dead_among, dead_local_owners, host_identity
from pipeline.intake.requeue import RequeueOutcome, RequeueSelection, requeue
from pipeline.intake.schema import (
    COMPILED,
    NO_LEASE,
    QUEUED,
    RUNNING,
    STATES,
    create_schema,
    problem_events,
    problems,
    record_events,
    update_held,
)
from pipeline.intake.types import ClaimedProblem, Move, SubmitOutcome
from pipeline.model import ProblemSpec
from pipeline.vocabulary import ACTIVE_STATES


class IntakeStore:
    """Durable queue state for problems, behind one small API.

    Every time it writes or compares (submission, claim, lease, event) is the database's
    clock, read in the transaction that uses it: clients' clocks may disagree.

    The result journal is ``store.journal`` (a :class:`ResultJournal`); ``begin_batch``,
    ``finish_batch``, ``unfinished_batches`` and ``abandon_batch`` here call its methods.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._dialect = engine.dialect.name
        self.journal = ResultJournal(engine)

    @classmethod
    def open(cls, url: str, create: bool = True) -> IntakeStore:
        """Validate ``url``, connect once and create the tables if missing.

        ``create=False`` is for commands that only read: a SQLite file that is not there is
        then a ConfigError, not a new empty queue. Raises ConfigError for an unsupported URL
        or a SQLite folder that does not exist, and ServiceUnavailable (within seconds) when
        the database cannot be reached or opened.
        """
        engine = create_intake_engine(url, create=create)
        try:
            check_connection(engine)
            store = cls(engine)
            store.create_schema()
        except BaseException:
            engine.dispose()
            raise
        return store

    def create_schema(self) -> None:
        create_schema(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # --- submission -------------------------------------------------------------------------
    def submit(
        self, specs: Sequence[tuple[ProblemSpec, str] | tuple[ProblemSpec, str, str | None]]
    ) -> list[SubmitOutcome]:
        """Enqueue every spec (with its source label) in one transaction; known keys are reused.

        An optional third element is the submitter's W3C trace id, stored with the problem
        (a known key keeps the trace id it was first submitted with).
        """
        return submit_specs(self.engine, self._dialect, specs)

    # --- claims and leases ------------------------------------------------------------------
    def claim(
        self,
        owner: str,
        limit: int,
        lease_seconds: float,
        only: Sequence[str] | None = None,
    ) -> list[ClaimedProblem]:
        """Atomically take up to ``limit`` claimable problems for ``owner`` (among ``only``).

        Claimable: queued, or active and not in a journalled batch (recovery settles those)
        with a lease that expired or a holder that is provably dead on this host. ``only``
        limits the claim to those ids: a synchronous solve takes its own problem.
        """
        with self.engine.begin() as tx:
            now = server_now(tx)
            chosen = claimable(tx, now, limit, only, lock=self._dialect == "postgresql")
            if not chosen:
                return []
            rows = take(tx, chosen, owner, now, lease_seconds)
            record_claims(tx, rows, owner, now)
        return claimed(rows, now)

    def pending(self) -> int:
        """How many problems a claim could take right now, in one query.

        Queued ones, and active ones outside any journalled batch whose lease lapsed or
        whose holder is a process of this host that no longer exists.
        """
        now = server_now_sql(self._dialect)
        active_unbatched = (problems.c.state.in_(ACTIVE_STATES), problems.c.batch_id.is_(None))
        nobody = sa.null().cast(sa.String)
        queued = sa.select(nobody, sa.null().cast(sa.Integer), sa.func.count()).where(
            problems.c.state == QUEUED
        )
        lapsed = sa.select(nobody, sa.null().cast(sa.Integer), sa.func.count()).where(
            *active_unbatched, problems.c.lease_expires_at < now
        )
        local = (
            sa.select(problems.c.lease_owner, problems.c.lease_pid, sa.func.count())
            .where(
                *active_unbatched,
                problems.c.lease_expires_at >= now,
                problems.c.lease_host == host_identity(),
                problems.c.lease_pid.is_not(None),
            )
            .group_by(problems.c.lease_owner, problems.c.lease_pid)
        )
        with self.engine.connect() as connection:
            rows = connection.execute(sa.union_all(queued, lapsed, local)).all()
        holders = [(owner, pid) for owner, pid, _ in rows if pid is not None]
        dead = set(dead_among(holders))
        return sum(int(n) for owner, pid, n in rows if pid is None or owner in dead)

    def dead_local_owners(self, now: datetime | None = None) -> list[str]:
        """Owners of unexpired leases whose holding process no longer exists on this host."""
        with self.engine.connect() as connection:
            return dead_local_owners(connection, now or server_now(connection))

    def release(self, owner: str, *, count_attempt: bool = False) -> int:
        """Give back what ``owner`` holds outside any journalled batch: queued again at once.

        A clean hand-back (Ctrl-C, SIGTERM, the run's own timeout) gives the claim's attempt
        back too, since nothing failed; ``count_attempt`` keeps it (the run raised). A holder
        that died keeps its attempts: its leases lapse and the next claim counts again.
        """
        attempts = problems.c.attempts if count_attempt else problems.c.attempts - 1
        detail = f"released by {owner}" + ("" if count_attempt else " (attempt not counted)")
        with self.engine.begin() as tx:
            now = server_now(tx)
            released = list(
                tx.execute(
                    problems.update()
                    .where(
                        problems.c.lease_owner == owner,
                        problems.c.state.in_(ACTIVE_STATES),
                        problems.c.batch_id.is_(None),
                    )
                    .values(state=QUEUED, attempts=attempts, **NO_LEASE, updated_at=now)
                    .returning(problems.c.id)
                ).scalars()
            )
            record_events(tx, released, QUEUED, now, detail)
        return len(released)

    def requeue(
        self, selection: RequeueSelection, by: str, dry_run: bool = False
    ) -> RequeueOutcome:
        """Failed problems back in the queue with a fresh attempt budget (see ``requeue``)."""
        return requeue(self.engine, selection, by, dry_run)

    def renew(self, owner: str, lease_seconds: float) -> int:
        """Extend the leases ``owner`` holds; returns how many of its problems now have a
        lease running at least ``0.9 * lease_seconds`` past the database's now.

        Leases renewed within the last tenth of a lease are left as they are: a run that
        renews after every batch then rewrites its rows a few times per lease, not once
        per batch (with 100,000 claims, per-batch rewrites made a run quadratic). The count
        is read back, not assumed: a problem whose lease did not move is not counted.
        """
        mine = (problems.c.lease_owner == owner, problems.c.state.in_(ACTIVE_STATES))
        with self.engine.begin() as tx:
            now = server_now(tx)
            fresh_until = now + timedelta(seconds=0.9 * lease_seconds)
            stale = sa.or_(
                problems.c.lease_expires_at.is_(None), problems.c.lease_expires_at < fresh_until
            )
            tx.execute(
                problems.update()
                .where(*mine, stale)
                .values(lease_expires_at=now + timedelta(seconds=lease_seconds), updated_at=now)
            )
            held = tx.execute(
                sa.select(sa.func.count()).where(*mine, problems.c.lease_expires_at >= fresh_until)
            ).scalar_one()
        return int(held)

    def advance(
        self,
        owner: str,
        problem_ids: Iterable[str],
        state: str | Sequence[str],
        detail: str | None = None,
    ) -> int:
        """Move held problems to a later active state (compiled, submitted, running).

        Several states in order record an event for each (a batch is compiled, submitted
        and running within milliseconds at dispatch).
        """
        states = (state,) if isinstance(state, str) else tuple(state)
        return self.advance_many(owner, [Move(list(problem_ids), states, detail)])

    def advance_many(self, owner: str, moves: Sequence[Move]) -> int:
        """Several :meth:`advance` calls in one transaction: a run dispatching many batches
        at once pays one commit, not one per batch."""
        for move in moves:
            if not move.states or any(s not in ACTIVE_STATES for s in move.states):
                raise ValueError(f"advance() moves between active states, not to {move.states!r}")
        moved = 0
        with self.engine.begin() as tx:
            now = server_now(tx)
            for move in moves:
                values = {"state": move.states[-1], "updated_at": now}
                taken = update_held(tx, move.problem_ids, owner, values)
                moved += len(taken)
                for state in move.states:  # the history records what moved, not what was asked
                    record_events(tx, taken, state, now, move.detail)
        for move in moves:
            if COMPILED in move.states:
                fault_point("compile")
            if RUNNING in move.states:
                fault_point("execute")
        return moved

    # --- queries ----------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(problems.c.state, sa.func.count()).group_by(problems.c.state)
            ).all()
        counted: dict[str, int] = {str(state): 0 for state in STATES}
        counted.update({state: int(count) for state, count in rows})
        return counted

    def get(self, problem_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as connection:
            row = (
                connection.execute(sa.select(problems).where(problems.c.id == problem_id))
                .mappings()
                .first()
            )
            if row is None:
                return None
            events = (
                connection.execute(
                    sa.select(problem_events.c.state, problem_events.c.at, problem_events.c.detail)
                    .where(problem_events.c.problem_id == problem_id)
                    .order_by(problem_events.c.id)
                )
                .mappings()
                .all()
            )
        found = dict(row)
        found["events"] = [dict(e) for e in events]
        return found
