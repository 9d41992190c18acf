"""Build the report from a results folder or URL and write it where the CLI asks."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from pipeline.private import make_folder
from pipeline.report.data import load
from pipeline.report.html import render
from pipeline.results import ResultsLocation


@dataclass(frozen=True)
class ReportInfo:
    """Where the report went, how large it is and how many figures it has."""

    path: Path
    bytes: int
    figures: int


def build_report(
    where: ResultsLocation | Path | str, since: date | None = None, run_id: str | None = None
) -> str:
    """The report page for the answers at ``where`` (since a date, or of one run)."""
    location = ResultsLocation.of(where)
    return render(load(location, since, run_id), location)


def write_report(
    where: ResultsLocation | Path | str,
    out: Path,
    since: date | None = None,
    run_id: str | None = None,
) -> ReportInfo:
    """Write the page atomically: a reader never sees half a report."""
    page = build_report(where, since, run_id)
    payload = page.encode("utf-8")
    make_folder(out.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)  # owner-only (0600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return ReportInfo(out, len(payload), page.count("<figure "))
