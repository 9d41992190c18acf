"""Submission: read files, validate every record, enqueue all-or-nothing (or skip the bad)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Settings
from pipeline.errors import Conflict, InputIssue, InputRejected, KeyConflict
from pipeline.intake import IntakeStore, SubmitOutcome
from pipeline.model import ProblemSpec
from pipeline.private import make_folder
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

    Raises InputRejected, with every issue, when any record is invalid or reuses a key for
    other content and ``skip_invalid`` is false: nothing is enqueued then.
    """
    records = [record for path in paths for record in read_path(path, settings.limits)]
    issues = [issue for record in records for issue in record.issues]
    more = sum(record.more_issues for record in records)
    valid = [record for record in records if record.ok]
    if issues and not skip_invalid:
        raise InputRejected(issues, more)
    if not valid:
        return SubmitReport([], issues, more)
    if settings.intake.database_url is None:
        make_folder(settings.home)  # the default queue lives in the home: submitting makes it
    store = IntakeStore.open(settings.database_url)
    try:
        submitted, conflicts = _enqueue(store, valid, skip_invalid)
    finally:
        store.close()
    return SubmitReport(submitted, issues + conflicts, more)


def _enqueue(
    store: IntakeStore, records: list[ParsedRecord], skip_invalid: bool
) -> tuple[list[Submitted], list[InputIssue]]:
    """Submit ``records`` in one transaction. Keys in conflict refuse the whole call: an
    InputRejected naming them, or (skipping) they are listed and the rest submitted again;
    each retry has fewer records, so this ends."""
    refused: list[InputIssue] = []
    while records:
        try:
            outcomes = store.submit([(_spec(r), f"{r.file}:{r.record}") for r in records])
        except KeyConflict as exc:
            found = [_conflict_issue(records, c) for c in exc.conflicts]
            if not skip_invalid:
                raise InputRejected(found) from exc
            refused += found
            dropped = {c.index for c in exc.conflicts}
            records = [r for i, r in enumerate(records) if i not in dropped]
            continue
        return [Submitted(r, o) for r, o in zip(records, outcomes, strict=True)], refused
    return [], refused


def _spec(record: ParsedRecord) -> ProblemSpec:
    assert record.spec is not None  # only valid records are submitted
    return record.spec


def _conflict_issue(records: list[ParsedRecord], conflict: Conflict) -> InputIssue:
    """The conflict named by file, record and field, with the problem the key names."""
    record = records[conflict.index]
    if conflict.first_index is not None:
        first = records[conflict.first_index]
        names = f"the problem of {first.file}: {first.record}"
    else:
        names = f"problem {conflict.problem_id}"
    message = (
        f"key {conflict.key!r} already names {names}, and {conflict.reason.value}: "
        "a new problem needs a new key"
    )
    return InputIssue(record.file, record.record, "key", message)
