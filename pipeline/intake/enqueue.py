"""Submission: new problems in, known keys reused, one transaction a call."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from pipeline.errors import Conflict, ConflictReason, KeyConflict
from pipeline.intake.database import server_now
from pipeline.intake.schema import QUEUED, chunks, new_id, problem_events, problems
from pipeline.intake.types import SubmitOutcome
from pipeline.model import ProblemSpec, content_hash, idempotency_key, n_variables, spec_to_record

# A submit that creates this many problems, and more than this share of the rows PostgreSQL's
# statistics last counted, refreshes them (see analyze_if_stale; autovacuum's own default
# share is the same 10 %).
ANALYZE_AFTER = 1_000
ANALYZE_SHARE = 0.1


def submit_specs(
    engine: Engine,
    dialect: str,
    specs: Sequence[tuple[ProblemSpec, str] | tuple[ProblemSpec, str, str | None]],
) -> list[SubmitOutcome]:
    """Enqueue every (spec, source[, trace id]) in one transaction; known keys are reused.

    A key that already names other content (its stored input hash differs) or another
    tenant's problem, in the queue or earlier in ``specs``, is a conflict: KeyConflict
    names every one and nothing is enqueued. Concurrent submitters of one key serialise
    on its unique index, so one wins and the other sees the winner's row as a conflict.
    """
    rows = [_row(item[0], item[1], item[2] if len(item) > 2 else None) for item in specs]
    submission = _Submission()
    with engine.begin() as tx:
        now = server_now(tx)
        for row in rows:
            row["submitted_at"] = row["updated_at"] = now
        start = 0
        for chunk in chunks(rows):
            submission.add(tx, dialect, chunk, start)
            start += len(chunk)
        if submission.conflicts:
            raise KeyConflict(submission.conflicts)  # the transaction rolls back
    added = sum(o.created for o in submission.outcomes)
    if dialect == "postgresql" and added >= ANALYZE_AFTER:
        analyze_if_stale(engine, added)
    return submission.outcomes


@dataclass
class _Submission:
    """What one submit call has done so far: outcomes, conflicts, and the keys it created."""

    outcomes: list[SubmitOutcome] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    created: dict[str, int] = field(default_factory=dict)  # key -> index of the row made

    def add(self, tx: Connection, dialect: str, chunk: list[dict[str, Any]], start: int) -> None:
        # RETURNING names the rows this insert created; only the others (keys known
        # already) are looked up. A look-up of every key, in the transaction that just
        # inserted them, scanned the whole table on PostgreSQL (its statistics lag the
        # inserts): submit fell from 11,000 to 330 problems/s by 100,000 queued.
        inserted = set(
            tx.execute(_insert_ignore(dialect).returning(problems.c.id), chunk).scalars()
        )
        made = [row for row in chunk if row["id"] in inserted]
        for offset, row in enumerate(chunk):
            if row["id"] in inserted:
                self.created[row["key"]] = start + offset
        known = [row["key"] for row in chunk if row["id"] not in inserted]
        stored = {r.key: r for r in tx.execute(_stored(known))} if known else {}
        if made:
            tx.execute(problem_events.insert(), [_queued_event(r) for r in made])
        for offset, row in enumerate(chunk):
            if row["id"] in inserted:
                self.outcomes.append(SubmitOutcome(row["id"], row["key"], True))
                continue
            found = stored[row["key"]]
            self._check(start + offset, row, found)
            self.outcomes.append(SubmitOutcome(found.id, row["key"], False))

    def _check(self, index: int, row: dict[str, Any], found: Any) -> None:
        """A conflict when the key's problem has other content or another tenant."""
        if found.input_hash != row["input_hash"]:
            reason = ConflictReason.CONTENT
        elif found.tenant != row["tenant"]:
            reason = ConflictReason.TENANT
        else:
            return
        first = self.created.get(row["key"])
        problem_id = None if first is not None else found.id
        self.conflicts.append(Conflict(index, row["key"], reason, problem_id, first))


def _queued_event(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "problem_id": row["id"],
        "state": QUEUED,
        "at": row["submitted_at"],
        "detail": row["source"],
    }


def _stored(keys: list[str]) -> sa.Select[Any]:
    columns = (problems.c.key, problems.c.id, problems.c.input_hash, problems.c.tenant)
    return sa.select(*columns).where(problems.c.key.in_(keys))


def analyze_if_stale(engine: Engine, created: int) -> None:
    """Refresh PostgreSQL's statistics of the queue when a bulk submit outgrew them.

    Until the table is analysed the planner guesses a handful of queued rows and reads a
    claim's rows by bitmap and sort: every queued problem, on each claim (0.6 s a claim
    at a million queued). Autovacuum would do this in time, where it is on; a claim
    cannot wait for it. A table analysed at a size this submit adds little to is left
    alone (filling a million in calls of 10,000 analyses ~20 times, not 100). Statistics
    only help: a failure is ignored.
    """
    with contextlib.suppress(sa.exc.DBAPIError), engine.begin() as tx:
        counted = tx.execute(
            sa.text("SELECT reltuples FROM pg_class WHERE oid = 'problems'::regclass")
        ).scalar()
        if counted is None or counted < 0 or created > ANALYZE_SHARE * counted:
            tx.execute(sa.text("ANALYZE problems"))


def _insert_ignore(dialect: str) -> Any:
    if dialect == "postgresql":
        return postgresql.insert(problems).on_conflict_do_nothing(index_elements=["key"])
    return sqlite.insert(problems).on_conflict_do_nothing(index_elements=["key"])


def _row(spec: ProblemSpec, source: str, trace_id: str | None = None) -> dict[str, Any]:
    return {
        "id": new_id("p"),
        "key": idempotency_key(spec),
        "kind": spec.kind,
        "n_variables": n_variables(spec),
        "tenant": spec.tenant,
        "priority": spec.priority,
        "deadline": spec.deadline.astimezone(UTC).replace(tzinfo=None) if spec.deadline else None,
        "spec_json": json.dumps(spec_to_record(spec), sort_keys=True, separators=(",", ":")),
        "input_hash": content_hash(spec),
        "source": source,
        "state": QUEUED,
        "attempts": 0,
        "trace_id": trace_id,
    }
