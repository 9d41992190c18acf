"""The intake queue: a real database (SQLite by default, PostgreSQL by URL) via SQLAlchemy.

What it guarantees:
- submission is idempotent by key (``INSERT .. ON CONFLICT DO NOTHING``), all-or-nothing
  per call;
- a claim is one atomic ``UPDATE .. WHERE id IN (SELECT .. [FOR UPDATE SKIP LOCKED])
  RETURNING``, so two runs never hold the same problem; claims carry a lease and
  count attempts; a problem whose lease expired, or whose holder is a process of this host
  that no longer exists, is claimable again;
- results are journalled: a batch is recorded as ``writing`` before its Parquet file is
  written and ``written`` once its problems are final, so recovery after a crash can
  roll forward (file present) or release the problems (file absent) and every problem
  ends with exactly one result row. A batch is fenced: it takes only the problems its run
  still holds, and a problem in a journalled batch is settled by recovery, never re-claimed
  behind the journal's back.
Every state change is also appended to ``problem_events`` with its time.

``fault_point`` is a test-only fault hook: with ``QHOPPER_CRASH_AT=stage:count`` in the
environment the process SIGKILLs itself at the count-th pass through that stage. Unset, it
costs one dictionary lookup.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import signal
import socket
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from pipeline.model import ProblemSpec, content_hash, idempotency_key, n_variables, spec_to_record

QUEUED, CLAIMED, COMPILED, SUBMITTED, RUNNING = (
    "queued",
    "claimed",
    "compiled",
    "submitted",
    "running",
)
COMPLETED, DEGRADED, FAILED = "completed", "degraded", "failed"
ACTIVE_STATES = (CLAIMED, COMPILED, SUBMITTED, RUNNING)
FINAL_STATES = (COMPLETED, DEGRADED, FAILED)
STATES = (QUEUED, *ACTIVE_STATES, *FINAL_STATES)

log = logging.getLogger("qhopper.intake")

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
    sa.Index("ix_problems_state_priority", "state", "priority", "submitted_at"),
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


def utcnow() -> datetime:
    """Naive UTC: stored the same way by SQLite and PostgreSQL."""
    return datetime.now(UTC).replace(tzinfo=None)


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


# --- test-only fault hook -----------------------------------------------------------------
CRASH_STAGES = (
    "claim",
    "compile",
    "execute",
    "write-before-rename",
    "write-after-rename",
    "finish",
)
_fault_passes: dict[str, int] = {}


def _crash_target() -> tuple[str, int, str] | None:
    text = os.environ.get("QHOPPER_CRASH_AT")
    if not text:
        return None
    spec, _, marker = text.partition("@")
    stage, _, count = spec.partition(":")
    if stage not in CRASH_STAGES or not count.isdigit() or int(count) < 1:
        raise ValueError(
            f"QHOPPER_CRASH_AT={text!r}: expected STAGE:COUNT[@MARKER_FILE] with STAGE one "
            f"of {', '.join(CRASH_STAGES)} and COUNT >= 1"
        )
    return stage, int(count), marker


def fault_armed(stage: str) -> bool:
    """Whether ``QHOPPER_CRASH_AT`` names ``stage`` (test-only fault injection)."""
    target = _crash_target()
    return target is not None and target[0] == stage


def fault_point(stage: str) -> None:
    """Test-only: SIGKILL this process at the COUNT-th pass when QHOPPER_CRASH_AT=stage:COUNT.

    With ``@MARKER_FILE`` appended, only the first process to create that file dies, so
    one crash can be injected into a long-lived service. The kill is as abrupt as a
    power cut for the process: no ``finally``, no atexit, no flush. Used by the
    durability tests to stop a run at each of its commit points.
    """
    target = _crash_target()
    if target is None or target[0] != stage:
        return
    _fault_passes[stage] = _fault_passes.get(stage, 0) + 1
    if _fault_passes[stage] != target[1]:
        return
    if target[2]:
        try:
            os.close(os.open(target[2], os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return  # someone already crashed here once
    os.kill(os.getpid(), signal.SIGKILL)


@contextmanager
def rename_fault_point(stage: str) -> Iterator[None]:
    """Test-only: inside the block, a file rename passes through ``fault_point(stage)`` first.

    Lets the durability tests kill a run after a result file is written and synced under
    its temporary name but before it is renamed into place. Unarmed, it does nothing.
    """
    if not fault_armed(stage):
        yield
        return
    real_replace = os.replace

    def replace(src: Any, dst: Any, **kwargs: Any) -> None:
        fault_point(stage)
        real_replace(src, dst, **kwargs)

    os.replace = replace
    try:
        yield
    finally:
        os.replace = real_replace


# --- who holds a lease ----------------------------------------------------------------------
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


@dataclass(frozen=True)
class SubmitOutcome:
    id: str
    key: str
    created: bool


@dataclass(frozen=True)
class ClaimedProblem:
    id: str
    key: str
    spec_json: str
    input_hash: str
    attempts: int
    submitted_at: datetime
    claimed_at: datetime


@dataclass(frozen=True)
class Move:
    """Problems to advance together through ``states`` (in order), with one event detail."""

    problem_ids: list[str]
    states: tuple[str, ...]
    detail: str | None = None


def create_intake_engine(url: str) -> Engine:
    """An engine tuned for concurrent writers: SQLite in WAL mode with immediate transactions."""
    if url.startswith("sqlite"):
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 60, "isolation_level": None})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _begin_immediate(connection: Connection) -> None:
            # Take the write lock up front: no read-then-upgrade deadlocks between writers.
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return sa.create_engine(url, pool_pre_ping=True)


class LeaseKeeper:
    """Renews one owner's leases every third of a lease on a daemon thread, until stopped.

    A live run keeps what it claimed however long a batch takes; a dead one stops renewing
    and its problems become claimable when the lease runs out (at once, on its own host).
    """

    def __init__(self, store: IntakeStore, owner: str, lease_seconds: float) -> None:
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

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=60)


class IntakeStore:
    """Durable queue state for problems, behind one small API."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._dialect = engine.dialect.name

    @classmethod
    def open(cls, url: str) -> IntakeStore:
        store = cls(create_intake_engine(url))
        store.create_schema()
        return store

    def create_schema(self) -> None:
        try:
            metadata.create_all(self.engine)
        except sa.exc.DatabaseError:
            # Another process created the tables between our check and our CREATE.
            metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.engine.begin() as connection:
            yield connection

    # --- submission -------------------------------------------------------------------------
    def submit(self, specs: Sequence[tuple[ProblemSpec, str]]) -> list[SubmitOutcome]:
        """Enqueue every spec (with its source label) in one transaction; known keys are reused."""
        now = utcnow()
        rows: list[dict[str, Any]] = []
        for spec, source in specs:
            record = spec_to_record(spec)
            rows.append(
                {
                    "id": new_id("p"),
                    "key": idempotency_key(spec),
                    "kind": spec.kind,
                    "n_variables": n_variables(spec),
                    "tenant": spec.tenant,
                    "priority": spec.priority,
                    "deadline": spec.deadline.astimezone(UTC).replace(tzinfo=None)
                    if spec.deadline
                    else None,
                    "spec_json": json.dumps(record, sort_keys=True, separators=(",", ":")),
                    "input_hash": content_hash(spec),
                    "source": source,
                    "state": QUEUED,
                    "attempts": 0,
                    "submitted_at": now,
                    "updated_at": now,
                }
            )
        outcomes: list[SubmitOutcome] = []
        with self._tx() as tx:
            for chunk in _chunks(rows, 500):
                tx.execute(self._insert_ignore(problems), chunk)
                keys = [row["key"] for row in chunk]
                found = dict(
                    tx.execute(
                        sa.select(problems.c.key, problems.c.id).where(problems.c.key.in_(keys))
                    ).all()
                )
                created = [row for row in chunk if found[row["key"]] == row["id"]]
                if created:
                    tx.execute(
                        problem_events.insert(),
                        [
                            {
                                "problem_id": row["id"],
                                "state": QUEUED,
                                "at": now,
                                "detail": row["source"],
                            }
                            for row in created
                        ],
                    )
                outcomes += [
                    SubmitOutcome(found[row["key"]], row["key"], found[row["key"]] == row["id"])
                    for row in chunk
                ]
        return outcomes

    def _insert_ignore(self, table: sa.Table) -> Any:
        if self._dialect == "postgresql":
            return postgresql.insert(table).on_conflict_do_nothing(index_elements=["key"])
        if self._dialect == "sqlite":
            return sqlite.insert(table).on_conflict_do_nothing(index_elements=["key"])
        raise NotImplementedError(f"intake supports SQLite and PostgreSQL, not {self._dialect}")

    # --- claims and leases ------------------------------------------------------------------
    def claim(self, owner: str, limit: int, lease_seconds: float) -> list[ClaimedProblem]:
        """Atomically take up to ``limit`` claimable problems for ``owner``.

        Claimable: queued, or active and not in a journalled batch (recovery settles those)
        with a lease that expired or a holder that is provably dead on this host.
        """
        now = utcnow()
        expires = now + timedelta(seconds=lease_seconds)
        dead = self.dead_local_owners(now)
        lapsed = problems.c.lease_expires_at < now
        if dead:
            lapsed = sa.or_(lapsed, problems.c.lease_owner.in_(dead))
        claimable = sa.or_(
            problems.c.state == QUEUED,
            sa.and_(problems.c.state.in_(ACTIVE_STATES), problems.c.batch_id.is_(None), lapsed),
        )
        candidates = (
            sa.select(problems.c.id)
            .where(claimable)
            .order_by(problems.c.priority.desc(), problems.c.submitted_at, problems.c.id)
            .limit(limit)
        )
        if self._dialect == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
        statement = (
            problems.update()
            .where(problems.c.id.in_(candidates.scalar_subquery()))
            .values(
                state=CLAIMED,
                lease_owner=owner,
                lease_expires_at=expires,
                lease_host=host_identity(),
                lease_pid=os.getpid(),
                attempts=problems.c.attempts + 1,
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
            )
        )
        with self._tx() as tx:
            rows = tx.execute(statement).all()
            if rows:
                tx.execute(
                    problem_events.insert(),
                    [
                        {
                            "problem_id": r.id,
                            "state": CLAIMED,
                            "at": now,
                            "detail": f"owner={owner} attempt={r.attempts}",
                        }
                        for r in rows
                    ],
                )
        claimed = [
            ClaimedProblem(r.id, r.key, r.spec_json, r.input_hash, r.attempts, r.submitted_at, now)
            for r in rows
        ]
        claimed.sort(key=lambda c: c.id)
        return claimed

    def dead_local_owners(self, now: datetime | None = None) -> list[str]:
        """Owners of unexpired leases whose holding process no longer exists on this host."""
        now = now or utcnow()
        with self.engine.connect() as connection:
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
        alive = {pid: process_alive(int(pid)) for pid in {pid for _, pid in rows}}  # once per pid
        return sorted({owner for owner, pid in rows if owner and not alive[pid]})

    def release(self, owner: str) -> int:
        """Give back what ``owner`` holds outside any journalled batch: queued again at once."""
        now = utcnow()
        with self._tx() as tx:
            released = (
                tx.execute(
                    problems.update()
                    .where(
                        problems.c.lease_owner == owner,
                        problems.c.state.in_(ACTIVE_STATES),
                        problems.c.batch_id.is_(None),
                    )
                    .values(
                        state=QUEUED,
                        lease_owner=None,
                        lease_expires_at=None,
                        lease_host=None,
                        lease_pid=None,
                        updated_at=now,
                    )
                    .returning(problems.c.id)
                )
                .scalars()
                .all()
            )
            if released:
                tx.execute(
                    problem_events.insert(),
                    [
                        {
                            "problem_id": pid,
                            "state": QUEUED,
                            "at": now,
                            "detail": f"released by {owner}",
                        }
                        for pid in released
                    ],
                )
        return len(released)

    def renew(self, owner: str, lease_seconds: float) -> int:
        """Extend the leases ``owner`` holds; returns how many problems it still holds.

        Leases renewed within the last tenth of a lease are left as they are: a run that
        renews after every batch then rewrites its rows a few times per lease, not once
        per batch (with 100,000 claims, per-batch rewrites made a run quadratic).
        """
        now = utcnow()
        stale = problems.c.lease_expires_at < now + timedelta(seconds=0.9 * lease_seconds)
        mine = (problems.c.lease_owner == owner, problems.c.state.in_(ACTIVE_STATES))
        with self._tx() as tx:
            tx.execute(
                problems.update()
                .where(*mine, stale)
                .values(lease_expires_at=now + timedelta(seconds=lease_seconds), updated_at=now)
            )
            held = tx.execute(sa.select(sa.func.count()).where(*mine)).scalar_one()
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
        now = utcnow()
        moved = 0
        with self._tx() as tx:
            for move in moves:
                values = {"state": move.states[-1], "updated_at": now}
                taken = _update_held(tx, move.problem_ids, owner, values)
                moved += len(taken)
                if taken:  # the history records what moved, not what was asked for
                    tx.execute(
                        problem_events.insert(),
                        [
                            {"problem_id": pid, "state": s, "at": now, "detail": move.detail}
                            for s in move.states
                            for pid in taken
                        ],
                    )
        for move in moves:
            if COMPILED in move.states:
                fault_point("compile")
            if RUNNING in move.states:
                fault_point("execute")
        return moved

    # --- result journal ---------------------------------------------------------------------
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
        with self._tx() as tx:
            unbatched = problems.c.batch_id.is_(None)
            held = set(_update_held(tx, list(problem_ids), run_id, values, unbatched))
            if held:
                tx.execute(
                    result_batches.insert().values(
                        batch_id=batch_id,
                        run_id=run_id,
                        state="writing",
                        result_path=result_path,
                        created_at=now,
                    )
                )
        return [pid for pid in problem_ids if pid in held]

    def finish_batch(self, batch_id: str, outcomes: Sequence[dict[str, Any]]) -> None:
        """Mark the batch's problems final, after its result file is in place.

        ``outcomes`` items carry ``problem_id``, ``status``, ``route``, ``solver_path`` and
        ``fallback_reason``.
        """
        now = utcnow()
        with self._tx() as tx:
            path = tx.execute(
                sa.select(result_batches.c.result_path).where(result_batches.c.batch_id == batch_id)
            ).scalar_one()
            # One UPDATE per distinct outcome (a batch has one or a few), not one per problem.
            groups: dict[tuple[Any, ...], list[str]] = defaultdict(list)
            for o in outcomes:
                key = (o["status"], o["route"], o["solver_path"], o.get("fallback_reason"))
                groups[key].append(o["problem_id"])
            for (status, route, solver_path, reason), ids in groups.items():
                for chunk in _chunks(ids, 500):
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
            tx.execute(
                problem_events.insert(),
                [
                    {
                        "problem_id": o["problem_id"],
                        "state": o["status"],
                        "at": now,
                        "detail": f"batch={batch_id}",
                    }
                    for o in outcomes
                ],
            )
            tx.execute(
                result_batches.update()
                .where(result_batches.c.batch_id == batch_id)
                .values(state="written")
            )

    def unfinished_batches(self) -> list[tuple[str, str]]:
        """Batches being written whose holders are gone: leases expired or processes dead."""
        now = utcnow()
        dead = self.dead_local_owners(now)
        conditions = [
            problems.c.batch_id == result_batches.c.batch_id,
            problems.c.state.in_(ACTIVE_STATES),
            problems.c.lease_expires_at >= now,
        ]
        if dead:
            conditions.append(problems.c.lease_owner.not_in(dead))
        held = sa.select(problems.c.id).where(*conditions)
        with self._tx() as tx:
            rows = tx.execute(
                sa.select(result_batches.c.batch_id, result_batches.c.result_path).where(
                    result_batches.c.state == "writing", ~sa.exists(held)
                )
            ).all()
        return [(r.batch_id, r.result_path) for r in rows]

    def abandon_batch(self, batch_id: str) -> None:
        """Forget a batch whose file never landed: its problems stay claimable."""
        with self._tx() as tx:
            tx.execute(
                problems.update()
                .where(problems.c.batch_id == batch_id, problems.c.state.in_(ACTIVE_STATES))
                .values(batch_id=None)
            )
            tx.execute(result_batches.delete().where(result_batches.c.batch_id == batch_id))

    # --- queries ----------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(problems.c.state, sa.func.count()).group_by(problems.c.state)
            ).all()
        counted = {state: 0 for state in STATES}
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


def _is_active() -> sa.ColumnElement[bool]:
    """``state`` is active, written so that no index on ``state`` can serve it.

    Beside ``id IN (...)``, SQLite would otherwise pick the state index (it guesses ten
    rows per value) and scan every claimed problem, once per batch: quadratic at scale.
    """
    return problems.c.state.not_in((QUEUED, *FINAL_STATES))


def _update_held(
    tx: Connection,
    problem_ids: list[str],
    owner: str,
    values: dict[str, Any],
    *also: sa.ColumnElement[bool],
) -> list[str]:
    """Update the problems among ``problem_ids`` that ``owner`` holds (and match ``also``);
    their ids. In chunks, so no statement outgrows the database's parameter limit."""
    taken: list[str] = []
    for chunk in _chunks(problem_ids, 500):
        taken += (
            tx.execute(
                problems.update()
                .where(
                    problems.c.id.in_(chunk), problems.c.lease_owner == owner, _is_active(), *also
                )
                .values(**values)
                .returning(problems.c.id)
            )
            .scalars()
            .all()
        )
    return taken


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
