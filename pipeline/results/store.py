"""The result store owns the commit of a batch and the recovery of a half-written one.

Commit, per batch: journal the batch in the intake (fenced: only problems this run still
holds join it, each with its claim epoch) -> stage the problems and batch files, whole and
synced, under hidden names -> finish the batch in the intake, the commit point -> do what
the batch's decision says: publish the staged files (a rename in a folder, a server-side
copy then delete on an object store) or, if the batch was abandoned meanwhile, delete them.
Recovery, at the start of every run (and of every synchronous solve): a journalled batch
whose writer is gone is committed from its staged files when both are whole, abandoned when
not; then every batch with staged files left gets its decision carried out.

Invariants (each checked in tests/test_commit_protocol.py and tests/test_intake.py), which
hold for any number of writers and recoveries, each paused or killed at any point:
1. One decision per batch. A batch leaves ``writing`` once, to ``written`` or ``abandoned``,
   by a conditional UPDATE: whoever gets there first decides, and every later finish or
   abandon returns that decision instead of making its own.
2. Committed only whole. A batch becomes ``written`` only from a party that holds both of
   its files whole (staged, or already published), so a written batch's rows exist.
3. A written batch's files are only ever published, never deleted, and publishing is
   idempotent: any number of publishers, interleaved any way, leave the one whole file.
4. Files are deleted only after the batch is ``abandoned`` in the database, and an
   abandoned batch is never published; its problems are claimable again.
5. Every recovery that completes publishes the staged files of every written batch and
   deletes those of every abandoned one, so every finished problem has one visible row.
A writer that resumes after its lease therefore never deletes what another committed: it
learns its batch's decision and carries it out like everyone else.
The same steps run on a local folder and on an object store: see ``location``.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import pyarrow as pa

from pipeline.crash import fault_point
from pipeline.intake import BatchState, ProblemOutcome
from pipeline.results.location import ResultsLocation, open_files
from pipeline.results.rows import BatchRow, ProblemRow, RunSummary
from pipeline.results.schema import to_table

log = logging.getLogger("qhopper.results")
ORPHAN_AGE_S = 3600.0  # a live writer holds a temporary for milliseconds


class Journal(Protocol):
    """The intake's result journal, as the result store uses it."""

    def begin_batch(
        self,
        run_id: str,
        batch_id: str,
        problem_ids: Sequence[str],
        result_path: str,
        lease_seconds: float | None = None,
    ) -> list[str]: ...

    def finish_batch(self, batch_id: str, outcomes: Sequence[ProblemOutcome]) -> BatchState: ...

    def abandon_batch(self, batch_id: str) -> BatchState: ...

    def unfinished_batches(self) -> list[tuple[str, str]]: ...

    def batch_states(self, batch_ids: Sequence[str]) -> dict[str, BatchState]: ...


