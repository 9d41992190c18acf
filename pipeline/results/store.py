"""The result store owns the commit of a batch and the recovery of a half-written one.

Commit, per batch: journal the batch in the intake (fenced: only problems this run still
holds join it, each with its claim epoch) -> stage the problems and batch files, whole and
synced, under hidden names -> finish the batch in the intake, the commit point, which
finalises only problems still held under the epoch they were journalled with -> publish the
staged files (a rename in a folder, a server-side copy on an object store). A writer that
froze past its lease learns at the commit point that its batch went stale and deletes its
staged files: nothing it wrote ever becomes visible.
Recovery, at the start of every run: a journalled batch whose writer is gone is committed
from its staged files when they are whole, abandoned when they are not; a committed batch
whose files were not published yet is published. Every problem ends with exactly one row.
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
from pipeline.intake import ProblemOutcome, StaleBatch
from pipeline.results.location import ResultsLocation
from pipeline.results.records import BatchRow, ProblemRow, RunSummary
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

    def finish_batch(self, batch_id: str, outcomes: Sequence[ProblemOutcome]) -> list[str]: ...

    def unfinished_batches(self) -> list[tuple[str, str]]: ...

    def is_written(self, batch_id: str) -> bool: ...

    def abandon_batch(self, batch_id: str) -> None: ...


class ResultStore:
    """Hive-partitioned Parquet at ``location`` (a folder or an fsspec URL), committed
    through ``journal``; every file operation goes through the location's ResultFiles."""

    def __init__(self, location: ResultsLocation | Path | str, journal: Journal) -> None:
        self.location = ResultsLocation.of(location)
        self.files = self.location.files()
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
        batch_key = files.sibling(problems_key, "batches")
        files.stage(problems_key, to_table(kept, ProblemRow))
        files.stage(batch_key, to_table([batch_row(kept)], BatchRow))
        fault_point("write-before-rename")
        try:
            done = set(self.journal.finish_batch(batch_id, [_outcome(r) for r in kept]))
        except StaleBatch as exc:
            log.warning("batch %s went stale before it committed; not published: %s", batch_id, exc)
            files.unstage(problems_key)
            files.unstage(batch_key)
            return []
        fault_point("finish")
        if len(done) < len(kept):  # some problems were taken over meanwhile: theirs is not ours
            kept = [r for r in kept if r.problem_id in done]
            files.stage(problems_key, to_table(kept, ProblemRow))
            files.stage(batch_key, to_table([batch_row(kept)], BatchRow))
        files.publish(batch_key)
        files.publish(problems_key)
        fault_point("write-after-rename")
        return kept

    def write_run(self, summary: RunSummary) -> None:
        day = (summary.completed_at or datetime.now(UTC)).date()
        self.files.write(
            self.files.key("runs", day, summary.run_id), to_table([summary], RunSummary)
        )

    def recover(self) -> int:
        """Settle the batches dead writers left half-written; returns how many."""
        files = self.files
        settled = 0
        for batch_id, problems_key in self.journal.unfinished_batches():
            batch_key = files.sibling(problems_key, "batches")
            staged = files.read_staged(problems_key)
            if staged is None and files.exists(problems_key):  # an older writer's layout
                staged = _read_whole(files.read, problems_key)
            fault_point("recover-decide")
            if staged is not None and files.has_staged(batch_key):
                try:
                    done = self.journal.finish_batch(batch_id, _outcomes(staged))
                except StaleBatch:
                    done = []
                if done:
                    fault_point("recover-publish")
                    files.publish(batch_key)
                    files.publish(problems_key)
                    log.warning("committed batch %s its writer left staged", batch_id)
                    settled += 1
                    continue
            files.unstage(problems_key)
            files.unstage(batch_key)
            self.journal.abandon_batch(batch_id)
            log.warning("released batch %s (its files never became whole)", batch_id)
            settled += 1
        settled += self._publish_committed()
        files.remove_orphans(ORPHAN_AGE_S)
        return settled

    def _publish_committed(self) -> int:
        """Publish the staged files of batches that committed before their writer died."""
        published = 0
        for problems_key in self.files.staged("problems"):
            batch_id = posixpath.basename(problems_key).removesuffix(".parquet")
            if self.journal.is_written(batch_id):
                self.files.publish(self.files.sibling(problems_key, "batches"))
                published += self.files.publish(problems_key)
        return published


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
