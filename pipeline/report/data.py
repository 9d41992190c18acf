"""What the report shows, read with DuckDB from the result Parquet as small typed records.

Every number on the page comes from one query here, so the page and an analyst's own
DuckDB query over ``problems`` agree by construction. The filters (``--since``, ``--run``)
are applied once, to temporary tables ``p`` (problems), ``b`` (batches), ``r`` (runs) and
``c`` (canary rows).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

from pipeline.quality import gap_sql, ratio_sql, size_bin_sql
from pipeline.report.replays import CanaryData, Drift, load_canary, load_drift
from pipeline.results import ResultsLocation, connect

STAGES = ("queue", "compile", "execute", "post", "total")


@dataclass(frozen=True)
class Totals:
    problems: int
    completed: int
    degraded: int
    failed: int
    runs: int
    batches: int
    cost_usd: float

    @property
    def answered(self) -> int:
        return self.completed + self.degraded


@dataclass(frozen=True)
class StageLatency:
    backend: str
    stage: str
    n: int
    minimum: float
    p25: float
    p50: float
    p75: float
    p95: float
    maximum: float
    mean: float


@dataclass(frozen=True)
class RouteCount:
    run_id: str
    route: str
    solver_path: str
    status: str
    problems: int


@dataclass(frozen=True)
class FallbackCount:
    code: str
    status: str
    backend: str
    problems: int
    example: str


@dataclass(frozen=True)
class CostRow:
    backend: str
    tenant: str
    problems: int
    answers: int
    cost_usd: float

    @property
    def per_answer(self) -> float | None:
        return self.cost_usd / self.answers if self.answers else None


@dataclass(frozen=True)
class BatchSpend:
    backend: str
    batches: int
    backend_attempts: int
    backend_failures: int
    quantum_cost_usd: float


@dataclass(frozen=True)
class QualityPoint:
    """A quantum answer with a reference: judged by its ratios, or where a ratio means
    nothing (pipeline.quality), by its gaps in the problem's units."""

    kind: str
    n_variables: int
    reference: float
    scale: float | None
    answer_ratio: float | None
    expectation_ratio: float | None
    answer_gap: float | None
    expectation_gap: float | None


@dataclass(frozen=True)
class QualityGroup:
    """Quantum answers of one kind and size bin (``size_bin``: its last size)."""

    kind: str
    size_bin: int
    answers: int
    with_reference: int
    matching: int
    by_ratio: int
    mean_answer_ratio: float | None
    min_answer_ratio: float | None
    mean_expectation_ratio: float | None
    by_gap: int
    mean_answer_gap: float | None
    max_answer_gap: float | None
    mean_expectation_gap: float | None


@dataclass(frozen=True)
class FirstAttempt:
    backend: str
    tenant: str
    problems: int
    first_attempt_ok: int
    queue_p50_s: float
    queue_p95_s: float
    queue_max_s: float

    @property
    def rate(self) -> float:
        return self.first_attempt_ok / self.problems if self.problems else 0.0


@dataclass(frozen=True)
class ReportData:
    since: date | None
    run_id: str | None
    totals: Totals
    latency: tuple[StageLatency, ...]
    routes: tuple[RouteCount, ...]
    fallbacks: tuple[FallbackCount, ...]
    costs: tuple[CostRow, ...]
    spend: tuple[BatchSpend, ...]
    quality: tuple[QualityPoint, ...]
    quality_groups: tuple[QualityGroup, ...]
    classical_answers: int  # answered classically: each is a reference, judged by none
    first_attempts: tuple[FirstAttempt, ...]
    queue_waits: tuple[float, ...]
    drift: Drift
    canary: CanaryData


def load(
    where: ResultsLocation | Path | str, since: date | None = None, run_id: str | None = None
) -> ReportData:
    """Read everything the report shows (a folder or an fsspec URL), the filters applied once."""
    location = ResultsLocation.of(where)
    with contextlib.closing(connect(location)) as con:
        _filter(con, since, run_id)
        return ReportData(
            since=since,
            run_id=run_id,
            totals=_totals(con),
            latency=_latency(con),
            routes=tuple(RouteCount(*row) for row in _rows(con, _ROUTES)),
            fallbacks=tuple(FallbackCount(*row) for row in _rows(con, _FALLBACKS)),
            costs=tuple(CostRow(*row) for row in _rows(con, _COSTS)),
            spend=tuple(BatchSpend(*row) for row in _rows(con, _SPEND)),
            quality=tuple(QualityPoint(*row) for row in _rows(con, _QUALITY)),
            quality_groups=tuple(QualityGroup(*row) for row in _rows(con, _QUALITY_GROUPS)),
            classical_answers=_count(con, f"route = 'classical' AND {_ANSWER}"),
            first_attempts=tuple(FirstAttempt(*row) for row in _rows(con, _FIRST)),
            queue_waits=tuple(float(v) for (v,) in _rows(con, "SELECT t_queue_s FROM p")),
            drift=load_drift(con, location, filtered=since is not None or bool(run_id)),
            canary=load_canary(con, location),
        )


def _filter(con: duckdb.DuckDBPyConnection, since: date | None, run_id: str | None) -> None:
    """Materialise the filtered datasets once: the result sets are small, the queries many."""
    start = f"{since.isoformat()} 00:00:00+00" if since else None
    for table, view, at in (
        ("p", "problems", "coalesce(completed_at, submitted_at)"),
        ("b", "batches", "coalesce(completed_at, started_at)"),
        ("r", "runs", "coalesce(started_at, completed_at)"),
        ("c", "canary", "created_at"),
    ):
        con.execute(
            f"CREATE TEMP TABLE {table} AS SELECT * FROM {view} "
            "WHERE (CAST(? AS VARCHAR) IS NULL OR run_id = ?) "
            f"AND (CAST(? AS VARCHAR) IS NULL OR {at} >= CAST(? AS TIMESTAMPTZ))",
            [run_id, run_id, start, start],
        )


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> Sequence[tuple[Any, ...]]:
    return con.execute(sql).fetchall()


