"""The intake's tables and state names, and the few statements every part of it shares."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pipeline.vocabulary import FINAL_STATES, State

# The lifecycle's states by their short names, as the intake's statements use them.
QUEUED, CLAIMED, COMPILED, SUBMITTED, RUNNING = (
    State.QUEUED,
    State.CLAIMED,
    State.COMPILED,
    State.SUBMITTED,
    State.RUNNING,
)
COMPLETED, DEGRADED, FAILED = State.COMPLETED, State.DEGRADED, State.FAILED
STATES = tuple(State)

metadata = sa.MetaData()

problems = sa.Table(
    "problems",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("key", sa.String(300), nullable=False, unique=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("n_variables", sa.Integer, nullable=False),
    sa.Column("tenant", sa.String(100), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("deadline", sa.DateTime, nullable=True),
    sa.Column("spec_json", sa.Text, nullable=False),
    sa.Column("input_hash", sa.String(64), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    # The fencing token: one more at every claim. A batch records the epoch of each of its
    # problems and can finalise a problem only while that epoch is still current.
    sa.Column("claim_epoch", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Column("lease_owner", sa.String(60), nullable=True),
    sa.Column("lease_expires_at", sa.DateTime, nullable=True),
    # Where the holder runs: a host identity and a process id, so that a claim whose
    # holder is provably dead on this host can be taken over without waiting for the lease.
    sa.Column("lease_host", sa.String(255), nullable=True),
    sa.Column("lease_pid", sa.Integer, nullable=True),
    sa.Column("batch_id", sa.String(40), nullable=True),
    sa.Column("route", sa.String(20), nullable=True),
    sa.Column("solver_path", sa.String(20), nullable=True),
    sa.Column("result_path", sa.Text, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("submitted_at", sa.DateTime, nullable=False),
    sa.Column("claimed_at", sa.DateTime, nullable=True),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    # The caller's W3C trace id (32 hex digits), when it sent one: carried into its result row.
    sa.Column("trace_id", sa.String(32), nullable=True),
    # A requeued problem: the batch of the answer its next one replaces (its row says so).
    sa.Column("supersedes", sa.String(40), nullable=True),
)
# The claim's order, so a claim reads its next rows off an index instead of sorting every
# queued problem (a claim on a million-problem queue sorted all of them). It is the only
# index on ``state``: beside an older (state, priority, submitted_at) index, PostgreSQL
# with stale statistics (no ANALYZE yet, autovacuum off) chose that one and sorted every
# queued row on each claim, 0.6 s a claim at a million queued.
OLD_STATE_INDEX = "ix_problems_state_priority"
CLAIM_ORDER_INDEX = sa.Index(
    "ix_problems_claim_order",
    problems.c.state,
    problems.c.priority.desc(),
    problems.c.submitted_at,
    problems.c.id,
)

problem_events = sa.Table(
    "problem_events",
    metadata,
    sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
    sa.Column("problem_id", sa.String(40), nullable=False, index=True),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("at", sa.DateTime, nullable=False),
    sa.Column("detail", sa.Text, nullable=True),
)

result_batches = sa.Table(
    "result_batches",
    metadata,
    sa.Column("batch_id", sa.String(40), primary_key=True),
    sa.Column("run_id", sa.String(40), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),  # writing | written
    sa.Column("result_path", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

# The problems of each journalled batch, with the claim epoch each had when it joined.
batch_problems = sa.Table(
    "result_batch_problems",
    metadata,
    sa.Column("batch_id", sa.String(40), primary_key=True),
    sa.Column("problem_id", sa.String(40), primary_key=True),
    sa.Column("epoch", sa.Integer, nullable=False),
)


# A problem nobody holds: what finishing or releasing it writes over its lease.
NO_LEASE: dict[str, None] = {
    "lease_owner": None,
    "lease_expires_at": None,
    "lease_host": None,
    "lease_pid": None,
}


def create_schema(engine: Engine) -> None:
    """Create what is missing: the tables, and columns added since a database was made."""
    try:
        metadata.create_all(engine)
    except sa.exc.DatabaseError:
        # Another process created the tables between our check and our CREATE.
        metadata.create_all(engine)
    with contextlib.suppress(sa.exc.DatabaseError):  # else another process made it first
        CLAIM_ORDER_INDEX.create(engine, checkfirst=True)  # databases made before it
    if any(i["name"] == OLD_STATE_INDEX for i in sa.inspect(engine).get_indexes("problems")):
        with contextlib.suppress(sa.exc.DatabaseError), engine.begin() as tx:
            tx.execute(sa.text(f"DROP INDEX IF EXISTS {OLD_STATE_INDEX}"))
    columns = {c["name"] for c in sa.inspect(engine).get_columns("problems")}
    added = {
        "claim_epoch": "INTEGER NOT NULL DEFAULT 0",
        "trace_id": "VARCHAR(32)",
        "supersedes": "VARCHAR(40)",
    }
    for name, definition in added.items():
        if name in columns:
            continue
        try:
            with engine.begin() as tx:
                tx.exec_driver_sql(f"ALTER TABLE problems ADD COLUMN {name} {definition}")
        except sa.exc.DatabaseError:
            pass  # another process added it first


def utcnow() -> datetime:
    """Naive UTC: stored the same way by SQLite and PostgreSQL."""
    return datetime.now(UTC).replace(tzinfo=None)


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


# Ids one ``IN (...)`` list binds: within SQLite's 32,766 parameters and PostgreSQL's 65,535
# with room for the statement's own, and few statements for a run moving thousands at once.
ID_SLICE = 10_000


def chunks(items: list[Any], size: int = 500) -> Iterator[list[Any]]:
    """Slices small enough for any database's parameter limit (500 rows of a dozen columns;
    ``ID_SLICE`` for lists of ids)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def is_active() -> sa.ColumnElement[bool]:
    """``state`` is active, written so that no index on ``state`` can serve it.

    Beside ``id IN (...)``, SQLite would otherwise pick the state index (it guesses ten
    rows per value) and scan every claimed problem, once per batch: quadratic at scale.
    """
    return problems.c.state.not_in((QUEUED, *FINAL_STATES))


