"""The result store owns the commit of a batch and the recovery of a half-written one.

Commit, per batch: journal the batch in the intake (fenced: only problems this run still
holds join it, each with its claim epoch) -> stage the problems and batch files, whole and
synced, under hidden names -> finish the batch in the intake, the commit point, which
finalises only problems still held under the epoch they were journalled with -> rename the
staged files into place. A writer that froze past its lease learns at the commit point that
its batch went stale and deletes its staged files: nothing it wrote ever becomes visible.
Recovery, at the start of every run: a journalled batch whose writer is gone is committed
from its staged files when they are whole, abandoned when they are not; a committed batch
whose files were not renamed yet is published. Every problem ends with exactly one row.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import pyarrow as pa

from pipeline.crash import fault_point
from pipeline.intake import ProblemOutcome, StaleBatch
from pipeline.results.files import (
    DATASETS,
    dataset_path,
    publish,
    read_table,
    stage_table,
    staged_path,
    temporaries,
    write_table,
)
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
    """Hive-partitioned Parquet under ``results_dir``, committed through ``journal``."""

    def __init__(self, results_dir: Path, journal: Journal) -> None:
        self.results_dir = results_dir
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
        problems_path = dataset_path(self.results_dir, "problems", day, batch_id)
        held = set(
            self.journal.begin_batch(
                run_id, batch_id, [r.problem_id for r in rows], str(problems_path), lease_seconds
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
        batch_path = dataset_path(self.results_dir, "batches", day, batch_id)
        stage_table(problems_path, to_table(kept, ProblemRow))
        stage_table(batch_path, to_table([batch_row(kept)], BatchRow))
        fault_point("write-before-rename")
        try:
            done = set(self.journal.finish_batch(batch_id, [_outcome(r) for r in kept]))
        except StaleBatch as exc:
            log.warning("batch %s went stale before it committed; not published: %s", batch_id, exc)
            _unstage(problems_path, batch_path)
            return []
        fault_point("finish")
        if len(done) < len(kept):  # some problems were taken over meanwhile: theirs is not ours
            kept = [r for r in kept if r.problem_id in done]
            stage_table(problems_path, to_table(kept, ProblemRow))
            stage_table(batch_path, to_table([batch_row(kept)], BatchRow))
        publish(batch_path)
        publish(problems_path)
        fault_point("write-after-rename")
        return kept

    def write_run(self, summary: RunSummary) -> None:
        day = (summary.completed_at or datetime.now(UTC)).date()
        path = dataset_path(self.results_dir, "runs", day, summary.run_id)
        write_table(path, to_table([summary], RunSummary))

    def recover(self) -> int:
        """Settle the batches dead writers left half-written; returns how many."""
        settled = 0
        for batch_id, path_text in self.journal.unfinished_batches():
            problems_path = Path(path_text)
            batch_path = self._batch_path(problems_path)
            staged = _read_whole(staged_path(problems_path))
            if staged is None and problems_path.exists():  # an older writer's layout
                staged = _read_whole(problems_path)
            if staged is not None and staged_path(batch_path).exists():
                try:
                    done = self.journal.finish_batch(batch_id, _outcomes(staged))
                except StaleBatch:
                    done = []
                if done:
                    publish(batch_path)
                    publish(problems_path)
                    log.warning("committed batch %s its writer left staged", batch_id)
                    settled += 1
                    continue
            _unstage(problems_path, batch_path)
            self.journal.abandon_batch(batch_id)
            log.warning("released batch %s (its files never became whole)", batch_id)
            settled += 1
        settled += self._publish_committed()
        self._remove_old_temporaries()
        return settled

    def _publish_committed(self) -> int:
        """Rename the staged files of batches that committed before their writer died."""
        published = 0
        for staged in (self.results_dir / "problems").glob("date=*/.*.staged.tmp"):
            batch_id = staged.name.removeprefix(".").removesuffix(".staged.tmp")
            if self.journal.is_written(batch_id):
                problems_path = staged.parent / f"{batch_id}.parquet"
                publish(self._batch_path(problems_path))
                published += publish(problems_path)
        return published

    def _batch_path(self, problems_path: Path) -> Path:
        return self.results_dir / "batches" / problems_path.parent.name / problems_path.name

    def _remove_old_temporaries(self) -> None:
        """Temporaries of writers cut short, once stale: a live writer holds one for
        milliseconds. Staged files are left to the journal's say (see ``recover``)."""
        cutoff = time.time() - ORPHAN_AGE_S
        for dataset in DATASETS:
            for orphan in (self.results_dir / dataset).glob("date=*/.*.tmp"):
                if orphan.name.endswith(".staged.tmp"):
                    continue
                try:
                    if orphan.stat().st_mtime < cutoff:
                        orphan.unlink()
                except FileNotFoundError:
                    pass


def _read_whole(path: Path) -> pa.Table | None:
    """A staged file's rows, or None when it is missing or was cut short."""
    try:
        return read_table(path)
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


def _unstage(*paths: Path) -> None:
    for path in paths:
        staged_path(path).unlink(missing_ok=True)
        for orphan in temporaries(path.parent, staged_path(path).stem):
            orphan.unlink(missing_ok=True)


def _outcome(row: ProblemRow) -> ProblemOutcome:
    return ProblemOutcome(
        row.problem_id, row.status, row.route, row.solver_path, row.fallback_reason
    )