def _count(con: duckdb.DuckDBPyConnection, where: str) -> int:
    row = con.execute(f"SELECT count(*) FROM p WHERE {where}").fetchone()
    return int(row[0]) if row else 0


def _totals(con: duckdb.DuckDBPyConnection) -> Totals:
    row = con.execute(
        "SELECT count(*), count(*) FILTER (status = 'completed'), "
        "count(*) FILTER (status = 'degraded'), count(*) FILTER (status = 'failed'), "
        "count(DISTINCT run_id), count(DISTINCT batch_id), coalesce(sum(cost_usd), 0) FROM p"
    ).fetchone()
    assert row is not None
    problems, completed, degraded, failed, runs, batches, cost = row
    return Totals(
        int(problems),
        int(completed),
        int(degraded),
        int(failed),
        int(runs),
        int(batches),
        float(cost),
    )


def _latency(con: duckdb.DuckDBPyConnection) -> tuple[StageLatency, ...]:
    columns = ", ".join(f"t_{stage}_s AS {stage}" for stage in STAGES)
    rows = _rows(
        con,
        f"""
        WITH long AS (
            UNPIVOT (SELECT coalesce(backend, '(none)') AS backend, {columns} FROM p)
            ON {", ".join(STAGES)} INTO NAME stage VALUE seconds
        )
        SELECT backend, stage, count(*), min(seconds),
               quantile_cont(seconds, 0.25), quantile_cont(seconds, 0.5),
               quantile_cont(seconds, 0.75), quantile_cont(seconds, 0.95),
               max(seconds), avg(seconds)
        FROM long GROUP BY backend, stage ORDER BY backend
        """,
    )
    found = [StageLatency(r[0], r[1], int(r[2]), *(float(v) for v in r[3:])) for r in rows]
    return tuple(sorted(found, key=lambda s: (s.backend, STAGES.index(s.stage))))


_ROUTES = """
    WITH runs_in_order AS (
        SELECT run_id, min(coalesce(completed_at, submitted_at)) AS first_at FROM p GROUP BY run_id
    )
    SELECT run_id, coalesce(route, 'none'), coalesce(solver_path, 'none'), status, count(*)
    FROM p JOIN runs_in_order USING (run_id)
    GROUP BY run_id, first_at, 2, 3, 4 ORDER BY first_at, run_id, 2, 3, 4
"""
_FALLBACKS = """
    SELECT coalesce(fallback_code, '(unlabelled)'), status, coalesce(backend, '(none)'),
           count(*), coalesce(min(fallback_reason), '')
    FROM p WHERE fallback_code IS NOT NULL OR fallback_reason IS NOT NULL
    GROUP BY ALL ORDER BY 4 DESC, 1, 2, 3
"""
_COSTS = """
    WITH c AS (SELECT coalesce(backend, '(none)') AS backend, tenant, status, cost_usd FROM p)
    SELECT coalesce(backend, 'all backends'), coalesce(tenant, 'all tenants'), count(*),
           count(*) FILTER (status IN ('completed', 'degraded')), coalesce(sum(cost_usd), 0)
    FROM c GROUP BY GROUPING SETS ((backend, tenant), (tenant), ())
    ORDER BY grouping(backend, tenant), 1, 2
"""
_SPEND = """
    SELECT coalesce(backend, '(none)'), count(*), coalesce(sum(backend_attempts), 0),
           coalesce(sum(backend_failures), 0), coalesce(sum(quantum_cost_usd), 0)
    FROM b GROUP BY ALL ORDER BY 1
"""
# An answer the quality figures judge: quantum, answered, with an objective. A classical
# answer is itself the classical reference, so it is never counted as lacking one.
_ANSWER = "status IN ('completed', 'degraded') AND objective IS NOT NULL"
_JUDGED = f"""
    SELECT kind, n_variables, reference_objective, objective_scale,
           {ratio_sql("objective")} AS answer_ratio,
           {ratio_sql("expected_objective")} AS expectation_ratio,
           {gap_sql("objective")} AS answer_gap,
           {gap_sql("expected_objective")} AS expectation_gap,
           objective, {size_bin_sql("n_variables")} AS size_bin, problem_id
    FROM p WHERE route = 'quantum' AND {_ANSWER}
"""
_QUALITY = f"""
    SELECT kind, n_variables, reference_objective, objective_scale,
           answer_ratio, expectation_ratio, answer_gap, expectation_gap
    FROM ({_JUDGED}) WHERE reference_objective IS NOT NULL
    ORDER BY kind, n_variables, problem_id
"""
_QUALITY_GROUPS = f"""
    SELECT kind, size_bin, count(*), count(reference_objective),
           count(*) FILTER (abs(objective - reference_objective)
                            <= 1e-9 * greatest(1, abs(reference_objective))),
           count(answer_ratio), avg(answer_ratio), min(answer_ratio), avg(expectation_ratio),
           count(answer_gap), avg(answer_gap), max(answer_gap), avg(expectation_gap)
    FROM ({_JUDGED}) GROUP BY ALL ORDER BY 1, 2
"""
_FIRST = """
    SELECT coalesce(backend, '(none)'), tenant, count(*),
           count(*) FILTER (attempts = 1 AND status = 'completed'),
           coalesce(quantile_cont(t_queue_s, 0.5), 0), coalesce(quantile_cont(t_queue_s, 0.95), 0),
           coalesce(max(t_queue_s), 0)
    FROM p GROUP BY ALL ORDER BY 1, 2
"""