class ResultStore:
    """Hive-partitioned Parquet at ``location`` (a folder or an fsspec URL), committed
    through ``journal``; every file operation goes through the location's ResultFiles."""

    def __init__(self, location: ResultsLocation | Path | str, journal: Journal) -> None:
        self.location = ResultsLocation.of(location)
        self.files = open_files(self.location)
        self.journal = journal

    def commit_batch(
        self,
        run_id: str,
        batch_id: str,
        rows: Sequence[ProblemRow],
        batch_row: Callable[[list[ProblemRow]], BatchRow],
        lease_seconds: float,
    ) -> list[ProblemRow]:
        """Commit the rows whose problems ``run_id`` still holds; returns those rows.

        A problem this run no longer holds (its lease ran out and another run took it) gets
        no row here: the run that holds it writes the one row. ``batch_row`` builds the
        batch's row from the rows actually written.
        """
        if not rows:
            return []
        day = (rows[0].completed_at or datetime.now(UTC)).date()
        files = self.files
        problems_key = files.key("problems", day, batch_id)
        held = set(
            self.journal.begin_batch(
                run_id, batch_id, [r.problem_id for r in rows], problems_key, lease_seconds
            )
        )
        kept = [r for r in rows if r.problem_id in held]
        if len(kept) < len(rows):
            log.warning(
                "batch %s: %d of %d problems are no longer held by run %s; not written",
                batch_id,
                len(rows) - len(kept),
                len(rows),
                run_id,
            )
        if not kept:
            return []
        fault_point("journal")
        files.stage(problems_key, to_table(kept, ProblemRow))
        files.stage(files.sibling(problems_key, "batches"), to_table([batch_row(kept)], BatchRow))
        fault_point("write-before-rename")
        decided = self.journal.finish_batch(batch_id, [_outcome(r) for r in kept])
        fault_point("finish")
        self._carry_out(decided, problems_key)
        fault_point("write-after-rename")
        if decided is not BatchState.WRITTEN:
            log.warning("batch %s was abandoned before it committed; not published", batch_id)
            return []
        return kept

    def write_run(self, summary: RunSummary) -> None:
        day = (summary.completed_at or datetime.now(UTC)).date()
        self.files.write(
            self.files.key("runs", day, summary.run_id), to_table([summary], RunSummary)
        )

    def recover(self) -> int:
        """Settle the batches dead writers left half-written; returns how many batches it
        settled or carried a decision out for."""
        settled = 0
        for batch_id, problems_key in self.journal.unfinished_batches():
            decided = self._decide(batch_id, problems_key)
            fault_point("recover-publish")
            self._carry_out(decided, problems_key)
            log.warning("settled batch %s its writer left unfinished: %s", batch_id, decided)
            settled += 1
        settled += self._carry_out_staged()
        self.files.remove_orphans(ORPHAN_AGE_S)
        return settled

    def _decide(self, batch_id: str, problems_key: str) -> BatchState:
        """Commit a dead writer's batch when both its files are whole, else abandon it; the
        batch's decision, which may be another party's that came first (invariant 1)."""
        files = self.files
        batch_key = files.sibling(problems_key, "batches")
        rows = files.read_staged(problems_key)
        if rows is None and files.exists(problems_key):  # published already, or an old layout
            rows = _read_whole(files.read, problems_key)
        whole = rows is not None and (files.has_staged(batch_key) or files.exists(batch_key))
        fault_point("recover-decide")
        if rows is not None and whole:
            return self.journal.finish_batch(batch_id, _outcomes(rows))
        return self.journal.abandon_batch(batch_id)

    def _carry_out(self, decided: BatchState, problems_key: str) -> bool:
        """Do to a batch's files what its decision says: publish a written batch's (its
        batch row first), delete an abandoned one's. Safe to repeat, and for any number of
        parties at once (invariants 3 and 4); True when this call published the rows."""
        batch_key = self.files.sibling(problems_key, "batches")
        if decided is BatchState.WRITTEN:
            self.files.publish(batch_key)
            return self.files.publish(problems_key)
        if decided is BatchState.ABANDONED:
            self.files.unstage(problems_key)
            self.files.unstage(batch_key)
        return False

    def _carry_out_staged(self) -> int:
        """Carry out the decision of every decided batch whose staged files are still there
        (a publisher or deleter that died midway, a late writer's files); a batch still
        being written, or unknown to the journal, is left alone. Returns how many."""
        files = self.files
        keys = set(files.staged("problems"))
        keys.update(files.sibling(key, "problems") for key in files.staged("batches"))
        by_batch = {posixpath.basename(key).removesuffix(".parquet"): key for key in keys}
        states = self.journal.batch_states(sorted(by_batch))
        decided = [(states[b], key) for b, key in by_batch.items() if states.get(b) in _DECIDED]
        for state, key in decided:
            self._carry_out(state, key)
        return len(decided)


_DECIDED = (BatchState.WRITTEN, BatchState.ABANDONED)


def _read_whole(read: Callable[[str], pa.Table], key: str) -> pa.Table | None:
    """A file's rows, or None when it is missing or was cut short."""
    try:
        return read(key)
    except (OSError, pa.ArrowException):
        return None


def _outcomes(table: pa.Table) -> list[ProblemOutcome]:
    columns = ["problem_id", "status", "route", "solver_path", "fallback_reason"]
    return [
        ProblemOutcome(
            row["problem_id"],
            row["status"],
            row["route"],
            row["solver_path"],
            row["fallback_reason"],
        )
        for row in table.select(columns).to_pylist()
    ]


def _outcome(row: ProblemRow) -> ProblemOutcome:
    return ProblemOutcome(
        row.problem_id, row.status, row.route, row.solver_path, row.fallback_reason
    )
