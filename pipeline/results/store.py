"""The result store owns the commit of a batch and the recovery of a half-written one.

Commit, per batch: journal the batch in the intake (fenced: only problems this run still
holds join it) -> write the batch file -> write the problems file under a temporary name
and rename it into place (the commit point: readers see every row of the batch or none)
-> mark the problems final. Recovery, at the start of every run: a journalled batch whose
writer is gone is rolled forward when its problems file is in place, and released (its
batch file and temporaries removed) when it is not, so every problem ends with exactly
one row.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from pipeline.crash import fault_point
from pipeline.intake import ProblemOutcome
from pipeline.results.files import (
    DATASETS,
    dataset_path,
    read_table,
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

    def finish_batch(self, batch_id: str, outcomes: Sequence[ProblemOutcome]) -> object: ...

    def unfinished_batches(self) -> list[tuple[str, str]]: ...

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
        batch_path = dataset_path(self.results_dir, "batches", day, batch_id)
        write_table(batch_path, to_table([batch_row(kept)], BatchRow))
        write_table(
            problems_path,
            to_table(kept, ProblemRow),
            before_rename=lambda: fault_point("write-before-rename"),
        )
        fault_point("write-after-rename")
        self.journal.finish_batch(batch_id, [_outcome(r) for r in kept])
        fault_point("finish")
        return kept

    def write_run(self, summary: RunSummary) -> None:
        day = (summary.completed_at or datetime.now(UTC)).date()
        path = dataset_path(self.results_dir, "runs", day, summary.run_id)
        write_table(path, to_table([summary], RunSummary))

    def recover(self) -> int:
        """Settle the batches dead writers left half-written; returns how many."""
        settled = 0
        for batch_id, path_text in self.journal.unfinished_batches():
            path = Path(path_text)
            if path.exists():
                table = read_table(path)
                self.journal.finish_batch(
                    batch_id,
                    [
                        ProblemOutcome(
                            row["problem_id"],
                            row["status"],
                            row["route"],
                            row["solver_path"],
                            row["fallback_reason"],
                        )
                        for row in table.select(
                            ["problem_id", "status", "route", "solver_path", "fallback_reason"]
                        ).to_pylist()
                    ],
                )
                log.warning("rolled forward batch %s (its file is in place)", batch_id)
            else:
                batch_file = self.results_dir / "batches" / path.parent.name / path.name
                batch_file.unlink(missing_ok=True)
                self.journal.abandon_batch(batch_id)
                log.warning("released batch %s (its file never landed)", batch_id)
            for directory in (path.parent, self.results_dir / "batches" / path.parent.name):
                for orphan in temporaries(directory, batch_id):
                    orphan.unlink(missing_ok=True)
            settled += 1
        self._remove_old_temporaries()
        return settled

    def _remove_old_temporaries(self) -> None:
        """Temporaries of writers cut short outside any batch (a run summary) once stale."""
        cutoff = time.time() - ORPHAN_AGE_S
        for dataset in DATASETS:
            for orphan in (self.results_dir / dataset).glob("date=*/.*.tmp"):
                try:
                    if orphan.stat().st_mtime < cutoff:
                        orphan.unlink()
                except FileNotFoundError:
                    pass


def _outcome(row: ProblemRow) -> ProblemOutcome:
    return ProblemOutcome(row.problem_id, row.status, row.route, row.solver_path, row.fallback_reason)
