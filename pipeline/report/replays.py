"""What the report shows of answers computed again on another backend: ``qhopper drift``'s
replays of stored answers (``drift/``) and the canary's samples beside runs (``canary/``).

Read from the filtered temporary tables :mod:`pipeline.report.data` makes (``p`` problems,
``c`` canary rows); a dataset nobody has written yet gives its figure a note instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from pipeline.report.charts import Box
from pipeline.results import ResultsLocation, open_files

# The replayed answers `qhopper drift` writes: the columns the drift figure reads.
DRIFT_COLUMNS = (
    "problem_id",
    "stored_backend",
    "replay_backend",
    "stored_expected",
    "replay_expected",
    "stored_objective",
    "replay_objective",
    "difference",
)


@dataclass(frozen=True)
class DriftPoint:
    problem_id: str
    stored_backend: str
    replay_backend: str
    stored_expected: float | None
    replay_expected: float | None
    stored_objective: float | None
    replay_objective: float | None
    difference: float | None


@dataclass(frozen=True)
class Drift:
    """The drift rows, or why there are none (``note``)."""

    points: tuple[DriftPoint, ...]
    note: str | None


@dataclass(frozen=True)
class CanaryPair:
    """A candidate backend against the main one, over the canary rows: the expectation's
    difference as a share of the reference, and each side's time and cost per answer."""

    main_backend: str
    canary_backend: str
    rows: int
    failed: int
    mean_difference: float | None
    mean_abs_difference: float | None
    max_abs_difference: float | None
    best_sample_agreement: float | None
    main_seconds_p50: float | None
    canary_seconds_p50: float | None
    main_cost_usd: float
    canary_cost_usd: float


@dataclass(frozen=True)
class CanaryData:
    """The canary rows by pair of backends, and as distributions by panel (difference,
    seconds, USD) and side; or why there are none."""

    pairs: tuple[CanaryPair, ...]
    boxes: tuple[tuple[str, Box], ...]
    note: str | None


def load_drift(con: duckdb.DuckDBPyConnection, location: ResultsLocation, filtered: bool) -> Drift:
    """The drift rows when ``qhopper drift`` has written any; else why the figure is empty."""
    if not open_files(location).has_data("drift"):
        return Drift((), "no drift data yet: run `qhopper drift --backend SPEC` to write drift/")
    where = "WHERE problem_id IN (SELECT problem_id FROM p)" if filtered else ""
    sql = f"SELECT {', '.join(DRIFT_COLUMNS)} FROM drift {where} ORDER BY problem_id"
    points = tuple(DriftPoint(*row) for row in con.execute(sql).fetchall())
    return Drift(points, None if points else "drift/ has no rows for these problems")


CANARY_PANELS = ("difference (share of reference)", "seconds per answer", "USD per answer")
_CANARY_PAIRS = """
    SELECT main_backend, canary_backend, count(*), count(*) FILTER (status = 'failed'),
           avg(relative_difference), avg(abs(relative_difference)), max(abs(relative_difference)),
           avg(CASE WHEN status <> 'ok' THEN NULL WHEN abs(canary_objective - main_objective)
                    <= 1e-9 * greatest(1, abs(main_objective)) THEN 1.0 ELSE 0.0 END),
           quantile_cont(main_seconds, 0.5) FILTER (status = 'ok'),
           quantile_cont(canary_seconds, 0.5) FILTER (status = 'ok'),
           coalesce(sum(main_cost_usd), 0), coalesce(sum(canary_cost_usd), 0)
    FROM c GROUP BY ALL ORDER BY 1, 2
"""
# Each side of a pair beside the other: the main backend labelled "(main)", so a candidate
# of the main backend's own kind (aer against aer) still has two boxes.
_CANARY_BOXES = f"""
    WITH long AS (
        SELECT '{CANARY_PANELS[0]}' AS panel,
               canary_backend || ' vs ' || main_backend AS label, relative_difference AS v
        FROM c WHERE status = 'ok'
        UNION ALL SELECT '{CANARY_PANELS[1]}', main_backend || ' (main)', main_seconds
        FROM c WHERE status = 'ok'
        UNION ALL SELECT '{CANARY_PANELS[1]}', canary_backend, canary_seconds
        FROM c WHERE status = 'ok'
        UNION ALL SELECT '{CANARY_PANELS[2]}', main_backend || ' (main)', main_cost_usd FROM c
        UNION ALL SELECT '{CANARY_PANELS[2]}', canary_backend, canary_cost_usd FROM c
    )
    SELECT panel, label, count(v), min(v), quantile_cont(v, 0.25), quantile_cont(v, 0.5),
           quantile_cont(v, 0.75), quantile_cont(v, 0.95), max(v)
    FROM long WHERE v IS NOT NULL GROUP BY ALL ORDER BY 1, 2
"""


def load_canary(con: duckdb.DuckDBPyConnection, location: ResultsLocation) -> CanaryData:
    """The canary rows when a run has written any; else why the figure is empty."""
    if not open_files(location).has_data("canary"):
        note = "no canary data yet: set [canary] backend to sample a candidate beside each run"
        return CanaryData((), (), note)
    pairs = tuple(CanaryPair(*row) for row in con.execute(_CANARY_PAIRS).fetchall())
    boxes = tuple(
        (r[0], Box(r[1], int(r[2]), *(float(v) for v in r[3:])))
        for r in con.execute(_CANARY_BOXES).fetchall()
    )
    return CanaryData(pairs, boxes, None if pairs else "canary/ has no rows for these runs")
