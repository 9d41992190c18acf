"""The steps of a claim, each inside the caller's transaction: which problems are claimable,
taking them under a lease, and recording that they were taken.

Why apart from the queue: a claim is the one concurrency-critical write (two runs must never
hold one problem), so :meth:`IntakeStore.claim` keeps the transaction and its order in
view (read the clock, choose, take, record) and these say how each step is done.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from pipeline.intake.leases import dead_local_owners, host_identity
from pipeline.intake.schema import (
    CLAIMED,
    ID_SLICE,
    QUEUED,
    chunks,
    claim_candidates,
    problems,
    record_events,
)
from pipeline.intake.types import ClaimedProblem
from pipeline.vocabulary import ACTIVE_STATES


def claimable(
    tx: sa.Connection, now: datetime, limit: int, only: Sequence[str] | None, lock: bool
) -> list[str]:
    """Up to ``limit`` ids in claim order: queued problems, and lapsed claims (lease
    expired, or holder provably dead on this host) not in a journalled batch. Two indexed
    reads (one OR over both would scan and sort the whole table), merged in claim order;
    ``lock``: their rows locked against other claims (PostgreSQL)."""
    dead = dead_local_owners(tx, now)
    lapsed = problems.c.lease_expires_at < now
    if dead:
        lapsed = sa.or_(lapsed, problems.c.lease_owner.in_(dead))
    unbatched_lapsed = sa.and_(
        problems.c.state.in_(ACTIVE_STATES), problems.c.batch_id.is_(None), lapsed
    )
    found = [
        *claim_candidates(tx, problems.c.state == QUEUED, limit, only, lock),
        *claim_candidates(tx, unbatched_lapsed, limit, only, lock),
    ]
    found.sort(key=lambda r: (-r.priority, r.submitted_at, r.id))
    return [r.id for r in found[:limit]]


def take(
    tx: sa.Connection,
    ids: list[str],
    owner: str,
    now: datetime,
    lease_seconds: float,
) -> list[Any]:
    """Claim ``ids`` for ``owner`` under a lease from ``now``: a new attempt and a new epoch
    (the fencing token) each. The claimed rows, as the database returned them."""
    statement = (
        problems.update()
        .where(problems.c.id.in_(sa.bindparam("ids", expanding=True)))
        .values(
            state=CLAIMED,
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            lease_host=host_identity(),
            lease_pid=os.getpid(),
            attempts=problems.c.attempts + 1,
            claim_epoch=problems.c.claim_epoch + 1,
            claimed_at=now,
            updated_at=now,
            batch_id=None,
        )
        .returning(
            problems.c.id,
            problems.c.key,
            problems.c.spec_json,
            problems.c.input_hash,
            problems.c.attempts,
            problems.c.submitted_at,
            problems.c.claim_epoch,
            problems.c.trace_id,
            problems.c.supersedes,
        )
    )
    return [row for part in chunks(ids, ID_SLICE) for row in tx.execute(statement, {"ids": part})]


def record_claims(tx: sa.Connection, rows: Sequence[Any], owner: str, now: datetime) -> None:
    """One ``claimed`` event per problem taken, naming the owner and the attempt."""
    attempt = sa.literal(f"owner={owner} attempt=") + sa.cast(problems.c.attempts, sa.String)
    record_events(tx, [r.id for r in rows], CLAIMED, now, attempt)


def claimed(rows: Sequence[Any], now: datetime) -> list[ClaimedProblem]:
    """The rows taken, as the run holds them, by id."""
    held = [
        ClaimedProblem(
            r.id,
            r.key,
            r.spec_json,
            r.input_hash,
            r.attempts,
            r.submitted_at,
            now,
            r.claim_epoch,
            r.trace_id,
            r.supersedes,
        )
        for r in rows
    ]
    held.sort(key=lambda c: c.id)
    return held
