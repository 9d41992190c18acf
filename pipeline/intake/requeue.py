"""Requeue: failed problems back in the queue with a fresh attempt budget.

A problem ends ``failed`` when it ran out of attempts or every path failed; once the cause
is mended (a backend back, a limit raised) an operator or its tenant puts it back. Its
failed row stays in the results as history: the problem remembers that row's batch
(``supersedes``), its next answer's row names it, and the ``problems`` view shows only the
newest answer, so each problem still has one visible row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pipeline.intake.database import server_now
from pipeline.intake.schema import FAILED, NO_LEASE, QUEUED, chunks, problems, record_events


@dataclass(frozen=True)
class RequeueSelection:
    """Which failed problems: these ids (each must be failed), or every failed one that
    matches the filters. ``tenant`` confines either to one tenant's problems."""

    ids: Sequence[str] = ()
    since: datetime | None = None  # failed at or after (naive UTC, as stored)
    kind: str | None = None
    tenant: str | None = None


@dataclass(frozen=True)
class RequeueOutcome:
    """What was (or, on a dry run, would be) requeued; named ids that could not be, and why."""

    requeued: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)


def requeue(
    engine: Engine, selection: RequeueSelection, by: str, dry_run: bool = False
) -> RequeueOutcome:
    """Requeue the selected failed problems in one transaction, all or none: when a named
    id is unknown or not failed, nothing is requeued and the outcome says why."""
    with engine.begin() as tx:
        found = _selected(tx, selection)
        refused = _refused(selection, found)
        chosen = sorted(pid for pid, (state, _, _) in found.items() if state == FAILED)
        if refused or dry_run or not chosen:
            return RequeueOutcome([] if refused else chosen, refused)
        now = server_now(tx)
        for chunk in chunks(chosen):
            tx.execute(
                problems.update()
                .where(problems.c.id.in_(chunk), problems.c.state == FAILED)
                .values(
                    state=QUEUED,
                    attempts=0,
                    supersedes=problems.c.batch_id,
                    batch_id=None,
                    route=None,
                    solver_path=None,
                    result_path=None,
                    last_error=None,
                    **NO_LEASE,
                    updated_at=now,
                )
            )
        for pid in chosen:
            why = (found[pid][2] or "no reason recorded")[:200]
            record_events(tx, [pid], QUEUED, now, f"requeued by {by} (was failed: {why})")
    return RequeueOutcome(chosen)


def _selected(
    tx: Connection, selection: RequeueSelection
) -> dict[str, tuple[str, str | None, str | None]]:
    """Each candidate's state, batch and last error: the named ids, else every failed one."""
    query = sa.select(problems.c.id, problems.c.state, problems.c.batch_id, problems.c.last_error)
    if selection.since is not None:
        query = query.where(problems.c.updated_at >= selection.since)
    if selection.kind is not None:
        query = query.where(problems.c.kind == selection.kind)
    if selection.tenant is not None:
        query = query.where(problems.c.tenant == selection.tenant)
    if not selection.ids:
        rows = list(tx.execute(query.where(problems.c.state == FAILED)))
    else:
        rows = [
            row
            for chunk in chunks(list(selection.ids))
            for row in tx.execute(query.where(problems.c.id.in_(chunk)))
        ]
    return {r.id: (r.state, r.batch_id, r.last_error) for r in rows}


def _refused(
    selection: RequeueSelection, found: dict[str, tuple[str, str | None, str | None]]
) -> dict[str, str]:
    refused = {}
    for pid in selection.ids:
        if pid not in found:
            refused[pid] = "no such problem" + (" here" if selection.tenant else "")
        elif found[pid][0] != FAILED:
            refused[pid] = f"it is {found[pid][0]}: only failed problems are requeued"
    return refused
