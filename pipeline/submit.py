"""Submission: read files, validate every record, enqueue all-or-nothing (or skip the bad)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Settings
from pipeline.errors import InputIssue, InputRejected
from pipeline.intake import IntakeStore, SubmitOutcome
from pipeline.readers import ParsedRecord, read_path


@dataclass(frozen=True)
class Submitted:
    record: ParsedRecord
    outcome: SubmitOutcome


@dataclass(frozen=True)
class SubmitReport:
    submitted: list[Submitted]
    rejected: list[InputIssue]
    more_rejected: int = 0  # issues past the ones listed (each file keeps its first ones)


def submit_files(
    settings: Settings, paths: Sequence[Path], skip_invalid: bool = False
) -> SubmitReport:
    """Validate every record of every file first; enqueue only if all pass (or skipping).

    Raises InputRejected, with every issue, when any record is invalid and
    ``skip_invalid`` is false: nothing is enqueued then.
    """
    records = [record for path in paths for record in read_path(path, settings.limits)]
    issues = [issue for record in records for issue in record.issues]
    more = sum(record.more_issues for record in records)
    valid = [record for record in records if record.ok]
    if issues and not skip_invalid:
        raise InputRejected(issues, more)
    if not valid:
        return SubmitReport([], issues, more)
    store = IntakeStore.open(settings.database_url)
    try:
        outcomes = store.submit(
            [(r.spec, f"{r.file}:{r.record}") for r in valid if r.spec is not None]
        )
    finally:
        store.close()
    return SubmitReport(
        [Submitted(r, o) for r, o in zip(valid, outcomes, strict=True)], issues, more
    )