def update_held(
    tx: Connection,
    problem_ids: list[str],
    owner: str,
    values: dict[str, Any],
    *also: sa.ColumnElement[bool],
) -> list[str]:
    """Update the problems among ``problem_ids`` that ``owner`` holds (and match ``also``);
    their ids. In chunks, so no statement outgrows the database's parameter limit."""
    taken: list[str] = []
    for chunk in chunks(problem_ids, ID_SLICE):
        taken += (
            tx.execute(
                problems.update()
                .where(
                    problems.c.id.in_(chunk), problems.c.lease_owner == owner, is_active(), *also
                )
                .values(**values)
                .returning(problems.c.id)
            )
            .scalars()
            .all()
        )
    return taken


def record_events(
    tx: Connection,
    problem_ids: list[str],
    state: str,
    at: datetime,
    detail: str | sa.ColumnElement[str] | None,
) -> None:
    """Append one history event per problem (nothing when there is none), one INSERT ...
    SELECT per slice of ids: a run moving thousands of problems at once binds no row of
    them in Python, and the database takes each slice in one step. ``detail`` may be an
    expression over the problem's row (the attempt a claim took)."""
    when = sa.literal(at, sa.DateTime())
    text = detail if isinstance(detail, sa.ColumnElement) else sa.literal(detail, sa.Text())
    for chunk in chunks(problem_ids, ID_SLICE):
        tx.execute(
            problem_events.insert().from_select(
                ["problem_id", "state", "at", "detail"],
                sa.select(problems.c.id, sa.literal(state, sa.String()), when, text).where(
                    problems.c.id.in_(chunk)
                ),
            )
        )


def claim_candidates(
    tx: sa.Connection, where: Any, limit: int, only: Sequence[str] | None, lock: bool
) -> list[Any]:
    """Up to ``limit`` problems matching ``where``, in claim order (``ix_problems_claim_order``);
    ``lock``: FOR UPDATE SKIP LOCKED (PostgreSQL; SQLite claims inside BEGIN IMMEDIATE)."""
    query = (
        sa.select(problems.c.id, problems.c.priority, problems.c.submitted_at)
        .where(where)
        .order_by(problems.c.priority.desc(), problems.c.submitted_at, problems.c.id)
        .limit(limit)
    )
    if only is not None:
        query = query.where(problems.c.id.in_(list(only)))
    if lock:
        query = query.with_for_update(skip_locked=True)
    return list(tx.execute(query).all())
